"""`mse_matrix_free`: the closed-form MSE dynamics of `dynamics.mse` from kernel-vector products.

The same predictions as `jaxdyn.dynamics.mse` (same conventions: ``0.5 * mean((f - y)**2)`` over
``N = n k`` entries, one ``optax.sgd(lr)`` step per unit of ``t``, relative ``diag_reg``), but the
train kernel is only ever applied to vectors, ``v (n, k) -> Theta v``: from
`jaxdyn.ntk_vp_fn` (a vjp and a jvp, no kernel in memory), any callable, or a dense array.

* ``t = None`` (infinity): conjugate gradients on ``K_reg z = r_0`` (``r_0 = f_0 - y``); train
  outputs ``f_0 - K_reg z`` (= ``y`` to the solver's tolerance), test outputs
  ``f0_test - K_test z``. Memory: four ``(n, k)`` vectors.
* finite ``t`` (``"flow"`` or ``"gd"``): one Lanczos basis ``Q`` of the Krylov space of ``K_reg``
  and ``r_0`` serves every time: ``r_t = ||r_0|| Q^T rho_t(T) e_1`` and the coefficients
  ``c_t = ||r_0|| Q^T gamma_t(T) e_1`` (test outputs ``f0_test + K_test c_t``), with the per-mode
  factors of `dynamics.mse` applied to the small tridiagonal ``T`` (Krylov approximation of the
  matrix exponential / power). Memory ``(krylov_dim + 1) n k``. The basis grows until an a
  posteriori error estimate falls below ``tol`` (or ``krylov_dim`` is reached: a warning).

Heavy-ball momentum is not offered here (its per-mode 2x2 matrix powers do not reduce to one
scalar function of the kernel); use `dynamics.mse` or `dynamics.gradient_descent`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxdyn._checks import check_finite, describe, fail, is_concrete
from jaxdyn._ntk_vp import NTKVectorProduct
from jaxdyn.dynamics import _krylov
from jaxdyn.dynamics._inputs import as_real_array, check_scalar, check_targets, validate_times
from jaxdyn.dynamics._linalg import float_dtype
from jaxdyn.dynamics.gradient_descent import _apply_kernel

__all__ = ["MATRIX_FREE_KINDS", "MatrixFreeInfo", "MatrixFreePredictor", "mse_matrix_free"]

MATRIX_FREE_KINDS = ("flow", "gd")


class MatrixFreeInfo(NamedTuple):
    """How the last solve went: ``products`` kernel-vector products (CG iterations or Krylov
    dimension) and the relative error estimate (CG residual / Lanczos estimate)."""

    method: str
    products: int
    error: float


def _operator(kernel, where):
    """``(fn(operands, v), operands, (n2, k) or None, dtype or None)`` of a kernel-like argument."""
    if isinstance(kernel, NTKVectorProduct):
        n1, n2, k = kernel.shape
        return kernel.apply, kernel.operands, (n1, n2, k), kernel.dtype
    if callable(kernel):
        return (lambda _, v: kernel(v)), (), None, None
    arr = as_real_array(kernel, where)
    if arr.ndim not in (2, 4):
        fail(
            where,
            "a callable v -> K @ v, an NTKVectorProduct or an (m, n) / (m, n, k, k) kernel",
            describe(kernel),
        )
    check_finite(where, arr)
    shape = (arr.shape[0], arr.shape[1], arr.shape[2] if arr.ndim == 4 else None)
    return _apply_kernel, jnp.asarray(arr), shape, arr.dtype


def _mode_factors(kind, lam, t, scale):
    """``(rho, gamma)`` per Ritz value ``lam (m,)`` and time ``t (T,)``: ``(T, m)`` each.

    As `dynamics.mse`: flow ``rho = exp(-a)``, ``gamma = expm1(-a) / lam`` with ``a = scale lam t``;
    gd ``rho = (1 - scale lam)^t``, ``gamma = -(1 - rho) / lam``; ``gamma -> -scale t`` at lam = 0.
    """
    lam, t = lam[None, :], t[:, None].astype(lam.dtype)
    live = lam > 0
    safe = jnp.where(live, lam, 1.0)
    if kind == "flow":
        x = -scale * lam * t
        rho, one_minus = jnp.exp(x), -jnp.expm1(x)
    else:
        a = scale * lam
        # 1 - rho without cancellation for a < 1 (the slow modes); a >= 1 has no cancellation.
        log = jnp.log1p(-jnp.minimum(a, 0.5))
        small = a < 0.5
        odd = jnp.mod(t, 2) == 1
        base = jnp.abs(1.0 - a)
        big = jnp.where(odd & (a > 1), -1.0, 1.0) * jnp.where(
            t == 0, 1.0, jnp.exp(t * jnp.log(jnp.where(base > 0, base, 1.0)))
        )
        big = jnp.where((base == 0) & (t > 0), 0.0, big)
        rho = jnp.where(small, jnp.exp(t * log), big)
        one_minus = jnp.where(small, -jnp.expm1(t * log), 1.0 - big)
    gamma = jnp.where(live, -one_minus / safe, -scale * t)
    return rho, gamma


def _matvec(fn, operands, ridge, shape):
    """The flat operator ``v (N,) -> (K + ridge I) v`` in ``v``'s dtype."""

    def matvec(v):
        out = fn(operands, v.reshape(shape)).astype(v.dtype).reshape(-1)
        return out + ridge * v

    return matvec


