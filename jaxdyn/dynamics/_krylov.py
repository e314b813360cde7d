"""Krylov solvers on flat vectors for `mse_matrix_free`: conjugate gradients and Lanczos.

Both see the kernel only through ``matvec(v (N,)) -> (N,)`` and run as one ``lax.while_loop``,
so a whole solve is one compiled program (also on accelerators). Memory: CG holds four vectors;
Lanczos holds its basis, ``(max_dim + 1, N)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxdyn.dynamics._linalg import HIGHEST

MatVec = Callable[[jax.Array], jax.Array]


class CGResult(NamedTuple):
    x: jax.Array  # (N,) the solution
    iterations: jax.Array  # () products used
    residual: jax.Array  # () ||b - A x|| / ||b|| (recursive; 0 for b = 0)


def cg(matvec: MatVec, b: jax.Array, *, tol: float, maxiter: int) -> CGResult:
    """Solves ``A x = b`` for symmetric positive definite ``A`` (relative residual ``<= tol``)."""
    b_norm = jnp.linalg.norm(b)
    tiny = jnp.finfo(b.dtype).tiny

    def cond(state):
        _, r, _, rr, i = state
        return (i < maxiter) & (jnp.sqrt(rr) > tol * b_norm)

    def body(state):
        x, r, p, rr, i = state
        ap = matvec(p)
        alpha = rr / jnp.maximum(jnp.vdot(p, ap), tiny)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = jnp.vdot(r, r)
        p = r + (rr_new / jnp.maximum(rr, tiny)) * p
        return x, r, p, rr_new, i + 1

    x0 = jnp.zeros_like(b)
    state = (x0, b, b, jnp.vdot(b, b), jnp.zeros((), jnp.int32))
    x, _, _, rr, i = lax.while_loop(cond, body, state)
    return CGResult(x, i, jnp.where(b_norm > 0, jnp.sqrt(rr) / jnp.maximum(b_norm, tiny), 0.0))


class LanczosResult(NamedTuple):
    basis: jax.Array  # (max_dim, N) orthonormal rows; rows >= dim are 0
    tridiagonal: jax.Array  # (max_dim, max_dim) T on the leading (dim, dim) block, 0 elsewhere
    dim: jax.Array  # () Krylov dimension reached
    error: jax.Array  # () a-posteriori error estimate at the end (relative)
    coordinates: jax.Array  # (..., max_dim) `coefficients` of the final T, zero-padded


def _buckets(max_dim: int, first: int) -> tuple[int, ...]:
    """Static block sizes ``first, 2 first, 4 first, ..., max_dim`` of the checks."""
    sizes, s = [], first
    while s < max_dim:
        sizes.append(s)
        s *= 2
    return (*sizes, max_dim)


def krylov_coordinates(coefficients, tri: jax.Array, dim: jax.Array, sizes: tuple[int, ...]):
    """``coefficients`` on the leading ``(dim, dim)`` block of ``tri``, padded to ``max_dim``.

    The block goes to the smallest static size in ``sizes`` that holds it (``lax.switch``), so
    the eigendecomposition inside costs ``O(size^3)``, not ``O(max_dim^3)`` (dense ``eigh`` of a
    zero-padded 256 x 256 block costs as much as a full one).
    """
    max_dim = tri.shape[0]

    def branch(size):
        def run(tri):
            mask = jnp.arange(size) < dim
            coef = coefficients(tri[:size, :size], mask)
            pad = [(0, 0)] * (coef.ndim - 1) + [(0, max_dim - size)]
            return jnp.pad(coef, pad)

        return run

    index = jnp.searchsorted(jnp.asarray(sizes), dim)
    return lax.switch(jnp.minimum(index, len(sizes) - 1), [branch(s) for s in sizes], tri)


def lanczos(
    matvec: MatVec,
    start: jax.Array,
    coefficients: Callable[[jax.Array, jax.Array], jax.Array],
    *,
    max_dim: int,
    tol: float,
    first_check: int = 16,
) -> LanczosResult:
    """Lanczos with full reorthogonalisation from ``start`` (unit norm), stopping on convergence.

    ``coefficients(T (s, s), mask (s,)) -> (..., s)`` are the Krylov coordinates of the wanted
    vectors ``f(A) start ~ Q^T f(T) e_1`` (several functions / times at once) for the leading
    block ``mask`` of a zero-padded ``T``. At dimensions ``first_check * 2^i`` and ``max_dim``
    (each check is an eigendecomposition, so checks are spaced geometrically: at most 2x the
    needed products) the estimate ``beta_j * |last coordinate| / max |coordinates|`` of the next
    term is compared with ``tol`` (Saad 1992, for the matrix exponential); an invariant subspace
    (``beta_j`` at rounding level) ends the iteration exactly.
    """
    n = start.shape[0]
    dtype = start.dtype
    eps = jnp.finfo(dtype).eps
    sizes = _buckets(max_dim, min(first_check, max_dim))

    def estimate(tri, beta, dim):
        coef = krylov_coordinates(coefficients, tri, dim, sizes)  # (..., max_dim)
        last = jnp.abs(coef[..., dim - 1])
        scale = jnp.maximum(jnp.max(jnp.abs(coef), axis=-1), jnp.finfo(dtype).tiny)
        return coef, jnp.max(beta * last / scale)

    def cond(state):
        return (state[0] < max_dim) & ~state[4]

    def body(state):
        j, basis, tri, anorm, _, coef, err = state
        q = basis[j]
        w = matvec(q)
        alpha = jnp.vdot(q, w)
        # Full reorthogonalisation, twice ("twice is enough"): the basis rows beyond j are 0.
        for _ in range(2):
            w = w - jnp.matmul(basis.T, jnp.matmul(basis, w, precision=HIGHEST), precision=HIGHEST)
        beta = jnp.linalg.norm(w)
        anorm = jnp.maximum(anorm, jnp.abs(alpha) + beta)
        invariant = beta <= 100 * eps * anorm * jnp.sqrt(n)
        beta = jnp.where(invariant, 0.0, beta)
        jn = jnp.minimum(j + 1, max_dim - 1)  # the next row (a no-op write at the last step)
        has_next = j + 1 < max_dim
        nxt = jnp.where(has_next & ~invariant, w / jnp.where(invariant, 1.0, beta), basis[jn])
        basis = basis.at[jn].set(nxt)
        off = jnp.where(has_next, beta, 0.0)
        tri = tri.at[j, j].set(alpha).at[j, jn].add(off).at[jn, j].add(off)
        dim = j + 1
        # Every exit is a check (max_dim is a size; an invariant subspace is exact, error 0),
        # so the coordinates of the last check are the answer: one switch of eigh's compiled.
        check = jnp.isin(dim, jnp.asarray(sizes)) | invariant
        coef, err = lax.cond(check, lambda: estimate(tri, beta, dim), lambda: (coef, err))
        err = jnp.where(invariant | (dim >= n), 0.0, err)
        done = invariant | (check & (err <= tol))
        return dim, basis, tri, anorm, done, coef, err

    basis0 = jnp.zeros((max_dim, n), dtype).at[0].set(start)
    tri0 = jnp.zeros((max_dim, max_dim), dtype)
    coef0 = jnp.zeros(jax.eval_shape(coefficients, tri0, jnp.ones(max_dim, bool)).shape, dtype)
    zero = jnp.zeros((), dtype)
    state = (jnp.zeros((), jnp.int32), basis0, tri0, zero, jnp.array(False), coef0, zero + jnp.inf)
    j, basis, tri, _, _, coef, err = lax.while_loop(cond, body, state)
    return LanczosResult(basis, tri, j, err, coef)


def tridiagonal_eigh(tri: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eigenpairs of the leading block of ``tri`` (``mask``: its rows); padding decoupled.

    Padding rows and columns are 0, so the padded matrix is block diagonal: eigenvectors of the
    active block carry no weight on padding, and ``f(T) e_1`` is exact for any ``f``. Ritz values
    of a PSD operator lie in its spectrum: rounding-size negatives are clamped to 0.
    """
    tri = jnp.where(mask[:, None] & mask[None, :], tri, 0.0)
    lam, vecs = jnp.linalg.eigh(tri, symmetrize_input=False)
    return jnp.maximum(lam, 0.0), vecs
