"""Experiment `frequency-principle`: a 1-D target is fitted from low to high frequency.

Xu, Zhang, Luo, Xiao and Ma (2019), "Frequency principle: Fourier analysis sheds light on deep
neural networks". The target `sum_k sin(k x)` (default k = 1, 3, 5) on `n_points` points of
`linspace(-pi, pi)`; a tanh network (default 200-200-200-100, weights and biases
N(0, init_variance = 1/200), standard parameterization) trained by full-batch Adam (2e-4) on
the MSE until the train MSE `mean((f - y)^2)` is below `target_mse` or `max_steps`, every seed
in one vmapped, jitted run. At the peaks of the target's |DFT| (`frequency.peak_indices`) it
records the relative error `| |h_k| - |f_k| | / |f_k|` (`per_frequency_error`,
kind="magnitude", the authors' measure) and the step after which it stays below `threshold`
(`convergence_steps`).

Beside it, for each seed:
- the network linearized at its initialization, trained by full-batch gradient descent in
  closed form on its initial NTK (`jaxdyn.dynamics.mse`, kind="gd", learning rate
  `lin_lr_fraction` times the critical one), on log-spaced steps;
- the LFP's per-mode prediction: the rate of each peak's Fourier mode under that NTK
  (`fourier_mode_rates`, a Rayleigh quotient) against the rate fitted to the closed form's
  error (`fitted_rates`);
and damped Jacobi (`jacobi_mode_errors`, omega 2/3) on `-u'' = g` over the grid's points in
(0, pi), with g the discrete Laplacian of the target (so the sine modes k are the target's
frequencies), which converges in the reverse order.

What the defaults show (README, "Frequency principle"): the network converges at k = 1, 3, 5
in that order; the linearization too, but only after ~1e10 GD steps for k = 3 and not within
1e16 for k = 5 (the near-linear tanh network at this small init has an NTK whose eigenvalues
fall to float64 rounding by the 12th), so it is no model of the Adam run; Jacobi reverses the
order. A peak that never converges counts as later than every converged one.

Points (resumable, `OUT/points/`): `part=network` (all seeds), `part=linearized_seedS`,
`part=jacobi`. results.json: per-peak convergence steps for each, the headline orders, the
fitted and predicted rates.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxdyn
from jaxdyn import results, sweep
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

NAME = "frequency-principle"
SUMMARY = "a 1-D target fitted from low to high frequency; linearization, LFP, Jacobi (Xu 2019)"

# Records per compiled training chunk (the host checks the stopping rule between chunks).
CHUNK_RECORDS = 50


@dataclasses.dataclass(frozen=True)
class Settings(ExperimentSettings):
    """Settings of one run; every field is a command-line option."""

    frequencies: tuple[int, ...] = option(
        (1, 3, 5), "target sum_k sin(k x): the integer frequencies k", minimum=1
    )
    n_points: int = option(101, "grid points of [-pi, pi] (endpoints included)", minimum=8)
    widths: tuple[int, ...] = option((200, 200, 200, 100), "hidden widths (tanh)", minimum=1)
    init_variance: float = option(
        1 / 200, "variance of the N(0, v) weights and biases", minimum=0, strict_min=True
    )
    learning_rate: float = option(2e-4, "Adam learning rate", minimum=0, strict_min=True)
    target_mse: float = option(
        1e-4, "stop when every seed's train MSE is below this", minimum=0, strict_min=True
    )
    max_steps: int = option(5000, "cap on Adam steps", minimum=1)
    record_every: int = option(10, "record outputs every this many steps", minimum=1)
    seeds: int = option(3, "seeds (seed, seed + 1, ...), trained as one vmapped run", minimum=1)
    threshold: float = option(
        0.1,
        "a peak has converged once its relative error stays below this",
        minimum=0,
        strict_min=True,
    )
    lin_lr_fraction: float = option(
        0.5,
        "GD learning rate of the linearization, as a fraction of the critical one",
        minimum=0,
        maximum=1,
        strict_min=True,
    )
    lin_max_steps: int = option(
        10**16, "last GD step of the linearization's closed form", minimum=10
    )
    jacobi_omega: float = option(2 / 3, "damping of Jacobi", minimum=0, maximum=1, strict_min=True)
    jacobi_steps: int = option(4000, "Jacobi iterations", minimum=1)
    dtype: Literal["float32", "float64"] = option(
        "float64", "floating-point type (float64 enables JAX's x64 only inside the run)"
    )

    def check(self, name: Callable[[str], str]) -> None:
        if len(set(self.frequencies)) != len(self.frequencies):
            fail(name("frequencies"), "distinct values", repr(list(self.frequencies)))
        top = (self.n_points - 1) // 2 - 1
        if max(self.frequencies) > top:
            fail(
                name("frequencies"),
                f"frequencies below the grid's Nyquist index minus one ({top} for "
                f"{self.n_points} points)",
                repr(list(self.frequencies)),
            )
        if self.max_steps % self.record_every:
            fail(
                name("max_steps"),
                f"a multiple of {name('record_every')} ({self.record_every})",
                repr(self.max_steps),
            )


PRESETS: dict[str, dict[str, Any]] = {
    "small": dict(
        n_points=33,
        widths=(32, 32),
        init_variance=0.1,
        learning_rate=0.003,
        max_steps=300,
        record_every=10,
        seeds=2,
        lin_max_steps=10**5,
        jacobi_steps=600,
        threshold=0.2,
    ),
    "paper": dict(seeds=10, max_steps=20000),
}


# --------------------------------------------------------------------------- problem


def grid_and_target(settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """`x (n,)` = linspace(-pi, pi, n) and the target `sum_k sin(k x)` `(n,)`, float64."""
    x = np.linspace(-np.pi, np.pi, settings.n_points)
    return x, sum(np.sin(k * x) for k in settings.frequencies)


@functools.lru_cache(maxsize=8)
def tanh_net(widths: tuple[int, ...]) -> tuple[Callable, Callable]:
    """`(init(key, variance, dtype), apply(params, x))` of a tanh MLP 1 -> widths -> 1 in the
    standard parameterization (`h = tanh(h W + b)`), weights and biases N(0, variance).
    Cached: the same `apply` for the same widths, so its compiled NTK is reused."""
    sizes = (1, *widths, 1)

    def init(key, variance, dtype):
        params = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            key, kw, kb = jax.random.split(key, 3)
            std = math.sqrt(variance)
            params.append(
                dict(
                    W=std * jax.random.normal(kw, (fan_in, fan_out), dtype),
                    b=std * jax.random.normal(kb, (fan_out,), dtype),
                )
            )
        return params

    def apply(params, x):
        h = x
        for i, layer in enumerate(params):
            h = h @ layer["W"] + layer["b"][None]
            if i < len(params) - 1:
                h = jnp.tanh(h)
        return h

    return init, apply


def _stack(trees: list) -> Any:
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)


def initial_params(settings: Settings) -> list:
    """Every seed's initial parameters, leaves stacked `(S, ...)`; seed s from PRNGKey(s)
    (one compiled, vmapped initialization: the same numbers as seed by seed)."""
    init, _ = tanh_net(settings.widths)
    dtype = jnp.dtype(settings.dtype)
    keys = jnp.stack(
        [jax.random.PRNGKey(s) for s in range(settings.seed, settings.seed + settings.seeds)]
    )
    batched = jax.jit(jax.vmap(lambda k: init(k, settings.init_variance, dtype)))
    return batched(keys)


def _chunk_records(total: int) -> int:
    """The largest divisor of `total` records that is <= CHUNK_RECORDS."""
    return max(c for c in range(1, min(total, CHUNK_RECORDS) + 1) if total % c == 0)


# --------------------------------------------------------------------------- network


def train_network(settings: Settings, progress=None) -> dict[str, Any]:
    """Adam on every seed at once (vmap), in compiled chunks of records; stops when every
    seed's MSE is below `target_mse` (checked between chunks) or at `max_steps`.

    Returns `steps (T,)`, `outputs (S, T, n)`, `mse (S, T)` as numpy float64 arrays.
    """
    dtype = jnp.dtype(settings.dtype)
    _, apply = tanh_net(settings.widths)
    x, y = grid_and_target(settings)
    xj, yj = jnp.asarray(x, dtype)[:, None], jnp.asarray(y, dtype)[:, None]
    opt = optax.adam(settings.learning_rate)
    every = settings.record_every
    total = settings.max_steps // every
    per_chunk = _chunk_records(total)

    def mse(p):
        return jnp.mean((apply(p, xj) - yj) ** 2)

    def one_step(carry, _):
        p, s = carry
        updates, s = opt.update(jax.grad(mse)(p), s, p)
        return (optax.apply_updates(p, updates), s), None

    def record(carry, _):
        carry, _ = jax.lax.scan(one_step, carry, None, length=every)
        p = carry[0]
        return carry, (apply(p, xj)[:, 0], mse(p))

    def chunk(carry):
        return jax.lax.scan(record, carry, None, length=per_chunk)

    params = initial_params(settings)
    state = jax.vmap(opt.init)(params)
    chunk = jax.jit(jax.vmap(chunk))
    o0, l0 = jax.jit(jax.vmap(lambda p: (apply(p, xj)[:, 0], mse(p))))(params)
    outs = [np.asarray(o0, np.float64)[:, None]]
    losses = [np.asarray(l0, np.float64)[:, None]]
    done = 0
    while done < total:
        (params, state), (o, l) = chunk((params, state))
        outs.append(np.asarray(o, np.float64))
        losses.append(np.asarray(l, np.float64))
        done += per_chunk
        last = losses[-1][:, -1]
        if progress is not None:
            progress(done * every, settings.max_steps, f"Adam step {done * every}")
        if not np.all(np.isfinite(last)) or np.all(last < settings.target_mse):
            break
    steps = np.arange(done + 1) * every
    return dict(steps=steps, outputs=np.concatenate(outs, 1), mse=np.concatenate(losses, 1))


def _errors(outputs: np.ndarray, y: np.ndarray, peaks: np.ndarray, kind: str) -> np.ndarray:
    """`per_frequency_error` of `(T, n)` outputs, NaN at recorded steps with NaN/Inf outputs."""
    bad = ~np.all(np.isfinite(outputs), axis=1)
    clean = np.where(bad[:, None], 0.0, outputs)
    e = np.array(frequency.per_frequency_error(clean, y, peaks, kind=kind), np.float64)
    e[bad] = np.nan
    return e


def network_point(settings: Settings, peaks: np.ndarray, progress=None) -> dict[str, Any]:
    t0 = time.perf_counter()
    run = train_network(settings, progress)
    _, y = grid_and_target(settings)
    errors = {
        kind: np.stack([_errors(o, y, peaks, kind) for o in run["outputs"]])
        for kind in frequency.ERROR_KINDS
    }  # (S, T, P)
    for r, o in enumerate(run["outputs"]):
        bad = np.flatnonzero(~np.all(np.isfinite(o), axis=1))
        if bad.size:
            warnings.warn(
                f"frequency-principle: seed {settings.seed + r} diverged (NaN/Inf outputs from "
                f"Adam step {int(run['steps'][bad[0]])}); its errors there are stored as null "
                "and its peaks count as not converged.",
                RuntimeWarning,
                stacklevel=2,
            )
    conv = [
        np.asarray(frequency.convergence_steps(e, run["steps"], settings.threshold)).tolist()
        for e in errors["magnitude"]
    ]
    finite = bool(np.all(np.isfinite(run["mse"])))
    return dict(
        steps=run["steps"].tolist(),
        mse=run["mse"].tolist(),
        errors=errors["magnitude"].tolist(),
        errors_complex=errors["complex"].tolist(),
        convergence_steps=conv,
        outputs_first_seed=run["outputs"][0].tolist(),
        final_mse=run["mse"][:, -1].tolist(),
        reached_target=bool(np.all(run["mse"][:, -1] < settings.target_mse)),
        finite=finite,
        train_seconds=time.perf_counter() - t0,
    )


# --------------------------------------------------------------------------- linearization


def linearized_steps(settings: Settings) -> np.ndarray:
    """0 and ~400 log-spaced integer GD steps up to `lin_max_steps`."""
    steps = np.unique(np.round(np.geomspace(1, settings.lin_max_steps, 400)).astype(np.int64))
    return np.concatenate([[0], steps])


def linearized_point(settings: Settings, peaks: np.ndarray, r: int) -> dict[str, Any]:
    """Seed r's network linearized at init: GD in closed form on its initial NTK."""
    dtype = jnp.dtype(settings.dtype)
    _, apply = tanh_net(settings.widths)
    x, y = grid_and_target(settings)
    xj, yj = jnp.asarray(x, dtype)[:, None], jnp.asarray(y, dtype)[:, None]
    params0 = [{k: v[r] for k, v in layer.items()} for layer in initial_params(settings)]
    theta = jaxdyn.empirical_ntk(apply, params0, xj)
    # 2 n / lambda_max, the rate above which gradient descent diverges
    critical = 2 * settings.n_points / float(np.linalg.eigvalsh(np.asarray(theta, np.float64))[-1])
    lr = settings.lin_lr_fraction * critical
    predict = jaxdyn.dynamics.mse(theta, yj, learning_rate=lr, kind="gd")
    steps = linearized_steps(settings)
    # numpy float64 steps: up to 1e16, beyond int32 (float32 runs have no int64 in JAX)
    outputs = predict(steps.astype(np.float64), apply(params0, xj))[..., 0]  # (T, n)
    errors = np.asarray(frequency.per_frequency_error(outputs, y, peaks), np.float64)
    conv = np.asarray(frequency.convergence_steps(errors, steps, settings.threshold))
    modes = frequency.fourier_mode_rates(theta, x)
    # per GD step: the mode's Rayleigh rate per unit learning rate times the learning rate
    lfp = lr * np.asarray(modes.rates, np.float64)[peaks]
    # the slow phase that takes each peak below the threshold (its error first drops fast
    # along the NTK's top eigenvectors, then stalls: see the README)
    fitted = frequency.fitted_rates(errors, steps, floor=settings.threshold)
    return dict(
        learning_rate=lr,
        critical_learning_rate=critical,
        steps=steps.tolist(),
        errors=errors.tolist(),
        convergence_steps=conv.tolist(),
        lfp_rates=lfp.tolist(),
        fitted_rates=fitted.tolist(),
        lfp_convergence_steps=(np.log(1 / settings.threshold) / lfp).tolist(),
    )


