"""Tests of `jaxdyn.dynamics.mse_ensemble`: infinite ensembles of infinitely wide networks.

The kernels come from a closed-form kernel function written here for the ``relu1_ntk`` architecture
of tests/refs/make_nt_refs.py (independent of jaxdyn.nets), checked first against the stored
neural-tangents kernels. Besides agreement with neural-tangents' ``gradient_descent_mse_ensemble``
the ensemble is checked against independent computations: the prior at t = 0, the explicit GP
posterior, the closed-form `dynamics.mse` started from f0 = 0, and a Monte-Carlo ensemble of
initial functions pushed through `dynamics.mse`.
"""

import functools
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import dynamics
from jaxdyn.dynamics import _linalg

W_STD, B_STD = 1.5, 0.05
LR, REG = 0.7, 1e-4  # as in the refs' ensemble
GETS = ("ntk", "nngp")


class Kernels(NamedTuple):
    nngp: jax.Array
    ntk: jax.Array


def relu1_kernel_fn(x1, x2, get):
    """Closed-form NNGP/NTK of Dense(W_std, b_std) -> Relu -> Dense(1), NTK parameterisation.

    First layer: ``K0 = W^2 x1.x2 / d + b^2`` (its NTK equals its NNGP). ReLU (arc-cosine kernel):
    with ``c = k12 / sqrt(k11 k22)`` and ``theta = arccos(c)``,
    ``E[relu(u) relu(v)] = sqrt(k11 k22) / (2 pi) (sin theta + (pi - theta) c)`` and
    ``E[relu'(u) relu'(v)] = (pi - theta) / (2 pi)``. Output: ``NNGP = W^2 E[relu relu] + b^2``,
    ``NTK = NNGP + W^2 E[relu' relu'] K0``. ``get``: a name (returns that array) or a tuple of
    names (returns `Kernels`, unrequested fields None).
    """
    nngp, ntk = _relu1_kernels(x1, x1 if x2 is None else x2, same=x2 is None)
    kernels = Kernels(nngp, ntk)
    if isinstance(get, str):
        return getattr(kernels, get)
    return Kernels(*(getattr(kernels, g) if g in get else None for g in Kernels._fields))


@functools.partial(jax.jit, static_argnames="same")
def _relu1_kernels(x1, x2, *, same):
    d = x1.shape[1]
    k12 = W_STD**2 * (x1 @ x2.T) / d + B_STD**2
    k11 = W_STD**2 * jnp.sum(x1**2, axis=1) / d + B_STD**2
    k22 = W_STD**2 * jnp.sum(x2**2, axis=1) / d + B_STD**2
    norm = jnp.sqrt(k11[:, None] * k22[None, :])
    cos = jnp.clip(k12 / norm, -1.0, 1.0)
    if same:
        # A point against itself has cosine exactly 1; rounding just below 1 would move arccos by
        # ~sqrt(eps) (and the NTK diagonal by ~1e-9 relative).
        cos = jnp.where(jnp.eye(x1.shape[0], dtype=bool), 1.0, cos)
    theta = jnp.arccos(cos)
    e_relu = norm / (2 * jnp.pi) * (jnp.sin(theta) + (jnp.pi - theta) * cos)
    e_dot = (jnp.pi - theta) / (2 * jnp.pi)
    nngp = W_STD**2 * e_relu + B_STD**2
    return nngp, nngp + W_STD**2 * e_dot * k12


@pytest.fixture(scope="module")
def data(nt_refs):
    x1, x2, y = nt_refs["x1"], nt_refs["x2"], nt_refs["pred_y"]
    pred = dynamics.mse_ensemble(relu1_kernel_fn, x1, y, learning_rate=LR, diag_reg=REG)
    return {"x1": x1, "x2": x2, "y": y, "ts": nt_refs["pred_ts"], "pred": pred}


def _k(get, a, b=None):
    return np.asarray(relu1_kernel_fn(jnp.asarray(a), None if b is None else jnp.asarray(b), get))


