"""The linear structure (`jaxdyn.structure.LinearStructure`) of `jaxdyn.nets.serial` networks:
which of their parameters are Dense/Conv weights, with what scales, and how to run the network
with a tap on every linear layer. Used by `method="structured"` of the empirical NTK."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax

from jaxdyn.structure import LinearLayer, Tap

PyTree = Any


def _at(tree, path: tuple[int, ...]):
    for i in path:
        tree = tree[i]
    return tree


class NetsStructure:
    """The `jaxdyn.structure.LinearStructure` of a `serial` network of Dense/Conv layers and
    parameter-free per-example layers (activations, Identity, Flatten, GlobalAvgPool).

    Each op is `("linear", path, parameterization, W_std, b_std, conv)` with `path` the
    indices leading to the layer's `(W, b)` inside `params` and `conv` a `ConvSpec` or None,
    or `("map", fn)` for a parameter-free per-example layer.
    """

    def __init__(self, ops: tuple, linear_apply: Callable[..., jax.Array]):
        self.ops = ops
        self._linear_apply = linear_apply  # (params, x, param, W_std, b_std, conv) -> z

    def layers(self, params: PyTree) -> list[LinearLayer]:
        """Leaf indices and scales of the linear layers, in network order."""
        leaves, treedef = jax.tree_util.tree_flatten(params)
        index = jax.tree_util.tree_unflatten(treedef, list(range(len(leaves))))
        out = []
        for op in self.ops:
            if op[0] != "linear":
                continue
            _, path, param, W_std, b_std, conv = op
            w_leaf, b_leaf = _at(index, path)
            fan_in = math.prod(leaves[w_leaf].shape[:-1])
            if param == "ntk":
                c_W, c_b = W_std / math.sqrt(fan_in), (b_std or 0.0)
            else:
                c_W, c_b = 1.0, 1.0
            out.append(LinearLayer(w_leaf, b_leaf, float(c_W), float(c_b), conv))
        return out

    def apply(self, params: PyTree, x: jax.Array, tap: Tap) -> jax.Array:
        """`apply_fn(params, x)`, with `tap(l, h, z)` on each linear layer's input and output."""
        l = 0
        for op in self.ops:
            if op[0] == "map":
                x = op[1](x)
                continue
            _, path, param, W_std, b_std, conv = op
            lp = _at(params, path)
            z = self._linear_apply(lp, x, param, W_std, b_std, conv)
            x = tap(l, x, z)
            l += 1
        return x


def serial_structure(
    layers: Sequence[Any], linear_apply: Callable[..., jax.Array]
) -> NetsStructure | None:
    """The linear structure of `serial(*layers)`, or None unless every layer is a Dense or
    Conv, a parameter-free per-example layer, or a serial of those, with at least one of the
    linear layers. `linear_apply(params, x, param, W_std, b_std, conv)` computes a linear
    layer's output (nets' Dense/Conv arithmetic)."""
    ops = []
    for i, l in enumerate(layers):
        linear = getattr(l.apply_fn, "_linear_args", None)
        per_example = getattr(l.apply_fn, "_per_example_map", None)
        inner = getattr(l.apply_fn, "linear_structure", None)
        if linear is not None:
            ops.append(("linear", (i,), *linear))
        elif per_example is not None:
            ops.append(("map", per_example))
        elif isinstance(inner, NetsStructure):
            ops.extend(
                op if op[0] == "map" else ("linear", (i, *op[1]), *op[2:]) for op in inner.ops
            )
        else:
            return None
    if not any(op[0] == "linear" for op in ops):
        return None
    return NetsStructure(tuple(ops), linear_apply)
