"""The matmul floors of benchmarks/ntk.py: bare jitted functions doing exactly the products
the structured NTK of a workload needs (MLP, CNN), and the CNN's flop count (the MLP's is
`_common.mlp_matmul_flops`). Their times are what `ratio_to_matmul_floor` divides by."""

from __future__ import annotations

import _common as C


def cnn_matmul_flops(n: int, tiny: bool) -> dict:
    """Flops of the products the traced NTK of the benchmark CNN (3x3 SAME conv C_in -> c,
    ReLU, 3x3 SAME conv c -> c, ReLU, flatten, dense k) cannot avoid, for n examples against
    themselves, counted as 2 m n p per (m x p)(p x n) product, with S = hw^2 positions and
    P_l = 9 C_l patch features:

    * forward: each convolution `2 n S P_l c` and the dense layer `2 n S c k`;
    * the k output-gradient backward passes for the batch: through the dense layer
      `2 n k S c` (one-hot output gradients times the dense weights, a K = k product counted
      as K = 1) and the transposed second convolution `2 n k S P_2 c` (none into the input);
    * per-example weight gradients `patches^T G` of both convolutions, `2 n k S P_l c`;
    * the traced Grams: weight gradients `2 n^2 k P_l c`, the dense input Gram `2 n^2 S c`
      (biases: `2 n^2 k c`, negligible, included).
    The Grams' symmetry is not used."""
    cfg = C.TINY_CNN if tiny else C.CNN
    hw, c, k = cfg["hw"], cfg["channels"], cfg["out"]
    S, P = hw * hw, (9 * 1, 9 * c)
    fwd = sum(2.0 * n * S * p * c for p in P) + 2.0 * n * S * c * k
    bwd = 2.0 * n * k * S * c + 2.0 * n * k * S * P[1] * c
    wgrad = sum(2.0 * n * k * S * p * c for p in P)
    grams = sum(2.0 * n * n * k * (p + 1) * c for p in P) + 2.0 * n * n * (S * c + k)
    return {
        "forward": fwd,
        "backward": bwd,
        "weight_gradients": wgrad,
        "grams": grams,
        "total": fwd + bwd + wgrad + grams,
    }


