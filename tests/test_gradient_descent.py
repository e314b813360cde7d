"""Tests for `dynamics.gradient_descent` (function-space dynamics for any loss), float64.

References: a linearized network really trained by optax (`train.trajectory(linearize=True)`,
parameter space), the closed forms of `dynamics.mse`, and a numpy parameter-space recurrence of
an explicit linear model with a hand-written loss gradient.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.special
from helpers import flat_jacobian_ntk, mlp_apply
from scipy.integrate import solve_ivp

from jaxdyn import dynamics, train

STEPS = 300


def to_4d(flat, m, n, k):
    """(m*k, n*k) matrix with index i*k + a -> (m, n, k, k) kernel K[i, j, a, b]."""
    return flat.reshape(m, k, n, k).transpose(0, 2, 1, 3)


@pytest.fixture(scope="module")
def net():
    """A small 3-output tanh MLP, its full NTKs (from an explicit Jacobian) and outputs.

    numpy data and parameters: jax.random would compile per shape, for nothing.
    """
    n, m, d, k = 8, 5, 3, 3
    rng = np.random.default_rng(0)
    x, x_test = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    params = [
        (jnp.asarray(rng.normal(size=(a, b))), jnp.asarray(rng.normal(size=(b,))))
        for a, b in [(d, 16), (16, k)]
    ]
    flat = np.asarray(flat_jacobian_ntk(mlp_apply, params, np.concatenate([x, x_test])))
    outputs = np.asarray(mlp_apply(params, np.concatenate([x, x_test])))
    return dict(
        x=x,
        x_test=x_test,
        params=params,
        y=np.eye(k)[np.arange(n) % k],
        y_reg=rng.normal(size=(n, k)),
        k=to_4d(flat[: n * k, : n * k], n, n, k),
        k_test=to_4d(flat[n * k :, : n * k], m, n, k),
        f0=outputs[:n],
        f0_test=outputs[n:],
    )


def test_losses_are_train_losses_and_match_numpy():
    # one definition for training and for the function-space dynamics
    assert train.mse_loss is dynamics.mse_loss and train.LOSSES is dynamics.LOSSES
    assert train.cross_entropy_loss is dynamics.cross_entropy_loss
    rng = np.random.default_rng(4)
    f, y = rng.normal(size=(6, 3)), rng.dirichlet(np.ones(3), size=6)
    log_p = f - scipy.special.logsumexp(f, axis=1, keepdims=True)
    np.testing.assert_allclose(dynamics.mse_loss(f, y), 0.5 * np.mean((f - y) ** 2), rtol=1e-14)
    np.testing.assert_allclose(
        dynamics.cross_entropy_loss(f, y), -np.mean(np.sum(y * log_p, axis=1)), rtol=1e-14
    )


@pytest.mark.parametrize(
    "kind, optimizer, momentum",
    [("gd", optax.sgd(0.5), None), ("momentum", optax.sgd(0.5, momentum=0.9), 0.9)],
)
def test_cross_entropy_equals_trained_linearized_net(net, kind, optimizer, momentum):
    traj = train.trajectory(
        mlp_apply,
        net["params"],
        net["x"],
        net["y"],
        optimizer=optimizer,
        steps=STEPS,
        x_test=net["x_test"],
        loss="cross_entropy",
        linearize=True,
    )
    predict = dynamics.gradient_descent(
        "cross_entropy", net["k"], net["y"], learning_rate=0.5, kind=kind, momentum=momentum
    )
    steps = jnp.arange(STEPS + 1)
    f_train, f_test = predict(steps, net["f0"], net["f0_test"], net["k_test"])
    # The outputs travel O(1) (logits grow as the loss falls), so agreement is not trivial.
    assert float(jnp.max(jnp.abs(f_train[-1] - net["f0"]))) > 1.0
    np.testing.assert_allclose(f_train, traj.f_train, rtol=0, atol=1e-10)
    np.testing.assert_allclose(f_test, traj.f_test, rtol=0, atol=1e-10)
    np.testing.assert_allclose(
        jax.vmap(dynamics.cross_entropy_loss, (0, None))(f_train, net["y"]), traj.loss, atol=1e-12
    )


# Momentum against its closed form (~1 s of CPU) runs in the slow tier; the default tier checks
# momentum against optax above.
@pytest.mark.parametrize(
    "kind, momentum", [("gd", None), pytest.param("momentum", 0.5, marks=pytest.mark.slow)]
)
def test_mse_equals_closed_form(net, kind, momentum):
    ts = jnp.array([[0, 7, 3], [250, 100, 1]])  # unsorted, 2-D: shapes and order are kept
    args = (net["k"], net["y_reg"])
    predict = dynamics.gradient_descent(
        "mse", *args, learning_rate=2.0, kind=kind, momentum=momentum
    )
    closed = dynamics.mse(*args, learning_rate=2.0, kind=kind, momentum=momentum)
    got = predict(ts, net["f0"], net["f0_test"], net["k_test"])
    want = closed(ts, net["f0"], net["f0_test"], net["k_test"])
    for a, b in zip(got, want):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(predict.loss(ts, net["f0"]), closed.loss(ts, net["f0"]), rtol=1e-12)
    assert np.isclose(predict.critical_learning_rate, closed.critical_learning_rate, rtol=1e-10)


def test_flow_matches_scipy_and_is_the_small_step_limit_of_gd(net):
    """Cross-entropy flow against scipy's DOP853 on the same ODE; GD at rate lr / s for s * T
    steps approaches it with Euler's first-order global error ~ 1 / s."""
    lr, times = 0.5, np.array([40.0, 0.0, 10.0])
    (n, k), m = net["y"].shape, net["f0_test"].shape[0]
    flow = dynamics.gradient_descent(
        "cross_entropy", net["k"], net["y"], learning_rate=lr, kind="flow"
    )
    f_flow, ft_flow = flow(times, net["f0"], net["f0_test"], net["k_test"])
    assert ft_flow.shape == (3, m, k)
    np.testing.assert_array_equal(f_flow[1], net["f0"])

    def field(_, state):
        f = state[: n * k].reshape(n, k)
        p = np.exp(f - f.max(axis=1, keepdims=True))
        g = (p / p.sum(axis=1, keepdims=True) - net["y"]) / n
        df = -lr * np.einsum("ijab,jb->ia", net["k"], g)
        dft = -lr * np.einsum("ijab,jb->ia", net["k_test"], g)
        return np.concatenate([df.ravel(), dft.ravel()])

    state0 = np.concatenate([net["f0"].ravel(), net["f0_test"].ravel()])
    ref = solve_ivp(
        field, (0, 40), state0, method="DOP853", t_eval=[10, 40], rtol=1e-12, atol=1e-12
    )
    # Tsit5 at rtol = atol = 1e-10 (the float64 default): global error well under 1e-8.
    np.testing.assert_allclose(
        np.asarray(f_flow)[[2, 0]].reshape(2, -1), ref.y[: n * k].T, atol=1e-8
    )
    np.testing.assert_allclose(
        np.asarray(ft_flow)[[2, 0]].reshape(2, -1), ref.y[n * k :].T, atol=1e-8
    )

    scales = np.array([1, 2, 4, 8, 16])
    errors = []
    for s in scales:
        gd = dynamics.gradient_descent(
            "cross_entropy", net["k"], net["y"], learning_rate=lr / s, kind="gd"
        )
        f_gd, ft_gd = gd(40 * int(s), net["f0"], net["f0_test"], net["k_test"])
        diffs = [f_gd - f_flow[0], ft_gd - ft_flow[0]]
        errors.append(max(float(jnp.max(jnp.abs(d))) for d in diffs))
    slope = np.polyfit(np.log(scales), np.log(errors), 1)[0]
    assert -1.1 < slope < -0.9, (slope, errors)
    assert errors[-1] < 0.1 * errors[0]


