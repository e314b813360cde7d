"""Test configuration: float64 and loud rank promotion, as the exact tier needs; the versions
the run resolved in the report header (CI installs the newest releases on every run)."""

import importlib.metadata
import pathlib
import platform

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

REFS = pathlib.Path(__file__).parent / "refs" / "nt_refs.npz"
PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "numpy",
    "scipy",
    "matplotlib",
    "scikit-learn",
    "nbclient",
    "ipykernel",
)


def pytest_report_header(config):
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} not installed")
    return [
        f"jaxdyn test run: python {platform.python_version()}, {', '.join(versions)}",
        f"jax backend {jax.default_backend()}, {jax.device_count()} device(s)",
    ]


@pytest.fixture(scope="session")
def nt_refs():
    """Reference values written by neural-tangents 0.6.5 (see tests/refs/README.md)."""
    with np.load(REFS, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
