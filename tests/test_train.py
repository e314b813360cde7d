"""train.trajectory against exact recurrences, step-by-step optax loops and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import init_mlp, mlp_apply

import jaxdyn
from jaxdyn import train


@pytest.fixture(scope="module")
def setup():
    params = init_mlp(jax.random.PRNGKey(0), [3, 64, 64, 2])
    x = jax.random.normal(jax.random.PRNGKey(1), (12, 3))
    y = jax.random.normal(jax.random.PRNGKey(2), (12, 2))
    xt = jax.random.normal(jax.random.PRNGKey(3), (5, 3))
    return params, x, y, xt


def _full_kernels(params, x, xt):
    k = jaxdyn.empirical_ntk(mlp_apply, params, x, trace_axes=())
    kt = jaxdyn.empirical_ntk(mlp_apply, params, xt, x, trace_axes=())
    return k, kt


@pytest.mark.parametrize("beta", [None, 0.9])
def test_linearized_sgd_equals_closed_form(setup, beta):
    """The linearized network trained by optax equals dynamics.mse(kind="gd"/"momentum")."""
    params, x, y, xt = setup
    k, kt = _full_kernels(params, x, xt)  # full (n, n, k, k): exact for any k
    kind = "gd" if beta is None else "momentum"
    lr = (
        0.4 * float(jaxdyn.dynamics.mse(k, y, kind=kind, momentum=beta).critical_learning_rate)
        if beta is not None
        else 0.4 * float(jaxdyn.dynamics.mse(k, y).critical_learning_rate)
    )
    opt = optax.sgd(lr) if beta is None else optax.sgd(lr, momentum=beta)
    traj = train.trajectory(
        mlp_apply,
        params,
        x,
        y,
        optimizer=opt,
        steps=300,
        record_every=20,
        x_test=xt,
        linearize=True,
    )
    pred = jaxdyn.dynamics.mse(k, y, learning_rate=lr, kind=kind, momentum=beta)
    f0, f0t = mlp_apply(params, x), mlp_apply(params, xt)
    tr, te = pred(traj.steps, f0, f0t, kt)
    np.testing.assert_allclose(traj.f_train, tr, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(traj.f_test, te, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(traj.loss, pred.loss(traj.steps, f0), rtol=1e-10, atol=1e-12)
    assert float(traj.loss[-1]) < 0.5 * float(traj.loss[0])


def test_float32_agreement_documented(setup):
    """float32 training of the linearized model agrees with the float64 closed form to about
    float32 rounding: measured 4.6e-7 max abs error on outputs of size ~2 after 300 steps. The
    1e-5 bound leaves room for other BLAS summation orders; the README quotes this number."""
    params, x, y, xt = setup
    k, kt = _full_kernels(params, x, xt)
    lr = 0.4 * float(jaxdyn.dynamics.mse(k, y).critical_learning_rate)
    f32 = lambda t: jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), t)  # noqa: E731
    traj = train.trajectory(
        mlp_apply,
        f32(params),
        f32(x),
        f32(y),
        optimizer=optax.sgd(lr),
        steps=300,
        record_every=100,
        linearize=True,
    )
    assert traj.f_train.dtype == jnp.float32
    tr = jaxdyn.dynamics.mse(k, y, learning_rate=lr, kind="gd")(traj.steps, mlp_apply(params, x))
    np.testing.assert_allclose(traj.f_train, tr, rtol=0, atol=1e-5)


def test_scan_equals_python_loop(setup):
    params, x, y, xt = setup
    opt = optax.adam(1e-2)
    traj = train.trajectory(
        mlp_apply, params, x, y, optimizer=opt, steps=30, record_every=10, keep_params=True
    )
    p, s = params, opt.init(params)
    loss = lambda q: 0.5 * jnp.mean((mlp_apply(q, x) - y) ** 2)  # noqa: E731

    @jax.jit  # one optax step, compiled once; the loop over steps stays in Python
    def opt_step(p, s):
        u, s = opt.update(jax.grad(loss)(p), s, p)
        return optax.apply_updates(p, u), s

    for step in range(1, 31):
        p, s = opt_step(p, s)
        if step % 10 == 0:
            i = step // 10
            np.testing.assert_allclose(traj.f_train[i], mlp_apply(p, x), rtol=1e-11, atol=1e-12)
            np.testing.assert_allclose(traj.loss[i], loss(p), rtol=1e-11)
            dist = np.sqrt(
                sum(
                    float(jnp.sum((a - b) ** 2))
                    for a, b in zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(params))
                )
            )
            np.testing.assert_allclose(traj.param_distance[i], dist, rtol=1e-10)
            for a, b in zip(jax.tree_util.tree_leaves(traj.params), jax.tree_util.tree_leaves(p)):
                np.testing.assert_allclose(a[i], b, rtol=1e-11, atol=1e-12)
    np.testing.assert_array_equal(traj.steps, [0, 10, 20, 30])


def test_vmapped_ensemble_equals_one_by_one(setup):
    _, x, y, _ = setup
    keys = jax.random.split(jax.random.PRNGKey(5), 3)

    def run(key):
        p0 = init_mlp(key, [3, 32, 2])
        return train.trajectory(
            mlp_apply,
            p0,
            x,
            y,
            optimizer=optax.sgd(0.5),
            steps=40,
            record_every=10,
            batch_size=4,
            key=key,
        )

    ens = jax.vmap(run)(keys)
    one_by_one = jax.jit(run)  # one member per call: compiled once for the three keys
    for i, key in enumerate(keys):
        one = one_by_one(key)
        np.testing.assert_allclose(ens.f_train[i], one.f_train, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(ens.loss[i], one.loss, rtol=1e-11)


def test_minibatch_sampling(setup):
    params, x, y, _ = setup
    kw = dict(optimizer=optax.sgd(0.3), steps=12, record_every=3)
    full = train.trajectory(mlp_apply, params, x, y, **kw)
    whole = train.trajectory(
        mlp_apply, params, x, y, batch_size=12, key=jax.random.PRNGKey(0), **kw
    )
    # a batch of all n points (in any order) is full-batch GD: same gradient up to summation order
    np.testing.assert_allclose(whole.f_train, full.f_train, rtol=1e-12, atol=1e-12)
    # minibatch runs from a key: compiled once, then run for each key
    run = jax.jit(
        lambda key: train.trajectory(mlp_apply, params, x, y, batch_size=4, key=key, **kw)
    )
    a, b, c = run(jax.random.PRNGKey(1)), run(jax.random.PRNGKey(1)), run(jax.random.PRNGKey(2))
    np.testing.assert_array_equal(a.f_train, b.f_train)
    assert not np.allclose(a.f_train, c.f_train)
    # each epoch visits every example exactly once
    idx = np.concatenate(
        [np.asarray(train._minibatch(jax.random.PRNGKey(1), jnp.int32(s), 12, 4)) for s in range(3)]
    )
    np.testing.assert_array_equal(np.sort(idx), np.arange(12))


def test_kernel_recording_and_change(setup):
    params, x, y, _ = setup
    traj = train.trajectory(
        mlp_apply,
        params,
        x,
        y,
        optimizer=optax.sgd(1.0),
        steps=40,
        record_every=10,
        kernel_every=20,
        keep_params=True,
    )
    np.testing.assert_array_equal(traj.ntk_steps, [0, 20, 40])
    np.testing.assert_allclose(traj.ntk[0], jaxdyn.empirical_ntk(mlp_apply, params, x), rtol=1e-12)
    last = jax.tree_util.tree_map(lambda a: a[-1], traj.params)
    np.testing.assert_allclose(traj.ntk[-1], jaxdyn.empirical_ntk(mlp_apply, last, x), rtol=1e-11)
    change = train.kernel_change(traj)
    assert change[0] == 0 and float(change[-1]) > 1e-4
    lin = train.trajectory(
        mlp_apply,
        params,
        x,
        y,
        optimizer=optax.sgd(1.0),
        steps=40,
        record_every=10,
        kernel_every=20,
        linearize=True,
    )
    np.testing.assert_allclose(
        train.kernel_change(lin), 0.0, atol=1e-12
    )  # linear model: constant NTK


def test_cross_entropy(setup):
    params, x, _, xt = setup
    labels = jnp.arange(12) % 2
    y = jax.nn.one_hot(labels, 2)
    traj = train.trajectory(
        mlp_apply,
        params,
        x,
        y,
        optimizer=optax.sgd(1.0),
        steps=50,
        record_every=25,
        loss="cross_entropy",
        x_test=xt,
        y_test=y[:5],
    )
    ref = -jnp.mean(jnp.sum(y * jax.nn.log_softmax(traj.f_train[-1]), axis=-1))
    np.testing.assert_allclose(traj.loss[-1], ref, rtol=1e-12)
    assert traj.loss[-1] < traj.loss[0] and traj.test_loss.shape == (3,)


def test_divergence_warns(setup):
    params, x, y, _ = setup
    k = jaxdyn.empirical_ntk(mlp_apply, params, x)
    lr = 50 * float(jaxdyn.dynamics.mse(k, y).critical_learning_rate)
    with pytest.warns(RuntimeWarning, match="diverged"):
        train.trajectory(
            mlp_apply,
            params,
            x,
            y,
            optimizer=optax.sgd(lr),
            steps=200,
            record_every=50,
            linearize=True,
        )


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(steps=10, record_every=3), ValueError, "multiple of `record_every`"),
        (dict(steps=0), ValueError, "steps"),
        (dict(kernel_every=3, record_every=2), ValueError, "kernel_every"),
        (dict(batch_size=4), ValueError, "key"),
        (dict(batch_size=100, key=jax.random.PRNGKey(0)), ValueError, "batch_size"),
        (dict(loss="hinge"), ValueError, "loss"),
        (dict(optimizer="sgd"), TypeError, "optimizer"),
        (dict(y_test=jnp.ones((5, 2))), ValueError, "y_test"),
    ],
)
def test_errors(setup, kwargs, exc, match):
    params, x, y, _ = setup
    base = dict(optimizer=optax.sgd(0.1), steps=10)
    base.update(kwargs)
    with pytest.raises(exc, match=match):
        train.trajectory(mlp_apply, params, x, y, **base)


def test_input_errors(setup):
    params, x, y, xt = setup
    with pytest.raises(ValueError, match="y_train"):
        train.trajectory(mlp_apply, params, x, y[:5], optimizer=optax.sgd(0.1), steps=1)
    with pytest.raises(ValueError, match="x_test"):
        train.trajectory(
            mlp_apply, params, x, y, optimizer=optax.sgd(0.1), steps=1, x_test=xt[:, :2]
        )
    with pytest.raises(ValueError, match="NaN"):
        train.trajectory(
            mlp_apply, params, x.at[0, 0].set(jnp.nan), y, optimizer=optax.sgd(0.1), steps=1
        )
    with pytest.raises(ValueError, match="holds no NTK"):
        train.kernel_change(
            train.trajectory(mlp_apply, params, x, y, optimizer=optax.sgd(0.1), steps=1)
        )


def test_observe_records_functions_of_the_parameters(setup):
    """`observe(params)` at every recorded step equals `observe` applied to the parameter
    snapshots of `keep_params=True` (an independent route through the same run); it also works
    under vmap over seeds, and for the linearized model."""
    params, x, y, _ = setup
    pair = x[:2]

    def hidden(p):  # the first hidden layer's pre-activations of two inputs, and a scalar
        w, b = p[0]
        return {"h": pair @ w + b[None, :], "norm": jnp.sum(w**2)}

    run = dict(optimizer=optax.sgd(0.1), steps=6, record_every=2)
    for lin in (False, True):
        traj = train.trajectory(
            mlp_apply, params, x, y, keep_params=True, observe=hidden, linearize=lin, **run
        )
        ref = jax.vmap(hidden)(traj.params)
        assert traj.observed["h"].shape == (4, 2, 64)
        np.testing.assert_allclose(traj.observed["h"], ref["h"], rtol=1e-12)
        np.testing.assert_allclose(traj.observed["norm"], ref["norm"], rtol=1e-12)
    assert train.trajectory(mlp_apply, params, x, y, **run).observed is None
    keys = jax.random.split(jax.random.PRNGKey(5), 2)
    p0s = jax.vmap(lambda k: init_mlp(k, [3, 64, 64, 2]))(keys)
    ens = jax.vmap(lambda p: train.trajectory(mlp_apply, p, x, y, observe=hidden, **run))(p0s)
    assert ens.observed["h"].shape == (2, 4, 2, 64)
    with pytest.raises(TypeError, match=r"`trajectory\(observe\)` must be a callable"):
        train.trajectory(mlp_apply, params, x, y, observe=3, **run)
