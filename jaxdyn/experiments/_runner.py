"""The experiment protocol: settings dataclasses, presets, validation and the CLI flags built
from them.

An experiment is a module registered in `jaxdyn.experiments.EXPERIMENTS` that defines:

  NAME       the name used by `jaxdyn run NAME`, e.g. "linear-vs-real".
  SUMMARY    one line for `jaxdyn list`.
  Settings   a frozen dataclass subclassing `ExperimentSettings` (which adds `seed`); each
             field is one `--flag`, declared with `option(default, help, ...)`. Cross-field
             checks go in its `check(self, name)` method.
  PRESETS    optional `{"default": {}, "small": {...}, ...}`: `--size NAME` starts from
             `Settings(**PRESETS[NAME])`; flags given explicitly override the preset.
  run(settings, out, progress) -> dict
             validates (`validate(settings)`) BEFORE claiming `out`, runs, writes
             `out/results.json` and figures, returns the results (with a "figures" list).
  summary_lines(results) -> list[str]
             optional: what the CLI prints after a run.

Every experiment gets `--out`, `--seed`, `--size`, `--quiet` and a progress bar from the CLI.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import pathlib
import sys
import time
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import jax

from jaxdyn import _checks
from jaxdyn._checks import fail  # noqa: F401  (experiments' `check` methods raise with it)

Progress = Callable[[int, int, str], None]
NameFn = Callable[[str], str]


def option(
    default: Any,
    help: str,
    *,
    choices: tuple | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_min: bool = False,
    min_len: int = 1,
    why: str = "",
    metavar: str | tuple[str, ...] | None = None,
) -> Any:
    """A settings field: its default, the help text of its `--flag` and its checks.

    Args:
      default: the default value (immutable: a tuple, not a list).
      help: one phrase for `--help` (the default and preset values are appended).
      choices: allowed values (a `Literal[...]` annotation gives them too).
      minimum, maximum: bounds of a number, or of each element of a tuple of numbers;
        `minimum` is exclusive when `strict_min`.
      min_len: the fewest elements of a variable-length tuple (`tuple[int, ...]`).
      why: why the bounds hold, for the error message ("to fit slopes against width").
      metavar: argparse's name(s) for the value(s) in `--help`.
    """
    meta = dict(
        help=help,
        choices=choices,
        minimum=minimum,
        maximum=maximum,
        strict_min=strict_min,
        min_len=min_len,
        why=why,
        metavar=metavar,
    )
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class ExperimentSettings:
    """Base of every experiment's settings: the fields every experiment has."""

    seed: int = option(0, "first random seed (runs use seed, seed + 1, ...)", minimum=0)

    def check(self, name: NameFn) -> None:
        """Checks between fields (each field alone is checked from its type and `option`).

        Args:
          name: maps a field name to the name the user wrote (`widths` or `--widths`);
            messages use it: `_checks.fail(name("widths"), ...)`.
        """

    def validate(self) -> None:
        """Raises ValueError/TypeError naming the first bad setting (see `validate`)."""
        validate(self)


class FieldSpec(NamedTuple):
    """How one settings field is typed: `kind` is "int", "float", "str" or "bool"; `nargs`
    is None (a scalar), "+" (a variable-length tuple) or an int (a fixed-length tuple)."""

    name: str
    kind: str
    nargs: int | str | None
    allow_none: bool
    choices: tuple | None
    meta: Mapping[str, Any]
    default: Any


_KINDS = {int: "int", float: "float", str: "str", bool: "bool"}


def _unsupported(cls: type, name: str, hint: Any) -> TypeError:
    return TypeError(
        f"`{cls.__name__}.{name}` must be annotated as int, float, str, bool, a "
        f"Literal, a tuple of those or one of those | None; got {hint!r}."
    )


