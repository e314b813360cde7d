"""`gp_inference`: the t = infinity posteriors of the NNGP, the NTK-GP and the NTK ensemble.

The same quantities as ``neural_tangents.predict.gp_inference`` (traced ``(n, n)`` kernels), from
train-train, test-train and (for covariances) test-test kernels, with ``K`` the NNGP, ``Θ`` the
NTK, ``d`` the train and ``t`` the test points, and each train-train kernel regularised as
``K + diag_reg * mean(diag(K)) I``:

* ``"nngp"``: the exact Bayesian posterior of an infinitely wide network,
  mean ``K_td K^{-1} y``, cov ``K_tt - K_td K^{-1} K_dt``;
* ``"ntkgp"``: the posterior of a GP with the NTK as prior covariance (He et al. 2020, "Bayesian
  deep ensembles via the neural tangent kernel"), mean ``Θ_td Θ^{-1} y``,
  cov ``Θ_tt - Θ_td Θ^{-1} Θ_dt``;
* ``"ntk"``: the distribution of an infinite ensemble of infinitely wide networks trained by
  gradient flow to t = infinity (Lee et al. 2019, eq. 16), mean ``Θ_td Θ^{-1} y``,
  cov ``K_tt + Θ_td Θ^{-1} K Θ^{-1} Θ_dt - (Θ_td Θ^{-1} K_dt + K_td Θ^{-1} Θ_dt)`` (``K`` the
  unregularised train NNGP, as neural-tangents does); `dynamics.mse_ensemble` at ``t=None``.

Kernels come as an object with ``nngp`` / ``ntk`` attributes (a `jaxdyn.nets` ``kernel_fn``
result), a dict with those keys, or one array (then used for whichever kernel is asked for).
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from jaxdyn._checks import check_finite, fail, is_concrete
from jaxdyn.dynamics._inputs import as_real_array, check_scalar, check_targets
from jaxdyn.dynamics._linalg import HIGHEST, check_symmetric, float_dtype, prepare_kernel
from jaxdyn.dynamics.ensemble import Gaussian, _gaussians_type

__all__ = ["GP_GETS", "GPInference", "gp_inference"]

GP_GETS = ("nngp", "ntk", "ntkgp")


def _kernel(kernels: Any, name: str, where: str, shape: tuple[int, int] | None):
    """The ``name`` kernel ("nngp" or "ntk") of ``kernels``, checked; None when absent."""
    if isinstance(kernels, dict):
        value = kernels.get(name)
    elif hasattr(kernels, "nngp") or hasattr(kernels, "ntk"):
        value = getattr(kernels, name, None)
    else:
        value = kernels  # one array serves every kernel
    if value is None:
        return None
    arr = as_real_array(value, f"{where} kernel {name!r}")
    if shape is not None and tuple(arr.shape) != shape:
        fail(f"{where} kernel {name!r}", f"of shape {shape}", f"shape {tuple(arr.shape)}")
    check_finite(f"{where} kernel {name!r}", arr)
    return arr


@jax.jit
def _factor(kernel):
    chol = jnp.linalg.cholesky(kernel)
    return chol, jnp.all(jnp.isfinite(chol))


def _matmul(a, b):
    return jnp.matmul(a, b, precision=HIGHEST)


class GPInference:
    """Posteriors at t = infinity; build with `gp_inference`. Call as
    ``predictor(get=("nngp", "ntk"), k_test_train=None, k_test_test=None)``."""

    def __init__(self, *, kernels, y, diag_reg, dtype):
        self._kernels = kernels  # {"nngp": (n, n) or None, "ntk": ...} symmetrised, raw
        self._y = y
        self._diag_reg = diag_reg
        self._dtype = dtype
        self._chol: dict[str, jax.Array] = {}

    def _solve(self, name: str, b: jax.Array) -> jax.Array:
        """``K_reg^{-1} b`` for the train kernel ``name`` (Cholesky, cached)."""
        if name not in self._chol:
            kernel = self._kernels.get(name)
            if kernel is None:
                fail(
                    "dynamics.gp_inference(k_train_train=...)",
                    f"a kernel with a {name!r} entry (needed for this request)",
                    "none",
                )
            reg = prepare_kernel(kernel, self._diag_reg, dtype=self._dtype)[0]
            chol, ok = _factor(reg)
            if is_concrete(ok) and not bool(ok):
                warnings.warn(
                    f"dynamics.gp_inference: the Cholesky factorisation of the {name!r} train "
                    "kernel failed (singular or indefinite); pass diag_reg > 0.",
                    UserWarning,
                    stacklevel=4,
                )
            self._chol[name] = chol
        return jsl.cho_solve((self._chol[name], True), b)

    def __call__(
        self, get: Any = ("nngp", "ntk"), k_test_train: Any = None, k_test_test: Any = None
    ):
        """Posterior on the test points (or, without ``k_test_train``, the train points).

        Args:
          get: ``"nngp"``, ``"ntk"``, ``"ntkgp"`` or a tuple of them.
          k_test_train: ``(m, n)`` test-train kernels (same forms as ``k_train_train``); None
            for the train points, whose posterior is ``N(y_train, 0)``.
          k_test_test: ``(m, m)`` test-test kernels (the NNGP; the NTK for ``"ntkgp"``) for the
            covariance; None: no covariance.

        Returns:
          For a string ``get`` a `Gaussian` ``(mean (m, k), covariance (m, m) or None)``; for a
          tuple a NamedTuple ``Gaussians`` of them, fields in the order of ``get``.
        """
        single = isinstance(get, str)
        gets = (get,) if single else tuple(get) if isinstance(get, (tuple, list)) else None
        if not gets or any(g not in GP_GETS for g in gets) or len(set(gets)) != len(gets):
            fail(
                "GPInference(get=...)",
                f"one of {', '.join(map(repr, GP_GETS))} or a tuple of distinct ones",
                repr(get),
            )
        n = self._y.shape[0]
        out = {}
        for g in gets:
            name = "ntk" if g == "ntkgp" else g
            prior = "ntk" if g == "ntkgp" else "nngp"  # the covariance at initialisation
            if k_test_train is None:
                cov = None if k_test_test is None else jnp.zeros((n, n), self._dtype)
                out[g] = Gaussian(jnp.asarray(self._y, self._dtype), cov)
                continue
            where = "`GPInference(k_test_train=...)`"
            k_td = _kernel(k_test_train, name, where, None)
            if k_td is None or k_td.ndim != 2 or k_td.shape[1] != n:
                fail(where, f"(m, n) kernels with n = {n}, including {name!r}", repr(k_td))
            m = k_td.shape[0]
            k_td = jnp.asarray(k_td, self._dtype)
            mean = _matmul(k_td, self._solve(name, jnp.asarray(self._y, self._dtype)))
            cov = None
            if k_test_test is not None:
                k_tt = _kernel(k_test_test, prior, "`GPInference(k_test_test=...)`", (m, m))
                if k_tt is None:
                    fail("GPInference(k_test_test=...)", f"kernels including {prior!r}", "none")
                k_tt = jnp.asarray(k_tt, self._dtype)
                if g in ("nngp", "ntkgp"):
                    cov = k_tt - _matmul(k_td, self._solve(name, k_td.T))
                else:
                    nngp_td = _kernel(k_test_train, "nngp", where, (m, n))
                    nngp_dd = self._kernels.get("nngp")
                    if nngp_td is None or nngp_dd is None:
                        fail(
                            "GPInference(get='ntk') with k_test_test",
                            "NNGP and NTK kernels in k_train_train and k_test_train",
                            "no NNGP",
                        )
                    nngp_td = jnp.asarray(nngp_td, self._dtype)
                    term_1 = self._solve("ntk", k_td.T)  # Θ^{-1} Θ_dt, (n, m)
                    cross = _matmul(k_td, self._solve("ntk", nngp_td.T))  # Θ_td Θ^{-1} K_dt
                    cov = k_tt + _matmul(term_1.T, _matmul(nngp_dd, term_1)) - cross - cross.T
            out[g] = Gaussian(mean, cov)
        if single:
            return out[gets[0]]
        return _gaussians_type(gets)(**out)


def gp_inference(k_train_train: Any, y_train: Any, *, diag_reg: Any = 0.0) -> GPInference:
    """The NNGP posterior and the NTK-GP / NTK predictions at t = infinity (exact, Cholesky).

    Args:
      k_train_train: ``(n, n)`` train-train kernels: an object with ``nngp`` / ``ntk``
        attributes (e.g. ``kernel_fn(x_train, None, ("nngp", "ntk"))`` of `jaxdyn.nets`), a dict,
        or one array (used for every kernel requested).
      y_train: ``(n, k)`` targets.
      diag_reg: relative ridge >= 0: each train-train kernel is used as
        ``K + diag_reg * mean(diag(K)) I`` in every solve (neural-tangents'
        ``diag_reg_absolute_scale=False``), the NTK posterior's middle ``K`` left alone.

    Returns:
      A `GPInference` (``predictor(get, k_test_train=None, k_test_test=None)``); each kernel is
      Cholesky-factorised on first use and cached.

    Example::

        kernels = kernel_fn(x_train, None, ("nngp", "ntk"))
        post = dynamics.gp_inference(kernels, y_train, diag_reg=1e-4)(
            "nngp", kernel_fn(x_test, x_train, ("nngp", "ntk")), kernel_fn(x_test, None, "nngp"))
        post.mean, post.covariance        # (m, k), (m, m)
    """
    where = "`dynamics.gp_inference({}=...)`"
    diag_reg = check_scalar(diag_reg, where.format("diag_reg"), low=0.0, low_inclusive=True)
    y = check_targets(y_train, where.format("y_train"))
    n = y.shape[0]
    raw = {
        g: _kernel(k_train_train, g, where.format("k_train_train"), (n, n)) for g in ("nngp", "ntk")
    }
    if all(v is None for v in raw.values()):
        fail(where.format("k_train_train"), "an (n, n) kernel, or 'nngp' / 'ntk' kernels", "none")
    dtype = float_dtype(y.dtype, *(v.dtype for v in raw.values() if v is not None))
    kernels = {}
    for g, kernel in raw.items():
        if kernel is None:
            kernels[g] = None
            continue
        sym, asym, size = prepare_kernel(kernel, 0.0, dtype=dtype)
        if is_concrete(asym, size):
            check_symmetric(asym, size, dtype, f"{where.format('k_train_train')} kernel {g!r}")
        kernels[g] = sym
    return GPInference(kernels=kernels, y=y, diag_reg=diag_reg, dtype=np.dtype(dtype))
