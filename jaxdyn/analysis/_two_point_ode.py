"""The two-point ODE of `jaxdyn.analysis.representation` and its numerical solution.

The right-hand side `two_point_rhs` of the van Rossem & Saxe effective theory, the authors'
negative controls (altered right-hand sides), the checks of its states `(h, y, w)` and time
grids, and the compiled diffrax solve (Kvaerno5 with a PID step-size controller) that
`solve_two_point` and `fit_rates` share. The public names are re-exported, and documented,
by `jaxdyn.analysis.representation`; argument checks of the rates live in its wrappers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn._checks import check_array, check_finite, check_float, fail, is_concrete

Array = Any
Rhs = Callable[..., Array]

__all__ = ["two_point_rhs", "NEGATIVE_CONTROLS"]


# --------------------------------------------------------------------------- the ODE


def two_point_rhs(state: Array, eta_h: Any, eta_y: Any, dx2: Any, dy2: Any) -> Array:
    """Right-hand side of the two-point ODE.

    Args:
      state: `(3,)` array `(h, y, w)`; `h > 0`.
      eta_h, eta_y: the effective learning rates of the representation and the readout.
      dx2, dy2: `||dx||^2` and `||dy*||^2` of the two inputs and targets.

    Returns:
      `(3,)` array `(h', y', w')`.
    """
    h, y, w = state[0], state[1], state[2]
    return jnp.stack(
        [
            -eta_h * dx2 * w,
            -w * (eta_y * h + eta_h * dx2 * y / h),
            -0.5 * eta_y * (3 * w - y + dy2) * h - 0.5 * eta_h * dx2 * (y + w) * w / h,
        ]
    )


# The authors' negative controls: altered ODEs that a network's trajectory should fit worse.
def _rhs_h_rate_x2(state, eta_h, eta_y, dx2, dy2):
    d = two_point_rhs(state, eta_h, eta_y, dx2, dy2)
    return d.at[0].multiply(2.0)


def _rhs_y_rate_x2(state, eta_h, eta_y, dx2, dy2):
    d = two_point_rhs(state, eta_h, eta_y, dx2, dy2)
    return d.at[1].multiply(2.0)


def _rhs_w_sign_flipped(state, eta_h, eta_y, dx2, dy2):
    h, y, w = state[0], state[1], state[2]
    d = two_point_rhs(state, eta_h, eta_y, dx2, dy2)
    return d.at[2].set(-0.5 * eta_y * (3 * w - y + dy2) * h + 0.5 * eta_h * dx2 * (y + w) * w / h)


def _rhs_y_no_eta_h(state, eta_h, eta_y, dx2, dy2):
    h, w = state[0], state[2]
    d = two_point_rhs(state, eta_h, eta_y, dx2, dy2)
    return d.at[1].set(-w * eta_y * h)


#: The four altered right-hand sides of issue 13, by name: `h'` or `y'` doubled, the sign of
#: the last `w'` term flipped, the `eta_h` term of `y'` dropped. Pass one as `rhs=`.
NEGATIVE_CONTROLS: dict[str, Rhs] = {
    "h_rate_x2": _rhs_h_rate_x2,
    "y_rate_x2": _rhs_y_rate_x2,
    "w_sign_flipped": _rhs_w_sign_flipped,
    "y_no_eta_h": _rhs_y_no_eta_h,
}


# --------------------------------------------------------------------------- input checks


def _float_array(x: Any) -> Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def _check_rates(eta_h: Any, eta_y: Any) -> None:
    check_float("eta_h", eta_h, minimum=0, strict_min=True)
    check_float("eta_y", eta_y, minimum=0, strict_min=True)


def _check_data(dx2: Any, dy2: Any = None) -> None:
    check_float("dx2", dx2, minimum=0, hint="||x_2 - x_1||^2")
    if dy2 is not None:
        check_float("dy2", dy2, minimum=0, hint="||y*_2 - y*_1||^2")


def _check_state(name: str, state: Any, *, batched: bool = False) -> Array:
    """`state` (3,) or, when `batched`, (..., 3) of (h, y, w); concrete: finite, h > 0, y >= 0."""
    check_array(name, state, kinds="iuf", allow_empty=True)
    shape = tuple(state.shape)
    if (batched and (len(shape) < 1 or shape[-1] != 3)) or (not batched and shape != (3,)):
        fail(
            name,
            "an array of shape (..., 3) holding (h, y, w)"
            if batched
            else "an array of shape (3,) holding (h, y, w)",
            f"shape {shape}",
        )
    check_finite(name, state)
    if is_concrete(state):
        a = np.asarray(state, dtype=float).reshape(-1, 3)
        for col, label, ok in (
            (0, "h = ||dh||^2 > 0", a[:, 0] > 0),
            (1, "y = ||dy_hat||^2 >= 0", a[:, 1] >= 0),
        ):
            if not np.all(ok):
                i = int(np.argmin(ok))
                where = f" at row {i}" if a.shape[0] > 1 else ""
                fail(
                    name,
                    f"a state (h, y, w) with {label}",
                    f"{'hy'[col]} = {float(a[i, col])!r}{where}",
                )
    return _float_array(state)


def _check_times(name: str, t: Any, length: int | None = None, length_name: str = "") -> Array:
    check_array(name, t, kinds="iuf")
    shape = tuple(t.shape)
    if len(shape) != 1 or shape[0] < 2 or (length is not None and shape[0] != length):
        want = (
            f"a 1-dimensional array of {length} times, one per row of {length_name}"
            if length is not None
            else "a 1-dimensional array of at least 2 times"
        )
        fail(name, want, f"shape {shape}")
    check_finite(name, t)
    if is_concrete(t):
        d = np.diff(np.asarray(t, dtype=float))
        if not np.all(d > 0):
            i = int(np.argmin(d > 0))
            fail(
                name,
                "strictly increasing times",
                f"t[{i}] = {float(t[i])!r} followed by t[{i + 1}] = {float(t[i + 1])!r}",
            )
    return _float_array(t)


# --------------------------------------------------------------------------- solving


def _diffrax():
    try:
        import diffrax
    except ImportError as error:  # an optional dependency until the lead decides
        raise ImportError(
            "jaxdyn.analysis.representation solves the two-point ODE with "
            "diffrax; install it with `pip install diffrax`."
        ) from error
    return diffrax


@functools.partial(jax.jit, static_argnames=("rhs", "max_steps"))
def _solve(state0, t, params, rtol, atol, *, rhs, max_steps):
    """(T, 3) solution, NaN where the solver failed. The tolerances are traced, so one
    compilation per (rhs, T, dtype, max_steps) serves solve_two_point and every fit."""
    dfx = _diffrax()
    term = dfx.ODETerm(lambda _, s, p: rhs(s, *p))
    sol = dfx.diffeqsolve(
        term,
        dfx.Kvaerno5(),
        t[0],
        t[-1],
        None,
        state0,
        params,
        saveat=dfx.SaveAt(ts=t),
        stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
        throw=False,
    )
    ok = sol.result == dfx.RESULTS.successful
    return jnp.where(ok, sol.ys, jnp.nan)


def _tolerances(dtype, rtol, atol):
    wide = jnp.finfo(dtype).bits >= 64
    rtol = (1e-10 if wide else 1e-5) if rtol is None else rtol
    atol = (1e-12 if wide else 1e-7) if atol is None else atol
    return float(check_float("rtol", rtol, minimum=0, strict_min=True)), float(
        check_float("atol", atol, minimum=0, strict_min=True)
    )
