"""The experiment protocol (`jaxdyn.experiments._runner`): flags built from a settings
dataclass, presets, validation before the output folder is claimed, registration, and the CLI
around a toy experiment registered here (so these tests cost no training)."""

import dataclasses
import json
import math
import types
from typing import Literal

import pytest

from jaxdyn import cli, results, sweep
from jaxdyn.experiments import EXPERIMENTS, _runner
from jaxdyn.experiments._runner import ExperimentSettings, option


@dataclasses.dataclass(frozen=True)
class ToySettings(ExperimentSettings):
    n: int = option(3, "how many points", minimum=1)
    rate: float = option(0.5, "a rate", minimum=0, strict_min=True)
    widths: tuple[int, ...] = option((4, 8), "widths", minimum=1, min_len=2, why="to fit a slope")
    pair: tuple[int, int] = option((1, 2), "a pair", metavar=("A", "B"))
    mode: Literal["a", "b"] = option("a", "the mode")
    flavour: str = option("x", "the flavour", choices=("x", "y"))
    verbose: bool = option(False, "say more")
    path: str | None = option(None, "a folder")

    def check(self, name):
        if self.pair[0] == self.pair[1]:
            _runner.fail(name("pair"), "two different ints", repr(list(self.pair)))


def _toy_module(calls):
    """A registered-looking experiment: sums `rate * i` over a sweep of `n` points."""

    def run(settings, out, progress=None):
        _runner.validate(settings)
        calls.append(settings)
        records = sweep.sweep(
            lambda i: {"value": settings.rate * i},
            {"i": list(range(settings.n))},
            out,
            settings=_runner.settings_dict(settings),
            progress=progress,
        )
        res = dict(total=sum(r["value"] for r in records), figures=[])
        results.write_json_atomic(f"{out}/results.json", res)
        return res

    module = types.ModuleType("toy_experiment")
    module.NAME, module.SUMMARY = "toy", "a toy experiment for the tests"
    module.Settings = ToySettings
    module.PRESETS = {"small": dict(n=1, widths=(2, 3))}
    module.run = run
    module.summary_lines = lambda res: [f"total {res['total']}"]
    return module


@pytest.fixture
def toy(monkeypatch):
    calls = []
    module = _runner.check_experiment(_toy_module(calls))
    monkeypatch.setitem(EXPERIMENTS, "toy", module)
    module.calls = calls
    return module


def _parse(argv):
    args = cli._parser().parse_args(["run", "toy", *argv])
    return _runner.settings_from_args(EXPERIMENTS["toy"], args)


def test_field_specs_read_the_annotations():
    specs = {s.name: s for s in _runner.field_specs(ToySettings)}
    assert (specs["n"].kind, specs["n"].nargs) == ("int", None)
    assert (specs["rate"].kind, specs["widths"].nargs, specs["pair"].nargs) == ("float", "+", 2)
    assert specs["mode"].choices == ("a", "b") and specs["flavour"].choices == ("x", "y")
    assert specs["verbose"].kind == "bool" and specs["path"].allow_none
    assert list(specs)[0] == "seed"  # from ExperimentSettings, for every experiment
    assert _runner.flag("n_train") == "--n-train"


def test_unsupported_annotation_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Bad(ExperimentSettings):
        table: dict = option(None, "a table")

    with pytest.raises(TypeError, match="Bad.table"):
        _runner.field_specs(Bad)


