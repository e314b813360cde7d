"""sweep: resumable grids of any named axes and keyed points, with plain-Python run functions
(no JAX): resume after an interruption, corrupt and metric-less files recomputed with a
warning naming the file, settings mismatches named setting by setting, diverged points as
valid JSON, unusable folders, nothing claimed when validation fails."""

import json
import math
import os
import warnings

import numpy as np
import pytest

from jaxdyn import compare
from jaxdyn.sweep import Sweep, open_sweep, point_filename, sweep

GRID = {"gamma": [0.5, 1.0], "gamma_prime": [2, 1], "width": [16]}


def _metrics(gamma, gamma_prime, width):
    return {"loss": gamma * gamma_prime / width, "curve": np.array([gamma, gamma_prime])}


def _forbidden(**point):
    raise AssertionError(f"run_point({point}) called for a finished point")


def _strict_loads(text):
    def refuse(name):
        raise ValueError(f"not JSON: bare {name}")

    return json.loads(text, parse_constant=refuse)


def test_grid_order_records_files_and_progress(tmp_path):
    calls, bar = [], []

    def run_point(**point):
        calls.append(point)
        return _metrics(**point)

    records = sweep(
        run_point, GRID, tmp_path / "run", settings={"lr": 0.5}, progress=lambda *a: bar.append(a)
    )
    # The product in the given order, the last axis fastest; values as given (not sorted).
    order = [(0.5, 2, 16), (0.5, 1, 16), (1.0, 2, 16), (1.0, 1, 16)]
    assert calls == [dict(gamma=g, gamma_prime=p, width=w) for g, p, w in order]
    assert records == [
        {"gamma": g, "gamma_prime": p, "width": w, "loss": g * p / w, "curve": [g, p]}
        for g, p, w in order
    ]
    assert list(records[0]) == ["gamma", "gamma_prime", "width", "loss", "curve"]
    assert bar == [
        (i + 1, 4, f"gamma {g} gamma_prime {p} width {w}") for i, (g, p, w) in enumerate(order)
    ]
    points = tmp_path / "run" / "points"
    assert sorted(os.listdir(points)) == sorted(
        f"gamma{g}_gamma_prime{p}_width{w}.json" for g, p, w in order
    )
    assert json.loads((points / "gamma1.0_gamma_prime2_width16.json").read_text()) == records[2]
    assert json.loads((tmp_path / "run" / "settings.json").read_text()) == {"lr": 0.5}

    # A rerun loads every point, says so, and returns the same records.
    bar.clear()
    again = sweep(
        _forbidden, GRID, tmp_path / "run", settings={"lr": 0.5}, progress=lambda *a: bar.append(a)
    )
    assert again == records
    assert all(desc.endswith(" (cached)") for _, _, desc in bar)
    # In memory: the same records, nothing on disk.
    assert sweep(run_point, GRID, None) == records


def test_resume_after_an_interruption_runs_only_the_missing_points(tmp_path):
    grid = {"width": [8, 16, 32], "seed": [0, 1]}

    def crashing(width, seed):
        if (width, seed) == (16, 1):
            raise KeyboardInterrupt("simulated Ctrl-C in the fourth point")
        return {"err": 1.0 / width + seed}

    with pytest.raises(KeyboardInterrupt):
        sweep(crashing, grid, tmp_path)
    points = tmp_path / "points"
    assert sorted(os.listdir(points)) == [
        "width16_seed0.json",
        "width8_seed0.json",
        "width8_seed1.json",
    ]  # no temp files either
    calls = []

    def run_point(width, seed):
        calls.append((width, seed))
        return {"err": 1.0 / width + seed}

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is corrupt: no warnings
        resumed = sweep(run_point, grid, tmp_path)
    assert calls == [(16, 1), (32, 0), (32, 1)]
    fresh = sweep(lambda width, seed: {"err": 1.0 / width + seed}, grid, None)
    assert resumed == fresh


