"""The `phase-diagram` and `condensation` experiments: tiny runs through the CLI, the stored
numbers recomputed from the library, resume, validation, figures; the default phase diagram's
regimes against the paper's boundaries (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxdyn import cli
from jaxdyn.analysis import condensation as C
from jaxdyn.experiments import EXPERIMENTS, phase_diagram

PD = [
    "--gamma", "0.5", "1.75",
    "--gamma-prime", "-0.5", "0.0",
    "--widths", "20", "40",
    "--max-steps", "5000",
    "--quiet",
]  # fmt: skip


@pytest.fixture(scope="module")
def pd_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pd") / "run"
    assert cli.main(["run", "phase-diagram", *PD, "--out", str(out)]) == 0
    return out


def test_phase_diagram_registered():
    assert EXPERIMENTS["phase-diagram"] is phase_diagram


def test_phase_diagram_results_schema(pd_run):
    res = json.loads((pd_run / "results.json").read_text())
    for key in ("settings", "environment", "grid", "agreement", "named_points", "figures"):
        assert key in res
    assert res["rd_part"] == "input" and res["settings"]["widths"] == [20, 40]
    assert [(r["gamma"], r["gamma_prime"]) for r in res["grid"]] == [
        (0.5, -0.5),
        (0.5, 0.0),
        (1.75, -0.5),
        (1.75, 0.0),
    ]
    for r in res["grid"]:
        assert len(r["rd"]) == 2 and all(v > 0 for v in r["rd"])
        assert r["converged"] is True and r["regime"] in C.REGIMES
        assert r["theory_regime"] == C.theoretical_regime(r["gamma"], r["gamma_prime"])
        fit = C.phase_slope([20, 40], r["rd"])
        assert r["slope"] == pytest.approx(fit.slope) and r["regime"] == fit.regime
        assert len(r["lr0"]) == len(r["steps"]) == len(r["restarts"]) == 2
    assert res["agreement"]["points"] == 4


def test_phase_diagram_resumes_and_refuses_other_settings(pd_run, capsys):
    point = pd_run / "points" / "width20_seed0.json"
    before = (point.read_text(), point.stat().st_ino)
    assert cli.main(["run", "phase-diagram", *PD, "--out", str(pd_run)]) == 0
    assert (point.read_text(), point.stat().st_ino) == before
    code = cli.main(["run", "phase-diagram", *PD, "--lr0", "0.25", "--out", str(pd_run)])
    assert code == 2 and "lr0" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, flag",
    [
        (["--widths", "20"], "--widths"),
        (["--widths", "20", "21"], "--widths"),
        (["--gamma", "0.5", "0.5"], "--gamma"),
        (["--max-steps", "0"], "--max-steps"),
    ],
)
def test_phase_diagram_bad_settings_refused_before_the_folder(tmp_path, capsys, extra, flag):
    out = tmp_path / "never"
    code = cli.main(["run", "phase-diagram", *PD, *extra, "--out", str(out)])
    assert code == 2 and flag in capsys.readouterr().err
    assert not out.exists()


def test_phase_diagram_figures(pd_run):
    from jaxdyn.experiments import phase_diagram_plots as plots

    res = json.loads((pd_run / "results.json").read_text())
    assert res["figures"] == list(plots.FIGURES)
    for name in plots.FIGURES:
        assert (pd_run / name).read_bytes()[:4] == b"\x89PNG"
    for make in (plots.phase_figure, plots.rd_figure):
        fig = make(res)
        for ax in [a for a in fig.axes if not hasattr(a, "_colorbar")]:
            assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()


@pytest.mark.slow
def test_default_phase_diagram_regimes_agree_with_the_boundaries(tmp_path):
    """The default run (coarse grid, widths 1000..16000): every grid point at least 0.2 from
    a boundary line has the paper's regime, and every point converged."""
    out = tmp_path / "default"
    assert cli.main(["run", "phase-diagram", "--quiet", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["all_converged"]
    a = res["agreement"]
    assert a["points"] >= 12 and a["agree"] == a["points"], a["disagree"]
    ntk = next(r for r in res["grid"] if (r["gamma"], r["gamma_prime"]) == (0.25, -0.25))
    assert ntk["slope"] < -0.1
    assert np.all(
        [r["slope"] > 0.1 for r in res["grid"] if r["gamma"] == 1.75 and r["gamma_prime"] < 0.5]
    )


# --------------------------------------------------------------------------- condensation

CD = [
    "--t-values", "1.25",
    "--width-1d", "40",
    "--widths-d", "40",
    "--max-steps", "3000",
    "--width-5d", "12",
    "--n-5d", "10",
    "--steps-5d", "20",
    "--steps-early", "20",
    "--quiet",
]  # fmt: skip


@pytest.fixture(scope="module")
def cd_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cd") / "run"
    assert cli.main(["run", "condensation", *CD, "--out", str(out)]) == 0
    return out


@pytest.mark.slow  # the tiny run costs ~10 s of CPU, over this suite's budget
def test_condensation_results_and_figures(cd_run):
    from jaxdyn.experiments import condensation as exp
    from jaxdyn.experiments import condensation_plots as plots

    res = json.loads((cd_run / "results.json").read_text())
    assert EXPERIMENTS["condensation"] is exp
    assert [r["t"] for r in res["demo_a"]] == [1.25]
    assert all(r["converged"] for r in res["demo_a"])
    # the stored RD and directions are the library's, recomputed from the stored point
    point = json.loads((cd_run / "points" / "demoa.json").read_text())["result"]
    for r in point["runs"]:
        amp = np.asarray(r["amplitude"])
        assert amp.shape == (40,) and np.all(amp >= 0)
    assert {r["width"] for r in res["demo_d"]} == {40}
    assert all(1 <= r["effective_width"] <= r["width"] for r in res["demo_d"])
    assert set(res["demo_c"]) == {"tanh", "xtanh"}
    assert res["demo_c"]["xtanh"]["bound"] == 4
    sim = np.asarray(
        json.loads((cd_run / "points" / "demob.json").read_text())["result"]["similarity"]
    )
    assert sim.shape == (12, 12) and np.allclose(np.diag(sim), 1.0, atol=1e-4)
    assert res["figures"] == list(plots.FIGURES)
    for name in plots.FIGURES:
        assert (cd_run / name).read_bytes()[:4] == b"\x89PNG"
    points = [json.loads(p.read_text()) for p in sorted((cd_run / "points").glob("*.json"))]
    for make in (
        plots.demo_a_figure,
        plots.demo_b_figure,
        plots.demo_c_figure,
        plots.demo_d_figure,
    ):
        for ax in [a for a in make(points).axes if not hasattr(a, "_colorbar")]:
            assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()


@pytest.mark.slow
def test_condensation_resumes(cd_run):
    point = cd_run / "points" / "demob.json"
    before = (point.read_text(), point.stat().st_ino)
    assert cli.main(["run", "condensation", *CD, "--out", str(cd_run)]) == 0
    assert (point.read_text(), point.stat().st_ino) == before


def test_condensation_validates_before_the_folder(tmp_path, capsys):
    assert EXPERIMENTS["condensation"].NAME == "condensation"
    out = tmp_path / "never"
    assert cli.main(["run", "condensation", *CD, "--width-1d", "41", "--out", str(out)]) == 2
    assert "--width-1d" in capsys.readouterr().err and not out.exists()
