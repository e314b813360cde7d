"""Tests for jaxdyn.analysis.representation (the two-point effective theory, CKA, RSMs).

References are independent: scipy's Radau on a numpy transcription of the ODE, closed forms,
brute-force numpy. Every ODE solve uses the same time-grid length, so the whole file compiles
the solver once per right-hand side (the cost of this file is mostly those compilations).
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate

from jaxdyn.analysis import representation as rep

T = 41  # one time-grid length: one compilation
DX2, DY2 = 1.0, 0.5  # the authors' default data separations
RATES = (0.7, 1.3)  # eta_h, eta_y
# (h, y, w): a balanced start, a rich-regime one (small weights: h, y tiny) and a lazy one
# (large weights: h large), where y and w relax at rate ~eta_y h while h barely moves: stiff
# (an explicit Tsit5 needs ~500x the steps of the implicit Kvaerno5 there).
STARTS = {"balanced": (1.0, 0.3, 0.1), "rich": (1e-3, 1e-4, -2e-3), "lazy": (100.0, 0.3, 0.1)}
# solver (rtol, atol) for the reference comparisons; at h ~ 100 the implicit stages' Newton
# solves cannot meet rtol 1e-12 in float64 (the solve stalls), 1e-11 is the tightest that runs
TOLERANCES = {"balanced": (1e-12, 1e-16), "rich": (1e-12, 1e-16), "lazy": (1e-11, 1e-13)}


def numpy_rhs(t, s, eta_h, eta_y, dx2, dy2):
    h, y, w = s
    return [
        -eta_h * dx2 * w,
        -w * (eta_y * h + eta_h * dx2 * y / h),
        -0.5 * eta_y * (3 * w - y + dy2) * h - 0.5 * eta_h * dx2 * (y + w) * w / h,
    ]


def radau(state0, t, eta_h, eta_y, dx2=DX2, dy2=DY2):
    # atol 1e-13 (not smaller: Radau then takes minutes on the lazy start)
    sol = scipy.integrate.solve_ivp(
        numpy_rhs,
        (t[0], t[-1]),
        state0,
        method="Radau",
        t_eval=t,
        args=(eta_h, eta_y, dx2, dy2),
        rtol=1e-12,
        atol=1e-13 * min(1.0, float(np.min(state0[:2]))),
    )
    assert sol.success
    return sol.y.T


@pytest.fixture(scope="module")
def solutions():
    t = np.linspace(0.0, 10.0, T)
    out = {}
    for name, s0 in STARTS.items():
        rtol, atol = TOLERANCES[name]
        ys = rep.solve_two_point(
            jnp.array(s0), jnp.asarray(t), *RATES, DX2, DY2, rtol=rtol, atol=atol
        )
        out[name] = (np.asarray(s0), t, np.asarray(ys))
    return out


@pytest.mark.parametrize("start", sorted(STARTS))
def test_solve_matches_scipy_radau(solutions, start):
    s0, t, ys = solutions[start]
    ref = radau(s0, t, *RATES)
    assert ys.shape == (T, 3) and ys.dtype == np.float64
    np.testing.assert_array_equal(ys[0], s0)
    # relative to each component's scale along the run (w crosses 0)
    scale = np.max(np.abs(ref), axis=0)
    np.testing.assert_array_less(np.abs(ys - ref) / scale, 1e-10)


@pytest.mark.parametrize("start", sorted(STARTS))
def test_a_high_is_conserved(solutions, start):
    s0, _, ys = solutions[start]
    a = np.asarray(rep.conserved(ys, *RATES, DX2))
    a0 = s0[0] - RATES[0] / RATES[1] * DX2 * s0[1] / s0[0]  # the closed form
    assert a.shape == (T,)
    np.testing.assert_allclose(a, a0, rtol=1e-9)


def test_solve_vmaps_over_parameter_sets(solutions):
    s0, t, ys = solutions["balanced"]
    etas_h, etas_y = jnp.array([RATES[0], 0.2]), jnp.array([RATES[1], 3.0])
    solve = functools.partial(rep.solve_two_point, rtol=1e-12, atol=1e-16)
    batch = jax.vmap(solve, (None, None, 0, 0, None, None))(
        jnp.asarray(s0), jnp.asarray(t), etas_h, etas_y, DX2, DY2
    )
    assert batch.shape == (2, T, 3)
    scale = np.max(np.abs(ys), axis=0)
    np.testing.assert_array_less(np.abs(np.asarray(batch[0]) - ys) / scale, 1e-12)
    single = np.asarray(solve(jnp.asarray(s0), jnp.asarray(t), 0.2, 3.0, DX2, DY2))
    np.testing.assert_array_less(
        np.abs(np.asarray(batch[1]) - single) / np.max(np.abs(single), 0), 1e-12
    )


@pytest.mark.parametrize("start", sorted(STARTS))
def test_fixed_point_is_the_long_time_limit(start):
    s0 = np.asarray(STARTS[start])
    t = np.linspace(0.0, 400.0, T)
    ys = np.asarray(rep.solve_two_point(jnp.asarray(s0), jnp.asarray(t), *RATES, DX2, DY2))
    fp = rep.fixed_point(jnp.asarray(s0), *RATES, DX2, DY2)
    a_high = s0[0] - RATES[0] / RATES[1] * DX2 * s0[1] / s0[0]
    a_low = np.sqrt(RATES[0] / RATES[1] * DX2 * DY2)
    np.testing.assert_allclose([fp.a_high, fp.a_low], [a_high, a_low], rtol=1e-14)
    np.testing.assert_allclose(ys[-1, :2], [fp.h_inf, DY2], rtol=1e-8)
    assert abs(ys[-1, 2]) < 1e-9
    # h_inf is the positive root of h^2 - A_high h - A_low^2 = 0, i.e. A_high at (h_inf, dy2)
    assert fp.h_inf > 0
    np.testing.assert_allclose(fp.h_inf - a_low**2 / fp.h_inf, a_high, rtol=1e-14)


def test_fixed_point_keeps_precision_for_very_negative_a_high():
    # A_high = 1 - 1e12: the textbook A/2 + sqrt(A^2/4 + A_low^2) cancels to 0 here
    fp = rep.fixed_point(jnp.array([1.0, 1e12, 0.0]), 1.0, 1.0, 1.0, 2.0)
    a_high = 1.0 - 1e12
    assert float(fp.a_high) == a_high
    # h (h - A) = A_low^2 = 2 is well conditioned here (h << |A|); 1e-12 / 2 would be the
    # textbook formula's h_inf, all of it rounding error
    np.testing.assert_allclose(fp.h_inf * (fp.h_inf - a_high), 2.0, rtol=1e-13)


def _noisy(curves, level, seed=0):
    rng = np.random.default_rng(seed)
    return curves + level * np.std(curves, axis=0) * rng.standard_normal(curves.shape)


@pytest.fixture(scope="module")
def noisy_fit(solutions):
    _, t, ys = solutions["balanced"]
    noisy = _noisy(ys, 1e-3)
    # max_steps as solve_two_point's default: the fits reuse the solver the fixture compiled
    return noisy, rep.fit_rates(noisy, t, DX2, DY2, max_steps=100_000)


def test_fit_rates_recovers_known_rates(solutions, noisy_fit):
    _, t, ys = solutions["balanced"]
    fit = rep.fit_rates(ys, t, DX2, DY2, max_steps=100_000)
    assert fit.success and fit.curves.shape == (T, 3)
    # exact data: limited by the fit's solver tolerance (rtol 1e-8)
    np.testing.assert_allclose([fit.eta_h, fit.eta_y], RATES, rtol=1e-6)
    assert fit.sse < 1e-12 and fit.relative_error < 1e-6
    assert fit.grid_sse.shape == (13, 13)

    noisy, fit_n = noisy_fit
    # 0.1% noise (of each component's spread) on 41 x 3 points, the start state included:
    # a least-squares error of order 1e-3 / sqrt(41) ~ 2e-4 in the rates
    np.testing.assert_allclose([fit_n.eta_h, fit_n.eta_y], RATES, rtol=1e-3)
    np.testing.assert_allclose(
        fit_n.sse, np.sum((np.asarray(fit_n.curves) - noisy) ** 2), rtol=1e-12
    )


def test_altered_ode_fits_worse(solutions, noisy_fit):
    _, t, _ = solutions["balanced"]
    noisy, true = noisy_fit
    altered = rep.fit_rates(noisy, t, DX2, DY2, rhs=rep.NEGATIVE_CONTROLS["y_rate_x2"])
    assert altered.eta_h > 0 and altered.eta_y > 0
    assert altered.sse > 100 * true.sse


def test_negative_controls_alter_one_term():
    s, args = jnp.array([1.3, 0.4, 0.2]), (0.7, 1.3, DX2, DY2)
    base = np.asarray(numpy_rhs(0, np.asarray(s), *args))
    h, y, w = np.asarray(s)
    want = {
        "h_rate_x2": base * [2, 1, 1],
        "y_rate_x2": base * [1, 2, 1],
        "w_sign_flipped": [
            base[0],
            base[1],
            -0.5 * 1.3 * (3 * w - y + DY2) * h + 0.5 * 0.7 * DX2 * (y + w) * w / h,
        ],
        "y_no_eta_h": [base[0], -w * 1.3 * h, base[2]],
    }
    np.testing.assert_allclose(rep.two_point_rhs(s, *args), base, rtol=1e-15)
    for name, rhs in rep.NEGATIVE_CONTROLS.items():
        np.testing.assert_allclose(rhs(s, *args), want[name], rtol=1e-15, err_msg=name)


def test_observables_by_hand():
    # dh = (3, 4): h = 25; dy_hat = (2, 0): y = 4; dy* = (1, 1): w = (2, 0).((1, -1)) = 2
    got = rep.observables(
        jnp.array([1.0, 1.0]),
        jnp.array([4.0, 5.0]),
        jnp.array([1.0, 0.0]),
        jnp.array([3.0, 0.0]),
        jnp.array([0.0, 0.0]),
        jnp.array([1.0, 1.0]),
    )
    np.testing.assert_array_equal(got, [25.0, 4.0, 2.0])
    # over a time axis: (T, d) representations, (T, k) outputs, (k,) targets
    rng = np.random.default_rng(1)
    r1, r2, o1, o2 = (rng.standard_normal(s) for s in ((5, 7), (5, 7), (5, 2), (5, 2)))
    t1, t2 = rng.standard_normal(2), rng.standard_normal(2)
    got = rep.observables(r1, r2, o1, o2, t1, t2)
    want = [
        [
            np.dot(r2[i] - r1[i], r2[i] - r1[i]),
            np.dot(o2[i] - o1[i], o2[i] - o1[i]),
            np.dot(o2[i] - o1[i], (o2[i] - o1[i]) - (t2 - t1)),
        ]
        for i in range(5)
    ]
    np.testing.assert_allclose(got, want, rtol=1e-13)


@pytest.mark.parametrize("out_dim", [1, 3])
def test_theory_loss_equals_the_loss_at_the_start(out_dim):
    rng = np.random.default_rng(2)
    o1, o2, t1, t2 = (rng.standard_normal(out_dim) for _ in range(4))
    state = np.asarray(
        rep.observables(rng.standard_normal(4), rng.standard_normal(4), o1, o2, t1, t2)
    )
    m0 = float(rep.mean_output_error(o1, o2, t1, t2))
    np.testing.assert_allclose(m0, np.sum(((o1 + o2) / 2 - (t1 + t2) / 2) ** 2), rtol=1e-14)
    dy2 = float(np.sum((t2 - t1) ** 2))
    curves = np.stack([state, state])
    loss = rep.theory_loss(curves, np.array([0.0, 2.0]), dy2, 0.3, m0, out_dim=out_dim)
    # jaxdyn's convention: 0.5 * mean over the 2 * out_dim entries
    direct = 0.5 * np.mean(np.concatenate([(o1 - t1) ** 2, (o2 - t2) ** 2]))
    np.testing.assert_allclose(loss[0], direct, rtol=1e-13)
    # only the mean-output part decays (at the third rate); y, w are held fixed here
    np.testing.assert_allclose(
        loss[0] - loss[1], m0 * (1 - np.exp(-2 * 0.3 * 2.0)) / (2 * out_dim), rtol=1e-13
    )


def numpy_cka(x, y, debiased=False):
    """Kornblith et al.'s feature-space formula (their reference implementation's algebra)."""
    x, y = x - x.mean(0), y - y.mean(0)
    xty, xtx, yty = (np.linalg.norm(a.T @ b) ** 2 for a, b in ((x, y), (x, x), (y, y)))
    if debiased:
        n = x.shape[0]
        rx, ry = np.sum(x * x, 1), np.sum(y * y, 1)

        def fix(v, a, b):
            return v - n / (n - 2.0) * a @ b + a.sum() * b.sum() / ((n - 1) * (n - 2))

        xty, xtx, yty = fix(xty, rx, ry), fix(xtx, rx, rx), fix(yty, ry, ry)
    return xty / np.sqrt(xtx * yty)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka(debiased):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((12, 5))
    y = x @ rng.standard_normal((5, 8)) + 0.5 * rng.standard_normal((12, 8))
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    value = float(rep.cka(x, y, debiased=debiased))
    np.testing.assert_allclose(value, numpy_cka(x, y, debiased), rtol=1e-12)
    np.testing.assert_allclose(rep.cka(x, x, debiased=debiased), 1.0, rtol=1e-13)
    np.testing.assert_allclose(rep.cka(x @ q, 3.7 * y, debiased=debiased), value, rtol=1e-12)
    np.testing.assert_allclose(rep.cka(y, x, debiased=debiased), value, rtol=1e-12)
    assert 0 < value < 1


@pytest.mark.parametrize("squared", [False, True])
def test_rsm_against_numpy(squared):
    reps = np.random.default_rng(4).standard_normal((6, 3, 2))  # feature maps, flattened
    flat = reps.reshape(6, -1)
    want = np.array([[np.sum((a - b) ** 2) for b in flat] for a in flat])
    got = np.asarray(rep.rsm(reps, squared=squared))
    np.testing.assert_allclose(got, want if squared else np.sqrt(want), rtol=1e-13)
    assert np.all(np.diag(got) == 0) and np.array_equal(got, got.T)


S0, TT = np.array([1.0, 0.3, 0.1]), np.linspace(0.0, 1.0, 5)
OBS = np.tile(S0, (5, 1))
BAD = [
    (
        lambda: rep.solve_two_point(np.array([0.0, 0.3, 0.1]), TT, 1.0, 1.0, 1.0, 0.5),
        ValueError,
        "`state0` must be a state (h, y, w) with h = ||dh||^2 > 0; got h = 0.0.",
    ),
    (
        lambda: rep.solve_two_point(np.array([1.0, -0.3, 0.1]), TT, 1.0, 1.0, 1.0, 0.5),
        ValueError,
        "`state0` must be a state (h, y, w) with y = ||dy_hat||^2 >= 0; got y = -0.3.",
    ),
    (
        lambda: rep.solve_two_point(S0[:2], TT, 1.0, 1.0, 1.0, 0.5),
        ValueError,
        "`state0` must be an array of shape (3,) holding (h, y, w); got shape (2,).",
    ),
    (
        lambda: rep.solve_two_point(S0, TT, -1.0, 1.0, 1.0, 0.5),
        ValueError,
        "`eta_h` must be a positive float; got -1.0.",
    ),
    (
        lambda: rep.solve_two_point(S0, TT, 1.0, 0, 1.0, 0.5),
        ValueError,
        "`eta_y` must be a positive float; got 0.",
    ),
    (
        lambda: rep.solve_two_point(S0, TT, 1.0, 1.0, -1.0, 0.5),
        ValueError,
        "`dx2` must be a non-negative float (||x_2 - x_1||^2); got -1.0.",
    ),
    (
        lambda: rep.solve_two_point(S0, TT, 1.0, 1.0, 1.0, -0.5),
        ValueError,
        "`dy2` must be a non-negative float (||y*_2 - y*_1||^2); got -0.5.",
    ),
    (
        lambda: rep.solve_two_point(S0, TT[::-1], 1.0, 1.0, 1.0, 0.5),
        ValueError,
        "`t` must be strictly increasing times; got t[0] = 1.0 followed by",
    ),
    (lambda: rep.solve_two_point(S0, "0 1", 1.0, 1.0, 1.0, 0.5), TypeError, "`t` must be an array"),
    (
        lambda: rep.solve_two_point(S0, TT, "fast", 1.0, 1.0, 0.5),
        TypeError,
        "`eta_h` must be a positive float; got 'fast'.",
    ),
    (
        lambda: rep.conserved(np.array([[1.0, 0.1, 0.0], [-2.0, 0.1, 0.0]]), 1.0, 1.0, 1.0),
        ValueError,
        "`state` must be a state (h, y, w) with h = ||dh||^2 > 0; got h = -2.0 at row 1.",
    ),
    (
        lambda: rep.fixed_point(S0, 1.0, -2.0, 1.0, 0.5),
        ValueError,
        "`eta_y` must be a positive float; got -2.0.",
    ),
    (
        lambda: rep.fit_rates(OBS, TT[:4], 1.0, 0.5),
        ValueError,
        "`t` must be a 1-dimensional array of 5 times, one per row of `observed`; got shape (4,).",
    ),
    (
        lambda: rep.fit_rates(OBS[:, :2], TT, 1.0, 0.5),
        ValueError,
        "`observed` must be an array of shape (..., 3) holding (h, y, w); got shape (5, 2).",
    ),
    (
        lambda: rep.fit_rates(OBS * [-1, 1, 1], TT, 1.0, 0.5),
        ValueError,
        "`observed` must be a state (h, y, w) with h = ||dh||^2 > 0; got h = -1.0 at row 0.",
    ),
    (
        lambda: rep.fit_rates(OBS, TT, 0.0, 0.5),
        ValueError,
        "`dx2` must be a positive float (||x_2 - x_1||^2); got 0.0.",
    ),
    (
        lambda: rep.fit_rates(OBS, TT, 1.0, 0.5, grid=([1.0, -1.0], [1.0])),
        ValueError,
        "`grid[0]` must be a 1-dimensional array of positive, finite rates; got [1.0, -1.0].",
    ),
    (
        lambda: rep.fit_rates(OBS, TT, 1.0, 0.5, weights=[1.0, -1.0, 1.0]),
        ValueError,
        "`weights` must be 3 non-negative weights (of h, y, w), not all 0; got [1.0, -1.0, 1.0].",
    ),
    (
        lambda: rep.theory_loss(OBS, TT, 0.5, -0.1, 0.2),
        ValueError,
        "`eta_mean` must be a positive float; got -0.1.",
    ),
    (
        lambda: rep.observables(
            np.ones(3), np.ones(4), np.ones(1), np.ones(1), np.ones(1), np.ones(1)
        ),
        ValueError,
        "`rep2` must be an array of the shape of `rep1`, (3,); got shape (4,).",
    ),
    (
        lambda: rep.observables(
            np.ones((5, 3)),
            np.ones((5, 3)),
            np.ones((4, 1)),
            np.ones((4, 1)),
            np.ones(1),
            np.ones(1),
        ),
        ValueError,
        "`out1` must be an array with the leading axes of `rep1`, (5,)",
    ),
    (
        lambda: rep.observables(
            np.ones(3), np.ones(3), np.ones(2), np.ones(2), np.ones(1), np.ones(1)
        ),
        ValueError,
        "`target1` must be an array with the 2 output columns of `out1`; got shape (1,).",
    ),
    (
        lambda: rep.cka(np.ones((5, 2)) * np.arange(5)[:, None], np.ones((4, 2))),
        ValueError,
        "`y` must be an array with the 5 examples of `x` (batch axis first); got shape (4, 2).",
    ),
    (
        lambda: rep.cka(np.ones((5, 2)), np.eye(5)),
        ValueError,
        "`x` must be representations that differ between examples",
    ),
    (
        lambda: rep.cka(np.eye(3), np.eye(3), debiased=True),
        ValueError,
        "`x` must be an array of at least 4 examples (batch axis first); got shape (3, 3).",
    ),
    (
        lambda: rep.rsm(np.ones(3)),
        ValueError,
        "`reps` must be an array with at least 2 dimension(s)",
    ),
]


@pytest.mark.parametrize("call, exc, message", BAD, ids=[b[2][:40] for b in BAD])
def test_bad_input(call, exc, message):
    with pytest.raises(exc, match=re.escape(message)):
        call()
