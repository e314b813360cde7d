"""Figures of the `phase-diagram` experiment, composed from `jaxdyn.plot` and matplotlib.

`results` is the dict written to `results.json` (its `grid` rows: per (gamma, gamma') the
slope, regimes and RD per width), `points` the per-(width, seed) records.

- `phase_diagram.png`: left, the measured slope of log RD against log m as a heatmap over
  (gamma', gamma); right, the paper's regimes over the same grid. Both carry the boundary lines
  (gamma = 1 for gamma' <= 0, gamma' = gamma - 1 for gamma >= 1) and the NTK, mean-field, Xavier
  and LeCun points; on the left, cells whose measured regime differs from the paper's are
  crossed.
- `rd_vs_width.png`: RD against m (log-log) for the grid points nearest to the named
  initializations and the two corners, with their fitted slopes.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxdyn import plot

__all__ = ["FIGURES", "phase_figure", "rd_figure", "save_figures"]

FIGURES = ("phase_diagram.png", "rd_vs_width.png")
REGIME_CODE = {"linear": 0, "critical": 1, "condensed": 2}
MARKERS = {"NTK": "o", "mean field": "s", "Xavier": "x", "LeCun": "^"}


def _axes_values(rows):
    g = sorted({r["gamma"] for r in rows})
    gp = sorted({r["gamma_prime"] for r in rows})
    return np.array(g), np.array(gp)


def _edges(v: np.ndarray) -> np.ndarray:
    if v.size == 1:
        return np.array([v[0] - 0.125, v[0] + 0.125])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])


def _boundaries(ax, gp_lim, g_lim):
    lo, hi = gp_lim
    ax.plot([lo, min(0.0, hi)], [1.0, 1.0], color="k", linewidth=2)
    xs = np.linspace(max(0.0, lo), hi, 2)
    ax.plot(xs, xs + 1.0, color="k", linewidth=2, label="paper's boundaries")
    from jaxdyn.analysis.condensation import POINTS

    for name, (g, gp) in POINTS.items():
        ax.plot(
            gp,
            g,
            MARKERS[name],
            color="white",
            markeredgecolor="k",
            markersize=9 if name != "Xavier" else 7,
            markeredgewidth=1.5,
            label=name,
        )
    ax.set_xlim(*gp_lim)
    ax.set_ylim(*g_lim)
    ax.set_xlabel("gamma' (kappa' = beta1 / beta2 = m^-gamma')")
    ax.set_ylabel("gamma (kappa = alpha beta1 beta2 = m^-gamma)")


def phase_figure(results: dict[str, Any]):
    """Measured slope heatmap beside the paper's regimes (see the module doc)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    rows = results["grid"]
    g, gp = _axes_values(rows)
    slope = np.full((g.size, gp.size), np.nan)
    theory = np.full((g.size, gp.size), np.nan)
    for r in rows:
        i, j = int(np.searchsorted(g, r["gamma"])), int(np.searchsorted(gp, r["gamma_prime"]))
        slope[i, j] = np.nan if r["slope"] is None else r["slope"]
        theory[i, j] = REGIME_CODE[r["theory_regime"]]
    ge, gpe = _edges(g), _edges(gp)
    lims = ((gpe[0], gpe[-1]), (ge[0], ge[-1]))
    fig = Figure(figsize=(13, 5.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    # clipped at +-1: the regimes differ in sign, and the steep linear slopes (down to -3)
    # would wash out the +-0.3 ones near the boundaries
    mesh = left.pcolormesh(gpe, ge, slope, cmap="coolwarm", vmin=-1.0, vmax=1.0)
    fig.colorbar(
        mesh, ax=left, label="slope of log RD against log m (clipped at +-1)", extend="both"
    )
    for r in rows:
        if r["slope"] is not None:
            left.text(
                r["gamma_prime"],
                r["gamma"],
                f"{r['slope']:.2f}",
                ha="center",
                va="center",
                fontsize=7,
            )
    for r in rows:
        if r["agrees"] is False:
            left.plot(r["gamma_prime"], r["gamma"], "+", color="k", markersize=8)
    widths = results["settings"]["widths"]
    left.set_title(
        f"measured: RD slope over m = {widths[0]}..{widths[-1]}\n"
        "(blue falls: linear; red grows: condensed; + differs from the paper)",
        fontsize=9,
    )
    _boundaries(left, *lims)
    cmap = ListedColormap(["#6baed6", "#f0f0f0", "#fb6a4a"])
    right.pcolormesh(gpe, ge, theory, cmap=cmap, vmin=-0.5, vmax=2.5)
    right.set_title("the paper's regimes (linear blue, critical grey, condensed red)", fontsize=9)
    _boundaries(right, *lims)
    right.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return fig


def _nearest(rows, g, gp):
    return min(rows, key=lambda r: (r["gamma"] - g) ** 2 + (r["gamma_prime"] - gp) ** 2)


def rd_figure(results: dict[str, Any]):
    """RD against width for a few grid points, log-log, with fitted slopes."""
    rows = results["grid"]
    widths = np.asarray(results["settings"]["widths"], float)
    from jaxdyn.analysis.condensation import POINTS

    g, gp = _axes_values(rows)
    wanted = {f"near {k}": v for k, v in POINTS.items() if k != "Xavier"}
    wanted["corner (max gamma, min gamma')"] = (g[-1], gp[0])
    wanted["corner (min gamma, max gamma')"] = (g[0], gp[-1])
    ys, seen = {}, set()
    for label, (a, b) in wanted.items():
        r = _nearest(rows, a, b)
        key = (r["gamma"], r["gamma_prime"])
        if key in seen or any(v is None for v in r["rd"]):
            continue
        seen.add(key)
        slope = "-" if r["slope"] is None else f"{r['slope']:.2f}"
        ys[f"({r['gamma']:g}, {r['gamma_prime']:g}) {label}: slope {slope}"] = r["rd"]
    fig = plot.curves(
        widths,
        ys or {"no finite RD": np.full(widths.shape, np.nan)},
        xlabel="width m (hidden neurons)",
        ylabel="RD = ||theta_w(T) - theta_w(0)|| / ||theta_w(0)||",
        title="relative change of the input weights at the end of training",
        style_title="(gamma, gamma')",
        logx=True,
        logy=True,
    )
    fig.set_size_inches(10, 4.8)
    return fig


def save_figures(
    results: dict[str, Any], points: Sequence[dict[str, Any]], out_dir: str | os.PathLike
) -> list[str]:
    """Writes `FIGURES` into `out_dir` (an existing folder); returns the file names."""
    out = pathlib.Path(out_dir)
    for name, make in zip(FIGURES, (phase_figure, rd_figure)):
        make(results).savefig(out / name, dpi=100)
    return list(FIGURES)
