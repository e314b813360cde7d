"""Adapters that turn common model definitions into ``(apply_fn, params)``.

jaxdyn's core works with a model given as a pure function
``apply_fn(params, x) -> outputs`` of shape ``(n, k)``, where ``params`` is any
PyTree of arrays. This module converts the usual ways of writing a network
into that form, so no glue code is needed:

* :func:`from_linen` -- a ``flax.linen.Module``;
* :func:`from_nnx` -- a ``flax.nnx.Module``;
* :func:`from_stax` -- a neural-tangents-style ``(init_fn, apply_fn[, kernel_fn])``;
* :func:`as_model` -- dispatches on the type of its first argument.

Flax models made only of Dense (linen) / Linear (nnx) layers also get a
``linear_structure`` (``jaxdyn.structure``) for the fast structured NTK.

Every returned ``apply_fn`` is pure: it depends only on ``(params, x)`` and on
state frozen at adaptation time, so it can be used under ``jax.jit``,
``jax.jvp``, ``jax.vmap``, ``jax.jacrev`` and friends with respect to
``params``.

Example:
  >>> import jax, jax.numpy as jnp
  >>> import flax.linen as nn
  >>> from jaxdyn.adapters import as_model
  >>> apply_fn, params = as_model(nn.Dense(3), jax.random.key(0), jnp.ones((2, 4)))
  >>> apply_fn(params, jnp.ones((5, 4))).shape
  (5, 3)

Flax is imported lazily, inside the functions that need it, so that
``import jaxdyn`` stays fast. (This module was ``jaxdyn.models`` until networks and
adapters were told apart by file name; ``jaxdyn.models`` still re-exports it.)
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

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
"""A pure model ``apply_fn(params, x) -> outputs``, typically ``(n, d) -> (n, k)``."""


def _type_name(obj: Any) -> str:
    return type(obj).__qualname__


def _is_prng_key(obj: Any) -> bool:
    """True for a typed key (``jax.random.key``) or a raw uint32 key (``PRNGKey``)."""
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
    """Adapts a ``flax.linen.Module`` to ``(apply_fn, params)``.

    Either initialises the module with ``module.init(key, x_example)`` or takes
    an existing variables dict such as ``{'params': ..., 'batch_stats': ...}``.
    Only the ``'params'`` collection is returned as trainable ``params``; every
    other collection (``batch_stats``, ...) is closed over and held fixed. The
    module is always applied without mutable collections, i.e. in inference
    mode: pass the module's own switch through ``apply_kwargs`` (for example
    ``train=False`` or ``deterministic=True``) so that layers such as
    ``nn.BatchNorm`` and ``nn.Dropout`` do not try to update state or draw
    randomness. ``apply_kwargs`` and ``method`` are used for ``module.init`` as
    well.

    Precision of batch statistics: flax keeps ``batch_stats`` (``nn.BatchNorm``'s
    running ``mean``/``var``) in float32 whatever ``param_dtype`` says, so even under
    ``jax_enable_x64`` with float64 parameters and inputs the normalisation is float32
    arithmetic (relative differences ~1e-7). For a float64 model end to end, cast the
    stats before adapting: ``variables = {**variables, 'batch_stats':
    jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), variables['batch_stats'])}``
    and pass ``variables`` as ``key_or_variables``.

    Linear structure: if every parameter is the ``kernel``/``bias`` of exactly
    one call of a standard ``nn.Dense`` (no custom ``dot_general`` /
    ``promote_dtype``) on a 2-D input ``(n, fan_in)``, with only parameter-free,
    per-example code in between (activations, reshapes, ...), ``apply_fn``
    gets a ``linear_structure`` attribute (``jaxdyn.structure``) and
    ``jaxdyn.empirical_ntk`` can use its fast ``method="structured"``. It is
    found at adaptation time by an abstract trace under
    ``flax.linen.intercept_methods``; models that do not qualify (Conv,
    LayerNorm, Embed, a Dense called twice, Dense on 3-D inputs, ...) simply
    do not get the attribute and use the generic NTK methods.

    Args:
      module: a ``flax.linen.Module``.
      key_or_variables: a PRNG key (``jax.random.key`` or ``jax.random.PRNGKey``)
        used with ``x_example`` to initialise the module, or a variables mapping
        with a ``'params'`` collection (as returned by ``module.init``).
      x_example: example input, e.g. shape ``(n, d)``; required with a key.
        With variables it is optional and only used to find the linear
        structure (below); without it, inputs ``(2, fan_in)`` are tried for the
        fan-ins of the Dense kernels.
      method: optional method (callable or name) to apply instead of
        ``__call__``, passed to ``module.init`` and ``module.apply``.
      **apply_kwargs: extra keyword arguments for every ``module.apply`` call.

    Returns:
      ``(apply_fn, params)`` where ``apply_fn(params, x)`` calls
      ``module.apply({'params': params, **rest}, x, method=method, **apply_kwargs)``
      and ``params`` is the ``'params'`` collection as a PyTree.

    Raises:
      TypeError: if ``module`` is not a linen Module, or ``key_or_variables``
        is neither a PRNG key nor a mapping.
      ValueError: if a key is given without ``x_example``, or the variables
        have no ``'params'`` collection.

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
        raise TypeError(
            f"from_linen: `module` must be a flax.linen.Module, got {_type_name(module)}."
        )

    if isinstance(key_or_variables, Mapping):
        variables = key_or_variables
    elif _is_prng_key(key_or_variables):
        if x_example is None:
            raise ValueError(
                "from_linen: `x_example` is required when `key_or_variables` is a "
                "PRNG key (it is passed to module.init(key, x_example)); got "
                "x_example=None. Pass an example input, e.g. of shape (1, d), or "
                "pass an existing variables dict instead of a key."
            )
        variables = module.init(key_or_variables, x_example, method=method, **apply_kwargs)
    else:
        raise TypeError(
            "from_linen: `key_or_variables` must be a PRNG key (jax.random.key / "
            "jax.random.PRNGKey, used with `x_example`) or a variables mapping such "
            f"as {{'params': ..., 'batch_stats': ...}}; got {_type_name(key_or_variables)}."
        )

    variables = flax.core.unfreeze(variables)
    if "params" not in variables:
        raise ValueError(
            "from_linen: the variables have no 'params' collection; got collections "
            f"{sorted(variables)}, expected at least 'params'."
        )
    params = variables.pop("params")
    rest = variables  # non-trainable collections, frozen by closure.

    def apply_fn(params: PyTree, x: jax.Array) -> jax.Array:
        """Applies the linen module: ``x`` (n, ...) -> outputs (n, k)."""
        return module.apply({"params": params, **rest}, x, method=method, **apply_kwargs)

    run = _linen_runner(module, rest, method, apply_kwargs)
    structure = _find_structure(run, apply_fn, params, x_example, "Dense")
    if structure is not None:
        apply_fn.linear_structure = structure
    return apply_fn, params


