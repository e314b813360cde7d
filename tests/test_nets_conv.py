"""`jaxdyn._nets_conv.conv2d` (the convolution of `nets.Conv`), float64: its values and its
derivatives in every mode equal `lax.conv_general_dilated`'s (JAX's own rules are the
reference), and inside a loop every convolution of a training step compiles to XLA's fast
layout (the reason the module exists; the timing itself is measured in
benchmarks/conv_loops.py, not here)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxdyn import nets
from jaxdyn._nets_conv import conv2d

CASES = [((1, 1), "SAME"), ((2, 1), "VALID")]


def reference(x, W, strides, padding):
    return lax.conv_general_dilated(
        x, W, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=lax.Precision.HIGHEST,
    )  # fmt: skip


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=(3, 7, 6, 2)))
        W = jnp.asarray(rng.normal(size=(3, 2, 2, 4)))
        dx = jnp.asarray(rng.normal(size=x.shape))
        dW = jnp.asarray(rng.normal(size=W.shape))
    return x, W, dx, dW


@pytest.mark.parametrize("strides, padding", CASES)
def test_values_and_derivatives_equal_lax(arrays, strides, padding):
    x, W, dx, dW = arrays
    with jax.enable_x64(True):
        ours = lambda a, b: conv2d(a, b, strides, padding)
        ref = lambda a, b: reference(a, b, strides, padding)
        np.testing.assert_allclose(ours(x, W), ref(x, W), rtol=1e-13, atol=1e-13)
        # forward mode: both tangents, and each alone (the symbolic-zero branches)
        for t in [(dx, dW), (dx, jnp.zeros_like(W)), (jnp.zeros_like(x), dW)]:
            np.testing.assert_allclose(
                jax.jvp(ours, (x, W), t)[1], jax.jvp(ref, (x, W), t)[1], atol=1e-12
            )
        np.testing.assert_allclose(
            jax.jvp(lambda a: ours(a, W), (x,), (dx,))[1],
            jax.jvp(lambda a: ref(a, W), (x,), (dx,))[1],
            atol=1e-12,
        )
        # reverse mode
        out, vjp_ours = jax.vjp(ours, x, W)
        ct = jnp.cos(out)
        for a, b in zip(vjp_ours(ct), jax.vjp(ref, x, W)[1](ct)):
            np.testing.assert_allclose(a, b, atol=1e-12)
        # second order: Hessian-vector product of a scalar loss, through the JVP rule
        loss = lambda f: lambda a, b: jnp.sum(jnp.sin(f(a, b)))
        hvp = lambda f: jax.jvp(jax.grad(loss(f), argnums=(0, 1)), (x, W), (dx, dW))[1]
        for a, b in zip(hvp(ours), hvp(ref)):
            np.testing.assert_allclose(a, b, atol=1e-11)
        # vmap over kernels (seeds) and a scan give the same numbers
        Ws = jnp.stack([W, 2 * W])
        np.testing.assert_allclose(
            jax.vmap(lambda b: jax.grad(loss(ours), 1)(x, b))(Ws),
            jax.vmap(lambda b: jax.grad(loss(ref), 1)(x, b))(Ws),
            atol=1e-11,
        )
        scanned = lax.scan(lambda c, b: (c, jax.grad(loss(ours), 0)(x, b)), 0.0, Ws)[1]
        np.testing.assert_allclose(scanned[1], jax.grad(loss(ref), 0)(x, 2 * W), atol=1e-11)


def test_training_step_in_a_loop_uses_fast_convolutions():
    """Every convolution of a scanned gradient step (forward, input gradient, weight gradient)
    compiles with XLA's canonical `b01f_01io->b01f` labels; with `lax.conv_general_dilated`'s
    own rules two of the three do not inside a loop (jax-ml/jax#12868)."""
    init_fn, apply_fn, _ = nets.serial(
        nets.Conv(4, (3, 3), padding="SAME"), nets.Relu(), nets.Conv(4, (3, 3)), nets.Relu(),
        nets.Flatten(), nets.Dense(2),
    )  # fmt: skip
    x = jnp.ones((2, 6, 6, 3))
    _, params = init_fn(jax.random.PRNGKey(0), x.shape)
    loss = lambda p: jnp.sum(apply_fn(p, x) ** 2)

    def steps(p):
        step = lambda q, _: (jax.tree.map(lambda a, g: a - 0.1 * g, q, jax.grad(loss)(q)), None)
        return lax.scan(step, p, None, length=2)[0]

    hlo = jax.jit(steps).lower(params).compile().as_text()
    labels = re.findall(r"convolution\(.*?dim_labels=(\S+?),", hlo)
    assert len(labels) >= 5, labels  # 2 forward, 2 weight gradients, >= 1 input gradient
    assert set(labels) == {"b01f_01io->b01f"}, labels
