"""Figures of the `rich-lazy` experiment (matplotlib only).

`points` is `{"gains": ..., "base": ..., "grid": ...}` as `rich_lazy.run` stores them.

- `gains.png`: final `h` per run against the gain, with the theory's `h_inf` and its two
  asymptotes `A_low` (rich) and `A_high` (lazy), seed means (the paper's Figure 3).
- `grid.png`: the final `h` predicted by seed-averaged rates against the measured one on the
  (dx, dy) grid, with R^2 (a note when the grid was not run).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["FIGURES", "gains_figure", "grid_figure", "save_figures"]

FIGURES = ("gains.png", "grid.png")


def gains_figure(results: dict[str, Any], gains_point: dict[str, Any]):
    """Final h against the gain, with h_inf, A_low and A_high."""
    from matplotlib.figure import Figure

    rows = [r for r in results["gain_sweep"] if r["runs"]]
    fig = Figure(figsize=(7, 4.8), layout="constrained")
    ax = fig.subplots()
    runs = [r for r in gains_point["runs"] if not r["diverged"]]
    ax.scatter([r["gain"] for r in runs], [r["h_final"] for r in runs], s=12, color="C0", alpha=0.5)
    g = [r["gain"] for r in rows]
    ax.plot(g, [r["h_final"] for r in rows], "o-", color="C0", label="network: final h")
    ax.plot(g, [r["h_inf"] for r in rows], "s--", color="C3", label="theory: h_inf")
    ax.plot(g, [r["a_low"] for r in rows], ":", color="C2", label="A_low (rich)")
    a_high = [r["a_high"] if r["a_high"] and r["a_high"] > 0 else np.nan for r in rows]
    ax.plot(g, a_high, "-.", color="C1", label="A_high (lazy; > 0 shown)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Xavier gain of the initial weights")
    ax.set_ylabel("||dh||^2 at the tracked layer")
    ax.set_title("rich (small gain) to lazy (large gain): seed means", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def grid_figure(results: dict[str, Any]):
    """Predicted against measured final h on the (dx, dy) grid."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.subplots()
    ax.set_xlabel("measured final ||dh||^2 (seed mean)")
    ax.set_ylabel("predicted h_inf (seed-averaged rates)")
    grid = results.get("grid")
    if not grid:
        ax.set_title("no grid test in this run (--grid)", fontsize=9)
        return fig
    cells = grid["cells"]
    meas = np.array([c["h_final"] for c in cells], float)
    pred = np.array([c["h_pred"] for c in cells], float)
    sc = ax.scatter(meas, pred, c=[c["dy"] for c in cells], s=[30 * c["dx"] for c in cells])
    fig.colorbar(sc, ax=ax, label="dy (marker size: dx)")
    lo, hi = np.nanmin([meas, pred]), np.nanmax([meas, pred])
    ax.plot([lo, hi], [lo, hi], "k--", linewidth=1, label="prediction = measurement")
    r2 = grid["r_squared"]
    ax.set_title(
        f"eta_h {grid['eta_h']:.3g}, eta_y {grid['eta_y']:.3g}: R^2 = "
        f"{'-' if r2 is None else f'{r2:.3f}'}",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    return fig


def save_figures(
    results: dict[str, Any], points: dict[str, Any], out_dir: str | os.PathLike
) -> Sequence[str]:
    """Writes `FIGURES` into `out_dir`; returns the file names."""
    out = pathlib.Path(out_dir)
    gains_figure(results, points["gains"]).savefig(out / FIGURES[0], dpi=100)
    grid_figure(results).savefig(out / FIGURES[1], dpi=100)
    return list(FIGURES)