def matmul_floor_fn(widths):
    """`floor(params, x) -> (n, n)`: the traced NTK of the hand-written MLP computed with only
    the matrix products of `_common.mlp_matmul_flops` (plus elementwise work): a forward pass
    keeping each layer's input `h_l` and ReLU mask, the k output gradients `G_l (n, k, w_l)`
    propagated back through the layers as a batch, and per layer
    `(h_l h_l^T / d_l + 1) * (G_l G_l^T)` summed and divided by k."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    hi = jax.lax.Precision.HIGHEST
    k = widths[-1]

    def floor(params, x):
        n, num = x.shape[0], len(params)
        hs, masks, h = [], [], x
        for i, layer in enumerate(params):
            hs.append(h)
            z = (
                jnp.matmul(h, layer["w"], precision=hi) * (1.0 / np.sqrt(layer["w"].shape[0]))
                + layer["b"]
            )
            if i < num - 1:
                masks.append(z > 0)
                h = jnp.maximum(z, 0)
        g = jnp.broadcast_to(jnp.eye(k, dtype=x.dtype), (n, k, k))
        gs = [None] * num
        gs[-1] = g
        for i in range(num - 1, 0, -1):
            w = params[i]["w"]
            g = jnp.matmul(g, w.T, precision=hi) * (1.0 / np.sqrt(w.shape[0]))
            g = jnp.where(masks[i - 1][:, None, :], g, 0)
            gs[i - 1] = g
        out = None
        for i in range(num):
            hh = jnp.matmul(hs[i], hs[i].T, precision=hi)
            g2 = gs[i].reshape(n, -1)
            gg = jnp.matmul(g2, g2.T, precision=hi)
            term = (hh * (1.0 / hs[i].shape[1]) + 1.0) * gg
            out = term if out is None else out + term
        return out / k

    return jax.jit(floor)


def conv_floor_fn(params, x):
    """`floor(params, x, operands) -> (n, n)` and its `operands`: the traced NTK of the
    hand-written CNN from only the products of `_common.cnn_matmul_flops`, each one XLA op:
    the forward convolutions and dense product (keeping inputs and ReLU masks), the dense
    backward product, the transposed second convolution on all n k output gradients at once,
    the two per-example weight-gradient contractions and the traced Grams. The weight-gradient
    contractions read `operands`, patches and output gradients made beforehand in the layout
    the product wants (from the same network), so that no data movement is timed: the floor
    is the products alone. Returns the same kernel as the structured method."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    hi = lax.Precision.HIGHEST
    dn = ("NHWC", "HWIO", "NHWC")
    k = params["dense"]["w"].shape[1]

    def conv(h, w):
        return lax.conv_general_dilated(h, w, (1, 1), "SAME", dimension_numbers=dn, precision=hi)

    def scale(w):
        return 1.0 / np.sqrt(np.prod(w.shape[:-1]))

    def patches(h):
        return lax.conv_general_dilated_patches(h, (3, 3), (1, 1), "SAME", dimension_numbers=dn)

    def backward(p, x):
        """Forward pass and the k output gradients at both convolutions' outputs."""
        n = x.shape[0]
        z1 = conv(x, p["conv1"]["w"]) * scale(p["conv1"]["w"]) + p["conv1"]["b"]
        h1 = jnp.maximum(z1, 0)
        z2 = conv(h1, p["conv2"]["w"]) * scale(p["conv2"]["w"]) + p["conv2"]["b"]
        h2 = jnp.maximum(z2, 0).reshape(n, -1)
        wd = p["dense"]["w"] * scale(p["dense"]["w"])
        g2 = jnp.matmul(jnp.eye(k, dtype=x.dtype), wd.T, precision=hi)  # (k, S c)
        g2 = jnp.where(z2[None] > 0, g2.reshape(k, 1, *z2.shape[1:]), 0)  # (k, n, H, W, c)
        w2 = jnp.flip(p["conv2"]["w"], (0, 1)).swapaxes(2, 3) * scale(p["conv2"]["w"])
        g1 = conv(g2.reshape(-1, *z2.shape[1:]), w2).reshape(g2.shape)
        g1 = jnp.where(z1[None] > 0, g1, 0)
        return x, h1, h2, g1, g2

    def layout(h, g):
        """Patches (n, S, P) and gradients (n, S, k c): the weight-gradient product's operands."""
        n = h.shape[0]
        gt = jnp.transpose(g.reshape(k, n, -1, g.shape[-1]), (1, 2, 0, 3))
        gt = gt.reshape(n, gt.shape[1], -1)
        return patches(h).reshape(n, gt.shape[1], -1), gt

    @jax.jit
    def make_operands(p, x):
        x, h1, _, g1, g2 = backward(p, x)
        return layout(x, g1) + layout(h1, g2)

    @jax.jit
    def floor(p, x, ops):
        n = x.shape[0]
        _, _, h2, g1, g2 = backward(p, x)
        # dense weights and bias: the same for each of the k outputs
        out = k * (jnp.matmul(h2, h2.T, precision=hi) * scale(p["dense"]["w"]) ** 2 + 1.0)
        for i, (pt, gt) in enumerate([ops[:2], ops[2:]]):
            w = jnp.einsum("nsp,nsq->npq", pt, gt, precision=hi).reshape(n, -1)
            b = jnp.sum((g1, g2)[i], axis=(2, 3)).reshape(-1, n).T  # bias gradients
            out = out + jnp.matmul(w, w.T, precision=hi) * scale(p[f"conv{i + 1}"]["w"]) ** 2
            out = out + jnp.matmul(b, b.T, precision=hi)
        return out / k

    return floor, make_operands(params, x)
