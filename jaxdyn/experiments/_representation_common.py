"""What the representation-dynamics experiments share (`two-point`, `rich-lazy`, `xor`,
`representation-digits`): the two-point task, vmapped training of many initializations in one
program, and the fit of the two-point theory to one measured run.

Time is gradient-flow time, `t = learning_rate * step`, so fitted rates do not depend on the
learning rate of the run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdyn import train
from jaxdyn.analysis import representation as rep

# The authors' two-point task: x in {-1, 0}, targets {0.6, 0.6 + sqrt(0.5)}: dx2 = 1, dy2 = 0.5.
X_PAIR = np.array([[-1.0], [0.0]])
Y_PAIR = np.array([[0.6], [0.6 + np.sqrt(0.5)]])


def separations(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """`(||x_2 - x_1||^2, ||y_2 - y_1||^2)` of a pair of (flattened) inputs and targets."""
    x = np.asarray(x, float).reshape(2, -1)
    y = np.asarray(y, float).reshape(2, -1)
    return float(np.sum((x[1] - x[0]) ** 2)), float(np.sum((y[1] - y[0]) ** 2))


def init_many(
    model: rep.RepresentationModel, seeds: Sequence[int], gains: Sequence[float], dtype: Any
) -> Any:
    """Parameters of run r = (seeds[r], gains[r]), stacked on a leading axis, in one program."""
    keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
    g = jnp.asarray(np.asarray(gains, float), dtype)
    return jax.jit(jax.vmap(lambda k, gain: model.init_fn(k, dtype, gain=gain)))(keys, g)


def train_many(
    model: rep.RepresentationModel,
    params0: Any,
    x: Any,
    y: Any,
    *,
    learning_rate: float,
    epochs: int,
    record_every: int,
    observe: Callable[[Any], Any] | None = None,
    batch_size: int | None = None,
    keys: Any = None,
    per_run_data: bool = False,
) -> dict[str, Any]:
    """Trains every run of `params0` (leading axis R) with SGD on `0.5 * MSE`, one vmapped scan.

    Args:
      model: the network; params0: stacked initial parameters (`init_many`).
      x, y: `(n, ...)` inputs and `(n, k)` targets shared by every run.
      learning_rate, epochs, record_every: SGD rate, optimizer steps (full batch: epochs),
        recording interval (steps).
      observe: `observe(params)` recorded at every recorded step (`train.trajectory`).
      batch_size, keys: minibatch SGD with `(R, 2)` keys (one per run); None: full batch.
      per_run_data: `x`, `y` carry a leading run axis R (each run its own data); `observe`
        is then called as `observe(params, x)`.

    Returns:
      `steps (T,)`, `t (T,)` (= learning_rate * steps), `f_train (R, T, n, k)`, `loss (R, T)`,
      `observed` (leaves `(R, T, ...)`) as NumPy float64 arrays, and `finite (R,)`: whether
      each run's loss stayed finite.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    steps = epochs

    n = x.shape[1] if per_run_data else x.shape[0]
    if batch_size is not None:
        steps = epochs * (n // batch_size)

    def one(p, key, xr, yr):
        obs = observe if observe is None or not per_run_data else (lambda q: observe(q, xr))
        return train.trajectory(
            model.apply_fn,
            p,
            xr,
            yr,
            optimizer=optax.sgd(learning_rate),
            steps=steps,
            record_every=record_every,
            observe=obs,
            batch_size=batch_size,
            key=key,
        )

    data_axis = 0 if per_run_data else None
    if keys is None:
        fn = jax.vmap(lambda p, xr, yr: one(p, None, xr, yr), (0, data_axis, data_axis))
        traj = jax.jit(fn)(params0, x, y)
    else:
        traj = jax.jit(jax.vmap(one, (0, 0, data_axis, data_axis)))(params0, keys, x, y)
    loss = np.asarray(traj.loss, np.float64)
    as64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), traj.observed)
    steps_rec = np.asarray(traj.steps[0] if traj.steps.ndim > 1 else traj.steps, np.int64)
    return dict(
        steps=steps_rec,
        t=learning_rate * steps_rec.astype(np.float64),
        f_train=np.asarray(traj.f_train, np.float64),
        loss=loss,
        observed=as64,
        finite=np.all(np.isfinite(loss), axis=1),
    )


def fit_run(
    observed: np.ndarray, t: np.ndarray, dx2: float, dy2: float, grid_points: int = 13
) -> dict[str, Any]:
    """Fits the two-point theory to one measured `(T, 3)` trajectory; JSON-ready.

    Returns the rates, the fitted curves, the relative errors (all curves together and per
    curve), and the final `h`: measured, the fitted solution's at `t[-1]`, the theory's
    fixed point `h_inf` from the measured start (with `A_low`, `A_high`) and their relative
    errors against the measurement. `grid_points`: of the start grid, per rate.
    """
    fit = rep.fit_rates(observed, t, dx2, dy2, grid_points=grid_points)
    curves = np.asarray(fit.curves, float)
    fp = rep.fixed_point(observed[0], fit.eta_h, fit.eta_y, dx2, dy2)
    h_end = float(observed[-1, 0])
    h_inf = float(fp.h_inf)
    return dict(
        eta_h=fit.eta_h,
        eta_y=fit.eta_y,
        relative_error=fit.relative_error,
        sse=fit.sse,
        success=fit.success,
        curve_errors=rep.curve_errors(observed, curves),
        fitted=curves.tolist(),
        h_final=h_end,
        h_final_fit=float(curves[-1, 0]),
        h_final_fit_error=abs(float(curves[-1, 0]) - h_end) / h_end,
        h_inf=h_inf,
        h_inf_error=abs(h_inf - h_end) / h_end,
        a_low=float(fp.a_low),
        a_high=float(fp.a_high),
    )


def pair_observables(
    reps: np.ndarray, outputs: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`(h, y, w)` `(T, 3)` and the mean output error `(T,)` of one run.

    Args:
      reps: `(T, 2, d)` hidden representations of the two inputs over time.
      outputs: `(T, 2, k)` outputs; targets: `(2, k)`.
    """
    obs = rep.observables(reps[:, 0], reps[:, 1], outputs[:, 0], outputs[:, 1], *targets)
    mean = rep.mean_output_error(outputs[:, 0], outputs[:, 1], *targets)
    return np.asarray(obs, float), np.asarray(mean, float)
