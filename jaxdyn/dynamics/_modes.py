"""Per-mode factors of the closed forms: gradient flow, gradient descent, heavy-ball momentum.

With ``Theta = V diag(lam) V^T`` every optimiser acts on each eigenmode independently, so a
trajectory is two scalar functions of ``(lam, t)`` per mode (see `jaxdyn.dynamics`): the residual
factor ``rho`` (``r_t = V diag(rho) V^T r_0``) and the coefficient factor ``gamma``
(``c_t = V diag(gamma) V^T r_0``), with ``rho - 1 = lam * gamma``. Each function here returns
``(rho, rho - 1, gamma)``, all of shape (T, D), for eigenvalues ``lam`` (D,) >= 0 and flattened
times ``t`` (T,); ``scale = lr / N``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxdyn.dynamics._linalg import HIGHEST

KINDS: tuple[str, ...] = ("flow", "gd", "momentum")
"""The optimisers `jaxdyn.dynamics.mse` can describe."""


def flow_factors(lam: jax.Array, t: jax.Array, scale: Any) -> tuple[jax.Array, ...]:
    """Gradient flow: ``rho = exp(-lr lam t / N)``, ``gamma = expm1(-lr lam t / N) / lam``."""
    x = scale * t[:, None] * lam[None, :]  # lr * lam * t / N >= 0
    rho = jnp.exp(-x)
    rho_m1 = jnp.expm1(-x)
    # gamma = expm1(-x) / lam = -(lr t / N) * phi(x) with phi(x) = (1 - e^{-x}) / x: written this
    # way there is no 0/0 at lam = 0 (phi(0) = 1, the lam -> 0 limit gamma = -lr t / N), and for
    # small x the Taylor series keeps both the value and its derivative (for jax.grad) exact.
    small = x < 1e-3
    x_safe = jnp.where(small, 1.0, x)
    series = 1.0 - x * (1.0 / 2 - x * (1.0 / 6 - x * (1.0 / 24 - x / 120)))
    phi = jnp.where(small, series, -rho_m1 / x_safe)
    gamma = -(scale * t)[:, None] * phi
    return rho, rho_m1, gamma


def gd_factors(lam: jax.Array, t: jax.Array, scale: Any) -> tuple[jax.Array, ...]:
    """Gradient descent, ``t`` whole steps: ``rho = (1 - a)^t`` with ``a = lr lam / N``."""
    a = scale * lam  # (D,), per-step contraction 1 - a of each mode
    base = 1.0 - a
    # |1 - a|^t = exp(t * log|1 - a|). For a < 1/2, log1p(-a) keeps full accuracy even when a is
    # far below eps; for a >= 1/2, 1 - a is exact (Sterbenz) and log|base| is as accurate. Every
    # branch below is decided on `base` itself: deciding on `a` and computing on `base` can
    # disagree at a = 1 exactly (lr = N / lam, half the critical rate) once XLA fuses
    # `1 - scale * lam` into an FMA, which silently broke that mode.
    small = a < 0.5
    zero_base = base == 0
    log_abs = jnp.where(
        small,
        jnp.log1p(-jnp.where(small, a, 0.0)),
        jnp.log(jnp.where(small | zero_base, 1.0, jnp.abs(base))),
    )
    tl = t[:, None] * log_abs[None, :]
    magnitude = jnp.exp(tl)
    odd = jnp.mod(t, 2) == 1
    flip = odd[:, None] & (base < 0)[None, :]
    rho = jnp.where(flip, -magnitude, magnitude)
    # 0^t is 1 at t = 0 and 0 after (the mode is solved in one step).
    rho = jnp.where(zero_base[None, :], jnp.where(t[:, None] == 0, 1.0, 0.0), rho)
    rho_m1 = jnp.where(small[None, :], jnp.expm1(tl), rho - 1.0)
    # gamma = -(1 - rho) / lam = -(lr / N) * (1 - rho) / a, and (1 - rho) / a = sum_{s<t} (1 - a)^s
    # -> t as a -> 0; select that limit instead of dividing 0 by 0.
    zero = a == 0
    a_safe = jnp.where(zero, 1.0, a)
    steps = jnp.where(zero[None, :], t[:, None], -rho_m1 / a_safe[None, :])
    gamma = -scale * steps
    return rho, rho_m1, gamma


def momentum_factors(
    lam: jax.Array, t: jax.Array, scale: Any, beta: Any, n_bits: int
) -> tuple[jax.Array, ...]:
    """Heavy ball per mode by exact binary exponentiation of its 3x3 transition matrix.

    Projected on one eigenvector, with ``u = N * w`` the (rescaled) function-space momentum and
    ``e`` the coefficient ``c`` in units of ``lr / N``, one ``optax.sgd(lr, momentum=beta)`` step is

        u' = beta u + r,   r' = r - a u' = (1 - a) r - a beta u,   e' = e - u' = e - r - beta u,

    with ``a = lr lam / N`` and ``(r, u, e)_0 = (1, 0, 0)``. So ``rho = r_t``,
    ``gamma = (lr/N) e_t`` and ``rho - 1 = a e_t``. ``M^t`` is formed by repeated squaring over the
    bits of the integer ``t`` (vectorised over modes and times); diagonalising ``M`` instead would
    break down where its 2x2 block is defective (critical damping, ``lam = 0``). Stable iff
    ``0 <= a < 2 (1 + beta)``, hence the critical learning rate ``2 N (1 + beta) / lam_max``.
    """
    a = scale * lam
    one, zero = jnp.ones_like(a), jnp.zeros_like(a)
    beta = beta * one
    matrix = jnp.stack(
        [
            jnp.stack([1.0 - a, -a * beta, zero], axis=-1),
            jnp.stack([one, beta, zero], axis=-1),
            jnp.stack([-one, -beta, one], axis=-1),
        ],
        axis=-2,
    )  # (D, 3, 3), matrix[d, row, col]
    state = jnp.broadcast_to(jnp.eye(3, dtype=a.dtype)[0], (t.shape[0], a.shape[0], 3))  # (T, D, 3)

    def body(bit, carry):
        state, power = carry  # power = M^(2^bit)
        take = (jnp.right_shift(t, bit.astype(t.dtype)) & 1) == 1  # (T,)
        # Powers of M commute, so multiplying the state vector M^(partial t) e0 from the left is
        # enough.
        stepped = jnp.einsum("dij,tdj->tdi", power, state, precision=HIGHEST)
        state = jnp.where(take[:, None, None], stepped, state)
        power = jnp.matmul(power, power, precision=HIGHEST)
        return state, power

    state, _ = lax.fori_loop(0, n_bits, body, (state, matrix))
    rho, e = state[..., 0], state[..., 2]
    return rho, a[None, :] * e, scale * e


def mode_factors(lam, t, scale, beta, *, kind: str, n_bits: int) -> tuple[jax.Array, ...]:
    """``(rho, rho - 1, gamma)`` (T, D) of optimiser ``kind`` (one of `KINDS`).

    ``t`` are real times for ``"flow"`` and integer steps otherwise; ``beta`` (momentum) and
    ``n_bits`` (bits of the largest step) are used only by ``"momentum"``.
    """
    if kind == "flow":
        return flow_factors(lam, t.astype(lam.dtype), scale)
    if kind == "gd":
        return gd_factors(lam, t.astype(lam.dtype), scale)
    return momentum_factors(lam, t, scale, beta, n_bits)
