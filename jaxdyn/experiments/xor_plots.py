"""Figures of the `xor` experiment (matplotlib only).

- `distances.png`: per gain (columns), the squared hidden distance matrices of the four XOR
  points at the start, at the end, and the theory's pairwise prediction (rows).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["FIGURES", "distances_figure", "save_figures"]

FIGURES = ("distances.png",)
LABELS = ("(-1,-1)", "(-1,+1)", "(+1,-1)", "(+1,+1)")


def distances_figure(results: dict[str, Any]):
    """Start, final and predicted squared distance matrices per gain."""
    from matplotlib.figure import Figure

    rows = results["per_gain"]
    fig = Figure(figsize=(3.6 * len(rows) + 0.8, 9.5), layout="constrained")
    axes = np.array(fig.subplots(3, len(rows), squeeze=False))
    for j, r in enumerate(rows):
        for i, (key, what) in enumerate(
            [("start", "start"), ("measured", "end (network)"), ("predicted", "end (theory)")]
        ):
            ax = axes[i, j]
            if not r["runs"]:
                ax.set_title(f"gain {r['gain']:g}: diverged", fontsize=9)
                continue
            im = ax.imshow(np.asarray(r[key]), cmap="viridis")
            fig.colorbar(im, ax=ax, label="||h_i - h_j||^2")
            ax.set_xticks(range(4), LABELS, fontsize=6, rotation=30)
            ax.set_yticks(range(4), LABELS, fontsize=6)
            ax.set_xlabel("input x_j")
            ax.set_ylabel("input x_i")
            extra = ""
            if key == "measured":
                extra = f"\nsame/different label {r['same_over_different']:.2g}"
            if key == "predicted":
                extra = f"\npair error {r['pair_relative_error']:.1%}"
            ax.set_title(f"gain {r['gain']:g}: {what}{extra}", fontsize=8)
    return fig


def save_figures(
    results: dict[str, Any], point: dict[str, Any], out_dir: str | os.PathLike
) -> Sequence[str]:
    """Writes `FIGURES` into `out_dir`; returns the file names."""
    distances_figure(results).savefig(pathlib.Path(out_dir) / FIGURES[0], dpi=100)
    return list(FIGURES)