# ----------------------------------------------------------------------------
# flax.nnx
# ----------------------------------------------------------------------------


def from_nnx(model: Any, x_example: jax.Array | None = None) -> tuple[ApplyFn, dict[str, Any]]:
    """Adapts a ``flax.nnx.Module`` (``model(x)`` is the forward pass).

    The model is split into its graph definition, its ``nnx.Param`` state and
    the remaining state (batch statistics, RNG state, ...). The returned
    ``params`` is a plain nested ``dict`` of arrays (``nnx.to_pure_dict``), so
    ``jax.tree_util`` functions, ``jax.jvp`` and ``jax.jacrev`` see ordinary
    array leaves. ``apply_fn`` rebuilds a fresh copy of the module from
    ``params`` and the frozen remaining state on every call and runs it; the
    user's ``model`` is never mutated, and any state the forward pass writes
    (e.g. batch statistics in training mode) is discarded. Put the model in
    inference mode first (``model.eval()``) for the usual deterministic
    function; otherwise RNG-consuming layers reuse the frozen RNG state and
    produce the same randomness on every call.

    Linear structure: as in :func:`from_linen`, ``apply_fn`` gets a
    ``linear_structure`` attribute (for ``empirical_ntk(...,
    method="structured")``) when every parameter is the ``kernel``/``bias``
    of exactly one call of a standard ``nnx.Linear`` on a 2-D input, with only
    parameter-free per-example code in between. The layers are tapped by
    switching the class of the Linear layers of ``apply_fn``'s own freshly
    merged copy of the model, never of ``model``.

    Args:
      model: a ``flax.nnx.Module``.
      x_example: optional example input ``(n, d)``, only used to find the
        linear structure; without it, inputs ``(2, fan_in)`` are tried for the
        fan-ins of the Linear kernels.

    Returns:
      ``(apply_fn, params)`` with ``apply_fn(params, x)`` equal to ``model(x)``
      when ``params`` are the model's own parameters.

    Raises:
      TypeError: if ``model`` is not an nnx Module.

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
        raise TypeError(f"from_nnx: `model` must be a flax.nnx.Module, got {_type_name(model)}.")

    graphdef, param_state, rest_state = nnx.split(model, nnx.Param, ...)
    # `nnx.split` hands back the model's own Variable objects: copy them so
    # that later changes to `model` (or to these copies) never leak across.
    param_template = _copy_state(param_state)
    rest_template = _copy_state(rest_state)
    params = nnx.to_pure_dict(param_template)

    def build(params: dict[str, Any]) -> Any:
        """A fresh copy of the nnx module holding ``params``."""
        new_params = _copy_state(param_template)
        # Mutates `new_params` in place (only our fresh copy).
        nnx.replace_by_pure_dict(new_params, params)
        return nnx.merge(graphdef, new_params, _copy_state(rest_template))

    def apply_fn(params: dict[str, Any], x: jax.Array) -> jax.Array:
        """Runs a fresh copy of the nnx module: ``x`` (n, ...) -> outputs (n, k)."""
        return build(params)(x)

    structure = _find_structure(_nnx_runner(build), apply_fn, params, x_example, "Linear")
    if structure is not None:
        apply_fn.linear_structure = structure
    return apply_fn, params


def _copy_state(state: Any) -> Any:
    """A structurally identical nnx ``State`` with fresh Variable objects."""
    return jax.tree_util.tree_map(lambda leaf: leaf, state)


# ----------------------------------------------------------------------------
# neural-tangents-style stax
# ----------------------------------------------------------------------------


def _check_stax(model: Any, name: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Validates a ``(init_fn, apply_fn[, kernel_fn])`` tuple."""
    if not isinstance(model, tuple) or len(model) not in (2, 3):
        what = f"a {type(model).__name__} of length {len(model)}" if isinstance(
            model, (tuple, list)
        ) else _type_name(model)
        raise TypeError(
            f"{name} must be a tuple (init_fn, apply_fn) or (init_fn, apply_fn, "
            f"kernel_fn) of callables, as returned by neural_tangents.stax; got {what}."
        )
    not_callable = [
        f"{role}={_type_name(fn)}"
        for role, fn in zip(("init_fn", "apply_fn", "kernel_fn"), model)
        if not callable(fn)
    ]
    if not_callable:
        raise TypeError(
            f"{name} must hold callables (init_fn, apply_fn[, kernel_fn]); got "
            f"non-callable {', '.join(not_callable)}."
        )
    return model[0], model[1]


