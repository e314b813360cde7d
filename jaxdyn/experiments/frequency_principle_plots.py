"""Figures of the `frequency-principle` experiment (matplotlib only here).

`results` is the dict written to `results.json`; `record` holds the points:
`network`, `linearized` (one per seed), `jacobi`, and the grid `x` and `target`.

- `heatmap.png`: relative error at each peak over steps (peaks x steps, as in the papers)
  for the network (first seed), its linearization (first seed) and damped Jacobi.
- `real_space.png`: the target and the network (first seed) at a few steps.
- `frequency_space.png`: |DFT| of the target and of the network at the same steps.
- `jacobi.png`: per-peak error curves: network, linearization and Jacobi side by side.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np

__all__ = [
    "FIGURES",
    "frequency_space_figure",
    "heatmap_figure",
    "jacobi_figure",
    "real_space_figure",
    "save_figures",
    "snapshot_indices",
]

FIGURES = ("heatmap.png", "real_space.png", "frequency_space.png", "jacobi.png")


def _figure(width: float, height: float):
    """A figure with fixed margins: a layout engine (constrained) costs ~1 s per figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=0.06, right=0.97, bottom=0.16, top=0.88, wspace=0.4)
    return fig


def snapshot_indices(steps: list, count: int = 4) -> list[int]:
    """`count` recorded indices spread over the run (first and last included)."""
    t = len(steps)
    return sorted({int(round(i)) for i in np.linspace(0, t - 1, count)})


def _peaks(results: dict[str, Any]) -> list[int]:
    return list(results["peaks"]["dft_index"])


def heatmap_figure(results: dict[str, Any], record: dict[str, Any]):
    """Error at each peak (rows) over steps (columns) for the three methods."""
    from matplotlib.colors import LogNorm

    peaks = _peaks(results)
    panels = [
        (
            "network (Adam), seed 0",
            record["network"]["steps"],
            record["network"]["errors"][0],
            False,
            "Adam step",
        ),
        (
            "linearized network (GD, closed form)",
            record["linearized"][0]["steps"],
            record["linearized"][0]["errors"],
            True,
            "GD step",
        ),
        (
            "damped Jacobi",
            record["jacobi"]["iterations"],
            record["jacobi"]["errors"],
            True,
            "Jacobi iteration",
        ),
    ]
    fig = _figure(15, 3.8)
    axes = fig.subplots(1, 3)
    for ax, (title, steps, errors, logx, xlabel) in zip(axes, panels):
        e = np.clip(np.asarray(errors, float).T, 1e-4, 10)  # (P, T)
        s = np.asarray(steps, float)
        if logx:
            s = np.maximum(s, 0.5)  # step 0 drawn at 0.5 on the log axis
        im = ax.pcolormesh(
            s, np.arange(len(peaks)), e, norm=LogNorm(1e-3, 1), shading="nearest", cmap="viridis"
        )
        ax.set_yticks(range(len(peaks)), [f"k={k}" for k in peaks])
        if logx:
            ax.set_xscale("log")
        ax.set(xlabel=xlabel, ylabel="peak (DFT index)", title=title)
        fig.colorbar(im, ax=ax, label="relative error at the peak")
    return fig


def real_space_figure(results: dict[str, Any], record: dict[str, Any]):
    x = np.asarray(record["x"])
    steps = record["network"]["steps"]
    idx = snapshot_indices(steps)
    fig = _figure(4 * len(idx), 3.4)
    axes = fig.subplots(1, len(idx))
    for ax, i in zip(np.atleast_1d(axes), idx):
        ax.plot(x, record["target"], color="0.5", linewidth=2, label="target")
        ax.plot(x, record["network"]["outputs_first_seed"][i], color="C3", label="network")
        ax.set(xlabel="x", ylabel="f(x)", title=f"Adam step {steps[i]}")
        ax.legend(fontsize=8)
    return fig


def frequency_space_figure(results: dict[str, Any], record: dict[str, Any]):
    steps = record["network"]["steps"]
    idx = snapshot_indices(steps)
    target = np.abs(np.fft.rfft(record["target"]))
    top = min(target.size, 4 * max(_peaks(results)) + 4)
    fig = _figure(4 * len(idx), 3.4)
    axes = fig.subplots(1, len(idx))
    for ax, i in zip(np.atleast_1d(axes), idx):
        out = np.abs(np.fft.rfft(record["network"]["outputs_first_seed"][i]))
        ax.plot(range(top), target[:top], color="0.5", linewidth=2, marker="o", label="target")
        ax.plot(range(top), out[:top], color="C3", marker=".", label="network")
        for k in _peaks(results):
            ax.axvline(k, color="0.8", linestyle=":", linewidth=1)
        ax.set(xlabel="frequency (DFT index k)", ylabel="|DFT|", title=f"Adam step {steps[i]}")
        ax.legend(fontsize=8)
    return fig


def jacobi_figure(results: dict[str, Any], record: dict[str, Any]):
    peaks = _peaks(results)
    fig = _figure(15, 3.8)
    axes = fig.subplots(1, 3)
    panels = [
        (
            "network (Adam), seed 0: low first",
            record["network"]["steps"],
            record["network"]["errors"][0],
            "Adam step",
            False,
        ),
        (
            "linearized (GD): low first",
            record["linearized"][0]["steps"],
            record["linearized"][0]["errors"],
            "GD step",
            True,
        ),
        (
            "damped Jacobi: high first",
            record["jacobi"]["iterations"],
            record["jacobi"]["errors"],
            "Jacobi iteration",
            True,
        ),
    ]
    thr = results["settings"]["threshold"]
    for ax, (title, steps, errors, xlabel, logx) in zip(axes, panels):
        e = np.asarray(errors, float)
        s = np.asarray(steps, float)
        keep = s > 0 if logx else np.ones_like(s, bool)
        for p, k in enumerate(peaks):
            ax.plot(s[keep], np.maximum(e[keep, p], 1e-12), label=f"k={k}")
        ax.axhline(thr, color="0.5", linestyle="--", linewidth=1)
        ax.set_yscale("log")
        if logx:
            ax.set_xscale("log")
        ax.set(xlabel=xlabel, ylabel="relative error at the peak", title=title)
        ax.legend(fontsize=8)
    return fig


def save_figures(
    results: dict[str, Any], record: dict[str, Any], out_dir: str | os.PathLike
) -> list[str]:
    """Writes `FIGURES` into `out_dir`; returns their file names."""
    out = pathlib.Path(out_dir)
    makers = (heatmap_figure, real_space_figure, frequency_space_figure, jacobi_figure)
    for name, make in zip(FIGURES, makers):
        make(results, record).savefig(out / name, dpi=72)
    return list(FIGURES)
