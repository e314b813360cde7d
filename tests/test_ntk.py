"""Empirical NTK: every method against J J^T from jax.jacrev and against neural-tangents."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    StackedNTK,
    explicit_ntk,
    init_mlp,
    kernel_cases,
    mlp_apply,
    nt_mlp_apply,
    nt_mlp_params,
)

import jaxdyn
from jaxdyn import nets

METHODS = ["jacobian", "ntvp", "auto"]


@pytest.fixture(scope="module")
def mlp():
    params = init_mlp(jax.random.PRNGKey(0), [4, 16, 16, 3])
    x1 = jax.random.normal(jax.random.PRNGKey(1), (7, 4))
    x2 = jax.random.normal(jax.random.PRNGKey(2), (5, 4))
    return params, x1, x2


@pytest.fixture(scope="module")
def mlp_explicit(mlp):
    """explicit_ntk of the mlp fixture: {(trace, x2 given): kernel}, computed once."""
    params, x1, x2 = mlp
    return {
        (trace, with_x2): explicit_ntk(mlp_apply, params, x1, x2 if with_x2 else x1, trace=trace)
        for trace in (True, False)
        for with_x2 in (True, False)
    }


def check_explicit(mlp, mlp_explicit, method, batch_size, trace, x2_cases):
    params, x1, x2 = mlp
    trace_axes = (-1,) if trace else ()
    for with_x2 in x2_cases:
        k = jaxdyn.empirical_ntk(
            mlp_apply,
            params,
            x1,
            x2 if with_x2 else None,
            trace_axes=trace_axes,
            method=method,
            batch_size=batch_size,
        )
        ref = mlp_explicit[trace, with_x2]
        assert k.shape == ref.shape
        np.testing.assert_allclose(k, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("batch_size", [None, 3])
@pytest.mark.parametrize("trace", [True, False])
def test_matches_explicit_jacobian_product(mlp, mlp_explicit, method, batch_size, trace):
    """x2 given or None (x2 = x1), alternating by the parity of the other three axes, so
    each value of each axis meets both (the slow twin runs both everywhere)."""
    with_x2 = (METHODS.index(method) + (batch_size is None) + trace) % 2 == 0
    check_explicit(mlp, mlp_explicit, method, batch_size, trace, [with_x2])


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("batch_size", [None, 3])
@pytest.mark.parametrize("trace", [True, False])
def test_matches_explicit_jacobian_product_both_x2(mlp, mlp_explicit, method, batch_size, trace):
    check_explicit(mlp, mlp_explicit, method, batch_size, trace, [True, False])


@pytest.mark.parametrize("method", METHODS)
def test_batched_equals_unbatched_to_rounding(mlp, method):
    params, x1, x2 = mlp
    full = jaxdyn.empirical_ntk(mlp_apply, params, x1, x2, method=method)
    for b in [1, 2, 4, 5, 100]:
        k = jaxdyn.empirical_ntk(mlp_apply, params, x1, x2, method=method, batch_size=b)
        np.testing.assert_allclose(k, full, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("impl", [1, 2, 3])
def test_matches_neural_tangents(nt_refs, method, impl):
    params = nt_mlp_params(nt_refs)
    x1, x2 = nt_refs["x1"], nt_refs["x2"]
    np.testing.assert_allclose(nt_mlp_apply(params, x1), nt_refs["emp_f_x1"], rtol=1e-12)
    k = jaxdyn.empirical_ntk(nt_mlp_apply, params, x2, x1, method=method)
    np.testing.assert_allclose(k, nt_refs[f"emp_ntk_trace_impl{impl}_21"], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_full_kernel_matches_neural_tangents(nt_refs, method):
    params = nt_mlp_params(nt_refs)
    k = jaxdyn.empirical_ntk(
        nt_mlp_apply,
        params,
        nt_refs["x2"],
        nt_refs["x1"],
        trace_axes=(),
        method=method,
        batch_size=4,
    )
    assert k.shape == (6, 8, 3, 3)
    np.testing.assert_allclose(k, nt_refs["emp_ntk_full_21"], rtol=1e-10, atol=1e-10)


def test_symmetric_and_psd(mlp):
    params, x1, _ = mlp
    k = np.asarray(jaxdyn.empirical_ntk(mlp_apply, params, x1))
    np.testing.assert_allclose(k, k.T, rtol=1e-13, atol=1e-13)
    assert np.linalg.eigvalsh(k).min() > -1e-10 * np.abs(k).max()


@pytest.mark.parametrize("method", ["jacobian", "ntvp"])
@pytest.mark.parametrize("trace_axes", [(-1,), (1,), (1, 2), ()])
def test_multi_axis_outputs(method, trace_axes):
    """Outputs (n, 2, 3): traced axes are averaged, the others come as adjacent pairs."""
    params = init_mlp(jax.random.PRNGKey(3), [3, 8, 6])
    apply = lambda p, x: mlp_apply(p, x).reshape(x.shape[0], 2, 3)  # noqa: E731
    x1 = jax.random.normal(jax.random.PRNGKey(4), (4, 3))
    x2 = jax.random.normal(jax.random.PRNGKey(5), (3, 3))
    k = jaxdyn.empirical_ntk(
        apply, params, x1, x2, trace_axes=trace_axes, method=method, batch_size=2
    )
    full = explicit_ntk(mlp_apply, params, x1, x2, trace=False).reshape(4, 3, 2, 3, 2, 3)
    # -> full[i, j, a, b, c, d]: a, b = first output axis of the x1 / x2 example; c, d = second.
    full = jnp.transpose(full, (0, 1, 2, 4, 3, 5))
    ref = {
        (-1,): jnp.einsum("ijabcc->ijab", full) / 3,
        (1,): jnp.einsum("ijaacd->ijcd", full) / 2,
        (1, 2): jnp.einsum("ijaacc->ij", full) / 6,
        (): full,
    }[trace_axes]
    np.testing.assert_allclose(k, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["jacobian", "ntvp"])
@pytest.mark.parametrize("batch_size", [None, 3])
def test_groups_add_up_and_equal_their_own_jacobians(nt_refs, method, batch_size):
    params = nt_mlp_params(nt_refs)
    x1, x2 = nt_refs["x1"], nt_refs["x2"]
    parts = jaxdyn.ntk_by_group(nt_mlp_apply, params, x1, x2, method=method, batch_size=batch_size)
    assert list(parts) == ["0", "1", "2"]
    full = jaxdyn.empirical_ntk(nt_mlp_apply, params, x1, x2)
    np.testing.assert_allclose(sum(parts.values()), full, rtol=1e-12, atol=1e-12)
    # Layer 1 alone: differentiate with the other layers frozen.
    f1 = lambda w, x: nt_mlp_apply([params[0], w, params[2]], x)  # noqa: E731
    np.testing.assert_allclose(
        parts["1"], explicit_ntk(f1, params[1], x1, x2), rtol=1e-12, atol=1e-12
    )


def test_param_groups_naming():
    tree = {
        "params": {
            "Dense_0": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)},
            "Dense_1": {"kernel": jnp.ones((3, 1)), "bias": jnp.ones(1)},
        }
    }
    assert jaxdyn.param_groups(tree) == {"params/Dense_0": [0, 1], "params/Dense_1": [2, 3]}
    assert jaxdyn.param_groups(tree, groups=3)["params/Dense_0/kernel"] == [1]
    by_kind = jaxdyn.param_groups(tree, groups=lambda path: path[-1])
    assert by_kind == {"bias": [0, 2], "kernel": [1, 3]}
    with pytest.raises(TypeError, match="groups"):
        jaxdyn.param_groups(tree, groups="layers")


def test_compiles_once_per_shape(mlp):
    params, x1, x2 = mlp
    traces = []

    def counted(p, x):
        traces.append(x.shape)
        return mlp_apply(p, x)

    kernel = jaxdyn.ntk_fn(counted, method="jacobian")
    kernel(x1, x2, params)
    n = len(traces)
    params2 = jax.tree_util.tree_map(lambda a: a * 1.1, params)
    k2 = kernel(x1 + 1.0, x2, params2)
    assert len(traces) == n, "second call with the same shapes must not retrace"
    np.testing.assert_allclose(k2, explicit_ntk(mlp_apply, params2, x1 + 1.0, x2), rtol=1e-12)


def test_jit_and_vmap_over_params(mlp):
    params, x1, x2 = mlp
    kernel = jaxdyn.ntk_fn(mlp_apply, method="jacobian")
    stacked = jax.tree_util.tree_map(lambda a: jnp.stack([a, 2 * a]), params)
    ks = jax.jit(jax.vmap(lambda p: kernel(x1, x2, p)))(stacked)
    p2 = jax.tree_util.tree_map(lambda a: 2 * a, params)
    np.testing.assert_allclose(ks[1], explicit_ntk(mlp_apply, p2, x1, x2), rtol=1e-12)


def test_float32_params_under_x64(mlp):
    params, x1, x2 = mlp
    p32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), params)
    k = jaxdyn.empirical_ntk(mlp_apply, p32, x1.astype(jnp.float32), x2.astype(jnp.float32))
    assert k.dtype == jnp.float32
    # float32 rounding of ~100-term sums: a few ulps of the largest entries.
    np.testing.assert_allclose(k, explicit_ntk(mlp_apply, params, x1, x2), rtol=1e-5, atol=1e-5)


def test_cost_model_picks_fewer_flops_and_respects_budget(mlp):
    params, x1, x2 = mlp
    cost = jaxdyn.ntk_cost(mlp_apply, params, x1, x2)
    assert cost.method == min(("jacobian", "ntvp"), key=cost.flops.get)
    assert "fewer flops" in cost.reason
    assert cost.num_params == sum(a.size for a in jax.tree_util.tree_leaves(params))
    assert cost.forward_flops >= 2 * cost.num_params
    # A budget between the two methods' needs forces the lighter one.
    budget = 0.5 * (cost.memory_bytes["jacobian"] + cost.memory_bytes["ntvp"])
    lighter = min(cost.memory_bytes, key=cost.memory_bytes.get)
    heavier = max(cost.memory_bytes, key=cost.memory_bytes.get)
    tight = jaxdyn.ntk_cost(mlp_apply, params, x1, x2, memory_budget=budget)
    assert tight.method == lighter and heavier in tight.reason
    none_fit = jaxdyn.ntk_cost(mlp_apply, params, x1, x2, memory_budget=1.0, batch_size=4)
    assert "pass a smaller `batch_size`" in none_fit.reason and none_fit.on_host
    # batch_size=None: the smallest block, and the result assembled on host
    auto = jaxdyn.ntk_cost(mlp_apply, params, x1, x2, memory_budget=1.0)
    assert auto.on_host and auto.block_shape == (1, 1) and "even at block 1x1" in auto.reason


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(method="fast"), ValueError, "method"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(batch_size=2.5), ValueError, "batch_size"),
        (dict(trace_axes=(0,)), ValueError, "batch axis"),
        (dict(trace_axes=(5,)), ValueError, "out of range"),
        (dict(trace_axes=3), TypeError, "trace_axes"),
        (dict(precision="ultra"), ValueError, "precision"),
    ],
)
def test_bad_arguments(mlp, kwargs, exc, match):
    params, x1, x2 = mlp
    with pytest.raises(exc, match=match):
        jaxdyn.empirical_ntk(mlp_apply, params, x1, x2, **kwargs)


def test_bad_inputs(mlp):
    params, x1, x2 = mlp
    with pytest.raises(ValueError, match="same per-example shape"):
        jaxdyn.empirical_ntk(mlp_apply, params, x1, x2[:, :3])
    with pytest.raises(ValueError, match=r"`x1` must be finite; got 1 NaN"):
        jaxdyn.empirical_ntk(mlp_apply, params, x1.at[2, 1].set(jnp.nan), x2)
    with pytest.raises(TypeError, match="x2"):
        jaxdyn.empirical_ntk(mlp_apply, params, x1, [[1.0, 2.0]])
    with pytest.raises(TypeError, match="apply_fn"):
        jaxdyn.ntk_fn("mlp")
    with pytest.raises(TypeError, match="single array"):
        jaxdyn.empirical_ntk(lambda p, x: {"y": mlp_apply(p, x)}, params, x1, x2)


def test_nan_kernel_is_reported(mlp):
    params, x1, x2 = mlp
    bad = [(params[0][0].at[0, 0].set(jnp.nan), params[0][1])] + list(params[1:])
    with pytest.raises(ValueError, match="NaN/Inf"):
        jaxdyn.empirical_ntk(mlp_apply, bad, x1, x2)


# --------------------------------------------------------------------------- structured


def nets_mlp(depth, k, act, parameterization):
    """A jaxdyn.nets MLP 4 -> 12 x depth -> k with its params and inputs."""
    layers = []
    for i in range(depth):
        layers += [
            nets.Dense(12, W_std=1.4, b_std=0.1 + 0.1 * i, parameterization=parameterization),
            act(),
        ]
    layers.append(nets.Dense(k, W_std=1.2, b_std=0.3, parameterization=parameterization))
    init_fn, apply_fn, _ = nets.serial(*layers)
    _, params = init_fn(jax.random.PRNGKey(depth), (-1, 4))
    return apply_fn, params


def check_structured(mlp, depth, k, act, parameterization, cases):
    """method="structured" against the Jacobian method, for each (trace_axes, x2, batch_size)."""
    apply_fn, params = nets_mlp(depth, k, act, parameterization)
    _, x1, x2 = mlp
    ref = StackedNTK(apply_fn, params, x1, x2)  # one Jacobian compilation for every case
    for trace_axes, with_x2, batch_size in cases:
        k_s = jaxdyn.empirical_ntk(
            apply_fn,
            params,
            x1,
            x2 if with_x2 else None,
            trace_axes=trace_axes,
            method="structured",
            batch_size=batch_size,
        )
        want = ref(trace_axes, with_x2)
        assert k_s.shape == want.shape
        np.testing.assert_allclose(k_s, want, rtol=1e-12, atol=1e-12)


# The 8 of the 16 (depth, k, act, parameterization) networks with an even number of
# non-first values: a half fraction in which every pair of values of two axes occurs twice.
HALF_FRACTION = [
    (depth, k, act, parameterization)
    for depth in [1, 3]
    for k in [1, 3]
    for act in [nets.Relu, nets.Erf]
    for parameterization in ["ntk", "standard"]
    if ((depth == 3) + (k == 3) + (act is nets.Erf) + (parameterization == "standard")) % 2 == 0
]


@pytest.mark.parametrize("depth, k, act, parameterization", HALF_FRACTION)
def test_structured_equals_jacobian(mlp, depth, k, act, parameterization):
    """Half of the networks, each with 2 complementary (trace_axes, x2, batch_size) cases
    (every option flipped). The half fraction is 4 pairs of complementary networks (every
    axis flipped); both networks of a pair run the same 2 cases and the 4 pairs run all 8,
    so every case runs with both values of every network axis, and every network with both
    values of every option (the slow twin runs 16 networks x 8 cases)."""
    i = HALF_FRACTION.index((depth, k, act, parameterization))
    pair, cases = min(i, 7 - i), kernel_cases(3)  # cases[7 - j] is cases[j] flipped
    check_structured(mlp, depth, k, act, parameterization, [cases[pair], cases[7 - pair]])


@pytest.mark.slow
@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("act", [nets.Relu, nets.Erf])
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_structured_equals_jacobian_full_product(mlp, depth, k, act, parameterization):
    check_structured(mlp, depth, k, act, parameterization, kernel_cases(3))


_GROUP_REFS = {}


def _jacobian_groups(groups, x1, x2):
    """The Jacobian method's per-group kernels of nets_mlp(2, 3, Erf, "ntk"), once per grouping."""
    if groups not in _GROUP_REFS:
        apply_fn, params = nets_mlp(2, 3, nets.Erf, "ntk")
        _GROUP_REFS[groups] = StackedNTK(apply_fn, params, x1, x2, by_group=True, groups=groups)
    return _GROUP_REFS[groups]


