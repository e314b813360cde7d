"""The tree stays formatted and lint-clean under the configuration in pyproject.toml (ruff)."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    exe = pathlib.Path(sys.executable).with_name("ruff")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("ruff")
    if found is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
    return [found]


@pytest.mark.parametrize(
    "args",
    [["check", "."], ["format", "--check", "--exclude", "*.ipynb", "."]],
    ids=["check", "format"],
)
def test_ruff(args):
    proc = subprocess.run(_ruff() + args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"ruff {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
