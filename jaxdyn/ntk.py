"""Empirical neural tangent kernel of any `apply_fn(params, x)`.

`Theta(x1, x2) = J(x1) J(x2)^T` with `J = d apply_fn / d params` at `params`. Methods:

- `"jacobian"`: per-example Jacobians (`vmap` of `jacrev`), contracted leaf by leaf.
  Memory `(n1 + n2) * k * P` numbers for P parameters.
- `"ntvp"`: NTK-vector products. For each example of `x2` and each output, a vjp gives
  the parameter cotangent and a jvp through the `x1` batch gives one column of the kernel.
  Never holds `J(x1)`; costs about `n1 * n2 * k` forward passes.
- `"structured"`: for models with a `jaxdyn.structure.LinearStructure` (`jaxdyn.nets`
  Dense/Conv networks, flax models of Dense layers). A Dense layer's per-example gradient is
  an outer product, so its NTK part is `(c_W^2 H_l H_l'^T + c_b^2) * (G_l G_l'^T)` from the
  layer inputs `H_l` and the output gradients `G_l` at its output: `k` batch vjps and
  matrix products, no per-parameter Jacobian. A Conv layer's per-example weight gradient is
  `patches^T G_l`, contracted directly (its weights are few; its positions many).
- `"auto"`: `"structured"` where available, otherwise one picked with the cost and memory
  model in `ntk_cost`, which also says why.

`batch_size` tiles the work into blocks evaluated under `lax.map`, so memory stays bounded
for any n and the computation remains one compiled program; by default the block is the
largest that fits a memory budget, and a result too big for it is assembled on host. The
structured kernel of x with itself (n >= 1024) is computed from the blocks i <= j only.
`devices` shards the rows of x1 over several devices with `jax.shard_map`.

Shapes and trace convention follow neural-tangents: outputs `(n, *out)`; `trace_axes` are
output axes averaged over (the kernel holds the MEAN over them); remaining output axes come
as adjacent pairs. For `(n, k)` outputs: `trace_axes=(-1,)` gives `(n1, n2)`,
`trace_axes=()` gives `(n1, n2, k, k)`.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import structure as jaxdyn_structure
from jaxdyn._checks import (check_axes, check_batch_size, check_choice, check_finite, check_float,
                            check_inputs, check_model_input, describe, fail, is_concrete)

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array], jax.Array]
KernelFn = Callable[[jax.Array, jax.Array | None, PyTree], jax.Array]

__all__ = ["METHODS", "NTKCost", "empirical_ntk", "ntk_fn", "ntk_cost",
           "ntk_by_group", "ntk_by_group_fn", "param_groups"]

METHODS = ("auto", "jacobian", "ntvp", "structured")
_HIGHEST = jax.lax.Precision.HIGHEST


# --------------------------------------------------------------------------- arguments

def _check_trace_axes(trace_axes: Sequence[int]) -> tuple[int, ...]:
    # A sequence only: neural-tangents' convention, and a bare int here has always been refused.
    if not isinstance(trace_axes, (tuple, list)):
        fail("trace_axes", "a tuple of ints (output axes, e.g. (-1,))", describe(trace_axes),
             TypeError)
    return check_axes("trace_axes", trace_axes, None)


_PRECISIONS = (None, "highest", "high", "default", "float32", "tensorfloat32", "bfloat16")


def _check_memory_budget(memory_budget: float | None) -> float | None:
    return check_float("memory_budget", memory_budget, minimum=0, strict_min=True,
                       allow_none=True, hint="bytes, e.g. 2**30 for 1 GiB")


class _Layout(NamedTuple):
    """Output layout of one example: shape without batch axis, and normalised trace axes."""
    out_shape: tuple[int, ...]
    traced: tuple[int, ...]     # positions within out_shape

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


def _layout(apply_fn: ApplyFn, params: PyTree, x1: jax.Array, trace_axes: tuple[int, ...]) -> _Layout:
    out = check_model_input(apply_fn, params, jax.ShapeDtypeStruct((1, *x1.shape[1:]), x1.dtype),
                            x_name="x1")
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(
            "`apply_fn(params, x)` must return a single array with the batch axis first; got "
            f"{jax.tree_util.tree_structure(out)}. Wrap it to return one array.")
    if len(out.shape) < 1 or out.shape[0] != 1:
        raise ValueError(
            f"`apply_fn(params, x)` must keep the batch axis first: a batch of 1 gave output "
            f"shape {tuple(out.shape)}.")
    ndim = len(out.shape)
    outputs = f"(n, {', '.join(map(str, out.shape[1:]))})"
    if any(not -ndim <= a < ndim for a in trace_axes):
        fail("trace_axes", f"output axes of the outputs {outputs}, from 1 to {ndim - 1} or "
                           f"{-ndim + 1} to -1", f"{tuple(trace_axes)} (out of range)")
    traced = check_axes("trace_axes", trace_axes, ndim)
    if 0 in traced:
        fail("trace_axes", f"output axes of the outputs {outputs}, not the batch axis 0",
             f"{tuple(trace_axes)}")
    return _Layout(tuple(out.shape[1:]), tuple(sorted(a - 1 for a in traced)))


# --------------------------------------------------------------------------- parameter groups

def _path_names(path: tuple) -> tuple[str, ...]:
    names = []
    for k in path:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                names.append(str(getattr(k, attr)))
                break
        else:
            names.append(str(k))
    return tuple(names)


def param_groups(params: PyTree, groups: None | int | Callable[[tuple[str, ...]], str] = None) -> dict[str, list[int]]:
    """Assigns each parameter leaf to a named group (a layer, by default).

    Args:
      params: the model's parameter PyTree.
      groups: `None` groups by the first level of the tree that has more than one child
        (so `{'params': {'Dense_0': ..., 'Dense_1': ...}}` gives `Dense_0`, `Dense_1`, and a
        stax parameter tuple gives `'0'`, `'2'`, ...); an int `d` groups by the first `d`
        keys of each leaf's path; a callable maps a leaf's path (tuple of str) to a name.

    Returns:
      `{group name: [leaf indices in jax.tree_util.tree_leaves(params) order]}`, in
      order of first appearance.
    """
    paths = [_path_names(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    if not paths:
        raise ValueError("`params` has no array leaves; there is nothing to differentiate.")
    if groups is None:
        depth = 0
        while all(len(p) > depth for p in paths) and len({p[:depth + 1] for p in paths}) == 1:
            depth += 1
        name_of = lambda p: "/".join(p[:depth + 1]) or "params"  # noqa: E731
    elif isinstance(groups, int) and not isinstance(groups, bool):
        if groups < 1:
            raise ValueError(f"`groups` as an int is a path depth and must be >= 1; got {groups}.")
        name_of = lambda p: "/".join(p[:groups]) or "params"  # noqa: E731
    elif callable(groups):
        name_of = lambda p: str(groups(p))  # noqa: E731
    else:
        raise TypeError(f"`groups` must be None, an int depth or a callable path -> name; got {groups!r}.")
    out: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        out.setdefault(name_of(p), []).append(i)
    return out


# --------------------------------------------------------------------------- block kernels

def _per_example_jacobian(apply_fn: ApplyFn, params: PyTree, x: jax.Array,
                          layout: _Layout) -> list[jax.Array]:
    """Leaves of d f(x_i) / d params, each flattened to (n, *out, p_leaf)."""
    def single(p, xi):
        return apply_fn(p, xi[None])[0]
    jac = jax.vmap(jax.jacrev(single), in_axes=(None, 0))(params, x)
    lead = 1 + len(layout.out_shape)
    return [leaf.reshape((*leaf.shape[:lead], -1)) for leaf in jax.tree_util.tree_leaves(jac)]


def _contract(j1: jax.Array, j2: jax.Array, layout: _Layout) -> jax.Array:
    c1, c2, pairs = layout.einsum_letters()
    k = jnp.einsum(f"i{c1}z,j{c2}z->ij{pairs}", j1, j2, precision=_HIGHEST)
    return k / layout.traced_size if layout.traced else k


def _jacobian_block(apply_fn, params, x1, x2, layout, groups):
    jac1 = _per_example_jacobian(apply_fn, params, x1, layout)
    jac2 = jac1 if x2 is None else _per_example_jacobian(apply_fn, params, x2, layout)
    return {name: sum(_contract(jac1[i], jac2[i], layout) for i in idx) for name, idx in groups.items()}


def _restrict(apply_fn: ApplyFn, params: PyTree, idx: list[int]):
    """`apply_fn` as a function of the leaves in `idx` only, the others held fixed."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    chosen = [leaves[i] for i in idx]

    def f(sub, x):
        full = list(leaves)
        for i, leaf in zip(idx, sub):
            full[i] = leaf
        return apply_fn(jax.tree_util.tree_unflatten(treedef, full), x)
    return f, chosen


