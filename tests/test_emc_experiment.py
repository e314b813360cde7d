"""The `emc` experiment at tiny size: CLI, results.json schema, figures, resume after an
interruption, validation, and the headline / generalization bookkeeping on planted records.

The headline orderings at experiment scale are `slow` tests (run with `-m slow`)."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
import pytest

from jaxdyn import cli
from jaxdyn.analysis import emc as emc_lib
from jaxdyn.experiments import EXPERIMENTS, emc, emc_studies, validate

# one model, one bucket of sizes (16 and 32 pad to 32): one compilation for both label kinds
ARGV = [
    "--widths", "8", "--seeds", "2", "--learning-rates", "0.3", "--max-steps", "400",
    "--patience", "400", "--n-min", "16", "--n-max", "32", "--precision", "0.5",
    "--n-test", "40", "--quiet",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("emc") / "run"
    assert cli.main(["run", "emc", *ARGV, "--out", str(out)]) == 0
    return out


def test_registered():
    assert EXPERIMENTS["emc"] is emc


def test_results_schema(tiny):
    res = json.loads((tiny / "results.json").read_text())
    assert res["settings"]["study"] == "labels" and res["settings"]["widths"] == [8]
    recs = res["records"]
    assert [r["labels"] for r in recs] == ["semantic", "random"]
    model = emc_lib.mlp((40,), 10, width=8, depth=2)
    for r in recs:
        for k in ("architecture", "width", "depth", "activation", "inputs", "classes"):
            assert k in r
        assert r["optimizer"] == "sgd" and r["inputs"] == "real" and r["classes"] == 10
        assert r["num_params"] == model.num_params
        assert r["seeds"] == [0, 1] and r["learning_rates"] == [0.3]
        lo, hi = r["bracket"]
        assert r["emc"] == lo and (hi is None or hi > lo)
        tried = [t["n"] for t in r["outcomes"]]
        assert tried[0] == 16 and len(tried) == len(set(tried))
        for t in r["outcomes"]:
            assert len(t["fitted"]) == 1 and len(t["fitted"][0]) == 2  # (rates, seeds)
            assert t["fitted_n"] == emc_lib.passes(sum(t["fitted"][0]), 2, "half")
            for reason in t["reason"][0]:
                assert reason in emc_lib.REASONS
        if r["emc"] is not None:
            assert r["learning_rate"] == 0.3 and 0 <= r["test_accuracy"] <= 1
    assert {"stopping_rule", "seed_rule", "headlines", "generalization"} <= set(res)
    assert res["headlines"][0]["headline"] == "semantic > random labels"


def test_figures(tiny):
    from matplotlib.image import imread

    from jaxdyn.experiments import emc_plots

    res = json.loads((tiny / "results.json").read_text())
    assert res["figures"] == list(emc_plots.FIGURES)
    for name in emc_plots.FIGURES:
        assert imread(tiny / name).shape[0] > 100
    fig = emc_plots.params_figure(res["records"])
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "n = parameters" in [t.get_text() for t in ax.get_legend().get_texts()]
    for each in (
        fig,
        emc_plots.classes_figure(res["records"]),
        emc_plots.gap_figure(res["generalization"], None),
    ):
        for ax in each.axes:
            assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()


def test_resume_after_interruption(tiny, tmp_path, monkeypatch):
    calls = []
    real = emc_lib.fits

    def counting(*args, **kwargs):
        calls.append(args[1].shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(emc_lib, "fits", counting)
    # a rerun into a finished folder refits nothing and rewrites the same records
    before = json.loads((tiny / "results.json").read_text())
    assert cli.main(["run", "emc", *ARGV, "--out", str(tiny)]) == 0
    assert calls == []
    after = json.loads((tiny / "results.json").read_text())
    assert [r["emc"] for r in after["records"]] == [r["emc"] for r in before["records"]]

    # interrupted after two fits: the rerun does every other fit, and only those
    class Interrupt(Exception):
        pass

    def interrupted(*args, **kwargs):
        if len(calls) == 2:
            raise Interrupt
        return counting(*args, **kwargs)

    out = tmp_path / "again"
    monkeypatch.setattr(emc_lib, "fits", interrupted)
    with pytest.raises(Interrupt):
        emc.run(emc.Settings(**_settings()), out)
    assert len(list((out / "points").glob("*.json"))) == 2 and not (out / "results.json").exists()
    monkeypatch.setattr(emc_lib, "fits", counting)
    calls.clear()
    res = emc.run(emc.Settings(**_settings()), out)
    total = sum(len(r["outcomes"]) for r in before["records"])
    assert len(calls) == total - 2
    assert [r["emc"] for r in res["records"]] == [r["emc"] for r in before["records"]]


def _settings():
    return dict(
        widths=(8,), seeds=2, learning_rates=(0.3,), max_steps=400, patience=400, n_min=16,
        n_max=32, precision=0.5, n_test=40,
    )  # fmt: skip


@pytest.mark.parametrize(
    "extra, flag",
    [
        (["--n-min", "64", "--n-max", "32"], "--n-min"),
        (["--optimizers", "lbfgs"], "--optimizers"),
        (["--class-counts", "11"], "--class-counts"),
        (["--precision", "1.5"], "--precision"),
        (["--dataset", "digits", "--n-max", "1780"], "--n-max"),
    ],
)
def test_bad_settings_refused_before_the_folder_exists(tmp_path, capsys, extra, flag):
    out = tmp_path / "never"
    assert cli.main(["run", "emc", *ARGV, *extra, "--out", str(out)]) == 2
    assert flag in capsys.readouterr().err
    assert not out.exists()


# --------------------------------------------------------------------------- bookkeeping


def _record(emc_value, per_seed, params, test=None, **run):
    base = dict(
        architecture="mlp", width=32, depth=2, activation="relu", labels="semantic",
        inputs="real", classes=10, optimizer="sgd",
    )  # fmt: skip
    base.update(run)
    return dict(
        base, emc=emc_value, per_seed_emc=per_seed, num_params=params, test_accuracy=test,
        train_accuracy=1.0,
    )  # fmt: skip


def test_headlines_on_planted_records():
    recs = [
        _record(800, [700, 900], 2000, test=0.6, width=16),
        _record(300, [250, 350], 2000, labels="random", width=16),
        _record(1600, [1500, 1700], 4000, test=0.7),
        _record(1500, [1400, 1800], 4000, labels="random"),
        _record(1700, [1600, 1800], 4000, optimizer="gd"),
        _record(1000, [900, 1100], 4000, activation="tanh"),
        _record(2000, [1900, 2100], 4200, test=0.9, architecture="cnn", width=14),
        _record(3000, [3000, 3000], 8000, test=0.8, width=64),
    ]
    by = {h["headline"]: h for h in emc_studies.headlines(recs)}
    sem = by["semantic > random labels"]
    assert sem["holds"] and sem["holds_in"] == "2/2"
    assert [p["holds_for_every_seed"] for p in sem["pairs"]] == [True, False]
    assert not by["SGD >= full-batch GD"]["holds"]  # 1600 < 1700
    assert by["ReLU > tanh"]["holds"]
    cnn = by["CNN > MLP at equal parameters"]
    assert cnn["holds"] and cnn["pairs"][0]["params_b"] == 4000  # 4200 vs 4000: matched
    grows = by["EMC grows with parameter count"]
    assert grows["holds"] and grows["trends"][0]["spearman"] == pytest.approx(1.0)
    rows = emc_studies.generalization_rows(recs)
    assert [r["emc_gap"] for r in rows] == pytest.approx([500 / 800, 100 / 1600])
    assert [r["generalization_gap"] for r in rows] == pytest.approx([0.4, 0.3])
    assert emc_studies.correlation(rows) is None  # fewer than 3 models


def test_per_seed_emc():
    trials = [
        dict(n=10, fitted=[[True, True]]),
        dict(n=20, fitted=[[False, True]]),
        dict(n=40, fitted=[[True, False]]),  # above seed 0's first failure: ignored
    ]
    assert emc.per_seed_emc(trials, [0, 1]) == [10, 20]


def test_study_runs_match_the_settings():
    s = emc.Settings(study="all")
    runs = emc_studies.runs_of(s, (40,))
    tags = [tuple(r.values()) for _, r in runs]
    assert len(tags) == len(set(tags))
    studies = {st for st, _ in runs}
    assert studies <= set(emc_studies.STUDIES)
    arch = emc_studies.study_runs("architectures", s, (40,))
    for mlp_run, cnn_run in zip(arch[::2], arch[1::2]):
        p_mlp = emc.build_model("mlp", mlp_run["width"], 2, "relu", (40,), 10).num_params
        p_cnn = emc.build_model("cnn", cnn_run["width"], 2, "relu", (40,), 10).num_params
        assert abs(p_cnn / p_mlp - 1) < 0.25


# --------------------------------------------------------------------------- headlines (slow)


@pytest.mark.slow
def test_semantic_beats_random_and_emc_grows_with_width(tmp_path):
    """The `small` preset of the labels study (MLPs of width 8 and 16 on MNIST-1D, 2 seeds):
    semantic labels are fitted in larger numbers than random ones at every width, and the
    EMC grows with the width for both. About a minute of CPU."""
    res = emc.run(emc.Settings(**emc.PRESETS["small"]), tmp_path / "labels")
    recs = {(r["width"], r["labels"]): r for r in res["records"]}
    for w in (8, 16):
        assert recs[w, "semantic"]["emc"] > recs[w, "random"]["emc"]
    for labels in ("semantic", "random"):
        assert recs[16, labels]["emc"] > recs[8, labels]["emc"]


def test_fashion_mnist_is_read_from_its_idx_files(tmp_path, monkeypatch):
    """`--dataset fashion_mnist` reads the IDX files (here tiny ones written by the test) as
    28 x 28 images with their labels; without the files the error says how to install them."""
    from test_data import write_mnist_dir

    written = write_mnist_dir(tmp_path / "fashion-mnist", n_train=12, n_test=6, side=28)
    monkeypatch.setenv("JAXDYN_DATA", str(tmp_path))
    settings = emc.Settings(dataset="fashion_mnist", n_max=12, n_test=6, n_min=4)
    x, y, xt, yt = emc.load_data(settings)
    assert x.shape == (12, 28, 28) and xt.shape == (6, 28, 28) and x.dtype == np.float32
    assert sorted(y.tolist()) == sorted(written["train"][1].tolist())
    assert sorted(yt.tolist()) == sorted(written["t10k"][1].tolist())
    with pytest.raises(ValueError, match="n_max"):
        validate(dataclasses.replace(settings, n_max=60001))
    if not pathlib.Path("/usr/share/datasets/fashion-mnist").exists():
        monkeypatch.setenv("JAXDYN_DATA", str(tmp_path / "missing"))
        with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
            emc.load_data(settings)
