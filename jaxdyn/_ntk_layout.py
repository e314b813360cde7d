"""The output layout of an empirical NTK: which output axes are traced, the result's shape,
and the one contraction of per-example derivatives that every method ends with.

Private to `jaxdyn.ntk` (conventions in its module docstring).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxdyn._checks import check_axes, check_model_input, fail

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array], jax.Array]
HIGHEST = jax.lax.Precision.HIGHEST


class Layout(NamedTuple):
    """Output layout of one example: shape without batch axis, and normalised trace axes."""

    out_shape: tuple[int, ...]
    traced: tuple[int, ...]  # positions within out_shape

    @property
    def out_size(self) -> int:
        return int(math.prod(self.out_shape))

    @property
    def traced_size(self) -> int:
        return int(math.prod(self.out_shape[a] for a in self.traced))

    def kernel_shape(self, n1: int, n2: int) -> tuple[int, ...]:
        pairs = [d for a, d in enumerate(self.out_shape) if a not in self.traced for _ in (0, 1)]
        return (n1, n2, *pairs)

    def einsum_letters(self) -> tuple[str, str, str]:
        """Index strings for (example-1 outputs, example-2 outputs, result pairs)."""
        letters = iter("abcdefghklmnopqrstuvwxy")
        c1, c2 = [], []
        for a in range(len(self.out_shape)):
            l1 = next(letters)
            c1.append(l1)
            c2.append(l1 if a in self.traced else next(letters))
        pairs = "".join(c1[a] + c2[a] for a in range(len(self.out_shape)) if a not in self.traced)
        return "".join(c1), "".join(c2), pairs


def layout(apply_fn: ApplyFn, params: PyTree, x1: jax.Array, trace_axes: tuple[int, ...]) -> Layout:
    """The `Layout` of `apply_fn`'s outputs, from an abstract evaluation on `x1`.

    Raises:
      TypeError, ValueError: `apply_fn` refuses `params` / `x1`, returns something other than
        one array with the batch axis first, or `trace_axes` are not output axes.
    """
    # The whole of x1, abstractly (no computation), so a refusal names the user's shape.
    n = x1.shape[0] if x1.ndim else 1
    out = check_model_input(apply_fn, params, jax.ShapeDtypeStruct(x1.shape, x1.dtype), x_name="x1")
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(
            "`apply_fn(params, x)` must return a single array with the batch axis first; got "
            f"{jax.tree_util.tree_structure(out)}. Wrap it to return one array."
        )
    if len(out.shape) < 1 or out.shape[0] != n:
        raise ValueError(
            f"`apply_fn(params, x)` must keep the batch axis first: a batch of {n} gave output "
            f"shape {tuple(out.shape)}."
        )
    ndim = len(out.shape)
    outputs = f"(n, {', '.join(map(str, out.shape[1:]))})"
    if any(not -ndim <= a < ndim for a in trace_axes):
        fail(
            "trace_axes",
            f"output axes of the outputs {outputs}, from 1 to {ndim - 1} or {-ndim + 1} to -1",
            f"{tuple(trace_axes)} (out of range)",
        )
    traced = check_axes("trace_axes", trace_axes, ndim)
    if 0 in traced:
        fail(
            "trace_axes",
            f"output axes of the outputs {outputs}, not the batch axis 0",
            f"{tuple(trace_axes)}",
        )
    return Layout(tuple(out.shape[1:]), tuple(sorted(a - 1 for a in traced)))


def contract(j1: jax.Array, j2: jax.Array, layout: Layout) -> jax.Array:
    """`(n1, *out, p), (n2, *out, p) -> (n1, n2, *pairs)`: sum over `p`, mean over the traced
    output axes."""
    c1, c2, pairs = layout.einsum_letters()
    return traced_mean(jnp.einsum(f"i{c1}z,j{c2}z->ij{pairs}", j1, j2, precision=HIGHEST), layout)


def traced_mean(k: jax.Array, layout: Layout) -> jax.Array:
    """A kernel summed over the traced output axes, divided into their mean."""
    return k / layout.traced_size if layout.traced else k
