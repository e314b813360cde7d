"""Matrix-free NTK: `ntk_vp_fn(apply_fn, params, x1, x2) -> v -> Theta(x1, x2) @ v`.

``Theta(x1, x2) v = J(x1) (J(x2)^T v)``: one vjp through the ``x2`` batch gives the parameter
cotangent ``J(x2)^T v`` (a PyTree like ``params``), one jvp through the ``x1`` batch pushes it to
the outputs. No kernel and no per-example Jacobian is ever formed, so a product costs about three
forward passes over ``n1 + n2`` examples and memory ``O(n k + params)`` plus the activations of one
block of ``batch_size`` examples (the vjp sums its blocks under ``lax.scan``, the jvp maps its
blocks under ``lax.map``).

The product is with the FULL kernel ``Theta[i, j, a, b] = <df_a(x1_i), df_b(x2_j)>``
(``trace_axes=()`` in `jaxdyn.empirical_ntk`): ``v`` is ``(n2, k)``, the result ``(n1, k)``, and
``(Theta v)[i, a] = sum_{j, b} Theta[i, j, a, b] v[j, b]``. That is the operator that moves the
outputs of a linearized network under gradient descent (`jaxdyn.dynamics.mse_matrix_free`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxdyn import batching
from jaxdyn._checks import check_batch_size, check_choice, check_inputs, describe, fail

__all__ = ["NTKVectorProduct", "ntk_vp_fn"]

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array], jax.Array]
_PRECISIONS = (None, "default", "high", "highest")


def _precision(precision):
    return (
        contextlib.nullcontext() if precision is None else jax.default_matmul_precision(precision)
    )


@functools.partial(jax.jit, static_argnames=("apply_fn", "b1", "b2", "precision"))
def _vp(apply_fn, params, x1, x2, v, *, b1, b2, precision):
    """``J(x1) J(x2)^T v`` for ``v (n2, k)``, blocks of ``b2`` rows (vjp) and ``b1`` rows (jvp)."""
    with _precision(precision):
        n2 = x2.shape[0]

        def cotangent(xb, vb):
            _, pullback = jax.vjp(lambda p: apply_fn(p, xb), params)
            return pullback(vb.astype(_out_dtype(apply_fn, params, xb)))[0]

        if b2 >= n2:
            tangent = cotangent(x2, v)
        else:
            # Padded rows (repeats of the last input) carry zero cotangent: they add nothing.
            xs = batching.blocks(x2, b2)
            vs = jnp.concatenate([v, jnp.zeros((-n2 % b2, *v.shape[1:]), v.dtype)])
            vs = vs.reshape(xs.shape[0], b2, *v.shape[1:])
            zero = jax.tree_util.tree_map(jnp.zeros_like, params)

            def add(acc, block):
                return jax.tree_util.tree_map(jnp.add, acc, cotangent(*block)), None

            tangent, _ = lax.scan(add, zero, (xs, vs))

        def push(xb):
            return jax.jvp(lambda p: apply_fn(p, xb), (params,), (tangent,))[1]

        return batching.map_rows(push, x1, b1)


def _out_dtype(apply_fn, params, x):
    return jax.eval_shape(apply_fn, params, x).dtype


@functools.partial(jax.jit, static_argnames=("apply_fn", "b", "precision"))
def _sum_sq_jacobian(apply_fn, params, x, *, b, precision):
    """``sum_i ||J(x_i)||_F^2 = trace Theta(x, x)``: per-example vjps of each output, blocked."""
    with _precision(precision):
        n = x.shape[0]

        def per_example(xi):
            f, pullback = jax.vjp(lambda p: apply_fn(p, xi[None])[0], params)
            basis = jnp.eye(f.shape[0], dtype=f.dtype)
            grads = jax.vmap(lambda e: pullback(e)[0])(basis)  # leaves (k, *leaf)
            return sum(jnp.sum(g**2) for g in jax.tree_util.tree_leaves(grads))

        xs = batching.blocks(x, b)
        weights = (jnp.arange(xs.shape[0] * b) < n).reshape(xs.shape[0], b)  # padding rows: 0

        def add(acc, block):
            xb, wb = block
            return acc + jnp.sum(jnp.where(wb, jax.vmap(per_example)(xb), 0.0)), None

        total, _ = lax.scan(add, jnp.zeros((), _out_dtype(apply_fn, params, x[:1])), (xs, weights))
        return total


class NTKVectorProduct:
    """``v (n2, k) -> Theta(x1, x2) @ v (n1, k)`` without forming Theta; build with `ntk_vp_fn`.

    Attributes:
      shape: ``(n1, n2, k)``.
    """

    def __init__(self, apply_fn, params, x1, x2, *, k, dtype, batch_size, precision):
        self._apply_fn, self._params = apply_fn, params
        self._x1, self._x2 = x1, x2
        n1, n2 = x1.shape[0], (x1 if x2 is None else x2).shape[0]
        self.shape = (n1, n2, k)
        self.dtype = dtype
        self._batch_size = batch_size
        self._precision = precision
        self._mean_diag = None

    @property
    def operands(self) -> tuple:
        """``(params, x1, x2)``: the arrays `apply` takes (x2 is x1 when not given)."""
        return (self._params, self._x1, self._x1 if self._x2 is None else self._x2)

    def apply(self, operands: tuple, v: jax.Array) -> jax.Array:
        """The product with explicit ``operands`` (see `operands`), so that solvers that jit a
        loop over products pass the arrays as arguments instead of baking them in as constants."""
        n1, n2, k = self.shape
        if getattr(v, "shape", None) is None or tuple(v.shape) != (n2, k):
            fail("NTKVectorProduct(v)", f"an array of shape (n2, k) = {(n2, k)}", describe(v))
        b = self._batch_size
        params, x1, x2 = operands
        return _vp(
            self._apply_fn,
            params,
            x1,
            x2,
            jnp.asarray(v),
            b1=n1 if b is None else b,
            b2=n2 if b is None else b,
            precision=self._precision,
        )

    def __call__(self, v: jax.Array) -> jax.Array:
        """``Theta(x1, x2) @ v``: ``v (n2, k)`` -> ``(n1, k)`` in the model's output dtype."""
        return self.apply(self.operands, v)

    def mean_diagonal(self) -> float:
        """``mean(diag(Theta))`` over the ``n k`` diagonal entries, exactly (x1 with itself only).

        ``trace Theta = sum_i ||J(x_i)||_F^2`` from per-example vjps, blocks of ``batch_size``
        examples (each holds ``batch_size * k`` parameter-sized gradients). The relative
        ``diag_reg`` of `jaxdyn.dynamics.mse_matrix_free` needs it, as in `jaxdyn.dynamics.mse`.
        """
        if self._x2 is not None:
            fail(
                "NTKVectorProduct.mean_diagonal()",
                "called on the kernel of x1 with itself (ntk_vp_fn(..., x2=None))",
                "an x1-x2 kernel",
            )
        if self._mean_diag is None:
            n, _, k = self.shape
            b = 16 if self._batch_size is None else self._batch_size
            total = _sum_sq_jacobian(
                self._apply_fn, self._params, self._x1, b=min(b, n), precision=self._precision
            )
            self._mean_diag = float(total) / (n * k)
        return self._mean_diag

    def __repr__(self) -> str:
        n1, n2, k = self.shape
        return f"NTKVectorProduct(n1={n1}, n2={n2}, k={k}, batch_size={self._batch_size})"


