"""The linear structure (`jaxdyn.structure`) that from_linen / from_nnx put on flax models.

The adapters live in `jaxdyn.adapters`; the discovery of the structure in `jaxdyn._flax_structure`.

References are independent of the structure: `apply_fn` itself, `jax.jacrev` of `apply_fn`
with respect to `params`, and `empirical_ntk(..., method="jacobian")`.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import StackedNTK, traced_jacobian_ntk

import jaxdyn
from jaxdyn import structure as jstructure
from jaxdyn.adapters import from_linen, from_nnx

F64 = jnp.float64
D_IN, K_OUT, N = 3, 2, 5


def _x(seed=0, shape=(N, D_IN)):
    return jax.random.normal(jax.random.key(seed), shape, dtype=F64)


def identity_tap(l, h, z):
    return z


# ----------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------


class LinenMLP(nn.Module):
    """3 Dense layers (the middle one without bias), relu / tanh between."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(6, param_dtype=F64, name="first")(x))
        x = jnp.tanh(nn.Dense(4, use_bias=False, param_dtype=F64)(x))
        return nn.Dense(K_OUT, param_dtype=F64, name="a_out")(x)  # sorts before "first"


class LinenSetupMLP(nn.Module):
    """Dense layers defined in setup, in a list, called out of definition order."""

    def setup(self):
        self.layers = [
            nn.Dense(5, param_dtype=F64),
            nn.Dense(K_OUT, param_dtype=F64),
            nn.Dense(5, param_dtype=F64),
        ]

    def __call__(self, x):
        x = nn.gelu(self.layers[0](x))
        x = jnp.sin(self.layers[2](x))
        return self.layers[1](x)


class NnxMLP(nnx.Module):
    def __init__(self, rngs):
        self.out = nnx.Linear(4, K_OUT, param_dtype=F64, rngs=rngs)
        self.layers = nnx.List(
            [
                nnx.Linear(D_IN, 6, param_dtype=F64, rngs=rngs),
                nnx.Linear(6, 4, use_bias=False, param_dtype=F64, rngs=rngs),
            ]
        )

    def __call__(self, x):
        for layer in self.layers:
            x = jnp.tanh(layer(x))
        return self.out(x)


def _linen(module, seed=1):
    """from_linen with variables and an example input (a jitted init keeps tests quick)."""
    x = _x()
    return from_linen(module, jax.jit(module.init)(jax.random.key(seed), x), x)


STRUCTURED = {
    "linen_mlp": lambda: _linen(LinenMLP()),
    "linen_setup": lambda: _linen(LinenSetupMLP()),
    "linen_variables_only": lambda: from_linen(
        LinenMLP(), jax.jit(LinenMLP().init)(jax.random.key(2), _x())
    ),
    "nnx_mlp": lambda: from_nnx(NnxMLP(nnx.Rngs(3))),
    "nnx_mlp_example": lambda: from_nnx(NnxMLP(nnx.Rngs(3)), _x()),
    "nnx_single_linear": lambda: from_nnx(
        nnx.Linear(D_IN, K_OUT, param_dtype=F64, rngs=nnx.Rngs(4))
    ),
}


@functools.cache
def structured(name):
    """`(apply_fn, params)` of a STRUCTURED model, adapted once per session."""
    return STRUCTURED[name]()


# ----------------------------------------------------------------------------
# Structured models
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["linen_mlp", "linen_setup", "nnx_mlp", "nnx_single_linear"])
def test_identity_tap_and_tap_gradients(name):
    """`apply` with an identity tap is `apply_fn`; and per example i and output a,
    d f_a / d W_l = h_l g_la^T and d f_a / d b_l = g_la, with g the gradient at a probe
    added by the tap, against jax.jacrev of `apply_fn` over params."""
    apply_fn, params = structured(name)
    structure = jstructure.get(apply_fn)
    assert structure is not None
    layers = structure.layers(params)
    leaves = jax.tree_util.tree_leaves(params)
    x = _x(6)
    np.testing.assert_array_equal(structure.apply(params, x, identity_tap), apply_fn(params, x))

    inputs, outputs = [], []

    def record(l, h, z):
        inputs.append(h)
        outputs.append(z)
        return z

    structure.apply(params, x, record)
    assert len(inputs) == len(layers)
    probes = [jnp.zeros_like(z) for z in outputs]

    def probed(q):
        return structure.apply(params, x, lambda l, h, z: z + q[l])

    grads = jax.jit(jax.jacrev(probed))(probes)  # [(n, k, n, width)]
    jac = jax.tree_util.tree_leaves(jax.jit(jax.jacrev(apply_fn))(params, x))  # [(n, k, *leaf)]

    covered = set()
    for l, layer in enumerate(layers):
        assert layer.conv is None and layer.c_W == 1.0 and layer.c_b == 1.0
        g = jnp.einsum("iaiw->iaw", grads[l])  # (n, k, width)
        np.testing.assert_array_equal(
            jnp.einsum("iaiw->iaw", grads[l].at[jnp.arange(N), :, jnp.arange(N)].set(0)), 0
        )
        assert leaves[layer.w_leaf].shape == (inputs[l].shape[1], g.shape[-1])
        np.testing.assert_allclose(
            jnp.einsum("if,iaw->iafw", inputs[l], g), jac[layer.w_leaf], rtol=1e-13, atol=1e-15
        )
        covered.add(layer.w_leaf)
        if layer.b_leaf is not None:
            np.testing.assert_allclose(g, jac[layer.b_leaf], rtol=1e-13, atol=1e-15)
            covered.add(layer.b_leaf)
    assert covered == set(range(len(leaves)))


