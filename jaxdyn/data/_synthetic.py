"""Synthetic tasks whose defining property holds exactly: `multi_frequency_1d`, `xor`,
`parity`, `two_points` and `modular_addition`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxdyn._checks import check_float, check_int, describe, fail
from jaxdyn.data._datasets import Dataset, _check_dtype, _check_seed, split


def _reals(name: str, value: Any, expected: str) -> np.ndarray:
    """`value` as a float64 array, or a TypeError naming `name` (e.g. for strings)."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        fail(name, expected, describe(value), TypeError)


def _synthetic(
    name: str,
    x_tr: np.ndarray,
    y_tr: np.ndarray,
    x_te: np.ndarray,
    y_te: np.ndarray,
    labels_tr: np.ndarray | None,
    labels_te: np.ndarray | None,
    dtype: Any,
    info: dict,
) -> Dataset:
    dt = _check_dtype(dtype)
    return Dataset(
        x_tr.astype(dt),
        y_tr.astype(dt),
        x_te.astype(dt),
        y_te.astype(dt),
        labels_tr,
        labels_te,
        name,
        info,
    )


def multi_frequency_1d(
    n_train: int = 64,
    n_test: int = 256,
    frequencies: Sequence[float] = (1, 3, 5),
    amplitudes: Sequence[float] | None = None,
    *,
    seed: int = 0,
    dtype: Any = np.float64,
) -> Dataset:
    """1D regression target with several frequencies, for frequency-principle studies.

    `y(x) = sum_i amplitudes[i] * sin(pi * frequencies[i] * x)` on `[-1, 1]`. Training inputs
    are uniform random (seeded); test inputs are the evenly spaced grid
    `linspace(-1, 1, n_test)`, convenient for Fourier analysis of the fit.

    Args:
      n_train, n_test: numbers of points.
      frequencies: non-empty sequence of frequencies (in units of half-periods on [-1, 1]).
      amplitudes: one amplitude per frequency; None means all ones.
      seed: int seed of the training inputs.
      dtype: float dtype.

    Returns:
      A `Dataset` with `x (n, 1)`, `y (n, 1)` and no labels.
    """
    check_int("n_train", n_train, minimum=1)
    check_int("n_test", n_test, minimum=1)
    _check_seed(seed)
    freqs = _reals("frequencies", frequencies, "a non-empty 1D sequence of finite numbers")
    if freqs.ndim != 1 or freqs.size == 0 or not np.all(np.isfinite(freqs)):
        raise ValueError(
            f"`frequencies` must be a non-empty 1D sequence of finite numbers; got {frequencies!r}."
        )
    amps = (
        np.ones_like(freqs)
        if amplitudes is None
        else _reals("amplitudes", amplitudes, f"one finite number per frequency ({freqs.size})")
    )
    if amps.shape != freqs.shape or not np.all(np.isfinite(amps)):
        raise ValueError(
            f"`amplitudes` must hold one finite number per frequency "
            f"({freqs.size}); got {amplitudes!r}."
        )

    def f(x: np.ndarray) -> np.ndarray:
        return (amps[None, :] * np.sin(np.pi * x * freqs[None, :])).sum(axis=1, keepdims=True)

    x_tr = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n_train, 1))
    x_te = np.linspace(-1.0, 1.0, n_test)[:, None]
    info = {
        "frequencies": tuple(freqs.tolist()),
        "amplitudes": tuple(amps.tolist()),
        "seed": seed,
        "formula": "sum_i a_i sin(pi f_i x)",
    }
    return _synthetic("multi_frequency_1d", x_tr, f(x_tr), x_te, f(x_te), None, None, dtype, info)


def xor(
    n_train: int = 200, n_test: int = 200, *, seed: int = 0, dtype: Any = np.float64
) -> Dataset:
    """2D XOR: `x` uniform on `[-1, 1]^2`, target `sign(x_1) * sign(x_2)` in {-1, +1}.

    Labels are 1 where the target is +1 and 0 where it is -1.

    Returns:
      A `Dataset` with `x (n, 2)`, `y (n, 1)`, `labels (n,)`.
    """
    check_int("n_train", n_train, minimum=1)
    check_int("n_test", n_test, minimum=1)
    _check_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n_train + n_test, 2))
    # Zero has probability zero under the uniform draw; map it to +1 so targets stay +-1.
    s = np.where(x >= 0, 1.0, -1.0)
    y = (s[:, 0] * s[:, 1])[:, None]
    lab = (y[:, 0] > 0).astype(np.int64)
    return _synthetic(
        "xor",
        x[:n_train],
        y[:n_train],
        x[n_train:],
        y[n_train:],
        lab[:n_train],
        lab[n_train:],
        dtype,
        {"seed": seed},
    )


