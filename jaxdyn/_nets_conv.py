"""`conv2d`: the 2D convolution of `jaxdyn.nets.Conv`, with a JVP whose transpose stays fast
inside loops on XLA's CPU backend.

Reverse mode turns the input tangent of `conv(x, W)` into a convolution with the flipped
kernel whose input and output feature axes are swapped (`dim_labels ..._01oi`). At the top
level of a program XLA's CPU compiler transposes that kernel into the layout its fast
convolution needs; inside a `while` loop (`lax.scan`, `lax.map`, `fori_loop`) it does not, and
falls back to a generic loop nest, 25-50x slower (measured; jax-ml/jax#12868). Training a conv
net under `lax.scan` (every `jaxdyn.train.trajectory`) and the blocked structured NTK of conv
nets (one `lax.map` step per block) hit exactly that case.

Here the input tangent is written against a materialized copy of the kernel with swapped
feature axes, `W_oi (fh, fw, out, C)`, kept apart by `lax.optimization_barrier` so XLA cannot
fold the swap back into the convolution. Its transpose, the input gradient, is then a
convolution in the fast layout everywhere. The forward tangent of the input (forward mode
only: `jax.jvp`, `jax.linearize`) is the one that uses the swapped layout; XLA fixes it at the
top level but not inside loops. The values are those of `lax.conv_general_dilated` to
rounding, in every mode of differentiation and under `vmap`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

__all__ = ["conv2d"]

_HWIO = ("NHWC", "HWIO", "NHWC")
_HWOI = ("NHWC", "HWOI", "NHWC")


def _conv(x, W, strides, padding, dimension_numbers):
    return lax.conv_general_dilated(
        x,
        W,
        strides,
        padding,
        dimension_numbers=dimension_numbers,
        precision=lax.Precision.HIGHEST,
    )


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def conv2d(x: jax.Array, W: jax.Array, strides: tuple, padding) -> jax.Array:
    """`lax.conv_general_dilated(x, W, strides, padding)` with NHWC `x (n, H, W, C)` and HWIO
    `W (fh, fw, C, out)` -> `(n, H', W', out)`, at HIGHEST precision."""
    return _conv(x, W, strides, padding, _HWIO)


def _weight_tangent(x, dW, strides, padding):
    """`conv(x, dW)` laid out so that its transpose, the weight gradient, is a convolution in
    XLA's fast layout (`b01f_01io->b01f`): the input as `(C, H, W, n)`, the output gradient as
    `(H', W', n, out)` and the weight gradient as `(C, fh, fw, out)`, each a physical copy
    behind a barrier (XLA would otherwise fold the transposes back into the convolution)."""
    (x_t,) = lax.optimization_barrier((jnp.transpose(x, (3, 1, 2, 0)),))
    (dW_t,) = lax.optimization_barrier((jnp.transpose(dW, (2, 0, 1, 3)),))
    z = _conv(x_t, dW_t, strides, padding, ("CHWN", "IHWO", "HWNC"))
    (z,) = lax.optimization_barrier((z,))
    return jnp.transpose(z, (2, 0, 1, 3))


def _conv2d_jvp(strides, padding, primals, tangents):
    x, W = primals
    dx, dW = tangents
    out = _conv(x, W, strides, padding, _HWIO)
    parts = []
    if not isinstance(dx, SymbolicZero):
        # the same product as conv(dx, W); see the module docstring for the swapped copy
        (W_oi,) = lax.optimization_barrier((jnp.swapaxes(W, 2, 3),))
        parts.append(_conv(dx, W_oi, strides, padding, _HWOI))
    if not isinstance(dW, SymbolicZero):
        parts.append(_weight_tangent(x, dW, strides, padding))
    if not parts:
        return out, jnp.zeros_like(out)
    return out, functools.reduce(jnp.add, parts)


conv2d.defjvp(_conv2d_jvp, symbolic_zeros=True)