def test_corrupt_metricless_and_foreign_files_are_recomputed_with_a_warning(tmp_path):
    grid = {"width": [8, 16, 32, 64], "seed": [0]}
    run = lambda width, seed: {"err": 1.0 / width, "n": width}  # noqa: E731
    first = sweep(run, grid, tmp_path, required=["err"])
    points = tmp_path / "points"
    (points / "width8_seed0.json").write_text('{"width": 8, "seed": 0, "err": 0.1')  # torn
    (points / "width16_seed0.json").write_text('{"width": 16, "seed": 0}')  # no metrics
    (points / "width32_seed0.json").write_text('{"width": 99, "seed": 0, "err": 1.0}')
    (points / "width64_seed0.json").write_text("[1, 2]")
    calls = []

    def counting(width, seed):
        calls.append(width)
        return run(width, seed)

    with pytest.warns(RuntimeWarning) as caught:
        again = sweep(counting, grid, tmp_path, required=["err"])
    messages = [str(w.message) for w in caught]
    assert len(messages) == 4
    assert any("width8_seed0.json" in m and "cannot read" in m for m in messages)
    assert any(
        str(points / "width16_seed0.json") in m
        and "['err']" in m
        and "recomputing width 16 seed 0" in m
        for m in messages
    )
    assert any("width32_seed0.json" in m and "'width': 99" in m for m in messages)
    assert any("width64_seed0.json" in m and "holds list" in m for m in messages)
    assert calls == [8, 16, 32, 64] and again == first
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repaired: a third run is silent
        assert sweep(_forbidden, grid, tmp_path, required=["err"]) == first
    # Without `required`, a record with only its key counts as finished.
    (points / "width16_seed0.json").write_text('{"width": 16, "seed": 0}')
    assert sweep(_forbidden, grid, tmp_path)[1] == {"width": 16, "seed": 0}


def test_a_fresh_result_without_a_required_metric_is_refused(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"`run_point\(width=8\)` must return the required "
        r"metric\(s\) \['err'\]; got \['loss'\]",
    ):
        sweep(lambda width: {"loss": 1.0}, {"width": [8]}, tmp_path, required="err")
    assert os.listdir(tmp_path / "points") == []


def test_settings_mismatch_names_each_differing_setting(tmp_path):
    settings = {
        "learning_rate": 1.0,
        "widths": (8, 16),
        "data": {"name": "digits", "n": 64},
        "activation": "relu",
        "momentum": None,
    }
    out = tmp_path / "run"
    sweep(lambda width: {"e": 1.0 / width}, {"width": [8]}, out, settings=settings)
    # The same settings (a tuple stored as a list, a NumPy float) resume.
    same = {**settings, "widths": [8, 16], "learning_rate": np.float64(1.0)}
    assert sweep(_forbidden, {"width": [8]}, out, settings=same) == [{"width": 8, "e": 0.125}]

    changed = {**settings, "learning_rate": 0.5, "data": {"name": "digits", "n": 128}}
    del changed["momentum"]
    changed["dtype"] = "float64"
    with pytest.raises(ValueError) as err:
        sweep(_forbidden, {"width": [8]}, out, settings=changed, name="--out")
    msg = str(err.value)
    assert msg.startswith(f"`--out` = {str(out)!r} holds a run with other settings: ")
    assert (
        "learning_rate 1.0 -> 0.5, data.n 64 -> 128, dtype (not set) -> 'float64', "
        "momentum None -> (not set); use another `--out` or delete the folder."
    ) in msg
    assert "relu" not in msg and "widths" not in msg  # only what differs
    assert json.loads((out / "settings.json").read_text())["learning_rate"] == 1.0
    # bool and int are different settings even though True == 1 in Python.
    with pytest.raises(ValueError, match=r"other settings: flag True -> 1;"):
        open_sweep(tmp_path / "b", {"flag": True})
        open_sweep(tmp_path / "b", {"flag": 1})
    # A sweep without settings does not check (its caller owns settings.json).
    assert open_sweep(out).settings is None


def test_unreadable_settings_file_is_named(tmp_path):
    (tmp_path / "settings.json").write_text("{oops")
    with pytest.raises(ValueError, match=r"holds a settings.json that cannot be read"):
        open_sweep(tmp_path, {"a": 1})


def test_diverged_points_are_valid_json_and_average_as_nan(tmp_path):
    def run_point(width, seed):
        diverged = (width, seed) == (16, 1)
        loss = float("nan") if diverged else 1.0 / width
        return {
            "loss": loss,
            "curve": [1.0, float("inf") if diverged else 0.5],
            "peak": -math.inf if diverged else 2.0,
        }

    res = compare.width_sweep(run_point, [8, 16], [0, 1], out_dir=tmp_path)
    text = (tmp_path / "points" / "width16_seed1.json").read_text()
    stored = _strict_loads(text)  # no bare NaN / Infinity
    assert stored == {"width": 16, "seed": 1, "loss": None, "curve": [1.0, None], "peak": None}
    # Fresh and loaded records agree (None, not NaN, so they compare equal).
    again = compare.width_sweep(
        lambda w, s: _forbidden(width=w, seed=s), [8, 16], [0, 1], out_dir=tmp_path
    )
    assert again.points == res.points and res.points[3] == stored
    # Where a number is expected the null is NaN: the diverged width's mean and std are NaN.
    for r in (res, again):
        np.testing.assert_array_equal(r.mean["loss"], [1 / 8, np.nan])
        np.testing.assert_array_equal(r.std["loss"], [0.0, np.nan])
        np.testing.assert_array_equal(r.mean["peak"], [2.0, np.nan])