# --------------------------------------------------------------------------- Jacobi


def jacobi_problem(settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """The grid's points in (0, pi) and `g = A u*` for `u*` the target there (A the
    Dirichlet Laplacian of `frequency.jacobi_mode_errors` on the unit interval)."""
    x, y = grid_and_target(settings)
    inner = (x > 1e-12) & (x < np.pi - 1e-12)
    u = y[inner]
    n = u.size
    h = 1.0 / (n + 1)
    padded = np.pad(u, 1)
    return x[inner], (2 * u - padded[:-2] - padded[2:]) / h**2


def jacobi_point(settings: Settings) -> dict[str, Any]:
    _, g = jacobi_problem(settings)
    res = frequency.jacobi_mode_errors(
        jnp.asarray(g),
        settings.jacobi_steps,
        omega=settings.jacobi_omega,
        modes=jnp.asarray(settings.frequencies),
    )
    conv = frequency.convergence_steps(res.errors, res.iterations, settings.threshold)
    return dict(
        iterations=np.asarray(res.iterations).tolist(),
        errors=np.asarray(res.errors, np.float64).tolist(),
        convergence_steps=np.asarray(conv).tolist(),
        factors=np.asarray(
            frequency.jacobi_factors(
                g.size, jnp.asarray(settings.frequencies), settings.jacobi_omega
            )
        ).tolist(),
    )


# --------------------------------------------------------------------------- run


def _column_medians(values: np.ndarray) -> list:
    """Median of each column over its finite entries (NaN where there are none)."""
    return [float(np.median(c[np.isfinite(c)])) if np.isfinite(c).any() else None for c in values.T]


def strictly_increasing(values: Sequence[int]) -> bool:
    """Strictly increasing, a peak that never converged (-1) counting as later than every
    converged one (two that never converged are not ordered)."""
    v = [math.inf if s < 0 else s for s in values]
    return all(a < b for a, b in zip(v, v[1:]))


def run(
    settings: Settings,
    out: str | os.PathLike,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Runs the network, the linearizations and Jacobi (resuming from `out/points`), writes
    figures and `results.json` (last). Float64 runs enable x64 inside only."""
    validate(settings)
    stored = settings_dict(settings)
    x64 = precision(settings.dtype)
    with x64:
        t0 = time.perf_counter()
        points = sweep.open_sweep(out, stored, name="--out")
        x, y = grid_and_target(settings)
        peaks = frequency.peak_indices(y, len(settings.frequencies), x=x)
        net = points.point(
            {"part": "network"},
            lambda: network_point(settings, peaks, progress),
            required=("errors", "convergence_steps"),
        )
        lins = []
        for r in range(settings.seeds):
            lins.append(
                points.point(
                    {"part": f"linearized_seed{settings.seed + r}"},
                    lambda r=r: linearized_point(settings, peaks, r),
                    required=("errors", "convergence_steps"),
                )
            )
            if progress is not None:
                progress(r + 1, settings.seeds, f"linearized seed {settings.seed + r}")
        jac = points.point({"part": "jacobi"}, lambda: jacobi_point(settings), required=("errors",))
        n = settings.n_points
        lfp = np.array([lin["lfp_rates"] for lin in lins], float)
        fitted = np.array([lin["fitted_rates"] for lin in lins], float)
        res = dict(
            experiment=NAME,
            settings=stored,
            environment=results.environment(),
            wall_seconds=time.perf_counter() - t0,
            peaks=dict(
                dft_index=peaks.tolist(),
                angular_frequency=(2 * np.pi * peaks / (n * (2 * np.pi / (n - 1)))).tolist(),
            ),
            error_kind="magnitude",
            network=dict(
                convergence_steps=net["convergence_steps"],
                increasing=[strictly_increasing(c) for c in net["convergence_steps"]],
                final_mse=net["final_mse"],
                reached_target=net["reached_target"],
                finite=net["finite"],
                steps_run=net["steps"][-1],
                train_seconds=net["train_seconds"],
            ),
            linearized=dict(
                convergence_steps=[lin["convergence_steps"] for lin in lins],
                increasing=[strictly_increasing(lin["convergence_steps"]) for lin in lins],
                learning_rate=[lin["learning_rate"] for lin in lins],
                lfp_convergence_steps=[lin["lfp_convergence_steps"] for lin in lins],
            ),
            jacobi=dict(
                convergence_steps=jac["convergence_steps"],
                decreasing=strictly_increasing(jac["convergence_steps"][::-1]),
                factors=jac["factors"],
            ),
            rates=dict(
                per_step_lfp=lfp.tolist(),
                per_step_fitted=fitted.tolist(),
                fitted_over_lfp=(fitted / lfp).tolist(),
                fitted_over_lfp_median=_column_medians(fitted / lfp),
            ),
        )
        res["headline"] = dict(
            network_increasing=all(res["network"]["increasing"]),
            linearized_increasing=all(res["linearized"]["increasing"]),
            jacobi_reversed=res["jacobi"]["decreasing"],
        )
    from jaxdyn.experiments import frequency_principle_plots

    record = dict(network=net, linearized=lins, jacobi=jac, x=x.tolist(), target=y.tolist())
    return finish(out, res, record, frequency_principle_plots.save_figures)


def summary_lines(res: dict[str, Any]) -> Sequence[str]:
    """Human-readable summary printed by the CLI."""
    k = res["peaks"]["dft_index"]
    lines = [
        f"peaks (DFT index): {k}; a peak converges once its error stays below "
        f"{res['settings']['threshold']}"
    ]
    for s, c in enumerate(res["network"]["convergence_steps"]):
        lines.append(f"network seed {res['settings']['seed'] + s}: Adam steps {c}")
    for s, c in enumerate(res["linearized"]["convergence_steps"]):
        lines.append(f"linearized seed {res['settings']['seed'] + s}: GD steps {c}")
    lines.append(f"Jacobi iterations {res['jacobi']['convergence_steps']}")
    lines.append(
        f"fitted / LFP rate per peak (median over seeds): "
        f"{['-' if v is None else f'{v:.3g}' for v in res['rates']['fitted_over_lfp_median']]}"
    )
    lines.append(f"headline: {res['headline']}")
    return lines
