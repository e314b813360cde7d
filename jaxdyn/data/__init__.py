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

Layout (one concept per module; import everything from `jaxdyn.data`):

- `_datasets.py`: `Dataset`, `Split`, `split` and the transforms the loaders share.
- `_real.py`: `digits`, `mnist1d`.
- `_synthetic.py`: `multi_frequency_1d`, `xor`, `parity`, `two_points`, `modular_addition`.
- `_readers.py`: the file formats, `read_idx` and `read_cifar10_binary`.
- `_file_datasets.py`: `fashion_mnist`, `mnist`, `cifar10` (where files are looked for).
- `_load.py`: `DATASETS` and `load`.
"""

from __future__ import annotations

from jaxdyn.data._datasets import Dataset, PathLike, Split, split  # noqa: F401 (PathLike: a type)
from jaxdyn.data._file_datasets import (
    ENV_VAR,  # noqa: F401 (read by the loaders through this package)
    FASHION_MNIST_SYSTEM_DIR,  # noqa: F401 (monkeypatched by tests)
    cifar10,
    fashion_mnist,
    mnist,
)
from jaxdyn.data._load import _LOADERS, DATASETS, load  # noqa: F401 (_LOADERS: tests)
from jaxdyn.data._readers import read_cifar10_binary, read_idx
from jaxdyn.data._real import _mnist1d_templates, digits, mnist1d  # noqa: F401 (tests)
from jaxdyn.data._synthetic import modular_addition, multi_frequency_1d, parity, two_points, xor

__all__ = [
    "DATASETS",
    "Dataset",
    "Split",
    "cifar10",
    "digits",
    "fashion_mnist",
    "load",
    "mnist",
    "mnist1d",
    "modular_addition",
    "multi_frequency_1d",
    "parity",
    "read_cifar10_binary",
    "read_idx",
    "split",
    "two_points",
    "xor",
]
