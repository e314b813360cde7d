"""Tests for jaxdyn.adapters: linen / nnx / stax adapters and as_model dispatch."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import flat_jacobian_ntk, hand_mlp, hand_ntk

from jaxdyn.adapters import as_model, from_linen, from_nnx, from_stax

F64 = jnp.float64
D_IN, WIDTH, K_OUT, N = 3, 7, 2, 5


def _x(seed=0, n=N):
    return jax.random.normal(jax.random.key(seed), (n, D_IN), dtype=F64)


# ----------------------------------------------------------------------------
# linen
# ----------------------------------------------------------------------------


class LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(WIDTH, param_dtype=F64, name="hidden")(x))
        return nn.Dense(K_OUT, param_dtype=F64, name="out")(x)


class LinenBN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.Dense(WIDTH, param_dtype=F64)(x)
        x = nn.BatchNorm(use_running_average=not train, param_dtype=F64)(x)
        return nn.Dense(K_OUT, param_dtype=F64)(nn.relu(x))


def test_linen_matches_module_jit_and_ntk():
    module = LinenMLP()
    x = _x()
    apply_fn, params = from_linen(module, jax.random.key(1), x)
    assert set(params) == {"hidden", "out"}
    want = module.apply({"params": params}, x)
    np.testing.assert_array_equal(apply_fn(params, x), want)
    np.testing.assert_allclose(jax.jit(apply_fn)(params, x), want, rtol=1e-13)
    assert apply_fn(params, x).shape == (N, K_OUT)

    weights = (
        params["hidden"]["kernel"],
        params["hidden"]["bias"],
        params["out"]["kernel"],
        params["out"]["bias"],
    )
    np.testing.assert_allclose(hand_mlp(weights, x), want, rtol=1e-12)
    np.testing.assert_allclose(
        flat_jacobian_ntk(apply_fn, params, x), hand_ntk(weights, x), rtol=1e-10, atol=1e-12
    )


def test_linen_from_variables_and_method_kwargs():
    module = LinenMLP()
    x = _x()
    variables = module.init(jax.random.key(2), x)
    apply_fn, params = from_linen(module, variables)
    np.testing.assert_array_equal(apply_fn(params, x), module.apply(variables, x))
    assert "params" in variables  # the user's dict is not consumed
    # Raw uint32 keys are accepted too.
    _, params_raw = from_linen(module, jax.random.PRNGKey(2), x)
    assert jax.tree_util.tree_structure(params_raw) == jax.tree_util.tree_structure(params)


def test_linen_batch_stats_held_fixed():
    module = LinenBN()
    x = _x()
    variables = module.init(jax.random.key(3), x, train=False)
    # flax keeps `batch_stats` in float32 whatever `param_dtype` says, so `rsqrt(var + eps)` is a
    # float32 operation, and XLA rounds it differently when the stats are compile-time constants
    # (closed over under jit: the simplifier hoists a scalar rsqrt) than at runtime (7e-8 relative
    # measured with jax 0.10.2). The float64 comparison therefore needs float64 stats; with the
    # float32 stats flax makes, eager and jit agree to float32 rounding, checked below.
    stats32 = jax.tree_util.tree_map(lambda a: a + 0.5, variables["batch_stats"])
    stats = jax.tree_util.tree_map(lambda a: a.astype(F64), stats32)
    variables = {"params": variables["params"], "batch_stats": stats}
    apply_fn, params = from_linen(module, variables, train=False)
    assert set(params) == set(variables["params"])  # params collection only
    want = module.apply(variables, x, train=False)
    y = apply_fn(params, x)
    np.testing.assert_allclose(y, want, rtol=1e-13)
    np.testing.assert_allclose(jax.jit(apply_fn)(params, x), want, rtol=1e-12)
    variables32 = {"params": variables["params"], "batch_stats": stats32}
    apply32, _ = from_linen(module, variables32, train=False)
    want32 = module.apply(variables32, x, train=False)
    np.testing.assert_allclose(apply32(params, x), want32, rtol=1e-13)
    # one float32 ulp of the normalisation factor (eps32 = 1.2e-7), carried linearly to the outputs
    np.testing.assert_allclose(jax.jit(apply32)(params, x), want32, rtol=4 * 1.2e-7, atol=1e-15)
    # The non-default running stats are really used: the default ones differ.
    default = module.apply(
        {
            "params": params,
            "batch_stats": module.init(jax.random.key(3), x, train=False)["batch_stats"],
        },
        x,
        train=False,
    )
    assert not np.allclose(y, default)
    # Repeated calls and a Jacobian do not move the stats.
    jax.jit(jax.jacrev(apply_fn))(params, x)
    np.testing.assert_array_equal(apply_fn(params, x), y)
    # Key + x_example path forwards apply_kwargs to init as well.
    apply2, params2 = from_linen(module, jax.random.key(3), x, train=False)
    assert apply2(params2, x).shape == (N, K_OUT)


def test_linen_errors():
    module = LinenMLP()
    with pytest.raises(ValueError, match="x_example"):
        from_linen(module, jax.random.key(0))
    with pytest.raises(TypeError, match="key_or_variables"):
        from_linen(module, None, _x())
    with pytest.raises(ValueError, match="'params'"):
        from_linen(module, {"batch_stats": {}})
    with pytest.raises(TypeError, match="module"):
        from_linen(object(), jax.random.key(0), _x())


# ----------------------------------------------------------------------------
# nnx
# ----------------------------------------------------------------------------


class NnxMLP(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(D_IN, WIDTH, param_dtype=F64, rngs=rngs)
        self.out = nnx.Linear(WIDTH, K_OUT, param_dtype=F64, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


def _nnx_weights(params):
    return (
        params["hidden"]["kernel"],
        params["hidden"]["bias"],
        params["out"]["kernel"],
        params["out"]["bias"],
    )


def test_nnx_matches_module_jit_and_ntk():
    model = NnxMLP(nnx.Rngs(4))
    x = _x()
    apply_fn, params = from_nnx(model)
    assert isinstance(params, dict)
    assert all(type(leaf) is not nnx.Param for leaf in jax.tree_util.tree_leaves(params))
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree_util.tree_leaves(params))
    want = model(x)
    np.testing.assert_array_equal(apply_fn(params, x), want)
    np.testing.assert_allclose(jax.jit(apply_fn)(params, x), want, rtol=1e-13)

    weights = _nnx_weights(params)
    np.testing.assert_allclose(hand_mlp(weights, x), want, rtol=1e-12)
    np.testing.assert_allclose(
        flat_jacobian_ntk(apply_fn, params, x), hand_ntk(weights, x), rtol=1e-10, atol=1e-12
    )

    # jvp with respect to params equals the hand model's jvp.
    tangent = jax.tree_util.tree_map(jnp.ones_like, params)
    _, jvp = jax.jvp(lambda p: apply_fn(p, x), (params,), (tangent,))
    _, hand_jvp = jax.jvp(
        lambda w: hand_mlp(w, x), (weights,), (tuple(jnp.ones_like(w) for w in weights),)
    )
    np.testing.assert_allclose(jvp, hand_jvp, rtol=1e-12)


def test_nnx_ntk_by_central_differences():
    model = NnxMLP(nnx.Rngs(5))
    x = _x(1)
    apply_fn, params = from_nnx(model)
    direction = jax.tree_util.tree_map(
        lambda a: jax.random.normal(jax.random.key(a.size), a.shape, F64), params
    )
    eps = 1e-6
    shift = lambda s: jax.tree_util.tree_map(lambda p, d: p + s * eps * d, params, direction)
    fd = (apply_fn(shift(1.0), x) - apply_fn(shift(-1.0), x)) / (2 * eps)
    _, jvp = jax.jvp(lambda p: apply_fn(p, x), (params,), (direction,))
    np.testing.assert_allclose(fd, jvp, rtol=1e-6, atol=1e-8)


def test_nnx_purity_and_vmap_over_params():
    model = NnxMLP(nnx.Rngs(6))
    x = _x(2)
    before = model(x)
    apply_fn, params = from_nnx(model)
    perturbed = jax.tree_util.tree_map(lambda a: a + 1.0, params)
    y_pert = apply_fn(perturbed, x)
    jax.jit(apply_fn)(perturbed, x)
    jax.jit(jax.jacrev(apply_fn))(perturbed, x)
    assert not np.allclose(y_pert, before)
    np.testing.assert_array_equal(model(x), before)  # model untouched
    np.testing.assert_array_equal(apply_fn(params, x), before)  # params untouched

    stacked = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), params, perturbed)
    ys = jax.vmap(apply_fn, in_axes=(0, None))(stacked, x)
    assert ys.shape == (2, N, K_OUT)
    np.testing.assert_allclose(ys[0], before, rtol=1e-13)
    np.testing.assert_allclose(ys[1], y_pert, rtol=1e-13)

    # Changing the model afterwards does not affect the adapter either.
    model.out.bias[...] = model.out.bias[...] + 3.0
    np.testing.assert_array_equal(apply_fn(params, x), before)


def test_nnx_batchnorm_state_frozen():
    # float32 here: flax 0.12's nnx.BatchNorm keeps its running stats in float32.
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.lin = nnx.Linear(D_IN, WIDTH, rngs=rngs)
            self.bn = nnx.BatchNorm(WIDTH, rngs=rngs)

        def __call__(self, x):
            return self.bn(self.lin(x))[:, :K_OUT]

    model = Net(nnx.Rngs(7))
    x = _x(3).astype(jnp.float32)
    apply_fn, params = from_nnx(model)  # training mode: the forward writes batch stats
    assert set(params["bn"]) == {"scale", "bias"}
    mean0 = np.asarray(model.bn.mean[...])
    y1 = jax.jit(apply_fn)(params, x)
    y2 = apply_fn(params, x)
    np.testing.assert_allclose(y1, y2, rtol=1e-5)
    np.testing.assert_array_equal(model.bn.mean[...], mean0)
    model.eval()
    apply_eval, params_eval = from_nnx(model)
    np.testing.assert_allclose(apply_eval(params_eval, x), model(x), rtol=1e-6)


def test_nnx_errors():
    with pytest.raises(TypeError, match="model"):
        from_nnx(LinenMLP())


# ----------------------------------------------------------------------------
# stax
# ----------------------------------------------------------------------------

W_STD, B_STD = 1.5, 0.05


def stax_dense(out_dim, w_std=W_STD, b_std=B_STD):
    """A neural-tangents-style Dense in NTK parameterisation."""

    def init_fn(key, input_shape):
        k1, k2 = jax.random.split(key)
        fan_in = input_shape[-1]
        w = jax.random.normal(k1, (fan_in, out_dim), F64)
        b = jax.random.normal(k2, (1, out_dim), F64)
        return tuple(input_shape[:-1]) + (out_dim,), (w, b)

    def apply_fn(params, x, **kwargs):
        w, b = params
        return w_std / jnp.sqrt(x.shape[-1]) * (x @ w) + b_std * b

    return init_fn, apply_fn


def stax_elementwise(fn):
    return (lambda key, shape: (shape, ())), (lambda params, x, **kwargs: fn(x))


def stax_serial(*layers):
    """A minimal stax.serial: params are a tuple of per-layer params."""
    inits, applies = zip(*layers)

    def init_fn(key, input_shape):
        params = []
        for init in inits:
            key, sub = jax.random.split(key)
            input_shape, p = init(sub, input_shape)
            params.append(p)
        return input_shape, tuple(params)

    def apply_fn(params, x, **kwargs):
        for apply, p in zip(applies, params):
            x = apply(p, x, **kwargs)
        return x

    return init_fn, apply_fn


def test_stax_dense_exact_ntk():
    init_fn, stax_apply = stax_dense(K_OUT)
    x = _x(4)
    apply_fn, params = from_stax((init_fn, stax_apply), jax.random.key(8), (-1, D_IN))
    _, want_params = init_fn(jax.random.key(8), (-1, D_IN))
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, want_params)
    np.testing.assert_array_equal(apply_fn(params, x), stax_apply(params, x))
    np.testing.assert_allclose(jax.jit(apply_fn)(params, x), stax_apply(params, x), rtol=1e-13)
    # One NTK-parameterised Dense layer: K = (W_std^2 / d x x'^T + b_std^2) (x) I_k.
    k_scalar = W_STD**2 / D_IN * (x @ x.T) + B_STD**2
    want = jnp.kron(k_scalar, jnp.eye(K_OUT, dtype=F64))
    np.testing.assert_allclose(flat_jacobian_ntk(apply_fn, params, x), want, rtol=1e-12)


def test_stax_triple_and_reference_network(nt_refs):
    init_fn, stax_apply = stax_serial(
        stax_dense(64),
        stax_elementwise(jax.nn.relu),
        stax_dense(64),
        stax_elementwise(jax.scipy.special.erf),
        stax_dense(3),
    )
    kernel_fn = lambda x1, x2, get=None: None
    apply_fn, params = from_stax((init_fn, stax_apply, kernel_fn), jax.random.key(9), (1, 5))
    ref = [jnp.asarray(nt_refs[f"emp_param_{i}"]) for i in range(6)]
    ref_params = ((ref[0], ref[1]), (), (ref[2], ref[3]), (), (ref[4], ref[5]))
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(ref_params)
    x1, x2 = jnp.asarray(nt_refs["x1"]), jnp.asarray(nt_refs["x2"])
    np.testing.assert_allclose(apply_fn(ref_params, x1), nt_refs["emp_f_x1"], rtol=1e-10)
    # Cross NTK (x2, x1) from the adapter against neural-tangents' empirical NTK.
    jacobian = jax.jit(jax.jacrev(apply_fn))
    jac = lambda x: jnp.concatenate(
        [
            leaf.reshape(x.shape[0] * 3, -1)
            for leaf in jax.tree_util.tree_leaves(jacobian(ref_params, x))
        ],
        axis=1,
    )
    k21 = (jac(x2) @ jac(x1).T).reshape(6, 3, 8, 3).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(k21, nt_refs["emp_ntk_full_21"], rtol=1e-9, atol=1e-12)


def test_stax_apply_kwargs_forwarded():
    init_fn, _ = stax_dense(K_OUT)
    apply_with_shift = lambda params, x, shift=0.0: stax_dense(K_OUT)[1](params, x) + shift
    x = _x(5)
    apply_fn, params = from_stax(
        (init_fn, apply_with_shift), jax.random.key(0), (-1, D_IN), shift=2.0
    )
    np.testing.assert_allclose(apply_fn(params, x), apply_with_shift(params, x) + 2.0, rtol=1e-13)


@pytest.mark.parametrize(
    "bad",
    [
        None,
        (lambda k, s: None,),
        (lambda k, s: None, lambda p, x: x, lambda *a: None, lambda *a: None),
        [lambda k, s: None, lambda p, x: x],
        (lambda k, s: None, 3),
    ],
)
def test_stax_errors(bad):
    with pytest.raises(TypeError, match=r"`from_stax\(model\)` must be a tuple"):
        from_stax(bad, jax.random.key(0), (-1, D_IN))


def test_stax_bad_input_shape():
    with pytest.raises(TypeError, match="input_shape"):
        from_stax(stax_dense(K_OUT), jax.random.key(0), 3)


# ----------------------------------------------------------------------------
# as_model
# ----------------------------------------------------------------------------


def test_as_model_dispatch():
    x = _x(6)
    apply_fn, params = as_model(LinenMLP(), jax.random.key(10), x)
    np.testing.assert_array_equal(apply_fn(params, x), LinenMLP().apply({"params": params}, x))

    model = NnxMLP(nnx.Rngs(11))
    apply_fn, params = as_model(model)
    np.testing.assert_array_equal(apply_fn(params, x), model(x))

    init_fn, stax_apply = stax_dense(K_OUT)
    apply_fn, params = as_model((init_fn, stax_apply), jax.random.key(12), (-1, D_IN))
    np.testing.assert_array_equal(apply_fn(params, x), stax_apply(params, x))


@pytest.mark.parametrize("bad", [lambda p, x: x, "mlp", [1, 2], None])
def test_as_model_type_error(bad):
    with pytest.raises(TypeError, match=r"linen\.Module.*nnx\.Module.*init_fn"):
        as_model(bad)
