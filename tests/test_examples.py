"""The scripts in examples/ run end to end at small size (quickstart.py is the README's
"Quickstart script" section; network_vs_kernel.py its network-vs-kernel example). The README's
first command, `jaxdyn run linear-vs-real`, is tested in tests/test_cli.py; the examples'
figures are checked for labels, cheaply, in tests/test_figures.py."""

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_quickstart_runs_and_linearized_matches_closed_form(tmp_path):
    out = tmp_path / "qs"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "quickstart.py"),
            "--width",
            "64",
            "--steps",
            "40",
            "--n-train",
            "8",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    res = json.loads((out / "results.json").read_text())
    assert (out / "quickstart.png").stat().st_size > 10_000
    # the linearized network under optax SGD is the closed form, to float64 rounding
    assert max(r["rmse_lin_vs_closed_form"] for r in res["rows"]) < 1e-10
    assert res["rows"][-1]["loss_closed_form"] < res["rows"][0]["loss_closed_form"]


@pytest.mark.slow  # ~9 s; the same API runs in the README blocks and the notebooks
def test_network_vs_kernel_example_runs(tmp_path):
    out = tmp_path / "nvk"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "network_vs_kernel.py"),
            "--width",
            "64",
            "--seeds",
            "3",
            "--steps",
            "50",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    res = json.loads((out / "results.json").read_text())
    assert (out / "network_vs_kernel.png").stat().st_size > 10_000
    # even at width 64 the ensemble mean is within a few sigma of the infinite-width mean
    assert res["rmse_mean"] < 5 * res["mean_std"] and 0 < res["fraction_inside_2_sigma"] <= 1
