"""Multi-device NTKs: on 4 virtual CPU devices the sharded kernel equals the one-device one.

XLA fixes the device count when JAX starts, so the check runs in a fresh interpreter with
`XLA_FLAGS=--xla_force_host_platform_device_count=4`, one interpreter for all cases. By default
it runs each method twice, with x2 given and with None, on options chosen so that each method
and each option meets both (6 of the 18 cases); the slow twin runs the whole product.
"""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import itertools
    import sys

    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import jaxdyn
    from jaxdyn import nets

    devices = jax.devices()
    assert len(devices) == 4, devices

    def check(apply_fn, params, x1, x2, method, **kw):
        one = jaxdyn.ntk_by_group(apply_fn, params, x1, x2, method=method, **kw)
        many = jaxdyn.ntk_by_group(apply_fn, params, x1, x2, method=method, devices="all", **kw)
        assert list(one) == list(many)
        for name in one:
            a, b = np.asarray(one[name]), np.asarray(many[name])
            assert a.shape == b.shape, (a.shape, b.shape)
            # the same arithmetic per row, so equal to a few ulps
            np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-13)
        full = jaxdyn.ntk_fn(apply_fn, method=method, devices=devices[:2], **kw)(x1, x2, params)
        np.testing.assert_allclose(np.asarray(full), sum(np.asarray(v) for v in one.values()),
                                   rtol=1e-12, atol=1e-12)
        return many

    init_fn, apply_fn, _ = nets.serial(nets.Dense(16, W_std=1.4, b_std=0.1), nets.Relu(),
                                       nets.Dense(3, W_std=1.2, b_std=0.2))
    _, params = init_fn(jax.random.PRNGKey(0), (-1, 5))
    x1 = jax.random.normal(jax.random.PRNGKey(1), (10, 5))   # not a multiple of 4
    x2 = jax.random.normal(jax.random.PRNGKey(2), (7, 5))
    METHODS = ["structured", "jacobian", "ntvp"]
    OPTIONS = [{}, {"trace_axes": ()}, {"batch_size": 2}]
    if sys.argv[1] == "full":
        cases = list(itertools.product(METHODS, [True, False], OPTIONS))
    else:
        # a Latin square: each method runs twice, once with x2 and once with None, and its
        # two options differ, so every method and every option meets both x2 and None
        cases = [(m, with_x2, OPTIONS[(i + j + (0 if with_x2 else 1)) % 3])
                 for i, m in enumerate(METHODS) for j, with_x2 in enumerate([True, False])]
    for method, with_x2, kw in cases:
        check(apply_fn, params, x1, x2 if with_x2 else None, method, **kw)
    k = jaxdyn.empirical_ntk(apply_fn, params, x1, devices="all")
    assert len(k.sharding.device_set) == 4, k.sharding

    init_fn, conv_apply, _ = nets.serial(nets.Conv(3, (2, 2), padding="SAME"), nets.Relu(),
                                         nets.Flatten(), nets.Dense(2))
    _, cparams = init_fn(jax.random.PRNGKey(3), (-1, 4, 4, 1))
    xc = jax.random.normal(jax.random.PRNGKey(4), (6, 4, 4, 1))
    check(conv_apply, cparams, xc, None, "structured")
    check(conv_apply, cparams, xc, xc[:5] + 1.0, "structured")
    print("SHARDING-OK")
""")


def run_script(cases):
    # keep conftest's XLA flags (the optimization level) and add the device count
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"
    env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, cases],
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0 and "SHARDING-OK" in out.stdout, out.stderr[-4000:]


def test_sharded_kernels_equal_one_device():
    run_script("pairs")


@pytest.mark.slow
def test_sharded_kernels_equal_one_device_full_product():
    run_script("full")
