"""Models and losses of the frequency-principle experiments
(`jaxdyn.analysis._frequency_models`, re-exported from `jaxdyn.analysis.frequency`):
activations against their formulas, MscaleDNN against its subnets evaluated by hand, the CNN
against a numpy convolution, the input-derivative loss against finite differences, and
`train.trajectory(objective=...)` against hand-written gradient steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdyn import train
from jaxdyn.analysis import _frequency_models as fm


def test_activations():
    x = np.linspace(-1.5, 2.5, 81)
    relu = np.maximum(x, 0)
    s = relu * np.maximum(1 - x, 0)
    np.testing.assert_allclose(fm.srelu(jnp.asarray(x)), s, atol=1e-15)
    np.testing.assert_allclose(fm.s2relu(jnp.asarray(x)), np.sin(2 * np.pi * x) * s, atol=1e-15)
    assert np.all(np.asarray(fm.srelu(jnp.asarray(x)))[(x < 0) | (x > 1)] == 0)
    assert set(fm.ACTIVATIONS) >= {"tanh", "relu", "srelu", "s2relu", "sin"}


def _hand_mlp(layers, x, act, first_scale=None):
    h = np.asarray(x, np.float64)
    for i, layer in enumerate(layers):
        z = h @ np.asarray(layer["W"])
        if i == 0 and first_scale is not None:
            z = z * first_scale
        h = z + np.asarray(layer["b"])
        if i < len(layers) - 1:
            h = act(h)
    return h


def test_mscale_is_the_sum_of_scaled_subnets():
    scales = (1.0, 3.0, 8.0)
    subnet = fm.mlp((2, 7, 5, 1), "sin", w_std=0.8, b_std=0.3)
    model = fm.mscale(scales, subnet)
    x = np.random.default_rng(0).uniform(-1, 1, size=(6, 2))
    with jax.enable_x64(True):
        params = model.init(jax.random.PRNGKey(3), jnp.float64)
        got = np.asarray(jax.jit(model.apply)(params, jnp.asarray(x)))
    want = np.zeros((6, 1))
    for k, s in enumerate(scales):
        sub = jax.tree_util.tree_map(lambda a, k=k: np.asarray(a[k]), params)
        want += _hand_mlp(sub, s * x, np.sin)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert fm.param_count(params) == 3 * (2 * 7 + 7 + 7 * 5 + 5 + 5 + 1)
    # copies differ (one key per subnet)
    assert not np.allclose(params[0]["W"][0], params[0]["W"][1])


def test_mscale_neurons_scales_first_layer_groups():
    scales = (1.0, 2.0, 5.0)
    model = fm.mscale_neurons((1, 8, 1), scales, "srelu", w_std=1.0, b_std=0.5)
    x = np.linspace(-1, 1, 9)[:, None]
    with jax.enable_x64(True):
        params = model.init(jax.random.PRNGKey(0), jnp.float64)
        got = np.asarray(jax.jit(model.apply)(params, jnp.asarray(x)))
    c = np.array([1, 1, 2, 2, 5, 5, 5, 5.0])  # 8 // 3 = 2 per scale, the rest at the last
    np.testing.assert_allclose(got, _hand_mlp(params, x, lambda z: np.asarray(fm.srelu(z)), c),
                               rtol=1e-12)  # fmt: skip
    assert fm.NEURON_SCALES[:3] == (1.0, 1.0, 2.0) and fm.NEURON_SCALES[-1] == 98.0
    assert len(fm.NEURON_SCALES) == 99


def test_cnn_1d_matches_numpy_convolution():
    model = fm.cnn((6, 2), channels=(3,), outputs=2, activation="tanh", kernel=3)
    x = np.random.default_rng(1).normal(size=(4, 6, 2))
    with jax.enable_x64(True):
        p = model.init(jax.random.PRNGKey(0), jnp.float64)
        got = np.asarray(model.apply(p, jnp.asarray(x.reshape(4, 12))))  # flattened input
    w, b = np.asarray(p["convs"][0]["W"]), np.asarray(p["convs"][0]["b"])
    # XLA's (and TensorFlow's) SAME for stride 2: 3 outputs, the one padded zero at the end
    xp = np.pad(x, ((0, 0), (0, 1), (0, 0)))
    h = np.stack([np.einsum("nkc,kco->no", xp[:, i : i + 3], w) for i in (0, 2, 4)], axis=1)
    h = np.tanh(h + b).reshape(4, -1)
    want = h @ np.asarray(p["dense"]["W"]) + np.asarray(p["dense"]["b"])
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.fixture(scope="module")
def derivative_case():
    model = fm.mlp((1, 16, 1), "tanh", w_std=1.0, b_std=0.5)
    x = np.linspace(-np.pi, np.pi, 9)[:, None]
    with jax.enable_x64(True):
        params = model.init(jax.random.PRNGKey(0), jnp.float64)
        y = fm.derivative_targets(lambda z: jnp.sin(z) + jnp.sin(3 * z), jnp.asarray(x))
    return model, params, x, np.asarray(y)


def test_derivative_targets_and_loss_value(derivative_case):
    model, params, x, y = derivative_case
    np.testing.assert_allclose(y[:, 0], np.sin(x[:, 0]) + np.sin(3 * x[:, 0]), rtol=1e-14)
    np.testing.assert_allclose(y[:, 1], np.cos(x[:, 0]) + 3 * np.cos(3 * x[:, 0]), atol=1e-14)
    with jax.enable_x64(True):
        apply = jax.jit(model.apply)
        h = np.asarray(apply(params, jnp.asarray(x)))
        eps = 1e-6  # central differences in x: error O(eps^2)
        dh = (
            np.asarray(apply(params, jnp.asarray(x + eps)))
            - np.asarray(apply(params, jnp.asarray(x - eps)))
        ) / (2 * eps)
        got = float(fm.derivative_loss(model.apply, 0.7)(params, jnp.asarray(x), jnp.asarray(y)))
    want = 0.5 * np.mean((h[:, 0] - y[:, 0]) ** 2) + 0.7 * 0.5 * np.mean((dh[:, 0] - y[:, 1]) ** 2)
    assert got == pytest.approx(want, rel=1e-8)


def test_trajectory_objective_steps_by_the_objective_gradient(derivative_case):
    model, params, x, y = derivative_case
    objective = fm.derivative_loss(model.apply, 0.5)
    value_grad = jax.jit(jax.value_and_grad(objective))  # one compilation for all checks
    with jax.enable_x64(True):
        xj, yj = jnp.asarray(x), jnp.asarray(y)
        traj = train.trajectory(model.apply, params, xj, yj, optimizer=optax.sgd(0.1), steps=2,
                                objective=objective, keep_params=True)  # fmt: skip
        # the gradient against central finite differences on one parameter
        g = value_grad(params, xj, yj)[1]
        eps = 1e-6
        bump = [dict(layer) for layer in params]
        w = np.asarray(params[0]["W"]).copy()
        w[0, 3] += eps
        bump[0]["W"] = jnp.asarray(w)
        w[0, 3] -= 2 * eps
        down = [dict(layer) for layer in params]
        down[0]["W"] = jnp.asarray(w)
        fd = (float(value_grad(bump, xj, yj)[0]) - float(value_grad(down, xj, yj)[0])) / (2 * eps)
        assert float(g[0]["W"][0, 3]) == pytest.approx(fd, rel=1e-6)
        p = params
        for t in range(2):
            value, grads = value_grad(p, xj, yj)
            assert float(traj.loss[t]) == pytest.approx(float(value), rel=1e-12)
            p = jax.tree_util.tree_map(lambda a, b: a - 0.1 * b, p, grads)
        last = jax.tree_util.tree_map(lambda a: a[-1], traj.params)
        for a, b in zip(jax.tree_util.tree_leaves(last), jax.tree_util.tree_leaves(p)):
            np.testing.assert_allclose(a, b, rtol=1e-12)
        assert traj.f_train.shape == (3, 9, 1)  # outputs, not the (n, 2) targets


def test_bad_input():
    with pytest.raises(ValueError, match="`activation` must be one of"):
        fm.mlp((1, 4, 1), "swish")
    with pytest.raises(ValueError, match="`widths` must be"):
        fm.mlp((3,))
    with pytest.raises(ValueError, match="`scales` must be"):
        fm.mscale((1.0, -2.0), fm.mlp((1, 4, 1)))
    with pytest.raises(TypeError, match="`subnet` must be a Model"):
        fm.mscale((1.0,), lambda p, x: x)
    with pytest.raises(ValueError, match="`scales` must be at most one scale per"):
        fm.mscale_neurons((1, 4, 1), (1.0, 2.0, 3.0, 4.0, 5.0))
    with pytest.raises(ValueError, match="`weight` must be a non-negative float"):
        fm.derivative_loss(lambda p, x: x, -1.0)
    with pytest.raises(ValueError, match="`input_shape` must be"):
        fm.cnn((4,))
    model = fm.mlp((1, 4, 1))
    p = model.init(jax.random.PRNGKey(0))
    x, y = jnp.ones((3, 1)), jnp.ones((3, 2))
    obj = fm.derivative_loss(model.apply, 1.0)
    with pytest.raises(ValueError, match="`linearize` must be False"):
        train.trajectory(model.apply, p, x, y, optimizer=optax.sgd(0.1), steps=1,
                         objective=obj, linearize=True)  # fmt: skip
    with pytest.raises(ValueError, match="`loss` must be left at its default"):
        train.trajectory(model.apply, p, x, y, optimizer=optax.sgd(0.1), steps=1,
                         objective=obj, loss="cross_entropy")  # fmt: skip
    with pytest.raises(TypeError, match="`objective` must be a callable"):
        train.trajectory(model.apply, p, x, y, optimizer=optax.sgd(0.1), steps=1, objective=3)
