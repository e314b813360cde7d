"""jaxdyn.nets: infinite-width kernels against neural-tangents 0.6.5 and against finite
networks; the finite `apply_fn`; validation, jit, blocking."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn
from jaxdyn import nets

EXTRA = pathlib.Path(__file__).parent / "refs" / "nt_refs_extra.npz"


@pytest.fixture(scope="module")
def extra():
    """Written by tests/refs/make_nt_refs_extra.py (see tests/refs/README.md)."""
    with np.load(EXTRA, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def rel_err(a, ref):
    return float(np.max(np.abs(np.asarray(a) - ref)) / np.max(np.abs(ref)))


# neural-tangents' own k(x, x) diagonal carries ~1e-9 noise for ReLU-type layers (it evaluates
# sqrt(k11 k22 - k12^2) on rounded k12 ~ sqrt(k11 k22)); jaxdyn's diagonal is exact, so the
# comparisons use 1e-8 relative to the largest entry, as the task asks.
TOL = 1e-8

# --------------------------------------------------------------------------- architectures
# Mirrors of the stax architectures in tests/refs/make_nt_refs.py and make_nt_refs_extra.py.


def base_archs(S=1.0):
    D = nets.Dense
    return {
        "relu1_ntk": [
            D(512, W_std=S * 1.5, b_std=0.05),
            nets.Relu(),
            D(1, W_std=S * 1.5, b_std=0.05),
        ],
        "relu3_ntk": [D(512, W_std=S * 2**0.5, b_std=0.1), nets.Relu()] * 3
        + [D(1, W_std=S * 2**0.5, b_std=0.1)],
        "erf2_ntk": [D(512, W_std=S * 1.3, b_std=0.2), nets.Erf()] * 2
        + [D(1, W_std=S * 1.3, b_std=0.2)],
        "relu2_std": [D(512, W_std=S * 1.4, b_std=0.1, parameterization="standard"), nets.Relu()]
        * 2
        + [D(1, W_std=S * 1.4, b_std=0.1, parameterization="standard")],
    }


def dense_archs(S):
    D = lambda w, b, **kw: nets.Dense(512, W_std=S * w, b_std=b, **kw)
    out = lambda w, b, **kw: nets.Dense(1, W_std=S * w, b_std=b, **kw)
    return {
        "relu2": [D(1.5, 0.1), nets.Relu(), D(1.5, 0.1), nets.Relu(), out(1.5, 0.1)],
        "erf2": [D(1.3, 0.2), nets.Erf(), D(1.3, 0.2), nets.Erf(), out(1.3, 0.2)],
        "erfabc": [D(1.2, 0.1), nets.Erf(a=0.7, b=1.4, c=0.3), out(1.2, 0.1)],
        "leaky2": [
            D(1.4, 0.1),
            nets.LeakyRelu(0.1),
            D(1.4, 0.1),
            nets.LeakyRelu(0.1),
            out(1.4, 0.1),
        ],
        "abrelu": [
            D(1.2, 0.05),
            nets.ABRelu(-0.5, 1.2),
            D(1.2, 0.05),
            nets.ABRelu(-0.5, 1.2),
            out(1.2, 0.05),
        ],
        "sin2": [D(1.1, 0.2), nets.Sin(), D(1.1, 0.2), nets.Sin(), out(1.1, 0.2)],
        "sinabc": [D(1.0, 0.1), nets.Sin(a=1.3, b=0.8, c=0.4), out(1.0, 0.1)],
        "gelu2": [D(1.3, 0.1), nets.Gelu(), D(1.3, 0.1), nets.Gelu(), out(1.3, 0.1)],
        "ident": [D(1.3, 0.3), nets.Identity(), out(0.9, 0.2)],
        "resnet": [
            D(1.5, 0.1),
            nets.FanOut(2),
            nets.parallel(nets.serial(nets.Relu(), D(1.2, 0.1)), nets.Identity()),
            nets.FanInSum(),
            nets.Relu(),
            out(1.5, 0.1),
        ],
        "erf_std": [
            D(1.3, 0.1, parameterization="standard"),
            nets.Erf(),
            nets.Dense(256, W_std=S * 1.3, b_std=0.1, parameterization="standard"),
            nets.Erf(),
            out(1.3, 0.1, parameterization="standard"),
        ],
    }


def conv_archs():
    C = lambda **kw: nets.Conv(8, (3, 3), **{"W_std": 1.5, "b_std": 0.1, **kw})
    head = lambda: nets.Dense(1, W_std=1.5, b_std=0.1)
    return {
        "cnn_flat": [
            C(padding="SAME"),
            nets.Relu(),
            C(padding="SAME"),
            nets.Relu(),
            nets.Flatten(),
            head(),
        ],
        "cnn_gap": [
            C(padding="SAME"),
            nets.Relu(),
            C(padding="SAME"),
            nets.Relu(),
            nets.GlobalAvgPool(),
            head(),
        ],
        "cnn_valid_stride": [
            C(padding="VALID", strides=(2, 2)),
            nets.Erf(),
            nets.Conv(8, (2, 2), W_std=1.3, b_std=0.2),
            nets.Relu(),
            nets.GlobalAvgPool(),
            nets.Dense(1, W_std=1.2, b_std=0.0),
        ],
        "cnn_std": [
            C(padding="SAME", parameterization="standard"),
            nets.Relu(),
            nets.Conv(
                16, (2, 3), padding="VALID", W_std=1.4, b_std=0.1, parameterization="standard"
            ),
            nets.Relu(),
            nets.Flatten(),
            nets.Dense(1, W_std=1.5, b_std=0.1, parameterization="standard"),
        ],
        "cnn_res": [
            C(padding="SAME"),
            nets.FanOut(2),
            nets.parallel(nets.serial(nets.Relu(), C(padding="SAME")), nets.Identity()),
            nets.FanInSum(),
            nets.Relu(),
            nets.GlobalAvgPool(),
            head(),
        ],
    }


CASES = [(1, 1.0), (2, 0.7), (2, 1.3)]  # (seed, W_std factor) as in make_nt_refs_extra.py


def both_kernels(layers, x1, x2):
    """k(x1, x1) and k(x2, x1), sliced from one kernel of the stacked inputs (one compile)."""
    n1 = x1.shape[0]
    k = nets.serial(*layers).kernel_fn(np.concatenate([x1, x2]))
    return {
        "11": nets.Kernel(k.nngp[:n1, :n1], k.ntk[:n1, :n1]),
        "21": nets.Kernel(k.nngp[n1:, :n1], k.ntk[n1:, :n1]),
    }


# --------------------------------------------------------------------------- neural-tangents


@pytest.mark.parametrize("arch", ["relu1_ntk", "relu3_ntk", "erf2_ntk", "relu2_std"])
def test_kernels_match_nt_refs(nt_refs, arch):
    kfn = nets.serial(*base_archs()[arch]).kernel_fn
    ks = {"11": kfn(nt_refs["x1"]), "21": kfn(nt_refs["x2"], nt_refs["x1"])}
    for tag, k in ks.items():
        for get in ("nngp", "ntk"):
            ref = nt_refs[f"inf_{arch}_{get}_{tag}"]
            assert getattr(k, get).shape == ref.shape
            assert rel_err(getattr(k, get), ref) < TOL, (arch, get, tag)


@pytest.mark.parametrize("arch", list(dense_archs(1.0)))
def test_dense_kernels_match_nt_extra(extra, arch):
    """Other seeds and W_std scales; LeakyRelu, ABRelu, Erf(a, b, c), Sin(a, b, c), Gelu
    (NT: closed form; jaxdyn: quadrature), Identity, a residual block, standard
    parameterization with unequal widths."""
    # quadrature layers (gelu2) compile slowly: one case is enough for them
    for seed, S in CASES[:1] if arch == "gelu2" else CASES:
        ks = both_kernels(dense_archs(S)[arch], extra[f"x1_s{seed}"], extra[f"x2_s{seed}"])
        for tag, k in ks.items():
            for get in ("nngp", "ntk"):
                ref = extra[f"inf_{arch}_s{seed}_w{S:g}_{get}_{tag}"]
                assert getattr(k, get).shape == ref.shape
                assert rel_err(getattr(k, get), ref) < TOL, (arch, seed, S, get, tag)


@pytest.mark.parametrize("arch", list(conv_archs()))
def test_conv_kernels_match_nt_extra(extra, arch):
    """SAME / VALID padding, strides, Flatten and GlobalAvgPool readouts (full pixel-pixel
    covariances), standard parameterization, a residual conv block."""
    ks = both_kernels(conv_archs()[arch], extra["img1"], extra["img2"])
    for tag, k in ks.items():
        for get in ("nngp", "ntk"):
            ref = extra[f"inf_{arch}_{get}_{tag}"]
            assert getattr(k, get).shape == ref.shape
            assert rel_err(getattr(k, get), ref) < TOL, (arch, get, tag)


# --------------------------------------------------------------------------- finite networks


def test_mean_empirical_ntk_converges_like_inverse_sqrt_width():
    """Independent of neural-tangents: the empirical NTK of finite networks fluctuates
    around kernel_fn's NTK with standard deviation ~ width^-1/2 (plus an O(1/width) bias).

    For each width we draw S networks (vmap over seeds) and take the RMS over seeds of
    ||Theta_w - Theta_inf||_F / ||Theta_inf||_F. Its log-log slope is -1/2; with S = 64
    seeds of 4x4 kernels the estimate's noise moves the slope by a few 0.01, and the
    O(1/w) bias can only steepen it a little at w = 64, hence the window [-0.8, -0.3]
    (which excludes both no convergence, 0, and a wrong rate such as -1). The seed mean
    must sit within 4 standard errors of Theta_inf, so the limit itself is right."""
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 5))
    arch = lambda w: nets.serial(
        nets.Dense(w, W_std=1.5, b_std=0.1), nets.Relu(), nets.Dense(1, W_std=1.5, b_std=0.1)
    )
    k_inf = np.asarray(arch(1)[2](x, None, "ntk"))
    widths, S = (64, 256, 1024), 64
    rms = []
    for w in widths:
        init_fn, apply_fn, _ = arch(w)
        params = jax.vmap(lambda k, f=init_fn: f(k, (-1, 5))[1])(
            jax.random.split(jax.random.PRNGKey(w), S)
        )
        thetas = np.asarray(
            jax.vmap(lambda p, f=apply_fn: jaxdyn.empirical_ntk(f, p, x, method="jacobian"))(params)
        )
        err = np.sqrt(np.mean(np.sum((thetas - k_inf) ** 2, axis=(1, 2)))) / np.linalg.norm(k_inf)
        mean_err = np.linalg.norm(thetas.mean(0) - k_inf) / np.linalg.norm(k_inf)
        assert mean_err < 4 * err / np.sqrt(S), (w, mean_err, err)
        rms.append(err)
    slope = np.polyfit(np.log(widths), np.log(rms), 1)[0]
    assert -0.8 < slope < -0.3, (slope, rms)


def test_apply_fn_matches_nt_finite_network(nt_refs):
    """Same parameters as NT's stax MLP -> same outputs (NTK parameterization)."""
    init_fn, apply_fn, _ = nets.serial(
        nets.Dense(64, W_std=1.5, b_std=0.05),
        nets.Relu(),
        nets.Dense(64, W_std=1.5, b_std=0.05),
        nets.Erf(),
        nets.Dense(3, W_std=1.5, b_std=0.05),
    )
    p = [nt_refs[f"emp_param_{i}"] for i in range(6)]
    params = ((p[0], p[1].reshape(-1)), (), (p[2], p[3].reshape(-1)), (), (p[4], p[5].reshape(-1)))
    shape, init_params = init_fn(jax.random.PRNGKey(0), (-1, 5))
    assert shape == (-1, 3)
    assert jax.tree_util.tree_structure(init_params) == jax.tree_util.tree_structure(params)
    np.testing.assert_allclose(
        apply_fn(params, nt_refs["x1"]), nt_refs["emp_f_x1"], rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(
        jaxdyn.empirical_ntk(apply_fn, params, nt_refs["x2"], nt_refs["x1"]),
        nt_refs["emp_ntk_trace_impl1_21"],
        rtol=1e-10,
        atol=1e-12,
    )


def test_parameterizations_and_layers_apply():
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 4))
    # ntk: W_std / sqrt(fan_in) x @ W + b_std b; standard: x @ W + b with scaled init
    _, (W, b) = nets.Dense(5, W_std=2.0, b_std=0.5).init_fn(jax.random.PRNGKey(2), (3, 4))
    out = nets.Dense(5, W_std=2.0, b_std=0.5).apply_fn((W, b), x)
    np.testing.assert_allclose(out, 2.0 / 2 * x @ W + 0.5 * b[None], rtol=1e-13)
    _, (Ws, bs) = nets.Dense(5, W_std=2.0, b_std=0.5, parameterization="standard").init_fn(
        jax.random.PRNGKey(2), (3, 4)
    )
    np.testing.assert_allclose(Ws, W, rtol=1e-13)  # same draw, scaled by W_std/sqrt(fan_in)
    np.testing.assert_allclose(bs, 0.5 * b, rtol=1e-13)
    _, (_, bn) = nets.Dense(5, b_std=None).init_fn(jax.random.PRNGKey(2), (3, 4))
    assert bn is None
    # activations
    z = jnp.linspace(-2, 2, 9)[None]
    for layer, f in [
        (nets.ABRelu(-0.3, 2.0), lambda t: -0.3 * np.minimum(t, 0) + 2 * np.maximum(t, 0)),
        (nets.LeakyRelu(0.2), lambda t: np.where(t > 0, t, 0.2 * t)),
        (nets.Sin(2.0, 0.5, 0.1), lambda t: 2 * np.sin(0.5 * t + 0.1)),
        (nets.Tanh(), np.tanh),
        (nets.Sigmoid(), lambda t: 1 / (1 + np.exp(-t))),
        (nets.Identity(), lambda t: t),
    ]:
        np.testing.assert_allclose(layer.apply_fn((), z), f(np.asarray(z)), rtol=1e-12, atol=1e-14)
    # conv net: shapes, SAME / VALID / strides, GlobalAvgPool, and a jvp through apply_fn
    init_fn, apply_fn, _ = nets.serial(
        nets.Conv(4, (3, 3), padding="SAME"),
        nets.Relu(),
        nets.Conv(3, (2, 2), strides=(2, 2)),
        nets.GlobalAvgPool(),
    )
    shape, params = init_fn(jax.random.PRNGKey(3), (-1, 6, 6, 2))
    assert shape == (-1, 3)
    assert params[0][0].shape == (3, 3, 2, 4) and params[2][0].shape == (2, 2, 4, 3)
    imgs = jax.random.normal(jax.random.PRNGKey(4), (2, 6, 6, 2))
    tangent = jax.tree_util.tree_map(jnp.ones_like, params)
    out, dout = jax.jit(lambda p, t: jax.jvp(lambda q: apply_fn(q, imgs), (p,), (t,)))(
        params, tangent
    )
    assert out.shape == dout.shape == (2, 3)
    # output shapes of init_fn agree with what apply_fn produces (odd sizes, strides, SAME)
    x7 = jax.ShapeDtypeStruct((2, 7, 7, 2), jnp.float64)
    for conv, want in [
        (nets.Conv(3, (2, 2), strides=(2, 2)), (2, 3, 3, 3)),
        (nets.Conv(3, (3, 3), strides=(2, 2), padding="SAME"), (2, 4, 4, 3)),
    ]:
        box = {}

        def init(key, conv=conv, box=box):
            box["shape"], p = conv.init_fn(key, (2, 7, 7, 2))
            return p

        p_struct = jax.eval_shape(init, jax.random.PRNGKey(0))
        assert box["shape"] == want == jax.eval_shape(conv.apply_fn, p_struct, x7).shape
    assert nets.Flatten().init_fn(None, (-1, 6, 6, 2))[0] == (-1, 72)