def _regularised(k, reg):
    return k + reg * np.mean(np.diag(k)) * np.eye(k.shape[0])


# ------------------------------------------------------------------------------------------------
# The kernel function and agreement with neural-tangents.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_closed_form_kernel_matches_nt(nt_refs, get):
    x1, x2 = nt_refs["x1"], nt_refs["x2"]
    for got, key in ((_k(get, x1), "11"), (_k(get, x2, x1), "21")):
        ref = nt_refs[f"inf_relu1_ntk_{get}_{key}"]
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("get", GETS)
def test_matches_nt_gradient_descent_mse_ensemble(nt_refs, data, get):
    out = data["pred"](data["x2"], get, data["ts"], compute_cov=True)
    assert isinstance(out, dynamics.Gaussian)
    ref_mean, ref_cov = nt_refs[f"ens_{get}_mean"], nt_refs[f"ens_{get}_cov"]
    assert out.mean.shape == ref_mean.shape == (5, 6, 1)
    assert out.covariance.shape == ref_cov.shape == (5, 6, 6)
    assert out.mean.dtype == out.covariance.dtype == jnp.float64
    np.testing.assert_allclose(out.mean, ref_mean, rtol=1e-8, atol=1e-12 * np.abs(ref_mean).max())
    np.testing.assert_allclose(
        out.covariance, ref_cov, rtol=1e-8, atol=1e-12 * np.abs(ref_cov).max()
    )
    # Without compute_cov: the same mean, no covariance.
    mean_only = data["pred"](data["x2"], get, data["ts"])
    assert mean_only.covariance is None
    np.testing.assert_allclose(mean_only.mean, out.mean, rtol=1e-13, atol=1e-15)