def _ntvp_single(f, p, x1, x2, layout):
    """Kernel (n1, n2, *pairs) of f(p, .) from vjps over x2 examples and jvps over x1."""
    basis = jnp.eye(layout.out_size, dtype=jax.eval_shape(f, p, x1[:1]).dtype)
    basis = basis.reshape((layout.out_size, *layout.out_shape))
    f1 = lambda q: f(q, x1)  # noqa: E731

    def column(x2i):
        _, vjp_fn = jax.vjp(lambda q: f(q, x2i[None])[0], p)

        def one(e):
            (v,) = vjp_fn(e)
            return jax.jvp(f1, (p,), (v,))[1]       # (n1, *out)
        return jax.vmap(one)(basis)                  # (out_size, n1, *out)

    cols = jax.vmap(column)(x2)                      # (n2, out_size, n1, *out)
    cols = cols.reshape((x2.shape[0], *layout.out_shape, x1.shape[0], *layout.out_shape))
    c1, c2, pairs = layout.einsum_letters()
    k = jnp.einsum(f"j{c2}i{c1}->ij{pairs}", cols, precision=_HIGHEST)
    return k / layout.traced_size if layout.traced else k


def _ntvp_block(apply_fn, params, x1, x2, layout, groups):
    x2 = x1 if x2 is None else x2
    out = {}
    n_leaves = len(jax.tree_util.tree_leaves(params))
    for name, idx in groups.items():
        if len(idx) == n_leaves:
            out[name] = _ntvp_single(apply_fn, params, x1, x2, layout)
        else:
            f, sub = _restrict(apply_fn, params, idx)
            out[name] = _ntvp_single(f, sub, x1, x2, layout)
    return out


def _structure(apply_fn: ApplyFn, params: PyTree) -> tuple[Any, str | None]:
    """`(structure, problem)`: the model's `LinearStructure` (or None) and, if it cannot serve
    `params`, why not."""
    structure = jaxdyn_structure.get(apply_fn)
    if structure is None:
        return None, ("`apply_fn` has no `linear_structure` attribute (see jaxdyn.structure): "
                      "it is not a jaxdyn.nets serial network of Dense/Conv layers and "
                      "per-example layers, nor a flax model of Dense layers, passed as is")
    n_leaves = len(jax.tree_util.tree_leaves(params))
    covered = []
    for layer in structure.layers(params):
        covered += [layer.w_leaf] + ([] if layer.b_leaf is None else [layer.b_leaf])
    if sorted(covered) != list(range(n_leaves)):
        return None, (f"its linear layers use parameter leaves {sorted(covered)}, but params "
                      f"has leaves 0..{n_leaves - 1}: every leaf must belong to exactly one layer")
    return structure, None


