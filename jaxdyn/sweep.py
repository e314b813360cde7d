"""Resumable sweeps: every finished point is a file, so an interrupted run resumes.

- `sweep(run_point, grid, out_dir)`: runs `run_point(**point)` over the product of any named
  axes, e.g. `{"width": [64, 128], "seed": [0, 1]}` or
  `{"gamma": [...], "gamma_prime": [...], "width": [...]}`, and returns one record per point.
- `open_sweep(out_dir, settings)` and `Sweep.point(key, run)`: keyed points for searches that
  are not grids (a bisection over sample sizes asks for the next point from the last result).

Each finished point is written atomically to `out_dir/points/<name>.json`, its name made of
the key (`{"width": 16, "seed": 0}` -> `width16_seed0.json`), and holds the key's fields and
the metrics `run_point` returned. A rerun into the same folder loads finished points instead
of computing them; a file that does not parse, names another key or lacks a `required` metric
is recomputed with a `RuntimeWarning` naming the file. `settings.json` records the settings
the folder was claimed with, and a rerun with other settings is refused, naming each setting
that differs. Everything is validated before the folder is claimed, so a call that fails its
checks leaves nothing behind.

Non-finite metrics (a diverged point) are stored as `null` and come back as None, fresh or
loaded (see `jaxdyn.results`).

Example:
  >>> def run_point(width, seed):
  ...     return {"err": 1.0 / width + seed}
  >>> records = sweep(run_point, {"width": [16, 32], "seed": [0, 1]}, "runs/demo",
  ...                 settings={"task": "demo"})
  >>> records[1]                             # also in runs/demo/points/width16_seed1.json
  {'width': 16, 'seed': 1, 'err': 1.0625}
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import pathlib
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from jaxdyn import results
from jaxdyn._checks import describe, fail

__all__ = ["Progress", "Sweep", "open_sweep", "point_filename", "sweep"]

Progress = Callable[[int, int, str], Any]
KeyValue = int | float | str | bool

SETTINGS_FILE = "settings.json"
POINTS_DIR = "points"
_SAFE = re.compile(r"[A-Za-z0-9_.+-]+")
_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9_.+-]")
_MAX_STEM = 180  # well under the usual 255-byte limit, with room for the temp suffix


# Keys and file names.
# ------------------------------------------------------------------------------------------


def _key_value(name: str, value: Any) -> KeyValue:
    """A key field as a plain int, float, str or bool (NumPy scalars converted)."""
    expected = "an int, float, str or bool (a point's key field)"
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            fail(name, "a finite number (a point's key field)", describe(value))
        return float(value)
    if isinstance(value, str):
        return str(value)  # also NumPy str_
    fail(name, expected, describe(value), TypeError)


def _check_key(key: Any, name: str = "key") -> dict[str, KeyValue]:
    if not isinstance(key, Mapping):
        fail(
            name,
            "a mapping of field names to values, e.g. {'width': 16, 'seed': 0}",
            describe(key),
            TypeError,
        )
    if not key:
        fail(name, "a non-empty mapping (at least one key field)", "{}")
    out = {}
    for field, value in key.items():
        if not isinstance(field, str) or not field:
            fail(f"{name} field names", "non-empty str", describe(field), TypeError)
        out[field] = _key_value(f"{name}[{field!r}]", value)
    return out


def _same(a: Any, b: Any) -> bool:
    """JSON values equal, with bool never equal to a number (True == 1 in Python)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _same_key_value(a: Any, b: Any) -> bool:
    """Key fields match only with the same type: 16 and 16.0 are different points."""
    return type(a) is type(b) and a == b


