"""Tests for `jaxdyn.monte_carlo_kernel_fn`, float64.

References: the infinite-width `kernel_fn` of `jaxdyn.nets` (for one hidden layer the
Monte-Carlo estimates are unbiased at any width, so the error is pure sampling noise and falls
as n_samples^-1/2), and, per sample, the definition: the contraction of the sampled network's
full parameter Jacobians (`jax.jacrev`, einsum) and the outputs' Gram.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn
from jaxdyn import nets

COUNTS = (4, 16, 64, 256, 1024)
KEY = jax.random.PRNGKey(3)


@pytest.fixture(scope="module")
def net():
    init_fn, apply_fn, kernel_fn = nets.serial(
        nets.Dense(32, W_std=1.5, b_std=0.05), nets.Relu(), nets.Dense(8, W_std=1.5, b_std=0.05)
    )
    rng = np.random.default_rng(0)
    return dict(
        init_fn=init_fn,
        apply_fn=apply_fn,
        kernel_fn=kernel_fn,
        x1=rng.normal(size=(6, 4)),
        x2=rng.normal(size=(4, 4)),
    )


@pytest.fixture(scope="module")
def estimates(net):
    """Estimates at every count of COUNTS for 6 independent keys (one compiled program)."""
    out = []
    for seed in range(6):
        mc = jaxdyn.monte_carlo_kernel_fn(
            net["init_fn"], net["apply_fn"], jax.random.PRNGKey(seed), COUNTS, sample_batch_size=256
        )
        out.append(mc(net["x1"], net["x2"]))
    return out


def test_error_falls_like_inverse_square_root(net, estimates):
    """RMS relative error over 6 independent estimates at each count; log-log slope ~ -1/2."""
    ref = net["kernel_fn"](net["x1"], net["x2"])
    for g in ("nngp", "ntk"):
        errs = [
            [
                np.linalg.norm(getattr(k, g) - getattr(ref, g)) / np.linalg.norm(getattr(ref, g))
                for k in per_key
            ]
            for per_key in estimates
        ]
        rms = np.sqrt(np.mean(np.square(errs), axis=0))
        slope = np.polyfit(np.log(COUNTS), np.log(rms), 1)[0]
        assert -0.62 < slope < -0.38, (g, slope, rms)
        assert rms[-1] < 0.05, (g, rms)


@pytest.mark.slow  # ~8 s of CPU (the tiled program's compilation): outside the default budget
def test_batched_equals_unbatched_and_samples_are_empirical(net, estimates):
    key = jax.random.PRNGKey(0)
    tiled = jaxdyn.monte_carlo_kernel_fn(
        net["init_fn"], net["apply_fn"], key, COUNTS, batch_size=4, sample_batch_size=100
    )
    for a, b in zip(estimates[0], tiled(net["x1"], net["x2"])):
        np.testing.assert_allclose(a.nngp, b.nngp, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(a.ntk, b.ntk, rtol=1e-12, atol=1e-14)
    # The first count (4 samples): the mean of the empirical kernels of the networks
    # initialised with the first 4 keys.
    nngp, ntk = 0.0, 0.0
    for k in jax.random.split(key, COUNTS[-1])[: COUNTS[0]]:
        params = net["init_fn"](k, (-1, 4))[1]
        f1, f2 = net["apply_fn"](params, net["x1"]), net["apply_fn"](params, net["x2"])
        nngp = nngp + np.asarray(f1 @ f2.T) / 8 / COUNTS[0]
        theta = jaxdyn.empirical_ntk(net["apply_fn"], params, net["x1"], net["x2"])
        ntk = ntk + np.asarray(theta) / COUNTS[0]
    np.testing.assert_allclose(estimates[0][0].nngp, nngp, rtol=1e-12)
    np.testing.assert_allclose(estimates[0][0].ntk, ntk, rtol=1e-10)


@functools.cache  # the unstructured MLP shares the MLP's reference
def _definition(model, n_samples):
    """Mean over the samples of f(x) f(x)^T / k and J(x) J(x)^T / k on x = [x1; x2], J the full
    parameter Jacobian of the sampled network (jax.jacrev of the whole batch, contracted leaf by
    leaf); its blocks are the kernels of x1 with itself and with x2."""
    (init_fn, apply_fn), x1, x2, _, _ = _models()[model]
    x = np.concatenate([x1, x2])

    @jax.jit  # one compilation for all samples (eager jacrev of a conv net takes seconds)
    def one(params):
        f = apply_fn(params, x)
        j = [
            a.reshape(*a.shape[:2], -1)
            for a in jax.tree_util.tree_leaves(jax.jacrev(apply_fn)(params, x))
        ]
        theta = sum(jnp.einsum("iap,jap->ij", a, a) for a in j)
        return f @ f.T / f.shape[-1], theta / f.shape[-1]

    keys = jax.random.split(KEY, n_samples)
    per = [one(init_fn(k, (-1, *x1.shape[1:]))[1]) for k in keys]
    return tuple(np.mean([np.asarray(p[i]) for p in per], axis=0) for i in (0, 1))


def _models():
    rng = np.random.default_rng(1)
    mlp = nets.serial(nets.Dense(16, b_std=0.1), nets.Relu(), nets.Dense(3, b_std=0.1))
    conv = nets.serial(
        nets.Conv(3, (2, 2), strides=(2, 1), padding="SAME", b_std=0.1),
        nets.Relu(),
        nets.Flatten(),
        nets.Dense(2, b_std=0.1),
    )
    # Without its linear_structure the MLP goes through ntk_fn's auto choice of jacobian/ntvp.
    plain = (mlp[0], lambda p, x: mlp[1](p, x))
    x1, x2 = rng.normal(size=(5, 4)), rng.normal(size=(3, 4))
    c1, c2 = rng.normal(size=(3, 5, 4, 2)), rng.normal(size=(2, 5, 4, 2))
    # (model, x1, x2, keyword arguments, the x2 arguments to check)
    return {
        "mlp": (mlp[:2], x1, x2, {}, (None, x2)),
        "conv": (conv[:2], c1, c2, dict(batch_size=2), (None, c2)),
        "mlp-unstructured-tiled": (plain, x1, x2, dict(batch_size=2, sample_batch_size=1), (None,)),
    }


@pytest.mark.parametrize("model", ["mlp", "conv", "mlp-unstructured-tiled"])
def test_samples_equal_the_jacobian_contraction(model):
    """Each estimate is the mean of the per-sample definition (x2 None: x1 with itself, and x2
    given) to 1e-10 in float64: the structured / auto per-sample kernels are that quantity."""
    (init_fn, apply_fn), x1, _, kwargs, others = _models()[model]
    mc = jaxdyn.monte_carlo_kernel_fn(init_fn, apply_fn, KEY, 2, **kwargs)
    n1 = x1.shape[0]
    for other in others:
        got = mc(x1, other)
        cols = slice(0, n1) if other is None else slice(n1, None)
        nngp, ntk = (k[:n1, cols] for k in _definition(model.split("-")[0], 2))
        assert got.nngp.dtype == got.ntk.dtype == np.float64
        np.testing.assert_allclose(got.nngp, nngp, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got.ntk, ntk, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(n_samples=0), ValueError, "n_samples"),
        (dict(n_samples=(8, 4)), ValueError, "increasing"),
        (dict(get="gp"), ValueError, "get"),
        (dict(init_fn=3), TypeError, "init_fn"),
    ],
)
def test_bad_arguments(net, kwargs, error, match):
    args = dict(init_fn=net["init_fn"], apply_fn=net["apply_fn"], n_samples=4)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        jaxdyn.monte_carlo_kernel_fn(
            args.pop("init_fn"), args.pop("apply_fn"), jax.random.PRNGKey(0), **args
        )


def test_outputs_must_be_two_dimensional(net):
    mc = jaxdyn.monte_carlo_kernel_fn(
        net["init_fn"], lambda p, x: net["apply_fn"](p, x)[:, None], jax.random.PRNGKey(0), 2
    )
    with pytest.raises(ValueError, match=r"apply_fn\(params, x\)` must be an \(n, k\) array"):
        mc(net["x1"])
