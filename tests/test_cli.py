"""The `jaxdyn` command and the linear-vs-real experiment at tiny size, including resuming
after the process is killed midway."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from jaxdyn import cli
from jaxdyn.experiments import EXPERIMENTS, linear_vs_real

TINY = ["--n-train", "16", "--n-test", "8", "--steps", "20", "--record-every", "10", "--seeds", "1"]


def test_list_and_info(capsys):
    assert cli.main(["list"]) == 0
    assert "linear-vs-real" in capsys.readouterr().out
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "jax " in out and "device 0" in out


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "linear-vs-real", "--help"])
    text = capsys.readouterr().out
    for flag, _ in linear_vs_real.options():
        assert flag in text
    assert "--out" in text and "resumes" in text


def test_run_writes_results_and_figures(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["run", "linear-vs-real", "--out", str(out), "--widths", "16", "32", "64",
                     "--quiet", *TINY]) == 0
    res = json.loads((out / "results.json").read_text())
    for key in ("plateau_rmse_slope", "kernel_change_slope", "weight_change_slope"):
        assert isinstance(res[key], float)
    assert [r["width"] for r in res["per_width"]] == [16, 32, 64]
    assert res["environment"]["jax"] and res["settings"]["widths"] == [16, 32, 64]
    for name in res["figures"]:
        assert (out / name).stat().st_size > 5000
    point = json.loads((out / "points" / "width16_seed0.json").read_text())
    # the linearized network trained by optax SGD is the closed form, to rounding
    assert max(point["rmse_lin_closed_form_test"]) < 1e-10
    assert "fitted log-log slopes" in capsys.readouterr().out


def test_bad_option_and_changed_settings(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["run", "linear-vs-real", "--out", str(out), "--steps", "25", "--quiet", *TINY[:4]]) == 2
    assert "record_every" in capsys.readouterr().err
    assert cli.main(["run", "linear-vs-real", "--out", str(out), "--widths", "8", "16", "--quiet", *TINY]) == 0
    assert cli.main(["run", "linear-vs-real", "--out", str(out), "--widths", "8", "16", "--quiet",
                     *TINY, "--learning-rate", "0.5"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_killed_run_resumes_without_losing_points(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "jaxdyn", "run", "linear-vs-real", "--out", str(out), "--quiet",
           "--widths", "8", "16", "24", "32", "40", "48", "56", "64", *TINY]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    points = out / "points"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if points.exists() and len(list(points.glob("width*.json"))) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name: p.read_text() for p in points.glob("width*.json")}
    assert 2 <= len(done) < 8
    for text in done.values():
        json.loads(text)                  # every file present is complete
    assert not (out / "results.json").exists()
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    res = json.loads((out / "results.json").read_text())
    assert len(res["per_width"]) == 8
    for name, text in done.items():        # points computed before the kill were kept as they were
        assert (points / name).read_text() == text
    assert os.path.exists(out / "scaling.png")


def test_experiment_registry():
    assert set(EXPERIMENTS) == {"linear-vs-real"}
    with pytest.raises(ValueError, match="activation"):
        linear_vs_real.Config(activation="softplus").validate()
