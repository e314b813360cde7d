"""Experiment `mscale`: multi-scale networks and the input-derivative loss against the
frequency principle.

Liu, Cai and Xu (2020), "Multi-scale deep neural network (MscaleDNN) for solving
Poisson-Boltzmann equation in complex domains", and Cai and Xu (2019), "Multi-scale deep
neural networks for solving high dimensional PDEs". Three parts, one resumable point each:

- `poisson`: `-u'' = mu^2 sin(mu x)` on [-1, 1], `u(+-1) = sin(+-mu)` (exact `u = sin(mu x)`,
  mu = 6 pi), trained on the Deep Ritz energy `|Omega| mean(u'^2 / 2 - g u)` over fresh uniform
  samples every step plus `beta * mean((u(+-1) - sin(+-mu))^2)`, by Adam. MscaleDNN (one
  `subnet_width`-wide, `depth`-deep subnet per scale, scales 1, 2, ..., 32) against one
  fully connected network of `len(scales) * subnet_width` neurons per layer (the same neuron
  count as the authors'; the parameter counts, which differ, are reported).
- `regression`: the same two networks fit `sin(mu x)` on a grid by full-batch MSE.
- `derivative`: a tanh network on `sin x + sin 3x + sin 5x` (101 points of [-pi, pi]) trained
  with plain MSE and with `derivative_loss` (weight `derivative_weight`), seeds as one vmapped
  `train.trajectory`: the per-peak convergence steps (`convergence_steps` of
  `per_frequency_error`, kind "magnitude").

results.json: the relative L2 error `||u - u*|| / ||u*||` on a 1001-point grid over training
and at the end for each (problem, network), their ratio, parameter counts, and the
convergence step of every peak under both losses.
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
from jaxdyn.analysis import frequency
from jaxdyn.experiments._runner import (
    ExperimentSettings,
    fail,
    finish,
    option,
    precision,
    settings_dict,
    validate,
)

NAME = "mscale"
SUMMARY = "MscaleDNN vs a plain network on a high-frequency Poisson problem; derivative loss"

NETWORKS = ("mscale", "dnn")
PROBLEMS = ("poisson", "regression")
PARTS = (*PROBLEMS, "derivative")
TEST_POINTS = 1001


@dataclasses.dataclass(frozen=True)
class Settings(ExperimentSettings):
    """Settings of one run; every field is a command-line option."""

    mu_over_pi: float = option(6.0, "mu / pi of the target sin(mu x)", minimum=0, strict_min=True)
    scales: tuple[float, ...] = option(
        (1.0, 2.0, 4.0, 8.0, 16.0, 32.0), "MscaleDNN input scales, one subnet each", minimum=0,
        strict_min=True,
    )  # fmt: skip
    subnet_width: int = option(30, "width of each MscaleDNN subnet", minimum=1)
    depth: int = option(3, "hidden layers of every network", minimum=1)
    activation: Literal["sin", "srelu", "s2relu", "tanh", "relu"] = option(
        "sin", "activation of both networks"
    )
    learning_rate: float = option(1e-4, "Adam learning rate", minimum=0, strict_min=True)
    poisson_steps: int = option(10000, "Adam steps on the Ritz energy", minimum=1)
    batch: int = option(256, "fresh uniform samples of [-1, 1] per Ritz step", minimum=2)
    boundary_penalty: float = option(1000.0, "beta of the boundary penalty", minimum=0)
    regression_steps: int = option(10000, "full-batch Adam steps of the regression", minimum=1)
    regression_points: int = option(201, "grid points of the regression", minimum=4)
    record_every: int = option(250, "record errors every this many steps", minimum=1)
    derivative_steps: int = option(3000, "Adam steps of the derivative-loss part", minimum=1)
    derivative_record_every: int = option(50, "record every this many steps there", minimum=1)
    derivative_weight: float = option(1.0, "lambda of the derivative term", minimum=0)
    derivative_widths: tuple[int, ...] = option(
        (200, 200, 100), "hidden widths of the tanh network", minimum=1
    )
    derivative_learning_rate: float = option(2e-4, "Adam rate there", minimum=0, strict_min=True)
    seeds: int = option(2, "seeds of the derivative part (one vmapped run)", minimum=1)
    threshold: float = option(0.1, "relative error a peak must stay below", minimum=0,
                              strict_min=True)  # fmt: skip
    parts: tuple[str, ...] = option(PARTS, "parts to run", choices=PARTS)
    dtype: Literal["float32", "float64"] = option("float32", "floating-point type of the run")

    def check(self, name: Callable[[str], str]) -> None:
        for steps in ("poisson_steps", "regression_steps"):
            if getattr(self, steps) % self.record_every:
                fail(
                    name(steps),
                    f"a multiple of {name('record_every')} ({self.record_every})",
                    repr(getattr(self, steps)),
                )
        if self.derivative_steps % self.derivative_record_every:
            fail(
                name("derivative_steps"),
                f"a multiple of {name('derivative_record_every')} ({self.derivative_record_every})",
                repr(self.derivative_steps),
            )


PRESETS: dict[str, dict[str, Any]] = {
    "small": dict(
        subnet_width=8,
        depth=2,
        poisson_steps=200,
        batch=64,
        regression_steps=200,
        regression_points=41,
        record_every=100,
        derivative_steps=100,
        derivative_record_every=50,
        derivative_widths=(16,),
        seeds=1,
    ),
    "paper": dict(
        poisson_steps=50000, batch=1000, regression_steps=50000, derivative_steps=10000, seeds=5
    ),
}


# --------------------------------------------------------------------------- models


def networks(settings: Settings) -> dict[str, frequency.Model]:
    """The MscaleDNN and the plain network with as many neurons per hidden layer."""
    sub = (1, *([settings.subnet_width] * settings.depth), 1)
    wide = (1, *([settings.subnet_width * len(settings.scales)] * settings.depth), 1)
    act = settings.activation
    return dict(
        mscale=frequency.mscale(settings.scales, frequency.mlp(sub, act)),
        dnn=frequency.mlp(wide, act),
    )


def _relative_error(u: jax.Array, exact: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum((u - exact) ** 2) / jnp.sum(exact**2))


def ritz_loss(apply_fn, params, x, mu, beta):
    """Deep Ritz energy of `-u'' = mu^2 sin(mu x)` on [-1, 1] at samples `x (n, 1)`, plus
    `beta * mean((u(+-1) - sin(+-mu))^2)`. `u'` by a forward-mode JVP (the model is per
    example, so the tangent of ones gives each `du/dx_i`)."""
    u, du = jax.jvp(lambda z: apply_fn(params, z), (x,), (jnp.ones_like(x),))
    g = mu**2 * jnp.sin(mu * x)
    edges = jnp.asarray([[-1.0], [1.0]], x.dtype)
    boundary = jnp.mean((apply_fn(params, edges) - jnp.sin(mu * edges)) ** 2)
    return 2.0 * jnp.mean(0.5 * du**2 - g * u) + beta * boundary


def train_poisson(settings: Settings, model: frequency.Model, seed: int) -> dict[str, Any]:
    """Adam on the Ritz loss, fresh samples each step, as one jitted scan."""
    dtype = jnp.dtype(settings.dtype)
    mu = settings.mu_over_pi * np.pi
    params0 = model.init(jax.random.PRNGKey(seed), dtype)
    opt = optax.adam(settings.learning_rate)
    x_test = jnp.linspace(-1.0, 1.0, TEST_POINTS, dtype=dtype)[:, None]
    exact = jnp.sin(mu * x_test)
    sample_key = jax.random.fold_in(jax.random.PRNGKey(seed), 7)
    every = settings.record_every

    def loss(p, x):
        return ritz_loss(model.apply, p, x, mu, settings.boundary_penalty)

    def step(carry, i):
        p, state = carry
        x = jax.random.uniform(
            jax.random.fold_in(sample_key, i), (settings.batch, 1), dtype, -1.0, 1.0
        )
        value, grads = jax.value_and_grad(loss)(p, x)
        updates, state = opt.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), value

    def chunk(carry, j):
        carry, values = jax.lax.scan(step, carry, j * every + jnp.arange(every))
        u = model.apply(carry[0], x_test)
        return carry, (_relative_error(u, exact), values[-1])

    @jax.jit
    def run(p):
        u0 = model.apply(p, x_test)
        (p, _), (err, losses) = jax.lax.scan(
            chunk, (p, opt.init(p)), jnp.arange(settings.poisson_steps // every)
        )
        return jnp.concatenate([_relative_error(u0, exact)[None], err]), losses, p

    errors, losses, params = run(params0)
    return dict(
        steps=np.arange(0, settings.poisson_steps + 1, every).tolist(),
        error=np.asarray(errors, np.float64).tolist(),
        loss=np.asarray(losses, np.float64).tolist(),
        final_error=float(errors[-1]),
        u_final=np.asarray(model.apply(params, x_test)[:, 0], np.float64).tolist(),
        parameters=frequency.param_count(params0),
    )


def train_regression(settings: Settings, model: frequency.Model, seed: int) -> dict[str, Any]:
    """Full-batch Adam on the MSE of `sin(mu x)` on a grid (`train.trajectory`)."""
    dtype = jnp.dtype(settings.dtype)
    mu = settings.mu_over_pi * np.pi
    params0 = model.init(jax.random.PRNGKey(seed), dtype)
    x = jnp.linspace(-1.0, 1.0, settings.regression_points, dtype=dtype)[:, None]
    x_test = jnp.linspace(-1.0, 1.0, TEST_POINTS, dtype=dtype)[:, None]
    exact = jnp.sin(mu * x_test)
    traj = train.trajectory(
        model.apply,
        params0,
        x,
        jnp.sin(mu * x),
        optimizer=optax.adam(settings.learning_rate),
        steps=settings.regression_steps,
        record_every=settings.record_every,
        x_test=x_test,
    )
    errors = jax.vmap(lambda u: _relative_error(u, exact))(traj.f_test)
    return dict(
        steps=np.asarray(traj.steps).tolist(),
        error=np.asarray(errors, np.float64).tolist(),
        loss=np.asarray(traj.loss, np.float64).tolist(),
        final_error=float(errors[-1]),
        u_final=np.asarray(traj.f_test[-1, :, 0], np.float64).tolist(),
        parameters=frequency.param_count(params0),
    )


def derivative_target(x: jax.Array) -> jax.Array:
    """`sin x + sin 3x + sin 5x`, the 1-D target of the frequency-principle papers."""
    return jnp.sin(x) + jnp.sin(3 * x) + jnp.sin(5 * x)


def train_derivative(settings: Settings, weight: float) -> dict[str, Any]:
    """Every seed with plain MSE (`weight` 0) or the derivative loss, as one vmapped run."""
    dtype = jnp.dtype(settings.dtype)
    std = float(np.sqrt(1.0 / 200.0))  # weights and biases N(0, 1/200), as the papers
    model = frequency.mlp((1, *settings.derivative_widths, 1), "tanh", w_std=std, b_std=std)
    x = jnp.linspace(-np.pi, np.pi, 101, dtype=dtype)[:, None]
    y = derivative_target(x)
    seeds = np.arange(settings.seed, settings.seed + settings.seeds)
    params0 = jax.vmap(lambda k: model.init(k, dtype))(jax.vmap(jax.random.PRNGKey)(seeds))
    opt = optax.adam(settings.derivative_learning_rate)
    kwargs = dict(
        optimizer=opt,
        steps=settings.derivative_steps,
        record_every=settings.derivative_record_every,
    )
    if weight > 0:
        targets = frequency.derivative_targets(derivative_target, x)
        objective = frequency.derivative_loss(model.apply, weight)
        traj = jax.vmap(
            lambda p: train.trajectory(model.apply, p, x, targets, objective=objective, **kwargs)
        )(params0)
    else:
        traj = jax.vmap(lambda p: train.trajectory(model.apply, p, x, y, **kwargs))(params0)
    peaks = frequency.peak_indices(y[:, 0], 3)
    steps = np.asarray(traj.steps[0])
    errors = np.stack(
        [
            np.asarray(frequency.per_frequency_error(traj.f_train[s], y, peaks))
            for s in range(len(seeds))
        ]
    )
    conv = np.stack(
        [
            np.asarray(frequency.convergence_steps(errors[s], steps, settings.threshold))
            for s in range(len(seeds))
        ]
    )
    return dict(
        weight=weight,
        peaks=peaks.tolist(),
        steps=steps.tolist(),
        errors=errors.tolist(),  # (seeds, T, peaks)
        convergence_steps=conv.tolist(),  # (seeds, peaks), -1: never
        final_loss=np.asarray(traj.loss[:, -1], np.float64).tolist(),
    )


# --------------------------------------------------------------------------- the run


def _finite(values: Any) -> bool:
    return bool(np.all(np.isfinite(np.asarray(values, np.float64))))


def run(
    settings: Settings,
    out: str | os.PathLike,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Runs the six points (resuming from `out/points`), writes figures and results.json."""
    validate(settings)
    x64 = precision(settings.dtype)
    with x64:
        t0 = time.perf_counter()
        stored = settings_dict(settings)
        sw = sweep.open_sweep(out, stored, name="--out")
        nets = networks(settings)
        jobs: list[tuple[dict, Callable[[], dict]]] = []
        for problem, fn in (("poisson", train_poisson), ("regression", train_regression)):
            for net in NETWORKS if problem in settings.parts else ():
                jobs.append(
                    (
                        dict(part=problem, network=net),
                        lambda fn=fn, net=net: fn(settings, nets[net], settings.seed),
                    )
                )
        for loss in ("mse", "derivative") if "derivative" in settings.parts else ():
            weight = 0.0 if loss == "mse" else settings.derivative_weight
            jobs.append(
                (
                    dict(part="derivative", network=loss),
                    lambda w=weight: train_derivative(settings, w),
                )
            )
        points, warnings_ = [], []
        for i, (key, job) in enumerate(jobs):

            def timed(job=job):
                t = time.perf_counter()
                return {**job(), "seconds": time.perf_counter() - t}

            rec = sw.point(key, timed, required=("steps",))
            points.append(rec)
            values = rec.get("error", rec.get("errors"))
            if values is None or not _finite(values):
                warnings_.append(f"{key['part']}/{key['network']}: NaN/Inf in the errors")
            if progress is not None:
                progress(i + 1, len(jobs), f"{key['part']} {key['network']}")
        res = dict(
            experiment=NAME,
            settings=stored,
            environment=results.environment(),
            wall_seconds=time.perf_counter() - t0,
            warnings=warnings_,
            paper="MscaleDNN error ~1e-2 against ~1 for the plain network (Liu, Cai and Xu 2020)",
            **summarize(points),
        )
    from jaxdyn.experiments import mscale_plots

    return finish(out, res, points, mscale_plots.save_figures)


