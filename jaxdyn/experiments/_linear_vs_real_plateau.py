"""`jaxdyn run linear-vs-real --study plateau`: the plateau RMSE between a network and its
linearization against width, for several architectures and training-set sizes (Lee et al.
2019, Figure 8), with a fitted log-log slope per (architecture, size).

Every (model, n_train, width, seed) point is one `linear_vs_real.run_point` run, kept as its
scalar metrics (the curves of the width study are not stored), written atomically by
`jaxdyn.sweep`, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import jaxdyn
from jaxdyn import results, sweep

# The scalar metrics a plateau point keeps (and needs, to count as finished).
POINT_METRICS = (
    "plateau_rmse",
    "kernel_change",
    "weight_change",
    "final_loss_net",
    "test_accuracy_net",
    "test_accuracy_lin",
    "critical_learning_rate",
)


def _value(v) -> float:
    return np.nan if v is None else float(v)


def summarize(points: list[dict[str, Any]], widths: list[int]) -> list[dict[str, Any]]:
    """Per (model, n_train): seed means / stds of the plateau RMSE at each width and the
    log-log slope against width (None when a mean is not positive and finite)."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for p in points:
        groups.setdefault((p["model"], int(p["n_train"])), []).append(p)
    rows = []
    for (model, n_train), group in groups.items():
        table = np.array(
            [[_value(p["plateau_rmse"]) for p in group if p["width"] == w] for w in widths]
        )
        mean, std = table.mean(axis=1), table.std(axis=1)
        fit = None
        if np.all(np.isfinite(mean)) and np.all(mean > 0):
            fit = jaxdyn.compare.fit_loglog_slope(np.array(widths, np.float64), mean)._asdict()
        rows.append(
            dict(
                model=model,
                n_train=n_train,
                widths=list(widths),
                plateau_rmse_mean=mean.tolist(),
                plateau_rmse_std=std.tolist(),
                slope_fit=fit,
                plateau_rmse_slope=None if fit is None else fit["slope"],
            )
        )
    return rows


def run_plateau(
    settings,
    out,
    progress,
    *,
    run_point: Callable[..., dict[str, Any]],
    load_data: Callable[[Any], tuple],
    stored: dict[str, Any],
    name: str,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Runs the study; returns `(results dict without figures, points)`.

    Every training set is loaded before `out` is claimed (a missing dataset leaves no trace).
    """
    t0 = time.perf_counter()
    sizes = sorted(set(settings.plateau_n_train))
    models = list(dict.fromkeys(settings.plateau_models))
    data = {
        (m, n): load_data(dataclasses.replace(settings, model=m, n_train=n))
        for m in models
        for n in sizes
    }
    widths = sorted(set(settings.widths))
    seeds = list(range(settings.seed, settings.seed + settings.seeds))

    def point(model, n_train, width, seed):
        one = dataclasses.replace(settings, model=model, n_train=n_train, study="width")
        full = run_point(one, data[model, n_train], width, seed)
        return {m: full[m] for m in POINT_METRICS}

    points = sweep.sweep(
        point,
        {"model": models, "n_train": sizes, "width": widths, "seed": seeds},
        out,
        settings=stored,
        required=POINT_METRICS,
        progress=progress,
        name="out",
    )
    res = dict(
        experiment=name,
        study="plateau",
        settings=stored,
        environment=results.environment(),
        wall_seconds=time.perf_counter() - t0,
        plateau=summarize(points, widths),
    )
    return res, points


def summary_lines(res: dict[str, Any]) -> list[str]:
    """The plateau RMSE per (model, n_train) and width, and the fitted slopes."""
    rows = res["plateau"]
    widths = rows[0]["widths"]
    lines = [f"{'model':>6} {'n_train':>8} " + " ".join(f"{w:>10}" for w in widths) + "  slope"]
    for r in rows:
        slope = "n/a" if r["plateau_rmse_slope"] is None else f"{r['plateau_rmse_slope']:+.2f}"
        values = " ".join(
            f"{'nan' if v is None else format(v, '.3e'):>10}" for v in r["plateau_rmse_mean"]
        )
        lines.append(f"{r['model']:>6} {r['n_train']:>8} {values}  {slope}")
    lines.append("plateau RMSE(network, linearized) on test points; slope: log-log fit vs width")
    return lines
