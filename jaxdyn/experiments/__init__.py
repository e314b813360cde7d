"""Runnable experiments, each built only on jaxdyn's public API. `EXPERIMENTS` maps the name
used by `jaxdyn run NAME` to its module; the protocol a module follows (NAME, SUMMARY, a
`Settings` dataclass, PRESETS, `run(settings, out, progress)`, `summary_lines`) is described
in `jaxdyn.experiments._runner`, which also builds the command-line flags from the settings."""

import importlib

from jaxdyn._checks import fail
from jaxdyn.experiments import _runner
from jaxdyn.experiments._runner import (
    ExperimentSettings,
    finish,
    option,
    precision,
    settings_dict,
    validate,
)

# The experiment modules, in the order `jaxdyn list` shows them (one per line).
_MODULES = (
    "linear_vs_real",
    "frequency_principle",
    "frequency_highd",
    "frequency_image",
    "mscale",
    "phase_diagram",
    "condensation",
    "two_point",
    "rich_lazy",
    "xor",
    "representation_digits",
    "emc",
    "modular_addition",
)

EXPERIMENTS: dict = {}
for _name in _MODULES:
    _runner.register(EXPERIMENTS, importlib.import_module(f"jaxdyn.experiments.{_name}"))

__all__ = [
    "EXPERIMENTS",
    "ExperimentSettings",
    "fail",
    "finish",
    "option",
    "precision",
    "settings_dict",
    "validate",
]
