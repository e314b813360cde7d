"""Empirical neural tangent kernel of any `apply_fn(params, x)`.

`Theta(x1, x2) = J(x1) J(x2)^T` with `J = d apply_fn / d params` at `params`. Methods:

- `"jacobian"`: per-example Jacobians (`vmap` of `jacrev`), contracted leaf by leaf.
  Memory `(n1 + n2) * k * P` numbers for P parameters.
- `"ntvp"`: NTK-vector products. For each example of `x2` and each output, a vjp gives
  the parameter cotangent and a jvp through the `x1` batch gives one column of the kernel.
  Never holds `J(x1)`; costs about `n1 * n2 * k` forward passes.
- `"structured"`: for models with a `jaxdyn.structure.LinearStructure` (`jaxdyn.nets`
  Dense/Conv networks, flax models of Dense layers). A Dense layer's per-example gradient is
  an outer product, so its NTK part is `(c_W^2 H_l H_l'^T + c_b^2) * (G_l G_l'^T)` from the
  layer inputs `H_l` and the output gradients `G_l` at its output: `k` batch vjps and
  matrix products, no per-parameter Jacobian. A Conv layer's per-example weight gradient is
  `patches^T G_l`, contracted directly (its weights are few; its positions many).
- `"auto"`: `"structured"` where available, otherwise one picked with the cost and memory
  model in `ntk_cost`, which also says why.

`batch_size` tiles the work into blocks evaluated under `lax.map`, so memory stays bounded
for any n and the computation remains one compiled program; by default the block is the
largest that fits a memory budget, and a result too big for it is assembled on host. The
structured kernel of x with itself (n >= 1024) is computed from the blocks i <= j only.
`devices` shards the rows of x1 over several devices with `jax.shard_map`.

Shapes and trace convention follow neural-tangents: outputs `(n, *out)`; `trace_axes` are
output axes averaged over (the kernel holds the MEAN over them); remaining output axes come
as adjacent pairs. For `(n, k)` outputs: `trace_axes=(-1,)` gives `(n1, n2)`,
`trace_axes=()` gives `(n1, n2, k, k)`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax

from jaxdyn import batching
from jaxdyn import structure as jaxdyn_structure
from jaxdyn._checks import (
    check_axes,
    check_batch_size,
    check_choice,
    check_finite,
    check_float,
    check_inputs,
    describe,
    fail,
    is_concrete,
)
from jaxdyn._ntk_cost import NTKCost
from jaxdyn._ntk_cost import cost as _cost
from jaxdyn._ntk_cost import default_memory_budget as _default_memory_budget
from jaxdyn._ntk_layout import ApplyFn, Layout
from jaxdyn._ntk_layout import layout as _layout
from jaxdyn._ntk_methods import BLOCKS
from jaxdyn._ntk_structured import model_structure, structured_kernels

PyTree = Any
NTKFn = Callable[[jax.Array, jax.Array | None, PyTree], jax.Array]
"""`kernel(x1, x2, params) -> (n1, n2, *pairs)`, what `ntk_fn` returns."""
KernelFn = NTKFn
"""The former name of `NTKFn` (`jaxdyn.nets.KernelFn` is the infinite-width kernel class)."""

__all__ = [
    "METHODS",
    "NTKCost",
    "NTKFn",
    "empirical_ntk",
    "ntk_fn",
    "ntk_cost",
    "ntk_by_group",
    "ntk_by_group_fn",
    "param_groups",
]

METHODS = ("auto", "jacobian", "ntvp", "structured")


# --------------------------------------------------------------------------- arguments


def _check_trace_axes(trace_axes: Sequence[int]) -> tuple[int, ...]:
    # A sequence only: neural-tangents' convention, and a bare int here has always been refused.
    if not isinstance(trace_axes, (tuple, list)):
        fail(
            "trace_axes",
            "a tuple of ints (output axes, e.g. (-1,))",
            describe(trace_axes),
            TypeError,
        )
    return check_axes("trace_axes", trace_axes, None)


_PRECISIONS = (None, "highest", "high", "default", "float32", "tensorfloat32", "bfloat16")


def _check_memory_budget(memory_budget: float | None) -> float | None:
    return check_float(
        "memory_budget",
        memory_budget,
        minimum=0,
        strict_min=True,
        allow_none=True,
        hint="bytes, e.g. 2**30 for 1 GiB",
    )


def _check_devices(devices):
    """None, "all" or a sequence of devices -> None or a tuple of devices."""
    if devices is None:
        return None
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(
                f"`devices` must be None, 'all' or a sequence of jax devices; got {devices!r}."
            )
        return tuple(jax.devices())
    try:
        devs = tuple(devices)
    except TypeError:
        raise TypeError(
            f"`devices` must be None, 'all' or a sequence of jax devices; got "
            f"{type(devices).__name__}."
        ) from None
    if not devs or not all(isinstance(d, jax.Device) for d in devs):
        raise TypeError(
            f"`devices` must be None, 'all' or a non-empty sequence of jax devices; "
            f"got {devices!r}."
        )
    return devs


# --------------------------------------------------------------------------- parameter groups


def _path_names(path: tuple) -> tuple[str, ...]:
    names = []
    for k in path:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                names.append(str(getattr(k, attr)))
                break
        else:
            names.append(str(k))
    return tuple(names)


def param_groups(
    params: PyTree, groups: None | int | Callable[[tuple[str, ...]], str] = None
) -> dict[str, list[int]]:
    """Assigns each parameter leaf to a named group (a layer, by default).

    Args:
      params: the model's parameter PyTree.
      groups: `None` groups by the first level of the tree that has more than one child
        (so `{'params': {'Dense_0': ..., 'Dense_1': ...}}` gives `Dense_0`, `Dense_1`, and a
        stax parameter tuple gives `'0'`, `'2'`, ...); an int `d` groups by the first `d`
        keys of each leaf's path; a callable maps a leaf's path (tuple of str) to a name.

    Returns:
      `{group name: [leaf indices in jax.tree_util.tree_leaves(params) order]}`, in
      order of first appearance.
    """
    paths = [_path_names(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    if not paths:
        raise ValueError("`params` has no array leaves; there is nothing to differentiate.")
    if groups is None:
        depth = 0
        while all(len(p) > depth for p in paths) and len({p[: depth + 1] for p in paths}) == 1:
            depth += 1
        name_of = lambda p: "/".join(p[: depth + 1]) or "params"  # noqa: E731
    elif isinstance(groups, int) and not isinstance(groups, bool):
        if groups < 1:
            raise ValueError(f"`groups` as an int is a path depth and must be >= 1; got {groups}.")
        name_of = lambda p: "/".join(p[:groups]) or "params"  # noqa: E731
    elif callable(groups):
        name_of = lambda p: str(groups(p))  # noqa: E731
    else:
        raise TypeError(
            f"`groups` must be None, an int depth or a callable path -> name; got {groups!r}."
        )
    out: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        out.setdefault(name_of(p), []).append(i)
    return out


# --------------------------------------------------------------------------- cost model


def ntk_cost(
    apply_fn: ApplyFn,
    params: PyTree,
    x1: jax.Array,
    x2: jax.Array | None = None,
    *,
    trace_axes: Sequence[int] = (-1,),
    batch_size: int | None = None,
    memory_budget: float | None = None,
) -> NTKCost:
    """Cost and memory model behind `method="auto"` and `batch_size=None`: what each method
    would need, which one `auto` picks and why, the block size, and whether the result is
    assembled on host.

    Args:
      apply_fn, params, x1, x2, trace_axes, batch_size: as in `empirical_ntk`.
      memory_budget: bytes a method may use; default half the accelerator's memory, or a
        quarter of host RAM on CPU.

    Returns:
      `NTKCost(method, reason, flops, memory_bytes, forward_flops, num_params, block_shape,
      on_host)`; `flops` and `memory_bytes` have a `"structured"` entry only where that method
      is available (`apply_fn.linear_structure`), and then `auto` always picks it.

    Example:
      >>> jaxdyn.ntk_cost(apply_fn, params, x).reason
      'jacobian: fewer flops (1.2e+08 vs 3.4e+09 for ntvp); both fit the 5.8 GiB budget'
    """
    check_batch_size("batch_size", batch_size)
    memory_budget = _check_memory_budget(memory_budget)
    check_inputs(x1, x2)
    layout = _layout(apply_fn, params, x1, _check_trace_axes(trace_axes))
    budget = _default_memory_budget() if memory_budget is None else memory_budget
    return _cost(apply_fn, params, x1, x2, layout, batch_size, budget)


# --------------------------------------------------------------------------- execution


class _Settings(NamedTuple):
    """The checked arguments of `ntk_fn` / `ntk_by_group_fn` (`groups=False`: one group "all")."""

    apply_fn: ApplyFn
    trace_axes: tuple[int, ...]
    method: str
    batch_size: int | None
    precision: str | None
    groups: Any
    memory_budget: float | None
    devices: tuple[jax.Device, ...] | None

    @property
    def n_devices(self) -> int:
        return 1 if self.devices is None else len(self.devices)


def _settings(
    apply_fn, trace_axes, method, batch_size, precision, groups, memory_budget, devices
) -> _Settings:
    if not callable(apply_fn):
        raise TypeError(
            f"`apply_fn` must be callable `apply_fn(params, x)`; got {type(apply_fn).__name__}."
        )
    trace_axes = _check_trace_axes(trace_axes)
    check_choice("method", method, METHODS)
    if method == "structured" and jaxdyn_structure.of(apply_fn) is None:
        raise ValueError(
            "`method='structured'` needs an `apply_fn` with a `linear_structure` attribute "
            "(jaxdyn.structure): the apply_fn of a jaxdyn.nets.serial network of Dense/Conv "
            "layers and per-example layers (no FanOut or parallel), or of a flax model made "
            "of Dense layers (jaxdyn.from_linen / from_nnx), passed as is (not wrapped). Use "
            "method='jacobian', 'ntvp' or 'auto' for other models."
        )
    check_batch_size("batch_size", batch_size)
    check_choice("precision", precision, _PRECISIONS)
    return _Settings(
        apply_fn,
        trace_axes,
        method,
        batch_size,
        precision,
        groups,
        _check_memory_budget(memory_budget),
        _check_devices(devices),
    )


class _Plan(NamedTuple):
    layout: Layout
    cost: NTKCost
    groups: dict[str, list[int]]


def _plan(s: _Settings, x1, x2, params, allow_host: bool, per_device: bool = False) -> _Plan:
    """Layout, cost (method and block size) and parameter groups of one call. `per_device`:
    plan for one device's share of x1's rows."""
    layout = _layout(s.apply_fn, params, x1, s.trace_axes)
    budget = _default_memory_budget() if s.memory_budget is None else s.memory_budget
    if per_device and s.n_devices > 1:
        x1 = jax.ShapeDtypeStruct((-(-x1.shape[0] // s.n_devices), *x1.shape[1:]), x1.dtype)
    cost = _cost(s.apply_fn, params, x1, x2, layout, s.batch_size, budget, s.method, allow_host)
    if cost.method == "structured":
        _, problem = model_structure(s.apply_fn, params)
        if problem is not None:
            raise ValueError(f"`method='structured'` cannot use this model's structure: {problem}.")
    groups = (
        param_groups(params, s.groups)
        if s.groups is not False
        else {"all": list(range(len(jax.tree_util.tree_leaves(params))))}
    )
    return _Plan(layout, cost, groups)


class _Sharded(NamedTuple):
    """Inside `batching.shard_rows`: x2 has `n2` rows over all devices."""

    n2: int

    def gather(self, rows: PyTree) -> PyTree:
        return batching.gather_rows(rows, self.n2)


def _device_kernels(s: _Settings, x1, x2, params, sharded: _Sharded | None = None):
    """`{group: kernel (n1, n2, *pairs)}` of x1's rows against x2 (None: x1 itself), in
    blocks under `lax.map`. `sharded`: x1 and x2 are this device's rows, and the result is
    this device's rows of the kernel against all of x2."""
    xs2 = x1 if x2 is None else x2
    x2_plan = (
        x2 if sharded is None else jax.ShapeDtypeStruct((sharded.n2, *xs2.shape[1:]), xs2.dtype)
    )
    layout, cost, groups = _plan(s, x1, x2_plan, params, allow_host=False)
    b = cost.block_shape[0] if s.batch_size is None else s.batch_size
    if cost.method == "structured":  # x2's factors are gathered, not x2
        return structured_kernels(
            s.apply_fn,
            params,
            x1,
            x2,
            layout,
            groups,
            b,
            None if sharded is None else sharded.gather,
        )
    if sharded is not None:
        x2 = xs2 = sharded.gather(xs2)
    block = functools.partial(BLOCKS[cost.method], s.apply_fn, params, layout=layout, groups=groups)
    if b >= max(x1.shape[0], xs2.shape[0]):
        return block(x1, x2)
    return batching.map_pairs(block, x1, xs2, b, b)


