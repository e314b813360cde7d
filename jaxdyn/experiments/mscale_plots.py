"""Figures of the `mscale` experiment (matplotlib, `Figure` objects, no pyplot state).

`points` are the records `mscale.run` stores (keys `part`, `network`, ...); figures of
parts that did not run (`--parts`) are left out.

- `errors.png`: relative L2 error over training, MscaleDNN against the plain network, for the
  Poisson (Deep Ritz) problem and the regression (log scale).
- `solutions.png`: the final networks against the exact `sin(mu x)`.
- `derivative.png`: per-peak relative error over training with plain MSE and with the
  derivative loss (seed mean), the convergence threshold dashed.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["FIGURES", "derivative_figure", "errors_figure", "save_figures", "solutions_figure"]

FIGURES = ("errors.png", "solutions.png", "derivative.png")
LABELS = {
    "mscale": "MscaleDNN",
    "dnn": "plain network",
    "mse": "MSE",
    "derivative": "MSE + derivative",
}


def _parts(points: Sequence[dict[str, Any]]) -> list[str]:
    present = {p["part"] for p in points}
    return [part for part in ("poisson", "regression") if part in present]


def _by(points: Sequence[dict[str, Any]], part: str) -> dict[str, dict[str, Any]]:
    mine = {p["network"]: p for p in points if p["part"] == part}
    if not mine:
        raise ValueError(f"`points` must hold the {part!r} points; got none.")
    return mine


def errors_figure(points: Sequence[dict[str, Any]]):
    """Relative error over steps, one panel per problem."""
    from matplotlib.figure import Figure

    parts = _parts(points) or ["poisson"]
    fig = Figure(figsize=(5.5 * len(parts), 4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(parts)))
    titles = {"poisson": "Poisson, Deep Ritz", "regression": "regression"}
    for ax, part in zip(axes, parts):
        title = titles[part]
        for net, p in _by(points, part).items():
            err = np.asarray([np.nan if e is None else e for e in p["error"]], float)
            ax.semilogy(p["steps"], err, label=f"{LABELS[net]} ({p['parameters']} parameters)")
        ax.set_xlabel("Adam step")
        ax.set_ylabel("relative L2 error ||u - u*|| / ||u*||")
        ax.set_title(f"{title}: u* = sin(mu x)")
        ax.legend(fontsize=8)
    return fig


def solutions_figure(points: Sequence[dict[str, Any]], mu: float):
    """The final networks of both problems on the test grid, with the exact solution."""
    from matplotlib.figure import Figure

    parts = _parts(points) or ["poisson"]
    fig = Figure(figsize=(5.5 * len(parts), 4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(parts)))
    for ax, part in zip(axes, parts):
        mine = _by(points, part)
        n = len(next(iter(mine.values()))["u_final"])
        x = np.linspace(-1, 1, n)
        ax.plot(x, np.sin(mu * x), color="k", linewidth=2.5, label="exact sin(mu x)")
        for net, p in mine.items():
            ax.plot(x, np.asarray(p["u_final"], float), label=LABELS[net], linewidth=1.2)
        ax.set_xlabel("x")
        ax.set_ylabel("u(x)")
        ax.set_title(f"{part}: networks at the last step")
        ax.legend(fontsize=8)
    return fig


def derivative_figure(points: Sequence[dict[str, Any]], threshold: float):
    """Seed-mean per-peak error over steps, plain MSE (left) and derivative loss (right)."""
    from matplotlib.figure import Figure

    mine = _by(points, "derivative")
    fig = Figure(figsize=(11, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, loss in zip(axes, ("mse", "derivative")):
        p = mine[loss]
        err = np.asarray(p["errors"], float).mean(axis=0)  # (T, peaks)
        for j, k in enumerate(p["peaks"]):
            ax.semilogy(p["steps"], np.maximum(err[:, j], 1e-8), label=f"DFT index {k}")
        ax.axhline(threshold, color="k", linestyle="--", linewidth=1)
        ax.set_xlabel("Adam step")
        ax.set_ylabel("relative error at the peak (magnitude)")
        ax.set_title(f"{LABELS[loss]} (weight {p['weight']:g})")
        ax.legend(fontsize=8)
    return fig


def save_figures(
    results: dict[str, Any], points: Sequence[dict[str, Any]], out_dir: str | os.PathLike
) -> list[str]:
    """Writes `FIGURES` into `out_dir`; returns their names."""
    out = pathlib.Path(out_dir)
    s = results["settings"]
    names = []
    if _parts(points):
        errors_figure(points).savefig(out / FIGURES[0], dpi=100)
        solutions_figure(points, s["mu_over_pi"] * np.pi).savefig(out / FIGURES[1], dpi=100)
        names += FIGURES[:2]
    if any(p["part"] == "derivative" for p in points):
        derivative_figure(points, s["threshold"]).savefig(out / FIGURES[2], dpi=100)
        names.append(FIGURES[2])
    return names