# ------------------------------------------------------------------------------------------------
# Independent checks.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("get", GETS)
def test_time_zero_is_the_prior(data, get):
    out = data["pred"](data["x2"], get, 0.0, compute_cov=True)
    np.testing.assert_array_equal(out.mean, np.zeros((6, 1)))
    np.testing.assert_allclose(out.covariance, _k("nngp", data["x2"]), rtol=1e-13, atol=1e-15)
    # On the train inputs the prior is the (unregularised) train NNGP.
    train = data["pred"](None, get, 0.0, compute_cov=True)
    np.testing.assert_array_equal(train.mean, np.zeros((8, 1)))
    np.testing.assert_allclose(train.covariance, _k("nngp", data["x1"]), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reg", [0.0, REG])
def test_nngp_at_infinity_is_the_gp_posterior(data, reg):
    x1, x2, y = data["x1"], data["x2"], data["y"]
    pred = dynamics.mse_ensemble(relu1_kernel_fn, x1, y, learning_rate=LR, diag_reg=reg)
    k_dd, k_td, k_tt = _regularised(_k("nngp", x1), reg), _k("nngp", x2, x1), _k("nngp", x2)
    mean = k_td @ np.linalg.solve(k_dd, y)
    cov = k_tt - k_td @ np.linalg.solve(k_dd, k_td.T)
    out = pred(x2, "nngp", None, compute_cov=True)
    np.testing.assert_allclose(out.mean, mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out.covariance, cov, rtol=1e-8, atol=1e-11 * np.abs(k_tt).max())


def test_ntk_at_infinity_matches_formula_and_long_time_limit(data):
    """t=None (Cholesky solves) = Lee et al. eqs. 15-16 at t = inf = the eigenbasis at huge t."""
    x1, x2, y, pred = data["x1"], data["x2"], data["y"], data["pred"]
    theta = _regularised(_k("ntk", x1), REG)
    theta_td, k_td, k_tt, k_dd = (
        _k("ntk", x2, x1),
        _k("nngp", x2, x1),
        _k("nngp", x2),
        _k("nngp", x1),
    )
    a = np.linalg.solve(theta, theta_td.T)  # Θ^{-1} Θ_dt
    cross = theta_td @ np.linalg.solve(theta, k_td.T)
    cov = k_tt + a.T @ k_dd @ a - cross - cross.T
    out = pred(x2, "ntk", None, compute_cov=True)
    np.testing.assert_allclose(out.mean, theta_td @ np.linalg.solve(theta, y), rtol=1e-9)
    np.testing.assert_allclose(out.covariance, cov, rtol=1e-7, atol=1e-10 * np.abs(k_tt).max())
    late = pred(x2, "ntk", 1e12, compute_cov=True)
    np.testing.assert_allclose(late.mean, out.mean, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(late.covariance, out.covariance, rtol=1e-6, atol=1e-9)


def test_mean_is_the_closed_form_flow_from_zero(data):
    """The ensemble mean is `dynamics.mse` started from f0 = 0 (the prior mean), train and test."""
    x1, x2, y, ts = data["x1"], data["x2"], data["y"], data["ts"]
    for get in GETS:
        flow = dynamics.mse(_k(get, x1), y, learning_rate=LR, diag_reg=REG)
        train, test = flow(ts, np.zeros_like(y), np.zeros((6, 1)), _k(get, x2, x1))
        np.testing.assert_allclose(data["pred"](x2, get, ts).mean, test, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(data["pred"](None, get, ts).mean, train, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("get", GETS)
def test_covariance_is_symmetric_psd(data, get):
    ts = np.array([0.0, 0.3, 3.0, 30.0, 300.0, 3e4])
    for x_test in (data["x2"], None):
        for t in (ts, None):
            cov = np.asarray(data["pred"](x_test, get, t, compute_cov=True).covariance)
            np.testing.assert_array_equal(cov, np.swapaxes(cov, -1, -2))
            scale = np.abs(cov).max() if np.abs(cov).max() > 0 else 1.0
            assert np.linalg.eigvalsh(cov).min() >= -1e-10 * scale


@pytest.mark.parametrize("get", GETS)
def test_monte_carlo_ensemble_of_initialisations(data, get):
    """Eqs. 14-16 from scratch: sample f0 ~ GP(0, NNGP) on train + test points jointly, train each
    sample with the deterministic ``get`` kernel by `dynamics.mse` (vmap over samples), and compare
    the empirical mean / covariance with the ensemble's.

    Tolerances are Monte-Carlo standard errors: for S samples of a Gaussian with covariance C,
    ``se(mean_i) = sqrt(C_ii / S)`` and ``se(cov_ij) = sqrt((C_ii C_jj + C_ij^2) / S)`` (the
    variance of ``x_i x_j``; the estimated mean adds only O(1/S)). We allow 5 standard errors per
    entry (fixed key, so the test is deterministic; 5 sigma over a few hundred entries would almost
    never fail by chance) and check that the tolerance is tight enough to reject wrong answers.
    """
    x1, x2, y = data["x1"], data["x2"], data["y"]
    n, m, samples = x1.shape[0], x2.shape[0], 20000
    ts = np.array([0.5, 5.0, 50.0])
    xs = np.concatenate([x1, x2])
    lam, vecs = np.linalg.eigh(_k("nngp", xs))
    root = vecs * np.sqrt(np.maximum(lam, 0.0))  # root @ root.T = joint NNGP
    z = jax.random.normal(jax.random.PRNGKey(0), (samples, n + m, 1), dtype=jnp.float64)
    f0 = jnp.einsum("ij,sjc->sic", root, z)
    flow = dynamics.mse(_k(get, x1), y, learning_rate=LR, diag_reg=REG)
    k_td = _k(get, x2, x1)
    train, test = jax.vmap(lambda a, b: flow(ts, a, b, k_td))(f0[:, :n], f0[:, n:])
    for x_test, outputs in ((x2, test), (None, train)):
        out = data["pred"](x_test, get, ts, compute_cov=True)
        emp = np.asarray(outputs[..., 0])  # (S, T, points)
        emp_mean = emp.mean(axis=0)
        centred = emp - emp_mean
        emp_cov = np.einsum("sti,stj->tij", centred, centred) / (samples - 1)
        cov = np.asarray(out.covariance)
        var = np.diagonal(cov, axis1=1, axis2=2)  # (T, points)
        se_mean = np.sqrt(var / samples)
        se_cov = np.sqrt((var[:, :, None] * var[:, None, :] + cov**2) / samples)
        assert np.all(np.abs(emp_mean - np.asarray(out.mean)[..., 0]) <= 5 * se_mean + 1e-12)
        assert np.all(np.abs(emp_cov - cov) <= 5 * se_cov + 1e-12)
        # The check has teeth: the prior covariance, and the ensemble trained with the other
        # kernel, are far outside the tolerance.
        prior = _k("nngp", x1 if x_test is None else x_test)
        assert np.any(np.abs(emp_cov - prior[None]) > 20 * se_cov)
        other = "nngp" if get == "ntk" else "ntk"
        wrong = np.asarray(data["pred"](x_test, other, ts, compute_cov=True).covariance)
        assert np.any(np.abs(emp_cov - wrong) > 20 * se_cov)


def test_train_inputs_at_infinity(data):
    out = data["pred"](None, "ntk", None, compute_cov=True)
    np.testing.assert_array_equal(out.mean, data["y"])
    np.testing.assert_array_equal(out.covariance, np.zeros((8, 8)))
    assert data["pred"](None, "nngp", None).covariance is None


def test_singular_kernel_falls_back_to_pseudo_inverse(data):
    """A repeated train point without diag_reg: Cholesky is singular; t=None uses the pinv."""
    x1, x2 = data["x1"], data["x2"]
    xs = np.concatenate([x1, x1[:1]])
    y = np.concatenate([data["y"], data["y"][:1]])
    pred = dynamics.mse_ensemble(relu1_kernel_fn, xs, y, learning_rate=LR)
    with pytest.warns(UserWarning, match="pseudo-inverse"):
        out = pred(x2, "nngp", None, compute_cov=True)
    k_pinv = np.linalg.pinv(_k("nngp", xs), rcond=1e-10, hermitian=True)
    k_td = _k("nngp", x2, xs)
    np.testing.assert_allclose(out.mean, k_td @ k_pinv @ y, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(
        out.covariance, _k("nngp", x2) - k_td @ k_pinv @ k_td.T, rtol=1e-6, atol=1e-8
    )


# ------------------------------------------------------------------------------------------------
# API: shapes, tuples of kernels, caching, jit.
# ------------------------------------------------------------------------------------------------


def test_time_shapes(data):
    pred, x2 = data["pred"], data["x2"]
    scalar = pred(x2, "ntk", 2.0, compute_cov=True)
    assert scalar.mean.shape == (6, 1) and scalar.covariance.shape == (6, 6)
    grid = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    many = pred(x2, "ntk", grid, compute_cov=True)
    assert many.mean.shape == (2, 3, 6, 1) and many.covariance.shape == (2, 3, 6, 6)
    np.testing.assert_allclose(many.mean[1, 0], pred(x2, "ntk", 3.0).mean, rtol=1e-13)
    np.testing.assert_allclose(many.covariance[0, 2], scalar.covariance, rtol=1e-12, atol=1e-15)
    assert pred(x2, "nngp", None).mean.shape == (6, 1)
    assert pred(None, "ntk", grid, compute_cov=True).covariance.shape == (2, 3, 8, 8)
    # Several outputs: one column per target, one shared covariance.
    y2 = np.concatenate([data["y"], -2.0 * data["y"]], axis=1)
    two = dynamics.mse_ensemble(relu1_kernel_fn, data["x1"], y2, learning_rate=LR, diag_reg=REG)
    out = two(x2, "ntk", data["ts"], compute_cov=True)
    assert out.mean.shape == (5, 6, 2) and out.covariance.shape == (5, 6, 6)
    one = dynamics.mse_ensemble(
        relu1_kernel_fn, data["x1"], data["y"], learning_rate=LR / 2, diag_reg=REG
    )(x2, "ntk", data["ts"], compute_cov=True)  # lr / N: N doubles with k = 2, so halve lr
    np.testing.assert_allclose(out.mean[..., :1], one.mean, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(out.mean[..., 1:], -2.0 * one.mean, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(out.covariance, one.covariance, rtol=1e-10, atol=1e-13)


def test_tuple_get(data):
    pred, x2, ts = data["pred"], data["x2"], data["ts"]
    both = pred(x2, ("ntk", "nngp"), ts, compute_cov=True)
    assert type(both).__name__ == "Gaussians" and both._fields == ("ntk", "nngp")
    for g in GETS:
        alone = pred(x2, g, ts, compute_cov=True)
        assert isinstance(getattr(both, g), dynamics.Gaussian)
        np.testing.assert_array_equal(getattr(both, g).mean, alone.mean)
        np.testing.assert_array_equal(getattr(both, g).covariance, alone.covariance)
    assert pred(x2, ["nngp"], None)._fields == ("nngp",)


def test_kernels_and_eigendecompositions_are_computed_once(data, monkeypatch):
    calls, eighs = [], []
    original = _linalg.eigh

    def counting_kernel_fn(x1, x2, get):
        calls.append((x1.shape[0], None if x2 is None else x2.shape[0], get))
        return relu1_kernel_fn(x1, x2, get)

    def counting_eigh(matrix):
        eighs.append(matrix.shape)
        return original(matrix)

    monkeypatch.setattr(_linalg, "eigh", counting_eigh)
    pred = dynamics.mse_ensemble(counting_kernel_fn, data["x1"], data["y"], learning_rate=LR)
    assert calls == [(8, None, ("nngp", "ntk"))] and eighs == []
    for t in (0.5, data["ts"], 7.0):
        for get in GETS:
            pred(data["x2"], get, t, compute_cov=True)
            pred(None, get, t)
    assert eighs == [(8, 8), (8, 8)]  # one per kernel kind, for any number of times
    assert all(c[:2] != (8, None) for c in calls[1:])  # the train-train kernels never again
    pred(data["x2"], "ntk", None)
    assert len(eighs) == 2  # t = None solves by Cholesky


def test_jit(data):
    pred, x2, ts = data["pred"], data["x2"], data["ts"]

    @jax.jit
    def run(x_test, t):
        out = pred(x_test, "ntk", t, compute_cov=True)
        inf = pred(x_test, "nngp", None, compute_cov=True)
        return out.mean, out.covariance, inf.mean, inf.covariance

    got = run(jnp.asarray(x2), jnp.asarray(ts))
    want = pred(x2, "ntk", ts, compute_cov=True) + pred(x2, "nngp", None, compute_cov=True)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)

    # Built inside the trace too (traced train inputs and targets).
    @jax.jit
    def build_and_run(x_train, y_train, t):
        p = dynamics.mse_ensemble(relu1_kernel_fn, x_train, y_train, learning_rate=LR, diag_reg=REG)
        return p(x2, "ntk", t, compute_cov=True)

    traced = build_and_run(jnp.asarray(data["x1"]), jnp.asarray(data["y"]), jnp.asarray(ts))
    np.testing.assert_allclose(traced.mean, want[0], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(traced.covariance, want[1], rtol=1e-10, atol=1e-13)


# ------------------------------------------------------------------------------------------------
# Validation.
# ------------------------------------------------------------------------------------------------


def _build(**kwargs):
    def case(data):
        args = {
            "kernel_fn": relu1_kernel_fn,
            "x_train": data["x1"],
            "y_train": data["y"],
            "learning_rate": LR,
            "diag_reg": REG,
        }
        args.update(kwargs)
        kernel_fn, x, y = args.pop("kernel_fn"), args.pop("x_train"), args.pop("y_train")
        return dynamics.mse_ensemble(kernel_fn, x, y, **args)

    return case


def _call(**kwargs):
    def case(data):
        args = {"x_test": data["x2"], "get": "ntk", "t": 1.0, "compute_cov": False}
        args.update(kwargs)
        return data["pred"](**args)

    return case


_NAN_Y = np.full((8, 1), np.nan)

VALIDATION_CASES = {
    "y_not_2d": (_build(y_train=np.zeros(8)), ValueError, r"y_train=.*2-D \(n, k\).*shape \(8,\)"),
    "xy_mismatch": (
        _build(x_train=np.zeros((7, 5))),
        ValueError,
        r"x_train=.*n = y_train.shape\[0\] = 8.*\(7, 5\)",
    ),
    "y_nan": (_build(y_train=_NAN_Y), ValueError, r"y_train=.*finite.*8 NaN/Inf"),
    "y_complex": (_build(y_train=np.zeros((8, 1), complex)), TypeError, r"y_train=.*complex"),
    "lr_zero": (_build(learning_rate=0.0), ValueError, r"learning_rate=.*> 0.*got 0.0"),
    "lr_negative": (_build(learning_rate=-1.0), ValueError, r"learning_rate=.*> 0.*got -1.0"),
    "lr_string": (_build(learning_rate="fast"), TypeError, r"learning_rate=.*real scalar.*fast"),
    "reg_negative": (_build(diag_reg=-1e-3), ValueError, r"diag_reg=.*>= 0.*got -0.001"),
    "kernel_fn_not_callable": (_build(kernel_fn=3), TypeError, r"kernel_fn=.*callable.*int"),
    "kernel_fn_bad_shape": (
        _build(kernel_fn=lambda a, b, g: Kernels(jnp.ones((3, 3)), jnp.ones((3, 3)))),
        ValueError,
        r"kernel_fn=.*\(8, 8\) kernel 'nngp'.*\(3, 3\)",
    ),
    "kernel_fn_no_attribute": (
        _build(kernel_fn=lambda a, b, g: jnp.ones((8, 8))),
        TypeError,
        r"kernel_fn=.*'nngp' attribute.*ArrayImpl",
    ),
    "kernel_not_psd": (  # found by the (lazy) eigendecomposition, on the first finite-t call
        lambda data: _build(
            kernel_fn=lambda a, b, g: Kernels(-jnp.eye(8), -jnp.eye(8)), diag_reg=0.0
        )(data)(None, "ntk", 1.0),
        ValueError,
        r"kernel_fn=.*not positive semi-definite",
    ),
    "negative_time": (_call(t=np.array([1.0, -2.0])), ValueError, r"t=.*non-negative.*-2.0"),
    "nan_time": (_call(t=np.nan), ValueError, r"t=.*NaN"),
    "unknown_get": (_call(get="ntkgp"), ValueError, r"get=.*'ntk', 'nngp'.*'ntkgp'"),
    "get_type": (_call(get=3), TypeError, r"get=.*'ntk', 'nngp'.*int 3"),
    "get_repeated": (_call(get=("ntk", "ntk")), ValueError, r"get=.*repeat"),
    "compute_cov_type": (_call(compute_cov="yes"), TypeError, r"compute_cov=.*bool.*'yes'"),
    "x_test_features": (
        _call(x_test=np.zeros((6, 4))),
        ValueError,
        r"x_test=.*\(m, 5\).*\(6, 4\)",
    ),
    "x_test_nan": (_call(x_test=np.full((6, 5), np.nan)), ValueError, r"x_test=.*finite"),
}


@pytest.mark.parametrize("name", list(VALIDATION_CASES))
def test_validation(data, name):
    case, error, pattern = VALIDATION_CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # errors, not warnings
        with pytest.raises(error, match=pattern):
            case(data)
