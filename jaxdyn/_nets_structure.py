"""The linear structure (`jaxdyn.structure.LinearStructure`) of `jaxdyn.nets.serial` networks:
which of their parameters are Dense/Conv weights, with what scales, and how to run the network
with a tap on every linear layer. Used by `method="structured"` of the empirical NTK.

Residual networks are covered: `FanOut` and `FanInSum` are parameter-free per-example maps
(one array to a list of copies, a list to its sum) and a `parallel` layer runs each branch's
ops on its own input, so a Wide-ResNet block `serial(FanOut(2), parallel(main, Identity()),
FanInSum())` has a structure whenever its branches do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax

from jaxdyn.structure import LinearLayer, Tap

PyTree = Any
# An op is ("linear", path, parameterization, W_std, b_std, conv), ("map", fn) or
# ("parallel", path, branches) with `branches` one op tuple per branch, whose paths are
# relative to that branch's params (`params_at(path)[j]`).
Ops = tuple


def _at(tree, path: tuple[int, ...]):
    for i in path:
        tree = tree[i]
    return tree


class NetsStructure:
    """The `jaxdyn.structure.LinearStructure` of a `serial` network of Dense/Conv layers,
    parameter-free per-example layers (activations, Identity, Flatten, pooling, FanOut,
    FanInSum) and `parallel` branches of those.

    Each op is `("linear", path, parameterization, W_std, b_std, conv)` with `path` the
    indices leading to the layer's `(W, b)` inside `params` and `conv` a `ConvSpec` or None,
    `("map", fn)` for a parameter-free per-example layer, or `("parallel", path, branches)`
    (see `Ops`). Layers are numbered depth first, branches in order.
    """

    def __init__(self, ops: Ops, linear_apply: Callable[..., jax.Array]):
        self.ops = ops
        self._linear_apply = linear_apply  # (params, x, param, W_std, b_std, conv) -> z

    def layers(self, params: PyTree) -> list[LinearLayer]:
        """Leaf indices and scales of the linear layers, in the order `apply` taps them."""
        leaves, treedef = jax.tree_util.tree_flatten(params)
        index = jax.tree_util.tree_unflatten(treedef, list(range(len(leaves))))
        out: list[LinearLayer] = []

        def walk(ops, idx):
            for op in ops:
                if op[0] == "parallel":
                    sub = _at(idx, op[1])
                    for branch, sub_j in zip(op[2], sub):
                        walk(branch, sub_j)
                    continue
                if op[0] != "linear":
                    continue
                _, path, param, W_std, b_std, conv = op
                w_leaf, b_leaf = _at(idx, path)
                fan_in = math.prod(leaves[w_leaf].shape[:-1])
                if param == "ntk":
                    c_W, c_b = W_std / math.sqrt(fan_in), (b_std or 0.0)
                else:
                    c_W, c_b = 1.0, 1.0
                out.append(LinearLayer(w_leaf, b_leaf, float(c_W), float(c_b), conv))

        walk(self.ops, index)
        return out

    def apply(self, params: PyTree, x: jax.Array, tap: Tap) -> jax.Array:
        """`apply_fn(params, x)`, with `tap(l, h, z)` on each linear layer's input and output."""
        count = [0]

        def run(ops, p, x):
            for op in ops:
                if op[0] == "map":
                    x = op[1](x)
                elif op[0] == "parallel":
                    sub = _at(p, op[1])
                    x = [run(branch, sub_j, x_j) for branch, sub_j, x_j in zip(op[2], sub, x)]
                else:
                    _, path, param, W_std, b_std, conv = op
                    z = self._linear_apply(_at(p, path), x, param, W_std, b_std, conv)
                    x = tap(count[0], x, z)
                    count[0] += 1
            return x

        return run(self.ops, params, x)


def _prefix(ops: Ops, i: int) -> Ops:
    """`ops` of the i-th layer of a serial, with paths relative to the serial's params."""
    return tuple(op if op[0] == "map" else (op[0], (i, *op[1]), *op[2:]) for op in ops)


def layer_ops(layer: Any) -> Ops | None:
    """The ops of one layer relative to its own params, or None when it has no structure."""
    fn = layer.apply_fn
    linear = getattr(fn, "_linear_args", None)
    if linear is not None:
        return (("linear", (), *linear),)
    per_example = getattr(fn, "_per_example_map", None)
    if per_example is not None:
        return (("map", per_example),)
    return getattr(fn, "_structure_ops", None)  # a serial or a parallel


def serial_ops(layers: Sequence[Any]) -> Ops | None:
    """The ops of `serial(*layers)`, or None unless every layer has ops."""
    ops: list = []
    for i, l in enumerate(layers):
        inner = layer_ops(l)
        if inner is None:
            return None
        ops.extend(_prefix(inner, i))
    return tuple(ops)


def parallel_ops(layers: Sequence[Any]) -> Ops | None:
    """The ops of `parallel(*layers)`, or None unless every branch has ops."""
    branches = [layer_ops(l) for l in layers]
    if any(b is None for b in branches):
        return None
    return (("parallel", (), tuple(branches)),)


def _has_linear(ops: Ops) -> bool:
    return any(
        op[0] == "linear" or (op[0] == "parallel" and any(_has_linear(b) for b in op[2]))
        for op in ops
    )


def serial_structure(
    layers: Sequence[Any], linear_apply: Callable[..., jax.Array]
) -> NetsStructure | None:
    """The linear structure of `serial(*layers)`, or None unless every layer is a Dense or
    Conv, a parameter-free per-example layer, or a serial / parallel of those, with at least
    one linear layer. `linear_apply(params, x, param, W_std, b_std, conv)` computes a linear
    layer's output (nets' Dense/Conv arithmetic)."""
    ops = serial_ops(layers)
    if ops is None or not _has_linear(ops):
        return None
    return NetsStructure(ops, linear_apply)
