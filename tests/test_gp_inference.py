"""Tests for `dynamics.gp_inference`, float64.

References: `dynamics.mse_ensemble` at t = infinity (itself checked against neural-tangents'
`gradient_descent_mse_ensemble` in tests/test_dynamics_ensemble.py), and Gaussian conditioning
computed a second way, from the precision matrix of the joint prior (numpy), and
neural-tangents' own `gp_inference` values (`tests/refs/nt_refs_gp.npz`, written by
`tests/refs/make_nt_refs_gp.py` in the pinned environment of benchmarks/nt_reference).
"""

import pathlib

import numpy as np
import pytest

from jaxdyn import dynamics, nets

REFS_GP = pathlib.Path(__file__).parent / "refs" / "nt_refs_gp.npz"


@pytest.fixture(scope="module")
def gp(nt_refs):
    """relu1_ntk of the refs (Dense(512)-Relu-Dense(1), W_std 1.5, b_std 0.05), its kernels."""
    _, _, kernel_fn = nets.serial(
        nets.Dense(512, W_std=1.5, b_std=0.05), nets.Relu(), nets.Dense(1, W_std=1.5, b_std=0.05)
    )
    x1, x2 = nt_refs["x1"], nt_refs["x2"]
    y = np.concatenate([nt_refs["pred_y"], np.sin(nt_refs["pred_y"])], axis=1)  # (8, 2)
    k = {
        key: {g: np.asarray(getattr(kernel_fn(a, b, ("nngp", "ntk")), g)) for g in ("nngp", "ntk")}
        for key, a, b in [("dd", x1, None), ("td", x2, x1), ("tt", x2, None)]
    }
    return dict(kernel_fn=kernel_fn, x1=x1, x2=x2, y=y, k=k)


def regularised(k, reg):
    return k + reg * np.mean(np.diag(k)) * np.eye(k.shape[0])


def conditioned(k_dd, k_td, k_tt, y):
    """Posterior of f_t given f_d = y from the joint precision P: cov = P_tt^{-1},
    mean = -P_tt^{-1} P_td y (no solve with k_dd itself)."""
    n = k_dd.shape[0]
    precision = np.linalg.inv(np.block([[k_dd, k_td.T], [k_td, k_tt]]))
    cov = np.linalg.inv(precision[n:, n:])
    return -cov @ precision[n:, :n] @ y, cov


@pytest.mark.parametrize("diag_reg", [0.0, 1e-4])
def test_equals_mse_ensemble_at_infinity(gp, diag_reg):
    k = gp["k"]
    predictor = dynamics.gp_inference(k["dd"], gp["y"], diag_reg=diag_reg)
    both = predictor(("nngp", "ntk"), k["td"], k["tt"])
    ensemble = dynamics.mse_ensemble(gp["kernel_fn"], gp["x1"], gp["y"], diag_reg=diag_reg)
    for g in ("nngp", "ntk"):
        want = ensemble(gp["x2"], g, None, compute_cov=True)
        got = getattr(both, g)
        np.testing.assert_allclose(got.mean, want.mean, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got.covariance, want.covariance, rtol=1e-8, atol=1e-10)


def test_nngp_and_ntkgp_are_gaussian_conditioning(gp):
    k, y, reg = gp["k"], gp["y"], 1e-3
    predictor = dynamics.gp_inference(k["dd"], y, diag_reg=reg)
    for g, prior in (("nngp", "nngp"), ("ntkgp", "ntk")):
        got = predictor(g, k["td"], k["tt"])
        mean, cov = conditioned(regularised(k["dd"][prior], reg), k["td"][prior], k["tt"][prior], y)
        np.testing.assert_allclose(got.mean, mean, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(got.covariance, cov, rtol=1e-7, atol=1e-9)
    # The NTK ensemble: its mean is the NTK-GP mean; covariance by eq. 16 in numpy.
    ntk = predictor("ntk", k["td"], k["tt"])
    theta = regularised(k["dd"]["ntk"], reg)
    a = np.linalg.solve(theta, k["td"]["ntk"].T)  # Θ^{-1} Θ_dt
    cross = a.T @ k["td"]["nngp"].T
    cov = k["tt"]["nngp"] + a.T @ k["dd"]["nngp"] @ a - cross - cross.T
    np.testing.assert_allclose(ntk.mean, a.T @ y, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ntk.covariance, cov, rtol=1e-8, atol=1e-10)


def test_train_points_and_single_kernel(gp):
    k, y = gp["k"], gp["y"]
    train = dynamics.gp_inference(k["dd"], y)("nngp", None, True)
    np.testing.assert_array_equal(train.mean, y)
    np.testing.assert_array_equal(train.covariance, np.zeros((8, 8)))
    # One array serves every kernel; without k_test_test there is no covariance.
    mean_only = dynamics.gp_inference(k["dd"]["ntk"], y)("ntk", k["td"]["ntk"])
    assert mean_only.covariance is None
    np.testing.assert_allclose(
        mean_only.mean, k["td"]["ntk"] @ np.linalg.solve(k["dd"]["ntk"], y), rtol=1e-9
    )


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda k, y: dynamics.gp_inference(k["dd"], y[:3]), ValueError, "shape \\(3, 3\\)"),
        (lambda k, y: dynamics.gp_inference(k["dd"], y, diag_reg=-1.0), ValueError, "diag_reg"),
        (lambda k, y: dynamics.gp_inference(k["dd"], y)("gp", k["td"]), ValueError, "get"),
        (
            lambda k, y: dynamics.gp_inference({"ntk": k["dd"]["ntk"]}, y)("nngp", k["td"]),
            ValueError,
            "'nngp' entry",
        ),
    ],
)
def test_bad_input(gp, call, error, match):
    with pytest.raises(error, match=match):
        call(gp["k"], gp["y"])


def test_matches_nt_refs(gp, nt_refs):
    """neural-tangents 0.6.5 `gp_inference` on its own stax kernels; ours come from `nets`."""
    refs = np.load(REFS_GP)
    # same inputs and targets as the shared refs (the script redraws them from one seed)
    np.testing.assert_array_equal(refs["x1"], nt_refs["x1"])
    np.testing.assert_array_equal(refs["y"], nt_refs["pred_y"])
    k, y = gp["k"], refs["y"]
    for reg in (0.0, 1e-4):
        predictor = dynamics.gp_inference(k["dd"], y, diag_reg=reg)
        for g in ("nngp", "ntk", "ntkgp"):
            out = predictor(g, k["td"], k["tt"])
            np.testing.assert_allclose(out.mean, refs[f"gp_reg{reg:g}_{g}_mean"], rtol=1e-8)
            np.testing.assert_allclose(out.covariance, refs[f"gp_reg{reg:g}_{g}_cov"], rtol=1e-8)
