"""The networks of `jaxdyn.analysis.representation` (mlp, residual_mlp, cnn) against hand
computations in NumPy, and the fit helpers (`fit_mean_rate`, `curve_errors`) against planted
values. Float64 throughout (conftest)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.analysis import representation as rep

NUMPY_ACT = {
    "leaky_relu": lambda z: np.where(z >= 0, z, 0.01 * z),
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
    "silu": lambda z: z / (1 + np.exp(-z)),
    "linear": lambda z: z,
}


def _np(params):
    return [{k: np.asarray(v) for k, v in p.items()} for p in params]


def test_xavier_normal_init_std_and_zero_biases():
    gain = 1.7
    init, _, _ = rep.mlp(200, 300, 1, 100, gain=gain)
    params = _np(init(jax.random.PRNGKey(0), jnp.float64))
    for p, (fi, fo) in zip(params, [(200, 300), (300, 100)]):
        assert p["W"].shape == (fi, fo) and p["b"].shape == (fo,)
        want = gain * np.sqrt(2.0 / (fi + fo))  # PyTorch's xavier_normal_
        # >= 30,000 draws: the sample std is within ~0.4% of the truth (1.5%: ~4 sigma)
        assert np.std(p["W"]) == pytest.approx(want, rel=0.015)
        assert abs(np.mean(p["W"])) < 5 * want / np.sqrt(p["W"].size)
        assert not np.any(p["b"])
    # conv fans are kernel area x channels
    init_c, _, _ = rep.cnn((4, 4, 40), 60, 1, 1, gain=0.5)
    w = np.asarray(init_c(jax.random.PRNGKey(1), jnp.float64)[0]["W"])
    assert w.shape == (3, 3, 40, 60)
    assert np.std(w) == pytest.approx(0.5 * np.sqrt(2.0 / (9 * 40 + 9 * 60)), rel=0.015)
    # a gain override scales the same draw (the experiments vmap it as a traced value)
    half = init(jax.random.PRNGKey(0), jnp.float64, gain=0.5)
    np.testing.assert_allclose(np.asarray(half[1]["W"]), 0.5 / gain * params[1]["W"])
    assert rep.xavier_std(3, 5, 2.0) == pytest.approx(2 * np.sqrt(2 / 8))


def _random_params(params, seed=0):
    """Non-zero biases too, so the forward pass checks them."""
    rng = np.random.default_rng(seed)
    return [{k: rng.normal(size=np.shape(v)) for k, v in p.items()} for p in params]


X = np.random.default_rng(5).normal(size=(4, 3))


@pytest.mark.parametrize("activation", list(rep.ACTIVATIONS))
def test_mlp_hidden_and_output_by_hand(activation):
    init, apply_fn, hidden_fn = rep.mlp(3, 5, 3, 2, activation=activation)
    params = _random_params(init(jax.random.PRNGKey(0), jnp.float64))
    act = NUMPY_ACT[activation]
    z, acts = X, []
    for p in params[:-1]:
        z = act(z @ p["W"] + p["b"])
        acts.append(z)
    out = z @ params[-1]["W"] + params[-1]["b"]
    np.testing.assert_allclose(np.asarray(apply_fn(params, X)), out, rtol=1e-12)
    for layer in (1, 2, 3):
        np.testing.assert_allclose(
            np.asarray(hidden_fn(params, X, layer)), acts[layer - 1], rtol=1e-12, atol=1e-14
        )
    both = hidden_fn(params, X, (3, 1))
    np.testing.assert_allclose(np.asarray(both[1]), acts[0], rtol=1e-12, atol=1e-14)


def test_residual_mlp_by_hand():
    init, apply_fn, hidden_fn = rep.residual_mlp(3, 4, 3, 1, activation="tanh")
    params = _random_params(init(jax.random.PRNGKey(0), jnp.float64))
    s = 1 / np.sqrt(2)  # default branch scale 1 / sqrt(depth - 1)
    h1 = np.tanh(X @ params[0]["W"] + params[0]["b"])
    h2 = h1 + s * np.tanh(h1 @ params[1]["W"] + params[1]["b"])
    h3 = h2 + s * np.tanh(h2 @ params[2]["W"] + params[2]["b"])
    np.testing.assert_allclose(np.asarray(hidden_fn(params, X, 2)), h2, rtol=1e-12)
    out = h3 @ params[3]["W"] + params[3]["b"]
    np.testing.assert_allclose(np.asarray(apply_fn(params, X)), out, rtol=1e-12)


def _conv_same(x, w, b):
    """'Same' cross-correlation, NHWC x HWIO, by explicit loops over the zero-padded image."""
    n, hh, ww, _ = x.shape
    k = w.shape[0]
    pad = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    out = np.zeros((n, hh, ww, w.shape[3]))
    for i in range(hh):
        for j in range(ww):
            patch = pad[:, i : i + k, j : j + k, :]
            out[:, i, j, :] = np.einsum("nabc,abcd->nd", patch, w) + b
    return out


def test_cnn_by_hand():
    shape = (5, 4, 2)
    init, apply_fn, hidden_fn = rep.cnn(shape, 3, 2, 2, activation="elu")
    params = _random_params(init(jax.random.PRNGKey(0), jnp.float64))
    x = np.random.default_rng(1).normal(size=(2, *shape))
    act = NUMPY_ACT["elu"]
    h1 = act(_conv_same(x, params[0]["W"], params[0]["b"]))
    h2 = act(_conv_same(h1, params[1]["W"], params[1]["b"]))
    np.testing.assert_allclose(
        np.asarray(hidden_fn(params, x, 1)), h1.reshape(2, -1), rtol=1e-11, atol=1e-13
    )
    out = h2.reshape(2, -1) @ params[2]["W"] + params[2]["b"]
    np.testing.assert_allclose(np.asarray(apply_fn(params, x)), out, rtol=1e-11)


def test_image_embedding_keeps_distances():
    x = np.array([[-1.0], [0.0], [0.5]])
    img = np.asarray(rep.image_embedding(x, (8, 8, 1)))
    assert img.shape == (3, 8, 8, 1) and not np.any(img[1])
    flat = img.reshape(3, -1)
    d = np.linalg.norm(flat[:, None] - flat[None], axis=-1)
    np.testing.assert_allclose(d, np.abs(x - x.T), rtol=1e-12, atol=1e-15)


def test_fit_mean_rate_recovers_a_planted_rate():
    t = np.linspace(0.0, 30.0, 61)
    m = 0.2 * np.exp(-2 * 0.37 * t)
    fit = rep.fit_mean_rate(m, t)
    assert fit.eta_mean == pytest.approx(0.37, rel=1e-6)
    assert fit.relative_error < 1e-6
    errs = rep.curve_errors(np.ones((3, 3)), np.array([[1.0, 1, 1], [1, 1, 1], [1, 1, 4]]))
    assert errs == pytest.approx({"h": 0.0, "y": 0.0, "w": 3 / np.sqrt(3)})


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: rep.mlp(1, 4, 2, activation="gelu"), "`activation`"),
        (lambda: rep.mlp(1, 4, 0), "`depth`"),
        (lambda: rep.mlp(1, 4, 2, gain=0.0), "`gain`"),
        (lambda: rep.cnn((4, 4, 1), 2, 2, kernel_size=2), "`kernel_size`"),
        (lambda: rep.residual_mlp(1, 4, 3, branch_scale=-1.0), "`branch_scale`"),
        (lambda: _hidden(layer=4), r"`hidden_fn\(layer\)`"),
        (lambda: _hidden(layer=(1, 0)), r"`hidden_fn\(layer\)\[1\]`"),
        (lambda: _hidden(x=np.zeros((2, 2))), "`mlp x`"),
        (lambda: rep.fit_mean_rate(np.zeros(3), np.arange(3.0)), "`mean_error`"),
        (lambda: rep.fit_mean_rate(np.ones(3), np.arange(4.0)), "`t`"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _hidden(layer=1, x=None):
    init, _, hidden_fn = rep.mlp(1, 4, 3)
    return hidden_fn(init(jax.random.PRNGKey(0)), np.zeros((2, 1)) if x is None else x, layer)