def _sharded_kernels(s: _Settings, x1, x2, params):
    """`_device_kernels` with the rows of x1 (and of x2) sharded over `s.devices`."""
    rows = (x1,) if x2 is None else (x1, x2)
    sharded = _Sharded(rows[-1].shape[0])

    def per_device(local, p):
        return _device_kernels(s, local[0], local[1] if len(local) > 1 else None, p, sharded)

    return batching.crop_rows(batching.shard_rows(per_device, s.devices, rows, params), x1.shape[0])


class _Kernels:
    """`kernels(x1, x2, params) -> {group: kernel}`: checks the inputs, then runs the
    computation jitted once per input shape, or block row by block row into host memory
    when the cost model says the result does not fit the device."""

    def __init__(self, s: _Settings):
        self.settings = s
        compute = _device_kernels if s.devices is None else _sharded_kernels
        self._jitted = jax.jit(functools.partial(compute, s))
        self._host_rows = {}  # input signature -> rows per host block, or None on device

    def _rows_on_host(self, x1, x2, params) -> int | None:
        leaves = jax.tree_util.tree_leaves(params)
        key = (
            x1.shape,
            x1.dtype,
            None if x2 is None else (x2.shape, x2.dtype),
            jax.tree_util.tree_structure(params),
            tuple((a.shape, a.dtype) for a in leaves),
        )
        if key not in self._host_rows:  # planning compiles a forward pass: once per shape
            cost = _plan(self.settings, x1, x2, params, allow_host=True, per_device=True).cost
            self._host_rows[key] = (
                cost.block_shape[0] * self.settings.n_devices if cost.on_host else None
            )
        return self._host_rows[key]

    def __call__(self, x1, x2, params) -> dict[str, jax.Array]:
        check_inputs(x1, x2)
        check_finite("params", params)
        precision = self.settings.precision
        ctx = (
            contextlib.nullcontext()
            if precision is None
            # also governs matmuls inside apply_fn: TF32 on Ampere/Hopper would cost ~1e-3
            else jax.default_matmul_precision(precision)
        )
        with ctx:
            rows = None
            if is_concrete(x1, x2, params):
                rows = self._rows_on_host(x1, x2, params)
            if rows is None:
                out = self._jitted(x1, x2, params)
            else:
                xs2 = x1 if x2 is None else x2
                out = batching.host_rows(lambda u: self._jitted(u, xs2, params), x1, rows)
        if is_concrete(out):
            for name, k in out.items():
                check_finite(f"NTK ({name}) of apply_fn at params", k)
        return out


