"""Figures of the `frequency-highd` experiment (from the point records `frequency_highd.run`
stores; keys `part`, `name`, `model`, `steps`, `filtered`, accuracies).

- `filtered_errors.png`: e_low (solid) and e_high (dashed) over training, colour the filter
  variance delta, one panel per (dataset, model): the low part converges first.
- `boolean.png`: train and test accuracy of the parity and majority targets over training,
  and the share of each target's energy the filter calls low-frequency, per delta.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxdyn import plot

__all__ = ["FIGURES", "boolean_figure", "filtered_errors_figure", "save_figures"]

FIGURES = ("filtered_errors.png", "boolean.png")
STEP = "Adam step (full batch)"


def _series(values: Sequence[Any]) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], float)


def _filtered_panel(ax, p: dict[str, Any], title: str, legend: bool) -> None:
    ys = {}
    for delta, f in p["filtered"].items():
        ys[("e_low", f"{delta}")] = _series(f["e_low"])
        ys[("e_high", f"{delta}")] = _series(f["e_high"])
    plot.curves(
        p["steps"],
        ys,
        xlabel=STEP,
        ylabel="relative error in the part",
        title=title,
        style_title="part",
        colour_title="delta",
        logy=True,
        legend=legend,
        ax=ax,
    )


def filtered_errors_figure(points: Sequence[dict[str, Any]]):
    """e_low / e_high over training for every trained (dataset, model)."""
    from matplotlib.figure import Figure

    mine = [p for p in points if p["part"] == "dataset" and not p.get("skipped")]
    if not mine:
        raise ValueError("`points` must hold at least one trained dataset point; got none.")
    cols = min(3, len(mine))
    rows = -(-len(mine) // cols)
    fig = Figure(figsize=(5.2 * cols, 4 * rows), layout="constrained")
    axes = np.array(fig.subplots(rows, cols, squeeze=False)).ravel()
    for i, p in enumerate(mine):
        _filtered_panel(axes[i], p, f"{p['name']}, {p['model']}: e_low, e_high", i == 0)
    for ax in axes[len(mine) :]:
        ax.set_axis_off()
    return fig


def boolean_figure(points: Sequence[dict[str, Any]]):
    """Accuracy over training (left), filtered errors of parity (middle), low-energy shares."""
    from matplotlib.figure import Figure

    mine = {p["name"]: p for p in points if p["part"] == "boolean"}
    if not mine:
        raise ValueError("`points` must hold the Boolean points; got none.")
    fig = Figure(figsize=(16, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    first = next(iter(mine.values()))
    ys = {}
    for name, p in mine.items():
        ys[("train", name)] = _series(p["train_accuracy"])
        ys[("test", name)] = _series(p["test_accuracy"])
    plot.curves(
        first["steps"],
        ys,
        xlabel=STEP,
        ylabel="accuracy (sign agreement)",
        title="parity memorized, majority generalizes",
        style_title="split",
        colour_title="target",
        ax=axes[0],
    )
    if "parity" in mine:
        _filtered_panel(axes[1], mine["parity"], "parity: e_low, e_high", True)
    deltas = list(first["filtered"])
    width = 0.8 / len(mine)
    for j, (name, p) in enumerate(mine.items()):
        share = [p["filtered"][d]["low_energy_share"] for d in deltas]
        axes[2].bar(np.arange(len(deltas)) + j * width, share, width, label=name)
    axes[2].set_xticks(np.arange(len(deltas)) + width * (len(mine) - 1) / 2, deltas)
    axes[2].set_xlabel("filter variance delta")
    axes[2].set_ylabel("||y_low||^2 / ||y||^2")
    axes[2].set_title("target energy in the low-frequency part")
    axes[2].legend(title="target")
    return fig


def save_figures(
    results: dict[str, Any], points: Sequence[dict[str, Any]], out_dir: str | os.PathLike
) -> list[str]:
    """Writes `FIGURES` into `out_dir`; returns their names."""
    out = pathlib.Path(out_dir)
    filtered_errors_figure(points).savefig(out / FIGURES[0], dpi=100)
    boolean_figure(points).savefig(out / FIGURES[1], dpi=100)
    return list(FIGURES)
