"""Small offline datasets for training-dynamics experiments, and readers for standard files.

Everything here is numpy in, numpy out (call `jnp.asarray` on the fields you need), and
deterministic given an int `seed`: randomness comes from `np.random.default_rng(seed)` so
data never depends on a JAX key or on the JAX x64 setting.

Datasets (see `DATASETS` and `load`):

- `digits`: scikit-learn's 1797 real 8x8 handwritten digits (bundled with scikit-learn).
- `mnist1d`: the MNIST-1D generator (Greydanus 2020), length-40 signals, 10 classes.
- `multi_frequency_1d`, `xor`, `parity`, `two_points`, `modular_addition`: synthetic tasks
  whose defining property holds exactly.
- `fashion_mnist`, `mnist`, `cifar10`: read IDX / CIFAR-10 binary files from disk; nothing is
  downloaded. Python-pickled files (CIFAR-10's "python version") are refused, never unpickled.

The classification loaders share keyword arguments applied in this order: `classes` (keep a
subset; two classes give +-1 targets), `n_train` / `n_test` (seeded subsampling), `flatten`
(images only), `standardize` (feature-wise z-score with TRAIN statistics), target encoding
(`one_hot`, `center`), `dtype`.
"""
from __future__ import annotations

import gzip
import math
import os
import pathlib
import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "DATASETS", "Dataset", "Split", "cifar10", "digits", "fashion_mnist", "load", "mnist",
    "mnist1d", "modular_addition", "multi_frequency_1d", "parity", "read_cifar10_binary",
    "read_idx", "split", "two_points", "xor",
]

DATASETS = ("digits", "mnist1d", "multi_frequency_1d", "xor", "parity", "two_points",
            "modular_addition", "fashion_mnist", "mnist", "cifar10")

ENV_VAR = "JAXDYN_DATA"
# Where `apt-get install dataset-fashion-mnist` (Debian/Ubuntu) installs the four gzipped IDX
# files (checked against dataset-fashion-mnist 0.0~git20200523.55506a9-1).
FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"

PathLike = str | os.PathLike


class Dataset(NamedTuple):
    """A train/test dataset.

    Attributes:
      x_train: `(n_train, *feature_shape)` float inputs.
      y_train: `(n_train, k)` float targets.
      x_test: `(n_test, *feature_shape)` float inputs.
      y_test: `(n_test, k)` float targets.
      labels_train: `(n_train,)` int class labels, or None for regression tasks.
      labels_test: `(n_test,)` int class labels, or None for regression tasks.
      name: dataset name, as in `DATASETS`.
      info: details of how it was made (classes kept, standardisation statistics, source
        files, seed, target encoding, ...).
    """
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels_train: np.ndarray | None
    labels_test: np.ndarray | None
    name: str
    info: dict


class Split(NamedTuple):
    """Result of `split`: `x_train (n_train, ...)`, `y_train (n_train, ...)`, same for test."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


# --------------------------------------------------------------------------- argument checks

def _check_int(name: str, value: Any, *, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    # bool is an int subclass, but `n_train=True` is certainly a mistake.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        expected = "an int" + (" or None" if allow_none else "")
        raise TypeError(f"`{name}` must be {expected}; got {type(value).__name__} {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}; got {value!r}.")


def _check_seed(seed: Any) -> None:
    _check_int("seed", seed, minimum=0)


def _check_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"`dtype` must be a numpy floating dtype; got {dtype!r}.") from e
    if dt.kind != "f":
        raise TypeError(f"`dtype` must be a numpy floating dtype (e.g. np.float32); got {dt}.")
    return dt


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be a bool; got {type(value).__name__} {value!r}.")


def _check_float(name: str, value: Any, *, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a real number; got {type(value).__name__} {value!r}.")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"`{name}` must be finite; got {value!r}.")
    if minimum is not None and v < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {value!r}.")
    return v


# --------------------------------------------------------------------------- shared transforms

def split(x: np.ndarray, y: np.ndarray, n_train: int, n_test: int, seed: int = 0) -> Split:
    """Deterministic random train/test split.

    A permutation from `np.random.default_rng(seed)` orders the examples; the first `n_train`
    go to train, the next `n_test` to test (so the two never overlap).

    Args:
      x: `(n, ...)` inputs.
      y: `(n, ...)` targets or labels.
      n_train: number of training examples, >= 0.
      n_test: number of test examples, >= 0, with `n_train + n_test <= n`.
      seed: int seed of the permutation.

    Returns:
      `Split(x_train, y_train, x_test, y_test)`.
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 1 or y.ndim < 1:
        raise ValueError(f"`x` and `y` must have a leading batch axis; got shapes {x.shape} and "
                         f"{y.shape}.")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"`x` and `y` must have the same number of examples; got {x.shape[0]} "
                         f"and {y.shape[0]}.")
    _check_int("n_train", n_train, minimum=0)
    _check_int("n_test", n_test, minimum=0)
    _check_seed(seed)
    n = x.shape[0]
    if n_train + n_test > n:
        raise ValueError(f"`n_train + n_test` must be <= the {n} available examples; got "
                         f"{n_train} + {n_test} = {n_train + n_test}.")
    perm = np.random.default_rng(seed).permutation(n)
    tr, te = perm[:n_train], perm[n_train:n_train + n_test]
    return Split(x[tr], y[tr], x[te], y[te])


