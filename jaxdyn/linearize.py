"""Taylor expansions of a model in its parameters: `linearize` and `taylor_expand`.

A model is a pure function `apply_fn(params, x, **kwargs)`. Expanding it around `params0`
in the displacement `delta = params - params0` gives the models that kernel theory
studies: degree 1 is the linearized network of Lee et al. (2019), whose training under
MSE is solved in closed form by `jaxdyn.dynamics.mse`; degree 2 measures how far training
leaves the linear regime.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax

from jaxdyn._checks import (
    _NOT_INPUT_ERRORS,
    _abstract,
    check_array,
    check_finite,
    check_int,
    check_params,
    model_error,
)

PyTree = Any
ApplyFn = Callable[..., Any]

__all__ = ["linearize", "taylor_expand"]


def _tree_sub(a: PyTree, b: PyTree) -> PyTree:
    return jax.tree_util.tree_map(lambda u, v: u - v, a, b)


def _directional_derivatives(
    f: Callable[[PyTree], Any], params: PyTree, direction: PyTree, degree: int
) -> tuple:
    """Returns `(f(p), D f(p)[d], D^2 f(p)[d, d], ..., D^degree f(p)[d, ..., d])`.

    Nested `jax.jvp`: the jvp of the list of derivatives up to order m - 1 contributes, in
    its tangent output, the order-m derivative. Cost grows like 2^degree forward passes,
    which is what degree <= 3 needs.
    """
    if degree == 0:
        return (f(params),)
    primals, tangents = jax.jvp(
        lambda p: _directional_derivatives(f, p, direction, degree - 1), (params,), (direction,)
    )
    return tuple(primals) + (tangents[-1],)


def _expansion(apply_fn: ApplyFn, params0: PyTree, degree: int, name: str) -> ApplyFn:
    """`apply_fn` expanded to `degree` around `params0`, with the checks both public
    functions share: `params` must fit `params0` (structure and leaf shapes, also under jit)
    and be finite (when concrete); a model that refuses `x` is reported in the user's terms."""
    if not callable(apply_fn):
        raise TypeError(
            f"`{name}(apply_fn)` must be callable `apply_fn(params, x)`; got "
            f"{type(apply_fn).__name__}."
        )
    check_finite(f"{name}(params0)", params0)

    def expanded(params: PyTree, *args, **kwargs):
        check_params("params", params, f"{name}(params0)", params0)
        check_finite("params", params)
        if args and hasattr(args[0], "dtype"):
            check_array("x", args[0])  # a real array (jaxdyn is real-valued)
        delta = _tree_sub(params, params0)
        f = lambda p: apply_fn(p, *args, **kwargs)  # noqa: E731
        try:
            terms = _directional_derivatives(f, params0, delta, degree)
        except _NOT_INPUT_ERRORS:
            raise
        except Exception as error:  # noqa: BLE001 - re-raised below unless the model refuses x
            # Diagnose only on failure, so a working call pays nothing: if the model itself
            # refuses (params0, x), say so naming `x`; any other failure is re-raised as is.
            try:
                jax.eval_shape(f, _abstract(params0))
            except Exception:  # noqa: BLE001
                raise model_error(
                    error, "x", args[0] if args else None, "params0", params=params0
                ) from error
            raise
        out = terms[0]
        for j, term in enumerate(terms[1:], start=1):
            out = jax.tree_util.tree_map(lambda o, t, j=j: o + t / math.factorial(j), out, term)
        return out

    return expanded


def taylor_expand(apply_fn: ApplyFn, params0: PyTree, degree: int) -> ApplyFn:
    """Taylor expansion of `apply_fn` in its parameters around `params0`.

    Args:
      apply_fn: model `apply_fn(params, x, **kwargs) -> outputs` (any PyTree of arrays).
      params0: the expansion point, a PyTree like the model's parameters.
      degree: order of the expansion, an int >= 0 (0: constant `apply_fn(params0, x)`;
        1: the linearized model; 2: adds the curvature term `1/2 D^2 f[delta, delta]`).

    Returns:
      `apply_taylor(params, x, **kwargs)`, with the same signature and output structure as
      `apply_fn`, equal to `sum_{j<=degree} D^j f(params0)[delta]^j / j!` with
      `delta = params - params0`. It is exact at `params0` and jit/vmap/grad-able; its
      checks are `linearize`'s.

    Example:
      >>> f2 = taylor_expand(apply_fn, params0, degree=2)
      >>> f2(params, x)  # error to apply_fn(params, x) shrinks like ||params - params0||^3
    """
    degree = check_int("taylor_expand(degree)", degree, minimum=0)
    return _expansion(apply_fn, params0, degree, "taylor_expand")


def linearize(apply_fn: ApplyFn, params0: PyTree) -> ApplyFn:
    """First-order Taylor model of `apply_fn` around `params0`, built on `jax.jvp`.

    `apply_lin(params, x) = f(params0, x) + J(params0, x) (params - params0)`, computed with
    one forward-mode pass and no Jacobian in memory. Training it by gradient descent on the
    MSE loss is what `jaxdyn.dynamics.mse` predicts in closed form.

    Args:
      apply_fn: model `apply_fn(params, x, **kwargs) -> outputs`.
      params0: the linearization point (usually the initial parameters).

    Returns:
      `apply_lin(params, x, **kwargs)` with the same signature and outputs as `apply_fn`;
      jit/vmap/grad-able.

    Raises:
      ValueError: NaN/Inf in `params0` (here) or in `params` (outside jit); `params` whose
        structure or leaf shapes differ from `params0`'s; an `x` the model refuses (named,
        with the model's error). TypeError: a complex `x`.

    Example:
      >>> f_lin = linearize(apply_fn, params0)
      >>> f_lin(params0, x)  # == apply_fn(params0, x)
    """
    return _expansion(apply_fn, params0, 1, "linearize")
