"""The `frequency-principle` experiment: a tiny run through the CLI (results schema, stored
errors recomputed from the stored outputs, figures, resume, refused settings), the vmapped
seeds against a seed trained alone, and (slow) the headline on the default experiment."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from jaxdyn import cli
from jaxdyn.analysis import frequency
from jaxdyn.experiments import EXPERIMENTS
from jaxdyn.experiments import frequency_principle as fp

ARGV = ["--size", "small", "--max-steps", "100", "--jacobi-steps", "300", "--quiet"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("fp") / "run"
    assert cli.main(["run", "frequency-principle", *ARGV, "--out", str(out)]) == 0
    return out


def _small(**kw):
    return fp.Settings(**{**fp.PRESETS["small"], "max_steps": 100, "jacobi_steps": 300, **kw})


def test_registered(capsys):
    assert EXPERIMENTS["frequency-principle"] is fp
    assert cli.main(["list"]) == 0
    assert "frequency-principle" in capsys.readouterr().out


def test_results_schema_and_stored_errors(tiny):
    res = json.loads((tiny / "results.json").read_text())
    for key in (
        "settings",
        "environment",
        "peaks",
        "network",
        "linearized",
        "jacobi",
        "rates",
        "headline",
        "figures",
    ):
        assert key in res
    assert res["peaks"]["dft_index"] == [1, 3, 5]
    assert len(res["network"]["convergence_steps"]) == 2  # two seeds
    assert all(len(c) == 3 for c in res["linearized"]["convergence_steps"])
    assert len(res["rates"]["per_step_lfp"]) == 2 and len(res["rates"]["per_step_lfp"][0]) == 3
    assert set(res["headline"]) == {
        "network_increasing",
        "linearized_increasing",
        "jacobi_reversed",
    }
    assert res["network"]["finite"]
    # the stored errors are per_frequency_error of the stored outputs, and the convergence
    # steps follow from them
    net = json.loads((tiny / "points" / "partnetwork.json").read_text())
    x, y = fp.grid_and_target(_small())
    outputs = np.asarray(net["outputs_first_seed"])
    errors = np.asarray(frequency.per_frequency_error(outputs, y, np.array([1, 3, 5])))
    np.testing.assert_allclose(np.asarray(net["errors"][0]), errors, rtol=1e-12, atol=1e-14)
    conv = frequency.convergence_steps(errors, np.asarray(net["steps"]), 0.2)
    assert np.asarray(conv).tolist() == res["network"]["convergence_steps"][0]
    # Jacobi: the stored errors are the per-mode factors to the power of the iteration
    jac = json.loads((tiny / "points" / "partjacobi.json").read_text())
    want = np.abs(np.asarray(jac["factors"]))[None] ** np.arange(301)[:, None]
    np.testing.assert_allclose(np.asarray(jac["errors"]), want, rtol=1e-8, atol=1e-12)
    assert res["jacobi"]["decreasing"] is True


@pytest.mark.slow  # one more compiled training run (~4 s CPU): outside the default budget
def test_vmapped_seeds_equal_a_seed_trained_alone(tiny):
    """The stored first seed of the two-seed vmapped run, against seed 0 trained alone."""
    net = json.loads((tiny / "points" / "partnetwork.json").read_text())
    with jax.enable_x64(True):
        alone = fp.train_network(_small(seeds=1))
    assert alone["steps"].tolist() == net["steps"]
    np.testing.assert_allclose(
        alone["outputs"][0], np.asarray(net["outputs_first_seed"]), rtol=1e-10, atol=1e-12
    )


def test_rerun_resumes_and_other_settings_are_refused(tiny, capsys):
    point = tiny / "points" / "partnetwork.json"
    before = (point.read_text(), point.stat().st_ino)
    assert cli.main(["run", "frequency-principle", *ARGV, "--out", str(tiny)]) == 0
    assert (point.read_text(), point.stat().st_ino) == before
    code = cli.main(["run", "frequency-principle", *ARGV, "--seeds", "3", "--out", str(tiny)])
    assert code == 2 and "seeds" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, flag",
    [
        (["--frequencies", "1", "1"], "--frequencies"),
        (["--frequencies", "40"], "--frequencies"),
        (["--max-steps", "105"], "--max-steps"),
        (["--lin-lr-fraction", "1.5"], "--lin-lr-fraction"),
    ],
)
def test_bad_settings_refused_before_the_folder_exists(tmp_path, capsys, extra, flag):
    out = tmp_path / "never"
    assert cli.main(["run", "frequency-principle", *ARGV, *extra, "--out", str(out)]) == 2
    assert flag in capsys.readouterr().err
    assert not out.exists()


def test_figures_written_and_labelled(tiny):
    from jaxdyn.experiments import frequency_principle_plots as plots

    res = json.loads((tiny / "results.json").read_text())
    assert res["figures"] == list(plots.FIGURES)
    for name in plots.FIGURES:
        assert (tiny / name).read_bytes()[:4] == b"\x89PNG"
    points = {p.stem: json.loads(p.read_text()) for p in (tiny / "points").glob("*.json")}
    x, y = fp.grid_and_target(_small())
    record = dict(
        network=points["partnetwork"],
        linearized=[points["partlinearized_seed0"], points["partlinearized_seed1"]],
        jacobi=points["partjacobi"],
        x=x.tolist(),
        target=y.tolist(),
    )
    for make in (
        plots.heatmap_figure,
        plots.real_space_figure,
        plots.frequency_space_figure,
        plots.jacobi_figure,
    ):
        fig = make(res, record)
        axes = [ax for ax in fig.axes if not hasattr(ax, "_colorbar")]
        assert axes
        for ax in axes:
            assert ax.get_xlabel().strip() and ax.get_ylabel().strip() and ax.get_title().strip()


@pytest.mark.slow
def test_headline_on_the_default_experiment(tmp_path):
    """The issue's protocol at its default size: the network's and the linearization's
    convergence steps increase with frequency, Jacobi's decrease."""
    res = fp.run(fp.Settings(), tmp_path / "default")
    assert res["network"]["reached_target"]
    assert res["headline"] == dict(
        network_increasing=True, linearized_increasing=True, jacobi_reversed=True
    )


def test_nan_outputs_give_null_errors_not_a_crash():
    """A diverged record (NaN outputs) gets NaN errors there, and counts as not below."""
    _, y = fp.grid_and_target(_small())
    outputs = np.tile(y, (3, 1))
    outputs[1, 4] = np.nan
    errors = fp._errors(outputs, y, np.array([1, 3, 5]), "magnitude")
    assert np.isnan(errors[1]).all()
    np.testing.assert_allclose(errors[[0, 2]], 0.0, atol=1e-12)
    conv = frequency.convergence_steps(errors, np.arange(3), 0.1)
    assert np.asarray(conv).tolist() == [2, 2, 2]
