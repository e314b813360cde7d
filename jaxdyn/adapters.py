"""Adapters that turn common model definitions into `(apply_fn, params)`.

jaxdyn's core works with a model given as a pure function `apply_fn(params, x) -> outputs` of
shape `(n, k)`, where `params` is any PyTree of arrays. This module converts the usual ways of
writing a network into that form, so no glue code is needed:

* `from_linen`: a `flax.linen.Module`;
* `from_nnx`: a `flax.nnx.Module`;
* `from_stax`: a neural-tangents-style `(init_fn, apply_fn[, kernel_fn])`;
* `as_model`: dispatches on the type of its first argument.

Flax models made only of Dense (linen) / Linear (nnx) layers also get a `linear_structure`
(`jaxdyn.structure`) for the fast structured NTK; how it is found lives in the private
`jaxdyn._flax_structure`.

Every returned `apply_fn` is pure: it depends only on `(params, x)` and on state frozen at
adaptation time, so it can be used under `jax.jit`, `jax.jvp`, `jax.vmap`, `jax.jacrev` and
friends with respect to `params`.

Flax is imported lazily, inside the functions that need it, so that `import jaxdyn` stays
fast. (This module was `jaxdyn.models` until networks and adapters were told apart by file
name; `jaxdyn.models` still re-exports it.)

Example:
  >>> import jax, jax.numpy as jnp
  >>> import flax.linen as nn
  >>> from jaxdyn.adapters import as_model
  >>> apply_fn, params = as_model(nn.Dense(3), jax.random.key(0), jnp.ones((2, 4)))
  >>> apply_fn(params, jnp.ones((5, 4))).shape
  (5, 3)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxdyn._checks import describe, fail
from jaxdyn._flax_structure import find_structure, linen_runner, nnx_runner

__all__ = [
    "ApplyFn",
    "PyTree",
    "as_model",
    "from_linen",
    "from_nnx",
    "from_stax",
]

PyTree = Any
"""Any JAX PyTree (nested tuples/lists/dicts of arrays)."""

ApplyFn = Callable[[PyTree, jax.Array], jax.Array]
"""A pure model `apply_fn(params, x) -> outputs`, typically `(n, d) -> (n, k)`."""


def _kind(obj: Any) -> str:
    """`obj` for an error message, by its type: "an object of type LinenMLP"."""
    return f"an object of type {type(obj).__qualname__}"


def _is_prng_key(obj: Any) -> bool:
    """True for a typed key (`jax.random.key`) or a raw uint32 key (`jax.random.PRNGKey`)."""
    if not isinstance(obj, jax.Array):
        return False
    if jnp.issubdtype(obj.dtype, jax.dtypes.prng_key):
        return obj.ndim == 0
    return obj.dtype == jnp.uint32 and obj.ndim == 1


# ----------------------------------------------------------------------------
# flax.linen
# ----------------------------------------------------------------------------


def from_linen(
    module: Any,
    key_or_variables: jax.Array | Mapping[str, Any],
    x_example: jax.Array | None = None,
    *,
    method: Callable[..., Any] | str | None = None,
    **apply_kwargs: Any,
) -> tuple[ApplyFn, PyTree]:
    """Adapts a `flax.linen.Module` to `(apply_fn, params)`.

    Either initialises the module with `module.init(key, x_example)` or takes an existing
    variables dict such as `{'params': ..., 'batch_stats': ...}`. Only the `'params'`
    collection is returned as trainable `params`; every other collection (`batch_stats`, ...)
    is closed over and held fixed. The module is always applied without mutable collections,
    i.e. in inference mode: pass the module's own switch through `apply_kwargs` (for example
    `train=False` or `deterministic=True`) so that layers such as `nn.BatchNorm` and
    `nn.Dropout` do not try to update state or draw randomness. `apply_kwargs` and `method`
    are used for `module.init` as well.

    Precision of batch statistics: flax keeps `batch_stats` (`nn.BatchNorm`'s running
    `mean`/`var`) in float32 whatever `param_dtype` says, so even under `jax_enable_x64` with
    float64 parameters and inputs the normalisation is float32 arithmetic (relative
    differences ~1e-7). For a float64 model end to end, cast the stats before adapting:
    `variables = {**variables, 'batch_stats': jax.tree_util.tree_map(lambda a:
    a.astype(jnp.float64), variables['batch_stats'])}` and pass `variables` as
    `key_or_variables`.

    Linear structure: if every parameter is the `kernel`/`bias` of exactly one call of a
    standard `nn.Dense` (no custom `dot_general` / `promote_dtype`) on a 2-D input `(n,
    fan_in)`, with only parameter-free, per-example code in between (activations, reshapes,
    ...), `apply_fn` gets a `linear_structure` attribute (`jaxdyn.structure`) and
    `jaxdyn.empirical_ntk` can use its fast `method="structured"`. It is found at adaptation
    time by an abstract trace under `flax.linen.intercept_methods`; models that do not qualify
    (Conv, LayerNorm, Embed, a Dense called twice, Dense on 3-D inputs, ...) simply do not get
    the attribute and use the generic NTK methods.

    Args:
      module: a `flax.linen.Module`.
      key_or_variables: a PRNG key (`jax.random.key` or `jax.random.PRNGKey`) used with
        `x_example` to initialise the module, or a variables mapping with a `'params'`
        collection (as returned by `module.init`).
      x_example: example input, e.g. shape `(n, d)`; required with a key. With variables it
        is optional and only used to find the linear structure (above); without it, inputs
        `(2, fan_in)` are tried for the fan-ins of the Dense kernels.
      method: optional method (callable or name) to apply instead of `__call__`, passed to
        `module.init` and `module.apply`.
      **apply_kwargs: extra keyword arguments for every `module.apply` call.

    Returns:
      `(apply_fn, params)` where `apply_fn(params, x)` calls `module.apply({'params': params,
      **rest}, x, method=method, **apply_kwargs)` and `params` is the `'params'` collection as
      a PyTree.

    Raises:
      TypeError: if `module` is not a linen Module, or `key_or_variables` is neither a PRNG
        key nor a mapping.
      ValueError: if a key is given without `x_example`, or the variables have no `'params'`
        collection.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import flax.linen as nn
      >>> apply_fn, params = from_linen(nn.Dense(2), jax.random.key(0), jnp.ones((1, 3)))
      >>> apply_fn(params, jnp.ones((4, 3))).shape
      (4, 2)
    """
    import flax.core
    import flax.linen as nn

    if not isinstance(module, nn.Module):
        fail("from_linen(module)", "a flax.linen.Module", _kind(module), TypeError)

    if isinstance(key_or_variables, Mapping):
        variables = key_or_variables
    elif _is_prng_key(key_or_variables):
        if x_example is None:
            fail(
                "from_linen(x_example)",
                "an example input, e.g. of shape (1, d), when `key_or_variables` is a PRNG key "
                "(it is passed to module.init(key, x_example)); or pass an existing variables "
                "dict instead of a key",
                "None",
            )
        variables = module.init(key_or_variables, x_example, method=method, **apply_kwargs)
    else:
        fail(
            "from_linen(key_or_variables)",
            "a PRNG key (jax.random.key / jax.random.PRNGKey, used with `x_example`) or a "
            "variables mapping such as {'params': ..., 'batch_stats': ...}",
            describe(key_or_variables),
            TypeError,
        )

    variables = flax.core.unfreeze(variables)
    if "params" not in variables:
        fail(
            "from_linen(key_or_variables)",
            "a variables mapping with at least a 'params' collection",
            f"the collections {sorted(variables)}",
        )
    params = variables.pop("params")
    rest = variables  # non-trainable collections, frozen by closure.

    def apply_fn(params: PyTree, x: jax.Array) -> jax.Array:
        """Applies the linen module: `x (n, ...)` -> outputs `(n, k)`."""
        return module.apply({"params": params, **rest}, x, method=method, **apply_kwargs)

    run = linen_runner(module, rest, method, apply_kwargs)
    structure = find_structure(run, apply_fn, params, x_example, "Dense")
    if structure is not None:
        apply_fn.linear_structure = structure
    return apply_fn, params


# ----------------------------------------------------------------------------
# flax.nnx
# ----------------------------------------------------------------------------


def from_nnx(model: Any, x_example: jax.Array | None = None) -> tuple[ApplyFn, dict[str, Any]]:
    """Adapts a `flax.nnx.Module` (`model(x)` is the forward pass) to `(apply_fn, params)`.

    The model is split into its graph definition, its `nnx.Param` state and the remaining
    state (batch statistics, RNG state, ...). The returned `params` is a plain nested `dict`
    of arrays (`nnx.to_pure_dict`), so `jax.tree_util` functions, `jax.jvp` and `jax.jacrev`
    see ordinary array leaves. `apply_fn` rebuilds a fresh copy of the module from `params`
    and the frozen remaining state on every call and runs it; the user's `model` is never
    mutated, and any state the forward pass writes (e.g. batch statistics in training mode)
    is discarded. Put the model in inference mode first (`model.eval()`) for the usual
    deterministic function; otherwise RNG-consuming layers reuse the frozen RNG state and
    produce the same randomness on every call.

    Linear structure: as in `from_linen`, `apply_fn` gets a `linear_structure` attribute (for
    `empirical_ntk(..., method="structured")`) when every parameter is the `kernel`/`bias` of
    exactly one call of a standard `nnx.Linear` on a 2-D input, with only parameter-free
    per-example code in between. The layers are tapped by switching the class of the Linear
    layers of `apply_fn`'s own freshly merged copy of the model, never of `model`.

    Args:
      model: a `flax.nnx.Module`.
      x_example: optional example input `(n, d)`, only used to find the linear structure;
        without it, inputs `(2, fan_in)` are tried for the fan-ins of the Linear kernels.

    Returns:
      `(apply_fn, params)` with `apply_fn(params, x)` equal to `model(x)` when `params` are
      the model's own parameters.

    Raises:
      TypeError: if `model` is not an nnx Module.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> apply_fn, params = from_nnx(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
      >>> sorted(params)
      ['bias', 'kernel']
      >>> apply_fn(params, jnp.ones((4, 3))).shape
      (4, 2)
    """
    from flax import nnx

    if not isinstance(model, nnx.Module):
        fail("from_nnx(model)", "a flax.nnx.Module", _kind(model), TypeError)

    graphdef, param_state, rest_state = nnx.split(model, nnx.Param, ...)
    # `nnx.split` hands back the model's own Variable objects: copy them so
    # that later changes to `model` (or to these copies) never leak across.
    param_template = _copy_state(param_state)
    rest_template = _copy_state(rest_state)
    params = nnx.to_pure_dict(param_template)

    def build(params: dict[str, Any]) -> Any:
        """A fresh copy of the nnx module holding `params`."""
        new_params = _copy_state(param_template)
        # Mutates `new_params` in place (only our fresh copy).
        nnx.replace_by_pure_dict(new_params, params)
        return nnx.merge(graphdef, new_params, _copy_state(rest_template))

    def apply_fn(params: dict[str, Any], x: jax.Array) -> jax.Array:
        """Runs a fresh copy of the nnx module: `x (n, ...)` -> outputs `(n, k)`."""
        return build(params)(x)

    structure = find_structure(nnx_runner(build), apply_fn, params, x_example, "Linear")
    if structure is not None:
        apply_fn.linear_structure = structure
    return apply_fn, params


def _copy_state(state: Any) -> Any:
    """A structurally identical nnx `State` with fresh Variable objects."""
    return jax.tree_util.tree_map(lambda leaf: leaf, state)


# ----------------------------------------------------------------------------
# neural-tangents-style stax
# ----------------------------------------------------------------------------


def _check_stax(model: Any, name: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Validates a stax model.

    Args:
      model: the received model, expected `(init_fn, apply_fn)` or `(init_fn, apply_fn,
        kernel_fn)`.
      name: the argument for messages.

    Returns:
      `(init_fn, apply_fn)`.

    Raises:
      TypeError: if `model` is not a tuple of 2 or 3 callables.
    """
    if not isinstance(model, tuple) or len(model) not in (2, 3):
        what = (
            f"a {type(model).__name__} of length {len(model)}"
            if isinstance(model, (tuple, list))
            else type(model).__qualname__
        )
        fail(
            name,
            "a tuple (init_fn, apply_fn) or (init_fn, apply_fn, kernel_fn) of callables, "
            "as returned by neural_tangents.stax",
            what,
            TypeError,
        )
    not_callable = [
        f"{role}={type(fn).__qualname__}"
        for role, fn in zip(("init_fn", "apply_fn", "kernel_fn"), model)
        if not callable(fn)
    ]
    if not_callable:
        fail(
            name,
            "a tuple of callables (init_fn, apply_fn[, kernel_fn])",
            f"non-callable {', '.join(not_callable)}",
            TypeError,
        )
    return model[0], model[1]


def from_stax(
    model: tuple[Callable[..., Any], ...],
    key: jax.Array,
    input_shape: Sequence[int],
    **apply_kwargs: Any,
) -> tuple[ApplyFn, PyTree]:
    """Adapts a neural-tangents-style `(init_fn, apply_fn[, kernel_fn])`.

    Calls `init_fn(key, input_shape) -> (output_shape, params)` and returns `params`
    unchanged together with `apply_fn(params, x)`, which forwards to the stax
    `apply_fn(params, x, **apply_kwargs)`. A `kernel_fn` (the infinite-width kernel) is
    accepted and ignored here.

    Args:
      model: `(init_fn, apply_fn)` or `(init_fn, apply_fn, kernel_fn)`.
      key: PRNG key for `init_fn`.
      input_shape: input shape with a leading batch dimension, e.g. `(-1, d)` or `(1, d)`.
      **apply_kwargs: extra keyword arguments for every stax `apply_fn` call (e.g. `rng=...`
        for stochastic layers).

    Returns:
      `(apply_fn, params)`.

    Raises:
      TypeError: if `model` is not a tuple of 2 or 3 callables, or `input_shape` is not a
        sequence of ints.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> init_fn = lambda key, shape: (shape[:-1] + (2,), jax.random.normal(key, (shape[-1], 2)))
      >>> stax_apply = lambda W, x, **kw: x @ W
      >>> apply_fn, params = from_stax((init_fn, stax_apply), jax.random.key(0), (-1, 3))
      >>> apply_fn(params, jnp.ones((4, 3))).shape
      (4, 2)
    """
    init_fn, stax_apply_fn = _check_stax(model, "from_stax(model)")
    if (
        isinstance(input_shape, (str, bytes))
        or not isinstance(input_shape, Sequence)
        or not all(isinstance(s, int) for s in input_shape)
    ):
        fail(
            "from_stax(input_shape)",
            "a sequence of ints such as (-1, d)",
            repr(input_shape),
            TypeError,
        )
    _, params = init_fn(key, tuple(input_shape))

    def apply_fn(params: PyTree, x: jax.Array) -> jax.Array:
        """Applies the stax network: `x (n, ...)` -> outputs `(n, k)`."""
        return stax_apply_fn(params, x, **apply_kwargs)

    return apply_fn, params


# ----------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------


def as_model(obj: Any, *args: Any, **kwargs: Any) -> tuple[ApplyFn, PyTree]:
    """Converts `obj` to `(apply_fn, params)`, dispatching on its type.

    * `flax.linen.Module` -> `from_linen(obj, *args, **kwargs)`;
    * `flax.nnx.Module` -> `from_nnx(obj, *args, **kwargs)`;
    * tuple `(init_fn, apply_fn[, kernel_fn])` -> `from_stax(obj, *args, **kwargs)`.

    Args:
      obj: the model definition.
      *args: positional arguments for the matching adapter.
      **kwargs: keyword arguments for the matching adapter.

    Returns:
      `(apply_fn, params)`.

    Raises:
      TypeError: if `obj` is none of the accepted kinds.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> apply_fn, params = as_model(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
      >>> apply_fn(params, jnp.ones((4, 3))).shape
      (4, 2)
    """
    if isinstance(obj, tuple):
        return from_stax(obj, *args, **kwargs)

    import flax.linen as nn
    from flax import nnx

    if isinstance(obj, nn.Module):
        return from_linen(obj, *args, **kwargs)
    if isinstance(obj, nnx.Module):
        return from_nnx(obj, *args, **kwargs)
    fail(
        "as_model(obj)",
        "a flax.linen.Module, a flax.nnx.Module, or a neural-tangents-style tuple "
        "(init_fn, apply_fn[, kernel_fn]) of callables",
        _kind(obj),
        TypeError,
    )
