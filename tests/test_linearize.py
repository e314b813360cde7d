"""linearize / taylor_expand against neural-tangents, explicit Hessians and Taylor rates."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import init_mlp, mlp_apply, nt_delta, nt_mlp_apply, nt_mlp_params

import jaxdyn

add = lambda a, b: jax.tree_util.tree_map(lambda u, v: u + v, a, b)  # noqa: E731
scale = lambda s, a: jax.tree_util.tree_map(lambda u: s * u, a)  # noqa: E731


def test_linearize_matches_neural_tangents(nt_refs):
    params, delta = nt_mlp_params(nt_refs), nt_delta(nt_refs)
    f_lin = jaxdyn.linearize(nt_mlp_apply, params)
    moved = add(params, delta)
    np.testing.assert_allclose(
        f_lin(moved, nt_refs["x2"]), nt_refs["lin_f_x2"], rtol=1e-10, atol=1e-12
    )
    # and the true network at the displaced point agrees with the reference too
    np.testing.assert_allclose(
        nt_mlp_apply(moved, nt_refs["x2"]), nt_refs["true_f_x2_moved"], rtol=1e-10
    )


def test_linearize_exact_at_params0_and_for_linear_models():
    params = init_mlp(jax.random.PRNGKey(0), [3, 5, 2])
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    f_lin = jaxdyn.linearize(mlp_apply, params)
    # The jvp's primal pass is compiled separately from apply_fn, so XLA may fuse it
    # differently: equal up to one rounding of each output (~1e-16), not bit for bit.
    np.testing.assert_allclose(f_lin(params, x), mlp_apply(params, x), rtol=4e-16, atol=4e-16)
    linear = lambda p, x: x @ p["w"] + p["b"][None, :]  # noqa: E731
    p0 = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    p1 = {"w": jax.random.normal(jax.random.PRNGKey(2), (3, 2)), "b": jnp.arange(2.0)}
    np.testing.assert_allclose(jaxdyn.linearize(linear, p0)(p1, x), linear(p1, x), rtol=1e-14)


def test_linearize_equals_explicit_jacobian():
    params = init_mlp(jax.random.PRNGKey(0), [3, 6, 2])
    delta = scale(0.3, init_mlp(jax.random.PRNGKey(5), [3, 6, 2]))
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    jac = jax.jacrev(lambda p: mlp_apply(p, x))(params)
    ref = mlp_apply(params, x) + sum(
        jnp.tensordot(j, d, axes=d.ndim)
        for j, d in zip(jax.tree_util.tree_leaves(jac), jax.tree_util.tree_leaves(delta))
    )
    np.testing.assert_allclose(
        jaxdyn.linearize(mlp_apply, params)(add(params, delta), x), ref, rtol=1e-12
    )


def test_second_order_equals_explicit_hessian():
    params = init_mlp(jax.random.PRNGKey(0), [2, 4, 1])
    delta = scale(0.2, init_mlp(jax.random.PRNGKey(7), [2, 4, 1]))
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 2))
    flat0, unravel = jax.flatten_util.ravel_pytree(params)
    dflat, _ = jax.flatten_util.ravel_pytree(delta)
    f = lambda v: mlp_apply(unravel(v), x)[:, 0]  # noqa: E731
    hess = jax.jit(jax.hessian(f))(flat0)  # (n, P, P); jitted: op-by-op is slower
    jac = jax.jit(jax.jacfwd(f))(flat0)  # (n, P)
    ref = f(flat0) + jac @ dflat + 0.5 * jnp.einsum("npq,p,q->n", hess, dflat, dflat)
    f2 = jaxdyn.taylor_expand(mlp_apply, params, 2)
    np.testing.assert_allclose(f2(add(params, delta), x)[:, 0], ref, rtol=1e-12)


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_taylor_error_shrinks_at_order_degree_plus_one(degree):
    params = init_mlp(jax.random.PRNGKey(0), [3, 8, 2])
    direction = init_mlp(jax.random.PRNGKey(9), [3, 8, 2])
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 3))
    ft = jaxdyn.taylor_expand(mlp_apply, params, degree)
    eps = np.array([0.2, 0.1, 0.05, 0.025])
    err = [
        float(
            jnp.max(
                jnp.abs(
                    ft(add(params, scale(e, direction)), x)
                    - mlp_apply(add(params, scale(e, direction)), x)
                )
            )
        )
        for e in eps
    ]
    slope = np.polyfit(np.log(eps), np.log(err), 1)[0]
    assert abs(slope - (degree + 1)) < 0.25, (slope, err)


def test_degree_zero_and_one_agree_with_definitions():
    params = init_mlp(jax.random.PRNGKey(0), [3, 5, 2])
    p1 = add(params, scale(0.1, params))
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    np.testing.assert_array_equal(
        jaxdyn.taylor_expand(mlp_apply, params, 0)(p1, x), mlp_apply(params, x)
    )
    np.testing.assert_allclose(
        jaxdyn.taylor_expand(mlp_apply, params, 1)(p1, x),
        jaxdyn.linearize(mlp_apply, params)(p1, x),
        rtol=1e-14,
    )


def test_transforms():
    params = init_mlp(jax.random.PRNGKey(0), [3, 5, 2])
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    f_lin = jaxdyn.linearize(mlp_apply, params)
    stacked = jax.tree_util.tree_map(lambda a: jnp.stack([a, 1.1 * a]), params)
    out = jax.jit(jax.vmap(f_lin, in_axes=(0, None)))(stacked, x)
    np.testing.assert_allclose(out[1], f_lin(scale(1.1, params), x), rtol=1e-13)
    # gradient of the linear model's loss is J^T r, constant in params
    g = jax.grad(lambda p: jnp.sum(f_lin(p, x)))(params)
    g_true = jax.grad(lambda p: jnp.sum(mlp_apply(p, x)))(params)
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_true)):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_errors():
    params = init_mlp(jax.random.PRNGKey(0), [3, 5, 2])
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="degree"):
        jaxdyn.taylor_expand(mlp_apply, params, -1)
    with pytest.raises(TypeError, match="apply_fn"):
        jaxdyn.linearize(None, params)
    with pytest.raises(ValueError, match="structure"):
        jaxdyn.linearize(mlp_apply, params)(params[:1], x)
