"""Experiment `phase-diagram`: the linear / critical / condensed regimes of two-layer networks.

Luo, Xu, Ma and Zhang (JMLR 2021). For every (gamma, gamma') of a grid and every width m the
two-layer network `condensation.two_layer(m, gamma=..., gamma_prime=...)` (anti-symmetric
initialization, so `f(theta_0) = 0`) is trained on the authors' 1-D data (x = -0.5, 0, 0.5 ->
y = -0.5, 0, 1) by full-batch gradient descent with the per-point rate rule of
`condensation.fit` until `mean((f - y)^2) < mse_target` or `max_steps`. The relative change of
the input weights (w, b) at the end, `RD = relative_distance(theta_T, theta_0, part="input")`,
is fitted against m on log-log axes (`phase_slope`): a falling RD is the linear regime, a
flat one critical, a growing one condensed; the regime is compared with the paper's
boundaries (`theoretical_regime`).

Every grid point of one width trains as ONE vmapped run (`condensation.fit_grid`); each
(width, seed) is one resumable point file.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import results, sweep
from jaxdyn.analysis import condensation
from jaxdyn.experiments._runner import (
    ExperimentSettings,
    fail,
    finish,
    option,
    precision,
    settings_dict,
    validate,
)

NAME = "phase-diagram"
SUMMARY = "RD slope against width over (gamma, gamma'): linear, critical, condensed (Luo et al.)"

X_TRAIN = ((-0.5,), (0.0,), (0.5,))
Y_TRAIN = ((-0.5,), (0.0,), (1.0,))
AWAY = 0.2  # grid points at least this far from a boundary line count for the agreement


def _grid(lo: float, hi: float, step: float) -> tuple[float, ...]:
    n = int(round((hi - lo) / step))
    return tuple(round(lo + i * step, 6) for i in range(n + 1))


@dataclasses.dataclass(frozen=True)
class Settings(ExperimentSettings):
    """Settings of one run; every field is a command-line option (`--gamma`, `--widths`, ...)."""

    gamma: tuple[float, ...] = option(
        (0.25, 0.75, 1.25, 1.75), "gamma values (kappa = m^-gamma)", metavar="G"
    )
    gamma_prime: tuple[float, ...] = option(
        (-0.75, -0.25, 0.25, 0.75, 1.25), "gamma' values (kappa' = m^-gamma')", metavar="GP"
    )
    widths: tuple[int, ...] = option(
        (1000, 2000, 4000, 8000, 16000),
        "widths m (even: anti-symmetric pairs)",
        minimum=2,
        min_len=2,
        why="to fit slopes against width",
    )
    activation: Literal["relu", "tanh", "xtanh"] = option("relu", "activation")
    rule: Literal["adaptive", "authors"] = option(
        "adaptive", "learning-rate rule (condensation.fit; both halve and restart on a rise)"
    )
    lr0: float = option(0.5, "base learning rate of the rule", minimum=0, strict_min=True)
    mse_target: float = option(
        1e-6, "stop when mean((f - y)^2) is below this", minimum=0, strict_min=True
    )
    max_steps: int = option(20000, "step cap per point (all restarts together)", minimum=1)
    chunk: int = option(100, "steps between convergence checks", minimum=1)
    seeds: int = option(1, "seeds per width (RD is their mean)", minimum=1)
    flat: float = option(
        0.1, "|slope| below which RD counts as flat (critical)", minimum=0, strict_min=True
    )
    input_exponent: float | None = option(
        None, "b2 (beta2 = m^-b2); default -gamma'/2 (beta1 beta2 = 1)"
    )
    dtype: Literal["float32", "float64"] = option(
        "float64", "floating-point type (float64 enables JAX's x64 only inside the run)"
    )

    def check(self, name: Callable[[str], str]) -> None:
        for field in ("gamma", "gamma_prime", "widths"):
            values = getattr(self, field)
            if len(set(values)) != len(values):
                fail(name(field), "distinct values", repr(list(values)))
        for i, m in enumerate(self.widths):
            if m % 2:
                fail(
                    f"{name('widths').strip('`')}[{i}]",
                    "an even width (anti-symmetric initialization pairs neurons)",
                    repr(m),
                )


PRESETS: dict[str, dict[str, Any]] = {
    "small": dict(
        gamma=(0.5, 1.75),
        gamma_prime=(-0.5, 0.0),
        widths=(40, 80),
        max_steps=3000,
    ),
    "paper": dict(
        gamma=_grid(0.25, 1.75, 0.125),
        gamma_prime=_grid(-0.75, 1.25, 0.125),
        widths=(1000, 2000, 4000, 8000, 16000),
        max_steps=100_000,
        seeds=2,
    ),
}


def grid_points(settings: Settings) -> list[tuple[float, float]]:
    """The (gamma, gamma') of every grid point, gamma outer, in the vmapped order."""
    return [(float(g), float(gp)) for g in settings.gamma for gp in settings.gamma_prime]


def _data(dtype):
    return jnp.asarray(X_TRAIN, dtype), jnp.asarray(Y_TRAIN, dtype)


def run_point(settings: Settings, width: int, seed: int) -> dict[str, Any]:
    """Trains every grid point at one width and seed as one vmapped run; JSON-ready."""
    dtype = jnp.dtype(settings.dtype)
    x, y = _data(dtype)
    points = grid_points(settings)
    t0 = time.perf_counter()
    params0, res = condensation.fit_grid(
        width,
        points,
        x,
        y,
        key=jax.random.PRNGKey(seed),
        activation=settings.activation,
        input_exponent=settings.input_exponent,
        dtype=dtype,
        rule=settings.rule,
        lr0=settings.lr0,
        mse_target=settings.mse_target,
        max_steps=settings.max_steps,
        chunk=settings.chunk,
    )
    rd = jax.vmap(condensation.relative_distance)(res.params, params0)
    rd_all = jax.vmap(lambda p, q: condensation.relative_distance(p, q, part="all"))(
        res.params, params0
    )
    jax.block_until_ready(rd)
    seconds = time.perf_counter() - t0

    def col(v, kind=float):
        return [kind(u) for u in np.asarray(v).tolist()]

    return dict(
        rd=[float(v) if math.isfinite(v) else None for v in np.asarray(rd, np.float64)],
        rd_all=[float(v) if math.isfinite(v) else None for v in np.asarray(rd_all, np.float64)],
        mse=col(res.mse),
        converged=col(res.converged, bool),
        failed=col(res.failed, bool),
        steps=col(res.steps, int),
        restarts=col(res.restarts, int),
        lr0=col(res.lr0),
        lr_last=col(res.lr_last),
        train_seconds=seconds,
    )


def summarize(settings: Settings, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (gamma, gamma'): RD per width (mean over seeds), slope, regimes, training."""
    points = grid_points(settings)
    widths = list(settings.widths)
    by = {(int(r["width"]), int(r["seed"])): r for r in records}
    seeds = range(settings.seed, settings.seed + settings.seeds)
    rows = []
    for i, (g, gp) in enumerate(points):
        per_width, ok = [], True
        for m in widths:
            vals = [by[(m, s)]["rd"][i] for s in seeds]
            good = [v for v in vals if v is not None and v > 0]
            ok &= len(good) == len(vals)
            per_width.append(float(np.mean(good)) if good else None)
        converged = all(by[(m, s)]["converged"][i] for m in widths for s in seeds)
        fit = None
        if ok:
            fit = condensation.phase_slope(widths, per_width, flat=settings.flat)
        theory = condensation.theoretical_regime(g, gp)
        dist = _boundary_distance(g, gp)
        rows.append(
            dict(
                gamma=g,
                gamma_prime=gp,
                slope=None if fit is None else fit.slope,
                slope_stderr=None if fit is None else fit.stderr,
                r2=None if fit is None else fit.r2,
                regime=None if fit is None else fit.regime,
                theory_regime=theory,
                boundary_distance=dist,
                agrees=None if fit is None else fit.regime == theory,
                rd=per_width,
                converged=converged,
                steps=[max(by[(m, s)]["steps"][i] for s in seeds) for m in widths],
                restarts=[max(by[(m, s)]["restarts"][i] for s in seeds) for m in widths],
                lr0=[by[(m, settings.seed)]["lr0"][i] for m in widths],
                final_mse=[max(by[(m, s)]["mse"][i] for s in seeds) for m in widths],
            )
        )
    return rows


def _boundary_distance(g: float, gp: float) -> float:
    """Distance from (gamma, gamma') to the nearest boundary line of the paper's diagram."""
    dg, corner = g - 1.0, math.hypot(g - 1.0, gp)
    first = abs(dg) if gp <= 0 else corner
    second = abs(gp - dg) / math.sqrt(2) if dg + gp >= 0 else corner
    return min(first, second)


def agreement(rows: Sequence[dict[str, Any]], away: float = AWAY) -> dict[str, Any]:
    """How many grid points at least `away` from a boundary have the paper's regime."""
    far = [r for r in rows if r["boundary_distance"] >= away and r["regime"] is not None]
    agree = [r for r in far if r["agrees"]]
    return dict(
        away=away,
        points=len(far),
        agree=len(agree),
        fraction=len(agree) / len(far) if far else None,
        disagree=[
            dict(
                gamma=r["gamma"],
                gamma_prime=r["gamma_prime"],
                slope=r["slope"],
                regime=r["regime"],
                theory=r["theory_regime"],
            )
            for r in far
            if not r["agrees"]
        ],
    )


def run(
    settings: Settings,
    out: str | os.PathLike,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Runs every (width, seed) (resuming from `out/points`), writes figures and
    `results.json` (last: its presence means done). Float64 runs enable x64 inside only."""
    validate(settings)
    x64 = precision(settings.dtype)
    with x64:
        t0 = time.perf_counter()
        stored = settings_dict(settings)
        records = sweep.sweep(
            lambda width, seed: run_point(settings, width, seed),
            {
                "width": list(settings.widths),
                "seed": list(range(settings.seed, settings.seed + settings.seeds)),
            },
            out,
            settings=stored,
            required=("rd", "converged", "steps"),
            progress=progress,
            name="--out",
        )
        rows = summarize(settings, records)
        res = dict(
            experiment=NAME,
            settings=stored,
            environment=results.environment(),
            wall_seconds=time.perf_counter() - t0,
            train_seconds=sum(float(r["train_seconds"]) for r in records),
            rd_part="input",
            named_points={k: list(v) for k, v in condensation.POINTS.items()},
            agreement=agreement(rows),
            all_converged=all(r["converged"] for r in rows),
            non_finite=[
                dict(gamma=r["gamma"], gamma_prime=r["gamma_prime"])
                for r in rows
                if r["slope"] is None
            ],
            grid=rows,
        )
    # imported here: matplotlib is not needed to list or validate experiments
    from jaxdyn.experiments import phase_diagram_plots

    return finish(out, res, records, phase_diagram_plots.save_figures)


def summary_lines(res: dict[str, Any]) -> Sequence[str]:
    """The measured slope and regime per grid point, beside the paper's regime."""
    lines = [f"{'gamma':>6} {'gamma_p':>8} {'slope':>7} {'regime':>10} {'paper':>10} {'conv':>5}"]
    for r in res["grid"]:
        slope = "-" if r["slope"] is None else f"{r['slope']:.2f}"
        lines.append(
            f"{r['gamma']:>6.3g} {r['gamma_prime']:>8.3g} {slope:>7} {str(r['regime']):>10} "
            f"{r['theory_regime']:>10} {'yes' if r['converged'] else 'NO':>5}"
        )
    a = res["agreement"]
    if a["points"]:
        lines.append(
            f"regime = paper's at {a['agree']}/{a['points']} grid points >= {a['away']} from a "
            "boundary"
        )
    return lines