def _linear_factors(structure, params, x, layout) -> list[dict[str, jax.Array | None]]:
    """Per linear layer, what its NTK part is made of (examples first, then outputs):

    - Dense: `{"h": (n, fan_in) layer inputs, "g": (n, *out, width) output gradients}`;
    - Conv: `{"w": (n, *out, fh fw C width) per-example weight gradients,
      "b": (n, *out, width) bias gradients or None}` (unscaled by `c_W`, `c_b`).
    """
    layers = structure.layers(params)
    n = x.shape[0]
    # The widest dtype: the probes' cotangents are then exact casts of the layers' gradients.
    dtype = jnp.result_type(x.dtype, *(leaf.dtype for leaf in jax.tree_util.tree_leaves(params)))
    shapes = []

    def record(l, h, z):
        shapes.append(z.shape)
        return z
    jax.eval_shape(lambda p, u: structure.apply(p, u, record), params, x)
    if len(shapes) != len(layers):
        raise ValueError(f"The model's linear_structure.apply called `tap` {len(shapes)} times, "
                         f"but its layers() lists {len(layers)} layers; they must agree.")
    probes = [jnp.zeros(shape, dtype) for shape in shapes]

    def run(ps):
        inputs = []

        def tap(l, h, z):
            inputs.append(h)
            return z + ps[l].astype(z.dtype)    # cast: a wider probe must not widen the pass
        return structure.apply(params, x, tap), inputs
    _, vjp_fn, inputs = jax.vjp(run, probes, has_aux=True)
    # Examples do not interact, so one batch vjp with output a selected for every example
    # gives each example's own gradient of f_a.
    basis = jnp.eye(layout.out_size, dtype=dtype).reshape((layout.out_size, 1, *layout.out_shape))
    (grads,) = jax.vmap(vjp_fn)(jnp.broadcast_to(basis, (layout.out_size, n, *layout.out_shape)))
    out = []
    for layer, h, g in zip(layers, inputs, grads):
        g = jnp.moveaxis(g, 0, 1)                     # (n, out_size, *z shape)
        if layer.conv is None:
            out.append({"h": h, "g": g.reshape((n, *layout.out_shape, g.shape[-1]))})
            continue
        spec = layer.conv
        patches = jax.lax.conv_general_dilated_patches(
            h, spec.filter_shape, spec.strides, spec.padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=_HIGHEST)
        patches = patches.reshape((n, -1, patches.shape[-1]))           # (n, S, fh fw C)
        g = g.reshape((n, layout.out_size, -1, g.shape[-1]))            # (n, k, S, width)
        # The weight gradient of a convolution is the sum over positions of patch x gradient;
        # the patch feature order differs from HWIO, which inner products do not see.
        w = jnp.einsum("nsp,nasc->napc", patches, g, precision=_HIGHEST)
        out.append({"w": w.reshape((n, *layout.out_shape, -1)),
                    "b": None if layer.b_leaf is None else
                    jnp.sum(g, axis=2).reshape((n, *layout.out_shape, g.shape[-1]))})
    return out


def _linear_gram(layers, f1, f2, layout, groups):
    """`{group: kernel (n1, n2, *pairs)}` from the factors of x1 and x2."""
    part = {}
    for layer, a, b in zip(layers, f1, f2):
        if layer.conv is None:
            gram_g = _contract(a["g"], b["g"], layout)                     # (n1, n2, *pairs)
            gram_h = jnp.einsum("iz,jz->ij", a["h"], b["h"], precision=_HIGHEST)
            gram_h = gram_h.reshape(gram_h.shape + (1,) * (gram_g.ndim - 2))
            part[layer.w_leaf] = layer.c_W ** 2 * gram_h * gram_g
            if layer.b_leaf is not None:
                part[layer.b_leaf] = layer.c_b ** 2 * gram_g
        else:
            part[layer.w_leaf] = layer.c_W ** 2 * _contract(a["w"], b["w"], layout)
            if layer.b_leaf is not None:
                part[layer.b_leaf] = layer.c_b ** 2 * _contract(a["b"], b["b"], layout)
    return {name: sum(part[i] for i in idx) for name, idx in groups.items()}


def _rows(fn, x: jax.Array, b: int):
    """`fn` over blocks of `b` rows of `x` (any PyTree of arrays with leading axis n) under
    `lax.map`, results concatenated back to n rows."""
    n = jax.tree_util.tree_leaves(x)[0].shape[0]
    if b >= n:
        return fn(x)
    out = jax.lax.map(fn, jax.tree_util.tree_map(lambda a: _blocks(a, b), x))
    return jax.tree_util.tree_map(lambda a: a.reshape((-1, *a.shape[2:]))[:n], out)


# From this many examples, the Gram of x with itself is computed from blocks i <= j only.
_SYMMETRIC_MIN_N = 1024


