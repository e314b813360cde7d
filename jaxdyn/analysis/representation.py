"""Representation dynamics: the two-point effective theory of van Rossem & Saxe (ICML 2024).

Two inputs `x1, x2` with hidden representations `h_i` and outputs `y_i` are summarised by
three scalars, the state `(h, y, w)`:

- `h = ||h_2 - h_1||^2`, the squared distance of the representations;
- `y = ||y_2 - y_1||^2`, the squared distance of the outputs;
- `w = dy_hat . (dy_hat - dy*)`, the output alignment (`dy* = target_2 - target_1`),

with `dx2 = ||x_2 - x_1||^2` and `dy2 = ||dy*||^2` fixed by the data. Two effective learning
rates `eta_h`, `eta_y` stand in for the architecture:

    h' = -eta_h dx2 w
    y' = -w (eta_y h + eta_h dx2 y / h)
    w' = -1/2 eta_y (3 w - y + dy2) h - 1/2 eta_h dx2 (y + w) w / h

`A_high = h - (eta_h / eta_y) dx2 y / h` is conserved; the fixed point is `y = dy2`, `w = 0`,
`h_inf = A_high / 2 + sqrt(A_high^2 / 4 + A_low^2)` with `A_low^2 = (eta_h / eta_y) dx2 dy2`.

The ODE is integrated by diffrax (Kvaerno5, an L-stable implicit Runge-Kutta method, with
adaptive steps), so solutions are jit-, vmap- and differentiable; float64 needs
`jax.enable_x64`. Everything here is a pure function of arrays; value checks (h > 0, rates
> 0, ...) run only on concrete inputs, so every function also works under `jit`/`vmap`.
The ODE itself, its negative controls and the compiled solve live in `_two_point_ode`.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn._checks import (
    check_array,
    check_finite,
    check_float,
    check_int,
    describe,
    fail,
    is_concrete,
)
from jaxdyn.analysis._representation_fit import MeanRateFit, curve_errors, fit_mean_rate
from jaxdyn.analysis._representation_models import (  # the networks of the experiments
    ACTIVATIONS,
    RepresentationModel,
    cnn,
    image_embedding,
    mlp,
    residual_mlp,
    xavier_std,
)
from jaxdyn.analysis._two_point_ode import (
    NEGATIVE_CONTROLS,
    Array,
    Rhs,
    _check_data,
    _check_rates,
    _check_state,
    _check_times,
    _float_array,
    _solve,
    _tolerances,
    two_point_rhs,
)

__all__ = ["two_point_rhs", "solve_two_point", "conserved", "FixedPoint", "fixed_point"]
__all__ += ["theory_loss", "observables", "mean_output_error", "RateFit", "fit_rates"]
__all__ += ["NEGATIVE_CONTROLS", "rsm", "cka", "MeanRateFit", "fit_mean_rate", "curve_errors"]
__all__ += ["ACTIVATIONS", "RepresentationModel", "mlp", "residual_mlp", "cnn", "xavier_std"]
__all__ += ["image_embedding"]


# --------------------------------------------------------------------------- solving


def solve_two_point(
    state0: Any,
    t: Any,
    eta_h: Any,
    eta_y: Any,
    dx2: Any,
    dy2: Any,
    *,
    rhs: Rhs = two_point_rhs,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 100_000,
) -> Array:
    """Integrates the two-point ODE from `state0` at time `t[0]`.

    Stiff-capable (Kvaerno5 with a PID step-size controller); jit- and vmap-able, e.g. over
    parameter sets: `jax.vmap(solve_two_point, (None, None, 0, 0, None, None))(s0, t, eh, ey,
    dx2, dy2)`, and reverse-mode differentiable.

    Args:
      state0: `(3,)` initial `(h, y, w)`, `h > 0`, `y >= 0`.
      t: `(T,)` strictly increasing times, `T >= 2`; `t[0]` is the time of `state0`.
      eta_h, eta_y: positive effective learning rates.
      dx2, dy2: non-negative `||dx||^2`, `||dy*||^2`.
      rhs: the right-hand side `rhs(state, eta_h, eta_y, dx2, dy2) -> (3,)`, e.g. one of
        `NEGATIVE_CONTROLS`.
      rtol, atol: step-size tolerances; default 1e-10 / 1e-12 in float64, 1e-5 / 1e-7 in
        float32. Much tighter ones can stall where `h` is large (`rtol=1e-12` at `h ~ 100`:
        the implicit stages' Newton solves cannot converge below float64 rounding).
      max_steps: the most solver steps.

    Returns:
      `(T, 3)` array of `(h, y, w)` at `t` (row 0 is `state0`); all NaN if the solver failed
      (too many steps, or `h` reached 0), with a warning when called outside `jit`.

    Raises:
      ValueError: `h <= 0` or `y < 0` in `state0`, non-positive rates, negative `dx2`/`dy2`,
        `t` not strictly increasing or shorter than 2.
      TypeError: non-array `state0`/`t`, non-numeric rates.
    """
    state0 = _check_state("state0", state0)
    t = _check_times("t", t)
    _check_rates(eta_h, eta_y)
    _check_data(dx2, dy2)
    max_steps = check_int("max_steps", max_steps, minimum=1)
    dtype = jnp.result_type(state0, t)
    rtol, atol = _tolerances(dtype, rtol, atol)
    params = tuple(jnp.asarray(p, dtype) for p in (eta_h, eta_y, dx2, dy2))
    ys = _solve(
        state0.astype(dtype),
        t.astype(dtype),
        params,
        jnp.asarray(rtol, dtype),
        jnp.asarray(atol, dtype),
        rhs=rhs,
        max_steps=max_steps,
    )
    if is_concrete(ys) and bool(jnp.any(jnp.isnan(ys))):
        warnings.warn(
            "solve_two_point: the ODE solver failed (more than `max_steps` steps, "
            "or h reached 0); the solution is NaN.",
            RuntimeWarning,
            stacklevel=2,
        )
    return ys


# --------------------------------------------------------------------------- closed forms


def conserved(state: Any, eta_h: Any, eta_y: Any, dx2: Any) -> Array:
    """The conserved quantity `A_high = h - (eta_h / eta_y) dx2 y / h`.

    Args:
      state: `(..., 3)` array of `(h, y, w)` (a single state or a solution `(T, 3)`).
      eta_h, eta_y: positive rates; dx2: non-negative `||dx||^2`.

    Returns:
      `(...)` array.
    """
    state = _check_state("state", state, batched=True)
    _check_rates(eta_h, eta_y)
    _check_data(dx2)
    h, y = state[..., 0], state[..., 1]
    return h - (eta_h / eta_y) * dx2 * y / h


class FixedPoint(NamedTuple):
    """The fixed point `(h_inf, dy2, 0)` reached from a state, and its two asymptotes.

    Each field has the leading shape of `state0` (scalars for a `(3,)` state).
    """

    h_inf: Array  # A_high / 2 + sqrt(A_high^2 / 4 + A_low^2)
    a_low: Array  # sqrt(eta_h / eta_y) |dx| |dy|: the rich limit (small initial weights)
    a_high: Array  # the conserved quantity: the lazy limit (large initial weights)


def fixed_point(state0: Any, eta_h: Any, eta_y: Any, dx2: Any, dy2: Any) -> FixedPoint:
    """The final representational distance the theory predicts from `state0`.

    Args:
      state0: `(..., 3)` initial `(h, y, w)`.
      eta_h, eta_y: positive rates; dx2, dy2: non-negative data separations.

    Returns:
      `FixedPoint(h_inf, a_low, a_high)`, each of shape `(...)`.
    """
    _check_data(dx2, dy2)
    a_high = conserved(state0, eta_h, eta_y, dx2)
    a_low = jnp.sqrt(eta_h / eta_y * dx2 * dy2)
    root = jnp.sqrt(a_high**2 / 4 + a_low**2)
    # A/2 + root cancels when A << 0 (large y0); a_low^2 / (root - A/2) is the same number.
    safe = jnp.where(a_high >= 0, 1.0, root - a_high / 2)
    h_inf = jnp.where(a_high >= 0, a_high / 2 + root, a_low**2 / safe)
    return FixedPoint(h_inf, jnp.broadcast_to(a_low, jnp.shape(a_high)), a_high)


def theory_loss(
    curves: Any, t: Any, dy2: Any, eta_mean: Any, mean_error0: Any, *, out_dim: int = 1
) -> Array:
    """The training loss the theory predicts along a solution, with its third rate.

    For the loss `0.5 * mean_i ||f(x_i) - y*_i||^2` over the two points (summed over output
    dimensions), the mean output `(f(x_1) + f(x_2)) / 2` relaxes to the mean target at the
    third rate `eta_mean`, and the loss splits into that part and the one set by `(y, w)`:

        L(t) = 1/4 (2 ||mean error||^2(t) + w + (dy2 - y) / 2),
        ||mean error||^2(t) = mean_error0 exp(-2 eta_mean (t - t[0])),

    as in the authors' code (`source/simulate.py`, `loss`). jaxdyn's MSE convention divides
    by every output entry; `out_dim=k` gives that loss for `k` outputs.

    Args:
      curves: `(T, 3)` states `(h, y, w)` at `t` (a solution or the observed trajectory).
      t: `(T,)` times, strictly increasing.
      dy2: `||dy*||^2`.
      eta_mean: positive rate of the mean output.
      mean_error0: `||mean output - mean target||^2` at `t[0]` (see `mean_output_error`).
      out_dim: divide by the number of output dimensions (jaxdyn's per-entry mean).

    Returns:
      `(T,)` loss.
    """
    curves = _check_state("curves", curves, batched=True)
    if curves.ndim != 2:
        fail("curves", "an array of shape (T, 3)", f"shape {tuple(curves.shape)}")
    t = _check_times("t", t, curves.shape[0], "`curves`")
    _check_data(0.0, dy2)
    check_float("eta_mean", eta_mean, minimum=0, strict_min=True)
    check_float("mean_error0", mean_error0, minimum=0)
    out_dim = check_int("out_dim", out_dim, minimum=1)
    mean_error = mean_error0 * jnp.exp(-2 * eta_mean * (t - t[0]))
    y, w = curves[:, 1], curves[:, 2]
    return (2 * mean_error + w + (dy2 - y) / 2) / (4 * out_dim)


# --------------------------------------------------------------------------- measuring


def _check_pair(name1, a, name2, b):
    check_array(name1, a, min_ndim=1, kinds="iuf", allow_empty=True)
    check_array(name2, b, min_ndim=1, kinds="iuf", allow_empty=True)
    if tuple(a.shape) != tuple(b.shape):
        fail(
            name2,
            f"an array of the shape of `{name1}`, {tuple(a.shape)}",
            f"shape {tuple(b.shape)}",
        )
    check_finite(name1, a)
    check_finite(name2, b)


def observables(rep1: Any, rep2: Any, out1: Any, out2: Any, target1: Any, target2: Any) -> Array:
    """The state `(h, y, w)` measured on a network, over any leading (time) axes.

    Args:
      rep1, rep2: `(..., d)` hidden representations of the two inputs (flatten feature maps).
      out1, out2: `(..., k)` network outputs, same leading axes as the representations.
      target1, target2: `(k,)` targets (or `(..., k)`, broadcast against the outputs).

    Returns:
      `(..., 3)` array: `h = ||rep2 - rep1||^2`, `y = ||out2 - out1||^2`,
      `w = (out2 - out1) . ((out2 - out1) - (target2 - target1))`.

    Raises:
      ValueError: the two arrays of a pair differ in shape, outputs and targets in `k`, or
        representations and outputs in their leading axes.
    """
    _check_pair("rep1", rep1, "rep2", rep2)
    _check_pair("out1", out1, "out2", out2)
    _check_pair("target1", target1, "target2", target2)
    if tuple(out1.shape[:-1]) != tuple(rep1.shape[:-1]):
        fail(
            "out1",
            f"an array with the leading axes of `rep1`, {tuple(rep1.shape[:-1])} "
            "(one output per representation)",
            f"shape {tuple(out1.shape)}",
        )
    if target1.shape[-1] != out1.shape[-1]:
        fail(
            "target1",
            f"an array with the {out1.shape[-1]} output columns of `out1`",
            f"shape {tuple(target1.shape)}",
        )
    d_rep = _float_array(rep2) - _float_array(rep1)
    d_out = _float_array(out2) - _float_array(out1)
    d_target = _float_array(target2) - _float_array(target1)
    shape = jnp.broadcast_shapes(d_out.shape, d_target.shape)  # targets may lack the time axis
    d_out, d_target = jnp.broadcast_to(d_out, shape), jnp.broadcast_to(d_target, shape)
    h = jnp.sum(d_rep**2, axis=-1)
    y = jnp.sum(d_out**2, axis=-1)
    w = jnp.sum(d_out * (d_out - d_target), axis=-1)
    return jnp.stack(jnp.broadcast_arrays(h, y, w), axis=-1)


def mean_output_error(out1: Any, out2: Any, target1: Any, target2: Any) -> Array:
    """`||(out1 + out2) / 2 - (target1 + target2) / 2||^2`, `(...)`: `theory_loss`'s
    `mean_error0` (at the first time) and what its third rate is fitted to."""
    _check_pair("out1", out1, "out2", out2)
    _check_pair("target1", target1, "target2", target2)
    mean_out = (_float_array(out1) + _float_array(out2)) / 2
    mean_target = (_float_array(target1) + _float_array(target2)) / 2
    shape = jnp.broadcast_shapes(mean_out.shape, mean_target.shape)
    diff = jnp.broadcast_to(mean_out, shape) - jnp.broadcast_to(mean_target, shape)
    return jnp.sum(diff**2, axis=-1)


# --------------------------------------------------------------------------- fitting


class RateFit(NamedTuple):
    """Effective learning rates fitted to an observed trajectory. Shapes: T times."""

    eta_h: float
    eta_y: float
    curves: Array  # (T, 3): the ODE solution at the fitted rates
    sse: float  # sum over t and (h, y, w) of the squared errors (weighted)
    relative_error: float  # sqrt(sse / sum(weights * observed^2))
    grid: tuple  # (eta_h values (G_h,), eta_y values (G_y,)) of the start grid
    grid_sse: Array  # (G_h, G_y): sse on the grid; inf where the solver failed
    success: bool  # the least-squares refinement converged


def _default_grid(observed, t, dx2, points):
    """Log grids centred where both terms of y' act on the scale of the observed span.

    `eta_y h` and `eta_h dx2 / h` are the ODE's two inverse time scales, so rates of order
    `1 / (span h)` and `h / (span dx2)` make the trajectory move over `t`; the grid covers
    three decades either side (the authors sweep 1e-6..1e2 along one line).
    """
    span = float(t[-1] - t[0])
    h_ref = float(np.mean(observed[:, 0]))
    factors = np.logspace(-3, 3, points)
    return (h_ref / (span * dx2) * factors, 1.0 / (span * h_ref) * factors)


def fit_rates(
    observed: Any,
    t: Any,
    dx2: Any,
    dy2: Any,
    *,
    rhs: Rhs = two_point_rhs,
    grid: tuple[Any, Any] | None = None,
    grid_points: int = 13,
    weights: Any = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 4096,
    max_nfev: int = 200,
) -> RateFit:
    """Fits `eta_h`, `eta_y` to an observed `(h, y, w)` trajectory.

    The ODE starts from `observed[0]` at `t[0]`. Every point of a log grid of rates is solved
    (coarse tolerance); the best is refined by least squares (scipy's trust-region reflective
    method) in `log(eta)`, so the rates stay positive. Every solve reuses one compiled solver.

    Args:
      observed: `(T, 3)` measured `(h, y, w)` (see `observables`), `h > 0`.
      t: `(T,)` strictly increasing times of the rows (e.g. SGD steps: the rates then
        include the learning rate).
      dx2: positive `||dx||^2`; dy2: non-negative `||dy*||^2`.
      rhs: the ODE to fit (default the theory's; `NEGATIVE_CONTROLS` holds altered ones).
        The solver compiles once per `rhs` object: reuse one function, not a new lambda.
      grid: `(eta_h values, eta_y values)`, positive, for the start; default
        `grid_points` log-spaced values per rate around the scale of the data.
      grid_points: points per rate of the default grid.
      weights: `(3,)` non-negative weights of the h, y, w errors; default ones (as the
        authors).
      rtol, atol: solver tolerances (default 1e-8 / 1e-10 in float64; the grid uses 1e-5).
      max_steps: solver steps per solve (grid rates far from the data make the ODE blow up,
        and each such solve runs to this limit: 4096 instead of 100,000 makes a fit of a
        network's trajectory ~30x faster); max_nfev: most least-squares evaluations.

    Returns:
      `RateFit`.

    Raises:
      ValueError: shapes that do not match, `h <= 0`, `t` not increasing, non-positive
        `dx2`, negative `dy2`, non-positive grid rates or negative weights.
    """
    import scipy.optimize

    observed = _check_state("observed", observed, batched=True)
    if observed.ndim != 2 or observed.shape[0] < 3:
        fail(
            "observed",
            "an array of shape (T, 3) with T >= 3 times",
            f"shape {tuple(observed.shape)}",
        )
    t = _check_times("t", t, observed.shape[0], "`observed`")
    check_float("dx2", dx2, minimum=0, strict_min=True, hint="||x_2 - x_1||^2")
    check_float("dy2", dy2, minimum=0, hint="||y*_2 - y*_1||^2")
    grid_points = check_int("grid_points", grid_points, minimum=1)
    max_steps = check_int("max_steps", max_steps, minimum=1)
    max_nfev = check_int("max_nfev", max_nfev, minimum=1)
    dtype = jnp.result_type(observed, t)
    wide = jnp.finfo(dtype).bits >= 64  # the fit needs less than a reference solution
    rtol, atol = _tolerances(
        dtype,
        (1e-8 if wide else None) if rtol is None else rtol,
        (1e-10 if wide else None) if atol is None else atol,
    )
    obs = np.asarray(observed, dtype=float)
    tt = np.asarray(t, dtype=float)
    if weights is None:
        weights = np.ones(3)
    else:
        weights = np.asarray(weights) if isinstance(weights, (list, tuple)) else weights
        check_array("weights", weights, ndim=1, kinds="iuf")
        weights = np.asarray(weights, dtype=float)
        if weights.shape != (3,) or not np.all(weights >= 0) or not np.any(weights > 0):
            fail(
                "weights", "3 non-negative weights (of h, y, w), not all 0", f"{weights.tolist()!r}"
            )
    if grid is None:
        grid = _default_grid(obs, tt, float(dx2), grid_points)
    else:
        if not isinstance(grid, (tuple, list)) or len(grid) != 2:
            fail("grid", "a pair (eta_h values, eta_y values)", describe(grid))
        for name, g in zip(("grid[0]", "grid[1]"), grid):
            g = np.asarray(g, dtype=float)
            if g.ndim != 1 or g.size == 0 or not np.all(np.isfinite(g) & (g > 0)):
                fail(
                    name,
                    "a 1-dimensional array of positive, finite rates",
                    f"{g.tolist()!r}" if g.size <= 6 else f"shape {g.shape}",
                )
    gh, gy = (np.asarray(g, dtype=float) for g in grid)

    state0 = jnp.asarray(obs[0], dtype)
    tj = jnp.asarray(tt, dtype)
    data = (jnp.asarray(dx2, dtype), jnp.asarray(dy2, dtype))
    sqrt_w = np.sqrt(weights)

    def solve(log_rates, tol):
        rates = tuple(jnp.asarray(v, dtype) for v in np.exp(log_rates))
        return np.asarray(
            _solve(
                state0,
                tj,
                rates + data,
                jnp.asarray(tol[0], dtype),
                jnp.asarray(tol[1], dtype),
                rhs=rhs,
                max_steps=max_steps,
            )
        )

    def sse_of(curves):
        sse = float(np.sum(((curves - obs) * sqrt_w) ** 2))
        return sse if np.isfinite(sse) else np.inf

    # The start: the grid, solved point by point with the one compiled solver (a vmapped
    # solve would compile a second program, and runs every lane as long as the slowest).
    coarse = (1e-5, 1e-5 * atol / rtol)
    sse_grid = np.array([[sse_of(solve(np.log([a, b]), coarse)) for b in gy] for a in gh])
    if not np.any(np.isfinite(sse_grid)):
        fail(
            "grid",
            "rates at which the ODE can be solved over `t` (every grid point failed)",
            f"eta_h in [{gh.min():.3g}, {gh.max():.3g}], eta_y in [{gy.min():.3g}, {gy.max():.3g}]",
        )
    i, j = np.unravel_index(int(np.argmin(sse_grid)), sse_grid.shape)

    # Refinement in log(eta). Jacobian by central differences: the residual is smooth in the
    # rates up to the solver tolerance (1e-8 -> ~1e-4 relative error at step 1e-4), which is
    # plenty for the trust-region steps and needs no second (forward-mode) compilation.
    big = 1e6 * (1.0 + np.abs(obs)).ravel()  # a failed solve: a residual the step rejects

    def residual(x):
        r = ((solve(x, (rtol, atol)) - obs) * sqrt_w).ravel()
        return np.where(np.isfinite(r), r, big)

    def jacobian(x, step=1e-4):
        cols = [(residual(x + step * e) - residual(x - step * e)) / (2 * step) for e in np.eye(2)]
        return np.stack(cols, axis=1)

    result = scipy.optimize.least_squares(
        residual,
        np.log([gh[i], gy[j]]),
        jac=jacobian,
        method="trf",
        xtol=1e-10,
        ftol=1e-12,
        gtol=1e-12,
        max_nfev=max_nfev,
    )
    eta_h, eta_y = (float(v) for v in np.exp(result.x))
    fitted = solve(result.x, (rtol, atol))
    sse = sse_of(fitted)
    scale = float(np.sum(weights * obs**2))
    return RateFit(
        eta_h,
        eta_y,
        jnp.asarray(fitted, dtype),
        sse,
        float(np.sqrt(sse / scale)) if scale else np.nan,
        (gh, gy),
        sse_grid,
        bool(result.success),
    )


# --------------------------------------------------------------------------- geometry


def _flat_examples(name: str, x: Any, min_n: int = 1) -> Array:
    check_array(name, x, min_ndim=2, kinds="iuf")
    if x.shape[0] < min_n:
        fail(
            name,
            f"an array of at least {min_n} examples (batch axis first)",
            f"shape {tuple(x.shape)}",
        )
    check_finite(name, x)
    x = _float_array(x)
    return x.reshape(x.shape[0], -1)


def rsm(reps: Any, *, squared: bool = False) -> Array:
    """Pairwise Euclidean distances of representations (a representational distance matrix).

    Computed from differences (not `|a|^2 + |b|^2 - 2 a.b`), so nearby representations keep
    their relative precision; one row at a time (`lax.map`), O(n d) memory.

    Args:
      reps: `(n, ...)` representations, one per example (trailing axes are flattened).
      squared: return squared distances (the theory's `h` for each pair).

    Returns:
      `(n, n)` symmetric matrix with a zero diagonal.
    """
    x = _flat_examples("reps", reps)
    d2 = jax.lax.map(lambda row: jnp.sum((x - row[None]) ** 2, axis=-1), x)
    return d2 if squared else jnp.sqrt(d2)


def _hsic(k: Array, l: Array, debiased: bool) -> Array:
    """HSIC of two (n, n) Gram matrices up to a factor that cancels in CKA: the centred
    `tr(K H L H)`, or Song et al.'s (2012) unbiased estimator (times n (n - 3))."""
    n = k.shape[0]
    if not debiased:
        kc = k - k.mean(0, keepdims=True) - k.mean(1, keepdims=True) + k.mean()
        lc = l - l.mean(0, keepdims=True) - l.mean(1, keepdims=True) + l.mean()
        return jnp.sum(kc * lc)
    k = k - jnp.diag(jnp.diag(k))
    l = l - jnp.diag(jnp.diag(l))
    ones_k, ones_l = k.sum(1), l.sum(1)
    return (
        jnp.sum(k * l)
        + ones_k.sum() * ones_l.sum() / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * jnp.dot(ones_k, ones_l)
    )


def cka(x: Any, y: Any, *, debiased: bool = False) -> Array:
    """Linear centred kernel alignment (Kornblith et al. 2019) of two representations.

    `CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))` with linear kernels `K = X X^T`,
    `L = Y Y^T`; invariant to orthogonal transforms and isotropic scaling of either.

    Args:
      x: `(n, ...)` representations of n examples; y: `(n, ...)` of the same examples (any
        feature count).
      debiased: use the unbiased HSIC estimator (Song et al. 2012), which removes the bias
        toward 1 at small n relative to the feature count; needs n >= 4 (and may be
        negative or NaN when the estimates of HSIC(K, K) are not positive).

    Returns:
      Scalar; 1 for identical inputs.

    Raises:
      ValueError: different numbers of examples, too few examples, a constant input.
    """
    xf = _flat_examples("x", x, 4 if debiased else 2)
    yf = _flat_examples("y", y, 4 if debiased else 2)
    if xf.shape[0] != yf.shape[0]:
        fail(
            "y",
            f"an array with the {xf.shape[0]} examples of `x` (batch axis first)",
            f"shape {tuple(y.shape)}",
        )
    for name, a, orig in (("x", xf, x), ("y", yf, y)):
        if is_concrete(a) and bool(jnp.all(a == a[:1])):
            fail(
                name,
                "representations that differ between examples (CKA is 0/0 otherwise)",
                f"{a.shape[0]} identical rows of shape {tuple(orig.shape[1:])}",
            )
    k, l = xf @ xf.T, yf @ yf.T
    return _hsic(k, l, debiased) / jnp.sqrt(_hsic(k, k, debiased) * _hsic(l, l, debiased))
