"""`load(name, **kwargs)`: every dataset by name."""

from __future__ import annotations

from typing import Any

from jaxdyn._checks import fail
from jaxdyn.data._datasets import Dataset
from jaxdyn.data._file_datasets import cifar10, fashion_mnist, mnist
from jaxdyn.data._real import digits, mnist1d
from jaxdyn.data._synthetic import modular_addition, multi_frequency_1d, parity, two_points, xor

DATASETS = (
    "digits",
    "mnist1d",
    "multi_frequency_1d",
    "xor",
    "parity",
    "two_points",
    "modular_addition",
    "fashion_mnist",
    "mnist",
    "cifar10",
)

_LOADERS = {
    "digits": digits,
    "mnist1d": mnist1d,
    "multi_frequency_1d": multi_frequency_1d,
    "xor": xor,
    "parity": parity,
    "two_points": two_points,
    "modular_addition": modular_addition,
    "fashion_mnist": fashion_mnist,
    "mnist": mnist,
    "cifar10": cifar10,
}


def load(name: str, **kwargs: Any) -> Dataset:
    """Loads dataset `name`, passing `kwargs` to its loader.

    Args:
      name: one of `DATASETS`.
      **kwargs: the keyword arguments of that loader (e.g. `data_dir=` for the file-based ones).

    Returns:
      The loader's `Dataset`.

    Raises:
      TypeError: `name` is not a str.
      ValueError: `name` is not one of `DATASETS`.
    """
    if not isinstance(name, str):
        fail("name", f"a str, one of {DATASETS}", type(name).__name__, TypeError)
    if name not in _LOADERS:
        fail("name", f"one of {DATASETS}", repr(name))
    return _LOADERS[name](**kwargs)