def _symmetric_gram(layers, f, layout, groups, b: int):
    """`_linear_gram(layers, f, f, ...)` from the blocks `i <= j` of `b` rows (the kernel is
    symmetric, so the others are their transposes): `(nb + 1) / (2 nb)` of the products."""
    n = jax.tree_util.tree_leaves(f)[0].shape[0]
    fb = jax.tree_util.tree_map(lambda a: _blocks(a, b), f)            # (nb, b, ...)
    nb = -(-n // b)
    rows, cols = (jnp.asarray(v) for v in np.triu_indices(nb))

    def block(ij):
        i, j = ij
        return _linear_gram(layers, jax.tree_util.tree_map(lambda a: a[i], fb),
                            jax.tree_util.tree_map(lambda a: a[j], fb), layout, groups)
    blocks = jax.lax.map(block, (rows, cols))                           # (pairs, b, b, *out pairs)

    def assemble(blk):
        # the transpose of block (i, j) swaps its two examples and each output pair
        perm = (0, 2, 1) + tuple(3 + p + d for p in range(0, blk.ndim - 3, 2) for d in (1, 0))
        full = jnp.zeros((nb, nb, *blk.shape[1:]), blk.dtype)
        full = full.at[cols, rows].set(jnp.transpose(blk, perm)).at[rows, cols].set(blk)
        full = jnp.swapaxes(full, 1, 2).reshape((nb * b, nb * b, *blk.shape[3:]))
        return full[:n, :n]
    return jax.tree_util.tree_map(assemble, blocks)


def _structured_kernels(apply_fn, params, x1, x2, layout, groups, b, gather=None):
    """Structured kernels: factors once per block of rows, then Grams per block of x1 rows
    against all of x2 (for x2 = x1, per block pair i <= j only). `gather` (sharded use)
    assembles x2's factors from all devices."""
    structure = jaxdyn_structure.get(apply_fn)
    layers = structure.layers(params)
    factors = functools.partial(_linear_factors, structure, params, layout=layout)
    f1 = _rows(factors, x1, b)
    if x2 is None and gather is None and x1.shape[0] >= _SYMMETRIC_MIN_N:
        return _symmetric_gram(layers, f1, layout, groups, min(b, -(-x1.shape[0] // 4)))
    f2 = f1 if x2 is None else _rows(factors, x2, b)
    if gather is not None:
        f2 = gather(f2)
    return _rows(lambda f: _linear_gram(layers, f, f2, layout, groups), f1, b)


_BLOCKS = {"jacobian": _jacobian_block, "ntvp": _ntvp_block}


def _blocks(x: jax.Array, b: int) -> jax.Array:
    """(n, ...) -> (ceil(n / b), b, ...), padding by repeating the last example (any model is
    finite on a real input, which zeros do not guarantee); padded rows are cropped later."""
    n = x.shape[0]
    nb = -(-n // b)
    pad = nb * b - n
    if pad:
        x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)], axis=0)
    return x.reshape((nb, b, *x.shape[1:]))


def _tiled(block_fn, params, x1, x2, batch_size, layout):
    """Evaluates `block_fn` on blocks of x1 x x2 under nested `lax.map` and reassembles."""
    x2_ = x1 if x2 is None else x2
    n1, n2 = x1.shape[0], x2_.shape[0]
    b1, b2 = min(batch_size, n1), min(batch_size, n2)
    if b1 == n1 and b2 == n2:
        return block_fn(params, x1, x2)
    xb1, xb2 = _blocks(x1, b1), _blocks(x2_, b2)
    k = jax.lax.map(lambda u: jax.lax.map(lambda v: block_fn(params, u, v), xb2), xb1)

    def assemble(blk):                     # (nb1, nb2, b1, b2, *pairs)
        blk = jnp.swapaxes(blk, 1, 2)
        blk = blk.reshape((xb1.shape[0] * b1, xb2.shape[0] * b2, *blk.shape[4:]))
        return blk[:n1, :n2]
    return jax.tree_util.tree_map(assemble, k)


# --------------------------------------------------------------------------- cost model

class NTKCost(NamedTuple):
    """What each method would cost for one kernel call, and how `"auto"` computes it.

    `flops` and `memory_bytes` are estimates per method for the whole call at the chosen
    block size (`memory_bytes` includes the result unless it is assembled on host; `flops`
    weighs the Jacobian contraction by its measured slowness on CPU, see
    `_JACOBIAN_CONTRACTION_COST`);
    `forward_flops` is XLA's count for one example's forward pass. `block_shape` is
    `(rows, cols)` of the x1 x x2 blocks (`rows` rows of x1 against all of x2 for
    `"structured"`); `on_host` says the result is too big for the memory budget and is
    assembled block row by block row in host memory (a numpy array).
    """
    method: str
    reason: str
    flops: dict[str, float]
    memory_bytes: dict[str, float]
    forward_flops: float
    num_params: int
    block_shape: tuple[int, int]
    on_host: bool = False


def _default_memory_budget() -> float:
    dev = jax.devices()[0]
    try:
        stats = dev.memory_stats() or {}
    except Exception:  # noqa: BLE001 - backends without memory stats
        stats = {}
    if "bytes_limit" in stats:
        return 0.5 * float(stats["bytes_limit"])
    try:
        return 0.25 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 4.0 * 2**30


# Measured on CPU (benchmarks/results/compare_nt_*.json, MLP 784-512-512-512-10, n=128): the
# contraction of materialized per-example Jacobians runs ~3x below the flop rate of the
# batched jvps of "ntvp" (43 vs 143 GFLOP/s): it streams (n k x P) matrices through memory.
_JACOBIAN_CONTRACTION_COST = 3.0


def _forward_stats(apply_fn, params, x_example) -> tuple[float, float]:
    """(flops, intermediate floats) of one example's forward pass, from XLA's analyses."""
    p_abs = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params)
    x_abs = jax.ShapeDtypeStruct((1, *x_example.shape[1:]), x_example.dtype)
    num_params = sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(params))
    flops = temp = 0.0
    try:
        compiled = jax.jit(apply_fn).lower(p_abs, x_abs).compile()
        cost = compiled.cost_analysis()
        if isinstance(cost, (list, tuple)):
            cost = cost[0] if cost else {}
        flops = float((cost or {}).get("flops", 0.0))
        memory = compiled.memory_analysis()
        temp = float(getattr(memory, "temp_size_in_bytes", 0) or 0) / jnp.dtype(x_example.dtype).itemsize
    except Exception:  # noqa: BLE001 - the analyses are best effort on every backend
        pass
    return max(flops, 2.0 * num_params), max(temp, float(math.prod(x_example.shape[1:])))


