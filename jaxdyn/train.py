"""Real training trajectories with optax, compiled end to end under `lax.scan`.

`trajectory` trains `apply_fn` (or its linearization) from `params0` with any optax
optimizer and records outputs, losses, the distance travelled in parameter space and,
on request, parameter snapshots and the NTK along the way. It is a pure function of its
array arguments, so `jax.vmap` over keys (and initial parameters) trains an ensemble of
seeds in one program.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdyn._checks import (
    check_array,
    check_bool,
    check_choice,
    check_finite,
    check_float,
    check_int,
    check_model_input,
    describe,
    fail,
    is_concrete,
)

# The losses (`0.5 * mean((f - y)**2)`, softmax cross-entropy; both means over examples) are
# defined once, beside the function-space dynamics that must follow the same conventions;
# `train.mse_loss` etc. stay importable from here.
from jaxdyn.dynamics.gradient_descent import (  # noqa: F401
    LOSSES,
    cross_entropy_loss,
    mse_loss,
)
from jaxdyn.linearize import linearize as _linearize
from jaxdyn.ntk import METHODS as _NTK_METHODS
from jaxdyn.ntk import ntk_fn

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array], jax.Array]

__all__ = [
    "DIVERGENCE_FACTOR",
    "LOSSES",
    "Trajectory",
    "cross_entropy_loss",
    "kernel_change",
    "mse_loss",
    "trajectory",
]


class Trajectory(NamedTuple):
    """A recorded training run. T recorded steps, n train / m test points, k outputs.

    Attributes:
      steps: `(T,)` optimizer steps at which the run was recorded (0 is the initialisation).
      f_train: `(T, n, k)` outputs on the training inputs.
      f_test: `(T, m, k)` outputs on `x_test`, or None.
      loss: `(T,)` training loss (full training set, whatever the minibatch size).
      test_loss: `(T,)` loss on `(x_test, y_test)`, or None.
      param_distance: `(T,)` `||theta_t - theta_0||` (Euclidean over all parameters).
      params: parameter snapshots, leaves `(T, ...)`, or None (`keep_params=False`).
      ntk_steps: `(Tk,)` steps at which the NTK was recorded, or None.
      ntk: `(Tk, n, n)` empirical NTK of the trained model on `x_train` (mean over outputs),
        or None. `kernel_change(traj)` turns it into the relative drift.
      observed: what `observe(params)` returned at each recorded step, leaves `(T, ...)`, or
        None (no `observe`).
    """

    steps: jax.Array
    f_train: jax.Array
    f_test: jax.Array | None
    loss: jax.Array
    test_loss: jax.Array | None
    param_distance: jax.Array
    params: PyTree | None
    ntk_steps: jax.Array | None
    ntk: jax.Array | None
    observed: PyTree | None = None


# The divergence rule of `trajectory`: a recorded loss above this multiple of the initial one.
DIVERGENCE_FACTOR = 1e3


def _tree_distance(a: PyTree, b: PyTree) -> jax.Array:
    sq = [
        jnp.sum((u - v) ** 2)
        for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    ]
    return jnp.sqrt(sum(sq))


def _minibatch(key: jax.Array, step: jax.Array, n: int, batch_size: int) -> jax.Array:
    """Indices of the minibatch at `step`: a fresh permutation of the n examples every
    epoch (from `fold_in(key, epoch)`), cut into `n // batch_size` batches; the remainder
    of each permutation is dropped, as `drop_last` data loaders do."""
    per_epoch = n // batch_size
    epoch, pos = step // per_epoch, step % per_epoch
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), n)
    return jax.lax.dynamic_slice_in_dim(perm, pos * batch_size, batch_size)


def _check_arguments(
    apply_fn,
    params0,
    x_train,
    y_train,
    optimizer,
    steps,
    record_every,
    x_test,
    y_test,
    loss,
    batch_size,
    key,
    linearize,
    keep_params,
    kernel_every,
    ntk_method,
    objective=None,
) -> tuple[Callable, int, int, int | None, int | None]:
    """All of `trajectory`'s checks, before any compilation.

    Returns:
      `(loss_fn, steps, record_every, kernel_every, batch_size)`, the counts as Python ints.
    """
    if not callable(apply_fn):
        fail(
            "trajectory(apply_fn)",
            "callable `apply_fn(params, x)`",
            type(apply_fn).__name__,
            TypeError,
        )
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        fail("optimizer", "an optax GradientTransformation", describe(optimizer), TypeError)
    steps = check_int("steps", steps, minimum=1)
    record_every = check_int("record_every", record_every, minimum=1)
    if steps % record_every:
        fail("steps", f"a multiple of `record_every` ({record_every})", str(steps))
    if kernel_every is not None:
        kernel_every = check_int("kernel_every", kernel_every, minimum=1, allow_none=True)
        if kernel_every % record_every or steps % kernel_every:
            fail(
                "kernel_every",
                f"a multiple of `record_every` ({record_every}) that divides `steps` ({steps})",
                str(kernel_every),
            )
    check_bool("linearize", linearize)
    check_bool("keep_params", keep_params)
    check_choice("ntk_method", ntk_method, _NTK_METHODS)
    check_array("x_train", x_train, min_ndim=1)
    n = x_train.shape[0]
    check_array("y_train", y_train, min_ndim=2)
    if objective is not None:
        _check_objective(objective, loss, linearize, y_train, y_test, x_test, n)
    elif y_train.ndim != 2 or y_train.shape[0] != n:
        fail(
            "trajectory(y_train)",
            f"an (n, k) array with n = x_train.shape[0] = {n}",
            f"shape {tuple(y_train.shape)}",
        )
    if y_test is not None and x_test is None:
        fail("y_test", "given with `x_test`", "y_test without x_test")
    if x_test is not None:
        check_array("x_test", x_test, min_ndim=1)
        if tuple(x_test.shape[1:]) != tuple(x_train.shape[1:]):
            fail(
                "x_test",
                f"an array of examples shaped like x_train's, "
                f"(m, {', '.join(map(str, x_train.shape[1:]))})",
                f"shape {tuple(x_test.shape)}",
            )
        if y_test is not None and objective is None:
            check_array("y_test", y_test)
            if tuple(y_test.shape) != (x_test.shape[0], y_train.shape[1]):
                fail(
                    "trajectory(y_test)",
                    f"an (m, k) array of shape {(x_test.shape[0], y_train.shape[1])}",
                    f"shape {tuple(y_test.shape)}",
                )
    if isinstance(loss, str):
        check_choice("loss", loss, tuple(LOSSES))
        loss_fn = LOSSES[loss]
    elif callable(loss):
        loss_fn = loss
    else:
        fail(
            "loss",
            f"one of {', '.join(map(repr, LOSSES))} or a callable loss(f, y)",
            describe(loss),
            TypeError,
        )
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, minimum=1, allow_none=True)
        if batch_size > n:
            fail("batch_size", f"<= the number of training points ({n})", str(batch_size))
        if key is None:
            fail(
                "key",
                "a jax.random key when `batch_size` is set (minibatch SGD), so the "
                "sampling is reproducible",
                "None",
            )
        _check_key(key)
    # The model must accept x_train and params0 (shapes only: no compilation) and give one
    # (n, k) output whose width matches the targets'.
    out = check_model_input(apply_fn, params0, x_train, x_name="x_train", params_name="params0")
    if not isinstance(out, jax.ShapeDtypeStruct) or out.ndim != 2 or out.shape[0] != n:
        fail(
            "trajectory(apply_fn)",
            f"a model whose outputs are one (n, k) array, n = {n}",
            f"outputs {jax.tree_util.tree_map(lambda a: tuple(a.shape), out)}",
            TypeError if not isinstance(out, jax.ShapeDtypeStruct) else ValueError,
        )
    if objective is None and y_train.shape[1] != out.shape[1]:
        fail(
            "trajectory(y_train)",
            f"an array with {out.shape[1]} columns (the model's outputs)",
            f"shape {tuple(y_train.shape)}",
        )
    if objective is None:
        _check_loss(loss_fn, out, y_train)
    for name, value in [
        ("x_train", x_train),
        ("y_train", y_train),
        ("x_test", x_test),
        ("y_test", y_test),
        ("params0", params0),
    ]:
        check_finite(name, value)
    return loss_fn, steps, record_every, kernel_every, batch_size


def _check_objective(objective, loss, linearize, y_train, y_test, x_test, n) -> None:
    """`objective(params, x, y)` replaces `loss`; its targets need only one row per input."""
    if not callable(objective):
        fail("objective", "a callable objective(params, x, y) -> scalar, or None",
             describe(objective), TypeError)  # fmt: skip
    if not (isinstance(loss, str) and loss == "mse"):
        fail("loss", "left at its default when `objective` is given", describe(loss))
    if linearize:
        fail("linearize", "False when `objective` is given (it closes over the model)", "True")
    if y_train.shape[0] != n:
        fail("trajectory(y_train)", f"an array with n = x_train.shape[0] = {n} rows",
             f"shape {tuple(y_train.shape)}")  # fmt: skip
    if y_test is not None and y_test.shape[0] != x_test.shape[0]:
        fail("trajectory(y_test)", f"an array with m = x_test.shape[0] = {x_test.shape[0]} rows",
             f"shape {tuple(y_test.shape)}")  # fmt: skip


def _check_key(key: Any) -> None:
    """A PRNG key: typed (`jax.random.key`) or raw (`jax.random.PRNGKey`, uint32 (2,))."""
    dtype, shape = getattr(key, "dtype", None), tuple(getattr(key, "shape", (None,)))
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        ok = shape == ()
    else:
        ok = dtype is not None and np.dtype(dtype) == np.uint32 and shape == (2,)
    if not ok:
        fail(
            "key",
            "a single jax.random key (jax.random.key(0) or jax.random.PRNGKey(0))",
            describe(key),
            TypeError,
        )


def _check_loss(loss_fn: Callable, out: jax.ShapeDtypeStruct, y_train: jax.Array) -> None:
    """The loss, evaluated abstractly on the model's outputs and the targets, is a scalar."""
    y = jax.ShapeDtypeStruct(y_train.shape, y_train.dtype)
    try:
        value = jax.eval_shape(loss_fn, out, y)
    except Exception as error:  # noqa: BLE001 - a user's callable: report it by name
        fail(
            "loss",
            f"a callable loss(f, y) -> scalar for f of shape {tuple(out.shape)} and y "
            f"of shape {tuple(y_train.shape)}",
            f"{getattr(loss_fn, '__name__', type(loss_fn).__name__)}, which raised "
            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
            TypeError,
        )
    if not isinstance(value, jax.ShapeDtypeStruct) or value.shape != ():
        fail(
            "loss",
            "a callable loss(f, y) returning a scalar",
            f"a loss returning {jax.tree_util.tree_map(lambda a: tuple(a.shape), value)}",
            TypeError,
        )


