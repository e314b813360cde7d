"""jaxdyn.analysis.modular: the quadratic network, its loss and optimizer, the Fourier view,
the closed-form constructions of CoGO (Tian 2024) and their semiring operations.

References are independent: numpy FFT and explicit DFT sums, one-hot numpy forward passes
on `jaxdyn.data.modular_addition`'s inputs, hand-written Adam, and loss values derived in
closed form from the factors' monomials (see the module docstring)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdyn.analysis import modular as m
from jaxdyn.data import modular_addition


def _loss_acc(params, d):
    pairs = m.all_pairs(d)
    _, apply_fn = m.quadratic_net(d, params["W_a"].shape[0])
    out = apply_fn(params, pairs)
    return (
        float(m.projected_mse(out, pairs[:, 0], pairs[:, 1], d)),
        float(m.accuracy(out, pairs[:, 0], pairs[:, 1], d)),
    )


def _planted(d, spec, rng):
    """W_a rows sum_i 2 r_i cos(2 pi k_i x / d + phi_i): |A_hat[j, k_i]| = r_i exactly."""
    x = np.arange(d)
    w = np.zeros((len(spec), d))
    for j, comps in enumerate(spec):
        for k, r in comps:
            if k == 0:
                w[j] += r
            else:
                w[j] += 2 * r * np.cos(2 * np.pi * k * x / d + rng.uniform(0, 2 * np.pi))
    return w


def _params_from(wa, d, rng):
    width = wa.shape[0]
    return {
        "W_a": wa,
        "W_b": rng.standard_normal((width, d)),
        "W_c": rng.standard_normal((d, width)),
    }


# --------------------------------------------------------------------------- Fourier view


def test_fourier_coefficients_match_numpy_fft_and_the_sum():
    rng = np.random.default_rng(0)
    d = 23
    w = rng.standard_normal((7, d))
    got = np.asarray(m.fourier_coefficients(jnp.asarray(w)))
    np.testing.assert_allclose(got, np.fft.fft(w, axis=1) / d, rtol=0, atol=1e-14)
    x = np.arange(d)
    explicit = np.array(
        [[np.sum(w[j] * np.exp(-2j * np.pi * x * k / d)) / d for k in range(d)] for j in range(3)]
    )
    np.testing.assert_allclose(got[:3], explicit, rtol=0, atol=1e-14)
    params = _params_from(w, d, rng)
    a_hat, b_hat, c_hat = m.fourier_params(params)
    np.testing.assert_allclose(np.asarray(b_hat), np.fft.fft(params["W_b"], axis=1) / d, atol=1e-14)
    # output side conjugated: C[j, k] = (1/d) sum_c W_c[c, j] exp(+2 pi i c k / d)
    np.testing.assert_allclose(
        np.asarray(c_hat), np.conj(np.fft.fft(params["W_c"].T, axis=1)) / d, atol=1e-14
    )


def test_frequency_orders_on_planted_weights():
    rng = np.random.default_rng(1)
    d, thr = 11, 0.05
    spec = [
        [(1, 0.3)],
        [(1, 0.2)],
        [(2, 0.3), (4, 0.06)],
        [(2, 0.04)],
        [(3, 0.5), (1, 0.1)],
        [(0, 0.4), (5, 0.02)],
        [],
        [(5, 0.051)],
    ]
    params = _params_from(_planted(d, spec, rng), d, rng)
    fo = m.frequency_orders(params, threshold=thr)
    want = [sum(any(k == kk and r > thr for kk, r in comps) for comps in spec) for k in range(1, 6)]
    np.testing.assert_array_equal(np.asarray(fo.orders), want)  # [3, 1, 1, 1, 1]
    strongest = [
        max(comps, key=lambda c: c[1])[0] if comps and max(r for _, r in comps) > thr else -1
        for comps in spec
    ]
    np.testing.assert_array_equal(np.asarray(fo.assignment), strongest)
    np.testing.assert_array_equal(
        np.asarray(fo.assigned), [strongest.count(k) for k in range(1, 6)]
    )
    jitted = jax.jit(lambda p: m.frequency_orders(p, threshold=thr))(params)
    np.testing.assert_array_equal(np.asarray(jitted.orders), want)


# --------------------------------------------------------------------------- the model


def test_quadratic_net_matches_one_hot_numpy_and_torch_init():
    d, width = 7, 5
    data = modular_addition(d, 0.5, seed=3)
    pairs = jnp.asarray(data.info["pairs_train"])
    init_fn, apply_fn = m.quadratic_net(d, width)
    params = init_fn(jax.random.PRNGKey(0))
    x = np.asarray(data.x_train)  # (n, 2d) one-hot
    w_ab = np.concatenate([params["W_a"], params["W_b"]], axis=1)  # (width, 2d)
    want = ((x @ w_ab.T) ** 2) @ np.asarray(params["W_c"]).T
    np.testing.assert_allclose(np.asarray(apply_fn(params, pairs)), want, rtol=1e-13)
    # vmapped over seeds = a loop
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    batched = jax.vmap(lambda k: apply_fn(init_fn(k), pairs))(keys)
    for i in range(3):
        np.testing.assert_allclose(batched[i], apply_fn(init_fn(keys[i]), pairs), rtol=1e-13)
    # PyTorch nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = d or width
    big_init, _ = m.quadratic_net(101, 400)
    big = big_init(jax.random.PRNGKey(2))
    for key, fan_in in (("W_a", 101), ("W_b", 101), ("W_c", 400)):
        w, bound = np.asarray(big[key]), 1 / math.sqrt(fan_in)
        assert w.dtype == np.float64 and np.abs(w).max() <= bound
        assert np.abs(w).max() > 0.999 * bound
        # var of U(-c, c) is c^2/3; 40,400 draws: relative standard error ~0.6%
        assert abs(w.var() / (bound**2 / 3) - 1) < 0.03


def test_projected_mse_matches_its_definition():
    rng = np.random.default_rng(4)
    d, n = 5, 9
    out = rng.standard_normal((n, d))
    a, b = rng.integers(0, d, n), rng.integers(0, d, n)
    t = np.eye(d)[(a + b) % d] - 1 / d
    want = np.mean(np.sum((out - out.mean(1, keepdims=True) - t) ** 2, axis=1))
    assert float(
        m.projected_mse(jnp.asarray(out), jnp.asarray(a), jnp.asarray(b), d)
    ) == pytest.approx(want, rel=1e-14)
    # the authors' expanded form (modular_addition_simple2.compute_loss)
    po = out - out.mean(1, keepdims=True)
    expanded = np.mean(np.sum(po**2, 1)) - 2 * np.mean(po[np.arange(n), (a + b) % d]) + 1 - 1 / d
    assert want == pytest.approx(expanded, rel=1e-12)


def test_optimizer_is_adam_on_gradient_plus_decay():
    lr, wd, b1, b2, eps = 0.01, 5e-4, 0.9, 0.999, 1e-8
    rng = np.random.default_rng(5)
    p = {"w": rng.standard_normal(6), "v": rng.standard_normal((2, 3))}
    grads = [{k: rng.standard_normal(v.shape) for k, v in p.items()} for _ in range(2)]
    opt = m.optimizer(lr, wd)
    state = opt.init(p)
    cur, mom, sec = dict(p), {k: 0.0 for k in p}, {k: 0.0 for k in p}
    got = p
    for t, g in enumerate(grads, start=1):
        upd, state = opt.update(g, state, got)
        got = optax.apply_updates(got, upd)
        for k in p:  # torch.optim.Adam(weight_decay=wd)
            gg = g[k] + wd * cur[k]
            mom[k] = b1 * mom[k] + (1 - b1) * gg
            sec[k] = b2 * sec[k] + (1 - b2) * gg**2
            mhat, vhat = mom[k] / (1 - b1**t), sec[k] / (1 - b2**t)
            cur[k] = cur[k] - lr * mhat / (np.sqrt(vhat) + eps)
        for k in p:
            np.testing.assert_allclose(np.asarray(got[k]), cur[k], rtol=1e-14, atol=1e-15)


# --------------------------------------------------------------------------- constructions


@pytest.mark.parametrize("d", [5, 23, 71])
@pytest.mark.parametrize("order", [4, 6])
def test_constructions_have_their_order_and_solve_all_pairs(d, order):
    params = m.construct(d, order)
    fo = m.frequency_orders(params)
    np.testing.assert_array_equal(np.asarray(fo.orders), order)
    np.testing.assert_array_equal(np.asarray(fo.assigned), order)
    loss, acc = _loss_acc(params, d)
    assert acc == 1.0
    # a global optimizer: every sum-potential constraint holds exactly, loss 0 to rounding
    assert loss < 1e-20


@pytest.mark.parametrize("d", [5, 23])
def test_memorization_has_order_d_squared(d):
    # (d = 71 would need a 5041 x 5041 hidden layer: left out for time.)
    params = m.memorization(d)
    fo = m.frequency_orders(params, threshold=0.5 / d)  # every |A_hat[j, k]| is 1/d
    np.testing.assert_array_equal(np.asarray(fo.orders), d * d)
    loss, acc = _loss_acc(params, d)
    assert acc == 1.0 and loss < 1e-20


def test_order_4_without_compensation_leaves_the_constant_term():
    d = 23
    f = m._product(m.z_nu(1j), m.z_xi())
    r_abc = np.sum(f[0] * f[1] * f[2])
    s_n = np.sum((abs(f[0]) ** 2 + abs(f[1]) ** 2) * f[2]) / r_abc / (2 * d)  # a^ac + b^bc
    assert s_n == pytest.approx((1 + 1j) / (2 * d))
    # the output's (a, b)-mean at class c is 2 Re(w^-ck 2 s_n); its energy summed over c is
    # d * 2 |2 s_n|^2 per frequency, and nothing else of the loss is left
    ks = [1, 4, 7]
    loss, _ = _loss_acc(m.construct(d, 4, ks, compensate=False), d)
    expected = len(ks) * d * 2 * abs(2 * s_n) ** 2 + 2 * (11 - len(ks)) / d
    assert loss == pytest.approx(expected, rel=1e-12)
    assert loss == pytest.approx(4 * len(ks) / d + 2 * (11 - len(ks)) / d, rel=1e-12)


def test_ring_add_solves_the_union_of_frequencies():
    d = 23
    low, high = m.construct(d, 6, range(1, 6)), m.construct(d, 6, range(6, 12))
    # each missing frequency k leaves its target part (2/d) cos(2 pi k (a + b - c)/d): 2/d
    assert _loss_acc(low, d)[0] == pytest.approx(2 * 6 / d, rel=1e-12)
    both = m.ring_add(low, high)
    loss, acc = _loss_acc(both, d)
    assert loss < 1e-20 and acc == 1.0
    pairs = m.all_pairs(d)
    apply = lambda p: m.quadratic_net(d, p["W_a"].shape[0])[1](p, pairs)  # noqa: E731
    np.testing.assert_allclose(apply(both), apply(low) + apply(high), atol=1e-13)


def test_ring_mul_multiplies_coefficients_orders_and_potentials():
    d = 11
    rng = np.random.default_rng(6)
    p1 = {
        "W_a": rng.standard_normal((3, d)),
        "W_b": rng.standard_normal((3, d)),
        "W_c": rng.standard_normal((d, 3)),
    }
    p2 = {
        "W_a": rng.standard_normal((2, d)),
        "W_b": rng.standard_normal((2, d)),
        "W_c": rng.standard_normal((d, 2)),
    }
    prod = m.ring_mul(p1, p2)
    for f1, f2, fp in zip(m.fourier_params(p1), m.fourier_params(p2), m.fourier_params(prod)):
        want = (np.asarray(f1)[:, None, :] * np.asarray(f2)[None, :, :]).reshape(6, d)
        np.testing.assert_allclose(np.asarray(fp), want, atol=1e-13)
    # per-frequency factors: z_nu (order 2) times z_syn (order 3) -> order 6, a global optimizer
    ks = range(1, 6)
    target = 1 / (2 * d)
    nu = m.z_nu(np.exp(0.4j))
    nu[2] *= target / np.sum(nu[0] * nu[1] * nu[2])  # abc = 1/(2d), on row c
    syn = m.z_syn() / 3 ** (1 / 3)  # abc = 1
    pn, ps = m.from_fourier(d, [(k, nu) for k in ks]), m.from_fourier(d, [(k, syn) for k in ks])
    tiny = 1e-9
    o1, o2 = (np.asarray(m.frequency_orders(p, threshold=tiny).orders) for p in (pn, ps))
    # the product mixes blocks of different frequencies too; their coefficients vanish
    pp = m.ring_mul(pn, ps)
    op = np.asarray(m.frequency_orders(pp, threshold=tiny).orders)
    np.testing.assert_array_equal(o1, 2)
    np.testing.assert_array_equal(o2, 3)
    # at each k only the (k, k) block pairs are non-zero: 2 * 3 = 6 neurons
    np.testing.assert_array_equal(op, 6)
    a_hat, b_hat, c_hat = (np.asarray(x) for x in m.fourier_params(pp))
    r_kkk = np.sum(a_hat * b_hat * c_hat, axis=0)[1:6]
    np.testing.assert_allclose(r_kkk, target, atol=1e-15)
    loss, acc = _loss_acc(pp, d)
    assert loss < 1e-20 and acc == 1.0


# --------------------------------------------------------------------------- bad input


def _params(d, width):
    return m.quadratic_net(d, width)[0](jax.random.PRNGKey(0))


BAD = [
    (lambda: m.quadratic_net(4, 8), ValueError, r"`quadratic_net\(d\)` must be an odd int.*got 4"),
    (lambda: m.quadratic_net(1, 8), ValueError, r"`quadratic_net\(d\)` must be an int >= 3.*got 1"),
    (lambda: m.quadratic_net(5.0, 8), TypeError, r"`quadratic_net\(d\)`.*got 5.0"),
    (lambda: m.quadratic_net(5, 0), ValueError, r"`quadratic_net\(width\)` must be a positive"),
    (
        lambda: m.quadratic_net(5, 2)[1](_params(5, 2), jnp.array([[0, 5]])),
        ValueError,
        r"`apply_fn\(pairs\)` must be indices in Z_d = \[0, 4\]; got values from 0 to 5",
    ),
    (
        lambda: m.quadratic_net(5, 2)[1](_params(5, 2), jnp.array([[-1, 2]])),
        ValueError,
        r"`apply_fn\(pairs\)` must be indices.*from -1 to 2",
    ),
    (
        lambda: m.quadratic_net(5, 2)[1](_params(5, 2), jnp.array([[0, 1, 2]])),
        ValueError,
        r"`apply_fn\(pairs\)` must be an \(n, 2\) int array.*shape \(1, 3\)",
    ),
    (
        lambda: m.quadratic_net(5, 2)[1](_params(5, 2), jnp.array([[0.0, 1.0]])),
        TypeError,
        r"`apply_fn\(pairs\)` must be an array of dtype int.*float",
    ),
    (
        lambda: m.quadratic_net(5, 2)[1](_params(5, 3), jnp.array([[0, 1]])),
        ValueError,
        r"`apply_fn\(params\)\['W_a'\]` must be an array of shape \(2, 5\).*got shape \(3, 5\)",
    ),
    (
        lambda: m.projected_mse(jnp.zeros((3, 5)), jnp.array([0, 1, 2]), jnp.array([0, 1]), 5),
        ValueError,
        r"`projected_mse\(b\)` must be an int array of shape \(3,\); got shape \(2,\)",
    ),
    (
        lambda: m.projected_mse(jnp.zeros((3, 4)), jnp.array([0, 1, 2]), jnp.array([0, 1, 2]), 5),
        ValueError,
        r"`projected_mse\(outputs\)` must be an \(n, 5\) array.*shape \(3, 4\)",
    ),
    (
        lambda: m.projected_mse(jnp.zeros((2, 5)), jnp.array([0, 7]), jnp.array([0, 1]), 5),
        ValueError,
        r"`projected_mse\(a\)` must be indices in Z_d.*from 0 to 7",
    ),
    (
        lambda: m.projected_mse(jnp.zeros((2, 6)), jnp.array([0, 1]), jnp.array([0, 1]), 6),
        ValueError,
        r"`projected_mse\(d\)` must be an odd int.*got 6",
    ),
    (
        lambda: m.accuracy(jnp.zeros((2, 5)), jnp.array([0, 1]), jnp.array([0, 9]), 5),
        ValueError,
        r"`accuracy\(b\)` must be indices",
    ),
    (lambda: m.construct(8), ValueError, r"`construct\(d\)` must be an odd int.*got 8"),
    (lambda: m.construct(7, 5), ValueError, r"`construct\(order\)` must be 4 or 6.*got 5"),
    (
        lambda: m.construct(7, 6, [1, 4]),
        ValueError,
        r"`construct\(frequencies\[1\]\)` must be an int in \[1, 3\].*got 4",
    ),
    (lambda: m.construct(7, 6, [2, 2]), ValueError, r"`construct\(frequencies\)` must be distinct"),
    (lambda: m.construct(7, 6, nu=0), ValueError, r"`z_nu\(nu\)` must be a finite non-zero"),
    (lambda: m.z_xi(2.0), ValueError, r"`z_xi\(xi\)` must be a complex number of modulus 1"),
    (lambda: m.memorization(2), ValueError, r"`memorization\(d\)` must be an int >= 3"),
    (
        lambda: m.frequency_orders(
            {"W_a": np.zeros((2, 6)), "W_b": np.zeros((2, 6)), "W_c": np.zeros((6, 2))}
        ),
        ValueError,
        r"must be an odd int.*6",
    ),
    (
        lambda: m.frequency_orders({"W_a": np.zeros((2, 5))}),
        TypeError,
        r"`frequency_orders\(params\)` must be a dict with keys 'W_a', 'W_b', 'W_c'",
    ),
    (
        lambda: m.frequency_orders(_params(5, 2), threshold=-1.0),
        ValueError,
        r"`frequency_orders\(threshold\)` must be a non-negative float; got -1.0",
    ),
    (
        lambda: m.ring_add(_params(5, 2), _params(7, 2)),
        ValueError,
        r"`ring_add\(p2\)` must be parameters for the same modulus as p1 \(d = 5\); got d = 7",
    ),
    (
        lambda: m.ring_mul(
            _params(5, 2),
            {"W_a": np.zeros((2, 5)), "W_b": np.zeros((3, 5)), "W_c": np.zeros((5, 2))},
        ),
        ValueError,
        r"`ring_mul\(p2\)\['W_b'\]` must be an array of shape \(2, 5\).*got shape \(3, 5\)",
    ),
    (
        lambda: m.fourier_coefficients(np.zeros(5)),
        ValueError,
        r"`fourier_coefficients\(W\)` must be a 2-dimensional array.*shape \(5,\)",
    ),
    (
        lambda: m.optimizer(0.0, 1e-4),
        ValueError,
        r"`optimizer\(learning_rate\)` must be a positive",
    ),
    (lambda: m.optimizer(0.01, -1.0), ValueError, r"`optimizer\(weight_decay\)` must be a non-neg"),
    (
        lambda: m.from_fourier(7, [(4, np.ones((3, 2)))]),
        ValueError,
        r"`from_fourier\(blocks\[0\]\[0\]\)` must be an int in \[1, 3\]; got 4",
    ),
    (
        lambda: m.from_fourier(7, [(1, np.ones((2, 2)))]),
        ValueError,
        r"`from_fourier\(blocks\[0\]\[1\]\)` must be a \(3, q\) complex array.*\(2, 2\)",
    ),
]


@pytest.mark.parametrize("call, exc, pattern", BAD)
def test_bad_input(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


# --------------------------------------------------------------------------- factorize


def _shuffled(params, rng, noise):
    w = params["W_a"].shape[0]
    perm, sign = rng.permutation(w), rng.choice([-1.0, 1.0], w)  # (a, b) -> -(a, b): same net
    out = {
        "W_a": params["W_a"][perm] * sign[:, None],
        "W_b": params["W_b"][perm] * sign[:, None],
        "W_c": params["W_c"][:, perm],
    }
    return {k: v + noise * rng.standard_normal(v.shape) for k, v in out.items()}, perm


@pytest.mark.parametrize(
    "order, nu, types",
    [(4, 1j, ("nu=i", "xi")), (6, 1j, ("nu=i", "syn")), (6, np.exp(0.7j), ("nu", "syn"))],
)
def test_factorize_recovers_constructed_products(order, nu, types):
    d = 11
    rng = np.random.default_rng(7)
    clean = m.construct(d, order, nu=nu, compensate=False)
    # coefficients are (2 order d)^(-1/3) ~ 0.2; noise 1e-3 per weight is ~3e-4 per coefficient
    params, perm = _shuffled(clean, rng, 1e-3)
    found = m.factorize(params)
    assert [f.k for f in found] == list(range(1, 6))
    a_hat, b_hat, c_hat = (np.asarray(x) for x in m.fourier_params(params))
    for f in found:
        assert f.factorable and f.error < 0.02 and f.types == types
        assert f.kind == ("2x2" if order == 4 else "2x3")
        # the neurons are those of block k of the construction, wherever they were moved
        np.testing.assert_array_equal(np.sort(perm[f.neurons]) // order, f.k - 1)
        coeff = np.stack([a_hat[f.neurons, f.k], b_hat[f.neurons, f.k], c_hat[f.neurons, f.k]])
        rebuilt = (f.factor2[:, :, None] * f.factor_other[:, None, :]).reshape(3, -1)
        np.testing.assert_allclose(np.abs(rebuilt), np.abs(coeff), atol=5e-3)


def test_factorize_rejects_random_weights():
    d = 11
    rng = np.random.default_rng(8)
    for _ in range(3):
        blocks = [
            (k, rng.standard_normal((3, q)) + 1j * rng.standard_normal((3, q)))
            for k, q in ((1, 4), (2, 4), (3, 6), (4, 6))
        ]
        # scaled so every coefficient clears the 0.05 threshold: all q neurons count
        params = m.from_fourier(d, [(k, 0.1 * f / np.abs(f).min()) for k, f in blocks])
        found = m.factorize(params)
        assert [f.k for f in found] == [1, 2, 3, 4]
        assert not any(f.factorable for f in found)


def test_factorize_bad_input():
    with pytest.raises(ValueError, match=r"`factorize\(tolerance\)` must be a non-negative float"):
        m.factorize(m.construct(5, 4), tolerance=-0.1)
    with pytest.raises(TypeError, match=r"`factorize\(params\)` must be a dict"):
        m.factorize([1, 2])
