"""Figures of the `two-point` experiment (matplotlib only).

`results` is the dict written to `results.json`, `points` the per-architecture dicts of
`points/*.json` (the keys `two_point.run_point` writes).

- `fits.png`: per architecture (rows), the measured `h`, `y`, `w` and loss (solid) against
  the fitted theory (dashed), first seed (the paper's Figure 2).
- `layers.png`: relative fit error and final-`h` error of the fixed point per tracked hidden
  layer of the deep leaky-ReLU net.
- `errors.png`: relative fit error per architecture (seed mean), and the altered ODEs'
  squared error against the true ODE's on the deep net.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["FIGURES", "errors_figure", "fits_figure", "layers_figure", "save_figures"]

FIGURES = ("fits.png", "layers.png", "errors.png")
TIME = "t = learning rate x epoch"
CURVES = (
    ("h = ||dh||^2", 0),
    ("y = ||dy_hat||^2", 1),
    ("w = dy_hat . (dy_hat - dy*)", 2),
)


def _first_run(p: dict[str, Any]) -> dict[str, Any] | None:
    ok = [r for r in p["runs"] if not r["diverged"]]
    return ok[0] if ok else None


def fits_figure(points: Sequence[dict[str, Any]]):
    """Measured h, y, w and loss against the fitted theory, one row per architecture."""
    from matplotlib.figure import Figure

    if not points:
        raise ValueError("`points` must hold at least one architecture; got none.")
    fig = Figure(figsize=(15, 2.4 * len(points) + 0.6), layout="constrained")
    axes = np.array(fig.subplots(len(points), 4, squeeze=False))
    for i, p in enumerate(points):
        r = _first_run(p)
        t = np.asarray(p["t"], float)
        for j in range(4):
            ax = axes[i, j]
            ax.set_xlabel(TIME)
            if r is None:
                ax.set_title(f"{p['label']}: diverged", fontsize=9)
                continue
            if j < 3:
                label, c = CURVES[j]
                ax.plot(t, np.asarray(r["observed"])[:, c], color="C0", label="network")
                ax.plot(t, np.asarray(r["fitted"])[:, c], "--", color="C3", label="theory (fit)")
                ax.set_ylabel(label)
                err = r["curve_errors"]["hyw"[c]]
                ax.set_title(
                    f"{p['label']}, layer {p['tracked_layer']}: {err:.1%} error", fontsize=8
                )
            else:
                ax.semilogy(t, r["loss"], color="C0", label="network")
                ax.semilogy(t, r["loss_theory"], "--", color="C3", label="theory (3 rates)")
                ax.set_ylabel("loss 0.5 MSE")
                ax.set_title(f"loss: {r['loss_error']:.1%} error", fontsize=8)
            if i == 0:
                ax.legend(fontsize=7)
    return fig


def layers_figure(results: dict[str, Any]):
    """Fit error per tracked layer of the deep net (a note when layers were not fitted)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    layers = results.get("per_layer")
    ax.set_xlabel("tracked hidden layer")
    ax.set_ylabel("relative error")
    if not layers:
        ax.set_title("no per-layer fits in this run (--layer-fits, leaky_relu)", fontsize=9)
        return fig
    x = [r["layer"] for r in layers]
    ax.semilogy(x, [r["relative_error"] for r in layers], "o-", label="fit of (h, y, w)")
    ax.semilogy(x, [r["h_inf_error"] for r in layers], "s--", label="h_inf vs final h")
    ax.set_title("deep leaky-ReLU net: fit error per layer", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def errors_figure(results: dict[str, Any]):
    """Fit error per architecture; the altered ODEs against the true one."""
    from matplotlib.figure import Figure

    rows = results["per_architecture"]
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    ax, ax2 = fig.subplots(1, 2)
    labels = [r["label"] for r in rows]
    errs = [np.nan if r["relative_error"] is None else r["relative_error"] for r in rows]
    colours = ["C3" if r["architecture"] == "shallow" else "C0" for r in rows]
    ax.barh(range(len(rows)), errs, color=colours)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("relative error of the fitted theory")
    ax.set_title("fit error per architecture (red: the 2-layer net)", fontsize=9)
    controls = [r for r in rows if "controls_sse" in r]
    ax2.set_ylabel("sum of squared errors")
    if controls:
        c = controls[0]
        names = ["true ODE", *c["controls_sse"]]
        vals = [c["true_sse"], *c["controls_sse"].values()]
        ax2.bar(range(len(vals)), vals, color=["C2"] + ["C7"] * (len(vals) - 1))
        ax2.set_xticks(range(len(vals)), names, rotation=20, fontsize=7)
        ax2.set_yscale("log")
        ax2.set_title(f"{c['label']}: true vs altered ODEs", fontsize=9)
    else:
        ax2.set_title("no negative controls in this run (--controls)", fontsize=9)
    ax2.set_xlabel("fitted ODE")
    return fig


def save_figures(
    results: dict[str, Any], points: Sequence[dict[str, Any]], out_dir: str | os.PathLike
) -> list[str]:
    """Writes `FIGURES` into `out_dir`; returns the file names."""
    out = pathlib.Path(out_dir)
    fits_figure(points).savefig(out / FIGURES[0], dpi=90)
    layers_figure(results).savefig(out / FIGURES[1], dpi=100)
    errors_figure(results).savefig(out / FIGURES[2], dpi=100)
    return list(FIGURES)
