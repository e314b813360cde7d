"""The parts of `linear-vs-real` that depend on the architecture, loss and optimizer: models
(fully connected, convolutional, Wide ResNet), data (vectors or images, +-1 or one-hot targets),
the optax optimizer, and the analytic prediction of the linearized network (the closed form of
`jaxdyn.dynamics.mse` for MSE, the function-space recurrence of
`jaxdyn.dynamics.gradient_descent` for cross-entropy), with the individual weights each
predicts. Built on jaxdyn's public API only.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxdyn
from jaxdyn import nets

ACTIVATIONS: dict[str, Callable[[], nets.Layer]] = {
    "relu": nets.Relu,
    "erf": nets.Erf,
    "tanh": nets.Tanh,
}
MODELS = ("mlp", "cnn", "wrn")
LOSSES = ("mse", "cross-entropy")
# Classification datasets with a binary +-1 subset (`classes`); the file-based ones need their
# files (see `jaxdyn.data`) under --data-dir, $JAXDYN_DATA or the Debian dataset folder.
DATASETS = ("digits", "mnist1d", "fashion_mnist", "mnist", "cifar10")
FILE_DATASETS = ("fashion_mnist", "mnist", "cifar10")
IMAGE_DATASETS = ("digits", "fashion_mnist", "mnist", "cifar10")
# How many individual weights of the first and of the last layer the runs record.
WEIGHTS_PER_LAYER = 3


def layers(settings, width: int, d_out: int) -> nets.Layer:
    """The network of `settings.model` in NTK parameterisation, `d_out` outputs:

    - mlp: `depth` x (Dense(width), activation), Dense(d_out);
    - cnn: `depth` x (Conv(width, 3x3, SAME), activation), Flatten, Dense(d_out);
    - wrn: Conv(width, 3x3) stem, `depth` Wide-ResNet blocks of `width` channels (ReLU),
      Relu, GlobalAvgPool, Dense(d_out) (`nets.WideResnet`).
    """
    kw = dict(W_std=settings.w_std, b_std=settings.b_std)
    act = ACTIVATIONS[settings.activation]
    if settings.model == "wrn":
        return nets.WideResnet(settings.depth, width, d_out, **kw)
    hidden = []
    for _ in range(settings.depth):
        if settings.model == "cnn":
            hidden += [nets.Conv(width, (3, 3), padding="SAME", **kw), act()]
        else:
            hidden += [nets.Dense(width, **kw), act()]
    head = [nets.Flatten()] if settings.model == "cnn" else []
    return nets.serial(*hidden, *head, nets.Dense(d_out, **kw))


def init_mlp_params(key: jax.Array, sizes, dtype) -> tuple:
    """Standard-normal parameters in the layout of the mlp's `nets.serial`:
    `((W1, b1), (), (W2, b2), (), ..., (WL, bL))`, W `(fan_in, fan_out)`.

    The random stream is the one this experiment has always used (one key per Dense layer, the
    bias from `fold_in(key, 1)`), not `nets.serial`'s `init_fn`, so results do not change.
    """
    keys = jax.random.split(key, len(sizes) - 1)
    dense = [
        (
            jax.random.normal(k, (a, b), dtype),
            jax.random.normal(jax.random.fold_in(k, 1), (b,), dtype),
        )
        for k, a, b in zip(keys, sizes[:-1], sizes[1:])
    ]
    params: list = []
    for i, p in enumerate(dense):
        params += [p] if i == len(dense) - 1 else [p, ()]
    return tuple(params)


def init(settings, net: nets.Layer, x: jax.Array, width: int, d_out: int, seed: int):
    """Initial parameters of `net` (`layers(settings, width, d_out)`) for inputs like `x`."""
    dtype = jnp.dtype(settings.dtype)
    if settings.model == "mlp":
        sizes = [x.shape[1]] + [width] * settings.depth + [d_out]
        return init_mlp_params(jax.random.PRNGKey(seed), sizes, dtype)
    _, params = net.init_fn(jax.random.PRNGKey(seed), (-1, *x.shape[1:]))
    return jax.tree_util.tree_map(lambda a: a.astype(dtype), params)


def load_data(settings):
    """`(x, y, x_test, y_test)`: the `classes` of the dataset, standardised with train
    statistics; vectors `(n, d)` for the mlp, images `(n, H, W, C)` for cnn / wrn. Targets:
    +-1 `(n, 1)` for two classes under MSE, one-hot `(n, k)` otherwise (cross-entropy always
    has one output per class)."""
    kwargs: dict[str, Any] = dict(
        n_train=settings.n_train,
        n_test=settings.n_test,
        standardize=True,
        seed=0,
        classes=tuple(settings.classes),
    )
    if settings.loss == "cross-entropy":
        kwargs["one_hot"] = True
    if settings.model != "mlp":
        kwargs["flatten"] = False
    if settings.dataset in FILE_DATASETS:
        kwargs["data_dir"] = settings.data_dir
    ds = jaxdyn.data.load(settings.dataset, **kwargs)
    dtype = jnp.dtype(settings.dtype)
    if settings.model == "mlp":
        shape = lambda a: jnp.asarray(a, dtype).reshape(a.shape[0], -1)  # noqa: E731
    else:
        shape = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    return (
        shape(ds.x_train),
        jnp.asarray(ds.y_train, dtype),
        shape(ds.x_test),
        jnp.asarray(ds.y_test, dtype),
    )


def optimizer(settings) -> tuple[optax.GradientTransformation, str | None]:
    """The optax optimizer and the `kind` of analytic dynamics that describes it exactly
    (None: none does, i.e. adam, or minibatches)."""
    lr = settings.learning_rate
    if settings.optimizer in ("gd", "sgd"):
        opt, kind = optax.sgd(lr), "gd"
    elif settings.optimizer == "momentum":
        opt, kind = optax.sgd(lr, momentum=settings.momentum), "momentum"
    else:
        opt, kind = optax.adam(lr), None
    return opt, (None if settings.batch_size is not None else kind)


def train_loss(settings) -> str:
    """The `jaxdyn.trajectory` / `dynamics.gradient_descent` name of the loss."""
    return "mse" if settings.loss == "mse" else "cross_entropy"


def weight_picks(settings, apply_fn, params0, x, y) -> list[tuple[int, int]]:
    """`(leaf, flat index)` of the recorded weights: in the first and in the last weight
    matrix (leaves of rank >= 2), the `WEIGHTS_PER_LAYER` entries with the largest initial
    loss gradient (the first entries would often be weights of always-zero pixels, which
    never move)."""
    loss = jaxdyn.dynamics.LOSSES[train_loss(settings)]
    grads = jax.tree_util.tree_leaves(jax.grad(lambda p: loss(apply_fn(p, x), y))(params0))
    mats = [i for i, a in enumerate(grads) if a.ndim >= 2]
    picks = []
    for leaf in (mats[0], mats[-1]):
        top = np.argsort(-np.abs(np.asarray(grads[leaf]).reshape(-1)), kind="stable")
        picks += [(leaf, int(j)) for j in top[:WEIGHTS_PER_LAYER]]
    return picks


def observe_weights(picks) -> Callable[[Any], jax.Array]:
    """`params -> (len(picks),)` the picked weights (for `trajectory(observe=...)`)."""

    def observe(params):
        leaves = jax.tree_util.tree_leaves(params)
        return jnp.stack([leaves[leaf].reshape(-1)[j] for leaf, j in picks])

    return observe


def weight_jacobians(apply_fn, params0, x: jax.Array, picks) -> list[jax.Array]:
    """`d f(x) / d w` `(n, k)` for each picked weight `w`, by one jvp each."""
    leaves, treedef = jax.tree_util.tree_flatten(params0)
    out = []
    for leaf, j in picks:
        tangent = [jnp.zeros_like(a) for a in leaves]
        tangent[leaf] = tangent[leaf].reshape(-1).at[j].set(1).reshape(leaves[leaf].shape)
        tangent = jax.tree_util.tree_unflatten(treedef, tangent)
        out.append(jax.jvp(lambda p: apply_fn(p, x), (params0,), (tangent,))[1])
    return out


class Analytic(NamedTuple):
    """The analytic prediction of the linearized network at the recorded steps.

    `name` says which: "closed form" (`dynamics.mse`) or "function-space recurrence"
    (`dynamics.gradient_descent`). `f_train (T, n, k)`, `f_test (T, m, k)`, `loss (T,)`,
    `weights (T, P)` the picked weights (initial value plus predicted change)."""

    name: str
    f_train: jax.Array
    f_test: jax.Array
    loss: jax.Array
    weights: jax.Array


def kernels(apply_fn, params0, data) -> tuple[jax.Array, jax.Array]:
    """The initial NTK `(k_train_train, k_test_train)`: traced `(n, n)` for a single output
    (exact then) and full `(n, n, k, k)` otherwise, so that predictions are those of the
    finite linearized network, not of the infinite-width approximation `Theta ⊗ I`."""
    x, y, xt, _ = data
    trace_axes = (-1,) if y.shape[1] == 1 else ()
    k = jaxdyn.empirical_ntk(apply_fn, params0, x, trace_axes=trace_axes)
    return k, jaxdyn.empirical_ntk(apply_fn, params0, xt, x, trace_axes=trace_axes)


def critical_learning_rate(settings, k: jax.Array, y: jax.Array) -> float:
    """Plain gradient descent's critical rate on the initial NTK: exact for MSE (`2 N /
    lam_max`), the sufficient stability bound `4 n / lam_max` for cross-entropy."""
    if settings.loss == "mse":
        return float(jaxdyn.dynamics.mse(k, y).critical_learning_rate)
    with warnings.catch_warnings():  # this rate is reported, not used: no warning here
        warnings.simplefilter("ignore", UserWarning)
        predict = jaxdyn.dynamics.gradient_descent("cross_entropy", k, y, learning_rate=1.0)
    return float(predict.critical_learning_rate)


def analytic(settings, apply_fn, params0, data, ks, steps: jax.Array, kind: str, picks):
    """The `Analytic` prediction of the linearized network trained by `kind` ("gd" /
    "momentum", full batch) from the initial kernels `ks = kernels(...)`."""
    x, y, xt, _ = data
    k, k_test = ks
    f0, f0t = apply_fn(params0, x), apply_fn(params0, xt)
    beta = settings.momentum if kind == "momentum" else None
    jacs = weight_jacobians(apply_fn, params0, x, picks)
    w0 = observe_weights(picks)(params0)
    if settings.loss == "mse":
        predict = jaxdyn.dynamics.mse(
            k, y, learning_rate=settings.learning_rate, kind=kind, momentum=beta
        )
        f_train, f_test = predict(steps, f0, f0t, k_test)
        moved = predict.weights(steps, f0, {str(i): j for i, j in enumerate(jacs)})
        weights = jnp.stack([moved[str(i)] for i in range(len(jacs))], axis=-1)
        return Analytic("closed form", f_train, f_test, predict.loss(steps, f0), w0[None] + weights)
    predict = jaxdyn.dynamics.gradient_descent(
        train_loss(settings),
        k,
        y,
        learning_rate=settings.learning_rate,
        kind=kind,
        momentum=beta,
    )
    every = jnp.arange(int(steps[-1]) + 1)
    f_all, ft_all = predict(every, f0, f0t, k_test)
    weights = _recurrence_weights(
        f_all, y, jacs, predict.loss_fn, settings.learning_rate, beta or 0.0
    )
    return Analytic(
        "function-space recurrence",
        f_all[steps],
        ft_all[steps],
        jax.vmap(lambda f: predict.loss_fn(f, y))(f_all[steps]),
        w0[None] + weights[steps],
    )


def _recurrence_weights(f_all, y, jacs, loss_fn, lr: float, beta: float) -> jax.Array:
    """`(T + 1, P)` weight changes of the linearized network from its outputs at every step.

    A step moves the parameters by `-lr J^T u_t` with `u_t = g_t + beta u_{t-1}` the
    function-space velocity (`g_t = grad_f L(f_t)`), so a weight `w` has moved by
    `-lr sum_{s<t} <d f / d w, u_s>` after t steps."""
    grads = jax.vmap(jax.grad(loss_fn), in_axes=(0, None))(f_all[:-1], y)  # (T, n, k)

    def velocity(u, g):
        u = g + beta * u
        return u, u

    _, us = jax.lax.scan(velocity, jnp.zeros_like(grads[0]), grads)
    per_step = -lr * jnp.stack([jnp.sum(us * j[None], axis=(1, 2)) for j in jacs], axis=-1)
    zero = jnp.zeros((1, len(jacs)), per_step.dtype)
    return jnp.concatenate([zero, jnp.cumsum(per_step, axis=0)])


def tolist(a) -> list | None:
    return None if a is None else np.asarray(a, np.float64).tolist()