_STATIC = ("fn", "test_fn", "shape", "tol")


@functools.partial(jax.jit, static_argnames=(*_STATIC, "maxiter"))
def _infinite(operands, test_operands, r0, ridge, y, *, fn, test_fn, shape, tol, maxiter):
    """t = infinity: CG on ``K_reg z = r_0``; ``(train, -K_test z or None, iterations, resid)``."""
    matvec = _matvec(fn, operands, ridge, shape)
    res = _krylov.cg(matvec, r0, tol=tol, maxiter=maxiter)
    train = (r0 - matvec(res.x)).reshape(shape) + y
    test = None
    if test_fn is not None:
        test = -test_fn(test_operands, res.x.reshape(shape)).astype(r0.dtype)
    return train, test, res.iterations, res.residual


@functools.partial(jax.jit, static_argnames=(*_STATIC, "kind", "max_dim"))
def _finite(
    operands, test_operands, r0, ridge, y, t_flat, scale, *, fn, test_fn, shape, tol, kind, max_dim
):
    """Finite times ``t_flat (T,)`` from one Lanczos basis; ``(train, test, loss, dim, error)``."""
    matvec = _matvec(fn, operands, ridge, shape)
    norm = jnp.linalg.norm(r0)
    start = r0 / jnp.where(norm > 0, norm, 1.0)

    def coefficients(tri, mask):
        lam, vecs = _krylov.tridiagonal_eigh(tri, mask)
        rho, gamma = _mode_factors(kind, lam, t_flat, scale)  # (T, m)
        first = vecs[0][None, :]  # e_1 in the eigenbasis, (1, m)
        hi = jax.lax.Precision.HIGHEST
        return jnp.concatenate(
            [
                jnp.matmul(rho * first, vecs.T, precision=hi),
                jnp.matmul(gamma * first, vecs.T, precision=hi),
            ]
        )

    res = _krylov.lanczos(matvec, start, coefficients, max_dim=max_dim, tol=tol)
    coef = norm * res.coordinates  # (2T, max_dim) Krylov coordinates of r_t and c_t
    n_t = t_flat.shape[0]
    hi = jax.lax.Precision.HIGHEST
    train = jnp.matmul(coef[:n_t], res.basis, precision=hi).reshape(n_t, *shape) + y[None]
    loss = 0.5 * jnp.sum(coef[:n_t] ** 2, axis=-1) / r0.shape[0]
    test = None
    if test_fn is not None:
        cs = jnp.matmul(coef[n_t:], res.basis, precision=hi).reshape(n_t, *shape)
        test = lax.map(lambda c: test_fn(test_operands, c).astype(r0.dtype), cs)
    return train, test, loss, res.dim, res.error


