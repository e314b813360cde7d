"""Comparing real training with its linearization and the closed-form NTK prediction.

Everything here is host-side analysis of finished runs, so it works in NumPy float64 on
concrete arrays (`jax.Array` inputs are converted) and returns NumPy arrays:

- `rmse`, `rmse_over_time`, `accuracy`: elementwise metrics, with a leading time axis.
- `agreement`: how far a trained network (`jaxdyn.train.Trajectory`) is from its
  linearization and from the closed form (`jaxdyn.dynamics.mse`) at every recorded step.
- `fit_loglog_slope`: power-law fits `y = exp(intercept) * x**slope`.
- `width_sweep`: runs a function over (width, seed) pairs with `jaxdyn.sweep` (each finished
  point saved atomically, so an interrupted sweep resumes where it stopped), then averages
  over seeds and fits width exponents.

Example:
  >>> sweep = width_sweep(run_point, widths=[64, 128, 256, 512], seeds=[0, 1, 2],
  ...                     out_dir="runs/width", metrics=["rmse_net_lin"])
  >>> sweep.slopes["rmse_net_lin"].slope      # about -1 in the NTK regime
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxdyn.results import write_json_atomic  # noqa: F401  (the old home; kept as an alias)
from jaxdyn.sweep import _run_grid
from jaxdyn.train import Trajectory

__all__ = [
    "Agreement",
    "Slope",
    "SweepResult",
    "accuracy",
    "agreement",
    "fit_loglog_slope",
    "rmse",
    "rmse_over_time",
    "width_sweep",
    "write_json_atomic",
]

Progress = Callable[[int, int, str], Any]


# Elementwise metrics.
# ------------------------------------------------------------------------------------------


def _as_float_array(name: str, x: Any) -> np.ndarray:
    if x is None or isinstance(x, (str, bytes, dict)):
        raise TypeError(f"`{name}` must be an array of numbers; got {type(x).__name__}.")
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"`{name}` must hold real numbers; got dtype {arr.dtype}.")
    return arr.astype(np.float64)


def rmse(a: Any, b: Any, axis: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Root mean squared difference `sqrt(mean((a - b)**2, axis))`.

    Args:
      a, b: arrays of the same shape (no broadcasting: a shape mismatch is almost always
        a mix-up of train and test outputs, so it raises instead).
      axis: axes to average over; None for all.

    Returns:
      float64 array of `a.shape` without `axis` (0-d for `axis=None`).
    """
    a, b = _as_float_array("a", a), _as_float_array("b", b)
    if a.shape != b.shape:
        raise ValueError(f"`a` and `b` must have the same shape; got {a.shape} and {b.shape}.")
    if a.size == 0:
        raise ValueError(f"`a` and `b` must not be empty; got shape {a.shape}.")
    return np.sqrt(np.mean((a - b) ** 2, axis=axis))


def rmse_over_time(a: Any, b: Any) -> np.ndarray:
    """RMSE at each time of two trajectories: `a (T, ...)`, `b (T, ...)` -> `(T,)`, the mean
    running over every axis but the leading time axis (e.g. `(T, n, k)` outputs)."""
    a_arr = np.asarray(a)
    if a_arr.ndim < 1:
        raise ValueError(f"`a` must have a leading time axis (T, ...); got shape {a_arr.shape}.")
    return rmse(a_arr, b, axis=tuple(range(1, a_arr.ndim)))


