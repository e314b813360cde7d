"""Closed-form MSE training dynamics of linearized networks.

A network linearized around its initial parameters ``theta_0``,
``f(x, theta) = f(x, theta_0) + J(x) (theta - theta_0)``, trained on the loss

    L(f) = 0.5 * mean((f(x_train) - y_train) ** 2)      (mean over all N = y_train.size entries)

moves in function space only through its neural tangent kernel
``Theta = J(x_train) J(x_train)^T``. With the eigendecomposition ``Theta = V diag(lam) V^T`` every
optimiser considered here acts on each eigenmode independently, so the whole trajectory is given by
two scalar functions of ``(lam, t)`` per mode:

* ``rho(lam, t)``: the residual factor, ``r_t = V diag(rho) V^T r_0`` with
  ``r = f(x_train) - y_train``;
* ``gamma(lam, t)``: the coefficient factor, ``c_t = V diag(gamma) V^T r_0``; the weights move by
  ``omega_t = theta_t - theta_0 = J^T c_t`` and therefore any output moves by ``K(x, x_train) c_t``.

They satisfy ``rho - 1 = lam * gamma``. Three optimisers are supported (``kind``):

* ``"flow"``: gradient flow ``df/dt = -lr * Theta (f - y) / N`` (Lee et al. 2019, "Wide neural
  networks of any depth evolve as linear models under gradient descent"). Identical to
  ``neural_tangents.predict.gradient_descent_mse``. ``rho = exp(-lr lam t / N)``,
  ``gamma = expm1(-lr lam t / N) / lam``.
* ``"gd"``: discrete gradient descent, one ``optax.sgd(lr)`` step per unit of ``t``, exact at
  integer steps. ``rho = (1 - a)^t`` with ``a = lr lam / N``, ``gamma = -(1 - rho) / lam``.
* ``"momentum"``: heavy-ball momentum exactly as ``optax.sgd(lr, momentum=beta)`` applies it
  (``v <- beta v + g; theta <- theta - lr v``, ``v_0 = 0``), via an exact per-mode matrix power.

Conventions:

* Outputs ``f`` and targets ``y_train`` are ``(n, k)`` arrays (``n`` points, ``k`` outputs).
* ``k_train_train`` is either the traced ``(n, n)`` kernel (the same kernel for every output column;
  neural-tangents ``trace_axes=(-1,)``) or the full ``(n, n, k, k)`` kernel with
  ``K[i, j, a, b] = <df_a(x_i)/dtheta, df_b(x_j)/dtheta>`` (neural-tangents ``trace_axes=()``). The
  full kernel is handled as an ``(n*k, n*k)`` matrix acting on ``vec(f)`` with index
  ``(i, a) -> i*k + a`` (row-major ``reshape``).
* ``diag_reg`` is relative, as in neural-tangents: the kernel used everywhere (train dynamics
  included) is ``K + diag_reg * mean(diag(K)) * I``.

Scale and precision (`mse`):

* One eigendecomposition (cached, lazy) serves every time point and call; evaluating ``T`` times
  costs O(T D k) memory on top of the O(D^2) eigenvectors (no ``(T, D, D)`` array is ever formed:
  per-mode factors are ``(T, D)`` and contractions go through ``(T, D, k)``). ``t=None`` is a
  cached Cholesky solve and needs no eigendecomposition.
* ``solve_dtype="float64"`` on a float32 kernel: the kernel is symmetrised, regularised,
  eigendecomposed and Cholesky-factorised in float64 (its float32 entries taken as exact), in JAX
  when ``jax_enable_x64`` is on, else on host with numpy/scipy (concrete kernels only). Then, with
  every output in float32:

  - train outputs and the loss of ``"flow"``/``"gd"`` evolve in float32 from the float64
    eigenpairs rounded once (they only rotate the residual by the orthogonal ``V`` and scale modes
    by ``|rho - 1| <= 2``, so rounding is not amplified); measured within 7e-7 of pure float64 at
    condition number 1e8 where the plain float32 path is off by 0.5;
  - test outputs, weights' coefficients (``gamma ~ 1/lam``), ``"momentum"`` (its per-mode
    ``1 - a`` rounds to 1 in float32 for slow modes) and ``t=None`` solves run in float64
    (in JAX with x64 on, on host otherwise, where they need concrete inputs).

`mse_ensemble` gives the mean and covariance over random initialisations of infinitely wide networks
trained by gradient flow (Lee et al. 2019, eqs. 14-16; = ``neural_tangents.predict.
gradient_descent_mse_ensemble``) from a ``kernel_fn`` returning the NNGP and NTK.

Example::

    predictor = dynamics.mse(k_train_train, y_train, learning_rate=0.5)
    f_train_t, f_test_t = predictor(ts, f0_train, f0_test, k_test_train)   # (T, n, k), (T, m, k)
    losses = predictor.loss(ts, f0_train)                                 # (T,)
"""

from __future__ import annotations

import collections
import contextlib
import functools
import numbers
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import scipy.linalg
from jax import lax

from jaxdyn._checks import is_concrete

__all__ = [
    "GETS",
    "KINDS",
    "EnsemblePredictor",
    "Gaussian",
    "MSEPredictor",
    "mse",
    "mse_ensemble",
]

KINDS: tuple[str, ...] = ("flow", "gd", "momentum")
"""The optimisers `mse` can describe."""

ArrayLike = Any
PyTree = Any

# Matrix products here are tiny next to the eigendecomposition; ask for full precision so that
# accelerators that default to reduced-precision matmuls (TF32, bf16 passes) keep the exactness
# the closed forms promise.
_HIGHEST = lax.Precision.HIGHEST


def _eigh(matrix: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The one place the module calls ``eigh`` (a seam so that tests can count the calls)."""
    return _eigh_compiled(matrix)


# Compiled as one unit (eager ``eigh`` runs a dozen small ops); the input is symmetrised already.
_eigh_compiled = jax.jit(functools.partial(jnp.linalg.eigh, symmetrize_input=False))


def _eigh_host(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Host (numpy, float64) ``eigh`` for ``solve_dtype="float64"`` with x64 off (a test seam)."""
    return np.linalg.eigh(matrix)


def _cholesky_host(matrix: np.ndarray) -> np.ndarray | None:
    """Host (numpy, float64) lower Cholesky factor, ``None`` if it fails (a test seam)."""
    try:
        return np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        return None


def _x64_enabled() -> bool:
    """Whether float64 exists inside JAX right now (``jax_enable_x64``, context managers included)."""
    return jax.dtypes.canonicalize_dtype(np.float64) == np.dtype(np.float64)


def _check_solve_dtype(solve_dtype: Any, where: str) -> np.dtype | None:
    """``None`` or float64 (as ``"float64"``, ``np.float64``, ``jnp.float64``); anything else raises."""
    if solve_dtype is None:
        return None
    if isinstance(solve_dtype, (bool, np.bool_, numbers.Number)):
        raise TypeError(
            f"{where} must be None or 'float64' (a dtype or its name); got "
            f"{type(solve_dtype).__name__} {solve_dtype!r}."
        )
    try:
        dtype = np.dtype(solve_dtype)
    except TypeError as err:
        raise TypeError(
            f"{where} must be None or 'float64' (a dtype or its name); got "
            f"{type(solve_dtype).__name__} {solve_dtype!r}: {err}"
        ) from None
    if dtype != np.dtype(np.float64):
        raise ValueError(
            f"{where} must be None (factorise in the kernel's dtype) or 'float64'; got "
            f"{solve_dtype!r} (dtype {dtype})."
        )
    return dtype


# ------------------------------------------------------------------------------------------------
# Small helpers.
# ------------------------------------------------------------------------------------------------


def _staging() -> bool:
    """Whether we are inside a ``jax.jit`` trace, where even ops on concrete arrays are staged out."""
    return isinstance(jnp.asarray(np.float32(0)), jax.core.Tracer)


def _eval_context(concrete: bool):
    """Evaluate eagerly for concrete inputs even inside a jit trace, so cached values are no tracers.

    Only entered when actually staging: ``ensure_compile_time_eval`` also evaluates the constant
    sub-expressions of the jitted kernels below op by op while they trace (one small compilation
    each), which is wasted work at top level, where the kernels return concrete arrays anyway.
    """
    if concrete and _staging():
        return jax.ensure_compile_time_eval()
    return contextlib.nullcontext()


def _as_real_array(x: Any, where: str) -> Any:
    """Checks that ``x`` is a real (float or int) array; bool and complex are rejected (no casts).

    jax arrays and tracers are returned as they are, anything else as a numpy array: the numbers go
    straight into the compiled kernels below, and converting with ``jnp.asarray`` here would cost an
    extra compilation per new shape.
    """
    if isinstance(x, (jax.Array, jax.core.Tracer)):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{where} must be a real-valued array; got {type(x).__name__}: {err}"
            ) from None
    dtype = arr.dtype
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise TypeError(
            f"{where} must be a real-valued (float or int) array; got "
            f"{type(x).__name__} with dtype {dtype}."
        )
    return arr


