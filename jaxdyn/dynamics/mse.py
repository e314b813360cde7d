"""`mse` and `MSEPredictor`: closed-form MSE training dynamics of a linearized network.

The conventions (outputs, kernel layouts, ``diag_reg``, precision) are in the `jaxdyn.dynamics`
package docstring. Private pieces: `_inputs` (checks), `_modes` (per-mode factors), `_linalg`
(flattening, factorisations, tolerances) and `_evolve` (the compiled closed forms).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn._checks import check_finite, fail, is_concrete
from jaxdyn.dynamics import _evolve, _linalg
from jaxdyn.dynamics._inputs import (
    as_real_array,
    check_scalar,
    check_solve_dtype,
    check_targets,
    check_train_kernel,
    validate_times,
)
from jaxdyn.dynamics._linalg import float_dtype
from jaxdyn.dynamics._modes import KINDS

__all__ = ["KINDS", "MSEPredictor", "mse"]

ArrayLike = Any
PyTree = Any

_TRACED_X64_OFF = (
    "`MSEPredictor` built with solve_dtype='float64' while jax_enable_x64 is off {what} and "
    "needs concrete {inputs}; got traced values (inside jax.jit / vmap / grad). Call it outside "
    "the transformation, enable float64 in JAX (jax.config.update('jax_enable_x64', True)), or "
    "{alternative}."
)


class MSEPredictor:
    """Closed-form MSE training dynamics of a linearized model; build it with `mse`.

    The predictor holds the (symmetrised, regularised) train kernel and lazily caches its
    eigendecomposition (one ``eigh``, reused for every time and call) and, for ``t=None``, its
    Cholesky factor. Both caches hold concrete arrays whenever the kernel is concrete, so a
    predictor built outside ``jax.jit`` may be called inside it without leaking tracers (one built
    inside a trace from traced kernels belongs to that trace).

    Calls:
      ``predictor(t, f0_train)`` -> train outputs ``(*t.shape, n, k)``;
      ``predictor(t, f0_train, f0_test, k_test_train)`` -> ``(train, test)``, test
      ``(*t.shape, m, k)``;
      ``predictor.loss(t, f0_train)`` -> ``(*t.shape,)``;
      ``predictor.weights(t, f0_train, jacobian)`` -> weight change PyTree.
    ``t=None`` means ``t = infinity``.
    """

    def __init__(
        self,
        *,
        kernel: jax.Array,
        y_train: jax.Array,
        full: bool,
        kind: str,
        learning_rate: Any,
        diag_reg: Any,
        momentum: Any,
        dtype: Any = None,
        host: bool = False,
    ):
        # Internal: use `mse`, which validates everything before getting here.
        # (D, D) symmetrised and regularised; D = n*k if full else n. With solve_dtype="float64" it
        # is float64 (made inside `_linalg.local_float64` when x64 is off).
        self._kernel = kernel
        self._dtype = np.dtype(kernel.dtype if dtype is None else dtype)  # the working dtype
        # `host`: float64 work (solve_dtype="float64" with x64 off) runs in JAX inside
        # `_linalg.local_float64`, on concrete inputs only. (The name dates from when that path
        # was a numpy copy of the pipeline on host.)
        self._host = host
        self._y = y_train  # (n, k)
        self._full = full
        self._kind = kind
        self._learning_rate = learning_rate
        self._diag_reg = diag_reg
        self._momentum = momentum
        n, k = y_train.shape
        self._n, self._k = n, k
        self._size = n * k  # N, the loss normaliser
        self._dim = kernel.shape[0]
        # (eigenvalues ascending, clamped; eigenvectors) usable in the working precision; with
        # `host` rounded once from `_eig64`, the float64 eigensystem (else `_eig64` is `_eig`).
        self._eig: tuple[jax.Array, jax.Array] | None = None
        self._eig64: tuple[jax.Array, jax.Array] | None = None
        self._chol: tuple[jax.Array, bool] | None = None  # (lower Cholesky factor, usable?)

    # ---------------------------------------------------------------------------------------------
    # Properties.

    @property
    def kind(self) -> str:
        """``"flow"``, ``"gd"`` or ``"momentum"``."""
        return self._kind

    @property
    def learning_rate(self) -> Any:
        return self._learning_rate

    @property
    def momentum(self) -> Any:
        """``beta`` for ``kind="momentum"``, else ``None``."""
        return self._momentum

    @property
    def diag_reg(self) -> Any:
        return self._diag_reg

    @property
    def eigenvalues(self) -> jax.Array:
        """Eigenvalues ``(D,)`` of the regularised kernel, ascending; rounding negatives are 0."""
        return self._eigensystem()[0]

    @property
    def critical_learning_rate(self) -> jax.Array:
        """Largest stable learning rate: ``2 N / lam_max`` (``* (1 + momentum)`` for momentum).

        Above it the top mode of discrete GD (heavy ball) grows geometrically. Gradient flow is
        stable for every learning rate; for ``kind="flow"`` the GD value ``2 N / lam_max`` is
        reported, i.e. the largest rate at which the flow is still a faithful model of GD.
        ``inf`` for an all-zero kernel.
        """
        lam_max = self._eigensystem()[0][-1]
        factor = 2.0 * self._size
        if self._kind == "momentum":
            factor = factor * (1.0 + self._momentum)
        if is_concrete(lam_max, factor):
            top = float(lam_max)
            return jax.device_put(
                np.asarray(float(factor) / top if top > 0 else np.inf, dtype=lam_max.dtype)
            )
        return jnp.where(lam_max > 0, factor / jnp.where(lam_max > 0, lam_max, 1.0), jnp.inf)

    def __repr__(self) -> str:
        shape = (self._n, self._n, self._k, self._k) if self._full else (self._n, self._n)
        extra = f", momentum={self._momentum!r}" if self._kind == "momentum" else ""
        return (
            f"MSEPredictor(kind={self._kind!r}, kernel_shape={shape}, "
            f"y_train_shape={(self._n, self._k)}, learning_rate={self._learning_rate!r}, "
            f"diag_reg={self._diag_reg!r}{extra})"
        )

    # ---------------------------------------------------------------------------------------------
    # Cached factorisations.

    def _float64(self):
        """The context of work on the float64 kernel: `_linalg.local_float64` with `host`."""
        return _linalg.local_float64() if self._host else contextlib.nullcontext()

    def _eigensystem(self) -> tuple[jax.Array, jax.Array]:
        """Returns ``(lam, V)`` of the regularised kernel, computing it once."""
        if self._eig is None:
            args = ("`dynamics.mse(k_train_train=...)`", "k_train_train", "(e.g. J J^T)")
            with self._float64():
                lam, vecs = _linalg.clamped_eigensystem(
                    self._kernel, *args, psd_dtype=self._dtype, local_x64=self._host
                )
                self._eig64 = (lam, vecs)
                if self._host:
                    # Mixed precision: the float64 eigenpairs, rounded once, drive the time
                    # evolution in the working dtype (see the package notes on precision). With
                    # x64 on the same rounding happens inside `_evolve.finite_time`.
                    lam, vecs = lam.astype(self._dtype), vecs.astype(self._dtype)
            self._eig = (lam, vecs)
        return self._eig

    def _eigensystem64(self) -> tuple[jax.Array, jax.Array]:
        """``(lam, V)`` in the factorisation's dtype (use inside `_float64` when `host`)."""
        self._eigensystem()
        return self._eig64

    def _cholesky(self) -> tuple[jax.Array, bool]:
        """Lower Cholesky factor of the regularised kernel (for ``t=None``) and whether usable."""
        if self._chol is None:
            with self._float64():
                chol, usable = _linalg.checked_cholesky(self._kernel, local_x64=self._host)
            if not usable:
                warnings.warn(
                    "dynamics.mse: the Cholesky factorisation of k_train_train (+ diag_reg) "
                    "failed or is numerically singular; the t=None (infinite time) prediction "
                    "falls back to an eigendecomposition pseudo-inverse in which zero modes keep "
                    "their initial residual. "
                    "Pass diag_reg > 0 (e.g. 1e-6) for a regularised solution.",
                    UserWarning,
                    stacklevel=4,
                )
            self._chol = (chol, usable)
        return self._chol

    # ---------------------------------------------------------------------------------------------
    # Input handling.

    def _f0(self, f0_train: Any, where: str) -> jax.Array:
        f0 = as_real_array(f0_train, where)
        if f0.shape != (self._n, self._k):
            fail(
                where,
                f"of shape (n, k) = y_train.shape = {(self._n, self._k)}",
                f"shape {tuple(f0.shape)}",
            )
        check_finite(where, f0)
        return f0

    def _test_inputs(self, f0_test: Any, k_test_train: Any, method: str):
        if (f0_test is None) != (k_test_train is None):
            given, missing = (
                ("f0_test", "k_test_train") if k_test_train is None else ("k_test_train", "f0_test")
            )
            raise ValueError(
                f"`MSEPredictor.{method}({missing}=...)` is required when {given} is given "
                f"(pass both for test predictions, or neither); got {missing}=None."
            )
        if f0_test is None:
            return None, None
        where_f = f"`MSEPredictor.{method}(f0_test=...)`"
        where_k = f"`MSEPredictor.{method}(k_test_train=...)`"
        f0t = as_real_array(f0_test, where_f)
        kt = as_real_array(k_test_train, where_k)
        n, k = self._n, self._k
        if f0t.ndim != 2 or f0t.shape[1] != k:
            fail(
                where_f,
                f"a 2-D (m, k) array with k = y_train.shape[1] = {k}",
                f"shape {tuple(f0t.shape)}",
            )
        m = f0t.shape[0]
        expected = (m, n, k, k) if self._full else (m, n)
        layout = (
            "(m, n, k, k) like the 4-D k_train_train"
            if self._full
            else "(m, n) like the 2-D k_train_train"
        )
        if tuple(kt.shape) != expected:
            fail(
                where_k,
                f"of shape {layout} with m = f0_test.shape[0] = {m}, n = {n}, k = {k}, "
                f"i.e. {expected}",
                f"shape {tuple(kt.shape)}",
            )
        check_finite(where_f, f0t)
        check_finite(where_k, kt)
        return f0t, kt

    # ---------------------------------------------------------------------------------------------
    # Evaluation.

    def _finite(self, t_flat, t_shape, n_bits, f0, f0t, kt, *, dtype, want):
        beta = 0.0 if self._momentum is None else self._momentum
        scale = self._learning_rate / self._size
        # Mixed precision (solve_dtype="float64" on a float32 kernel): train outputs and the loss
        # only rotate the residual by the orthogonal V and scale each mode by |rho - 1| <= 2, so
        # they are safe in the working dtype from the float64 eigenpairs rounded once. Test outputs
        # and weights need gamma ~ 1/lam: rounding the test kernel times V in float32 would be
        # amplified by 1/lam_min, so those contractions run in float64.
        # Heavy ball forms powers of [[1 - a, ...]] per mode, and 1 - a rounds to 1 in float32 for
        # a = lr lam / N < eps32 / 2: the slow modes would never move, so it evolves in float64.
        wide = (want == "coef" or f0t is not None or self._kind == "momentum") and (
            self._dtype != self._kernel.dtype
        )

        def evolve(lam, vecs, work):
            return _evolve.finite_time(
                lam,
                vecs,
                t_flat,
                scale,
                beta,
                f0,
                self._y,
                f0t,
                kt,
                kind=self._kind,
                n_bits=n_bits,
                dtype=work,
                want=want,
                t_shape=t_shape,
            )

        if not wide:
            return evolve(*self._eigensystem(), dtype)
        if self._host and not is_concrete(t_flat, f0, f0t, kt, self._y, scale, beta):
            raise ValueError(
                _TRACED_X64_OFF.format(
                    what="computes test predictions, weights and (kind='momentum') all outputs in "
                    "float64, eagerly in a local float64 scope,",
                    inputs="t, f0_train, f0_test and k_test_train",
                    alternative="for 'flow'/'gd', predict train outputs / the loss only (those "
                    "run in the working dtype)",
                )
            )
        lam, vecs = self._eigensystem64()
        with self._float64():
            out = evolve(lam, vecs, float_dtype(dtype, self._kernel.dtype))
            return jax.tree_util.tree_map(lambda a: a.astype(dtype), out)

    def _infinite(self, f0, f0t, kt, *, dtype):
        if self._host and not is_concrete(f0, f0t, kt, self._y):
            raise ValueError(
                _TRACED_X64_OFF.format(
                    what="solves t=None on host-side (concrete) values, eagerly in a local float64 "
                    "scope,",
                    inputs="f0_train, f0_test and k_test_train",
                    alternative="use a large finite t",
                )
            )
        chol, usable = self._cholesky()
        if not usable:
            lam, vecs = self._eigensystem64()
        with self._float64():
            # The solve runs in the factorisation's dtype (float64 for solve_dtype="float64": a
            # solve with K^{-1} amplifies rounding by cond(K), so it is not safe in float32).
            solve = float_dtype(dtype, self._kernel.dtype)
            if usable:
                out = _evolve.infinite_time(
                    chol, None, None, f0, self._y, f0t, kt, dtype=solve, rtol=0.0
                )
            else:
                rtol = _linalg.rank_rtol(lam.dtype, self._dim)
                out = _evolve.infinite_time(
                    None, lam, vecs, f0, self._y, f0t, kt, dtype=solve, rtol=rtol
                )
            return tuple(None if a is None else a.astype(dtype) for a in out)

    # ---------------------------------------------------------------------------------------------
    # Public API.

    def __call__(
        self,
        t: ArrayLike | None,
        f0_train: ArrayLike,
        f0_test: ArrayLike | None = None,
        k_test_train: ArrayLike | None = None,
    ):
        """Predictions of the linearized model after training for time ``t``.

        Args:
          t: ``None`` (t = infinity), a scalar or an array of times of any shape. For ``"gd"`` and
            ``"momentum"`` the number of optimiser steps (non-negative integers).
          f0_train: ``(n, k)`` outputs on the train inputs at initialisation.
          f0_test: ``(m, k)`` outputs on test inputs at initialisation (give with ``k_test_train``).
          k_test_train: ``(m, n)`` or ``(m, n, k, k)`` kernel between test and train inputs, same
            layout as ``k_train_train``.

        Returns:
          Train predictions ``(*t.shape, n, k)``; or, with test inputs, ``(train, test)`` with test
          ``(*t.shape, m, k)``. ``t=None`` gives no time axis: train ``y_train`` exactly (or, for a
          singular kernel without ``diag_reg``, ``y_train`` plus the part of the initial residual in
          the kernel's null space), test ``f0_test - K_test_train K^{-1} (f0_train - y_train)``.
        """
        f0 = self._f0(f0_train, "`MSEPredictor.__call__(f0_train=...)`")
        f0t, kt = self._test_inputs(f0_test, k_test_train, "__call__")
        dtypes = [self._dtype, self._y.dtype, f0.dtype]
        if f0t is not None:
            dtypes += [f0t.dtype, kt.dtype]
        dtype = float_dtype(*dtypes)
        if t is None:
            train, test, _ = self._infinite(f0, f0t, kt, dtype=dtype)
            return train if f0t is None else (train, test)
        t_flat, t_shape, n_bits = validate_times(t, "`MSEPredictor.__call__(t=...)`", self._kind)
        return self._finite(t_flat, t_shape, n_bits, f0, f0t, kt, dtype=dtype, want="call")

    def loss(self, t: ArrayLike | None, f0_train: ArrayLike) -> jax.Array:
        """Training loss ``0.5 * mean((f_t - y_train)**2)``, shape ``t.shape`` (``()`` at None).

        Computed in the eigenbasis as ``0.5 / N * sum_modes rho^2 |V^T r_0|^2`` without forming the
        predictions.
        """
        f0 = self._f0(f0_train, "`MSEPredictor.loss(f0_train=...)`")
        dtype = float_dtype(self._dtype, self._y.dtype, f0.dtype)
        if t is None:
            train, _, _ = self._infinite(f0, None, None, dtype=dtype)
            return _evolve.loss_of(train, self._y, dtype=dtype)
        t_flat, t_shape, n_bits = validate_times(t, "`MSEPredictor.loss(t=...)`", self._kind)
        return self._finite(t_flat, t_shape, n_bits, f0, None, None, dtype=dtype, want="loss")

    def weights(self, t: ArrayLike | None, f0_train: ArrayLike, jacobian: PyTree) -> PyTree:
        """Weight change ``omega_t = theta_t - theta_0`` of the linearized model.

        ``omega_t = J^T c_t`` with ``c_t = V diag(gamma) V^T (f_0 - y)`` (Lee et al. 2019:
        ``-J^T Theta^{-1} (I - exp(-lr Theta t / N)) (f_0 - y)`` for the flow), so that
        ``f_0 + J omega_t`` reproduces `__call__`'s train predictions whenever ``J J^T`` is the
        kernel the predictor was built with, i.e.:

        * full ``(n, n, k, k)`` kernel: ``K = J J^T`` exactly (and ``diag_reg = 0``);
        * traced ``(n, n)`` kernel: this assumes the NTK is block-diagonal over outputs with
          identical blocks, ``J J^T = Theta ⊗ I_k`` (true at infinite width, or for ``k = 1``);
          for a finite multi-output network it is an approximation.

        Args:
          t: as in `__call__` (``None`` gives ``-J^T K^{-1} (f_0 - y)``).
          f0_train: ``(n, k)`` initial train outputs.
          jacobian: Jacobian of the ``(n, k)`` train outputs w.r.t. the parameters at ``theta_0``: a
            PyTree like the parameters with leaves of shape ``(n, k, *leaf_shape)``, as returned by
            ``jax.jacrev(lambda p: apply_fn(p, x_train))(params)``.

        Returns:
          A PyTree like the parameters with leaves ``(*t.shape, *leaf_shape)``.
        """
        f0 = self._f0(f0_train, "`MSEPredictor.weights(f0_train=...)`")
        where = "`MSEPredictor.weights(jacobian=...)`"
        with_paths, treedef = jax.tree_util.tree_flatten_with_path(jacobian)
        if not with_paths:
            fail(
                where,
                "a PyTree with at least one array leaf (leaves of shape (n, k, *param_shape))",
                repr(jacobian),
            )
        leaves = []
        for path, leaf in with_paths:
            name = jax.tree_util.keystr(path) or "<root>"
            arr = as_real_array(leaf, f"{where} leaf {name}")
            if arr.ndim < 2 or tuple(arr.shape[:2]) != (self._n, self._k):
                fail(
                    f"{where} leaf {name}",
                    f"of shape (n, k, *param_shape) with (n, k) = {(self._n, self._k)}",
                    f"shape {tuple(arr.shape)}",
                )
            leaves.append(arr)
        dtype = float_dtype(self._dtype, self._y.dtype, f0.dtype, *(a.dtype for a in leaves))
        if t is None:
            _, _, coef = self._infinite(f0, None, None, dtype=dtype)
            coef, t_shape = coef[None], ()
        else:
            t_flat, t_shape, n_bits = validate_times(t, "`MSEPredictor.weights(t=...)`", self._kind)
            coef = self._finite(t_flat, t_shape, n_bits, f0, None, None, dtype=dtype, want="coef")
        out = _evolve.apply_jacobian_transpose(coef, leaves, dtype=dtype, t_shape=t_shape)
        return jax.tree_util.tree_unflatten(treedef, out)