def _warn_above_critical(learning_rate, critical_learning_rate) -> None:
    """Warns once, before training, when a known learning rate is above the critical one."""
    learning_rate = check_float(
        "learning_rate", learning_rate, minimum=0, strict_min=True, allow_none=True
    )
    critical = check_float(
        "critical_learning_rate",
        critical_learning_rate,
        minimum=0,
        strict_min=True,
        allow_none=True,
    )
    if (learning_rate is None) != (critical is None):
        fail(
            "learning_rate and critical_learning_rate",
            "given together (the warning compares them)",
            "only " + ("learning_rate" if critical is None else "critical_learning_rate"),
        )
    if (
        learning_rate is not None
        and is_concrete(learning_rate, critical)
        and learning_rate > critical
    ):
        warnings.warn(
            f"`learning_rate` {learning_rate:.4g} is {learning_rate / critical:.3g}x the critical "
            f"rate {critical:.4g}: gradient descent diverges from step 0 on (the loss grows "
            "geometrically along the top kernel eigenvector).",
            RuntimeWarning,
            stacklevel=3,
        )


def _divergence(steps: np.ndarray, loss: np.ndarray) -> str | None:
    """The divergence warning for a recorded loss `(T,)` at `steps (T,)`, or None.

    A run diverged at the first recorded step where the loss is NaN/Inf, or else where it
    exceeds `DIVERGENCE_FACTOR` times the initial loss (only for a positive finite start).
    """
    bad = np.flatnonzero(~np.isfinite(loss))
    hint = (
        "(for gradient descent, check the learning rate against "
        "dynamics.mse(...).critical_learning_rate)."
    )
    if bad.size:
        return (
            f"training diverged: the loss is NaN/Inf from recorded step "
            f"{int(steps[bad[0]])} on {hint}"
        )
    start = float(loss[0]) if loss.size else 0.0
    if start > 0:
        grown = np.flatnonzero(loss > DIVERGENCE_FACTOR * start)
        if grown.size:
            i = int(grown[0])
            return (
                f"training diverged: the loss grew from {start:.3g} to {float(loss[i]):.3g} "
                f"(over {DIVERGENCE_FACTOR:.0e} times the initial loss) by recorded step "
                f"{int(steps[i])} {hint}"
            )
    return None


