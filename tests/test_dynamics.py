"""Tests for jaxdyn.dynamics against independent references.

References used: neural-tangents 0.6.5 (tests/refs), scipy ODE integration of the gradient flow,
explicit parameter-space recurrences of the linearized model in numpy, and optax itself.
"""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.integrate import solve_ivp

from jaxdyn import dynamics
from jaxdyn.dynamics import _linalg

# ------------------------------------------------------------------------------------------------
# Helpers (numpy only, so they are independent of the module under test).
# ------------------------------------------------------------------------------------------------


def to_4d(flat, n, k):
    """(n*k, n*k) matrix with index i*k + a -> (n, n, k, k) kernel K[i, j, a, b]."""
    return flat.reshape(n, k, n, k).transpose(0, 2, 1, 3)


def to_4d_test(flat, m, n, k):
    return flat.reshape(m, k, n, k).transpose(0, 2, 1, 3)


def linear_problem(seed, n=6, k=2, m=4, p=40, rank=None):
    """A linear model f(theta) = f0 + J (theta - theta0) with explicit Jacobians.

    Returns dict with J (n*k, P), Jt (m*k, P), kernels (flat, 4-D), y, f0, f0_test.
    """
    rng = np.random.default_rng(seed)
    if rank is None:
        jac = rng.normal(size=(n * k, p)) / np.sqrt(p)
        jac_t = rng.normal(size=(m * k, p)) / np.sqrt(p)
    else:  # rank-deficient: rows are combinations of `rank` directions
        basis = rng.normal(size=(rank, p)) / np.sqrt(p)
        jac = rng.normal(size=(n * k, rank)) @ basis
        jac_t = rng.normal(size=(m * k, rank)) @ basis
    k_flat = jac @ jac.T
    kt_flat = jac_t @ jac.T
    return {
        "J": jac,
        "Jt": jac_t,
        "n": n,
        "k": k,
        "m": m,
        "k_flat": k_flat,
        "kt_flat": kt_flat,
        "k4": to_4d(k_flat, n, k),
        "kt4": to_4d_test(kt_flat, m, n, k),
        "y": rng.normal(size=(n, k)),
        "f0": 0.3 * rng.normal(size=(n, k)),
        "f0_test": 0.3 * rng.normal(size=(m, k)),
    }


def block_problem(seed, n=6, k=2, m=4, p=30):
    """Per-output linear heads on shared features: J = J1 ⊗ I_k, so J J^T = (J1 J1^T) ⊗ I_k and the
    traced (n, n) kernel J1 J1^T is exact for k outputs."""
    rng = np.random.default_rng(seed)
    j1 = rng.normal(size=(n, p)) / np.sqrt(p)
    j1t = rng.normal(size=(m, p)) / np.sqrt(p)
    jac, jac_t = np.kron(j1, np.eye(k)), np.kron(j1t, np.eye(k))  # rows i*k + a, cols q*k + b
    return {
        "J": jac,
        "Jt": jac_t,
        "n": n,
        "k": k,
        "m": m,
        "k2": j1 @ j1.T,
        "kt2": j1t @ j1.T,
        "k4": to_4d(jac @ jac.T, n, k),
        "kt4": to_4d_test(jac_t @ jac.T, m, n, k),
        "y": rng.normal(size=(n, k)),
        "f0": 0.3 * rng.normal(size=(n, k)),
        "f0_test": 0.3 * rng.normal(size=(m, k)),
    }


def param_space_run(prob, lr, steps, beta=None):
    """Explicit (heavy-ball) GD on the linearized model in parameter space, numpy float64.

    optax.sgd(lr, momentum=beta) semantics: v <- beta v + g; theta <- theta - lr v; v_0 = 0.
    Returns train (steps+1, n, k) and test (steps+1, m, k) trajectories.
    """
    jac, jac_t, y = prob["J"], prob["Jt"], prob["y"].reshape(-1)
    f0, f0t = prob["f0"].reshape(-1), prob["f0_test"].reshape(-1)
    size = y.size
    omega = np.zeros(jac.shape[1])
    vel = np.zeros_like(omega)
    train, test = [f0.copy()], [f0t.copy()]
    for _ in range(steps):
        f = f0 + jac @ omega
        grad = jac.T @ (f - y) / size
        if beta is None:
            omega = omega - lr * grad
        else:
            vel = beta * vel + grad
            omega = omega - lr * vel
        train.append(f0 + jac @ omega)
        test.append(f0t + jac_t @ omega)
    shp, shp_t = prob["f0"].shape, prob["f0_test"].shape
    return (np.stack(train).reshape((-1,) + shp), np.stack(test).reshape((-1,) + shp_t))


def ode_flow(k_flat, kt_flat, y, f0, f0_test, lr, ts):
    """Integrates df/dt = -lr K (f - y) / N and df_test/dt = -lr K_tt (f - y) / N with scipy."""
    n_tr, size = f0.size, y.size
    y_vec = y.reshape(-1)

    def rhs(_, state):
        r = state[:n_tr] - y_vec
        return np.concatenate([-lr * k_flat @ r / size, -lr * kt_flat @ r / size])

    sol = solve_ivp(
        rhs,
        (0.0, float(ts[-1])),
        np.concatenate([f0.reshape(-1), f0_test.reshape(-1)]),
        method="DOP853",
        t_eval=ts,
        rtol=1e-12,
        atol=1e-14,
    )
    assert sol.success
    states = sol.y.T
    return (
        states[:, :n_tr].reshape((len(ts),) + f0.shape),
        states[:, n_tr:].reshape((len(ts),) + f0_test.shape),
    )


