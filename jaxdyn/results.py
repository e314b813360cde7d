"""Results on disk: atomic JSON files that are valid JSON, one record of the environment, and
atomically saved figures.

- `write_json_atomic(path, record)`: `path` is either absent or complete, never torn, even if
  the process is killed midway (temp file in the same folder, fsync, `os.replace`, fsync of
  the folder).
- `to_jsonable(value)`: plain JSON types from NumPy / JAX scalars and arrays, tuples and
  mappings. Non-finite floats (NaN, +-Inf: a diverged run) become `null`, because bare `NaN`
  and `Infinity` are not JSON and strict readers (browsers, `jq`, most languages) reject them.
  Readers get None back for them; `numpy.asarray(values, dtype=float)` turns those None into
  NaN wherever a number is expected (`jaxdyn.compare.width_sweep` averages them as NaN).
- `read_json(path)`: the stored value (files from older versions that hold bare `NaN` still
  load, as NaN).
- `environment()`: versions, backend, devices and x64 state: the one environment record.
- `save_figure(fig, path)`: a matplotlib figure written atomically.

This module imports only the standard library and NumPy at import time (JAX lazily, inside
`environment`), so the benchmark scripts also load it by file path in a virtual environment
that does not have jaxdyn installed (`benchmarks/_common.py`).

Example:
  >>> write_json_atomic("out/results.json", {"loss": float("nan"), "steps": np.arange(3)})
  >>> read_json("out/results.json")
  {'loss': None, 'steps': [0, 1, 2]}
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import pathlib
import platform
import sys
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "VERSIONED",
    "dumps",
    "environment",
    "read_json",
    "save_figure",
    "to_jsonable",
    "write_json_atomic",
]

# The distributions whose versions `environment` records (jaxdyn and python come first).
VERSIONED = ("jax", "jaxlib", "flax", "optax", "numpy", "scipy", "matplotlib")


# JSON.
# ------------------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    return f"{text} (a {type(value).__name__})"


def _quote(name: str) -> str:
    return name if name.startswith("`") else f"`{name}`"


def to_jsonable(value: Any, name: str = "record") -> Any:
    """`value` in plain JSON types, ready for `json.dumps(..., allow_nan=False)`.

    bool, int, float, str and None stay (NaN and +-Inf become None); NumPy scalars become
    Python numbers; NumPy and JAX arrays become nested lists; tuples and lists become lists;
    mappings with str keys become dicts.

    Args:
      value: the value to convert.
      name: how error messages name `value` (items are named `name[0]`, `name['key']`);
        backticks are added unless it starts with one.

    Returns:
      A new plain value (never `value` itself when it is a container).

    Raises:
      TypeError: a leaf is of another kind (complex numbers, arbitrary objects) or a mapping
        key is not a str.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # NumPy / JAX arrays
        arr = np.asarray(value)
        if arr.dtype.kind == "V" and "float" in arr.dtype.name:  # bfloat16, float8 (ml_dtypes)
            arr = arr.astype(np.float64)
        if arr.dtype.kind not in "biuf":
            raise TypeError(
                f"{_quote(name)} must be a JSON-serialisable array of real numbers; "
                f"got an array of dtype {arr.dtype}."
            )
        return to_jsonable(arr.tolist(), name)
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, f"{name}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{_quote(name)} keys must be str (JSON object keys); got {k!r}.")
            out[k] = to_jsonable(v, f"{name}[{k!r}]")
        return out
    raise TypeError(
        f"{_quote(name)} must be a JSON-serialisable value (a number, string, bool, "
        f"None, or a list or dict of them); got {_describe(value)}."
    )


def dumps(record: Any) -> str:
    """The text `write_json_atomic` writes: `to_jsonable(record)`, keys sorted, valid JSON."""
    return json.dumps(to_jsonable(record), indent=1, sort_keys=True, allow_nan=False) + "\n"


