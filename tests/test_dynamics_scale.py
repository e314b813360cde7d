"""Closed-form dynamics at scale: float64 factorisation of float32 kernels, thousands of times,
and the Cholesky path for t=None.

References are independent of the module: scipy's ``expm`` (gradient flow), numpy matrix powers and
explicit recurrences (gradient descent) and ``numpy.linalg.solve`` (t = infinity), all in float64
on the float32 kernel's exact values. tests/conftest.py turns x64 on globally; the tests of JAX's
default configuration switch it off locally with ``jax.enable_x64(False)``.
"""

import re
import warnings

import jax
import numpy as np
import pytest
import scipy.linalg

from jaxdyn import dynamics
from jaxdyn.dynamics import _linalg

EPS32 = float(np.finfo(np.float32).eps)  # 1.19e-7


def ill_conditioned(seed=0, n=60, k=2, m=5, lam_min=1e-6, lam_max=1e2):
    """A float32 kernel with eigenvalues log-spaced over [lam_min, lam_max] (cond 1e8).

    The test kernel is ``B K`` (rows in the train kernel's range, like a real NTK's test block), so
    that ``K_test K^{-1}`` is well conditioned and predictions have a meaningful float64 answer.
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    kernel32 = ((q * np.logspace(np.log10(lam_min), np.log10(lam_max), n)) @ q.T).astype(np.float32)
    kernel32 = np.triu(kernel32) + np.triu(kernel32, 1).T  # exactly symmetric in float32
    b = rng.normal(size=(m, n)) / np.sqrt(n)
    k_test32 = (b @ kernel32.astype(np.float64)).astype(np.float32)
    return {
        "n": n,
        "k": k,
        "K32": kernel32,
        "K": kernel32.astype(np.float64),  # the float32 entries, taken as exact
        "Kt32": k_test32,
        "Kt": k_test32.astype(np.float64),
        "y": rng.normal(size=(n, k)).astype(np.float32),
        "f0": (0.3 * rng.normal(size=(n, k))).astype(np.float32),
        "f0t": (0.3 * rng.normal(size=(m, k))).astype(np.float32),
    }


def flow_reference(p, lr, times):
    """Gradient flow in float64 by scipy's expm: train and test outputs at each time."""
    n_out = p["y"].size
    r0 = p["f0"].astype(np.float64) - p["y"]
    train, test = [], []
    for t in times:
        s = lr * t / n_out
        decay = scipy.linalg.expm(-s * p["K"])
        r_t = decay @ r0
        train.append(p["y"] + r_t)
        # f_test_t = f0_test - K_test K^{-1} (I - e^{-sK}) r0; K^{-1} via an LU solve.
        test.append(p["f0t"] - p["Kt"] @ np.linalg.solve(p["K"], r0 - r_t))
    return np.stack(train), np.stack(test)


def infinity_reference(p):
    r0 = p["f0"].astype(np.float64) - p["y"]
    return p["f0t"] - p["Kt"] @ np.linalg.solve(p["K"], r0)


# Times with s = lr t / N in {0, 1e2, 1e4, 1e6}: at 1e6 the smallest modes (lam = 1e-6) are half
# way, the ones a float32 eigendecomposition cannot resolve (their eigenvalues are below its
# rounding floor eps32 * lam_max ~ 1e-5).
LR = 1.0


def times_for(p):
    return np.array([0.0, 1e2, 1e4, 1e6]) * p["y"].size / LR


def errors(p, pred, times):
    train, test = pred(times, p["f0"], p["f0t"], p["Kt32"])
    train_only = pred(times, p["f0"])
    ref_train, ref_test = flow_reference(p, LR, times)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the float32 Cholesky falls back to pinv
        inf_test = pred(None, p["f0"], p["f0t"], p["Kt32"])[1]
    assert train.dtype == test.dtype == train_only.dtype == inf_test.dtype == np.float32
    ref_loss = 0.5 * np.mean((ref_train - p["y"]) ** 2, axis=(1, 2))
    return {
        "train": float(np.max(np.abs(train - ref_train))),
        "train_only": float(np.max(np.abs(train_only - ref_train))),
        "test": float(np.max(np.abs(test - ref_test))),
        "inf": float(np.max(np.abs(inf_test - infinity_reference(p)))),
        "loss": float(np.max(np.abs(pred.loss(times, p["f0"]) - ref_loss))),
    }


