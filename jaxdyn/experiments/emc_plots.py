"""Figures of the `emc` experiment. `records` are the per-run records of results.json.

- `emc_vs_params.png`: EMC against parameter count, log-log, one marker style per variant
  (architecture, labels, inputs, optimizer, activation), with the `n = parameters` line.
- `emc_per_classes.png`: EMC against the number of classes, semantic and random labels
  (drawn from every run; only the classes study varies the count).
- `gap_vs_generalization.png`: the EMC gap `(semantic - random) / semantic` against the
  generalization gap (train minus test accuracy at the EMC), with their correlation.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "FIGURES",
    "classes_figure",
    "gap_figure",
    "params_figure",
    "save_figures",
]

FIGURES = ("emc_vs_params.png", "emc_per_classes.png", "gap_vs_generalization.png")


def _variant(r: dict[str, Any]) -> str:
    bits = [r["architecture"], f"{r['labels']} labels"]
    for field, default in (("inputs", "real"), ("optimizer", "sgd"), ("activation", "relu")):
        if r[field] != default:
            bits.append(r[field])
    if r["classes"] != 10:
        bits.append(f"{r['classes']} classes")
    return ", ".join(bits)


def params_figure(records: Sequence[dict[str, Any]]):
    """EMC against parameter count per variant (log-log) with the n = parameters line."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.8), layout="constrained")
    ax = fig.add_subplot()
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(_variant(r), []).append(r)
    markers = "osD^v<>ph*"
    for i, (label, rs) in enumerate(sorted(groups.items())):
        rs = sorted(rs, key=lambda r: r["num_params"])
        p = np.array([r["num_params"] for r in rs], float)
        e = np.array([np.nan if r["emc"] is None else r["emc"] for r in rs], float)
        lo = np.array([min(s for s in r["per_seed_emc"] if s is not None) if any(
            s is not None for s in r["per_seed_emc"]) else np.nan for r in rs])  # fmt: skip
        hi = np.array([max(s for s in r["per_seed_emc"] if s is not None) if any(
            s is not None for s in r["per_seed_emc"]) else np.nan for r in rs])  # fmt: skip
        ax.errorbar(
            p, e, yerr=[np.clip(e - lo, 0, None), np.clip(hi - e, 0, None)],
            marker=markers[i % len(markers)], capsize=3, label=label,
        )  # fmt: skip
    for r in records:
        if r["status"] == "all_fit":  # everything up to n_max fitted: the EMC is a lower bound
            ax.annotate("≥", (r["num_params"], r["emc"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=9)  # fmt: skip
    allp = [r["num_params"] for r in records]
    span = np.array([min(allp) / 1.5, max(allp) * 1.5])
    ax.plot(span, span, "k--", linewidth=1, label="n = parameters")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("EMC (largest n fitted to 100%)")
    ax.set_title(
        "Effective model complexity against parameter count\n"
        "(bars: per-seed range; ≥: all sizes up to n_max fitted)"
    )
    ax.legend(fontsize=7)
    return fig


def classes_figure(records: Sequence[dict[str, Any]]):
    """EMC against the number of classes, per model, semantic and random labels."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.5), layout="constrained")
    ax = fig.add_subplot()
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        if r["inputs"] == "real" and r["optimizer"] == "sgd":
            key = (r["architecture"], r["width"], r["depth"], r["activation"], r["labels"])
            groups.setdefault(key, []).append(r)
    for (arch, w, d, act, labels), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["classes"])
        ax.plot(
            [r["classes"] for r in rs],
            [np.nan if r["emc"] is None else r["emc"] for r in rs],
            marker="o",
            linestyle="-" if labels == "semantic" else "--",
            label=f"{arch} w{w} d{d} {act}, {labels}",
        )
    ax.set_yscale("log")
    ax.set_xlabel("number of classes (merged at random)")
    ax.set_ylabel("EMC")
    ax.set_title("EMC per class count (solid: semantic, dashed: random labels)")
    ax.legend(fontsize=7)
    return fig


def gap_figure(rows: Sequence[dict[str, Any]], correlation: float | None):
    """EMC gap against generalization gap across models, with the Pearson correlation."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for r in rows:
        ax.scatter(r["emc_gap"], r["generalization_gap"])
        ax.annotate(r["model"].split(",")[0], (r["emc_gap"], r["generalization_gap"]), fontsize=6)
    r_text = "n/a (fewer than 3 models)" if correlation is None else f"{correlation:.2f}"
    ax.set_xlabel("EMC gap (semantic - random) / semantic")
    ax.set_ylabel("generalization gap (train - test accuracy at the EMC)")
    ax.set_title(f"EMC gap vs generalization gap, Pearson r = {r_text}")
    return fig


def save_figures(
    results: dict[str, Any], records: Sequence[dict[str, Any]], out_dir: str | os.PathLike
) -> list[str]:
    """Writes `FIGURES` into `out_dir`; returns the file names."""
    out = pathlib.Path(out_dir)
    figs = (
        params_figure(records),
        classes_figure(records),
        gap_figure(results["generalization"], results["generalization_correlation"]),
    )
    for name, fig in zip(FIGURES, figs):
        fig.savefig(out / name, dpi=100)
    return list(FIGURES)