def _format_value(value: KeyValue) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def point_filename(key: Mapping[str, KeyValue]) -> str:
    """The file name of the point `key`: `"_".join(f"{name}{value}") + ".json"`.

    `{"width": 16, "seed": 0}` -> `"width16_seed0.json"`, `{"lr": 0.5}` -> `"lr0.5.json"`.
    Characters other than letters, digits and `_ . + -` become `-`, and then (or when the
    name would be very long, or start with a dot) a hash of the exact key is appended, so two
    keys never share a file.
    """
    key = _check_key(key)
    stem = "_".join(f"{name}{_format_value(value)}" for name, value in key.items())
    if _SAFE.fullmatch(stem) and not stem.startswith(".") and len(stem) <= _MAX_STEM:
        return stem + ".json"
    digest = hashlib.sha1(json.dumps(list(key.items())).encode("utf-8")).hexdigest()[:10]
    stem = _UNSAFE_CHAR.sub("-", stem).lstrip(".")[:_MAX_STEM]
    return f"{stem}_h{digest}.json"


def _describe_key(key: Mapping[str, KeyValue]) -> str:
    return " ".join(f"{name} {_format_value(value)}" for name, value in key.items())


# Records.
# ------------------------------------------------------------------------------------------


def _check_required(required: Any) -> tuple[str, ...]:
    names = (required,) if isinstance(required, str) else required
    if not isinstance(names, Iterable) or not all(isinstance(m, str) for m in names):
        fail(
            "required", "a metric name or a sequence of metric names", describe(required), TypeError
        )
    return tuple(names)


def _point_record(
    result: Any, key: dict[str, KeyValue], call: str, function: str, required: tuple[str, ...]
) -> dict[str, Any]:
    """The stored record: the key's fields, then the metrics, in plain JSON types."""
    if not isinstance(result, Mapping):
        raise TypeError(f"{call} must return a dict of metrics; got {type(result).__name__}.")
    record: dict[str, Any] = dict(key)
    for name, value in result.items():
        if not isinstance(name, str):
            raise TypeError(f"{call} keys must be str; got {name!r}.")
        if name in key:
            # A run may echo its key (e.g. "width"), but it must agree.
            if not _same_key_value(results.to_jsonable(value, name), key[name]):
                raise ValueError(
                    f"{call} returned {name}={value!r}; expected {key[name]!r} or no {name!r} key."
                )
            continue
        record[name] = results.to_jsonable(value, f"`{function}` result {name!r}")
    missing = [m for m in required if m not in record]
    if missing:
        raise ValueError(
            f"{call} must return the required metric(s) {missing}; got {sorted(result)}."
        )
    return record


def _flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for name, value in settings.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


def _settings_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """`"name old -> new"` for each setting that differs (nested ones as `a.b`)."""
    old_flat, new_flat = _flatten(old), _flatten(new)
    absent = object()
    lines = []
    # The caller's order (the stored file's keys are sorted), then settings no longer given.
    for name in list(new_flat) + [n for n in old_flat if n not in new_flat]:
        a, b = old_flat.get(name, absent), new_flat.get(name, absent)
        if a is absent or b is absent or not _same(a, b):
            show = lambda v: "(not set)" if v is absent else repr(v)  # noqa: E731
            lines.append(f"{name} {show(a)} -> {show(b)}")
    return lines


# The sweep folder.
# ------------------------------------------------------------------------------------------