def field_specs(cls: type) -> list[FieldSpec]:
    """The `FieldSpec` of every field of the settings dataclass `cls`, in field order.

    Raises:
      TypeError: `cls` is not a dataclass, or a field has an annotation the CLI cannot parse.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"`Settings` must be a dataclass; got {cls!r}.")
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        hint, allow_none, nargs = hints[f.name], False, None
        args = typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            rest = [a for a in args if a is not type(None)]
            if len(rest) != 1:
                raise _unsupported(cls, f.name, hint)
            hint, allow_none = rest[0], True
            args = typing.get_args(hint)
        if typing.get_origin(hint) is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                nargs = "+"
            elif args and len(set(args)) == 1:
                nargs = len(args)
            else:
                raise _unsupported(cls, f.name, hint)
            hint = args[0]
        choices = f.metadata.get("choices")
        if typing.get_origin(hint) is Literal:
            choices = typing.get_args(hint)
            hint = type(choices[0])
        if hint not in _KINDS or (nargs is not None and hint is bool):
            raise _unsupported(cls, f.name, hint)
        default = f.default if f.default is not dataclasses.MISSING else None
        specs.append(
            FieldSpec(
                f.name,
                _KINDS[hint],
                nargs,
                allow_none,
                None if choices is None else tuple(choices),
                f.metadata,
                default,
            )
        )
    return specs


def flag(field_name: str) -> str:
    """The command-line flag of a settings field: `n_train` -> `--n-train`."""
    return "--" + field_name.replace("_", "-")


def _check_scalar(spec: FieldSpec, label: str, value: Any) -> Any:
    m = spec.meta
    if spec.choices is not None:
        return _checks.check_choice(label, value, spec.choices)
    if spec.kind == "bool":
        return _checks.check_bool(label, value)
    if spec.kind == "int":
        return _checks.check_int(label, value, minimum=m.get("minimum"), maximum=m.get("maximum"))
    if spec.kind == "float":
        return _checks.check_float(
            label,
            value,
            minimum=m.get("minimum"),
            maximum=m.get("maximum"),
            strict_min=bool(m.get("strict_min")),
        )
    if not isinstance(value, str):
        _checks.fail(label, "a string", _checks.describe(value), TypeError)
    return value


def _check_field(spec: FieldSpec, value: Any, name: NameFn) -> None:
    label = name(spec.name)
    if value is None and spec.allow_none:
        return
    if spec.nargs is None:
        _check_scalar(spec, label, value)
        return
    why = f" ({spec.meta['why']})" if spec.meta.get("why") else ""
    if not isinstance(value, (tuple, list)):
        _checks.fail(label, f"a tuple of {spec.kind}s", _checks.describe(value), TypeError)
    min_len = spec.meta.get("min_len", 1)
    if spec.nargs == "+" and len(value) < min_len:
        _checks.fail(label, f"{min_len} or more {spec.kind}s{why}", repr(list(value)))
    if isinstance(spec.nargs, int) and len(value) != spec.nargs:
        _checks.fail(label, f"{spec.nargs} {spec.kind}s{why}", repr(list(value)))
    for i, v in enumerate(value):
        _check_scalar(spec, f"{label.strip('`')}[{i}]", v)


def _plain(field_name: str) -> str:
    return field_name


def validate(settings: ExperimentSettings, name: NameFn = _plain) -> None:
    """Checks every field of `settings` (type, bounds, choices, NaN, lengths), then the
    experiment's cross-field `settings.check(name)`. Cheap: run it before claiming a folder.

    Args:
      settings: an instance of an experiment's `Settings`.
      name: maps a field name to the name used in messages (the CLI passes `flag`).

    Raises:
      TypeError: a setting of the wrong kind (a string for an int, ...).
      ValueError: a setting out of range, not among its choices, NaN, ...
    """
    if not isinstance(settings, ExperimentSettings):
        _checks.fail(
            "settings",
            "an experiment's Settings (an ExperimentSettings dataclass)",
            _checks.describe(settings),
            TypeError,
        )
    for spec in field_specs(type(settings)):
        _check_field(spec, getattr(settings, spec.name), name)
    settings.check(name)


def finish(
    out: Any,
    res: dict[str, Any],
    points: Any,
    save_figures: Callable[[dict, Any, Any], Sequence[str]],
) -> dict[str, Any]:
    """An experiment's last step: draws its figures into `out` (their file names go to
    `res["figures"]`), then writes `out/results.json` atomically, last, so that its presence
    means the run finished. Returns the JSON-ready record."""
    from jaxdyn import results

    out = pathlib.Path(out)
    res["figures"] = list(save_figures(res, points, out))
    res = results.to_jsonable(res)
    results.write_json_atomic(out / "results.json", res)
    return res


def precision(dtype: str) -> contextlib.AbstractContextManager:
    """The scope an experiment computes in: `jax.enable_x64(True)` for `"float64"` (local, so
    the global x64 default stays off), no change otherwise."""
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


def settings_dict(settings: ExperimentSettings) -> dict[str, Any]:
    """The settings as a JSON-ready dict (tuples become lists), as stored in results.json."""
    values = dataclasses.asdict(settings)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


# --------------------------------------------------------------------------- registry

_REQUIRED = ("NAME", "SUMMARY", "Settings", "run")


def presets(module: types.ModuleType) -> dict[str, dict[str, Any]]:
    """The module's `PRESETS` with "default" (the dataclass defaults) always present."""
    return {"default": {}, **getattr(module, "PRESETS", {})}


