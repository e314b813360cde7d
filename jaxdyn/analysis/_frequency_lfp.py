"""The linear frequency principle (LFP) of a two-layer ReLU network, and the per-mode rates of
any kernel on the Fourier modes of a uniform grid (private part of `jaxdyn.analysis.frequency`).

Conventions: a frequency `xi` is in cycles per unit of `x` (the mode is `exp(2 pi i xi x)`),
the Fourier transform is `F[f](xi) = int f(x) exp(-2 pi i xi x) dx`, and a kernel's rate on a
mode is the one `jaxdyn.dynamics.mse` uses: gradient flow `df/dt = -lr Theta (f - y) / n`
removes an eigenvector of `Theta` with eigenvalue `lambda` at the rate `lr * lambda / n`.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn._checks import check_array, check_finite, check_float, describe, fail, is_concrete

__all__ = ["FourierModeRates", "LFPRates", "fourier_mode_rates", "lfp_rates"]

Array = Any

# Relative spread of grid spacings accepted as uniform (float32 linspace rounds at ~1e-6).
UNIFORM_RTOL = 1e-4


class LFPRates(NamedTuple):
    """gamma(xi)^2 of the LFP, split into its two power laws. Shapes: those of `xi`.

    Attributes:
      low: the `|xi|^-(d+3)` term (it governs low frequencies).
      high: the `|xi|^-(d+1)` term (it governs high frequencies).
      total: `low + high`, the rate of the mode `xi` per unit of data density (see `lfp_rates`).
      crossover: the scalar `|xi|` where `low == high`.
    """

    low: Array
    high: Array
    total: Array
    crossover: Array


class FourierModeRates(NamedTuple):
    """Rayleigh quotients of a kernel on the Fourier modes of a uniform grid of n points.

    Attributes:
      index: `(n // 2 + 1,)` DFT indices k = 0..n//2.
      frequencies: `(n // 2 + 1,)` `k / (n dx)`, cycles per unit of x.
      rates: `(n // 2 + 1,)` `e_k^H Theta e_k / n` for the unit-norm mode `e_k`.
    """

    index: Array
    frequencies: Array
    rates: Array


def check_uniform_grid(name: str, x: Any, *, min_points: int = 4) -> np.ndarray:
    """A 1-D uniform, increasing grid `(n,)` (or `(n, 1)`) of at least `min_points` points.

    Returns the grid as a float64 numpy array `(n,)`. Needs concrete values.
    """
    check_array(name, x, min_ndim=1, kinds="iuf")
    shape = tuple(x.shape)
    if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        fail(name, "a 1-D grid of shape (n,) or (n, 1)", f"shape {shape}")
    if not is_concrete(x):
        fail(name, "a concrete grid (the checks read its values)", "a traced array", TypeError)
    check_finite(name, x)
    g = np.asarray(x, np.float64).reshape(-1)
    if g.size < min_points:
        fail(name, f"a grid of at least {min_points} points", f"{g.size} point(s)")
    d = np.diff(g)
    spread = float(np.max(np.abs(d - d.mean()))) if d.size else 0.0
    if not (d.mean() > 0 and np.all(d > 0) and spread <= UNIFORM_RTOL * d.mean()):
        fail(
            name,
            f"a uniform, increasing grid (spacings equal to {UNIFORM_RTOL:g} relative)",
            f"spacings from {d.min():.6g} to {d.max():.6g}",
        )
    return g


# --------------------------------------------------------------------------- LFP


def _sphere_factor(dim: int) -> float:
    """`2 / |S^(d-1)|`: averaging a ridge function's spectrum over isotropic directions
    spreads the line through `w_hat` over the sphere of radius |xi| (the remaining
    `|xi|^-(d-1)` is applied with xi)."""
    area = 2 * math.pi ** (dim / 2) / math.gamma(dim / 2)
    return 2.0 / area


def lfp_rates(
    xi: Array,
    a: Array,
    w: Array,
    *,
    bias_density: float,
    x_second_moment: float | None = None,
) -> LFPRates:
    """gamma(xi)^2 of the linear frequency principle for a two-layer ReLU network.

    The network is `h(x) = m^-1/2 sum_i a_i ReLU(w_i . x + b_i)`, trained in all of
    `(a, w, b)`; its NTK is the mean over neurons of
    `ReLU ReLU' + a_i^2 H H' (1 + x . x')` (H the step function). With biases of density
    `rho_b` over the range that reaches the data (`b ~ U(-B, B)`, `rho_b = 1/(2B)`,
    `B >= |w_i| max|x|`), integrating over b gives, exactly, a polynomial in x and x' of
    degree <= 2 (a kernel of rank <= 3 whose spectrum sits at xi = 0) plus, for d = 1,

        rho_b <|w|^3> |x - x'|^3 / 12        (output weights a)
      - rho_b <a^2 |w|> |x - x'| / 2         (biases b)
      - rho_b <a^2 |w|> x x' |x - x'| / 2    (input weights w).

    The first two are translation invariant; their Fourier transforms (`F|z|^3 =
    3 / (4 pi^4 xi^4)`, `F|z| = -1 / (2 pi^2 xi^2)`) give, for xi != 0,

        gamma(xi)^2 = rho_b [ <|w|^3> / (16 pi^4 |xi|^(d+3)) + <a^2 |w|> / (4 pi^2 |xi|^(d+1)) ]

    (for d > 1 times `2 / |S^(d-1)|`, directions `w_i / |w_i|` isotropic). Under gradient
    flow on `0.5 * mean` over data of density `rho(x)`, `d/dt F[h](xi) = -gamma(xi)^2
    F[(h - f) rho](xi)`: a mode of a wave packet that the data cover uniformly (density
    `rho = 1 / n dx`) decays at `gamma(xi)^2 * rho`, which `fourier_mode_rates` measures.

    Where this differs from the issue's reading (`<|r|^3>/|xi|^(d+3) + 4 pi^2 <a^2 |r|> /
    |xi|^(d+1)`, up to a factor): the two power laws and the crossover
    `|xi|^2 = <|r|^3> / (4 pi^2 <a^2 |r|>)` are the ones above (the common factor is
    `rho_b / (16 pi^4)`, times `2 / |S^(d-1)|`), but they are the output-weight and bias
    parts only. The input-weight part is not translation invariant: writing
    `x x' = s^2 - z^2 / 4` (`s = (x + x')/2`, `z = x - x'`), it adds
    `rho_b <a^2|w|> [<x^2> / (4 pi^2 xi^2) + 3 / (32 pi^4 xi^4)]` on a wave packet whose
    squared position averages `<x^2>` (about the origin of x). For data on [-pi, pi]
    (`<x^2> = pi^2/3`) this triples the high-frequency term, so pass `x_second_moment`
    (d = 1) to include it; leaving it out is exact only for inputs concentrated at 0.

    Args:
      xi: frequencies (any shape, nonzero), cycles per unit of x: `|xi|` for d > 1.
      a: `(m,)` or `(m, 1)` output weights.
      w: `(m,)` (d = 1) or `(m, d)` input weights.
      bias_density: `rho_b > 0`, the density of each neuron's bias where it reaches the data.
      x_second_moment: `<x^2>` of the wave packet (d = 1 only), or None to leave out the
        input-weight part.

    Returns:
      `LFPRates(low, high, total, crossover)`, shaped like `xi`.

    Raises:
      ValueError: `xi` with zeros, mismatched `a`/`w`, `bias_density <= 0`, non-finite
        values, `x_second_moment` with d > 1.
    """
    check_array("xi", xi, kinds="iuf", allow_empty=True)
    check_array("a", a, min_ndim=1)
    check_array("w", w, min_ndim=1)
    if a.ndim > 2 or (a.ndim == 2 and a.shape[1] != 1):
        fail("a", "output weights of shape (m,) or (m, 1)", f"shape {tuple(a.shape)}")
    if w.ndim > 2:
        fail("w", "input weights of shape (m,) or (m, d)", f"shape {tuple(w.shape)}")
    if w.shape[0] != a.shape[0]:
        fail(
            "lfp_rates(w)",
            f"one row per neuron of `a` ({a.shape[0]} neurons)",
            f"shape {tuple(w.shape)}",
        )
    rho_b = check_float("bias_density", bias_density, minimum=0, strict_min=True)
    for name, value in (("xi", xi), ("a", a), ("w", w)):
        check_finite(name, value)
    if is_concrete(xi) and np.any(np.asarray(xi) == 0):
        fail("xi", "nonzero frequencies (gamma^2 is singular at 0)", "zeros")
    dim = 1 if w.ndim == 1 else int(w.shape[1])
    x2 = check_float("x_second_moment", x_second_moment, minimum=0, allow_none=True)
    if x2 is not None and dim != 1:
        fail("x_second_moment", "None for d > 1 (the input-weight part is 1-D only)", repr(x2))
    a = jnp.reshape(a, (-1,))
    r = jnp.abs(w) if w.ndim == 1 else jnp.linalg.norm(w, axis=1)
    r3 = jnp.mean(r**3)
    a2r = jnp.mean(a**2 * r)
    k = jnp.abs(jnp.asarray(xi, r3.dtype))
    sphere = _sphere_factor(dim) if dim > 1 else 1.0
    c_low = rho_b * sphere * r3 / (16 * jnp.pi**4)
    c_high = rho_b * sphere * a2r / (4 * jnp.pi**2)
    if x2 is not None:
        c_low = c_low + rho_b * a2r * 3 / (32 * jnp.pi**4)
        c_high = c_high * (1 + x2)
    low = c_low / k ** (dim + 3)
    high = c_high / k ** (dim + 1)
    return LFPRates(low, high, low + high, jnp.sqrt(c_low / c_high))


# --------------------------------------------------------------------------- NTK rates


def fourier_mode_rates(kernel: Array, x_grid: Array, *, window: Array | None = None):
    """Rayleigh quotients of a kernel on the Fourier modes of a uniform grid.

    Mode k is `e_k(x_j) = window_j exp(2 pi i k j / n)`, normalised (window 1 by default).
    Its rate `e_k^H Theta e_k / n` is the rate at which `dynamics.mse` (gradient flow, unit
    learning rate) removes it when it is an eigenvector of `Theta`, and otherwise the rate
    averaged over the eigenvectors it is made of. A smooth window (a Gaussian packet) keeps
    each mode's spectrum near +-xi: plain modes of a non-periodic kernel leak (for a kernel
    `|x - x'|` restricted to the grid, exactly twice `F|z|` at low frequencies), and
    overlap the kernel's polynomial part at xi = 0.

    Args:
      kernel: `(n, n)` kernel on `x_grid` (e.g. `jaxdyn.empirical_ntk(apply_fn, p, x)`).
      x_grid: `(n,)` or `(n, 1)` uniform, increasing grid.
      window: optional `(n,)` real weights.

    Returns:
      `FourierModeRates(index, frequencies, rates)`, each `(n // 2 + 1,)`.

    Raises:
      ValueError: a non-square or mismatched kernel, a non-uniform or too short grid, a
        bad window, NaN/Inf.
    """
    g = check_uniform_grid("x_grid", x_grid)
    n = g.size
    check_array("kernel", kernel)
    if tuple(kernel.shape) != (n, n):
        fail(
            "fourier_mode_rates(kernel)",
            f"an (n, n) kernel on the grid's n = {n} points",
            f"shape {tuple(kernel.shape)}",
        )
    check_finite("kernel", kernel)
    dtype = jnp.result_type(kernel.dtype, jnp.float32)
    if window is None:
        win = jnp.ones((n,), dtype)
    else:
        check_array("window", window)
        if tuple(window.shape) != (n,):
            fail("window", f"an array of shape ({n},)", describe(window))
        check_finite("window", window)
        win = jnp.asarray(window, dtype)
        if is_concrete(win) and not float(jnp.sum(win**2)) > 0:
            fail("window", "an array with nonzero entries", "all zeros")
    k = jnp.arange(n // 2 + 1)
    phase = 2 * jnp.pi * jnp.outer(k, jnp.arange(n)) / n
    c, s = win[None] * jnp.cos(phase), win[None] * jnp.sin(phase)  # (K, n) real and imaginary parts
    norm = jnp.sum(win**2)
    theta = jnp.asarray(kernel, dtype)
    theta = 0.5 * (theta + theta.T)  # Rayleigh quotients of the symmetric part
    hp = jax.lax.Precision.HIGHEST
    quad = jnp.einsum("kj,jl,kl->k", c, theta, c, precision=hp) + jnp.einsum(
        "kj,jl,kl->k", s, theta, s, precision=hp
    )
    dx = (g[-1] - g[0]) / (n - 1)
    return FourierModeRates(k, k / (n * dx), quad / norm / n)