def ntk_vp_fn(
    apply_fn: ApplyFn,
    params: PyTree,
    x1: jax.Array,
    x2: jax.Array | None = None,
    *,
    batch_size: int | None = None,
    precision: str | None = "highest",
) -> NTKVectorProduct:
    """The matrix-free NTK ``v -> Theta(x1, x2) @ v`` of ``apply_fn`` at ``params``.

    Args:
      apply_fn: model ``apply_fn(params, x) -> (n, k)`` (examples independent of each other).
      params: parameters (any PyTree).
      x1: ``(n1, ...)`` inputs of the result; x2: ``(n2, ...)`` inputs of ``v`` (None: x1).
      batch_size: examples per block of the vjp / jvp (None: all at once). Bounds the activation
        memory to one block; the result does not depend on it beyond rounding.
      precision: matmul precision while multiplying (``"highest"`` by default, as `jaxdyn.ntk_fn`).

    Returns:
      An `NTKVectorProduct`: ``ntk_vp(v (n2, k)) -> (n1, k)``, jit-compiled on first use, equal to
      ``jnp.einsum("ijab,jb->ia", empirical_ntk(apply_fn, params, x1, x2, trace_axes=()), v)``.

    Example:
      >>> vp = jaxdyn.ntk_vp_fn(apply_fn, params, x_train)
      >>> w = vp(v)                  # (n, k), no (n, n, k, k) kernel in memory
    """
    if not callable(apply_fn):
        fail("ntk_vp_fn(apply_fn)", "callable `apply_fn(params, x)`", describe(apply_fn), TypeError)
    check_inputs(x1, x2)
    batch_size = check_batch_size("batch_size", batch_size)
    check_choice("precision", precision, _PRECISIONS)
    try:
        out = jax.eval_shape(apply_fn, params, x1)
    except Exception as error:  # noqa: BLE001 - a user's model: report it by name
        fail(
            "ntk_vp_fn(apply_fn)",
            f"a model accepting params and x1 of shape {tuple(x1.shape)}",
            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
            TypeError,
        )
    if not isinstance(out, jax.ShapeDtypeStruct) or out.ndim != 2:
        fail(
            "ntk_vp_fn(apply_fn)",
            "a model whose outputs are one (n, k) array",
            f"outputs {jax.tree_util.tree_map(lambda a: tuple(a.shape), out)}",
            TypeError,
        )
    x1 = jnp.asarray(x1)
    x2 = None if x2 is None else jnp.asarray(x2)
    return NTKVectorProduct(
        apply_fn,
        params,
        x1,
        x2,
        k=out.shape[1],
        dtype=np.dtype(out.dtype),
        batch_size=batch_size,
        precision=precision,
    )