@pytest.mark.parametrize(
    "name, same_as", [("linen_variables_only", "linen_mlp"), ("nnx_mlp_example", "nnx_mlp")]
)
def test_structure_without_or_with_example_input(name, same_as):
    """Linen variables without `x_example` (fan-ins guessed from the kernels) and nnx with
    one find the same layers as the other path; apply is still apply_fn."""
    apply_fn, params = structured(name)
    structure = jstructure.get(apply_fn)
    assert structure.layers(params) == jstructure.get(structured(same_as)[0]).layers(params)
    x = _x(15)
    np.testing.assert_array_equal(structure.apply(params, x, identity_tap), apply_fn(params, x))


def test_bias_free_layer_has_no_bias_leaf():
    apply_fn, params = structured("linen_mlp")
    layers = jstructure.get(apply_fn).layers(params)
    assert [layer.b_leaf is None for layer in layers] == [False, True, False]
    apply_fn, params = structured("nnx_mlp")
    layers = jstructure.get(apply_fn).layers(params)
    assert [layer.b_leaf is None for layer in layers] == [False, True, False]


@pytest.mark.parametrize("name", ["linen_mlp", "nnx_mlp"])
def test_structured_ntk_equals_jacobian_ntk(name):
    apply_fn, params = structured(name)
    x1, x2 = _x(7), _x(8, (4, D_IN))
    ref = StackedNTK(apply_fn, params, x1, x2)  # method="jacobian" on [x1; x2], sliced
    for trace_axes, args in [((-1,), (x1,)), ((), (x1, x2))]:
        want = ref(trace_axes, with_x2=len(args) == 2)
        got = jaxdyn.empirical_ntk(
            apply_fn, params, *args, trace_axes=trace_axes, method="structured"
        )
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


def test_nnx_model_is_never_mutated():
    model = NnxMLP(nnx.Rngs(9))
    x = _x(9)
    before = model(x)
    apply_fn, params = from_nnx(model)
    jax.jit(lambda p: jstructure.get(apply_fn).apply(p, x, lambda l, h, z: 2 * z))(params)
    assert all(type(layer) is nnx.Linear for layer in model.layers)
    assert type(model.out) is nnx.Linear
    np.testing.assert_array_equal(model(x), before)
    np.testing.assert_array_equal(apply_fn(params, x), before)


def test_structure_under_jit_and_vmap_over_params():
    apply_fn, params = structured("linen_mlp")
    structure = jstructure.get(apply_fn)
    x = _x(10)
    stacked = jax.tree_util.tree_map(lambda a: jnp.stack([a, 2 * a]), params)
    got = jax.jit(jax.vmap(lambda p: structure.apply(p, x, identity_tap)))(stacked)
    want = jax.vmap(lambda p: apply_fn(p, x))(stacked)
    np.testing.assert_allclose(got, want, rtol=1e-13)


def test_clear_errors_when_the_structure_does_not_hold():
    apply_fn, params = structured("linen_mlp")
    structure = jstructure.get(apply_fn)
    # Dense on 3-D inputs at NTK time: apply refuses instead of mis-tapping.
    with pytest.raises(ValueError, match="calls its Dense layers differently"):
        structure.apply(params, _x(14, (N, 2, D_IN)), identity_tap)
    # Params with a leaf no Dense uses: layers refuses.
    extra = {**params, "extra": {"scale": jnp.ones(3, F64)}}
    with pytest.raises(ValueError, match="no linear structure.*extra/scale"):
        structure.layers(extra)


# ----------------------------------------------------------------------------
# Models without the structure: no attribute, and method="auto" still works
# ----------------------------------------------------------------------------


