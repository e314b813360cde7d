"""Notebooks executed through a real Jupyter kernel (nbclient + ipykernel), as `jupyter
nbconvert --execute` runs them, at small size (the first cell's `SIZE = 1.0` set to 0.1 in
memory): examples double as smoke tests, and a figure that a kernel would not display (a cell
ending in a bare matplotlib `Figure`) fails here, where running the cells with `exec` could not
see it."""

import base64
import json
import pathlib
import sys

import numpy as np
import pytest

try:
    import nbclient
    import nbformat
except ImportError as err:  # a clear hint instead of a bare ModuleNotFoundError
    raise ImportError(
        "tests/test_notebooks.py runs the notebooks in a Jupyter kernel; install "
        'nbclient and ipykernel (`pip install -e ".[test]"`).'
    ) from err

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
# The longest analysis notebooks (10-15 s each on 2 cores) run with -m slow, to keep the
# default suite under its 6-minute budget; their experiments have default tests of their own.
SLOW_NOTEBOOKS = {"condensation.ipynb", "representation_dynamics.ipynb"}
NOTEBOOKS = [
    pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW_NOTEBOOKS else p for p in NOTEBOOKS
]
KERNEL = "jaxdyn-test-python"
PNG_MAGIC = b"\x89PNG"
# Inserted (in memory) after each figure cell: the figure's axes labels and titles, for the test.
LABELS = "FIGURE LABELS "
LABEL_CHECK = (
    f"print({LABELS!r} + __import__('json').dumps("
    "[[a.get_xlabel(), a.get_ylabel(), a.get_title()] for a in fig.axes]))"
)


@pytest.fixture
def kernel_name(tmp_path, monkeypatch):
    """A kernelspec that runs this interpreter (the venv that has jaxdyn), found through
    JUPYTER_PATH: a fresh CI machine has no registered kernel, and a user's `python3` kernel
    may belong to another Python."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "jaxdyn tests",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL


def _run(path: pathlib.Path, kernel_name: str):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and code[0].source.startswith("SIZE = 1.0"), "first code cell must set SIZE"
    code[0].source = code[0].source.replace("SIZE = 1.0", "SIZE = 0.1", 1)
    for cell in code:
        if "display(fig)" in cell.source:
            nb.cells.insert(nb.cells.index(cell) + 1, nbformat.v4.new_code_cell(LABEL_CHECK))
    code = [c for c in nb.cells if c.cell_type == "code"]
    client = nbclient.NotebookClient(
        nb, kernel_name=kernel_name, timeout=600, resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # raises CellExecutionError, with the cell's traceback, on any error
    return code


def _text(cell, name: str = "stdout") -> str:
    return "".join(
        o.get("text", "")
        for o in cell.outputs
        if o.output_type == "stream" and o.get("name") == name
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_a_kernel_and_shows_its_figures(path, kernel_name):
    code = _run(path, kernel_name)
    for i, cell in enumerate(code):
        assert not [o for o in cell.outputs if o.output_type == "error"], f"code cell {i} failed"
        for o in cell.outputs:
            # the bug this test exists for: a Figure shown as its text repr, not as an image
            text = o.get("data", {}).get("text/plain", "")
            assert "image/png" in o.get("data", {}) or not text.startswith("<Figure"), (
                f"code cell {i} shows {text!r} instead of an image"
            )
    images = [
        (i, o.data["image/png"])
        for i, cell in enumerate(code)
        for o in cell.outputs
        if o.output_type in ("display_data", "execute_result") and "image/png" in o.data
    ]
    plotting = [i for i, cell in enumerate(code) if "display(fig)" in cell.source]
    assert plotting, "the notebook draws no figure"
    assert sorted({i for i, _ in images}) == plotting, "every figure cell must show an image"
    assert all(base64.b64decode(png)[:4] == PNG_MAGIC for _, png in images)
    # every panel of every figure has an x label, a y label and a title
    labels = [
        json.loads(line[len(LABELS) :])
        for cell in code
        for line in _text(cell).splitlines()
        if line.startswith(LABELS)
    ]
    assert len(labels) == len(plotting)
    for figure, axes in zip(plotting, labels):
        assert axes and all(text.strip() for ax in axes for text in ax), (figure, axes)

    if path.name == "linear_vs_real.ipynb":
        summary = json.loads(_text(code[-1]).strip().splitlines()[-1])  # the summary cell
        # the linearized network trained by optax is the closed form, to float64 rounding
        assert summary["max_rmse_lin_closed_form"] < 1e-10
        assert np.isfinite(summary["plateau_rmse_slope"])
