"""The README's first command runs examples/quickstart.py; keep it working (small size)."""
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_quickstart_runs_and_linearized_matches_closed_form(tmp_path):
    out = tmp_path / "qs"
    subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), "--width", "64",
                    "--steps", "40", "--n-train", "8", "--out", str(out)], check=True,
                    capture_output=True, text=True, timeout=300)
    res = json.loads((out / "results.json").read_text())
    assert (out / "quickstart.png").stat().st_size > 10_000
    # the linearized network under optax SGD is the closed form, to float64 rounding
    assert max(r["rmse_lin_vs_closed_form"] for r in res["rows"]) < 1e-10
    assert res["rows"][-1]["loss_closed_form"] < res["rows"][0]["loss_closed_form"]
