"""Discovery of a flax model's linear structure, for `empirical_ntk(..., method="structured")`.

`jaxdyn.adapters.from_linen` and `from_nnx` ask `find_structure` whether a flax model is made
only of standard Dense (linen) / Linear (nnx) layers applied to 2-D inputs `(n, fan_in)`, with
parameter-free per-example code in between. If so, they attach the returned
`FlaxLinearStructure` (a `jaxdyn.structure.LinearStructure`) to the model's `apply_fn`.

How the layers are seen:

* linen: `linen_runner` applies the module under `flax.linen.intercept_methods`, which hands
  every `nn.Dense.__call__` to an interceptor;
* nnx: `nnx_runner` switches the class of every `nnx.Linear` of a freshly built copy of the
  model (never the user's) to a subclass whose output goes through a context-local hook.

Both give a `run(params, x, on_call)` that applies the model with each layer output `z (n,
width)` replaced by `on_call(path, use_bias, issue, h, z)`, `h (n, fan_in)` being the layer
input and `issue` a reason the layer is not `z = h @ kernel + bias` (or None).

A model qualifies when an abstract trace finds every parameter leaf used as the kernel/bias of
exactly one such call, a vjp through probes at the layer outputs can be traced (as
`jaxdyn.ntk` does), and examples do not interact (no batch statistics). Anything else simply
means "no structure": the model then uses the generic NTK methods.

Flax is imported lazily, inside the functions that need it, so that `import jaxdyn` stays fast.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp

if TYPE_CHECKING:
    from jaxdyn.adapters import ApplyFn, PyTree
    from jaxdyn.structure import LinearLayer

OnCall = Callable[..., jax.Array]
"""`on_call(path, use_bias, issue, h, z) -> z'`: sees one Dense/Linear call, returns its output."""

Runner = Callable[[Any, jax.Array, OnCall], jax.Array]
"""`run(params, x, on_call) -> outputs`: the model, every Dense/Linear call seen by `on_call`."""


class _NotStructured(Exception):
    """The model does not qualify for a linear structure (the message says why)."""


class _Call(NamedTuple):
    """One recorded Dense/Linear call.

    `issue` is a setting (custom `dot_general`, ...) that keeps the layer from being
    `z = h @ W + b`, or None.
    """

    path: tuple[Any, ...]  # the module's path in the model
    use_bias: bool
    h_shape: tuple[int, ...]  # the input, (n, fan_in) when structured
    z_shape: tuple[int, ...]  # the output, (n, width) when structured
    issue: str | None


# ----------------------------------------------------------------------------
# Small helpers on params
# ----------------------------------------------------------------------------


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


def _specs(params: PyTree) -> PyTree:
    """`params` with every leaf replaced by its `jax.ShapeDtypeStruct` (for abstract traces)."""
    return jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), params
    )


def _standard_precision(precision: Any) -> bool:
    """True for `None`, a `lax.Precision` (or its name), or a pair of those."""
    if isinstance(precision, tuple):
        return len(precision) == 2 and all(_standard_precision(p) for p in precision)
    return precision is None or isinstance(precision, (jax.lax.Precision, str))


def _match_layers(params: PyTree, calls: Sequence[_Call], what: str) -> tuple[LinearLayer, ...]:
    """The `LinearLayer`s (`c_W = c_b = 1`) of the recorded `calls`, in call order.

    Each call's module path must hold a `kernel (fan_in, width)` leaf (and a `bias (width,)`
    leaf when it adds one), and these must be all the leaves of `params`, each used by exactly
    one call.

    Args:
      params: the model's parameters.
      calls: the Dense/Linear calls of one abstract forward pass, in call order.
      what: the layer kind for messages, "Dense" or "Linear".

    Returns:
      One `jaxdyn.structure.LinearLayer` per call.

    Raises:
      _NotStructured: if the calls and the parameters do not match as above.
    """
    from jaxdyn.structure import LinearLayer

    paths = _leaf_paths(params)
    index = {path: i for i, path in enumerate(paths)}
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
                "only 2-D inputs (n, fan_in) are structured"
            )
        w = index.get(call.path + ("kernel",))
        b = index.get(call.path + ("bias",)) if call.use_bias else None
        if w is None or (call.use_bias and b is None):
            raise _NotStructured(f"the parameters of {what} {name!r} are not found in `params`")
        (_, fan_in), (_, width) = call.h_shape, call.z_shape
        if shapes[w] != (fan_in, width) or (b is not None and shapes[b] != (width,)):
            raise _NotStructured(
                f"{what} {name!r} has a kernel of shape {shapes[w]} for inputs {call.h_shape} "
                f"and outputs {call.z_shape} (lifted transforms are not structured)"
            )
        for i in (w, b):
            if i is not None and i in used:
                raise _NotStructured(
                    f"{what} {name!r} is called more than once (or shares its parameters)"
                )
            used.add(i)
        layers.append(LinearLayer(w, b, 1.0, 1.0))
    rest = ["/".join(map(str, paths[i])) for i in range(len(paths)) if i not in used]
    if rest:
        raise _NotStructured(
            f"parameters {rest[:4]}{' ...' if len(rest) > 4 else ''} belong to no {what} call"
        )
    return tuple(layers)


# ----------------------------------------------------------------------------
# The structure
# ----------------------------------------------------------------------------


class FlaxLinearStructure:
    """A `jaxdyn.structure.LinearStructure` for a flax model of Dense/Linear layers.

    Every parameter sits in a Dense (linen) / Linear (nnx) layer applied to 2-D inputs `(n,
    fan_in)`. Layers are listed in the order the model calls them for inputs like `example`;
    the call order is found by an abstract trace, cached per params structure and shapes, and
    checked again by every `apply`.

    Args:
      run: `run(params, x, on_call)`, from `linen_runner` or `nnx_runner`.
      example: the spec of the inputs the call order is discovered with.
      what: the layer kind for messages, "Dense" or "Linear".
    """

    def __init__(self, run: Runner, example: jax.ShapeDtypeStruct, what: str):
        self._run, self._example, self._what = run, example, what
        self._cache: dict[Any, Any] = {}

    def _trace(self, params: PyTree) -> tuple[tuple[LinearLayer, ...], tuple[tuple[Any, ...], ...]]:
        """The layers and the module path of every call, for `params` (cached).

        Raises:
          _NotStructured: if, for these `params`, the model does not qualify.
        """
        key = _params_key(params)
        if key not in self._cache:
            calls: list[_Call] = []

            def record(path, use_bias, issue, h, z):
                calls.append(
                    _Call(
                        tuple(path), bool(use_bias), tuple(jnp.shape(h)), tuple(jnp.shape(z)), issue
                    )
                )
                return z

            try:
                jax.eval_shape(lambda p, x: self._run(p, x, record), _specs(params), self._example)
                result = (_match_layers(params, calls, self._what), tuple(c.path for c in calls))
            except _NotStructured as err:
                result = err
            self._cache[key] = result
        result = self._cache[key]
        if isinstance(result, _NotStructured):
            raise result
        return result

    def layers(self, params: PyTree) -> Sequence[LinearLayer]:
        """The model's layers in call order.

        Args:
          params: the model's parameters.

        Returns:
          One `jaxdyn.structure.LinearLayer` (`c_W = c_b = 1`) per Dense/Linear call.

        Raises:
          ValueError: if, for these `params`, the model is not made of Dense/Linear layers
            only (see `jaxdyn.adapters.from_linen`).
        """
        try:
            return self._trace(params)[0]
        except _NotStructured as err:
            raise ValueError(f"this flax model has no linear structure: {err}.") from None

    def apply(self, params: PyTree, x: jax.Array, tap: Callable[..., jax.Array]) -> jax.Array:
        """Applies the model with every layer output passed through `tap`.

        Args:
          params: the model's parameters.
          x: inputs `(n, ...)`.
          tap: `tap(l, h, z) -> z'`, called for the l-th layer with its input `h (n, fan_in)`
            and output `z (n, width)`; the layer's output becomes `z'`.

        Returns:
          `apply_fn(params, x)` computed with the tapped layer outputs, `(n, k)`.

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
                    "structure does not hold; use method='jacobian' or 'ntvp'."
                )
            return tap(l, h, z)

        out = self._run(params, x, on_call)
        if len(seen) != len(want):
            raise ValueError(
                f"this flax model made {len(seen)} {self._what} calls for inputs of shape "
                f"{jnp.shape(x)}, but {len(want)} for {self._example.shape}: its linear "
                "structure does not hold; use method='jacobian' or 'ntvp'."
            )
        return out


# ----------------------------------------------------------------------------
# Does a model qualify?
# ----------------------------------------------------------------------------


def _example_candidates(params: PyTree, x_example: Any) -> list[jax.ShapeDtypeStruct]:
    """The input specs to discover the layer order with.

    Args:
      params: the model's parameters.
      x_example: the user's example input, or None.

    Returns:
      `[spec of x_example]`, or, without one, `(2, fan_in)` for each distinct 2-D `kernel
      (fan_in, width)` leaf, in leaf order.
    """
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
    """Whether a change to example 0 moves another example's output (e.g. batch statistics).

    Tested exactly with one jvp at a random input shaped like `spec`, cut to at most 4
    examples so that a large `x_example` costs little.

    Args:
      apply_fn: the model, `apply_fn(params, x) -> (n, k)`.
      params: the model's parameters.
      spec: the input spec `(n, ...)`.

    Returns:
      True if examples interact; False for non-float inputs or fewer than 2 examples.
    """
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


def _check_probe_vjp(
    structure: FlaxLinearStructure, params: PyTree, spec: jax.ShapeDtypeStruct
) -> None:
    """Abstractly traces what `method="structured"` does with `structure`.

    That is a vjp through zero probes added at every layer output, capturing the layer inputs
    and contracting them with the output gradients.

    Args:
      structure: the candidate structure.
      params: the model's parameters.
      spec: the input spec `(n, fan_in)`.

    Raises:
      Exception: whatever the trace raises when the model is not structured or the taps
        cannot be differentiated (e.g. a layer inside a lifted transform leaks its inputs).
    """

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

    with jax.checking_leaks():
        jax.eval_shape(probe_vjp, _specs(params), spec)


def find_structure(
    run: Runner, apply_fn: ApplyFn, params: PyTree, x_example: Any, what: str
) -> FlaxLinearStructure | None:
    """The linear structure of a flax model, if it qualifies (never raises).

    Qualifies: every parameter leaf is the kernel/bias of exactly one standard Dense/Linear
    call on a 2-D input, the structured gradients can be taken (abstract trace of a probe vjp,
    as `jaxdyn.ntk` does) and examples do not interact.

    Args:
      run: `run(params, x, on_call)`, from `linen_runner` or `nnx_runner`.
      apply_fn: the adapted model, `apply_fn(params, x) -> (n, k)`.
      params: the model's parameters.
      x_example: an example input `(n, d)`, or None to try `(2, fan_in)` for the fan-ins of
        the kernels.
      what: the layer kind for messages, "Dense" or "Linear".

    Returns:
      A `FlaxLinearStructure`, or None if the model does not qualify.
    """
    for spec in _example_candidates(params, x_example):
        structure = FlaxLinearStructure(run, spec, what)
        try:
            _check_probe_vjp(structure, params, spec)
            mixes = _mixes_examples(apply_fn, params, spec)
        except Exception:  # noqa: BLE001 -- any failure just means "not structured"
            mixes = None
        if mixes is not None:
            return None if mixes else structure
    return None


# ----------------------------------------------------------------------------
# flax.linen: intercept nn.Dense
# ----------------------------------------------------------------------------


def _plain_dense(module: Any) -> bool:
    """True for a `flax.linen.Dense` itself.

    Not a subclass, nor a lifted one (`nn.remat(nn.Dense)`, ...), whose call may differ or
    hide the layer in a transform.
    """
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


def linen_runner(
    module: Any, rest: Mapping[str, Any], method: Any, apply_kwargs: Mapping[str, Any]
) -> Runner:
    """A `run(params, x, on_call)` for a linen module (`flax.linen.intercept_methods`).

    Args:
      module: the `flax.linen.Module`.
      rest: the non-trainable variable collections (`batch_stats`, ...), held fixed.
      method: the method to apply instead of `__call__`, or None.
      apply_kwargs: extra keyword arguments for `module.apply`.

    Returns:
      `run(params, x, on_call)`, which applies the module like `from_linen`'s `apply_fn`
      with each Dense output `z (n, width)` replaced by `on_call(path, use_bias, issue, h,
      z)`.
    """

    def run(params: PyTree, x: jax.Array, on_call: OnCall) -> jax.Array:
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


# ----------------------------------------------------------------------------
# flax.nnx: tap nnx.Linear
# ----------------------------------------------------------------------------


_NNX_TAP: contextvars.ContextVar[Callable[..., jax.Array] | None] = contextvars.ContextVar(
    "jaxdyn_nnx_tap", default=None
)
"""The hook `_TappedLinear.__call__` hands its `(module, h, z)` to, set by `nnx_runner`."""


@functools.cache
def _tapped_linear_class() -> type:
    """A `flax.nnx.Linear` subclass whose output goes through the active `_NNX_TAP` hook.

    `nnx_runner` switches the class of the Linear layers of its own freshly built copy of the
    model (never the user's) to this one, for one forward pass.
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


def nnx_runner(build: Callable[[PyTree], Any]) -> Runner:
    """A `run(params, x, on_call)` for an nnx model (tapped `nnx.Linear` layers).

    Args:
      build: `build(params)`, a fresh copy of the nnx module holding `params`.

    Returns:
      `run(params, x, on_call)`, which runs `build(params)(x)` with each `nnx.Linear` output
      `z (n, width)` replaced by `on_call(path, use_bias, issue, h, z)`.
    """

    def run(params: PyTree, x: jax.Array, on_call: OnCall) -> jax.Array:
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