def check_experiment(module: types.ModuleType) -> types.ModuleType:
    """Checks that `module` follows the protocol above; returns it.

    Raises:
      TypeError: an attribute is missing or of the wrong kind, or a field cannot be a flag.
      ValueError: a preset names a field that does not exist, or its values are invalid.
    """
    for attr in _REQUIRED:
        if not hasattr(module, attr):
            _checks.fail(
                f"{module.__name__}.{attr}", "defined by an experiment module", "nothing", TypeError
            )
    cls = module.Settings
    if not (
        isinstance(cls, type)
        and issubclass(cls, ExperimentSettings)
        and dataclasses.is_dataclass(cls)
        and cls.__dataclass_params__.frozen
    ):
        _checks.fail(
            f"{module.__name__}.Settings",
            "a frozen dataclass subclassing ExperimentSettings",
            repr(cls),
            TypeError,
        )
    field_specs(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for size, values in presets(module).items():
        unknown = sorted(set(values) - names)
        if unknown:
            _checks.fail(
                f"{module.__name__}.PRESETS[{size!r}]",
                f"settings of {cls.__name__} (one of {sorted(names)})",
                repr(unknown),
            )
        validate(cls(**values), lambda f, size=size: f"PRESETS[{size!r}][{f!r}]")
    return module


def register(registry: dict[str, types.ModuleType], module: types.ModuleType) -> types.ModuleType:
    """Adds the experiment `module` to `registry` under `module.NAME` after `check_experiment`."""
    check_experiment(module)
    if module.NAME in registry and registry[module.NAME] is not module:
        _checks.fail("NAME", "unique among the experiments", repr(module.NAME))
    registry[module.NAME] = module
    return module


# --------------------------------------------------------------------------- CLI


def _default_text(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return " ".join(map(str, value))
    return "none" if value is None else str(value)


def add_arguments(parser: argparse.ArgumentParser, module: types.ModuleType) -> None:
    """Adds one `--flag` per settings field of `module`, plus `--size`.

    Flags default to "not given" (argparse.SUPPRESS) so that `settings_from_args` can tell an
    explicit flag (overrides the preset) from the preset's value.
    """
    sizes = presets(module)
    described = [
        f"{k}: "
        + (", ".join(f"{flag(f)} {_default_text(v)}" for f, v in p.items()) or "the defaults")
        for k, p in sizes.items()
    ]
    parser.add_argument(
        "--size",
        default="default",
        choices=tuple(sizes),
        help="preset of settings to start from (explicit flags override it): "
        + "; ".join(described),
    )
    for spec in field_specs(module.Settings):
        kwargs: dict[str, Any] = dict(dest=spec.name, default=argparse.SUPPRESS)
        shown = [f"default {_default_text(spec.default)}"]
        shown += [f"{k}: {_default_text(p[spec.name])}" for k, p in sizes.items() if spec.name in p]
        kwargs["help"] = f"{spec.meta.get('help', '')} ({'; '.join(shown)})".replace("%", "%%")
        if spec.kind == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = {"int": int, "float": float, "str": str}[spec.kind]
            if spec.nargs is not None:
                kwargs["nargs"] = spec.nargs
            if spec.choices is not None:
                kwargs["choices"] = spec.choices
            if spec.meta.get("metavar") is not None:
                kwargs["metavar"] = spec.meta["metavar"]
        parser.add_argument(flag(spec.name), **kwargs)


def settings_from_args(module: types.ModuleType, args: argparse.Namespace) -> ExperimentSettings:
    """`module.Settings` from the preset `args.size`, overridden by the flags given."""
    values = dict(presets(module)[args.size])
    for spec in field_specs(module.Settings):
        if hasattr(args, spec.name):
            v = getattr(args, spec.name)
            values[spec.name] = tuple(v) if isinstance(v, list) else v
    return module.Settings(**values)


class ProgressBar:
    """A dependency-free progress bar on stderr: `bar(done, total, description)`."""

    def __init__(self, stream=None, width: int = 30):
        self.stream = sys.stderr if stream is None else stream
        self.width, self.start = width, time.perf_counter()

    def __call__(self, done: int, total: int, description: str) -> None:
        frac = done / max(total, 1)
        filled = int(round(self.width * frac))
        elapsed = time.perf_counter() - self.start
        eta = elapsed / frac - elapsed if 0 < frac < 1 else 0.0
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} "
            f"{elapsed:6.1f}s eta {eta:5.1f}s  {description:<32}"
        )
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()
