"""Datasets read from files on disk: `fashion_mnist`, `mnist` (IDX files) and `cifar10`
(binary batches). Nothing is downloaded; each loader says where it looked and how to get
the files when they are missing."""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxdyn._checks import fail
from jaxdyn.data._datasets import (
    Dataset,
    PathLike,
    _check_classes,
    _check_dtype,
    _check_seed,
    _finish,
    _select_classes,
    _subsample,
)
from jaxdyn.data._readers import _PICKLE_REFUSAL, read_cifar10_binary, read_idx

ENV_VAR = "JAXDYN_DATA"
# Where `apt-get install dataset-fashion-mnist` (Debian/Ubuntu) installs the four gzipped IDX
# files (checked against dataset-fashion-mnist 0.0~git20200523.55506a9-1).
FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"

_IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_CIFAR_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_CIFAR_TEST = "test_batch.bin"


def _idx_candidates(stem: str) -> list[str]:
    # Some mirrors of MNIST name the files "train-images.idx3-ubyte".
    dotted = stem.replace("-idx", ".idx")
    return [stem, stem + ".gz", dotted, dotted + ".gz"]


def _search_dirs(
    name: str, data_dir: Any, subdir: str, system_dirs: Sequence[str]
) -> list[pathlib.Path]:
    """Folders to search, in order: `data_dir` alone when given, else `$JAXDYN_DATA/subdir`
    (when set) and then `system_dirs`."""
    if data_dir is not None:
        if isinstance(data_dir, bytes) or not isinstance(data_dir, (str, os.PathLike)):
            fail(
                f"{name}(data_dir)",
                "a folder path (str or os.PathLike) or None",
                f"{type(data_dir).__name__} {data_dir!r}",
                TypeError,
            )
        return [pathlib.Path(data_dir)]
    dirs = []
    env = os.environ.get(ENV_VAR)
    if env:
        dirs.append(pathlib.Path(env) / subdir)
    dirs.extend(pathlib.Path(d) for d in system_dirs)
    return dirs


def _not_found(
    name: str, files: str, dirs: Sequence[pathlib.Path], subdir: str, how_to_get: str
) -> FileNotFoundError:
    """The error of a loader whose files are missing: where it looked, and how to fix it."""
    if dirs:
        looked = "were not found in any of:\n" + "".join(f"  {d}\n" for d in dirs)
    else:
        looked = (
            f"were not looked for: no folder to search, since `data_dir` is None and "
            f"${ENV_VAR} is not set.\n"
        )
    return FileNotFoundError(
        f"{name}: {files} {looked}Nothing is downloaded. {how_to_get} Then pass "
        f"`{name}(data_dir=...)` (or `jaxdyn.data.load({name!r}, data_dir=...)`) with the "
        f"folder that holds them, or set {ENV_VAR} so that ${ENV_VAR}/{subdir} holds them."
    )


def _find_idx_files(dirs: list[pathlib.Path]) -> tuple[pathlib.Path, ...] | None:
    for d in dirs:
        found = []
        for stem in _IDX_STEMS:
            hit = next((d / c for c in _idx_candidates(stem) if (d / c).is_file()), None)
            found.append(hit)
        if all(h is not None for h in found):
            return tuple(found)
    return None


def _load_idx_dataset(
    name: str,
    data_dir: PathLike | None,
    subdir: str,
    system_dirs: Sequence[str],
    how_to_get: str,
    kwargs: dict,
) -> Dataset:
    dirs = _search_dirs(name, data_dir, subdir, system_dirs)
    files = _find_idx_files(dirs)
    if files is None:
        names = ", ".join(f"{s}[.gz]" for s in _IDX_STEMS)
        raise _not_found(name, f"the four IDX files ({names})", dirs, subdir, how_to_get)
    x_tr, l_tr, x_te, l_te = (read_idx(f) for f in files)
    for part, x, lab in (("train", x_tr, l_tr), ("test", x_te, l_te)):
        if x.ndim != 3 or x.dtype != np.uint8:
            raise ValueError(
                f"{name}: {part} images must be a 3D uint8 IDX array (n, h, w); "
                f"got {x.dtype} of shape {x.shape}."
            )
        if lab.ndim != 1 or lab.shape[0] != x.shape[0]:
            raise ValueError(
                f"{name}: {part} labels must be 1D with one label per image "
                f"({x.shape[0]}); got shape {lab.shape}."
            )
        if lab.size and int(lab.max()) >= 10:
            raise ValueError(f"{name}: {part} labels must be in [0, 10); got {int(lab.max())}.")
    info = {"source": tuple(str(f) for f in files)}
    return _image_dataset(name, x_tr[..., None], l_tr, x_te[..., None], l_te, info, kwargs)


def _image_dataset(
    name: str,
    x_tr: np.ndarray,
    l_tr: np.ndarray,
    x_te: np.ndarray,
    l_te: np.ndarray,
    info: dict,
    kwargs: dict,
) -> Dataset:
    # Subsample and select classes on uint8 data before converting, so a small subset of a
    # large file never materialises the full float array.
    dtype = kwargs.pop("dtype")
    classes = _check_classes(kwargs.pop("classes"), 10)
    x_tr, l_tr = _select_classes(x_tr, l_tr.astype(np.int64), classes)
    x_te, l_te = _select_classes(x_te, l_te.astype(np.int64), classes, "test")
    seed = kwargs.pop("seed")
    _check_seed(seed)
    x_tr, l_tr = _subsample(
        "n_train", x_tr, l_tr, kwargs.pop("n_train"), np.random.default_rng([seed, 0])
    )
    x_te, l_te = _subsample(
        "n_test", x_te, l_te, kwargs.pop("n_test"), np.random.default_rng([seed, 1])
    )
    dt = _check_dtype(dtype)
    k = 10 if classes is None else len(classes)
    ds = _finish(
        name,
        x_tr.astype(dt) / 255.0,
        l_tr,
        x_te.astype(dt) / 255.0,
        l_te,
        num_classes=k,
        classes=None,
        n_train=None,
        n_test=None,
        seed=seed,
        dtype=dt,
        info=info,
        **kwargs,
    )
    if classes is not None:
        ds.info["classes"] = classes
    return ds