def _classes_from_targets(targets: np.ndarray, k: int, n: int) -> np.ndarray:
    """Class index per example, `(n,)`, from int labels `(n,)` or one-hot / score targets
    `(n, k)`; for k == 1 the class is the sign (1 for positive, 0 for negative)."""
    if k == 1:
        flat = targets.reshape(-1) if targets.shape in ((n,), (n, 1)) else None
        if flat is None:
            raise ValueError(
                f"`labels_or_targets` must be (n,) or (n, 1) = ({n},) or ({n}, 1) +-1 targets for "
                f"k = 1 outputs; got shape {targets.shape}."
            )
        if np.any(flat == 0) or not np.all(np.isfinite(flat)):
            bad = int(np.flatnonzero((flat == 0) | ~np.isfinite(flat))[0])
            raise ValueError(
                f"`labels_or_targets[{bad}]` = {flat[bad].item()!r}; for k = 1 outputs the class "
                "is the sign, so targets must be nonzero finite (+-1; map {0, 1} labels to "
                "2*y - 1)."
            )
        return (flat > 0).astype(np.int64)
    if targets.shape == (n,):
        if targets.dtype.kind not in "iu":
            raise ValueError(
                f"`labels_or_targets` of shape ({n},) must be integer class labels; got dtype "
                f"{targets.dtype} (pass one-hot targets as ({n}, {k}))."
            )
        if np.any((targets < 0) | (targets >= k)):
            bad = int(np.flatnonzero((targets < 0) | (targets >= k))[0])
            raise ValueError(
                f"`labels_or_targets[{bad}]` = {int(targets[bad])} is not a class in [0, {k})."
            )
        return targets.astype(np.int64)
    if targets.shape == (n, k):
        return np.argmax(targets, axis=-1)
    raise ValueError(
        f"`labels_or_targets` must be int labels ({n},) or one-hot targets ({n}, {k}) for "
        f"outputs with n = {n}, k = {k}; got shape {targets.shape}."
    )


def accuracy(f: Any, labels_or_targets: Any) -> np.ndarray:
    """Classification accuracy of outputs `f (..., n, k)`.

    For k == 1 the predicted class is the sign of `f` (`f > 0` is positive, `f <= 0`
    negative) and is compared with the sign of +-1 targets `(n,)` or `(n, 1)`. For k > 1 it
    is `argmax f` compared with int labels `(n,)` or with `argmax` of one-hot targets
    `(n, k)`. Leading axes of `f` (time, seeds) are kept: returns `f.shape[:-2]` (0-d for a
    single `(n, k)`), fractions in [0, 1].
    """
    f_arr = _as_float_array("f", f)
    if f_arr.ndim < 2 or f_arr.shape[-2] == 0 or f_arr.shape[-1] == 0:
        raise ValueError(
            f"`f` must be outputs (..., n, k) with n, k >= 1; got shape {f_arr.shape}."
        )
    n, k = f_arr.shape[-2:]
    targets = np.asarray(labels_or_targets)
    if targets.dtype.kind not in "biuf":
        raise TypeError(f"`labels_or_targets` must hold numbers; got dtype {targets.dtype}.")
    classes = _classes_from_targets(targets, k, n)
    predicted = (f_arr[..., 0] > 0).astype(np.int64) if k == 1 else np.argmax(f_arr, axis=-1)
    return np.mean(predicted == classes, axis=-1)


# Network vs linearization vs closed form.
# ------------------------------------------------------------------------------------------


class Agreement(NamedTuple):
    """Distances between a trained network, its linearization and the closed form at each
    recorded step. Every field but `steps` is a float64 `(T,)` array, or None when the
    inputs needed for it were not given (no `lin`, no `closed_form`, no test outputs, no
    `y_test`).

    Attributes:
      steps: `(T,)` recorded optimizer steps (`net.steps`).
      rmse_net_lin_train, rmse_net_lin_test: RMSE over `(n, k)` / `(m, k)` outputs between
        the network and the trained linearized model.
      rmse_net_closed_form_train, rmse_net_closed_form_test: network vs closed form.
      rmse_lin_closed_form_train, rmse_lin_closed_form_test: linearized model vs closed form
        (a numerical check: rounding level when both describe the same optimizer).
      relative_error_net_lin_test: `||f_net(t) - f_lin(t)|| / ||f_lin(t) - f_lin(0)||`
        (Frobenius over `(m, k)`): the gap relative to how far the outputs moved. Where the
        outputs have not moved (step 0) it is 0 if the gap is at rounding level (at most
        `sqrt(eps)` of the outputs' norm, eps of the inputs' dtype), else inf.
      accuracy_net_test, accuracy_lin_test, accuracy_closed_form_test: test accuracy (see
        `accuracy`) against `y_test`.
    """

    steps: np.ndarray
    rmse_net_lin_train: np.ndarray | None
    rmse_net_lin_test: np.ndarray | None
    rmse_net_closed_form_train: np.ndarray | None
    rmse_net_closed_form_test: np.ndarray | None
    rmse_lin_closed_form_train: np.ndarray | None
    rmse_lin_closed_form_test: np.ndarray | None
    relative_error_net_lin_test: np.ndarray | None
    accuracy_net_test: np.ndarray | None
    accuracy_lin_test: np.ndarray | None
    accuracy_closed_form_test: np.ndarray | None


