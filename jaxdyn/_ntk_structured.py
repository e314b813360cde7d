"""The structured empirical NTK: the kernel of a model with a `jaxdyn.structure.LinearStructure`
from per-layer factors, without any per-parameter Jacobian.

A Dense layer's per-example gradient is an outer product, so its NTK part is
`(c_W^2 H_l H_l'^T + c_b^2) * (G_l G_l'^T)` from the layer inputs `H_l` and the output
gradients `G_l`: `k` batch vjps and matrix products. A Conv layer's per-example weight
gradient is `patches^T G_l`, contracted directly (its weights are few; its positions many).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxdyn import batching
from jaxdyn import structure as jaxdyn_structure
from jaxdyn._ntk_layout import HIGHEST, ApplyFn, Layout, contract, traced_mean

PyTree = Any
Groups = dict[str, list[int]]

# From this many examples, the Gram of x with itself is computed from blocks i <= j only.
SYMMETRIC_MIN_N = 1024

# Rows per block of the factors of models with convolutions (when memory allows more; the
# Grams keep the memory-chosen block): their backward passes stream (k, b, H, W, C) tensors,
# and blocks of 16 examples keep them near the cache. Measured (2-core CPU, float32,
# benchmarks/ntk.py workloads, factors and Grams both in blocks): the 2-conv CNN at n = 64
# takes 0.29 s in blocks of 8 or 16 against 0.34 s at 32 and 0.38 s in one block, at n = 256
# 1.29 s against 1.62 s; the WRN block network 0.93 s at 16 against 0.90-1.0 s at 32-64 and
# 1.17 s at 4.
CONV_BLOCK = 16


def model_structure(apply_fn: ApplyFn, params: PyTree) -> tuple[Any, str | None]:
    """`(structure, problem)`: the model's `LinearStructure` (or None) and, if it cannot serve
    `params`, why not."""
    structure = jaxdyn_structure.of(apply_fn)
    if structure is None:
        return None, (
            "`apply_fn` has no `linear_structure` attribute (see jaxdyn.structure): "
            "it is not a jaxdyn.nets serial network of Dense/Conv layers and "
            "per-example layers, nor a flax model of Dense layers, passed as is"
        )
    n_leaves = len(jax.tree_util.tree_leaves(params))
    covered = []
    for layer in structure.layers(params):
        covered += [layer.w_leaf] + ([] if layer.b_leaf is None else [layer.b_leaf])
    if sorted(covered) != list(range(n_leaves)):
        return None, (
            f"its linear layers use parameter leaves {sorted(covered)}, but params "
            f"has leaves 0..{n_leaves - 1}: every leaf must belong to exactly one layer"
        )
    return structure, None


def linear_factors(structure, params, x, layout: Layout) -> list[dict[str, jax.Array | None]]:
    """Per linear layer, what its NTK part is made of (examples first, then outputs):

    - Dense: `{"h": (n, fan_in) layer inputs, "g": (n, *out, width) output gradients}`;
    - Conv: `{"w": (n, fh fw C, *out, width) per-example weight gradients (in the layout
      their product makes: the Gram of a traced kernel then reads them as they are),
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
        raise ValueError(
            f"The model's linear_structure.apply called `tap` {len(shapes)} times, "
            f"but its layers() lists {len(layers)} layers; they must agree."
        )
    probes = [jnp.zeros(shape, dtype) for shape in shapes]

    def run(ps):
        inputs = []

        def tap(l, h, z):
            inputs.append(h)
            return z + ps[l].astype(z.dtype)  # cast: a wider probe must not widen the pass

        return structure.apply(params, x, tap), inputs

    _, vjp_fn, inputs = jax.vjp(run, probes, has_aux=True)
    # Examples do not interact, so one batch vjp with output a selected for every example
    # gives each example's own gradient of f_a.
    basis = jnp.eye(layout.out_size, dtype=dtype).reshape((layout.out_size, 1, *layout.out_shape))
    (grads,) = jax.vmap(vjp_fn)(jnp.broadcast_to(basis, (layout.out_size, n, *layout.out_shape)))
    out = []
    for layer, h, g in zip(layers, inputs, grads):  # g: (out_size, n, *z shape)
        if layer.conv is None:
            g = jnp.moveaxis(g, 0, 1)  # (n, out_size, *z shape)
            out.append({"h": h, "g": g.reshape((n, *layout.out_shape, g.shape[-1]))})
            continue
        patches = conv_patches(h, layer.conv)  # (n, S, fh fw C)
        g = g.reshape((layout.out_size, n, -1, g.shape[-1]))  # (k, n, S, width)
        w, b = _weight_gradients(patches, g)  # (n, P, k, width), (n, k, width)
        out.append(
            {
                "w": w.reshape((n, w.shape[1], *layout.out_shape, g.shape[-1])),
                "b": None if layer.b_leaf is None else b.reshape((n, *layout.out_shape, -1)),
            }
        )
    return out


def _weight_gradients(patches: jax.Array, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`(n, P, k, width), (n, k, width)`: per-example, per-output weight gradients of a
    convolution (the sum over positions of patch x output gradient) and bias gradients (the
    sum of the output gradients), from `patches (n, S, P)`, `g (k, n, S, width)`.

    The contraction is memory-bound on CPUs, so it is arranged to move the least data: with
    few patch features (`P <= width`, a first layer), the patches are broadcast over the k
    outputs and each (output, example) pair is one small product; otherwise g is transposed
    once to `(n, S, k width)`, making one batched product over examples with all k outputs
    side by side (28x28x1 -> 32 -> 32 network, n = 64: the broadcast takes 1/4 of the transpose's
    time on the first layer, the transpose 1/1.3-1/2.3 of the alternatives' on the second).
    The bias sums read the same arranged g.
    """
    k, n, _, width = g.shape
    dims = (((2,), (2,)), ((0, 1), (0, 1)))  # contract positions; batch (output, example)
    if patches.shape[-1] <= width:
        p = jnp.broadcast_to(patches, (k, *patches.shape))
        w = jax.lax.dot_general(p, g, dims, precision=HIGHEST)
        return jnp.transpose(w, (1, 2, 0, 3)), jnp.moveaxis(jnp.sum(g, axis=2), 0, 1)
    g_t = jnp.transpose(g, (1, 2, 0, 3)).reshape((n, g.shape[2], k * width))
    w = jnp.einsum("nsp,nsq->npq", patches, g_t, precision=HIGHEST)
    return w.reshape((n, -1, k, width)), jnp.sum(g_t, axis=1).reshape((n, k, width))


def conv_patches(h: jax.Array, spec) -> jax.Array:
    """`(n, S, fh fw C)`: the input patch of every output position of the convolution `spec`
    (`jaxdyn.structure.ConvSpec`) on `h (n, H, W, C)`, features in (fh, fw, C) order.

    Strided slices of the padded input, stacked: `lax.conv_general_dilated_patches` computes
    the same numbers as a convolution with a one-hot kernel, `fh fw C` times the work (1.6x
    the time of the slices on a 28x28x32 input with a 3x3 filter, CPU).
    """
    (fh, fw), (sh, sw) = spec.filter_shape, spec.strides
    pads = spec.padding
    if isinstance(pads, str):
        pads = jax.lax.padtype_to_pads(h.shape[1:3], (fh, fw), (sh, sw), pads)
    hp = jnp.pad(h, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
    oh = (hp.shape[1] - fh) // sh + 1
    ow = (hp.shape[2] - fw) // sw + 1
    slices = [
        hp[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :]
        for i in range(fh)
        for j in range(fw)
    ]
    return jnp.stack(slices, axis=3).reshape((h.shape[0], oh * ow, fh * fw * h.shape[3]))


def _conv_weight_gram(w1: jax.Array, w2: jax.Array, layout: Layout) -> jax.Array:
    """`(n1, n2, *pairs)` from conv weight gradients `(n, P, *out, width)`."""
    if len(layout.traced) == len(layout.out_shape):  # every output axis summed: one product
        gram = jnp.einsum(
            "iz,jz->ij", w1.reshape((w1.shape[0], -1)), w2.reshape((w2.shape[0], -1)),
            precision=HIGHEST,
        )  # fmt: skip
        return traced_mean(gram, layout)
    flat = lambda w: jnp.moveaxis(w, 1, -2).reshape((*w.shape[:1], *w.shape[2:-1], -1))
    return contract(flat(w1), flat(w2), layout)


def linear_gram(layers, f1, f2, layout: Layout, groups: Groups) -> dict[str, jax.Array]:
    """`{group: kernel (n1, n2, *pairs)}` from the factors of x1 and x2."""
    part = {}
    for layer, a, b in zip(layers, f1, f2):
        if layer.conv is None:
            gram_g = contract(a["g"], b["g"], layout)  # (n1, n2, *pairs)
            gram_h = jnp.einsum("iz,jz->ij", a["h"], b["h"], precision=HIGHEST)
            gram_h = gram_h.reshape(gram_h.shape + (1,) * (gram_g.ndim - 2))
            part[layer.w_leaf] = layer.c_W**2 * gram_h * gram_g
            if layer.b_leaf is not None:
                part[layer.b_leaf] = layer.c_b**2 * gram_g
        else:
            part[layer.w_leaf] = layer.c_W**2 * _conv_weight_gram(a["w"], b["w"], layout)
            if layer.b_leaf is not None:
                part[layer.b_leaf] = layer.c_b**2 * contract(a["b"], b["b"], layout)
    return {name: sum(part[i] for i in idx) for name, idx in groups.items()}


def structured_kernels(
    apply_fn: ApplyFn,
    params: PyTree,
    x1: jax.Array,
    x2: jax.Array | None,
    layout: Layout,
    groups: Groups,
    b: int,
    gather: Callable[[PyTree], PyTree] | None = None,
) -> dict[str, jax.Array]:
    """`{group: kernel (n1, n2, *pairs)}`: factors once per block of `b` rows, then Grams per
    block of x1 rows against all of x2 (for x2 None, i.e. x1 with itself, from n >=
    `SYMMETRIC_MIN_N` on: per block pair i <= j only).

    `gather` (inside `batching.shard_rows`) assembles x2's factors from every device's rows.
    """
    structure = jaxdyn_structure.of(apply_fn)
    layers = structure.layers(params)
    factors = functools.partial(linear_factors, structure, params, layout=layout)
    gram = functools.partial(linear_gram, layers, layout=layout, groups=groups)
    # conv models: factors in blocks of at most CONV_BLOCK rows, Grams in blocks of b
    fb = min(b, CONV_BLOCK) if any(layer.conv is not None for layer in layers) else b
    f1 = batching.map_rows(factors, x1, fb)
    if x2 is None and gather is None and x1.shape[0] >= SYMMETRIC_MIN_N:
        # at least 4 block rows, so that at most 5/8 of the block pairs are computed
        return batching.map_upper(gram, f1, min(b, -(-x1.shape[0] // 4)))
    f2 = f1 if x2 is None else batching.map_rows(factors, x2, fb)
    if gather is not None:
        f2 = gather(f2)
    return batching.map_rows(lambda f: gram(f, f2), f1, b)