class Sweep:
    """A claimed sweep folder (or an in-memory sweep): asks for points by key.

    Make one with `open_sweep`. `point(key, run)` returns the stored record of `key` if a
    valid file exists, else runs `run()` and stores its result. Records of this session are
    kept in memory too, so asking again for a key costs nothing.

    Attributes:
      out_dir: the folder (`pathlib.Path`), or None for a sweep kept in memory only.
      settings: the settings the folder was claimed with (plain JSON types), or None.
    """

    def __init__(self, out_dir: pathlib.Path | None, settings: dict[str, Any] | None):
        self.out_dir = out_dir
        self.settings = settings
        self._records: dict[str, dict[str, Any]] = {}  # file name -> record, visit order
        self._keys: dict[str, dict[str, KeyValue]] = {}

    def __repr__(self) -> str:
        where = "in memory" if self.out_dir is None else repr(str(self.out_dir))
        return f"Sweep({where}, {len(self._records)} point(s) this session)"

    def path(self, key: Mapping[str, KeyValue]) -> pathlib.Path | None:
        """Where the point `key` is stored (None for an in-memory sweep)."""
        if self.out_dir is None:
            return None
        return self.out_dir / POINTS_DIR / point_filename(key)

    def point(
        self,
        key: Mapping[str, KeyValue],
        run: Callable[[], Mapping[str, Any]],
        *,
        required: str | Sequence[str] = (),
    ) -> dict[str, Any]:
        """The record of point `key`: loaded if finished, else `run()`'s result, stored.

        Args:
          key: the point's fields, e.g. `{"n": 256, "seed": 0}`: ints, floats, strs, bools.
            They name the file (`n256_seed0.json`) and are stored in the record.
          run: `run() -> {metric: number | str | bool | None | list | dict}`, called only
            when no valid stored record exists. NumPy and JAX values are converted; it may
            echo key fields, with the same values.
          required: metrics a stored record must hold to count as finished (a file without
            them is recomputed with a warning); a fresh result without them raises.

        Returns:
          The record: the key's fields, then the metrics, in plain JSON types (non-finite
          floats as None). Fresh and loaded records are equal.

        Raises:
          TypeError, ValueError: a bad key, a `run` that is not callable, a result that is
            not a dict of JSON-able metrics or that lacks a required metric.
        """
        if not callable(run):
            fail("run", "callable run() -> dict of metrics", describe(run), TypeError)
        key = _check_key(key)
        desc = ", ".join(f"{k}={v!r}" for k, v in key.items())
        return self._point(key, run, _check_required(required), f"`run()` for point {desc}", "run")[
            0
        ]

    def records(self) -> list[dict[str, Any]]:
        """The records of every point asked for in this session (loaded or computed), in the
        order they were first asked for."""
        return list(self._records.values())

    def _point(
        self,
        key: dict[str, KeyValue],
        run: Callable[[], Any],
        required: tuple[str, ...],
        call: str,
        function: str,
    ) -> tuple[dict[str, Any], bool]:
        """(record, whether it was loaded from a finished file)."""
        filename = point_filename(key)
        seen = self._keys.get(filename)
        if seen is not None:
            if seen != key or any(type(seen[k]) is not type(key[k]) for k in key):
                raise ValueError(
                    f"`key` {key} and {seen} map to the same file name {filename}; "
                    "rename a field or change a value so the names differ."
                )
            return self._records[filename], True
        path = None if self.out_dir is None else self.out_dir / POINTS_DIR / filename
        record = None if path is None or not path.exists() else _load_point(path, key, required)
        cached = record is not None
        if record is None:
            record = _point_record(run(), key, call, function, required)
            if path is not None:
                results.write_json_atomic(path, record)
        self._keys[filename], self._records[filename] = key, record
        return record, cached


def _load_point(
    path: pathlib.Path, key: dict[str, KeyValue], required: tuple[str, ...]
) -> dict[str, Any] | None:
    """The stored record, or None (with a warning naming the file) when the file does not
    parse, names another key or lacks a required metric: it is recomputed, not trusted."""
    want = _describe_key(key)
    try:
        record = results.read_json(path)
    except (OSError, ValueError) as err:  # JSONDecodeError and bad UTF-8 are ValueErrors
        warnings.warn(
            f"sweep: cannot read {path} ({err}); recomputing {want}.", RuntimeWarning, stacklevel=4
        )
        return None
    if not isinstance(record, dict) or not all(
        _same_key_value(record.get(k), v) for k, v in key.items()
    ):
        found = (
            {k: record.get(k) for k in key} if isinstance(record, dict) else type(record).__name__
        )
        warnings.warn(
            f"sweep: {path} holds {found}, expected {want}; recomputing it.",
            RuntimeWarning,
            stacklevel=4,
        )
        return None
    missing = [m for m in required if m not in record]
    if missing:
        warnings.warn(
            f"sweep: {path} lacks the required metric(s) {missing} (an older or "
            f"interrupted run?); recomputing {want}.",
            RuntimeWarning,
            stacklevel=4,
        )
        return None
    return record


def _check_settings(settings: Any) -> dict[str, Any] | None:
    if settings is None:
        return None
    if not isinstance(settings, Mapping):
        fail("settings", "a dict of JSON-able values or None", describe(settings), TypeError)
    return results.to_jsonable(settings, "settings")


