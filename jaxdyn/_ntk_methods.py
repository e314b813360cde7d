"""The two model-agnostic empirical-NTK methods, each as a kernel of one block of examples.

- `jacobian_block`: per-example Jacobians (`vmap` of `jacrev`), contracted leaf by leaf.
- `ntvp_block`: NTK-vector products; a vjp per example of x2 and output, then a jvp through
  the x1 block gives one column of the kernel. Never holds `J(x1)`.

Both return `{group: kernel (n1, n2, *pairs)}` for the parameter groups `{name: [leaf
indices]}`; `jaxdyn.ntk` tiles them (`jaxdyn.batching`) and picks one (`jaxdyn._ntk_cost`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxdyn._ntk_layout import HIGHEST, ApplyFn, Layout, contract, traced_mean

PyTree = Any
Groups = dict[str, list[int]]


def per_example_jacobian(
    apply_fn: ApplyFn, params: PyTree, x: jax.Array, layout: Layout
) -> list[jax.Array]:
    """Leaves of d f(x_i) / d params, each flattened to (n, *out, p_leaf)."""

    def single(p, xi):
        return apply_fn(p, xi[None])[0]

    jac = jax.vmap(jax.jacrev(single), in_axes=(None, 0))(params, x)
    lead = 1 + len(layout.out_shape)
    return [leaf.reshape((*leaf.shape[:lead], -1)) for leaf in jax.tree_util.tree_leaves(jac)]


def jacobian_block(
    apply_fn: ApplyFn,
    params: PyTree,
    x1: jax.Array,
    x2: jax.Array | None,
    layout: Layout,
    groups: Groups,
) -> dict[str, jax.Array]:
    """`{group: kernel (n1, n2, *pairs)}` from per-example Jacobians (x2 None: x2 = x1, whose
    Jacobian is then computed once)."""
    jac1 = per_example_jacobian(apply_fn, params, x1, layout)
    jac2 = jac1 if x2 is None else per_example_jacobian(apply_fn, params, x2, layout)
    return {
        name: sum(contract(jac1[i], jac2[i], layout) for i in idx) for name, idx in groups.items()
    }


def restrict(apply_fn: ApplyFn, params: PyTree, idx: list[int]):
    """`(f, sub)`: `apply_fn` as a function `f(sub, x)` of the leaves in `idx` only, the others
    held fixed at their values in `params`."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    chosen = [leaves[i] for i in idx]

    def f(sub, x):
        full = list(leaves)
        for i, leaf in zip(idx, sub):
            full[i] = leaf
        return apply_fn(jax.tree_util.tree_unflatten(treedef, full), x)

    return f, chosen


def ntvp_kernel(f: ApplyFn, p: PyTree, x1: jax.Array, x2: jax.Array, layout: Layout) -> jax.Array:
    """Kernel (n1, n2, *pairs) of f(p, .) from vjps over x2 examples and jvps over x1."""
    basis = jnp.eye(layout.out_size, dtype=jax.eval_shape(f, p, x1[:1]).dtype)
    basis = basis.reshape((layout.out_size, *layout.out_shape))
    f1 = lambda q: f(q, x1)  # noqa: E731

    def column(x2i):
        _, vjp_fn = jax.vjp(lambda q: f(q, x2i[None])[0], p)

        def one(e):
            (v,) = vjp_fn(e)
            return jax.jvp(f1, (p,), (v,))[1]  # (n1, *out)

        return jax.vmap(one)(basis)  # (out_size, n1, *out)

    cols = jax.vmap(column)(x2)  # (n2, out_size, n1, *out)
    cols = cols.reshape((x2.shape[0], *layout.out_shape, x1.shape[0], *layout.out_shape))
    c1, c2, pairs = layout.einsum_letters()
    return traced_mean(jnp.einsum(f"j{c2}i{c1}->ij{pairs}", cols, precision=HIGHEST), layout)


def ntvp_block(
    apply_fn: ApplyFn,
    params: PyTree,
    x1: jax.Array,
    x2: jax.Array | None,
    layout: Layout,
    groups: Groups,
) -> dict[str, jax.Array]:
    """`{group: kernel (n1, n2, *pairs)}` from NTK-vector products, one group at a time."""
    x2 = x1 if x2 is None else x2
    out = {}
    n_leaves = len(jax.tree_util.tree_leaves(params))
    for name, idx in groups.items():
        if len(idx) == n_leaves:
            out[name] = ntvp_kernel(apply_fn, params, x1, x2, layout)
        else:
            f, sub = restrict(apply_fn, params, idx)
            out[name] = ntvp_kernel(f, sub, x1, x2, layout)
    return out


BLOCKS = {"jacobian": jacobian_block, "ntvp": ntvp_block}
"""`{method: block kernel}` with signature `(apply_fn, params, x1, x2, layout, groups)`."""