def test_conv_apply_fn_agrees_with_conv_kernel_at_large_width():
    """The finite conv apply_fn and the conv kernel describe the same network: the seed
    mean of the empirical NTK of a width-128 Conv-Relu-GlobalAvgPool-Dense net is within 4
    standard errors of kernel_fn's NTK, plus 1% for the O(1/width) finite-width bias."""
    imgs = jax.random.normal(jax.random.PRNGKey(5), (2, 4, 4, 2))
    init_fn, apply_fn, kernel_fn = nets.serial(
        nets.Conv(128, (3, 3), padding="SAME", W_std=1.4, b_std=0.1),
        nets.Relu(),
        nets.GlobalAvgPool(),
        nets.Dense(1, W_std=1.4),
    )
    S = 32
    params = jax.vmap(lambda k: init_fn(k, (-1, 4, 4, 2))[1])(
        jax.random.split(jax.random.PRNGKey(6), S)
    )
    thetas = np.asarray(
        jax.vmap(lambda p: jaxdyn.empirical_ntk(apply_fn, p, imgs, method="jacobian"))(params)
    )
    k = np.asarray(kernel_fn(imgs, None, "ntk"))
    stderr = thetas.std(0, ddof=1) / np.sqrt(S)
    assert np.all(np.abs(thetas.mean(0) - k) < 4 * stderr + 0.01 * np.abs(k).max())
    assert np.all(stderr < 0.05 * np.abs(k).max())  # the check has teeth