def traced_as_flat(k2, k):
    """(n, n) traced kernel acting on each of k columns -> the equivalent (n*k, n*k) matrix."""
    return np.kron(k2, np.eye(k))


def critical_lr(k_flat, size, beta=0.0):
    return 2.0 * size * (1.0 + beta) / np.linalg.eigvalsh(k_flat).max()


# ------------------------------------------------------------------------------------------------
# 1. neural-tangents references.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reg", [0.0, 1e-3])
def test_flow_matches_neural_tangents(nt_refs, reg):
    tag = f"{reg:g}"
    pred = dynamics.mse(
        nt_refs["inf_relu1_ntk_ntk_11"], nt_refs["pred_y"], learning_rate=0.7, diag_reg=reg
    )
    args = (nt_refs["pred_f0_train"], nt_refs["pred_f0_test"], nt_refs["inf_relu1_ntk_ntk_21"])
    train, test = pred(nt_refs["pred_ts"], *args)
    np.testing.assert_allclose(train, nt_refs[f"pred_reg{tag}_train"], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(test, nt_refs[f"pred_reg{tag}_test"], rtol=1e-10, atol=1e-10)
    train_inf, test_inf = pred(None, *args)
    np.testing.assert_allclose(
        train_inf, nt_refs[f"pred_reg{tag}_train_inf"], rtol=1e-10, atol=1e-10
    )
    np.testing.assert_allclose(test_inf, nt_refs[f"pred_reg{tag}_test_inf"], rtol=1e-10, atol=1e-10)
    # Train-only call agrees with the joint one.
    np.testing.assert_array_equal(pred(nt_refs["pred_ts"], args[0]), train)


# ------------------------------------------------------------------------------------------------
# 2. Gradient flow vs scipy ODE.
# ------------------------------------------------------------------------------------------------

TS = np.array([0.0, 0.3, 2.0, 10.0, 60.0])


def test_flow_matches_ode_full_kernel():
    prob = linear_problem(0, p=20)
    lr = 0.5
    pred = dynamics.mse(prob["k4"], prob["y"], learning_rate=lr)
    train, test = pred(TS, prob["f0"], prob["f0_test"], prob["kt4"])
    ref_train, ref_test = ode_flow(
        prob["k_flat"], prob["kt_flat"], prob["y"], prob["f0"], prob["f0_test"], lr, TS
    )
    np.testing.assert_allclose(train, ref_train, rtol=0, atol=1e-8)
    np.testing.assert_allclose(test, ref_test, rtol=0, atol=1e-8)
    assert np.abs(train[-1] - prob["f0"]).max() > 0.1  # the dynamics did something


def test_flow_matches_ode_traced_kernel():
    prob = block_problem(1, n=6, k=2, m=4)
    lr = 0.8
    pred = dynamics.mse(prob["k2"], prob["y"], learning_rate=lr)
    train, test = pred(TS, prob["f0"], prob["f0_test"], prob["kt2"])
    k = prob["k"]
    ref_train, ref_test = ode_flow(
        traced_as_flat(prob["k2"], k),
        traced_as_flat(prob["kt2"], k),
        prob["y"],
        prob["f0"],
        prob["f0_test"],
        lr,
        TS,
    )
    np.testing.assert_allclose(train, ref_train, rtol=0, atol=1e-8)
    np.testing.assert_allclose(test, ref_test, rtol=0, atol=1e-8)


# ------------------------------------------------------------------------------------------------
# 3. Discrete GD and momentum vs parameter-space recurrences and optax.
# ------------------------------------------------------------------------------------------------

STEPS = np.array([0, 1, 7, 100, 299])


@pytest.mark.parametrize("beta", [None, 0.9])
def test_discrete_matches_parameter_space_full_kernel(beta):
    prob = linear_problem(2)
    size = prob["y"].size
    # GD: 0.75 of critical puts the top mode in the oscillating regime 1 - a < 0.
    lr = (0.75 if beta is None else 0.9) * critical_lr(prob["k_flat"], size, beta or 0.0)
    kind = "gd" if beta is None else "momentum"
    pred = dynamics.mse(prob["k4"], prob["y"], learning_rate=lr, kind=kind, momentum=beta)
    train, test = pred(STEPS, prob["f0"], prob["f0_test"], prob["kt4"])
    ref_train, ref_test = param_space_run(prob, lr, 299, beta)
    np.testing.assert_allclose(train, ref_train[STEPS], rtol=0, atol=1e-10)
    np.testing.assert_allclose(test, ref_test[STEPS], rtol=0, atol=1e-10)


@pytest.mark.parametrize("beta", [None, 0.9])
def test_discrete_matches_parameter_space_traced_kernel(beta):
    """The traced (n, n) kernel drives k = 2 outputs of a model whose NTK is exactly Theta ⊗ I_k."""
    prob = block_problem(3)
    layout = "traced"
    size = prob["y"].size
    lr = 0.6 * critical_lr(np.kron(prob["k2"], np.eye(2)), size, beta or 0.0)
    kind = "gd" if beta is None else "momentum"
    ktt, kt = (prob["k2"], prob["kt2"]) if layout == "traced" else (prob["k4"], prob["kt4"])
    pred = dynamics.mse(ktt, prob["y"], learning_rate=lr, kind=kind, momentum=beta)
    train, test = pred(STEPS.astype(np.float64), prob["f0"], prob["f0_test"], kt)
    ref_train, ref_test = param_space_run(prob, lr, 299, beta)
    np.testing.assert_allclose(train, ref_train[STEPS], rtol=0, atol=1e-10)
    np.testing.assert_allclose(test, ref_test[STEPS], rtol=0, atol=1e-10)


@pytest.mark.parametrize("beta", [None, 0.9])
def test_discrete_matches_optax(beta):
    prob = linear_problem(4, p=25)
    size = prob["y"].size
    lr = 0.7 * critical_lr(prob["k_flat"], size, beta or 0.0)
    jac, f0, y = jnp.asarray(prob["J"]), jnp.asarray(prob["f0"]), jnp.asarray(prob["y"])
    theta0 = jnp.asarray(np.random.default_rng(5).normal(size=jac.shape[1]))

    def loss_fn(theta):
        f = f0 + (jac @ (theta - theta0)).reshape(f0.shape)
        return 0.5 * jnp.mean((f - y) ** 2)

    opt = optax.sgd(lr) if beta is None else optax.sgd(lr, momentum=beta)

    def step(carry, _):
        theta, state = carry
        updates, state = opt.update(jax.grad(loss_fn)(theta), state, theta)
        theta = optax.apply_updates(theta, updates)
        return (theta, state), f0 + (jac @ (theta - theta0)).reshape(f0.shape)

    _, traj = jax.lax.scan(step, (theta0, opt.init(theta0)), None, length=120)
    traj = np.concatenate([prob["f0"][None], np.asarray(traj)])
    kind = "gd" if beta is None else "momentum"
    pred = dynamics.mse(prob["k4"], prob["y"], learning_rate=lr, kind=kind, momentum=beta)
    steps = np.array([0, 1, 2, 3, 17, 64, 120])
    np.testing.assert_allclose(pred(steps, prob["f0"]), traj[steps], rtol=0, atol=1e-10)


def test_momentum_zero_equals_gd():
    prob = linear_problem(6)
    lr = 0.9 * critical_lr(prob["k_flat"], prob["y"].size)
    steps = np.arange(0, 50, 7)
    gd = dynamics.mse(prob["k4"], prob["y"], learning_rate=lr, kind="gd")(steps, prob["f0"])
    hb = dynamics.mse(prob["k4"], prob["y"], learning_rate=lr, kind="momentum", momentum=0.0)
    np.testing.assert_allclose(hb(steps, prob["f0"]), gd, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# 4. weights() reproduce the outputs through the Jacobian.
# ------------------------------------------------------------------------------------------------


@functools.cache
def mlp_setup(k, seed=0, n=7, m=3, d=4, width=12):
    """A one-hidden-layer tanh MLP with k outputs, its Jacobians and its exact (n, n, k, k) NTK."""
    rng = np.random.default_rng(seed)
    params = {
        "w1": rng.normal(size=(d, width)) / np.sqrt(d),
        "b1": 0.1 * rng.normal(size=(width,)),
        "w2": rng.normal(size=(width, k)) / np.sqrt(width),
        "b2": 0.1 * rng.normal(size=(k,)),
    }
    x, xt = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    y = rng.normal(size=(n, k))

    def apply_fn(p, inputs):
        return jnp.tanh(inputs @ p["w1"] + p["b1"][None]) @ p["w2"] + p["b2"][None]

    # One compiled function instead of many eager ops keeps the test fast.
    outputs_and_jacobians = jax.jit(
        lambda p, a, b: (
            apply_fn(p, a),
            apply_fn(p, b),
            jax.jacrev(apply_fn)(p, a),
            jax.jacrev(apply_fn)(p, b),
        )
    )
    f0, f0_test, jac, jac_t = outputs_and_jacobians(params, x, xt)

    def flat(j, rows):
        return np.concatenate(
            [np.asarray(leaf).reshape(rows, -1) for leaf in jax.tree_util.tree_leaves(j)], axis=1
        )

    jf, jtf = flat(jac, n * k), flat(jac_t, m * k)
    return {
        "params": params,
        "jac": jac,
        "jac_t": jac_t,
        "jf": jf,
        "jtf": jtf,
        "k4": to_4d(jf @ jf.T, n, k),
        "kt4": to_4d_test(jtf @ jf.T, m, n, k),
        "f0": np.asarray(f0),
        "f0_test": np.asarray(f0_test),
        "y": y,
        "n": n,
        "m": m,
        "k": k,
    }


def apply_weights(jac, omega, lead):
    """sum over parameters of J[i, a, ...] * omega[t, ...] -> (t, n, k)."""
    out = 0.0
    for j_leaf, w_leaf in zip(jax.tree_util.tree_leaves(jac), jax.tree_util.tree_leaves(omega)):
        j_leaf, w_leaf = np.asarray(j_leaf), np.asarray(w_leaf)
        p = int(np.prod(j_leaf.shape[2:]))
        out = out + np.einsum(
            "iap,tp->tia", j_leaf.reshape(j_leaf.shape[:2] + (p,)), w_leaf.reshape((lead, p))
        )
    return out


@pytest.mark.parametrize(
    "kind,beta,ts",
    [
        ("flow", None, np.array([0.0, 0.5, 3.0, 40.0])),
        ("gd", None, np.array([0, 1, 5, 60])),
        ("momentum", 0.8, np.array([0, 1, 5, 60])),
    ],
)
@pytest.mark.parametrize("k,layout", [(1, "traced"), (3, "full")])
def test_weights_reproduce_outputs(kind, beta, ts, k, layout):
    s = mlp_setup(k)
    n = s["n"]
    ktt = s["k4"][:, :, 0, 0] if layout == "traced" else s["k4"]
    kt = s["kt4"][:, :, 0, 0] if layout == "traced" else s["kt4"]
    size = n * k
    lr = 0.5 * critical_lr(s["jf"] @ s["jf"].T, size, beta or 0.0)
    pred = dynamics.mse(ktt, s["y"], learning_rate=lr, kind=kind, momentum=beta)
    train, test = pred(ts, s["f0"], s["f0_test"], kt)
    omega = pred.weights(ts, s["f0"], s["jac"])
    # The PyTree structure and leaf shapes follow the parameters, with the time axis in front.
    assert jax.tree_util.tree_structure(omega) == jax.tree_util.tree_structure(s["params"])
    for w, p in zip(jax.tree_util.tree_leaves(omega), jax.tree_util.tree_leaves(s["params"])):
        assert w.shape == ts.shape + p.shape
    np.testing.assert_allclose(
        s["f0"][None] + apply_weights(s["jac"], omega, len(ts)), train, rtol=0, atol=1e-10
    )
    np.testing.assert_allclose(
        s["f0_test"][None] + apply_weights(s["jac_t"], omega, len(ts)), test, rtol=0, atol=1e-10
    )
    # Infinite time: -J^T K^{-1} r_0 reaches the targets.
    omega_inf = pred.weights(None, s["f0"], s["jac"])
    f_inf = s["f0"][None] + apply_weights(
        s["jac"], jax.tree_util.tree_map(lambda w: w[None], omega_inf), 1
    )
    np.testing.assert_allclose(f_inf[0], s["y"], rtol=0, atol=1e-9)


# ------------------------------------------------------------------------------------------------
# 5. loss().
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,beta,ts,layout",
    [
        ("flow", None, np.array([[0.0, 0.2], [5.0, 300.0]]), "traced"),
        ("gd", None, np.array([[0, 3], [40, 299]]), "full"),
        ("momentum", 0.9, np.array([[0, 3], [40, 299]]), "traced"),
    ],
)
def test_loss_matches_predictions(kind, beta, ts, layout):
    prob = block_problem(7)
    ktt = prob["k2"] if layout == "traced" else prob["k4"]
    lr = 0.8 * critical_lr(np.kron(prob["k2"], np.eye(2)), prob["y"].size, beta or 0.0)
    pred = dynamics.mse(ktt, prob["y"], learning_rate=lr, kind=kind, momentum=beta, diag_reg=1e-3)
    out = np.asarray(pred(ts, prob["f0"]))
    assert out.shape == ts.shape + prob["y"].shape
    expected = 0.5 * np.mean((out - prob["y"]) ** 2, axis=(-2, -1))
    loss = pred.loss(ts, prob["f0"])
    assert loss.shape == ts.shape
    np.testing.assert_allclose(loss, expected, rtol=1e-9, atol=1e-15)
    assert np.all(np.diff(loss.reshape(-1)) <= 1e-15) or kind == "momentum"


# ------------------------------------------------------------------------------------------------
# 6. Limits: t = 0, t -> infinity, singular kernels.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,beta", [("flow", None), ("gd", None), ("momentum", 0.9)])
def test_time_zero_is_exact_and_long_time_reaches_targets(kind, beta):
    prob = linear_problem(8, p=60)
    lr = 0.5 * critical_lr(prob["k_flat"], prob["y"].size, beta or 0.0)
    pred = dynamics.mse(prob["k4"], prob["y"], learning_rate=lr, kind=kind, momentum=beta)
    train, test = pred(0, prob["f0"], prob["f0_test"], prob["kt4"])
    np.testing.assert_array_equal(train, prob["f0"])
    np.testing.assert_array_equal(test, prob["f0_test"])
    train_long, test_long = pred(200_000, prob["f0"], prob["f0_test"], prob["kt4"])
    train_inf, test_inf = pred(None, prob["f0"], prob["f0_test"], prob["kt4"])
    # Scalar t and t=None: no time axis.
    assert train.shape == train_long.shape == train_inf.shape == prob["y"].shape
    assert test.shape == test_long.shape == test_inf.shape == prob["f0_test"].shape
    np.testing.assert_allclose(train_long, prob["y"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(train_inf, prob["y"])
    np.testing.assert_allclose(test_long, test_inf, rtol=0, atol=1e-8)
    assert pred.loss(0, prob["f0"]).shape == ()
    np.testing.assert_allclose(
        pred.loss(0, prob["f0"]), 0.5 * np.mean((prob["f0"] - prob["y"]) ** 2), rtol=1e-12
    )
    assert float(pred.loss(None, prob["f0"])) == 0.0


def singular_problem():
    """Rank-3 kernel on n*k = 12 points plus a rounding-size negative eigenvalue."""
    prob = linear_problem(9, p=30, rank=3)
    k_flat = prob["k_flat"]
    lam, vecs = np.linalg.eigh(k_flat)
    null = vecs[:, 0]
    noisy = k_flat - 1e-14 * lam[-1] * np.outer(null, null)
    assert np.linalg.eigvalsh(noisy).min() < 0
    prob.update(k_flat=noisy, k4=to_4d(noisy, prob["n"], prob["k"]))
    return prob


def test_singular_kernel_flow_matches_ode_and_limit():
    prob = singular_problem()
    lr = 0.9
    pred = dynamics.mse(prob["k4"], prob["y"], learning_rate=lr)
    ts = np.array([0.0, 1.0, 20.0, 400.0])
    train, test = pred(ts, prob["f0"], prob["f0_test"], prob["kt4"])
    assert np.all(np.isfinite(train)) and np.all(np.isfinite(test))
    lam = np.asarray(pred.eigenvalues)
    assert lam.min() == 0.0 and np.sum(lam == 0.0) >= 1 and np.all(np.diff(lam) >= 0)
    ref_train, ref_test = ode_flow(
        prob["k_flat"], prob["kt_flat"], prob["y"], prob["f0"], prob["f0_test"], lr, ts
    )
    np.testing.assert_allclose(train, ref_train, rtol=0, atol=1e-8)
    np.testing.assert_allclose(test, ref_test, rtol=0, atol=1e-8)
    # t = infinity: the Cholesky is unusable, so the eigen pseudo-inverse is used (with a warning);
    # null modes keep their residual, exactly the long-time limit of the flow.
    with pytest.warns(UserWarning, match="diag_reg"):
        train_inf, test_inf = pred(None, prob["f0"], prob["f0_test"], prob["kt4"])
    r0 = (prob["f0"] - prob["y"]).reshape(-1)
    u = np.linalg.svd(prob["J"])[0]
    null_basis = u[:, 3:]
    expected = prob["y"].reshape(-1) + null_basis @ (null_basis.T @ r0)
    np.testing.assert_allclose(train_inf.reshape(-1), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(train[-1], train_inf, rtol=0, atol=1e-8)
    np.testing.assert_allclose(test[-1], test_inf, rtol=0, atol=1e-8)
    assert np.abs(train_inf - prob["y"]).max() > 1e-3  # the null space really is kept
    np.testing.assert_allclose(
        pred.loss(None, prob["f0"]), 0.5 * np.mean((train_inf - prob["y"]) ** 2), rtol=1e-10
    )


@pytest.mark.parametrize("beta", [None, 0.9])
def test_singular_kernel_discrete_matches_parameter_space(beta):
    prob = singular_problem()
    lr = 0.8 * critical_lr(prob["k_flat"], prob["y"].size, beta or 0.0)
    kind = "gd" if beta is None else "momentum"
    pred = dynamics.mse(prob["k4"], prob["y"], learning_rate=lr, kind=kind, momentum=beta)
    train, test = pred(STEPS, prob["f0"], prob["f0_test"], prob["kt4"])
    ref_train, ref_test = param_space_run(prob, lr, 299, beta)
    np.testing.assert_allclose(train, ref_train[STEPS], rtol=0, atol=1e-10)
    np.testing.assert_allclose(test, ref_test[STEPS], rtol=0, atol=1e-10)
    jac = prob["J"].reshape(prob["n"], prob["k"], -1)
    omega = pred.weights(STEPS, prob["f0"], jac)
    np.testing.assert_allclose(
        prob["f0"][None] + np.einsum("iap,tp->tia", jac, omega),
        ref_train[STEPS],
        rtol=0,
        atol=1e-10,
    )


def test_gradient_of_loss_is_finite_on_singular_kernel():
    prob = singular_problem()
    pred = dynamics.mse(prob["k4"], prob["y"], learning_rate=0.5)
    grads = jax.grad(lambda f0: pred.loss(jnp.array([0.0, 3.0]), f0).sum())(prob["f0"])
    assert np.all(np.isfinite(grads))


# ------------------------------------------------------------------------------------------------
# 7. Critical learning rate.
# ------------------------------------------------------------------------------------------------


def conditioned_kernel(n=6, seed=10):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return (q * np.linspace(1.0, 10.0, n)) @ q.T, rng.normal(size=(n, 1)), rng.normal(size=(n, 1))


def test_critical_learning_rate_gd():
    kernel, y, f0 = conditioned_kernel()
    crit = 2 * y.size / 10.0
    flow = dynamics.mse(kernel, y)
    np.testing.assert_allclose(float(flow.critical_learning_rate), crit, rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        below = dynamics.mse(kernel, y, learning_rate=0.99 * crit, kind="gd")
    np.testing.assert_allclose(float(below.critical_learning_rate), crit, rtol=1e-12)
    assert float(below.loss(3000, f0)) < 1e-20 * float(below.loss(0, f0))
    with pytest.warns(UserWarning, match="critical") as record:
        above = dynamics.mse(kernel, y, learning_rate=1.01 * crit, kind="gd")
    assert "diverges" in str(record[0].message) and f"{crit:g}" in str(record[0].message)
    assert float(above.loss(3000, f0)) > 1e10


def scalar_momentum_mode(a, beta, steps):
    """Independent numpy heavy ball on a single mode with curvature a = lr * lam / N."""
    r, w = 1.0, 0.0
    out = [r]
    for _ in range(steps):
        w = beta * w + r
        r = r - a * w
        out.append(r)
    return np.array(out)


def test_critical_learning_rate_momentum():
    kernel, y, f0 = conditioned_kernel()
    beta, size, lam_max = 0.9, y.size, 10.0
    crit = 2 * size * (1 + beta) / lam_max
    steps = np.array([0, 10, 100, 400])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        below = dynamics.mse(kernel, y, learning_rate=0.99 * crit, kind="momentum", momentum=beta)
    np.testing.assert_allclose(float(below.critical_learning_rate), crit, rtol=1e-12)
    with pytest.warns(UserWarning, match="critical"):
        above = dynamics.mse(kernel, y, learning_rate=1.01 * crit, kind="momentum", momentum=beta)
    for pred, factor in [(below, 0.99), (above, 1.01)]:
        ref = scalar_momentum_mode(factor * crit * lam_max / size, beta, 400)
        # The top mode evolves as the scalar recurrence: project the residual on it.
        _lam, vecs = np.linalg.eigh(kernel)
        top = vecs[:, -1]
        r0 = (f0 - y)[:, 0]
        rt = pred(steps, f0)[..., 0] - y[None, :, 0]
        np.testing.assert_allclose(rt @ top, ref[steps] * (top @ r0), rtol=1e-8, atol=1e-12)
    assert np.abs(scalar_momentum_mode(0.99 * crit * lam_max / size, beta, 3000)).max() < 10
    assert np.abs(scalar_momentum_mode(1.01 * crit * lam_max / size, beta, 3000)).max() > 1e10
    assert float(below.loss(3000, f0)) < 1e-6 * float(below.loss(0, f0))
    assert float(above.loss(3000, f0)) > 1e10


# ------------------------------------------------------------------------------------------------
# 8. jit, caching and dtypes.
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def count_eigh(monkeypatch):
    calls = []
    original = _linalg.eigh

    def counting(matrix):
        calls.append(matrix.shape)
        return original(matrix)

    monkeypatch.setattr(_linalg, "eigh", counting)
    return calls


@pytest.mark.parametrize("kind,beta", [("flow", None), ("momentum", 0.5)])
def test_jit_patterns(nt_refs, kind, beta):
    # The times (and shapes) of test_flow_matches_neural_tangents: eager calls reuse compilations.
    ts = nt_refs["pred_ts"] if kind == "flow" else np.array([0, 1, 4, 30, 200])
    k11, k21 = nt_refs["inf_relu1_ntk_ntk_11"], nt_refs["inf_relu1_ntk_ntk_21"]
    y, f0, f0t = nt_refs["pred_y"], nt_refs["pred_f0_train"], nt_refs["pred_f0_test"]
    pred = dynamics.mse(k11, y, learning_rate=0.7, kind=kind, momentum=beta)
    eager = pred(ts, f0, f0t, k21)
    # Predictor built outside jit, first used inside it.
    fresh = dynamics.mse(k11, y, learning_rate=0.7, kind=kind, momentum=beta)
    inside = jax.jit(lambda f: fresh(ts, f, f0t, k21))(f0)
    assert not isinstance(fresh._eig[0], jax.core.Tracer)  # the cache holds concrete arrays
    for a, b in zip(inside, eager):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(fresh(ts, f0), eager[0], rtol=1e-12, atol=1e-13)  # no leaked tracers
    # Predictor built inside jit from traced kernels.
    built = jax.jit(
        lambda k, yy, f: dynamics.mse(k, yy, learning_rate=0.7, kind=kind, momentum=beta)(ts, f)
    )(k11, y, f0)
    np.testing.assert_allclose(built, eager[0], rtol=1e-12, atol=1e-13)
    # Traced times (momentum rounds traced floats to whole steps).
    traced_t = jax.jit(lambda t, f: pred(t, f))(ts, f0)
    np.testing.assert_allclose(traced_t, eager[0], rtol=1e-12, atol=1e-13)
    if kind != "flow":
        return  # t = None does not depend on the kind
    # t = None inside jit, and the Cholesky cache stays concrete.
    inf_jit = jax.jit(lambda f: fresh(None, f, f0t, k21))(f0)
    np.testing.assert_allclose(inf_jit[1], pred(None, f0, f0t, k21)[1], rtol=1e-12, atol=1e-13)
    assert not isinstance(fresh._chol[0][0], jax.core.Tracer)


def test_eigendecomposition_is_computed_once_and_lazily(nt_refs, count_eigh):
    k11, y, f0 = nt_refs["inf_relu1_ntk_ntk_11"], nt_refs["pred_y"], nt_refs["pred_f0_train"]
    f0t, k21 = nt_refs["pred_f0_test"], nt_refs["inf_relu1_ntk_ntk_21"]
    pred = dynamics.mse(k11, y, learning_rate=0.7)
    pred(None, f0, f0t, k21)
    pred.loss(None, f0)
    assert count_eigh == [] and pred._eig is None  # t = None pays only for a Cholesky
    for ts in [0.5, nt_refs["pred_ts"], 2 * nt_refs["pred_ts"]]:
        pred(ts, f0, f0t, k21)
        pred.loss(ts, f0)
    jax.jit(lambda f: pred(nt_refs["pred_ts"], f))(f0)
    pred.weights(2.0, f0, {"w": np.ones((8, 1, 3))})
    _ = pred.critical_learning_rate, pred.eigenvalues
    assert count_eigh == [(8, 8)]
    gd = dynamics.mse(k11, y, learning_rate=0.7, kind="gd")  # eager: needed for the stability check
    assert len(count_eigh) == 2
    gd(np.arange(4), f0)
    gd.loss(3, f0)
    assert len(count_eigh) == 2


def test_mixed_dtypes():
    kernel, y, f0 = conditioned_kernel()
    pred = dynamics.mse(kernel, y.astype(np.float32), learning_rate=0.5)
    out = pred(np.array([0.0, 1.0]), f0.astype(np.float32))
    assert out.dtype == jnp.float64 and np.all(np.isfinite(out))
    np.testing.assert_allclose(
        out[1],
        dynamics.mse(kernel, y.astype(np.float32), learning_rate=0.5)(
            1.0, f0.astype(np.float32).astype(np.float64)
        ),
        rtol=1e-12,
    )
    pred32 = dynamics.mse(
        kernel.astype(np.float32), y.astype(np.float32), kind="gd", learning_rate=0.5
    )
    out32 = pred32(np.array([0, 3]), f0.astype(np.float32))
    assert out32.dtype == jnp.float32
    out_mixed = pred32(np.array([0, 3]), f0)  # float64 f0 promotes
    assert out_mixed.dtype == jnp.float64
    np.testing.assert_allclose(out_mixed, out32, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# 9. Validation.
# ------------------------------------------------------------------------------------------------


def _valid():
    kernel, y, f0 = conditioned_kernel()
    return kernel, y, f0


def _case_mse(**overrides):
    kernel, y, _ = _valid()
    kwargs = {"k_train_train": kernel, "y_train": y}
    kwargs.update(overrides)
    return lambda: dynamics.mse(**kwargs)


def _case_call(kind="flow", beta=None, method="__call__", **call):
    kernel, y, f0 = _valid()

    def run():
        pred = dynamics.mse(kernel, y, kind=kind, momentum=beta, learning_rate=0.1)
        args = {"t": np.array([0.0, 1.0]), "f0_train": f0}
        args.update(call)
        return getattr(pred, method)(**args)

    return run


_K, _Y, _F0 = _valid()
_NONSYM = _K.copy()
_NONSYM[0, 1] += 0.5
_NAN_K = _K.copy()
_NAN_K[1, 2] = _NAN_K[2, 1] = np.nan
_INF_Y = _Y.copy()
_INF_Y[0, 0] = np.inf
_NAN_F0 = _F0.copy()
_NAN_F0[1, 0] = np.nan
_INDEF = np.diag([12.1, 3.0, 1.0, 0.5, 0.2, -0.3])

VALIDATION_CASES = {
    "kernel_3d": (_case_mse(k_train_train=np.ones((6, 6, 1))), ValueError, "k_train_train"),
    "kernel_not_square": (_case_mse(k_train_train=np.ones((6, 7))), ValueError, "k_train_train"),
    "kernel_n_mismatch": (_case_mse(k_train_train=np.eye(3)), ValueError, "k_train_train"),
    "kernel_4d_k_mismatch": (
        _case_mse(k_train_train=np.ones((6, 6, 2, 2))),
        ValueError,
        "k_train_train",
    ),
    "kernel_complex": (_case_mse(k_train_train=_K + 0j), TypeError, "k_train_train"),
    "y_1d": (_case_mse(y_train=_Y[:, 0]), ValueError, "y_train"),
    "y_empty": (
        _case_mse(k_train_train=np.zeros((0, 0)), y_train=np.zeros((0, 1))),
        ValueError,
        "y_train",
    ),
    "kernel_nan": (_case_mse(k_train_train=_NAN_K), ValueError, "k_train_train"),
    "y_inf": (_case_mse(y_train=_INF_Y), ValueError, "y_train"),
    "kernel_nonsymmetric": (_case_mse(k_train_train=_NONSYM), ValueError, "symmetric"),
    "kernel_not_psd_gd": (
        _case_mse(k_train_train=_INDEF, kind="gd"),
        ValueError,
        "k_train_train is not positive semi-definite",
    ),
    "kind_unknown": (_case_mse(kind="adam"), ValueError, "kind"),
    "lr_zero": (_case_mse(learning_rate=0.0), ValueError, "learning_rate"),
    "lr_negative": (_case_mse(learning_rate=-1.0), ValueError, "learning_rate"),
    "lr_nan": (_case_mse(learning_rate=np.nan), ValueError, "learning_rate"),
    "lr_not_scalar": (_case_mse(learning_rate=np.ones(2)), TypeError, "learning_rate"),
    "diag_reg_negative": (_case_mse(diag_reg=-1e-3), ValueError, "diag_reg"),
    "momentum_one": (_case_mse(kind="momentum", momentum=1.0), ValueError, "momentum"),
    "momentum_negative": (_case_mse(kind="momentum", momentum=-0.1), ValueError, "momentum"),
    "momentum_missing": (_case_mse(kind="momentum"), ValueError, "momentum"),
    "momentum_for_gd": (_case_mse(kind="gd", momentum=0.5), ValueError, "momentum"),
    "momentum_for_flow": (_case_mse(momentum=0.5), ValueError, "momentum"),
    "kernel_not_psd_flow": (_case_call(), None, None),  # placeholder, replaced below
    "t_negative": (_case_call(t=np.array([1.0, -2.0])), ValueError, "t="),
    "t_nan": (_case_call(t=np.array([np.nan])), ValueError, "t="),
    "t_inf": (_case_call(t=np.inf), ValueError, "t="),
    "t_string": (_case_call(t="soon"), TypeError, "t="),
    "t_fraction_gd": (_case_call(kind="gd", t=np.array([1.0, 2.5])), ValueError, "t="),
    "t_fraction_momentum": (_case_call(kind="momentum", beta=0.5, t=0.5), ValueError, "t="),
    "t_negative_loss": (_case_call(method="loss", t=-1.0), ValueError, "t="),
    "f0_shape": (_case_call(f0_train=_F0[:3]), ValueError, "f0_train"),
    "f0_nan": (_case_call(f0_train=_NAN_F0), ValueError, "f0_train"),
    "f0_shape_loss": (_case_call(method="loss", f0_train=_F0.T), ValueError, "f0_train"),
    "only_f0_test": (_case_call(f0_test=np.zeros((2, 1))), ValueError, "k_test_train"),
    "only_k_test_train": (_case_call(k_test_train=np.zeros((2, 6))), ValueError, "f0_test"),
    "k_test_train_m_mismatch": (
        _case_call(f0_test=np.zeros((2, 1)), k_test_train=np.zeros((3, 6))),
        ValueError,
        "k_test_train",
    ),
    "k_test_train_n_mismatch": (
        _case_call(f0_test=np.zeros((2, 1)), k_test_train=np.zeros((2, 5))),
        ValueError,
        "k_test_train",
    ),
    "k_test_train_4d_for_2d": (
        _case_call(f0_test=np.zeros((2, 1)), k_test_train=np.zeros((2, 6, 1, 1))),
        ValueError,
        "k_test_train",
    ),
    "f0_test_k_mismatch": (
        _case_call(f0_test=np.zeros((2, 3)), k_test_train=np.zeros((2, 6))),
        ValueError,
        "f0_test",
    ),
    "jacobian_leaf_shape": (
        _case_call(method="weights", jacobian={"w": np.ones((6, 2, 3))}),
        ValueError,
        "jacobian",
    ),
    "jacobian_empty": (_case_call(method="weights", jacobian={}), ValueError, "jacobian"),
}


def _not_psd_flow():
    pred = dynamics.mse(_INDEF, _Y)  # lazy: the check runs with the eigendecomposition
    pred(1.0, _F0)


VALIDATION_CASES["kernel_not_psd_flow"] = (
    _not_psd_flow,
    ValueError,
    "k_train_train is not positive semi-definite",
)


@pytest.mark.parametrize("case", sorted(VALIDATION_CASES))
def test_validation(case):
    fn, exc, needle = VALIDATION_CASES[case]
    with pytest.raises(exc) as info:
        fn()
    message = str(info.value)
    assert needle in message
    assert "got" in message or "smallest eigenvalue" in message


def test_not_psd_message_reports_eigenvalues():
    with pytest.raises(ValueError, match=r"smallest eigenvalue -0\.3 vs largest 12\.1"):
        dynamics.mse(_INDEF, _Y, kind="gd")


def test_nearly_psd_kernel_is_clamped_not_rejected():
    kernel = np.diag([12.1, 3.0, 1.0, 0.5, 0.2, -1e-15])
    pred = dynamics.mse(kernel, _Y, kind="gd", learning_rate=0.5)
    assert np.asarray(pred.eigenvalues)[0] == 0.0
    # The clamped mode (the last point) never moves; the others do.
    out = np.asarray(pred(STEPS, _F0))
    np.testing.assert_array_equal(out[:, 5], np.broadcast_to(_F0[5], (len(STEPS), 1)))
    assert np.abs(out[-1, 0] - _F0[0]).max() > 1e-3


def test_gd_at_exactly_half_the_critical_rate():
    """lr = N / lam_max makes 1 - a exactly 0 for the top mode (solved in one step); XLA's FMA
    fusion of `1 - scale * lam` once made the branch choice and the value disagree there.
    Reference: the explicit recurrence f <- f - lr * K (f - y) / N."""
    rng = np.random.default_rng(3)
    j = rng.normal(size=(8, 20))
    k = j @ j.T
    y = rng.normal(size=(8, 1))
    f0 = rng.normal(size=(8, 1))
    lr = 0.5 * float(dynamics.mse(k, y).critical_learning_rate)
    pred = dynamics.mse(k, y, learning_rate=lr, kind="gd")
    ts = np.arange(6)
    out = np.asarray(pred(jnp.asarray(ts), f0))
    f = f0.copy()
    for s in ts:
        np.testing.assert_allclose(out[s], f, rtol=1e-10, atol=1e-12)
        f = f - lr * k @ (f - y) / y.size
