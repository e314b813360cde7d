"""Figures of the `linear-vs-real` experiment, composed from `jaxdyn.plot`.

This module is the only place that reads the experiment's records: `results` is the dict
written to `results.json` and `points` the per-(width, seed) dicts of `points/*.json` (the
keys `linear_vs_real.run_point` writes). It turns them into arrays for the generic figures.

- `outputs.png`: test outputs over training for the narrowest and the widest width; line
  style is the model (network, linearized, closed form), colour the test point.
- `loss.png`: the training loss at the widest width, and beside it, on a log scale, how far
  the network's and the linearized network's losses are from the closed form at every width.
- `scaling.png`: plateau RMSE(network, linearized) and the relative kernel and weight changes
  against width, log-log, with fitted slopes and reference slopes -1 and -1/2.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxdyn import plot

__all__ = ["FIGURES", "loss_figure", "outputs_figure", "save_figures", "scaling_figure"]

FIGURES = ("outputs.png", "loss.png", "scaling.png")
STEP = "training step (optimizer updates)"
MODELS = ("network", "linearized", "closed form")


class _Fit(NamedTuple):
    slope: float
    intercept: float


def _pick(points: Sequence[dict[str, Any]], width: int) -> dict[str, Any]:
    """The point of `width` with the smallest seed (one representative run per width)."""
    mine = [p for p in points if p["width"] == width]
    if not mine:
        raise ValueError(
            f"`points` must hold width {width}; got widths {sorted({p['width'] for p in points})}."
        )
    return min(mine, key=lambda p: p["seed"])


def _widths(points: Sequence[dict[str, Any]]) -> list[int]:
    if not points:
        raise ValueError("`points` must hold at least one point; got none.")
    return sorted({int(p["width"]) for p in points})


def outputs_figure(points: Sequence[dict[str, Any]], widths: Sequence[int] | None = None):
    """Test outputs over training, one panel per width (default: narrowest and widest).

    Returns:
      A `Figure`.
    """
    from matplotlib.figure import Figure

    all_widths = _widths(points)
    widths = list(widths) if widths is not None else sorted({all_widths[0], all_widths[-1]})
    fig = Figure(figsize=(5.5 * len(widths) + 1.5, 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(widths), sharey=True))
    for i, (ax, w) in enumerate(zip(axes, widths)):
        p = _pick(points, w)
        outputs = {
            "network": p["f_test_net"],
            "linearized": p["f_test_lin"],
            "closed form": p.get("f_test_closed_form"),
        }
        ys = {}
        for model, f in outputs.items():
            if f is None:  # adam has no closed form
                continue
            f = np.asarray(f, float)
            for j in range(f.shape[1]):
                ys[(model, f"test point {j + 1}")] = f[:, j]
        plot.curves(
            p["steps"],
            ys,
            ax=ax,
            xlabel=STEP,
            ylabel="output on a test point (target units)",
            title=f"width {w}",
            colour_title="test point",
            legend=i == len(widths) - 1,
        )
    closed = all(p.get("f_test_closed_form") is not None for p in points)
    fig.suptitle(
        "Test outputs during training: the wider the network (solid), the closer it "
        "stays to its linearization (dashed)" + (" and the closed form (circles)" if closed else "")
    )
    return fig


def loss_figure(points: Sequence[dict[str, Any]], width: int | None = None):
    """Training loss at one width (default: the widest), and the gap of each model's loss to
    the closed form at every width on a log scale (to the linearization when the optimizer
    has no closed form).

    Returns:
      A `Figure`.
    """
    from matplotlib.figure import Figure

    widths = _widths(points)
    width = width if width is not None else widths[-1]
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    p = _pick(points, width)
    losses = {
        "network": p["loss_net"],
        "linearized": p["loss_lin"],
        "closed form": p.get("loss_closed_form"),
    }
    plot.curves(
        p["steps"],
        {m: v for m, v in losses.items() if v is not None},
        ax=left,
        logy=True,
        xlabel=STEP,
        ylabel="training loss ½·mean((f − y)²) (target units²)",
        title=f"training loss, width {width}\n(the curves overlap: the right panel shows the gaps)",
    )
    gaps, has_closed_form = {}, all(q.get("loss_closed_form") is not None for q in points)
    for w in widths:
        q = _pick(points, w)
        net, lin = np.asarray(q["loss_net"], float), np.asarray(q["loss_lin"], float)
        if has_closed_form:
            cf = np.asarray(q["loss_closed_form"], float)
            gaps[("network", f"width {w}")] = np.abs(net - cf)
            gaps[("linearized", f"width {w}")] = np.abs(lin - cf)
        else:
            gaps[("network", f"width {w}")] = np.abs(net - lin)
    reference = "closed form" if has_closed_form else "linearized network"
    plot.curves(
        p["steps"],
        gaps,
        ax=right,
        logy=True,
        xlabel=STEP,
        ylabel=f"|loss − {reference}'s loss| (target units²)",
        colour_title="width",
        style_title="model",
        title=(
            f"loss gap to the {reference}: compare the network's across widths"
            + ("\n(the linearized one is rounding error)" if has_closed_form else "")
        ),
    )
    return fig


def scaling_figure(results: dict[str, Any]):
    """Plateau RMSE and relative kernel / weight change against width (log-log).

    Returns:
      A `Figure`.
    """
    from matplotlib.figure import Figure

    rows = results["per_width"]
    widths = [r["width"] for r in rows]
    metrics = ("plateau_rmse", "kernel_change", "weight_change")
    means = {m: [r[m]["mean"] for r in rows] for m in metrics}
    stds = {m: [r[m]["std"] for r in rows] for m in metrics}
    fits = {
        m: _Fit(results["slope_fits"][m]["slope"], results["slope_fits"][m]["intercept"])
        for m in metrics
        if m in results.get("slope_fits", {})
    }
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot.power_laws(
        widths,
        means,
        stds,
        fits,
        keys=["plateau_rmse"],
        ax=left,
        labels={"plateau_rmse": "plateau RMSE(network, linearized)"},
        xlabel="width (hidden units)",
        ylabel="RMSE on test points (target units)",
        title="distance from the linearization at the end of training",
    )
    plot.power_laws(
        widths,
        means,
        stds,
        fits,
        keys=["kernel_change", "weight_change"],
        ax=right,
        labels={
            "kernel_change": "kernel change ‖Θ_T − Θ_0‖ / ‖Θ_0‖",
            "weight_change": "weight change ‖θ_T − θ_0‖ / ‖θ_0‖",
        },
        xlabel="width (hidden units)",
        ylabel="relative change (dimensionless)",
        title="how much kernel and weights move in training",
    )
    fig.suptitle(
        "Lazy training with width: error bars are the spread over seeds; compare the "
        "fitted slopes with the reference lines"
    )
    return fig


def save_figures(
    results: dict[str, Any], points: Sequence[dict[str, Any]], out_dir: str | os.PathLike
) -> list[str]:
    """Writes `FIGURES` into `out_dir`.

    Args:
      results: the experiment's results dict (as in `results.json`).
      points: the per-(width, seed) point dicts (as in `points/*.json`).
      out_dir: an existing folder.

    Returns:
      The file names written, in the order of `FIGURES`.
    """
    out = pathlib.Path(out_dir)
    for name, fig in zip(
        FIGURES, (outputs_figure(points), loss_figure(points), scaling_figure(results))
    ):
        fig.savefig(out / name, dpi=110)
    return list(FIGURES)
