"""`mse_ensemble`: infinite ensembles of infinitely wide networks trained by gradient flow on MSE.

Mean and covariance over random initialisations (Lee et al. 2019, "Wide neural networks of any
depth evolve as linear models under gradient descent", eqs. 14-16; the same numbers as
``neural_tangents.predict.gradient_descent_mse_ensemble``) from a ``kernel_fn`` returning the NNGP
and the NTK. Shares the factorisations (`_linalg`), the flow's per-mode factors (`_modes`) and
the input checks (`_inputs`) with `jaxdyn.dynamics.mse`.
"""

from __future__ import annotations

import collections
import functools
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from jaxdyn._checks import check_finite, is_concrete
from jaxdyn.dynamics._inputs import as_real_array, check_scalar, check_targets, validate_times
from jaxdyn.dynamics._linalg import (
    HIGHEST,
    check_symmetric,
    checked_cholesky,
    clamped_eigensystem,
    eval_context,
    float_dtype,
    prepare_kernel,
    pseudo_inverse_modes,
    rank_rtol,
)
from jaxdyn.dynamics._modes import flow_factors

# The kernel selectors ("nngp", "ntk") are defined once, in `jaxdyn.infinite` (and used by
# `jaxdyn.nets`): `mse_ensemble` trains with "ntk" (all layers) or "nngp" (the last layer only).
from jaxdyn.infinite import GETS

__all__ = ["GETS", "EnsemblePredictor", "Gaussian", "mse_ensemble"]

ArrayLike = Any


class Gaussian(NamedTuple):
    """Mean ``(*t.shape, m, k)`` and covariance ``(*t.shape, m, m)`` of the ensemble's outputs.

    The covariance is the same for every output column (the outputs are independent, identically
    distributed GPs); ``None`` unless ``compute_cov=True``.
    """

    mean: jax.Array
    covariance: jax.Array | None


@functools.cache
def _gaussians_type(fields: tuple[str, ...]) -> type:
    """NamedTuple ``Gaussians`` with one `Gaussian` field per requested kernel, in request order."""
    return collections.namedtuple("Gaussians", fields)


def _canonical_get(get: Any, where: str) -> tuple[tuple[str, ...], bool]:
    """``get`` -> (kernel names, whether a single string was given)."""
    single = isinstance(get, str)
    if single:
        gets = (get,)
    elif isinstance(get, (tuple, list)) and len(get) > 0 and all(isinstance(g, str) for g in get):
        gets = tuple(get)
    else:
        raise TypeError(
            f"{where} must be 'ntk', 'nngp' or a non-empty tuple of them; got "
            f"{type(get).__name__} {get!r}."
        )
    unknown = [g for g in gets if g not in GETS]
    if unknown:
        raise ValueError(
            f"{where} must be 'ntk', 'nngp' or a tuple of them; got unknown kernel "
            f"{unknown[0]!r} in {get!r}."
        )
    if len(set(gets)) != len(gets):
        raise ValueError(f"{where} must not repeat a kernel; got {get!r}.")
    return gets, single


def _call_kernel_fn(
    kernel_fn: Any,
    x1: Any,
    x2: Any,
    kinds: tuple[str, ...],
    shape: tuple[int, int],
    what: str,
) -> dict[str, Any]:
    """Evaluates ``kernel_fn(x1, x2, get)`` and checks each requested kernel has ``shape``.

    One kernel is requested by its name (the result may be the array itself or an object with that
    attribute), several by a tuple of names (an object with one attribute per name), so that
    neural-tangents style kernel functions work either way.
    """
    where = "`dynamics.mse_ensemble(kernel_fn=...)`"
    request = kinds[0] if len(kinds) == 1 else kinds
    out = kernel_fn(x1, x2, request)
    kernels = {}
    for g in kinds:
        if hasattr(out, g):
            value = getattr(out, g)
        elif len(kinds) == 1 and not hasattr(out, "ntk") and not hasattr(out, "nngp"):
            value = out
        else:
            value = None
        name = f"{where} {what} with get={request!r}"
        if value is None:
            raise TypeError(
                f"{name} must return an object with a {g!r} attribute (or, for a single string "
                f"get, the array itself); got {type(out).__name__}."
            )
        arr = as_real_array(value, f"{name}, kernel {g!r},")
        if tuple(arr.shape) != shape:
            raise ValueError(
                f"{name} must give a {shape} kernel {g!r} (one entry per pair of inputs, "
                f"traced over outputs); got shape {tuple(arr.shape)}."
            )
        check_finite(f"{name}, kernel `{g}`", arr)
        kernels[g] = arr
    return kernels


