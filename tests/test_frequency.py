"""jaxdyn.analysis.frequency: peaks and per-frequency errors against DFT sums written out by
hand, convergence steps on constructed sequences, the LFP rates of a two-layer ReLU network
against Monte-Carlo moments, the d-dimensional Riesz transforms and the Rayleigh quotients of
a wide network's empirical NTK, damped Jacobi against its per-mode factor, and the closed
form of the linearized network against the trained linearized network."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdyn
from jaxdyn import nets
from jaxdyn.analysis import frequency as fq


def _dft(y, k):
    """One DFT coefficient by its defining sum."""
    n = y.shape[-1]
    return np.sum(y * np.exp(-2j * np.pi * k * np.arange(n) / n), axis=-1)


def _sines(n, spec):
    j = np.arange(n)
    return sum(amp * np.sin(2 * np.pi * k * j / n + ph) for k, amp, ph in spec)


# --------------------------------------------------------------------------- peaks and errors


def test_peak_indices_are_the_largest_local_maxima_lowest_first():
    y = _sines(64, [(9, 0.7, 0.3), (2, 1.0, 0.0), (5, 0.4, 1.0), (20, 0.05, 0.0)])
    np.testing.assert_array_equal(fq.peak_indices(y, 3), [2, 5, 9])
    np.testing.assert_array_equal(fq.peak_indices(y, 4), [2, 5, 9, 20])
    np.testing.assert_array_equal(fq.peak_indices(y[:, None], 2), [2, 9])  # two largest
    # the target on 101 points of [-pi, pi] (not periodic: leakage side lobes)
    x = np.linspace(-np.pi, np.pi, 101)
    target = np.sin(x) + np.sin(3 * x) + np.sin(5 * x)
    peaks = fq.peak_indices(target, 3, x=x)
    np.testing.assert_array_equal(peaks, [1, 3, 5])
    mags = np.abs([_dft(target, k) for k in range(51)])
    for k in peaks:  # strict interior maxima of the hand-written |DFT|
        assert mags[k] > mags[k - 1] and mags[k] > mags[k + 1]


@pytest.mark.parametrize("kind", fq.ERROR_KINDS)
def test_per_frequency_error_against_dft_sums(kind):
    rng = np.random.default_rng(0)
    n, peaks = 48, np.array([1, 4, 7])
    f = _sines(n, [(1, 1.0, 0.2), (4, 0.5, 0.0), (7, 0.25, 1.0)])
    h = f[None] + 0.3 * rng.standard_normal((5, n))
    got = np.asarray(fq.per_frequency_error(jnp.asarray(h), jnp.asarray(f), peaks, kind=kind))
    want = np.zeros((5, 3))
    for p, k in enumerate(peaks):
        fk, hk = _dft(f, k), _dft(h, k)
        want[:, p] = np.abs(np.abs(hk) - np.abs(fk)) if kind == "magnitude" else np.abs(hk - fk)
        want[:, p] /= np.abs(fk)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # (T, n, 1) outputs and a single (n,) output give the same numbers
    three = fq.per_frequency_error(h[..., None], f[:, None], peaks, kind=kind)
    np.testing.assert_allclose(np.asarray(three), want, rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(fq.per_frequency_error(h[2], f, peaks, kind=kind)), want[2], rtol=1e-12
    )
    if kind == "complex":  # jit (once): peaks static in value, outputs traced
        jitted = jax.jit(lambda out: fq.per_frequency_error(out, f, peaks, kind=kind))(h)
        np.testing.assert_allclose(np.asarray(jitted), want, rtol=1e-12)


def test_complex_error_bounds_magnitude_error_and_sees_phase():
    n, peaks = 32, np.array([3])
    f = _sines(n, [(3, 1.0, 0.0)])
    shifted = _sines(n, [(3, 1.0, 0.5)])  # same magnitude, other phase
    mag = float(fq.per_frequency_error(shifted, f, peaks)[0])
    cplx = float(fq.per_frequency_error(shifted, f, peaks, kind="complex")[0])
    assert mag == pytest.approx(0.0, abs=1e-12)
    assert cplx == pytest.approx(abs(np.exp(0.5j) - 1), rel=1e-10)


def _first_settled(col, steps, thr):
    """Brute force: the first t with every later error below thr."""
    for t in range(len(col)):
        if all(v < thr for v in col[t:]):
            return steps[t]
    return -1


def test_convergence_steps_on_constructed_sequences():
    steps = np.array([0, 10, 20, 30, 40, 50])
    errors = np.array(
        [
            [1.0, 0.05, 1.0, 1.0],
            [0.5, 0.05, 0.5, 0.05],
            [0.05, 0.05, 0.2, 0.2],  # col 3 dips below, then rises again
            [0.2, 0.05, 0.1, 0.05],  # col 2 exactly at the threshold does not count
            [0.05, 0.05, 0.09, 0.04],
            [0.01, 0.05, 0.08, np.nan],  # NaN at the end: never settled
        ]
    )
    got = np.asarray(fq.convergence_steps(errors, steps, threshold=0.1))
    np.testing.assert_array_equal(got, [40, 0, 40, -1])
    rng = np.random.default_rng(1)
    errors = rng.uniform(0, 0.2, (40, 6)) * np.linspace(2, 0.2, 40)[:, None]
    steps = np.cumsum(rng.integers(1, 5, 40))
    want = [_first_settled(errors[:, p], steps, 0.1) for p in range(6)]
    np.testing.assert_array_equal(np.asarray(fq.convergence_steps(errors, steps)), want)
    jitted = jax.jit(fq.convergence_steps)(jnp.asarray(errors), jnp.asarray(steps))
    np.testing.assert_array_equal(np.asarray(jitted), want)


def test_fitted_rates_of_exact_exponentials():
    steps = np.arange(0, 400, 5.0)
    rates = np.array([0.05, 0.01, 0.002])
    errors = np.exp(-np.outer(steps, rates))
    np.testing.assert_allclose(fq.fitted_rates(errors, steps), rates, rtol=1e-9)
    assert np.isnan(fq.fitted_rates(np.ones((3, 1)), np.arange(3.0))[0])  # never in the window


# --------------------------------------------------------------------------- LFP


def test_lfp_rates_against_monte_carlo_moments():
    """Gaussian a ~ N(0, sa^2), w ~ N(0, sw^2 I_d): <|w|^3> and <a^2 |w|> in closed form
    against the averages over 50,000 sampled neurons (within 5 standard errors)."""
    rng = np.random.default_rng(2)
    m, sa, sw, rho_b = 50_000, 0.7, 1.3, 0.05
    xi = np.array([0.1, 0.3, 1.0, 3.0])
    for d in (1, 3):
        a = sa * rng.standard_normal(m)
        w = sw * rng.standard_normal((m, d) if d > 1 else m)
        got = fq.lfp_rates(jnp.asarray(xi), jnp.asarray(a), jnp.asarray(w), bias_density=rho_b)
        r3 = sw**3 * 2**1.5 * math.gamma((d + 3) / 2) / math.gamma(d / 2)
        a2r = sa**2 * sw * 2**0.5 * math.gamma((d + 1) / 2) / math.gamma(d / 2)
        sphere = 1.0 if d == 1 else 2 / (2 * np.pi ** (d / 2) / math.gamma(d / 2))
        low = rho_b * sphere * r3 / (16 * np.pi**4 * xi ** (d + 3))
        high = rho_b * sphere * a2r / (4 * np.pi**2 * xi ** (d + 1))
        r = np.abs(w) if d == 1 else np.linalg.norm(w, axis=1)
        se_low = np.std(r**3) / np.sqrt(m) / r3
        se_high = np.std(a**2 * r) / np.sqrt(m) / a2r
        np.testing.assert_allclose(np.asarray(got.low), low, rtol=5 * se_low)
        np.testing.assert_allclose(np.asarray(got.high), high, rtol=5 * se_high)
        np.testing.assert_allclose(np.asarray(got.total), low + high, rtol=5 * se_low)
        # the crossover: low == high there
        cross = float(got.crossover)
        c = fq.lfp_rates(jnp.asarray([cross]), a, w, bias_density=rho_b)
        assert float(c.low[0]) == pytest.approx(float(c.high[0]), rel=1e-10)


@pytest.mark.parametrize("d", [2, 3])
def test_lfp_sphere_factor_against_riesz_transforms(d):
    """For d > 1, the isotropic average of one neuron's ridge kernels
    `rho_b r^3 |w_hat . z|^3 / 12 - rho_b a^2 r |w_hat . z| / 2` is `E|cos|^p |z|^p`; the
    d-dimensional Fourier transform of `|z|^p` is `pi^(-p - d/2) Gamma((p + d)/2) /
    Gamma(-p/2) |xi|^-(p + d)` (Gelfand-Shilov): an independent route to both terms."""
    r, a, rho_b = 1.7, 0.6, 0.1
    w = np.zeros((1, d))
    w[0, 0] = r
    xi = np.array([0.4, 2.0])

    def riesz(p):
        return np.pi ** (-p - d / 2) * math.gamma((p + d) / 2) / math.gamma(-p / 2)

    def mean_abs_cos(p):  # E|cos theta|^p for a uniform direction in d dimensions
        return (
            math.gamma(d / 2) * math.gamma((p + 1) / 2) / (np.sqrt(np.pi) * math.gamma((p + d) / 2))
        )

    got = fq.lfp_rates(jnp.asarray(xi), jnp.asarray([a]), jnp.asarray(w), bias_density=rho_b)
    low = rho_b * r**3 / 12 * mean_abs_cos(3) * riesz(3) / xi ** (d + 3)
    high = -rho_b * a**2 * r / 2 * mean_abs_cos(1) * riesz(1) / xi ** (d + 1)
    np.testing.assert_allclose(np.asarray(got.low), low, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(got.high), high, rtol=1e-12)


# The wide two-layer ReLU network of the NTK check: h = m^-1/2 sum a relu(w x + b).
WIDTH, N_GRID, PACKET = 4096, 256, 0.6


def _relu_net(params, x):
    pre = x @ params["w"][None] + params["b"][None]  # (n, m)
    return jax.nn.relu(pre) @ params["a"][:, None] / jnp.sqrt(params["a"].shape[0])


@pytest.fixture(scope="module")
def relu_ntk():
    key_a, key_w, key_b = jax.random.split(jax.random.PRNGKey(3), 3)
    a = jax.random.normal(key_a, (WIDTH,), jnp.float64)
    w = jax.random.uniform(key_w, (WIDTH,), jnp.float64, -2.0, 2.0)
    # biases uniform over every kink position that can reach the grid: the LFP's setting
    half = float(jnp.max(jnp.abs(w))) * np.pi * 1.01
    b = jax.random.uniform(key_b, (WIDTH,), jnp.float64, -half, half)
    x = -np.pi + 2 * np.pi * np.arange(N_GRID) / N_GRID  # uniform grid of [-pi, pi)
    theta = jaxdyn.empirical_ntk(_relu_net, dict(a=a, w=w, b=b), jnp.asarray(x)[:, None])
    return dict(a=a, w=w, b=b, bias_density=1 / (2 * half), x=x, theta=theta)


@pytest.mark.parametrize("center", [0.0, 1.2])
def test_lfp_rates_match_the_wide_relu_ntk_in_band(relu_ntk, center):
    """Rayleigh quotients of the empirical NTK on Gaussian wave packets (width 0.6, at
    `center`) against `lfp_rates(...).total * rho`, rho = 1/(2 pi) the grid's density.
    Band: 1.5 <= xi <= 5.1 cycles per unit (a quarter of the grid's Nyquist frequency, 20.4):
    below it the packet's spectrum reaches the kernel's polynomial part at xi = 0, above it
    aliasing on the grid grows (10% at xi = 10). Measured: within 9% over the band (0.92
    to 0.98; the spread is the sampling of 4096 biases: 6% at 8192, 5% at 16384). Without
    the input-weight part (`x_second_moment`), the rates are 1.15x (packet at 0) and 2.4x
    (at 1.2) the formula's."""
    x = relu_ntk["x"]
    window = np.exp(-((x - center) ** 2) / (2 * PACKET**2))
    modes = fq.fourier_mode_rates(relu_ntk["theta"], x, window=jnp.asarray(window))
    freq, rates = np.asarray(modes.frequencies), np.asarray(modes.rates)
    band = (freq >= 1.5) & (freq <= 5.1)
    x2 = float(np.sum(window**2 * x**2) / np.sum(window**2))
    args = (jnp.asarray(freq[band]), relu_ntk["a"], relu_ntk["w"])
    kw = dict(bias_density=relu_ntk["bias_density"])
    lfp = fq.lfp_rates(*args, **kw, x_second_moment=x2)
    ratio = rates[band] / (np.asarray(lfp.total) / (2 * np.pi))
    assert band.sum() >= 20
    np.testing.assert_allclose(ratio, 1.0, atol=0.1)  # bias sampling, see above
    # without the input-weight part, the packet away from 0 is off by its <x^2> = 1.8
    paper = fq.lfp_rates(*args, **kw)
    ratio_paper = rates[band] / (np.asarray(paper.total) / (2 * np.pi))
    assert np.all(ratio_paper > 1 + x2 / 2)


def test_plain_modes_of_the_bias_kernel_leak_twice_the_lfp_term(relu_ntk):
    """Without a window, the bias part of the NTK (`a^2 H H'`) on plain Fourier modes is
    twice its LFP term at low frequencies: the non-periodic |x - x'| kernel leaks as much
    as it holds (see `fourier_mode_rates`)."""
    a, w, x = relu_ntk["a"], relu_ntk["w"], relu_ntk["x"]
    b = relu_ntk["b"]
    step = (np.outer(x, np.asarray(w)) + np.asarray(b) > 0).astype(float)
    theta_b = (step * np.asarray(a) ** 2) @ step.T / WIDTH
    modes = fq.fourier_mode_rates(jnp.asarray(theta_b), x)
    k = np.arange(2, 9)
    lfp = fq.lfp_rates(
        jnp.asarray(modes.frequencies[k]), a, w, bias_density=relu_ntk["bias_density"]
    )
    ratio = np.asarray(modes.rates[k]) / (np.asarray(lfp.high) / (2 * np.pi))
    # 10%: the bias sampling of 4096 neurons (as in the packet test), not leakage
    np.testing.assert_allclose(ratio, 2.0, rtol=0.1)


# --------------------------------------------------------------------------- Jacobi


def test_jacobi_errors_equal_the_per_mode_factor():
    rng = np.random.default_rng(4)
    n, steps = 31, 400
    g = jnp.asarray(rng.standard_normal(n))
    for omega in (2 / 3, 1.0):  # one compilation: omega is traced
        res = fq.jacobi_mode_errors(g, steps, omega=omega)
        np.testing.assert_array_equal(np.asarray(res.modes), np.arange(1, n + 1))
        k = np.arange(1, n + 1)
        factor = 1 - omega * (1 - np.cos(k * np.pi / (n + 1)))
        amp0 = np.asarray(res.amplitudes[0])
        want = amp0[None] * np.abs(factor)[None] ** np.arange(steps + 1)[:, None]
        # equal to rounding: the sine coefficients carry ~1e-16 of the largest one
        atol = 1e-13 * amp0.max()
        np.testing.assert_allclose(np.asarray(res.amplitudes), want, rtol=0, atol=atol)
        big = amp0 > 1e-2 * amp0.max()
        np.testing.assert_allclose(
            np.asarray(res.errors)[:, big], want[:, big] / amp0[big], rtol=1e-10, atol=1e-12
        )
    # omega = 2/3 removes high modes first: the reverse of the frequency principle
    res = fq.jacobi_mode_errors(g, steps, omega=2 / 3, modes=jnp.asarray([1, 4, 12]))
    conv = np.asarray(fq.convergence_steps(res.errors, res.iterations, threshold=0.5))
    assert conv[0] > conv[1] > conv[2] > 0


def test_jacobi_solves_the_poisson_problem():
    """The discrete solution of `-u'' = pi^2 sin(pi x)` is sin(pi x) up to O(h^2): its one
    sine coefficient (|e_0| in mode 1, from u_0 = 0) against sin(pi x)'s; and Jacobi
    (omega = 1) shrinks it by cos(pi h) per iteration."""
    n, steps = 31, 400
    x = np.arange(1, n + 1) / (n + 1)
    g = np.pi**2 * np.sin(np.pi * x)
    res = fq.jacobi_mode_errors(jnp.asarray(g), steps, omega=1.0, modes=jnp.asarray([1]))
    exact = float(np.abs(np.asarray(fq.sine_modes(n))[0] @ np.sin(np.pi * x)))
    assert float(res.amplitudes[0, 0]) == pytest.approx(exact, rel=(np.pi / (n + 1)) ** 2)
    want = np.cos(np.pi / (n + 1)) ** steps
    assert float(res.errors[-1, 0]) == pytest.approx(want, rel=1e-9)


# --------------------------------------------------------------------------- linearized net


def test_closed_form_mode_errors_equal_the_trained_linearized_network():
    init_fn, apply_fn, _ = nets.serial(
        nets.Dense(64), nets.Tanh(), nets.Dense(64), nets.Tanh(), nets.Dense(1)
    )
    x = jnp.linspace(-np.pi, np.pi, 33)[:, None]
    y = jnp.sin(x) + jnp.sin(3 * x) + jnp.sin(5 * x)
    _, params0 = init_fn(jax.random.PRNGKey(5), x.shape)
    theta = jaxdyn.empirical_ntk(apply_fn, params0, x)
    predict = jaxdyn.dynamics.mse(theta, y, learning_rate=0.5, kind="gd")
    lr = 0.5 * float(predict.critical_learning_rate)
    predict = jaxdyn.dynamics.mse(theta, y, learning_rate=lr, kind="gd")
    traj = jaxdyn.trajectory(
        apply_fn, params0, x, y, optimizer=optax.sgd(lr), steps=100, record_every=25, linearize=True
    )
    closed = predict(traj.steps, apply_fn(params0, x))
    peaks = fq.peak_indices(y[:, 0], 3)
    for kind in fq.ERROR_KINDS:
        e_train = np.asarray(fq.per_frequency_error(traj.f_train, y, peaks, kind=kind))
        e_closed = np.asarray(fq.per_frequency_error(closed, y, peaks, kind=kind))
        np.testing.assert_allclose(e_closed, e_train, rtol=1e-8, atol=1e-11)
    # and the low frequency goes first
    assert e_closed[-1, 0] < e_closed[-1, 1] < e_closed[-1, 2]


# --------------------------------------------------------------------------- bad input


def _bad_calls():
    x = np.linspace(-1, 1, 16)
    y = np.sin(3 * x)
    theta = np.eye(16)
    a, w = np.ones(4), np.ones(4)
    uneven = np.concatenate([x[:8], x[8:] + 0.05])
    nan_y = y.copy()
    nan_y[3] = np.nan
    return [
        (lambda: fq.fourier_mode_rates(theta, uneven), "`x_grid` must be a uniform"),
        (
            lambda: fq.fourier_mode_rates(theta[:3, :3], x[:3]),
            "`x_grid` must be a grid of at least",
        ),
        (lambda: fq.fourier_mode_rates(theta, x[:15]), "fourier_mode_rates(kernel)"),
        (lambda: fq.fourier_mode_rates(theta, x, window=np.ones(3)), "`window`"),
        (lambda: fq.peak_indices(y, 5), "`count` must be at most the number"),
        (lambda: fq.peak_indices(y, 1, x=uneven), "`x` must be a uniform"),
        (lambda: fq.peak_indices(y, 1, x=x[:10]), "peak_indices(x)"),
        (lambda: fq.peak_indices(y[:3], 1), "`target` must be a signal on at least 4"),
        (lambda: fq.peak_indices(nan_y, 1), "`target` must be finite"),
        (lambda: fq.peak_indices(np.ones((16, 2)), 1), "`target` must be a signal on a 1-D"),
        (lambda: fq.per_frequency_error(np.ones((2, 15)), y, np.array([3])), "(outputs)"),
        (lambda: fq.per_frequency_error(np.ones((2, 16)), y, np.array([9])), "`peaks`"),
        (lambda: fq.per_frequency_error(y, y, np.array([1]), kind="abs"), "`kind`"),
        (lambda: fq.per_frequency_error(y, nan_y, np.array([1])), "`target` must be finite"),
        (lambda: fq.convergence_steps(np.ones((3, 2)), np.arange(4)), "(steps)"),
        (lambda: fq.convergence_steps(np.ones((3, 2)), np.array([0, 2, 1])), "`steps`"),
        (lambda: fq.convergence_steps(np.ones((3, 2)), np.arange(3), 0.0), "`threshold`"),
        (lambda: fq.lfp_rates(np.array([0.0, 1.0]), a, w, bias_density=1.0), "`xi` must be"),
        (lambda: fq.lfp_rates(np.ones(2), a, w, bias_density=0.0), "`bias_density`"),
        (lambda: fq.lfp_rates(np.ones(2), a, np.ones(3), bias_density=1.0), "lfp_rates(w)"),
        (
            lambda: fq.lfp_rates(
                np.ones(2), a, np.ones((4, 2)), bias_density=1.0, x_second_moment=1.0
            ),
            "`x_second_moment`",
        ),
        (lambda: fq.jacobi_mode_errors(np.ones(2), 5), "`g` must be"),
        (lambda: fq.jacobi_mode_errors(nan_y, 5), "`g` must be finite"),
        (lambda: fq.jacobi_mode_errors(y, 5, omega=1.5), "`omega`"),
        (lambda: fq.jacobi_mode_errors(y, 0), "`steps`"),
        (lambda: fq.jacobi_mode_errors(y, 5, modes=np.array([0])), "`modes`"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_calls())))
def test_bad_input_is_named(case):
    call, words = _bad_calls()[case]
    with pytest.raises((ValueError, TypeError)) as err:
        call()
    assert words in str(err.value)
    assert " must be " in str(err.value) and "; got " in str(err.value)


def test_reexports_the_filter_and_models():
    from jaxdyn.analysis import _frequency_filter, _frequency_models

    for module in (_frequency_filter, _frequency_models):
        for name in module.__all__:
            assert getattr(fq, name) is getattr(module, name) and name in fq.__all__
