"""Empirical neural tangent kernel of any `apply_fn(params, x)`.

`Theta(x1, x2) = J(x1) J(x2)^T` with `J = d apply_fn / d params` at `params`. Two methods:

- `"jacobian"`: per-example Jacobians (`vmap` of `jacrev`), contracted leaf by leaf.
  Cheapest in arithmetic; memory `(n1 + n2) * k * P` numbers for P parameters.
- `"ntvp"`: NTK-vector products. For each example of `x2` and each output, a vjp gives
  the parameter cotangent and a jvp through the `x1` batch gives one column of the kernel.
  Never holds `J(x1)`; costs about `n1 * n2 * k` forward passes.
- `"structured"`: for `jaxdyn.nets` networks of Dense layers and elementwise activations
  (`apply_fn.dense_structure`). A Dense layer's per-example gradient is an outer product,
  so its NTK part is `(c_W^2 H_l H_l'^T + c_b^2) * (G_l G_l'^T)` from the layer inputs `H_l`
  and the output gradients `G_l` at its pre-activation: `k` vjps and matrix products, no
  per-parameter Jacobian.
- `"auto"`: `"structured"` where available, otherwise one picked with the cost and memory
  model in `ntk_cost`, which also says why.

`batch_size` tiles `x1 x x2` into blocks evaluated under `lax.map`, so memory stays bounded
for any n and the whole computation remains one compiled program.

Shapes and trace convention follow neural-tangents: outputs `(n, *out)`; `trace_axes` are
output axes averaged over (the kernel holds the MEAN over them); remaining output axes come
as adjacent pairs. For `(n, k)` outputs: `trace_axes=(-1,)` gives `(n1, n2)`,
`trace_axes=()` gives `(n1, n2, k, k)`.
"""
from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn._checks import check_array, check_finite, is_concrete

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array], jax.Array]
KernelFn = Callable[[jax.Array, jax.Array | None, PyTree], jax.Array]

__all__ = ["METHODS", "NTKCost", "empirical_ntk", "ntk_fn", "ntk_cost",
           "ntk_by_group", "ntk_by_group_fn", "param_groups"]

METHODS = ("auto", "jacobian", "ntvp", "structured")
_HIGHEST = jax.lax.Precision.HIGHEST


# --------------------------------------------------------------------------- arguments

def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}; got {method!r}.")


def _check_batch_size(batch_size: int | None) -> None:
    if batch_size is None:
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int or None; got {batch_size!r}.")


def _check_trace_axes(trace_axes: Sequence[int]) -> tuple[int, ...]:
    try:
        axes = tuple(int(a) for a in trace_axes)
    except TypeError:
        raise TypeError(f"`trace_axes` must be a tuple of ints (output axes); got {trace_axes!r}.") from None
    return axes


def _check_precision(precision: str | None) -> None:
    allowed = (None, "highest", "high", "default", "float32", "tensorfloat32", "bfloat16")
    if precision not in allowed:
        raise ValueError(f"`precision` must be one of {allowed}; got {precision!r}.")


def _check_inputs(x1: jax.Array, x2: jax.Array | None) -> None:
    check_array("x1", x1)
    if x2 is not None:
        check_array("x2", x2)
        if tuple(x1.shape[1:]) != tuple(x2.shape[1:]):
            raise ValueError(
                f"`x1` and `x2` must have the same per-example shape; got x1 {tuple(x1.shape)} "
                f"and x2 {tuple(x2.shape)} (batch axis first).")
    check_finite("x1", x1)
    check_finite("x2", x2)


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
    out = jax.eval_shape(apply_fn, params, jax.ShapeDtypeStruct((1, *x1.shape[1:]), x1.dtype))
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(
            "`apply_fn(params, x)` must return a single array with the batch axis first; got "
            f"{jax.tree_util.tree_structure(out)}. Wrap it to return one array.")
    if len(out.shape) < 1 or out.shape[0] != 1:
        raise ValueError(
            f"`apply_fn(params, x)` must keep the batch axis first: a batch of 1 gave output "
            f"shape {tuple(out.shape)}.")
    ndim = len(out.shape)
    traced = []
    for a in trace_axes:
        if not -ndim <= a < ndim:
            raise ValueError(
                f"`trace_axes` {trace_axes} is out of range for outputs of shape "
                f"(n, {', '.join(map(str, out.shape[1:]))}).")
        a = a % ndim
        if a == 0:
            raise ValueError(f"`trace_axes` {trace_axes} includes the batch axis 0; trace output axes only.")
        traced.append(a - 1)
    return _Layout(tuple(out.shape[1:]), tuple(sorted(set(traced))))


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


