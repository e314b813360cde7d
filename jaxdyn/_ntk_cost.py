"""The cost and memory model behind `method="auto"`, `batch_size=None` and host assembly in
`jaxdyn.ntk`: estimates per method, the block size that fits a memory budget, and the choice.
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn._ntk_layout import ApplyFn, Layout
from jaxdyn._ntk_structured import model_structure

PyTree = Any


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


NTKCost.__module__ = "jaxdyn.ntk"  # where users find it (and where it was defined)


def default_memory_budget() -> float:
    """Half the accelerator's memory, or a quarter of host RAM (4 GiB if unknown)."""
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
        temp_bytes = float(getattr(memory, "temp_size_in_bytes", 0) or 0)
        temp = temp_bytes / jnp.dtype(x_example.dtype).itemsize
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


def _structured_size(structure, params, x, layout: Layout) -> _StructuredSize:
    h_shapes, z_shapes = [], []

    def record(l, h, z):
        h_shapes.append(h.shape)
        z_shapes.append(z.shape)
        return z

    jax.eval_shape(
        lambda p, u: structure.apply(p, u, record),
        params,
        jax.ShapeDtypeStruct((1, *x.shape[1:]), x.dtype),
    )
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


def cost(
    apply_fn: ApplyFn,
    params: PyTree,
    x1,
    x2,
    layout: Layout,
    batch_size: int | None,
    memory_budget: float,
    method: str = "auto",
    allow_host: bool = True,
) -> NTKCost:
    """The `NTKCost` of a kernel call (`x1`, `x2` arrays or `jax.ShapeDtypeStruct`s; x2 None
    for x1 with itself); `allow_host=False` plans for a result kept on the device."""
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    leaves = jax.tree_util.tree_leaves(params)
    num_params = sum(int(np.prod(leaf.shape)) for leaf in leaves)
    itemsize = max((jnp.dtype(leaf.dtype).itemsize for leaf in leaves), default=4)
    k, ku = layout.out_size, layout.out_size // layout.traced_size
    fwd, act = _forward_stats(apply_fn, params, x1)
    structure, _ = model_structure(apply_fn, params)
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
            flops = n_blocks * (
                jac_rows * 3 * fwd
                + _JACOBIAN_CONTRACTION_COST * 2.0 * b1 * b2 * k * ku * num_params
            )
            mem = jac_rows * (num_params + act) + b1 * b2 * ku * ku
        elif m == "ntvp":
            # the jvps carry a tangent of every intermediate per (x1 example, x2 cotangent)
            flops = n_blocks * (b2 * k * 3 * fwd + b2 * k * b1 * 2 * fwd)
            mem = b2 * k * num_params + b2 * k * b1 * (k + act) + b1 * b2 * ku * ku
        else:  # structured: factors once per row, Grams per pair
            ex = rows + (0 if x2 is None and rows == n2 else n2)
            flops = ex * (k * 3 * fwd + size.row_flops) + rows * n2 * size.pair_flops
            # per layer an H Gram, a G Gram, their product and the running sum per row block
            mem = ex * size.stored + b1 * size.transient + 4 * b1 * n2 * ku * ku
        # blocks are stacked, then reassembled into the result: two copies when blocked
        return flops, itemsize * (mem + (1 + (b1 < rows)) * rows * n2 * ku * ku)

    methods = ["jacobian", "ntvp"] + (["structured"] if structure is not None else [])
    on_host = allow_host and itemsize * result > memory_budget / 2
    rows = n1
    if on_host:  # block rows of x1 against all of x2, each brought to host
        rows = next(
            (
                b
                for b in _block_sizes(n1)
                if min(estimate(m, b, b)[1] for m in methods) <= memory_budget
            ),
            1,
        )

    def block(m: str) -> int:
        if batch_size is not None:
            return int(batch_size)
        return next(
            (b for b in _block_sizes(max(rows, n2)) if estimate(m, b, rows)[1] <= memory_budget), 1
        )

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
                reason = (
                    f"{chosen}: fewer flops ({flops[chosen]:.3g} vs {flops[other]:.3g} for "
                    f"{other}); both fit the {gib(memory_budget)} budget"
                )
            else:
                reason = (
                    f"{chosen}: {other} needs {gib(memory[other])}, over the "
                    f"{gib(memory_budget)} budget; {chosen} needs {gib(memory[chosen])}"
                )
        else:
            chosen = min(("jacobian", "ntvp"), key=lambda m: memory[m])
            reason = f"{chosen}: it needs the least memory"
    b = blocks.get(chosen, 1)
    if memory.get(chosen, 0.0) > memory_budget:
        reason += (
            f"; it needs {gib(memory[chosen])}, over the {gib(memory_budget)} budget even "
            f"at block {min(b, rows)}x{min(b, n2)}"
            + ("" if batch_size is None else ": pass a smaller `batch_size`")
        )
    reason += where
    shape = (min(b, rows), n2 if chosen == "structured" else min(b, n2))
    return NTKCost(chosen, reason, flops, memory, fwd, num_params, shape, on_host)
