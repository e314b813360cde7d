"""`jaxdyn.analysis.condensation`: the scaled two-layer model against its closed-form output
variance, the metrics against NumPy by hand, planted clusters, multiplicities, the training
rule against plain gradient descent and its curvature bound against the exact Hessian, and the
scaling claims of the phase diagram at small widths."""

from __future__ import annotations

import math

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.analysis import condensation as C

X3 = jnp.array([[-0.5], [0.0], [0.5]])
Y3 = jnp.array([[-0.5], [0.0], [1.0]])


def _random_params(seed, m=7, d=2):
    r = np.random.default_rng(seed)
    return {
        "a": jnp.asarray(r.normal(size=m)),
        "w": jnp.asarray(r.normal(size=(m, d))),
        "b": jnp.asarray(r.normal(size=m)),
    }


# --------------------------------------------------------------------------- the model


def _tanh_second_moment(s):
    """E[tanh(s z)^2], z ~ N(0, 1), by Gauss-Hermite quadrature (NumPy)."""
    t, wts = np.polynomial.hermite_e.hermegauss(80)
    return float(np.sum(wts * np.tanh(s * t) ** 2) / np.sqrt(2 * np.pi))


@pytest.mark.parametrize(
    "gamma, gamma_prime, activation, input_exponent",
    [(1.25, 0.5, "relu", None), (0.75, -0.5, "tanh", 0.25)],
)
def test_output_variance_matches_closed_form(gamma, gamma_prime, activation, input_exponent):
    m, seeds = 40, 3000
    x = jnp.array([[-0.5], [0.3]])
    init_fn, apply_fn = C.two_layer(
        m,
        gamma=gamma,
        gamma_prime=gamma_prime,
        activation=activation,
        antisymmetric=False,
        input_exponent=input_exponent,
    )
    sc = apply_fn.scales
    assert sc.kappa == pytest.approx(m**-gamma) and sc.kappa_prime == pytest.approx(m**-gamma_prime)
    f = jax.vmap(lambda k: apply_fn(init_fn(k), x)[:, 0])(
        jax.random.split(jax.random.key(1), seeds)
    )
    f = np.asarray(f)
    norm = np.sqrt(
        np.asarray(x)[:, 0] ** 2 + 1
    )  # ||(x, 1)||: (w, b) . (x, 1) ~ N(0, beta2^2 |x~|^2)
    if activation == "relu":
        second = (sc.beta2 * norm) ** 2 / 2  # E[ReLU(s z)^2] = s^2 / 2
    else:
        second = np.array([_tanh_second_moment(sc.beta2 * v) for v in norm])
    want = sc.alpha**2 * m * sc.beta1**2 * second
    var = f.var(axis=0)
    # standard error of a variance estimate from the sample fourth moment
    se = np.sqrt((np.mean((f - f.mean(0)) ** 4, axis=0) - var**2) / seeds)
    assert np.all(np.abs(var - want) < 4 * se), (var, want, se)
    assert np.all(np.abs(f.mean(0)) < 4 * np.sqrt(var / seeds))


def test_antisymmetric_init_gives_exactly_zero_output():
    for gamma, gp, act in [(1.75, -0.75, "tanh"), (0.25, 1.25, "xtanh")]:
        init_fn, apply_fn = C.two_layer(
            64, gamma=gamma, gamma_prime=gp, activation=act, input_dim=3
        )
        params = init_fn(jax.random.key(3))
        x = jax.random.normal(jax.random.key(4), (10, 3))
        assert np.all(np.asarray(apply_fn(params, x)) == 0.0)
        np.testing.assert_array_equal(params["a"][:32], -params["a"][32:])
        np.testing.assert_array_equal(params["w"][:32], params["w"][32:])


