"""How kernels are executed: blocks under `lax.map`, symmetric block pairs, host assembly
and `shard_map` over devices, as small composable functions of PyTrees.

A kernel here is any PyTree of arrays `(n1, n2, *pairs)`: two example axes first, then the
output axes as adjacent pairs (`(k, k')`, or `(H, H', W, W')`), as both `jaxdyn.ntk` and
`jaxdyn.nets`' `kernel_fn` return them. Functions that take "rows" take PyTrees whose leaves
share a leading example axis.

Padding repeats the last example: any model is finite on a real input, which zeros do not
guarantee (a zero input has zero variance, and the arc-cosine kernels then divide 0 by 0).
Padded rows are always cropped before a result is returned.

Example:
    >>> gram = lambda u, v: u @ v.T                       # (b1, d), (b2, d) -> (b1, b2)
    >>> k = batching.map_pairs(gram, x1, x2, 64, 64)       # (n1, n2), 64 x 64 blocks at a time
    >>> k = batching.map_upper(gram, x1, 64)               # (n1, n1), blocks i <= j only
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "AXIS",
    "blocks",
    "crop_rows",
    "gather_rows",
    "host_rows",
    "map_pairs",
    "map_rows",
    "map_upper",
    "pad_rows",
    "shard_rows",
    "transpose_pairs",
    "unblock",
    "unblock_pairs",
]

PyTree = Any
AXIS = "rows"
"""Name of the device axis inside `shard_rows` (for collectives such as `gather_rows`)."""


# --------------------------------------------------------------------------- padding, blocks


def pad_rows(x: jax.Array, multiple: int) -> jax.Array:
    """`(n, ...) -> (ceil(n / multiple) * multiple, ...)`, padded by repeating the last row."""
    pad = -x.shape[0] % multiple
    return x if not pad else jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)], axis=0)


def blocks(rows: PyTree, b: int) -> PyTree:
    """Each leaf `(n, ...) -> (ceil(n / b), b, ...)`, the last block padded (`pad_rows`)."""

    def split(a):
        a = jnp.asarray(pad_rows(a, b))
        return a.reshape((a.shape[0] // b, b, *a.shape[1:]))

    return jax.tree_util.tree_map(split, rows)


def crop_rows(tree: PyTree, n: int) -> PyTree:
    """The first `n` rows of each leaf (padding removed)."""
    return jax.tree_util.tree_map(lambda a: a[:n], tree)


def unblock(tree: PyTree, n: int) -> PyTree:
    """Inverse of `blocks`: each leaf `(nb, b, ...) -> (n, ...)`."""
    return crop_rows(jax.tree_util.tree_map(lambda a: a.reshape((-1, *a.shape[2:])), tree), n)


def unblock_pairs(tree: PyTree, n1: int, n2: int) -> PyTree:
    """A grid of kernel blocks, each leaf `(nb1, nb2, b1, b2, *pairs) -> (n1, n2, *pairs)`."""

    def join(a):
        nb1, nb2, b1, b2 = a.shape[:4]
        a = jnp.swapaxes(a, 1, 2).reshape((nb1 * b1, nb2 * b2, *a.shape[4:]))
        return a[:n1, :n2]

    return jax.tree_util.tree_map(join, tree)


def transpose_pairs(a: jax.Array, lead: int = 0) -> jax.Array:
    """The transposed kernel: swaps the two example axes and each output pair.

    `a` is `(*batch, n1, n2, o1, o1', o2, o2', ...)` with `lead = len(batch)` leading axes
    left in place; returns `(*batch, n2, n1, o1', o1, o2', o2, ...)`.
    """
    perm = tuple(range(lead)) + tuple(
        lead + p + d for p in range(0, a.ndim - lead, 2) for d in (1, 0)
    )
    return jnp.transpose(a, perm)


# --------------------------------------------------------------------------- blocked maps


def map_rows(fn: Callable[[PyTree], PyTree], rows: PyTree, b: int) -> PyTree:
    """`fn` over blocks of `b` rows under `lax.map`, results concatenated back to n rows.

    Args:
      fn: `fn(block) -> PyTree of (b, ...)`, a row-wise map (rows must not interact).
      rows: PyTree of `(n, ...)` leaves.
      b: rows per block; `b >= n` calls `fn(rows)` once.
    """
    n = jax.tree_util.tree_leaves(rows)[0].shape[0]
    if b >= n:
        return fn(rows)
    return unblock(jax.lax.map(fn, blocks(rows, b)), n)


def map_pairs(
    fn: Callable[[PyTree, PyTree], PyTree], rows1: PyTree, rows2: PyTree, b1: int, b2: int
) -> PyTree:
    """A kernel from its `b1 x b2` blocks: `fn` over every pair (block of rows1, block of
    rows2) under nested `lax.map`, reassembled.

    Args:
      fn: `fn(u, v) -> PyTree of (b1, b2, *pairs)` for `u` a block of `rows1`, `v` of `rows2`.
      rows1, rows2: PyTrees of `(n1, ...)` and `(n2, ...)` leaves.
      b1, b2: rows per block (at most n1 and n2: larger blocks would only add padding).

    Returns:
      `fn`'s PyTree with leaves `(n1, n2, *pairs)`.
    """
    n1 = jax.tree_util.tree_leaves(rows1)[0].shape[0]
    n2 = jax.tree_util.tree_leaves(rows2)[0].shape[0]
    b1, b2 = min(b1, n1), min(b2, n2)
    if b1 == n1 and b2 == n2:
        return fn(rows1, rows2)
    xb1, xb2 = blocks(rows1, b1), blocks(rows2, b2)
    return unblock_pairs(jax.lax.map(lambda u: jax.lax.map(lambda v: fn(u, v), xb2), xb1), n1, n2)


def map_upper(fn: Callable[[PyTree, PyTree], PyTree], rows: PyTree, b: int) -> PyTree:
    """A symmetric kernel of `rows` with itself from its blocks `i <= j` only.

    Block `(j, i)` is the transpose of block `(i, j)` (`transpose_pairs`), so
    `(nb + 1) / (2 nb)` of the blocks are computed, under one `lax.map`.

    Args:
      fn: `fn(u, v) -> PyTree of (b, b, *pairs)`, the kernel of two blocks of rows; on the
        diagonal `u` and `v` are the same block (`u[0] == v[0]` tells a diagonal block).
      rows: PyTree of `(n, ...)` leaves.
      b: rows per block.

    Returns:
      `fn`'s PyTree with leaves `(n, n, *pairs)`.
    """
    n = jax.tree_util.tree_leaves(rows)[0].shape[0]
    b = min(b, n)
    xb = blocks(rows, b)
    nb = -(-n // b)
    bi, bj = (jnp.asarray(v) for v in np.triu_indices(nb))  # block pairs i <= j

    def block(ij):
        i, j = ij
        return fn(
            jax.tree_util.tree_map(lambda a: a[i], xb), jax.tree_util.tree_map(lambda a: a[j], xb)
        )

    computed = jax.lax.map(block, (bi, bj))  # (pairs, b, b, *pairs)

    def assemble(blk):
        full = jnp.zeros((nb, nb, *blk.shape[1:]), blk.dtype)
        full = full.at[bj, bi].set(transpose_pairs(blk, lead=1)).at[bi, bj].set(blk)
        return unblock_pairs(full, n, n)

    return jax.tree_util.tree_map(assemble, computed)


# --------------------------------------------------------------------------- host, devices


def host_rows(fn: Callable[[jax.Array], PyTree], x: jax.Array, rows: int) -> PyTree:
    """`fn` on blocks of `rows` rows of `x` (the last padded), each result copied into numpy
    arrays on host: for results too large for the device.

    Args:
      fn: `fn(block (rows, ...)) -> PyTree of (rows, ...)`, typically a jitted function (one
        compilation serves every block, since every block has `rows` rows).
      x: `(n, ...)`.
      rows: rows per block.

    Returns:
      `fn`'s PyTree with numpy leaves `(n, ...)`.
    """
    n = x.shape[0]
    out = None
    for start in range(0, n, rows):
        part = fn(pad_rows(x[start : start + rows], rows))
        stop = min(start + rows, n)
        if out is None:
            out = jax.tree_util.tree_map(lambda a: np.empty((n, *a.shape[1:]), a.dtype), part)
        for dst, a in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(part)):
            dst[start:stop] = np.asarray(a[: stop - start])
    return out


def shard_rows(
    fn: Callable[[PyTree, PyTree], PyTree],
    devices: Sequence[jax.Device],
    rows: PyTree,
    whole: PyTree,
) -> PyTree:
    """`fn(local_rows, whole)` on each device under `jax.shard_map`, with the leaves of
    `rows` split by rows over `devices` and `whole` replicated.

    Each leaf of `rows` is first padded to a multiple of `len(devices)` (`pad_rows`); the
    result is sharded by rows over the devices and includes the padded rows (crop them with
    `crop_rows`). Inside `fn`, `gather_rows` assembles a PyTree from every device.
    """
    mesh = jax.sharding.Mesh(np.array(devices), (AXIS,))
    spec, replicated = jax.sharding.PartitionSpec(AXIS), jax.sharding.PartitionSpec()
    padded = jax.tree_util.tree_map(lambda a: pad_rows(a, len(devices)), rows)
    return jax.shard_map(
        fn, mesh=mesh, in_specs=(spec, replicated), out_specs=spec, check_vma=False
    )(padded, whole)


def gather_rows(tree: PyTree, n: int) -> PyTree:
    """Inside `shard_rows`: every device's rows of each leaf, concatenated in device order
    and cropped to the first `n` (the unpadded rows)."""
    gathered = jax.tree_util.tree_map(lambda a: jax.lax.all_gather(a, AXIS, tiled=True), tree)
    return crop_rows(gathered, n)
