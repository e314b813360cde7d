"""Plain-JAX classifiers for `jaxdyn.analysis.emc`: MLPs and 1-D / 2-D CNNs.

A `Model` is `init(key) -> params` and `apply(params, x) -> logits (n, num_classes)` with its
parameter count and input shape, so `emc.fits` can check it and vmap `init` over seeds. Weights
are drawn as in common practice (He-normal for ReLU, LeCun-normal times a gain otherwise; zero
biases): the EMC is a property of the training procedure, and the initialization is part of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxdyn._checks import check_choice, check_int, describe, fail

# gain**2 of the fan-in variance per activation (He for ReLU-like, 1 for linear / tanh-like:
# LeCun, the scale of their unit slope at the origin)
ACTIVATIONS: dict[str, tuple[Callable[[jax.Array], jax.Array], float]] = {
    "relu": (jax.nn.relu, 2.0),
    "tanh": (jnp.tanh, 1.0),
    "gelu": (jax.nn.gelu, 2.0),
    "sigmoid": (jax.nn.sigmoid, 1.0),
    "identity": (lambda h: h, 1.0),
}


class Model(NamedTuple):
    """A classifier.

    Attributes:
      init: `init(key) -> params` (a dict of arrays; `jax.vmap`-able over keys).
      apply: `apply(params, x) -> logits`, x `(n, *input_shape)`, logits `(n, num_classes)`.
      num_params: number of trainable scalars.
      input_shape: the shape of one input, e.g. `(40,)` or `(8, 8)`.
      num_classes: output width.
      name: a short description, e.g. "mlp(w64,d2,relu)".
    """

    init: Callable[[jax.Array], Any]
    apply: Callable[[Any, jax.Array], jax.Array]
    num_params: int
    input_shape: tuple[int, ...]
    num_classes: int
    name: str


def _shape(input_shape: Any) -> tuple[int, ...]:
    if not isinstance(input_shape, (tuple, list)) or not input_shape:
        fail("input_shape", "a non-empty tuple of positive ints", describe(input_shape), TypeError)
    return tuple(check_int(f"input_shape[{i}]", s, minimum=1) for i, s in enumerate(input_shape))


def _dense_init(key: jax.Array, fan_in: int, fan_out: int, gain2: float, dtype) -> dict:
    w = jax.random.normal(key, (fan_in, fan_out), dtype) * math.sqrt(gain2 / fan_in)
    return {"w": w, "b": jnp.zeros((fan_out,), dtype)}


def mlp(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    width: int = 64,
    depth: int = 2,
    activation: str = "relu",
    dtype: Any = jnp.float32,
) -> Model:
    """A fully connected network: `depth` hidden layers of `width` units, then logits.

    `depth=0` is a linear (softmax) classifier. Inputs are flattened.
    """
    shape = _shape(input_shape)
    num_classes = check_int("num_classes", num_classes, minimum=2)
    width = check_int("width", width, minimum=1)
    depth = check_int("depth", depth, minimum=0)
    activation = check_choice("activation", activation, tuple(ACTIVATIONS))
    act, gain2 = ACTIVATIONS[activation]
    d_in = math.prod(shape)
    sizes = [d_in] + [width] * depth + [num_classes]

    def init(key):
        keys = jax.random.split(key, len(sizes) - 1)
        return {
            f"dense{i}": _dense_init(k, a, b, 1.0 if i == depth else gain2, dtype)
            for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:]))
        }

    def apply(params, x):
        h = x.reshape(x.shape[0], -1).astype(params["dense0"]["w"].dtype)
        for i in range(depth + 1):
            layer = params[f"dense{i}"]
            h = h @ layer["w"] + layer["b"][None, :]
            if i < depth:
                h = act(h)
        return h

    count = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    return Model(init, apply, count, shape, num_classes, f"mlp(w{width},d{depth},{activation})")


def cnn(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    width: int = 16,
    depth: int = 2,
    kernel_size: int = 5,
    activation: str = "relu",
    dtype: Any = jnp.float32,
) -> Model:
    """A convolutional network: `depth` conv layers of `width` channels (stride 2, SAME
    padding, each halving the spatial size), then a dense layer to the logits.

    1-D convolutions for inputs `(length,)` (one channel, e.g. MNIST-1D); 2-D for images
    `(H, W)` (one channel) or `(H, W, channels)`.
    """
    shape = _shape(input_shape)
    num_classes = check_int("num_classes", num_classes, minimum=2)
    width = check_int("width", width, minimum=1)
    depth = check_int("depth", depth, minimum=1)
    kernel_size = check_int("kernel_size", kernel_size, minimum=1)
    activation = check_choice("activation", activation, tuple(ACTIVATIONS))
    if len(shape) not in (1, 2, 3):
        fail("input_shape", "(length,), (H, W) or (H, W, channels)", repr(shape))
    act, gain2 = ACTIVATIONS[activation]
    spatial = shape[:1] if len(shape) == 1 else shape[:2]
    c_in = shape[2] if len(shape) == 3 else 1
    dims = len(spatial)
    nums = ("NWC", "WIO", "NWC") if dims == 1 else ("NHWC", "HWIO", "NHWC")
    kshape = (kernel_size,) * dims
    channels = [c_in] + [width] * depth
    out_spatial = list(spatial)
    for _ in range(depth):
        out_spatial = [math.ceil(s / 2) for s in out_spatial]
    flat = math.prod(out_spatial) * width

    def init(key):
        keys = jax.random.split(key, depth + 1)
        params = {}
        for i in range(depth):
            fan_in = math.prod(kshape) * channels[i]
            w = jax.random.normal(keys[i], (*kshape, channels[i], channels[i + 1]), dtype)
            params[f"conv{i}"] = {
                "w": w * math.sqrt(gain2 / fan_in),
                "b": jnp.zeros((channels[i + 1],), dtype),
            }
        params["dense"] = _dense_init(keys[depth], flat, num_classes, 1.0, dtype)
        return params

    def apply(params, x):
        h = x.reshape(x.shape[0], *spatial, c_in).astype(params["dense"]["w"].dtype)
        for i in range(depth):
            layer = params[f"conv{i}"]
            h = jax.lax.conv_general_dilated(
                h, layer["w"], (2,) * dims, "SAME", dimension_numbers=nums
            )
            h = act(h + layer["b"].reshape((1,) * (h.ndim - 1) + (-1,)))
        h = h.reshape(h.shape[0], -1)
        return h @ params["dense"]["w"] + params["dense"]["b"][None, :]

    count = sum(
        math.prod(kshape) * channels[i] * channels[i + 1] + channels[i + 1] for i in range(depth)
    )
    count += flat * num_classes + num_classes
    name = f"cnn{dims}d(w{width},d{depth},k{kernel_size},{activation})"
    return Model(init, apply, count, shape, num_classes, name)


def model(
    architecture: str, input_shape: tuple[int, ...], num_classes: int, **kwargs: Any
) -> Model:
    """`mlp(...)` or `cnn(...)` by name ("mlp" or "cnn")."""
    architecture = check_choice("architecture", architecture, ("mlp", "cnn"))
    return (mlp if architecture == "mlp" else cnn)(input_shape, num_classes, **kwargs)


def count_params(params: Any) -> int:
    """Number of scalars in a PyTree of arrays."""
    return int(sum(math.prod(jnp.shape(x)) for x in jax.tree_util.tree_leaves(params)))
