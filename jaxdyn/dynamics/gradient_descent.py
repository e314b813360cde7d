"""`gradient_descent`: function-space training dynamics of a linearized network for any loss.

A linearized network ``f(x, theta) = f(x, theta_0) + J(x) (theta - theta_0)`` trained on a loss
``L(f(x_train), y_train)`` moves in function space only through its NTK: a parameter step
``theta <- theta - lr * J^T u`` moves every output by ``-lr * Theta(x, x_train) u``. Hence, with
``g_t = grad_f L(f_t)`` the ``(n, k)`` gradient of the loss with respect to the train outputs:

* ``"gd"`` (one ``optax.sgd(lr)`` step per unit of ``t``)::

      f_{t+1} = f_t - lr * Theta g_t,        f_test_{t+1} = f_test_t - lr * Theta_test g_t

* ``"momentum"`` (heavy ball exactly as ``optax.sgd(lr, momentum=beta)``: ``v <- g + beta v``,
  ``theta <- theta - lr v``, ``v_0 = 0``; the velocity in parameter space is ``J^T u``)::

      u_{t+1} = g_t + beta * u_t,            f_{t+1} = f_t - lr * Theta u_{t+1}

* ``"flow"`` (gradient flow in units of steps, ``t`` real): ``df/dt = -lr * Theta g(f)``, solved
  with diffrax (adaptive Tsit5).

The recurrences are exact at integer steps for any differentiable loss (no linearization of the
loss): they equal training the linearized network with ``jaxdyn.train.trajectory(...,
linearize=True, loss=...)`` up to rounding, provided the kernel is the full ``(n, n, k, k)`` NTK
(or the traced ``(n, n)`` one when the full kernel is ``Theta ⊗ I_k``: infinite width, or
``k = 1``). Loss conventions match `jaxdyn.train`: ``"mse"`` is ``0.5 * mean((f - y)**2)`` over
all ``N = n * k`` entries (so ``grad_f L = (f - y) / N`` and ``"gd"`` equals
``dynamics.mse(kind="gd")``), ``"cross_entropy"`` the softmax cross-entropy averaged over the
``n`` examples (``grad_f L = (softmax(f) - y) / n``).

Kernel layouts as in `jaxdyn.dynamics.mse`: traced ``(n, n)`` (the same kernel for every output
column) or full ``(n, n, k, k)`` with ``K[i, j, a, b] = <df_a(x_i), df_b(x_j)>``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxdyn._checks import check_finite, describe, fail, is_concrete
from jaxdyn.dynamics._inputs import (
    as_real_array,
    check_scalar,
    check_targets,
    check_train_kernel,
    validate_times,
)
from jaxdyn.dynamics._linalg import HIGHEST, float_dtype

__all__ = [
    "GD_KINDS",
    "LOSSES",
    "GradientDescentPredictor",
    "cross_entropy_loss",
    "gradient_descent",
    "mse_loss",
]

GD_KINDS = ("flow", "gd", "momentum")

ArrayLike = Any
LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def mse_loss(f: jax.Array, y: jax.Array) -> jax.Array:
    """``0.5 * mean((f - y)**2)`` over all entries (also `jaxdyn.train.mse_loss`)."""
    return 0.5 * jnp.mean((f - y) ** 2)


def cross_entropy_loss(f: jax.Array, y: jax.Array) -> jax.Array:
    """Softmax cross-entropy of logits ``f (n, k)`` against probability targets ``y (n, k)``,
    averaged over the n examples (also `jaxdyn.train.cross_entropy_loss`)."""
    return jnp.mean(-jnp.sum(y * jax.nn.log_softmax(f, axis=-1), axis=-1))


LOSSES: dict[str, LossFn] = {"mse": mse_loss, "cross_entropy": cross_entropy_loss}


def _curvature_bound(name: str | None, n: int, k: int) -> float | None:
    """Upper bound ``c`` on the Hessian of the built-in loss in f: ``H <= c I`` (None: unknown).

    MSE: ``H = I / N``. Cross-entropy: per example ``(diag(p) - p p^T) / n`` whose top eigenvalue
    is at most ``1 / 2``, so ``c = 1 / (2 n)``.
    """
    if name == "mse":
        return 1.0 / (n * k)
    if name == "cross_entropy":
        return 0.5 / n
    return None


def _apply_kernel(kernel: jax.Array, g: jax.Array) -> jax.Array:
    """``Theta @ g`` for a traced ``(m, n)`` or full ``(m, n, k, k)`` kernel and ``g (n, k)``."""
    if kernel.ndim == 2:
        return jnp.matmul(kernel, g, precision=HIGHEST)
    return jnp.einsum("ijab,jb->ia", kernel, g, precision=HIGHEST)


def _sorted_times(t_flat: jax.Array):
    """``(sorted times, inverse permutation)``: solvers walk forward once through all times."""
    order = jnp.argsort(t_flat)
    return t_flat[order], jnp.argsort(order)


@functools.partial(jax.jit, static_argnames=("loss_fn",))
def _discrete(kernel, kt, y, f0, f0t, steps, lr, beta, *, loss_fn):
    """Runs the recurrence to every (sorted) step count in ``steps (T,)``; ``(T, n, k)`` etc."""
    grad = jax.grad(loss_fn)

    def one_step(_, state):
        f, ft, u = state
        g = grad(f, y)
        # Plain GD is beta = 0: g + 0 * u is g exactly, and one compiled program serves both.
        u = g + beta * u
        f = f - lr * _apply_kernel(kernel, u)
        if ft is not None:
            ft = ft - lr * _apply_kernel(kt, u)
        return f, ft, u

    def advance(carry, delta):
        # Whole steps between consecutive requested times: one pass over max(t) steps in all.
        state = lax.fori_loop(0, delta, one_step, carry)
        return state, state[:2]

    deltas = jnp.diff(steps, prepend=jnp.zeros((1,), steps.dtype))
    state0 = (f0, f0t, jnp.zeros_like(f0))
    _, (f_t, ft_t) = lax.scan(advance, state0, deltas)
    return f_t, ft_t


@functools.partial(jax.jit, static_argnames=("loss_fn", "max_steps"))
def _flow(kernel, kt, y, f0, f0t, ts, lr, rtol, atol, *, loss_fn, max_steps):
    """Gradient flow ``df/dt = -lr Theta grad L(f)`` saved at the sorted times ``ts (T,)``."""
    import diffrax  # imported on first use: only the flow needs it

    grad = jax.grad(loss_fn)

    def field(_, state, args):
        f, ft = state
        g = grad(f, y)
        df = -lr * _apply_kernel(kernel, g)
        dft = None if ft is None else -lr * _apply_kernel(kt, g)
        return df, dft

    t1 = ts[-1]
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Tsit5(),
        t0=jnp.zeros((), ts.dtype),
        # diffrax needs t1 > t0; at t1 = 0 every saved time is 0 and the state is f0 anyway.
        t1=jnp.where(t1 > 0, t1, 1.0),
        dt0=None,
        y0=(f0, f0t),
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
    )
    return sol.ys


class GradientDescentPredictor:
    """Function-space dynamics of a linearized model under any loss; build it with
    `gradient_descent`.

    Calls:
      ``predictor(t, f0_train)`` -> train outputs ``(*t.shape, n, k)``;
      ``predictor(t, f0_train, f0_test, k_test_train)`` -> ``(train, test)``, test
      ``(*t.shape, m, k)``;
      ``predictor.loss(t, f0_train)`` -> ``(*t.shape,)`` training loss.
    The whole run is one compiled program (a ``lax.scan`` / ``fori_loop`` over steps for
    ``"gd"``/``"momentum"``, one diffrax solve for ``"flow"``), so calls work under ``jit``.
    """

    def __init__(
        self,
        *,
        kernel,
        y_train,
        loss_fn,
        loss_name,
        kind,
        learning_rate,
        momentum,
        rtol,
        atol,
        max_steps,
    ):
        # Internal: use `gradient_descent`, which validates everything before getting here.
        self._kernel = kernel
        self._y = y_train
        self._loss_fn = loss_fn
        self._loss_name = loss_name
        self._kind = kind
        self._learning_rate = learning_rate
        self._momentum = momentum
        self._rtol, self._atol, self._max_steps = rtol, atol, max_steps
        self._n, self._k = y_train.shape
        self._lam_max = None

    @property
    def kind(self) -> str:
        """``"flow"``, ``"gd"`` or ``"momentum"``."""
        return self._kind

    @property
    def learning_rate(self) -> Any:
        return self._learning_rate

    @property
    def momentum(self) -> Any:
        """``beta`` for ``kind="momentum"``, else ``None``."""
        return self._momentum

    @property
    def loss_fn(self) -> LossFn:
        """The loss ``loss(f, y) -> scalar`` the dynamics descend."""
        return self._loss_fn

    @property
    def critical_learning_rate(self) -> float | None:
        """``2 (1 + momentum) / (c * lam_max)`` with ``c`` the loss's curvature bound.

        For ``"mse"`` (``c = 1 / N``) it is exact: above it GD diverges (the value of
        `dynamics.mse`). For ``"cross_entropy"`` (``c = 1 / (2 n)``, the largest eigenvalue of the
        softmax Hessian is at most 1/2) GD is guaranteed stable below it, and may still converge
        above it. ``None`` for a callable loss (its curvature is unknown) or a traced kernel.
        """
        c = _curvature_bound(self._loss_name, self._n, self._k)
        if c is None or not is_concrete(self._kernel):
            return None
        if self._lam_max is None:
            d = self._n * self._k if self._kernel.ndim == 4 else self._n
            flat = self._kernel
            if flat.ndim == 4:
                flat = jnp.transpose(flat, (0, 2, 1, 3)).reshape(d, d)
            self._lam_max = float(jnp.linalg.eigvalsh(0.5 * (flat + flat.T))[-1])
        if self._lam_max <= 0:
            return float("inf")
        beta = 0.0 if self._momentum is None else float(self._momentum)
        return 2.0 * (1.0 + beta) / (c * self._lam_max)

    def __repr__(self) -> str:
        extra = f", momentum={self._momentum!r}" if self._kind == "momentum" else ""
        loss = self._loss_name or getattr(self._loss_fn, "__name__", "callable")
        return (
            f"GradientDescentPredictor(kind={self._kind!r}, loss={loss!r}, "
            f"kernel_shape={tuple(self._kernel.shape)}, y_train_shape={(self._n, self._k)}, "
            f"learning_rate={self._learning_rate!r}{extra})"
        )

    # ---------------------------------------------------------------------------------------------

    def _f0(self, f0_train, where):
        f0 = as_real_array(f0_train, where)
        if tuple(f0.shape) != (self._n, self._k):
            fail(
                where,
                f"of shape (n, k) = y_train.shape = {(self._n, self._k)}",
                f"shape {tuple(f0.shape)}",
            )
        check_finite(where, f0)
        return f0

    def _test_inputs(self, f0_test, k_test_train):
        if (f0_test is None) != (k_test_train is None):
            given, missing = (
                ("f0_test", "k_test_train") if k_test_train is None else ("k_test_train", "f0_test")
            )
            fail(
                f"GradientDescentPredictor({missing}=...)",
                f"given when {given} is (pass both for test predictions, or neither)",
                "None",
            )
        if f0_test is None:
            return None, None
        where_f = "`GradientDescentPredictor(f0_test=...)`"
        where_k = "`GradientDescentPredictor(k_test_train=...)`"
        f0t = as_real_array(f0_test, where_f)
        kt = as_real_array(k_test_train, where_k)
        n, k = self._n, self._k
        if f0t.ndim != 2 or f0t.shape[1] != k:
            fail(where_f, f"a 2-D (m, k) array with k = {k}", f"shape {tuple(f0t.shape)}")
        m = f0t.shape[0]
        full = self._kernel.ndim == 4
        expected = (m, n, k, k) if full else (m, n)
        if tuple(kt.shape) != expected:
            fail(
                where_k,
                f"of shape {expected} (the {'4' if full else '2'}-D layout of k_train_train, "
                f"m = f0_test.shape[0])",
                f"shape {tuple(kt.shape)}",
            )
        check_finite(where_f, f0t)
        check_finite(where_k, kt)
        return f0t, kt

    def _run(self, t, f0, f0t, kt, where):
        t_flat, t_shape, _ = validate_times(t, where, self._kind)
        dtypes = [self._kernel.dtype, self._y.dtype, f0.dtype]
        if f0t is not None:
            dtypes += [f0t.dtype, kt.dtype]
        dtype = float_dtype(*dtypes)
        cast = lambda a: None if a is None else jnp.asarray(a, dtype)  # noqa: E731
        kernel, y, f0, f0t, kt = map(cast, (self._kernel, self._y, f0, f0t, kt))
        lr = jnp.asarray(self._learning_rate, dtype)
        if t_flat.shape[0] == 0:
            empty = jnp.zeros((0, self._n, self._k), dtype)
            f_t = empty
            ft_t = None if f0t is None else jnp.zeros((0, *f0t.shape), dtype)
        else:
            if self._kind == "flow":
                ts, inverse = _sorted_times(jnp.asarray(t_flat, dtype))
                f_t, ft_t = _flow(
                    kernel,
                    kt,
                    y,
                    f0,
                    f0t,
                    ts,
                    lr,
                    self._rtol,
                    self._atol,
                    loss_fn=self._loss_fn,
                    max_steps=self._max_steps,
                )
            else:
                int_dtype = jax.dtypes.canonicalize_dtype(np.int64)
                steps, inverse = _sorted_times(jnp.asarray(t_flat).astype(int_dtype))
                beta = jnp.asarray(0.0 if self._momentum is None else self._momentum, dtype)
                f_t, ft_t = _discrete(
                    kernel,
                    kt,
                    y,
                    f0,
                    f0t,
                    steps,
                    lr,
                    beta,
                    loss_fn=self._loss_fn,
                )
            f_t = f_t[inverse]
            ft_t = None if ft_t is None else ft_t[inverse]
        f_t = f_t.reshape(*t_shape, self._n, self._k)
        if ft_t is not None:
            ft_t = ft_t.reshape(*t_shape, *f0t.shape)
        return f_t, ft_t

    def __call__(
        self,
        t: ArrayLike,
        f0_train: ArrayLike,
        f0_test: ArrayLike | None = None,
        k_test_train: ArrayLike | None = None,
    ):
        """Outputs of the linearized model after training for time ``t``.

        Args:
          t: a scalar or an array of times of any shape: whole numbers of steps for ``"gd"`` /
            ``"momentum"``, real times (in units of steps) for ``"flow"``. (No ``t = infinity``:
            for a general loss there is no closed-form fixed point; cross-entropy has none.)
          f0_train: ``(n, k)`` outputs on the train inputs at initialisation.
          f0_test: ``(m, k)`` outputs on test inputs at initialisation (give with
            ``k_test_train``).
          k_test_train: ``(m, n)`` or ``(m, n, k, k)`` kernel between test and train inputs, same
            layout as ``k_train_train``.

        Returns:
          Train outputs ``(*t.shape, n, k)``; with test inputs ``(train, test)``, test
          ``(*t.shape, m, k)``.
        """
        f0 = self._f0(f0_train, "`GradientDescentPredictor(f0_train=...)`")
        f0t, kt = self._test_inputs(f0_test, k_test_train)
        f_t, ft_t = self._run(t, f0, f0t, kt, "`GradientDescentPredictor(t=...)`")
        return f_t if f0t is None else (f_t, ft_t)

    def loss(self, t: ArrayLike, f0_train: ArrayLike) -> jax.Array:
        """Training loss ``loss_fn(f_t, y_train)``, shape ``t.shape``."""
        f0 = self._f0(f0_train, "`GradientDescentPredictor.loss(f0_train=...)`")
        f_t, _ = self._run(t, f0, None, None, "`GradientDescentPredictor.loss(t=...)`")
        flat = f_t.reshape(-1, self._n, self._k)
        y = jnp.asarray(self._y, f_t.dtype)
        return jax.vmap(lambda f: self._loss_fn(f, y))(flat).reshape(f_t.shape[:-2])


@functools.partial(jax.jit, static_argnames=("k", "iterations"))
def _power_iteration(kernel: jax.Array, *, k: int, iterations: int) -> jax.Array:
    shape = (kernel.shape[1], k) if kernel.ndim == 4 else (kernel.shape[1], 1)
    v = jnp.ones(shape, kernel.dtype) + jnp.linspace(0.0, 1.0, shape[0] * shape[1]).reshape(shape)

    def body(_, v):
        w = _apply_kernel(kernel, v)
        return w / jnp.maximum(jnp.linalg.norm(w), jnp.finfo(v.dtype).tiny)

    v = lax.fori_loop(0, iterations, body, v / jnp.linalg.norm(v))
    return jnp.sum(v * _apply_kernel(kernel, v))


def _power_lam_max(kernel: jax.Array, k: int, iterations: int = 64) -> float:
    """A lower bound on the top eigenvalue of the kernel (power iteration; for the warning)."""
    return float(_power_iteration(kernel, k=k, iterations=iterations))


def gradient_descent(
    loss: str | LossFn,
    k_train_train: ArrayLike,
    y_train: ArrayLike,
    *,
    learning_rate: Any,
    kind: str = "gd",
    momentum: Any = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 65536,
) -> GradientDescentPredictor:
    """Function-space dynamics of a linearized model trained on any loss.

    Args:
      loss: ``"mse"`` (``0.5 * mean((f - y)**2)``), ``"cross_entropy"`` (softmax, averaged over
        examples) or a callable ``loss(f (n, k), y (n, k)) -> scalar``, differentiable in ``f``.
        Use the same normalisation as the real training for the dynamics to match it.
      k_train_train: NTK on the train inputs, ``(n, n)`` (traced) or ``(n, n, k, k)`` (full).
      y_train: ``(n, k)`` targets (one-hot or probabilities for cross-entropy).
      learning_rate: ``lr`` > 0; one unit of ``t`` is one ``optax.sgd(lr)`` step.
      kind: ``"gd"`` (exact recurrence at integer ``t``), ``"momentum"`` (heavy ball as
        ``optax.sgd(lr, momentum=momentum)``, integer ``t``) or ``"flow"`` (gradient flow, real
        ``t``).
      momentum: ``beta`` in ``[0, 1)``, required for ``kind="momentum"``, ``None`` otherwise.
      rtol, atol: tolerances of the flow's adaptive solver (default 1e-10 in float64, 1e-5 in
        float32); only for ``kind="flow"``.
      max_steps: most solver steps of the flow (a stiff kernel or a long horizon needs many).

    Returns:
      A `GradientDescentPredictor`: ``predict(t, f0_train, f0_test=None, k_test_train=None)``.

    Warns:
      UserWarning for ``"gd"``/``"momentum"`` with a concrete kernel and a built-in loss when
      ``learning_rate`` exceeds the stability bound (exact for MSE; a sufficient bound for
      cross-entropy, so the warning says it may diverge); estimated by power iteration, so a rate
      just above the bound may pass silently.

    Example::

        predict = dynamics.gradient_descent("cross_entropy", k_full, y_onehot, learning_rate=1.0)
        f_train, f_test = predict(jnp.arange(100), f0_train, f0_test, k_test_full)
    """
    where = "`dynamics.gradient_descent({}=...)`"
    if isinstance(loss, str):
        if loss not in LOSSES:
            fail(
                where.format("loss"),
                f"one of {', '.join(map(repr, LOSSES))} or a callable",
                repr(loss),
            )
        loss_name, loss_fn = loss, LOSSES[loss]
    elif callable(loss):
        loss_name, loss_fn = None, loss
    else:
        fail(
            where.format("loss"),
            f"one of {', '.join(map(repr, LOSSES))} or a callable loss(f, y) -> scalar",
            describe(loss),
            TypeError,
        )
    if not isinstance(kind, str) or kind not in GD_KINDS:
        fail(where.format("kind"), f"one of {', '.join(map(repr, GD_KINDS))}", repr(kind))
    learning_rate = check_scalar(
        learning_rate, where.format("learning_rate"), low=0.0, low_inclusive=False
    )
    if kind == "momentum":
        if momentum is None:
            fail(
                where.format("momentum"), "a float in [0, 1) (required for kind='momentum')", "None"
            )
        momentum = check_scalar(
            momentum, where.format("momentum"), low=0.0, low_inclusive=True, high=1.0
        )
    elif momentum is not None:
        fail(
            where.format("momentum"),
            f"None for kind={kind!r} (use kind='momentum' for heavy ball)",
            repr(momentum),
        )
    y = check_targets(y_train, where.format("y_train"))
    kernel = check_train_kernel(k_train_train, y.shape, where.format("k_train_train"))
    dtype = float_dtype(kernel.dtype, y.dtype)
    default_tol = 1e-10 if dtype == np.float64 else 1e-5
    tols = []
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is None:
            tols.append(default_tol)
        else:
            tols.append(
                float(check_scalar(value, where.format(name), low=0.0, low_inclusive=False))
            )
    if not isinstance(max_steps, (int, np.integer)) or isinstance(max_steps, bool) or max_steps < 1:
        fail(where.format("max_steps"), "a positive int", describe(max_steps))
    # The loss must map (n, k) outputs and targets to a scalar (checked abstractly: no compile).
    spec = jax.ShapeDtypeStruct(y.shape, dtype)
    try:
        value = jax.eval_shape(loss_fn, spec, spec)
    except Exception as error:  # noqa: BLE001 - a user's callable: report it by name
        fail(
            where.format("loss"),
            f"a callable loss(f, y) -> scalar for f and y of shape {tuple(y.shape)}",
            f"{getattr(loss_fn, '__name__', type(loss_fn).__name__)}, which raised "
            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
            TypeError,
        )
    if not isinstance(value, jax.ShapeDtypeStruct) or value.shape != ():
        fail(
            where.format("loss"),
            "a callable loss(f, y) returning a scalar",
            f"a loss returning {jax.tree_util.tree_map(lambda a: tuple(a.shape), value)}",
            TypeError,
        )

    predictor = GradientDescentPredictor(
        kernel=kernel,
        y_train=y,
        loss_fn=loss_fn,
        loss_name=loss_name,
        kind=kind,
        learning_rate=learning_rate,
        momentum=momentum,
        rtol=tols[0],
        atol=tols[1],
        max_steps=int(max_steps),
    )
    c = _curvature_bound(loss_name, *y.shape)
    if kind != "flow" and c is not None and is_concrete(kernel, learning_rate, momentum):
        lam = _power_lam_max(jnp.asarray(kernel, dtype), y.shape[1])
        beta = 0.0 if momentum is None else float(momentum)
        bound = 2.0 * (1.0 + beta) / (c * lam) if lam > 0 else float("inf")
        if float(learning_rate) > bound:
            what = "diverges" if loss_name == "mse" else "may diverge"
            warnings.warn(
                f"dynamics.gradient_descent: learning_rate={float(learning_rate):g} exceeds the "
                f"stability bound {bound:g} (= 2 {'(1 + momentum) ' if beta else ''}/ "
                f"(curvature of {loss_name!r} * lam_max)) of this kernel, so "
                f"{'gradient descent' if kind == 'gd' else 'heavy-ball momentum'} {what}.",
                UserWarning,
                stacklevel=2,
            )
    return predictor
