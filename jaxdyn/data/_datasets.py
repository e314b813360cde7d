"""The `Dataset` / `Split` containers and the transforms every loader shares.

The classification loaders apply their keyword arguments in this order (`_finish`):
`classes` (keep a subset; two classes give +-1 targets), `n_train` / `n_test` (seeded
subsampling), `flatten` (images only), `standardize` (feature-wise z-score with TRAIN
statistics), target encoding (`one_hot`, `center`), `dtype`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxdyn._checks import check_bool, check_int, fail

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


def _check_seed(seed: Any) -> int:
    return check_int("seed", seed, minimum=0)


def _check_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        fail("dtype", "a numpy floating dtype (e.g. np.float32)", repr(dtype), TypeError)
    if dt.kind != "f":
        fail("dtype", "a numpy floating dtype (e.g. np.float32)", dt, TypeError)
    return dt


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
        raise ValueError(
            f"`x` and `y` must have a leading batch axis; got shapes {x.shape} and {y.shape}."
        )
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"`x` and `y` must have the same number of examples; got {x.shape[0]} and {y.shape[0]}."
        )
    check_int("n_train", n_train, minimum=0)
    check_int("n_test", n_test, minimum=0)
    _check_seed(seed)
    n = x.shape[0]
    if n_train + n_test > n:
        raise ValueError(
            f"`n_train + n_test` must be <= the {n} available examples; got "
            f"{n_train} + {n_test} = {n_train + n_test}."
        )
    perm = np.random.default_rng(seed).permutation(n)
    tr, te = perm[:n_train], perm[n_train : n_train + n_test]
    return Split(x[tr], y[tr], x[te], y[te])


def _check_classes(classes: Any, num_classes: int) -> tuple[int, ...] | None:
    if classes is None:
        return None
    if isinstance(classes, np.ndarray) and classes.ndim == 1:
        classes = classes.tolist()
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise TypeError(
            f"`classes` must be a sequence of ints or None; got "
            f"{type(classes).__name__} {classes!r}."
        )
    out = []
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
            raise TypeError(f"`classes` must hold ints; got {classes!r}.")
        if not 0 <= c < num_classes:
            raise ValueError(f"`classes` entries must be in [0, {num_classes}); got {classes!r}.")
        out.append(int(c))
    if len(out) < 2 or len(set(out)) != len(out):
        raise ValueError(
            f"`classes` must hold at least two distinct class labels; got {classes!r}."
        )
    return tuple(out)


def _select_classes(
    x: np.ndarray, labels: np.ndarray, classes: tuple[int, ...] | None, part: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """Keeps examples of `classes` and relabels them 0..len(classes)-1 in the given order."""
    if classes is None:
        return x, labels
    keep = np.isin(labels, classes)
    if not keep.any():
        raise ValueError(
            f"`classes`={classes!r} selects no {part} examples; the {part} labels "
            f"present are {sorted(set(labels.tolist()))}."
        )
    relabel = np.full(max(int(labels.max(initial=0)), max(classes)) + 1, -1, np.int64)
    relabel[list(classes)] = np.arange(len(classes))
    return x[keep], relabel[labels[keep]]


def _subsample(
    name: str, x: np.ndarray, labels: np.ndarray, n: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    check_int(name, n, minimum=1, allow_none=True)
    if n is None:
        return x, labels
    if n > x.shape[0]:
        raise ValueError(
            f"`{name}` must be <= the {x.shape[0]} available examples (after class "
            f"selection); got {n}."
        )
    idx = rng.permutation(x.shape[0])[:n]
    return x[idx], labels[idx]


def _standardize(
    x_train: np.ndarray, x_test: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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
        check_bool("one_hot", one_hot)
    check_bool("center", center)
    if one_hot is None:
        one_hot = k != 2
    if not one_hot:
        if center:
            raise ValueError(
                "`center=True` applies to one-hot targets; got one_hot=False "
                f"with {k} classes (+-1 or label targets are not re-centred)."
            )
        return "sign" if k == 2 else "label"
    return "one_hot_centered" if center else "one_hot"


def _finish(
    name: str,
    x_train: np.ndarray,
    labels_train: np.ndarray,
    x_test: np.ndarray,
    labels_test: np.ndarray,
    *,
    num_classes: int,
    classes: Any,
    one_hot: bool | None,
    center: bool,
    standardize: bool,
    n_train: int | None,
    n_test: int | None,
    flatten: bool | None,
    seed: int,
    dtype: Any,
    info: dict,
) -> Dataset:
    """Shared pipeline of the classification loaders (order documented in the module doc)."""
    _check_seed(seed)
    dt = _check_dtype(dtype)
    check_bool("standardize", standardize)
    classes = _check_classes(classes, num_classes)
    k = num_classes if classes is None else len(classes)
    encoding = _encoding(k, one_hot, center)
    x_train, labels_train = _select_classes(x_train, labels_train, classes)
    x_test, labels_test = _select_classes(x_test, labels_test, classes, "test")
    # Separate streams so changing n_test never changes which training examples are drawn.
    x_train, labels_train = _subsample(
        "n_train", x_train, labels_train, n_train, np.random.default_rng([seed, 0])
    )
    x_test, labels_test = _subsample(
        "n_test", x_test, labels_test, n_test, np.random.default_rng([seed, 1])
    )
    if flatten is not None:
        check_bool("flatten", flatten)
        if flatten:
            x_train = x_train.reshape(x_train.shape[0], -1)
            x_test = x_test.reshape(x_test.shape[0], -1)
    x_train, x_test = x_train.astype(dt), x_test.astype(dt)
    info = dict(
        info,
        seed=seed,
        target_encoding=encoding,
        classes=tuple(range(num_classes)) if classes is None else classes,
        standardize_mean=None,
        standardize_std=None,
    )
    if standardize:
        x_train, x_test, mean, scale = _standardize(x_train, x_test)
        info.update(standardize_mean=mean, standardize_std=scale)
    return Dataset(
        x_train,
        _targets(labels_train, k, encoding, dt),
        x_test,
        _targets(labels_test, k, encoding, dt),
        labels_train.astype(np.int64),
        labels_test.astype(np.int64),
        name,
        info,
    )