class LinenConv(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(2, (2,), param_dtype=F64)(x[..., None]).reshape(x.shape[0], -1)
        return nn.Dense(K_OUT, param_dtype=F64)(x)


class LinenLayerNorm(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(K_OUT, param_dtype=F64)(nn.LayerNorm(param_dtype=F64)(x))


class LinenEmbed(nn.Module):
    @nn.compact
    def __call__(self, x):
        e = nn.Embed(4, D_IN, param_dtype=F64)(jnp.zeros(x.shape[0], jnp.int32))
        return nn.Dense(K_OUT, param_dtype=F64)(x + e)


class LinenDenseTwice(nn.Module):
    @nn.compact
    def __call__(self, x):
        dense = nn.Dense(D_IN, param_dtype=F64)
        return nn.Dense(K_OUT, param_dtype=F64)(jnp.tanh(dense(jnp.tanh(dense(x)))))


class LinenDense3D(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.Dense(4, param_dtype=F64)(
            x[:, :, None] * jnp.ones((1, 1, 2), F64)
        )  # (n, d, 2) -> (n, d, 4)
        return nn.Dense(K_OUT, param_dtype=F64)(h.reshape(x.shape[0], -1))


class LinenCustomDot(nn.Module):
    @nn.compact
    def __call__(self, x):
        dot = lambda a, b, dims, precision=None, **kw: 2.0 * jax.lax.dot_general(a, b, dims)
        return nn.Dense(K_OUT, param_dtype=F64, dot_general=dot)(x)


class LinenBatchMixing(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.Dense(4, param_dtype=F64)(x)
        return nn.Dense(K_OUT, param_dtype=F64)(h - h.mean(axis=0, keepdims=True))


class MyDense(nn.Dense):
    def __call__(self, inputs):
        return super().__call__(inputs) ** 2


class LinenDenseSubclass(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(K_OUT, param_dtype=F64)(MyDense(4, param_dtype=F64)(x))


class LinenRemat(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = jnp.tanh(nn.Dense(4, param_dtype=F64)(x))
        return nn.remat(nn.Dense)(K_OUT, param_dtype=F64)(h)  # taps would leak from remat


class NnxRemat(nnx.Module):
    def __init__(self, rngs):
        self.lin = nnx.Linear(D_IN, 4, param_dtype=F64, rngs=rngs)
        self.out = nnx.Linear(4, K_OUT, param_dtype=F64, rngs=rngs)

    def __call__(self, x):
        return nnx.remat(lambda out, h: out(h))(self.out, jnp.tanh(self.lin(x)))


class NnxLayerNorm(nnx.Module):
    def __init__(self, rngs):
        self.lin = nnx.Linear(D_IN, 4, param_dtype=F64, rngs=rngs)
        self.norm = nnx.LayerNorm(4, param_dtype=F64, rngs=rngs)
        self.out = nnx.Linear(4, K_OUT, param_dtype=F64, rngs=rngs)

    def __call__(self, x):
        return self.out(self.norm(self.lin(x)))


class NnxShared(nnx.Module):
    def __init__(self, rngs):
        self.lin = nnx.Linear(D_IN, D_IN, param_dtype=F64, rngs=rngs)
        self.out = nnx.Linear(D_IN, K_OUT, param_dtype=F64, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.tanh(self.lin(jnp.tanh(self.lin(x)))))


UNSTRUCTURED = {
    "linen_conv": lambda: _linen(LinenConv()),
    "linen_layernorm": lambda: _linen(LinenLayerNorm()),
    "linen_embed": lambda: _linen(LinenEmbed()),
    "linen_dense_twice": lambda: _linen(LinenDenseTwice()),
    "linen_dense_3d": lambda: _linen(LinenDense3D()),
    "linen_custom_dot_general": lambda: _linen(LinenCustomDot()),
    "linen_batch_mixing": lambda: _linen(LinenBatchMixing()),
    "linen_dense_subclass": lambda: _linen(LinenDenseSubclass()),
    "linen_remat": lambda: _linen(LinenRemat()),
    "nnx_layernorm": lambda: from_nnx(NnxLayerNorm(nnx.Rngs(11))),
    "nnx_remat": lambda: from_nnx(NnxRemat(nnx.Rngs(13))),
    "nnx_shared_linear": lambda: from_nnx(NnxShared(nnx.Rngs(12))),
}


@pytest.mark.parametrize("name", sorted(UNSTRUCTURED))
def test_unstructured_models_fall_back(name):
    apply_fn, params = UNSTRUCTURED[name]()
    assert not hasattr(apply_fn, "linear_structure")
    assert jstructure.get(apply_fn) is None
    if name in ("linen_conv", "linen_dense_twice", "nnx_layernorm"):
        x = _x(13)
        want = traced_jacobian_ntk(apply_fn, params, x)
        got = jaxdyn.empirical_ntk(apply_fn, params, x, method="auto")
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
