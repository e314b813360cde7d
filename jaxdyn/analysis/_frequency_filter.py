"""Gaussian filtering of a target on scattered inputs: the frequency principle in high dimension.

In high dimension a DFT over the inputs is impossible, so Xu et al. ("Frequency principle:
Fourier analysis sheds light on deep neural networks", 2019/2020) split a function sampled at
`n` inputs into a low-frequency part, its convolution with a Gaussian normalised over the
sample, and the high-frequency rest:

    y_low(x_i) = sum_j y_j G(x_i - x_j) / sum_j G(x_i - x_j),  G(u) = exp(-|u|^2 / (2 delta)),
    y_high = y - y_low,

with `delta` a variance (the papers use 3 for MNIST, 7 for CIFAR-10). The relative errors of a
network output `h` in each part are `e_low = ||y_low - h_low|| / ||y_low||` and the same with
the high parts.

The `(n, n)` weight matrix never exists at once: rows are processed in blocks of `batch_size`
(`lax.map` over row blocks), each block's squared distances from one matrix product
`|a|^2 + |b|^2 - 2 a.b`, so memory is `O(batch_size * n)`. Each row of weights is shifted by
its smallest distance before the exponential (the ratio does not change), so the largest
weight in a row is 1: no 0/0 when `delta` is tiny, and `delta -> 0` returns `y` exactly.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn._checks import check_array, check_finite, check_float, check_int, describe, fail

__all__ = [
    "FilteredErrors",
    "default_filter_batch",
    "filtered_errors",
    "gaussian_filter",
    "radial_dft_error",
]

# Elements of one (batch_size, n) block of weights when `batch_size` is None: 2^24 (64 MiB in
# float32), which keeps n = 60,000 at 279 rows per block.
_BLOCK_ELEMENTS = 2**24


class FilteredErrors(NamedTuple):
    """Relative errors of an output in the low- and high-frequency parts of a target.

    Attributes:
      e_low: `||y_low - h_low|| / ||y_low||`, a scalar or `(T,)` for `T` outputs.
      e_high: `||y_high - h_high|| / ||y_high||`, same shape.
    """

    e_low: jax.Array
    e_high: jax.Array


def default_filter_batch(n: int) -> int:
    """The row-block size `gaussian_filter` uses for `n` inputs when `batch_size` is None."""
    n = check_int("n", n, minimum=1)
    return max(1, min(n, _BLOCK_ELEMENTS // n))


def _as_inputs(name: str, x: Any) -> jax.Array:
    """`x (n,)` or `(n, ...)` as `(n, d)` floats (a 1-D grid is n inputs of dimension 1)."""
    check_array(name, x, min_ndim=1)
    # numpy stays numpy (no eager device ops before the one compiled call); ints become floats
    lib = np if isinstance(x, np.ndarray) else jnp
    x = x if np.dtype(x.dtype).kind == "f" else x.astype(jnp.result_type(float))
    return lib.reshape(x, (x.shape[0], -1))


def _check_targets(name: str, y: Any, n: int, x_name: str = "x") -> jax.Array:
    check_array(name, y, min_ndim=1)
    if y.shape[0] != n:
        fail(
            name,
            f"an array with one row per input, (n, ...) with n = {x_name}.shape[0] = {n}",
            f"shape {tuple(y.shape)}",
        )
    return y


def _check_delta(delta: Any) -> Any:
    return check_float(
        "delta", delta, minimum=0, strict_min=True, hint="the variance of the Gaussian"
    )


def _check_batch(batch_size: Any, n: int) -> int:
    if batch_size is None:
        return default_filter_batch(n)
    return min(check_int("batch_size", batch_size, minimum=1, allow_none=True), n)


@functools.partial(jax.jit, static_argnames=("batch_size",))
def _filter(y: jax.Array, x: jax.Array, delta: jax.Array, batch_size: int) -> jax.Array:
    """`y (n, k)`, `x (n, d)` -> `y_low (n, k)`, in row blocks of `batch_size`."""
    n = x.shape[0]
    hi = jax.lax.Precision.HIGHEST  # no TF32 on GPUs: distances cancel in |a|^2 + |b|^2 - 2ab
    sq = jnp.sum(x * x, axis=1)
    blocks = -(-n // batch_size)
    pad = blocks * batch_size - n
    rows = jnp.pad(x, ((0, pad), (0, 0))).reshape(blocks, batch_size, -1)
    row_sq = jnp.pad(sq, (0, pad)).reshape(blocks, batch_size)

    def block(args):
        xb, sqb = args
        dist = sqb[:, None] + sq[None, :] - 2.0 * jnp.matmul(xb, x.T, precision=hi)
        dist = jnp.maximum(dist, 0.0)
        # the shift by the row minimum cancels in the ratio; it keeps the largest weight 1
        w = jnp.exp(-(dist - jnp.min(dist, axis=1, keepdims=True)) / (2.0 * delta))
        return jnp.matmul(w, y, precision=hi) / jnp.sum(w, axis=1, keepdims=True)

    out = jax.lax.map(block, (rows, row_sq))
    return out.reshape(blocks * batch_size, -1)[:n]


def gaussian_filter(
    y: jax.Array, x: jax.Array, delta: float, *, batch_size: int | None = None
) -> jax.Array:
    """The low-frequency part of `y`: its Gaussian-weighted average over the sample.

    `y_low(x_i) = sum_j y_j G(x_i - x_j) / sum_j G(x_i - x_j)`, `G(u) = exp(-|u|^2/(2 delta))`.

    Args:
      y: `(n,)` or `(n, ...)` target values (each trailing entry filtered on its own).
      x: `(n,)` or `(n, ...)` inputs; trailing axes are flattened into one vector of
        dimension `d` (a 784-pixel image is one point of R^784).
      delta: the Gaussian's variance, > 0. `delta -> 0` returns `y` (for distinct inputs);
        `delta -> inf` returns the mean of `y` at every input.
      batch_size: rows of the `(n, n)` weight matrix computed at once (memory
        `O(batch_size * n)`); None picks `default_filter_batch(n)` (about 2^24 elements per
        block). The result does not depend on it beyond rounding.

    Returns:
      `y_low`, the shape of `y`, in the floating dtype of `x` and `y` together.

    Raises:
      ValueError: `delta <= 0`, `y` with a number of rows other than `x`'s, NaN/Inf in `x`
        or `y`, empty inputs.
      TypeError: non-array `x`/`y`, complex values.

    Example:
      >>> y_low = gaussian_filter(y, x_train.reshape(60000, 784), 3.0)   # MNIST, as the papers
    """
    xs = _as_inputs("x", x)
    n = xs.shape[0]
    y = _check_targets("y", y, n)
    delta = _check_delta(delta)
    batch_size = _check_batch(batch_size, n)
    check_finite("x", xs)
    check_finite("y", y)
    return _filter_any(y, xs, delta, batch_size)


@functools.partial(jax.jit, static_argnames=("batch_size",))
def _filter_any(y, xs, delta, batch_size):
    dtype = jnp.result_type(xs.dtype, y.dtype, jnp.result_type(float))
    out = _filter(y.reshape(xs.shape[0], -1).astype(dtype), xs.astype(dtype), delta, batch_size)
    return out.reshape(y.shape)


def _relative(num: jax.Array, den: jax.Array) -> jax.Array:
    """`sqrt(num / den)`, with 0 for 0/0 (nothing to fit, nothing missed) and inf for x/0."""
    safe = jnp.where(den > 0, den, 1.0)
    return jnp.where(den > 0, jnp.sqrt(num / safe), jnp.where(num > 0, jnp.inf, 0.0))


@functools.partial(jax.jit, static_argnames=("batch_size",))
def _errors(hs, y, xs, delta, batch_size):
    """`hs (T, *y.shape)`, `y (n, ...)`, `xs (n, d)` -> `(e_low, e_high)`, each `(T,)`."""
    n, t = xs.shape[0], hs.shape[0]
    dtype = jnp.result_type(xs.dtype, y.dtype, hs.dtype, jnp.result_type(float))
    y2 = y.reshape(n, -1).astype(dtype)
    h2 = jnp.moveaxis(hs.reshape(t, n, -1), 0, 1).astype(dtype)  # (n, T, k)
    k = y2.shape[1]
    # one filter pass: the target and every output as columns of one (n, (1 + T) k) array
    cols = jnp.concatenate([y2, h2.reshape(n, t * k)], axis=1)
    low = _filter(cols, xs.astype(dtype), jnp.asarray(delta, dtype), batch_size)
    y_low, h_low = low[:, :k], low[:, k:].reshape(n, t, k)
    y_high, h_high = y2 - y_low, h2 - h_low
    e_low = _relative(
        jnp.sum((y_low[:, None] - h_low) ** 2, axis=(0, 2)), jnp.sum(y_low**2) * jnp.ones(t)
    )
    e_high = _relative(
        jnp.sum((y_high[:, None] - h_high) ** 2, axis=(0, 2)), jnp.sum(y_high**2) * jnp.ones(t)
    )
    return e_low, e_high


def filtered_errors(
    h: jax.Array,
    y: jax.Array,
    x: jax.Array,
    delta: float,
    *,
    batch_size: int | None = None,
) -> FilteredErrors:
    """Relative errors of outputs `h` in the low- and high-frequency parts of the target `y`.

    `e_low = sqrt(sum |y_low - h_low|^2 / sum |y_low|^2)` and the same for the high parts
    `y - y_low`, `h - h_low`, with `gaussian_filter` at variance `delta`. Every output is
    filtered with the target in ONE pass over the weights (they do not depend on the values).

    Args:
      h: outputs, the shape of `y` (one output) or `(T, *y.shape)` (e.g. `Trajectory.f_train`
        at T recorded steps).
      y: `(n,)` or `(n, ...)` targets; x: `(n, ...)` inputs; delta: the variance, > 0.
      batch_size: as in `gaussian_filter`.

    Returns:
      `FilteredErrors(e_low, e_high)`: scalars for one output, `(T,)` for `T` outputs. A part
      whose target is exactly 0 gives 0 when the output's part is 0 too, inf otherwise.

    Raises:
      ValueError: `h` neither of `y`'s shape nor `(T, *y.shape)`; everything
        `gaussian_filter` refuses (`delta <= 0`, mismatched `x`/`y`, NaN/Inf).
    """
    xs = _as_inputs("x", x)
    n = xs.shape[0]
    y = _check_targets("y", y, n)
    check_array("h", h, min_ndim=1)
    if tuple(h.shape) == tuple(y.shape):
        single, hs = True, h[None]
    elif h.ndim == y.ndim + 1 and tuple(h.shape[1:]) == tuple(y.shape):
        single, hs = False, h
    else:
        fail(
            "filtered_errors(h)",
            f"an output of the targets' shape {tuple(y.shape)} or a stack (T, "
            f"{', '.join(map(str, y.shape))}) of them",
            f"shape {tuple(h.shape)}" if hasattr(h, "shape") else describe(h),
        )
    check_finite("x", xs)
    check_finite("y", y)
    check_finite("h", hs)
    e_low, e_high = _errors(hs, y, xs, _check_delta(delta), _check_batch(batch_size, n))
    if single:
        return FilteredErrors(e_low[0], e_high[0])
    return FilteredErrors(e_low, e_high)


def radial_dft_error(outputs: jax.Array, target: jax.Array, bins: int = 8) -> tuple:
    """Relative error of 2-D outputs in rings of radial frequency of the 2-D DFT.

    With `H`, `F` the 2-D DFTs of an output and of the target and `r = |(k_y, k_x)|` the
    radial frequency in cycles per pixel (`numpy.fft.fftfreq` on each axis), ring b holds
    the frequencies with `edges[b] <= r < edges[b + 1]` (`bins` equal rings from 0 to the
    largest r, the last one closed) and its error is
    `sqrt(sum_ring |H - F|^2 / sum_ring |F|^2)`.

    Args:
      outputs: `(T, H, W)` outputs over training (or `(H, W)` for one).
      target: `(H, W)` image.
      bins: number of rings, >= 1.

    Returns:
      `(errors, edges)`: `(T, bins)` (or `(bins,)`) errors, NaN for a ring with no target
      energy, and the `(bins + 1,)` ring edges in cycles per pixel.

    Raises:
      ValueError: a target that is not 2-D, outputs of another grid, NaN/Inf, bad `bins`.
    """
    check_array("target", target, ndim=2)
    bins = check_int("bins", bins, minimum=1)
    check_array("outputs", outputs, min_ndim=2)
    single = outputs.ndim == 2
    if tuple(outputs.shape[-2:]) != tuple(target.shape) or outputs.ndim > 3:
        fail(
            "radial_dft_error(outputs)",
            f"(T, {target.shape[0]}, {target.shape[1]}) or the target's shape",
            f"shape {tuple(outputs.shape)}",
        )
    check_finite("outputs", outputs)
    check_finite("target", target)
    h, w = target.shape
    r = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))
    edges = np.linspace(0.0, r.max(), bins + 1)
    ring = np.clip(np.searchsorted(edges, r, side="right") - 1, 0, bins - 1)
    onehot = jnp.asarray(ring.reshape(-1)[:, None] == np.arange(bins)[None, :], jnp.float32)
    out = jnp.asarray(outputs)[None] if single else jnp.asarray(outputs)
    f_hat = jnp.fft.fft2(jnp.asarray(target))
    diff = jnp.abs(jnp.fft.fft2(out) - f_hat[None]) ** 2
    num = diff.reshape(diff.shape[0], -1) @ onehot.astype(diff.dtype)
    den = (jnp.abs(f_hat) ** 2).reshape(-1) @ onehot.astype(diff.dtype)
    den = den[None, :]
    err = jnp.where(den > 0, jnp.sqrt(num / jnp.where(den > 0, den, 1.0)), jnp.nan)
    return (err[0] if single else err), edges
