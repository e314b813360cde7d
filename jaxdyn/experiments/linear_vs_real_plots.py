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
- `weights.png` (when the points recorded weights): Lee et al.'s Figure 4 at the widest
  width: a few test outputs and a few individual weights over training, network against
  linearization against the analytic dynamics.

`--study plateau` draws `plateau.png` instead (`plateau_figure`): the plateau RMSE against
width, one panel per architecture, one line per training-set size, with fitted slopes.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxdyn import plot

__all__ = [
    "FIGURES",
    "loss_figure",
    "outputs_figure",
    "plateau_figure",
    "save_figures",
    "save_plateau_figures",
    "scaling_figure",
    "weights_figure",
]

FIGURES = ("outputs.png", "loss.png", "scaling.png")
WEIGHTS_FIGURE = "weights.png"
PLATEAU_FIGURE = "plateau.png"
OUTPUT_LABELS = {
    "mse": "output on a test point (target units)",
    "cross-entropy": "first-class logit on a test point (nats)",
}
LOSS_LABELS = {
    "mse": "training loss ½·mean((f − y)²) (target units²)",
    "cross-entropy": "training loss: softmax cross-entropy (nats)",
}
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


def loss_figure(points: Sequence[dict[str, Any]], width: int | None = None, loss: str = "mse"):
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
        ylabel=LOSS_LABELS.get(loss, "training loss"),
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
    units = "nats" if loss == "cross-entropy" else "target units²"
    plot.curves(
        p["steps"],
        gaps,
        ax=right,
        logy=True,
        xlabel=STEP,
        ylabel=f"|loss − {reference}'s loss| ({units})",
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


def weights_figure(
    points: Sequence[dict[str, Any]], width: int | None = None, analytic=None, loss: str = "mse"
):
    """Lee et al.'s Figure 4 at one width (default: the widest): test outputs, and the change
    `w(t) - w(0)` of individual weights of the first and of the last layer, over training;
    line style is the model (network, linearized, analytic), colour the test point or weight.

    Returns:
      A `Figure`.
    """
    from matplotlib.figure import Figure

    widths = _widths(points)
    width = width if width is not None else widths[-1]
    p = _pick(points, width)
    analytic = analytic or "closed form"
    models = (("network", "_net"), ("linearized", "_lin"), (analytic, "_closed_form"))
    series = {m: p.get(f"f_test{suffix}") for m, suffix in models}
    weights = {m: p.get(f"weights{suffix}") for m, suffix in models}
    n_w = np.asarray(weights["network"], float).shape[1]
    names = p.get("weight_names") or [f"weight {j + 1}" for j in range(n_w)]
    half = n_w // 2
    panels = [
        ("test point", OUTPUT_LABELS.get(loss, OUTPUT_LABELS["mse"]), "test outputs", series, None),
        ("weight", "weight change w(t) − w(0)", "first-layer weights", weights, range(half)),
        ("weight", "weight change w(t) − w(0)", "last-layer weights", weights, range(half, n_w)),
    ]
    fig = Figure(figsize=(20, 4.8), layout="constrained")
    for ax, (what, ylabel, title, data, cols) in zip(fig.subplots(1, 3), panels):
        ys = {}
        for model, f in data.items():
            if f is None:  # no analytic dynamics (adam, minibatches)
                continue
            f = np.asarray(f, float)
            if cols is None:
                for j in range(f.shape[1]):
                    ys[(model, f"test point {j + 1}")] = f[:, j]
            else:
                for j in cols:
                    ys[(model, names[j])] = f[:, j] - f[0, j]
        plot.curves(
            p["steps"],
            ys,
            ax=ax,
            xlabel=STEP,
            ylabel=ylabel,
            colour_title=what,
            title=f"{title}, width {width}",
        )
    fig.suptitle(
        f"Width {width}: the network (solid) moves like its linearization (dashed)"
        + (f" and the {analytic} (circles)" if series[analytic] is not None else "")
        + ", outputs and individual weights alike"
    )
    return fig


def plateau_figure(results: dict[str, Any]):
    """`--study plateau`: the plateau RMSE against width (log-log), one panel per
    architecture, one line per training-set size with its fitted slope.

    Returns:
      A `Figure`.
    """
    from matplotlib.figure import Figure

    rows = results["plateau"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig = Figure(figsize=(5.2 * len(models) + 1, 4.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(models), sharey=True))
    for ax, model in zip(axes, models):
        mine = [r for r in rows if r["model"] == model]
        means = {f"n = {r['n_train']}": r["plateau_rmse_mean"] for r in mine}
        stds = {f"n = {r['n_train']}": r["plateau_rmse_std"] for r in mine}
        fits = {
            f"n = {r['n_train']}": _Fit(r["slope_fit"]["slope"], r["slope_fit"]["intercept"])
            for r in mine
            if r["slope_fit"] is not None
        }
        plot.power_laws(
            mine[0]["widths"],
            means,
            stds,
            fits,
            keys=list(means),
            ax=ax,
            labels={k: f"{k} training points" for k in means},
            xlabel="width (hidden units or channels)",
            ylabel="plateau RMSE(network, linearized) (target units)",
            title=f"{model}: distance from the linearization",
        )
    fig.suptitle(
        "Plateau RMSE against width per architecture and dataset size (Lee et al. Figure 8): "
        "compare the fitted slopes with the reference lines"
    )
    return fig


def save_plateau_figures(
    results: dict[str, Any], points: Sequence[dict[str, Any]], out_dir: str | os.PathLike
) -> list[str]:
    """Writes `plateau.png` into `out_dir`; returns `[PLATEAU_FIGURE]`."""
    plateau_figure(results).savefig(pathlib.Path(out_dir) / PLATEAU_FIGURE, dpi=110)
    return [PLATEAU_FIGURE]


def save_figures(
    results: dict[str, Any], points: Sequence[dict[str, Any]], out_dir: str | os.PathLike
) -> list[str]:
    """Writes `FIGURES` into `out_dir`, and `weights.png` when the points recorded weights.

    Args:
      results: the experiment's results dict (as in `results.json`).
      points: the per-(width, seed) point dicts (as in `points/*.json`).
      out_dir: an existing folder.

    Returns:
      The file names written, in the order of `FIGURES` (then `weights.png`).
    """
    out = pathlib.Path(out_dir)
    loss = results.get("settings", {}).get("loss", "mse")
    figures = [
        (FIGURES[0], outputs_figure(points)),
        (FIGURES[1], loss_figure(points, loss=loss)),
        (FIGURES[2], scaling_figure(results)),
    ]
    if all(p.get("weights_net") is not None for p in points):
        analytic = results.get("analytic")
        figures.append((WEIGHTS_FIGURE, weights_figure(points, analytic=analytic, loss=loss)))
    for name, fig in figures:
        fig.savefig(out / name, dpi=110)
    return [name for name, _ in figures]
