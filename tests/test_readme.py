"""The README's code blocks run as pasted, and its test command is the one CI runs.

Every ```python block is executed on its own, in a fresh namespace (so a block that relies on
names from another block fails here, as it would for a reader who pastes it).
"""

import contextlib
import io
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[tuple[int, str]]:
    """(line number, source) of every fenced block of `language` in the README."""
    out = []
    for match in re.finditer(rf"^```{language}\n(.*?)^```", README, flags=re.S | re.M):
        out.append((README[: match.start()].count("\n") + 1, match.group(1)))
    return out


PYTHON_BLOCKS = _blocks("python")


def test_readme_has_python_blocks():
    assert len(PYTHON_BLOCKS) >= 3


@pytest.mark.parametrize("line,source", PYTHON_BLOCKS, ids=[f"line{n}" for n, _ in PYTHON_BLOCKS])
def test_python_block_runs_as_pasted(line, source):
    namespace = {"__name__": "__readme__"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(source, f"README.md:{line}", "exec"), namespace)


def _commands(text: str) -> list[str]:
    """Shell command lines of a script or bash block, comments and blank lines dropped."""
    return [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]


def test_ci_runs_the_readme_test_command():
    first_block = _blocks("bash")[0][1]
    readme_cmds = _commands(first_block)
    assert len(readme_cmds) == 2, "the README starts with two commands: main job, tests"
    assert "pytest" in readme_cmds[1] and "pytest" not in readme_cmds[0]
    ci = _commands((ROOT / ".ci" / "run").read_text())
    assert readme_cmds[1] in ci, f".ci/run must run the README's test command {readme_cmds[1]!r}"
