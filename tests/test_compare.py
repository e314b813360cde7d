"""compare: metrics by hand, agreement on real trajectories, power-law fits and resumable
width sweeps (including a sweep killed with SIGKILL midway)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from reference_models import init_mlp, mlp_apply

import jaxdyn
from jaxdyn import compare, dynamics, train

# Elementwise metrics.
# ------------------------------------------------------------------------------------------


def test_rmse_by_hand():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 5, 3)), rng.normal(size=(4, 5, 3))
    np.testing.assert_allclose(compare.rmse(a, b), np.sqrt(np.mean((a - b) ** 2)), rtol=1e-14)
    np.testing.assert_allclose(
        compare.rmse(a, b, axis=0), np.sqrt(np.mean((a - b) ** 2, 0)), rtol=1e-14
    )
    over_time = compare.rmse_over_time(a, b)
    assert over_time.shape == (4,)
    for t in range(4):
        np.testing.assert_allclose(over_time[t], np.sqrt(np.mean((a[t] - b[t]) ** 2)), rtol=1e-14)
    np.testing.assert_array_equal(compare.rmse_over_time(jnp.asarray(a), a), np.zeros(4))


def test_rmse_errors():
    with pytest.raises(ValueError, match=r"same shape; got \(2, 3\) and \(3, 2\)"):
        compare.rmse(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="leading time axis"):
        compare.rmse_over_time(1.0, 2.0)
    with pytest.raises(TypeError, match="`a` must hold real numbers"):
        compare.rmse(np.array(["x"]), np.array([1.0]))


def test_accuracy_multiclass_by_hand():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(3, 7, 4))  # (T, n, k)
    labels = rng.integers(0, 4, size=7)
    expected = np.array([np.mean(np.argmax(f[t], -1) == labels) for t in range(3)])
    np.testing.assert_allclose(compare.accuracy(f, labels), expected)
    np.testing.assert_allclose(compare.accuracy(f, np.eye(4)[labels]), expected)  # one-hot
    np.testing.assert_allclose(compare.accuracy(jnp.asarray(f[1]), labels), expected[1])
    assert compare.accuracy(f[1], labels).shape == ()
    perfect = np.eye(4)[labels] * 5.0
    assert float(compare.accuracy(perfect, labels)) == 1.0


def test_accuracy_binary_sign():
    f = np.array(
        [[[0.3], [-2.0], [0.0], [1.0]], [[-0.3], [-2.0], [0.5], [1.0]]]
    )  # (T=2, n=4, k=1); 0 counts as negative
    y = np.array([1.0, -1.0, -1.0, -1.0])
    np.testing.assert_allclose(compare.accuracy(f, y), [3 / 4, 1 / 4])
    np.testing.assert_allclose(compare.accuracy(f, y[:, None]), [3 / 4, 1 / 4])


def test_accuracy_errors():
    f = np.zeros((5, 3))
    with pytest.raises(ValueError, match=r"int labels \(5,\) or one-hot targets \(5, 3\)"):
        compare.accuracy(f, np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"labels_or_targets\[2\]` = 3 is not a class in \[0, 3\)"):
        compare.accuracy(f, np.array([0, 1, 3, 0, 0]))
    with pytest.raises(ValueError, match="must be integer class labels"):
        compare.accuracy(f, np.zeros(5))
    with pytest.raises(ValueError, match=r"labels_or_targets\[1\]` = .*0.*nonzero"):
        compare.accuracy(np.zeros((3, 1)), np.array([1, 0, 1]))
    with pytest.raises(ValueError, match=r"`f` must be outputs \(..., n, k\)"):
        compare.accuracy(np.zeros(3), np.zeros(3, int))


# Network vs linearization vs closed form on real trajectories.
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs():
    """A tanh MLP of width 32 on 10 train / 6 test points with 3 outputs, trained by full-batch
    GD for 200 steps (recorded every 20): the network, its linearization and the closed form on
    the full (n, n, k, k) NTK."""
    params = init_mlp(jax.random.PRNGKey(0), [3, 32, 3])
    x = jax.random.normal(jax.random.PRNGKey(1), (10, 3))
    y = jax.nn.one_hot(jnp.arange(10) % 3, 3)
    xt = jax.random.normal(jax.random.PRNGKey(3), (6, 3))
    yt = jnp.arange(6) % 3
    k = jaxdyn.empirical_ntk(mlp_apply, params, x, trace_axes=())
    kt = jaxdyn.empirical_ntk(mlp_apply, params, xt, x, trace_axes=())
    lr = 0.5 * float(dynamics.mse(k, y, kind="gd").critical_learning_rate)
    kw = {"optimizer": optax.sgd(lr), "steps": 200, "record_every": 20, "x_test": xt}
    net = train.trajectory(mlp_apply, params, x, y, **kw)
    lin = train.trajectory(mlp_apply, params, x, y, linearize=True, **kw)
    pred = dynamics.mse(k, y, learning_rate=lr, kind="gd")
    closed = pred(net.steps, mlp_apply(params, x), mlp_apply(params, xt), kt)
    return net, lin, closed, yt


def _rmse_t(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.sqrt(((a - b) ** 2).reshape(a.shape[0], -1).mean(axis=1))


def test_agreement_real_trajectories(runs):
    net, lin, (cf_tr, cf_te), yt = runs
    agr = compare.agreement(net, lin, (cf_tr, cf_te), y_test=yt)
    assert isinstance(agr, compare.Agreement)
    np.testing.assert_array_equal(agr.steps, np.arange(0, 201, 20))
    for field in agr._fields:
        assert getattr(agr, field).shape == (11,), field

    # The linearized model trained by optax is the closed form up to float64 rounding.
    assert float(np.max(agr.rmse_lin_closed_form_train)) < 1e-10
    assert float(np.max(agr.rmse_lin_closed_form_test)) < 1e-10
    # The finite network leaves its linearization: 0 at step 0, then a growing gap.
    for gap in (agr.rmse_net_lin_train, agr.rmse_net_lin_test):
        assert float(gap[0]) < 1e-12
        assert np.all(gap[1:] > 1e-4) and float(gap[-1]) > 2 * float(gap[1])
    np.testing.assert_allclose(agr.rmse_net_closed_form_train, agr.rmse_net_lin_train, atol=1e-10)

    # Every metric equals its NumPy hand computation.
    f_net, f_lin = np.asarray(net.f_test), np.asarray(lin.f_test)
    hand = {
        "rmse_net_lin_train": _rmse_t(net.f_train, lin.f_train),
        "rmse_net_lin_test": _rmse_t(f_net, f_lin),
        "rmse_net_closed_form_train": _rmse_t(net.f_train, cf_tr),
        "rmse_net_closed_form_test": _rmse_t(f_net, cf_te),
        "rmse_lin_closed_form_train": _rmse_t(lin.f_train, cf_tr),
        "rmse_lin_closed_form_test": _rmse_t(f_lin, cf_te),
        "accuracy_net_test": (np.argmax(f_net, -1) == np.asarray(yt)).mean(-1),
        "accuracy_lin_test": (np.argmax(f_lin, -1) == np.asarray(yt)).mean(-1),
        "accuracy_closed_form_test": (np.argmax(np.asarray(cf_te), -1) == np.asarray(yt)).mean(-1),
    }
    for field, value in hand.items():
        np.testing.assert_allclose(
            getattr(agr, field), value, rtol=1e-12, atol=1e-300, err_msg=field
        )
    moved = np.linalg.norm((f_lin - f_lin[:1]).reshape(11, -1), axis=1)
    gap = np.linalg.norm((f_net - f_lin).reshape(11, -1), axis=1)
    assert agr.relative_error_net_lin_test[0] == 0.0  # 0/0 at step 0, guarded
    np.testing.assert_allclose(agr.relative_error_net_lin_test[1:], gap[1:] / moved[1:], rtol=1e-12)
    assert np.all(agr.relative_error_net_lin_test[1:] > 0)


def test_agreement_partial_inputs(runs):
    net, lin, (cf_tr, _), _ = runs
    agr = compare.agreement(net)
    assert all(getattr(agr, f) is None for f in agr._fields if f != "steps")
    agr = compare.agreement(net, closed_form=(cf_tr, None))
    assert agr.rmse_net_closed_form_train is not None and agr.rmse_net_closed_form_test is None
    assert agr.rmse_net_lin_train is None and agr.accuracy_net_test is None
    no_test = net._replace(f_test=None)
    agr = compare.agreement(no_test, lin._replace(f_test=None), y_test=np.zeros(6, int))
    assert agr.rmse_net_lin_test is None and agr.accuracy_net_test is None
    assert agr.relative_error_net_lin_test is None


def test_relative_error_zero_movement_is_inf():
    f_lin = np.zeros((2, 3, 1))
    f_net = f_lin.copy()
    f_net[1] = 1.0
    traj = train.Trajectory(
        np.arange(2), f_net, f_net, np.zeros(2), None, np.zeros(2), None, None, None
    )
    lin = traj._replace(f_train=f_lin, f_test=f_lin)
    np.testing.assert_array_equal(
        compare.agreement(traj, lin).relative_error_net_lin_test, [0.0, np.inf]
    )


def test_agreement_validation(runs):
    net, lin, (cf_tr, cf_te), _ = runs
    with pytest.raises(ValueError, match=r"`lin.steps` must equal `net.steps`"):
        compare.agreement(net, lin._replace(steps=lin.steps * 2))
    with pytest.raises(ValueError, match=r"`lin.f_train` must have shape \(11, 10, 3\)"):
        compare.agreement(net, lin._replace(f_train=lin.f_train[:, :5]))
    with pytest.raises(ValueError, match=r"`closed_form\[1\]` must have shape \(11, 6, 3\)"):
        compare.agreement(net, closed_form=(cf_tr, cf_te[:-1]))
    with pytest.raises(ValueError, match=r"`closed_form\[0\]` must be \(T, n, k\)"):
        compare.agreement(net, closed_form=(cf_tr[0], cf_te))
    with pytest.raises(TypeError, match="`closed_form` must be a pair"):
        compare.agreement(net, closed_form=cf_tr)
    with pytest.raises(ValueError, match="`lin.f_test` is None but `net.f_test` is given"):
        compare.agreement(net, lin._replace(f_test=None))
    with pytest.raises(ValueError, match=r"`net.steps` must be \(T,\)"):
        compare.agreement(jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), net))
    with pytest.raises(TypeError, match="`net` must be a jaxdyn.train.Trajectory"):
        compare.agreement(net._asdict())
    with pytest.raises(ValueError, match=r"labels_or_targets` must be int labels \(6,\)"):
        compare.agreement(net, y_test=np.zeros(5, int))


# Power-law fits.
# ------------------------------------------------------------------------------------------


def test_fit_loglog_exact_power_law():
    x = np.array([16.0, 64.0, 256.0, 1024.0, 4096.0])
    fit = compare.fit_loglog_slope(x, 3.0 * x**-0.5)
    assert isinstance(fit, compare.Slope)
    np.testing.assert_allclose(fit.slope, -0.5, rtol=1e-12)
    np.testing.assert_allclose(fit.intercept, np.log(3.0), rtol=1e-12)  # natural log
    np.testing.assert_allclose(fit.r2, 1.0, rtol=1e-12)
    assert fit.stderr < 1e-12
    two = compare.fit_loglog_slope([2, 8], [1.0, 4.0])
    np.testing.assert_allclose(two.slope, 1.0, rtol=1e-12)
    assert np.isnan(two.stderr)
    assert compare.fit_loglog_slope(x, np.full(5, 2.0)) == (0.0, np.log(2.0), 1.0, 0.0)


def test_fit_loglog_noisy_matches_scipy():
    from scipy import stats

    rng = np.random.default_rng(0)
    x = np.geomspace(8, 2048, 9)
    y = 2.0 * x**1.5 * np.exp(0.1 * rng.normal(size=9))
    fit = compare.fit_loglog_slope(x, y)
    ref = stats.linregress(np.log(x), np.log(y))
    assert 0.9 < fit.r2 < 1.0
    np.testing.assert_allclose(
        [fit.slope, fit.intercept, fit.r2, fit.stderr],
        [ref.slope, ref.intercept, ref.rvalue**2, ref.stderr],
        rtol=1e-10,
    )


def test_fit_loglog_errors():
    with pytest.raises(ValueError, match=r"`y\[2\]` = -1\.0.*positive finite"):
        compare.fit_loglog_slope([1, 2, 3], [1.0, 2.0, -1.0])
    with pytest.raises(ValueError, match=r"`x\[1\]` = 0\.0"):
        compare.fit_loglog_slope([1, 0, 3], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"`y\[0\]` = nan"):
        compare.fit_loglog_slope([1, 2], [np.nan, 2.0])
    with pytest.raises(ValueError, match="at least 2 points for a line; got 1"):
        compare.fit_loglog_slope([1.0], [1.0])
    with pytest.raises(ValueError, match="same length; got 3 and 2"):
        compare.fit_loglog_slope([1, 2, 3], [1.0, 2.0])
    with pytest.raises(ValueError, match="2 distinct values"):
        compare.fit_loglog_slope([4, 4], [1.0, 2.0])


# Width sweeps.
# ------------------------------------------------------------------------------------------

WIDTHS, SEEDS = [64, 16, 32], [1, 0]


def _err(width, seed):
    return {
        "err": 2.0 * width**-1.0 * (1 + 0.01 * seed),
        "curve": [width, seed],
        "n_params": np.int64(3 * width),
        "label": f"w{width}",
    }


def _forbidden(width, seed):
    raise AssertionError(f"run_point({width}, {seed}) called for a finished point")


def test_width_sweep_results_and_files(tmp_path):
    calls = []

    def run_point(width, seed):
        calls.append((width, seed))
        return _err(width, seed)

    bar = []
    res = compare.width_sweep(
        run_point,
        WIDTHS,
        SEEDS,
        out_dir=tmp_path / "new" / "dir",
        progress=lambda *a: bar.append(a),
        metrics=["err", "n_params"],
    )
    assert calls == [(w, s) for w in (16, 32, 64) for s in (0, 1)]
    assert res.widths == (16, 32, 64) and res.seeds == (0, 1)
    assert res.points[1] == {
        "width": 16,
        "seed": 1,
        "err": 2.0 / 16 * 1.01,
        "curve": [16, 1],
        "n_params": 48,
        "label": "w16",
    }
    assert sorted(res.mean) == ["err", "n_params"] and sorted(res.std) == ["err", "n_params"]
    w = np.array([16.0, 32.0, 64.0])
    np.testing.assert_allclose(res.mean["err"], 2.0 / w * 1.005, rtol=1e-14)
    np.testing.assert_allclose(res.std["err"], 2.0 / w * 0.005, rtol=1e-10)
    np.testing.assert_allclose(res.slopes["err"].slope, -1.0, rtol=1e-12)
    np.testing.assert_allclose(res.slopes["err"].intercept, np.log(2.0 * 1.005), rtol=1e-12)
    np.testing.assert_allclose(res.slopes["n_params"].slope, 1.0, rtol=1e-12)
    assert bar == [(i + 1, 6, f"width {w} seed {s}") for i, (w, s) in enumerate(calls)]

    points_dir = tmp_path / "new" / "dir" / "points"
    assert sorted(os.listdir(points_dir)) == sorted(  # no leftover temp files
        f"width{w}_seed{s}.json" for w in (16, 32, 64) for s in (0, 1)
    )
    stored = json.loads((points_dir / "width32_seed1.json").read_text())
    assert stored == res.points[3]

    # Resume: every point is loaded, nothing recomputed, identical results.
    bar.clear()
    again = compare.width_sweep(
        _forbidden,
        WIDTHS,
        SEEDS,
        out_dir=tmp_path / "new" / "dir",
        progress=lambda *a: bar.append(a),
        metrics="err",
    )
    assert again.points == res.points and again.slopes["err"] == res.slopes["err"]
    for name in res.mean:
        np.testing.assert_array_equal(again.mean[name], res.mean[name])
        np.testing.assert_array_equal(again.std[name], res.std[name])
    assert bar[-1] == (6, 6, "width 64 seed 1 (cached)")

    # In memory (no out_dir) gives the same results.
    mem = compare.width_sweep(_err, WIDTHS, SEEDS, metrics=["err"])
    assert mem.points == res.points and mem.slopes["err"] == res.slopes["err"]


def test_width_sweep_recomputes_corrupt_points(tmp_path):
    res = compare.width_sweep(_err, [8, 16], [0], out_dir=tmp_path)
    points_dir = tmp_path / "points"
    (points_dir / "width8_seed0.json").write_text('{"width": 8, "seed": 0, "err": 0.2')  # torn
    (points_dir / "width16_seed0.json").write_text('{"width": 99, "seed": 0, "err": 1.0}')
    calls = []

    def run_point(width, seed):
        calls.append((width, seed))
        return _err(width, seed)

    with pytest.warns(RuntimeWarning) as record:
        again = compare.width_sweep(run_point, [8, 16], [0], out_dir=tmp_path)
    messages = [str(r.message) for r in record]
    assert any("width8_seed0.json" in m and "recomputing" in m for m in messages)
    assert any("width16_seed0.json" in m and "'width': 99" in m for m in messages)
    assert calls == [(8, 0), (16, 0)] and again.points == res.points
    assert json.loads((points_dir / "width8_seed0.json").read_text()) == res.points[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repaired: a third run is silent
        compare.width_sweep(_forbidden, [8, 16], [0], out_dir=tmp_path)


def test_width_sweep_validation(tmp_path):
    with pytest.raises(TypeError, match="`run_point` must be callable"):
        compare.width_sweep(None, [8], [0])
    with pytest.raises(ValueError, match=r"`widths\[1\]` must be a positive int; got 0"):
        compare.width_sweep(_err, [8, 0], [0])
    with pytest.raises(ValueError, match=r"`widths\[0\]` must be a positive int; got 8.0"):
        compare.width_sweep(_err, [8.0], [0])
    with pytest.raises(ValueError, match=r"`seeds\[0\]` must be an int; got True"):
        compare.width_sweep(_err, [8], [True])
    with pytest.raises(ValueError, match="`seeds` must not be empty"):
        compare.width_sweep(_err, [8], [])
    with pytest.raises(TypeError, match="`widths` must be a sequence of ints"):
        compare.width_sweep(_err, 8, [0])
    with pytest.raises(TypeError, match="`progress` must be callable"):
        compare.width_sweep(_err, [8], [0], progress=3)
    with pytest.raises(ValueError, match="at least 2 distinct widths; got 1"):
        compare.width_sweep(_err, [8, 8], [0], metrics=["err"])
    with pytest.raises(ValueError, match=r"'nope'.*expected one of \['err', 'n_params'\]"):
        compare.width_sweep(_err, [8, 16], [0], metrics=["nope"])
    with pytest.raises(ValueError, match=r"metric 'zero'.*`y\[0\]` = 0\.0"):
        compare.width_sweep(lambda w, s: {"zero": 0.0}, [8, 16], [0], metrics=["zero"])
    with pytest.raises(TypeError, match=r"`run_point\(8, 0\)` must return a dict"):
        compare.width_sweep(lambda w, s: 1.0, [8], [0])
    with pytest.raises(TypeError, match="result 'obj' must be a JSON-serialisable"):
        compare.width_sweep(lambda w, s: {"obj": object()}, [8], [0], out_dir=tmp_path)
    assert os.listdir(tmp_path / "points") == []  # an invalid result is not stored
    with pytest.raises(ValueError, match=r"returned width=9; expected 8"):
        compare.width_sweep(lambda w, s: {"width": 9}, [8], [0])


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    """A write that fails before the rename (disk full, interrupt) leaves neither the point
    file nor its temp file, so the point is simply recomputed next time."""

    def no_replace(src, dst):
        raise OSError("simulated failure before the rename")

    monkeypatch.setattr(compare.os, "replace", no_replace)
    with pytest.raises(OSError, match="simulated failure"):
        compare.width_sweep(_err, [8], [0], out_dir=tmp_path)
    assert os.listdir(tmp_path / "points") == []
    monkeypatch.undo()
    assert compare.width_sweep(_err, [8], [0], out_dir=tmp_path).points[0]["err"] == 0.25
    assert os.listdir(tmp_path / "points") == ["width8_seed0.json"]


_CHILD = """
import sys, time
from jaxdyn import compare