def _check_outputs(name: str, f: Any, expected: tuple[int, ...] | None, what: str) -> np.ndarray:
    arr = _as_float_array(name, f)
    if arr.ndim != 3:
        raise ValueError(
            f"`{name}` must be (T, {what}, k) outputs of one run; got shape {arr.shape} (for a "
            "vmapped ensemble, select one seed: jax.tree_util.tree_map(lambda a: a[i], traj))."
        )
    if expected is not None and arr.shape != expected:
        raise ValueError(
            f"`{name}` must have shape {expected} like the network's; got {arr.shape}."
        )
    return arr


def _check_trajectory(name: str, traj: Any) -> None:
    if not isinstance(traj, Trajectory):
        raise TypeError(f"`{name}` must be a jaxdyn.train.Trajectory; got {type(traj).__name__}.")


def _relative_error(f: np.ndarray, ref: np.ndarray, eps: float) -> np.ndarray:
    """`||f(t) - ref(t)|| / ||ref(t) - ref(0)||` per time; `(T, m, k)` -> `(T,)`."""
    num = np.sqrt(np.sum((f - ref) ** 2, axis=(1, 2)))
    den = np.sqrt(np.sum((ref - ref[:1]) ** 2, axis=(1, 2)))
    # Where the outputs have not moved (step 0) the ratio is 0/0 up to rounding: the network
    # and its linearization agree at initialisation only to a few ulps (different evaluation
    # order). Report 0 there; a gap above rounding with no movement is unbounded: inf.
    scale = np.sqrt(np.sum(ref**2, axis=(1, 2))) + np.sqrt(np.sum(f**2, axis=(1, 2)))
    out = np.where(num <= math.sqrt(eps) * scale, 0.0, np.inf)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _eps(*arrays: Any) -> float:
    """Machine epsilon of the least precise of `arrays` (before the float64 conversion)."""
    dtypes = [np.asarray(a).dtype for a in arrays]
    return max(float(np.finfo(d).eps) if d.kind == "f" else 0.0 for d in dtypes) or float(
        np.finfo(np.float64).eps
    )


