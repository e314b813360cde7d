"""Figures of the `condensation` experiment (matplotlib).

`points` are the per-demo records (`{"demo": "a", "result": {...}}`).

- `demo_a.png`: per init scale t, the fit against the target (left) and the neurons'
  orientation-amplitude scatter before (grey) and after (colour) training (right).
- `demo_b.png`: the cosine similarity of the 5-D tanh network's input weights after training,
  neurons ordered by the leading eigenvector.
- `demo_c.png`: the number of major directions over the early steps, tanh and x tanh x, with
  the bound 2p.
- `demo_d.png`: effective width (after `merge`) against nominal width per t, log-log.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxdyn import plot

__all__ = ["FIGURES", "demo_a_figure", "demo_b_figure", "demo_c_figure", "demo_d_figure"]

FIGURES = ("demo_a.png", "demo_b.png", "demo_c.png", "demo_d.png")


def _by(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {p["demo"]: p["result"] for p in points}


def demo_a_figure(points):
    from matplotlib.figure import Figure

    a = _by(points)["a"]
    runs = a["runs"]
    fig = Figure(figsize=(11, 2.8 * len(runs) + 0.5), layout="constrained")
    axes = np.array(fig.subplots(len(runs), 2, squeeze=False))
    for row, r in zip(axes, runs):
        left, right = row
        left.plot(a["grid"], a["target"], color="0.5", linestyle="--", label="target")
        left.plot(a["grid"], r["fit"], color="C0", label="network")
        left.plot(a["x"], a["y"], "o", color="k", label="training points")
        left.set(xlabel="x", ylabel="f(x)", title=f"t = {r['t']:g}: fit (MSE {r['mse']:.1e})")
        left.legend(fontsize=7)
        right.scatter(r["orientation_0"], r["amplitude_0"], s=4, color="0.6", label="initial")
        right.scatter(r["orientation"], r["amplitude"], s=4, color="C3", label="trained")
        right.set_yscale("log")
        right.set(
            xlabel="orientation sign(b) arccos(w / ||(w, b)||) (rad)",
            ylabel="amplitude |a| ||(w, b)||",
            title=f"t = {r['t']:g}: RD {r['rd']:.2g}, {r['major_directions']} major directions",
        )
        right.legend(fontsize=7)
    return fig


def demo_b_figure(points):
    from matplotlib.figure import Figure

    b = _by(points)["b"]
    fig = Figure(figsize=(5.5, 4.6), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(np.asarray(b["similarity"]), cmap="RdBu_r", vmin=-1, vmax=1)
    fig.colorbar(im, ax=ax, label="cosine similarity of (w_k, b_k)")
    ax.set(
        xlabel="neuron (ordered by the leading eigenvector)",
        ylabel="neuron (same order)",
        title=f"5-D tanh after {b['steps']} Adam steps: {b['major_directions']} major directions",
    )
    return fig


def demo_c_figure(points):
    c = _by(points)["c"]
    act = next(iter(c))
    steps = np.asarray(c[act]["steps"], float)
    ys = {f"{a} (p = {v['multiplicity']})": v["major_directions"] for a, v in c.items()}
    fig = plot.curves(
        steps,
        ys,
        xlabel="Adam step",
        ylabel="major directions (90% of the amplitude)",
        title="condensed directions early in training; bound 2p dotted",
        style_title="activation",
    )
    ax = fig.axes[0]
    for i, v in enumerate(c.values()):
        ax.axhline(2 * v["multiplicity"], color=f"C{i}", linestyle=":", linewidth=1)
    return fig


def demo_d_figure(points):
    rows = _by(points)["d"]["rows"]
    widths = sorted({r["width"] for r in rows})
    ts = sorted({r["t"] for r in rows})
    ys = {}
    for t in ts:
        eff = {r["width"]: r["effective_width"] for r in rows if r["t"] == t}
        ys[f"t = {t:g}"] = [eff[m] for m in widths]
    ys["nominal"] = widths
    return plot.curves(
        np.asarray(widths, float),
        ys,
        xlabel="nominal width m (hidden neurons)",
        ylabel="effective width (neurons after merge)",
        title="merged network width against nominal width",
        style_title="init std m^-t",
        logx=True,
        logy=True,
    )


def save_figures(
    results: dict[str, Any], points: Sequence[dict[str, Any]], out_dir: str | os.PathLike
) -> list[str]:
    """Writes `FIGURES` into `out_dir`; returns the file names."""
    out = pathlib.Path(out_dir)
    makers = (demo_a_figure, demo_b_figure, demo_c_figure, demo_d_figure)
    for name, make in zip(FIGURES, makers):
        make(points).savefig(out / name, dpi=90)
    return list(FIGURES)