@functools.partial(jax.jit, static_argnames=("get", "dtype", "t_shape", "cov"))
def _ensemble_finite(
    lam,
    vecs,
    t,
    scale,
    y,
    k_td,
    nngp_td,
    nngp_dd,
    nngp_tt,
    *,
    get: str,
    dtype: Any,
    t_shape: tuple[int, ...],
    cov: bool,
):
    """Ensemble mean and covariance at finite times from the eigensystem of the ``get`` kernel.

    ``lam`` (n,), ``vecs`` (n, n) of the regularised train kernel; ``t`` (T,); ``y`` (n, k);
    ``k_td`` (m, n) of kind ``get`` or None for predictions on the train inputs; ``nngp_td`` (m, n),
    ``nngp_dd`` (n, n) (unregularised) and ``nngp_tt`` (m, m) only for ``cov``. In the eigenbasis
    ``G = V diag(g) V^T = K^{-1} (I - exp(-lr K t / N))`` with ``g = -gamma >= 0`` (finite at
    ``lam = 0``) and ``exp(-lr K t / N) = V diag(rho) V^T``.
    """
    lam, vecs = lam.astype(dtype), vecs.astype(dtype)
    scale = jnp.asarray(scale, dtype)
    rho, rho_m1, gamma = flow_factors(lam, t.astype(dtype), scale)
    g = -gamma  # (T, n)
    y = y.astype(dtype)
    vty = jnp.matmul(vecs.T, y, precision=HIGHEST)  # (n, k)

    def sym(c):
        return 0.5 * (c + jnp.swapaxes(c, -1, -2))

    if k_td is None:
        # Train inputs: mean (I - exp(-K t)) y.
        mean = jnp.einsum("ij,tj,jc->tic", vecs, -rho_m1, vty, precision=HIGHEST)
        covariance = None
        if cov:
            # f_t = (I - E) y + E f_0 with E = exp(-lr K t / N), so cov = E K_nngp E for either
            # kernel, K_nngp the prior (unregularised) train NNGP. (neural-tangents writes
            # V diag(lam rho^2) V^T for get="nngp", which puts the ridge into the prior: the same
            # for diag_reg = 0, larger by diag_reg * mean(diag(K)) * V diag(rho^2) V^T otherwise.)
            decay = jnp.einsum("ij,tj,kj->tik", vecs, rho, vecs, precision=HIGHEST)
            covariance = jnp.einsum(
                "tij,jk,tlk->til", decay, nngp_dd.astype(dtype), decay, precision=HIGHEST
            )
            covariance = sym(covariance)
    else:
        kv = jnp.matmul(k_td.astype(dtype), vecs, precision=HIGHEST)  # (m, n)
        mean = jnp.einsum("ij,tj,jc->tic", kv, g, vty, precision=HIGHEST)  # K_td G y
        covariance = None
        if cov:
            k_tt = nngp_tt.astype(dtype)[None]
            if get == "nngp":
                # K_tt - K_td K^{-1} (I - exp(-2 K t)) K_dt, with
                # 1 - e^{-2x} = (1 - e^{-x}) (1 + e^{-x}).
                covariance = k_tt - jnp.einsum(
                    "ij,tj,kj->tik", kv, g * (1.0 + rho), kv, precision=HIGHEST
                )
            else:
                # Lee et al. eq. 16: A^T K A - (Θ_td G K_dt + transpose) + K_tt with A = G Θ_dt.
                a = jnp.einsum("ij,tj,kj->tik", vecs, g, kv, precision=HIGHEST)  # (T, n, m)
                kv_nngp = jnp.matmul(nngp_td.astype(dtype), vecs, precision=HIGHEST)
                cross = jnp.einsum("ij,tj,kj->tik", kv, g, kv_nngp, precision=HIGHEST)
                covariance = (
                    jnp.einsum("tji,jk,tkl->til", a, nngp_dd.astype(dtype), a, precision=HIGHEST)
                    - cross
                    - jnp.swapaxes(cross, 1, 2)
                    + k_tt
                )
            covariance = sym(covariance)
    m = mean.shape[1]
    mean = mean.reshape(t_shape + (m, y.shape[1]))
    if covariance is not None:
        covariance = covariance.reshape(t_shape + (m, m))
    return mean, covariance