def from_stax(
    model: tuple[Callable[..., Any], ...],
    key: jax.Array,
    input_shape: Sequence[int],
    **apply_kwargs: Any,
) -> tuple[ApplyFn, PyTree]:
    """Adapts a neural-tangents-style ``(init_fn, apply_fn[, kernel_fn])``.

    Calls ``init_fn(key, input_shape) -> (output_shape, params)`` and returns
    ``params`` unchanged together with ``apply_fn(params, x)``, which forwards
    to the stax ``apply_fn(params, x, **apply_kwargs)``. A ``kernel_fn`` (the
    infinite-width kernel) is accepted and ignored here.

    Args:
      model: ``(init_fn, apply_fn)`` or ``(init_fn, apply_fn, kernel_fn)``.
      key: PRNG key for ``init_fn``.
      input_shape: input shape with a leading batch dimension, e.g. ``(-1, d)``
        or ``(1, d)``.
      **apply_kwargs: extra keyword arguments for every stax ``apply_fn`` call
        (e.g. ``rng=...`` for stochastic layers).

    Returns:
      ``(apply_fn, params)``.

    Raises:
      TypeError: if ``model`` is not a tuple of 2 or 3 callables, or
        ``input_shape`` is not a sequence of ints.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> init_fn = lambda key, shape: (shape[:-1] + (2,), jax.random.normal(key, (shape[-1], 2)))
      >>> stax_apply = lambda W, x, **kw: x @ W
      >>> apply_fn, params = from_stax((init_fn, stax_apply), jax.random.key(0), (-1, 3))
      >>> apply_fn(params, jnp.ones((4, 3))).shape
      (4, 2)
    """
    init_fn, stax_apply_fn = _check_stax(model, "from_stax: `model`")
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence) or not all(
        isinstance(s, int) for s in input_shape
    ):
        raise TypeError(
            "from_stax: `input_shape` must be a sequence of ints such as (-1, d); "
            f"got {input_shape!r}."
        )
    _, params = init_fn(key, tuple(input_shape))

    def apply_fn(params: PyTree, x: jax.Array) -> jax.Array:
        """Applies the stax network: ``x`` (n, ...) -> outputs (n, k)."""
        return stax_apply_fn(params, x, **apply_kwargs)

    return apply_fn, params


