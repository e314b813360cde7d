"""Models and losses of the frequency-principle experiments: compact-support activations,
multi-scale networks (MscaleDNN), plain MLP / small-CNN builders and the input-derivative loss.

Every builder returns a `Model(init, apply)`: `init(key, dtype=jnp.float32) -> params` (a
PyTree) and `apply(params, x) -> (n, k)`, a plain jaxdyn model (usable with
`train.trajectory`, `empirical_ntk`, and `jax.vmap` over parameters of many seeds).
Parameterisation is the standard one (`h = x @ W + b`, no `1/sqrt(width)` in the forward
pass) with weights drawn `N(0, w_std^2)`, as the authors' TensorFlow code does.

- `srelu(x) = relu(x) relu(1 - x)`, `s2relu(x) = sin(2 pi x) srelu(x)` (Liu, Cai and Xu 2020).
- `mscale(scales, subnet)`: `y(x) = sum_k N_k(s_k x)`, one copy of `subnet` per scale
  (MscaleDNN-2 of Liu, Cai and Xu 2020); `mscale_neurons(...)`: one network whose first-layer
  neurons are split into groups, group g computing `act(s_g (x W)_j + b_j)` (MscaleDNN-1).
- `derivative_loss(apply_fn, weight)`: `0.5 mean|h - f|^2 + weight 0.5 mean|dh/dx - df/dx|^2`
  as an objective on `(params, x, y)` for `train.trajectory(objective=...)`; the targets `y`
  hold `f` and `df/dx` side by side (`derivative_targets`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn._checks import check_array, check_choice, check_float, check_int, describe, fail

__all__ = [
    "ACTIVATIONS",
    "NEURON_SCALES",
    "Model",
    "cnn",
    "derivative_loss",
    "derivative_targets",
    "input_gradient",
    "mlp",
    "mscale",
    "mscale_neurons",
    "param_count",
    "s2relu",
    "srelu",
]

PyTree = Any


class Model(NamedTuple):
    """A network as two pure functions.

    Attributes:
      init: `init(key, dtype=jnp.float32) -> params`.
      apply: `apply(params, x) -> (n, k)` for inputs `x (n, ...)`.
    """

    init: Callable[..., PyTree]
    apply: Callable[[PyTree, jax.Array], jax.Array]


def srelu(x: jax.Array) -> jax.Array:
    """`relu(x) * relu(1 - x)`: a bump supported on [0, 1] (peak 1/4 at x = 1/2)."""
    return jax.nn.relu(x) * jax.nn.relu(1.0 - x)


def s2relu(x: jax.Array) -> jax.Array:
    """`sin(2 pi x) * srelu(x)`: compact support on [0, 1], less energy at low frequency."""
    return jnp.sin(2.0 * np.pi * x) * srelu(x)


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "srelu": srelu,
    "s2relu": s2relu,
    "sin": jnp.sin,
}

# The first-layer scales of MscaleDNN-1 in the authors' code: 1, 1, 2, 3, ..., 98.
NEURON_SCALES: tuple[float, ...] = (1.0, *map(float, range(1, 99)))


def param_count(params: PyTree) -> int:
    """The number of scalar parameters in `params`."""
    return int(sum(np.size(a) for a in jax.tree_util.tree_leaves(params)))


def _activation(activation: Any) -> Callable[[jax.Array], jax.Array]:
    if callable(activation):
        return activation
    return ACTIVATIONS[check_choice("activation", activation, tuple(ACTIVATIONS))]


def _check_widths(widths: Any) -> tuple[int, ...]:
    if not isinstance(widths, (tuple, list)) or len(widths) < 2:
        fail("widths", "a sequence (d_in, hidden..., d_out) of 2 or more ints", describe(widths))
    return tuple(check_int(f"widths[{i}]", w, minimum=1) for i, w in enumerate(widths))


def _std(name: str, value: Any, fan_in: int) -> float:
    if value is None:
        return 1.0 / float(np.sqrt(fan_in))
    return check_float(name, value, minimum=0)


def _flatten(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)


def mlp(
    widths: Sequence[int],
    activation: str | Callable[[jax.Array], jax.Array] = "tanh",
    *,
    w_std: float | None = None,
    b_std: float | None = 0.0,
    first_scales: Sequence[float] | None = None,
) -> Model:
    """A fully connected network `widths[0] -> ... -> widths[-1]`, activation between layers.

    Args:
      widths: `(d_in, h_1, ..., h_L, k)`; inputs `(n, ...)` are flattened to `(n, d_in)`.
      activation: a name in `ACTIVATIONS` or a callable.
      w_std, b_std: standard deviations of the weights and biases at init (None:
        `1/sqrt(fan_in)`; `b_std=0` starts the biases at 0).
      first_scales: optional `(h_1,)` factors multiplying the first layer's `x @ W` per
        neuron (see `mscale_neurons`).

    Returns:
      `Model`; params `[{"W": (fan_in, fan_out), "b": (fan_out,)}, ...]`.
    """
    widths = _check_widths(widths)
    act = _activation(activation)
    stds = [(_std("w_std", w_std, a), _std("b_std", b_std, a)) for a in widths[:-1]]
    scales = None
    if first_scales is not None:
        scales = np.asarray(first_scales, np.float64)
        if scales.shape != (widths[1],):
            fail(
                "first_scales",
                f"one factor per first-layer neuron, ({widths[1]},)",
                describe(scales),
            )

    def init(key: jax.Array, dtype: Any = jnp.float32) -> list[dict[str, jax.Array]]:
        params = []
        for (a, b), (ws, bs) in zip(zip(widths[:-1], widths[1:]), stds):
            key, kw, kb = jax.random.split(key, 3)
            params.append(
                dict(
                    W=ws * jax.random.normal(kw, (a, b), dtype),
                    b=bs * jax.random.normal(kb, (b,), dtype),
                )
            )
        return params

    def apply(params, x):
        h = _flatten(x)
        for i, layer in enumerate(params):
            z = h @ layer["W"]
            if i == 0 and scales is not None:
                z = z * jnp.asarray(scales, z.dtype)[None, :]
            h = z + layer["b"][None, :]
            if i < len(params) - 1:
                h = act(h)
        return h

    return Model(jax.jit(init, static_argnums=1), apply)


def _group_scales(width: int, scales: Sequence[float]) -> np.ndarray:
    """Per-neuron factors: `width // G` neurons per scale, the remainder at the last scale
    (as the authors' code repeats its scale vector)."""
    scales = np.asarray(scales, np.float64)
    if scales.ndim != 1 or scales.size == 0 or not np.all(np.isfinite(scales)):
        fail("scales", "a non-empty sequence of finite floats", describe(scales))
    if scales.size > width:
        fail(
            "scales", f"at most one scale per first-layer neuron ({width})", f"{scales.size} scales"
        )
    per = width // scales.size
    out = np.repeat(scales, per)
    return np.concatenate([out, np.full(width - out.size, scales[-1])])


def mscale_neurons(
    widths: Sequence[int],
    scales: Sequence[float] = NEURON_SCALES,
    activation: str | Callable[[jax.Array], jax.Array] = "srelu",
    *,
    w_std: float | None = None,
    b_std: float | None = 0.0,
) -> Model:
    """MscaleDNN-1: an MLP whose first-layer neurons come in groups, group g seeing `s_g x`.

    The first hidden layer computes `act(c * (x @ W) + b)` with `c` = `scales` each repeated
    `widths[1] // len(scales)` times (the remainder at the last scale); the rest is `mlp`.

    Args:
      widths: `(d_in, h_1, ..., k)`, `h_1 >= len(scales)`.
      scales: the group scales; default `NEURON_SCALES` (1, 1, 2, ..., 98).
      activation, w_std, b_std: as in `mlp`.
    """
    widths = _check_widths(widths)
    return mlp(
        widths,
        activation,
        w_std=w_std,
        b_std=b_std,
        first_scales=_group_scales(widths[1], scales),
    )


def mscale(scales: Sequence[float], subnet: Model) -> Model:
    """MscaleDNN-2: `y(x) = sum_k N_k(s_k x)`, an independent copy `N_k` of `subnet` per scale.

    Args:
      scales: `(K,)` positive input scales `s_k` (e.g. 1, 2, 4, ..., 32).
      subnet: the `Model` each copy is made of.

    Returns:
      `Model` whose params are the K subnets' params stacked on a leading `(K, ...)` axis
      (`init` draws copy k from `fold_in(key, k)`); `apply` vmaps the subnet over them.
    """
    scales = np.asarray(scales, np.float64)
    if scales.ndim != 1 or scales.size == 0 or not np.all(np.isfinite(scales) & (scales > 0)):
        fail("scales", "a non-empty sequence of positive finite floats", describe(scales))
    if not isinstance(subnet, Model):
        fail("subnet", "a Model(init, apply) (from mlp, cnn, ...)", describe(subnet), TypeError)
    k = scales.size

    def init(key: jax.Array, dtype: Any = jnp.float32) -> PyTree:
        parts = [subnet.init(jax.random.fold_in(key, i), dtype) for i in range(k)]
        return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *parts)

    def apply(params, x):
        s = jnp.asarray(scales, x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else None)
        outs = jax.vmap(lambda p, si: subnet.apply(p, si * x))(params, s)  # (K, n, k)
        return jnp.sum(outs, axis=0)

    return Model(jax.jit(init, static_argnums=1), apply)