def _float_dtype(*dtypes: Any) -> np.dtype:
    """The promoted dtype of ``dtypes``, raised to a floating type (int kernels compute in floats)."""
    # Canonicalise first: numpy float64 inputs with x64 disabled mean float32, without a warning.
    dtype = jnp.result_type(*(jax.dtypes.canonicalize_dtype(d) for d in dtypes))
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(dtype, float)
    return np.dtype(dtype)


def _check_finite(x: jax.Array, where: str) -> None:
    if not is_concrete(x):
        return
    # numpy, not jnp: inside a jit trace jnp ops on concrete arrays would be staged, not evaluated.
    bad = ~np.isfinite(np.asarray(x))
    if bad.any():
        n_bad = int(bad.sum())
        raise ValueError(f"{where} must be finite; got {n_bad} NaN/Inf entries out of {x.size}.")


def _check_scalar(
    x: Any, where: str, *, low: float, low_inclusive: bool, high: float | None = None
) -> Any:
    """Validates a real scalar hyper-parameter (value checks only when concrete)."""
    if isinstance(x, jax.core.Tracer):
        if x.ndim != 0:
            raise ValueError(f"{where} must be a scalar; got shape {x.shape}.")
        return x
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (numbers.Real, np.ndarray, jax.Array)):
        raise TypeError(f"{where} must be a real scalar; got {type(x).__name__} {x!r}.")
    arr = np.asarray(x)
    if arr.ndim != 0 or not (
        jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)
    ):
        raise TypeError(
            f"{where} must be a real scalar; got {type(x).__name__} with shape "
            f"{arr.shape} and dtype {arr.dtype}."
        )
    value = float(arr)
    too_low = value < low if low_inclusive else value <= low
    too_high = high is not None and value >= high
    if not np.isfinite(value) or too_low or too_high:
        lo = f"{'>=' if low_inclusive else '>'} {low:g}"
        hi = f" and < {high:g}" if high is not None else ""
        raise ValueError(f"{where} must be finite, {lo}{hi}; got {value!r}.")
    return x


def _psd_rtol(dtype: Any, dim: int) -> float:
    """Relative size below which eigenvalues count as rounding noise of a PSD kernel.

    Rounding a PSD matrix (forming ``J J^T`` in finite precision, or the eigensolver's own backward
    error) perturbs its eigenvalues by about ``dim * eps * lam_max``; we allow 1000 times that, capped
    at 1% so that a clearly indefinite kernel is never mistaken for a noisy PSD one. E.g. float64 with
    ``dim = 100``: ``2.2e-11``; float32 with ``dim = 10``: ``1.2e-3``, with ``dim >= 84``: ``1e-2``.
    """
    return min(1e3 * float(jnp.finfo(dtype).eps) * dim, 1e-2)


def _rank_rtol(dtype: Any, dim: int) -> float:
    """Relative eigenvalue / pivot size below which a kernel counts as numerically singular.

    ``dim * eps``, numpy's ``matrix_rank`` convention: eigenvalues of a rank-deficient ``J J^T`` that
    should be 0 come out of ``eigh`` at about ``eps * lam_max``. Used for the t = infinity
    pseudo-inverse and to distrust a Cholesky factor with rounding-size pivots. Deliberately much
    tighter than `_psd_rtol`: here modes are dropped, there only negative noise is zeroed.
    """
    return dim * float(jnp.finfo(dtype).eps)


def _flat_kernel(kernel: jax.Array) -> jax.Array:
    """(m, n) stays; (m, n, k, k) -> (m*k, n*k), row (j, b) -> j*k + b, column (i, a) -> i*k + a."""
    if kernel.ndim == 2:
        return kernel
    m, n, k, _ = kernel.shape
    return jnp.transpose(kernel, (0, 2, 1, 3)).reshape(m * k, n * k)


# ------------------------------------------------------------------------------------------------
# Per-mode factors. Each returns (rho, rho_minus_1, gamma), all of shape (T, D), for eigenvalues
# ``lam`` (D,) >= 0 and flattened times ``t`` (T,). ``scale = lr / N``.
# ------------------------------------------------------------------------------------------------


def _flow_factors(lam: jax.Array, t: jax.Array, scale: Any) -> tuple[jax.Array, ...]:
    x = scale * t[:, None] * lam[None, :]  # lr * lam * t / N >= 0
    rho = jnp.exp(-x)
    rho_m1 = jnp.expm1(-x)
    # gamma = expm1(-x) / lam = -(lr t / N) * phi(x) with phi(x) = (1 - e^{-x}) / x: written this way
    # there is no 0/0 at lam = 0 (phi(0) = 1, the lam -> 0 limit gamma = -lr t / N), and for small x
    # the Taylor series keeps both the value and its derivative (for jax.grad) exact.
    small = x < 1e-3
    x_safe = jnp.where(small, 1.0, x)
    series = 1.0 - x * (1.0 / 2 - x * (1.0 / 6 - x * (1.0 / 24 - x / 120)))
    phi = jnp.where(small, series, -rho_m1 / x_safe)
    gamma = -(scale * t)[:, None] * phi
    return rho, rho_m1, gamma


def _gd_factors(lam: jax.Array, t: jax.Array, scale: Any) -> tuple[jax.Array, ...]:
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