def test_flags_defaults_and_help(toy, capsys):
    assert _parse([]) == ToySettings()
    with pytest.raises(SystemExit):
        cli.main(["run", "toy", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for flag in (
        "--n",
        "--rate",
        "--widths",
        "--pair A B",
        "--mode {a,b}",
        "--flavour {x,y}",
        "--verbose",
        "--no-verbose",
        "--path",
        "--seed",
        "--size {default,small}",
        "--out",
        "--quiet",
    ):
        assert flag in text, flag
    assert "how many points (default 3; small: 1)" in text
    assert "widths (default 4 8; small: 2 3)" in text


def test_flags_parse_to_typed_settings(toy):
    s = _parse(
        [
            "--n",
            "5",
            "--rate",
            "0.25",
            "--widths",
            "1",
            "2",
            "3",
            "--pair",
            "5",
            "6",
            "--mode",
            "b",
            "--flavour",
            "y",
            "--verbose",
            "--path",
            "/tmp",
            "--seed",
            "7",
        ]
    )
    assert s == ToySettings(
        seed=7,
        n=5,
        rate=0.25,
        widths=(1, 2, 3),
        pair=(5, 6),
        mode="b",
        flavour="y",
        verbose=True,
        path="/tmp",
    )
    assert isinstance(s.widths, tuple) and isinstance(s.rate, float)


def test_presets_and_explicit_flags_override_them(toy):
    assert _parse(["--size", "small"]) == ToySettings(n=1, widths=(2, 3))
    assert _parse(["--size", "small", "--n", "9"]) == ToySettings(n=9, widths=(2, 3))
    # a flag given with the dataclass default still overrides the preset
    assert _parse(["--size", "small", "--n", "3"]).n == 3


@pytest.mark.parametrize(
    "argv", [["--n", "2.5"], ["--mode", "c"], ["--pair", "1"], ["--size", "huge"], ["--widths"]]
)
def test_argparse_refuses_malformed_flags(toy, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "toy", *argv])
    assert exc.value.code == 2
    assert argv[0] in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs, name, got, exc",
    [
        (dict(rate=math.nan), "`rate`", "nan", ValueError),
        (dict(rate=0.0), "`rate`", "0.0", ValueError),
        (dict(n=0), "`n`", "0", ValueError),
        (dict(n=2.0), "`n`", "2.0", TypeError),
        (dict(n=True), "`n`", "True", TypeError),
        (dict(widths=(8,)), "`widths`", "[8]", ValueError),
        (dict(widths=(8, 0)), "`widths[1]`", "0", ValueError),
        (dict(pair=(1, 2, 3)), "`pair`", "[1, 2, 3]", ValueError),
        (dict(pair=(4, 4)), "`pair`", "[4, 4]", ValueError),
        (dict(mode="c"), "`mode`", "'c'", ValueError),
        (dict(verbose=1), "`verbose`", "1", TypeError),
        (dict(path=3), "`path`", "3", TypeError),
        (dict(seed=-1), "`seed`", "-1", ValueError),
    ],
)
def test_validate_names_the_setting_and_the_value(kwargs, name, got, exc):
    with pytest.raises(exc) as err:
        ToySettings(**kwargs).validate()
    assert str(err.value).startswith(name + " must be ") and f"got {got}" in str(err.value)


def test_min_len_message_says_why():
    with pytest.raises(
        ValueError,
        match=r"`--widths` must be 2 or more ints \(to fit a slope\); "
        r"got \[8\]\.",
    ):
        _runner.validate(ToySettings(widths=(8,)), _runner.flag)


def test_cli_validates_before_the_experiment_runs(toy, tmp_path, capsys):
    out = tmp_path / "run"
    for argv, flag in (
        (["--rate", "nan"], "--rate"),
        (["--widths", "8"], "--widths"),
        (["--pair", "3", "3"], "--pair"),
    ):
        assert cli.main(["run", "toy", "--out", str(out), "--quiet", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"jaxdyn run toy: `{flag}` must be ") and "\n" not in err
        assert not out.exists() and toy.calls == []


def test_cli_runs_the_toy_with_a_progress_bar(toy, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["run", "toy", "--out", str(out), "--n", "3", "--rate", "2"]) == 0
    captured = capsys.readouterr()
    assert "total 6.0" in captured.out and "3/3" in captured.err
    assert json.loads((out / "results.json").read_text())["total"] == 2 * (0 + 1 + 2)
    assert json.loads((out / "points" / "i2.json").read_text())["value"] == 4.0


def test_list_shows_every_experiment(toy, capsys):
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, module in EXPERIMENTS.items():
        assert any(line.split()[0] == name and module.SUMMARY in line for line in lines)


def test_check_experiment_refuses_broken_modules():
    module = _toy_module([])
    module.PRESETS = {"small": dict(m=1)}
    with pytest.raises(ValueError, match=r"PRESETS\['small'\].*\['m'\]"):
        _runner.check_experiment(module)
    module.PRESETS = {"small": dict(n=0)}
    with pytest.raises(ValueError, match=r"PRESETS\['small'\]\['n'\].*got 0"):
        _runner.check_experiment(module)
    del module.PRESETS
    loose = type("Loose", (), {"__annotations__": {"n": int}, "n": 1})
    module.Settings = dataclasses.dataclass(loose)
    with pytest.raises(TypeError, match="frozen dataclass"):
        _runner.check_experiment(module)
    del module.run
    with pytest.raises(TypeError, match="run"):
        _runner.check_experiment(module)


def test_register_refuses_a_second_experiment_with_the_same_name():
    registry = {}
    _runner.register(registry, _toy_module([]))
    with pytest.raises(ValueError, match="'toy'"):
        _runner.register(registry, _toy_module([]))
