"""Test configuration: float64 and loud rank promotion, as the exact tier needs."""
import pathlib

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

REFS = pathlib.Path(__file__).parent / "refs" / "nt_refs.npz"


@pytest.fixture(scope="session")
def nt_refs():
    """Reference values written by neural-tangents 0.6.5 (see tests/refs/README.md)."""
    with np.load(REFS, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
