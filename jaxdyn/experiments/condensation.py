"""Experiment `condensation`: four demonstrations of parameter condensation at small init.

Xu et al. (condensation at small initialization; Luo, Xu, Ma, Zhang, JMLR 2021, and the
follow-ups on the initial stage of training), with `jaxdyn.analysis.condensation`:

- (a) 1-D: target `0.2 ReLU(x - 1/3) + 0.2 ReLU(-x - 1/3)` on x = -1, -1/3, 1/3, 1, ReLU
  width `width_1d`, every weight drawn with std `width^-t` (`two_layer(gamma=2t, gamma'=0,
  input_exponent=t)`, alpha = 1) for each t of `t_values`, trained with `condensation.fit`
  (adaptive rate) to `mse_target`; the fits and the orientation-amplitude scatter before and
  after training: at NTK-like scale (t = 1/4) the features barely move, at small scale they
  gather on a few orientations.
- (b) 5-D: `sum_k 3.5 sin(5 x_k + 1)` on `n_5d` points of [-1, 1]^5, tanh width 50, std
  50^-4, Adam 1e-3 (`jaxdyn.train.trajectory`): the cosine-similarity heatmap of the input
  weights, neurons ordered by the leading eigenvector.
- (c) tanh (p = 1) against x tanh x (p = 2) on the data of (b): the number of condensed
  directions (`directions`, the fewest clusters holding 90% of the amplitude) over the early
  steps, beside the bound 2p.
- (d) 1-D data of (a): the effective width (`merge`'s width, clusters under `PRUNE` of the
  amplitude dropped, its output error reported) against the nominal width for each t.

Each demo is one resumable point file.
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
import optax

from jaxdyn import results, sweep, train
from jaxdyn.analysis import condensation as cond
from jaxdyn.experiments._runner import (
    ExperimentSettings,
    fail,
    finish,
    option,
    precision,
    settings_dict,
    validate,
)

NAME = "condensation"
SUMMARY = "condensation at small init: 1-D/5-D demos, tanh vs x tanh x, effective width"

DEMOS = ("a", "b", "c", "d")
MULTIPLICITY = {"tanh": 1, "xtanh": 2}
PRUNE = 1e-3  # demo (d): clusters under 0.1% of the amplitude are not counted as neurons


@dataclasses.dataclass(frozen=True)
class Settings(ExperimentSettings):
    """Settings of one run; every field is a command-line option."""

    t_values: tuple[float, ...] = option(
        (0.25, 0.5, 0.75, 1.0, 1.25), "init std width^-t for the 1-D demos (a), (d)", minimum=0
    )
    width_1d: int = option(1000, "ReLU width of demo (a)", minimum=2)
    widths_d: tuple[int, ...] = option((50, 200, 1000), "nominal widths of demo (d)", minimum=2)
    mse_target: float = option(1e-7, "1-D demos stop at this MSE", minimum=0, strict_min=True)
    max_steps: int = option(50000, "step cap of the 1-D demos", minimum=1)
    width_5d: int = option(50, "width of demos (b), (c)", minimum=2)
    n_5d: int = option(80, "training points of demos (b), (c) in [-1, 1]^5", minimum=2)
    t_5d: float = option(4.0, "init std width_5d^-t_5d of demos (b), (c)", minimum=0)
    steps_5d: int = option(4000, "Adam steps of demo (b)", minimum=1)
    steps_early: int = option(400, "Adam steps of demo (c)", minimum=1)
    record_every: int = option(20, "record demo (c) every this many steps", minimum=1)
    learning_rate: float = option(1e-3, "Adam rate of (b), (c)", minimum=0, strict_min=True)
    threshold: float = option(
        0.98, "cosine above which two neurons share a direction", minimum=0, maximum=1
    )
    dtype: Literal["float32", "float64"] = option("float64", "floating-point type")

    def check(self, name: Callable[[str], str]) -> None:
        if self.width_1d % 2 or any(m % 2 for m in self.widths_d) or self.width_5d % 2:
            fail(
                name("width_1d"),
                "even widths everywhere (anti-symmetric initialization pairs neurons)",
                repr((self.width_1d, list(self.widths_d), self.width_5d)),
            )
        for field, every in (("steps_early", self.record_every), ("steps_5d", self.record_every)):
            if getattr(self, field) % every:
                fail(
                    name(field),
                    f"a multiple of {name('record_every')} ({every})",
                    repr(getattr(self, field)),
                )


PRESETS: dict[str, dict[str, Any]] = {
    "small": dict(
        t_values=(0.25, 1.25),
        width_1d=100,
        widths_d=(20, 60),
        max_steps=5000,
        width_5d=20,
        n_5d=30,
        steps_5d=200,
        steps_early=100,
    ),
    "paper": dict(width_1d=1000, widths_d=(50, 200, 1000, 4000), steps_5d=20000),
}


def data_1d(dtype) -> tuple[jax.Array, jax.Array]:
    """Demo (a)'s data: x = -1, -1/3, 1/3, 1 and `0.2 ReLU(x - 1/3) + 0.2 ReLU(-x - 1/3)`."""
    x = jnp.linspace(-1.0, 1.0, 4, dtype=dtype)[:, None]
    return x, target_1d(x)