def _kernel_dict_fn(
    apply_fn, trace_axes, method, batch_size, precision, groups, memory_budget, devices=None
) -> _Kernels:
    """Builds `kernels(x1, x2, params) -> {group: kernel}`, jitted once per input shape."""
    return _Kernels(
        _settings(
            apply_fn, trace_axes, method, batch_size, precision, groups, memory_budget, devices
        )
    )


# --------------------------------------------------------------------------- public kernels


def ntk_fn(
    apply_fn: ApplyFn,
    *,
    trace_axes: Sequence[int] = (-1,),
    method: str = "auto",
    batch_size: int | None = None,
    precision: str | None = "highest",
    memory_budget: float | None = None,
    devices=None,
) -> NTKFn:
    """Empirical NTK function of `apply_fn`, compiled once per input shape and reused.

    Args:
      apply_fn: model `apply_fn(params, x) -> (n, *out)`; examples must not interact
        (no batch statistics), as for any per-example kernel.
      trace_axes: output axes to average over; `(-1,)` gives `(n1, n2)` for `(n, k)`
        outputs, `()` gives `(n1, n2, k, k)`.
      method: `"jacobian"`, `"ntvp"`, `"structured"` (models with a `linear_structure`:
        `jaxdyn.nets` Dense/Conv networks, flax models of Dense layers) or `"auto"` (see
        `ntk_cost`).
      batch_size: evaluate blocks of at most `batch_size` examples (x1 x x2 blocks under
        `lax.map`; for `"structured"`, factors per block of rows and Grams per block of x1
        rows), so memory stays bounded; the result is the same to rounding. `None` chooses
        the largest block that fits `memory_budget`. When even the result does not fit, it
        is assembled on host, block row by block row, and returned as numpy arrays.
      precision: matmul precision while computing the kernel (`"highest"` by default, so
        float32 kernels on GPUs do not silently use TF32); `None` keeps JAX's default.
      memory_budget: bytes for `method="auto"`'s choice, the block size and host assembly
        (default: see `ntk_cost`); per device when sharded.
      devices: `None` (one device), `"all"` (`jax.devices()`) or a sequence of devices: rows
        of x1 are sharded over them with `jax.shard_map` (for `"structured"`, x2's factors
        are computed sharded and all-gathered); the result is sharded by rows. With several
        processes (`jax.distributed`), pass global arrays.

    Returns:
      `kernel(x1, x2, params)`: `x1 (n1, ...)`, `x2 (n2, ...)` or `None` for `x2 = x1`;
      returns `(n1, n2, *pairs)`.

    Raises:
      TypeError, ValueError: bad arguments, here or in `kernel`: a `trace_axes` that is not a
        tuple of distinct output axes, a `memory_budget` that is not a positive number of
        bytes, empty or complex inputs, inputs or `params` that `apply_fn` refuses (named,
        with the model's own error), NaN/Inf in the inputs, `params` or the kernel (the
        value checks only outside jit).

    Example:
      >>> kernel = jaxdyn.ntk_fn(apply_fn)
      >>> kernel(x_train, None, params).shape   # (n, n)
    """
    kernels = _kernel_dict_fn(
        apply_fn, trace_axes, method, batch_size, precision, False, memory_budget, devices
    )

    def kernel(x1: jax.Array, x2: jax.Array | None, params: PyTree) -> jax.Array:
        return kernels(x1, x2, params)["all"]

    return kernel