@functools.partial(jax.jit, static_argnames=("get", "dtype", "rtol", "cov"))
def _ensemble_infinite(
    chol,
    lam,
    vecs,
    y,
    k_td,
    nngp_td,
    nngp_dd,
    nngp_tt,
    *,
    get: str,
    dtype: Any,
    rtol: float,
    cov: bool,
):
    """Ensemble mean and covariance at t = infinity.

    With ``chol`` (lower Cholesky factor of the regularised ``get`` kernel) solves with ``K^{-1}``;
    otherwise (``chol`` None, a numerically singular kernel) uses the pseudo-inverse from
    ``(lam, vecs)``, modes within ``rtol * lam_max`` of zero counting as zero: those never move
    under gradient flow, so on the train inputs they keep their initial value (mean 0, NNGP
    covariance).
    """
    y = y.astype(dtype)
    n = y.shape[0]
    if chol is not None:
        chol = chol.astype(dtype)

        def solve(b):
            return jsl.cho_solve((chol, True), b)

        null = None
    else:
        lam, vecs = lam.astype(dtype), vecs.astype(dtype)
        inv, live = pseudo_inverse_modes(lam, rtol)

        def solve(b):
            q = jnp.matmul(vecs.T, b, precision=HIGHEST)
            return jnp.matmul(vecs, inv[:, None] * q, precision=HIGHEST)

        # Projector on the null space of the kernel.
        null = jnp.matmul(vecs * jnp.where(live, 0.0, 1.0)[None, :], vecs.T, precision=HIGHEST)

    if k_td is None:
        # Train inputs: the targets with zero covariance (for a singular kernel the null-space part
        # of the initial function, which has mean 0, survives).
        if null is None:
            return y, (jnp.zeros((n, n), dtype) if cov else None)
        mean = y - jnp.matmul(null, y, precision=HIGHEST)
        covariance = None
        if cov:
            if get == "nngp":
                covariance = jnp.zeros((n, n), dtype)
            else:
                k_dd = nngp_dd.astype(dtype)
                covariance = jnp.matmul(
                    null, jnp.matmul(k_dd, null, precision=HIGHEST), precision=HIGHEST
                )
                covariance = 0.5 * (covariance + covariance.T)
        return mean, covariance

    k_td = k_td.astype(dtype)
    mean = jnp.matmul(k_td, solve(y), precision=HIGHEST)  # K_td K^{-1} y
    if not cov:
        return mean, None
    k_tt = nngp_tt.astype(dtype)
    if get == "nngp":
        covariance = k_tt - jnp.matmul(k_td, solve(k_td.T), precision=HIGHEST)
    else:
        a = solve(k_td.T)  # Θ^{-1} Θ_dt, (n, m)
        cross = jnp.matmul(k_td, solve(nngp_td.astype(dtype).T), precision=HIGHEST)
        covariance = (
            jnp.matmul(a.T, jnp.matmul(nngp_dd.astype(dtype), a, precision=HIGHEST))
            - cross
            - cross.T
            + k_tt
        )
    return mean, 0.5 * (covariance + covariance.T)


