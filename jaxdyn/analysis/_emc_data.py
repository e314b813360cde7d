"""Data variations for `jaxdyn.analysis.emc`: semantic or random labels, real, Gaussian or
feature-permuted inputs, and classes merged at random. Numpy in, numpy out, deterministic in
`seed` (`np.random.default_rng`)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from jaxdyn._checks import check_choice, check_int, describe, fail

LABELS = ("semantic", "random")
INPUTS = ("real", "gaussian", "permuted")


class Variant(NamedTuple):
    """A training task after the variations.

    Attributes:
      x_train: `(n, *feature_shape)` inputs; `labels_train`: `(n,)` ints in [0, num_classes).
      x_test, labels_test: the same for the test set (test labels stay semantic, after any
        merge, so random-label training shows chance-level test accuracy).
      num_classes: classes after merging.
      settings: the variation by name, e.g. `{"labels": "random", "inputs": "real",
        "classes": 10}`.
      class_map: `(num_original_classes,)` original class -> merged class.
    """

    x_train: np.ndarray
    labels_train: np.ndarray
    x_test: np.ndarray
    labels_test: np.ndarray
    num_classes: int
    settings: dict
    class_map: np.ndarray


def _labels_array(name: str, labels: Any, n: int, num_classes: int) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.shape != (n,) or arr.dtype.kind not in "iu":
        fail(name, f"an int array of shape ({n},)", describe(labels), TypeError)
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        fail(
            name,
            f"class labels in [0, {num_classes}) (num_classes = {num_classes})",
            f"labels in [{arr.min()}, {arr.max()}]",
        )
    return arr.astype(np.int64)


def merge_map(num_classes: int, classes: int, seed: int) -> np.ndarray:
    """A random map of `num_classes` classes onto `classes` groups, every group non-empty and
    the groups as equal in size as possible: `(num_classes,)` ints."""
    num_classes = check_int("num_classes", num_classes, minimum=2)
    classes = check_int("classes", classes, minimum=2, maximum=num_classes)
    rng = np.random.default_rng([int(seed), 7])
    return np.arange(num_classes)[rng.permutation(num_classes)] % classes


def make_variant(
    x_train: Any,
    labels_train: Any,
    x_test: Any,
    labels_test: Any,
    *,
    num_classes: int,
    labels: str = "semantic",
    inputs: str = "real",
    classes: int | None = None,
    seed: int = 0,
) -> Variant:
    """Applies the variations, in this order: merge classes, then labels, then inputs.

    Args:
      x_train: `(n, *feature_shape)`; labels_train `(n,)` ints in [0, num_classes).
      x_test: `(m, *feature_shape)`; labels_test `(m,)`.
      num_classes: the dataset's number of classes.
      labels: "semantic" (the dataset's) or "random" (train labels drawn uniformly from the
        classes, independent of the inputs).
      inputs: "real", "gaussian" (iid standard normal of the same shape, train and test) or
        "permuted" (one fixed random permutation of the flattened features, train and test).
      classes: merge the classes at random into this many (None: keep them).
      seed: seeds every draw.

    Returns:
      A `Variant`.
    """
    num_classes = check_int("num_classes", num_classes, minimum=2)
    labels = check_choice("labels", labels, LABELS)
    inputs = check_choice("inputs", inputs, INPUTS)
    seed = check_int("seed", seed, minimum=0)
    x_train, x_test = np.asarray(x_train), np.asarray(x_test)
    if x_train.shape[1:] != x_test.shape[1:]:
        fail("x_test", f"inputs of shape (m, {x_train.shape[1:]})", describe(x_test))
    y_train = _labels_array("labels_train", labels_train, x_train.shape[0], num_classes)
    y_test = _labels_array("labels_test", labels_test, x_test.shape[0], num_classes)
    k = num_classes if classes is None else check_int("classes", classes, minimum=2)
    if k > num_classes:
        fail("classes", f"an int in [2, {num_classes}] (the dataset's classes)", repr(k))
    cmap = np.arange(num_classes) if k == num_classes else merge_map(num_classes, k, seed)
    y_train, y_test = cmap[y_train], cmap[y_test]
    rng = np.random.default_rng([seed, 11])
    if labels == "random":
        y_train = rng.integers(0, k, size=y_train.shape[0])
    if inputs == "gaussian":
        x_train = rng.standard_normal(x_train.shape)
        x_test = rng.standard_normal(x_test.shape)
    elif inputs == "permuted":
        perm = rng.permutation(int(np.prod(x_train.shape[1:])))
        x_train = x_train.reshape(x_train.shape[0], -1)[:, perm].reshape(x_train.shape)
        x_test = x_test.reshape(x_test.shape[0], -1)[:, perm].reshape(x_test.shape)
    return Variant(
        x_train,
        y_train,
        x_test,
        y_test,
        k,
        {"labels": labels, "inputs": inputs, "classes": k},
        cmap,
    )