def _momentum_factors(
    lam: jax.Array, t: jax.Array, scale: Any, beta: Any, n_bits: int
) -> tuple[jax.Array, ...]:
    """Heavy ball per mode by exact binary exponentiation of its 3x3 transition matrix.

    Projected on one eigenvector, with ``u = N * w`` the (rescaled) function-space momentum and ``e``
    the coefficient ``c`` in units of ``lr / N``, one ``optax.sgd(lr, momentum=beta)`` step is

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
        # Powers of M commute, so multiplying the state vector M^(partial t) e0 from the left is enough.
        stepped = jnp.einsum("dij,tdj->tdi", power, state, precision=_HIGHEST)
        state = jnp.where(take[:, None, None], stepped, state)
        power = jnp.matmul(power, power, precision=_HIGHEST)
        return state, power

    state, _ = lax.fori_loop(0, n_bits, body, (state, matrix))
    rho, e = state[..., 0], state[..., 2]
    return rho, a[None, :] * e, scale * e


# ------------------------------------------------------------------------------------------------
# Compiled kernels. Everything numeric after validation runs through these few jitted functions
# (static: kind, bit count, dtype, output, time shape), so a call costs one dispatch instead of
# dozens of eagerly compiled primitives; inside a user's jit they simply inline.
# ------------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("dtype",))
def _prepare_kernel(kernel: jax.Array, diag_reg: Any, *, dtype: Any):
    """Flattens, measures asymmetry, symmetrises and regularises the train kernel.

    Returns ``(K_reg (D, D), max |K - K^T|, max |K|)``.
    """
    flat = _flat_kernel(kernel).astype(dtype)
    asym = jnp.max(jnp.abs(flat - flat.T))
    size = jnp.max(jnp.abs(flat))
    flat = 0.5 * (
        flat + flat.T
    )  # remove rounding asymmetry so eigh sees exactly the kernel we mean
    ridge = diag_reg * jnp.mean(jnp.diagonal(flat))
    return flat + ridge * jnp.eye(flat.shape[0], dtype=dtype), asym, size


def _prepare_kernel_host(kernel: Any, diag_reg: Any) -> tuple[np.ndarray, float, float]:
    """`_prepare_kernel` on host in float64 (for ``solve_dtype="float64"`` with x64 off)."""
    flat = np.asarray(kernel).astype(np.float64)
    if flat.ndim == 4:
        m, n, k, _ = flat.shape
        flat = np.ascontiguousarray(flat.transpose(0, 2, 1, 3)).reshape(m * k, n * k)
    asym = float(np.max(np.abs(flat - flat.T)))
    size = float(np.max(np.abs(flat)))
    flat = 0.5 * (flat + flat.T)
    flat[np.diag_indices_from(flat)] += float(diag_reg) * float(np.mean(np.diagonal(flat)))
    return flat, asym, size


@jax.jit
def _cholesky_factor(kernel: jax.Array):
    """Lower Cholesky factor, its smallest squared pivot and the largest |diagonal| of the kernel."""
    chol = jnp.linalg.cholesky(kernel)
    pivots = jnp.diagonal(chol) ** 2
    return chol, jnp.min(pivots), jnp.max(jnp.abs(jnp.diagonal(kernel)))


def _momentum_factors_host(lam: np.ndarray, t: np.ndarray, scale: float, beta: float):
    """`_momentum_factors` in numpy float64 (host path of ``solve_dtype="float64"``)."""
    a = scale * lam
    matrix = np.zeros(a.shape + (3, 3))
    matrix[:, 0, 0], matrix[:, 0, 1] = 1.0 - a, -a * beta
    matrix[:, 1, 0], matrix[:, 1, 1] = 1.0, beta
    matrix[:, 2, 0], matrix[:, 2, 1], matrix[:, 2, 2] = -1.0, -beta, 1.0
    t = t.astype(np.int64)
    state = np.zeros(t.shape + a.shape + (3,))
    state[..., 0] = 1.0
    power = matrix
    for bit in range(int(t.max(initial=0)).bit_length()):
        take = ((t >> bit) & 1) == 1
        state = np.where(take[:, None, None], np.einsum("dij,tdj->tdi", power, state), state)
        power = power @ power
    rho, e = state[..., 0], state[..., 2]
    return rho, a[None, :] * e, scale * e


@functools.partial(jax.jit, static_argnames=("kind", "n_bits"))
def _mode_factors_jit(lam, t, scale, beta, *, kind: str, n_bits: int):
    scale, beta = jnp.asarray(scale, lam.dtype), jnp.asarray(beta, lam.dtype)
    return _mode_factors(lam, t, scale, beta, kind=kind, n_bits=n_bits)


def _mode_factors(lam, t, scale, beta, *, kind: str, n_bits: int):
    if kind == "flow":
        return _flow_factors(lam, t.astype(lam.dtype), scale)
    if kind == "gd":
        return _gd_factors(lam, t.astype(lam.dtype), scale)
    return _momentum_factors(lam, t, scale, beta, n_bits)


@functools.partial(jax.jit, static_argnames=("kind", "n_bits", "dtype", "want", "t_shape"))
def _finite_time(
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
    """Finite-time quantities from the eigendecomposition.

    ``lam`` (D,), ``vecs`` (D, D), ``t`` (T,), ``f0``/``y`` (n, k), ``f0_test`` (m, k) and ``k_test``
    (m, n) / (m, n, k, k) or None. ``want``: ``"call"`` -> train (*t_shape, n, k) [, test];
    ``"loss"`` -> (*t_shape,); ``"coef"`` -> ``c_t`` (T, n, k).
    """
    lam, vecs = lam.astype(dtype), vecs.astype(dtype)
    scale, beta = jnp.asarray(scale, dtype), jnp.asarray(beta, dtype)
    rho, rho_m1, gamma = (
        x.astype(dtype) for x in _mode_factors(lam, t, scale, beta, kind=kind, n_bits=n_bits)
    )
    n, k = y.shape
    n_t = t.shape[0]
    f0 = f0.astype(dtype)
    r0 = (f0 - y.astype(dtype)).reshape(vecs.shape[0], -1)  # (D, cols)
    q = jnp.matmul(vecs.T, r0, precision=_HIGHEST)  # the initial residual in the eigenbasis
    if want == "loss":
        energy = jnp.sum(q**2, axis=1)
        return (0.5 / (n * k) * jnp.matmul(rho**2, energy, precision=_HIGHEST)).reshape(t_shape)
    if want == "coef":
        coef = jnp.einsum("ij,tj,jc->tic", vecs, gamma, q, precision=_HIGHEST)
        return coef.reshape(n_t, n, k)
    # f_t = f_0 + V diag(rho - 1) V^T r_0 (rather than y + V diag(rho) V^T r_0): exactly f_0 at t = 0.
    delta = jnp.einsum("ij,tj,jc->tic", vecs, rho_m1, q, precision=_HIGHEST)
    train = (f0[None] + delta.reshape(n_t, n, k)).reshape(t_shape + (n, k))
    if f0_test is None:
        return train
    # f_test_t = f0_test + K_test_train V diag(gamma) V^T r_0.
    kv = jnp.matmul(_flat_kernel(k_test).astype(dtype), vecs, precision=_HIGHEST)  # (m', D)
    dtest = jnp.einsum("ij,tj,jc->tic", kv, gamma, q, precision=_HIGHEST)
    test = f0_test.astype(dtype)[None] + dtest.reshape((n_t,) + f0_test.shape)
    return train, test.reshape(t_shape + f0_test.shape)


@functools.partial(jax.jit, static_argnames=("dtype", "rtol"))
def _infinite_time(chol, lam, vecs, f0, y, f0_test, k_test, *, dtype: Any, rtol: float):
    """t = infinity: ``(train (n, k), test (m, k) or None, coefficients c_inf (n, k))``.

    With ``chol`` (lower Cholesky factor of K): ``c_inf = -K^{-1} r_0`` and train = y. Otherwise (chol
    None) a pseudo-inverse from ``(lam, vecs)``: gradient flow never moves zero modes, so they keep
    their residual; modes within ``rtol * lam_max`` of zero count as zero (numpy pinv's rcond).
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
        live = lam > rtol * lam[-1]
        inv = jnp.where(live, 1.0 / jnp.where(live, lam, 1.0), 0.0)
        q = jnp.matmul(vecs.T, r0, precision=_HIGHEST)
        coef = -jnp.matmul(vecs, inv[:, None] * q, precision=_HIGHEST)
        kept = jnp.matmul(vecs, jnp.where(live, 0.0, 1.0)[:, None] * q, precision=_HIGHEST)
        train = y + kept.reshape(n, k)
    test = None
    if f0_test is not None:
        dtest = jnp.matmul(_flat_kernel(k_test).astype(dtype), coef, precision=_HIGHEST)
        test = f0_test.astype(dtype) + dtest.reshape(f0_test.shape)
    return train, test, coef.reshape(n, k)


@functools.partial(jax.jit, static_argnames=("dtype", "t_shape"))
def _apply_jacobian_transpose(coef, leaves, *, dtype: Any, t_shape: tuple[int, ...]):
    """``omega = J^T c`` per leaf: coef (T, n, k), leaves (n, k, *p) -> (*t_shape, *p)."""
    return [
        jnp.tensordot(
            coef.astype(dtype), leaf.astype(dtype), axes=([1, 2], [0, 1]), precision=_HIGHEST
        ).reshape(t_shape + tuple(leaf.shape[2:]))
        for leaf in leaves
    ]


@functools.partial(jax.jit, static_argnames=("dtype",))
def _loss_of(train, y, *, dtype: Any):
    return 0.5 * jnp.mean((train.astype(dtype) - y.astype(dtype)) ** 2)


# ------------------------------------------------------------------------------------------------
# Validation and factorisation helpers shared by the predictors.
# ------------------------------------------------------------------------------------------------


def _validate_times(t: Any, where: str, kind: str) -> tuple[Any, tuple[int, ...], int]:
    """Validates ``t``; returns (flat times (T,), t.shape, number of bits for momentum)."""
    integer_steps = kind in ("gd", "momentum")
    if isinstance(t, jax.core.Tracer):
        arr = t
        if not (jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)):
            raise TypeError(f"{where} must be real-valued times; got dtype {arr.dtype}.")
        concrete = False
    else:
        try:
            arr = np.asarray(t)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{where} must be None, a number or an array of times; got "
                f"{type(t).__name__}: {err}"
            ) from None
        if not (jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)):
            raise TypeError(
                f"{where} must be None, a number or an array of real times; got "
                f"{type(t).__name__} with dtype {arr.dtype}."
            )
        concrete = True
        if arr.size:
            if np.any(np.isnan(arr)):
                raise ValueError(
                    f"{where} must not contain NaN; got {int(np.isnan(arr).sum())} NaN times."
                )
            if np.any(np.isinf(arr)):
                raise ValueError(
                    f"{where} must be finite; got an infinite time. Pass t=None for t = infinity."
                )
            if np.any(arr < 0):
                raise ValueError(f"{where} must be non-negative; got minimum time {arr.min()!r}.")
            fractional = arr != np.round(arr)
            if integer_steps and np.any(fractional):
                bad = arr[fractional].ravel()[0]
                raise ValueError(
                    f"{where} must be whole numbers of steps for kind={kind!r} (an "
                    f"integer dtype or integer-valued floats); got {bad!r}."
                )
    shape = tuple(arr.shape)
    if kind == "flow":
        return arr.reshape(-1), shape, 0
    if not concrete and jnp.issubdtype(arr.dtype, jnp.floating):
        arr = jnp.round(arr)  # traced float steps cannot be checked; use the nearest whole step
    if kind == "gd":
        return arr.reshape(-1), shape, 0
    # Momentum needs integer steps for the bit loop.
    int_dtype = jax.dtypes.canonicalize_dtype(np.int64)
    limit = int(np.iinfo(int_dtype).max)
    if concrete:
        top = float(arr.max()) if arr.size else 0.0
        if top > limit:
            raise ValueError(f"{where} must be at most {limit} steps ({int_dtype}); got {top!r}.")
        ints = np.round(arr).astype(int_dtype).reshape(-1)
        # Round the loop length up to a multiple of 8 bits so that horizons of similar size share
        # one compilation; surplus iterations see only zero bits and leave the state unchanged.
        n_bits = -(-int(top).bit_length() // 8) * 8
    else:
        ints = arr.astype(int_dtype).reshape(-1)
        n_bits = np.iinfo(int_dtype).bits - 1  # every non-negative value of the dtype
    return ints, shape, n_bits


def _check_symmetric(asym: Any, size: Any, dtype: Any, where: str) -> None:
    """Raises unless ``max |K - K^T| <= sqrt(eps) * max |K|`` (values from `_prepare_kernel`)."""
    asym, size = float(asym), float(size)
    tol = float(np.sqrt(jnp.finfo(dtype).eps))
    if asym > tol * size:
        raise ValueError(
            f"{where} must be symmetric (K[i, j] = K[j, i] for the flattened "
            f"kernel) to relative tolerance {tol:.2g}; got max |K - K^T| = {asym:.3g} "
            f"vs max |K| = {size:.3g}."
        )


def _raise_unless_psd(
    lam_min: float, lam_max: float, tol: float, where: str, name: str, example: str
) -> None:
    if lam_min < -tol * max(lam_max, 0.0):
        raise ValueError(
            f"{where}: {name} is not positive semi-definite: "
            f"smallest eigenvalue {lam_min:.6g} vs largest {lam_max:.6g} (after diag_reg); "
            f"only eigenvalues within -{tol:.3g} * largest are treated as rounding and "
            f"clamped to 0. Expected a PSD kernel {example}; increase diag_reg if it is "
            "nearly PSD."
        )


def _host_eigensystem(
    kernel: np.ndarray, where: str, name: str, example: str, psd_dtype: Any
) -> tuple[np.ndarray, np.ndarray]:
    """`_clamped_eigensystem` on host in float64: numpy ``(lam, V)``, rounding negatives -> 0."""
    lam, vecs = _eigh_host(kernel)
    tol = _psd_rtol(psd_dtype, kernel.shape[0])
    _raise_unless_psd(float(lam[0]), float(lam[-1]), tol, where, name, example)
    return np.maximum(lam, 0.0), vecs


def _clamped_eigensystem(
    kernel: jax.Array, where: str, name: str, example: str, psd_dtype: Any = None
) -> tuple[jax.Array, jax.Array]:
    """``(lam, V)`` of a symmetrised PSD kernel, eigenvalues ascending with rounding negatives -> 0.

    Raises ``ValueError`` (``where``: the argument, ``name``: the kernel, ``example``: how such a
    kernel arises) for a clearly indefinite concrete kernel; ``psd_dtype`` (default: the kernel's)
    sets that rounding tolerance, so a float32 kernel factorised in float64 is judged by float32
    rounding. Concrete kernels give concrete results even inside a jit trace, so that callers may
    cache them.
    """
    dim = kernel.shape[0]
    concrete = is_concrete(kernel)
    with _eval_context(concrete):
        lam, vecs = _eigh(kernel)
        if concrete:
            lam_np = np.asarray(lam)
            lam_min, lam_max = float(lam_np[0]), float(lam_np[-1])
            tol = _psd_rtol(lam.dtype if psd_dtype is None else psd_dtype, dim)
            _raise_unless_psd(lam_min, lam_max, tol, where, name, example)
            # Rounding noise of a PSD kernel (NT issues #128/#134) -> exactly 0: those modes never
            # move. (numpy + eval context: the cached arrays stay concrete even inside a trace.)
            lam = jax.device_put(np.maximum(lam_np, 0.0))
        else:
            # Inside the trace of a traced kernel: the caller caches a tracer on an object that
            # lives only in that trace, which is what we want (one eigh per trace).
            lam = jnp.maximum(lam, 0.0)
    return lam, vecs


def _checked_cholesky_host(kernel: np.ndarray) -> tuple[np.ndarray | None, bool]:
    """`_checked_cholesky` on host in float64."""
    chol = _cholesky_host(kernel)
    if chol is None or not np.isfinite(chol).all():
        return None, False
    tol = _rank_rtol(np.float64, kernel.shape[0])
    min_pivot = float(np.min(np.diagonal(chol) ** 2))
    return chol, min_pivot > tol * float(np.max(np.abs(np.diagonal(kernel))))


def _checked_cholesky(kernel: jax.Array) -> tuple[jax.Array, bool]:
    """Lower Cholesky factor of a symmetrised kernel and whether it is usable for solves.

    Failure shows up as NaN; a near-singular kernel can also "succeed" with rounding-size pivots
    whose inverse would amplify noise by ~1/eps, so those count as failures too. Traced kernels
    cannot be inspected and count as usable.
    """
    concrete = is_concrete(kernel)
    with _eval_context(concrete):
        chol, min_pivot, max_diag = _cholesky_factor(kernel)
    usable = True
    if concrete:
        tol = _rank_rtol(kernel.dtype, kernel.shape[0])
        usable = bool(np.isfinite(np.asarray(chol)).all()) and float(min_pivot) > tol * float(
            max_diag
        )
    return chol, usable


# ------------------------------------------------------------------------------------------------
# The predictor.
# ------------------------------------------------------------------------------------------------


class MSEPredictor:
    """Closed-form MSE training dynamics of a linearized model; build it with `mse`.

    The predictor holds the (symmetrised, regularised) train kernel and lazily caches its
    eigendecomposition (one ``eigh``, reused for every time and call) and, for ``t=None``, its
    Cholesky factor. Both caches hold concrete arrays whenever the kernel is concrete, so a predictor
    built outside ``jax.jit`` may be called inside it without leaking tracers (one built inside a
    trace from traced kernels belongs to that trace).

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
        # is float64: a jax array (x64 on) or, with `host`, a numpy array (x64 off).
        self._kernel = kernel
        self._dtype = np.dtype(kernel.dtype if dtype is None else dtype)  # the working dtype
        self._host = host  # factorisations and t=None solves on host, in numpy float64
        self._eig_host: tuple[np.ndarray, np.ndarray] | None = None
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
        self._eig: tuple[jax.Array, jax.Array] | None = (
            None  # (eigenvalues asc, clamped; eigenvectors)
        )
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

        Above it the top mode of discrete GD (heavy ball) grows geometrically. Gradient flow is stable
        for every learning rate; for ``kind="flow"`` the GD value ``2 N / lam_max`` is reported, i.e.
        the largest rate at which the flow is still a faithful model of GD.
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

    def _eigensystem(self) -> tuple[jax.Array, jax.Array]:
        """Returns ``(lam, V)`` of the regularised kernel, computing it once."""
        if self._eig is None:
            args = ("`dynamics.mse(k_train_train=...)`", "k_train_train", "(e.g. J J^T)")
            if self._host:
                lam, vecs = _host_eigensystem(self._kernel, *args, self._dtype)
                self._eig_host = (lam, vecs)
                # Mixed precision: the float64 eigenpairs, rounded once, drive the time evolution
                # in the working dtype (see the module notes on precision).
                with _eval_context(True):
                    self._eig = (
                        jnp.asarray(lam.astype(self._dtype)),
                        jnp.asarray(vecs.astype(self._dtype)),
                    )
            else:
                self._eig = _clamped_eigensystem(self._kernel, *args, psd_dtype=self._dtype)
        return self._eig

    def _cholesky(self) -> tuple[jax.Array, bool]:
        """Lower Cholesky factor of the regularised kernel for ``t=None`` and whether it is usable."""
        if self._chol is None:
            if self._host:
                chol, usable = _checked_cholesky_host(self._kernel)
            else:
                chol, usable = _checked_cholesky(self._kernel)
            if not usable:
                warnings.warn(
                    "dynamics.mse: the Cholesky factorisation of k_train_train (+ diag_reg) failed or "
                    "is numerically singular; the t=None (infinite time) prediction falls back to an "
                    "eigendecomposition pseudo-inverse in which zero modes keep their initial residual. "
                    "Pass diag_reg > 0 (e.g. 1e-6) for a regularised solution.",
                    UserWarning,
                    stacklevel=4,
                )
            self._chol = (chol, usable)
        return self._chol

    # ---------------------------------------------------------------------------------------------
    # Input handling.

    def _times(self, t: Any, where: str) -> tuple[Any, tuple[int, ...], int]:
        """Validates ``t``; returns (flat times (T,), t.shape, number of bits for momentum)."""
        return _validate_times(t, where, self._kind)

    def _f0(self, f0_train: Any, where: str) -> jax.Array:
        f0 = _as_real_array(f0_train, where)
        if f0.shape != (self._n, self._k):
            raise ValueError(
                f"{where} must have the shape of y_train, (n, k) = {(self._n, self._k)}; "
                f"got shape {tuple(f0.shape)}."
            )
        _check_finite(f0, where)
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
        f0t = _as_real_array(f0_test, where_f)
        kt = _as_real_array(k_test_train, where_k)
        n, k = self._n, self._k
        if f0t.ndim != 2 or f0t.shape[1] != k:
            raise ValueError(
                f"{where_f} must be a 2-D (m, k) array with k = y_train.shape[1] = {k}; "
                f"got shape {tuple(f0t.shape)}."
            )
        m = f0t.shape[0]
        expected = (m, n, k, k) if self._full else (m, n)
        layout = (
            "(m, n, k, k) like the 4-D k_train_train"
            if self._full
            else "(m, n) like the 2-D k_train_train"
        )
        if tuple(kt.shape) != expected:
            raise ValueError(
                f"{where_k} must have shape {layout} with m = f0_test.shape[0] = {m}, "
                f"n = {n}, k = {k}, i.e. {expected}; got shape {tuple(kt.shape)}."
            )
        _check_finite(f0t, where_f)
        _check_finite(kt, where_k)
        return f0t, kt

    def _finite(self, t_flat, t_shape, n_bits, f0, f0t, kt, *, dtype, want):
        lam, vecs = self._eigensystem()
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
        if wide and self._host:
            return self._finite_host(t_flat, t_shape, n_bits, f0, f0t, kt, dtype=dtype, want=want)
        work = _float_dtype(dtype, self._kernel.dtype) if wide else dtype
        out = _finite_time(
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
        if work != dtype:
            out = jax.tree_util.tree_map(lambda a: a.astype(dtype), out)
        return out

    def _finite_host(self, t_flat, t_shape, n_bits, f0, f0t, kt, *, dtype, want):
        """Test outputs / weight coefficients at finite t on host in float64 (x64 off)."""
        if not is_concrete(t_flat, f0, f0t, kt, self._y):
            raise ValueError(
                "`MSEPredictor` built with solve_dtype='float64' while jax_enable_x64 is off "
                "computes test predictions, weights and (kind='momentum') all outputs on host in "
                "float64 and needs concrete t, f0_train, f0_test and k_test_train; got traced "
                "values (inside jax.jit / vmap / grad). Call it outside the transformation, enable "
                "float64 in JAX (jax.config.update('jax_enable_x64', True)), or, for 'flow'/'gd', "
                "predict train outputs / the loss only (those run in JAX)."
            )
        lam32 = self._eigensystem()[0]
        lam, vecs = self._eig_host
        scale = float(self._learning_rate) / self._size
        if self._kind == "momentum":
            _, rho_m1, gamma = _momentum_factors_host(
                lam, np.asarray(t_flat), scale, float(self._momentum)
            )
        else:
            # Flow / GD factors in the working dtype: each is accurate relative to itself there.
            _, rho_m1, gamma = (
                np.asarray(a).astype(np.float64)
                for a in _mode_factors_jit(lam32, t_flat, scale, 0.0, kind=self._kind, n_bits=0)
            )
        y = np.asarray(self._y).astype(np.float64)
        f0_64 = np.asarray(f0).astype(np.float64)
        q = vecs.T @ (f0_64 - y).reshape(self._dim, -1)  # (D, cols)
        n_t = rho_m1.shape[0]
        with _eval_context(True):
            return self._finite_host_outputs(
                vecs, q, rho_m1, gamma, f0_64, f0t, kt, n_t, t_shape, dtype=dtype, want=want
            )

    def _finite_host_outputs(self, vecs, q, rho_m1, gamma, f0_64, f0t, kt, n_t, t_shape, *, dtype,
                             want):
        n, k = self._n, self._k
        if want == "coef":
            coef = np.matmul(vecs, gamma[:, :, None] * q[None])  # (T, D, cols), never (T, D, D)
            return jnp.asarray(coef.reshape(n_t, n, k).astype(dtype))
        train = f0_64[None] + np.matmul(vecs, rho_m1[:, :, None] * q[None]).reshape(n_t, n, k)
        train = jnp.asarray(train.reshape(t_shape + (n, k)).astype(dtype))
        if f0t is None:
            return train
        kt_flat = np.asarray(kt).astype(np.float64)
        if kt_flat.ndim == 4:
            m = kt_flat.shape[0]
            kt_flat = kt_flat.transpose(0, 2, 1, 3).reshape(m * k, n * k)
        kv = kt_flat @ vecs
        test = np.asarray(f0t).astype(np.float64)[None] + np.matmul(
            kv, gamma[:, :, None] * q[None]
        ).reshape((n_t,) + tuple(f0t.shape))
        return train, jnp.asarray(test.reshape(t_shape + tuple(f0t.shape)).astype(dtype))

    def _infinite(self, f0, f0t, kt, *, dtype):
        if self._host:
            return self._infinite_host(f0, f0t, kt, dtype=dtype)
        # The solve runs in the factorisation's dtype (float64 for solve_dtype="float64": a solve
        # with K^{-1} amplifies rounding by cond(K), so it is not safe in float32).
        solve = _float_dtype(dtype, self._kernel.dtype)
        chol, usable = self._cholesky()
        if usable:
            out = _infinite_time(chol, None, None, f0, self._y, f0t, kt, dtype=solve, rtol=0.0)
        else:
            lam, vecs = self._eigensystem()
            out = _infinite_time(
                None,
                lam,
                vecs,
                f0,
                self._y,
                f0t,
                kt,
                dtype=solve,
                rtol=_rank_rtol(lam.dtype, self._dim),
            )
        if solve != dtype:
            out = tuple(None if a is None else a.astype(dtype) for a in out)
        return out

    def _infinite_host(self, f0, f0t, kt, *, dtype):
        """t = infinity on host in float64 (solve_dtype="float64" with x64 off), as `_infinite_time`."""
        if not is_concrete(f0, f0t, kt, self._y):
            raise ValueError(
                "`MSEPredictor` built with solve_dtype='float64' while jax_enable_x64 is off solves "
                "t=None on host in float64 and needs concrete f0_train, f0_test and k_test_train; "
                "got traced values (inside jax.jit / vmap / grad). Call it outside the "
                "transformation, enable float64 in JAX (jax.config.update('jax_enable_x64', True)) "
                "so the solve runs in JAX, or use a large finite t."
            )
        n, k = self._n, self._k
        y = np.asarray(self._y).astype(np.float64)
        r0 = (np.asarray(f0).astype(np.float64) - y).reshape(self._dim, -1)
        chol, usable = self._cholesky()
        if usable:
            coef = -scipy.linalg.cho_solve((chol, True), r0)
            train = y
        else:
            self._eigensystem()
            lam, vecs = self._eig_host
            live = lam > _rank_rtol(np.float64, self._dim) * lam[-1]
            inv = np.where(live, 1.0 / np.where(live, lam, 1.0), 0.0)
            q = vecs.T @ r0
            coef = -(vecs @ (inv[:, None] * q))
            train = y + (vecs @ (np.where(live, 0.0, 1.0)[:, None] * q)).reshape(n, k)
        test = None
        if f0t is not None:
            kt_flat = np.asarray(kt).astype(np.float64)
            if kt_flat.ndim == 4:
                m = kt_flat.shape[0]
                kt_flat = kt_flat.transpose(0, 2, 1, 3).reshape(m * k, n * k)
            test = np.asarray(f0t).astype(np.float64) + (kt_flat @ coef).reshape(f0t.shape)
        with _eval_context(True):
            return tuple(
                None if a is None else jnp.asarray(np.asarray(a).astype(dtype))
                for a in (train, test, coef.reshape(n, k))
            )

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
          k_test_train: ``(m, n)`` or ``(m, n, k, k)`` kernel between test and train inputs, same layout
            as ``k_train_train``.

        Returns:
          Train predictions ``(*t.shape, n, k)``; or, with test inputs, ``(train, test)`` with test
          ``(*t.shape, m, k)``. ``t=None`` gives no time axis: train ``y_train`` exactly (or, for a
          singular kernel without ``diag_reg``, ``y_train`` plus the part of the initial residual in the
          kernel's null space), test ``f0_test - K_test_train K^{-1} (f0_train - y_train)``.
        """
        f0 = self._f0(f0_train, "`MSEPredictor.__call__(f0_train=...)`")
        f0t, kt = self._test_inputs(f0_test, k_test_train, "__call__")
        dtypes = [self._dtype, self._y.dtype, f0.dtype]
        if f0t is not None:
            dtypes += [f0t.dtype, kt.dtype]
        dtype = _float_dtype(*dtypes)
        if t is None:
            train, test, _ = self._infinite(f0, f0t, kt, dtype=dtype)
            return train if f0t is None else (train, test)
        t_flat, t_shape, n_bits = self._times(t, "`MSEPredictor.__call__(t=...)`")
        return self._finite(t_flat, t_shape, n_bits, f0, f0t, kt, dtype=dtype, want="call")

    def loss(self, t: ArrayLike | None, f0_train: ArrayLike) -> jax.Array:
        """Training loss ``0.5 * mean((f_t - y_train)**2)``, shape ``t.shape`` (``()`` for ``t=None``).

        Computed in the eigenbasis as ``0.5 / N * sum_modes rho^2 |V^T r_0|^2`` without forming the
        predictions.
        """
        f0 = self._f0(f0_train, "`MSEPredictor.loss(f0_train=...)`")
        dtype = _float_dtype(self._dtype, self._y.dtype, f0.dtype)
        if t is None:
            train, _, _ = self._infinite(f0, None, None, dtype=dtype)
            return _loss_of(train, self._y, dtype=dtype)
        t_flat, t_shape, n_bits = self._times(t, "`MSEPredictor.loss(t=...)`")
        return self._finite(t_flat, t_shape, n_bits, f0, None, None, dtype=dtype, want="loss")

    def weights(self, t: ArrayLike | None, f0_train: ArrayLike, jacobian: PyTree) -> PyTree:
        """Weight change ``omega_t = theta_t - theta_0`` of the linearized model.

        ``omega_t = J^T c_t`` with ``c_t = V diag(gamma) V^T (f_0 - y)`` (Lee et al. 2019:
        ``-J^T Theta^{-1} (I - exp(-lr Theta t / N)) (f_0 - y)`` for the flow), so that
        ``f_0 + J omega_t`` reproduces `__call__`'s train predictions whenever ``J J^T`` is the kernel
        the predictor was built with, i.e.:

        * full ``(n, n, k, k)`` kernel: ``K = J J^T`` exactly (and ``diag_reg = 0``);
        * traced ``(n, n)`` kernel: this assumes the NTK is block-diagonal over outputs with identical
          blocks, ``J J^T = Theta ⊗ I_k`` (true at infinite width, or for ``k = 1``); for a finite
          multi-output network it is an approximation.

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
            raise ValueError(
                f"{where} must be a PyTree with at least one array leaf (leaves of shape "
                f"(n, k, *param_shape)); got {jacobian!r}."
            )
        leaves = []
        for path, leaf in with_paths:
            name = jax.tree_util.keystr(path) or "<root>"
            arr = _as_real_array(leaf, f"{where} leaf {name}")
            if arr.ndim < 2 or tuple(arr.shape[:2]) != (self._n, self._k):
                raise ValueError(
                    f"{where} leaf {name} must have shape (n, k, *param_shape) with "
                    f"(n, k) = {(self._n, self._k)}; got shape {tuple(arr.shape)}."
                )
            leaves.append(arr)
        dtype = _float_dtype(
            self._dtype, self._y.dtype, f0.dtype, *(a.dtype for a in leaves)
        )
        if t is None:
            _, _, coef = self._infinite(f0, None, None, dtype=dtype)
            coef, t_shape = coef[None], ()
        else:
            t_flat, t_shape, n_bits = self._times(t, "`MSEPredictor.weights(t=...)`")
            coef = self._finite(t_flat, t_shape, n_bits, f0, None, None, dtype=dtype, want="coef")
        out = _apply_jacobian_transpose(coef, leaves, dtype=dtype, t_shape=t_shape)
        return jax.tree_util.tree_unflatten(treedef, out)


# ------------------------------------------------------------------------------------------------
# Constructor.
# ------------------------------------------------------------------------------------------------


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
      k_train_train: the NTK on the train inputs, ``(n, n)`` (traced over outputs, the same kernel for
        every output column) or ``(n, n, k, k)`` (full; ``K[i, j, a, b] = <df_a(x_i), df_b(x_j)>``).
        Must be symmetric and positive semi-definite up to rounding (eigenvalues in
        ``[-tol * lam_max, 0)``, ``tol = min(1e3 * eps * D, 1e-2)`` with ``D = n`` or ``n * k``, are
        clamped to 0; clearly negative ones raise ``ValueError`` on the first use of the
        eigendecomposition).
      y_train: ``(n, k)`` targets (reshape a single output to ``(n, 1)``).
      learning_rate: ``lr`` > 0. One unit of ``t`` is one ``optax.sgd(lr)`` step; the flow is
        ``df/dt = -lr * Theta (f - y) / N`` with ``N = y_train.size``.
      diag_reg: relative ridge >= 0: the kernel used is ``K + diag_reg * mean(diag(K)) * I``.
      kind: ``"flow"`` (gradient flow, = ``neural_tangents.predict.gradient_descent_mse``), ``"gd"``
        (discrete gradient descent, integer ``t``) or ``"momentum"`` (heavy ball as
        ``optax.sgd(lr, momentum=momentum)``, integer ``t``).
      momentum: ``beta`` in ``[0, 1)``, required for ``kind="momentum"`` and ``None`` otherwise.
      solve_dtype: ``None`` (factorise in the kernel's dtype) or ``"float64"``: for a lower-precision
        (float32) kernel, symmetrise, regularise, eigendecompose and Cholesky-factorise it in
        float64 (the kernel's entries taken as exact), and solve ``t=None`` in float64; finite-time
        evolution then runs in the working dtype from the float64 eigenpairs rounded once
        (mixed precision), and every output keeps the working dtype. With ``jax_enable_x64`` on
        this runs in JAX (also under ``jit``); with it off (JAX's default) it runs on host with
        numpy/scipy, which needs a concrete kernel (``ValueError`` when traced) and, for
        ``t=None``, concrete ``f0_train``/test inputs. No effect on a float64 kernel.

    Returns:
      An `MSEPredictor`. For ``"gd"``/``"momentum"`` the eigendecomposition is computed here and a
      ``UserWarning`` is issued when ``learning_rate`` exceeds the critical learning rate (checked
      only for concrete values); for ``"flow"`` it is computed on the first finite-``t`` use.

    Notes:
      * ``t=None`` (infinite time) is the same fixed point for every kind: a Cholesky solve of the
        regularised kernel (train predictions are ``y_train``). If the kernel is numerically singular
        (Cholesky NaN or pivots below ``D * eps`` of the largest diagonal entry) it falls back, with a
        ``UserWarning``, to the eigendecomposition pseudo-inverse, in which null modes keep their
        initial residual, which is exactly where gradient flow goes. For ``"gd"``/``"momentum"``
        above the critical learning rate that fixed point is never reached.
      * The symmetry tolerance is ``sqrt(eps)`` of the kernel's dtype, relative to ``max |K|``; the
        kernel is symmetrised ``(K + K^T) / 2`` before use.
      * Value checks (finiteness, symmetry, PSD, ranges, stability) run only on concrete (non-traced)
        inputs; shape checks always run. Traced float times for ``"gd"``/``"momentum"`` are rounded
        to whole steps.
      * With ``solve_dtype="float64"`` the PSD-rounding tolerance stays that of the kernel's dtype,
        while the Cholesky/pseudo-inverse rank thresholds are float64 ones: the point of the option
        is to resolve eigenvalues far below ``eps32 * lam_max``.
    """
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(
            f"`dynamics.mse(kind=...)` must be one of {', '.join(map(repr, KINDS))}; got {kind!r}."
        )
    learning_rate = _check_scalar(
        learning_rate, "`dynamics.mse(learning_rate=...)`", low=0.0, low_inclusive=False
    )
    diag_reg = _check_scalar(diag_reg, "`dynamics.mse(diag_reg=...)`", low=0.0, low_inclusive=True)
    if kind == "momentum":
        if momentum is None:
            raise ValueError(
                "`dynamics.mse(momentum=...)` is required for kind='momentum': a float in "
                "[0, 1); got None."
            )
        momentum = _check_scalar(
            momentum, "`dynamics.mse(momentum=...)`", low=0.0, low_inclusive=True, high=1.0
        )
    elif momentum is not None:
        raise ValueError(
            f"`dynamics.mse(momentum=...)` must be None for kind={kind!r} (use "
            f"kind='momentum' for heavy ball); got {momentum!r}."
        )

    kernel = _as_real_array(k_train_train, "`dynamics.mse(k_train_train=...)`")
    y = _as_real_array(y_train, "`dynamics.mse(y_train=...)`")
    if y.ndim != 2:
        raise ValueError(
            f"`dynamics.mse(y_train=...)` must be a 2-D (n, k) array of targets; got "
            f"shape {tuple(y.shape)}. Reshape a single output to (n, 1)."
        )
    n, k = y.shape
    if y.size == 0:
        raise ValueError(
            f"`dynamics.mse(y_train=...)` must be non-empty; got shape {tuple(y.shape)}."
        )
    where_k = "`dynamics.mse(k_train_train=...)`"
    if kernel.ndim == 2:
        if tuple(kernel.shape) != (n, n):
            raise ValueError(
                f"{where_k} must be a square (n, n) kernel with n = y_train.shape[0] = {n}; "
                f"got shape {tuple(kernel.shape)}."
            )
    elif kernel.ndim == 4:
        if tuple(kernel.shape) != (n, n, k, k):
            raise ValueError(
                f"{where_k} must be an (n, n, k, k) kernel with (n, k) = y_train.shape = "
                f"{(n, k)}; got shape {tuple(kernel.shape)}."
            )
    else:
        raise ValueError(
            f"{where_k} must be an (n, n) or (n, n, k, k) kernel; got a {kernel.ndim}-D "
            f"array of shape {tuple(kernel.shape)}."
        )
    _check_finite(kernel, where_k)
    _check_finite(y, "`dynamics.mse(y_train=...)`")

    solve = _check_solve_dtype(solve_dtype, "`dynamics.mse(solve_dtype=...)`")

    full = kernel.ndim == 4
    dtype = _float_dtype(kernel.dtype, y.dtype)
    concrete = is_concrete(kernel, diag_reg)
    host = False
    fact_dtype = dtype
    if solve is not None and dtype.itemsize < solve.itemsize:
        if _x64_enabled():
            fact_dtype = solve
        elif concrete:
            host = True
        else:
            raise ValueError(
                "`dynamics.mse(solve_dtype='float64')` needs float64, which JAX lacks while "
                "jax_enable_x64 is off, so the factorisation would run on host in numpy and needs "
                "a concrete k_train_train and diag_reg; got traced values (inside jax.jit / vmap "
                "/ grad). Build the predictor outside the transformation, enable float64 "
                "(jax.config.update('jax_enable_x64', True)), or pass solve_dtype=None."
            )
    if host:
        flat, asym, size = _prepare_kernel_host(kernel, diag_reg)
    else:
        with _eval_context(concrete):
            flat, asym, size = _prepare_kernel(kernel, diag_reg, dtype=fact_dtype)
    if concrete:
        _check_symmetric(asym, size, dtype, where_k)

    predictor = MSEPredictor(
        kernel=flat,
        y_train=y,
        full=full,
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
                    f"dynamics.mse: learning_rate={float(learning_rate):g} exceeds the critical learning "
                    f"rate {critical:g} (= 2 N {'(1 + momentum) ' if kind == 'momentum' else ''}/ lam_max) "
                    f"of this kernel, so {what} diverges: the top modes grow without bound.",
                    UserWarning,
                    stacklevel=2,
                )
    return predictor


# ------------------------------------------------------------------------------------------------
# Infinite ensembles of infinitely wide networks (Lee et al. 2019, eqs. 14-16).
# ------------------------------------------------------------------------------------------------

GETS: tuple[str, ...] = ("nngp", "ntk")
"""The kernels `mse_ensemble` can train with: ``"ntk"`` (all layers) or ``"nngp"`` (last layer)."""


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
        arr = _as_real_array(value, f"{name}, kernel {g!r},")
        if tuple(arr.shape) != shape:
            raise ValueError(
                f"{name} must give a {shape} kernel {g!r} (one entry per pair of inputs, "
                f"traced over outputs); got shape {tuple(arr.shape)}."
            )
        _check_finite(arr, f"{name}, kernel {g!r},")
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
    rho, rho_m1, gamma = _flow_factors(lam, t.astype(dtype), scale)
    g = -gamma  # (T, n)
    y = y.astype(dtype)
    vty = jnp.matmul(vecs.T, y, precision=_HIGHEST)  # (n, k)

    def sym(c):
        return 0.5 * (c + jnp.swapaxes(c, -1, -2))

    if k_td is None:
        # Train inputs: mean (I - exp(-K t)) y.
        mean = jnp.einsum("ij,tj,jc->tic", vecs, -rho_m1, vty, precision=_HIGHEST)
        covariance = None
        if cov:
            # f_t = (I - E) y + E f_0 with E = exp(-lr K t / N), so cov = E K_nngp E for either
            # kernel, K_nngp the prior (unregularised) train NNGP. (neural-tangents writes
            # V diag(lam rho^2) V^T for get="nngp", which puts the ridge into the prior: the same
            # for diag_reg = 0, larger by diag_reg * mean(diag(K)) * V diag(rho^2) V^T otherwise.)
            decay = jnp.einsum("ij,tj,kj->tik", vecs, rho, vecs, precision=_HIGHEST)
            covariance = jnp.einsum(
                "tij,jk,tlk->til", decay, nngp_dd.astype(dtype), decay, precision=_HIGHEST
            )
            covariance = sym(covariance)
    else:
        kv = jnp.matmul(k_td.astype(dtype), vecs, precision=_HIGHEST)  # (m, n)
        mean = jnp.einsum("ij,tj,jc->tic", kv, g, vty, precision=_HIGHEST)  # K_td G y
        covariance = None
        if cov:
            k_tt = nngp_tt.astype(dtype)[None]
            if get == "nngp":
                # K_tt - K_td K^{-1} (I - exp(-2 K t)) K_dt, with
                # 1 - e^{-2x} = (1 - e^{-x}) (1 + e^{-x}).
                covariance = k_tt - jnp.einsum(
                    "ij,tj,kj->tik", kv, g * (1.0 + rho), kv, precision=_HIGHEST
                )
            else:
                # Lee et al. eq. 16: A^T K A - (Θ_td G K_dt + transpose) + K_tt with A = G Θ_dt.
                a = jnp.einsum("ij,tj,kj->tik", vecs, g, kv, precision=_HIGHEST)  # (T, n, m)
                kv_nngp = jnp.matmul(nngp_td.astype(dtype), vecs, precision=_HIGHEST)
                cross = jnp.einsum("ij,tj,kj->tik", kv, g, kv_nngp, precision=_HIGHEST)
                covariance = (
                    jnp.einsum("tji,jk,tkl->til", a, nngp_dd.astype(dtype), a, precision=_HIGHEST)
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
        live = lam > rtol * lam[-1]
        inv = jnp.where(live, 1.0 / jnp.where(live, lam, 1.0), 0.0)

        def solve(b):
            q = jnp.matmul(vecs.T, b, precision=_HIGHEST)
            return jnp.matmul(vecs, inv[:, None] * q, precision=_HIGHEST)

        # Projector on the null space of the kernel.
        null = jnp.matmul(vecs * jnp.where(live, 0.0, 1.0)[None, :], vecs.T, precision=_HIGHEST)

    if k_td is None:
        # Train inputs: the targets with zero covariance (for a singular kernel the null-space part
        # of the initial function, which has mean 0, survives).
        if null is None:
            return y, (jnp.zeros((n, n), dtype) if cov else None)
        mean = y - jnp.matmul(null, y, precision=_HIGHEST)
        covariance = None
        if cov:
            if get == "nngp":
                covariance = jnp.zeros((n, n), dtype)
            else:
                k_dd = nngp_dd.astype(dtype)
                covariance = jnp.matmul(
                    null, jnp.matmul(k_dd, null, precision=_HIGHEST), precision=_HIGHEST
                )
                covariance = 0.5 * (covariance + covariance.T)
        return mean, covariance

    k_td = k_td.astype(dtype)
    mean = jnp.matmul(k_td, solve(y), precision=_HIGHEST)  # K_td K^{-1} y
    if not cov:
        return mean, None
    k_tt = nngp_tt.astype(dtype)
    if get == "nngp":
        covariance = k_tt - jnp.matmul(k_td, solve(k_td.T), precision=_HIGHEST)
    else:
        a = solve(k_td.T)  # Θ^{-1} Θ_dt, (n, m)
        cross = jnp.matmul(k_td, solve(nngp_td.astype(dtype).T), precision=_HIGHEST)
        covariance = (
            jnp.matmul(a.T, jnp.matmul(nngp_dd.astype(dtype), a, precision=_HIGHEST))
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
            self._eig[get] = _clamped_eigensystem(
                self._reg[get],
                "`dynamics.mse_ensemble(kernel_fn=...)`",
                f"the {get} kernel on x_train",
                "(an infinite-width NNGP/NTK)",
            )
        return self._eig[get]

    def _cholesky(self, get: str) -> tuple[jax.Array, bool]:
        if get not in self._chol:
            chol, usable = _checked_cholesky(self._reg[get])
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
        xt = _as_real_array(x_test, where)
        if xt.ndim != self._x.ndim or tuple(xt.shape[1:]) != tuple(self._x.shape[1:]):
            raise ValueError(
                f"{where} must have shape (m, *x_train.shape[1:]) = (m, "
                f"{', '.join(map(str, self._x.shape[1:]))}); got shape {tuple(xt.shape)}."
            )
        _check_finite(xt, where)
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
            t_flat, t_shape, _ = _validate_times(t, "`EnsemblePredictor.__call__(t=...)`", "flow")
        dtype = self._dtype
        k_td, k_tt = None, None
        if x_test is not None:
            k_td, k_tt = self._test_kernels(x_test, gets, cov)
            dtype = _float_dtype(dtype, *(k.dtype for k in k_td.values()))
            if k_tt is not None:
                dtype = _float_dtype(dtype, k_tt.dtype)
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
                    rtol = _rank_rtol(lam.dtype, self._n)
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
    learning_rate = _check_scalar(
        learning_rate, where.format("learning_rate"), low=0.0, low_inclusive=False
    )
    diag_reg = _check_scalar(diag_reg, where.format("diag_reg"), low=0.0, low_inclusive=True)
    x = _as_real_array(x_train, where.format("x_train"))
    y = _as_real_array(y_train, where.format("y_train"))
    if y.ndim != 2:
        raise ValueError(
            f"{where.format('y_train')} must be a 2-D (n, k) array of targets; got shape "
            f"{tuple(y.shape)}. Reshape a single output to (n, 1)."
        )
    if y.size == 0:
        raise ValueError(
            f"{where.format('y_train')} must be non-empty; got shape {tuple(y.shape)}."
        )
    n = y.shape[0]
    if x.ndim < 1 or x.shape[0] != n:
        raise ValueError(
            f"{where.format('x_train')} must have one row per target, shape (n, ...) with n = "
            f"y_train.shape[0] = {n}; got shape {tuple(x.shape)}."
        )
    _check_finite(x, where.format("x_train"))
    _check_finite(y, where.format("y_train"))

    raw_kernels = _call_kernel_fn(kernel_fn, x, None, GETS, (n, n), "(x_train, None)")
    dtype = _float_dtype(y.dtype, *(k.dtype for k in raw_kernels.values()))
    raw, regularised = {}, {}
    for g, kernel in raw_kernels.items():
        concrete = is_concrete(kernel, diag_reg)
        with _eval_context(concrete):
            raw[g], asym, size = _prepare_kernel(kernel, 0.0, dtype=dtype)
            regularised[g] = _prepare_kernel(kernel, diag_reg, dtype=dtype)[0]
        if is_concrete(kernel):
            _check_symmetric(
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