def _dense_structure(apply_fn: ApplyFn):
    """`apply_fn.dense_structure` (a `jaxdyn.nets.DenseStructure`), or None."""
    structure = getattr(apply_fn, "dense_structure", None)
    if callable(getattr(structure, "layers", None)) and callable(getattr(structure, "apply", None)):
        return structure
    return None


def _dense_factors(structure, params, x, layout):
    """Layer inputs `[H_l (n, fan_in_l)]` and output gradients `[G_l (n, *out, width_l)]`,
    `G_l[i, a] = d f_a(x_i) / d z_l(x_i)` at the l-th Dense pre-activation."""
    infos = structure.layers(params)
    # The widest dtype: the probes' cotangents are then exact casts of the layers' gradients.
    dtype = jnp.result_type(x.dtype, *(leaf.dtype for leaf in jax.tree_util.tree_leaves(params)))
    probes = [jnp.zeros((x.shape[0], info.width), dtype) for info in infos]
    _, vjp_fn, inputs = jax.vjp(lambda q: structure.apply(params, x, q), probes, has_aux=True)
    # Examples do not interact, so one batch vjp with output a selected for every example
    # gives each example's own gradient of f_a.
    basis = jnp.eye(layout.out_size, dtype=dtype).reshape((layout.out_size, 1, *layout.out_shape))
    cts = jnp.broadcast_to(basis, (layout.out_size, x.shape[0], *layout.out_shape))
    (grads,) = jax.vmap(vjp_fn)(cts)                 # [(out_size, n, width_l)]
    grads = [jnp.moveaxis(g, 0, 1).reshape((x.shape[0], *layout.out_shape, g.shape[-1]))
             for g in grads]
    return inputs, grads


def _structured_block(apply_fn, params, x1, x2, layout, groups):
    structure = _dense_structure(apply_fn)
    infos = structure.layers(params)
    h1, g1 = _dense_factors(structure, params, x1, layout)
    h2, g2 = (h1, g1) if x2 is None else _dense_factors(structure, params, x2, layout)
    # Per leaf: W gives c_W^2 (h h'^T) * (g g'^T), b gives c_b^2 (g g'^T); any grouping of
    # leaves is then a sum of these parts.
    part = {}
    for l, info in enumerate(infos):
        gram_g = _contract(g1[l], g2[l], layout)                          # (n1, n2, *pairs)
        gram_h = jnp.einsum("iz,jz->ij", h1[l], h2[l], precision=_HIGHEST)
        gram_h = gram_h.reshape(gram_h.shape + (1,) * (gram_g.ndim - 2))
        part[info.w_leaf] = info.c_W ** 2 * gram_h * gram_g
        if info.b_leaf is not None:
            part[info.b_leaf] = info.c_b ** 2 * gram_g
    return {name: sum(part[i] for i in idx) for name, idx in groups.items()}


_BLOCKS = {"jacobian": _jacobian_block, "ntvp": _ntvp_block, "structured": _structured_block}


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
    """What each method would cost for one kernel call, and which one `"auto"` picks.

    `flops` and `memory_bytes` are estimates per method (whole call, peak per block when
    batched); `forward_flops` is XLA's count for one example's forward pass.
    """
    method: str
    reason: str
    flops: dict[str, float]
    memory_bytes: dict[str, float]
    forward_flops: float
    num_params: int
    block_shape: tuple[int, int]


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


def _forward_flops(apply_fn, params, x_example) -> float:
    p_abs = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params)
    x_abs = jax.ShapeDtypeStruct((1, *x_example.shape[1:]), x_example.dtype)
    try:
        cost = jax.jit(apply_fn).lower(p_abs, x_abs).compile().cost_analysis()
        if isinstance(cost, (list, tuple)):
            cost = cost[0] if cost else {}
        flops = float((cost or {}).get("flops", 0.0))
    except Exception:  # noqa: BLE001 - cost analysis is best effort on every backend
        flops = 0.0
    num_params = sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(params))
    return max(flops, 2.0 * num_params)