class _StructuredSize(NamedTuple):
    """Per-example numbers of the structured method: floats of stored factors, floats alive
    while computing them, flops per example (beyond the backward passes) and per pair."""
    stored: float
    transient: float
    row_flops: float
    pair_flops: float


def _structured_size(structure, params, x, layout) -> _StructuredSize:
    h_shapes, z_shapes = [], []

    def record(l, h, z):
        h_shapes.append(h.shape)
        z_shapes.append(z.shape)
        return z
    jax.eval_shape(lambda p, u: structure.apply(p, u, record),
                   params, jax.ShapeDtypeStruct((1, *x.shape[1:]), x.dtype))
    k, ku = layout.out_size, layout.out_size // layout.traced_size
    stored = transient = row = pair = 0.0
    for layer, hs, zs in zip(structure.layers(params), h_shapes, z_shapes):
        h_size, z_size, width = math.prod(hs[1:]), math.prod(zs[1:]), zs[-1]
        transient += (k + 2) * z_size + h_size
        if layer.conv is None:
            stored += h_size + k * width
            pair += 2.0 * (h_size + k * ku * width)
        else:
            n_pos, fan_in = z_size // width, math.prod(layer.conv.filter_shape) * hs[-1]
            stored += k * (fan_in + 1) * width
            transient += n_pos * fan_in
            row += 2.0 * k * n_pos * fan_in * width
            pair += 2.0 * k * ku * (fan_in + 1) * width
    return _StructuredSize(stored, transient, row, pair)


def _block_sizes(n: int) -> list[int]:
    """Candidate block sizes, largest first: n, then powers of two below it."""
    out, b = [n], 1 << max(n - 1, 1).bit_length()
    while b > 1:
        b //= 2
        if b < n:
            out.append(b)
    return out


