"""The options of `jaxdyn run linear-vs-real` beyond the fully connected MSE default:
`--model cnn|wrn`, `--loss cross-entropy`, `--optimizer gd|momentum|sgd --batch-size`,
multi-class `--classes`, Lee et al.'s Figure 4 (`weights.png`) and `--study plateau`
(`plateau.png`, Figure 8).

The default tier runs one point (an MLP with cross-entropy, momentum and three classes, the
path no closed form covers) and checks the analytic function-space recurrence against the
linearized network trained by optax, outputs and individual weights alike; figures and the
plateau summary are checked on synthetic records. Whole runs of every option, through the
CLI, are the slow tier (each costs a few compilations per width)."""

import json

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import jax  # noqa: E402

from jaxdyn import cli  # noqa: E402
from jaxdyn.experiments import _linear_vs_real_plateau as plateau  # noqa: E402
from jaxdyn.experiments import linear_vs_real, linear_vs_real_plots  # noqa: E402

TINY = dict(n_train=8, n_test=4, steps=10, record_every=5, widths=(4, 8), seeds=1)
TINY_ARGV = ["--n-train", "8", "--n-test", "4", "--steps", "10", "--record-every", "5"]
TINY_ARGV += ["--seeds", "1", "--widths", "4", "8", "--quiet"]


@pytest.fixture(scope="module")
def ce_point():
    """One point: MLP of width 8, cross-entropy, heavy-ball momentum, three classes."""
    settings = linear_vs_real.Settings(
        loss="cross-entropy", optimizer="momentum", classes=(0, 1, 2), **TINY
    )
    with jax.enable_x64(True):
        data = linear_vs_real.load_data(settings)
        point = linear_vs_real.run_point(settings, data, 8, 0)
    return settings, data, point


def test_cross_entropy_momentum_recurrence_is_the_trained_linearization(ce_point):
    """`dynamics.gradient_descent(kind="momentum")` on the full (n, n, k, k) initial NTK is
    the linearized network trained by optax's heavy ball, at every recorded step: test
    outputs, loss and the individual weights (accumulated function-space velocities). The
    two are independent computations (function space vs parameter space)."""
    _, (x, y, xt, yt), p = ce_point
    assert y.shape == (8, 3) and np.allclose(np.sum(y, axis=1), 1)  # one-hot, 3 outputs
    assert p["analytic"] == "function-space recurrence"
    assert p["steps"] == [0, 5, 10]
    assert max(p["rmse_lin_closed_form_test"]) < 1e-10
    np.testing.assert_allclose(p["loss_closed_form"], p["loss_lin"], rtol=1e-10)
    w_net, w_lin, w_an = (
        np.asarray(p[k]) for k in ("weights_net", "weights_lin", "weights_closed_form")
    )
    assert w_net.shape == w_lin.shape == w_an.shape == (3, 6)
    np.testing.assert_allclose(w_an, w_lin, rtol=0, atol=1e-10)
    # all three start from the same weights, and the picked weights do move
    np.testing.assert_array_equal(w_net[0], w_lin[0])
    assert np.all(np.abs(w_lin[-1] - w_lin[0]) > 1e-6)
    # softmax cross-entropy decreases from log(3) at about zero initial logits
    assert p["loss_lin"][-1] < p["loss_lin"][0]
    assert 0 <= p["test_accuracy_net"] <= 1 and p["critical_learning_rate"] > 0
    assert p["weight_names"][0] == "first layer, weight 1"
    assert p["weight_names"][-1] == "last layer, weight 3"


def test_weights_figure_from_a_real_point(ce_point, tmp_path):
    """Figure 4 from the point above: three labelled panels, the analytic model named in
    the legend; `save_figures` adds `weights.png` when points hold weights."""
    _, _, p = ce_point
    points = [dict(p, width=8, seed=0), dict(p, width=4, seed=0)]
    fig = linear_vs_real_plots.weights_figure(points, analytic=p["analytic"])
    assert len(fig.axes) == 3
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    legends = [t.get_text() for a in fig.axes[0].artists for t in a.get_texts()] + texts
    assert "function-space recurrence" in legends
    # the weights are drawn as changes from their initial values
    np.testing.assert_allclose(
        fig.axes[1].lines[0].get_ydata(),
        np.asarray(p["weights_net"])[:, 0] - p["weights_net"][0][0],
    )
    results = dict(
        settings=dict(loss="cross-entropy"),
        analytic=p["analytic"],
        per_width=[
            dict(width=w, **{m: dict(mean=0.1 / w, std=0.0) for m in linear_vs_real.SLOPE_METRICS})
            for w in (4, 8)
        ],
        slope_fits={},
    )
    names = linear_vs_real_plots.save_figures(results, points, tmp_path)
    assert names == ["outputs.png", "loss.png", "scaling.png", "weights.png"]
    assert all((tmp_path / n).read_bytes()[:4] == b"\x89PNG" for n in names)


def synthetic_plateau_points():
    """Plateau records with plateau RMSE exactly 3 n^-0.25 w^-0.5 (seed 1: twice that)."""
    points = []
    for model in ("mlp", "cnn"):
        for n in (16, 32):
            for w in (8, 16, 32):
                for seed in (0, 1):
                    value = (1 + seed) * 3 * n**-0.25 * w**-0.5
                    points.append(
                        dict(model=model, n_train=n, width=w, seed=seed, plateau_rmse=value)
                    )
    return points


