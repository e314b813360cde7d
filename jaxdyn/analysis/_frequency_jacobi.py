"""Damped Jacobi on the 1-D Poisson problem, the classical contrast to the frequency principle
(private part of `jaxdyn.analysis.frequency`): it removes high-frequency error first."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn._checks import check_array, check_finite, check_float, check_int, fail, is_concrete

__all__ = ["JacobiErrors", "jacobi_factors", "jacobi_mode_errors", "sine_modes"]

Array = Any


class JacobiErrors(NamedTuple):
    """Per-mode error of damped Jacobi. T = steps + 1 recorded iterations, P modes.

    Attributes:
      iterations: `(T,)` 0, 1, ..., steps.
      modes: `(P,)` sine-mode indices k (1-based: `sin(k pi j h)`).
      errors: `(T, P)` `|e_t,k| / |e_0,k|`, the error's sine coefficient relative to its start.
      amplitudes: `(T, P)` `|e_t,k|` itself.
    """

    iterations: Array
    modes: Array
    errors: Array
    amplitudes: Array


def sine_modes(n: int, dtype: Any = jnp.float64) -> jax.Array:
    """`(n, n)` orthonormal DST-I basis: row k - 1 is `sqrt(2 h) sin(k pi j h)`, j = 1..n,
    `h = 1 / (n + 1)`; its rows are the eigenvectors of the 1-D Dirichlet Laplacian."""
    j = jnp.arange(1, n + 1, dtype=dtype)
    h = 1.0 / (n + 1)
    return jnp.sqrt(2 * h) * jnp.sin(jnp.pi * h * jnp.outer(j, j))


def jacobi_factors(n: int, modes: Array, omega: float = 2 / 3) -> jax.Array:
    """The per-iteration factor `1 - omega (1 - cos(k pi h))` of each sine mode k."""
    h = 1.0 / (n + 1)
    return 1 - omega * (1 - jnp.cos(jnp.asarray(modes) * jnp.pi * h))


@functools.partial(jax.jit, static_argnums=2)
def _jacobi_coefficients(g: jax.Array, omega: jax.Array, steps: int) -> jax.Array:
    """`(steps + 1, n)` sine coefficients of the Jacobi error, row 0 the initial error."""
    n = g.shape[0]
    h = 1.0 / (n + 1)
    basis = sine_modes(n, g.dtype)
    lam = (2 - 2 * jnp.cos(jnp.pi * h * jnp.arange(1, n + 1, dtype=g.dtype))) / h**2
    u_star = basis.T @ ((basis @ g) / lam)  # A^-1 g through its eigenvectors

    def apply_a(u):
        padded = jnp.pad(u, 1)
        return (2 * u - padded[:-2] - padded[2:]) / h**2

    def step(u, _):
        u = u + omega * (h**2 / 2) * (g - apply_a(u))
        return u, basis @ (u - u_star)

    _, coef = jax.lax.scan(step, jnp.zeros_like(g), None, length=steps)
    return jnp.concatenate([(basis @ -u_star)[None], coef])


def jacobi_mode_errors(
    g: Array, steps: int, *, omega: float = 2 / 3, modes: Array | None = None
) -> JacobiErrors:
    """Damped Jacobi on `-u'' = g` on (0, 1), u(0) = u(1) = 0, per-frequency error.

    The unknowns are u at the n interior points `j h`, `h = 1 / (n + 1)`; `A = tridiag(-1, 2,
    -1) / h^2`; from `u_0 = 0`, `u_{t+1} = u_t + omega (h^2 / 2) (g - A u_t)`. The error
    `e_t = u_t - A^-1 g` is expanded in the sine modes (`sine_modes`), the eigenvectors of
    A, so each coefficient shrinks by `1 - omega (1 - cos(k pi h))` per iteration: the
    high modes (k near n) fastest for omega = 2/3, the reverse of the frequency principle.
    The iteration is run as written (a `lax.scan`), not from the factors.

    Args:
      g: `(n,)` right-hand side at the interior points, n >= 3, finite.
      steps: iterations (>= 1).
      omega: damping in (0, 1].
      modes: optional `(P,)` 1-based sine indices to report; by default every mode whose
        coefficient in the initial error is above 1e-8 of the largest (the modes present).

    Returns:
      `JacobiErrors(iterations, modes, errors, amplitudes)`.

    Raises:
      ValueError: a short or non-1-D `g`, NaN, bad `steps`/`omega`/`modes`, a requested mode
        absent from the initial error.
    """
    check_array("g", g, ndim=1)
    n = int(g.shape[0])
    if n < 3:
        fail("g", "a right-hand side on at least 3 interior points", f"shape {tuple(g.shape)}")
    check_finite("g", g)
    steps = check_int("steps", steps, minimum=1)
    omega = check_float("omega", omega, minimum=0, maximum=1, strict_min=True)
    dtype = jnp.result_type(g.dtype, jnp.float32)
    coef = _jacobi_coefficients(jnp.asarray(g, dtype), jnp.asarray(omega, dtype), steps)
    start = np.abs(np.asarray(coef[0])) if is_concrete(coef) else None
    if modes is None:
        if start is None:
            fail("modes", "given when `g` is traced (the default reads e_0)", "None", TypeError)
        modes = np.flatnonzero(start > 1e-8 * start.max()) + 1
    else:
        check_array("modes", modes, ndim=1, kinds="iu")
        if is_concrete(modes):
            mv = np.asarray(modes)
            if np.any(mv < 1) or np.any(mv > n):
                fail("modes", f"sine indices in 1..{n}", f"{mv.tolist()}")
            if start is not None and np.any(start[mv - 1] <= 1e-12 * start.max()):
                fail(
                    "modes",
                    "modes present in the initial error (relative errors of absent modes are 0/0)",
                    f"{mv[start[mv - 1] <= 1e-12 * start.max()].tolist()}",
                )
    idx = jnp.asarray(modes) - 1
    amp = jnp.abs(coef[:, idx])
    return JacobiErrors(jnp.arange(steps + 1), jnp.asarray(modes), amp / amp[0][None], amp)