class EnsemblePredictor:
    """Mean and covariance over initialisations of infinitely wide networks trained on MSE.

    Build it with `mse_ensemble`; call it as ``predictor(x_test=None, get="ntk", t=None,
    compute_cov=False)``. It holds the train-train NNGP and NTK (computed once, at construction) and
    caches, per kernel, one eigendecomposition (reused for every finite time) and one Cholesky
    factor (for ``t=None``). The caches hold concrete arrays whenever the kernels are concrete, so a
    predictor built outside ``jax.jit`` may be called inside it.
    """

    def __init__(
        self,
        *,
        kernel_fn: Any,
        x_train: Any,
        y_train: Any,
        raw: dict[str, jax.Array],
        regularised: dict[str, jax.Array],
        learning_rate: Any,
        diag_reg: Any,
        dtype: Any,
    ):
        # Internal: use `mse_ensemble`, which validates everything before getting here.
        self._kernel_fn = kernel_fn
        self._x = x_train
        self._y = y_train  # (n, k)
        self._raw = raw  # symmetrised train-train kernels without the ridge
        self._reg = regularised  # ... and with it
        self._learning_rate = learning_rate
        self._diag_reg = diag_reg
        self._dtype = dtype
        self._n, self._k = y_train.shape
        self._eig: dict[str, tuple[jax.Array, jax.Array]] = {}
        self._chol: dict[str, tuple[jax.Array, bool]] = {}

    @property
    def learning_rate(self) -> Any:
        return self._learning_rate

    @property
    def diag_reg(self) -> Any:
        return self._diag_reg

    def eigenvalues(self, get: str = "ntk") -> jax.Array:
        """Eigenvalues ``(n,)`` of the regularised train ``get`` kernel, ascending, clamped at 0."""
        gets, single = _canonical_get(get, "`EnsemblePredictor.eigenvalues(get=...)`")
        if not single:
            raise TypeError(
                "`EnsemblePredictor.eigenvalues(get=...)` must be a single kernel name, 'ntk' or "
                f"'nngp'; got {get!r}."
            )
        return self._eigensystem(gets[0])[0]

    def __repr__(self) -> str:
        return (
            f"EnsemblePredictor(y_train_shape={(self._n, self._k)}, "
            f"learning_rate={self._learning_rate!r}, diag_reg={self._diag_reg!r})"
        )

    def _eigensystem(self, get: str) -> tuple[jax.Array, jax.Array]:
        if get not in self._eig:
            self._eig[get] = clamped_eigensystem(
                self._reg[get],
                "`dynamics.mse_ensemble(kernel_fn=...)`",
                f"the {get} kernel on x_train",
                "(an infinite-width NNGP/NTK)",
            )
        return self._eig[get]

    def _cholesky(self, get: str) -> tuple[jax.Array, bool]:
        if get not in self._chol:
            chol, usable = checked_cholesky(self._reg[get])
            if not usable:
                warnings.warn(
                    f"dynamics.mse_ensemble: the Cholesky factorisation of the {get} kernel on "
                    "x_train (+ diag_reg) failed or is numerically singular; t=None (infinite "
                    "time) falls back to an eigendecomposition pseudo-inverse, in which zero modes "
                    "keep their initial distribution. Pass diag_reg > 0 (e.g. 1e-6) for a "
                    "regularised solution.",
                    UserWarning,
                    stacklevel=4,
                )
            self._chol[get] = (chol, usable)
        return self._chol[get]

    def _test_kernels(self, x_test: Any, gets: tuple[str, ...], cov: bool):
        """(test-train kernels by name, test-test NNGP or None), validated."""
        where = "`EnsemblePredictor.__call__(x_test=...)`"
        xt = as_real_array(x_test, where)
        if xt.ndim != self._x.ndim or tuple(xt.shape[1:]) != tuple(self._x.shape[1:]):
            raise ValueError(
                f"{where} must have shape (m, *x_train.shape[1:]) = (m, "
                f"{', '.join(map(str, self._x.shape[1:]))}); got shape {tuple(xt.shape)}."
            )
        check_finite(where, xt)
        m = xt.shape[0]
        kinds = tuple(g for g in GETS if g in gets or (cov and g == "nngp"))
        k_td = _call_kernel_fn(
            self._kernel_fn, xt, self._x, kinds, (m, self._n), "(x_test, x_train)"
        )
        k_tt = None
        if cov:
            k_tt = _call_kernel_fn(self._kernel_fn, xt, None, ("nngp",), (m, m), "(x_test, None)")
            k_tt = k_tt["nngp"]
        return k_td, k_tt

    def __call__(
        self,
        x_test: ArrayLike | None = None,
        get: str | tuple[str, ...] = "ntk",
        t: ArrayLike | None = None,
        compute_cov: bool = False,
    ):
        """Ensemble mean (and covariance) of the outputs on ``x_test`` after training for ``t``.

        Args:
          x_test: ``(m, ...)`` test inputs like ``x_train``; ``None`` for the train inputs (as in
            neural-tangents, there the regularised train kernel drives the dynamics but no ridge is
            added to the prior covariance; at ``t=None`` the result is ``N(y_train, 0)``).
          get: ``"ntk"`` (all layers trained: Lee et al. 2019, eqs. 14-16), ``"nngp"`` (only the
            last layer: at ``t=None`` the exact NNGP posterior) or a tuple of them.
          t: ``None`` (t = infinity, by Cholesky solves), a scalar or an array of times of any
            shape, in units of ``learning_rate`` (the flow is ``df/dt = -lr K (f - y) / N``,
            ``N = y_train.size``).
          compute_cov: also compute the covariance (needs the NNGP between test points).

        Returns:
          For a string ``get`` a `Gaussian` ``(mean (*t.shape, m, k), covariance (*t.shape, m, m)
          or None)``; for a tuple a NamedTuple ``Gaussians`` with one `Gaussian` per requested
          kernel, fields named and ordered as in ``get``.
        """
        gets, single = _canonical_get(get, "`EnsemblePredictor.__call__(get=...)`")
        if not isinstance(compute_cov, (bool, np.bool_)):
            raise TypeError(
                "`EnsemblePredictor.__call__(compute_cov=...)` must be a bool; got "
                f"{type(compute_cov).__name__} {compute_cov!r}."
            )
        cov = bool(compute_cov)
        if t is not None:
            t_flat, t_shape, _ = validate_times(t, "`EnsemblePredictor.__call__(t=...)`", "flow")
        dtype = self._dtype
        k_td, k_tt = None, None
        if x_test is not None:
            k_td, k_tt = self._test_kernels(x_test, gets, cov)
            dtype = float_dtype(dtype, *(k.dtype for k in k_td.values()))
            if k_tt is not None:
                dtype = float_dtype(dtype, k_tt.dtype)
        nngp_dd = self._raw["nngp"] if cov else None
        nngp_td = None if k_td is None or not cov else k_td["nngp"]
        out = {}
        for g in gets:
            kernel_td = None if k_td is None else k_td[g]
            if t is None:
                chol, usable = self._cholesky(g)
                if usable:
                    lam = vecs = None
                    rtol = 0.0
                else:
                    chol = None
                    lam, vecs = self._eigensystem(g)
                    rtol = rank_rtol(lam.dtype, self._n)
                mean, covariance = _ensemble_infinite(
                    chol,
                    lam,
                    vecs,
                    self._y,
                    kernel_td,
                    nngp_td,
                    nngp_dd,
                    k_tt,
                    get=g,
                    dtype=dtype,
                    rtol=rtol,
                    cov=cov,
                )
            else:
                lam, vecs = self._eigensystem(g)
                mean, covariance = _ensemble_finite(
                    lam,
                    vecs,
                    t_flat,
                    self._learning_rate / self._y.size,
                    self._y,
                    kernel_td,
                    nngp_td,
                    nngp_dd,
                    k_tt,
                    get=g,
                    dtype=dtype,
                    t_shape=t_shape,
                    cov=cov,
                )
            out[g] = Gaussian(mean, covariance)
        if single:
            return out[gets[0]]
        return _gaussians_type(gets)(**out)