def parity(
    n_bits: int = 10,
    k: int = 3,
    n_train: int = 1000,
    n_test: int = 1000,
    *,
    support: Sequence[int] | None = None,
    seed: int = 0,
    dtype: Any = np.float64,
) -> Dataset:
    """Sparse parity: `x` uniform on `{-1, 1}^n_bits`, target the product of `k` chosen bits.

    Args:
      n_bits: input dimension.
      k: number of relevant bits (ignored when `support` is given).
      n_train, n_test: numbers of examples (drawn with replacement from the 2^n_bits inputs).
      support: indices of the relevant bits; None draws `k` distinct indices from `seed`
        (recorded in `info["support"]`).
      seed: int seed.
      dtype: float dtype.

    Returns:
      A `Dataset` with `x (n, n_bits)`, `y (n, 1)` in {-1, +1}, labels 1 where y = +1.
    """
    check_int("n_bits", n_bits, minimum=1)
    check_int("n_train", n_train, minimum=1)
    check_int("n_test", n_test, minimum=1)
    _check_seed(seed)
    rng = np.random.default_rng(seed)
    if support is None:
        check_int("k", k, minimum=1)
        if k > n_bits:
            raise ValueError(f"`k` must be <= n_bits={n_bits}; got {k}.")
        supp = np.sort(rng.choice(n_bits, size=k, replace=False))
    else:
        supp = np.asarray(support)
        if (
            supp.ndim != 1
            or supp.size == 0
            or supp.dtype.kind not in "iu"
            or np.any(supp < 0)
            or np.any(supp >= n_bits)
            or np.unique(supp).size != supp.size
        ):
            raise ValueError(
                f"`support` must be distinct int indices in [0, {n_bits}); got {support!r}."
            )
    x = rng.choice(np.array([-1.0, 1.0]), size=(n_train + n_test, n_bits))
    y = np.prod(x[:, supp], axis=1, keepdims=True)
    lab = (y[:, 0] > 0).astype(np.int64)
    info = {"support": tuple(int(i) for i in supp), "seed": seed}
    return _synthetic(
        "parity",
        x[:n_train],
        y[:n_train],
        x[n_train:],
        y[n_train:],
        lab[:n_train],
        lab[n_train:],
        dtype,
        info,
    )


def two_points(
    input_dim: int = 2,
    angle: float = np.pi / 3,
    norms: Sequence[float] = (1.0, 1.0),
    targets: Any = ((1.0,), (-1.0,)),
    *,
    seed: int | None = None,
    dtype: Any = np.float64,
) -> Dataset:
    """Two inputs with two targets, for the two-point theory of van Rossem & Saxe (2024).

    `x_1 = norms[0] * e_1` and `x_2 = norms[1] * (cos(angle) e_1 + sin(angle) e_2)`, so the
    inputs have the given norms and the given angle between them. With an int `seed` both are
    rotated by the same random orthogonal matrix (norms and angle are unchanged). The test set
    equals the training set: the theory concerns the dynamics on these two points.

    Args:
      input_dim: dimension of the inputs, >= 2.
      angle: angle between the inputs, in radians.
      norms: the two input norms, positive.
      targets: `(2, k)` targets, one row per input (a `(2,)` sequence is read as k = 1).
      seed: None for the canonical basis, or an int seed of the random rotation.
      dtype: float dtype.

    Returns:
      A `Dataset` with `x (2, input_dim)`, `y (2, k)` and no labels.
    """
    check_int("input_dim", input_dim, minimum=2)
    theta = check_float("angle", angle)
    r = _reals("norms", norms, "two positive finite numbers")
    if r.shape != (2,) or not np.all(np.isfinite(r)) or np.any(r <= 0):
        raise ValueError(f"`norms` must be two positive finite numbers; got {norms!r}.")
    y = _reals("targets", targets, "finite numbers with shape (2, k) or (2,)")
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != 2 or y.shape[1] == 0 or not np.all(np.isfinite(y)):
        raise ValueError(
            f"`targets` must be finite with shape (2, k) or (2,); got shape {np.shape(targets)}."
        )
    x = np.zeros((2, input_dim))
    x[0, 0] = r[0]
    x[1, 0], x[1, 1] = r[1] * np.cos(theta), r[1] * np.sin(theta)
    if seed is not None:
        _check_seed(seed)
        q, rr = np.linalg.qr(np.random.default_rng(seed).standard_normal((input_dim, input_dim)))
        # The sign fix makes q Haar-distributed rather than biased by the QR convention.
        x = x @ (q * np.sign(np.diag(rr))[None, :]).T
    info = {"angle": theta, "norms": tuple(r.tolist()), "seed": seed}
    return _synthetic("two_points", x, y, x.copy(), y.copy(), None, None, dtype, info)


def modular_addition(
    p: int = 97, train_fraction: float = 0.3, *, seed: int = 0, dtype: Any = np.float64
) -> Dataset:
    """Modular addition (grokking): all `p^2` pairs `(a, b)`, target `(a + b) mod p`.

    Inputs are the concatenated one-hot codes of `a` and `b`, `(n, 2p)`; targets are one-hot
    `(n, p)`; labels are `(a + b) mod p`. A seeded permutation puts
    `round(train_fraction * p^2)` pairs in train and the rest in test; `info["pairs_train"]`
    and `info["pairs_test"]` hold the `(n, 2)` int pairs.

    Args:
      p: modulus, >= 2.
      train_fraction: share of pairs used for training, with at least one pair on each side.
      seed: int seed of the split.
      dtype: float dtype.
    """
    check_int("p", p, minimum=2)
    frac = check_float("train_fraction", train_fraction)
    _check_seed(seed)
    n = p * p
    n_tr = round(frac * n)
    if not 1 <= n_tr <= n - 1:
        raise ValueError(
            f"`train_fraction` must leave at least one of the {n} pairs in train "
            f"and in test; got {train_fraction!r} ({n_tr} training pairs)."
        )
    a, b = np.divmod(np.arange(n), p)
    pairs = np.stack([a, b], axis=1)
    eye = np.eye(p)
    x = np.concatenate([eye[a], eye[b]], axis=1)
    lab = (a + b) % p
    y = eye[lab]
    s = split(np.arange(n), np.arange(n), n_tr, n - n_tr, seed)
    tr, te = s.x_train, s.x_test
    info = {
        "p": p,
        "train_fraction": frac,
        "seed": seed,
        "pairs_train": pairs[tr],
        "pairs_test": pairs[te],
    }
    return _synthetic("modular_addition", x[tr], y[tr], x[te], y[te], lab[tr], lab[te], dtype, info)