def test_scales_split_and_theoretical_regimes():
    sc = C.scales(1000, gamma=1.5, gamma_prime=0.5)
    assert sc.beta1 * sc.beta2 == pytest.approx(1.0) and sc.alpha == pytest.approx(1000**-1.5)
    demo = C.scales(1000, gamma=2 * 0.75, gamma_prime=0.0, input_exponent=0.75)
    assert demo.alpha == pytest.approx(1.0) and demo.beta1 == pytest.approx(1000**-0.75)
    cases = {
        (0.5, 0.0): "linear",  # NTK
        (1.0, 0.0): "critical",  # mean field
        (1.0, -0.5): "critical",
        (1.5, 0.5): "critical",
        (1.5, 0.0): "condensed",
        (1.75, -0.75): "condensed",
        (1.5, 1.0): "linear",
        (0.75, -0.75): "linear",
        (1.25, 1.25): "linear",
    }
    for (g, gp), want in cases.items():
        assert C.theoretical_regime(g, gp) == want, (g, gp)
    assert C.theoretical_regime(1.1, 0.0, tol=0.15) == "critical"


# --------------------------------------------------------------------------- metrics


def test_relative_distance_against_numpy():
    p0, pt = _random_params(0), _random_params(1)
    n = {k: np.asarray(v) for k, v in p0.items()}
    t = {k: np.asarray(v) for k, v in pt.items()}
    num = np.sum((t["w"] - n["w"]) ** 2) + np.sum((t["b"] - n["b"]) ** 2)
    den = np.sum(n["w"] ** 2) + np.sum(n["b"] ** 2)
    assert float(C.relative_distance(pt, p0)) == pytest.approx(np.sqrt(num / den), rel=1e-13)
    num += np.sum((t["a"] - n["a"]) ** 2)
    den += np.sum(n["a"] ** 2)
    assert float(C.relative_distance(pt, p0, part="all")) == pytest.approx(
        np.sqrt(num / den), rel=1e-13
    )
    assert float(C.relative_distance(p0, p0)) == 0.0


