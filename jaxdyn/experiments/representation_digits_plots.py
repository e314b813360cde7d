"""Figure of the `representation-digits` experiment (matplotlib only).

- `fit.png`: the measured `h`, `y`, `w` of the two tracked images (solid) against the fitted
  theory (dashed), first seed.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["FIGURES", "fit_figure", "save_figures"]

FIGURES = ("fit.png",)


def fit_figure(point: dict[str, Any]):
    """Measured against fitted h, y, w (first seed that did not diverge)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    ok = [r for r in point["runs"] if not r["diverged"]]
    t = np.asarray(point["t"], float)
    for c, (ax, name) in enumerate(zip(axes, ("h = ||dh||^2", "y = ||dy_hat||^2", "w"))):
        ax.set_xlabel("t = learning rate x SGD step")
        ax.set_ylabel(name)
        if not ok:
            ax.set_title("diverged", fontsize=9)
            continue
        r = ok[0]
        ax.plot(t, np.asarray(r["observed"])[:, c], label="network")
        ax.plot(t, np.asarray(r["fitted"])[:, c], "--", label="theory (fit)")
        ax.set_title(
            f"images {point['images']}: {name.split()[0]} ({r['curve_errors']['hyw'[c]]:.1%})",
            fontsize=9,
        )
    axes[0].legend(fontsize=8)
    return fig


def save_figures(
    results: dict[str, Any], point: dict[str, Any], out_dir: str | os.PathLike
) -> Sequence[str]:
    """Writes `FIGURES` into `out_dir`; returns the file names."""
    fit_figure(point).savefig(pathlib.Path(out_dir) / FIGURES[0], dpi=100)
    return list(FIGURES)
