"""Experiment `rich-lazy`: the initial weight scale decides where representations end up.

van Rossem & Saxe (ICML 2024), Figure 3. The two-point theory's fixed point is
`h_inf = A_high / 2 + sqrt(A_high^2 / 4 + A_low^2)`: small initial weights end near
`A_low = sqrt(eta_h / eta_y) |dx| |dy|` (set by the task: rich), large ones near
`A_high` (the conserved quantity, set by the initialization: lazy).

(a) Gain sweep: a deep leaky-ReLU MLP on the two-point task for every (gain, seed), all in one
    vmapped run; each run's tracked-layer trajectory is fitted, and its final `h` is put
    beside the theory's `h_inf`, `A_low` and `A_high`.
(b) The non-circular test: rates fitted on the two-point task (`--grid-gain`) and averaged
    over seeds predict, from each run's measured start, the final `||dh||^2` on a grid of
    input and output separations (x in {-dx, 0}, targets {0.6, 0.6 + dy}); every (dx, dy,
    seed) trains in one vmapped run. R^2 of the seed-mean prediction against the
    seed-mean measurement.

Time is `t = lr * epoch`. Three resumable points: `gains`, `base`, `grid`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import results, sweep
from jaxdyn.analysis import representation as rep
from jaxdyn.experiments import _representation_common as common
from jaxdyn.experiments._runner import (
    ExperimentSettings,
    fail,
    finish,
    option,
    settings_dict,
    validate,
)

NAME = "rich-lazy"
SUMMARY = "rich vs lazy: final representational distance against A_low / A_high (van Rossem & Saxe)"

PAPER = dict(
    gain_sweep="small gains end at A_low, large gains at A_high (Fig. 3)",
    grid="the averaged rates predict the final distance across dx, dy",
)


@dataclasses.dataclass(frozen=True)
class Settings(ExperimentSettings):
    """Settings of one run; every field is a command-line option."""

    depth: int = option(6, "hidden layers of the leaky-ReLU MLP", minimum=1)
    width: int = option(100, "hidden units per layer", minimum=2)
    layer: int = option(3, "tracked hidden layer", minimum=1)
    gains: tuple[float, ...] = option(
        (0.7, 0.85, 1.0, 1.2, 1.4),
        "Xavier gains of the sweep (a)",
        minimum=0,
        strict_min=True,
        min_len=2,
    )
    grid_gain: float = option(1.0, "gain of the grid test (b)", minimum=0, strict_min=True)
    grid_dx: tuple[float, ...] = option(
        (0.5, 0.75, 1.0, 1.25, 1.5), "input separations dx of (b)", minimum=0, strict_min=True
    )
    grid_dy: tuple[float, ...] = option(
        (0.0, 0.25, 0.5, 0.75, 1.0), "target separations dy of (b)", minimum=0
    )
    learning_rate: float = option(0.005, "full-batch SGD learning rate", minimum=0, strict_min=True)
    epochs: int = option(10000, "full-batch SGD epochs", minimum=1)
    record_every: int = option(100, "record every this many epochs", minimum=1)
    seeds: int = option(3, "seeds per gain / grid cell", minimum=1)
    grid: bool = option(True, "run the grid test (b)")
    fit_grid: int = option(13, "start-grid points per rate of every fit", minimum=2)
    dtype: Literal["float32", "float64"] = option("float32", "floating-point type of training")

    def check(self, name: Callable[[str], str]) -> None:
        if self.layer > self.depth:
            fail(name("layer"), f"a hidden layer in 1..{self.depth}", repr(self.layer))
        for field in ("gains", "grid_dx", "grid_dy"):
            v = getattr(self, field)
            if len(set(v)) != len(v):
                fail(name(field), "distinct values", repr(list(v)))
        if self.epochs % self.record_every or self.epochs // self.record_every < 2:
            fail(
                name("epochs"),
                f"a multiple of {name('record_every')} ({self.record_every}), at least twice it",
                repr(self.epochs),
            )


PRESETS: dict[str, dict[str, Any]] = {
    "small": dict(
        depth=3,
        width=32,
        layer=2,
        gains=(0.4, 1.0, 2.5),
        grid_dx=(0.5, 1.5),
        grid_dy=(0.0, 1.0),
        epochs=1000,
        record_every=100,
        seeds=2,
    ),
    "paper": dict(depth=20, width=500, layer=10, epochs=20000, record_every=200, seeds=5),
}


def _model(settings: Settings) -> rep.RepresentationModel:
    return rep.mlp(1, settings.width, settings.depth, 1)


def _train(settings: Settings, seeds, gains, x, y, per_run_data=False) -> dict[str, Any]:
    model = _model(settings)
    dtype = jnp.dtype(settings.dtype)
    params0 = common.init_many(model, seeds, gains, dtype)

    def observe(p, xr=None):
        return model.hidden_fn(p, xr if per_run_data else xj, settings.layer)

    xj = jnp.asarray(x, dtype)
    return common.train_many(
        model,
        params0,
        xj,
        jnp.asarray(y, dtype),
        learning_rate=settings.learning_rate,
        epochs=settings.epochs,
        record_every=settings.record_every,
        observe=observe,
        per_run_data=per_run_data,
    )


def gain_point(settings: Settings) -> dict[str, Any]:
    """(a): every (gain, seed) in one vmapped run, each fitted; JSON-ready."""
    seeds = range(settings.seed, settings.seed + settings.seeds)
    runs_of = [(float(g), s) for g in settings.gains for s in seeds]
    t0 = time.perf_counter()
    run = _train(
        settings, [s for _, s in runs_of], [g for g, _ in runs_of], common.X_PAIR, common.Y_PAIR
    )
    train_seconds = time.perf_counter() - t0
    dx2, dy2 = common.separations(common.X_PAIR, common.Y_PAIR)
    runs = []
    for r, (gain, seed) in enumerate(runs_of):
        if not run["finite"][r]:
            runs.append(dict(gain=gain, seed=seed, diverged=True))
            continue
        obs, _ = common.pair_observables(run["observed"][r], run["f_train"][r], common.Y_PAIR)
        fit = common.fit_run(obs, run["t"], dx2, dy2, settings.fit_grid)
        fit.pop("fitted")
        runs.append(dict(gain=gain, seed=seed, diverged=False, h0=float(obs[0, 0]), **fit))
    return dict(runs=runs, t=run["t"].tolist(), train_seconds=train_seconds)


def base_point(settings: Settings) -> dict[str, Any]:
    """(b), first half: the rates at `grid_gain` on the two-point task, per seed."""
    seeds = list(range(settings.seed, settings.seed + settings.seeds))
    run = _train(settings, seeds, [settings.grid_gain] * len(seeds), common.X_PAIR, common.Y_PAIR)
    dx2, dy2 = common.separations(common.X_PAIR, common.Y_PAIR)
    rates = []
    for r, seed in enumerate(seeds):
        if run["finite"][r]:
            obs, _ = common.pair_observables(run["observed"][r], run["f_train"][r], common.Y_PAIR)
            fit = rep.fit_rates(obs, run["t"], dx2, dy2, grid_points=settings.fit_grid)
            rates.append(dict(seed=seed, eta_h=fit.eta_h, eta_y=fit.eta_y))
    if not rates:
        fail("--grid-gain", "a gain at which the base runs stay finite", repr(settings.grid_gain))
    return dict(rates=rates)


def grid_point(settings: Settings, eta_h: float, eta_y: float) -> dict[str, Any]:
    """(b), second half: every (dx, dy, seed) in one vmapped run; predicted vs measured."""
    seeds = list(range(settings.seed, settings.seed + settings.seeds))
    cells = [(float(dx), float(dy)) for dx in settings.grid_dx for dy in settings.grid_dy]
    runs_of = [(dx, dy, s) for dx, dy in cells for s in seeds]
    x = np.stack([np.array([[-dx], [0.0]]) for dx, _, _ in runs_of])
    y = np.stack([np.array([[0.6], [0.6 + dy]]) for _, dy, _ in runs_of])
    run = _train(
        settings, [s for *_, s in runs_of], [settings.grid_gain] * len(runs_of), x, y, True
    )
    rows = []
    for r, (dx, dy, seed) in enumerate(runs_of):
        if not run["finite"][r]:
            rows.append(dict(dx=dx, dy=dy, seed=seed, diverged=True))
            continue
        obs, _ = common.pair_observables(run["observed"][r], run["f_train"][r], y[r])
        fp = rep.fixed_point(obs[0], eta_h, eta_y, dx**2, dy**2)
        rows.append(
            dict(
                dx=dx,
                dy=dy,
                seed=seed,
                diverged=False,
                h0=float(obs[0, 0]),
                h_final=float(obs[-1, 0]),
                h_pred=float(fp.h_inf),
                a_low=float(fp.a_low),
                a_high=float(fp.a_high),
            )
        )
    return dict(runs=rows)


def r_squared(pred: np.ndarray, meas: np.ndarray) -> float:
    """`1 - sum (meas - pred)^2 / sum (meas - mean meas)^2`."""
    pred, meas = np.asarray(pred, float), np.asarray(meas, float)
    total = float(np.sum((meas - meas.mean()) ** 2))
    return float(1 - np.sum((meas - pred) ** 2) / total) if total > 0 else float("nan")


def _mean(v: Sequence[float]) -> float | None:
    v = [x for x in v if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


def summarize_gains(point: dict[str, Any], gains: Sequence[float]) -> list[dict[str, Any]]:
    """Seed means per gain of the final h, h_inf, A_low, A_high and their ratios."""
    rows = []
    for g in gains:
        mine = [r for r in point["runs"] if r["gain"] == float(g) and not r["diverged"]]
        row = dict(gain=float(g), runs=len(mine))
        for k in ("h0", "h_final", "h_inf", "a_low", "a_high", "relative_error", "eta_h", "eta_y"):
            row[k] = _mean([r[k] for r in mine])
        if mine:
            row["h_final_over_a_low"] = _mean([r["h_final"] / r["a_low"] for r in mine])
            row["h_final_over_a_high"] = _mean(
                [r["h_final"] / r["a_high"] if r["a_high"] > 0 else np.nan for r in mine]
            )
            row["h_inf_error"] = _mean([r["h_inf_error"] for r in mine])
        rows.append(row)
    return rows


def summarize_grid(point: dict[str, Any]) -> dict[str, Any]:
    """Seed means per (dx, dy) cell and the R^2 of prediction against measurement."""
    cells = {}
    for r in point["runs"]:
        if not r["diverged"]:
            cells.setdefault((r["dx"], r["dy"]), []).append(r)
    rows = [
        dict(
            dx=dx,
            dy=dy,
            h_final=_mean([r["h_final"] for r in rs]),
            h_pred=_mean([r["h_pred"] for r in rs]),
            h0=_mean([r["h0"] for r in rs]),
        )
        for (dx, dy), rs in sorted(cells.items())
    ]
    pred = np.array([r["h_pred"] for r in rows])
    meas = np.array([r["h_final"] for r in rows])
    per_run = [r for r in point["runs"] if not r["diverged"]]
    return dict(
        cells=rows,
        r_squared=r_squared(pred, meas) if len(rows) > 1 else None,
        r_squared_per_run=r_squared([r["h_pred"] for r in per_run], [r["h_final"] for r in per_run])
        if len(per_run) > 1
        else None,
        diverged=sum(r["diverged"] for r in point["runs"]),
    )


def run(
    settings: Settings,
    out: str | os.PathLike,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Runs (a) and (b) (resumable points `gains`, `base`, `grid`), figures, results.json."""
    validate(settings)
    progress = progress or (lambda done, total, what: None)
    total = 3 if settings.grid else 1
    with jax.enable_x64(True):
        t0 = time.perf_counter()
        stored = settings_dict(settings)
        sw = sweep.open_sweep(out, stored, name="--out")
        gains = sw.point({"part": "gains"}, lambda: gain_point(settings), required=("runs",))
        progress(1, total, "gain sweep")
        res = dict(
            experiment=NAME,
            settings=stored,
            environment=results.environment(),
            paper=PAPER,
            gain_sweep=summarize_gains(gains, settings.gains),
        )
        points = dict(gains=gains)
        if settings.grid:
            base = sw.point({"part": "base"}, lambda: base_point(settings), required=("rates",))
            progress(2, total, "grid rates")
            eta_h = float(np.mean([r["eta_h"] for r in base["rates"]]))
            eta_y = float(np.mean([r["eta_y"] for r in base["rates"]]))
            grid = sw.point(
                {"part": "grid"}, lambda: grid_point(settings, eta_h, eta_y), required=("runs",)
            )
            progress(3, total, "grid")
            res["grid"] = dict(eta_h=eta_h, eta_y=eta_y, base=base["rates"], **summarize_grid(grid))
            points.update(base=base, grid=grid)
        res["wall_seconds"] = time.perf_counter() - t0
    from jaxdyn.experiments import rich_lazy_plots

    return finish(out, res, points, rich_lazy_plots.save_figures)


def summary_lines(res: dict[str, Any]) -> Sequence[str]:
    """Human-readable summary printed by the CLI."""

    def f(v):
        return "-" if v is None else f"{v:.3g}"

    lines = [f"{'gain':>6} {'h_final':>9} {'h_inf':>9} {'A_low':>9} {'A_high':>9}"]
    for r in res["gain_sweep"]:
        lines.append(
            f"{r['gain']:>6.3g} {f(r['h_final']):>9} {f(r['h_inf']):>9} "
            f"{f(r['a_low']):>9} {f(r['a_high']):>9}"
        )
    if "grid" in res:
        lines.append(
            f"grid: R^2 of predicted vs measured final h = {f(res['grid']['r_squared'])} "
            f"(seed means), {f(res['grid']['r_squared_per_run'])} (per run)"
        )
    return lines
