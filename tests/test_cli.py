"""The `jaxdyn` command and the linear-vs-real experiment at tiny size, including resuming
after the process is killed midway. The protocol itself (flags from a settings dataclass,
presets) is tested on a toy experiment in test_runner.py."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxdyn import cli
from jaxdyn.experiments import EXPERIMENTS, _runner, linear_vs_real

TINY = ["--n-train", "16", "--n-test", "8", "--steps", "20", "--record-every", "10", "--seeds", "1"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny finished run (widths 16 and 32), shared by the tests that read or rerun it."""
    out = tmp_path_factory.mktemp("cli") / "run"
    argv = ["run", "linear-vs-real", "--out", str(out), "--widths", "16", "32", "--quiet", *TINY]
    # experiments must not touch the global x64 flag: run with it off and check it stays off
    with jax.enable_x64(False):
        code = cli.main(argv)
        x64_after = jax.config.jax_enable_x64
    return out, argv, code, x64_after


def test_list_and_info(capsys):
    assert cli.main(["list"]) == 0
    assert re.search(r"^linear-vs-real +wide networks", capsys.readouterr().out, re.M)
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "jax: " in out and "device 0" in out
    # says what is true: the global default, and that experiments run float64 locally
    assert f"x64 enabled (global JAX default): {jax.config.jax_enable_x64}" in out
    assert "float64" in out and "--dtype" in out


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "linear-vs-real", "--help"])
    text = capsys.readouterr().out
    for spec in _runner.field_specs(linear_vs_real.Settings):
        assert _runner.flag(spec.name) in text
    for flag in ("--out", "--seed", "--size", "--quiet"):
        assert flag in text
    assert "resumes" in text


def test_flags_give_the_settings_and_presets():
    def parse(*argv):
        args = cli._parser().parse_args(["run", "linear-vs-real", *argv])
        return _runner.settings_from_args(linear_vs_real, args)

    assert parse() == linear_vs_real.Settings()
    small = linear_vs_real.PRESETS["small"]
    assert parse("--size", "small") == linear_vs_real.Settings(**small)
    assert parse(
        "--size", "small", "--widths", "8", "16", "--dtype", "float32"
    ) == linear_vs_real.Settings(**{**small, "widths": (8, 16), "dtype": "float32"})


