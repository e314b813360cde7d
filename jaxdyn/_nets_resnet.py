"""Average pooling and Wide-ResNet builders for `jaxdyn.nets` (re-exported there).

- `AvgPool(window_shape, strides=None, padding="VALID", count_include_pad=True)`: mean over
  windows of positions of an `(n, H, W, C)` input, as `flax.linen.avg_pool` computes it.
  Its infinite-width kernel is exact: pooling is a fixed linear map `A` on the positions of
  each axis, so every pixel-pixel covariance (NNGP and NTK alike) becomes `A_h A_w K A_h^T
  A_w^T` (`avg_pool_kernel`).
- `WideResnetBlock(channels, ...)`: the pre-activation residual block of Zagoruyko &
  Komodakis with a constant channel count, as neural-tangents' example builds it,
  `x + Conv(Relu(Conv(Relu(x))))`, i.e. `serial(FanOut(2), parallel(serial(Relu, Conv, Relu,
  Conv), Identity()), FanInSum())`; `WideResnet(...)` stacks blocks between a Conv stem and a
  pooled Dense readout.

Everything here is built from `jaxdyn.nets` layers, so the networks carry a
`linear_structure` (`method="structured"` empirical NTKs) and an infinite-width `kernel_fn`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import infinite
from jaxdyn import nets as _nets
from jaxdyn._checks import check_bool, check_int, describe, fail
from jaxdyn._nets_kernel import KernelFn
from jaxdyn.infinite import KernelState

__all__ = ["AvgPool", "WideResnet", "WideResnetBlock", "avg_pool_kernel", "pool_matrix"]


def pool_matrix(
    size: int, window: int, stride: int, padding: str, count_include_pad: bool = True
) -> np.ndarray:
    """`(out, size)` matrix `A` of average pooling along one axis: `y = A x`.

    Padding as `lax.conv_general_dilated` pads (`infinite.conv_output_size`); padded zeros
    count in the mean when `count_include_pad`, else each window averages its real entries.
    """
    out, lo, _ = infinite.conv_output_size(size, window, stride, padding)
    a = np.zeros((out, size))
    for p in range(out):
        cols = [i for i in range(p * stride - lo, p * stride - lo + window) if 0 <= i < size]
        a[p, cols] = 1.0 / (window if count_include_pad else len(cols))
    return a


def avg_pool_kernel(
    k: KernelState,
    window_shape: Sequence[int],
    strides: Sequence[int],
    padding: str,
    count_include_pad: bool = True,
) -> KernelState:
    """Kernel after `AvgPool`: each pair axis `(H, H')`, `(W, W')` multiplied by the
    pooling matrix on both sides. Pooling has no parameters, so the NTK is mapped like the
    NNGP, and a Gaussian input stays Gaussian."""
    mats = [
        pool_matrix(n, f, s, padding, count_include_pad)
        for n, f, s in zip(k.spatial, window_shape, strides)
    ]

    def pool(a, nb):
        for s, m in enumerate(mats):
            m = jnp.asarray(m, a.dtype)
            for ax in (nb + 2 * s, nb + 2 * s + 1):
                a = jnp.moveaxis(
                    jnp.tensordot(m, a, axes=[[1], [ax]], precision=jax.lax.Precision.HIGHEST),
                    0,
                    ax,
                )
        return a

    cov1 = pool(k.cov1, 1)
    return k._replace(
        cov1=cov1,
        nngp=pool(k.nngp, 2),
        cov2=cov1 if k.cov2 is k.cov1 else pool(k.cov2, 1),
        ntk=pool(k.ntk, 2),
        spatial=tuple(m.shape[0] for m in mats),
    )


def AvgPool(
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str = "VALID",
    count_include_pad: bool = True,
) -> _nets.Layer:
    """Average pooling of NHWC inputs `(n, H, W, C)` over `window_shape` windows.

    Args:
      window_shape: `(wh, ww)` positive ints.
      strides: `(sh, sw)`; None for `(1, 1)` (flax's default; pass `window_shape` for
        non-overlapping windows).
      padding: "VALID" or "SAME" (zeros, placed as `lax.conv_general_dilated` places them).
      count_include_pad: padded zeros count in each window's mean (flax's default;
        neural-tangents' `normalize_edges=False`); False averages the real entries only.
    """
    window_shape = _nets._check_pair("window_shape", window_shape, "(wh, ww)")
    strides = (1, 1) if strides is None else _nets._check_pair("strides", strides, "(sh, sw)")
    if not isinstance(padding, str) or padding not in ("VALID", "SAME"):
        fail("padding", "'VALID' or 'SAME'", describe(padding))
    count_include_pad = check_bool("count_include_pad", count_include_pad)

    def out_shape(shape):
        _nets._need_rank("AvgPool", shape, 4, "(n, H, W, C)")
        sp = [
            infinite.conv_output_size(int(n), f, s, padding)[0]
            for n, f, s in zip(shape[1:3], window_shape, strides)
        ]
        if min(sp) < 1:
            raise ValueError(
                f"AvgPool with window {window_shape} and padding {padding!r} needs images of "
                f"at least that size; got input shape {tuple(shape)}."
            )
        return (shape[0], *sp, shape[-1])

    def pool(x):
        dims, st = (1, *window_shape, 1), (1, *strides, 1)
        total = jax.lax.reduce_window(x, np.zeros((), x.dtype), jax.lax.add, dims, st, padding)
        if count_include_pad:
            return total / math.prod(window_shape)
        ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
        count = jax.lax.reduce_window(ones, np.zeros((), x.dtype), jax.lax.add, dims, st, padding)
        return total / count

    def init_fn(key, input_shape):
        return out_shape(_nets._check_input_shape("AvgPool", input_shape)), ()

    def apply_fn(params, x):
        out_shape(x.shape)
        return pool(x)

    def transform(k):
        out_shape(_nets._kshape(k))
        return avg_pool_kernel(k, window_shape, strides, padding, count_include_pad)

    return _nets._per_example(
        _nets.Layer(init_fn, apply_fn, KernelFn(transform, f"AvgPool({window_shape})")), pool
    )


def WideResnetBlock(
    channels: int,
    *,
    filter_shape: Sequence[int] = (3, 3),
    W_std: float = 1.0,
    b_std: float | None = 0.0,
    parameterization: str = "ntk",
) -> _nets.Layer:
    """Pre-activation residual block of constant width: `x + Conv(Relu(Conv(Relu(x))))`.

    Both convolutions have `channels` outputs and SAME padding, so the input must already
    have `channels` channels (the block is an identity skip plus a residual branch). As
    `FanInSum` requires, the block input must be Gaussian: the output of a Conv (e.g. the
    stem of `WideResnet`) or of another block.
    """
    channels = check_int("channels", channels, minimum=1)
    conv = lambda: _nets.Conv(  # noqa: E731
        channels,
        filter_shape,
        padding="SAME",
        W_std=W_std,
        b_std=b_std,
        parameterization=parameterization,
    )
    main = _nets.serial(_nets.Relu(), conv(), _nets.Relu(), conv())
    return _nets.serial(_nets.FanOut(2), _nets.parallel(main, _nets.Identity()), _nets.FanInSum())


def WideResnet(
    blocks: int,
    channels: int,
    out: int,
    *,
    filter_shape: Sequence[int] = (3, 3),
    W_std: float = 1.0,
    b_std: float | None = 0.0,
    parameterization: str = "ntk",
) -> _nets.Layer:
    """`Conv(channels)` stem, `blocks` x `WideResnetBlock(channels)`, `Relu`,
    `GlobalAvgPool`, `Dense(out)`: a Wide ResNet of one group (constant width), on
    `(n, H, W, C)` inputs with outputs `(n, out)`."""
    blocks = check_int("blocks", blocks, minimum=1)
    kw = dict(W_std=W_std, b_std=b_std, parameterization=parameterization)
    return _nets.serial(
        _nets.Conv(channels, filter_shape, padding="SAME", **kw),
        *[WideResnetBlock(channels, filter_shape=filter_shape, **kw) for _ in range(blocks)],
        _nets.Relu(),
        _nets.GlobalAvgPool(),
        _nets.Dense(out, **kw),
    )