# Tolerances for solve_dtype="float64" (outputs are float32, |f| <~ 3):
# * float64 contractions (test outputs, t=None, train outputs when test inputs are given) are
#   exact up to the final rounding to float32: 4 ulps of |f| ~ 3 -> 4 * 3 * eps32 = 1.4e-6.
# * train-only outputs / the loss evolve in float32 from the rounded eigenpairs: rounding V
#   (|dV| ~ eps32 per entry) and two float32 contractions of length n = 60 give about
#   sqrt(n) * eps32 * |r0| ~ 1e-6 (measured 7e-7 on this problem); we allow 5e-6.
TIGHT = 1.5e-6
MIXED = 5e-6


def check_float64_beats_float32(p, err64, err32):
    for key in ("train", "test", "inf"):
        assert err64[key] <= TIGHT, (key, err64)
    assert err64["train_only"] <= MIXED, err64
    assert err64["loss"] <= MIXED, err64
    # The plain float32 path cannot resolve eigenvalues below ~eps32 * lam_max and its t=None
    # Cholesky is singular at cond 1e8: errors of order one (measured 0.1 - 2.8); insist on at
    # least 1e4 times worse so that the comparison can fail.
    for key in ("train", "train_only", "test", "inf"):
        assert err32[key] > 1e4 * err64[key], (key, err32, err64)
        assert err32[key] > 1e-2, (key, err32)


def test_float64_solve_on_host_with_x64_off(monkeypatch):
    p = ill_conditioned()
    calls = []
    original = _linalg.eigh_local_x64
    monkeypatch.setattr(_linalg, "eigh_local_x64", lambda a: calls.append(a.dtype) or original(a))
    with jax.enable_x64(False):
        times = times_for(p)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            plain = dynamics.mse(p["K32"], p["y"], learning_rate=LR)
            err32 = errors(p, plain, times)
        wide = dynamics.mse(p["K32"], p["y"], learning_rate=LR, solve_dtype="float64")
        err64 = errors(p, wide, times)
        assert wide.eigenvalues.dtype == np.float32
        # Train outputs and the loss stay jittable (float32 evolution from cached eigenpairs)...
        jitted = jax.jit(lambda f: wide(times, f))(p["f0"])
        np.testing.assert_allclose(jitted, wide(times, p["f0"]), rtol=0, atol=1e-6)
        # ... test outputs and t=None need float64, i.e. the host, i.e. concrete inputs.
        with pytest.raises(ValueError, match="jax_enable_x64 is off.*concrete"):
            jax.jit(lambda f: wide(times, f, p["f0t"], p["Kt32"]))(p["f0"])
        with pytest.raises(ValueError, match="t=None on host.*concrete"):
            jax.jit(lambda f: wide(None, f, p["f0t"], p["Kt32"]))(p["f0"])
        # A traced kernel cannot be factorised on host.
        with pytest.raises(ValueError, match=r"solve_dtype='float64'.*jax_enable_x64 is off"):
            jax.jit(lambda kk: dynamics.mse(kk, p["y"], solve_dtype="float64")(1.0, p["f0"]))(
                p["K32"]
            )
    assert calls == [np.float64]  # one float64 eigendecomposition served every call
    check_float64_beats_float32(p, err64, err32)