def logistic(f, y):
    """Binary logistic loss of one output against labels y = +-1, averaged over examples."""
    return jnp.mean(jnp.logaddexp(0.0, -y * f))


def test_traced_kernel_jit_and_zero_time():
    """A traced (n, n) kernel with k = 1 equals the full (n, n, 1, 1) one; jit; t = 0; empty t."""
    rng = np.random.default_rng(0)
    jac = rng.normal(size=(6, 20))
    kernel, f0 = jac @ jac.T / 20, rng.normal(size=(6, 1))
    y = np.sign(rng.normal(size=(6, 1)))
    ts = np.array([0, 5])
    eager = dynamics.gradient_descent(logistic, kernel, y, learning_rate=0.3)(ts, f0)
    full = dynamics.gradient_descent(logistic, kernel[:, :, None, None], y, learning_rate=0.3)
    jitted = jax.jit(lambda t, f0: full(t, f0))(ts, f0)
    np.testing.assert_allclose(jitted, eager, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(eager[0], f0)
    assert float(jnp.max(jnp.abs(eager[1] - f0))) > 0.1
    # predict.loss: the loss of the predicted outputs (numpy logistic loss of `eager`).
    want = np.mean(np.log1p(np.exp(-y * np.asarray(eager))), axis=(1, 2))
    np.testing.assert_allclose(full.loss(ts, f0), want, rtol=1e-13)
    assert full(np.zeros((0,), int), f0).shape == (0, 6, 1)


def test_callable_loss_equals_parameter_space_recurrence():
    """Any differentiable loss: a numpy linear model trained in parameter space, by hand."""
    rng = np.random.default_rng(1)
    n, k, m, p = 5, 2, 3, 30
    jac, jac_t = rng.normal(size=(n * k, p)) / np.sqrt(p), rng.normal(size=(m * k, p)) / np.sqrt(p)
    y, f0, f0t = rng.normal(size=(n, k)), rng.normal(size=(n, k)), rng.normal(size=(m, k))

    def quartic(f, y):
        return 0.25 * jnp.mean((f - y) ** 4) + 0.1 * jnp.sum(jnp.cos(f))

    def quartic_grad(f):  # the hand-written gradient in f
        return (f - y) ** 3 / (n * k) - 0.1 * np.sin(f)

    lr, beta, steps = 0.2, 0.7, 60
    theta, vel = np.zeros(p), np.zeros(p)
    for _ in range(steps):
        f = f0 + (jac @ theta).reshape(n, k)
        vel = jac.T @ quartic_grad(f).reshape(-1) + beta * vel
        theta = theta - lr * vel
    kernel = (jac @ jac.T).reshape(n, k, n, k).transpose(0, 2, 1, 3)
    k_test = (jac_t @ jac.T).reshape(m, k, n, k).transpose(0, 2, 1, 3)
    predict = dynamics.gradient_descent(
        quartic, kernel, y, learning_rate=lr, kind="momentum", momentum=beta
    )
    f_t, ft_t = predict(steps, f0, f0t, k_test)
    np.testing.assert_allclose(f_t, f0 + (jac @ theta).reshape(n, k), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ft_t, f0t + (jac_t @ theta).reshape(m, k), rtol=0, atol=1e-12)
    assert predict.critical_learning_rate is None


def test_warns_above_critical_learning_rate(net):
    critical = dynamics.mse(net["k"], net["y_reg"], kind="gd").critical_learning_rate
    with pytest.warns(UserWarning, match="diverges"):
        dynamics.gradient_descent("mse", net["k"], net["y_reg"], learning_rate=1.2 * critical)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dynamics.gradient_descent("mse", net["k"], net["y_reg"], learning_rate=0.8 * critical)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(loss="hinge"), ValueError, "`dynamics.gradient_descent\\(loss=...\\)` must be one"),
        (dict(loss=3), TypeError, "a callable loss"),
        (dict(loss=lambda f, y: f - y), TypeError, "returning a scalar"),
        (dict(kind="adam"), ValueError, "kind"),
        (dict(learning_rate=0.0), ValueError, "learning_rate"),
        (dict(kind="momentum"), ValueError, "required for kind='momentum'"),
        (dict(momentum=0.9), ValueError, "None for kind='gd'"),
        (dict(k_train_train=np.eye(4)), ValueError, "k_train_train"),
        (dict(y_train=np.zeros(3)), ValueError, "y_train"),
        (dict(rtol=-1.0), ValueError, "rtol"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    args = dict(loss="mse", k_train_train=np.eye(3), y_train=np.zeros((3, 2)), learning_rate=0.1)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        dynamics.gradient_descent(
            args.pop("loss"), args.pop("k_train_train"), args.pop("y_train"), **args
        )


def test_bad_call_arguments():
    predict = dynamics.gradient_descent("mse", np.eye(3), np.zeros((3, 2)), learning_rate=0.1)
    with pytest.raises(ValueError, match="f0_train"):
        predict(1, np.zeros((3, 1)))
    with pytest.raises(ValueError, match="whole numbers of steps"):
        predict(1.5, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="k_test_train"):
        predict(1, np.zeros((3, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="k_test_train"):
        predict(1, np.zeros((3, 2)), np.zeros((2, 2)), np.zeros((3, 2)))
