"""Structured NTK of Conv networks, memory-budgeted blocks, host assembly and a custom
`LinearStructure`; every kernel is checked against the per-example Jacobian contraction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import StackedNTK, kernel_cases

import jaxdyn
from jaxdyn import nets
from jaxdyn.structure import LinearLayer


def conv_net(padding, strides, b_std, parameterization, pool):
    head = [nets.GlobalAvgPool()] if pool else [nets.Flatten()]
    init_fn, apply_fn, _ = nets.serial(
        nets.Conv(
            3,
            (2, 3),
            strides=strides,
            padding=padding,
            W_std=1.3,
            b_std=b_std,
            parameterization=parameterization,
        ),
        nets.Erf(),
        nets.Conv(
            4, (3, 2), padding="SAME", W_std=1.2, b_std=0.2, parameterization=parameterization
        ),
        nets.Relu(),
        *head,
        nets.Dense(3, W_std=1.1, b_std=0.3, parameterization=parameterization),
    )
    _, params = init_fn(jax.random.PRNGKey(3), (-1, 6, 5, 2))
    return apply_fn, params


CONV_CASES = [
    ("VALID", (1, 1), 0.1, "ntk", False),
    ("SAME", (2, 1), None, "ntk", True),
    ("VALID", (1, 2), 0.0, "standard", False),
]


def check_structured_conv(padding, strides, b_std, parameterization, pool, cases):
    """The structured kernel for each (trace_axes, with x2, batch_size) case, and the
    per-layer parts, against the per-example Jacobian contraction."""
    apply_fn, params = conv_net(padding, strides, b_std, parameterization, pool)
    x1 = jax.random.normal(jax.random.PRNGKey(1), (5, 6, 5, 2))
    x2 = jax.random.normal(jax.random.PRNGKey(2), (4, 6, 5, 2))
    assert jaxdyn.ntk_cost(apply_fn, params, x1, x2).method == "structured"
    ref = StackedNTK(apply_fn, params, x1, x2, by_group=True)  # one compilation for all cases
    for trace_axes, with_x2, batch_size in cases:
        k = jaxdyn.empirical_ntk(
            apply_fn,
            params,
            x1,
            x2 if with_x2 else None,
            trace_axes=trace_axes,
            method="structured",
            batch_size=batch_size,
        )
        np.testing.assert_allclose(k, ref(trace_axes, with_x2), rtol=1e-12, atol=1e-12)
    parts = jaxdyn.ntk_by_group(apply_fn, params, x1, x2, method="structured")
    ref_parts = ref.parts((-1,))
    assert list(parts) == list(ref_parts)
    for name in ref_parts:
        np.testing.assert_allclose(parts[name], ref_parts[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "padding, strides, b_std, parameterization, pool",
    # the first case is the slowest (~7 s) and its whole product runs in the slow twin
    [pytest.param(*CONV_CASES[0], marks=pytest.mark.slow), *CONV_CASES[1:]],
)
def test_structured_conv_equals_jacobian(padding, strides, b_std, parameterization, pool):
    """Half of the (trace_axes, x2, batch_size) product per network, the halves alternating
    (the slow twin below runs the whole product for every network)."""
    case = (padding, strides, b_std, parameterization, pool)
    check_structured_conv(*case, kernel_cases(2, half=CONV_CASES.index(case) % 2))


@pytest.mark.slow
@pytest.mark.parametrize("padding, strides, b_std, parameterization, pool", CONV_CASES)
def test_structured_conv_equals_jacobian_full_product(
    padding, strides, b_std, parameterization, pool
):
    check_structured_conv(padding, strides, b_std, parameterization, pool, kernel_cases(2))


def mlp(n=37):
    init_fn, apply_fn, _ = nets.serial(
        nets.Dense(16, W_std=1.4, b_std=0.1),
        nets.Relu(),
        nets.Dense(16, W_std=1.4, b_std=0.1),
        nets.Tanh(),
        nets.Dense(3, W_std=1.2, b_std=0.2),
    )
    _, params = init_fn(jax.random.PRNGKey(0), (-1, 5))
    x = jax.random.normal(jax.random.PRNGKey(1), (n, 5))
    return apply_fn, params, x


@pytest.fixture(scope="module")
def mlp_ref():
    """The MLP, x (37 rows), x2 (29 rows) and their per-layer Jacobian kernels (one
    compilation shared by the budget and symmetric-Gram tests)."""
    apply_fn, params, x = mlp()
    x2 = x[:29] + 0.5
    return apply_fn, params, x, x2, StackedNTK(apply_fn, params, x, x2, by_group=True)


@pytest.mark.parametrize("method", ["structured", "jacobian", "ntvp"])
def test_budget_chooses_blocks_and_host_assembly(mlp_ref, method):
    apply_fn, params, x, x2, stacked = mlp_ref
    ref = stacked((), with_x2=True)
    # Budgets that force ever smaller blocks, then a result bigger than the budget.
    full = jaxdyn.ntk_cost(apply_fn, params, x, x2, trace_axes=()).memory_bytes[method]
    result_bytes = 37 * 29 * 9 * 8
    for budget in [full / 3, 3 * result_bytes, result_bytes]:
        cost = jaxdyn.ntk_cost(apply_fn, params, x, x2, trace_axes=(), memory_budget=budget)
        fn = jaxdyn.ntk_fn(apply_fn, method=method, trace_axes=(), memory_budget=budget)
        k = fn(x, x2, params)
        assert isinstance(k, np.ndarray) == cost.on_host == (result_bytes > budget / 2)
        assert cost.block_shape[0] < 37
        np.testing.assert_allclose(k, ref, rtol=1e-12, atol=1e-12)
    k = jaxdyn.ntk_fn(apply_fn, method=method, memory_budget=result_bytes / 9)(x, None, params)
    assert isinstance(k, np.ndarray) and k.shape == (37, 37)
    # the traced reference: the mean over the diagonal output pairs of the full Jacobian kernel
    np.testing.assert_allclose(k, stacked((-1,), with_x2=False), rtol=1e-12, atol=1e-12)


def test_host_assembly_reports_nan():
    apply_fn, params, x = mlp()
    bad = jax.tree_util.tree_map(lambda a: a, params)
    bad = (bad[0], bad[1], ((bad[2][0].at[0, 0].set(jnp.inf)), bad[2][1]), *bad[3:])
    with pytest.raises(ValueError, match="NaN/Inf"):
        jaxdyn.ntk_fn(apply_fn, memory_budget=100.0)(x, None, bad)


class DenseTwoLayer:
    """A hand-written LinearStructure for `y = tanh(x W1 + b1) W2 / 2` (no bias on W2)."""

    def __init__(self, cover_all=True):
        self.cover_all = cover_all

    def layers(self, params):
        # leaves of {"W1", "W2", "b1"} in sorted-key order: W1=0, W2=1, b1=2
        return [
            LinearLayer(0, 2 if self.cover_all else None, 1.0, 1.0),
            LinearLayer(1, None, 0.5, 0.0),
        ]

    def apply(self, params, x, tap):
        h = x
        z = tap(0, h, h @ params["W1"] + params["b1"][None, :])
        h = jnp.tanh(z)
        return tap(1, h, 0.5 * (h @ params["W2"]))


def custom_model(cover_all=True):
    def apply_fn(params, x):
        return 0.5 * (jnp.tanh(x @ params["W1"] + params["b1"][None, :]) @ params["W2"])

    apply_fn.linear_structure = DenseTwoLayer(cover_all)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    params = {
        "W1": jax.random.normal(keys[0], (4, 7)),
        "b1": jax.random.normal(keys[1], (7,)),
        "W2": jax.random.normal(keys[2], (7, 2)),
    }
    return apply_fn, params


def test_custom_linear_structure():
    apply_fn, params = custom_model()
    x = jax.random.normal(jax.random.PRNGKey(5), (6, 4))
    assert jaxdyn.structure.get(apply_fn) is apply_fn.linear_structure
    stacked = StackedNTK(apply_fn, params, x)  # method="jacobian", traced in numpy
    for trace_axes in [(-1,), ()]:
        np.testing.assert_allclose(
            jaxdyn.empirical_ntk(apply_fn, params, x, method="structured", trace_axes=trace_axes),
            stacked(trace_axes, with_x2=False),
            rtol=1e-12,
            atol=1e-12,
        )


def test_structure_that_misses_a_leaf_is_refused():
    apply_fn, params = custom_model(cover_all=False)
    x = jax.random.normal(jax.random.PRNGKey(5), (6, 4))
    with pytest.raises(ValueError, match="every leaf must belong to exactly one layer"):
        jaxdyn.empirical_ntk(apply_fn, params, x, method="structured")
    assert jaxdyn.ntk_cost(apply_fn, params, x).method in ("jacobian", "ntvp")
    np.testing.assert_allclose(
        jaxdyn.empirical_ntk(apply_fn, params, x),
        jaxdyn.empirical_ntk(apply_fn, params, x, method="jacobian"),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize(
    "devices, exc", [("some", ValueError), (3, TypeError), ([], TypeError), (["cpu"], TypeError)]
)
def test_bad_devices(devices, exc):
    apply_fn, _, _ = mlp(4)
    with pytest.raises(exc, match="devices"):
        jaxdyn.ntk_fn(apply_fn, devices=devices)


@pytest.mark.parametrize("n, batch_size", [(13, None), (16, 4), (9, 2)])
def test_symmetric_gram_from_upper_blocks(monkeypatch, mlp_ref, n, batch_size):
    """For x2 = x1 and large n, only blocks i <= j are computed; forced here on small n."""
    monkeypatch.setattr("jaxdyn._ntk_structured.SYMMETRIC_MIN_N", 1)
    apply_fn, params, x_all, _, stacked = mlp_ref
    x = x_all[:n]
    for trace_axes in [(-1,), ()]:
        ref_parts = stacked.parts(trace_axes, with_x2=False, rows=n)  # Jacobian method, per layer
        parts = jaxdyn.ntk_by_group_fn(
            apply_fn, method="structured", trace_axes=trace_axes, batch_size=batch_size
        )(x, None, params)
        np.testing.assert_allclose(
            sum(parts.values()), sum(ref_parts.values()), rtol=1e-12, atol=1e-12
        )
        assert list(parts) == list(ref_parts)
        for name in ref_parts:
            np.testing.assert_allclose(parts[name], ref_parts[name], rtol=1e-12, atol=1e-12)