# --------------------------------------------------------------------------- contract


@pytest.fixture(scope="module")
def dense_net():
    return nets.serial(
        nets.Dense(16, W_std=1.3, b_std=0.1),
        nets.Relu(),
        nets.Dense(16, W_std=1.3, b_std=0.1),
        nets.Tanh(deg=24, angular_deg=16),
        nets.Dense(1, W_std=1.3, b_std=0.1),
    )


@pytest.fixture(scope="module")
def conv_net():
    return nets.serial(
        nets.Conv(4, (2, 2), padding="SAME", W_std=1.4, b_std=0.1),
        nets.Erf(),
        nets.Conv(4, (2, 2), W_std=1.4, b_std=0.1),
        nets.Relu(),
        nets.GlobalAvgPool(),
        nets.Dense(1, W_std=1.4),
    )


def test_get_forms(dense_net):
    x1, x2 = (
        jax.random.normal(jax.random.PRNGKey(0), (5, 3)),
        jax.random.normal(jax.random.PRNGKey(1), (4, 3)),
    )
    kfn = dense_net.kernel_fn
    both = kfn(x1, x2)
    assert isinstance(both, nets.Kernel) and both.nngp.shape == both.ntk.shape == (5, 4)
    np.testing.assert_array_equal(kfn(x1, x2, "ntk"), both.ntk)
    np.testing.assert_array_equal(kfn(x1, x2, "nngp"), both.nngp)
    only = kfn(x1, x2, ("ntk",))
    assert only._fields == ("ntk",)
    np.testing.assert_array_equal(only.ntk, both.ntk)
    assert kfn(x1, x2, ("ntk", "nngp"))._fields == ("ntk", "nngp")