def trajectory(
    apply_fn: ApplyFn,
    params0: PyTree,
    x_train: jax.Array,
    y_train: jax.Array,
    *,
    optimizer: optax.GradientTransformation,
    steps: int,
    record_every: int = 1,
    x_test: jax.Array | None = None,
    y_test: jax.Array | None = None,
    loss: str | Callable[[jax.Array, jax.Array], jax.Array] = "mse",
    batch_size: int | None = None,
    key: jax.Array | None = None,
    linearize: bool = False,
    keep_params: bool = False,
    kernel_every: int | None = None,
    ntk_method: str = "auto",
    learning_rate: float | None = None,
    critical_learning_rate: float | None = None,
    observe: Callable[[PyTree], PyTree] | None = None,
    objective: Callable[[PyTree, jax.Array, jax.Array], jax.Array] | None = None,
) -> Trajectory:
    """Trains `apply_fn` from `params0` with `optimizer` and records the run.

    Args:
      apply_fn: model `apply_fn(params, x) -> (n, k)`.
      params0: initial parameters.
      x_train: `(n, ...)` training inputs; y_train: `(n, k)` targets.
      optimizer: any optax `GradientTransformation` (`optax.sgd(lr)` is full-batch GD,
        `optax.sgd(lr, momentum=b)` heavy ball, `optax.adam(lr)`, ...).
      steps: number of optimizer steps; a multiple of `record_every` (and of
        `kernel_every` when given).
      record_every: record outputs, losses and distances every this many steps.
      x_test, y_test: optional `(m, ...)` inputs and `(m, k)` targets recorded alongside.
      loss: `"mse"` (`0.5 * mean((f - y)**2)`, the `dynamics` convention),
        `"cross_entropy"` (softmax, one-hot targets) or a callable `loss(f, y) -> scalar`.
      batch_size: minibatch size for SGD (a fresh permutation per epoch; needs `key`);
        None for full-batch training.
      key: PRNG key for minibatch sampling.
      linearize: train the linearization of `apply_fn` at `params0` instead of the network.
      keep_params: also return parameter snapshots at the recorded steps.
      kernel_every: record the empirical NTK on `x_train` every this many steps (a multiple
        of `record_every`); `ntk_method` is passed to `jaxdyn.ntk_fn`.
      learning_rate, critical_learning_rate: optional, for the divergence warning only (an
        optax optimizer does not expose its rate): pass the rate `optimizer` uses and the
        critical one, e.g. `dynamics.mse(k, y_train).critical_learning_rate` for gradient
        descent on the MSE loss, and a rate above the critical one warns before training.
      observe: optional `observe(params) -> PyTree of arrays`, evaluated at every recorded
        step (of the trained model's parameters: those of the linearization when
        `linearize=True`) and returned stacked in `Trajectory.observed`, without keeping
        parameter snapshots; e.g. `lambda p: hidden(p, x_pair)` for the hidden
        representations of two inputs.
      objective: optional `objective(params, x, y) -> scalar` trained on instead of
        `loss(apply_fn(params, x), y)`, for losses that need more than the outputs (e.g.
        input derivatives: `analysis.frequency.derivative_loss`). Minibatches pass their
        rows of `x_train`/`y_train`; `y_train` (and `y_test`) need one row per input, any
        width; the recorded `loss`/`test_loss` are the objective on the full sets. Not with
        `linearize=True` or a non-default `loss`.

    Returns:
      A `Trajectory`. The whole loop runs as one compiled `lax.scan`; wrap the call in
      `jax.vmap` over keys / initial parameters to train seeds in parallel.

    Warns:
      RuntimeWarning, at most once per run, naming the first recorded step where the run
      diverged: where the loss is NaN/Inf, or else where it exceeds `DIVERGENCE_FACTOR`
      (1e3) times its initial value (a rate above the critical one grows the loss
      geometrically, long before it overflows). Also once, before training, when
      `learning_rate > critical_learning_rate`. Only outside jit/vmap (values concrete).

    Raises:
      TypeError, ValueError: bad arguments, named; `x_train` (or `params0`) that the model
      refuses; `y_train` whose width differs from the model's outputs; empty inputs.

    Example:
      >>> traj = trajectory(apply_fn, params0, x, y, optimizer=optax.sgd(0.5), steps=1000,
      ...                   record_every=10, linearize=True)
      >>> traj.f_train.shape   # (101, n, k)
    """
    loss_fn, steps, record_every, kernel_every, batch_size = _check_arguments(
        apply_fn,
        params0,
        x_train,
        y_train,
        optimizer,
        steps,
        record_every,
        x_test,
        y_test,
        loss,
        batch_size,
        key,
        linearize,
        keep_params,
        kernel_every,
        ntk_method,
        objective,
    )
    n = x_train.shape[0]
    _warn_above_critical(learning_rate, critical_learning_rate)
    if observe is not None and not callable(observe):
        fail(
            "trajectory(observe)",
            "a callable observe(params) -> arrays, or None",
            describe(observe),
            TypeError,
        )
    # NumPy inputs (the data loaders return them) must become JAX arrays: minibatches index them
    # with traced indices inside the scan.
    x_train, y_train = jnp.asarray(x_train), jnp.asarray(y_train)
    x_test = None if x_test is None else jnp.asarray(x_test)
    y_test = None if y_test is None else jnp.asarray(y_test)

    model = _linearize(apply_fn, params0) if linearize else apply_fn
    kernel = ntk_fn(model, method=ntk_method) if kernel_every is not None else None

    def full_loss(p, x, y, f):
        return loss_fn(f, y) if objective is None else objective(p, x, y)

    def batch_loss(p, idx):
        x, y = (x_train, y_train) if idx is None else (x_train[idx], y_train[idx])
        return full_loss(p, x, y, None if objective is not None else model(p, x))

    def one_step(carry, _):
        p, state, step = carry
        idx = None if batch_size is None else _minibatch(key, step, n, batch_size)
        grads = jax.grad(batch_loss)(p, idx)
        updates, state = optimizer.update(grads, state, p)
        return (optax.apply_updates(p, updates), state, step + 1), None

    def record(p):
        f_tr = model(p, x_train)
        f_te = None if x_test is None else model(p, x_test)
        out = dict(
            f_train=f_tr,
            loss=full_loss(p, x_train, y_train, f_tr),
            param_distance=_tree_distance(p, params0),
        )
        if x_test is not None:
            out["f_test"] = f_te
            if y_test is not None:
                out["test_loss"] = full_loss(p, x_test, y_test, f_te)
        if keep_params:
            out["params"] = p
        if observe is not None:
            out["observed"] = observe(p)
        return out

    def record_chunk(carry, _):
        carry, _ = jax.lax.scan(one_step, carry, None, length=record_every)
        return carry, record(carry[0])

    per_kernel = (kernel_every or steps) // record_every

    def kernel_chunk(carry, _):
        carry, recs = jax.lax.scan(record_chunk, carry, None, length=per_kernel)
        ntk = kernel(x_train, None, carry[0]) if kernel is not None else None
        return carry, (recs, ntk)

    carry0 = (params0, optimizer.init(params0), jnp.zeros((), jnp.int32))
    n_kernel = steps // (kernel_every or steps)
    _, (recs, ntks) = jax.lax.scan(kernel_chunk, carry0, None, length=n_kernel)
    first = record(params0)
    recs = jax.tree_util.tree_map(
        lambda a0, a: jnp.concatenate([a0[None], a.reshape((-1, *a.shape[2:]))]), first, recs
    )
    ntk = ntk_steps = None
    if kernel is not None:
        ntk = jnp.concatenate([kernel(x_train, None, params0)[None], ntks])
        ntk_steps = jnp.arange(0, steps + 1, kernel_every)

    traj = Trajectory(
        steps=jnp.arange(0, steps + 1, record_every),
        f_train=recs["f_train"],
        f_test=recs.get("f_test"),
        loss=recs["loss"],
        test_loss=recs.get("test_loss"),
        param_distance=recs["param_distance"],
        params=recs.get("params"),
        ntk_steps=ntk_steps,
        ntk=ntk,
        observed=recs.get("observed"),
    )
    if is_concrete(traj.loss):
        message = _divergence(np.asarray(traj.steps), np.asarray(traj.loss))
        if message:
            warnings.warn(message, RuntimeWarning, stacklevel=2)
    return traj


def kernel_change(traj: Trajectory) -> jax.Array:
    """Relative NTK drift `||Theta_t - Theta_0||_F / ||Theta_0||_F` at `traj.ntk_steps`, `(Tk,)`."""
    if traj.ntk is None:
        raise ValueError("`traj` holds no NTK: run `trajectory(..., kernel_every=K)`.")
    diff = traj.ntk - traj.ntk[:1]
    return jnp.sqrt(jnp.sum(diff**2, axis=(-2, -1))) / jnp.sqrt(jnp.sum(traj.ntk[0] ** 2))
