"""Test configuration: float64 and loud rank promotion, as the exact tier needs; the versions
the run resolved in the report header (CI installs the newest releases on every run)."""

import importlib.metadata
import os
import pathlib
import platform

# Most tests compile small programs and run them for milliseconds, so LLVM's backend
# optimization is much of the suite's time: at level 0, without LLVM's expensive passes, the
# same tests take about 30% less CPU (tests/test_train.py + tests/test_frequency_principle.py:
# 67 s -> 47 s).
# XLA's HLO passes (fusion, simplification) still run and fast-math stays off, so the arithmetic
# the tests check is the same. Set before jax is imported; subprocesses and notebook kernels
# inherit it. JAXDYN_TEST_XLA_OPT=1 runs the suite with XLA's default optimization.
if os.environ.get("JAXDYN_TEST_XLA_OPT") != "1" and "optimization_level" not in os.environ.get(
    "XLA_FLAGS", ""
):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    ).strip()

import jax  # noqa: E402  (after XLA_FLAGS)
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
        f"jax backend {jax.default_backend()}, {jax.device_count()} device(s), "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}",
    ]


@pytest.fixture(scope="session")
def nt_refs():
    """Reference values written by neural-tangents 0.6.5 (see tests/refs/README.md)."""
    with np.load(REFS, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
