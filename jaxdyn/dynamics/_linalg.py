"""Linear algebra of the closed forms: kernel flattening, eigh, Cholesky, PSD and rank tolerances.

Every factorisation of `jaxdyn.dynamics` goes through this module, in one code path for every
precision: ``solve_dtype="float64"`` with ``jax_enable_x64`` off runs these same JAX functions
inside `local_float64` (a local ``jax.enable_x64(True)`` scope, evaluated eagerly on concrete
inputs) instead of a numpy copy of the pipeline.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxdyn._checks import is_concrete

# Matrix products here are tiny next to the eigendecomposition; ask for full precision so that
# accelerators that default to reduced-precision matmuls (TF32, bf16 passes) keep the exactness
# the closed forms promise.
HIGHEST = lax.Precision.HIGHEST


# ------------------------------------------------------------------------------------------------
# Precision and evaluation context.
# ------------------------------------------------------------------------------------------------


def x64_enabled() -> bool:
    """Whether float64 exists in JAX right now (``jax_enable_x64``, context managers included)."""
    return jax.dtypes.canonicalize_dtype(np.float64) == np.dtype(np.float64)


def float_dtype(*dtypes: Any) -> np.dtype:
    """The promoted dtype of ``dtypes``, raised to a float type (int kernels compute in floats)."""
    # Canonicalise first: numpy float64 inputs with x64 disabled mean float32, without a warning.
    dtype = jnp.result_type(*(jax.dtypes.canonicalize_dtype(d) for d in dtypes))
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(dtype, float)
    return np.dtype(dtype)


def _staging() -> bool:
    """Whether we are inside a ``jax.jit`` trace, where even ops on concrete arrays are staged."""
    return isinstance(jnp.asarray(np.float32(0)), jax.core.Tracer)


def eval_context(concrete: bool):
    """Evaluates eagerly for concrete inputs even inside a jit trace (cached values: no tracers).

    Only entered when actually staging: ``ensure_compile_time_eval`` also evaluates the constant
    sub-expressions of the jitted kernels op by op while they trace (one small compilation each),
    which is wasted work at top level, where the kernels return concrete arrays anyway.
    """
    if concrete and _staging():
        return jax.ensure_compile_time_eval()
    return contextlib.nullcontext()


@contextlib.contextmanager
def local_float64():
    """Float64 in JAX for concrete inputs while ``jax_enable_x64`` is off globally.

    The ``solve_dtype="float64"`` path with x64 off runs the ordinary JAX pipeline in here: a local
    ``jax.enable_x64(True)`` scope, evaluated eagerly (even inside a caller's jit trace), so its
    results are concrete arrays. Callers check concreteness first and cast results back to the
    working dtype before leaving; float64 arrays made here are only ever used in here.
    """
    with jax.enable_x64(True), eval_context(True):
        yield


# ------------------------------------------------------------------------------------------------
# Tolerances.
# ------------------------------------------------------------------------------------------------


def psd_rtol(dtype: Any, dim: int) -> float:
    """Relative size below which eigenvalues count as rounding noise of a PSD kernel.

    Rounding a PSD matrix (forming ``J J^T`` in finite precision, or the eigensolver's own backward
    error) perturbs its eigenvalues by about ``dim * eps * lam_max``; we allow 1000 times that,
    capped at 1% so that a clearly indefinite kernel is never mistaken for a noisy PSD one. E.g.
    float64 with ``dim = 100``: ``2.2e-11``; float32 with ``dim = 10``: ``1.2e-3``, with
    ``dim >= 84``: ``1e-2``.
    """
    return min(1e3 * float(jnp.finfo(dtype).eps) * dim, 1e-2)


def rank_rtol(dtype: Any, dim: int) -> float:
    """Relative eigenvalue / pivot size below which a kernel counts as numerically singular.

    ``dim * eps``, numpy's ``matrix_rank`` convention: eigenvalues of a rank-deficient ``J J^T``
    that should be 0 come out of ``eigh`` at about ``eps * lam_max``. Used for the t = infinity
    pseudo-inverse and to distrust a Cholesky factor with rounding-size pivots. Deliberately much
    tighter than `psd_rtol`: here modes are dropped, there only negative noise is zeroed.
    """
    return dim * float(jnp.finfo(dtype).eps)


# ------------------------------------------------------------------------------------------------
# Kernels: flattening, symmetrising, regularising.
# ------------------------------------------------------------------------------------------------


def flat_kernel(kernel: jax.Array) -> jax.Array:
    """(m, n) stays; (m, n, k, k) -> (m*k, n*k), row (j, b) -> j*k + b, column (i, a) -> i*k + a.

    The one place a 4-D kernel becomes the matrix acting on ``vec(f)`` (row-major ``reshape``).
    """
    if kernel.ndim == 2:
        return kernel
    m, n, k, _ = kernel.shape
    return jnp.transpose(kernel, (0, 2, 1, 3)).reshape(m * k, n * k)


@functools.partial(jax.jit, static_argnames=("dtype",))
def prepare_kernel(kernel: jax.Array, diag_reg: Any, *, dtype: Any):
    """Flattens, measures asymmetry, symmetrises and regularises the train kernel.

    Returns ``(K_reg (D, D), max |K - K^T|, max |K|)``.
    """
    flat = flat_kernel(kernel).astype(dtype)
    asym = jnp.max(jnp.abs(flat - flat.T))
    size = jnp.max(jnp.abs(flat))
    # Remove rounding asymmetry so that eigh sees exactly the kernel we mean.
    flat = 0.5 * (flat + flat.T)
    ridge = diag_reg * jnp.mean(jnp.diagonal(flat))
    return flat + ridge * jnp.eye(flat.shape[0], dtype=dtype), asym, size


def check_symmetric(asym: Any, size: Any, dtype: Any, where: str) -> None:
    """Raises unless ``max |K - K^T| <= sqrt(eps) * max |K|`` (values from `prepare_kernel`)."""
    asym, size = float(asym), float(size)
    tol = float(np.sqrt(jnp.finfo(dtype).eps))
    if asym > tol * size:
        raise ValueError(
            f"{where} must be symmetric (K[i, j] = K[j, i] for the flattened "
            f"kernel) to relative tolerance {tol:.2g}; got max |K - K^T| = {asym:.3g} "
            f"vs max |K| = {size:.3g}."
        )


# ------------------------------------------------------------------------------------------------
# Factorisations. `eigh` and `cholesky_factor` are the only calls of the two factorisations (seams
# that tests count); `eigh_local_x64` and `cholesky_factor_local_x64` are the same compiled
# functions under a second name, called only inside `local_float64`, so that tests can count the
# float64-with-x64-off path apart from the others.
# ------------------------------------------------------------------------------------------------

# Compiled as one unit (eager ``eigh`` runs a dozen small ops); the input is symmetrised already.
_eigh_compiled = jax.jit(functools.partial(jnp.linalg.eigh, symmetrize_input=False))


@jax.jit
def _cholesky_compiled(kernel: jax.Array):
    chol = jnp.linalg.cholesky(kernel)
    pivots = jnp.diagonal(chol) ** 2
    return chol, jnp.min(pivots), jnp.max(jnp.abs(jnp.diagonal(kernel)))


def eigh(matrix: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(eigenvalues ascending, eigenvectors)`` of a symmetrised matrix."""
    return _eigh_compiled(matrix)


def eigh_local_x64(matrix: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`eigh` inside `local_float64` (a separate seam, see above)."""
    return _eigh_compiled(matrix)


def cholesky_factor(kernel: jax.Array):
    """Lower Cholesky factor, its smallest squared pivot and the kernel's largest |diagonal|."""
    return _cholesky_compiled(kernel)


def cholesky_factor_local_x64(kernel: jax.Array):
    """`cholesky_factor` inside `local_float64` (a separate seam, see above)."""
    return _cholesky_compiled(kernel)


def raise_unless_psd(
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


def clamped_eigensystem(
    kernel: jax.Array,
    where: str,
    name: str,
    example: str,
    psd_dtype: Any = None,
    *,
    local_x64: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """``(lam, V)`` of a symmetrised PSD kernel, eigenvalues ascending with rounding negatives -> 0.

    Raises ``ValueError`` (``where``: the argument, ``name``: the kernel, ``example``: how such a
    kernel arises) for a clearly indefinite concrete kernel; ``psd_dtype`` (default: the kernel's)
    sets that rounding tolerance, so a float32 kernel factorised in float64 is judged by float32
    rounding. Concrete kernels give concrete results even inside a jit trace, so that callers may
    cache them. ``local_x64``: called inside `local_float64`.
    """
    dim = kernel.shape[0]
    concrete = is_concrete(kernel)
    with eval_context(concrete):
        lam, vecs = (eigh_local_x64 if local_x64 else eigh)(kernel)
        if concrete:
            lam_np = np.asarray(lam)
            lam_min, lam_max = float(lam_np[0]), float(lam_np[-1])
            tol = psd_rtol(lam.dtype if psd_dtype is None else psd_dtype, dim)
            raise_unless_psd(lam_min, lam_max, tol, where, name, example)
            # Rounding noise of a PSD kernel (NT issues #128/#134) -> exactly 0: those modes never
            # move. (numpy + eval context: the cached arrays stay concrete even inside a trace.)
            lam = jax.device_put(np.maximum(lam_np, 0.0))
        else:
            # Inside the trace of a traced kernel: the caller caches a tracer on an object that
            # lives only in that trace, which is what we want (one eigh per trace).
            lam = jnp.maximum(lam, 0.0)
    return lam, vecs


def checked_cholesky(kernel: jax.Array, *, local_x64: bool = False) -> tuple[jax.Array, bool]:
    """Lower Cholesky factor of a symmetrised kernel and whether it is usable for solves.

    Failure shows up as NaN; a near-singular kernel can also "succeed" with rounding-size pivots
    whose inverse would amplify noise by ~1/eps, so those count as failures too. Traced kernels
    cannot be inspected and count as usable. ``local_x64``: called inside `local_float64`.
    """
    concrete = is_concrete(kernel)
    with eval_context(concrete):
        chol, min_pivot, max_diag = (cholesky_factor_local_x64 if local_x64 else cholesky_factor)(
            kernel
        )
    usable = True
    if concrete:
        tol = rank_rtol(kernel.dtype, kernel.shape[0])
        usable = bool(np.isfinite(np.asarray(chol)).all()) and float(min_pivot) > tol * float(
            max_diag
        )
    return chol, usable


def pseudo_inverse_modes(lam: jax.Array, rtol: float) -> tuple[jax.Array, jax.Array]:
    """``(1 / lam on live modes else 0, live mask)``: modes within ``rtol * lam_max`` of 0 are dead.

    The t = infinity pseudo-inverse of numpy's pinv (``rcond = rtol``); gradient flow never moves
    the dead modes.
    """
    live = lam > rtol * lam[-1]
    return jnp.where(live, 1.0 / jnp.where(live, lam, 1.0), 0.0), live
