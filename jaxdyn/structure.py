"""The linear-layer structure of a network, which `method="structured"` NTKs exploit.

A network whose parameters all sit in linear layers `z = c_W op(h, W) + c_b b` (Dense:
`op = h @ W`; Conv: a 2D convolution), joined by parameter-free per-example maps, has
per-example weight gradients that factor: for a Dense layer `d f_a / d W = c_W h g_a^T`, with
`h` the layer input and `g_a = d f_a / d z` the output gradient at its pre-activation. The NTK
is then a sum over layers of products of small Gram matrices, computed with matrix products
and without any per-parameter Jacobian (`jaxdyn.ntk`).

A model advertises this by carrying a `LinearStructure` as `apply_fn.linear_structure`.
`jaxdyn.nets.serial` sets it on networks of Dense/Conv layers and activations;
`jaxdyn.adapters.from_linen` / `from_nnx` set it on flax models whose parameters are all in
Dense/Linear layers. Anyone can set it on their own `apply_fn` (see `LinearStructure`).

Example:
  >>> structure = jaxdyn.structure.of(apply_fn)      # None if the model has none
  >>> [layer.conv is None for layer in structure.layers(params)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax

__all__ = ["ConvSpec", "LinearLayer", "LinearStructure", "Tap", "get", "of"]

PyTree = Any
Tap = Callable[[int, jax.Array, jax.Array], jax.Array]
"""`tap(l, h, z) -> z'`: called by `LinearStructure.apply` for the l-th linear layer with its
input `h` and output `z` (bias included); the layer's output becomes `z'`."""


class ConvSpec(NamedTuple):
    """A 2D convolution `lax.conv_general_dilated(h, W, strides, padding)` with NHWC inputs
    `h (n, H, W, C)` and HWIO weights `W (fh, fw, C, out)`."""

    filter_shape: tuple[int, int]
    strides: tuple[int, int]
    padding: str | tuple[tuple[int, int], tuple[int, int]]


class LinearLayer(NamedTuple):
    """One linear layer `z = c_W op(h, W) + c_b b`.

    `w_leaf` / `b_leaf` index `jax.tree_util.tree_leaves(params)` (`b_leaf` None without a
    bias). `conv` is None for a Dense layer (`h (n, fan_in)`, `W (fan_in, width)`, `z (n,
    width)`) and a `ConvSpec` for a convolution.
    """

    w_leaf: int
    b_leaf: int | None
    c_W: float
    c_b: float
    conv: ConvSpec | None = None


@runtime_checkable
class LinearStructure(Protocol):
    """What `method="structured"` needs to know about a model.

    Contract (checked where it can be: every parameter leaf must belong to a layer, and
    `apply` must call `tap` once per layer, in order):

    - `layers(params)` lists the linear layers in the order `apply` calls them.
    - `apply(params, x, tap)` computes `apply_fn(params, x)`, calling `tap(l, h, z)` with each
      linear layer's input and output and continuing with its return value.
    - The parameters of each layer are used by that layer only, once per example; everything
      between the layers is parameter-free and maps each example on its own.
    """

    def layers(self, params: PyTree) -> Sequence[LinearLayer]: ...

    def apply(self, params: PyTree, x: jax.Array, tap: Tap) -> jax.Array: ...


def of(apply_fn: Any) -> LinearStructure | None:
    """The linear structure of a model: `apply_fn.linear_structure` if it is a
    `LinearStructure`, else None."""
    structure = getattr(apply_fn, "linear_structure", None)
    if isinstance(structure, LinearStructure):
        return structure
    return None


get = of
"""The former name of `of` (kept so existing code works; `get=` elsewhere in jaxdyn selects
kernels, which this does not)."""