def agreement(
    net: Trajectory,
    lin: Trajectory | None = None,
    closed_form: tuple[Any, Any] | None = None,
    *,
    y_test: Any = None,
) -> Agreement:
    """Agreement of a trained network with its linearization and the closed form.

    Args:
      net: the network's `Trajectory` (`jaxdyn.train.trajectory`), one run: `steps (T,)`,
        `f_train (T, n, k)`, `f_test (T, m, k)` or None.
      lin: the linearized model trained the same way (`trajectory(..., linearize=True)`),
        recorded at the same steps; or None.
      closed_form: `(f_train (T, n, k), f_test (T, m, k) or None)` evaluated at `net.steps`,
        e.g. `dynamics.mse(k, y, learning_rate=lr, kind="gd")(net.steps, f0, f0_test, k_test)`;
        or None.
      y_test: test labels `(m,)` or targets `(m, k)` for the accuracies (see `accuracy`).

    Returns:
      An `Agreement` of `(T,)` arrays (None where not computable).
    """
    _check_trajectory("net", net)
    steps = np.asarray(net.steps)
    if steps.ndim != 1:
        raise ValueError(
            f"`net.steps` must be (T,); got shape {steps.shape} (for a vmapped ensemble, select "
            "one seed: jax.tree_util.tree_map(lambda a: a[i], traj))."
        )
    t = steps.shape[0]
    net_tr = _check_outputs("net.f_train", net.f_train, None, "n")
    if net_tr.shape[0] != t:
        raise ValueError(
            f"`net.f_train` must have T = {t} recorded steps like `net.steps`; got "
            f"shape {net_tr.shape}."
        )
    net_te = None if net.f_test is None else _check_outputs("net.f_test", net.f_test, None, "m")
    if net_te is not None and (net_te.shape[0] != t or net_te.shape[2] != net_tr.shape[2]):
        raise ValueError(
            f"`net.f_test` must be (T={t}, m, k={net_tr.shape[2]}); got {net_te.shape}."
        )

    lin_tr = lin_te = None
    if lin is not None:
        _check_trajectory("lin", lin)
        lin_steps = np.asarray(lin.steps)
        if lin_steps.shape != steps.shape or not np.array_equal(lin_steps, steps):
            raise ValueError(
                f"`lin.steps` must equal `net.steps` {steps.tolist()}; got {lin_steps.tolist()} "
                "(train both with the same `steps` and `record_every`)."
            )
        lin_tr = _check_outputs("lin.f_train", lin.f_train, net_tr.shape, "n")
        if (lin.f_test is None) != (net_te is None):
            raise ValueError(
                f"`lin.f_test` is {'None' if lin.f_test is None else 'given'} but `net.f_test` is "
                f"{'None' if net_te is None else 'given'}; expected both or neither (same x_test)."
            )
        if net_te is not None:
            lin_te = _check_outputs("lin.f_test", lin.f_test, net_te.shape, "m")

    cf_tr = cf_te = None
    if closed_form is not None:
        if not isinstance(closed_form, (tuple, list)) or len(closed_form) != 2:
            got = type(closed_form).__name__
            if isinstance(closed_form, (tuple, list)):
                got += f" of length {len(closed_form)}"
            raise TypeError(
                "`closed_form` must be a pair (f_train (T, n, k), f_test (T, m, k) or None); got "
                f"{got}."
            )
        cf_tr = _check_outputs("closed_form[0]", closed_form[0], net_tr.shape, "n")
        if closed_form[1] is not None:
            if net_te is None:
                raise ValueError(
                    "`closed_form[1]` (test outputs) was given but `net.f_test` is "
                    "None; expected None (train `net` with x_test to compare)."
                )
            cf_te = _check_outputs("closed_form[1]", closed_form[1], net_te.shape, "m")

    def gap(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
        return None if a is None or b is None else rmse_over_time(a, b)

    def acc(f: np.ndarray | None) -> np.ndarray | None:
        return None if f is None or y_test is None else accuracy(f, y_test)

    return Agreement(
        steps=steps,
        rmse_net_lin_train=gap(net_tr, lin_tr),
        rmse_net_lin_test=gap(net_te, lin_te),
        rmse_net_closed_form_train=gap(net_tr, cf_tr),
        rmse_net_closed_form_test=gap(net_te, cf_te),
        rmse_lin_closed_form_train=gap(lin_tr, cf_tr),
        rmse_lin_closed_form_test=gap(lin_te, cf_te),
        relative_error_net_lin_test=(
            None
            if net_te is None or lin_te is None
            else _relative_error(net_te, lin_te, _eps(net.f_test, lin.f_test))
        ),
        accuracy_net_test=acc(net_te),
        accuracy_lin_test=acc(lin_te),
        accuracy_closed_form_test=acc(cf_te),
    )


# Power-law fits.
# ------------------------------------------------------------------------------------------


class Slope(NamedTuple):
    """Least-squares line `log y = intercept + slope * log x` (natural logs), i.e. the
    power law `y = exp(intercept) * x**slope`.

    Attributes:
      slope: the exponent.
      intercept: natural log of the prefactor.
      r2: coefficient of determination of the log-log fit (1.0 when `y` is constant).
      stderr: standard error of `slope` (NaN for exactly 2 points: no residual degrees
        of freedom).
    """

    slope: float
    intercept: float
    r2: float
    stderr: float


def _check_positive_1d(name: str, x: Any) -> np.ndarray:
    arr = _as_float_array(name, x)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D; got shape {arr.shape}.")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr <= 0))
    if bad.size:
        raise ValueError(
            f"`{name}[{int(bad[0])}]` = {float(arr[bad[0]])!r}; a log-log fit needs "
            "positive finite values."
        )
    return arr


def fit_loglog_slope(x: Any, y: Any) -> Slope:
    """Fits `y = exp(intercept) * x**slope` by least squares on `(log x, log y)`.

    Args:
      x, y: `(P,)` positive finite values, P >= 2, with at least 2 distinct `x`.

    Returns:
      A `Slope`.
    """
    lx = np.log(_check_positive_1d("x", x))
    ly = np.log(_check_positive_1d("y", y))
    if lx.shape != ly.shape:
        raise ValueError(
            f"`x` and `y` must have the same length; got {lx.shape[0]} and {ly.shape[0]}."
        )
    p = lx.shape[0]
    if p < 2:
        raise ValueError(f"`x` and `y` must hold at least 2 points for a line; got {p}.")
    dx, dy = lx - lx.mean(), ly - ly.mean()
    sxx = float(np.sum(dx**2))
    if sxx == 0:
        raise ValueError(
            f"`x` must hold at least 2 distinct values for a slope; got {np.exp(lx).tolist()}."
        )
    slope = float(np.sum(dx * dy)) / sxx
    intercept = float(ly.mean() - slope * lx.mean())
    ssr = float(np.sum((dy - slope * dx) ** 2))
    sst = float(np.sum(dy**2))
    r2 = 1.0 if sst == 0 else 1.0 - ssr / sst
    stderr = math.sqrt(ssr / (p - 2) / sxx) if p > 2 else math.nan
    return Slope(slope=slope, intercept=intercept, r2=r2, stderr=stderr)


# Width sweeps with resumable, atomically written points.
# ------------------------------------------------------------------------------------------


class SweepResult(NamedTuple):
    """The outcome of `width_sweep`. W widths, S seeds.

    Attributes:
      widths: `(W,)` sorted unique widths (tuple of ints).
      seeds: `(S,)` sorted unique seeds (tuple of ints).
      points: W * S dicts ordered by (width, seed), each `run_point`'s metrics plus `width`
        and `seed`, as stored in JSON (tuples become lists, NumPy scalars Python numbers).
      mean, std: metric name -> `(W,)` float64 mean and standard deviation (ddof=0, so one
        seed gives 0) over seeds, for every metric that is a number (not a bool) in every
        point; a non-finite value, stored as None, counts as NaN (so a diverged seed makes
        its width's mean NaN).
      slopes: metric name -> `Slope` of `log mean` against `log width`, for the metrics
        named in `width_sweep(metrics=...)`.
    """

    widths: tuple[int, ...]
    seeds: tuple[int, ...]
    points: list[dict[str, Any]]
    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    slopes: dict[str, Slope]


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _check_int_list(name: str, values: Any, positive: bool) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"`{name}` must be a sequence of ints; got {type(values).__name__}.")
    values = list(values.reshape(-1)) if isinstance(values, np.ndarray) else list(values)
    if not values:
        raise ValueError(f"`{name}` must not be empty.")
    for i, v in enumerate(values):
        if not _is_int(v) or (positive and v <= 0):
            kind = "a positive int" if positive else "an int"
            raise ValueError(f"`{name}[{i}]` must be {kind}; got {v!r}.")
    return tuple(sorted({int(v) for v in values}))