def test_run_writes_results_and_figures(tiny_run, capsys):
    out, _, code, x64_after = tiny_run
    assert code == 0 and x64_after is False
    res = json.loads((out / "results.json").read_text())
    for key in ("plateau_rmse_slope", "kernel_change_slope", "weight_change_slope"):
        assert isinstance(res[key], float)
    assert [r["width"] for r in res["per_width"]] == [16, 32]
    assert res["environment"]["jax"] and res["settings"]["widths"] == [16, 32]
    assert res["environment"]["x64_enabled"] is True  # float64 inside the run
    for name in res["figures"]:
        assert (out / name).stat().st_size > 5000
    point = json.loads((out / "points" / "width16_seed0.json").read_text())
    # the linearized network trained by optax SGD is the closed form, to rounding
    assert max(point["rmse_lin_closed_form_test"]) < 1e-10
    # results.json summarises that agreement: the worst over every point file and step
    points = [json.loads(p.read_text()) for p in (out / "points").glob("width*.json")]
    worst = max(points, key=lambda p: max(p["rmse_lin_closed_form_test"]))
    agree = res["linearized_vs_closed_form"]
    assert agree["max_rmse"] == max(worst["rmse_lin_closed_form_test"]) < 1e-10
    assert (agree["width"], agree["seed"]) == (worst["width"], worst["seed"])
    # the closed-form loss curve (predict.loss, in the kernel's eigenbasis) against the loss
    # recorded while optax trained the linearized network: equal up to rounding
    np.testing.assert_allclose(point["loss_closed_form"], point["loss_lin"], rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize(
    "argv, flag, got",
    [
        (["--learning-rate", "nan"], "--learning-rate", "nan"),
        (["--momentum", "1.0", "--optimizer", "momentum"], "--momentum", "1.0"),
        (["--widths", "8"], "--widths", "[8]"),
        (["--steps", "25"], "--steps", "25"),
    ],
)
def test_bad_settings_are_refused_before_the_folder_is_claimed(tmp_path, capsys, argv, flag, got):
    out = tmp_path / "run"
    assert cli.main(["run", "linear-vs-real", "--out", str(out), "--quiet", *TINY, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert f"`{flag}` must be" in err and f"got {got}" in err and "\n" not in err
    assert "metrics" not in err  # no internal argument names
    assert not out.exists()  # so the corrected command is not refused


def test_changed_settings_are_refused_naming_the_setting(tiny_run, capsys):
    out, argv, code, _ = tiny_run
    assert code == 0
    before = sorted(p.name for p in out.rglob("*"))
    assert cli.main([*argv, "--learning-rate", "0.5"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"learning_rate\W+1\.0 -> 0\.5", err) and "n_train" not in err
    assert sorted(p.name for p in out.rglob("*")) == before


def test_out_that_is_a_file_is_one_line_error(tmp_path, capsys):
    path = tmp_path / "a_file"
    path.write_text("x")
    assert (
        cli.main(
            ["run", "linear-vs-real", "--out", str(path), "--quiet", "--widths", "8", "16", *TINY]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "file" in err and str(path) in err and "\n" not in err and "Traceback" not in err


def test_out_in_a_read_only_folder_is_one_line_error(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as root: a read-only folder is still writable")
        assert (
            cli.main(
                [
                    "run",
                    "linear-vs-real",
                    "--out",
                    str(folder / "run"),
                    "--quiet",
                    "--widths",
                    "8",
                    "16",
                    *TINY,
                ]
            )
            == 2
        )
        err = capsys.readouterr().err.strip()
        assert str(folder) in err and "\n" not in err and "Traceback" not in err
    finally:
        folder.chmod(0o755)


KILLED_SWEEP = """
import sys, time
from jaxdyn import sweep
def point(width):
    time.sleep(0.5)  # long enough for the test to kill the process between points
    return {"width2": width * width}
sweep.sweep(point, {"width": [8, 16, 24, 32]}, sys.argv[1], settings={"kind": "toy"})
"""


def test_killed_sweep_keeps_every_finished_point(tmp_path):
    """SIGKILL between points of a sweep in a subprocess: the files present are complete, a
    rerun loads them as they are (same inode) and computes only the rest. The full CLI run
    killed the same way is the slow twin below."""
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-c", KILLED_SWEEP, str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    points, deadline = out / "points", time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if points.exists() and list(points.glob("width*.json")):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the sweep finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name: (p.read_text(), p.stat().st_ino) for p in points.glob("width*.json")}
    assert 1 <= len(done) < 4
    for text, _ in done.values():
        json.loads(text)  # every file present is complete
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    names = sorted(p.name for p in points.glob("width*.json"))
    assert names == sorted(f"width{w}.json" for w in (8, 16, 24, 32))
    for name, (text, inode) in done.items():  # kept as they were, not rewritten
        assert (points / name).read_text() == text and (points / name).stat().st_ino == inode


@pytest.mark.slow  # two processes that each compile the main job (~30 s)
def test_killed_run_resumes_without_losing_points(tmp_path):
    out = tmp_path / "run"
    widths = ["8", "16"]  # killed after the first point file: one kept, one computed on rerun
    cmd = [
        sys.executable,
        "-m",
        "jaxdyn",
        "run",
        "linear-vs-real",
        "--out",
        str(out),
        "--widths",
        *widths,
        *TINY[:4],
        "--steps",
        "10",
        "--record-every",
        "10",
        "--seeds",
        "1",
    ]
    proc = subprocess.Popen([*cmd, "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    points = out / "points"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if points.exists() and list(points.glob("width*.json")):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "run finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name: (p.read_text(), p.stat().st_ino) for p in points.glob("width*.json")}
    assert 1 <= len(done) < len(widths)
    for text, _ in done.values():
        json.loads(text)  # every file present is complete
    assert not (out / "results.json").exists()
    # rerun with the progress bar: it names the points it loaded instead of computing them
    rerun = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    res = json.loads((out / "results.json").read_text())
    assert len(res["per_width"]) == len(widths)
    cached = set(re.findall(r"width (\d+) seed 0 \(cached\)", rerun.stderr))
    assert cached == {name[len("width") : -len("_seed0.json")] for name in done}
    for name, (text, inode) in done.items():  # kept as they were, not rewritten
        assert (points / name).read_text() == text and (points / name).stat().st_ino == inode
    assert os.path.exists(out / "scaling.png")


def test_experiment_registry():
    assert set(EXPERIMENTS) == {
        "linear-vs-real",
        "modular-addition",
        "phase-diagram",
        "condensation",
        "emc",
        "frequency-principle",
        "mscale",
        "frequency-highd",
        "frequency-image",
        "two-point",
        "rich-lazy",
        "xor",
        "representation-digits",
    }
    assert EXPERIMENTS["linear-vs-real"] is linear_vs_real
    with pytest.raises(ValueError, match="activation"):
        linear_vs_real.Config(activation="softplus").validate()