def test_out_dir_that_is_a_file_or_cannot_be_written(tmp_path):
    afile = tmp_path / "f.txt"
    afile.write_text("x")
    with pytest.raises(
        ValueError,
        match=r"`out_dir` must be a folder this process can write "
        r"to; got '.*f\.txt', which is a file\.",
    ):
        sweep(lambda width: {}, {"width": [8]}, afile)
    with pytest.raises(
        ValueError,
        match=r"`--out` must be a folder.*f\.txt/sub'.*cannot be "
        r"created",
    ):
        open_sweep(afile / "sub", {"a": 1}, name="--out")
    with pytest.raises(TypeError, match=r"`out_dir` must be a folder path.*got 3"):
        open_sweep(3)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user (root) who can write to read-only folders")
        with pytest.raises(
            ValueError,
            match=r"`out_dir` must be a folder.*'.*ro', which is "
            r"not writable",
        ):
            sweep(lambda width: {}, {"width": [8]}, ro, settings={"a": 1})
        with pytest.raises(ValueError, match=r"'.*ro/new', which cannot be created"):
            open_sweep(ro / "new")
        assert os.listdir(ro) == []
    finally:
        ro.chmod(0o700)


def test_unwritable_folder_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    """The not-writable branch also where the tests run as root (who may write anywhere):
    `os.access` reports the folder read-only."""
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real_access(p, mode)
    )
    with pytest.raises(ValueError, match=r"'.*', which is not writable"):
        open_sweep(tmp_path, {"a": 1})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (
            lambda out: sweep(None, {"w": [1]}, out, settings={}),
            TypeError,
            r"`run_point` must be callable.*got None",
        ),
        (
            lambda out: sweep(lambda w: {}, {"w": [1]}, out, settings={}, progress=3),
            TypeError,
            r"`progress` must be callable.*got 3",
        ),
        (
            lambda out: sweep(lambda w: {}, [1, 2], out, settings={}),
            TypeError,
            r"`grid` must be a mapping of axis names.*got \[1, 2\]",
        ),
        (
            lambda out: sweep(lambda w: {}, {}, out, settings={}),
            ValueError,
            r"`grid` must be a non-empty mapping",
        ),
        (
            lambda out: sweep(lambda w: {}, {"w": []}, out, settings={}),
            ValueError,
            r"`grid\['w'\]` must be a non-empty sequence",
        ),
        (
            lambda out: sweep(lambda w: {}, {"w": 8}, out, settings={}),
            TypeError,
            r"`grid\['w'\]` must be a sequence of values.*got 8",
        ),
        (
            lambda out: sweep(lambda w: {}, {"w": [8, 16, 8]}, out, settings={}),
            ValueError,
            r"`grid\['w'\]` must be distinct values.*got 8 at positions 0 and 2",
        ),
        (
            lambda out: sweep(lambda w: {}, {"w": [1.0, math.nan]}, out, settings={}),
            ValueError,
            r"`grid\['w'\]\[1\]` must be a finite number.*got nan",
        ),
        (
            lambda out: sweep(lambda w: {}, {"w": [[1]]}, out, settings={}),
            TypeError,
            r"`grid\['w'\]\[0\]` must be an int, float, str or bool.*got \[1\]",
        ),
        (
            lambda out: sweep(lambda w: {}, {"w": [1]}, out, settings={}, required=[1]),
            TypeError,
            r"`required` must be a metric name or a sequence",
        ),
        (
            lambda out: sweep(lambda w: {}, {"w": [1]}, out, settings={"f": object()}),
            TypeError,
            r"`settings\['f'\]` must be a JSON-serialisable value",
        ),
        (lambda out: open_sweep(out, [("a", 1)]), TypeError, r"`settings` must be a dict"),
    ],
)
def test_nothing_is_claimed_when_validation_fails(tmp_path, call, exc, match):
    out = tmp_path / "run"
    with pytest.raises(exc, match=match):
        call(out)
    assert not out.exists()
    out.mkdir()  # an existing empty folder stays empty
    with pytest.raises(exc, match=match):
        call(out)
    assert os.listdir(out) == []


