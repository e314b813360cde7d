"""Figures of the `frequency-image` experiment (from the per-seed point records).

- `snapshots.png`: the target photograph and the network's image at a few steps (the first
  seed): the outline arrives before the details.
- `ring_errors.png`: relative 2-D DFT error per ring of radial frequency over training
  (lines, log scale) and as a heatmap (rings x steps), with the threshold.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["FIGURES", "ring_errors_figure", "save_figures", "snapshots_figure"]

FIGURES = ("snapshots.png", "ring_errors.png")


def _first(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    if not points:
        raise ValueError("`points` must hold at least one seed; got none.")
    return points[0]


def snapshots_figure(points: Sequence[dict[str, Any]]):
    """Target and network images of the first seed."""
    from matplotlib.figure import Figure

    p = _first(points)
    shots = p["snapshots"]
    fig = Figure(figsize=(2.8 * (len(shots) + 1), 2.6), layout="constrained")
    axes = fig.subplots(1, len(shots) + 1)
    images = [("target", p["target"])] + [
        (f"step {s}", img) for s, img in zip(p["snapshot_steps"], shots)
    ]
    for ax, (title, img) in zip(axes, images):
        ax.imshow(np.asarray(img, float), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title)
        ax.set_xlabel("pixel column")
        ax.set_ylabel("pixel row")
    return fig


def ring_errors_figure(points: Sequence[dict[str, Any]], threshold: float):
    """Per-ring relative DFT error over steps (first seed): lines and heatmap."""
    from matplotlib.figure import Figure

    p = _first(points)
    err = np.asarray([[np.nan if v is None else v for v in row] for row in p["ring_errors"]])
    steps, edges = np.asarray(p["steps"]), np.asarray(p["ring_edges"])
    fig = Figure(figsize=(12, 4), layout="constrained")
    ax, hm = fig.subplots(1, 2)
    for b in range(err.shape[1]):
        ax.semilogy(steps, err[:, b], label=f"|k| in [{edges[b]:.2f}, {edges[b + 1]:.2f})")
    ax.axhline(threshold, color="k", linestyle="--", linewidth=1)
    ax.set_xlabel("Adam step (full batch)")
    ax.set_ylabel("relative DFT error in the ring")
    ax.set_title("2-D DFT error by radial frequency")
    ax.legend(fontsize=7, title="cycles / pixel")
    im = hm.imshow(err.T, aspect="auto", origin="lower", cmap="viridis", vmin=0, vmax=1,
                   extent=(steps[0], steps[-1], 0, err.shape[1]))  # fmt: skip
    fig.colorbar(im, ax=hm, label="relative error")
    hm.set_xlabel("Adam step (full batch)")
    hm.set_ylabel("ring (low to high frequency)")
    hm.set_title("error heatmap: low rings converge first")
    return fig


def save_figures(
    results: dict[str, Any], points: Sequence[dict[str, Any]], out_dir: str | os.PathLike
) -> list[str]:
    """Writes `FIGURES` into `out_dir`; returns their names."""
    out = pathlib.Path(out_dir)
    snapshots_figure(points).savefig(out / FIGURES[0], dpi=100)
    ring_errors_figure(points, results["settings"]["threshold"]).savefig(out / FIGURES[1], dpi=100)
    return list(FIGURES)