def target_1d(x):
    return 0.2 * jax.nn.relu(x - 1 / 3) + 0.2 * jax.nn.relu(-x - 1 / 3)


def data_5d(n: int, seed: int, dtype) -> tuple[jax.Array, jax.Array]:
    """Demo (b)'s data: n uniform points of [-1, 1]^5, `sum_k 3.5 sin(5 x_k + 1)`."""
    x = jax.random.uniform(jax.random.PRNGKey(seed + 7), (n, 5), dtype, -1.0, 1.0)
    return x, jnp.sum(3.5 * jnp.sin(5 * x + 1), axis=1, keepdims=True)


def _oa(params, i=None):
    p = params if i is None else {k: v[i] for k, v in params.items()}
    o = cond.orientation_amplitude(p)
    return np.asarray(o.orientation).tolist(), np.asarray(o.amplitude).tolist()


def _fit_1d(settings, width, dtype):
    x, y = data_1d(dtype)
    ts = list(settings.t_values)
    p0, res = cond.fit_grid(
        width,
        [(2 * t, 0.0) for t in ts],
        x,
        y,
        key=jax.random.PRNGKey(settings.seed),
        input_exponent=ts,
        dtype=dtype,
        mse_target=settings.mse_target,
        max_steps=settings.max_steps,
    )
    return x, y, ts, p0, res


def demo_a(settings: Settings, dtype) -> dict[str, Any]:
    x, y, ts, p0, res = _fit_1d(settings, settings.width_1d, dtype)
    grid = jnp.linspace(-1.2, 1.2, 121, dtype=dtype)[:, None]
    runs = []
    for i, t in enumerate(ts):
        pt = {k: v[i] for k, v in res.params.items()}
        q0 = {k: v[i] for k, v in p0.items()}
        d = cond.directions(pt, threshold=settings.threshold)
        o0, a0 = _oa(q0)
        o1, a1 = _oa(pt)
        runs.append(
            dict(
                t=t,
                converged=bool(res.converged[i]),
                steps=int(res.steps[i]),
                mse=float(res.mse[i]),
                rd=float(cond.relative_distance(pt, q0)),
                directions=d.count,
                major_directions=d.n_major,
                orientation_0=o0,
                amplitude_0=a0,
                orientation=o1,
                amplitude=a1,
                fit=np.asarray(cond.forward(pt, grid, 1.0))[:, 0].tolist(),
            )
        )
    return dict(
        x=np.asarray(x)[:, 0].tolist(),
        y=np.asarray(y)[:, 0].tolist(),
        grid=np.asarray(grid)[:, 0].tolist(),
        target=np.asarray(target_1d(grid))[:, 0].tolist(),
        runs=runs,
    )


def _adam_run(settings, activation, steps, record_every, dtype):
    x, y = data_5d(settings.n_5d, settings.seed, dtype)
    m, t = settings.width_5d, settings.t_5d
    init_fn, apply_fn = cond.two_layer(
        m, gamma=2 * t, gamma_prime=0.0, activation=activation, input_dim=5, input_exponent=t
    )
    p0 = init_fn(jax.random.PRNGKey(settings.seed), dtype)
    traj = train.trajectory(
        apply_fn,
        p0,
        x,
        y,
        optimizer=optax.adam(settings.learning_rate),
        steps=steps,
        record_every=record_every,
        observe=lambda p: p,
    )
    return traj


def demo_b(settings: Settings, dtype) -> dict[str, Any]:
    every = settings.record_every
    traj = _adam_run(settings, "tanh", settings.steps_5d, every, dtype)
    final = {k: v[-1] for k, v in traj.observed.items()}
    cs = cond.cosine_similarity(final)
    d = cond.directions(final, threshold=settings.threshold)
    return dict(
        similarity=np.round(np.asarray(cs.similarity), 4).tolist(),
        directions=d.count,
        major_directions=d.n_major,
        final_loss=float(traj.loss[-1]),
        steps=settings.steps_5d,
    )


