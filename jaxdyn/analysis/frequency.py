"""The frequency principle (F-Principle, spectral bias): networks fit a target from low to high
frequency, classical iterations from high to low.

Xu, Zhang, Luo, Xiao and Ma, "Frequency principle: Fourier analysis sheds light on deep
neural networks" (2019/2020); the linear frequency principle (LFP) of a two-layer network in
the NTK regime: Zhang, Xu, Luo and Ma (2019), "Explicitizing an implicit bias of the frequency
principle in two-layer neural networks", and Luo, Ma, Xu and Zhang (2020), "On the exact
computation of linear frequency principle dynamics".

1-D analysis on a uniform grid (DFT index k, numpy's unnormalised DFT):

- `peak_indices(target, count)`: the frequencies to watch, strict local maxima of |DFT|.
- `per_frequency_error(outputs, target, peaks, kind=...)`: relative error at each peak over
  training, `(T, n) -> (T, P)`; `convergence_steps(errors, steps)`: when each one settles
  below a threshold; `fitted_rates(errors, steps)`: the exponential rate of each.
- `lfp_rates(xi, a, w, bias_density=...)`: gamma(xi)^2 of the LFP of a two-layer ReLU net,
  derived exactly in its docstring (and where it differs from a common reading);
  `fourier_mode_rates(kernel, x_grid)`: the rate at which `jaxdyn.dynamics.mse` removes each
  Fourier mode of the grid, for any (empirical or infinite-width) NTK.
- `jacobi_mode_errors(g, steps, omega=2/3)`: damped Jacobi on `-u'' = g`, per sine mode.

The high-dimensional filtering method (`gaussian_filter`, `filtered_errors`) and the models
and losses of the MscaleDNN papers (`srelu`, `s2relu`, `mscale`, ...) live in
`_frequency_filter` and `_frequency_models` and are re-exported here.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn._checks import (
    check_array,
    check_choice,
    check_finite,
    check_float,
    check_int,
    describe,
    fail,
    is_concrete,
)
from jaxdyn.analysis._frequency_jacobi import (
    JacobiErrors,
    jacobi_factors,
    jacobi_mode_errors,
    sine_modes,
)
from jaxdyn.analysis._frequency_lfp import (
    FourierModeRates,
    LFPRates,
    check_uniform_grid,
    fourier_mode_rates,
    lfp_rates,
)

Array = Any

ERROR_KINDS = ("magnitude", "complex")

__all__ = [
    "ERROR_KINDS",
    "FourierModeRates",
    "JacobiErrors",
    "LFPRates",
    "convergence_steps",
    "fitted_rates",
    "fourier_mode_rates",
    "jacobi_factors",
    "jacobi_mode_errors",
    "lfp_rates",
    "peak_indices",
    "per_frequency_error",
    "sine_modes",
]


def _as_signal(name: str, y: Any, *, min_points: int = 4) -> Any:
    """A signal on a 1-D grid: `(n,)` or `(n, 1)` -> `(n,)`."""
    check_array(name, y, min_ndim=1)
    shape = tuple(y.shape)
    if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        fail(name, "a signal on a 1-D grid, of shape (n,) or (n, 1)", f"shape {shape}")
    if shape[0] < min_points:
        fail(name, f"a signal on at least {min_points} grid points", f"shape {shape}")
    check_finite(name, y)
    return jnp.reshape(y, (shape[0],))


def peak_indices(target: Array, count: int = 3, *, x: Array | None = None) -> np.ndarray:
    """The DFT indices of the `count` largest strict interior local maxima of `|DFT(target)|`.

    On the one-sided spectrum `|F_k|`, k = 0..n//2, a peak is a k with 0 < k < n//2 and
    `|F_k| > |F_k-1|`, `|F_k| > |F_k+1|`. Of the peaks, the `count` largest are kept (a
    sampled sum of sines also has small side lobes) and returned lowest frequency first.
    Index k is the frequency `k / (n dx)` cycles per unit of x (for `n` points of
    `linspace(-pi, pi, n)`, the angular frequency `k (n - 1) / n`).

    Args:
      target: `(n,)` or `(n, 1)` values on a uniform 1-D grid, n >= 4, finite.
      count: how many peaks (>= 1).
      x: optional grid `(n,)`, checked to be uniform.

    Returns:
      `(count,)` int numpy array, increasing. Not traceable (the peaks set shapes).

    Raises:
      ValueError: a short, non-1-D or non-finite target, a non-uniform grid, `count` larger
        than the number of peaks.
    """
    if not is_concrete(target):
        fail("target", "a concrete array (peaks set shapes)", "a traced array", TypeError)
    y = np.asarray(_as_signal("target", target), np.float64)
    count = check_int("count", count, minimum=1)
    if x is not None:
        g = check_uniform_grid("x", x)
        if g.size != y.size:
            fail("peak_indices(x)", f"a grid of the target's {y.size} points", f"{g.size} points")
    mag = np.abs(np.fft.rfft(y))
    inner = np.arange(1, mag.size - 1)
    is_peak = (mag[inner] > mag[inner - 1]) & (mag[inner] > mag[inner + 1])
    peaks = inner[is_peak]
    if count > peaks.size:
        fail(
            "count",
            f"at most the number of strict local maxima of |DFT(target)| ({peaks.size})",
            str(count),
        )
    # The largest `count`; ties broken towards the lower frequency (stable sort).
    keep = peaks[np.argsort(-mag[peaks], kind="stable")[:count]]
    return np.sort(keep)


def per_frequency_error(
    outputs: Array, target: Array, peaks: Array, *, kind: str = "magnitude"
) -> Array:
    """Relative error of `outputs` at each peak frequency, over training.

    With `h_k`, `f_k` the DFTs of an output and of the target at index k:
    `kind="magnitude"`: `| |h_k| - |f_k| | / |f_k|`, what the authors' code measures and what
    the `frequency-principle` experiment reports; `kind="complex"`: `|h_k - f_k| / |f_k|`, what
    their text writes (it also sees phase errors, and bounds the magnitude error above).

    Args:
      outputs: `(T, n)`, `(T, n, 1)` or `(n,)` outputs on the target's grid.
      target: `(n,)` or `(n, 1)`.
      peaks: `(P,)` DFT indices in 0..n//2 (`peak_indices`), where `f_k != 0`.
      kind: "magnitude" or "complex".

    Returns:
      `(T, P)` (or `(P,)` for one output). Traceable in `outputs` and `target`.

    Raises:
      ValueError: mismatched shapes, out-of-range peaks, `f_k = 0` at a peak, NaN/Inf.
    """
    f = _as_signal("target", target)
    n = f.shape[0]
    kind = check_choice("kind", kind, ERROR_KINDS)
    check_array("outputs", outputs, min_ndim=1)
    h = jnp.asarray(outputs)
    if h.ndim == 3 and h.shape[-1] == 1:
        h = h[..., 0]
    single = h.ndim == 1
    h = h[None] if single else h
    if h.ndim != 2 or h.shape[1] != n:
        fail(
            "per_frequency_error(outputs)",
            f"outputs of shape (T, {n}), (T, {n}, 1) or ({n},) on the target's grid",
            f"shape {tuple(outputs.shape)}",
        )
    check_finite("outputs", outputs)
    check_array("peaks", peaks, ndim=1, kinds="iu")
    if is_concrete(peaks):
        pv = np.asarray(peaks)
        if np.any(pv < 0) or np.any(pv > n // 2):
            fail("peaks", f"DFT indices in 0..{n // 2}", f"{pv.tolist()}")
    f_hat = jnp.fft.rfft(f)[jnp.asarray(peaks)]
    if is_concrete(f_hat) and np.any(np.abs(np.asarray(f_hat)) == 0):
        fail("peaks", "frequencies where the target's DFT is nonzero", "a zero coefficient")
    err = _peak_errors(h, f_hat, jnp.asarray(peaks), kind)
    return err[0] if single else err


@functools.partial(jax.jit, static_argnums=3)
def _peak_errors(h: jax.Array, f_hat: jax.Array, peaks: jax.Array, kind: str) -> jax.Array:
    h_hat = jnp.fft.rfft(h, axis=-1)[:, peaks]
    if kind == "magnitude":
        return jnp.abs(jnp.abs(h_hat) - jnp.abs(f_hat)[None]) / jnp.abs(f_hat)[None]
    return jnp.abs(h_hat - f_hat[None]) / jnp.abs(f_hat)[None]


def _errors_and_steps(errors: Any, steps: Any) -> tuple[Any, Any]:
    check_array("errors", errors, ndim=2)
    check_array("steps", steps, ndim=1, kinds="iuf")
    if steps.shape[0] != errors.shape[0]:
        fail(
            "convergence_steps(steps)",
            f"one step per row of `errors` ({errors.shape[0]})",
            f"shape {tuple(steps.shape)}",
        )
    check_finite("steps", steps)
    if is_concrete(steps) and np.any(np.diff(np.asarray(steps)) <= 0):
        fail("steps", "strictly increasing recorded steps", describe(steps))
    return jnp.asarray(errors), jnp.asarray(steps)


def convergence_steps(errors: Array, steps: Array, threshold: float = 0.1) -> Array:
    """For each frequency, the first recorded step after which its error stays below
    `threshold` (to the end of the record), or -1 where the last error is not below it.

    Args:
      errors: `(T, P)` errors (`per_frequency_error`); NaN counts as not below.
      steps: `(T,)` strictly increasing recorded steps.
      threshold: > 0.

    Returns:
      `(P,)` steps (the dtype of `steps`), -1 where a frequency never settles. Traceable.
    """
    e, s = _errors_and_steps(errors, steps)
    threshold = check_float("threshold", threshold, minimum=0, strict_min=True)
    return _settled(e, s, threshold)


@jax.jit
def _settled(e: jax.Array, s: jax.Array, threshold: Any) -> jax.Array:
    below = e < threshold  # NaN compares False
    # stays[t] = below at every t' >= t: a reversed cumulative AND
    stays = jnp.flip(jnp.cumprod(jnp.flip(below, 0).astype(jnp.int32), axis=0), 0) > 0
    first = jnp.argmax(stays, axis=0)
    return jnp.where(stays[-1], s[first], jnp.asarray(-1, s.dtype))


def fitted_rates(errors: Array, steps: Array, *, floor: float = 1e-3, ceiling: float = 0.9):
    """The exponential rate of each error column: `-slope` of a least-squares line through
    `log(error)` against step, over the recorded points with `floor < error < ceiling`
    (past the start, before the floor of rounding and of the other modes' leakage).

    Args:
      errors: `(T, P)`; steps: `(T,)` strictly increasing.
      floor, ceiling: the error window, `0 < floor < ceiling`.

    Returns:
      `(P,)` numpy rates per unit of step; NaN where fewer than 2 points fall in the window.
    """
    e, s = _errors_and_steps(errors, steps)
    floor = check_float("floor", floor, minimum=0, strict_min=True)
    ceiling = check_float("ceiling", ceiling, minimum=0, strict_min=True)
    if not floor < ceiling:
        fail("floor", f"below `ceiling` ({ceiling})", repr(floor))
    e, s = np.asarray(e, np.float64), np.asarray(s, np.float64)
    out = np.full(e.shape[1], np.nan)
    for p in range(e.shape[1]):
        ok = (e[:, p] > floor) & (e[:, p] < ceiling)
        if ok.sum() >= 2:
            slope = np.polyfit(s[ok], np.log(e[ok, p]), 1)[0]
            out[p] = -slope
    return out


def _reexport(module_name: str) -> None:
    """Adds the public names (`__all__`) of a sibling private module to this namespace."""
    module = importlib.import_module(f"jaxdyn.analysis.{module_name}")
    for name in module.__all__:
        globals()[name] = getattr(module, name)
        if name not in __all__:
            __all__.append(name)


# The filtering method and the MscaleDNN models and losses (their own modules).
for _module in ("_frequency_filter", "_frequency_models"):
    _reexport(_module)
