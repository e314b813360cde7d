"""Figures of the `modular-addition` experiment, composed from `jaxdyn.plot` and matplotlib.

`results` is the dict written to `results.json`, `points` the per-(d, width) dicts of
`points/*.json` (the keys `modular_addition.run_point` writes).

- `orders.png`: histogram of per-frequency orders (all seeds) per (d, width) and weight
  decay, with lines at orders 4 and 6 (the paper's Figure 4).
- `factorization.png`: the factorization table (the paper's Table 2): per (d, width, weight
  decay), the share of order-4 frequencies that factor as "2 x 2" and of order-6 ones that
  factor as "2 x 3", with the factor types found, and the paper's ~95% (width 512, decay
  5e-5) beside; rows at width 512, decay 5e-5 are shaded.
- `accuracy.png`: seed-mean train and test accuracy, and loss, over epochs per (d, width);
  line style is the split, colour the weight decay.
- `fourier.png`: `|A|`, `|B|`, `|C|` (Fourier magnitudes of W_a, W_b, W_c) of one run,
  neurons sorted by their assigned frequency.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxdyn import plot

__all__ = [
    "FIGURES",
    "accuracy_figure",
    "factorization_figure",
    "factorization_rows",
    "fourier_figure",
    "orders_figure",
    "save_figures",
]

FIGURES = ("orders.png", "factorization.png", "accuracy.png", "fourier.png")
PAPER_SETTING = (512, 5e-5)  # the (width, weight decay) of the paper's Table 2
PAPER_FRACTION = 0.95  # "around 95%" of order-4/6 frequencies factor (the paper's abstract)
EPOCH = "epoch (full-batch Adam steps)"


def _groups(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    if not points:
        raise ValueError("`points` must hold at least one (d, width) point; got none.")
    return sorted(points, key=lambda p: (p["d"], p["width"]))


def _decays(point: dict[str, Any]) -> list[float]:
    return sorted({float(r["weight_decay"]) for r in point["runs"]})


def orders_figure(points: Sequence[dict[str, Any]]):
    """Histograms of per-frequency orders: rows (d, width), columns weight decay."""
    from matplotlib.figure import Figure

    groups = _groups(points)
    decays = sorted({wd for p in groups for wd in _decays(p)})
    fig = Figure(figsize=(3.8 * len(decays) + 0.5, 3.2 * len(groups) + 0.5), layout="constrained")
    axes = np.array(fig.subplots(len(groups), len(decays), squeeze=False))
    for i, p in enumerate(groups):
        for j, wd in enumerate(decays):
            ax = axes[i, j]
            orders = np.array(
                [o for r in p["runs"] if float(r["weight_decay"]) == wd for o in r["orders"]],
                int,
            )
            if orders.size:
                top = max(int(orders.max()), 7)
                ax.hist(orders, bins=np.arange(-0.5, top + 1.5, 1.0), color="C0")
                share = float(np.mean((orders == 4) | (orders == 6)))
            else:
                share = float("nan")
            for v in (4, 6):
                ax.axvline(v, color="C3", linestyle="--", linewidth=1)
            ax.set_xlabel("order of a frequency k")
            ax.set_ylabel("frequencies (all seeds)")
            ax.set_title(
                f"d={p['d']}, width {p['width']}, decay {wd:g}\n{share:.0%} of order 4 or 6",
                fontsize=9,
            )
    return fig


def _fraction(ok: int, n: int) -> str:
    return f"{ok}/{n} ({ok / n:.0%})" if n else "-"


def factorization_rows(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (d, width, weight decay), summed over seeds: for "2x2" and "2x3", how many
    frequencies had that order, how many factor, and the factor types of those that do."""
    rows = []
    for p in _groups(points):
        for wd in _decays(p):
            mine = [r for r in p["runs"] if float(r["weight_decay"]) == wd]
            row: dict[str, Any] = dict(d=int(p["d"]), width=int(p["width"]), weight_decay=wd)
            for kind in ("2x2", "2x3"):
                facs = [r["factorization"][kind] for r in mine]
                types: dict[str, int] = {}
                for f in facs:
                    for t, c in f["types"].items():
                        types[t] = types.get(t, 0) + int(c)
                row[kind] = dict(
                    frequencies=sum(int(f["frequencies"]) for f in facs),
                    factorable=sum(int(f["factorable"]) for f in facs),
                    types=dict(sorted(types.items(), key=lambda tc: -tc[1])),
                )
            rows.append(row)
    return rows