class MatrixFreePredictor:
    """MSE dynamics of a linearized model from kernel-vector products; build with
    `mse_matrix_free`. Calls as `dynamics.MSEPredictor`: ``predictor(t, f0_train)``,
    ``predictor(t, f0_train, f0_test, k_test_train)``, ``predictor.loss(t, f0_train)``;
    ``t=None`` is infinity. ``k_test_train`` is a callable ``v (n, k) -> (m, k)`` (e.g.
    ``ntk_vp_fn(apply_fn, params, x_test, x_train)``) or a dense ``(m, n)`` / ``(m, n, k, k)``
    kernel. `info` says how the last solve went."""

    def __init__(self, *, op, y, kind, learning_rate, ridge, tol, maxiter, krylov_dim, dtype):
        # Internal: use `mse_matrix_free`, which validates everything.
        self._fn, self._operands = op
        self._y = y
        self._n, self._k = y.shape
        self._kind = kind
        self._learning_rate = learning_rate
        self._ridge = ridge
        self._tol, self._maxiter, self._krylov_dim = tol, maxiter, krylov_dim
        self._dtype = dtype
        self.info: MatrixFreeInfo | None = None

    @property
    def kind(self) -> str:
        return self._kind

    def _f0(self, f0_train, where):
        f0 = as_real_array(f0_train, where)
        if tuple(f0.shape) != (self._n, self._k):
            fail(where, f"of shape (n, k) = {(self._n, self._k)}", f"shape {tuple(f0.shape)}")
        check_finite(where, f0)
        return f0

    def _test(self, f0_test, k_test_train):
        if (f0_test is None) != (k_test_train is None):
            missing = "k_test_train" if k_test_train is None else "f0_test"
            fail(
                f"MatrixFreePredictor({missing}=...)",
                "given together with the other test argument",
                "None",
            )
        if f0_test is None:
            return None, None
        f0t = as_real_array(f0_test, "`MatrixFreePredictor(f0_test=...)`")
        if f0t.ndim != 2 or f0t.shape[1] != self._k:
            fail("MatrixFreePredictor(f0_test=...)", f"an (m, {self._k}) array", describe(f0t))
        fn, operands, shape, _ = _operator(k_test_train, "`MatrixFreePredictor(k_test_train=...)`")
        if shape is not None and (shape[0], shape[1]) != (f0t.shape[0], self._n):
            fail(
                "MatrixFreePredictor(k_test_train=...)",
                f"a test-train kernel of (m, n) = {(f0t.shape[0], self._n)}",
                f"(m, n) = {shape[:2]}",
            )
        return f0t, (fn, operands)

    def _solve(self, t, f0, f0t, test_op):
        dtypes = [self._dtype, self._y.dtype, f0.dtype] + ([] if f0t is None else [f0t.dtype])
        dtype = float_dtype(*dtypes)
        y = jnp.asarray(self._y, dtype)
        r0 = (jnp.asarray(f0, dtype) - y).reshape(-1)
        test_fn, test_operands = (None, ()) if test_op is None else test_op
        ridge = jnp.asarray(self._ridge, dtype)
        static = dict(fn=self._fn, test_fn=test_fn, shape=(self._n, self._k), tol=self._tol)
        if t is None:
            train, test, products, error = _infinite(
                self._operands, test_operands, r0, ridge, y, maxiter=self._maxiter, **static
            )
            self._record("cg", products, error)
            if test is not None:
                test = test + jnp.asarray(f0t, dtype)
            return train, test, None
        t_flat, t_shape, _ = validate_times(t, "`MatrixFreePredictor(t=...)`", self._kind)
        scale = jnp.asarray(self._learning_rate, dtype) / (self._n * self._k)
        train, test, loss, products, error = _finite(
            self._operands,
            test_operands,
            r0,
            ridge,
            y,
            jnp.asarray(t_flat),
            scale,
            kind=self._kind,
            max_dim=min(self._krylov_dim, self._n * self._k),
            **static,
        )
        self._record("lanczos", products, error)
        train = train.reshape(*t_shape, self._n, self._k)
        if test is not None:
            test = (test + jnp.asarray(f0t, dtype)[None]).reshape(*t_shape, *f0t.shape)
        return train, test, loss.reshape(t_shape)

    def _record(self, method, products, error):
        tol = self._tol
        if not is_concrete(products, error):
            self.info = None
            return
        self.info = MatrixFreeInfo(method, int(products), float(error))
        if not float(error) <= 10 * tol:
            limit = "maxiter" if method == "cg" else "krylov_dim"
            warnings.warn(
                f"dynamics.mse_matrix_free: {method} stopped after {int(products)} kernel-vector "
                f"products at relative error {float(error):.3g} > tol = {tol:.3g}. Raise "
                f"{limit}, pass diag_reg > 0 (an ill-conditioned kernel converges slowly), or "
                "loosen tol.",
                UserWarning,
                stacklevel=4,
            )

    def __call__(self, t, f0_train, f0_test=None, k_test_train=None):
        """Train outputs ``(*t.shape, n, k)``, with test inputs ``(train, test (*t.shape, m, k))``;
        ``t=None``: no time axis (t = infinity)."""
        f0 = self._f0(f0_train, "`MatrixFreePredictor(f0_train=...)`")
        f0t, test_op = self._test(f0_test, k_test_train)
        train, test, _ = self._solve(t, f0, f0t, test_op)
        return train if f0t is None else (train, test)

    def loss(self, t, f0_train) -> jax.Array:
        """``0.5 * mean((f_t - y)**2)``, shape ``t.shape`` (``()`` at None)."""
        f0 = self._f0(f0_train, "`MatrixFreePredictor.loss(f0_train=...)`")
        train, _, loss = self._solve(t, f0, None, None)
        if loss is None:
            return 0.5 * jnp.mean((train - jnp.asarray(self._y, train.dtype)) ** 2)
        return loss


