"""Test helpers in one place: hand-written reference models and NTKs (independent of jaxdyn),
and the stacked-input reference kernel that keeps the kernel tests to few compilations.

`tests/reference_models.py` re-exports the model helpers under their old import path.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf

import jaxdyn

# --------------------------------------------------------------------------- hand-written models


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
        params.append(
            (jax.random.normal(k1, (d_in, d_out), dtype), jax.random.normal(k2, (d_out,), dtype))
        )
    return params


def mlp_apply(params, x, act=jnp.tanh):
    h = x
    for i, (w, b) in enumerate(params):
        h = h @ w / float(np.sqrt(w.shape[0])) + 0.1 * b[None, :]  # python float: keeps dtype
        if i < len(params) - 1:
            h = act(h)
    return h


def hand_mlp(weights, x):
    """Two-layer relu MLP in plain jnp; weights = (W0, b0, W1, b1)."""
    w0, b0, w1, b1 = weights
    h = jax.nn.relu(x @ w0 + b0[None, :])
    return h @ w1 + b1[None, :]


# --------------------------------------------------------------------------- explicit NTKs


# jitted: run op by op, the Jacobians compile every primitive separately for each new shape
# (seconds); as one program they compile once, in a fraction of that.
@functools.partial(jax.jit, static_argnames=("apply_fn", "trace"))
def explicit_ntk(apply_fn, params, x1, x2, trace=True):
    """J(x1) J(x2)^T from full-batch `jax.jacrev`, flattened: the textbook definition.

    Returns `(n1, n2)` (mean over the k outputs) when `trace`, else `(n1, n2, k, k)`."""

    def jac(x):
        j = jax.jacrev(lambda p: apply_fn(p, x))(params)
        n, k = apply_fn(params, x).shape
        leaves = jax.tree_util.tree_leaves(j)
        return jnp.concatenate([leaf.reshape(n, k, -1) for leaf in leaves], axis=-1)

    j1, j2 = jac(x1), jac(x2)
    full = jnp.einsum("iap,jbp->ijab", j1, j2)
    return jnp.einsum("ijaa->ij", full) / full.shape[-1] if trace else full


def flat_jacobian_ntk(apply_fn, params, x):
    """K = J J^T with J (n*k, P) from a jitted `jax.jacrev`, flattened over all param leaves."""
    jac = jax.jit(jax.jacrev(apply_fn))(params, x)  # leaves (n, k, *leaf_shape)
    n, k = apply_fn(params, x).shape
    j = jnp.concatenate(
        [leaf.reshape(n * k, -1) for leaf in jax.tree_util.tree_leaves(jac)], axis=1
    )
    return j @ j.T


def traced_jacobian_ntk(apply_fn, params, x):
    """Traced NTK `J J^T / k` from a jitted `jax.jacrev` over all parameter leaves, in numpy."""
    jac = jax.tree_util.tree_leaves(jax.jit(jax.jacrev(apply_fn))(params, x))  # [(n, k, *leaf)]
    n, k = jac[0].shape[:2]
    j = np.concatenate([np.asarray(leaf).reshape(n, k, -1) for leaf in jac], axis=2)
    return np.einsum("iap,jap->ij", j, j) / k


def hand_ntk(weights, x):
    """NTK of hand_mlp by forward-mode Jacobian (independent of the adapters), (n*k, n*k)."""
    jac = jax.jit(jax.jacfwd(hand_mlp))(tuple(weights), x)
    n, k = x.shape[0], jac[0].shape[1]
    j = jnp.concatenate([leaf.reshape(n * k, -1) for leaf in jac], axis=1)
    return j @ j.T


# --------------------------------------------------------------------------- stacked reference


class StackedNTK:
    """Reference kernels of `x1` (n1 rows) against `x2` or itself, from ONE Jacobian NTK.

    `jaxdyn.empirical_ntk(..., method="jacobian", trace_axes=())` (or, `by_group`,
    `ntk_by_group` with `groups`) of the stacked inputs `[x1; x2]` is one compilation; every
    (trace_axes, x2 or None) reference the kernel tests need is a slice of it, traced in
    numpy. A kernel entry is a per-pair contraction `J(a) J(b)^T`, so the slice equals the
    kernel of the two parts to rounding. Outputs must be `(n, k)`; `trace_axes` is `(-1,)` or
    `()`. (The Jacobian method itself is checked against `explicit_ntk` in tests/test_ntk.py.)
    """

    def __init__(self, apply_fn, params, x1, x2=None, *, by_group=False, groups=None):
        self.n1, self.has_x2 = x1.shape[0], x2 is not None
        xs = x1 if x2 is None else jnp.concatenate([x1, x2])
        if not by_group:
            self.full = {
                "all": np.asarray(
                    jaxdyn.empirical_ntk(apply_fn, params, xs, trace_axes=(), method="jacobian")
                )
            }
        else:
            self.full = {
                name: np.asarray(k)
                for name, k in jaxdyn.ntk_by_group(
                    apply_fn, params, xs, groups=groups, trace_axes=(), method="jacobian"
                ).items()
            }

    def parts(self, trace_axes, with_x2=True, rows=None):
        """`{group: kernel}` of x1 (its first `rows` rows, default all) against x2 (`with_x2`)
        or against itself: `(rows, n2 or rows)` traced, `(rows, n2 or rows, k, k)` for `()`."""
        trace_axes = tuple(trace_axes)
        if trace_axes not in ((-1,), ()):
            raise ValueError(f"`trace_axes` must be (-1,) or (); got {trace_axes!r}.")
        if with_x2 and not self.has_x2:
            raise ValueError("`with_x2` needs the StackedNTK built with an x2.")
        r = self.n1 if rows is None else rows
        out = {}
        for name, k in self.full.items():
            block = k[:r, self.n1 :] if with_x2 else k[:r, :r]
            traced = trace_axes != ()
            out[name] = np.einsum("ijaa->ij", block) / block.shape[-1] if traced else block
        return out

    def __call__(self, trace_axes, with_x2=True, rows=None):
        """The kernel (the sum over groups), as `parts`."""
        return sum(self.parts(trace_axes, with_x2, rows).values())


# (trace_axes, with x2, batch_size) of the kernel tests. FULL is the product (8 cases); by
# default the tests run HALF of it: an orthogonal array of 4 cases (each value of each axis
# twice, each pair of values of two axes once), alternating with the other half between
# parametrizations so that every case of FULL is still run by the default suite.
def kernel_cases(batch_size, half=None):
    """`[(trace_axes, with_x2, batch_size or None)]`: all 8 for `half=None`, else the 4 with
    an even (`half=0`) or odd (`half=1`) number of non-default values."""
    full = [(t, w, b) for t in ((-1,), ()) for w in (True, False) for b in (None, batch_size)]
    if half is None:
        return full
    odd = lambda c: (int(c[0] == ()) + int(not c[1]) + int(c[2] is not None)) % 2  # noqa: E731
    return [c for c in full if odd(c) == half]
