"""The `KernelFn` object behind every `jaxdyn.nets` layer: checks the inputs, compiles the
layer recursions once per input shape, and evaluates them in blocks on request (with
`jaxdyn.batching`, as the empirical NTK is).

`jaxdyn.nets` builds the `transform` each `KernelFn` wraps (a map on
`jaxdyn.infinite.KernelState`s, composed by the combinators); this module reads the kernels
out of it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdyn import batching, infinite
from jaxdyn._checks import check_array, check_batch_size, check_inputs
from jaxdyn.infinite import GETS, Kernel, KernelState

State = KernelState | list  # list of states between FanOut and FanInSum


class KernelFn:
    """Infinite-width kernel of a layer or network.

    Call as `kernel_fn(x1, x2=None, get=("nngp", "ntk"), *, batch_size=None)`.
    `transform` is the layer's map on `KernelState`s, which combinators compose.
    """

    def __init__(self, transform: Callable[[State], State], name: str):
        self.transform = transform
        self.name = name
        self.__name__ = name
        # One compiled program per input shapes / batch_size: eager execution of the many
        # small kernel ops (and of the quadrature's scan) would be retraced on every call.
        self._jitted = jax.jit(self._kernels, static_argnames=("batch_size",))

    def __repr__(self) -> str:
        return f"KernelFn({self.name})"

    def __call__(
        self,
        x1: jax.Array,
        x2: jax.Array | None = None,
        get: str | Sequence[str] = GETS,
        *,
        batch_size: int | None = None,
    ):
        """Infinite-width kernels between `x1` and `x2`.

        Args:
          x1: `(n1, d)` (Dense networks) or `(n1, H, W, C)` (Conv networks).
          x2: `(n2, ...)` with the same per-example shape, or None for `x2 = x1`. Prefer None
            to passing x1 again: the result is then exactly symmetric and its diagonal exact,
            while ReLU / Erf-type kernels of two separately rounded copies of a point carry
            about 1e-8 relative noise (as in neural-tangents).
          get: "nngp", "ntk", or a tuple of them.
          batch_size: if set, evaluate blocks of `batch_size` rows of x1 by `batch_size` rows
            of x2 under `lax.map` (memory bounded by a block; results equal the unblocked
            ones, since each entry only needs its own pair and their diagonals). For
            `x2=None` only the blocks on and above the diagonal are evaluated.
        Returns:
          for a string `get`, one array `(n1, n2)` (or `(n1, n2, H, H', W, W')` for networks
          ending on a spatial layer); for a tuple, a NamedTuple with those fields
          (`Kernel(nngp, ntk)` for the default).
        Raises:
          TypeError: `x1` / `x2` are not real arrays, or `get` is not a string or tuple.
          ValueError: inputs of the wrong rank or per-example shape, an empty batch, NaN/Inf
            in concrete inputs (traced inputs, under `jit`, are not inspected), or a bad
            `get` / `batch_size`.
        """
        fields = _check_get(get)
        x1, x2 = _check_inputs(x1, x2)
        batch_size = check_batch_size("batch_size", batch_size)
        nngp, ntk = self._jitted(x1, x2, batch_size=batch_size)
        vals = {"nngp": nngp, "ntk": ntk}
        if isinstance(get, str):
            return vals[get]
        return _kernel_tuple(fields)(*(vals[f] for f in fields))

    def _kernels(self, x1, x2, batch_size: int | None) -> tuple[jax.Array, jax.Array]:
        if batch_size is None:
            nngp, ntk = self._compute(x1, x2)
        else:
            nngp, ntk = self._blocked(x1, x2, batch_size)
        if x2 is None:  # the two triangles agree to rounding; make it exact
            nngp, ntk = _symmetrize(nngp), _symmetrize(ntk)
        return nngp, ntk

    def _compute(self, x1, x2) -> tuple[jax.Array, jax.Array]:
        return self._readout(infinite.inputs_to_kernel(x1, x2))

    def _readout(self, k0: KernelState) -> tuple[jax.Array, jax.Array]:
        k = self.transform(k0)
        if not isinstance(k, KernelState):
            raise TypeError(
                f"the network ends with {len(k)} parallel branches; merge them with "
                "FanInSum() before the kernel can be read out."
            )
        return k.nngp, k.ntk

    def _blocked(self, x1, x2, bs: int) -> tuple[jax.Array, jax.Array]:
        # The input covariances are as large as the output and cheap, so they are formed
        # once; the layer recursions (where memory goes, e.g. quadrature) run block by
        # block. Each entry depends only on its pair and the two diagonals, so the blocks
        # reproduce the unblocked values.
        k0 = infinite.inputs_to_kernel(x1, x2)
        n1, n2 = k0.nngp.shape[:2]

        def block(i1, i2):  # index blocks (b1,), (b2,) of x1 and x2
            kb = k0._replace(
                cov1=k0.cov1[i1],
                cov2=k0.cov2[i2],
                nngp=k0.nngp[i1][:, i2],
                ntk=k0.ntk[i1][:, i2],
                sym=False,
            )
            if not k0.sym:
                return self._readout(kb)
            # x2 = x1: blocks on the diagonal (the same first row) are kernels of a batch with
            # itself, computed exactly as the unblocked diagonal is (see KernelState.sym).
            return jax.lax.cond(
                i1[0] == i2[0],
                lambda: self._readout(kb._replace(sym=True)),
                lambda: self._readout(kb),
            )

        rows1 = jnp.arange(n1)
        if k0.sym:  # a symmetric kernel: the blocks i <= j, the others are their transposes
            return batching.map_upper(block, rows1, bs)
        return batching.map_pairs(block, rows1, jnp.arange(n2), bs, bs)


# --------------------------------------------------------------------------- checks


@functools.cache
def _kernel_tuple(fields: tuple[str, ...]) -> type:
    if fields == GETS:
        return Kernel
    return NamedTuple("Kernel", [(f, jax.Array) for f in fields])


def _check_get(get) -> tuple[str, ...]:
    fields = (get,) if isinstance(get, str) else get
    try:
        fields = tuple(fields)
    except TypeError:
        raise TypeError(
            f"`get` must be a string or a tuple of strings from {GETS}; got {get!r}."
        ) from None
    bad = [f for f in fields if f not in GETS]
    if bad or not fields or len(set(fields)) != len(fields):
        raise ValueError(f"`get` must be one of {GETS} or a tuple of distinct ones; got {get!r}.")
    return fields


def _check_inputs(x1, x2) -> tuple[jax.Array, jax.Array | None]:
    for name, x in (("x1", x1), ("x2", x2)):
        if x is None and name == "x2":
            continue
        check_array(name, x)
        if x.ndim not in (2, 4):
            raise ValueError(
                f"`{name}` must have shape (n, features) for Dense networks or (n, H, W, C) "
                f"for Conv networks; got shape {tuple(x.shape)}."
            )
    # Same per-example shape, non-empty, and finite when concrete: a NaN input would give a
    # NaN kernel with no hint of where it came from. Traced inputs (under jit) pass.
    check_inputs(x1, x2)
    x1 = jnp.asarray(x1)
    if jnp.issubdtype(x1.dtype, jnp.integer):
        x1 = x1.astype(jnp.result_type(float))
    if x2 is not None:
        x2 = jnp.asarray(x2).astype(x1.dtype)
    return x1, x2


def _symmetrize(a: jax.Array) -> jax.Array:
    # (n, n, H, H', W, W'): the mean of the kernel and its transpose
    return (a + batching.transpose_pairs(a)) / 2