def run_point(width, seed):
    # Fast first points, then slow ones: the parent kills the run after 2 files, and the slow
    # tail leaves it ample time to do so before the sweep could finish.
    time.sleep(0.3 if width == 8 else 1.5)
    return {"err": 2.0 * width ** -1.0 * (1 + 0.01 * seed), "curve": [width, seed]}

compare.width_sweep(run_point, [8, 16, 32], [0, 1], out_dir=sys.argv[1])
print("finished")
"""


def test_width_sweep_survives_sigkill(tmp_path):
    """A sweep killed with SIGKILL midway leaves only complete point files, and a rerun
    computes just the missing points and ends as an uninterrupted sweep would."""
    out = tmp_path / "sweep"
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(_CHILD))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    points_dir = out / "points"
    deadline = time.monotonic() + 60.0
    try:
        while True:
            done = list(points_dir.glob("*.json")) if points_dir.exists() else []
            if len(done) >= 2:
                break
            if proc.poll() is not None:
                pytest.fail(f"the sweep exited early ({proc.returncode}): {proc.stderr.read()!r}")
            if time.monotonic() > deadline:
                pytest.fail("the sweep wrote fewer than 2 points in 60 s")
            time.sleep(0.01)
    finally:
        proc.kill()  # SIGKILL: no cleanup code runs
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    finished = {}
    for path in points_dir.glob("*.json"):  # every file present is whole
        record = json.loads(path.read_text())
        finished[(record["width"], record["seed"])] = record
        assert path.name == f"width{record['width']}_seed{record['seed']}.json"
    assert 2 <= len(finished) < 6

    calls = []

    def child_point(width, seed):  # the child's run_point, without the sleep
        return {"err": 2.0 * width**-1.0 * (1 + 0.01 * seed), "curve": [width, seed]}

    def run_point(width, seed):
        assert (width, seed) not in finished, "recomputed a finished point"
        calls.append((width, seed))
        return child_point(width, seed)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is corrupt: no warnings
        resumed = compare.width_sweep(run_point, [8, 16, 32], [0, 1], out_dir=out, metrics=["err"])
    all_pairs = [(w, s) for w in (8, 16, 32) for s in (0, 1)]
    assert calls == [p for p in all_pairs if p not in finished]
    fresh = compare.width_sweep(
        child_point, [8, 16, 32], [0, 1], out_dir=tmp_path / "fresh", metrics=["err"]
    )
    assert resumed.points == fresh.points
    np.testing.assert_array_equal(resumed.mean["err"], fresh.mean["err"])
    np.testing.assert_array_equal(resumed.std["err"], fresh.std["err"])
    assert resumed.slopes == fresh.slopes
    assert len(list(points_dir.glob("*.json"))) == 6
