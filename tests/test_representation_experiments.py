"""The `two-point`, `rich-lazy` and `xor` experiments: tiny runs through the CLI (schema,
figures, resume, refused settings), stored numbers recomputed from the library, and the
headlines at the default sizes as `slow` tests.

The tiny runs record 41 times and use a 5 x 5 start grid per fit; every fit of the file
shares one compiled ODE solver (one time-grid length, one `max_steps`).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxdyn import cli
from jaxdyn.analysis import representation as rep
from jaxdyn.experiments import EXPERIMENTS, representation_digits, rich_lazy, two_point, xor

TINY = ["--epochs", "400", "--record-every", "10", "--fit-grid", "5", "--quiet"]
TWO_POINT = [
    *("--architectures", "leaky_relu", "--depth", "2", "--width", "16", "--layer", "2"),
    *("--no-controls", *TINY),
]
RICH_LAZY = [
    *("--depth", "2", "--width", "16", "--layer", "1", "--gains", "0.5", "2.0", "--seeds", "1"),
    *("--no-grid", *TINY),
]
XOR = ["--depth", "2", "--width", "16", "--layer", "1", "--gains", "1.0", "--seeds", "1", *TINY]


def _run(name, argv, out):
    assert cli.main(["run", name, *argv, "--out", str(out)]) == 0
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("representation")
    return {
        "two-point": (root / "tp", _run("two-point", TWO_POINT, root / "tp")),
        "xor": (root / "xor", _run("xor", XOR, root / "xor")),
    }


def test_registered():
    assert EXPERIMENTS["two-point"] is two_point
    assert EXPERIMENTS["rich-lazy"] is rich_lazy
    assert EXPERIMENTS["xor"] is xor
    assert EXPERIMENTS["representation-digits"] is representation_digits


def test_two_point_results_and_stored_fit(tiny):
    out, res = tiny["two-point"]
    rows = {r["architecture"]: r for r in res["per_architecture"]}
    assert set(rows) == {"leaky_relu"} and res["settings"]["width"] == 16
    for row in rows.values():
        for key in ("eta_h", "eta_y", "relative_error", "h_inf", "h_inf_error", "curve_errors"):
            assert key in row
        assert row["eta_h"] > 0 and row["eta_y"] > 0
    assert [r["layer"] for r in res["per_layer"]] == [1, 2]
    point = json.loads((out / "points" / "architectureleaky_relu.json").read_text())
    r = point["runs"][0]
    obs, t = np.asarray(r["observed"]), np.asarray(point["t"])
    assert obs.shape == (41, 3) and t[-1] == pytest.approx(400 * 0.005)
    # the stored fitted curves are the ODE solved at the stored rates from the measured start
    # (max_steps as the fits use: the same compiled solver)
    curves = rep.solve_two_point(obs[0], t, r["eta_h"], r["eta_y"], 1.0, 0.5, max_steps=4096)
    np.testing.assert_allclose(np.asarray(r["fitted"]), np.asarray(curves), rtol=1e-5, atol=1e-7)
    fp = rep.fixed_point(obs[0], r["eta_h"], r["eta_y"], 1.0, 0.5)
    assert r["h_inf"] == pytest.approx(float(fp.h_inf))
    # the tracked layer 2 is also fitted in the per-layer sweep, to the same data
    assert r["layers"][1]["eta_h"] == pytest.approx(r["eta_h"], rel=1e-6)
    # the loss the network reports is 0.5 * MSE of its outputs: (y, w, mean error) give it
    assert r["loss"][0] == pytest.approx(r["loss_theory"][0], rel=1e-4)


def test_figures(tiny):
    from jaxdyn.experiments import two_point_plots, xor_plots

    assert tiny["two-point"][1]["figures"] == list(two_point_plots.FIGURES)
    assert tiny["xor"][1]["figures"] == list(xor_plots.FIGURES)
    for out, res in tiny.values():
        for fig in res["figures"]:
            assert (out / fig).read_bytes()[:4] == b"\x89PNG"
    fig = two_point_plots.layers_figure(tiny["two-point"][1])
    assert fig.axes[0].get_xlabel() and fig.axes[0].get_ylabel()


@pytest.mark.slow  # ~5 s of CPU (a training compilation): over the default suite's budget
def test_rich_lazy_tiny_run(tmp_path):
    from jaxdyn.experiments import rich_lazy_plots

    res = _run("rich-lazy", RICH_LAZY, tmp_path / "rl")
    assert res["figures"] == list(rich_lazy_plots.FIGURES)
    assert all((tmp_path / "rl" / f).read_bytes()[:4] == b"\x89PNG" for f in res["figures"])
    assert [r["gain"] for r in res["gain_sweep"]] == [0.5, 2.0]
    for row in res["gain_sweep"]:
        # the fixed point solves h_inf^2 - A_high h_inf = A_low^2 (one seed: no averaging)
        h, a, lo = row["h_inf"], row["a_high"], row["a_low"]
        if row["runs"] == 1:
            assert h * h - a * h == pytest.approx(lo * lo, rel=1e-6)
    assert "grid" not in res  # the grid (b) runs in the slow headline test


def test_rich_lazy_grid_summary():
    """R^2 and the grid summary on a planted point."""
    runs = [
        dict(dx=dx, dy=0.5, seed=s, diverged=False, h0=1.0, h_final=hf, h_pred=hp)
        for dx, s, hf, hp in [(0.5, 0, 1.0, 1.1), (0.5, 1, 3.0, 2.9), (1.5, 0, 4.0, 3.5)]
    ]
    grid = rich_lazy.summarize_grid(dict(runs=runs))
    assert [c["h_final"] for c in grid["cells"]] == [2.0, 4.0]
    assert [c["h_pred"] for c in grid["cells"]] == pytest.approx([2.0, 3.5])
    assert grid["r_squared"] == pytest.approx(1 - 0.25 / 2.0)  # cells: (2, 2), (4, 3.5)
    sst = sum((v - 8 / 3) ** 2 for v in (1.0, 3.0, 4.0))
    assert grid["r_squared_per_run"] == pytest.approx(1 - (0.01 + 0.01 + 0.25) / sst)


def test_xor_results(tiny):
    _, res = tiny["xor"]
    (row,) = res["per_gain"]
    m, q = np.asarray(row["measured"]), np.asarray(row["predicted"])
    assert m.shape == q.shape == (4, 4)
    np.testing.assert_allclose(m, m.T)
    assert np.all(np.diag(m) == 0) and np.all(q[np.triu_indices(4, 1)] > 0)


def test_rerun_resumes_and_other_settings_are_refused(tiny, capsys):
    out, _ = tiny["xor"]
    point = out / "points" / "partxor.json"
    before = (point.read_text(), point.stat().st_ino)
    assert cli.main(["run", "xor", *XOR, "--out", str(out)]) == 0
    assert (point.read_text(), point.stat().st_ino) == before
    assert cli.main(["run", "xor", *XOR, "--width", "8", "--out", str(out)]) == 2
    assert "width" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name, extra, flag",
    [
        ("two-point", ["--layer", "9"], "--layer"),
        ("two-point", ["--epochs", "405"], "--epochs"),
        ("two-point", ["--architectures", "shallow", "shallow"], "--architectures"),
        ("rich-lazy", ["--gains", "1.0", "1.0"], "--gains"),
        ("xor", ["--layer", "3"], "--layer"),
        ("representation-digits", ["--class-b", "0"], "--class-b"),
        ("representation-digits", ["--record-every", "7"], "--record-every"),
    ],
)
def test_bad_settings_refused_before_the_folder_exists(tmp_path, capsys, name, extra, flag):
    argv = {"two-point": TWO_POINT, "rich-lazy": RICH_LAZY, "xor": XOR}.get(name, ["--quiet"])
    out = tmp_path / "never"
    assert cli.main(["run", name, *argv, *extra, "--out", str(out)]) == 2
    assert flag in capsys.readouterr().err
    assert not out.exists()


# --------------------------------------------------------------------------- headlines


@pytest.mark.slow
def test_two_point_headline(tmp_path):
    """The default protocol (20 x 200 leaky ReLU) and the 2-layer net, with the controls.

    Measured (README): deep net 2.8% overall relative error (h 3.8%, y 2.3%, w 16.5%), h_inf
    within 2.9% of the final h; the 2-layer net 1.9% overall, but w 55%.
    """
    res = _run(
        "two-point", ["--architectures", "leaky_relu", "shallow", "--quiet"], tmp_path / "tp"
    )
    rows = {r["architecture"]: r for r in res["per_architecture"]}
    deep, shallow = rows["leaky_relu"], rows["shallow"]
    # the bar: the theory predicts the final h within 10%
    assert deep["h_inf_error"] < 0.10 and deep["h_final_fit_error"] < 0.10
    # h, y, w tracked: all three curves together within 5%, h and y each within 5%
    assert deep["relative_error"] < 0.05
    assert deep["curve_errors"]["h"] < 0.05 and deep["curve_errors"]["y"] < 0.05
    # w starts and ends at ~0 and dips in between, so a small shift in time of the dip is a
    # large error relative to its norm: 25%, not 5%
    assert deep["curve_errors"]["w"] < 0.25
    # The 2-layer net: its h (~1.5, 15x the deep net's) dominates the overall error, which is
    # NOT worse than the deep net's; the failure is in w, whose early sign change the theory
    # cannot follow. The "fits worse" holds for w (and y), not for the overall error.
    assert shallow["curve_errors"]["w"] > 2 * deep["curve_errors"]["w"]
    assert shallow["curve_errors"]["y"] > deep["curve_errors"]["y"]
    assert deep["true_beats_every_control"]
    # middle layers fit better than the first and last ones
    errs = [r["relative_error"] for r in res["per_layer"]]
    assert min(errs[5:15]) < min(errs[0], errs[-1])


@pytest.mark.slow
def test_rich_lazy_headline(tmp_path):
    """Default gain sweep: the smallest gain ends near A_low, the largest near A_high."""
    res = _run("rich-lazy", ["--quiet"], tmp_path / "rl")
    small, large = res["gain_sweep"][0], res["gain_sweep"][-1]
    assert small["h_final_over_a_low"] == pytest.approx(1.0, abs=0.25)
    assert large["h_final_over_a_high"] == pytest.approx(1.0, abs=0.25)
    # and not the other way round: the two asymptotes are far apart at both ends
    assert small["a_high"] < 0.5 * small["a_low"] and large["a_low"] < 0.5 * large["a_high"]
    # (b): the averaged rates predict the final h across the 5 x 5 grid of dx, dy
    assert len(res["grid"]["cells"]) == 25 and res["grid"]["r_squared"] > 0.9


@pytest.mark.slow  # ~12 s of CPU (digits training and a fit)
def test_representation_digits_small_run(tmp_path):
    from jaxdyn.experiments import representation_digits_plots

    res = _run("representation-digits", ["--size", "small", "--quiet"], tmp_path / "dg")
    assert res["figures"] == list(representation_digits_plots.FIGURES)
    assert res["dy2"] == pytest.approx(2.0)  # two one-hot targets of different classes
    (seed,) = res["per_seed"]
    assert seed["eta_h"] > 0 and seed["eta_y"] > 0 and np.isfinite(seed["relative_error"])
    point = json.loads((tmp_path / "dg" / "points" / "partdigits.json").read_text())
    obs = np.asarray(point["runs"][0]["observed"])
    # h at the start is the tracked layer's squared distance of the two images at init
    from jaxdyn import data

    x = np.asarray(data.digits(seed=0, one_hot=True).x_train)[point["images"]]
    assert res["dx2"] == pytest.approx(float(np.sum((x[1] - x[0]) ** 2)))
    assert obs.shape[1] == 3 and obs[0, 0] > 0
