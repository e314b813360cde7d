"""Tests for `jaxdyn.monte_carlo_kernel_fn`, float64.

References: the infinite-width `kernel_fn` of `jaxdyn.nets` (for one hidden layer the
Monte-Carlo estimates are unbiased at any width, so the error is pure sampling noise and falls
as n_samples^-1/2), and, per sample, `jaxdyn.empirical_ntk` / the outputs of the sampled network.
"""

import jax
import numpy as np
import pytest

import jaxdyn
from jaxdyn import nets

COUNTS = (4, 16, 64, 256, 1024)


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
