"""Input checks of `jaxdyn.dynamics` that the shared vocabulary (`jaxdyn._checks`) does not cover.

Arguments of the closed forms may be traced (a predictor is built and called inside ``jit``), so
these checks return the values they are given (no casts to Python numbers) and check values only
when they are concrete. Messages follow `jaxdyn._checks.fail`: "`NAME` must be EXPECTED; got
RECEIVED." Finiteness is `jaxdyn._checks.check_finite`.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn._checks import check_finite, fail


def _is_real(dtype: Any) -> bool:
    return bool(jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer))


def as_real_array(x: Any, where: str) -> Any:
    """Checks that ``x`` is a real (float or int) array; bool and complex are rejected (no casts).

    jax arrays and tracers are returned as they are, anything else as a numpy array: the numbers go
    straight into the compiled kernels, and converting with ``jnp.asarray`` here would cost an
    extra compilation per new shape.
    """
    if isinstance(x, (jax.Array, jax.core.Tracer)):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as err:
            fail(where, "a real-valued array", f"{type(x).__name__}: {err}", TypeError)
    if not _is_real(arr.dtype):
        fail(
            where,
            "a real-valued (float or int) array",
            f"{type(x).__name__} with dtype {arr.dtype}",
            TypeError,
        )
    return arr


def check_scalar(
    x: Any, where: str, *, low: float, low_inclusive: bool, high: float | None = None
) -> Any:
    """Validates a real scalar hyper-parameter and returns it unchanged (values only if concrete).

    Unlike `jaxdyn._checks.check_float` this keeps jax scalars (and tracers) as they are, so that a
    learning rate may be traced (``jax.grad`` with respect to it).
    """
    if isinstance(x, jax.core.Tracer):
        if x.ndim != 0:
            fail(where, "a scalar", f"shape {x.shape}")
        return x
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (numbers.Real, np.ndarray, jax.Array)):
        fail(where, "a real scalar", f"{type(x).__name__} {x!r}", TypeError)
    arr = np.asarray(x)
    if arr.ndim != 0 or not _is_real(arr.dtype):
        fail(
            where,
            "a real scalar",
            f"{type(x).__name__} with shape {arr.shape} and dtype {arr.dtype}",
            TypeError,
        )
    value = float(arr)
    too_low = value < low if low_inclusive else value <= low
    too_high = high is not None and value >= high
    if not np.isfinite(value) or too_low or too_high:
        lo = f"{'>=' if low_inclusive else '>'} {low:g}"
        hi = f" and < {high:g}" if high is not None else ""
        fail(where, f"finite, {lo}{hi}", repr(value))
    return x


def check_solve_dtype(solve_dtype: Any, where: str) -> np.dtype | None:
    """``None`` or float64 (``"float64"``, ``np.float64``, ``jnp.float64``); else raises."""
    if solve_dtype is None:
        return None
    expected = "None or 'float64' (a dtype or its name)"
    if isinstance(solve_dtype, (bool, np.bool_, numbers.Number)):
        fail(where, expected, f"{type(solve_dtype).__name__} {solve_dtype!r}", TypeError)
    try:
        dtype = np.dtype(solve_dtype)
    except TypeError as err:
        fail(where, expected, f"{type(solve_dtype).__name__} {solve_dtype!r}: {err}", TypeError)
    if dtype != np.dtype(np.float64):
        fail(
            where,
            "None (factorise in the kernel's dtype) or 'float64'",
            f"{solve_dtype!r} (dtype {dtype})",
        )
    return dtype


def check_targets(y_train: Any, where: str) -> Any:
    """``y_train`` as a real, finite, non-empty ``(n, k)`` array."""
    y = as_real_array(y_train, where)
    if y.ndim != 2:
        fail(
            where,
            "a 2-D (n, k) array of targets",
            f"shape {tuple(y.shape)}. Reshape a single output to (n, 1)",
        )
    if y.size == 0:
        fail(where, "non-empty", f"shape {tuple(y.shape)}")
    check_finite(where, y)
    return y


def check_train_kernel(k_train_train: Any, y_shape: tuple[int, int], where: str) -> Any:
    """``k_train_train`` as a real, finite (n, n) or (n, n, k, k) array, ``(n, k) = y_shape``."""
    kernel = as_real_array(k_train_train, where)
    n, k = y_shape
    shape = tuple(kernel.shape)
    if kernel.ndim == 2:
        if shape != (n, n):
            fail(where, f"a square (n, n) kernel with n = y_train.shape[0] = {n}", f"shape {shape}")
    elif kernel.ndim == 4:
        if shape != (n, n, k, k):
            fail(
                where,
                f"an (n, n, k, k) kernel with (n, k) = y_train.shape = {(n, k)}",
                f"shape {shape}",
            )
    else:
        fail(where, "an (n, n) or (n, n, k, k) kernel", f"a {kernel.ndim}-D array of shape {shape}")
    check_finite(where, kernel)
    return kernel


def validate_times(t: Any, where: str, kind: str) -> tuple[Any, tuple[int, ...], int]:
    """Validates times ``t`` for optimiser ``kind``.

    Returns:
      ``(flat times (T,), t.shape, n_bits)``: real times for ``"flow"``, whole steps otherwise
      (integers for ``"momentum"``, whose loop runs over the ``n_bits`` bits of the largest step).
    """
    integer_steps = kind in ("gd", "momentum")
    if isinstance(t, jax.core.Tracer):
        arr = t
        if not _is_real(arr.dtype):
            fail(where, "real-valued times", f"dtype {arr.dtype}", TypeError)
        concrete = False
    else:
        try:
            arr = np.asarray(t)
        except (TypeError, ValueError) as err:
            fail(
                where,
                "None, a number or an array of times",
                f"{type(t).__name__}: {err}",
                TypeError,
            )
        if not _is_real(arr.dtype):
            fail(
                where,
                "None, a number or an array of real times",
                f"{type(t).__name__} with dtype {arr.dtype}",
                TypeError,
            )
        concrete = True
        if arr.size:
            if np.any(np.isnan(arr)):
                fail(where, "times without NaN", f"{int(np.isnan(arr).sum())} NaN times")
            if np.any(np.isinf(arr)):
                fail(where, "finite (pass t=None for t = infinity)", "an infinite time")
            if np.any(arr < 0):
                fail(where, "non-negative", f"minimum time {float(arr.min())!r}")
            fractional = arr != np.round(arr)
            if integer_steps and np.any(fractional):
                bad = arr[fractional].ravel()[0]
                fail(
                    where,
                    f"whole numbers of steps for kind={kind!r} (an integer dtype or "
                    "integer-valued floats)",
                    repr(float(bad)),
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
            fail(where, f"at most {limit} steps ({int_dtype})", repr(top))
        ints = np.round(arr).astype(int_dtype).reshape(-1)
        # Round the loop length up to a multiple of 8 bits so that horizons of similar size share
        # one compilation; surplus iterations see only zero bits and leave the state unchanged.
        n_bits = -(-int(top).bit_length() // 8) * 8
    else:
        ints = arr.astype(int_dtype).reshape(-1)
        n_bits = np.iinfo(int_dtype).bits - 1  # every non-negative value of the dtype
    return ints, shape, n_bits