def demo_c(settings: Settings, dtype) -> dict[str, Any]:
    out = {}
    for act, p in MULTIPLICITY.items():
        traj = _adam_run(settings, act, settings.steps_early, settings.record_every, dtype)
        counts = []
        for i in range(traj.steps.shape[0]):
            pi = {k: v[i] for k, v in traj.observed.items()}
            counts.append(cond.directions(pi, threshold=settings.threshold).n_major)
        out[act] = dict(
            multiplicity=p,
            steps=np.asarray(traj.steps).tolist(),
            major_directions=counts,
            loss=np.asarray(traj.loss).tolist(),
            final_major_directions=counts[-1],
        )
    return out


def demo_d(settings: Settings, dtype) -> dict[str, Any]:
    rows = []
    for m in settings.widths_d:
        x, _, ts, _, res = _fit_1d(settings, m, dtype)
        _, apply_fn = cond.two_layer(m, gamma=0.0, gamma_prime=0.0, input_exponent=0.0)
        grid = jnp.linspace(-1.0, 1.0, 101, dtype=dtype)[:, None]
        for i, t in enumerate(ts):
            pt = {k: v[i] for k, v in res.params.items()}
            mg = cond.merge(
                pt, threshold=settings.threshold, apply_fn=apply_fn, x=grid, prune=PRUNE
            )
            rows.append(
                dict(
                    width=m,
                    t=t,
                    effective_width=mg.width,
                    relative_error=mg.relative_error,
                    converged=bool(res.converged[i]),
                )
            )
    return dict(rows=rows)


def run_point(settings: Settings, demo: str) -> dict[str, Any]:
    dtype = jnp.dtype(settings.dtype)
    t0 = time.perf_counter()
    out = {"a": demo_a, "b": demo_b, "c": demo_c, "d": demo_d}[demo](settings, dtype)
    return dict(result=out, seconds=time.perf_counter() - t0)


def run(
    settings: Settings,
    out: str | os.PathLike,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Runs the four demos (resuming from `out/points`), writes figures and results.json."""
    validate(settings)
    x64 = precision(settings.dtype)
    with x64:
        t0 = time.perf_counter()
        stored = settings_dict(settings)
        records = sweep.sweep(
            lambda demo: run_point(settings, demo),
            {"demo": list(DEMOS)},
            out,
            settings=stored,
            required=("result",),
            progress=progress,
            name="--out",
        )
        by = {r["demo"]: r["result"] for r in records}
        res = dict(
            experiment=NAME,
            settings=stored,
            environment=results.environment(),
            wall_seconds=time.perf_counter() - t0,
            demo_a=[
                {
                    k: r[k]
                    for k in (
                        "t",
                        "converged",
                        "steps",
                        "mse",
                        "rd",
                        "directions",
                        "major_directions",
                    )
                }
                for r in by["a"]["runs"]
            ],
            demo_b={k: v for k, v in by["b"].items() if k != "similarity"},
            demo_c={
                act: dict(
                    multiplicity=v["multiplicity"],
                    bound=2 * v["multiplicity"],
                    final_major_directions=v["final_major_directions"],
                    max_major_directions_after_start=max(v["major_directions"][1:]),
                )
                for act, v in by["c"].items()
            },
            demo_d=by["d"]["rows"],
        )
    from jaxdyn.experiments import condensation_plots

    return finish(out, res, records, condensation_plots.save_figures)


def summary_lines(res: dict[str, Any]) -> Sequence[str]:
    lines = ["(a) 1-D ReLU: t, RD, major directions (90% of amplitude)"]
    for r in res["demo_a"]:
        lines.append(f"  t={r['t']:<5g} RD {r['rd']:.3g}  directions {r['major_directions']}")
    b = res["demo_b"]
    lines.append(
        f"(b) 5-D tanh: {b['major_directions']} major directions, loss {b['final_loss']:.3g}"
    )
    for act, v in res["demo_c"].items():
        lines.append(
            f"(c) {act} (p={v['multiplicity']}): {v['final_major_directions']} directions early "
            f"(bound 2p = {v['bound']})"
        )
    for r in res["demo_d"]:
        lines.append(f"(d) width {r['width']} t={r['t']:g}: effective width {r['effective_width']}")
    return lines