GROUPINGS = [None, 2, lambda path: path[-1]]


def check_structured_groups(mlp, groups, batch_size, traces):
    apply_fn, params = nets_mlp(2, 3, nets.Erf, "ntk")
    _, x1, x2 = mlp
    for trace_axes in traces:
        parts = jaxdyn.ntk_by_group(
            apply_fn,
            params,
            x1,
            x2,
            groups=groups,
            trace_axes=trace_axes,
            method="structured",
            batch_size=batch_size,
        )
        ref = _jacobian_groups(groups, x1, x2).parts(trace_axes)
        assert list(parts) == list(ref)
        for name in ref:
            np.testing.assert_allclose(parts[name], ref[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("groups", GROUPINGS)
@pytest.mark.parametrize("batch_size", [None, 4])
def test_structured_groups_equal_jacobian_groups(mlp, groups, batch_size):
    """Default (per layer), per leaf and W-vs-b groupings all split the kernel exactly.
    Traced or full kernel alternating, so that each grouping and each batch size meets both
    (the slow twin checks both everywhere)."""
    traced = (GROUPINGS.index(groups) + (batch_size is None)) % 2 == 0
    check_structured_groups(mlp, groups, batch_size, [(-1,) if traced else ()])


@pytest.mark.slow
@pytest.mark.parametrize("groups", GROUPINGS)
@pytest.mark.parametrize("batch_size", [None, 4])
def test_structured_groups_equal_jacobian_groups_both_traces(mlp, groups, batch_size):
    check_structured_groups(mlp, groups, batch_size, [(-1,), ()])


def test_structured_nested_serial_flatten_and_no_bias():
    init_fn, apply_fn, _ = nets.serial(
        nets.Flatten(),
        nets.serial(nets.Dense(8, W_std=1.3, b_std=None), nets.Tanh()),
        nets.Identity(),
        nets.Dense(2, W_std=1.1, b_std=0.2, parameterization="standard"),
    )
    _, params = init_fn(jax.random.PRNGKey(0), (-1, 2, 3, 1))
    x1 = jax.random.normal(jax.random.PRNGKey(1), (5, 2, 3, 1))
    x2 = jax.random.normal(jax.random.PRNGKey(2), (4, 2, 3, 1))
    assert jaxdyn.ntk_cost(apply_fn, params, x1, x2).method == "structured"
    stacked = StackedNTK(apply_fn, params, x1, x2)  # method="jacobian" on [x1; x2]
    for trace_axes in [(-1,), ()]:
        k_s = jaxdyn.empirical_ntk(
            apply_fn, params, x1, x2, trace_axes=trace_axes, method="structured"
        )
        np.testing.assert_allclose(k_s, stacked(trace_axes), rtol=1e-12, atol=1e-12)


def test_structured_float32():
    apply_fn, params = nets_mlp(2, 3, nets.Relu, "ntk")
    p32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), params)
    x = jax.random.normal(jax.random.PRNGKey(1), (6, 4), jnp.float32)
    k = jaxdyn.empirical_ntk(apply_fn, p32, x, method="structured")
    assert k.dtype == jnp.float32
    ref = jaxdyn.empirical_ntk(apply_fn, params, x.astype(jnp.float64), method="jacobian")
    np.testing.assert_allclose(k, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", [1, 2, 3])
def test_structured_matches_neural_tangents(nt_refs, impl):
    _, apply_fn, _ = nets.serial(
        nets.Dense(64, W_std=1.5, b_std=0.05),
        nets.Relu(),
        nets.Dense(64, W_std=1.5, b_std=0.05),
        nets.Erf(),
        nets.Dense(3, W_std=1.5, b_std=0.05),
    )
    flat = [jnp.asarray(nt_refs[f"emp_param_{i}"]) for i in range(6)]
    # stax biases are (1, out), nets' are (out,); activations have params ()
    dense = [(flat[2 * l], flat[2 * l + 1].reshape(-1)) for l in range(3)]
    params = (dense[0], (), dense[1], (), dense[2])
    x1, x2 = nt_refs["x1"], nt_refs["x2"]
    np.testing.assert_allclose(apply_fn(params, x1), nt_refs["emp_f_x1"], rtol=1e-12)
    k = jaxdyn.empirical_ntk(apply_fn, params, x2, x1, method="structured")
    np.testing.assert_allclose(k, nt_refs[f"emp_ntk_trace_impl{impl}_21"], rtol=1e-10, atol=1e-10)
    full = jaxdyn.empirical_ntk(
        apply_fn, params, x2, x1, trace_axes=(), method="structured", batch_size=4
    )
    np.testing.assert_allclose(full, nt_refs["emp_ntk_full_21"], rtol=1e-10, atol=1e-10)


def test_auto_picks_structured_only_for_structured_networks(mlp):
    params, x1, x2 = mlp
    apply_fn, nparams = nets_mlp(2, 3, nets.Relu, "ntk")
    cost = jaxdyn.ntk_cost(apply_fn, nparams, x1, x2)
    assert cost.method == "structured" and cost.reason.startswith("structured: the model has")
    assert set(cost.flops) == set(cost.memory_bytes) == {"jacobian", "ntvp", "structured"}
    assert cost.memory_bytes["structured"] < cost.memory_bytes["jacobian"]
    # A wrapped apply_fn and a plain function have no structure; a residual network has
    # (parallel branches, FanOut/FanInSum), and its structured kernel is the Jacobian one.
    wrapped = lambda p, x: apply_fn(p, x)
    assert jaxdyn.ntk_cost(wrapped, nparams, x1, x2).method in ("jacobian", "ntvp")
    assert jaxdyn.ntk_cost(mlp_apply, params, x1, x2).method in ("jacobian", "ntvp")
    assert "structured" not in jaxdyn.ntk_cost(mlp_apply, params, x1, x2).flops
    init_fn, conv_apply, _ = nets.serial(
        nets.Conv(2, (2, 2)), nets.Relu(), nets.Flatten(), nets.Dense(1)
    )
    _, cparams = init_fn(jax.random.PRNGKey(0), (-1, 3, 3, 1))
    xc = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, 1))
    assert jaxdyn.ntk_cost(conv_apply, cparams, xc).method == "structured"
    res_init, res_apply, _ = nets.serial(
        nets.Dense(4),
        nets.FanOut(2),
        nets.parallel(nets.Dense(4), nets.Identity()),
        nets.FanInSum(),
    )
    assert jaxdyn.structure.get(res_apply) is not None
    _, rparams = res_init(jax.random.PRNGKey(2), (-1, x1.shape[1]))
    np.testing.assert_allclose(
        jaxdyn.empirical_ntk(res_apply, rparams, x1, x2, method="structured"),
        jaxdyn.empirical_ntk(res_apply, rparams, x1, x2, method="jacobian"),
        rtol=1e-12,
        atol=1e-12,
    )
    # auto on a Dense network gives the structured kernel
    np.testing.assert_allclose(
        jaxdyn.empirical_ntk(apply_fn, nparams, x1, x2),
        jaxdyn.empirical_ntk(apply_fn, nparams, x1, x2, method="jacobian"),
        rtol=1e-12,
        atol=1e-12,
    )


def test_structured_needs_a_dense_network(mlp):
    _, x1, x2 = mlp
    with pytest.raises(ValueError, match="method='structured'.*linear_structure"):
        jaxdyn.ntk_fn(mlp_apply, method="structured")
    apply_fn, nparams = nets_mlp(1, 1, nets.Relu, "ntk")
    with pytest.raises(ValueError, match="structured"):
        jaxdyn.empirical_ntk(lambda p, x: apply_fn(p, x), nparams, x1, x2, method="structured")