def _folder_error(name: str, path: pathlib.Path, what: str) -> ValueError:
    return ValueError(
        f"`{name}` must be a folder this process can write to; got {str(path)!r}, {what}."
    )


def open_sweep(
    out_dir: str | os.PathLike | None,
    settings: Mapping[str, Any] | None = None,
    *,
    name: str = "out_dir",
) -> Sweep:
    """Claims `out_dir` for a sweep with `settings`, or reopens it to resume.

    The first call creates `out_dir/points/` and writes `out_dir/settings.json` atomically. A
    later call with equal settings resumes; with other settings it is refused. Every check
    runs before anything is created.

    Args:
      out_dir: the folder (created with its parents if missing); None keeps nothing on disk.
      settings: JSON-able dict of everything the points depend on (NumPy values and tuples are
        converted, so a tuple and a list compare equal), or None: no settings are recorded or
        compared (e.g. a sweep inside a folder whose owner checks the settings itself).
      name: how messages name `out_dir`, e.g. "--out" for a command-line tool.

    Returns:
      A `Sweep`.

    Raises:
      ValueError: `out_dir` is a file, cannot be created or written, or holds a run with other
        settings (each differing setting is named with its old and new value) or an
        unreadable `settings.json`.
      TypeError: `settings` is not a dict of JSON-able values, or `out_dir` not a path.
    """
    settings = _check_settings(settings)
    if out_dir is None:
        return Sweep(None, settings)
    if not isinstance(out_dir, (str, os.PathLike)):
        fail(name, "a folder path (str or os.PathLike) or None", describe(out_dir), TypeError)
    path = pathlib.Path(out_dir)
    settings_path = path / SETTINGS_FILE
    existed = path.exists()
    if existed and not path.is_dir():
        raise _folder_error(name, path, "which is a file")
    if path.is_dir():
        if settings is not None and settings_path.exists():
            _check_same_settings(name, path, settings_path, settings)
        if not os.access(path, os.W_OK | os.X_OK):
            raise _folder_error(name, path, "which is not writable")
    try:
        (path / POINTS_DIR).mkdir(parents=True, exist_ok=True)
        if settings is not None and not settings_path.exists():
            results.write_json_atomic(settings_path, settings)
    except OSError as err:
        what = "which cannot be written" if existed else "which cannot be created"
        raise _folder_error(name, path, f"{what} ({err})") from err
    return Sweep(path, settings)


def _check_same_settings(
    name: str, path: pathlib.Path, settings_path: pathlib.Path, settings: dict[str, Any]
) -> None:
    try:
        previous = results.read_json(settings_path)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"`{name}` = {str(path)!r} holds a {SETTINGS_FILE} that cannot be read "
            f"({err}); use another `{name}` or delete the folder."
        ) from err
    if not isinstance(previous, dict):
        raise ValueError(
            f"`{name}` = {str(path)!r} holds a {SETTINGS_FILE} that is not a dict "
            f"of settings; use another `{name}` or delete the folder."
        )
    diff = _settings_diff(previous, settings)
    if diff:
        raise ValueError(
            f"`{name}` = {str(path)!r} holds a run with other settings: "
            f"{', '.join(diff)}; use another `{name}` or delete the folder."
        )


# Grids.
# ------------------------------------------------------------------------------------------


def _check_grid(grid: Any) -> dict[str, list[KeyValue]]:
    if not isinstance(grid, Mapping):
        fail(
            "grid",
            "a mapping of axis names to value lists, e.g. {'width': [16, 32], 'seed': [0, 1]}",
            describe(grid),
            TypeError,
        )
    if not grid:
        fail("grid", "a non-empty mapping (at least one axis)", "{}")
    out = {}
    for axis, values in grid.items():
        if not isinstance(axis, str) or not axis:
            fail("grid", "a mapping with non-empty str axis names", f"axis {axis!r}", TypeError)
        name = f"grid[{axis!r}]"
        if isinstance(values, np.ndarray):
            if values.ndim != 1:
                fail(name, "a 1-D sequence of values", describe(values))
            values = list(values)
        elif isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
            fail(name, "a sequence of values (a list, tuple or range)", describe(values), TypeError)
        values = [_key_value(f"{name}[{i}]", v) for i, v in enumerate(values)]
        if not values:
            fail(name, "a non-empty sequence of values", "[]")
        firsts: dict[Any, int] = {}
        for i, v in enumerate(values):
            tag = (type(v), v)
            if tag in firsts:
                fail(
                    name,
                    "distinct values (each point once)",
                    f"{v!r} at positions {firsts[tag]} and {i}",
                )
            firsts[tag] = i
        out[axis] = values
    return out