@pytest.mark.parametrize("which", ["dense", "conv"])
def test_x2_none_symmetric_psd(which, dense_net, conv_net):
    net, x = (
        (dense_net, jax.random.normal(jax.random.PRNGKey(0), (7, 3)))
        if which == "dense"
        else (conv_net, jax.random.normal(jax.random.PRNGKey(0), (5, 4, 4, 2)))
    )
    k = net.kernel_fn(x)
    for a in (np.asarray(k.nngp), np.asarray(k.ntk)):
        np.testing.assert_array_equal(a, a.T)
        ev = np.linalg.eigvalsh(a)
        assert ev.min() > -1e-12 * ev.max()
    k12 = net.kernel_fn(x, x)  # explicit x2: same values up to rounding
    np.testing.assert_allclose(k12.ntk, k.ntk, rtol=1e-6)


@pytest.mark.parametrize("which", ["dense", "conv"])
def test_jit_and_blocking_equal_unblocked(which, dense_net, conv_net):
    if which == "dense":
        net = dense_net
        x1, x2 = (
            jax.random.normal(jax.random.PRNGKey(0), (7, 3)),
            jax.random.normal(jax.random.PRNGKey(1), (5, 3)),
        )
    else:
        net = conv_net
        x1 = jax.random.normal(jax.random.PRNGKey(0), (5, 3, 3, 2))
        x2 = jax.random.normal(jax.random.PRNGKey(1), (4, 3, 3, 2))
    kfn = net.kernel_fn
    # x2=None is the harder case (diagonal blocks are computed differently); conv nets
    # are slow to compile, so they only check that one
    for b in (x2, None) if which == "dense" else (None,):
        full = kfn(x1, b)
        # in blocks of 3 (uneven: the last block is padded), under an outer jit
        blocked = jax.jit(lambda a, c: kfn(a, c, batch_size=3))(x1, b)
        for get in ("nngp", "ntk"):
            # equal to rounding: XLA may fuse (and so round) the blocked program differently
            np.testing.assert_allclose(
                getattr(blocked, get), getattr(full, get), rtol=1e-12, atol=1e-15
            )
    if which == "dense":  # one block, larger than the inputs (padding only)
        np.testing.assert_allclose(
            kfn(x1, x2, "ntk", batch_size=100), kfn(x1, x2, "ntk"), rtol=1e-12
        )


