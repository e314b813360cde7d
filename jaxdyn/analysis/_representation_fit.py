"""Helpers that put a fitted two-point theory beside a measured run: the third rate (of the
mean output, for `theory_loss`) and the per-curve relative errors. Re-exported by
`jaxdyn.analysis.representation`."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from jaxdyn._checks import check_array, check_finite, fail

__all__ = ["MeanRateFit", "curve_errors", "fit_mean_rate"]


class MeanRateFit(NamedTuple):
    """The rate of `mean_error(t) = mean_error0 exp(-2 eta_mean (t - t[0]))`. T times."""

    eta_mean: float
    curve: np.ndarray  # (T,): the fitted exponential
    relative_error: float  # ||curve - observed|| / ||observed||


def fit_mean_rate(mean_error: Any, t: Any) -> MeanRateFit:
    """Fits the third rate of the theory to the measured mean output error.

    The curve starts at the measured `mean_error[0]`; `log(eta_mean)` minimises the squared
    error (a bounded scalar search over 12 decades around `1 / span(t)`, then refined).

    Args:
      mean_error: `(T,)` `||mean output - mean target||^2` over time (`mean_output_error`),
        non-negative, `mean_error[0] > 0`.
      t: `(T,)` increasing times.

    Returns:
      `MeanRateFit`.
    """
    import scipy.optimize

    check_array("mean_error", mean_error, ndim=1, kinds="iuf")
    check_array("t", t, ndim=1, kinds="iuf")
    check_finite("mean_error", mean_error)
    m, tt = np.asarray(mean_error, float), np.asarray(t, float)
    if m.shape != tt.shape or m.size < 2:
        fail("t", f"an array of the {m.size} times of `mean_error` (at least 2)", f"{tt.shape}")
    if not np.all(np.diff(tt) > 0):
        fail("t", "strictly increasing times", f"{tt[:4].tolist()}...")
    if not (m[0] > 0 and np.all(m >= 0)):
        fail("mean_error", "non-negative errors with mean_error[0] > 0", f"{m[:3].tolist()}...")
    dt = tt - tt[0]
    span = float(dt[-1])

    def curve(log_eta):
        return m[0] * np.exp(-2 * np.exp(log_eta) * dt)

    def sse(log_eta):
        return float(np.sum((curve(log_eta) - m) ** 2))

    # a coarse grid first: the error is flat (not convex) in log(eta) far from the optimum
    grid = np.log(1.0 / span) + np.linspace(-6, 6, 49) * np.log(10)
    best = grid[int(np.argmin([sse(g) for g in grid]))]
    step = grid[1] - grid[0]
    res = scipy.optimize.minimize_scalar(
        sse, bounds=(best - step, best + step), method="bounded", options={"xatol": 1e-10}
    )
    fitted = curve(res.x)
    norm = float(np.linalg.norm(m))
    return MeanRateFit(float(np.exp(res.x)), fitted, float(np.linalg.norm(fitted - m) / norm))


def curve_errors(observed: Any, fitted: Any) -> dict[str, float]:
    """Relative errors `||fitted[:, c] - observed[:, c]|| / ||observed[:, c]||` of h, y, w.

    Args:
      observed, fitted: `(T, 3)` trajectories of `(h, y, w)`.

    Returns:
      `{"h": ..., "y": ..., "w": ...}` (NaN for a column of zeros).
    """
    check_array("observed", observed, ndim=2, kinds="iuf")
    check_array("fitted", fitted, ndim=2, kinds="iuf")
    o, f = np.asarray(observed, float), np.asarray(fitted, float)
    if o.shape != f.shape or o.shape[1] != 3:
        fail("fitted", f"an array of the shape of `observed`, {o.shape} (T, 3)", f"{f.shape}")
    out = {}
    for c, name in enumerate("hyw"):
        norm = float(np.linalg.norm(o[:, c]))
        out[name] = float(np.linalg.norm(f[:, c] - o[:, c]) / norm) if norm else float("nan")
    return out
