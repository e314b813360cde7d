"""Smoke test of benchmarks/matrix_free.py at tiny sizes: JSON schema, the Monte-Carlo section
against neural-tangents (when its pinned venv exists) or its recorded skip, no timing
assertions. Marked slow: a subprocess per run (~10 s, ~25 s with the neural-tangents workers)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NT_PYTHON = "/tmp/ntref/bin/python"


def _run(tmp_path, *extra):
    out = tmp_path / "matrix_free.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "matrix_free.py"), "--tiny", "--out", str(out)]
        + list(extra),
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["benchmark"] == "matrix_free" and data["schema_version"] == 2
    assert {"date_utc", "jax", "jaxdyn", "device", "dtype", "loadavg_at_start"} <= set(data["meta"])
    return data


def _check_jaxdyn(mc):
    jd = mc["jaxdyn"]
    assert jd["per_sample_s"] == pytest.approx(jd["median_s"] / mc["workload"]["samples"])
    assert jd["configs"] and all(c["finite"] for c in jd["configs"])
    assert jd["check"]["samples"] == 16 and jd["check"]["blocks"] == 4


@pytest.mark.slow
def test_matrix_free_benchmark_writes_schema(tmp_path):
    data = _run(tmp_path)
    res = data["results"]
    assert set(res) == {"matrix_free_vs_dense", "monte_carlo_per_sample"}
    assert [r["n"] for r in res["matrix_free_vs_dense"]] == [16, 32]
    mc = res["monte_carlo_per_sample"]
    _check_jaxdyn(mc)
    nt = mc["neural_tangents"]
    if not os.path.exists(NT_PYTHON):
        assert nt["status"] == "skipped"
        return
    assert nt["status"] == "ok", nt
    assert nt["versions"]["neural_tangents"] == "0.6.5" and nt["versions"]["jax"] == "0.4.23"
    # numpy draws from one seed in both venvs: bit-identical inputs
    assert mc["inputs_identical"]
    assert mc["ratio_nt_per_sample_over_jaxdyn"] == pytest.approx(
        nt["best"]["per_sample_s"] / mc["jaxdyn"]["per_sample_s"]
    )
    agree = mc["agreement"]
    assert agree["status"] == "ok"
    # Fixed seeds make this deterministic; the tolerance is statistical (16 samples of a width-8
    # network): both libraries estimate the same kernel, each within a few standard errors.
    for name in ("nngp_mean_diag", "ntk_mean_diag"):
        assert abs(agree[name]["z"]) < 4
        assert agree[name]["rel_diff"] < 0.5


@pytest.mark.slow
def test_matrix_free_benchmark_skips_missing_nt_venv(tmp_path):
    data = _run(tmp_path, "--sections", "monte_carlo", "--nt-python", str(tmp_path / "none"))
    mc = data["results"]["monte_carlo_per_sample"]
    assert set(data["results"]) == {"monte_carlo_per_sample"}
    _check_jaxdyn(mc)
    assert mc["neural_tangents"]["status"] == "skipped"
    assert "does not exist" in mc["neural_tangents"]["note"]
    assert mc["ratio_nt_per_sample_over_jaxdyn"] is None
    assert mc["agreement"]["status"] == "skipped"
