"""jaxdyn.infinite: the quadrature rule, closed-form layer kernels, and the layer maps."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf as sp_erf

from jaxdyn import infinite, nets


def covariances(n=6, seed=0):
    """Arrays k12, k11, k22 over a spread of variances and correlations, including the
    edges rho = +-1 and a zero variance."""
    rng = np.random.default_rng(seed)
    k11 = np.concatenate([rng.uniform(0.05, 4.0, n), [1.3, 0.7, 2.0, 0.0]])
    k22 = np.concatenate([rng.uniform(0.05, 4.0, n), [1.3, 0.7, 0.5, 1.0]])
    rho = np.concatenate([rng.uniform(-1, 1, n), [1.0, -1.0, 0.999999, 0.0]])
    k12 = rho * np.sqrt(k11 * k22)
    return jnp.asarray(k12), jnp.asarray(k11), jnp.asarray(k22)


# --------------------------------------------------------------------------- quadrature


@pytest.mark.parametrize("deg", [1, 4, 16, 24])
def test_radial_rule_is_gaussian(deg):
    """`radial_rule(deg)` integrates r^k against r exp(-r^2/2) on [0, inf) exactly for every
    k <= 2 deg - 1 (the defining property of a Gauss rule); the moments are
    2^(k/2) Gamma(k/2 + 1)."""
    nodes, weights = infinite.radial_rule(deg)
    assert nodes.shape == weights.shape == (deg,)
    assert np.all(nodes > 0) and np.all(weights > 0)
    for k in range(2 * deg):
        exact = 2 ** (k / 2) * math.gamma(k / 2 + 1)
        assert abs(np.sum(weights * nodes**k) - exact) < 1e-13 * exact, k


def test_gaussian_expectation_of_polynomials_and_known_integrals():
    k12, k11, k22 = covariances()
    E = lambda f, **kw: np.asarray(infinite.gaussian_expectation(f, k12, k11, k22, **kw))
    a, b, c = (np.asarray(t) for t in (k12, k11, k22))
    np.testing.assert_allclose(E(lambda u, v: jnp.ones_like(u)), 1.0, rtol=1e-14)
    np.testing.assert_allclose(E(lambda u, v: u * v), a, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(E(lambda u, v: u**2), b, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(
        E(lambda u, v: u**2 * v**2), b * c + 2 * a**2, rtol=1e-13, atol=1e-15
    )
    np.testing.assert_allclose(E(lambda u, v: u**3 * v), 3 * b * a, rtol=1e-13, atol=1e-15)
    # E[cos(u - v)] = exp(-(k11 + k22 - 2 k12) / 2): smooth, not polynomial
    np.testing.assert_allclose(
        E(lambda u, v: jnp.cos(u - v)), np.exp(-(b + c - 2 * a) / 2), rtol=1e-12
    )
    # E[1{u > 0} 1{v > 0}] = 1/4 + asin(rho) / (2 pi): discontinuous at 0, still exact
    rho = np.where(b * c > 0, a / np.sqrt(np.where(b * c > 0, b * c, 1)), 0.0)
    step = E(lambda u, v: (u > 0).astype(u.dtype) * (v > 0).astype(u.dtype))
    ok = (b > 0) & (c > 0)
    np.testing.assert_allclose(
        step[ok], 0.25 + np.arcsin(np.clip(rho[ok], -1, 1)) / (2 * np.pi), atol=1e-13
    )


def test_quadrature_converges_to_plain_gauss_hermite_for_tanh():
    """Independent check for an activation with no closed form: against a 300 x 300 tensor
    Gauss-Hermite rule (fine for smooth tanh at moderate variance), and the error of the
    polar rule falls fast with its degree (spectral convergence)."""
    k12, k11, k22 = (t[:-1] for t in covariances())  # drop the zero variance
    z, w = np.polynomial.hermite_e.hermegauss(300)
    w = w / w.sum()
    a, b, c = (np.asarray(t) for t in (k12, k11, k22))
    rho = a / np.sqrt(b * c)
    Z1, Z2 = z[:, None], z[None, :]
    ref = []
    for i in range(len(a)):
        u = np.sqrt(b[i]) * Z1
        v = np.sqrt(c[i]) * (rho[i] * Z1 + np.sqrt(max(1 - rho[i] ** 2, 0)) * Z2)
        ref.append(np.sum(w[:, None] * w[None, :] * np.tanh(u) * np.tanh(v)))
    ref = np.array(ref)
    errs = []
    for deg, adeg in [(8, 6), (16, 12), (32, 24), (64, 48)]:
        est = infinite.gaussian_expectation(
            lambda u, v: jnp.tanh(u) * jnp.tanh(v), k12, k11, k22, deg=deg, angular_deg=adeg
        )
        errs.append(np.max(np.abs(np.asarray(est) - ref)))
    assert errs[-1] < 1e-12, errs  # the reference itself is good to ~1e-13
    assert errs[0] > errs[1] > errs[2], errs


# --------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize(
    "name", ["relu", "leaky", "abrelu", "erf", "erf_abc", "sin", "sin_abc", "identity"]
)
def test_closed_forms_equal_quadrature(name):
    """Every closed-form kernel against the quadrature of its own phi (phi' by autodiff),
    on random covariances including rho = +-1: agreement to 1e-11 or better."""
    cases = {
        "relu": (jax.nn.relu, lambda *k: infinite.abrelu_kernel(*k, a=0.0, b=1.0)),
        "leaky": (
            lambda x: jnp.where(x > 0, x, 0.1 * x),
            lambda *k: infinite.abrelu_kernel(*k, a=0.1, b=1.0),
        ),
        "abrelu": (
            lambda x: -0.5 * jnp.minimum(x, 0) + 1.2 * jnp.maximum(x, 0),
            lambda *k: infinite.abrelu_kernel(*k, a=-0.5, b=1.2),
        ),
        "erf": (jax.scipy.special.erf, infinite.erf_kernel),
        "erf_abc": (
            lambda x: 0.7 * jax.scipy.special.erf(1.4 * x) + 0.3,
            lambda *k: infinite.erf_kernel(*k, a=0.7, b=1.4, c=0.3),
        ),
        "sin": (jnp.sin, infinite.sin_kernel),
        "sin_abc": (
            lambda x: 1.3 * jnp.sin(0.8 * x + 0.4),
            lambda *k: infinite.sin_kernel(*k, a=1.3, b=0.8, c=0.4),
        ),
        "identity": (lambda x: x, infinite.identity_kernel),
    }
    phi, closed = cases[name]
    k12, k11, k22 = covariances()
    q_nngp, q_dot = infinite.quadrature_kernel(phi)(k12, k11, k22)
    c_nngp, c_dot = closed(k12, k11, k22)
    np.testing.assert_allclose(c_nngp, q_nngp, rtol=1e-11, atol=1e-13)
    if name != "relu" and name != "leaky" and name != "abrelu":
        np.testing.assert_allclose(c_dot, q_dot, rtol=1e-11, atol=1e-13)
    else:  # phi' is a step: exact where both variances are positive (else 0 * step at 0)
        ok = np.asarray((k11 > 0) & (k22 > 0))
        np.testing.assert_allclose(
            np.asarray(c_dot)[ok], np.asarray(q_dot)[ok], rtol=1e-11, atol=1e-13
        )


def test_closed_forms_match_monte_carlo():
    """Sanity of the formulas themselves against sampling (independent of quadrature)."""
    rng = np.random.default_rng(3)
    k11, k22, k12 = 1.7, 0.6, -0.55
    L = np.linalg.cholesky(np.array([[k11, k12], [k12, k22]]))
    u, v = L @ rng.normal(size=(2, 400_000))
    for phi, dphi, closed in [
        (lambda x: np.maximum(x, 0), lambda x: (x > 0) * 1.0, infinite.abrelu_kernel),
        (sp_erf, lambda x: 2 / np.sqrt(np.pi) * np.exp(-(x**2)), infinite.erf_kernel),
        (np.sin, np.cos, infinite.sin_kernel),
    ]:
        nngp, dot = closed(jnp.asarray(k12), jnp.asarray(k11), jnp.asarray(k22))
        for est, val in [(phi(u) * phi(v), nngp), (dphi(u) * dphi(v), dot)]:
            assert abs(est.mean() - float(val)) < 5 * est.std() / np.sqrt(est.size)


def test_network_kernels_quadrature_vs_closed_form():
    """Whole networks: Elementwise(fn) layers reproduce Relu, Erf and Sin networks (NNGP and
    NTK) to 1e-10 relative, for x2 given (Relu) and x2=None (the layer-level test above
    covers the other closed forms)."""
    x1 = jax.random.normal(jax.random.PRNGKey(0), (5, 4))
    x2 = jax.random.normal(jax.random.PRNGKey(1), (3, 4))
    D = lambda: nets.Dense(32, W_std=1.5, b_std=0.1)
    for closed, fn in [
        (nets.Relu(), jax.nn.relu),
        (nets.Erf(), jax.scipy.special.erf),
        (nets.Sin(), jnp.sin),
    ]:
        kc = nets.serial(D(), closed, D(), closed, nets.Dense(1)).kernel_fn
        kq = nets.serial(
            D(), nets.Elementwise(fn), D(), nets.Elementwise(fn), nets.Dense(1)
        ).kernel_fn
        for b in (x2, None) if closed.kernel_fn.name == "ABRelu(0.0, 1.0)" else (None,):
            a_, q_ = kc(x1, b), kq(x1, b)
            for get in ("nngp", "ntk"):
                ref = np.asarray(getattr(a_, get))
                assert (
                    np.max(np.abs(np.asarray(getattr(q_, get)) - ref)) < 1e-10 * np.abs(ref).max()
                )


def test_diagonal_is_exact():
    """k(x, x) through ReLU layers follows the exact diagonal recursion k -> k / 2,
    dot -> 1/2 (theta = 0), bit-for-bit up to rounding, jit-compiled or not."""
    x = jax.random.normal(jax.random.PRNGKey(2), (6, 3))
    kfn = nets.serial(
        nets.Dense(8, W_std=1.3, b_std=0.1),
        nets.Relu(),
        nets.Dense(8, W_std=1.3, b_std=0.1),
        nets.Relu(),
        nets.Dense(1, W_std=1.3, b_std=0.1),
    ).kernel_fn
    k = np.sum(np.asarray(x) ** 2, 1) / 3
    ntk = 0 * k
    for _ in range(2):
        k = 1.69 * k + 0.01
        ntk = k + 1.69 * ntk
        k, ntk = k / 2, ntk / 2
    k = 1.69 * k + 0.01
    ntk = k + 1.69 * ntk
    for out in (kfn(x), jax.jit(lambda a: kfn(a))(x), kfn(x, batch_size=4)):
        np.testing.assert_allclose(np.diag(out.nngp), k, rtol=1e-14)
        np.testing.assert_allclose(np.diag(out.ntk), ntk, rtol=1e-14)


# --------------------------------------------------------------------------- layer maps


def test_conv_1x1_equals_dense_per_position_and_pool_reads():
    """A 1x1 convolution is a Dense layer at each position; GlobalAvgPool of the full
    spatial NNGP is the covariance of pixel means; Flatten of it is the mean of the
    same-position entries."""
    x = jax.random.normal(jax.random.PRNGKey(3), (3, 4, 5, 2))
    k0 = infinite.inputs_to_kernel(x)
    assert k0.nngp.shape == (3, 3, 4, 4, 5, 5) and k0.cov1.shape == (3, 4, 4, 5, 5)
    kc = infinite.conv(k0, 7, (1, 1), (1, 1), "VALID", 1.3, 0.2, "ntk")
    kd = infinite.dense(k0, 7, 1.3, 0.2, "ntk")
    np.testing.assert_allclose(kc.nngp, kd.nngp, rtol=1e-14)
    np.testing.assert_allclose(kc.ntk, kd.ntk, rtol=1e-14)
    xa = np.asarray(x)
    pooled = infinite.global_avg_pool(k0)
    means = xa.mean(axis=(1, 2))
    np.testing.assert_allclose(pooled.nngp, means @ means.T / 2, rtol=1e-12)
    flat = infinite.flatten(k0)
    xf = xa.reshape(3, -1)
    np.testing.assert_allclose(flat.nngp, xf @ xf.T / xf.shape[1], rtol=1e-12)
    assert flat.channels == 40 and flat.spatial == ()


@pytest.mark.parametrize("padding,strides", [("SAME", (1, 1)), ("SAME", (2, 2)), ("VALID", (2, 1))])
def test_conv_kernel_equals_expectation_over_filters(padding, strides):
    """The conv NNGP map equals E over i.i.d. filters of the product of conv outputs, which
    for a linear conv is an exact identity: average of Theta over all filter draws =
    W_std^2 / fan_in * sum over filter entries. Checked by summing over a complete basis of
    filters (each weight set to 1 in turn) instead of sampling."""
    x = jax.random.normal(jax.random.PRNGKey(4), (2, 5, 6, 3))
    fh, fw, C = 3, 2, 3
    k = jax.jit(
        lambda x: (
            infinite.conv(
                infinite.inputs_to_kernel(x), 1, (fh, fw), strides, padding, 1.0, None, "ntk"
            ).nngp
        )
    )(x)
    # output channel m of this conv uses the m-th basis filter (weight m set to 1)
    basis = jnp.eye(fh * fw * C).reshape(fh, fw, C, fh * fw * C)
    y = jax.lax.conv_general_dilated(
        x,
        basis,
        strides,
        padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )
    acc = jnp.einsum("ihwm,jHWm->ijhHwW", y, y, precision=jax.lax.Precision.HIGHEST)
    np.testing.assert_allclose(k, np.asarray(acc) / (fh * fw * C), rtol=1e-12, atol=1e-14)
