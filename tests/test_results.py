"""results: atomic JSON that is valid JSON (non-finite floats as null), the one environment
record (also the benchmarks' one), atomic figures."""

import importlib.metadata
import json
import math
import os
import pathlib
import platform
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxdyn import results

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _strict_loads(text):
    """json.loads that refuses the non-standard constants NaN, Infinity and -Infinity."""

    def refuse(name):
        raise ValueError(f"not JSON: bare {name}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_floats_are_written_as_null(tmp_path):
    record = {
        "loss": float("nan"),
        "curve": [1.0, float("inf"), -float("inf"), 2.5],
        "np": np.float32(np.nan),
        "arr": np.array([[1.0, np.nan], [np.inf, 3.0]]),
        "nested": {"t": (np.int64(3), np.bool_(True), None, "s")},
    }
    path = tmp_path / "r.json"
    results.write_json_atomic(path, record)
    text = path.read_text()
    stored = _strict_loads(text)  # valid JSON, no bare NaN/Infinity
    expected = {
        "loss": None,
        "curve": [1.0, None, None, 2.5],
        "np": None,
        "arr": [[1.0, None], [None, 3.0]],
        "nested": {"t": [3, True, None, "s"]},
    }
    assert stored == expected
    assert results.read_json(path) == expected
    assert results.to_jsonable(record) == expected
    # Where a number is expected, NumPy reads the nulls back as NaN.
    np.testing.assert_array_equal(
        np.asarray(stored["curve"], dtype=float), [1.0, np.nan, np.nan, 2.5]
    )
    assert type(stored["nested"]["t"][0]) is int and type(stored["nested"]["t"][1]) is bool


def test_read_json_accepts_bare_nan_of_older_files(tmp_path):
    path = tmp_path / "old.json"
    path.write_text('{"loss": NaN, "gap": Infinity}')
    got = results.read_json(path)
    assert math.isnan(got["loss"]) and got["gap"] == math.inf


def test_unserialisable_record_writes_nothing(tmp_path):
    path = tmp_path / "r.json"
    with pytest.raises(
        TypeError,
        match=r"`record\['a'\]\[1\]` must be a JSON-serialisable value.*"
        r"got <object",
    ):
        results.write_json_atomic(path, {"a": [1, object()]})
    with pytest.raises(
        TypeError,
        match=r"`record\['z'\]` must be a JSON-serialisable array of "
        r"real numbers; got an array of dtype complex128",
    ):
        results.write_json_atomic(path, {"z": np.array([1j])})
    with pytest.raises(TypeError, match=r"`record` keys must be str.*got 3"):
        results.write_json_atomic(path, {3: 1.0})
    assert os.listdir(tmp_path) == []


def test_atomic_write_replaces_or_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    results.write_json_atomic(path, {"v": 1})
    results.write_json_atomic(path, {"v": 2})
    assert results.read_json(path) == {"v": 2}

    def no_replace(src, dst):
        raise OSError("simulated failure before the rename")

    monkeypatch.setattr(os, "replace", no_replace)
    with pytest.raises(OSError, match="simulated failure"):
        results.write_json_atomic(path, {"v": 3})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["r.json"]  # no temp file left behind
    assert results.read_json(path) == {"v": 2}


def test_save_figure_is_atomic_and_checks_its_arguments(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    ax = fig.add_subplot()
    ax.plot([0, 1], [1, 0])
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    path = results.save_figure(fig, tmp_path / "f.png", dpi=50)
    assert path == tmp_path / "f.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results.save_figure(fig, tmp_path / "f.svg")
    assert b"<svg" in (tmp_path / "f.svg").read_bytes()[:500]
    assert sorted(os.listdir(tmp_path)) == ["f.png", "f.svg"]
    with pytest.raises(ValueError, match=r"`path` must end in a format suffix.*'.*noext'"):
        results.save_figure(fig, tmp_path / "noext")
    with pytest.raises(TypeError, match="`fig` must be a matplotlib Figure; got 3"):
        results.save_figure(3, tmp_path / "g.png")
    assert sorted(os.listdir(tmp_path)) == ["f.png", "f.svg"]


def test_environment_records_versions_devices_and_x64():
    env = results.environment()
    assert json.loads(json.dumps(env, allow_nan=False)) == env
    for name in ("jax", "jaxlib", "numpy", "scipy", "flax", "optax", "matplotlib"):
        assert env[name] == importlib.metadata.version(name), name
    import jaxdyn

    assert env["jaxdyn"] == jaxdyn.__version__
    assert env["python"] == platform.python_version()
    assert env["backend"] == jax.default_backend()
    assert env["device_count"] == jax.device_count() == len(env["devices"])
    assert env["devices"] == [
        {"id": d.id, "platform": d.platform, "kind": d.device_kind} for d in jax.devices()
    ]
    assert env["x64_enabled"] is bool(jax.config.jax_enable_x64)
    if hasattr(jax, "enable_x64"):  # the context, not only the global flag
        with jax.enable_x64(not env["x64_enabled"]):
            assert results.environment()["x64_enabled"] is (not env["x64_enabled"])


def test_benchmarks_record_the_same_environment():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import _common as C
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    env = results.environment()
    got = C.device_versions(jaxdyn="v")
    d = jax.devices()[0]
    assert got == {
        "jax": env["jax"],
        "jaxlib": env["jaxlib"],
        "jaxdyn": "v",
        "device": f"{d.platform}:{d.device_kind}",
        "device_platform": d.platform,
        "environment": env,
    }


def test_results_module_loads_without_the_package():
    """benchmarks/_common.py loads results.py by path in the neural-tangents venv, where
    jaxdyn is not installed: the file must not import jaxdyn."""
    path = str(ROOT / "jaxdyn" / "results.py")
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('r', {path!r})\n"
        "r = importlib.util.module_from_spec(spec); spec.loader.exec_module(r)\n"
        "env = r.environment()\n"
        "assert not any(m == 'jaxdyn' or m.startswith('jaxdyn.') for m in sys.modules)\n"
        "print(json.dumps(env))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    env = json.loads(proc.stdout)
    assert env["jax"] == importlib.metadata.version("jax") and env["devices"]