def test_keyed_points_for_a_bisection(tmp_path):
    """A search that is not a grid: the smallest n in [1, 64] with n**2 >= 500 (n = 23),
    each probe a keyed point; a rerun replays the search from the stored points."""

    def bisect(swept, run):
        lo, hi = 1, 64
        while lo < hi:
            mid = (lo + hi) // 2
            record = swept.point(
                {"n": mid, "task": "square"}, lambda mid=mid: run(mid), required="ok"
            )
            lo, hi = (lo, mid) if record["ok"] else (mid + 1, hi)
        return lo

    calls = []

    def run(n):
        calls.append(n)
        return {"ok": n * n >= 500, "value": np.int64(n * n)}

    swept = open_sweep(tmp_path, {"target": 500})
    assert isinstance(swept, Sweep) and swept.out_dir == tmp_path
    assert bisect(swept, run) == 23 == math.isqrt(499) + 1
    probes = list(calls)
    assert probes == [32, 16, 24, 20, 22, 23]
    assert [r["n"] for r in swept.records()] == probes
    assert swept.records()[0] == {"n": 32, "task": "square", "ok": True, "value": 1024}
    assert sorted(os.listdir(tmp_path / "points")) == sorted(
        f"n{n}_tasksquare.json" for n in probes
    )
    assert swept.path({"n": 32, "task": "square"}) == tmp_path / "points" / "n32_tasksquare.json"
    # Asking again in the same session does not rerun.
    assert swept.point({"n": 32, "task": "square"}, lambda: _forbidden()) == swept.records()[0]

    resumed = open_sweep(tmp_path, {"target": 500})
    assert bisect(resumed, lambda n: _forbidden(n=n)) == 23
    assert resumed.records() == swept.records()
    # In memory: the same answer and records, nothing on disk.
    mem = open_sweep(None, {"target": 500})
    assert bisect(mem, run) == 23 and mem.records() == swept.records()
    assert mem.path({"n": 1}) is None


def test_point_file_names_and_key_checks(tmp_path):
    assert point_filename({"width": 16, "seed": 0}) == "width16_seed0.json"
    assert (
        point_filename({"lr": 1e-05, "flag": True, "act": "relu"})
        == "lr1e-05_flagTrue_actrelu.json"
    )
    assert point_filename({"seed": -1}) == "seed-1.json"
    assert point_filename({"w": np.int64(16)}) == "w16.json"
    # 16 and 16.0 are different points with different files.
    assert point_filename({"w": 16.0}) == "w16.0.json"
    odd = [{"name": "a/b"}, {"name": "a b"}, {"name": "a-b"}, {"name": "../x"}, {".hidden": 1}]
    names = [point_filename(k) for k in odd]
    assert len(set(names)) == len(names)
    for n in names[:2] + names[3:]:
        assert n.endswith(".json") and "/" not in n and " " not in n and not n.startswith(".")
        assert "_h" in n  # sanitised names carry a hash of the key
    assert names[2] == "namea-b.json"
    assert len(point_filename({"x" * 400: 1})) < 255
    with pytest.raises(TypeError, match=r"`key` must be a mapping"):
        point_filename([("w", 1)])
    with pytest.raises(ValueError, match=r"`key` must be a non-empty mapping"):
        point_filename({})
    with pytest.raises(TypeError, match=r"`key\['w'\]` must be an int, float, str or bool"):
        point_filename({"w": None})

    swept = open_sweep(tmp_path)
    with pytest.raises(TypeError, match=r"`run` must be callable"):
        swept.point({"w": 1}, 3)
    with pytest.raises(ValueError, match=r"`run\(\)` for point w=1 returned w=2; expected 1"):
        swept.point({"w": 1}, lambda: {"w": 2})
    with pytest.raises(TypeError, match=r"`run\(\)` for point w=1 must return a dict of metrics"):
        swept.point({"w": 1}, lambda: 1.0)
    with pytest.raises(TypeError, match=r"`run` result 'x' must be a JSON-serialisable value"):
        swept.point({"w": 1}, lambda: {"x": object()})
    assert os.listdir(tmp_path / "points") == []
    # Two keys whose names coincide are refused rather than overwriting each other.
    swept.point({"a": "x_b1"}, lambda: {})
    with pytest.raises(ValueError, match=r"map to the same file name ax_b1\.json"):
        swept.point({"a": "x", "b": 1}, lambda: {})