def mse_ensemble(
    kernel_fn: Any,
    x_train: ArrayLike,
    y_train: ArrayLike,
    *,
    learning_rate: Any = 1.0,
    diag_reg: Any = 0.0,
) -> EnsemblePredictor:
    """Infinite ensemble of infinitely wide networks trained by gradient flow on MSE.

    Over random initialisations the outputs of an infinitely wide network trained on
    ``0.5 * mean((f - y_train)**2)`` by gradient flow are Gaussian (Lee et al. 2019, "Wide neural
    networks of any depth evolve as linear models under gradient descent", eqs. 14-16): with
    ``f_0 ~ GP(0, NNGP)`` and the deterministic NTK ``Θ``, at time ``t`` and ``G = Θ^{-1} (I -
    exp(-lr Θ t / N))``

        mean = Θ_td G y,
        cov  = K_tt + Θ_td G K G Θ_dt - (Θ_td G K_dt + K_td G Θ_dt),

    with ``K`` the NNGP. ``get="nngp"`` trains only the last layer (``Θ`` -> ``K``): at ``t=None``
    that is the exact NNGP posterior, mean ``K_td K^{-1} y``, cov ``K_tt - K_td K^{-1} K_dt``. The
    same numbers as ``neural_tangents.predict.gradient_descent_mse_ensemble`` (traced outputs).

    Args:
      kernel_fn: ``kernel_fn(x1, x2, get)`` with ``x2=None`` meaning ``x1``: for a tuple ``get``
        like ``("nngp", "ntk")`` an object with those attributes, for a string the kernel itself
        (or an object with that attribute); kernels ``(n1, n2)``, traced over outputs (like the
        ``kernel_fn`` of an infinite-width neural-tangents ``stax`` network).
      x_train: ``(n, ...)`` train inputs.
      y_train: ``(n, k)`` targets.
      learning_rate: ``lr`` > 0; the flow is ``df/dt = -lr K (f - y) / N``, ``N = y_train.size``.
      diag_reg: relative ridge >= 0: each train-train kernel ``K`` is used as
        ``K + diag_reg * mean(diag(K)) * I`` in the dynamics and in every solve (the prior
        covariances ``K_tt`` and, in the NTK covariance, the train NNGP ``K`` are left alone).

    Returns:
      An `EnsemblePredictor`, called as ``predictor(x_test=None, get="ntk", t=None,
      compute_cov=False)`` -> `Gaussian` ``(mean, covariance)``; see `EnsemblePredictor.__call__`.
      The train-train NNGP and NTK are computed here, once (one ``kernel_fn`` call); the
      eigendecomposition (finite ``t``) or Cholesky factor (``t=None``) of each kernel on first use.

    Notes:
      * Value checks (finiteness, symmetry, PSD, ranges) run only on concrete inputs; shape checks
        always run.
      * If a regularised train kernel is numerically singular, ``t=None`` falls back, with a
        ``UserWarning``, to the eigendecomposition pseudo-inverse (the ``t -> infinity`` limit of
        the flow).
    """
    where = "`dynamics.mse_ensemble({}=...)`"
    if not callable(kernel_fn):
        raise TypeError(
            f"{where.format('kernel_fn')} must be callable as kernel_fn(x1, x2, get); got "
            f"{type(kernel_fn).__name__} {kernel_fn!r}."
        )
    learning_rate = check_scalar(
        learning_rate, where.format("learning_rate"), low=0.0, low_inclusive=False
    )
    diag_reg = check_scalar(diag_reg, where.format("diag_reg"), low=0.0, low_inclusive=True)
    x = as_real_array(x_train, where.format("x_train"))
    y = check_targets(y_train, where.format("y_train"))
    n = y.shape[0]
    if x.ndim < 1 or x.shape[0] != n:
        raise ValueError(
            f"{where.format('x_train')} must have one row per target, shape (n, ...) with n = "
            f"y_train.shape[0] = {n}; got shape {tuple(x.shape)}."
        )
    check_finite(where.format("x_train"), x)

    raw_kernels = _call_kernel_fn(kernel_fn, x, None, GETS, (n, n), "(x_train, None)")
    dtype = float_dtype(y.dtype, *(k.dtype for k in raw_kernels.values()))
    raw, regularised = {}, {}
    for g, kernel in raw_kernels.items():
        concrete = is_concrete(kernel, diag_reg)
        with eval_context(concrete):
            raw[g], asym, size = prepare_kernel(kernel, 0.0, dtype=dtype)
            regularised[g] = prepare_kernel(kernel, diag_reg, dtype=dtype)[0]
        if is_concrete(kernel):
            check_symmetric(
                asym, size, dtype, f"{where.format('kernel_fn')} (x_train, None) kernel {g!r}"
            )
    return EnsemblePredictor(
        kernel_fn=kernel_fn,
        x_train=x,
        y_train=y,
        raw=raw,
        regularised=regularised,
        learning_rate=learning_rate,
        diag_reg=diag_reg,
        dtype=dtype,
    )
