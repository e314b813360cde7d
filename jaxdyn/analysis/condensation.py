"""Parameter condensation and the phase diagram of two-layer networks.

Luo, Xu, Ma and Zhang (JMLR 2021), "Phase diagram for two-layer ReLU neural networks at
infinite-width limit". The model is

    f(x) = alpha * sum_k a_k sigma(w_k . x + b_k),  a_k ~ N(0, beta1^2), (w_k, b_k) ~ N(0, beta2^2),

of width m, with `beta1 = m^-b1`, `beta2 = m^-b2`, `alpha = m^-(gamma - b1 - b2)`, so that
`kappa = alpha beta1 beta2 = m^-gamma` and `kappa' = beta1 / beta2 = m^-gamma'`. The regime
is read from how the relative change of the input weights `theta_w = (w, b)` at the end of
training, `RD = ||theta_w(T) - theta_w(0)||_F / ||theta_w(0)||_F`, scales with m: falling
(linear), flat (critical), growing (condensed). The paper's boundaries: linear when `gamma < 1`
or `gamma' > gamma - 1`, condensed when `gamma > 1` and `gamma' < gamma - 1`, critical on the
line between (`theoretical_regime`).

**The choice of b1, b2.** For ReLU (positively homogeneous) the split does not matter: with
`a = beta1 abar`, `theta_w = beta2 thetabar`, the model is `kappa sum abar sigma(thetabar . x~)`
and gradient flow on (a, theta_w) is, in the time `tau = t / (beta1 beta2)`, the flow
`d abar/dtau = -(1/kappa') dL/d abar`, `d thetabar/dtau = -kappa' dL/d thetabar`: a function of
(kappa, kappa') alone, and RD is the same for every split. The default here is the symmetric
split `b1 = gamma'/2`, `b2 = -gamma'/2` (so `beta1 beta2 = 1` and `alpha = kappa`); pass
`input_exponent=b2` for another (the condensation demos use `b1 = b2 = t`, `alpha = 1`: init
std `m^-t` on every weight). The JMLR text past its abstract was not reachable from here, so
this split is ours, not a copy of the authors' scripts; for non-homogeneous activations (tanh)
the split changes the dynamics and must be stated with the result.

Parameters are `{"a": (m,), "w": (m, d), "b": (m,)}`. With `antisymmetric=True` (the authors'
anti-symmetric initialization) m must be even: neurons m/2..m-1 copy the (w, b) of neurons
0..m/2-1 with negated a, so `f(theta_0) = 0` exactly. Training with the per-point learning-rate
rule is `fit` / `fit_grid` (`_condensation_fit.py`); the cluster analyses `cosine_similarity`,
`directions`, `merge` are in `_condensation_clusters.py`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn._checks import (
    check_array,
    check_bool,
    check_choice,
    check_float,
    check_int,
    describe,
    fail,
    is_concrete,
)

Array = Any
Params = dict

__all__ = [
    "ACTIVATIONS",
    "REGIMES",
    "POINTS",
    "Scales",
    "scales",
    "two_layer",
    "forward",
    "theoretical_regime",
    "relative_distance",
    "OrientationAmplitude",
    "orientation_amplitude",
    "activation_multiplicity",
    "PhaseSlope",
    "phase_slope",
    "CosineSimilarity",
    "cosine_similarity",
    "Directions",
    "directions",
    "Merged",
    "merge",
    "FitResult",
    "fit",
    "fit_grid",
]

REGIMES = ("linear", "critical", "condensed")

# Named initializations as (gamma, gamma') from the definitions, input dimension d fixed as
# m grows and alpha = 1 unless the scheme scales the output: NTK (a, w ~ N(0, 1),
# alpha = m^-1/2), mean field (a, w ~ N(0, 1), alpha = 1/m), Xavier (beta1 = beta2 =
# sqrt(2 / (m + d)) ~ m^-1/2), LeCun (w ~ N(0, 1/d), a ~ N(0, 1/m)).
POINTS = {
    "NTK": (0.5, 0.0),
    "mean field": (1.0, 0.0),
    "Xavier": (1.0, 0.0),
    "LeCun": (0.5, 0.5),
}


def _relu(z):
    return jnp.maximum(z, 0.0), (z > 0).astype(z.dtype), jnp.zeros_like(z)


def _tanh(z):
    t = jnp.tanh(z)
    d1 = 1.0 - t * t
    return t, d1, -2.0 * t * d1


def _xtanh(z):
    t = jnp.tanh(z)
    d1 = 1.0 - t * t
    return z * t, t + z * d1, 2.0 * d1 - 2.0 * z * t * d1


# name -> z -> (sigma(z), sigma'(z), sigma''(z)); the derivatives feed the curvature bound of
# the learning-rate rule (`fit`).
ACTIVATIONS: dict[str, Callable] = {"relu": _relu, "tanh": _tanh, "xtanh": _xtanh}


# --------------------------------------------------------------------------- the model


class Scales(NamedTuple):
    """The scales of `two_layer(width, ...)`: `beta1` (std of a), `beta2` (std of w, b),
    `alpha` (output factor), `kappa = alpha beta1 beta2`, `kappa_prime = beta1 / beta2`."""

    beta1: float
    beta2: float
    alpha: float
    kappa: float
    kappa_prime: float


def _check_exponent(name: str, value: Any) -> float:
    return check_float(name, value, hint="a finite exponent")


def scales(
    width: int, *, gamma: float, gamma_prime: float, input_exponent: float | None = None
) -> Scales:
    """`beta1 = m^-b1`, `beta2 = m^-b2`, `alpha = m^-(gamma - b1 - b2)` with
    `b2 = input_exponent` (default `-gamma'/2`) and `b1 = gamma' + b2`.

    Raises:
      ValueError: width < 1, an exponent not finite. TypeError: non-numbers.
    """
    m = check_int("width", width, minimum=1)
    gamma = _check_exponent("gamma", gamma)
    gamma_prime = _check_exponent("gamma_prime", gamma_prime)
    b2 = (
        -gamma_prime / 2
        if input_exponent is None
        else _check_exponent("input_exponent", input_exponent)
    )
    b1 = gamma_prime + b2
    beta1, beta2, alpha = m**-b1, m**-b2, m ** -(gamma - b1 - b2)
    return Scales(beta1, beta2, alpha, alpha * beta1 * beta2, beta1 / beta2)


def forward(params: Params, x: Array, alpha: Array, activation: str = "relu") -> Array:
    """`alpha * sum_k a_k sigma(w_k . x + b_k)` for `x (n, d)`: `(n, 1)`; `alpha` may be traced
    (a vmapped grid of scales)."""
    z = x @ params["w"].T + params["b"][None, :]  # (n, m)
    s = ACTIVATIONS[activation](z)[0]
    return (alpha * half_sums(s, params["a"]))[:, None]


def half_sums(s: Array, a: Array) -> Array:
    """`s @ a` summed over the two halves of the neurons separately: for the anti-symmetric
    initialization the halves are exact negatives (same products, same reduction order), so
    the output at initialization is exactly 0, not rounding-level."""
    h = a.shape[0] // 2
    if a.shape[0] % 2 or h == 0:
        return s @ a
    return s[:, :h] @ a[:h] + s[:, h:] @ a[h:]


_forward = jax.jit(forward, static_argnames="activation")


def _ref_params(width: int, d: int) -> Params:
    f = jax.ShapeDtypeStruct
    return {
        "a": f((width,), jnp.float32),
        "w": f((width, d), jnp.float32),
        "b": f((width,), jnp.float32),
    }


def check_net_params(name: str, params: Any) -> tuple[int, int]:
    """Checks a `two_layer` parameter dict of any width; returns `(width, input_dim)`."""
    if not isinstance(params, dict) or set(params) != {"a", "w", "b"}:
        fail(
            name,
            "a dict with keys 'a', 'w', 'b' (from two_layer's init_fn)",
            describe(params),
            TypeError,
        )
    for k in ("a", "w", "b"):
        check_array(f"{name}['{k}']", params[k], kinds="f")
    if params["w"].ndim != 2:
        fail(f"{name}['w']", "an (m, d) array", f"shape {tuple(params['w'].shape)}")
    m, d = params["w"].shape
    for k in ("a", "b"):
        if tuple(params[k].shape) != (m,):
            fail(
                f"{name}['{k}']",
                f"an array of shape ({m},), one entry per row of {name}['w']",
                f"shape {tuple(params[k].shape)}",
            )
    return m, d


def two_layer(
    width: int,
    *,
    gamma: float,
    gamma_prime: float,
    activation: str = "relu",
    input_dim: int = 1,
    antisymmetric: bool = True,
    input_exponent: float | None = None,
) -> tuple[Callable, Callable]:
    """The two-layer model of the phase diagram, scaled by `(gamma, gamma')` (see module doc).

    Args:
      width: m, the number of hidden neurons (even when `antisymmetric`).
      gamma, gamma_prime: the exponents of `kappa = m^-gamma`, `kappa' = m^-gamma'`.
      activation: one of `ACTIVATIONS` ("relu", "tanh", "xtanh" = x tanh x).
      input_dim: d.
      antisymmetric: mirror the first half with negated a, so the initial output is 0.
      input_exponent: b2 (`beta2 = m^-b2`); default `-gamma'/2` (`beta1 beta2 = 1`).

    Returns:
      `init_fn(key, dtype=None) -> params` and `apply_fn(params, x (n, d)) -> (n, 1)`.
      `apply_fn` accepts any width (a merged network too) and carries `.scales`,
      `.activation` and `.alpha`.

    Raises:
      ValueError: width < 1 (or odd when antisymmetric), gamma or gamma' not finite, unknown
        activation, input_dim < 1. TypeError: arguments of the wrong kind.
    """
    sc = scales(width, gamma=gamma, gamma_prime=gamma_prime, input_exponent=input_exponent)
    check_choice("activation", activation, tuple(ACTIVATIONS))
    d = check_int("input_dim", input_dim, minimum=1)
    antisymmetric = check_bool("antisymmetric", antisymmetric)
    if antisymmetric and width % 2:
        fail(
            "width",
            "an even int when antisymmetric=True (neurons come in mirrored pairs)",
            str(width),
        )

    def init_fn(key: Array, dtype: Any = None) -> Params:
        dtype = np.dtype(dtype or jnp.zeros(()).dtype)
        unit = standard_init(key, width, d, antisymmetric, dtype)
        return {"a": sc.beta1 * unit["a"], "w": sc.beta2 * unit["w"], "b": sc.beta2 * unit["b"]}

    def apply_fn(params: Params, x: Array) -> Array:
        _, pd = check_net_params("apply_fn(params)", params)
        check_array("apply_fn(x)", x, ndim=2, kinds="f")
        if x.shape[1] != pd:
            fail("apply_fn(x)", f"an (n, {pd}) array", f"shape {tuple(x.shape)}")
        return _forward(params, x, sc.alpha, activation)

    apply_fn.scales, apply_fn.activation, apply_fn.alpha = sc, activation, sc.alpha
    return init_fn, apply_fn


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))  # one compilation, not one per op
def standard_init(key: Array, width: int, d: int, antisymmetric: bool, dtype: Any) -> Params:
    """Standard-normal `{"a", "w", "b"}` (the draw `two_layer` scales by beta1, beta2);
    antisymmetric: the second half copies (w, b) of the first with negated a."""
    ka, kw, kb = jax.random.split(key, 3)
    half = width // 2 if antisymmetric else width
    a = jax.random.normal(ka, (half,), dtype)
    w = jax.random.normal(kw, (half, d), dtype)
    b = jax.random.normal(kb, (half,), dtype)
    if antisymmetric:
        a, w, b = jnp.concatenate([a, -a]), jnp.concatenate([w, w]), jnp.concatenate([b, b])
    return {"a": a, "w": w, "b": b}


def theoretical_regime(gamma: float, gamma_prime: float, *, tol: float = 0.0) -> str:
    """The paper's regime at (gamma, gamma'): "linear" when `gamma < 1` or `gamma' > gamma - 1`,
    "condensed" when `gamma > 1` and `gamma' < gamma - 1`, "critical" on the boundary (points
    within `tol` of it)."""
    gamma = _check_exponent("gamma", gamma)
    gamma_prime = _check_exponent("gamma_prime", gamma_prime)
    tol = check_float("tol", tol, minimum=0)
    # distance to the boundary: the half-line {gamma = 1, gamma' <= 0} and the half-line
    # {gamma' = gamma - 1, gamma >= 1}, which meet at (1, 0)
    dg, corner = gamma - 1.0, math.hypot(gamma - 1.0, gamma_prime)
    to_first = abs(dg) if gamma_prime <= 0 else corner
    to_second = abs(gamma_prime - dg) / math.sqrt(2) if dg + gamma_prime >= 0 else corner
    dist = min(to_first, to_second)
    if dist <= tol:
        return "critical"
    return "condensed" if gamma > 1 and gamma_prime < gamma - 1 else "linear"


# --------------------------------------------------------------------------- metrics


def _check_pair(params_t: Any, params_0: Any) -> None:
    mt = check_net_params("params_t", params_t)
    m0 = check_net_params("params_0", params_0)
    if mt != m0:
        fail(
            "params_t",
            f"parameters of the same width and input size as params_0 (m, d) = {m0}",
            f"(m, d) = {mt}",
        )


def relative_distance(params_t: Params, params_0: Params, part: str = "input") -> Array:
    """RD `= ||theta(t) - theta(0)||_F / ||theta(0)||_F` over the input weights `(w, b)`
    (`part="input"`, the paper's RD) or over every parameter (`part="all"`, a included).

    Returns:
      A scalar. Jit-able; vmap over stacked parameters for many runs.
    """
    check_choice("part", part, ("input", "all"))
    _check_pair(params_t, params_0)
    keys = ("w", "b") if part == "input" else ("a", "w", "b")
    num = sum(jnp.sum((params_t[k] - params_0[k]) ** 2) for k in keys)
    den = sum(jnp.sum(params_0[k] ** 2) for k in keys)
    return jnp.sqrt(num / den)


class OrientationAmplitude(NamedTuple):
    """Per neuron, `(m,)` each: `orientation = sign(b) arccos(w / ||(w, b)||)` in [-pi, pi]
    and `amplitude = |a| ||(w, b)||`."""

    orientation: Array
    amplitude: Array


def orientation_amplitude(params: Params) -> OrientationAmplitude:
    """Orientation and amplitude of each neuron of a 1-D-input network (`w` of shape (m, 1)).

    Raises:
      ValueError: input dimension other than 1; malformed params.
    """
    _, d = check_net_params("params", params)
    if d != 1:
        fail("params['w']", "an (m, 1) array (orientations are defined for 1-D inputs)", f"d = {d}")
    w, b = params["w"][:, 0], params["b"]
    norm = jnp.sqrt(w * w + b * b)
    safe = jnp.where(norm > 0, norm, 1.0)
    # sign(0) = 0 would put b = 0 neurons at orientation 0 whatever w: count b = 0 as positive
    sign = jnp.where(b < 0, -1.0, 1.0)
    orientation = sign * jnp.arccos(jnp.clip(w / safe, -1.0, 1.0))
    return OrientationAmplitude(orientation, jnp.abs(params["a"]) * norm)


def activation_multiplicity(fn: Callable, *, max_order: int = 8, tol: float = 1e-8) -> int:
    """The multiplicity p of an activation: the order of its first non-zero derivative at 0
    (over orders k >= 1; tanh, sin 1; x tanh x, x^2 2). Derivatives by nested `jax.grad` in
    float64.

    Raises:
      ValueError: `fn` is not smooth at 0 (a one-sided jump in a derivative, as ReLU's first),
        or has no non-zero derivative up to `max_order`. TypeError: `fn` not callable.
    """
    if not callable(fn):
        fail("fn", "a callable activation fn(z)", describe(fn), TypeError)
    max_order = check_int("max_order", max_order, minimum=1)
    tol = check_float("tol", tol, minimum=0, strict_min=True)
    name = getattr(fn, "__name__", type(fn).__name__)
    h = 1e-4
    with jax.enable_x64(True):
        g = lambda z: jnp.asarray(fn(z), jnp.float64)  # noqa: E731
        for k in range(1, max_order + 1):
            g = jax.grad(g)
            at0 = float(g(jnp.float64(0.0)))
            left, right = float(g(jnp.float64(-h))), float(g(jnp.float64(h)))
            # a smooth derivative changes by O(h) across 0; a kink (ReLU) jumps
            if abs(right - left) > 1e-2 * (1.0 + abs(at0)) + 1e3 * h:
                fail(
                    "fn",
                    "an activation smooth at 0 (its multiplicity is the order of the first "
                    "non-zero derivative there)",
                    f"{name}, whose derivative of order {k} jumps from {left:.3g} to "
                    f"{right:.3g} across 0",
                )
            if abs(at0) > tol:
                return k
    fail(
        "fn",
        f"an activation with a non-zero derivative of order <= {max_order} at 0",
        f"{name}, all derivatives of order 1..{max_order} zero",
    )


class PhaseSlope(NamedTuple):
    """Fit of `log RD = slope log m + intercept`: `r2` (fit quality), `stderr` (of the slope),
    and the regime it implies (`regime_of_slope`)."""

    slope: float
    intercept: float
    r2: float
    stderr: float
    regime: str


def phase_slope(widths: Sequence[float], rds: Sequence[float], *, flat: float = 0.1) -> PhaseSlope:
    """Least-squares slope of log RD against log m and its regime: "linear" when the slope is
    below `-flat`, "condensed" above `flat`, "critical" within.

    Raises:
      ValueError: fewer than two widths, lengths that differ, non-positive or non-finite
        values, all widths equal.
    """
    w = np.asarray(widths, np.float64)
    r = np.asarray(rds, np.float64)
    if w.ndim != 1 or w.size < 2:
        fail(
            "widths",
            "a list of two or more widths (a slope needs two points)",
            repr(np.asarray(widths).tolist()),
        )
    if r.shape != w.shape:
        fail("rds", f"one RD per width ({w.size} values)", f"shape {r.shape}")
    for name, v in (("widths", w), ("rds", r)):
        if not np.all(np.isfinite(v)) or np.any(v <= 0):
            fail(name, "finite positive values (their logarithms are fitted)", repr(v.tolist()))
    if np.ptp(w) == 0:
        fail("widths", "at least two different widths", repr(w.tolist()))
    flat = check_float("flat", flat, minimum=0)
    lx, ly = np.log(w), np.log(r)
    xc = lx - lx.mean()
    slope = float(xc @ (ly - ly.mean()) / (xc @ xc))
    intercept = float(ly.mean() - slope * lx.mean())
    resid = ly - (slope * lx + intercept)
    ss_tot = float(np.sum((ly - ly.mean()) ** 2))
    r2 = 1.0 - float(resid @ resid) / ss_tot if ss_tot > 0 else 1.0
    dof = w.size - 2
    stderr = float(np.sqrt(resid @ resid / dof / (xc @ xc))) if dof > 0 else float("nan")
    regime = "linear" if slope < -flat else "condensed" if slope > flat else "critical"
    return PhaseSlope(slope, intercept, r2, stderr, regime)


def _concrete(name: str, params: Params) -> None:
    if not is_concrete(params):
        fail(name, "concrete arrays (this analysis runs on the host, outside jit)", "traced values")


# The cluster analyses and the training loop live beside this module (kept under ~600 lines).
from jaxdyn.analysis._condensation_clusters import (  # noqa: E402
    CosineSimilarity,
    Directions,
    Merged,
    cosine_similarity,
    directions,
    merge,
)
from jaxdyn.analysis._condensation_fit import FitResult, fit, fit_grid  # noqa: E402