def test_plateau_summary_fits_the_slope_and_draws_figure_8(tmp_path):
    points = synthetic_plateau_points()
    rows = plateau.summarize(points, [8, 16, 32])
    assert [(r["model"], r["n_train"]) for r in rows] == [
        ("mlp", 16),
        ("mlp", 32),
        ("cnn", 16),
        ("cnn", 32),
    ]
    for r in rows:
        assert abs(r["plateau_rmse_slope"] + 0.5) < 1e-12
        expect = 1.5 * 3 * r["n_train"] ** -0.25 * np.array([8, 16, 32]) ** -0.5
        np.testing.assert_allclose(r["plateau_rmse_mean"], expect, rtol=1e-12)
        np.testing.assert_allclose(r["plateau_rmse_std"], expect / 3, rtol=1e-12)
    # a diverged seed (stored as None) leaves that curve without a slope
    points[0]["plateau_rmse"] = None
    assert plateau.summarize(points, [8, 16, 32])[0]["plateau_rmse_slope"] is None
    res = dict(plateau=rows)
    fig = linear_vs_real_plots.plateau_figure(res)
    assert len(fig.axes) == 2 and [a.get_title().split(":")[0] for a in fig.axes] == ["mlp", "cnn"]
    assert linear_vs_real_plots.save_plateau_figures(res, points, tmp_path) == ["plateau.png"]
    lines = plateau.summary_lines(res)
    assert len(lines) == 2 + len(rows) and "-0.50" in lines[1]


@pytest.mark.parametrize(
    "argv, flag, got",
    [
        (["--model", "cnn", "--dataset", "mnist1d"], "--model", "['cnn']"),
        (["--optimizer", "gd", "--batch-size", "4"], "--batch-size", "4"),
        (["--classes", "3", "3"], "--classes", "[3, 3]"),
        (["--classes", "3"], "--classes", "[3]"),
        (["--optimizer", "sgd", "--batch-size", "9"], "--batch-size", "9"),
        (
            ["--study", "plateau", "--plateau-models", "wrn", "--dataset", "mnist1d"],
            "--plateau-models",
            "['wrn']",
        ),
    ],
)
def test_bad_option_combinations_are_refused_before_the_folder(tmp_path, capsys, argv, flag, got):
    out = tmp_path / "run"
    assert cli.main(["run", "linear-vs-real", "--out", str(out), *TINY_ARGV, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert f"`{flag}` must be" in err and got in err and "\n" not in err
    assert not out.exists()


# --------------------------------------------------------------------------- whole runs


def cli_run(tmp_path_factory, name, *argv):
    out = tmp_path_factory.mktemp(name) / "run"
    with jax.enable_x64(False):
        assert cli.main(["run", "linear-vs-real", "--out", str(out), *TINY_ARGV, *argv]) == 0
    res = json.loads((out / "results.json").read_text())
    points = [json.loads(p.read_text()) for p in sorted((out / "points").glob("*.json"))]
    for fig in res["figures"]:
        assert (out / fig).stat().st_size > 5000
    return res, points


@pytest.mark.slow
def test_cnn_cross_entropy_momentum_run(tmp_path_factory):
    res, points = cli_run(
        tmp_path_factory,
        "cnn",
        "--model",
        "cnn",
        "--loss",
        "cross-entropy",
        "--optimizer",
        "momentum",
    )
    assert res["figures"] == ["outputs.png", "loss.png", "scaling.png", "weights.png"]
    assert res["analytic"] == "function-space recurrence"
    assert res["linearized_vs_closed_form"]["max_rmse"] < 1e-10
    for p in points:
        np.testing.assert_allclose(p["weights_closed_form"], p["weights_lin"], atol=1e-10)


@pytest.mark.slow
def test_wrn_mse_gd_multiclass_run(tmp_path_factory):
    """Closed form of `dynamics.mse` on the full (n, n, 3, 3) NTK, and its weight dynamics
    (`MSEPredictor.weights`), against the linearized WRN trained by optax."""
    res, points = cli_run(
        tmp_path_factory, "wrn", "--model", "wrn", "--optimizer", "gd", "--classes", "0", "1", "2"
    )
    assert res["analytic"] == "closed form" and "weights.png" in res["figures"]
    assert res["linearized_vs_closed_form"]["max_rmse"] < 1e-10
    for p in points:
        np.testing.assert_allclose(p["weights_closed_form"], p["weights_lin"], atol=1e-10)
        np.testing.assert_allclose(p["loss_closed_form"], p["loss_lin"], rtol=1e-9)


@pytest.mark.slow
def test_minibatch_sgd_and_plateau_study_run(tmp_path_factory):
    """Minibatch SGD has no analytic dynamics; the plateau study sweeps architecture x
    dataset size x width and fits a slope per curve."""
    res, points = cli_run(
        tmp_path_factory,
        "plateau",
        "--study",
        "plateau",
        "--plateau-models",
        "mlp",
        "cnn",
        "--plateau-n-train",
        "8",
        "12",
        "--optimizer",
        "sgd",
        "--batch-size",
        "4",
    )
    assert res["figures"] == ["plateau.png"]
    assert len(points) == 2 * 2 * 2 and {p["model"] for p in points} == {"mlp", "cnn"}
    assert [(r["model"], r["n_train"]) for r in res["plateau"]] == [
        ("mlp", 8),
        ("mlp", 12),
        ("cnn", 8),
        ("cnn", 12),
    ]
    for r in res["plateau"]:
        assert isinstance(r["plateau_rmse_slope"], float)
    # minibatches are not the full batch: the same point trained by full-batch gd differs
    settings = linear_vs_real.Settings(optimizer="gd", **{**TINY, "n_train": 8})
    with jax.enable_x64(True):
        full = linear_vs_real.run_point(settings, linear_vs_real.load_data(settings), 4, 0)
    mini = next(p for p in points if (p["model"], p["n_train"], p["width"]) == ("mlp", 8, 4))
    assert abs(full["final_loss_net"] - mini["final_loss_net"]) > 1e-6