def cnn(
    input_shape: Sequence[int],
    channels: Sequence[int] = (16, 32),
    outputs: int = 10,
    activation: str | Callable[[jax.Array], jax.Array] = "relu",
    *,
    kernel: int = 3,
    gain: float = float(np.sqrt(2.0)),
) -> Model:
    """A small CNN: stride-2 `kernel`-wide convolutions ("SAME"), activation, then Dense.

    Works for 1-D signals (`input_shape = (L, C)`, MNIST-1D) and images (`(H, W, C)`);
    inputs `(n, *input_shape)`, or `(n, prod(input_shape))` flattened (reshaped inside).

    Args:
      input_shape: one example's shape, channels last.
      channels: output channels of each convolution.
      outputs: the width of the final Dense layer.
      activation: a name in `ACTIVATIONS` or a callable.
      kernel: the kernel width along every spatial axis.
      gain: weights are `N(0, gain^2 / fan_in)` (He init for ReLU by default), biases 0.
    """
    shape = tuple(check_int(f"input_shape[{i}]", s, minimum=1) for i, s in enumerate(input_shape))
    if len(shape) not in (2, 3):
        fail("input_shape", "(L, C) or (H, W, C), channels last", describe(input_shape))
    chans = tuple(check_int(f"channels[{i}]", c, minimum=1) for i, c in enumerate(channels))
    outputs = check_int("outputs", outputs, minimum=1)
    kernel = check_int("kernel", kernel, minimum=1)
    gain = check_float("gain", gain, minimum=0, strict_min=True)
    act = _activation(activation)
    nsp = len(shape) - 1
    spec = ("NWC", "WIO", "NWC") if nsp == 1 else ("NHWC", "HWIO", "NHWC")
    spatial = list(shape[:-1])
    for _ in chans:
        spatial = [-(-s // 2) for s in spatial]
    flat = int(np.prod(spatial)) * chans[-1] if chans else int(np.prod(shape))

    def init(key: jax.Array, dtype: Any = jnp.float32) -> dict[str, Any]:
        convs, c_in = [], shape[-1]
        for c in chans:
            key, kw = jax.random.split(key)
            fan_in = kernel**nsp * c_in
            w = gain / np.sqrt(fan_in) * jax.random.normal(kw, (kernel,) * nsp + (c_in, c), dtype)
            convs.append(dict(W=w, b=jnp.zeros((c,), dtype)))
            c_in = c
        key, kw = jax.random.split(key)
        dense = dict(
            W=jax.random.normal(kw, (flat, outputs), dtype) / np.sqrt(flat),
            b=jnp.zeros((outputs,), dtype),
        )
        return dict(convs=convs, dense=dense)

    def apply(params, x):
        h = x.reshape((x.shape[0], *shape))
        for layer in params["convs"]:
            h = jax.lax.conv_general_dilated(
                h, layer["W"], (2,) * nsp, "SAME", dimension_numbers=spec
            )
            h = act(h + layer["b"].reshape((1,) * (nsp + 1) + (-1,)))
        return _flatten(h) @ params["dense"]["W"] + params["dense"]["b"][None, :]

    return Model(jax.jit(init, static_argnums=1), apply)


def input_gradient(apply_fn: Callable, params: PyTree, x: jax.Array) -> jax.Array:
    """`d apply_fn(params, x_i) / d x_i` for every example: `(n, k, d)` for `x (n, d)`."""
    check_array("x", x, ndim=2)

    def one(xi):
        return apply_fn(params, xi[None])[0]

    return jax.vmap(jax.jacfwd(one))(x)


def derivative_targets(target_fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """`[f(x), df/dx(x)]` side by side, `(n, k + k d)`, for `derivative_loss`.

    Args:
      target_fn: `f(x (n, d)) -> (n, k)`, differentiable in `x` (each row on its own).
      x: `(n, d)` inputs.
    """
    check_array("x", x, ndim=2)

    @jax.jit
    def both(x):
        df = input_gradient(lambda _, z: target_fn(z), None, x)
        return jnp.concatenate([target_fn(x), df.reshape(x.shape[0], -1)], axis=1)

    return both(x)


def derivative_loss(
    apply_fn: Callable[[PyTree, jax.Array], jax.Array], weight: float
) -> Callable[[PyTree, jax.Array, jax.Array], jax.Array]:
    """The loss with an input-derivative term, as an objective on `(params, x, y)`.

    `0.5 * mean|h - f|^2 + weight * 0.5 * mean|dh/dx - df/dx|^2`, `h = apply_fn(params, x)`,
    each mean over all entries (the `mse_loss` convention for both terms). The derivative term
    weighs frequency xi by `|xi|^2`, so high frequencies converge sooner.

    Args:
      apply_fn: the model, `(n, d) -> (n, k)`.
      weight: lambda >= 0 (0 is the plain MSE).

    Returns:
      `objective(params, x (n, d), y (n, k + k d)) -> scalar` with `y` from
      `derivative_targets` (f first, then df/dx flattened `(k, d)` per row); pass it to
      `train.trajectory(..., objective=objective)`.
    """
    weight = check_float("weight", weight, minimum=0)

    def objective(params, x, y):
        h = apply_fn(params, x)
        k = h.shape[1]
        f, df = y[:, :k], y[:, k:]
        dh = input_gradient(apply_fn, params, x).reshape(x.shape[0], -1)
        if df.shape != dh.shape:
            fail(
                "derivative_loss(y)",
                f"(n, k + k d) = {(x.shape[0], k + dh.shape[1])} targets [f, df/dx]",
                f"shape {tuple(y.shape)}",
            )
        return 0.5 * jnp.mean((h - f) ** 2) + weight * 0.5 * jnp.mean((dh - df) ** 2)

    return objective
