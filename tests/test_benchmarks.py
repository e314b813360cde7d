"""Smoke test of the benchmark scripts: tiny sizes, JSON schema only, no timing assertions."""
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"

TIMING_KEYS = {"first_call_s", "times_s", "median_s", "compile_s_est"}
META_KEYS = {"date_utc", "cpu_count", "jax", "jaxlib", "jaxdyn", "device", "repeats", "dtype",
             "machine_may_be_loaded"}


def _run(args, tmp_path):
    proc = subprocess.run([sys.executable, *map(str, args)], check=False, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_ntk_benchmark_writes_schema(tmp_path):
    out = tmp_path / "ntk.json"
    _run([BENCH / "ntk.py", "--tiny", "--no-subprocess", "--sizes", "8", "--cnn-n", "4",
          "--batch-sizes", "none", "4", "--methods", "auto", "--repeats", "1",
          "--out", out], tmp_path)
    data = json.loads(out.read_text())
    assert data["benchmark"] == "ntk"
    assert META_KEYS <= set(data["meta"])
    # mlp n=8: unbatched and b=4; cnn n=4: unbatched only (b=4 is not below n)
    assert len(data["results"]) == 3
    for r in data["results"]:
        assert r["status"] == "ok", r
        assert {"model", "n", "batch_size", "method", "resolved_method", "peak_rss_mib",
                "contraction_flops", "effective_gflops_per_s", "num_params"} <= set(r)
        assert TIMING_KEYS <= set(r)
        assert r["kernel_shape"] == [r["n"], r["n"]] and r["finite"]
        assert r["resolved_method"] in ("jacobian", "ntvp")
    assert {r["model"] for r in data["results"]} == {"mlp", "cnn"}
    traces = {(r["model"], r["batch_size"], r["method"]): r["kernel_trace"] for r in data["results"]}
    assert abs(traces[("mlp", None, "auto")] - traces[("mlp", 4, "auto")]) < 1e-3 * abs(
        traces[("mlp", None, "auto")])


def test_ntk_help_documents_options(tmp_path):
    text = _run([BENCH / "ntk.py", "--help"], tmp_path).stdout
    for opt in ("--sizes", "--methods", "--batch-sizes", "--repeats", "--timeout", "--x64", "--tiny"):
        assert opt in text


def test_dynamics_benchmark_writes_schema(tmp_path):
    out = tmp_path / "dyn.json"
    _run([BENCH / "dynamics.py", "--tiny", "--out", out], tmp_path)
    data = json.loads(out.read_text())
    assert data["benchmark"] == "dynamics"
    assert META_KEYS <= set(data["meta"])
    res = data["results"]
    assert set(res) == {"closed_form", "ensemble", "scan_vs_loop"}
    for section, keys in (("closed_form", ("closed_form", "scan_gd_steps")),
                          ("ensemble", ("vmap", "sequential")),
                          ("scan_vs_loop", ("scan_jit", "python_loop"))):
        for k in keys:
            assert TIMING_KEYS <= set(res[section][k])
        assert res[section]["max_abs_diff"] < 1e-3      # both sides compute the same thing
    assert res["closed_form"]["output_shape"][0] == res["closed_form"]["time_points"]
