"""Small hand-written models shared by the tests (independent of jaxdyn)."""
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf


def nt_mlp_apply(params, x, w_std=1.5, b_std=0.05):
    """The refs' stax MLP: Dense(64)-Relu-Dense(64)-Erf-Dense(3), NTK parameterisation
    `z = W_std / sqrt(fan_in) * x @ W + b_std * b`. params: [(W0, b0), (W1, b1), (W2, b2)]."""
    acts = [jax.nn.relu, erf, lambda z: z]
    h = x
    for (w, b), act in zip(params, acts):
        h = act(w_std / np.sqrt(w.shape[0]) * h @ w + b_std * b)
    return h


def nt_mlp_params(refs):
    flat = [jnp.asarray(refs[f"emp_param_{i}"]) for i in range(6)]
    return [(flat[0], flat[1]), (flat[2], flat[3]), (flat[4], flat[5])]


def nt_delta(refs):
    flat = [jnp.asarray(refs[f"lin_delta_{i}"]) for i in range(6)]
    return [(flat[0], flat[1]), (flat[2], flat[3]), (flat[4], flat[5])]


def init_mlp(key, sizes, dtype=jnp.float64):
    """Random standard-normal MLP params [(W, b), ...] for `mlp_apply`."""
    params = []
    for d_in, d_out in zip(sizes[:-1], sizes[1:]):
        key, k1, k2 = jax.random.split(key, 3)
        params.append((jax.random.normal(k1, (d_in, d_out), dtype), jax.random.normal(k2, (d_out,), dtype)))
    return params


def mlp_apply(params, x, act=jnp.tanh):
    h = x
    for i, (w, b) in enumerate(params):
        h = h @ w / float(np.sqrt(w.shape[0])) + 0.1 * b[None, :]  # python float: keeps dtype
        if i < len(params) - 1:
            h = act(h)
    return h


def explicit_ntk(apply_fn, params, x1, x2, trace=True):
    """J(x1) J(x2)^T from full-batch `jax.jacrev`, flattened: the textbook definition."""
    def jac(x):
        j = jax.jacrev(lambda p: apply_fn(p, x))(params)
        n, k = apply_fn(params, x).shape
        return jnp.concatenate([leaf.reshape(n, k, -1) for leaf in jax.tree_util.tree_leaves(j)], axis=-1)
    j1, j2 = jac(x1), jac(x2)
    full = jnp.einsum("iap,jbp->ijab", j1, j2)
    return jnp.einsum("ijaa->ij", full) / full.shape[-1] if trace else full