def _numeric_metrics(points: Sequence[dict[str, Any]]) -> list[str]:
    """Names of the metrics that are a (non-bool) number in every point, in first-seen order.
    None counts as a number here: it is how a non-finite value (a diverged point) is stored
    (see `jaxdyn.results`), and it enters the mean as NaN; a metric None everywhere is not a
    number."""

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    names = [k for k in points[0] if k not in ("width", "seed")]
    return [
        k
        for k in names
        if all(number(p.get(k)) or (k in p and p[k] is None) for p in points)
        and any(number(p.get(k)) for p in points)
    ]


def _aggregate(
    points: Sequence[dict[str, Any]], widths: tuple[int, ...], seeds: tuple[int, ...]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    mean, std = {}, {}
    for name in _numeric_metrics(points):
        # points are ordered by (width, seed): a (W, S) table.
        table = np.array([np.nan if p[name] is None else p[name] for p in points], dtype=np.float64)
        table = table.reshape(len(widths), len(seeds))
        mean[name], std[name] = table.mean(axis=1), table.std(axis=1)
    return mean, std


def _check_metrics(metrics: Any, n_widths: int) -> tuple[str, ...]:
    if metrics is None:
        return ()
    names = (metrics,) if isinstance(metrics, str) else metrics
    if not isinstance(names, Iterable) or not all(isinstance(m, str) for m in names):
        raise TypeError(f"`metrics` must be a metric name or a sequence of names; got {metrics!r}.")
    names = tuple(names)
    if names and n_widths < 2:
        raise ValueError(
            f"`metrics` {list(names)} asks for slopes against width, which needs at "
            f"least 2 distinct widths; got {n_widths}."
        )
    return names


def width_sweep(
    run_point: Callable[[int, int], dict[str, Any]],
    widths: Iterable[int],
    seeds: Iterable[int],
    *,
    out_dir: str | os.PathLike | None = None,
    progress: Progress | None = None,
    metrics: str | Sequence[str] | None = None,
) -> SweepResult:
    """Runs `run_point(width, seed)` for every pair, resumably, and fits width exponents.

    Args:
      run_point: `run_point(width, seed) -> {metric: number | str | bool | None | list}`;
        NumPy and JAX scalars/arrays are converted to JSON numbers/lists, and non-finite
        floats (a diverged point) are stored as None (`jaxdyn.results`), which `mean`/`std`
        count as NaN. Must be deterministic in (width, seed) for resumed and fresh sweeps
        to agree.
      widths: positive ints (duplicates dropped, sorted).
      seeds: ints (duplicates dropped, sorted).
      out_dir: directory (created if missing) where each finished point is written
        atomically to `out_dir/points/width{w}_seed{s}.json` (with its `width` and `seed`).
        A rerun with the same `out_dir` loads finished points instead of calling
        `run_point`, so an interruption loses at most the points in progress; a file that
        does not parse or names another point is recomputed with a `RuntimeWarning`.
        Leftover `.*.tmp` files of a killed run are ignored. Stored points are trusted as
        they are: delete `out_dir` after changing what `run_point` computes (or use
        `jaxdyn.sweep.sweep(..., settings=...)`, which refuses a folder claimed with other
        settings). None: keep nothing on disk.
      progress: optional `progress(done, total, description)` called after each point,
        e.g. `(3, 12, "width 256 seed 1 (cached)")`, to draw a progress bar.
      metrics: names of seed-mean metrics to fit `mean ~ exp(intercept) * width**slope`
        (`fit_loglog_slope`); none by default.

    Returns:
      A `SweepResult`.
    """
    if not callable(run_point):
        raise TypeError(
            f"`run_point` must be callable run_point(width, seed) -> dict; got "
            f"{type(run_point).__name__}."
        )
    if progress is not None and not callable(progress):
        raise TypeError(
            f"`progress` must be callable progress(done, total, description) or "
            f"None; got {type(progress).__name__}."
        )
    widths_t = _check_int_list("widths", widths, positive=True)
    seeds_t = _check_int_list("seeds", seeds, positive=False)
    names = _check_metrics(metrics, len(widths_t))
    # No settings: the caller (e.g. an experiment) owns its folder's settings.json. Messages
    # name the call positionally, as `run_point(width, seed)` is called.
    points = _run_grid(
        lambda width, seed: run_point(width, seed),
        {"width": list(widths_t), "seed": list(seeds_t)},
        out_dir,
        None,
        (),
        progress,
        lambda key: f"`run_point({key['width']}, {key['seed']})`",
    )

    mean, std = _aggregate(points, widths_t, seeds_t)
    slopes = {}
    for name in names:
        if name not in mean:
            raise ValueError(
                f"`metrics` names {name!r}, which is not a numeric metric of every "
                f"point; expected one of {sorted(mean)}."
            )
        try:
            slopes[name] = fit_loglog_slope(np.array(widths_t, dtype=np.float64), mean[name])
        except ValueError as err:
            raise ValueError(f"cannot fit the width slope of metric {name!r}: {err}") from err
    return SweepResult(
        widths=widths_t, seeds=seeds_t, points=points, mean=mean, std=std, slopes=slopes
    )