def summarize(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Final errors and their ratio per problem; convergence steps per loss."""
    out: dict[str, Any] = {}
    for problem in PROBLEMS:
        mine = {p["network"]: p for p in points if p["part"] == problem}
        if not mine:
            continue
        final = {net: mine[net]["final_error"] for net in NETWORKS}
        ok = all(v is not None and v > 0 for v in final.values())
        out[problem] = dict(
            final_error=final,
            parameters={net: mine[net]["parameters"] for net in NETWORKS},
            error_ratio=final["dnn"] / final["mscale"] if ok else None,
        )
    deriv = {p["network"]: p for p in points if p["part"] == "derivative"}
    if not deriv:
        return out
    out["derivative"] = {
        loss: dict(
            weight=deriv[loss]["weight"],
            peaks=deriv[loss]["peaks"],
            convergence_steps=deriv[loss]["convergence_steps"],
            highest_peak_steps=[c[-1] for c in deriv[loss]["convergence_steps"]],
        )
        for loss in ("mse", "derivative")
    }
    return out


def summary_lines(res: dict[str, Any]) -> Sequence[str]:
    """Human-readable summary printed by the CLI."""
    lines = []
    for problem in (p for p in PROBLEMS if p in res):
        r = res[problem]
        ratio = r["error_ratio"]
        lines.append(
            f"{problem}: final relative error MscaleDNN {r['final_error']['mscale']:.3g} "
            f"({r['parameters']['mscale']} params), plain {r['final_error']['dnn']:.3g} "
            f"({r['parameters']['dnn']} params), ratio {'-' if ratio is None else f'{ratio:.3g}'}"
        )
    d = res.get("derivative")
    lines.append(
        "derivative loss: not run"
        if d is None
        else f"derivative loss: peaks {d['mse']['peaks']}, convergence steps per seed: MSE "
        f"{d['mse']['convergence_steps']}, derivative {d['derivative']['convergence_steps']}"
    )
    lines.append("paper: MscaleDNN ~1e-2 against ~1 for the plain network (Poisson, mu = 6 pi)")
    return lines