def factorization_figure(points: Sequence[dict[str, Any]]):
    """The factorization table: one row per (d, width, weight decay), the paper's below."""
    from matplotlib.figure import Figure

    rows = factorization_rows(points)
    header = [
        "d",
        "width",
        "weight decay",
        "order 4: factor 2x2",
        "2x2 types",
        "order 6: factor 2x3",
        "2x3 types",
        "order 4 or 6: factor",
    ]
    cells, shade = [], []
    for r in rows:
        two, three = r["2x2"], r["2x3"]
        n = two["frequencies"] + three["frequencies"]
        ok = two["factorable"] + three["factorable"]
        cells.append(
            [
                str(r["d"]),
                str(r["width"]),
                f"{r['weight_decay']:g}",
                _fraction(two["factorable"], two["frequencies"]),
                ", ".join(f"{t}: {c}" for t, c in two["types"].items()) or "-",
                _fraction(three["factorable"], three["frequencies"]),
                ", ".join(f"{t}: {c}" for t, c in three["types"].items()) or "-",
                _fraction(ok, n),
            ]
        )
        shade.append((r["width"], r["weight_decay"]) == PAPER_SETTING)
    width, wd = PAPER_SETTING
    cells.append(["paper", str(width), f"{wd:g}", "", "", "", "", f"~{PAPER_FRACTION:.0%}"])
    shade.append(False)
    fig = Figure(figsize=(15, 0.32 * len(cells) + 1.4), layout="constrained")
    ax = fig.subplots()
    # a bare table: no ticks or frame, but labels that say what the rows and columns are
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel("factorable / frequencies of that order (all seeds); types: how many of each")
    ax.set_ylabel("(d, width, weight decay)")
    table = ax.table(cellText=cells, colLabels=header, loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(list(range(len(header))))
    for (i, _), cell in table.get_celld().items():
        if i == 0:
            cell.set_text_props(weight="bold")
        elif shade[i - 1]:
            cell.set_facecolor("#dde8f5")
    ax.set_title(
        "Frequencies of order 4 / 6 whose neurons factor as 2 x 2 / 2 x 3 (all seeds; "
        "the authors' error <= 0.1 sqrt(3 q)); shaded: the paper's width 512, decay 5e-5",
        fontsize=9,
    )
    return fig


def accuracy_figure(points: Sequence[dict[str, Any]]):
    """Seed-mean accuracy (top) and projected-MSE loss (bottom) over epochs, per (d, width)."""
    from matplotlib.figure import Figure

    groups = _groups(points)
    fig = Figure(figsize=(6 * len(groups) + 0.5, 8.5), layout="constrained")
    axes = np.array(fig.subplots(2, len(groups), squeeze=False))
    for j, p in enumerate(groups):
        epochs = np.asarray(p["epochs"], float)
        for row, (what, ylabel, logy) in enumerate(
            [("accuracy", "accuracy (arg-max class)", False), ("loss", "projected MSE", True)]
        ):
            ys = {}
            for wd in _decays(p):
                mine = [r for r in p["runs"] if float(r["weight_decay"]) == wd]
                for split in ("train", "test"):
                    curves = np.array([r["history"][f"{split}_{what}"] for r in mine], float)
                    ys[(split, f"{wd:g}")] = curves.mean(axis=0)
            plot.curves(
                epochs,
                ys,
                xlabel=EPOCH,
                ylabel=ylabel,
                title=f"d={p['d']}, width {p['width']}: {what} (mean over seeds)",
                style_title="split",
                colour_title="weight decay",
                logy=logy,
                legend=j == 0,
                ax=axes[row, j],
            )
    return fig


def fourier_figure(points: Sequence[dict[str, Any]]):
    """`|A|`, `|B|`, `|C|` of the stored example run of the first (d, width)."""
    from matplotlib.figure import Figure

    p = _groups(points)[0]
    ex = p["example"]
    assignment = np.asarray(ex["assignment"], int)
    order = np.argsort(np.where(assignment < 0, 10**9, assignment), kind="stable")
    fig = Figure(figsize=(13, 4.5), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (key, w) in zip(axes, [("A", "W_a"), ("B", "W_b"), ("C", "W_c")]):
        mag = np.asarray(ex[key], float)[order]
        im = ax.imshow(mag.T, aspect="auto", origin="lower", interpolation="nearest", cmap="magma")
        bar = fig.colorbar(im, ax=ax, label=f"|Fourier coefficient| of {w}")
        bar.ax.set_title(f"|{key}|", fontsize=8)  # every axes labelled, the colour bar's too
        bar.ax.set_xlabel("colour scale", fontsize=7)
        ax.set_xlabel("neuron (sorted by assigned frequency)")
        ax.set_ylabel("frequency k")
        ax.set_title(
            f"{w}: d={p['d']}, width {p['width']}, decay {ex['weight_decay']:g}, seed {ex['seed']}",
            fontsize=9,
        )
    return fig


def save_figures(
    results: dict[str, Any], points: Sequence[dict[str, Any]], out_dir: str | os.PathLike
) -> list[str]:
    """Writes `FIGURES` into `out_dir` (an existing folder); returns the file names."""
    out = pathlib.Path(out_dir)
    makers = (orders_figure, factorization_figure, accuracy_figure, fourier_figure)
    for name, make in zip(FIGURES, makers):
        make(points).savefig(out / name, dpi=100)
    return list(FIGURES)
