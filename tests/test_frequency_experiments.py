"""The `mscale` and `frequency-highd` experiments at tiny size through the CLI: results
schema, stored numbers recomputed from the library, resume, refused settings, figures; and the
MscaleDNN headline on the default settings (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxdyn import cli, data
from jaxdyn.analysis import frequency
from jaxdyn.experiments import EXPERIMENTS, frequency_highd, frequency_image, mscale

MSCALE = [
    "--size", "small", "--quiet", "--poisson-steps", "20", "--regression-steps", "20",
    "--record-every", "10", "--derivative-steps", "20", "--derivative-record-every", "10",
    "--batch", "16", "--regression-points", "16", "--subnet-width", "4", "--depth", "1",
    "--scales", "1", "4", "--derivative-widths", "8",
]  # fmt: skip
HIGHD = [
    "--size", "small", "--quiet", "--steps", "20", "--record-every", "10", "--boolean-steps",
    "20", "--n-train", "24", "--n-test", "8", "--boolean-train", "24", "--boolean-test", "8",
    "--n-bits", "5", "--hidden", "8", "--boolean-hidden", "8", "--deltas", "0.5", "3",
]  # fmt: skip


# The default tests run only the Poisson part (the CPU budget of the suite: each part compiles
# its own programs); the derivative part runs in the slow test below, the regression part in
# the slow headline run. `train.trajectory(objective=...)` itself is tested in
# test_frequency_models.py.
@pytest.fixture(scope="module")
def mscale_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mscale") / "run"
    assert cli.main(["run", "mscale", *MSCALE, "--parts", "poisson", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def highd_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("highd") / "run"
    assert cli.main(["run", "frequency-highd", *HIGHD, "--out", str(out)]) == 0
    return out


def _points(out):
    return [json.loads(p.read_text()) for p in sorted((out / "points").glob("*.json"))]


def test_registered():
    assert EXPERIMENTS["mscale"] is mscale
    assert EXPERIMENTS["frequency-highd"] is frequency_highd
    assert EXPERIMENTS["frequency-image"] is frequency_image


def test_image_data():
    img = frequency_image.gray_image("china.jpg", 8, 10)
    from sklearn.datasets import load_sample_image

    full = load_sample_image("china.jpg").astype(float).mean(axis=2) / 255  # (427, 640)
    # block (0, 0) of the centre crop: 53 x 64 pixel blocks, top offset (427 - 424) // 2 = 1
    assert img.shape == (8, 10) and img[0, 0] == pytest.approx(full[1:54, 0:64].mean())
    x = frequency_image.positions(8, 10)
    assert x.shape == (80, 2) and x[0].tolist() == [-1, -1] and x[-1].tolist() == [1, 1]
    assert x[1].tolist() == [-1, -1 + 2 / 9]  # row-major: the column moves first


def test_mscale_results(mscale_run, capsys):
    res = json.loads((mscale_run / "results.json").read_text())
    for key in ("settings", "environment", "poisson", "figures"):
        assert key in res
    assert "regression" not in res and "derivative" not in res  # --parts leaves them out
    assert res["figures"] == ["errors.png", "solutions.png"]
    assert res["settings"]["scales"] == [1.0, 4.0]
    # parameter counts of the two networks: 2 subnets 1-4-1 against one 1-8-1
    assert res["poisson"]["parameters"] == {"mscale": 2 * (4 + 4 + 4 + 1), "dnn": 8 + 8 + 8 + 1}
    points = {(p["part"], p["network"]): p for p in _points(mscale_run)}
    assert len(points) == 2
    for problem in ("poisson",):
        final = res[problem]["final_error"]
        assert res[problem]["error_ratio"] == pytest.approx(final["dnn"] / final["mscale"])
        p = points[(problem, "mscale")]
        assert p["steps"] == [0, 10, 20] and len(p["error"]) == 3
        # the stored error is the relative L2 error of the stored final network
        x = np.linspace(-1, 1, mscale.TEST_POINTS)
        u, exact = np.asarray(p["u_final"]), np.sin(6 * np.pi * x)
        err = np.sqrt(np.sum((u - exact) ** 2) / np.sum(exact**2))
        assert p["final_error"] == pytest.approx(err, rel=1e-4)  # float32 run
    for name in res["figures"]:
        assert (mscale_run / name).read_bytes()[:4] == b"\x89PNG"
    lines = mscale.summary_lines(res)
    assert any("poisson" in line for line in lines)


def test_mscale_resumes_and_refuses_other_settings(mscale_run, capsys):
    point = mscale_run / "points" / "partpoisson_networkmscale.json"
    before = (point.read_text(), point.stat().st_ino)
    argv = ["run", "mscale", *MSCALE, "--parts", "poisson", "--out", str(mscale_run)]
    assert cli.main(argv) == 0
    assert (point.read_text(), point.stat().st_ino) == before
    code = cli.main([*argv, "--batch", "8"])
    assert code == 2 and "batch" in capsys.readouterr().err


@pytest.mark.parametrize(
    "module, argv, extra, flag",
    [
        ("mscale", MSCALE, ["--poisson-steps", "15"], "--poisson-steps"),
        ("mscale", MSCALE, ["--scales", "0"], "--scales"),
        ("frequency-highd", HIGHD, ["--n-bits", "6"], "--n-bits"),
        ("frequency-highd", HIGHD, ["--deltas", "0"], "--deltas"),
    ],
)
def test_bad_settings_refused_before_the_folder_exists(tmp_path, capsys, module, argv, extra,
                                                       flag):  # fmt: skip
    out = tmp_path / "never"
    assert cli.main(["run", module, *argv, *extra, "--out", str(out)]) == 2
    assert flag in capsys.readouterr().err
    assert not out.exists()


def test_highd_results(highd_run):
    res = json.loads((highd_run / "results.json").read_text())
    for key in ("settings", "environment", "per_point", "notes", "figures"):
        assert key in res
    rows = {(r["name"], r["model"]): r for r in res["per_point"]}
    assert set(rows) == {("digits", "mlp"), ("parity", "mlp"), ("majority", "mlp")}
    points = {(p["name"], p["model"]): p for p in _points(highd_run)}
    # the stored low-frequency share is the filter's, on the same data
    settings = frequency_highd.Settings(**{**frequency_highd.PRESETS["small"], "n_bits": 5,
                                           "boolean_train": 24, "boolean_test": 8})  # fmt: skip
    ds = frequency_highd.boolean_data(settings, "parity")
    assert np.all(ds.y_train == np.prod(ds.x_train, axis=1, keepdims=True))
    y_low = np.asarray(frequency.gaussian_filter(ds.y_train, ds.x_train, 3.0))
    share = np.sum(y_low**2) / np.sum(ds.y_train**2)
    assert points[("parity", "mlp")]["filtered"]["3"]["low_energy_share"] == pytest.approx(share)
    maj = frequency_highd.boolean_data(settings, "majority")
    assert np.all(maj.y_train[:, 0] == np.sign(maj.x_train.sum(axis=1)))
    p = points[("digits", "mlp")]
    assert len(p["filtered"]["0.5"]["e_low"]) == len(p["steps"]) == 3
    assert set(rows[("digits", "mlp")]["per_delta"]) == {"0.5", "3"}
    for name in res["figures"]:
        assert (highd_run / name).read_bytes()[:4] == b"\x89PNG"
    assert frequency_highd.summary_lines(res)
    assert data.digits  # the loader the experiment uses


def test_figures_are_labelled(mscale_run, highd_run):
    from jaxdyn.experiments import frequency_highd_plots, mscale_plots

    figs = [
        mscale_plots.errors_figure(_points(mscale_run)),
        mscale_plots.solutions_figure(_points(mscale_run), 6 * np.pi),
        frequency_highd_plots.filtered_errors_figure(_points(highd_run)),
        frequency_highd_plots.boolean_figure(_points(highd_run)),
    ]
    for fig in figs:
        for ax in fig.axes:
            if ax.axison:
                assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()


@pytest.mark.slow
def test_mscale_derivative_part_tiny(tmp_path):
    out = tmp_path / "run"
    assert cli.main(["run", "mscale", *MSCALE, "--parts", "derivative", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    d = res["derivative"]
    assert d["mse"]["peaks"] == [1, 3, 5] and d["derivative"]["weight"] == 1.0
    assert res["figures"] == ["derivative.png"]
    points = {(p["part"], p["network"]): p for p in _points(out)}
    # convergence steps recomputed from the stored per-peak errors
    for loss in ("mse", "derivative"):
        p = points[("derivative", loss)]
        conv = frequency.convergence_steps(np.asarray(p["errors"][0]), np.asarray(p["steps"]), 0.1)
        assert np.asarray(conv).tolist() == p["convergence_steps"][0]
        assert d[loss]["highest_peak_steps"] == [c[-1] for c in p["convergence_steps"]]
    from jaxdyn.experiments import mscale_plots

    fig = mscale_plots.derivative_figure(list(points.values()), 0.1)
    assert all(ax.get_xlabel() and ax.get_ylabel() and ax.get_title() for ax in fig.axes)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,  # only the claim itself may fail, not the run
    reason="not reproduced: measured 2026-12-01 on the default (10,000 Adam steps, 256 fresh "
    "samples per step): final relative errors MscaleDNN 0.198, plain 0.214 (ratio 1.08). The "
    "plain network stays at ~1.0 until step ~5,000 (0.19 against 1.01 there) and then "
    "catches up; MscaleDNN plateaus at 0.06-0.3 (sampling noise of the Ritz energy).",
)
def test_mscale_headline_on_the_default(tmp_path):
    """MscaleDNN's final Poisson error is at least 10x below the plain network's (the
    authors' plot: about 1e-2 against 1), on the default settings (minutes). Strict xfail:
    it fails loudly once the claim holds, so the marker is then removed."""
    res = mscale.run(mscale.Settings(), tmp_path / "run")
    assert res["poisson"]["error_ratio"] >= 10, res["poisson"]


@pytest.mark.slow
def test_image_cli_tiny(tmp_path):
    out = tmp_path / "run"
    argv = ["run", "frequency-image", "--size", "small", "--quiet", "--steps", "40",
            "--record-every", "20", "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    (p,) = _points(out)
    err, _ = frequency.radial_dft_error(np.asarray(p["snapshots"]), np.asarray(p["target"]), 3)
    np.testing.assert_allclose(np.asarray(err), np.asarray(p["ring_errors"])[-2:], rtol=1e-6)
    conv = frequency.convergence_steps(np.asarray(p["ring_errors"]), np.asarray(p["steps"]), 0.5)
    assert res["convergence_steps"] == [np.asarray(conv).tolist()]
    for name in res["figures"]:
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
