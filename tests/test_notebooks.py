"""Notebooks are executed at small size (their SIZE constant set to 0.1): examples double as
smoke tests. Code cells run in order in one namespace, as a kernel would run them."""
import json
import pathlib

import numpy as np
import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path):
    nb = json.loads(path.read_text())
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert cells and cells[0].startswith("SIZE = 1.0"), "first code cell must set SIZE"
    cells[0] = cells[0].replace("SIZE = 1.0", "SIZE = 0.1", 1)
    namespace: dict = {"__name__": "__notebook__"}
    for src in cells:
        exec(compile(src, f"{path.name}", "exec"), namespace)
    if path.name == "linear_vs_real.ipynb":
        # the linearized network trained by optax is the closed form, to float64 rounding
        assert float(namespace["agree"].rmse_lin_closed_form_test.max()) < 1e-10
        assert np.isfinite(namespace["sweep"].slopes["plateau_rmse"].slope)