def _check_classes(classes: Any, num_classes: int) -> tuple[int, ...] | None:
    if classes is None:
        return None
    if isinstance(classes, np.ndarray) and classes.ndim == 1:
        classes = classes.tolist()
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise TypeError(f"`classes` must be a sequence of ints or None; got "
                        f"{type(classes).__name__} {classes!r}.")
    out = []
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
            raise TypeError(f"`classes` must hold ints; got {classes!r}.")
        if not 0 <= c < num_classes:
            raise ValueError(f"`classes` entries must be in [0, {num_classes}); got {classes!r}.")
        out.append(int(c))
    if len(out) < 2 or len(set(out)) != len(out):
        raise ValueError(f"`classes` must hold at least two distinct class labels; got "
                         f"{classes!r}.")
    return tuple(out)


def _select_classes(x: np.ndarray, labels: np.ndarray, classes: tuple[int, ...] | None,
                    part: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Keeps examples of `classes` and relabels them 0..len(classes)-1 in the given order."""
    if classes is None:
        return x, labels
    keep = np.isin(labels, classes)
    if not keep.any():
        raise ValueError(f"`classes`={classes!r} selects no {part} examples; the {part} labels "
                         f"present are {sorted(set(labels.tolist()))}.")
    relabel = np.full(max(int(labels.max(initial=0)), max(classes)) + 1, -1, np.int64)
    relabel[list(classes)] = np.arange(len(classes))
    return x[keep], relabel[labels[keep]]


def _subsample(name: str, x: np.ndarray, labels: np.ndarray, n: int | None,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    _check_int(name, n, minimum=1, allow_none=True)
    if n is None:
        return x, labels
    if n > x.shape[0]:
        raise ValueError(f"`{name}` must be <= the {x.shape[0]} available examples (after class "
                         f"selection); got {n}.")
    idx = rng.permutation(x.shape[0])[:n]
    return x[idx], labels[idx]


def _standardize(x_train: np.ndarray,
                 x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Feature-wise z-score with train statistics; features constant on train map to 0 there."""
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    # Constant features carry no information; dividing by 1 keeps them at 0 on train instead
    # of producing NaN.
    scale = np.where(std > 0, std, 1.0).astype(x_train.dtype)
    return (x_train - mean) / scale, (x_test - mean) / scale, mean, scale


def _targets(labels: np.ndarray, k: int, encoding: str, dtype: np.dtype) -> np.ndarray:
    if encoding == "sign":
        return np.where(labels == 0, -1.0, 1.0).astype(dtype)[:, None]
    if encoding == "label":
        return labels.astype(dtype)[:, None]
    y = np.zeros((labels.shape[0], k), dtype)
    y[np.arange(labels.shape[0]), labels] = 1.0
    if encoding == "one_hot_centered":
        y -= 1.0 / k
    return y


def _encoding(k: int, one_hot: bool | None, center: bool) -> str:
    if one_hot is not None:
        _check_bool("one_hot", one_hot)
    _check_bool("center", center)
    if one_hot is None:
        one_hot = k != 2
    if not one_hot:
        if center:
            raise ValueError("`center=True` applies to one-hot targets; got one_hot=False "
                             f"with {k} classes (+-1 or label targets are not re-centred).")
        return "sign" if k == 2 else "label"
    return "one_hot_centered" if center else "one_hot"


def _finish(name: str, x_train: np.ndarray, labels_train: np.ndarray, x_test: np.ndarray,
            labels_test: np.ndarray, *, num_classes: int, classes: Any, one_hot: bool | None,
            center: bool, standardize: bool, n_train: int | None, n_test: int | None,
            flatten: bool | None, seed: int, dtype: Any, info: dict) -> Dataset:
    """Shared pipeline of the classification loaders (order documented in the module doc)."""
    _check_seed(seed)
    dt = _check_dtype(dtype)
    _check_bool("standardize", standardize)
    classes = _check_classes(classes, num_classes)
    k = num_classes if classes is None else len(classes)
    encoding = _encoding(k, one_hot, center)
    x_train, labels_train = _select_classes(x_train, labels_train, classes)
    x_test, labels_test = _select_classes(x_test, labels_test, classes, "test")
    # Separate streams so changing n_test never changes which training examples are drawn.
    x_train, labels_train = _subsample("n_train", x_train, labels_train, n_train,
                                       np.random.default_rng([seed, 0]))
    x_test, labels_test = _subsample("n_test", x_test, labels_test, n_test,
                                     np.random.default_rng([seed, 1]))
    if flatten is not None:
        _check_bool("flatten", flatten)
        if flatten:
            x_train = x_train.reshape(x_train.shape[0], -1)
            x_test = x_test.reshape(x_test.shape[0], -1)
    x_train, x_test = x_train.astype(dt), x_test.astype(dt)
    info = dict(info, seed=seed, target_encoding=encoding,
                classes=tuple(range(num_classes)) if classes is None else classes,
                standardize_mean=None, standardize_std=None)
    if standardize:
        x_train, x_test, mean, scale = _standardize(x_train, x_test)
        info.update(standardize_mean=mean, standardize_std=scale)
    return Dataset(x_train, _targets(labels_train, k, encoding, dt), x_test,
                   _targets(labels_test, k, encoding, dt), labels_train.astype(np.int64),
                   labels_test.astype(np.int64), name, info)


# --------------------------------------------------------------------------- digits

def digits(n_train: int | None = None, n_test: int | None = None, *, test_fraction: float = 0.2,
           classes: Sequence[int] | None = None, one_hot: bool | None = None,
           center: bool = False, standardize: bool = False, flatten: bool = True, seed: int = 0,
           dtype: Any = np.float64) -> Dataset:
    """scikit-learn's handwritten digits: 1797 real 8x8 images, 10 classes, pixels in [0, 1].

    The data ship with scikit-learn, so this works offline. There is no official split: after
    class selection, `split` with `seed` draws `n_test` test examples (default
    `round(test_fraction * available)`) and `n_train` training examples (default: the rest).

    Args:
      n_train, n_test: sizes of the split; `n_train + n_test` must not exceed what is available.
      test_fraction: test share used when `n_test` is None, in (0, 1).
      classes: class labels to keep, e.g. `(0, 1)`. Two classes give `(n, 1)` targets with
        `classes[0] -> -1` and `classes[1] -> +1`; more give one-hot targets in that order.
      one_hot: None picks +-1 for two classes and one-hot otherwise; True forces one-hot;
        False gives +-1 (two classes) or the class index as a float `(n, 1)` target.
      center: one-hot minus `1/k`, so every target row sums to zero.
      standardize: feature-wise z-score using training statistics only.
      flatten: `(n, 64)` inputs if True, else `(n, 8, 8, 1)` NHWC images.
      seed: int seed of the split.
      dtype: float dtype of inputs and targets.

    Returns:
      A `Dataset` named "digits".
    """
    from sklearn.datasets import load_digits  # deferred: only this loader needs scikit-learn

    tf = _check_float("test_fraction", test_fraction)
    if not 0.0 < tf < 1.0:
        raise ValueError(f"`test_fraction` must be in (0, 1); got {test_fraction!r}.")
    _check_seed(seed)
    images, labels = load_digits(return_X_y=True)
    images = (images / 16.0).reshape(-1, 8, 8, 1)
    x, lab = _select_classes(images, labels.astype(np.int64), _check_classes(classes, 10))
    available = x.shape[0]
    _check_int("n_test", n_test, minimum=1, allow_none=True)
    _check_int("n_train", n_train, minimum=1, allow_none=True)
    n_te = round(tf * available) if n_test is None else n_test
    n_tr = available - n_te if n_train is None else n_train
    if n_tr < 1 or n_tr + n_te > available:
        raise ValueError(f"`n_train + n_test` must be <= the {available} available examples "
                         f"(after class selection); got {n_tr} + {n_te}.")
    s = split(x, lab, n_tr, n_te, seed)
    # Classes are already selected and relabelled; only the relabelled indices remain.
    k = 10 if classes is None else len(classes)
    ds = _finish("digits", s.x_train, s.y_train, s.x_test, s.y_test, num_classes=k, classes=None,
                 one_hot=one_hot, center=center, standardize=standardize, n_train=None,
                 n_test=None, flatten=flatten, seed=seed, dtype=dtype,
                 info={"source": "sklearn.datasets.load_digits"})
    if classes is not None:
        ds.info["classes"] = _check_classes(classes, 10)
    return ds


# --------------------------------------------------------------------------- MNIST-1D

# The ten 12-point digit templates of MNIST-1D, as published in github.com/greydanus/mnist1d
# (mnist1d/data.py, `get_templates`).
_MNIST1D_TEMPLATES = np.array([
    [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
    [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
    [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
    [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
    [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
    [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
    [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
    [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
])


def _mnist1d_templates() -> np.ndarray:
    """`(10, 12)` templates normalised as in the reference: unit std, starting at 0, / 6."""
    t = _MNIST1D_TEMPLATES - _MNIST1D_TEMPLATES.mean(axis=1, keepdims=True)
    t = t / t.std(axis=1, keepdims=True)
    return (t - t[:, :1]) / 6.0


def _resample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """`(n_out, n_in)` matrix of linear interpolation from n_in to n_out points on [0, 1]."""
    eye = np.eye(n_in)
    grid_in, grid_out = np.linspace(0, 1, n_in), np.linspace(0, 1, n_out)
    return np.stack([np.interp(grid_out, grid_in, eye[j]) for j in range(n_in)], axis=1)


def mnist1d(n_train: int = 4000, n_test: int = 1000, *, seed: int = 0,
            classes: Sequence[int] | None = None, one_hot: bool | None = None,
            center: bool = False, standardize: bool = False, dtype: Any = np.float64,
            final_seq_length: int = 40, padding: tuple[int, int] = (36, 60),
            scale_coeff: float = 0.4, max_translation: int = 48, corr_noise_scale: float = 0.25,
            iid_noise_scale: float = 2e-2, shear_scale: float = 0.75) -> Dataset:
    """MNIST-1D (Greydanus 2020): one-dimensional "digits" of length `final_seq_length`.

    Same templates (copied from the reference repository), generative process and default
    parameters as the reference `make_dataset`. For each example, the template of its class
    is: padded with 36..60 zeros, dilated by linear interpolation to 72 points, scaled by
    `1 + scale_coeff * (u - 1/2)`, circularly shifted by 0..max_translation-1, its zero
    (padding) entries replaced by Gaussian noise smoothed with a sigma=2 Gaussian filter, plus
    iid Gaussian noise, sheared by a random linear ramp, and resampled to `final_seq_length`
    points. Finally the whole dataset (train and test together, as in the reference) is shifted
    and scaled to mean 0, std 1. Classes are balanced over train+test (`i % 10`, shuffled).

    Random draws use `np.random.default_rng(seed)`, so examples are statistically equivalent to,
    but not bitwise equal to, the reference's published `mnist1d_data.pkl`.

    Args:
      n_train, n_test: numbers of generated examples (defaults as the reference's 4000/1000).
      seed: int seed; equal seeds give identical datasets.
      classes, one_hot, center, standardize, dtype: as in `digits`, applied after generation.
      final_seq_length, padding, scale_coeff, max_translation, corr_noise_scale,
      iid_noise_scale, shear_scale: generator parameters (reference defaults).

    Returns:
      A `Dataset` named "mnist1d" with `(n, final_seq_length)` inputs.
    """
    from scipy.ndimage import gaussian_filter1d

    _check_int("n_train", n_train, minimum=1)
    _check_int("n_test", n_test, minimum=1)
    _check_seed(seed)
    _check_int("final_seq_length", final_seq_length, minimum=2)
    if (not isinstance(padding, Sequence) or len(padding) != 2
            or not all(isinstance(p, (int, np.integer)) and not isinstance(p, bool)
                       for p in padding) or not 0 <= padding[0] <= padding[1]):
        raise ValueError(f"`padding` must be a pair of ints (low, high) with 0 <= low <= high; "
                         f"got {padding!r}.")
    _check_int("max_translation", max_translation, minimum=1)
    scale_coeff = _check_float("scale_coeff", scale_coeff, minimum=0.0)
    corr = _check_float("corr_noise_scale", corr_noise_scale, minimum=0.0)
    iid = _check_float("iid_noise_scale", iid_noise_scale, minimum=0.0)
    shear_scale = _check_float("shear_scale", shear_scale, minimum=0.0)

    templates = _mnist1d_templates()
    n, t_len = n_train + n_test, templates.shape[1]
    length = t_len + padding[1]  # dilated length, fixed so every example has the same grid
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10)
    pads = rng.integers(padding[0], padding[1] + 1, size=n)
    scales = 1.0 + scale_coeff * (rng.random(n) - 0.5)
    shifts = rng.integers(0, max_translation, size=n)
    corr_noise = gaussian_filter1d(corr * rng.standard_normal((n, length)), 2.0, axis=-1)
    iid_noise = iid * rng.standard_normal((n, length))
    shears = shear_scale * (rng.random(n) - 0.5)

    # The reference adds 1e-8 before padding so that template zeros survive the "is padding"
    # mask below; only true padding then receives correlated noise.
    signals = np.empty((n, length))
    for p in np.unique(pads):
        rows = pads == p
        padded = np.concatenate([templates[labels[rows]] + 1e-8,
                                 np.zeros((int(rows.sum()), int(p)))], axis=1)
        signals[rows] = padded @ _resample_matrix(t_len + int(p), length).T
    signals *= scales[:, None]
    cols = (np.arange(length)[None, :] - shifts[:, None]) % length
    signals = signals[np.arange(n)[:, None], cols]
    signals = np.where(signals != 0, signals, corr_noise) + iid_noise
    signals -= shears[:, None] * np.linspace(-0.5, 0.5, length)[None, :]
    xs = signals @ _resample_matrix(length, final_seq_length).T
    xs = (xs - xs.mean()) / xs.std()

    info = {"source": "generated (MNIST-1D, Greydanus 2020)", "generator": {
        "final_seq_length": final_seq_length, "padding": tuple(padding),
        "scale_coeff": scale_coeff, "max_translation": max_translation,
        "corr_noise_scale": corr, "iid_noise_scale": iid, "shear_scale": shear_scale}}
    return _finish("mnist1d", xs[:n_train], labels[:n_train], xs[n_train:], labels[n_train:],
                   num_classes=10, classes=classes, one_hot=one_hot, center=center,
                   standardize=standardize, n_train=None, n_test=None, flatten=None, seed=seed,
                   dtype=dtype, info=info)


# --------------------------------------------------------------------------- synthetic tasks

def _synthetic(name: str, x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray,
               y_te: np.ndarray, labels_tr: np.ndarray | None, labels_te: np.ndarray | None,
               dtype: Any, info: dict) -> Dataset:
    dt = _check_dtype(dtype)
    return Dataset(x_tr.astype(dt), y_tr.astype(dt), x_te.astype(dt), y_te.astype(dt),
                   labels_tr, labels_te, name, info)


def multi_frequency_1d(n_train: int = 64, n_test: int = 256,
                       frequencies: Sequence[float] = (1, 3, 5),
                       amplitudes: Sequence[float] | None = None, *, seed: int = 0,
                       dtype: Any = np.float64) -> Dataset:
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
    _check_int("n_train", n_train, minimum=1)
    _check_int("n_test", n_test, minimum=1)
    _check_seed(seed)
    freqs = np.asarray(frequencies, dtype=np.float64)
    if freqs.ndim != 1 or freqs.size == 0 or not np.all(np.isfinite(freqs)):
        raise ValueError(f"`frequencies` must be a non-empty 1D sequence of finite numbers; got "
                         f"{frequencies!r}.")
    amps = np.ones_like(freqs) if amplitudes is None else np.asarray(amplitudes, np.float64)
    if amps.shape != freqs.shape or not np.all(np.isfinite(amps)):
        raise ValueError(f"`amplitudes` must hold one finite number per frequency "
                         f"({freqs.size}); got {amplitudes!r}.")

    def f(x: np.ndarray) -> np.ndarray:
        return (amps[None, :] * np.sin(np.pi * x * freqs[None, :])).sum(axis=1, keepdims=True)

    x_tr = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n_train, 1))
    x_te = np.linspace(-1.0, 1.0, n_test)[:, None]
    info = {"frequencies": tuple(freqs.tolist()), "amplitudes": tuple(amps.tolist()),
            "seed": seed, "formula": "sum_i a_i sin(pi f_i x)"}
    return _synthetic("multi_frequency_1d", x_tr, f(x_tr), x_te, f(x_te), None, None, dtype,
                      info)


def xor(n_train: int = 200, n_test: int = 200, *, seed: int = 0,
        dtype: Any = np.float64) -> Dataset:
    """2D XOR: `x` uniform on `[-1, 1]^2`, target `sign(x_1) * sign(x_2)` in {-1, +1}.

    Labels are 1 where the target is +1 and 0 where it is -1.

    Returns:
      A `Dataset` with `x (n, 2)`, `y (n, 1)`, `labels (n,)`.
    """
    _check_int("n_train", n_train, minimum=1)
    _check_int("n_test", n_test, minimum=1)
    _check_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n_train + n_test, 2))
    # Zero has probability zero under the uniform draw; map it to +1 so targets stay +-1.
    s = np.where(x >= 0, 1.0, -1.0)
    y = (s[:, 0] * s[:, 1])[:, None]
    lab = (y[:, 0] > 0).astype(np.int64)
    return _synthetic("xor", x[:n_train], y[:n_train], x[n_train:], y[n_train:], lab[:n_train],
                      lab[n_train:], dtype, {"seed": seed})


def parity(n_bits: int = 10, k: int = 3, n_train: int = 1000, n_test: int = 1000, *,
           support: Sequence[int] | None = None, seed: int = 0,
           dtype: Any = np.float64) -> Dataset:
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
    _check_int("n_bits", n_bits, minimum=1)
    _check_int("n_train", n_train, minimum=1)
    _check_int("n_test", n_test, minimum=1)
    _check_seed(seed)
    rng = np.random.default_rng(seed)
    if support is None:
        _check_int("k", k, minimum=1)
        if k > n_bits:
            raise ValueError(f"`k` must be <= n_bits={n_bits}; got {k}.")
        supp = np.sort(rng.choice(n_bits, size=k, replace=False))
    else:
        supp = np.asarray(support)
        if (supp.ndim != 1 or supp.size == 0 or supp.dtype.kind not in "iu"
                or np.any(supp < 0) or np.any(supp >= n_bits)
                or np.unique(supp).size != supp.size):
            raise ValueError(f"`support` must be distinct int indices in [0, {n_bits}); got "
                             f"{support!r}.")
    x = rng.choice(np.array([-1.0, 1.0]), size=(n_train + n_test, n_bits))
    y = np.prod(x[:, supp], axis=1, keepdims=True)
    lab = (y[:, 0] > 0).astype(np.int64)
    info = {"support": tuple(int(i) for i in supp), "seed": seed}
    return _synthetic("parity", x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                      lab[:n_train], lab[n_train:], dtype, info)


def two_points(input_dim: int = 2, angle: float = np.pi / 3, norms: Sequence[float] = (1., 1.),
               targets: Any = ((1.0,), (-1.0,)), *, seed: int | None = None,
               dtype: Any = np.float64) -> Dataset:
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
    _check_int("input_dim", input_dim, minimum=2)
    theta = _check_float("angle", angle)
    r = np.asarray(norms, dtype=np.float64)
    if r.shape != (2,) or not np.all(np.isfinite(r)) or np.any(r <= 0):
        raise ValueError(f"`norms` must be two positive finite numbers; got {norms!r}.")
    y = np.asarray(targets, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != 2 or y.shape[1] == 0 or not np.all(np.isfinite(y)):
        raise ValueError(f"`targets` must be finite with shape (2, k) or (2,); got shape "
                         f"{np.shape(targets)}.")
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


def modular_addition(p: int = 97, train_fraction: float = 0.3, *, seed: int = 0,
                     dtype: Any = np.float64) -> Dataset:
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
    _check_int("p", p, minimum=2)
    frac = _check_float("train_fraction", train_fraction)
    _check_seed(seed)
    n = p * p
    n_tr = round(frac * n)
    if not 1 <= n_tr <= n - 1:
        raise ValueError(f"`train_fraction` must leave at least one of the {n} pairs in train "
                         f"and in test; got {train_fraction!r} ({n_tr} training pairs).")
    a, b = np.divmod(np.arange(n), p)
    pairs = np.stack([a, b], axis=1)
    eye = np.eye(p)
    x = np.concatenate([eye[a], eye[b]], axis=1)
    lab = (a + b) % p
    y = eye[lab]
    s = split(np.arange(n), np.arange(n), n_tr, n - n_tr, seed)
    tr, te = s.x_train, s.x_test
    info = {"p": p, "train_fraction": frac, "seed": seed, "pairs_train": pairs[tr],
            "pairs_test": pairs[te]}
    return _synthetic("modular_addition", x[tr], y[tr], x[te], y[te], lab[tr], lab[te], dtype,
                      info)


# --------------------------------------------------------------------------- IDX files

# IDX type codes (third magic byte) -> big-endian numpy dtype, per the MNIST file-format spec.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
# DEFLATE cannot compress better than about 1032:1, so a gzip file of C bytes holds at most
# ~1032 * C bytes; a header claiming more is corrupt and must not trigger an allocation.
_MAX_GZIP_RATIO = 1032


def _read_exactly(f: Any, n: int, what: str, path: PathLike) -> bytearray:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = f.readinto(view[got:])
        if not k:
            raise ValueError(f"{path}: truncated {what}: expected {n} bytes, got {got}.")
        got += k
    return buf


def _is_gzip(path: PathLike) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def read_idx(path: PathLike) -> np.ndarray:
    """Reads an IDX file (the MNIST / Fashion-MNIST format), gzipped or not.

    Format: magic `00 00 <type> <ndim>`, then `ndim` big-endian uint32 sizes, then the data in
    big-endian row-major order. Type codes: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64. Gzip is detected from the magic bytes `1f 8b`, not the name.
    The header is validated against the file size before the data array is allocated.

    Args:
      path: file path.

    Returns:
      The array, shape `(d_1, ..., d_ndim)`, in native byte order.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`path`: no IDX file at {path!r}.")
    gz = _is_gzip(path)
    file_size = os.path.getsize(path)
    if gz:
        with open(path, "rb") as raw:
            raw.seek(max(file_size - 4, 0))
            # The gzip trailer stores the uncompressed size mod 2^32 (single-member files).
            isize = int.from_bytes(raw.read(4), "little")
    opener = gzip.open if gz else open
    with opener(path, "rb") as f:
        try:
            magic = bytes(_read_exactly(f, 4, "IDX header", path))
            if magic[0] != 0 or magic[1] != 0:
                raise ValueError(f"{path}: not an IDX file: magic must start with bytes 00 00; "
                                 f"got {magic.hex(' ')}.")
            if magic[2] not in _IDX_DTYPES:
                codes = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
                raise ValueError(f"{path}: unknown IDX type code 0x{magic[2]:02X}; expected one "
                                 f"of {codes}.")
            ndim = magic[3]
            if ndim == 0:
                raise ValueError(f"{path}: IDX header declares 0 dimensions; expected >= 1.")
            dims = tuple(int(d) for d in np.frombuffer(
                bytes(_read_exactly(f, 4 * ndim, "IDX dimension list", path)), ">u4"))
        except (EOFError, OSError, zlib.error) as e:
            raise ValueError(f"{path}: unreadable IDX header (corrupt gzip stream?): "
                             f"{e}.") from e
        dtype = np.dtype(_IDX_DTYPES[magic[2]])
        header = 4 + 4 * ndim
        payload = math.prod(dims) * dtype.itemsize
        expected = header + payload
        if gz:
            if expected > _MAX_GZIP_RATIO * file_size + 1024:
                raise ValueError(f"{path}: IDX header declares dims {dims} ({expected} bytes), "
                                 f"more than a {file_size}-byte gzip file can hold.")
            if isize != expected % 2**32:
                raise ValueError(f"{path}: size mismatch for IDX dims {dims}: expected "
                                 f"{expected} bytes after decompression, gzip trailer says "
                                 f"{isize} (mod 2^32).")
        elif file_size != expected:
            raise ValueError(f"{path}: size mismatch for IDX dims {dims} of {dtype.name}: "
                             f"expected {expected} bytes ({header} header + {payload} data), "
                             f"got {file_size}.")
        try:
            buf = _read_exactly(f, payload, "IDX data", path)
            extra = f.read(1)
        except (EOFError, OSError, zlib.error) as e:
            raise ValueError(f"{path}: unreadable IDX data (corrupt gzip stream?): {e}.") from e
        if extra:
            raise ValueError(f"{path}: size mismatch for IDX dims {dims}: expected {expected} "
                             f"bytes after decompression, got more.")
    return np.frombuffer(buf, dtype).reshape(dims).astype(dtype.newbyteorder("="), copy=False)


_IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte")


def _idx_candidates(stem: str) -> list[str]:
    # Some mirrors of MNIST name the files "train-images.idx3-ubyte".
    dotted = stem.replace("-idx", ".idx")
    return [stem, stem + ".gz", dotted, dotted + ".gz"]


def _search_dirs(data_dir: PathLike | None, subdir: str,
                 system_dirs: Sequence[str]) -> list[pathlib.Path]:
    if data_dir is not None:
        return [pathlib.Path(data_dir)]
    dirs = []
    env = os.environ.get(ENV_VAR)
    if env:
        dirs.append(pathlib.Path(env) / subdir)
    dirs.extend(pathlib.Path(d) for d in system_dirs)
    return dirs


def _find_idx_files(dirs: list[pathlib.Path]) -> tuple[pathlib.Path, ...] | None:
    for d in dirs:
        found = []
        for stem in _IDX_STEMS:
            hit = next((d / c for c in _idx_candidates(stem) if (d / c).is_file()), None)
            found.append(hit)
        if all(h is not None for h in found):
            return tuple(found)
    return None


def _load_idx_dataset(name: str, data_dir: PathLike | None, subdir: str,
                      system_dirs: Sequence[str], how_to_get: str, kwargs: dict) -> Dataset:
    dirs = _search_dirs(data_dir, subdir, system_dirs)
    files = _find_idx_files(dirs)
    if files is None:
        looked = "\n".join(f"  {d}" for d in dirs)
        names = ", ".join(f"{s}[.gz]" for s in _IDX_STEMS)
        raise FileNotFoundError(
            f"{name}: the four IDX files ({names}) were not found in any of:\n{looked}\n"
            f"Nothing is downloaded. {how_to_get} Then pass `data_dir=`, or set {ENV_VAR} so "
            f"that ${ENV_VAR}/{subdir} holds them.")
    x_tr, l_tr, x_te, l_te = (read_idx(f) for f in files)
    for part, x, lab in (("train", x_tr, l_tr), ("test", x_te, l_te)):
        if x.ndim != 3 or x.dtype != np.uint8:
            raise ValueError(f"{name}: {part} images must be a 3D uint8 IDX array (n, h, w); "
                             f"got {x.dtype} of shape {x.shape}.")
        if lab.ndim != 1 or lab.shape[0] != x.shape[0]:
            raise ValueError(f"{name}: {part} labels must be 1D with one label per image "
                             f"({x.shape[0]}); got shape {lab.shape}.")
        if lab.size and int(lab.max()) >= 10:
            raise ValueError(f"{name}: {part} labels must be in [0, 10); got {int(lab.max())}.")
    info = {"source": tuple(str(f) for f in files)}
    return _image_dataset(name, x_tr[..., None], l_tr, x_te[..., None], l_te, info, kwargs)


def _image_dataset(name: str, x_tr: np.ndarray, l_tr: np.ndarray, x_te: np.ndarray,
                   l_te: np.ndarray, info: dict, kwargs: dict) -> Dataset:
    # Subsample and select classes on uint8 data before converting, so a small subset of a
    # large file never materialises the full float array.
    dtype = kwargs.pop("dtype")
    classes = _check_classes(kwargs.pop("classes"), 10)
    x_tr, l_tr = _select_classes(x_tr, l_tr.astype(np.int64), classes)
    x_te, l_te = _select_classes(x_te, l_te.astype(np.int64), classes, "test")
    seed = kwargs.pop("seed")
    _check_seed(seed)
    x_tr, l_tr = _subsample("n_train", x_tr, l_tr, kwargs.pop("n_train"),
                            np.random.default_rng([seed, 0]))
    x_te, l_te = _subsample("n_test", x_te, l_te, kwargs.pop("n_test"),
                            np.random.default_rng([seed, 1]))
    dt = _check_dtype(dtype)
    k = 10 if classes is None else len(classes)
    ds = _finish(name, x_tr.astype(dt) / 255.0, l_tr, x_te.astype(dt) / 255.0, l_te,
                 num_classes=k, classes=None, n_train=None, n_test=None, seed=seed, dtype=dt,
                 info=info, **kwargs)
    if classes is not None:
        ds.info["classes"] = classes
    return ds


def fashion_mnist(data_dir: PathLike | None = None, *, n_train: int | None = None,
                  n_test: int | None = None, classes: Sequence[int] | None = None,
                  one_hot: bool | None = None, center: bool = False, standardize: bool = False,
                  flatten: bool = True, seed: int = 0, dtype: Any = np.float64) -> Dataset:
    """Fashion-MNIST from its IDX files (60000 train / 10000 test 28x28 images, 10 classes).

    Looks in `data_dir` only, when given; else in `$JAXDYN_DATA/fashion-mnist`, then in
    `/usr/share/datasets/fashion-mnist` (where Debian/Ubuntu's `dataset-fashion-mnist` package
    installs `train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
    `t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz`). Files may be gzipped or not.

    Pixels are scaled to [0, 1]. Other arguments as in `digits`, with `n_train` / `n_test`
    drawing seeded subsets of the official splits; `flatten=False` gives `(n, 28, 28, 1)`.
    """
    how = ("Install them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or copy "
           "them from github.com/zalandoresearch/fashion-mnist (data/fashion).")
    kwargs = {"n_train": n_train, "n_test": n_test, "classes": classes, "one_hot": one_hot,
              "center": center, "standardize": standardize, "flatten": flatten, "seed": seed,
              "dtype": dtype}
    return _load_idx_dataset("fashion_mnist", data_dir, "fashion-mnist",
                             (FASHION_MNIST_SYSTEM_DIR,), how, kwargs)


def mnist(data_dir: PathLike | None = None, *, n_train: int | None = None,
          n_test: int | None = None, classes: Sequence[int] | None = None,
          one_hot: bool | None = None, center: bool = False, standardize: bool = False,
          flatten: bool = True, seed: int = 0, dtype: Any = np.float64) -> Dataset:
    """MNIST from its IDX files; looks in `data_dir`, else in `$JAXDYN_DATA/mnist`.

    Same files names, arguments and outputs as `fashion_mnist` (no system-wide default: Debian
    ships no MNIST package).
    """
    how = ("Copy the four standard MNIST IDX files (e.g. from a local mirror of "
           "yann.lecun.com/exdb/mnist) into one directory.")
    kwargs = {"n_train": n_train, "n_test": n_test, "classes": classes, "one_hot": one_hot,
              "center": center, "standardize": standardize, "flatten": flatten, "seed": seed,
              "dtype": dtype}
    return _load_idx_dataset("mnist", data_dir, "mnist", (), how, kwargs)


# --------------------------------------------------------------------------- CIFAR-10

_CIFAR_RECORD = 1 + 3 * 32 * 32
_CIFAR_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_CIFAR_TEST = "test_batch.bin"
_PICKLE_NAMES = {"data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                 "data_batch_5", "test_batch", "batches.meta"}
_PICKLE_REFUSAL = (
    "this is CIFAR-10's Python version (pickled batches, cifar-10-batches-py). jaxdyn never "
    "unpickles files, since unpickling can execute arbitrary code. Use the binary version "
    "instead: cifar-10-binary.tar.gz, which extracts to cifar-10-batches-bin/ holding "
    "data_batch_1.bin ... data_batch_5.bin and test_batch.bin.")


def read_cifar10_binary(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Reads one CIFAR-10 binary batch (`data_batch_<i>.bin` or `test_batch.bin`).

    Each record is 1 label byte followed by 3072 pixel bytes (1024 red, 1024 green, 1024 blue,
    each a row-major 32x32 plane). The file size (a positive multiple of 3073) and the labels
    (< 10) are checked before the image array is allocated. Pickled files are refused.

    Args:
      path: file path.

    Returns:
      `(images, labels)`: uint8 `(n, 32, 32, 3)` NHWC images and int64 `(n,)` labels.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`path`: no CIFAR-10 binary file at {path!r}.")
    if os.path.basename(path) in _PICKLE_NAMES:
        raise ValueError(f"`path`={path!r}: {_PICKLE_REFUSAL}")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(2)
        # Pickle protocols 2+ start with the PROTO opcode 0x80 and the protocol number.
        if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
            raise ValueError(f"`path`={path!r} is a Python pickle: {_PICKLE_REFUSAL}")
        if size == 0 or size % _CIFAR_RECORD:
            raise ValueError(f"`path`={path!r}: a CIFAR-10 binary file holds records of "
                             f"{_CIFAR_RECORD} bytes; expected a positive multiple of "
                             f"{_CIFAR_RECORD} bytes, got {size}.")
        n = size // _CIFAR_RECORD
        labels = np.empty(n, np.int64)
        for i in range(n):
            f.seek(i * _CIFAR_RECORD)
            labels[i] = f.read(1)[0]
        if labels.max() >= 10:
            bad = int(np.argmax(labels >= 10))
            raise ValueError(f"`path`={path!r}: CIFAR-10 labels must be in [0, 10); record {bad} "
                             f"has label {labels[bad]}.")
        f.seek(0)
        records = np.frombuffer(_read_exactly(f, size, "CIFAR-10 data", path), np.uint8)
    images = records.reshape(n, _CIFAR_RECORD)[:, 1:].reshape(n, 3, 32, 32)
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1)), labels


def cifar10(data_dir: PathLike | None = None, *, n_train: int | None = None,
            n_test: int | None = None, classes: Sequence[int] | None = None,
            one_hot: bool | None = None, center: bool = False, standardize: bool = False,
            flatten: bool = True, seed: int = 0, dtype: Any = np.float64) -> Dataset:
    """CIFAR-10 from its binary batches (50000 train / 10000 test 32x32x3 images).

    Looks in `data_dir` (or its `cifar-10-batches-bin` subfolder) when given, else in
    `$JAXDYN_DATA/cifar10` (and its `cifar-10-batches-bin`). Needs `data_batch_1.bin` ...
    `data_batch_5.bin` and `test_batch.bin`. The pickled Python version is refused.

    Pixels are scaled to [0, 1]; `flatten=False` gives NHWC `(n, 32, 32, 3)` images. Other
    arguments as in `digits` (Lee et al. 2019's binary tasks: e.g. `classes=(0, 1)` gives
    airplane -> -1, automobile -> +1).
    """
    roots = _search_dirs(data_dir, "cifar10", ())
    dirs = [d for r in roots for d in (r, r / "cifar-10-batches-bin")]
    names = _CIFAR_TRAIN + (_CIFAR_TEST,)
    found = next((d for d in dirs if all((d / nm).is_file() for nm in names)), None)
    if found is None:
        for r in roots:
            for d in (r, r / "cifar-10-batches-py"):
                if (d / "data_batch_1").is_file():
                    raise ValueError(f"cifar10: found {d / 'data_batch_1'}: {_PICKLE_REFUSAL}")
        looked = "\n".join(f"  {d}" for d in dirs)
        raise FileNotFoundError(
            f"cifar10: {', '.join(names)} were not found in any of:\n{looked}\nNothing is "
            f"downloaded. Extract cifar-10-binary.tar.gz (the binary version, from "
            f"cs.toronto.edu/~kriz/cifar.html) and pass `data_dir=`, or set {ENV_VAR} so that "
            f"${ENV_VAR}/cifar10 holds the files.")
    train = [read_cifar10_binary(found / nm) for nm in _CIFAR_TRAIN]
    x_te, l_te = read_cifar10_binary(found / _CIFAR_TEST)
    x_tr = np.concatenate([t[0] for t in train])
    l_tr = np.concatenate([t[1] for t in train])
    info = {"source": tuple(str(found / nm) for nm in names)}
    kwargs = {"n_train": n_train, "n_test": n_test, "classes": classes, "one_hot": one_hot,
              "center": center, "standardize": standardize, "flatten": flatten, "seed": seed,
              "dtype": dtype}
    return _image_dataset("cifar10", x_tr, l_tr, x_te, l_te, info, kwargs)


# --------------------------------------------------------------------------- dispatch

_LOADERS = {"digits": digits, "mnist1d": mnist1d, "multi_frequency_1d": multi_frequency_1d,
            "xor": xor, "parity": parity, "two_points": two_points,
            "modular_addition": modular_addition, "fashion_mnist": fashion_mnist,
            "mnist": mnist, "cifar10": cifar10}


def load(name: str, **kwargs: Any) -> Dataset:
    """Loads dataset `name` (one of `DATASETS`), passing `kwargs` to its loader."""
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a str, one of {DATASETS}; got {type(name).__name__}.")
    if name not in _LOADERS:
        raise ValueError(f"`name` must be one of {DATASETS}; got {name!r}.")
    return _LOADERS[name](**kwargs)