# ----------------------------------------------------------------------------
# Linear structure of flax models (for `empirical_ntk(..., method="structured")`)
# ----------------------------------------------------------------------------


class _NotStructured(Exception):
    """Internal: the model does not qualify for a `LinearStructure` (message says why)."""


class _Call:
    """One recorded Dense/Linear call: its module path, whether it adds a bias, the
    shapes of its input `h (n, fan_in)` and output `z (n, width)`, and any setting
    (custom `dot_general`, ...) that keeps it from being `z = h @ W + b`."""

    __slots__ = ("h_shape", "issue", "path", "use_bias", "z_shape")

    def __init__(self, path, use_bias, h_shape, z_shape, issue):
        self.path, self.use_bias, self.issue = tuple(path), bool(use_bias), issue
        self.h_shape, self.z_shape = tuple(h_shape), tuple(z_shape)


def _key_name(key: Any) -> Any:
    """The plain name of one `jax.tree_util` path entry (dict key, index or attribute)."""
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return getattr(key, attr)
    return key


def _leaf_paths(params: PyTree) -> list[tuple[Any, ...]]:
    """Key path of every leaf of `params`, in `jax.tree_util.tree_leaves` order."""
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return [tuple(_key_name(k) for k in path) for path, _ in flat]


def _params_key(params: PyTree) -> tuple[Any, ...]:
    """Hashable tree structure, leaf shapes and dtypes of `params` (a cache key)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    return treedef, tuple((tuple(jnp.shape(a)), jnp.result_type(a)) for a in leaves)


def _standard_precision(precision: Any) -> bool:
    """True for `None`, a `lax.Precision` (or its name), or a pair of those."""
    if isinstance(precision, tuple):
        return len(precision) == 2 and all(_standard_precision(p) for p in precision)
    return precision is None or isinstance(precision, (jax.lax.Precision, str))


def _match_layers(params: PyTree, calls: Sequence[_Call], what: str) -> tuple[Any, ...]:
    """`LinearLayer`s for the recorded `calls`, in call order, or `_NotStructured`.

    Each call's module path must hold a `kernel (fan_in, width)` leaf (and a `bias
    (width,)` leaf when it adds one), and these must be all the leaves of `params`, each
    used by exactly one call.
    """
    from jaxdyn.structure import LinearLayer

    index = {path: i for i, path in enumerate(_leaf_paths(params))}
    shapes = [tuple(jnp.shape(a)) for a in jax.tree_util.tree_leaves(params)]
    if not calls:
        raise _NotStructured(f"the model calls no {what}")
    used: set[int] = set()
    layers = []
    for call in calls:
        name = "/".join(map(str, call.path)) or "<root>"
        if call.issue:
            raise _NotStructured(f"{what} {name!r} {call.issue}")
        if len(call.h_shape) != 2 or len(call.z_shape) != 2:
            raise _NotStructured(
                f"{what} {name!r} gets a {len(call.h_shape)}-D input of shape {call.h_shape}; "
                "only 2-D inputs (n, fan_in) are structured")
        w = index.get(call.path + ("kernel",))
        b = index.get(call.path + ("bias",)) if call.use_bias else None
        if w is None or (call.use_bias and b is None):
            raise _NotStructured(f"the parameters of {what} {name!r} are not found in `params`")
        (_, fan_in), (_, width) = call.h_shape, call.z_shape
        if shapes[w] != (fan_in, width) or (b is not None and shapes[b] != (width,)):
            raise _NotStructured(
                f"{what} {name!r} has a kernel of shape {shapes[w]} for inputs {call.h_shape} "
                f"and outputs {call.z_shape} (lifted transforms are not structured)")
        for i in (w, b):
            if i is not None and i in used:
                raise _NotStructured(
                    f"{what} {name!r} is called more than once (or shares its parameters)")
            used.add(i)
        layers.append(LinearLayer(w, b, 1.0, 1.0))
    paths = _leaf_paths(params)
    rest = [("/".join(map(str, paths[i]))) for i in range(len(paths)) if i not in used]
    if rest:
        raise _NotStructured(
            f"parameters {rest[:4]}{' ...' if len(rest) > 4 else ''} belong to no {what} call")
    return tuple(layers)


class _FlaxLinearStructure:
    """A `jaxdyn.structure.LinearStructure` for a flax model whose parameters all sit in
    Dense (linen) / Linear (nnx) layers applied to 2-D inputs `(n, fan_in)`.

    `run(params, x, on_call)` applies the model with every such layer's output `z (n,
    width)` replaced by `on_call(path, use_bias, issue, h, z)`. Layers are listed in the
    order the model calls them for inputs like `example` (a `jax.ShapeDtypeStruct`); the
    call order is found by an abstract trace, cached per params structure and shapes, and
    checked again by every `apply`.
    """

    def __init__(self, run: Callable[..., Any], example: jax.ShapeDtypeStruct, what: str):
        self._run, self._example, self._what = run, example, what
        self._cache: dict[Any, Any] = {}

    def _trace(self, params: PyTree) -> tuple[tuple[Any, ...], tuple[tuple[Any, ...], ...]]:
        """`(layers, call paths)` for `params` (abstract trace, cached), or `_NotStructured`."""
        key = _params_key(params)
        if key not in self._cache:
            calls: list[_Call] = []

            def record(path, use_bias, issue, h, z):
                calls.append(_Call(path, use_bias, jnp.shape(h), jnp.shape(z), issue))
                return z

            specs = jax.tree_util.tree_map(
                lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), params)
            try:
                jax.eval_shape(lambda p, x: self._run(p, x, record), specs, self._example)
                result = (_match_layers(params, calls, self._what), tuple(c.path for c in calls))
            except _NotStructured as err:
                result = err
            self._cache[key] = result
        result = self._cache[key]
        if isinstance(result, _NotStructured):
            raise result
        return result

    def layers(self, params: PyTree) -> Sequence[Any]:
        """The model's `LinearLayer`s (`c_W = c_b = 1`) in call order.

        Raises:
          ValueError: if, for these `params`, the model is not made of Dense/Linear layers
            only (see `jaxdyn.adapters.from_linen`).
        """
        try:
            return self._trace(params)[0]
        except _NotStructured as err:
            raise ValueError(f"this flax model has no linear structure: {err}.") from None

    def apply(self, params: PyTree, x: jax.Array, tap: Callable[..., jax.Array]) -> jax.Array:
        """`apply_fn(params, x)` with the l-th layer's output `z (n, width)` replaced by
        `tap(l, h, z)`, `h (n, fan_in)` its input.

        Raises:
          ValueError: if the model has no linear structure, or calls its layers differently
            (other order, other input ranks) for this `x` than for the adaptation input.
        """
        self.layers(params)
        want = self._trace(params)[1]
        seen: list[tuple[Any, ...]] = []

        def on_call(path, use_bias, issue, h, z):
            l = len(seen)
            seen.append(tuple(path))
            if l >= len(want) or seen[-1] != want[l] or jnp.ndim(h) != 2:
                raise ValueError(
                    f"this flax model calls its {self._what} layers differently for inputs of "
                    f"shape {jnp.shape(x)} than for {self._example.shape} (call {l} is "
                    f"{'/'.join(map(str, path))!r} on a {jnp.ndim(h)}-D input): its linear "
                    "structure does not hold; use method='jacobian' or 'ntvp'.")
            return tap(l, h, z)

        out = self._run(params, x, on_call)
        if len(seen) != len(want):
            raise ValueError(
                f"this flax model made {len(seen)} {self._what} calls for inputs of shape "
                f"{jnp.shape(x)}, but {len(want)} for {self._example.shape}: its linear "
                "structure does not hold; use method='jacobian' or 'ntvp'.")
        return out


def _example_candidates(params: PyTree, x_example: Any) -> list[jax.ShapeDtypeStruct]:
    """Input specs to discover the layer order with: `x_example`'s, or, without one,
    `(2, fan_in)` for each distinct 2-D `kernel (fan_in, width)` leaf, in leaf order."""
    if x_example is not None:
        return [jax.ShapeDtypeStruct(jnp.shape(x_example), jnp.result_type(x_example))]
    out = []
    for path, leaf in zip(_leaf_paths(params), jax.tree_util.tree_leaves(params)):
        if path and path[-1] == "kernel" and jnp.ndim(leaf) == 2:
            spec = jax.ShapeDtypeStruct((2, jnp.shape(leaf)[0]), jnp.result_type(leaf))
            if spec not in out:
                out.append(spec)
    return out


def _mixes_examples(apply_fn: ApplyFn, params: PyTree, spec: jax.ShapeDtypeStruct) -> bool:
    """True if a change to example 0 moves another example's output (e.g. batch
    statistics), tested exactly with one jvp at a random input shaped like `spec` (at
    most 4 examples, so that a large `x_example` costs little)."""
    if len(spec.shape) == 0 or spec.shape[0] < 2 or not jnp.issubdtype(spec.dtype, jnp.inexact):
        return False
    spec = jax.ShapeDtypeStruct((min(spec.shape[0], 4), *spec.shape[1:]), spec.dtype)

    @jax.jit
    def mixes(params: PyTree) -> jax.Array:
        x = jax.random.normal(jax.random.key(0), spec.shape, spec.dtype)
        tangent = jnp.zeros_like(x).at[0].set(1)
        _, dy = jax.jvp(lambda x: apply_fn(params, x), (x,), (tangent,))
        return jnp.any(jnp.abs(dy[1:]) > 0)

    return bool(mixes(params))


def _find_structure(
    run: Callable[..., Any], apply_fn: ApplyFn, params: PyTree, x_example: Any, what: str
) -> _FlaxLinearStructure | None:
    """A `_FlaxLinearStructure` if the model qualifies, else None (never raises).

    Qualifies: every parameter leaf is the kernel/bias of exactly one standard
    Dense/Linear call on a 2-D input, the structured gradients can be taken (abstract
    trace of a probe vjp, as `jaxdyn.ntk` does) and examples do not interact.
    """
    for spec in _example_candidates(params, x_example):
        structure = _FlaxLinearStructure(run, spec, what)
        try:
            _check_probe_vjp(structure, params, spec)
            mixes = _mixes_examples(apply_fn, params, spec)
        except Exception:  # noqa: BLE001 -- any failure just means "not structured"
            mixes = None
        if mixes is not None:
            return None if mixes else structure
    return None


def _check_probe_vjp(structure: _FlaxLinearStructure, params: PyTree,
                     spec: jax.ShapeDtypeStruct) -> None:
    """Abstractly traces a vjp through zero probes added at every layer output, capturing
    the layer inputs (what `method="structured"` does); raises if the model is not
    structured or the taps cannot be differentiated (e.g. inside lifted transforms)."""

    def probe_vjp(params, x):
        layers = structure.layers(params)
        widths = [jnp.shape(jax.tree_util.tree_leaves(params)[lay.w_leaf])[1] for lay in layers]
        probes = [jnp.zeros((x.shape[0], w), x.dtype) for w in widths]

        def f(q):
            inputs = []

            def tap(l, h, z):
                inputs.append(h)
                return z + q[l].astype(z.dtype)

            return structure.apply(params, x, tap), inputs

        out, vjp_fn, inputs = jax.vjp(f, probes, has_aux=True)
        (grads,) = vjp_fn(jnp.ones_like(out))
        # Use the captured inputs as jaxdyn.ntk does: a layer traced inside a transform
        # (remat, scan, ...) leaks them, which fails here.
        return [jnp.einsum("if,iw->fw", h, g) for h, g in zip(inputs, grads)]

    specs = jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), params)
    with jax.checking_leaks():
        jax.eval_shape(probe_vjp, specs, spec)


def _plain_dense(module: Any) -> bool:
    """True for a `flax.linen.Dense` itself: not a subclass, nor a lifted one
    (`nn.remat(nn.Dense)`, ...), whose call may differ or hide the layer in a transform."""
    import flax.linen as nn

    return type(module) is nn.Dense


def _dense_issue(module: Any) -> str | None:
    """Why a linen Dense is not `z = h @ kernel + bias`, or None for standard settings."""
    import flax.linen as nn

    if module.dot_general is not None or module.dot_general_cls is not None:
        return "uses a custom dot_general"
    if module.promote_dtype is not nn.dtypes.promote_dtype:
        return "uses a custom promote_dtype"
    if not _standard_precision(module.precision):
        return f"uses the non-standard precision {module.precision!r}"
    return None


def _linen_runner(module: Any, rest: Mapping[str, Any], method: Any,
                  apply_kwargs: Mapping[str, Any]) -> Callable[..., jax.Array]:
    """`run(params, x, on_call)`: applies the linen module like `from_linen`'s
    `apply_fn`, with each Dense output `z (n, width)` replaced by
    `on_call(path, use_bias, issue, h, z)` (`flax.linen.intercept_methods`)."""

    def run(params: PyTree, x: jax.Array, on_call: Callable[..., jax.Array]) -> jax.Array:
        import flax.linen as nn

        def interceptor(next_fun, args, kwargs, context):
            dense = context.module
            if context.method_name != "__call__" or not _plain_dense(dense):
                return next_fun(*args, **kwargs)
            h = args[0] if args else kwargs["inputs"]
            z = next_fun(*args, **kwargs)
            return on_call(dense.path, dense.use_bias, _dense_issue(dense), h, z)

        with nn.intercept_methods(interceptor):
            return module.apply({"params": params, **rest}, x, method=method, **apply_kwargs)

    return run


_NNX_TAP: contextvars.ContextVar[Callable[..., jax.Array] | None] = contextvars.ContextVar(
    "jaxdyn_nnx_tap", default=None)
"""The hook `_TappedLinear.__call__` hands its `(module, h, z)` to, set by `_nnx_runner`."""


@functools.cache
def _tapped_linear_class() -> type:
    """A `flax.nnx.Linear` subclass whose output goes through the active `_NNX_TAP` hook.

    `_nnx_runner` switches the class of the Linear layers of its own freshly merged copy
    of the model (never the user's) to this one, for one forward pass.
    """
    from flax import nnx

    class _TappedLinear(nnx.Linear):
        def __call__(self, inputs, *args, **kwargs):
            z = super().__call__(inputs, *args, **kwargs)
            hook = _NNX_TAP.get()
            return z if hook is None else hook(self, inputs, z)

    return _TappedLinear


def _linear_issue(module: Any) -> str | None:
    """Why an nnx Linear is not `z = h @ kernel + bias`, or None for standard settings."""
    from flax import nnx

    defaults = inspect.signature(nnx.Linear.__init__).parameters
    if module.dot_general is not defaults["dot_general"].default:
        return "uses a custom dot_general"
    if module.promote_dtype is not defaults["promote_dtype"].default:
        return "uses a custom promote_dtype"
    if not _standard_precision(module.precision):
        return f"uses the non-standard precision {module.precision!r}"
    return None


def _nnx_runner(build: Callable[[PyTree], Any]) -> Callable[..., jax.Array]:
    """`run(params, x, on_call)`: runs `build(params)(x)` (a fresh nnx module) with each
    `nnx.Linear` output `z (n, width)` replaced by `on_call(path, use_bias, issue, h, z)`."""

    def run(params: PyTree, x: jax.Array, on_call: Callable[..., jax.Array]) -> jax.Array:
        from flax import nnx

        module = build(params)
        tapped = _tapped_linear_class()
        paths = {}
        for path, node in list(nnx.iter_graph(module)):
            if type(node) is nnx.Linear:
                paths[id(node)] = tuple(path)
                node.__class__ = tapped  # our own fresh copy only

        def hook(linear, h, z):
            return on_call(paths[id(linear)], linear.use_bias, _linear_issue(linear), h, z)

        token = _NNX_TAP.set(hook)
        try:
            return module(x)
        finally:
            _NNX_TAP.reset(token)

    return run


# ----------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------


def as_model(obj: Any, *args: Any, **kwargs: Any) -> tuple[ApplyFn, PyTree]:
    """Converts ``obj`` to ``(apply_fn, params)``, dispatching on its type.

    * ``flax.linen.Module`` -> :func:`from_linen` ``(obj, *args, **kwargs)``;
    * ``flax.nnx.Module`` -> :func:`from_nnx` ``(obj, *args, **kwargs)``;
    * tuple ``(init_fn, apply_fn[, kernel_fn])`` -> :func:`from_stax`
      ``(obj, *args, **kwargs)``.

    Args:
      obj: the model definition.
      *args: positional arguments for the matching adapter.
      **kwargs: keyword arguments for the matching adapter.

    Returns:
      ``(apply_fn, params)``.

    Raises:
      TypeError: if ``obj`` is none of the accepted kinds.

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
    raise TypeError(
        "as_model: `obj` must be a flax.linen.Module, a flax.nnx.Module, or a "
        "neural-tangents-style tuple (init_fn, apply_fn[, kernel_fn]) of callables; "
        f"got {_type_name(obj)}."
    )