def _fsync_dir(directory: pathlib.Path) -> None:
    """Makes a rename itself durable (POSIX); some platforms cannot open folders."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(path: pathlib.Path, write: Any) -> None:
    """Calls `write(binary_file)` on a temp file beside `path`, then renames it to `path`."""
    # Same folder, so the same file system and the rename is atomic. The leading dot and the
    # .tmp suffix keep a killed run's leftovers out of `*.json` globs.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        # Also on KeyboardInterrupt: never leave a half-written temp file behind.
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def write_json_atomic(path: str | os.PathLike, record: Any) -> None:
    """Writes `record` as JSON so that `path` is either absent or complete.

    The record is converted with `to_jsonable` first (non-finite floats become `null`), so a
    record that cannot be stored raises before anything is written.

    Args:
      path: the file; its folder must exist.
      record: a JSON-able value (see `to_jsonable`).

    Raises:
      TypeError: `record` holds something that is not JSON-serialisable.
      OSError: the file cannot be written (nothing is left behind, not even a temp file).
    """
    text = dumps(record).encode("utf-8")
    _write_atomic(pathlib.Path(path), lambda fh: fh.write(text))


def read_json(path: str | os.PathLike) -> Any:
    """The value stored in the JSON file `path`.

    Non-finite floats were written as `null` and come back as None (`np.asarray(x, float)`
    gives NaN for them); bare `NaN` / `Infinity` of files written by older versions parse as
    float NaN / inf.

    Raises:
      OSError: the file cannot be opened.
      ValueError: it is not valid JSON or not UTF-8 (`json.JSONDecodeError`,
        `UnicodeDecodeError`).
    """
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


# Figures.
# ------------------------------------------------------------------------------------------


def save_figure(fig: Any, path: str | os.PathLike, **savefig_kwargs: Any) -> pathlib.Path:
    """Saves a matplotlib figure atomically: `path` is the old file or the new one, never torn.

    Args:
      fig: a `matplotlib.figure.Figure`.
      path: the file; its suffix picks the format (`.png`, `.pdf`, `.svg`, ...).
      **savefig_kwargs: passed to `fig.savefig` (e.g. `dpi=150`, `bbox_inches="tight"`).

    Returns:
      `path` as a `pathlib.Path`.

    Raises:
      TypeError: `fig` has no `savefig` method.
      ValueError: `path` has no suffix to tell the format.
    """
    if not callable(getattr(fig, "savefig", None)):
        raise TypeError(f"`fig` must be a matplotlib Figure; got {_describe(fig)}.")
    path = pathlib.Path(path)
    fmt = savefig_kwargs.pop("format", None) or path.suffix.lstrip(".").lower()
    if not fmt:
        raise ValueError(
            f"`path` must end in a format suffix such as .png or .pdf; got {str(path)!r}."
        )
    # The temp file's name ends in .tmp, so the format is passed explicitly.
    _write_atomic(path, lambda fh: fig.savefig(fh, format=fmt, **savefig_kwargs))
    return path


# Environment.
# ------------------------------------------------------------------------------------------


def _version(name: str) -> str | None:
    """The version in use: the imported module's, else the installed distribution's."""
    module = sys.modules.get(name)
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """What produced a result: versions, backend, devices and whether x64 is enabled.

    Versions come from the imported modules, or from the installed distributions' metadata for
    modules not imported yet (so matplotlib and flax are not imported just to be named). JAX
    is imported to list the devices.

    Returns:
      A JSON-able dict:
        `jaxdyn`, `jax`, `jaxlib`, `flax`, `optax`, `numpy`, `scipy`, `matplotlib`: version
          strings, None where not installed;
        `python`: the interpreter's version;
        `backend`: `jax.default_backend()`, e.g. "cpu" or "gpu";
        `x64_enabled`: whether JAX uses 64-bit types here (the global flag, or a
          `jax.enable_x64` context around the call);
        `device_count`: `jax.device_count()`;
        `devices`: one `{"id", "platform", "kind"}` dict per device.
    """
    import jax

    env: dict[str, Any] = {"jaxdyn": _version("jaxdyn")}
    env.update({name: _version(name) for name in VERSIONED})
    env["python"] = platform.python_version()
    env["backend"] = jax.default_backend()
    env["x64_enabled"] = bool(jax.config.jax_enable_x64)
    devices = jax.devices()
    env["device_count"] = len(devices)
    env["devices"] = [
        {
            "id": int(d.id),
            "platform": str(d.platform),
            "kind": str(getattr(d, "device_kind", d.platform)),
        }
        for d in devices
    ]
    return env