def mse(
    k_train_train: ArrayLike,
    y_train: ArrayLike,
    *,
    learning_rate: Any = 1.0,
    diag_reg: Any = 0.0,
    kind: str = "flow",
    momentum: Any = None,
    solve_dtype: Any = None,
) -> MSEPredictor:
    """Predictor of a linearized model trained on ``0.5 * mean((f - y_train)**2)``.

    Args:
      k_train_train: the NTK on the train inputs, ``(n, n)`` (traced over outputs, the same kernel
        for every output column) or ``(n, n, k, k)``
        (full; ``K[i, j, a, b] = <df_a(x_i), df_b(x_j)>``). Must be symmetric and positive
        semi-definite up to rounding (eigenvalues in ``[-tol * lam_max, 0)``,
        ``tol = min(1e3 * eps * D, 1e-2)`` with ``D = n`` or ``n * k``, are clamped to 0; clearly
        negative ones raise ``ValueError`` on the first use of the eigendecomposition).
      y_train: ``(n, k)`` targets (reshape a single output to ``(n, 1)``).
      learning_rate: ``lr`` > 0. One unit of ``t`` is one ``optax.sgd(lr)`` step; the flow is
        ``df/dt = -lr * Theta (f - y) / N`` with ``N = y_train.size``.
      diag_reg: relative ridge >= 0: the kernel used is ``K + diag_reg * mean(diag(K)) * I``.
      kind: ``"flow"`` (gradient flow, = ``neural_tangents.predict.gradient_descent_mse``), ``"gd"``
        (discrete gradient descent, integer ``t``) or ``"momentum"`` (heavy ball as
        ``optax.sgd(lr, momentum=momentum)``, integer ``t``).
      momentum: ``beta`` in ``[0, 1)``, required for ``kind="momentum"`` and ``None`` otherwise.
      solve_dtype: ``None`` (factorise in the kernel's dtype) or ``"float64"``: for a
        lower-precision (float32) kernel, symmetrise, regularise, eigendecompose and
        Cholesky-factorise it in float64 (the kernel's entries taken as exact), and solve ``t=None``
        in float64; finite-time evolution then runs in the working dtype from the float64 eigenpairs
        rounded once (mixed precision), and every output keeps the working dtype. With
        ``jax_enable_x64`` on this runs in JAX (also under ``jit``); with it off (JAX's default) the
        same JAX code runs eagerly in a local ``jax.enable_x64(True)`` scope, which needs a concrete
        kernel (``ValueError`` when traced) and, for ``t=None``, test outputs, weights and
        ``"momentum"``, concrete inputs. No effect on a float64 kernel.

    Returns:
      An `MSEPredictor`. For ``"gd"``/``"momentum"`` the eigendecomposition is computed here and a
      ``UserWarning`` is issued when ``learning_rate`` exceeds the critical learning rate (checked
      only for concrete values); for ``"flow"`` it is computed on the first finite-``t`` use.

    Notes:
      * ``t=None`` (infinite time) is the same fixed point for every kind: a Cholesky solve of the
        regularised kernel (train predictions are ``y_train``). If the kernel is numerically
        singular (Cholesky NaN or pivots below ``D * eps`` of the largest diagonal entry) it falls
        back, with a ``UserWarning``, to the eigendecomposition pseudo-inverse, in which null modes
        keep their initial residual, which is exactly where gradient flow goes. For
        ``"gd"``/``"momentum"`` above the critical learning rate that fixed point is never reached.
      * The symmetry tolerance is ``sqrt(eps)`` of the kernel's dtype, relative to ``max |K|``; the
        kernel is symmetrised ``(K + K^T) / 2`` before use.
      * Value checks (finiteness, symmetry, PSD, ranges, stability) run only on concrete
        (non-traced) inputs; shape checks always run. Traced float times for ``"gd"``/``"momentum"``
        are rounded to whole steps.
      * With ``solve_dtype="float64"`` the PSD-rounding tolerance stays that of the kernel's dtype,
        while the Cholesky/pseudo-inverse rank thresholds are float64 ones: the point of the option
        is to resolve eigenvalues far below ``eps32 * lam_max``.
    """
    if not isinstance(kind, str) or kind not in KINDS:
        fail("dynamics.mse(kind=...)", f"one of {', '.join(map(repr, KINDS))}", repr(kind))
    where = "`dynamics.mse({}=...)`"
    learning_rate = check_scalar(
        learning_rate, where.format("learning_rate"), low=0.0, low_inclusive=False
    )
    diag_reg = check_scalar(diag_reg, where.format("diag_reg"), low=0.0, low_inclusive=True)
    if kind == "momentum":
        if momentum is None:
            fail(
                where.format("momentum"), "a float in [0, 1) (required for kind='momentum')", "None"
            )
        momentum = check_scalar(
            momentum, where.format("momentum"), low=0.0, low_inclusive=True, high=1.0
        )
    elif momentum is not None:
        fail(
            where.format("momentum"),
            f"None for kind={kind!r} (use kind='momentum' for heavy ball)",
            repr(momentum),
        )

    where_k = where.format("k_train_train")
    y = check_targets(y_train, where.format("y_train"))
    kernel = check_train_kernel(k_train_train, y.shape, where_k)
    solve = check_solve_dtype(solve_dtype, where.format("solve_dtype"))

    dtype = float_dtype(kernel.dtype, y.dtype)
    concrete = is_concrete(kernel, diag_reg)
    # solve_dtype="float64" on a lower-precision kernel: factorise in float64, in JAX either way;
    # with x64 off inside `_linalg.local_float64`, which needs concrete values.
    host = solve is not None and dtype.itemsize < solve.itemsize and not _linalg.x64_enabled()
    fact_dtype = solve if solve is not None and dtype.itemsize < solve.itemsize else dtype
    if host and not concrete:
        raise ValueError(
            "`dynamics.mse(solve_dtype='float64')` needs float64, which JAX lacks while "
            "jax_enable_x64 is off, so the factorisation would run eagerly in a local float64 "
            "scope and needs a concrete k_train_train and diag_reg; got traced values (inside "
            "jax.jit / vmap / grad). Build the predictor outside the transformation, enable "
            "float64 (jax.config.update('jax_enable_x64', True)), or pass solve_dtype=None."
        )
    with _linalg.local_float64() if host else _linalg.eval_context(concrete):
        flat, asym, size = _linalg.prepare_kernel(kernel, diag_reg, dtype=fact_dtype)
    if concrete:
        _linalg.check_symmetric(asym, size, dtype, where_k)

    predictor = MSEPredictor(
        kernel=flat,
        y_train=y,
        full=kernel.ndim == 4,
        kind=kind,
        learning_rate=learning_rate,
        diag_reg=diag_reg,
        momentum=momentum,
        dtype=dtype,
        host=host,
    )
    if kind != "flow":
        predictor._eigensystem()  # needed for the stability check; cached for every later call
        if is_concrete(flat, learning_rate, momentum):
            critical = float(predictor.critical_learning_rate)
            if float(learning_rate) > critical:
                what = "gradient descent" if kind == "gd" else "heavy-ball momentum"
                warnings.warn(
                    f"dynamics.mse: learning_rate={float(learning_rate):g} exceeds the critical "
                    f"learning rate {critical:g} (= 2 N "
                    f"{'(1 + momentum) ' if kind == 'momentum' else ''}/ lam_max) of this kernel, "
                    f"so {what} diverges: the top modes grow without bound.",
                    UserWarning,
                    stacklevel=2,
                )
    return predictor