def _check_progress(progress: Any) -> None:
    if progress is not None and not callable(progress):
        fail(
            "progress",
            "callable progress(done, total, description) or None",
            describe(progress),
            TypeError,
        )


def _run_grid(
    run_point: Callable[..., Any],
    grid: dict[str, list[KeyValue]],
    out_dir: str | os.PathLike | None,
    settings: Any,
    required: tuple[str, ...],
    progress: Progress | None,
    call: Callable[[dict[str, KeyValue]], str],
    name: str = "out_dir",
) -> list[dict[str, Any]]:
    """The grid loop behind `sweep` and `compare.width_sweep`; `call(key)` is how error
    messages name the call (`compare.width_sweep` calls run_point positionally)."""
    swept = open_sweep(out_dir, settings, name=name)
    keys = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    records = []
    for done, key in enumerate(keys, start=1):
        record, cached = swept._point(
            key, lambda key=key: run_point(**key), required, call(key), "run_point"
        )
        records.append(record)
        if progress is not None:
            progress(done, len(keys), _describe_key(key) + (" (cached)" if cached else ""))
    return records


def sweep(
    run_point: Callable[..., Mapping[str, Any]],
    grid: Mapping[str, Iterable[KeyValue]],
    out_dir: str | os.PathLike | None = None,
    *,
    settings: Mapping[str, Any] | None = None,
    required: str | Sequence[str] = (),
    progress: Progress | None = None,
    name: str = "out_dir",
) -> list[dict[str, Any]]:
    """Runs `run_point(**point)` for every point of a grid of named axes, resumably.

    Args:
      run_point: `run_point(**point) -> {metric: number | str | bool | None | list | dict}`,
        e.g. `run_point(width=16, seed=0)`; NumPy and JAX values are converted to JSON
        types. Must be deterministic in its arguments for resumed and fresh sweeps to agree.
      grid: axis name -> distinct values (ints, floats, strs, bools), e.g.
        `{"width": [16, 32], "seed": [0, 1]}`; the points are the product in the given order
        (the last axis varies fastest).
      out_dir: folder for `settings.json` and `points/<name>.json` (see `open_sweep`); a rerun
        loads the finished points, so an interruption loses at most the point in progress.
        Leftover `.*.tmp` files of a killed run are ignored. None keeps nothing on disk.
      settings: JSON-able dict of everything else the points depend on; a rerun into the
        same folder with other settings is refused (see `open_sweep`). None: not checked.
      required: metrics a stored point must hold to count as finished (see `Sweep.point`).
      progress: `progress(done, total, description)` after each point, e.g.
        `(3, 4, "width 32 seed 0 (cached)")` for a loaded point, to draw a progress bar.
      name: how messages name `out_dir` (e.g. "--out").

    Returns:
      One record per point, in grid order: the point's fields, then its metrics (see
      `Sweep.point`).

    Raises:
      TypeError, ValueError: bad arguments (all checked before `out_dir` is claimed), other
        settings in `out_dir`, or a bad `run_point` result.
    """
    if not callable(run_point):
        fail(
            "run_point",
            "callable run_point(**point) -> dict of metrics",
            describe(run_point),
            TypeError,
        )
    _check_progress(progress)
    axes = _check_grid(grid)
    required = _check_required(required)
    settings = _check_settings(settings)

    def call(key: dict[str, KeyValue]) -> str:
        return f"`run_point({', '.join(f'{k}={v!r}' for k, v in key.items())})`"

    return _run_grid(run_point, axes, out_dir, settings, required, progress, call, name)