def ntk_by_group_fn(
    apply_fn: ApplyFn,
    *,
    groups=None,
    trace_axes: Sequence[int] = (-1,),
    method: str = "auto",
    batch_size: int | None = None,
    precision: str | None = "highest",
    memory_budget: float | None = None,
    devices=None,
):
    """Per-group (per-layer) NTK function: `kernels(x1, x2, params) -> {group: kernel}`.

    The NTK is a sum over parameters, so it splits exactly into the kernels of parameter
    groups, `Theta = sum_g J_g J_g^T`; the parts show which layers drive learning and add
    up to `ntk_fn`'s kernel. `groups` as in `param_groups`; other arguments as in `ntk_fn`.
    """
    return _kernel_dict_fn(
        apply_fn, trace_axes, method, batch_size, precision, groups, memory_budget, devices
    )


@functools.lru_cache(maxsize=32)
def _cached_ntk_fn(apply_fn, trace_axes, method, batch_size, precision, memory_budget, devices):
    return ntk_fn(
        apply_fn,
        trace_axes=trace_axes,
        method=method,
        batch_size=batch_size,
        precision=precision,
        memory_budget=memory_budget,
        devices=devices,
    )


def empirical_ntk(
    apply_fn: ApplyFn,
    params: PyTree,
    x1: jax.Array,
    x2: jax.Array | None = None,
    *,
    trace_axes: Sequence[int] = (-1,),
    method: str = "auto",
    batch_size: int | None = None,
    precision: str | None = "highest",
    memory_budget: float | None = None,
    devices=None,
) -> jax.Array:
    """Empirical NTK `J(x1) J(x2)^T` of `apply_fn` at `params`.

    Args and conventions as in `ntk_fn` (which this calls, caching the compiled function
    for repeated calls with the same `apply_fn`).

    Returns:
      `(n1, n2)` for `(n, k)` outputs with `trace_axes=(-1,)` (mean over outputs), or
      `(n1, n2, k, k)` with `trace_axes=()`.

    Example:
      >>> k = jaxdyn.empirical_ntk(apply_fn, params, x_train)   # (n, n)
    """
    trace_axes = _check_trace_axes(trace_axes)
    try:
        devs = devices if devices is None or isinstance(devices, str) else tuple(devices)
        key = (apply_fn, trace_axes, method, batch_size, precision, memory_budget, devs)
        hash(key)
    except TypeError:  # unhashable apply_fn (e.g. a partial of arrays): no caching
        key = None
    # ntk_fn checks the arguments (outside the try, so its TypeErrors reach the caller)
    fn = (
        ntk_fn(
            apply_fn,
            trace_axes=trace_axes,
            method=method,
            batch_size=batch_size,
            precision=precision,
            memory_budget=memory_budget,
            devices=devices,
        )
        if key is None
        else _cached_ntk_fn(*key)
    )
    return fn(x1, x2, params)


def ntk_by_group(
    apply_fn: ApplyFn,
    params: PyTree,
    x1: jax.Array,
    x2: jax.Array | None = None,
    *,
    groups=None,
    trace_axes: Sequence[int] = (-1,),
    method: str = "auto",
    batch_size: int | None = None,
    precision: str | None = "highest",
    memory_budget: float | None = None,
    devices=None,
) -> dict[str, jax.Array]:
    """Empirical NTK split by parameter group: `{group: J_g(x1) J_g(x2)^T}`.

    The values add up to `empirical_ntk(apply_fn, params, x1, x2, ...)`. `groups` as in
    `param_groups` (default: one group per layer).

    Example:
      >>> parts = jaxdyn.ntk_by_group(apply_fn, params, x)
      >>> {name: float(jnp.trace(k)) for name, k in parts.items()}   # who drives learning
    """
    fn = ntk_by_group_fn(
        apply_fn,
        groups=groups,
        trace_axes=trace_axes,
        method=method,
        batch_size=batch_size,
        precision=precision,
        memory_budget=memory_budget,
        devices=devices,
    )
    return fn(x1, x2, params)
