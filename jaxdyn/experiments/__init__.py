"""Runnable experiments, each built only on jaxdyn's public API. `EXPERIMENTS` maps the name
used by `jaxdyn run NAME` to its module; the protocol a module follows (NAME, SUMMARY, a
`Settings` dataclass, PRESETS, `run(settings, out, progress)`, `summary_lines`) is described
in `jaxdyn.experiments._runner`, which also builds the command-line flags from the settings."""

from jaxdyn._checks import fail
from jaxdyn.experiments import (
    _runner,
    linear_vs_real,  # noqa: I001 (after the protocol it builds on)
    modular_addition,
)
from jaxdyn.experiments._runner import ExperimentSettings, finish, option, settings_dict, validate

EXPERIMENTS: dict = {}
for _module in (linear_vs_real, modular_addition):
    _runner.register(EXPERIMENTS, _module)

__all__ = [
    "EXPERIMENTS",
    "ExperimentSettings",
    "fail",
    "finish",
    "option",
    "settings_dict",
    "validate",
]