def test_orientation_amplitude_against_numpy():
    p = _random_params(2, m=9, d=1)
    p["b"] = p["b"].at[0].set(0.0)
    got = C.orientation_amplitude(p)
    w, b, a = (np.asarray(p[k]) for k in ("w", "b", "a"))
    w = w[:, 0]
    # sign(b) arccos(w / r) is the polar angle of (w, b): atan2(b, w) (b = 0 counts as positive)
    np.testing.assert_allclose(got.orientation, np.arctan2(b, w), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(got.amplitude, np.abs(a) * np.hypot(w, b), rtol=1e-13)


def test_cosine_similarity_against_numpy_and_blocks():
    p = _random_params(3, m=12, d=2)
    got = C.cosine_similarity(p)
    theta = np.concatenate([np.asarray(p["w"]), np.asarray(p["b"])[:, None]], axis=1)
    u = theta / np.linalg.norm(theta, axis=1, keepdims=True)
    order = np.asarray(got.order)
    assert sorted(order.tolist()) == list(range(12))
    np.testing.assert_allclose(got.similarity, (u @ u.T)[order][:, order], rtol=1e-12, atol=1e-14)
    # two planted antipodal directions: each block of the ordered matrix is one direction
    planted = _planted([np.array([1.0, 0.5]), np.array([-1.0, -0.5])], [5, 7], seed=4)
    sim = np.asarray(C.cosine_similarity(planted).similarity)
    first = sim[0] > 0
    assert first.sum() in (5, 7) and np.all(first[: first.sum()])  # contiguous block
    np.testing.assert_allclose(np.abs(sim), 1.0, atol=1e-12)


def _planted(dirs, counts, seed=0):
    return _planted_full(dirs, counts, seed)[0]


def _planted_full(dirs, counts, seed=0, exact_duplicates=False):
    """Neurons on the planted unit directions `dirs` ((d + 1,) each): random positive
    multiples of each (ReLU's positive homogeneity), or exact copies of one neuron; returns
    (params, the planted cluster of each neuron)."""
    r = np.random.default_rng(seed)
    a, theta, truth = [], [], []
    for j, (u, c) in enumerate(zip(dirs, counts)):
        u = np.asarray(u, float) / np.linalg.norm(u)
        scale = np.full(c, 0.7) if exact_duplicates else r.uniform(0.2, 2.0, c)
        theta.append(scale[:, None] * u)
        a.append(np.full(c, r.normal()) if exact_duplicates else r.normal(size=c))
        truth += [j] * c
    theta, a, truth = np.concatenate(theta), np.concatenate(a), np.array(truth)
    perm = r.permutation(a.size)
    params = {
        "a": jnp.asarray(a[perm]),
        "w": jnp.asarray(theta[perm, :-1]),
        "b": jnp.asarray(theta[perm, -1]),
    }
    return params, truth[perm]


DIRS3 = [np.array([1.0, 0.2, 0.3]), np.array([-0.4, 1.0, 0.1]), np.array([0.2, -0.5, -1.0])]


def _same_partition(labels, truth):
    pairs = set(zip(np.asarray(labels).tolist(), np.asarray(truth).tolist()))
    return len(pairs) == len(set(truth.tolist())) == len(set(np.asarray(labels).tolist()))


def test_directions_and_merge_recover_planted_relu_clusters():
    params, truth = _planted_full(DIRS3, [6, 9, 4], seed=5)
    dirs = C.directions(params, threshold=0.99)
    assert dirs.count == 3 and _same_partition(dirs.labels, truth)
    theta = np.concatenate([np.asarray(params["w"]), np.asarray(params["b"])[:, None]], axis=1)
    amp = np.abs(np.asarray(params["a"])) * np.linalg.norm(theta, axis=1)
    shares = np.array([amp[truth == j].sum() for j in range(3)]) / amp.sum()
    np.testing.assert_allclose(np.sort(dirs.weights), np.sort(shares), rtol=1e-12)
    assert np.all(np.diff(dirs.weights) <= 0) and dirs.weights.sum() == pytest.approx(1.0)
    for c in range(3):  # the cluster's direction is its planted direction
        u = DIRS3[truth[np.flatnonzero(dirs.labels == c)[0]]]
        np.testing.assert_allclose(dirs.directions[c], u / np.linalg.norm(u), rtol=1e-12)
    _, apply_fn = C.two_layer(2, gamma=0.5, gamma_prime=0.0, input_dim=2)
    x = jax.random.normal(jax.random.key(0), (50, 2))
    merged = C.merge(params, threshold=0.99, apply_fn=apply_fn, x=x)
    assert merged.width == 3 and merged.params["w"].shape == (3, 2)
    assert _same_partition(merged.labels, truth)
    f = np.asarray(apply_fn(params, x))
    assert merged.error < 1e-13 * np.abs(f).max() + 1e-15 and merged.relative_error < 1e-13
    np.testing.assert_allclose(apply_fn(merged.params, x), f, rtol=1e-12, atol=1e-14)


def test_merge_exact_duplicates_for_tanh():
    params, truth = _planted_full(DIRS3[:2], [5, 3], seed=6, exact_duplicates=True)
    _, apply_fn = C.two_layer(2, gamma=0.5, gamma_prime=0.0, input_dim=2, activation="tanh")
    x = jax.random.normal(jax.random.key(1), (30, 2))
    merged = C.merge(params, threshold=0.999, apply_fn=apply_fn, x=x)
    assert merged.width == 2 and _same_partition(merged.labels, truth)
    np.testing.assert_allclose(
        apply_fn(merged.params, x), apply_fn(params, x), rtol=1e-12, atol=1e-15
    )
    assert C.directions(params, threshold=0.999, mass=0.5).n_major in (1, 2)


def test_merge_drops_cancelling_pairs():
    init_fn, apply_fn = C.two_layer(20, gamma=1.0, gamma_prime=0.0)
    params = init_fn(jax.random.key(0))
    merged = C.merge(params, threshold=0.9999, apply_fn=apply_fn, x=X3)
    assert merged.width == 1 and merged.error == 0.0  # every mirrored pair cancels


def test_activation_multiplicity():
    assert C.activation_multiplicity(jnp.tanh) == 1
    assert C.activation_multiplicity(jnp.sin) == 1
    assert C.activation_multiplicity(lambda z: z * jnp.tanh(z)) == 2
    assert C.activation_multiplicity(lambda z: z**2) == 2
    assert C.activation_multiplicity(lambda z: z**3 + z**4) == 3
    with pytest.raises(ValueError, match=r"`fn` must be an activation smooth at 0.*jumps"):
        C.activation_multiplicity(jax.nn.relu)
    with pytest.raises(ValueError, match="all derivatives"):
        C.activation_multiplicity(lambda z: jnp.zeros_like(z))
    with pytest.raises(TypeError, match="`fn` must be a callable"):
        C.activation_multiplicity(3)


def test_phase_slope_against_polyfit():
    widths = np.array([1000, 2000, 4000, 8000])
    rds = 3.0 * widths**-0.5 * np.exp(np.random.default_rng(0).normal(scale=0.05, size=4))
    got = C.phase_slope(widths, rds)
    slope, intercept = np.polyfit(np.log(widths), np.log(rds), 1)
    assert got.slope == pytest.approx(slope, rel=1e-12)
    assert got.intercept == pytest.approx(intercept, rel=1e-12)
    assert got.regime == "linear" and 0.9 < got.r2 <= 1 and got.stderr > 0
    assert C.phase_slope(widths, widths**0.3).regime == "condensed"
    assert C.phase_slope(widths, widths**0.02).regime == "critical"
    assert C.phase_slope(widths, widths**0.3).r2 == pytest.approx(1.0)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (
            lambda: C.two_layer(0, gamma=0.5, gamma_prime=0.0),
            ValueError,
            "`width` must be a positive int; got 0",
        ),
        (
            lambda: C.two_layer(3, gamma=0.5, gamma_prime=0.0),
            ValueError,
            "`width` must be an even int",
        ),
        (
            lambda: C.two_layer(4, gamma=float("nan"), gamma_prime=0.0),
            ValueError,
            "`gamma` must be a finite",
        ),
        (
            lambda: C.two_layer(4, gamma=0.5, gamma_prime=math.inf),
            ValueError,
            "`gamma_prime` must be a finite",
        ),
        (lambda: C.two_layer(4, gamma="1", gamma_prime=0.0), TypeError, "`gamma` must be"),
        (
            lambda: C.two_layer(4, gamma=0.5, gamma_prime=0.0, activation="gelu"),
            ValueError,
            "`activation` must be one of",
        ),
        (
            lambda: C.phase_slope([1000], [0.1]),
            ValueError,
            "`widths` must be a list of two or more",
        ),
        (lambda: C.phase_slope([1000, 2000], [0.1]), ValueError, "`rds` must be one RD per width"),
        (
            lambda: C.phase_slope([1000, 2000], [0.1, -1.0]),
            ValueError,
            "`rds` must be finite positive",
        ),
        (
            lambda: C.relative_distance(_random_params(0, m=7), _random_params(1, m=8)),
            ValueError,
            "`params_t` must be parameters of the same width",
        ),
        (
            lambda: C.relative_distance({"a": jnp.ones(3)}, _random_params(1)),
            TypeError,
            "`params_t` must be a dict with keys",
        ),
        (
            lambda: C.relative_distance(_random_params(0), _random_params(0), part="out"),
            ValueError,
            "`part` must be one of",
        ),
        (
            lambda: C.orientation_amplitude(_random_params(0, d=2)),
            ValueError,
            "orientations are defined for 1-D",
        ),
        (lambda: C.directions(_random_params(0), threshold=1.5), ValueError, "`threshold` must be"),
        (
            lambda: C.merge(_random_params(0), threshold=0.9, x=X3),
            ValueError,
            "`apply_fn and x` must be given together",
        ),
    ],
)
def test_bad_inputs(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_apply_fn_checks_inputs():
    init_fn, apply_fn = C.two_layer(4, gamma=0.5, gamma_prime=0.0, input_dim=2)
    with pytest.raises(ValueError, match=r"`apply_fn\(x\)` must be an \(n, 2\) array"):
        apply_fn(init_fn(jax.random.key(0)), X3)
    bad = dict(init_fn(jax.random.key(0)), b=jnp.ones(5))
    with pytest.raises(
        ValueError, match=r"`apply_fn\(params\)\['b'\]` must be an array of shape \(4,\)"
    ):
        apply_fn(bad, jnp.ones((3, 2)))


# --------------------------------------------------------------------------- training


def _mse(apply_fn, p):
    return 0.5 * jnp.mean((apply_fn(p, X3) - Y3) ** 2)


def test_authors_rule_is_plain_gradient_descent():
    """Without restarts the authors' rule is GD at lr0 sqrt(beta1 beta2) / alpha; gradients
    here come from jax.grad of the loss, not the fit's hand-derived ones."""
    init_fn, apply_fn = C.two_layer(60, gamma=0.75, gamma_prime=0.25, input_exponent=0.1)
    p = p0 = init_fn(jax.random.key(2))
    sc = apply_fn.scales
    lr = 0.05 * math.sqrt(sc.beta1 * sc.beta2) / sc.alpha
    grad = jax.jit(jax.grad(lambda q: _mse(apply_fn, q)))
    losses = []
    for _ in range(40):
        losses.append(float(_mse(apply_fn, p)))
        p = jax.tree_util.tree_map(lambda a, g: a - lr * g, p, grad(p))
    assert np.all(np.diff(losses) < 0)  # no restart can have happened
    res = C.fit(apply_fn, p0, X3, Y3, rule="authors", lr0=0.05, max_steps=40, chunk=10)
    assert (
        int(res.steps) == 40 and int(res.restarts) == 0 and float(res.lr_last) == pytest.approx(lr)
    )
    for k in p:
        np.testing.assert_allclose(res.params[k], p[k], rtol=1e-10, atol=1e-13)
    # too large a rate: the loss rises, lr0 halves and training restarts from params0, so the
    # result is plain GD from params0 at the final rate for the final run's steps
    big = C.fit(apply_fn, p0, X3, Y3, rule="authors", lr0=6.4, max_steps=40, chunk=10)
    k = int(big.restarts)
    assert k >= 1 and float(big.lr0) == 6.4 / 2**k and 0 < int(big.run_steps) < 40 - k
    q, lr_k = p0, float(big.lr0) * lr / 0.05
    for _ in range(int(big.run_steps)):
        q = jax.tree_util.tree_map(lambda a, g: a - lr_k * g, q, grad(q))
    for key in q:
        np.testing.assert_allclose(big.params[key], q[key], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "activation",
    ["relu", pytest.param("xtanh", marks=pytest.mark.slow)],  # xtanh: sigma'' too
)
def test_curvature_bound_holds(activation):
    from jaxdyn.analysis._condensation_fit import _terms

    init_fn, apply_fn = C.two_layer(4, gamma=0.5, gamma_prime=0.0, activation=activation)
    for seed in range(2):
        p = init_fn(jax.random.key(seed))
        p = {k: v * (1.0 + seed) for k, v in p.items()}  # also away from init
        flat, unravel = jax.flatten_util.ravel_pytree(p)
        hess = jax.jit(jax.hessian(lambda v, unravel=unravel: _mse(apply_fn, unravel(v))))(flat)
        top = np.max(np.abs(np.linalg.eigvalsh(np.asarray(hess))))
        _, _, grads, h = jax.jit(_terms, static_argnums=4)(p, X3, Y3, apply_fn.alpha, activation)
        g_ref = jax.jit(jax.grad(lambda q: _mse(apply_fn, q)))(p)
        for k in p:
            np.testing.assert_allclose(grads[k], g_ref[k], rtol=1e-10, atol=1e-14)
        assert top <= float(h) * (1 + 1e-10), (top, float(h))


def test_grid_run_equals_single_fits():
    """One vmapped grid run gives, point by point, what `fit` gives on that point alone."""
    m, points = 60, [(0.5, 0.0), (1.75, -0.5)]
    p0s, res = C.fit_grid(m, points, X3, Y3, key=jax.random.key(0), max_steps=4000)
    assert bool(np.all(res.converged)) and np.all(np.asarray(res.mse) < 1e-6)
    for i, (g, gp) in enumerate(points):
        init_fn, apply_fn = C.two_layer(m, gamma=g, gamma_prime=gp)
        p0 = init_fn(jax.random.key(0))
        np.testing.assert_allclose(p0["w"], p0s["w"][i], rtol=1e-14)
        one = C.fit(apply_fn, p0, X3, Y3, max_steps=4000)
        assert int(one.steps) == int(res.steps[i]) and bool(one.converged)
        for k in p0:
            np.testing.assert_allclose(res.params[k][i], one.params[k], rtol=1e-9, atol=1e-12)
    # a base rate far above 2 / h makes the loss rise: halved and restarted until it falls
    # (same shapes as above: no new compilation)
    big = C.fit(apply_fn, p0, X3, Y3, lr0=16.0, max_steps=4000)
    assert int(big.restarts) >= 2 and bool(big.converged) and not bool(big.failed)
    # every halving costs the iteration that saw the rise and undoes one accepted step
    assert int(big.steps) == int(big.run_steps) + 2 * int(big.restarts) + 1
    hist = np.asarray(big.history)
    assert np.all(np.diff(hist[np.isfinite(hist)][-5:]) <= 0)


@pytest.fixture(scope="module")
def scaling_runs():
    """NTK point and a condensed point, widths 1000..8000, one vmapped run per width."""
    widths = (1000, 2000, 4000, 8000)
    points = [(0.5, 0.0), (1.75, -0.5)]
    rds, runs = [], []
    for m in widths:
        p0, res = C.fit_grid(m, points, X3, Y3, key=jax.random.key(0), max_steps=20000)
        rds.append(np.asarray(jax.vmap(C.relative_distance)(res.params, p0)))
        runs.append(res)
    return widths, np.array(rds), runs


@pytest.mark.slow
def test_ntk_point_rd_falls_as_inverse_sqrt_width_and_condensed_grows(scaling_runs):
    widths, rds, runs = scaling_runs
    assert all(bool(np.all(r.converged)) for r in runs)
    ntk = C.phase_slope(widths, rds[:, 0])
    # the linear regime's RD ~ m^-1/2 (Luo et al.)
    assert -0.6 < ntk.slope < -0.4 and ntk.r2 > 0.98 and ntk.regime == "linear"
    cond = C.phase_slope(widths, rds[:, 1])
    assert cond.slope > 0.1 and cond.regime == "condensed"


@pytest.mark.slow
def test_one_d_demo_small_init_condenses_on_at_most_2p_directions():
    """The 1-D demo (target 0.2 ReLU(x - 1/3) + 0.2 ReLU(-x - 1/3) on 4 points, width 1000,
    init std 1000^-t): at small init the amplitude gathers on at most 2p = 2 directions (ReLU's
    one-sided derivatives 1, 0 at 0 are both of order 1), at NTK-like init it does not."""
    x = jnp.linspace(-1, 1, 4)[:, None]
    y = 0.2 * jax.nn.relu(x - 1 / 3) + 0.2 * jax.nn.relu(-x - 1 / 3)
    counts = {}
    for t in (0.25, 1.25):
        init_fn, apply_fn = C.two_layer(1000, gamma=2 * t, gamma_prime=0.0, input_exponent=t)
        p0 = init_fn(jax.random.key(0))
        res = C.fit(apply_fn, p0, x, y, mse_target=1e-8, max_steps=100_000)
        assert bool(res.converged)
        counts[t] = C.directions(res.params, threshold=0.98, mass=0.9).n_major
    assert counts[1.25] <= 2 < counts[0.25], counts