def test_input_errors(dense_net, conv_net):
    kd, kc = dense_net.kernel_fn, conv_net.kernel_fn
    x = jnp.ones((3, 4))
    with pytest.raises(ValueError, match=r"`x1` must have shape \(n, features\).*got shape \(4,\)"):
        kd(jnp.ones(4))
    with pytest.raises(ValueError, match="same per-example shape"):
        kd(x, jnp.ones((2, 5)))
    with pytest.raises(
        ValueError, match=r"Conv needs inputs of shape \(n, H, W, C\); got shape \(3, 4\)"
    ):
        kc(x)
    with pytest.raises(ValueError, match=r"Dense needs inputs of shape \(n, features\).*Flatten"):
        kd(jnp.ones((3, 4, 4, 2)))
    with pytest.raises(ValueError, match=r"`get` must be one of \('nngp', 'ntk'\).*'cov'"):
        kd(x, None, "cov")
    with pytest.raises(ValueError, match="`get`"):
        kd(x, None, ("ntk", "ntk"))
    with pytest.raises(TypeError, match="`x2` must be an array"):
        kd(x, [[1.0] * 4])
    with pytest.raises(ValueError, match="`batch_size`"):
        kd(x, batch_size=0)
    with pytest.raises(ValueError, match="images of at least that size"):
        kc(jnp.ones((2, 1, 1, 2)))


