"""jaxdyn.nets' Wide-ResNet blocks and AvgPool: the structured NTK against the per-example
Jacobian contraction, AvgPool against brute-force numpy pooling (outputs and kernels), and the
infinite-width kernel of a WRN with pooling against the seed mean of finite networks."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import StackedNTK, kernel_cases

import jaxdyn
from jaxdyn import nets

SHAPE = (-1, 6, 5, 2)


def windows(H, W, window, strides, padding, count_include_pad=True):
    """`{(p, q): (cells, divisor)}`: the input positions each output position averages, with
    TensorFlow's SAME placement (the extra padded row / column goes last)."""
    sizes = []
    for size, f, s in zip((H, W), window, strides):
        if padding == "VALID":
            sizes.append(((size - f) // s + 1, 0))
        else:
            out = -(-size // s)
            sizes.append((out, max((out - 1) * s + f - size, 0) // 2))
    (oh, lh), (ow, lw) = sizes
    out = {}
    for p, q in itertools.product(range(oh), range(ow)):
        cells = [
            (i, j)
            for i in range(p * strides[0] - lh, p * strides[0] - lh + window[0])
            for j in range(q * strides[1] - lw, q * strides[1] - lw + window[1])
            if 0 <= i < H and 0 <= j < W
        ]
        out[p, q] = cells, (window[0] * window[1] if count_include_pad else len(cells))
    return out


def brute_pool(x, *pool):
    """Average pooling of numpy images `(n, H, W, C)` by explicit loops over windows."""
    win = windows(*x.shape[1:3], *pool)
    oh, ow = max(win)[0] + 1, max(win)[1] + 1
    y = np.zeros((x.shape[0], oh, ow, x.shape[-1]))
    for (p, q), (cells, div) in win.items():
        y[:, p, q] = sum(x[:, i, j] for i, j in cells) / div
    return y


POOLS = [
    ((2, 2), (2, 2), "VALID", True),
    ((3, 2), (1, 2), "SAME", True),
    ((3, 3), (2, 1), "SAME", False),
]


@pytest.fixture(scope="module")
def images():
    x1 = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (4, 6, 5, 2)))
    x2 = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (3, 6, 5, 2)))
    return x1, x2


@pytest.mark.parametrize("window, strides, padding, include", POOLS)
def test_avg_pool_outputs_and_input_kernel_are_brute_force_pooling(
    images, window, strides, padding, include
):
    """apply_fn is explicit window averaging; the kernel of AvgPool-Flatten-Dense on raw
    inputs is the Dense kernel of the brute-force pooled inputs: `W^2 <P x1, P x2> / d + b^2`
    (the first layer's NTK equals its NNGP)."""
    x1, x2 = images
    pool = nets.AvgPool(window, strides, padding, count_include_pad=include)
    ref1, ref2 = (brute_pool(x, window, strides, padding, include) for x in (x1, x2))
    np.testing.assert_allclose(pool.apply_fn((), jnp.asarray(x1)), ref1, rtol=1e-13, atol=1e-14)
    assert pool.init_fn(None, SHAPE)[0] == (-1, *ref1.shape[1:])
    net = nets.serial(pool, nets.Flatten(), nets.Dense(1, W_std=1.3, b_std=0.2))
    k = net.kernel_fn(x2, x1)
    d = ref1[0].size
    nngp = 1.3**2 * ref2.reshape(3, -1) @ ref1.reshape(4, -1).T / d + 0.2**2
    np.testing.assert_allclose(k.nngp, nngp, rtol=1e-13)
    np.testing.assert_allclose(k.ntk, nngp, rtol=1e-13)


def test_avg_pool_kernel_pools_every_pixel_pair(images):
    """Deeper in a network, AvgPool maps the full pixel-pixel covariance of the layer before
    it: `K'[p, p'] = mean over window cells (c, c') of K[c, c']`, by explicit loops over the
    (H, H', W, W') layout of kernel_fn's spatial output (NNGP and NTK alike)."""
    x1, _ = images
    window, strides, padding, include = POOLS[2]
    head = [nets.Conv(3, (2, 2), padding="SAME", W_std=1.4, b_std=0.1), nets.Erf()]
    before = nets.serial(*head).kernel_fn(x1)
    after = nets.serial(*head, nets.AvgPool(window, strides, padding, include)).kernel_fn(x1)
    win = windows(*x1.shape[1:3], window, strides, padding, include)
    for name in ("nngp", "ntk"):
        k = np.asarray(getattr(before, name))  # (n, n, H, H', W, W')
        ref = np.zeros(np.asarray(getattr(after, name)).shape)  # (n, n, P, P', Q, Q')
        for ((p, q), (cells, div)), ((pp, qq), (cells2, div2)) in itertools.product(
            win.items(), repeat=2
        ):
            total = sum(k[:, :, i, ii, j, jj] for i, j in cells for ii, jj in cells2)
            ref[:, :, p, pp, q, qq] = total / (div * div2)
        np.testing.assert_allclose(getattr(after, name), ref, rtol=1e-12, atol=1e-14)


def wrn(width=4, blocks=2, parameterization="ntk"):
    """Conv stem, a WRN block, AvgPool, `blocks - 1` more blocks, GlobalAvgPool readout, 3
    outputs."""
    kw = dict(W_std=1.3, b_std=0.1, parameterization=parameterization)
    return nets.serial(
        nets.Conv(width, (2, 2), padding="SAME", **kw),
        nets.WideResnetBlock(width, filter_shape=(3, 2), **kw),
        nets.AvgPool((2, 2), (2, 2), "SAME"),
        *[nets.WideResnetBlock(width, **kw) for _ in range(blocks - 1)],
        nets.Relu(),
        nets.GlobalAvgPool(),
        nets.Dense(3, **kw),
    )


def check_structured_wrn(images, parameterization, cases, parts=True, blocks=2):
    x1, x2 = (jnp.asarray(x) for x in images)
    init_fn, apply_fn, _ = wrn(blocks=blocks, parameterization=parameterization)
    _, params = init_fn(jax.random.PRNGKey(3), SHAPE)
    assert jaxdyn.structure.of(apply_fn) is not None
    ref = StackedNTK(apply_fn, params, x1, x2, by_group=parts)
    for trace_axes, with_x2, batch_size in cases:
        k = jaxdyn.empirical_ntk(
            apply_fn,
            params,
            x1,
            x2 if with_x2 else None,
            trace_axes=trace_axes,
            method="structured",
            batch_size=batch_size,
        )
        np.testing.assert_allclose(k, ref(trace_axes, with_x2), rtol=1e-12, atol=1e-12)
    if not parts:
        return
    assert jaxdyn.ntk_cost(apply_fn, params, x1, x2).method == "structured"
    # 1 stem + 2 per block + 1 readout = 6 layers, each with its W and b parts
    got = jaxdyn.ntk_by_group(apply_fn, params, x1, x2, method="structured")
    ref_parts = ref.parts((-1,))
    assert list(got) == list(ref_parts)
    for name in ref_parts:
        np.testing.assert_allclose(got[name], ref_parts[name], rtol=1e-12, atol=1e-12)


def test_structured_ntk_of_wrn_equals_jacobian(images):
    """One WRN block between a Conv stem, AvgPool and a Dense readout; the full (n1, n1, k,
    k) kernel in blocks of 2 rows (every block pair kind: diagonal, off-diagonal, ragged).
    The slow twin runs two blocks, the whole (trace_axes, x2, batch_size) product and the
    per-layer parts, in both parameterizations: each case is a compilation of the WRN,
    which is what costs."""
    check_structured_wrn(images, "ntk", [((), False, 2)], parts=False, blocks=1)


@pytest.mark.slow
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_structured_ntk_of_wrn_equals_jacobian_full_product(images, parameterization):
    check_structured_wrn(images, parameterization, kernel_cases(2))


def test_wrn_block_structure_layers_and_errors():
    layers = jaxdyn.structure.of(wrn().apply_fn).layers(
        wrn().init_fn(jax.random.PRNGKey(0), SHAPE)[1]
    )
    assert [l.conv is None for l in layers] == [False] * 5 + [True]
    with pytest.raises(ValueError, match="channels"):
        nets.WideResnetBlock(0)
    with pytest.raises(ValueError, match="padding"):
        nets.AvgPool((2, 2), padding="FULL")
    with pytest.raises(TypeError, match="window_shape"):
        nets.AvgPool(2)
    with pytest.raises(TypeError, match="count_include_pad"):
        nets.AvgPool((2, 2), count_include_pad=1)
    with pytest.raises(ValueError, match="AvgPool"):
        nets.AvgPool((7, 2)).init_fn(None, SHAPE)
    # FanInSum of a block fed by a non-Gaussian input (an activation) is refused
    with pytest.raises(ValueError, match="Gaussian"):
        nets.serial(nets.Relu(), nets.WideResnetBlock(2)).kernel_fn(np.ones((2, 4, 4, 2)))


@pytest.mark.slow
def test_wrn_kernel_is_the_seed_mean_of_finite_networks(images):
    """The infinite-width NTK of the WRN (with AvgPool) against the seed mean of the
    empirical NTKs of width-64 networks: within 4 standard errors plus 2% for the
    O(1/width) finite-width bias (a deep residual net's bias is larger than a plain conv's).
    The seed spread of this 6-layer residual net is about 25% of the kernel at width 64, so
    it takes 48 seeds to bring the standard error under 5% (slow: ~1 min of CPU)."""
    x = jnp.asarray(images[0][:3])
    init_fn, apply_fn, kernel_fn = wrn(width=64)
    S = 48
    params = jax.vmap(lambda k: init_fn(k, SHAPE)[1])(jax.random.split(jax.random.PRNGKey(6), S))
    thetas = np.asarray(
        jax.vmap(lambda p: jaxdyn.empirical_ntk(apply_fn, p, x, method="structured"))(params)
    )
    k = np.asarray(kernel_fn(x, None, "ntk"))
    stderr = thetas.std(0, ddof=1) / np.sqrt(S)
    assert np.all(np.abs(thetas.mean(0) - k) < 4 * stderr + 0.02 * np.abs(k).max())
    assert np.all(stderr < 0.05 * np.abs(k).max())  # the check has teeth
