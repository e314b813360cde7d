"""Smoke test of benchmarks/modular.py at tiny sizes: JSON schema and the agreement of the
compared implementations, no timing assertions. Marked slow (a subprocess that compiles
five trainers, ~10 CPU-seconds) to keep the default suite within its time budget."""

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_modular_benchmark_writes_schema(tmp_path):
    out = tmp_path / "modular.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "modular.py"), "--tiny", "--out", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["benchmark"] == "modular" and data["schema_version"] == 1
    assert {"date_utc", "cpu_count", "jax", "jaxdyn", "device", "dtype"} <= set(data["meta"])
    res = data["results"]
    assert set(res) == {"layout", "sweep_vs_loop", "large"}
    for key in ("grid", "gather"):
        assert {"first_call_s", "median_s", "median_cpu_s"} <= set(res["layout"][key])
    # the same runs computed two ways: float32 rounding apart (4 epochs)
    assert res["layout"]["max_rel_diff_final_weights"] < 1e-4
    assert res["sweep_vs_loop"]["runs"] == 4
    assert res["sweep_vs_loop"]["max_rel_diff_final_weights"] < 1e-4
    large = res["large"]
    assert large["extrapolated"] and large["target_epochs"] == 10
    assert large["target_epochs_cpu_s"] == pytest.approx(10 * large["cpu_seconds_per_epoch"])
