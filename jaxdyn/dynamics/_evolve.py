"""The compiled closed-form evaluations behind `MSEPredictor`.

Everything numeric after validation runs through these few jitted functions (static: kind, bit
count, dtype, output, time shape), so a call costs one dispatch instead of dozens of eagerly
compiled primitives; inside a user's jit they simply inline. The same functions serve every
precision: ``solve_dtype="float64"`` with x64 off calls them inside `_linalg.local_float64`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from jaxdyn.dynamics._linalg import HIGHEST, flat_kernel, pseudo_inverse_modes
from jaxdyn.dynamics._modes import mode_factors


@functools.partial(jax.jit, static_argnames=("kind", "n_bits", "dtype", "want", "t_shape"))
def finite_time(
    lam,
    vecs,
    t,
    scale,
    beta,
    f0,
    y,
    f0_test,
    k_test,
    *,
    kind: str,
    n_bits: int,
    dtype: Any,
    want: str,
    t_shape: tuple[int, ...],
):
    """Finite-time quantities from the eigendecomposition, computed in ``dtype``.

    ``lam`` (D,), ``vecs`` (D, D), ``t`` (T,), ``f0``/``y`` (n, k), ``f0_test`` (m, k) and
    ``k_test`` (m, n) / (m, n, k, k) or None. ``want``: ``"call"`` -> train (*t_shape, n, k) [,
    test]; ``"loss"`` -> (*t_shape,); ``"coef"`` -> ``c_t`` (T, n, k).
    """
    lam, vecs = lam.astype(dtype), vecs.astype(dtype)
    scale, beta = jnp.asarray(scale, dtype), jnp.asarray(beta, dtype)
    rho, rho_m1, gamma = (
        x.astype(dtype) for x in mode_factors(lam, t, scale, beta, kind=kind, n_bits=n_bits)
    )
    n, k = y.shape
    n_t = t.shape[0]
    f0 = f0.astype(dtype)
    r0 = (f0 - y.astype(dtype)).reshape(vecs.shape[0], -1)  # (D, cols)
    q = jnp.matmul(vecs.T, r0, precision=HIGHEST)  # the initial residual in the eigenbasis
    if want == "loss":
        energy = jnp.sum(q**2, axis=1)
        return (0.5 / (n * k) * jnp.matmul(rho**2, energy, precision=HIGHEST)).reshape(t_shape)
    if want == "coef":
        coef = jnp.einsum("ij,tj,jc->tic", vecs, gamma, q, precision=HIGHEST)
        return coef.reshape(n_t, n, k)
    # f_t = f_0 + V diag(rho - 1) V^T r_0 (rather than y + V diag(rho) V^T r_0): exactly f_0 at
    # t = 0.
    delta = jnp.einsum("ij,tj,jc->tic", vecs, rho_m1, q, precision=HIGHEST)
    train = (f0[None] + delta.reshape(n_t, n, k)).reshape(t_shape + (n, k))
    if f0_test is None:
        return train
    # f_test_t = f0_test + K_test_train V diag(gamma) V^T r_0.
    kv = jnp.matmul(flat_kernel(k_test).astype(dtype), vecs, precision=HIGHEST)  # (m', D)
    dtest = jnp.einsum("ij,tj,jc->tic", kv, gamma, q, precision=HIGHEST)
    test = f0_test.astype(dtype)[None] + dtest.reshape((n_t,) + f0_test.shape)
    return train, test.reshape(t_shape + f0_test.shape)


@functools.partial(jax.jit, static_argnames=("dtype", "rtol"))
def infinite_time(chol, lam, vecs, f0, y, f0_test, k_test, *, dtype: Any, rtol: float):
    """t = infinity: ``(train (n, k), test (m, k) or None, coefficients c_inf (n, k))``.

    With ``chol`` (lower Cholesky factor of K): ``c_inf = -K^{-1} r_0`` and train = y. Otherwise
    (chol None) a pseudo-inverse from ``(lam, vecs)``: gradient flow never moves zero modes, so they
    keep their residual; modes within ``rtol * lam_max`` of zero count as zero (numpy pinv's rcond).
    """
    n, k = y.shape
    y = y.astype(dtype)
    dim = (vecs if chol is None else chol).shape[0]
    r0 = (f0.astype(dtype) - y).reshape(dim, -1)  # (D, cols)
    if chol is not None:
        coef = -jsl.cho_solve((chol.astype(dtype), True), r0)
        train = y
    else:
        lam, vecs = lam.astype(dtype), vecs.astype(dtype)
        inv, live = pseudo_inverse_modes(lam, rtol)
        q = jnp.matmul(vecs.T, r0, precision=HIGHEST)
        coef = -jnp.matmul(vecs, inv[:, None] * q, precision=HIGHEST)
        kept = jnp.matmul(vecs, jnp.where(live, 0.0, 1.0)[:, None] * q, precision=HIGHEST)
        train = y + kept.reshape(n, k)
    test = None
    if f0_test is not None:
        dtest = jnp.matmul(flat_kernel(k_test).astype(dtype), coef, precision=HIGHEST)
        test = f0_test.astype(dtype) + dtest.reshape(f0_test.shape)
    return train, test, coef.reshape(n, k)


@functools.partial(jax.jit, static_argnames=("dtype", "t_shape"))
def apply_jacobian_transpose(coef, leaves, *, dtype: Any, t_shape: tuple[int, ...]):
    """``omega = J^T c`` per leaf: coef (T, n, k), leaves (n, k, *p) -> (*t_shape, *p)."""
    return [
        jnp.tensordot(
            coef.astype(dtype), leaf.astype(dtype), axes=([1, 2], [0, 1]), precision=HIGHEST
        ).reshape(t_shape + tuple(leaf.shape[2:]))
        for leaf in leaves
    ]


@functools.partial(jax.jit, static_argnames=("dtype",))
def loss_of(train, y, *, dtype: Any):
    """``0.5 * mean((train - y)**2)`` in ``dtype``."""
    return 0.5 * jnp.mean((train.astype(dtype) - y.astype(dtype)) ** 2)