def _cost(apply_fn, params, x1, x2, layout, batch_size, memory_budget) -> NTKCost:
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    b1 = n1 if batch_size is None else min(batch_size, n1)
    b2 = n2 if batch_size is None else min(batch_size, n2)
    leaves = jax.tree_util.tree_leaves(params)
    num_params = sum(int(np.prod(leaf.shape)) for leaf in leaves)
    itemsize = max((jnp.dtype(leaf.dtype).itemsize for leaf in leaves), default=4)
    k, kt = layout.out_size, layout.traced_size
    ku = k // kt                                   # untraced outputs per example
    fwd = _forward_flops(apply_fn, params, x1)
    n_blocks = -(-n1 // b1) * -(-n2 // b2)
    same = x2 is None and b1 == n1
    # A vjp costs ~3 forward passes, a jvp ~2 (forward plus tangent).
    jac_rows = (b1 if same else b1 + b2) * k
    flops = {
        "jacobian": n_blocks * (jac_rows * 3 * fwd + 2.0 * b1 * b2 * k * ku * num_params),
        "ntvp": n_blocks * (b2 * k * 3 * fwd + b2 * k * b1 * 2 * fwd),
    }
    memory = {
        "jacobian": itemsize * (jac_rows * num_params + b1 * b2 * ku * ku),
        "ntvp": itemsize * (b2 * k * num_params + b2 * k * b1 * k + b1 * b2 * ku * ku),
    }
    gib = lambda v: f"{v / 2**30:.3g} GiB"  # noqa: E731
    structure = _dense_structure(apply_fn)
    if structure is not None:
        infos = structure.layers(params)
        fan_ins = [int(leaves[i.w_leaf].shape[0]) for i in infos]
        rows = b1 if same else b1 + b2
        widths = sum(i.width for i in infos)
        # k batch vjps through the network, then per layer an H Gram and a G Gram.
        flops["structured"] = n_blocks * (rows * k * 3 * fwd + 2.0 * b1 * b2 * sum(
            fan_in + k * ku * i.width for fan_in, i in zip(fan_ins, infos)))
        memory["structured"] = itemsize * (rows * (k * widths + sum(fan_ins))
                                           + 3 * b1 * b2 * ku * ku)
        reason = "structured: Dense network"
        if memory["structured"] > memory_budget:
            reason += (f"; it needs {gib(memory['structured'])}, over the {gib(memory_budget)} "
                       f"budget at block {b1}x{b2}: pass a smaller `batch_size`")
        return NTKCost("structured", reason, flops, memory, fwd, num_params, (b1, b2))
    fits = [m for m in ("jacobian", "ntvp") if memory[m] <= memory_budget]
    if fits:
        method = min(fits, key=lambda m: flops[m])
        other = "ntvp" if method == "jacobian" else "jacobian"
        if other in fits:
            reason = (f"{method}: fewer flops ({flops[method]:.3g} vs {flops[other]:.3g} for {other}); "
                      f"both fit the {gib(memory_budget)} budget")
        else:
            reason = (f"{method}: {other} needs {gib(memory[other])}, over the {gib(memory_budget)} "
                      f"budget; {method} needs {gib(memory[method])}")
    else:
        method = min(("jacobian", "ntvp"), key=lambda m: memory[m])
        reason = (f"{method}: no method fits the {gib(memory_budget)} budget at block "
                  f"{b1}x{b2}; {method} needs the least ({gib(memory[method])}). Pass a smaller "
                  f"`batch_size`.")
    return NTKCost(method, reason, flops, memory, fwd, num_params, (b1, b2))


def ntk_cost(apply_fn: ApplyFn, params: PyTree, x1: jax.Array, x2: jax.Array | None = None, *,
             trace_axes: Sequence[int] = (-1,), batch_size: int | None = None,
             memory_budget: float | None = None) -> NTKCost:
    """Cost and memory model behind `method="auto"`: what each method would need, and why
    `auto` picks the one it picks.

    Args:
      apply_fn, params, x1, x2, trace_axes, batch_size: as in `empirical_ntk`.
      memory_budget: bytes a method may use; default half the accelerator's memory, or a
        quarter of host RAM on CPU.

    Returns:
      `NTKCost(method, reason, flops, memory_bytes, forward_flops, num_params, block_shape)`;
      `flops` and `memory_bytes` have a `"structured"` entry only where that method is
      available (`apply_fn.dense_structure`), and then `auto` always picks it.

    Example:
      >>> jaxdyn.ntk_cost(apply_fn, params, x).reason
      'jacobian: fewer flops (1.2e+08 vs 3.4e+09 for ntvp); both fit the 5.8 GiB budget'
    """
    _check_batch_size(batch_size)
    _check_inputs(x1, x2)
    layout = _layout(apply_fn, params, x1, _check_trace_axes(trace_axes))
    budget = _default_memory_budget() if memory_budget is None else float(memory_budget)
    return _cost(apply_fn, params, x1, x2, layout, batch_size, budget)


# --------------------------------------------------------------------------- public kernels

def _kernel_dict_fn(apply_fn, trace_axes, method, batch_size, precision, groups, memory_budget):
    """Builds `kernels(x1, x2, params) -> {group: kernel}`, jitted once per input shape."""
    if not callable(apply_fn):
        raise TypeError(f"`apply_fn` must be callable `apply_fn(params, x)`; got {type(apply_fn).__name__}.")
    trace_axes = _check_trace_axes(trace_axes)
    _check_method(method)
    if method == "structured" and _dense_structure(apply_fn) is None:
        raise ValueError(
            "`method='structured'` needs an `apply_fn` with a `dense_structure` attribute: the "
            "apply_fn of a jaxdyn.nets.serial network of Dense layers and elementwise "
            "activations (no Conv, FanOut or parallel), passed as is (not wrapped). Use "
            "method='jacobian', 'ntvp' or 'auto' for other models.")
    _check_batch_size(batch_size)
    _check_precision(precision)

    def compute(x1, x2, params):
        layout = _layout(apply_fn, params, x1, trace_axes)
        chosen = method
        if method == "auto":
            budget = _default_memory_budget() if memory_budget is None else float(memory_budget)
            chosen = _cost(apply_fn, params, x1, x2, layout, batch_size, budget).method
        group_idx = param_groups(params, groups) if groups is not False else \
            {"all": list(range(len(jax.tree_util.tree_leaves(params))))}
        block = functools.partial(_BLOCKS[chosen], apply_fn, layout=layout, groups=group_idx)
        if batch_size is None:
            return block(params, x1, x2)
        return _tiled(lambda p, u, v: block(p, u, v), params, x1, x2, batch_size, layout)

    jitted = jax.jit(compute)

    def kernels(x1, x2, params):
        _check_inputs(x1, x2)
        if precision is None:
            out = jitted(x1, x2, params)
        else:
            # Also governs matmuls inside apply_fn: TF32 on Ampere/Hopper would cost ~1e-3.
            with jax.default_matmul_precision(precision):
                out = jitted(x1, x2, params)
        if is_concrete(out):
            for name, k in out.items():
                check_finite(f"NTK ({name}) of apply_fn at params", k)
        return out
    return kernels


def ntk_fn(apply_fn: ApplyFn, *, trace_axes: Sequence[int] = (-1,), method: str = "auto",
           batch_size: int | None = None, precision: str | None = "highest",
           memory_budget: float | None = None) -> KernelFn:
    """Empirical NTK function of `apply_fn`, compiled once per input shape and reused.

    Args:
      apply_fn: model `apply_fn(params, x) -> (n, *out)`; examples must not interact
        (no batch statistics), as for any per-example kernel.
      trace_axes: output axes to average over; `(-1,)` gives `(n1, n2)` for `(n, k)`
        outputs, `()` gives `(n1, n2, k, k)`.
      method: `"jacobian"`, `"ntvp"`, `"structured"` (`jaxdyn.nets` Dense networks only) or
        `"auto"` (see `ntk_cost`).
      batch_size: if set, evaluate blocks of at most `batch_size x batch_size` examples
        under `lax.map` so memory stays bounded; the result is the same to rounding.
      precision: matmul precision while computing the kernel (`"highest"` by default, so
        float32 kernels on GPUs do not silently use TF32); `None` keeps JAX's default.
      memory_budget: bytes for `method="auto"`'s choice (default: see `ntk_cost`).

    Returns:
      `kernel(x1, x2, params)`: `x1 (n1, ...)`, `x2 (n2, ...)` or `None` for `x2 = x1`;
      returns `(n1, n2, *pairs)`. Raises ValueError when the kernel holds NaN/Inf.

    Example:
      >>> kernel = jaxdyn.ntk_fn(apply_fn)
      >>> kernel(x_train, None, params).shape   # (n, n)
    """
    kernels = _kernel_dict_fn(apply_fn, trace_axes, method, batch_size, precision, False, memory_budget)

    def kernel(x1: jax.Array, x2: jax.Array | None, params: PyTree) -> jax.Array:
        return kernels(x1, x2, params)["all"]
    return kernel


def ntk_by_group_fn(apply_fn: ApplyFn, *, groups=None, trace_axes: Sequence[int] = (-1,),
                    method: str = "auto", batch_size: int | None = None,
                    precision: str | None = "highest", memory_budget: float | None = None):
    """Per-group (per-layer) NTK function: `kernels(x1, x2, params) -> {group: kernel}`.

    The NTK is a sum over parameters, so it splits exactly into the kernels of parameter
    groups, `Theta = sum_g J_g J_g^T`; the parts show which layers drive learning and add
    up to `ntk_fn`'s kernel. `groups` as in `param_groups`; other arguments as in `ntk_fn`.
    """
    return _kernel_dict_fn(apply_fn, trace_axes, method, batch_size, precision,
                           groups, memory_budget)


@functools.lru_cache(maxsize=32)
def _cached_ntk_fn(apply_fn, trace_axes, method, batch_size, precision, memory_budget):
    return ntk_fn(apply_fn, trace_axes=trace_axes, method=method, batch_size=batch_size,
                  precision=precision, memory_budget=memory_budget)


def empirical_ntk(apply_fn: ApplyFn, params: PyTree, x1: jax.Array, x2: jax.Array | None = None, *,
                  trace_axes: Sequence[int] = (-1,), method: str = "auto",
                  batch_size: int | None = None, precision: str | None = "highest",
                  memory_budget: float | None = None) -> jax.Array:
    """Empirical NTK `J(x1) J(x2)^T` of `apply_fn` at `params`.

    Args and conventions as in `ntk_fn` (which this calls, caching the compiled function
    for repeated calls with the same `apply_fn`).

    Returns:
      `(n1, n2)` for `(n, k)` outputs with `trace_axes=(-1,)` (mean over outputs), or
      `(n1, n2, k, k)` with `trace_axes=()`.

    Example:
      >>> k = jaxdyn.empirical_ntk(apply_fn, params, x_train)   # (n, n)
    """
    try:
        fn = _cached_ntk_fn(apply_fn, _check_trace_axes(trace_axes), method, batch_size,
                            precision, memory_budget)
    except TypeError:  # unhashable apply_fn (e.g. a partial of arrays): no caching
        fn = ntk_fn(apply_fn, trace_axes=trace_axes, method=method, batch_size=batch_size,
                    precision=precision, memory_budget=memory_budget)
    return fn(x1, x2, params)


def ntk_by_group(apply_fn: ApplyFn, params: PyTree, x1: jax.Array, x2: jax.Array | None = None, *,
                 groups=None, trace_axes: Sequence[int] = (-1,), method: str = "auto",
                 batch_size: int | None = None, precision: str | None = "highest",
                 memory_budget: float | None = None) -> dict[str, jax.Array]:
    """Empirical NTK split by parameter group: `{group: J_g(x1) J_g(x2)^T}`.

    The values add up to `empirical_ntk(apply_fn, params, x1, x2, ...)`. `groups` as in
    `param_groups` (default: one group per layer).

    Example:
      >>> parts = jaxdyn.ntk_by_group(apply_fn, params, x)
      >>> {name: float(jnp.trace(k)) for name, k in parts.items()}   # who drives learning
    """
    fn = ntk_by_group_fn(apply_fn, groups=groups, trace_axes=trace_axes, method=method,
                         batch_size=batch_size, precision=precision, memory_budget=memory_budget)
    return fn(x1, x2, params)
