"""The networks of the representation-dynamics experiments (van Rossem & Saxe 2024).

Every builder returns a `RepresentationModel(init_fn, apply_fn, hidden_fn)` (a NamedTuple,
so it unpacks as a triple):

- `init_fn(key, dtype=jnp.float32, gain=None) -> params`: Xavier-normal weights
  (`std = gain * sqrt(2 / (fan_in + fan_out))`, PyTorch's `xavier_normal_`, convolutions
  with fan = kernel area x channels) and zero biases. `gain` overrides the builder's gain and
  may be a traced value, so `jax.vmap(lambda k, g: init_fn(k, gain=g))` initializes a sweep
  over seeds and gains in one program (the weights are the gain-1 draw times the gain).
- `apply_fn(params, x) -> (n, out_dim)`.
- `hidden_fn(params, x, layer) -> (n, features)`: the activations of hidden layer `layer`
  (1 = the first hidden layer, `depth` = the last one; post-activation, feature maps
  flattened); `layer` may also be a tuple of layers, giving a tuple from one forward pass.

Parameters are a list of `{"W", "b"}` dicts, input layer first and readout last.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn._checks import check_choice, check_float, check_int, describe, fail

__all__ = [
    "ACTIVATIONS",
    "LEAKY_SLOPE",
    "RepresentationModel",
    "cnn",
    "image_embedding",
    "mlp",
    "residual_mlp",
    "xavier_std",
]

Array = Any

#: Negative slope of the leaky ReLU (PyTorch's default, as the authors use).
LEAKY_SLOPE = 0.01

#: The elementwise nonlinearities by name.
ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "leaky_relu": lambda z: jnp.where(z >= 0, z, LEAKY_SLOPE * z),
    "tanh": jnp.tanh,
    "relu": lambda z: jnp.maximum(z, 0),
    "elu": jax.nn.elu,
    "silu": jax.nn.silu,
    "linear": lambda z: z,
}


class RepresentationModel(NamedTuple):
    """A network with access to its hidden layers (see the module docstring)."""

    init_fn: Callable[..., Any]
    apply_fn: Callable[[Any, Array], Array]
    hidden_fn: Callable[[Any, Array, Any], Any]


def xavier_std(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    """`gain * sqrt(2 / (fan_in + fan_out))`: the Xavier (Glorot) normal standard deviation."""
    return float(gain) * float(np.sqrt(2.0 / (fan_in + fan_out)))


def _check_common(activation: str, gain: Any, depth: int, width: int, out_dim: int):
    check_choice("activation", activation, tuple(ACTIVATIONS))
    check_float("gain", gain, minimum=0, strict_min=True)
    check_int("depth", depth, minimum=1)
    check_int("width", width, minimum=1)
    check_int("out_dim", out_dim, minimum=1)


def _dense_params(key, shapes: Sequence[tuple[int, int]], dtype, gain) -> list[dict]:
    keys = jax.random.split(key, len(shapes))
    return [
        {
            "W": gain * xavier_std(fi, fo) * jax.random.normal(k, (fi, fo), dtype),
            "b": jnp.zeros((fo,), dtype),
        }
        for k, (fi, fo) in zip(keys, shapes)
    ]


def _layers(name: str, layer: Any, depth: int) -> tuple[tuple[int, ...], bool]:
    """The requested hidden layers as a tuple, and whether a single one was asked for."""
    single = not isinstance(layer, (tuple, list))
    layers = (layer,) if single else tuple(layer)
    for i, l in enumerate(layers):
        label = name if single else f"{name}[{i}]"
        if isinstance(l, bool) or not isinstance(l, (int, np.integer)):
            fail(label, f"an int hidden layer in 1..{depth}", describe(l), TypeError)
        if not 1 <= int(l) <= depth:
            fail(label, f"a hidden layer in 1..{depth}", repr(l))
    return tuple(int(l) for l in layers), single


def _pick(acts: list, layer: Any, depth: int):
    layers, single = _layers("hidden_fn(layer)", layer, depth)
    picked = tuple(acts[l - 1].reshape(acts[l - 1].shape[0], -1) for l in layers)
    return picked[0] if single else picked


def _check_x(x: Array, in_shape: tuple[int, ...], model: str) -> Array:
    x = jnp.asarray(x)
    if x.ndim != len(in_shape) + 1 or tuple(x.shape[1:]) != in_shape:
        fail(
            f"{model} x",
            f"an array of shape (n, {', '.join(map(str, in_shape))})",
            f"shape {tuple(x.shape)}",
        )
    return x


def mlp(
    in_dim: int,
    width: int,
    depth: int,
    out_dim: int = 1,
    *,
    activation: str = "leaky_relu",
    gain: float = 1.0,
) -> RepresentationModel:
    """A fully connected network with `depth` hidden layers of `width` units.

    `h_1 = act(x W_0 + b_0)`, `h_l = act(h_{l-1} W_{l-1} + b_{l-1})`, output
    `h_depth W_depth + b_depth` (a linear readout). `depth = 1` is the shallow two-layer net.

    Args:
      in_dim: input features; width: hidden units; depth: hidden layers (>= 1);
      out_dim: outputs.
      activation: a name in `ACTIVATIONS`.
      gain: Xavier gain of every weight matrix (the scale of the initial weights).

    Returns:
      `RepresentationModel`; `hidden_fn(params, x, layer)` with `layer` in `1..depth`.
    """
    _check_common(activation, gain, depth, width, out_dim)
    check_int("in_dim", in_dim, minimum=1)
    act = ACTIVATIONS[activation]
    shapes = [(in_dim, width)] + [(width, width)] * (depth - 1) + [(width, out_dim)]
    default_gain = float(gain)

    def init_fn(key, dtype=jnp.float32, gain=None):
        return _dense_params(key, shapes, dtype, default_gain if gain is None else gain)

    def forward(params, x):
        acts = []
        z = _check_x(x, (in_dim,), "mlp")
        for p in params[:-1]:
            z = act(z @ p["W"] + p["b"][None, :])
            acts.append(z)
        return acts, z @ params[-1]["W"] + params[-1]["b"][None, :]

    def apply_fn(params, x):
        return forward(params, x)[1]

    def hidden_fn(params, x, layer):
        return _pick(forward(params, x)[0], layer, depth)

    return RepresentationModel(init_fn, apply_fn, hidden_fn)


def residual_mlp(
    in_dim: int,
    width: int,
    depth: int,
    out_dim: int = 1,
    *,
    activation: str = "leaky_relu",
    gain: float = 1.0,
    branch_scale: float | None = None,
) -> RepresentationModel:
    """A residual MLP: an input layer, then `depth - 1` residual blocks, a linear readout.

    `h_1 = act(x W_0 + b_0)`, `h_l = h_{l-1} + s act(h_{l-1} W_{l-1} + b_{l-1})`. The branch
    scale `s` defaults to `1 / sqrt(depth - 1)`: with `s = 1` the variance of `h` grows by a
    constant factor per block (about 1.5 for ReLU-like units at gain 1), ~10^3 over 20 layers.

    Args:
      as `mlp`; branch_scale: `s`, positive (default `1 / sqrt(max(depth - 1, 1))`).

    Returns:
      `RepresentationModel`; `hidden_fn(params, x, layer)` with `layer` in `1..depth`.
    """
    _check_common(activation, gain, depth, width, out_dim)
    check_int("in_dim", in_dim, minimum=1)
    if branch_scale is None:
        branch_scale = 1.0 / np.sqrt(max(depth - 1, 1))
    s = check_float("branch_scale", branch_scale, minimum=0, strict_min=True)
    act = ACTIVATIONS[activation]
    shapes = [(in_dim, width)] + [(width, width)] * (depth - 1) + [(width, out_dim)]
    default_gain = float(gain)

    def init_fn(key, dtype=jnp.float32, gain=None):
        return _dense_params(key, shapes, dtype, default_gain if gain is None else gain)

    def forward(params, x):
        z = act(_check_x(x, (in_dim,), "residual_mlp") @ params[0]["W"] + params[0]["b"][None, :])
        acts = [z]
        for p in params[1:-1]:
            z = z + s * act(z @ p["W"] + p["b"][None, :])
            acts.append(z)
        return acts, z @ params[-1]["W"] + params[-1]["b"][None, :]

    def apply_fn(params, x):
        return forward(params, x)[1]

    def hidden_fn(params, x, layer):
        return _pick(forward(params, x)[0], layer, depth)

    return RepresentationModel(init_fn, apply_fn, hidden_fn)


def cnn(
    image_shape: tuple[int, int, int],
    channels: int,
    depth: int,
    out_dim: int = 1,
    *,
    kernel_size: int = 3,
    activation: str = "leaky_relu",
    gain: float = 1.0,
) -> RepresentationModel:
    """A small CNN: `depth` 'same'-padded, stride-1 convolutions, then a linear readout.

    `h_l = act(conv(h_{l-1}, W_{l-1}) + b_{l-1})` on NHWC images (the first on the input),
    flattened into `h_depth W_depth + b_depth`. Weights are `(k, k, C_in, C_out)` with Xavier
    fans `k^2 C_in`, `k^2 C_out` (PyTorch's convention).

    Args:
      image_shape: `(H, W, C)` of one input image; channels: feature maps per layer;
      depth: convolutional layers; out_dim, activation, gain: as `mlp`;
      kernel_size: odd side of the square kernels.

    Returns:
      `RepresentationModel` on `(n, H, W, C)` inputs; `hidden_fn` gives `(n, H * W *
      channels)` flattened maps, `layer` in `1..depth`.
    """
    _check_common(activation, gain, depth, channels, out_dim)
    if not (isinstance(image_shape, (tuple, list)) and len(image_shape) == 3):
        fail("image_shape", "a triple (H, W, C) of positive ints", describe(image_shape))
    image_shape = tuple(
        check_int(f"image_shape[{i}]", v, minimum=1) for i, v in enumerate(image_shape)
    )
    k = check_int("kernel_size", kernel_size, minimum=1)
    if k % 2 == 0:
        fail("kernel_size", "an odd int (a 'same' convolution centred on each pixel)", repr(k))
    act = ACTIVATIONS[activation]
    height, wide, c_in = image_shape
    ins = [c_in] + [channels] * (depth - 1)
    readout_in = height * wide * channels
    default_gain = float(gain)

    def init_fn(key, dtype=jnp.float32, gain=None):
        g = default_gain if gain is None else gain
        keys = jax.random.split(key, depth + 1)
        params = [
            {
                "W": g
                * xavier_std(k * k * ci, k * k * channels)
                * jax.random.normal(kk, (k, k, ci, channels), dtype),
                "b": jnp.zeros((channels,), dtype),
            }
            for kk, ci in zip(keys[:-1], ins)
        ]
        return params + _dense_params(keys[-1], [(readout_in, out_dim)], dtype, g)

    def forward(params, x):
        z = _check_x(x, image_shape, "cnn")
        acts = []
        for p in params[:-1]:
            z = jax.lax.conv_general_dilated(
                z, p["W"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            z = act(z + p["b"][None, None, None, :])
            acts.append(z)
        flat = z.reshape(z.shape[0], -1)
        return acts, flat @ params[-1]["W"] + params[-1]["b"][None, :]

    def apply_fn(params, x):
        return forward(params, x)[1]

    def hidden_fn(params, x, layer):
        return _pick(forward(params, x)[0], layer, depth)

    return RepresentationModel(init_fn, apply_fn, hidden_fn)


def image_embedding(x: Array, image_shape: tuple[int, int, int], seed: int = 0) -> Array:
    """Embeds scalar inputs as images for a CNN: `x_i -> x_i u` with one fixed image `u`.

    `u` is a Gaussian image (drawn from `PRNGKey(seed)`) normalised to unit Euclidean norm,
    so the embedding is linear and keeps every distance: `||X_1 - X_2|| = |x_1 - x_2|`, and
    the theory's `dx2` is that of the scalar task. A random pattern (rather than a constant
    image) gives the convolutions spatial structure to work on; `x = 0` stays the zero image.

    Args:
      x: `(n, 1)` (or `(n,)`) scalar inputs; image_shape: `(H, W, C)`; seed: of `u`.

    Returns:
      `(n, H, W, C)` images.
    """
    x = jnp.asarray(x)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        fail("x", "an array of shape (n, 1) or (n,) of scalar inputs", f"shape {x.shape}")
    u = jax.random.normal(jax.random.PRNGKey(seed), tuple(image_shape), x.dtype)
    u = u / jnp.sqrt(jnp.sum(u**2))
    return x[:, None, None, None] * u[None]