def _cost(apply_fn, params, x1, x2, layout, batch_size, memory_budget, method="auto",
          allow_host=True) -> NTKCost:
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    leaves = jax.tree_util.tree_leaves(params)
    num_params = sum(int(np.prod(leaf.shape)) for leaf in leaves)
    itemsize = max((jnp.dtype(leaf.dtype).itemsize for leaf in leaves), default=4)
    k, ku = layout.out_size, layout.out_size // layout.traced_size
    fwd, act = _forward_stats(apply_fn, params, x1)
    structure, _ = _structure(apply_fn, params)
    size = None if structure is None else _structured_size(structure, params, x1, layout)
    result = n1 * n2 * ku * ku

    def estimate(m: str, b: int, rows: int) -> tuple[float, float]:
        """(flops, bytes) of method m with blocks of b examples and `rows` rows of x1."""
        b1, b2 = min(b, rows), min(b, n2)
        n_blocks = -(-rows // b1) * -(-n2 // b2)
        same = x2 is None and b1 == rows == n2
        jac_rows = (b1 if same else b1 + b2) * k
        if m == "jacobian":
            # A vjp costs ~3 forward passes, a jvp ~2 (forward plus tangent).
            flops = n_blocks * (jac_rows * 3 * fwd + _JACOBIAN_CONTRACTION_COST * 2.0 * b1 * b2
                                * k * ku * num_params)
            mem = jac_rows * (num_params + act) + b1 * b2 * ku * ku
        elif m == "ntvp":
            # the jvps carry a tangent of every intermediate per (x1 example, x2 cotangent)
            flops = n_blocks * (b2 * k * 3 * fwd + b2 * k * b1 * 2 * fwd)
            mem = b2 * k * num_params + b2 * k * b1 * (k + act) + b1 * b2 * ku * ku
        else:   # structured: factors once per row, Grams per pair
            ex = rows + (0 if x2 is None and rows == n2 else n2)
            flops = ex * (k * 3 * fwd + size.row_flops) + rows * n2 * size.pair_flops
            # per layer an H Gram, a G Gram, their product and the running sum per row block
            mem = ex * size.stored + b1 * size.transient + 4 * b1 * n2 * ku * ku
        # blocks are stacked, then reassembled into the result: two copies when blocked
        return flops, itemsize * (mem + (1 + (b1 < rows)) * rows * n2 * ku * ku)

    methods = ["jacobian", "ntvp"] + (["structured"] if structure is not None else [])
    on_host = allow_host and itemsize * result > memory_budget / 2
    rows = n1
    if on_host:   # block rows of x1 against all of x2, each brought to host
        rows = next((b for b in _block_sizes(n1)
                     if min(estimate(m, b, b)[1] for m in methods) <= memory_budget), 1)

    def block(m: str) -> int:
        if batch_size is not None:
            return int(batch_size)
        return next((b for b in _block_sizes(max(rows, n2))
                     if estimate(m, b, rows)[1] <= memory_budget), 1)
    blocks = {m: block(m) for m in methods}
    est = {m: estimate(m, blocks[m], rows) for m in methods}
    flops = {m: est[m][0] * (-(-n1 // rows)) for m in methods}
    memory = {m: est[m][1] for m in methods}
    gib = lambda v: f"{v / 2**30:.3g} GiB"  # noqa: E731
    where = f"; the {gib(itemsize * result)} result is assembled on host" if on_host else ""

    if method != "auto":
        chosen, reason = method, f"{method}: requested"
    elif structure is not None:
        chosen, reason = "structured", "structured: the model has a linear structure"
    else:
        fits = [m for m in ("jacobian", "ntvp") if memory[m] <= memory_budget]
        if fits:
            chosen = min(fits, key=lambda m: flops[m])
            other = "ntvp" if chosen == "jacobian" else "jacobian"
            if other in fits:
                reason = (f"{chosen}: fewer flops ({flops[chosen]:.3g} vs {flops[other]:.3g} for "
                          f"{other}); both fit the {gib(memory_budget)} budget")
            else:
                reason = (f"{chosen}: {other} needs {gib(memory[other])}, over the "
                          f"{gib(memory_budget)} budget; {chosen} needs {gib(memory[chosen])}")
        else:
            chosen = min(("jacobian", "ntvp"), key=lambda m: memory[m])
            reason = f"{chosen}: it needs the least memory"
    b = blocks.get(chosen, 1)
    if memory.get(chosen, 0.0) > memory_budget:
        reason += (f"; it needs {gib(memory[chosen])}, over the {gib(memory_budget)} budget even "
                   f"at block {min(b, rows)}x{min(b, n2)}"
                   + ("" if batch_size is None else ": pass a smaller `batch_size`"))
    reason += where
    shape = (min(b, rows), n2 if chosen == "structured" else min(b, n2))
    return NTKCost(chosen, reason, flops, memory, fwd, num_params, shape, on_host)


def ntk_cost(apply_fn: ApplyFn, params: PyTree, x1: jax.Array, x2: jax.Array | None = None, *,
             trace_axes: Sequence[int] = (-1,), batch_size: int | None = None,
             memory_budget: float | None = None) -> NTKCost:
    """Cost and memory model behind `method="auto"` and `batch_size=None`: what each method
    would need, which one `auto` picks and why, the block size, and whether the result is
    assembled on host.

    Args:
      apply_fn, params, x1, x2, trace_axes, batch_size: as in `empirical_ntk`.
      memory_budget: bytes a method may use; default half the accelerator's memory, or a
        quarter of host RAM on CPU.

    Returns:
      `NTKCost(method, reason, flops, memory_bytes, forward_flops, num_params, block_shape,
      on_host)`; `flops` and `memory_bytes` have a `"structured"` entry only where that method
      is available (`apply_fn.linear_structure`), and then `auto` always picks it.

    Example:
      >>> jaxdyn.ntk_cost(apply_fn, params, x).reason
      'jacobian: fewer flops (1.2e+08 vs 3.4e+09 for ntvp); both fit the 5.8 GiB budget'
    """
    check_batch_size("batch_size", batch_size)
    memory_budget = _check_memory_budget(memory_budget)
    check_inputs(x1, x2)
    layout = _layout(apply_fn, params, x1, _check_trace_axes(trace_axes))
    budget = _default_memory_budget() if memory_budget is None else memory_budget
    return _cost(apply_fn, params, x1, x2, layout, batch_size, budget)


# --------------------------------------------------------------------------- public kernels

def _check_devices(devices):
    """None, "all" or a sequence of devices -> None or a tuple of devices."""
    if devices is None:
        return None
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(f"`devices` must be None, 'all' or a sequence of jax devices; got {devices!r}.")
        return tuple(jax.devices())
    try:
        devs = tuple(devices)
    except TypeError:
        raise TypeError(f"`devices` must be None, 'all' or a sequence of jax devices; got "
                        f"{type(devices).__name__}.") from None
    if not devs or not all(isinstance(d, jax.Device) for d in devs):
        raise TypeError(f"`devices` must be None, 'all' or a non-empty sequence of jax devices; "
                        f"got {devices!r}.")
    return devs


def _pad_rows(x: jax.Array, multiple: int) -> jax.Array:
    """Pads to a multiple of rows by repeating the last example (cropped afterwards)."""
    pad = -x.shape[0] % multiple
    return x if not pad else jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)], axis=0)


def _kernel_dict_fn(apply_fn, trace_axes, method, batch_size, precision, groups, memory_budget,
                    devices=None):
    """Builds `kernels(x1, x2, params) -> {group: kernel}`, jitted once per input shape."""
    if not callable(apply_fn):
        raise TypeError(f"`apply_fn` must be callable `apply_fn(params, x)`; got {type(apply_fn).__name__}.")
    trace_axes = _check_trace_axes(trace_axes)
    check_choice("method", method, METHODS)
    if method == "structured" and jaxdyn_structure.get(apply_fn) is None:
        raise ValueError(
            "`method='structured'` needs an `apply_fn` with a `linear_structure` attribute "
            "(jaxdyn.structure): the apply_fn of a jaxdyn.nets.serial network of Dense/Conv "
            "layers and per-example layers (no FanOut or parallel), or of a flax model made "
            "of Dense layers (jaxdyn.from_linen / from_nnx), passed as is (not wrapped). Use "
            "method='jacobian', 'ntvp' or 'auto' for other models.")
    check_batch_size("batch_size", batch_size)
    check_choice("precision", precision, _PRECISIONS)
    memory_budget = _check_memory_budget(memory_budget)
    devices = _check_devices(devices)
    n_dev = 1 if devices is None else len(devices)

    def plan(x1, x2, params, allow_host, share=False):
        layout = _layout(apply_fn, params, x1, trace_axes)
        budget = _default_memory_budget() if memory_budget is None else memory_budget
        if share and n_dev > 1:       # each device holds its share of rows
            x1 = jax.ShapeDtypeStruct((-(-x1.shape[0] // n_dev), *x1.shape[1:]), x1.dtype)
        cost = _cost(apply_fn, params, x1, x2, layout, batch_size, budget, method, allow_host)
        if cost.method == "structured":
            _, problem = _structure(apply_fn, params)
            if problem is not None:
                raise ValueError(f"`method='structured'` cannot use this model's structure: {problem}.")
        group_idx = param_groups(params, groups) if groups is not False else \
            {"all": list(range(len(jax.tree_util.tree_leaves(params))))}
        return layout, cost, group_idx

    def local(x1, x2, params, gather=None, x2_full=None):
        """Kernels of x1's rows against x2 (all of it, or gathered from the devices)."""
        layout, cost, group_idx = plan(x1, x2 if x2_full is None else x2_full, params,
                                       allow_host=False)
        b = cost.block_shape[0] if batch_size is None else batch_size
        if cost.method == "structured":
            return _structured_kernels(apply_fn, params, x1, x2, layout, group_idx, b, gather)
        block = functools.partial(_BLOCKS[cost.method], apply_fn, layout=layout, groups=group_idx)
        x2 = x2 if x2_full is None else x2_full
        if b >= max(x1.shape[0], x1.shape[0] if x2 is None else x2.shape[0]):
            return block(params, x1, x2)
        return _tiled(lambda p, u, v: block(p, u, v), params, x1, x2, b, layout)

    if n_dev == 1:
        compute = local
    else:
        mesh = jax.sharding.Mesh(np.array(devices), ("d",))
        rows, whole = jax.sharding.PartitionSpec("d"), jax.sharding.PartitionSpec()

        def compute(x1, x2, params):
            """Rows of x1 (and of x2, for the structured factors) sharded over the devices;
            each device computes its rows of the kernel against all of x2."""
            n1 = x1.shape[0]
            xs2 = x1 if x2 is None else x2
            n2 = xs2.shape[0]
            xp1, xp2 = _pad_rows(x1, n_dev), _pad_rows(xs2, n_dev)

            def gather(f):
                f = jax.tree_util.tree_map(lambda a: jax.lax.all_gather(a, "d", tiled=True), f)
                return jax.tree_util.tree_map(lambda a: a[:n2], f)

            def per_device(u, v, v_full, p):
                return local(u, None if x2 is None else v, p, gather=gather,
                             x2_full=v_full[:n2])
            out = jax.shard_map(per_device, mesh=mesh, in_specs=(rows, rows, whole, whole),
                                out_specs=rows, check_vma=False)(xp1, xp2, xp2, params)
            return jax.tree_util.tree_map(lambda a: a[:n1], out)

    jitted = jax.jit(compute)

    def host(x1, x2, params, slab):
        """Block rows of x1 at a time against all of x2, each copied into a numpy array."""
        n1 = x1.shape[0]
        out = None
        x2_ = x1 if x2 is None else x2
        for start in range(0, n1, slab):
            part = jitted(_pad_rows(x1[start:start + slab], slab)[:slab], x2_, params)
            if out is None:
                out = {name: np.empty((n1, *a.shape[1:]), a.dtype) for name, a in part.items()}
            stop = min(start + slab, n1)
            for name, a in part.items():
                out[name][start:stop] = np.asarray(a[:stop - start])
        return out

    host_rows = {}    # input signature -> rows per host block, or None on device

    def kernels(x1, x2, params):
        check_inputs(x1, x2)
        check_finite("params", params)
        ctx = (contextlib.nullcontext() if precision is None
               # also governs matmuls inside apply_fn: TF32 on Ampere/Hopper would cost ~1e-3
               else jax.default_matmul_precision(precision))
        with ctx:
            out = None
            leaves = jax.tree_util.tree_leaves(params)
            if is_concrete(x1) and (x2 is None or is_concrete(x2)) and \
                    all(is_concrete(a) for a in leaves):
                key = (x1.shape, x1.dtype, None if x2 is None else (x2.shape, x2.dtype),
                       jax.tree_util.tree_structure(params),
                       tuple((a.shape, a.dtype) for a in leaves))
                if key not in host_rows:     # planning compiles a forward pass: once per shape
                    _, cost, _ = plan(x1, x2, params, allow_host=True, share=True)
                    host_rows[key] = cost.block_shape[0] * n_dev if cost.on_host else None
                if host_rows[key] is not None:
                    out = host(x1, x2, params, host_rows[key])
            if out is None:
                out = jitted(x1, x2, params)
        if is_concrete(out):
            for name, k in out.items():
                check_finite(f"NTK ({name}) of apply_fn at params", k)
        return out
    return kernels


def ntk_fn(apply_fn: ApplyFn, *, trace_axes: Sequence[int] = (-1,), method: str = "auto",
           batch_size: int | None = None, precision: str | None = "highest",
           memory_budget: float | None = None, devices=None) -> KernelFn:
    """Empirical NTK function of `apply_fn`, compiled once per input shape and reused.

    Args:
      apply_fn: model `apply_fn(params, x) -> (n, *out)`; examples must not interact
        (no batch statistics), as for any per-example kernel.
      trace_axes: output axes to average over; `(-1,)` gives `(n1, n2)` for `(n, k)`
        outputs, `()` gives `(n1, n2, k, k)`.
      method: `"jacobian"`, `"ntvp"`, `"structured"` (models with a `linear_structure`:
        `jaxdyn.nets` Dense/Conv networks, flax models of Dense layers) or `"auto"` (see
        `ntk_cost`).
      batch_size: evaluate blocks of at most `batch_size` examples (x1 x x2 blocks under
        `lax.map`; for `"structured"`, factors per block of rows and Grams per block of x1
        rows), so memory stays bounded; the result is the same to rounding. `None` chooses
        the largest block that fits `memory_budget`. When even the result does not fit, it
        is assembled on host, block row by block row, and returned as numpy arrays.
      precision: matmul precision while computing the kernel (`"highest"` by default, so
        float32 kernels on GPUs do not silently use TF32); `None` keeps JAX's default.
      memory_budget: bytes for `method="auto"`'s choice, the block size and host assembly
        (default: see `ntk_cost`); per device when sharded.
      devices: `None` (one device), `"all"` (`jax.devices()`) or a sequence of devices: rows
        of x1 are sharded over them with `jax.shard_map` (for `"structured"`, x2's factors
        are computed sharded and all-gathered); the result is sharded by rows. With several
        processes (`jax.distributed`), pass global arrays.

    Returns:
      `kernel(x1, x2, params)`: `x1 (n1, ...)`, `x2 (n2, ...)` or `None` for `x2 = x1`;
      returns `(n1, n2, *pairs)`.

    Raises:
      TypeError, ValueError: bad arguments, here or in `kernel`: a `trace_axes` that is not a
        tuple of distinct output axes, a `memory_budget` that is not a positive number of
        bytes, empty or complex inputs, inputs or `params` that `apply_fn` refuses (named,
        with the model's own error), NaN/Inf in the inputs, `params` or the kernel (the
        value checks only outside jit).

    Example:
      >>> kernel = jaxdyn.ntk_fn(apply_fn)
      >>> kernel(x_train, None, params).shape   # (n, n)
    """
    kernels = _kernel_dict_fn(apply_fn, trace_axes, method, batch_size, precision, False,
                              memory_budget, devices)

    def kernel(x1: jax.Array, x2: jax.Array | None, params: PyTree) -> jax.Array:
        return kernels(x1, x2, params)["all"]
    return kernel


def ntk_by_group_fn(apply_fn: ApplyFn, *, groups=None, trace_axes: Sequence[int] = (-1,),
                    method: str = "auto", batch_size: int | None = None,
                    precision: str | None = "highest", memory_budget: float | None = None,
                    devices=None):
    """Per-group (per-layer) NTK function: `kernels(x1, x2, params) -> {group: kernel}`.

    The NTK is a sum over parameters, so it splits exactly into the kernels of parameter
    groups, `Theta = sum_g J_g J_g^T`; the parts show which layers drive learning and add
    up to `ntk_fn`'s kernel. `groups` as in `param_groups`; other arguments as in `ntk_fn`.
    """
    return _kernel_dict_fn(apply_fn, trace_axes, method, batch_size, precision,
                           groups, memory_budget, devices)


@functools.lru_cache(maxsize=32)
def _cached_ntk_fn(apply_fn, trace_axes, method, batch_size, precision, memory_budget, devices):
    return ntk_fn(apply_fn, trace_axes=trace_axes, method=method, batch_size=batch_size,
                  precision=precision, memory_budget=memory_budget, devices=devices)


def empirical_ntk(apply_fn: ApplyFn, params: PyTree, x1: jax.Array, x2: jax.Array | None = None, *,
                  trace_axes: Sequence[int] = (-1,), method: str = "auto",
                  batch_size: int | None = None, precision: str | None = "highest",
                  memory_budget: float | None = None, devices=None) -> jax.Array:
    """Empirical NTK `J(x1) J(x2)^T` of `apply_fn` at `params`.

    Args and conventions as in `ntk_fn` (which this calls, caching the compiled function
    for repeated calls with the same `apply_fn`).

    Returns:
      `(n1, n2)` for `(n, k)` outputs with `trace_axes=(-1,)` (mean over outputs), or
      `(n1, n2, k, k)` with `trace_axes=()`.

    Example:
      >>> k = jaxdyn.empirical_ntk(apply_fn, params, x_train)   # (n, n)
    """
    trace_axes = _check_trace_axes(trace_axes)
    try:
        devs = devices if devices is None or isinstance(devices, str) else tuple(devices)
        key = (apply_fn, trace_axes, method, batch_size, precision, memory_budget, devs)
        hash(key)
    except TypeError:  # unhashable apply_fn (e.g. a partial of arrays): no caching
        key = None
    # ntk_fn checks the arguments (outside the try, so its TypeErrors reach the caller)
    fn = ntk_fn(apply_fn, trace_axes=trace_axes, method=method, batch_size=batch_size,
                precision=precision, memory_budget=memory_budget, devices=devices) \
        if key is None else _cached_ntk_fn(*key)
    return fn(x1, x2, params)


def ntk_by_group(apply_fn: ApplyFn, params: PyTree, x1: jax.Array, x2: jax.Array | None = None, *,
                 groups=None, trace_axes: Sequence[int] = (-1,), method: str = "auto",
                 batch_size: int | None = None, precision: str | None = "highest",
                 memory_budget: float | None = None, devices=None) -> dict[str, jax.Array]:
    """Empirical NTK split by parameter group: `{group: J_g(x1) J_g(x2)^T}`.

    The values add up to `empirical_ntk(apply_fn, params, x1, x2, ...)`. `groups` as in
    `param_groups` (default: one group per layer).

    Example:
      >>> parts = jaxdyn.ntk_by_group(apply_fn, params, x)
      >>> {name: float(jnp.trace(k)) for name, k in parts.items()}   # who drives learning
    """
    fn = ntk_by_group_fn(apply_fn, groups=groups, trace_axes=trace_axes, method=method,
                         batch_size=batch_size, precision=precision, memory_budget=memory_budget,
                         devices=devices)
    return fn(x1, x2, params)
