"""Real (and realistic) classification datasets that need no download: scikit-learn's
`digits` and the `mnist1d` generator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxdyn._checks import check_float, check_int
from jaxdyn.data._datasets import (
    Dataset,
    _check_classes,
    _check_seed,
    _finish,
    _select_classes,
    split,
)

# --------------------------------------------------------------------------- digits


def digits(
    n_train: int | None = None,
    n_test: int | None = None,
    *,
    test_fraction: float = 0.2,
    classes: Sequence[int] | None = None,
    one_hot: bool | None = None,
    center: bool = False,
    standardize: bool = False,
    flatten: bool = True,
    seed: int = 0,
    dtype: Any = np.float64,
) -> Dataset:
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

    tf = check_float("test_fraction", test_fraction)
    if not 0.0 < tf < 1.0:
        raise ValueError(f"`test_fraction` must be in (0, 1); got {test_fraction!r}.")
    _check_seed(seed)
    images, labels = load_digits(return_X_y=True)
    images = (images / 16.0).reshape(-1, 8, 8, 1)
    x, lab = _select_classes(images, labels.astype(np.int64), _check_classes(classes, 10))
    available = x.shape[0]
    check_int("n_test", n_test, minimum=1, allow_none=True)
    check_int("n_train", n_train, minimum=1, allow_none=True)
    n_te = round(tf * available) if n_test is None else n_test
    n_tr = available - n_te if n_train is None else n_train
    if n_tr < 1 or n_tr + n_te > available:
        raise ValueError(
            f"`n_train + n_test` must be <= the {available} available examples "
            f"(after class selection); got {n_tr} + {n_te}."
        )
    s = split(x, lab, n_tr, n_te, seed)
    # Classes are already selected and relabelled; only the relabelled indices remain.
    k = 10 if classes is None else len(classes)
    ds = _finish(
        "digits",
        s.x_train,
        s.y_train,
        s.x_test,
        s.y_test,
        num_classes=k,
        classes=None,
        one_hot=one_hot,
        center=center,
        standardize=standardize,
        n_train=None,
        n_test=None,
        flatten=flatten,
        seed=seed,
        dtype=dtype,
        info={"source": "sklearn.datasets.load_digits"},
    )
    if classes is not None:
        ds.info["classes"] = _check_classes(classes, 10)
    return ds


# --------------------------------------------------------------------------- MNIST-1D

# The ten 12-point digit templates of MNIST-1D, as published in github.com/greydanus/mnist1d
# (mnist1d/data.py, `get_templates`).
_MNIST1D_TEMPLATES = np.array(
    [
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
    ]
)


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


def mnist1d(
    n_train: int = 4000,
    n_test: int = 1000,
    *,
    seed: int = 0,
    classes: Sequence[int] | None = None,
    one_hot: bool | None = None,
    center: bool = False,
    standardize: bool = False,
    dtype: Any = np.float64,
    final_seq_length: int = 40,
    padding: tuple[int, int] = (36, 60),
    scale_coeff: float = 0.4,
    max_translation: int = 48,
    corr_noise_scale: float = 0.25,
    iid_noise_scale: float = 2e-2,
    shear_scale: float = 0.75,
) -> Dataset:
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

    check_int("n_train", n_train, minimum=1)
    check_int("n_test", n_test, minimum=1)
    _check_seed(seed)
    check_int("final_seq_length", final_seq_length, minimum=2)
    if (
        not isinstance(padding, Sequence)
        or len(padding) != 2
        or not all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in padding)
        or not 0 <= padding[0] <= padding[1]
    ):
        raise ValueError(
            f"`padding` must be a pair of ints (low, high) with 0 <= low <= high; got {padding!r}."
        )
    check_int("max_translation", max_translation, minimum=1)
    scale_coeff = check_float("scale_coeff", scale_coeff, minimum=0.0)
    corr = check_float("corr_noise_scale", corr_noise_scale, minimum=0.0)
    iid = check_float("iid_noise_scale", iid_noise_scale, minimum=0.0)
    shear_scale = check_float("shear_scale", shear_scale, minimum=0.0)

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
        padded = np.concatenate(
            [templates[labels[rows]] + 1e-8, np.zeros((int(rows.sum()), int(p)))], axis=1
        )
        signals[rows] = padded @ _resample_matrix(t_len + int(p), length).T
    signals *= scales[:, None]
    cols = (np.arange(length)[None, :] - shifts[:, None]) % length
    signals = signals[np.arange(n)[:, None], cols]
    signals = np.where(signals != 0, signals, corr_noise) + iid_noise
    signals -= shears[:, None] * np.linspace(-0.5, 0.5, length)[None, :]
    xs = signals @ _resample_matrix(length, final_seq_length).T
    xs = (xs - xs.mean()) / xs.std()

    info = {
        "source": "generated (MNIST-1D, Greydanus 2020)",
        "generator": {
            "final_seq_length": final_seq_length,
            "padding": tuple(padding),
            "scale_coeff": scale_coeff,
            "max_translation": max_translation,
            "corr_noise_scale": corr,
            "iid_noise_scale": iid,
            "shear_scale": shear_scale,
        },
    }
    return _finish(
        "mnist1d",
        xs[:n_train],
        labels[:n_train],
        xs[n_train:],
        labels[n_train:],
        num_classes=10,
        classes=classes,
        one_hot=one_hot,
        center=center,
        standardize=standardize,
        n_train=None,
        n_test=None,
        flatten=None,
        seed=seed,
        dtype=dtype,
        info=info,
    )
