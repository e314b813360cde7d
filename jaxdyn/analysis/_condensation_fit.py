"""Training two-layer networks to convergence with a learning rate that keeps the loss falling.

The authors' rule (JMLR 2021, as their README describes it): full-batch gradient descent at
`lr0 * sqrt(beta1 beta2) / alpha`; when the loss rises, halve lr0 and restart from the
initialization. `rule="authors"` does exactly that. The default `rule="adaptive"` takes each
step at `base / h_t`, where `h_t` bounds the curvature of the loss `L = 0.5 mean((f - y)^2)`
at the current parameters, and keeps a halving safety net that does not throw the run away:
a step that raises the loss (ReLU kinks crossing a data point are not in the bound) is undone
and `base` halved; every accepted step lets `base` regrow by `GROWTH` up to `lr0`. The bound:

    ||Hess L|| <= lambda_max(Theta_t) / n + max_k ||R_k||,

`Theta_t` the (n, n) NTK of the current parameters (closed form for this model) and `R_k` neuron
k's block of the residual term `sum_i r_i Hess f_i / n` (the residual Hessian is block-diagonal
over neurons: `[[0, g_k^T], [g_k, D_k]]`, `g_k = alpha sum_i r_i sigma'(z_ik) x~_i / n`,
`D_k = alpha a_k sum_i r_i sigma''(z_ik) x~_i x~_i^T / n`, so `||R_k|| <= |g_k| + ||D_k||`).
A step below 2 / ||Hess L|| is a descent step of a locally quadratic loss, so the rate tracks
the curvature as it changes by orders of magnitude during condensation (tiny at small
initialization, where a fixed rate wastes most steps on the initial plateau, large once the
weights have grown, where it diverges). It is gradient descent with a variable step, a
discretization of the same gradient flow the paper's theory is about; the relative distance RD
at convergence is a property of that flow's end point.

Every point stops when `mean((f - y)^2) < mse_target` or at `max_steps` (over all restarts).
The loop is a `lax.while_loop` of `lax.scan` chunks, pure and vmap-able over points: `fit_grid`
trains every (gamma, gamma') of one width as one vmapped run.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn._checks import (
    check_array,
    check_bool,
    check_choice,
    check_finite,
    check_float,
    check_int,
    describe,
    fail,
)

Array = Any
Params = dict
RULES = ("adaptive", "authors")
GROWTH = 1.2  # adaptive rule: the base rate regrows by this factor per accepted step, up to lr0


class FitResult(NamedTuple):
    """One training run (or P of them, every field with a leading (P,) axis, from `fit_grid`).

    Attributes:
      params: the final parameters.
      loss: final `0.5 mean((f - y)^2)`; mse: final `mean((f - y)^2)`.
      steps: gradient steps taken over all restarts; run_steps: those of the final run.
      restarts: how often the base rate was halved (authors': restarts from the
        initialization; adaptive: undone steps).
      lr0: the base rate at the end (the rate used: `lr0 / h_t` adaptive,
        `lr0 * sqrt(beta1 beta2) / alpha` authors').
      lr_last: the step size of the last step taken.
      converged: the MSE target was reached; failed: the base rate fell below
        `lr0 / 2^max_restarts`.
      history: `(ceil(max_steps / chunk),)` loss after each chunk of steps (NaN after the end).
    """

    params: Params
    loss: Array
    mse: Array
    steps: Array
    run_steps: Array
    restarts: Array
    lr0: Array
    lr_last: Array
    converged: Array
    failed: Array
    history: Array


def _terms(params, x, y, alpha, activation):
    """Loss, gradient and the curvature bound h at `params` (see the module doc)."""
    from jaxdyn.analysis.condensation import ACTIVATIONS, half_sums

    n = x.shape[0]
    a, w, b = params["a"], params["w"], params["b"]
    z = x @ w.T + b[None, :]  # (n, m)
    s, d1, d2 = ACTIVATIONS[activation](z)
    r = alpha * half_sums(s, a) - y[:, 0]  # (n,)
    mse = jnp.mean(r * r)
    g_out = alpha * (r[:, None] * d1) * a[None, :] / n  # dL/dz, (n, m)
    grads = {"a": alpha * (s.T @ r) / n, "w": g_out.T @ x, "b": jnp.sum(g_out, axis=0)}
    xt = jnp.concatenate([x, jnp.ones((n, 1), x.dtype)], axis=1)  # x~ = (x, 1)
    gram = xt @ xt.T
    da = d1 * a[None, :]
    theta = alpha**2 * (s @ s.T + (da @ da.T) * gram)
    lam = jnp.linalg.eigvalsh(theta)[-1]
    g = alpha * (r[:, None] * d1).T @ xt / n  # (m, d + 1)
    sq = jnp.sum(xt * xt, axis=1)  # (n,)
    dk = jnp.abs(alpha * a) * ((jnp.abs(r)[:, None] * jnp.abs(d2)).T @ sq) / n  # (m,)
    h = lam / n + jnp.max(jnp.linalg.norm(g, axis=1) + dk)
    return 0.5 * mse, mse, grads, h


@functools.partial(
    jax.jit,
    static_argnames=("activation", "adaptive", "max_steps", "chunk", "max_restarts"),
)
def _fit_core(
    params0,
    alpha,
    lr_scale,
    lr0,
    x,
    y,
    mse_target,
    *,
    activation,
    adaptive,
    max_steps,
    chunk,
    max_restarts,
):
    dtype = params0["a"].dtype
    n_chunks = -(-max_steps // chunk)
    inf = jnp.asarray(jnp.inf, dtype)

    def step(state, _):
        params, back, base, restarts, steps, run_steps, prev, done, failed, last = state
        active = ~done & ~failed & (steps < max_steps)
        loss, mse, grads, h = _terms(params, x, y, alpha, activation)
        reached = mse < mse_target
        rose = ~jnp.isfinite(loss) | (loss > prev * (1 + 1e-9))
        lr = base / jnp.maximum(h, 1e-300) if adaptive else base * lr_scale
        moved = jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)
        halve = active & ~reached & rose
        update = active & ~reached & ~rose
        # authors': restart from the initialization; adaptive: undo the step that raised the
        # loss (back to the parameters `prev` was measured at)
        undo = params0 if not adaptive else back
        where = functools.partial(jax.tree_util.tree_map, lambda u, v: jnp.where(update, u, v))
        fallback = jax.tree_util.tree_map(lambda u, p: jnp.where(halve, u, p), undo, params)
        restarts = restarts + halve
        grown = jnp.minimum(base * GROWTH, lr0) if adaptive else base
        if adaptive:
            kept_prev, kept_runs = prev, run_steps - 1
        else:
            kept_prev, kept_runs = inf, jnp.zeros_like(run_steps)
        base = jnp.where(halve, base / 2, jnp.where(update, grown, base))
        state = (
            where(moved, fallback),
            where(params, back),
            base,
            restarts,
            steps + active,
            jnp.where(halve, kept_runs, run_steps + update),
            jnp.where(update, loss, jnp.where(halve, kept_prev, prev)),
            done | (active & reached),
            failed | (base < lr0 * 0.5**max_restarts),
            jnp.where(update, lr, last),
        )
        return state, None

    def body(carry):
        state, hist, c = carry
        state, _ = jax.lax.scan(step, state, None, length=chunk)
        loss = _terms(state[0], x, y, alpha, activation)[0]
        return state, hist.at[c].set(loss), c + 1

    def cond(carry):
        state, _, c = carry
        return ~state[7] & ~state[8] & (state[4] < max_steps) & (c < n_chunks)

    zero = jnp.zeros((), jnp.int32)
    state0 = (
        params0,
        params0,
        jnp.asarray(lr0, dtype),
        zero,
        zero,
        zero,
        inf,
        False,
        False,
        jnp.zeros((), dtype),
    )
    hist0 = jnp.full((n_chunks,), jnp.nan, dtype)
    state, hist, _ = jax.lax.while_loop(cond, body, (state0, hist0, zero))
    params, _, base, restarts, steps, run_steps, _, done, failed, last = state
    loss, mse, _, _ = _terms(params, x, y, alpha, activation)
    return FitResult(
        params,
        loss,
        mse,
        steps,
        run_steps,
        restarts,
        base,
        last,
        done | (mse < mse_target),
        failed,
        hist,
    )


def _check_data(x: Any, y: Any, d: int) -> tuple[Array, Array]:
    check_array("x", x, ndim=2, kinds="f")
    check_array("y", y, ndim=2, kinds="f")
    if x.shape[1] != d:
        fail("x", f"an (n, {d}) array (the model's input size)", f"shape {tuple(x.shape)}")
    if tuple(y.shape) != (x.shape[0], 1):
        fail("y", f"an (n, 1) array with n = x.shape[0] = {x.shape[0]}", f"shape {tuple(y.shape)}")
    check_finite("x", x)
    check_finite("y", y)
    return jnp.asarray(x), jnp.asarray(y)


def _check_options(rule, lr0, mse_target, max_steps, chunk, max_restarts):
    check_choice("rule", rule, RULES)
    lr0 = check_float("lr0", lr0, minimum=0, strict_min=True)
    mse_target = check_float("mse_target", mse_target, minimum=0, strict_min=True)
    max_steps = check_int("max_steps", max_steps, minimum=1)
    chunk = check_int("chunk", chunk, minimum=1)
    max_restarts = check_int("max_restarts", max_restarts, minimum=0)
    return lr0, mse_target, max_steps, min(chunk, max_steps), max_restarts


def fit(
    apply_fn: Callable,
    params0: Params,
    x: Array,
    y: Array,
    *,
    rule: str = "adaptive",
    lr0: float = 0.5,
    mse_target: float = 1e-6,
    max_steps: int = 100_000,
    chunk: int = 100,
    max_restarts: int = 30,
) -> FitResult:
    """Trains a `two_layer` network by full-batch gradient descent on `0.5 mean((f - y)^2)`
    until `mean((f - y)^2) < mse_target` or `max_steps`, with the learning-rate rule `rule`.

    Args:
      apply_fn: `two_layer`'s apply_fn (its `.alpha`, `.activation`, `.scales` are read).
      params0: initial parameters (`init_fn(key)`).
      x: `(n, d)` inputs; y: `(n, 1)` targets.
      rule: "adaptive" (`lr0 / h_t`, h_t the curvature bound) or "authors"
        (`lr0 sqrt(beta1 beta2) / alpha`, halved with a restart from params0 when the loss
        rises).
      lr0: the base rate; mse_target, max_steps: the stopping rule; chunk: steps between
        convergence checks (and `history` entries); max_restarts: give up after this many.

    Returns:
      `FitResult`. Jit-compiled once per (shapes, rule, activation, max_steps, chunk).
    """
    from jaxdyn.analysis.condensation import check_net_params

    if not callable(apply_fn) or not hasattr(apply_fn, "scales"):
        fail("apply_fn", "the apply_fn of condensation.two_layer", describe(apply_fn), TypeError)
    _, d = check_net_params("params0", params0)
    x, y = _check_data(x, y, d)
    check_finite("params0", params0)
    lr0, mse_target, max_steps, chunk, max_restarts = _check_options(
        rule, lr0, mse_target, max_steps, chunk, max_restarts
    )
    sc = apply_fn.scales
    dtype = params0["a"].dtype
    return _fit_core(
        params0,
        jnp.asarray(sc.alpha, dtype),
        jnp.asarray(math.sqrt(sc.beta1 * sc.beta2) / sc.alpha, dtype),
        lr0,
        x.astype(dtype),
        y.astype(dtype),
        jnp.asarray(mse_target, dtype),
        activation=apply_fn.activation,
        adaptive=rule == "adaptive",
        max_steps=max_steps,
        chunk=chunk,
        max_restarts=max_restarts,
    )


def fit_grid(
    width: int,
    points: Sequence[tuple[float, float]],
    x: Array,
    y: Array,
    *,
    key: Array,
    activation: str = "relu",
    antisymmetric: bool = True,
    input_exponent: float | Sequence[float] | None = None,
    dtype: Any = None,
    rule: str = "adaptive",
    lr0: float = 0.5,
    mse_target: float = 1e-6,
    max_steps: int = 100_000,
    chunk: int = 100,
    max_restarts: int = 30,
) -> tuple[Params, FitResult]:
    """Trains the `two_layer(width, gamma=g, gamma_prime=gp, ...)` of every `(g, gp)` in
    `points` as ONE vmapped run (P points).

    Every point starts from the same standard-normal draw of `key` scaled by its own beta1,
    beta2 (common random numbers: differences across the diagram are not seed noise).
    `input_exponent` is one b2 for every point or one per point (None: the default split).
    The other options are `fit`'s.

    Returns:
      `(params0, result)`: the initial parameters and the `FitResult`, leaves `(P, ...)`.
    """
    from jaxdyn.analysis.condensation import check_net_params, scales, standard_init, two_layer

    if not isinstance(points, (list, tuple)) or not points:
        fail(
            "points", "a non-empty list of (gamma, gamma_prime) pairs", describe(points), TypeError
        )
    if isinstance(input_exponent, (list, tuple)):
        if len(input_exponent) != len(points):
            fail(
                "input_exponent",
                f"one exponent per point ({len(points)})",
                f"{len(input_exponent)} exponents",
            )
        exponents = list(input_exponent)
    else:
        exponents = [input_exponent] * len(points)
    d = x.shape[1] if getattr(x, "ndim", 0) == 2 else 1
    for i, pt in enumerate(points):
        if not isinstance(pt, (list, tuple)) or len(pt) != 2:
            fail(f"points[{i}]", "a (gamma, gamma_prime) pair", describe(pt), TypeError)
        two_layer(  # checks the model's arguments
            width,
            gamma=pt[0],
            gamma_prime=pt[1],
            activation=activation,
            input_dim=d,
            antisymmetric=antisymmetric,
            input_exponent=exponents[i],
        )
    check_bool("antisymmetric", antisymmetric)
    lr0, mse_target, max_steps, chunk, max_restarts = _check_options(
        rule, lr0, mse_target, max_steps, chunk, max_restarts
    )
    dtype = np.dtype(dtype or jnp.zeros(()).dtype)
    unit = standard_init(key, width, x.shape[1], antisymmetric, dtype)
    check_net_params("params0", unit)
    x, y = _check_data(x, y, unit["w"].shape[1])
    sc = [
        scales(width, gamma=g, gamma_prime=gp, input_exponent=e)
        for (g, gp), e in zip(points, exponents)
    ]
    beta1 = jnp.asarray([s.beta1 for s in sc], dtype)
    beta2 = jnp.asarray([s.beta2 for s in sc], dtype)
    params0 = {
        "a": beta1[:, None] * unit["a"][None, :],
        "w": beta2[:, None, None] * unit["w"][None],
        "b": beta2[:, None] * unit["b"][None, :],
    }
    alpha = jnp.asarray([s.alpha for s in sc], dtype)
    scale = jnp.asarray([math.sqrt(s.beta1 * s.beta2) / s.alpha for s in sc], dtype)
    run = functools.partial(
        _fit_core,
        activation=activation,
        adaptive=rule == "adaptive",
        max_steps=max_steps,
        chunk=chunk,
        max_restarts=max_restarts,
    )
    res = jax.vmap(run, in_axes=(0, 0, 0, None, None, None, None))(
        params0, alpha, scale, lr0, x.astype(dtype), y.astype(dtype), jnp.asarray(mse_target, dtype)
    )
    return params0, res