def test_float64_solve_in_jax_with_x64_on(monkeypatch):
    p = ill_conditioned(seed=1)
    calls = []
    original = _linalg.eigh
    monkeypatch.setattr(_linalg, "eigh", lambda a: calls.append(a.dtype) or original(a))
    times = times_for(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        err32 = errors(p, dynamics.mse(p["K32"], p["y"], learning_rate=LR), times)
    wide = dynamics.mse(p["K32"], p["y"], learning_rate=LR, solve_dtype=np.float64)
    err64 = errors(p, wide, times)
    assert calls == [np.float32, np.float64]
    check_float64_beats_float32(p, err64, err32)
    # In JAX it also works under jit with a traced kernel, with the same numbers.
    traced = jax.jit(
        lambda kk, f: dynamics.mse(kk, p["y"], learning_rate=LR, solve_dtype="float64")(
            times, f, p["f0t"], p["Kt32"]
        )
    )(p["K32"], p["f0"])
    for a, b in zip(traced, wide(times, p["f0"], p["f0t"], p["Kt32"])):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_mixed_precision_error_vs_pure_float64():
    """float32 evolution from float64 eigenpairs vs the same dynamics entirely in float64.

    Measured on this problem (n = 60, k = 2, cond 1e8, |r0| ~ 1): train outputs 7e-7, loss 3e-8,
    i.e. a few float32 ulps; the pure float32 path is off by 0.1 - 0.5 at the same times.
    """
    p = ill_conditioned(seed=2)
    times = times_for(p)
    f0_64, y_64 = p["f0"].astype(np.float64), p["y"].astype(np.float64)
    pure = dynamics.mse(p["K"], y_64, learning_rate=LR)  # float64 kernel, float64 everything
    ref_train, ref_loss = pure(times, f0_64), pure.loss(times, f0_64)
    assert ref_train.dtype == np.float64
    # The float64 predictor itself against expm (an independent check of the reference). Both are
    # backward stable, so each is exact for a kernel perturbed by ~eps64 * |K|; since the Frechet
    # derivative of exp at the negative semidefinite -sK has norm <= 1, that moves the outputs by up
    # to eps64 * s * lam_max * |r0| (2e-7 at s = 1e6). The old fixed atol=1e-9 ignored this growth
    # with s: it held for this CPU's LAPACK and expm rounding (8.9e-10 measured) but not for another
    # (1.08e-9). Measured errors sit at 0.004 - 0.1 of this first-order bound.
    s = LR * times / p["y"].size
    lam_max = float(np.linalg.eigvalsh(p["K"])[-1])
    r0_norm = float(np.linalg.norm(f0_64 - y_64, axis=0).max())
    bound = np.finfo(np.float64).eps * (1.0 + s * lam_max) * r0_norm  # (T,)
    expm_err = np.max(np.abs(ref_train - flow_reference(p, LR, times)[0]), axis=(1, 2))
    assert np.all(expm_err <= bound), (expm_err, bound)
    for x64 in (True, False):
        with jax.enable_x64(x64):
            mixed = dynamics.mse(p["K32"], p["y"], learning_rate=LR, solve_dtype="float64")
            train, loss = mixed(times, p["f0"]), mixed.loss(times, p["f0"])
        assert train.dtype == np.float32
        assert np.max(np.abs(train - ref_train)) <= MIXED  # see MIXED above
        # loss = 0.5 * mean(r^2) with |r| ~ 1: a sum of N = 120 float32 squares, relative 1e-6.
        np.testing.assert_allclose(loss, ref_loss, rtol=2e-6, atol=1e-9)


@pytest.mark.parametrize("x64", [True, False])
def test_float64_solve_weights(x64):
    """Weights: coefficients c_t = V diag(gamma) V^T r0 (gamma ~ 1/lam) in float64, J^T c_t in the
    leaves' dtype (float32 here), against a numpy float64 reference."""
    p = ill_conditioned(seed=4, n=40, k=1)
    jac = np.linalg.cholesky(p["K"])  # J J^T = K exactly (up to float64 rounding), P = n
    times = times_for(p)
    lam, vecs = np.linalg.eigh(p["K"])
    r0 = p["f0"].astype(np.float64) - p["y"]
    s = LR * times / p["y"].size
    gamma = np.expm1(-s[:, None] * lam[None, :]) / lam[None, :]  # (T, n); no zero modes here
    coef = np.einsum("ij,tj,jc->tic", vecs, gamma, vecs.T @ r0)[..., 0]  # (T, n)
    ref = coef @ jac  # omega = J^T c, (T, P)
    with jax.enable_x64(x64):
        wide = dynamics.mse(p["K32"], p["y"], learning_rate=LR, solve_dtype="float64")
        omega = wide.weights(times, p["f0"], {"w": jac.astype(np.float32)[:, None, :]})["w"]
    assert omega.dtype == np.float32
    # A float32 product J^T c with |c| up to ~1e6 errs by ~eps32 * |J|^T |c| per entry (plus the
    # float32 rounding of J and c themselves); allow 8 times that bound.
    bound = 8 * EPS32 * (np.abs(coef) @ np.abs(jac)) + 1e-12
    err = np.abs(omega - ref)
    assert np.all(err <= bound), np.max(err / bound)
    # That cancellation limits float32 weights to ~1e-3 of their size at cond 1e8 (measured max
    # error 0.036 (x64 on) and 0.046 (x64 off) on weights up to 483); the plain float32 path is off
    # by O(weights) (measured 325).
    with jax.enable_x64(x64), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        plain = dynamics.mse(p["K32"], p["y"], learning_rate=LR)
        omega32 = plain.weights(times, p["f0"], {"w": jac.astype(np.float32)[:, None, :]})["w"]
    assert np.max(np.abs(omega32 - ref)) > 100 * np.max(err)


@pytest.mark.parametrize("x64", [True, False])
@pytest.mark.parametrize("kind,beta", [("gd", None), ("momentum", 0.5)])
def test_float64_solve_discrete_kinds(kind, beta, x64):
    """gd / heavy ball with solve_dtype="float64" against function-space matrix powers in float64.

    Heavy ball in function space (``w = J v``): ``w' = b w + K r / N``, ``r' = r - lr w'``; a linear
    map of ``(r, w)`` whose ``t``-th power (binary exponentiation, no eigendecomposition) gives
    ``f_t = y + r_t``. ``b = 0`` is plain gradient descent.
    """
    p = ill_conditioned(seed=3, n=40, k=1)
    n, n_out, b = p["n"], p["y"].size, 0.0 if beta is None else beta
    lr = 0.5 * n_out / 1e2  # a quarter of the critical rate 2 N / lam_max
    ident = np.eye(n)
    trans = np.block(
        [
            [ident - lr * p["K"] / n_out, -lr * b * ident],
            [p["K"] / n_out, b * ident],
        ]
    )
    state0 = np.concatenate([p["f0"].astype(np.float64) - p["y"], np.zeros((n, 1))])
    times = np.array([0, 10, 10**4, 10**6, 10**8])
    ref = np.stack([p["y"] + (np.linalg.matrix_power(trans, int(t)) @ state0)[:n] for t in times])
    errs = {}
    for solve in (None, "float64"):
        with warnings.catch_warnings(), jax.enable_x64(x64):
            warnings.simplefilter("ignore", UserWarning)
            pred = dynamics.mse(
                p["K32"], p["y"], learning_rate=lr, kind=kind, momentum=beta, solve_dtype=solve
            )
            errs[solve] = float(np.max(np.abs(pred(times, p["f0"]) - ref)))
    # Mixed precision (float32 evolution; momentum's 3x3 powers squared ~27 times in float32).
    assert errs["float64"] <= MIXED, errs
    assert errs[None] > 1e4 * errs["float64"], errs
    # A float64 kernel is left as it is: solve_dtype="float64" changes nothing.
    same = dynamics.mse(
        p["K"], p["y"], learning_rate=lr, kind=kind, momentum=beta, solve_dtype="float64"
    )
    assert same._kernel.dtype == np.float64 and not same._host
    np.testing.assert_array_equal(
        same(times, p["f0"]),
        dynamics.mse(p["K"], p["y"], learning_rate=lr, kind=kind, momentum=beta)(times, p["f0"]),
    )


# ------------------------------------------------------------------------------------------------
# Thousands of time points.
# ------------------------------------------------------------------------------------------------


def scale_problem(n, k, m, seed=0):
    rng = np.random.default_rng(seed)
    jac = rng.normal(size=(n, 3 * n)) / np.sqrt(3 * n)
    jt = rng.normal(size=(m, 3 * n)) / np.sqrt(3 * n)
    return (
        jac @ jac.T,
        jt @ jac.T,
        rng.normal(size=(n, k)),
        0.3 * rng.normal(size=(n, k)),
        (0.3 * rng.normal(size=(m, k))),
    )


def test_five_thousand_times_match_recurrence_without_t_n_n_buffers():
    n, k, m, n_t = 200, 1, 40, 5000
    kernel, k_test, y, f0, f0t = scale_problem(n, k, m)
    lam_max = np.linalg.eigvalsh(kernel)[-1]
    lr = 0.9 * n * k / lam_max  # 45% of the critical rate
    ts = np.arange(n_t)
    sample = np.array([0, 1, 17, 999, 2500, 4999])
    pred = dynamics.mse(kernel, y, learning_rate=lr, kind="gd")
    train, test = pred(ts, f0, f0t, k_test)
    assert train.shape == (n_t, n, k) and test.shape == (n_t, m, k)
    # Exact GD recurrence in function space (float64): f <- f - lr K (f - y) / N, and the test
    # outputs move by -lr K_test (f - y) / N per step.
    f, ft = f0.copy(), f0t.copy()
    ref_train, ref_test = {}, {}
    for s in range(n_t):
        if s in sample:
            ref_train[s], ref_test[s] = f.copy(), ft.copy()
        resid = f - y
        f = f - lr / (n * k) * (kernel @ resid)
        ft = ft - lr / (n * k) * (k_test @ resid)
    for s in sample:
        np.testing.assert_allclose(train[s], ref_train[s], rtol=0, atol=1e-10, err_msg=str(s))
        np.testing.assert_allclose(test[s], ref_test[s], rtol=0, atol=1e-10, err_msg=str(s))
    # Gradient flow at the same 5000 times against expm at a few of them.
    flow = dynamics.mse(kernel, y, learning_rate=lr)
    flow_train = flow(ts * 1.0, f0)
    for s in sample[1:]:
        ref = y + scipy.linalg.expm(-lr * s / (n * k) * kernel) @ (f0 - y)
        np.testing.assert_allclose(flow_train[s], ref, rtol=0, atol=1e-10, err_msg=str(s))


@pytest.mark.parametrize("kind,beta", [("flow", None), ("gd", None), ("momentum", 0.5)])
@pytest.mark.parametrize("k", [1, 3])
def test_compiled_memory_is_linear_in_time_points(kind, beta, k):
    """Compiled (XLA) memory for T = 5000, n = 200: no (T, n, n) buffer, temp O(T n k + n^2)."""
    n, m, n_t = 200, 40, 5000
    kernel, k_test, y, f0, f0t = scale_problem(n, k, m, seed=1)
    pred = dynamics.mse(kernel, y, learning_rate=0.1, kind=kind, momentum=beta)
    ts = np.arange(n_t) * 1.0
    _ = pred.eigenvalues  # factorise outside the trace: its eigenvectors are then constants

    compiled = jax.jit(lambda f, ft, kt: pred(ts, f, ft, kt)).lower(f0, f0t, k_test).compile()
    stats = compiled.memory_analysis()
    t_n_n = n_t * n * n * 8  # bytes of one float64 (T, n, n) array: 1.6 GB
    # Per time point the closed form needs O(n k) numbers (outputs) plus O(n) mode factors (momentum
    # carries a 3-vector per mode); the rest is O(n^2). Allow 64 (T n + n^2) float64s.
    budget = 64 * (n_t * n + n * n) * 8  # 512 MB, a third of one (T, n, n) buffer
    assert stats.temp_size_in_bytes + stats.output_size_in_bytes < budget, stats
    assert stats.temp_size_in_bytes < t_n_n / 10, stats
    # And no array in the optimised program has T * n * n (or more) elements.
    for dims in re.findall(r"f64\[([0-9,]+)\]", compiled.as_text()):
        assert np.prod([int(d) for d in dims.split(",")]) < n_t * n * n, dims


# ------------------------------------------------------------------------------------------------
# t = None: Cholesky.
# ------------------------------------------------------------------------------------------------


def test_t_none_uses_one_cholesky_and_no_eigh(monkeypatch):
    n, k, m = 50, 2, 7
    kernel, k_test, y, f0, f0t = scale_problem(n, k, m, seed=2)
    calls = {"chol": 0, "eigh": 0, "chol_host": 0, "eigh_host": 0}

    def counting(name, fn):
        def wrapped(*a, **kw):
            calls[name] += 1
            return fn(*a, **kw)

        return wrapped

    for name, attr in (
        ("chol", "cholesky_factor"),
        ("eigh", "eigh"),
        ("chol_host", "cholesky_factor_local_x64"),
        ("eigh_host", "eigh_local_x64"),
    ):
        monkeypatch.setattr(_linalg, attr, counting(name, getattr(_linalg, attr)))
    ref_test = f0t - k_test @ np.linalg.solve(kernel, f0 - y)  # LU, not Cholesky
    pred = dynamics.mse(kernel, y, learning_rate=0.3)
    for _ in range(3):
        train, test = pred(None, f0, f0t, k_test)
        np.testing.assert_array_equal(train, y)
        np.testing.assert_allclose(test, ref_test, rtol=0, atol=1e-11)
    assert pred.loss(None, f0) == 0.0
    assert calls == {"chol": 1, "eigh": 0, "chol_host": 0, "eigh_host": 0}
    # Host float64 path (x64 off): one host Cholesky, still no eigendecomposition.
    with jax.enable_x64(False):
        k32, y32 = kernel.astype(np.float32), y.astype(np.float32)
        host = dynamics.mse(k32, y32, learning_rate=0.3, solve_dtype="float64")
        for _ in range(2):
            test32 = host(
                None, f0.astype(np.float32), f0t.astype(np.float32), k_test.astype(np.float32)
            )[1]
    assert calls == {"chol": 1, "eigh": 0, "chol_host": 1, "eigh_host": 0}
    ref32 = f0t.astype(np.float32) - k_test.astype(np.float32).astype(np.float64) @ np.linalg.solve(
        k32.astype(np.float64), f0.astype(np.float32) - y32.astype(np.float64)
    )
    # float64 solve on the float32 values, rounded once to float32 (|f| < 4).
    np.testing.assert_allclose(test32, ref32, rtol=0, atol=4 * 4 * EPS32)


# ------------------------------------------------------------------------------------------------
# Validation.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,error,match",
    [
        ("float32", ValueError, r"solve_dtype=...\)` must be None .* or 'float64'; got 'float32'"),
        (np.float16, ValueError, r"solve_dtype=...\)` must be None .*float16"),
        ("bogus", TypeError, r"solve_dtype=...\)` must be None or 'float64'.*'bogus'"),
        (64, TypeError, r"solve_dtype=...\)` must be None or 'float64'.*int 64"),
        (True, TypeError, r"solve_dtype=...\)` must be None or 'float64'.*bool True"),
    ],
)
def test_solve_dtype_validation(value, error, match):
    with pytest.raises(error, match=match):
        dynamics.mse(np.eye(3), np.ones((3, 1)), solve_dtype=value)