def mse_matrix_free(
    k_train_train: NTKVectorProduct | Callable[[jax.Array], jax.Array] | Any,
    y_train: Any,
    *,
    learning_rate: Any = 1.0,
    diag_reg: Any = 0.0,
    kind: str = "flow",
    mean_diagonal: float | None = None,
    tol: float | None = None,
    maxiter: int | None = None,
    krylov_dim: int = 256,
) -> MatrixFreePredictor:
    """`dynamics.mse` from kernel-vector products alone (CG at t = infinity, Lanczos at finite t).

    Args:
      k_train_train: the train NTK as an operator: an `NTKVectorProduct` from
        ``jaxdyn.ntk_vp_fn(apply_fn, params, x_train)``, any callable ``v (n, k) -> K v (n, k)``
        (the full-kernel product, ``einsum("ijab,jb->ia", K, v)``), or a dense ``(n, n)`` /
        ``(n, n, k, k)`` kernel (then the solvers run on it; handy for checks).
      y_train: ``(n, k)`` targets.
      learning_rate, kind: as in `dynamics.mse`; ``kind`` is ``"flow"`` or ``"gd"``.
      diag_reg: relative ridge: the operator is ``K + diag_reg * mean(diag(K)) I`` as in
        `dynamics.mse`. ``mean(diag(K))`` comes from `NTKVectorProduct.mean_diagonal` (exact,
        per-example vjps) or the dense kernel; a plain callable needs ``mean_diagonal``.
      mean_diagonal: ``mean(diag(K))`` over the ``n k`` diagonal entries (only with diag_reg > 0
        and a plain callable).
      tol: relative tolerance of CG's residual and of Lanczos' error estimate (default 1e-10 in
        float64, 1e-5 in float32).
      maxiter: most CG iterations (default ``10 n k``).
      krylov_dim: largest Lanczos basis (memory ``(krylov_dim + 1) n k``).

    Returns:
      A `MatrixFreePredictor`. A kernel must be positive definite for CG (singular: pass
      ``diag_reg > 0``); a solve that misses ``tol`` warns (``UserWarning``).
    """
    where = "`dynamics.mse_matrix_free({}=...)`"
    if not isinstance(kind, str) or kind not in MATRIX_FREE_KINDS:
        fail(
            where.format("kind"),
            f"one of {', '.join(map(repr, MATRIX_FREE_KINDS))} (heavy ball: dynamics.mse)",
            repr(kind),
        )
    learning_rate = check_scalar(
        learning_rate, where.format("learning_rate"), low=0.0, low_inclusive=False
    )
    diag_reg = float(check_scalar(diag_reg, where.format("diag_reg"), low=0.0, low_inclusive=True))
    y = check_targets(y_train, where.format("y_train"))
    n, k = y.shape
    fn, operands, shape, op_dtype = _operator(k_train_train, where.format("k_train_train"))
    if shape is not None:
        expected = (n, n, k if shape[2] is not None else None)
        if shape != expected:
            fail(
                where.format("k_train_train"),
                f"the train kernel of n = y_train.shape[0] = {n} points and k = {k} outputs",
                f"(n1, n2, k) = {shape}",
            )
    dtype = float_dtype(y.dtype, *([] if op_dtype is None else [op_dtype]))
    ridge = 0.0
    if diag_reg > 0:
        if isinstance(k_train_train, NTKVectorProduct):
            mean_diagonal = k_train_train.mean_diagonal()
        elif shape is not None:
            flat = operands
            diag = jnp.diagonal(flat) if flat.ndim == 2 else jnp.einsum("iiaa->ia", flat)
            mean_diagonal = float(jnp.mean(diag))
        elif mean_diagonal is None:
            fail(
                where.format("mean_diagonal"),
                "given with diag_reg > 0 and a callable kernel (the ridge is relative to "
                "mean(diag(K)); or pass an NTKVectorProduct, which computes it)",
                "None",
            )
        ridge = diag_reg * float(mean_diagonal)
    default_tol = 1e-10 if dtype == np.float64 else 1e-5
    tol = (
        default_tol
        if tol is None
        else float(check_scalar(tol, where.format("tol"), low=0.0, low_inclusive=False))
    )
    size = n * k
    maxiter = 10 * size if maxiter is None else maxiter
    for name, value in (("maxiter", maxiter), ("krylov_dim", krylov_dim)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            fail(where.format(name), "a positive int", describe(value))
    return MatrixFreePredictor(
        op=(fn, operands),
        y=y,
        kind=kind,
        learning_rate=learning_rate,
        ridge=ridge,
        tol=tol,
        maxiter=int(maxiter),
        krylov_dim=int(krylov_dim),
        dtype=dtype,
    )
