"""Modular addition with two-layer quadratic networks: the algebra of their global optimizers.

Tian (2024), "Composing global optimizers to reasoning tasks via algebraic objects in neural
nets" (CoGO, arXiv:2410.01779), trains `o(a, b) = W_c (W_a e_a + W_b e_b)^2` (squares
elementwise, no biases) on `(a + b) mod d` with the projected MSE. In the Fourier basis each
hidden neuron j has, at frequency k, the coefficients `(alpha, beta, gamma) = (A[j, k], B[j, k],
C[j, k])` of `fourier_params`, and the loss depends on the weights only through *sum
potentials* such as `r_kkk = sum_j alpha_j beta_j gamma_j`. Writing `^x` for a conjugate, the
loss is zero exactly when, at every frequency k = 1..(d-1)/2 (derived here from Parseval; the
paper's sets R_c, R_*, R_n):

    abc = 1 / (2 d),
    R_c: ^abc = a^bc = ^a^bc = 0,   R_*: aac = bbc = ^a^ac = ^b^bc = 0,
    R_n: a^ac + b^bc = 0            (the part of the output that is constant in (a, b)),

each a sum over the neurons of one monomial. Parameter sets of any width form a semiring:
`ring_add` concatenates neurons (sum potentials add), `ring_mul` takes all pairs of neurons
and multiplies their Fourier coefficients (sum potentials multiply), so a product vanishes on
the union of its factors' zero sets. The per-frequency factors (columns are neurons):

- `z_nu = [(1, 1, 1), (nu, -nu, -nu^-2)]`, order 2: kills aac, bbc; at nu = i also ^abc,
  a^bc, ^a^ac, ^b^bc.
- `z_xi = [(1, 1, 1), (xi, -i conj(xi), i)]`, |xi| = 1, order 2: kills ^a^bc.
- `z_syn = [(1, 1, 1), (w, w, w), (^w, ^w, ^w)]`, w = exp(2 pi i / 3), order 3: kills R_c,
  R_n, ^a^ac and ^b^bc.

So `z_nu * z_syn` (order 6) is a global optimizer at every frequency, and `z_{nu=i} * z_xi`
(order 4) satisfies everything but R_n: alone it reaches loss `2 (d - 1) / d` (`4 / d` per
frequency, `a^ac + b^bc = (1 + i) / (2 d)` at each), all of it from
an output term constant in (a, b), which one extra neuron (`W_a` row of ones, `W_b` row of
zeros, `W_c` column cancelling it; no frequency k >= 1 on `W_a`) removes (`construct(...,
compensate=True)`). Perfect memorization (`memorization`) is the order-d^2 optimizer, one neuron
per pair. These closed forms were derived here from the loss decomposition (the paper's text
past its abstract was not reachable); the factor forms are the patterns the authors' classifier
(`cogo/factorize_sol.py` in facebookresearch/luckmatters) tests for, and the tests check every
claim numerically.

Parameters are `{"W_a": (width, d), "W_b": (width, d), "W_c": (d, width)}` (PyTorch Linear
layout: `(out, in)`). Everything except `factorize` (host-side, a search over permutations) is
pure and jit/vmap-able; value checks (indices inside Z_d) run on concrete inputs only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdyn._checks import (
    check_array,
    check_float,
    check_int,
    check_params,
    describe,
    fail,
    is_concrete,
)
from jaxdyn.analysis._modular_factorize import Factorization, factorize_blocks

Array = Any
Params = dict

__all__ = [
    "quadratic_net",
    "all_pairs",
    "projected_mse",
    "accuracy",
    "optimizer",
    "fourier_coefficients",
    "fourier_params",
    "FrequencyOrders",
    "frequency_orders",
    "z_nu",
    "z_xi",
    "z_syn",
    "from_fourier",
    "construct",
    "memorization",
    "ring_add",
    "ring_mul",
    "Factorization",
    "factorize",
]

OMEGA3 = complex(math.cos(2 * math.pi / 3), math.sin(2 * math.pi / 3))


# --------------------------------------------------------------------------- checks


def _check_d(name: str, d: Any) -> int:
    d = check_int(name, d, minimum=3, hint="an odd modulus")
    if d % 2 == 0:
        fail(
            name,
            "an odd int >= 3 (frequencies k and d - k pair up; d = 2k has no partner)",
            describe(d),
        )
    return d


def _check_indices(name: str, x: Any, d: int, shape: tuple | None = None) -> Array:
    check_array(name, x, kinds="iu")
    if shape is not None and tuple(x.shape) != shape:
        fail(name, f"an int array of shape {shape}", f"shape {tuple(x.shape)}")
    if is_concrete(x):
        v = np.asarray(x)
        if v.size and (v.min() < 0 or v.max() >= d):
            fail(
                name,
                f"indices in Z_d = [0, {d - 1}]",
                f"values from {int(v.min())} to {int(v.max())}",
            )
    return jnp.asarray(x)


def _ref_params(d: int, width: int) -> Params:
    f = jax.ShapeDtypeStruct
    return {
        "W_a": f((width, d), jnp.float32),
        "W_b": f((width, d), jnp.float32),
        "W_c": f((d, width), jnp.float32),
    }


def _check_net_params(name: str, params: Any) -> tuple[int, int]:
    """Checks a parameter dict of any width; returns (d, width)."""
    if not isinstance(params, dict) or set(params) != {"W_a", "W_b", "W_c"}:
        fail(
            name,
            "a dict with keys 'W_a', 'W_b', 'W_c' (from quadratic_net's init_fn)",
            describe(params),
            TypeError,
        )
    check_array(f"{name}['W_a']", params["W_a"], ndim=2, kinds="f")
    width, d = params["W_a"].shape
    check_params(name, params, "quadratic_net(d, width) parameters", _ref_params(d, width))
    return d, width


# --------------------------------------------------------------------------- the model


def quadratic_net(d: int, width: int) -> tuple[Callable, Callable]:
    """The two-layer quadratic network `o(a, b) = W_c (W_a e_a + W_b e_b)^2`, no biases.

    Inputs are index pairs; `W_a e_a` is the column `W_a[:, a]`, gathered, never a one-hot
    product. The init is PyTorch's default for `nn.Linear(bias=False)`: uniform in
    `+-1 / sqrt(fan_in)` (fan_in = d for W_a, W_b; width for W_c), as the paper's code.

    Args:
      d: the modulus, odd, >= 3.
      width: the number of hidden neurons, >= 1.

    Returns:
      `init_fn(key, dtype=None) -> params` ({"W_a": (width, d), "W_b": (width, d),
      "W_c": (d, width)}; dtype defaults to JAX's default float) and
      `apply_fn(params, pairs) -> (n, d)` outputs for `pairs`, an `(n, 2)` int array of
      `(a, b)` in Z_d.

    Raises:
      ValueError: even d, d < 3, width < 1; in `apply_fn`, pairs of another shape or outside
        Z_d, params of other shapes. TypeError: non-int arguments or pairs.
    """
    d = _check_d("quadratic_net(d)", d)
    width = check_int("quadratic_net(width)", width, minimum=1)

    @functools.partial(jax.jit, static_argnames="dtype")  # one compilation, not one per op
    def _init(key: Array, dtype: Any) -> Params:
        ka, kb, kc = jax.random.split(key, 3)
        u = lambda k, shape, fan_in: jax.random.uniform(  # noqa: E731
            k, shape, dtype, -1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in)
        )
        return {
            "W_a": u(ka, (width, d), d),
            "W_b": u(kb, (width, d), d),
            "W_c": u(kc, (d, width), width),
        }

    def init_fn(key: Array, dtype: Any = None) -> Params:
        return _init(key, np.dtype(dtype or jnp.zeros(()).dtype))

    @jax.jit
    def _forward(params: Params, pairs: Array) -> Array:
        h = jnp.take(params["W_a"], pairs[:, 0], axis=1) + jnp.take(
            params["W_b"], pairs[:, 1], axis=1
        )  # (width, n)
        return (params["W_c"] @ (h * h)).T  # (n, d)

    def apply_fn(params: Params, pairs: Array) -> Array:
        check_params("apply_fn(params)", params, "init_fn(key)", _ref_params(d, width))
        check_array("apply_fn(pairs)", pairs, ndim=2, kinds="iu")
        if pairs.shape[1] != 2:
            fail(
                "apply_fn(pairs)",
                "an (n, 2) int array of pairs (a, b)",
                f"shape {tuple(pairs.shape)}",
            )
        return _forward(params, _check_indices("apply_fn(pairs)", pairs, d))

    return init_fn, apply_fn


def all_pairs(d: int) -> Array:
    """All `d^2` pairs `(a, b)`, a-major: an `(d^2, 2)` int32 array."""
    d = _check_d("all_pairs(d)", d)
    a, b = np.divmod(np.arange(d * d), d)
    return jnp.asarray(np.stack([a, b], axis=1), dtype=jnp.int32)


def _check_outputs_pairs(fn: str, outputs: Any, a: Any, b: Any, d: Any) -> tuple:
    d = _check_d(f"{fn}(d)", d)
    check_array(f"{fn}(outputs)", outputs, ndim=2, kinds="f")
    n = outputs.shape[0]
    if outputs.shape[1] != d:
        fail(
            f"{fn}(outputs)",
            f"an (n, {d}) array (one column per class of Z_{d})",
            f"shape {tuple(outputs.shape)}",
        )
    a = _check_indices(f"{fn}(a)", a, d, (n,))
    b = _check_indices(f"{fn}(b)", b, d, (n,))
    return d, a, b


def projected_mse(outputs: Array, a: Array, b: Array, d: int) -> Array:
    """`mean_n || P o_n - (e_{(a_n + b_n) mod d} - 1/d) ||^2`, P removing the class mean.

    The squared norm is summed over the d classes and averaged over the n examples, as the
    paper's code (which expands it; here the residual is formed directly, so a global
    optimizer reaches 1e-30 instead of stopping at rounding of the expanded terms, ~1e-16).

    Args:
      outputs: `(n, d)` network outputs.
      a, b: `(n,)` int arrays in Z_d.
      d: the modulus, odd, >= 3.

    Returns:
      A scalar.
    """
    d, a, b = _check_outputs_pairs("projected_mse", outputs, a, b, d)
    return _projected_mse(outputs, a, b)


@jax.jit
def _projected_mse(outputs: Array, a: Array, b: Array) -> Array:
    d = outputs.shape[1]
    target = (jnp.arange(d)[None, :] == ((a + b) % d)[:, None]).astype(outputs.dtype)
    r = outputs - jnp.mean(outputs, axis=1, keepdims=True) - (target - 1.0 / d)
    return jnp.mean(jnp.sum(r * r, axis=1))


def accuracy(outputs: Array, a: Array, b: Array, d: int) -> Array:
    """Share of the n examples whose arg-max class is `(a + b) mod d`; `outputs (n, d)`."""
    d, a, b = _check_outputs_pairs("accuracy", outputs, a, b, d)
    return jnp.mean((jnp.argmax(outputs, axis=1) == (a + b) % d).astype(outputs.dtype))


def optimizer(learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
    """Adam with *coupled* L2 weight decay, as `torch.optim.Adam(weight_decay=...)`.

    `weight_decay * params` is added to the gradient *before* Adam's moments (not AdamW's
    decoupled decay): `optax.chain(add_decayed_weights(wd), adam(lr))`, b1 = 0.9,
    b2 = 0.999, eps = 1e-8 as PyTorch.
    """
    lr = check_float("optimizer(learning_rate)", learning_rate, minimum=0, strict_min=True)
    wd = check_float("optimizer(weight_decay)", weight_decay, minimum=0)
    return optax.chain(optax.add_decayed_weights(wd), optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8))


# --------------------------------------------------------------------------- Fourier view


def _dft(d: int, sign: int, dtype: Any) -> Array:
    # (x * k) mod d keeps the phases exact for large d
    xk = (np.arange(d)[:, None] * np.arange(d)[None, :]) % d
    return jnp.asarray(np.exp(sign * 2j * np.pi * xk / d) / d, dtype=dtype)


def _complex_dtype(x: Array) -> Any:
    return jnp.complex128 if x.dtype == jnp.float64 else jnp.complex64


def fourier_coefficients(W: Array) -> Array:
    """`A_hat[j, k] = (1/d) sum_x W[j, x] exp(-2 pi i x k / d)`.

    Args:
      W: `(m, d)` real weights, one row per neuron (e.g. `params["W_a"]`).

    Returns:
      `(m, d)` complex coefficients; `A_hat[:, d - k] = conj(A_hat[:, k])`.
    """
    check_array("fourier_coefficients(W)", W, ndim=2, kinds="f")
    d = W.shape[1]
    return W.astype(_complex_dtype(W)) @ _dft(d, -1, _complex_dtype(W))


def fourier_params(params: Params) -> tuple[Array, Array, Array]:
    """The paper's per-neuron coefficients `(A, B, C)`, each `(width, d)` complex.

    `A = fourier_coefficients(W_a)`, `B = fourier_coefficients(W_b)`, and
    `C[j, k] = (1/d) sum_c W_c[c, j] exp(+2 pi i c k / d)` (the output side is conjugated, so
    that `r_kkk = sum_j A[j, k] B[j, k] C[j, k]` is the sum potential).
    """
    _check_net_params("fourier_params(params)", params)
    wc = params["W_c"].T
    return (
        fourier_coefficients(params["W_a"]),
        fourier_coefficients(params["W_b"]),
        wc.astype(_complex_dtype(wc)) @ _dft(wc.shape[1], 1, _complex_dtype(wc)),
    )


class FrequencyOrders(NamedTuple):
    """Per-frequency orders of a network (k = 1..K, K = (d - 1) / 2).

    Attributes:
      orders: `(K,)` int; `orders[k - 1]` neurons j have `|A_hat[j, k]| > threshold` on W_a.
      assignment: `(width,)` int; each neuron's strongest frequency in 0..K on W_a, or -1
        when none is above the threshold (0: the neuron is mostly constant in a).
      assigned: `(K,)` int; how many neurons are assigned to each k (the q of `factorize`).
    """

    orders: Array
    assignment: Array
    assigned: Array


def frequency_orders(params: Params, *, threshold: float = 0.05) -> FrequencyOrders:
    """The order of each frequency, by the authors' rule on `W_a`.

    Args:
      params: quadratic-net parameters, `W_a (width, d)`.
      threshold: `|A_hat[j, k]|` above which neuron j counts for frequency k (0.05 in the
        paper's code).

    Returns:
      A `FrequencyOrders`.
    """
    d, _ = _check_net_params("frequency_orders(params)", params)
    _check_d("frequency_orders(params['W_a'].shape[1])", d)
    threshold = check_float("frequency_orders(threshold)", threshold, minimum=0)
    check_array("frequency_orders(params['W_a'])", params["W_a"], ndim=2, kinds="f")
    return _frequency_orders(params["W_a"], threshold)


@jax.jit
def _frequency_orders(w_a: Array, threshold: Array) -> FrequencyOrders:
    k_max = (w_a.shape[1] - 1) // 2
    mag = jnp.abs(fourier_coefficients(w_a))[:, : k_max + 1]  # (width, K + 1)
    orders = jnp.sum(mag[:, 1:] > threshold, axis=0)
    best = jnp.argmax(mag, axis=1)
    assignment = jnp.where(jnp.max(mag, axis=1) > threshold, best, -1)
    assigned = jnp.sum(assignment[:, None] == jnp.arange(1, k_max + 1)[None, :], axis=0)
    return FrequencyOrders(orders, assignment, assigned)


# --------------------------------------------------------------------------- constructions


def z_nu(nu: complex = 1j) -> np.ndarray:
    """Order-2 factor `[(1, 1, 1), (nu, -nu, -nu^-2)]`: `(3, 2)` complex, rows (a, b, c)."""
    nu = complex(nu)
    if nu == 0 or not math.isfinite(abs(nu)):
        fail("z_nu(nu)", "a finite non-zero complex number", describe(nu))
    return np.array([[1, nu], [1, -nu], [1, -(nu**-2)]], dtype=complex)


def z_xi(xi: complex = complex(math.cos(math.pi / 4), math.sin(math.pi / 4))) -> np.ndarray:
    """Order-2 factor `[(1, 1, 1), (xi, -i conj(xi), i)]` with |xi| = 1: `(3, 2)` complex."""
    xi = complex(xi)
    if not math.isfinite(abs(xi)) or abs(abs(xi) - 1) > 1e-12:
        fail("z_xi(xi)", "a complex number of modulus 1", describe(xi))
    return np.array([[1, xi], [1, -1j * xi.conjugate()], [1, 1j]], dtype=complex)


def z_syn() -> np.ndarray:
    """Order-3 factor `[(1, 1, 1), (w, w, w), (^w, ^w, ^w)]`, w = exp(2 pi i / 3)."""
    w = OMEGA3
    return np.array([[1, w, w.conjugate()]] * 3, dtype=complex)


def _product(f1: np.ndarray, f2: np.ndarray) -> np.ndarray:
    return (f1[:, :, None] * f2[:, None, :]).reshape(3, -1)


def from_fourier(d: int, blocks: Sequence[tuple[int, Any]]) -> Params:
    """Real parameters from per-frequency blocks of Fourier coefficients.

    Each block `(k, F)`, `F (3, q)` complex with rows `(alpha, beta, gamma)`, becomes q neurons
    with `W_a[j, x] = 2 Re(alpha_j w^(x k))`, `W_b` alike, `W_c[c, j] = 2 Re(gamma_j w^(-c k))`
    (w = exp(2 pi i / d)), so `fourier_params` gives back `F` at frequency k. F is used as
    given (no rescaling).

    Returns:
      `{"W_a": (q_total, d), "W_b": (q_total, d), "W_c": (d, q_total)}`, float64 numpy.
    """
    d = _check_d("from_fourier(d)", d)
    rows = []
    x = np.arange(d)
    for i, (k, f) in enumerate(blocks):
        k = check_int(f"from_fourier(blocks[{i}][0])", k, minimum=1, maximum=(d - 1) // 2)
        f = np.asarray(f, dtype=complex)
        if f.ndim != 2 or f.shape[0] != 3:
            fail(
                f"from_fourier(blocks[{i}][1])",
                "a (3, q) complex array (rows a, b, c)",
                f"shape {f.shape}",
            )
        e = np.exp(2j * np.pi * ((x * k) % d) / d)  # (d,)
        rows.append(
            (
                2 * np.real(f[0][:, None] * e),
                2 * np.real(f[1][:, None] * e),
                2 * np.real(f[2][:, None] * np.conj(e)),
            )
        )
    if not rows:
        fail("from_fourier(blocks)", "at least one (k, F) block", "an empty sequence")
    wa, wb, wc = (np.concatenate([r[i] for r in rows]) for i in range(3))
    return {"W_a": wa, "W_b": wb, "W_c": wc.T}


def _scaled(f: np.ndarray, d: int) -> np.ndarray:
    """Rescales rows so that `abc = 1/(2d)` (per-row scales keep every zero monomial zero)."""
    r = np.sum(f[0] * f[1] * f[2])
    target = 1.0 / (2 * d)
    s = abs(target / r) ** (1 / 3)
    return f * np.array([[s], [s], [target / (r * s * s)]])


def _output_bias(params: Params) -> np.ndarray:
    """The part of the output that is constant in (a, b), `(d,)`: sum_j W_c[:, j] E[h_j^2]."""
    wa, wb, wc = (np.asarray(params[k]) for k in ("W_a", "W_b", "W_c"))
    mean_h2 = np.mean(wa**2, 1) + np.mean(wb**2, 1) + 2 * np.mean(wa, 1) * np.mean(wb, 1)
    return wc @ mean_h2


def construct(
    d: int,
    order: int = 6,
    frequencies: Sequence[int] | None = None,
    *,
    nu: complex = 1j,
    xi: complex = complex(math.cos(math.pi / 4), math.sin(math.pi / 4)),
    compensate: bool = True,
) -> Params:
    """Per-frequency solutions composed over `frequencies`, in closed form.

    order 6: `z_nu * z_syn` at each frequency: a global optimizer (loss 0 on all d^2 pairs
    when every frequency is present; each missing frequency adds `2 / d` to the loss).
    order 4: `z_{nu=i} * z_xi`: R_c and R_* vanish, R_n does not; with `compensate` one more
    neuron (W_a row of ones, W_b zeros; invisible to `frequency_orders`) cancels the
    (a, b)-constant output and the loss is 0 again; without it the loss is
    `4 |F| / d` for the |F| frequencies present (that constant term's energy).

    Args:
      d: odd modulus >= 3.
      order: 4 or 6.
      frequencies: distinct ints in 1..(d-1)/2; default all of them.
      nu: the order-6 factor's parameter (non-zero complex).
      xi: the order-4 factor's parameter (|xi| = 1).
      compensate: add the compensating neuron to an order-4 construction.

    Returns:
      Parameters of width `order * len(frequencies)` (+1 for a compensated order 4), numpy
      float64; every neuron of block k has `|A_hat[j, k]| = (order * 2 d)^(-1/3)`.
    """
    d = _check_d("construct(d)", d)
    order = check_int("construct(order)", order)
    if order not in (4, 6):
        fail("construct(order)", "4 or 6 (use memorization(d) for order d^2)", describe(order))
    k_max = (d - 1) // 2
    if frequencies is None:
        frequencies = range(1, k_max + 1)
    ks = [
        check_int(f"construct(frequencies[{i}])", k, minimum=1, maximum=k_max)
        for i, k in enumerate(frequencies)
    ]
    if not ks or len(set(ks)) != len(ks):
        fail(
            "construct(frequencies)",
            f"distinct ints in [1, {k_max}], at least one",
            describe(tuple(ks)),
        )
    f = _product(z_nu(nu), z_syn()) if order == 6 else _product(z_nu(1j), z_xi(xi))
    params = from_fourier(d, [(k, _scaled(f, d)) for k in ks])
    if order == 4 and compensate:
        bias = _output_bias(params)
        params = {
            "W_a": np.concatenate([params["W_a"], np.ones((1, d))]),
            "W_b": np.concatenate([params["W_b"], np.zeros((1, d))]),
            "W_c": np.concatenate([params["W_c"], -bias[:, None]], axis=1),
        }
    return params


def memorization(d: int) -> Params:
    """The perfect-memorization optimizer: one neuron per pair (a', b'), order d^2.

    `W_a[j] = e_a'`, `W_b[j] = e_b'`, `W_c[:, j] = (e_{a'+b'} - 1/d) / 2` for j = a' d + b':
    the cross term `2 [a = a'][b = b']` writes the target, the terms in a or b alone sum to
    0 over the other index. Every neuron has `|A_hat[j, k]| = 1/d` at every k.
    """
    d = _check_d("memorization(d)", d)
    a, b = np.divmod(np.arange(d * d), d)
    eye = np.eye(d)
    return {"W_a": eye[a], "W_b": eye[b], "W_c": ((eye[(a + b) % d] - 1.0 / d) / 2).T}


def ring_add(p1: Params, p2: Params) -> Params:
    """Semiring addition: the neurons of both (width w1 + w2); sum potentials add.

    The outputs add: `apply(p1 + p2) = apply(p1) + apply(p2)`.
    """
    d1, _ = _check_net_params("ring_add(p1)", p1)
    d2, _ = _check_net_params("ring_add(p2)", p2)
    if d1 != d2:
        fail("ring_add(p2)", f"parameters for the same modulus as p1 (d = {d1})", f"d = {d2}")
    return {
        "W_a": jnp.concatenate([p1["W_a"], p2["W_a"]]),
        "W_b": jnp.concatenate([p1["W_b"], p2["W_b"]]),
        "W_c": jnp.concatenate([p1["W_c"], p2["W_c"]], axis=1),
    }


def ring_mul(p1: Params, p2: Params) -> Params:
    """Semiring multiplication: neuron (j1, j2) = j1 * w2 + j2 has, on each of W_a, W_b, W_c
    and at every frequency, the product of the two neurons' Fourier coefficients (in weight
    space: `(1/d)` times the circular convolution of their weight vectors). Width w1 * w2;
    every sum potential multiplies, so the order at each frequency (the number of neurons
    with a non-zero coefficient there) is the product of the orders.
    """
    d1, w1 = _check_net_params("ring_mul(p1)", p1)
    d2, w2 = _check_net_params("ring_mul(p2)", p2)
    if d1 != d2:
        fail("ring_mul(p2)", f"parameters for the same modulus as p1 (d = {d1})", f"d = {d2}")

    def conv(x, y):  # x (w1, d), y (w2, d) -> (w1 * w2, d)
        fx, fy = jnp.fft.fft(x, axis=1), jnp.fft.fft(y, axis=1)
        return (
            jnp.real(jnp.fft.ifft(fx[:, None, :] * fy[None, :, :], axis=2)).reshape(w1 * w2, d1)
            / d1
        )

    return {
        "W_a": conv(p1["W_a"], p2["W_a"]),
        "W_b": conv(p1["W_b"], p2["W_b"]),
        "W_c": conv(p1["W_c"].T, p2["W_c"].T).T,
    }


# --------------------------------------------------------------------------- factorization


def factorize(
    params: Params, *, tolerance: float = 0.1, threshold: float = 0.05
) -> list[Factorization]:
    """For each frequency of order 4 or 6, whether its neurons factor as 2 x 2 or 2 x 3.

    Neurons are assigned to their strongest frequency (`frequency_orders(...).assignment`);
    for a frequency with q = 4 or 6 of them, their coefficients `F = (A, B, C)[:, k]` (3, q)
    are arranged in a 2 x (q/2) grid (every order of the neurons, and every sign flip
    `(alpha, beta) -> (-alpha, -beta)`, which leaves the network unchanged) so that in each
    row the second grid row is the first times one ratio, as in `factor2 (x) factor_other`.
    The error is the authors' (`factorize_sol.analyze_component_v2`): the spread of those
    ratios, accepted when at most `tolerance * sqrt(3 q)`. Host-side (numpy, not jit).

    Args:
      params: quadratic-net parameters.
      tolerance: the acceptance factor (0.1 as the authors); also the relative size below
        which a factor's monomial counts as killed when its type is named.
      threshold: as in `frequency_orders`.

    Returns:
      One `Factorization` per frequency of order 4 or 6, by increasing k.
    """
    d, _ = _check_net_params("factorize(params)", params)
    tolerance = check_float("factorize(tolerance)", tolerance, minimum=0)
    assignment = np.asarray(frequency_orders(params, threshold=threshold).assignment)
    fourier = tuple(np.asarray(x, dtype=complex) for x in fourier_params(params))
    return factorize_blocks(d, assignment, fourier, tolerance)