def fashion_mnist(
    data_dir: PathLike | None = None,
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    classes: Sequence[int] | None = None,
    one_hot: bool | None = None,
    center: bool = False,
    standardize: bool = False,
    flatten: bool = True,
    seed: int = 0,
    dtype: Any = np.float64,
) -> Dataset:
    """Fashion-MNIST from its IDX files (60000 train / 10000 test 28x28 images, 10 classes).

    Looks in `data_dir` only, when given; else in `$JAXDYN_DATA/fashion-mnist`, then in
    `/usr/share/datasets/fashion-mnist` (where Debian/Ubuntu's `dataset-fashion-mnist` package
    installs `train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
    `t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz`). Files may be gzipped or not.

    Pixels are scaled to [0, 1]. Other arguments as in `digits`, with `n_train` / `n_test`
    drawing seeded subsets of the official splits; `flatten=False` gives `(n, 28, 28, 1)`.
    """
    how = (
        "Install them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or copy "
        "them from github.com/zalandoresearch/fashion-mnist (data/fashion)."
    )
    kwargs = {
        "n_train": n_train,
        "n_test": n_test,
        "classes": classes,
        "one_hot": one_hot,
        "center": center,
        "standardize": standardize,
        "flatten": flatten,
        "seed": seed,
        "dtype": dtype,
    }
    # Read through the package, so that setting `jaxdyn.data.FASHION_MNIST_SYSTEM_DIR`
    # redirects the search.
    system_dir = sys.modules["jaxdyn.data"].FASHION_MNIST_SYSTEM_DIR
    return _load_idx_dataset("fashion_mnist", data_dir, "fashion-mnist", (system_dir,), how, kwargs)


def mnist(
    data_dir: PathLike | None = None,
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    classes: Sequence[int] | None = None,
    one_hot: bool | None = None,
    center: bool = False,
    standardize: bool = False,
    flatten: bool = True,
    seed: int = 0,
    dtype: Any = np.float64,
) -> Dataset:
    """MNIST from its IDX files; looks in `data_dir`, else in `$JAXDYN_DATA/mnist`.

    Same files names, arguments and outputs as `fashion_mnist` (no system-wide default: Debian
    ships no MNIST package).
    """
    how = (
        "Copy the four standard MNIST IDX files (e.g. from a local mirror of "
        "yann.lecun.com/exdb/mnist) into one directory."
    )
    kwargs = {
        "n_train": n_train,
        "n_test": n_test,
        "classes": classes,
        "one_hot": one_hot,
        "center": center,
        "standardize": standardize,
        "flatten": flatten,
        "seed": seed,
        "dtype": dtype,
    }
    return _load_idx_dataset("mnist", data_dir, "mnist", (), how, kwargs)


def cifar10(
    data_dir: PathLike | None = None,
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    classes: Sequence[int] | None = None,
    one_hot: bool | None = None,
    center: bool = False,
    standardize: bool = False,
    flatten: bool = True,
    seed: int = 0,
    dtype: Any = np.float64,
) -> Dataset:
    """CIFAR-10 from its binary batches (50000 train / 10000 test 32x32x3 images).

    Looks in `data_dir` (or its `cifar-10-batches-bin` subfolder) when given, else in
    `$JAXDYN_DATA/cifar10` (and its `cifar-10-batches-bin`). Needs `data_batch_1.bin` ...
    `data_batch_5.bin` and `test_batch.bin`. The pickled Python version is refused.

    Pixels are scaled to [0, 1]; `flatten=False` gives NHWC `(n, 32, 32, 3)` images. Other
    arguments as in `digits` (Lee et al. 2019's binary tasks: e.g. `classes=(0, 1)` gives
    airplane -> -1, automobile -> +1).
    """
    roots = _search_dirs("cifar10", data_dir, "cifar10", ())
    dirs = [d for r in roots for d in (r, r / "cifar-10-batches-bin")]
    names = _CIFAR_TRAIN + (_CIFAR_TEST,)
    found = next((d for d in dirs if all((d / nm).is_file() for nm in names)), None)
    if found is None:
        for r in roots:
            for d in (r, r / "cifar-10-batches-py"):
                if (d / "data_batch_1").is_file():
                    raise ValueError(f"cifar10: found {d / 'data_batch_1'}: {_PICKLE_REFUSAL}")
        how = (
            "Extract cifar-10-binary.tar.gz (the binary version, from "
            "cs.toronto.edu/~kriz/cifar.html)."
        )
        raise _not_found("cifar10", ", ".join(names), dirs, "cifar10", how)
    train = [read_cifar10_binary(found / nm) for nm in _CIFAR_TRAIN]
    x_te, l_te = read_cifar10_binary(found / _CIFAR_TEST)
    x_tr = np.concatenate([t[0] for t in train])
    l_tr = np.concatenate([t[1] for t in train])
    info = {"source": tuple(str(found / nm) for nm in names)}
    kwargs = {
        "n_train": n_train,
        "n_test": n_test,
        "classes": classes,
        "one_hot": one_hot,
        "center": center,
        "standardize": standardize,
        "flatten": flatten,
        "seed": seed,
        "dtype": dtype,
    }
    return _image_dataset("cifar10", x_tr, l_tr, x_te, l_te, info, kwargs)