def test_construction_errors():
    with pytest.raises(ValueError, match="`parameterization` must be one of"):
        nets.Dense(3, parameterization="mup")
    with pytest.raises(ValueError, match="`out` must be a positive int; got 0"):
        nets.Dense(0)
    with pytest.raises(ValueError, match="`W_std` must be a non-negative float"):
        nets.Dense(3, W_std=-1.0)
    with pytest.raises(ValueError, match="`padding` must be 'VALID' or 'SAME'"):
        nets.Conv(3, (3, 3), padding="CIRCULAR")
    with pytest.raises(ValueError, match="`filter_shape` must be 2 positive ints"):
        nets.Conv(3, (3,))
    with pytest.raises(TypeError, match="layer 1 must be a jaxdyn.nets layer"):
        nets.serial(nets.Relu(), lambda x: x)
    with pytest.raises(ValueError, match="`deg` must be an int"):
        nets.Elementwise(jnp.tanh, deg=0)
    x = jnp.ones((2, 3))
    # parallel without FanOut; a list never merged; FanInSum of a non-Gaussian branch
    with pytest.raises(ValueError, match=r"needs a list of 2 kernels \(put FanOut\(2\)"):
        nets.serial(nets.parallel(nets.Relu(), nets.Relu())).kernel_fn(x)
    with pytest.raises(TypeError, match="merge them with FanInSum"):
        nets.serial(nets.Dense(3), nets.FanOut(2)).kernel_fn(x)
    with pytest.raises(ValueError, match="mean-zero Gaussian"):
        nets.serial(
            nets.Dense(3),
            nets.FanOut(2),
            nets.parallel(nets.Relu(), nets.Identity()),
            nets.FanInSum(),
        ).kernel_fn(x)
    with pytest.raises(
        ValueError, match=r"Dense needs inputs of shape \(n, features\); got shape \(-1, 4, 4, 2\)"
    ):
        nets.Dense(3).init_fn(jax.random.PRNGKey(0), (-1, 4, 4, 2))
