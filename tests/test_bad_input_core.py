"""Bad input to the core API (ntk, linearize, train, the check vocabulary in `_checks`).

Every case asserts the exception type and that the message names the argument and the
received value, in the one style "`NAME` must be EXPECTED; got RECEIVED."
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import _checks as C


def raises(exc, *parts):
    """pytest.raises whose message must contain every one of `parts`, in order."""
    return pytest.raises(exc, match=".*".join(re.escape(p) for p in parts))


# ---------------------------------------------------------------- the vocabulary


def test_fail_message_style():
    with raises(ValueError, "`steps` must be a positive int; got 0."):
        C.fail("steps", "a positive int", "0")
    with raises(TypeError, "`trajectory(y_train)` must be an array; got 'a'."):
        C.fail("trajectory(y_train)", "an array", "'a'", TypeError)
    # a name that is already quoted is not quoted twice
    with raises(ValueError, "`mse(k=...)` must be square; got (2, 3)."):
        C.fail("`mse(k=...)`", "square", "(2, 3)")


def test_is_concrete():
    assert C.is_concrete(jnp.ones(2), {"a": np.ones(1)}, None)
    seen = []
    jax.jit(lambda x: seen.append(C.is_concrete(1.0, x)) or x)(jnp.ones(2))
    assert seen == [False]


@pytest.mark.parametrize("value", [3, np.int64(3), np.int32(3), np.uint8(3), jnp.array(3)])
def test_check_int_accepts_python_and_numpy_ints(value):
    out = C.check_int("steps", value, minimum=1)
    assert out == 3 and type(out) is int


@pytest.mark.parametrize(
    "value, shown",
    [
        (2.5, "2.5"),
        (2.0, "2.0"),
        (True, "True"),
        ("3", "'3'"),
        (None, "None"),
        (np.float64(1), "1.0"),
    ],
)
def test_check_int_refuses_other_kinds(value, shown):
    with raises(TypeError, "`steps` must be a positive int; got", shown):
        C.check_int("steps", value, minimum=1)
    # also a ValueError, as these checks raised before the vocabulary existed
    with pytest.raises(ValueError):
        C.check_int("steps", value, minimum=1)


def test_check_int_bounds_and_none():
    with raises(ValueError, "`steps` must be a positive int; got 0."):
        C.check_int("steps", 0, minimum=1)
    with raises(ValueError, "`degree` must be a non-negative int; got -1."):
        C.check_int("degree", -1, minimum=0)
    with raises(ValueError, "`k` must be an int in [2, 4]; got 5."):
        C.check_int("k", 5, minimum=2, maximum=4)
    with raises(ValueError, "`k` must be an int <= 4 (the depth); got 5."):
        C.check_int("k", 5, maximum=4, hint="the depth")
    assert C.check_int("batch_size", None, minimum=1, allow_none=True) is None
    assert C.check_batch_size("batch_size", None) is None
    assert C.check_batch_size("batch_size", np.int64(4)) == 4
    with raises(ValueError, "`batch_size` must be a positive int or None; got 0."):
        C.check_batch_size("batch_size", 0)


@pytest.mark.parametrize("value", [2, 2.0, np.float32(2), np.int64(2), jnp.array(2.0)])
def test_check_float_accepts_real_numbers(value):
    out = C.check_float("learning_rate", value, minimum=0, strict_min=True)
    assert out == 2.0 and type(out) is float


@pytest.mark.parametrize(
    "value, exc, shown",
    [
        (float("nan"), ValueError, "nan"),
        (float("inf"), ValueError, "inf"),
        (0.0, ValueError, "0.0"),
        (-1, ValueError, "-1"),
        (True, TypeError, "True"),
        (1 + 2j, TypeError, "(1+2j)"),
        ("1GB", TypeError, "'1GB'"),
        (None, TypeError, "None"),
        (jnp.array(np.nan), ValueError, "nan"),
        (np.ones(2), TypeError, "shape (2,)"),
    ],
)
def test_check_float_refuses(value, exc, shown):
    with raises(exc, "`learning_rate` must be a positive float; got", shown):
        C.check_float("learning_rate", value, minimum=0, strict_min=True)


def test_check_float_bounds_hint_and_tracers():
    with raises(ValueError, "`momentum` must be a float in [0, 1]; got 1.5."):
        C.check_float("momentum", 1.5, minimum=0, maximum=1)
    with raises(ValueError, "`W_std` must be a non-negative float; got -1.0."):
        C.check_float("W_std", -1.0, minimum=0)
    with raises(TypeError, "`memory_budget` must be a positive float or None (bytes); got '1GB'."):
        C.check_float(
            "memory_budget", "1GB", minimum=0, strict_min=True, allow_none=True, hint="bytes"
        )
    assert C.check_float("memory_budget", None, allow_none=True) is None
    # traced values pass through unchecked, so callers stay jit-able
    assert float(jax.jit(lambda lr: C.check_float("lr", lr, minimum=0) * 2)(1.5)) == 3.0


def test_check_bool_and_choice():
    assert C.check_bool("flag", np.bool_(True)) is True
    with raises(TypeError, "`flag` must be True or False; got 1."):
        C.check_bool("flag", 1)
    assert C.check_choice("loss", "mse", ("mse", "xent")) == "mse"
    with raises(ValueError, "`loss` must be one of 'mse', 'xent'; got 'hinge'."):
        C.check_choice("loss", "hinge", ("mse", "xent"))
    with raises(ValueError, "`loss` must be one of 'mse'; got an array of shape (3,)"):
        C.check_choice("loss", np.ones(3), ("mse",))
    with raises(ValueError, "`k` must be one of 1, 2; got True."):
        C.check_choice("k", True, (1, 2))


def test_check_array():
    x = np.ones((4, 3))
    assert C.check_array("x", x, ndim=2) is x
    empty = jax.ShapeDtypeStruct((0, 3), jnp.float32)
    assert C.check_array("x", empty, allow_empty=True) is empty
    with raises(TypeError, "`x` must be an array", "got [1, 2] (a list)."):
        C.check_array("x", [1, 2])
    with raises(TypeError, "`x` must be a real array", "got dtype complex64."):
        C.check_array("x", np.ones((2, 3), np.complex64))
    assert C.check_array("x", np.ones(2, complex), kinds="fc") is not None
    with raises(TypeError, "`x` must be an array of dtype float; got dtype int64."):
        C.check_array("x", np.ones(2, np.int64), kinds="f")
    with raises(ValueError, "`x` must be a 2-dimensional array", "got shape (3,)."):
        C.check_array("x", np.ones(3), ndim=2)
    with raises(ValueError, "`x` must be an array with at least 2 dimension(s)", "got shape (3,)."):
        C.check_array("x", np.ones(3), min_ndim=2)
    with raises(ValueError, "`x` must be a non-empty batch", "got shape (0, 3)."):
        C.check_array("x", np.ones((0, 3)))
    # static: runs on tracers too
    with raises(ValueError, "`x` must be a 2-dimensional array", "got shape (3,)."):
        jax.jit(lambda v: C.check_array("x", v, ndim=2))(jnp.ones(3))


def test_check_finite():
    C.check_finite("x", None)
    C.check_finite("x", np.arange(3))  # integers cannot hold NaN
    with raises(ValueError, "`x1` must be finite; got 1 NaN/Inf value(s), first at index (2, 1)."):
        C.check_finite("x1", jnp.ones((3, 2)).at[2, 1].set(jnp.nan))
    with raises(ValueError, "`params['b'][0]` must be finite; got 1 NaN/Inf value(s), value inf."):
        C.check_finite("params", {"W": np.ones(3), "b": [np.array(np.inf)]})
    # skipped under tracing (values unknown), so jit still works
    out = jax.jit(lambda v: (C.check_finite("x", v), v)[1])(jnp.array([jnp.nan]))
    assert np.isnan(out[0])


def test_check_same_structure_and_params():
    ref = {"W1": np.ones((3, 5)), "b1": np.zeros(5)}
    assert C.check_params(
        "params", {"W1": jnp.ones((3, 5)), "b1": jnp.ones(5, jnp.float32)}, "params0", ref
    ) == jax.tree_util.tree_structure(ref)
    with raises(
        ValueError,
        "`params` must be a PyTree with the same structure as `params0`",
        "got missing leaves ['b1']",
    ):
        C.check_same_structure("params", {"W1": 1.0}, "params0", ref)
    with raises(ValueError, "missing leaves ['b1']; extra leaves ['W2']"):
        C.check_params("params", {"W1": 1.0, "W2": 2.0}, "params0", ref)
    with raises(
        ValueError,
        "`params['W1']` must be an array of shape (3, 5)",
        "`params0['W1']`; got shape (3, 4).",
    ):
        C.check_params("params", {"W1": np.ones((3, 4)), "b1": np.zeros(5)}, "params0", ref)
    with raises(TypeError, "`params['W1']` must be an array; got 'a'."):
        C.check_params("params", {"W1": "a", "b1": np.zeros(5)}, "params0", ref)
    with raises(TypeError, "`params['b1']` must be a real array"):
        C.check_params("params", {"W1": ref["W1"], "b1": np.zeros(5, complex)}, "params0", ref)


def test_check_axes():
    assert C.check_axes("trace_axes", (-1,), 2) == (1,)
    assert C.check_axes("trace_axes", np.int64(-1), 3) == (2,)
    assert C.check_axes("trace_axes", [0, -1], 3) == (0, 2)
    assert C.check_axes("trace_axes", (-1,), None) == (-1,)
    assert C.check_axes("trace_axes", (), 2) == ()
    with raises(TypeError, "`trace_axes` must be an int or a tuple of ints", "got 'ab'."):
        C.check_axes("trace_axes", "ab", 2)
    with raises(TypeError, "`trace_axes` must be an int or a tuple of ints", "got (1.7,)"):
        C.check_axes("trace_axes", (1.7,), 2)
    with raises(TypeError, "`trace_axes`", "got (True,)"):
        C.check_axes("trace_axes", (True,), 2)
    with raises(ValueError, "`trace_axes`", "from -2 to 1", "got (5,) (out of range)."):
        C.check_axes("trace_axes", (5,), 2)
    with raises(ValueError, "`trace_axes`", "without repeats; got (-1, 1)."):
        C.check_axes("trace_axes", (-1, 1), 2)


# ---------------------------------------------------------------- the core API
# A two-layer network with named parameters, so a missing leaf is a KeyError inside the model.

import warnings  # noqa: E402

import optax  # noqa: E402

import jaxdyn  # noqa: E402
from jaxdyn import train  # noqa: E402


def dict_apply(p, x):
    return jnp.tanh(x @ p["W1"] + p["b1"][None, :]) @ p["W2"]


@pytest.fixture(scope="module")
def net():
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(0), 4)
    params = {
        "W1": jax.random.normal(k1, (3, 16)) / np.sqrt(3),
        "b1": 0.1 * jnp.ones(16),
        "W2": jax.random.normal(k2, (16, 2)) / 4.0,
    }
    x = jax.random.normal(k3, (6, 3))
    y = jax.random.normal(k4, (6, 2))
    return params, x, y


def _without(params, name):
    return {k: v for k, v in params.items() if k != name}


def test_ntk_x_of_the_wrong_rank(net):
    params, x, _ = net
    with raises(
        ValueError,
        "`x1` must be an input that `apply_fn(params, x1)` accepts",
        "got shape (6, 3, 1)",
        "dot_general",
    ):  # the user's shape, not a probe's
        jaxdyn.empirical_ntk(dict_apply, params, x[:, :, None])
    with raises(ValueError, "`x1` must be an input", "dot_general"):
        jaxdyn.ntk_fn(dict_apply)(x[:, :, None], None, params)
    with raises(ValueError, "`x1` must be an input", "got shape (6, 3, 1)"):
        jaxdyn.ntk_cost(dict_apply, params, x[:, :, None])


def test_ntk_params_that_do_not_fit(net):
    params, x, _ = net
    with raises(
        ValueError, "`params` must hold every parameter", "['W1'] (3, 16)", "KeyError: 'b1'"
    ):
        jaxdyn.empirical_ntk(dict_apply, _without(params, "b1"), x)
    wide = {**params, "W1": jnp.ones((5, 16))}
    with raises(
        ValueError, "`x1` must be an input", "`params` from the same model", "got shape (6, 3)"
    ):
        jaxdyn.empirical_ntk(dict_apply, wide, x)


def test_ntk_empty_and_complex_inputs(net):
    params, x, _ = net
    with raises(ValueError, "`x1` must be a non-empty batch", "got shape (0, 3)."):
        jaxdyn.empirical_ntk(dict_apply, params, x[:0])
    with raises(ValueError, "`x2` must be a non-empty batch", "got shape (0, 3)."):
        jaxdyn.empirical_ntk(dict_apply, params, x, x[:0])
    with raises(ValueError, "`x1` must be a non-empty batch", "got shape (0, 3)."):
        jaxdyn.ntk_cost(dict_apply, params, x[:0])
    with raises(TypeError, "`x1` must be a real array", "got dtype complex128."):
        jaxdyn.empirical_ntk(dict_apply, params, x.astype(jnp.complex128))


@pytest.mark.parametrize(
    "axes, exc, shown",
    [
        ("ab", TypeError, "'ab'"),
        ((1.7,), TypeError, "(1.7,)"),
        (3, TypeError, "3"),
        ((-1, 1), ValueError, "(-1, 1)"),
        ((0,), ValueError, "(0,)"),
    ],
)
def test_ntk_bad_trace_axes(net, axes, exc, shown):
    params, x, _ = net
    with raises(exc, "`trace_axes` must be", "got " + shown):
        jaxdyn.empirical_ntk(dict_apply, params, x, trace_axes=axes)


@pytest.mark.parametrize(
    "budget, exc, shown",
    [
        ("1GB", TypeError, "'1GB'"),
        (0, ValueError, "0"),
        (-1.0, ValueError, "-1.0"),
        (float("nan"), ValueError, "nan"),
    ],
)
def test_ntk_bad_memory_budget(net, budget, exc, shown):
    params, x, _ = net
    expected = "`memory_budget` must be a positive float or None (bytes"
    with raises(exc, expected, "got " + shown):
        jaxdyn.ntk_fn(dict_apply, memory_budget=budget)
    with raises(exc, expected, "got " + shown):
        jaxdyn.empirical_ntk(dict_apply, params, x, memory_budget=budget)
    with raises(exc, expected, "got " + shown):
        jaxdyn.ntk_cost(dict_apply, params, x, memory_budget=budget)


def test_ntk_checks_keep_jit_working(net):
    params, x, _ = net

    # explicit J J^T from per-example Jacobians of every leaf, mean over the 2 outputs
    def jac(name):  # (n, 2 outputs, leaf size) per-example Jacobian of one leaf
        one = lambda xi: jax.jacrev(dict_apply)(params, xi[None])[name].reshape(2, -1)  # noqa: E731
        return jax.vmap(one)(x)

    full = sum(jnp.einsum("iap,jap->ij", jac(n), jac(n)) for n in params) / 2
    eager = jaxdyn.empirical_ntk(dict_apply, params, x)
    jitted = jax.jit(lambda p, u: jaxdyn.empirical_ntk(dict_apply, p, u))(params, x)
    np.testing.assert_allclose(eager, full, rtol=1e-12)
    np.testing.assert_allclose(jitted, full, rtol=1e-12)


def test_linearize_x_of_the_wrong_rank(net):
    params, x, _ = net
    for f in (jaxdyn.linearize(dict_apply, params), jaxdyn.taylor_expand(dict_apply, params, 2)):
        with raises(
            ValueError,
            "`x` must be an input that `apply_fn(params0, x)` accepts",
            "got shape (6, 3, 1)",
            "dot_general",
        ):
            f(params, x[:, :, None])


def test_linearize_params_that_do_not_fit(net):
    params, x, _ = net
    f_lin = jaxdyn.linearize(dict_apply, params)
    with raises(
        ValueError,
        "`params` must be a PyTree with the same structure as `linearize(params0)`",
        "missing leaves ['b1']",
    ):
        f_lin(_without(params, "b1"), x)
    with raises(
        ValueError,
        "`params['W1']` must be an array of shape (3, 16)",
        "`linearize(params0)['W1']`; got shape (5, 16).",
    ):
        f_lin({**params, "W1": jnp.ones((5, 16))}, x)
    # params0 that the model cannot use: named params0, with the model's KeyError
    bad0 = _without(params, "b1")
    with raises(ValueError, "`params0` must hold every parameter", "KeyError: 'b1'"):
        jaxdyn.linearize(dict_apply, bad0)(bad0, x)
    with raises(
        ValueError,
        "`params['W1']` must be an array of shape (3, 16)",
        "`taylor_expand(params0)['W1']`; got shape (5, 16).",
    ):
        jaxdyn.taylor_expand(dict_apply, params, 2)({**params, "W1": jnp.ones((5, 16))}, x)


def test_linearize_refuses_nan_params_and_complex_x(net):
    params, x, _ = net
    nan = {**params, "b1": params["b1"].at[3].set(jnp.nan)}
    with raises(
        ValueError,
        "`linearize(params0)['b1']` must be finite",
        "got 1 NaN/Inf value(s), first at index (3,).",
    ):
        jaxdyn.linearize(dict_apply, nan)
    with raises(ValueError, "`taylor_expand(params0)['b1']` must be finite"):
        jaxdyn.taylor_expand(dict_apply, nan, 1)
    f_lin = jaxdyn.linearize(dict_apply, params)
    with raises(ValueError, "`params['b1']` must be finite", "first at index (3,)."):
        f_lin(nan, x)
    with raises(TypeError, "`x` must be a real array", "got dtype complex128."):
        f_lin(params, x.astype(jnp.complex128))


def test_linearize_checks_keep_transforms_working(net):
    params, x, _ = net
    f_lin = jaxdyn.linearize(dict_apply, params)
    moved = jax.tree_util.tree_map(lambda a: a + 0.01, params)
    # reference: f(p0) + J(p0) (p - p0) with the Jacobian from jacrev
    jac = jax.jacrev(dict_apply)(params, x)
    ref = dict_apply(params, x) + sum(
        jnp.tensordot(jac[k], moved[k] - params[k], axes=moved[k].ndim) for k in params
    )
    np.testing.assert_allclose(f_lin(moved, x), ref, rtol=1e-12)
    np.testing.assert_allclose(jax.jit(f_lin)(moved, x), ref, rtol=1e-12)
    # grad of a linear model in params is the Jacobian contracted with the cotangent
    g = jax.grad(lambda p: jnp.sum(f_lin(p, x)))(moved)
    np.testing.assert_allclose(g["W2"], jnp.sum(jac["W2"], axis=(0, 1)), rtol=1e-12)


def test_taylor_expand_degree(net):
    params, x, _ = net
    moved = jax.tree_util.tree_map(lambda a: a + 0.01, params)
    f2 = jaxdyn.taylor_expand(dict_apply, params, np.int64(2))  # NumPy ints are ints
    np.testing.assert_allclose(
        f2(moved, x), jaxdyn.taylor_expand(dict_apply, params, 2)(moved, x), rtol=0, atol=0
    )
    with raises(TypeError, "`taylor_expand(degree)` must be a non-negative int; got 2.0."):
        jaxdyn.taylor_expand(dict_apply, params, 2.0)
    with raises(ValueError, "`taylor_expand(degree)` must be a non-negative int; got -1."):
        jaxdyn.taylor_expand(dict_apply, params, -1)


def _traj(net, **kwargs):
    params, x, y = net
    args = dict(optimizer=optax.sgd(0.1), steps=2)
    args.update(kwargs)
    return train.trajectory(
        dict_apply,
        args.pop("params0", params),
        args.pop("x_train", x),
        args.pop("y_train", y),
        **args,
    )


def test_trajectory_model_misfits(net):
    params, x, y = net
    with raises(
        ValueError,
        "`x_train` must be an input that `apply_fn(params0, x_train)` accepts",
        "got shape (6, 3, 1)",
        "dot_general",
    ):
        _traj(net, x_train=x[:, :, None])
    with raises(ValueError, "`params0` must hold every parameter", "KeyError: 'b1'"):
        _traj(net, params0=_without(params, "b1"))
    with raises(
        ValueError,
        "`trajectory(y_train)` must be an array with 2 columns (the model's "
        "outputs); got shape (6, 3).",
    ):
        _traj(net, y_train=jnp.ones((6, 3)))


def test_trajectory_empty_nan_and_complex(net):
    params, x, y = net
    with raises(ValueError, "`x_train` must be a non-empty batch", "got shape (0, 3)."):
        _traj(net, x_train=x[:0], y_train=y[:0])
    with raises(ValueError, "`params0['W2']` must be finite", "first at index (0, 1)."):
        _traj(net, params0={**params, "W2": params["W2"].at[0, 1].set(jnp.inf)})
    with raises(TypeError, "`x_train` must be a real array", "got dtype complex128."):
        _traj(net, x_train=x.astype(jnp.complex128))
    with raises(TypeError, "`steps` must be a positive int; got 2.5."):
        _traj(net, steps=2.5)
    with raises(TypeError, "`linearize` must be True or False; got 'yes'."):
        _traj(net, linearize="yes")


def _critical_rate(net):
    params, x, y = net
    return float(
        jaxdyn.dynamics.mse(
            jaxdyn.empirical_ntk(dict_apply, params, x, trace_axes=()), y
        ).critical_learning_rate
    )


def test_trajectory_warns_when_the_loss_grows_by_orders_of_magnitude(net):
    crit = _critical_rate(net)
    with pytest.warns(RuntimeWarning) as record:
        traj = _traj(net, optimizer=optax.sgd(3 * crit), steps=40, linearize=True)
    loss = np.asarray(traj.loss)
    # the growth branch, not the NaN one: the loss stays finite
    assert np.all(np.isfinite(loss)) and loss[-1] > 1e20 * loss[0]
    first = int(np.flatnonzero(loss > train.DIVERGENCE_FACTOR * loss[0])[0])
    messages = [str(w.message) for w in record]
    assert len(messages) == 1, messages
    assert "diverged" in messages[0] and f"by recorded step {first} " in messages[0]


def test_trajectory_warns_above_a_known_critical_rate(net):
    crit = _critical_rate(net)
    with pytest.warns(RuntimeWarning, match=r"`learning_rate` .* is 3x the critical rate"):
        _traj(
            net,
            optimizer=optax.sgd(3 * crit),
            steps=1,
            linearize=True,
            learning_rate=3 * crit,
            critical_learning_rate=crit,
        )
    with warnings.catch_warnings():  # below the critical rate: silent
        warnings.simplefilter("error")
        traj = _traj(
            net,
            optimizer=optax.sgd(0.5 * crit),
            steps=40,
            linearize=True,
            learning_rate=0.5 * crit,
            critical_learning_rate=crit,
        )
    assert traj.loss[-1] < traj.loss[0]
    with raises(ValueError, "`learning_rate and critical_learning_rate` must be given together"):
        _traj(net, learning_rate=0.1)
    with raises(ValueError, "`critical_learning_rate` must be a positive float or None; got -1."):
        _traj(net, learning_rate=0.1, critical_learning_rate=-1)


def test_ntk_names_the_nan_parameter(net):
    params, x, _ = net
    bad = {**params, "W2": params["W2"].at[4, 1].set(jnp.nan)}
    with raises(
        ValueError, "`params['W2']` must be finite; got 1 NaN/Inf value(s), first at index (4, 1)."
    ):
        jaxdyn.empirical_ntk(dict_apply, bad, x)


def test_models_is_an_alias_of_adapters():
    # The adapters moved to jaxdyn/adapters.py (issue 10); the old import path keeps working.
    from jaxdyn import adapters, models

    for name in models.__all__:
        assert getattr(models, name) is getattr(adapters, name)
    assert set(models.__all__) == set(adapters.__all__)


def test_trajectory_checks_keep_jit_working(net):
    params, x, y = net
    run = lambda p: _traj(net, params0=p, optimizer=optax.sgd(0.1), steps=2).loss  # noqa: E731
    # reference: two plain gradient steps on the MSE loss 0.5 * mean((f - y)^2)
    loss = lambda p: 0.5 * jnp.mean((dict_apply(p, x) - y) ** 2)  # noqa: E731
    p, ref = params, [loss(params)]
    for _ in range(2):
        p = jax.tree_util.tree_map(lambda a, g: a - 0.1 * g, p, jax.grad(loss)(p))
        ref.append(loss(p))
    np.testing.assert_allclose(jax.jit(run)(params), np.array(ref), rtol=1e-12)


def test_trajectory_bad_loss_and_key(net):
    with raises(
        TypeError,
        "`loss` must be a callable loss(f, y) returning a scalar; got a loss returning (6, 2).",
    ):
        _traj(net, loss=lambda f, y: (f - y) ** 2)
    with raises(
        TypeError,
        "`loss` must be a callable loss(f, y) -> scalar",
        "got <lambda>, which raised TypeError",
    ):
        _traj(net, loss=lambda f: f)
    with raises(TypeError, "`key` must be a single jax.random key", "got 0."):
        _traj(net, batch_size=2, key=0)
    with raises(TypeError, "`key` must be a single jax.random key", "shape (2, 2)"):
        _traj(net, batch_size=2, key=jax.random.split(jax.random.PRNGKey(0)))
    # both kinds of key are accepted
    for key in (jax.random.PRNGKey(0), jax.random.key(0)):
        assert _traj(net, batch_size=2, key=key).loss.shape == (3,)


def test_trajectory_numpy_inputs_with_minibatches_under_vmap(net):
    """The data loaders return NumPy arrays; minibatches index them with traced indices, which a
    NumPy array refuses (TracerArrayConversionError before the inputs were converted)."""
    params, x, y = net
    x_np, y_np = np.asarray(x), np.asarray(y)
    keys = jax.random.split(jax.random.key(0), 2)

    def run(xs, ys):
        return jax.vmap(
            lambda k: (
                train.trajectory(
                    dict_apply,
                    params,
                    xs,
                    ys,
                    optimizer=optax.sgd(0.1),
                    steps=3,
                    batch_size=2,
                    key=k,
                ).loss
            )
        )(keys)

    np.testing.assert_array_equal(run(x_np, y_np), run(jnp.asarray(x), jnp.asarray(y)))
