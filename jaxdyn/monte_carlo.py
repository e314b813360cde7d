"""`monte_carlo_kernel_fn`: empirical NNGP and NTK averaged over random initialisations.

For a finite network ``init_fn, apply_fn`` (e.g. from `jaxdyn.nets`), the Monte-Carlo estimates

    NNGP(x1, x2) ~ mean_s  f_s(x1) f_s(x2)^T / k,        NTK(x1, x2) ~ mean_s  J_s(x1) J_s(x2)^T / k

over ``n_samples`` initialisations ``s`` (traced over the ``k`` outputs, the neural-tangents
``trace_axes=(-1,)`` convention of `jaxdyn.nets`' ``kernel_fn``) converge to the infinite-width
kernels as width and samples grow (exactly in expectation for one hidden layer, at any width).
Per sample, the NTK is computed as `jaxdyn.ntk_fn` computes it (the structured method for
`jaxdyn.nets` networks and other models with a linear structure, otherwise the Jacobian or
NTK-vector-product method its cost model picks), the NNGP from the outputs; for ``x2`` None
(x1 with itself) each is computed once. Samples are vmapped in groups of
``sample_batch_size``; inputs are tiled into blocks of ``batch_size`` rows, so memory is bounded
by one block of per-example factors (or Jacobians) per sample of a group.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxdyn import batching
from jaxdyn import ntk as ntk_internal
from jaxdyn._checks import check_batch_size, check_inputs, check_int, describe, fail
from jaxdyn.infinite import GETS, Kernel

__all__ = ["monte_carlo_kernel_fn"]

PyTree = Any


def _per_sample(settings, params, x1, x2, gets, block):
    """Empirical kernels ``{get: (n1, n2)}`` of one sample on ``x1 (n1, ...)``, ``x2 (n2, ...)``
    or None (x1 with itself: outputs and per-example derivatives computed once).

    The NTK is `jaxdyn.ntk`'s own computation for one kernel call (``_device_kernels``): the
    structured method for a model with a linear structure (`jaxdyn.nets` networks), otherwise
    the Jacobian or NTK-vector-product method that ``method="auto"``'s cost model picks, tiled
    into blocks of ``block`` rows. The NNGP comes from the outputs, one forward pass per block.
    """
    out = {}
    if "nngp" in gets:
        forward = functools.partial(settings.apply_fn, params)
        f1 = batching.map_rows(forward, x1, block)
        f2 = f1 if x2 is None else batching.map_rows(forward, x2, block)
        out["nngp"] = jnp.matmul(f1, f2.T, precision=lax.Precision.HIGHEST) / f1.shape[-1]
    if "ntk" in gets:
        out["ntk"] = ntk_internal._device_kernels(settings, x1, x2, params)["all"]
    return out


@functools.partial(
    jax.jit, static_argnames=("init_fn", "apply_fn", "gets", "block", "group", "in_shape")
)
def _sample_kernels(keys, x1, x2, *, init_fn, apply_fn, gets, block, group, in_shape):
    """Per-sample kernels ``{get: (S, n1, n2)}`` for the ``S`` keys, ``group`` at a time
    (``x2`` None: x1 with itself)."""
    # ntk_fn's settings for one kernel call: traced over the last output axis, auto method,
    # blocks of `block` rows (so the cost model only picks the method), highest precision.
    settings = ntk_internal._settings(
        apply_fn,
        trace_axes=(-1,),
        method="auto",
        batch_size=block,
        precision="highest",
        groups=False,
        memory_budget=None,
        devices=None,
    )

    def one(key):
        params = init_fn(key, in_shape)[1]
        out = jax.eval_shape(apply_fn, params, x1)
        if len(out.shape) != 2:
            fail("apply_fn(params, x)", "an (n, k) array of outputs", f"shape {out.shape}")
        return _per_sample(settings, params, x1, x2, gets, block)

    s = keys.shape[0]
    grouped = batching.blocks(keys, group)  # pads by repeating the last key; cropped below
    per_group = lax.map(jax.vmap(one), grouped)
    return batching.unblock(per_group, s)


def monte_carlo_kernel_fn(
    init_fn: Callable,
    apply_fn: Callable,
    key: jax.Array,
    n_samples: int | Sequence[int],
    *,
    get: str | Sequence[str] = ("nngp", "ntk"),
    batch_size: int | None = None,
    sample_batch_size: int | None = None,
) -> Callable:
    """Monte-Carlo NNGP / NTK of a finite network over random initialisations.

    Args:
      init_fn: ``init_fn(key, input_shape) -> (output_shape, params)`` (the stax / `jaxdyn.nets`
        convention; ``input_shape`` has batch size -1).
      apply_fn: ``apply_fn(params, x) -> (n, k)``.
      key: PRNG key; sample ``s`` uses ``jax.random.split(key, max(n_samples))[s]``, so the
        estimates for several sample counts are nested (prefixes of one sequence).
      n_samples: number of initialisations, or an increasing sequence of counts (then one
        kernel per count comes back, all from a single pass over ``max(n_samples)`` samples).
      get: ``"nngp"``, ``"ntk"`` or both (the default): what the kernel function returns unless
        its call asks for less.
      batch_size: rows per input block (None: all at once); results equal the unblocked ones
        up to rounding.
      sample_batch_size: initialisations vmapped together (None: all).

    Returns:
      ``kernel_fn(x1, x2=None, get=None)`` -> a `jaxdyn.infinite.Kernel` ``(nngp, ntk)`` of
      ``(n1, n2)`` arrays (the kernel itself for a string ``get``); a tuple of them, one per
      count, for a sequence ``n_samples``. Memory: the per-sample kernels of all samples,
      ``max(n_samples) * n1 * n2`` numbers, besides one block of per-example factors (structured)
      or Jacobians per vmapped sample.

    Example:
      >>> init_fn, apply_fn, kernel_fn = nets.serial(nets.Dense(256), nets.Relu(), nets.Dense(1))
      >>> mc = monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(0), 128)
      >>> mc(x1, x2).ntk           # ~ kernel_fn(x1, x2).ntk
    """
    for name, fn in (("init_fn", init_fn), ("apply_fn", apply_fn)):
        if not callable(fn):
            fail(f"monte_carlo_kernel_fn({name})", "callable", describe(fn), TypeError)
    if isinstance(n_samples, (int, np.integer)) and not isinstance(n_samples, bool):
        counts, several = (check_int("n_samples", n_samples, minimum=1),), False
    elif isinstance(n_samples, (tuple, list)) and n_samples:
        counts, several = tuple(check_int("n_samples", c, minimum=1) for c in n_samples), True
        if any(b <= a for a, b in zip(counts, counts[1:])):
            fail("n_samples", "an int or an increasing sequence of ints", repr(n_samples))
    else:
        fail("n_samples", "a positive int or an increasing sequence of them", describe(n_samples))
    default_gets = _check_get(get, "monte_carlo_kernel_fn(get)")
    batch_size = check_batch_size("batch_size", batch_size)
    sample_batch_size = check_batch_size("sample_batch_size", sample_batch_size)
    total = counts[-1]
    keys = jax.random.split(key, total)
    group = total if sample_batch_size is None else min(sample_batch_size, total)

    def kernel_fn(x1, x2=None, get=None):
        gets = default_gets if get is None else _check_get(get, "kernel_fn(get)")
        check_inputs(x1, x2)
        x1 = jnp.asarray(x1)
        x2 = None if x2 is None else jnp.asarray(x2)
        n = max(x1.shape[0], x1.shape[0] if x2 is None else x2.shape[0])
        block = n if batch_size is None else batch_size
        names = tuple(g for g in GETS if g in gets)
        # as in ntk_fn: also the matmuls inside apply_fn (TF32 on GPUs would cost ~1e-3)
        with jax.default_matmul_precision("highest"):
            per = _sample_kernels(
                keys,
                x1,
                x2,
                init_fn=init_fn,
                apply_fn=apply_fn,
                gets=names,
                block=block,
                group=group,
                in_shape=(-1, *x1.shape[1:]),
            )
        results = []
        for c in counts:
            means = {g: jnp.mean(per[g][:c], axis=0) for g in names}
            if isinstance(get, str) or (get is None and isinstance(default_gets, str)):
                results.append(means[names[0]])
            else:
                results.append(Kernel(**{g: means.get(g) for g in GETS}))
        return tuple(results) if several else results[0]

    return kernel_fn


def _check_get(get, where):
    gets = (get,) if isinstance(get, str) else tuple(get) if isinstance(get, (tuple, list)) else ()
    if not gets or any(g not in GETS for g in gets):
        fail(where, f"one of {', '.join(map(repr, GETS))} or a tuple of them", repr(get))
    return get if isinstance(get, str) else gets
