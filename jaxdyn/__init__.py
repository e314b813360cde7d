"""jaxdyn: a JAX toolkit for studying how neural networks learn.

Public API, re-exported from the modules that define it:

- `linearize`, `taylor_expand`: Taylor models of `apply_fn(params, x)` in its parameters.
- `empirical_ntk`, `ntk_fn`, `ntk_by_group`, `ntk_by_group_fn`, `ntk_cost`, `param_groups`:
  the empirical neural tangent kernel; `ntk_vp_fn` its matrix-free product `v -> Theta v`.
- `dynamics`: closed-form MSE training dynamics (`dynamics.mse`, matrix-free
  `dynamics.mse_matrix_free`), infinite-width ensembles (`dynamics.mse_ensemble`), GP posteriors
  (`dynamics.gp_inference`) and function-space dynamics for any loss
  (`dynamics.gradient_descent`).
- `monte_carlo_kernel_fn`: NNGP and NTK estimated over random initialisations.
- `data`: offline datasets (scikit-learn digits, MNIST-1D, synthetic tasks) and IDX /
  CIFAR-10 binary readers.
- `train`: real training under `lax.scan` with any optax optimizer (`trajectory`,
  `Trajectory`, `kernel_change`).
- `compare`: network vs linearization vs closed form (`agreement`), log-log slopes,
  `width_sweep`.
- `sweep`: resumable sweeps over any named grid (`sweep.sweep`), keyed points for searches
  (`sweep.open_sweep`); `results`: atomic JSON, the environment record, figure saving.
- `nets`: stax-style layers with three faces, `serial(...) -> (init_fn, apply_fn, kernel_fn)`;
  `infinite` holds their infinite-width NNGP/NTK recursions.
- `from_linen`, `from_nnx`, `from_stax`, `as_model` (module `adapters`): turn flax and stax
  models into `apply_fn(params, x)`.
- `structure`: the linear-layer structure (`LinearStructure`) that the fast
  `method="structured"` NTK uses.
- `jaxdyn.plot` (imported on its own, it needs matplotlib): generic figures, arrays or result
  objects and an `ax` in, a Figure out.
"""

from jaxdyn import (
    adapters,
    compare,
    data,
    dynamics,
    infinite,
    nets,
    results,
    structure,
    sweep,
    train,
)
from jaxdyn._ntk_vp import NTKVectorProduct, ntk_vp_fn
from jaxdyn.adapters import as_model, from_linen, from_nnx, from_stax
from jaxdyn.linearize import linearize, taylor_expand
from jaxdyn.monte_carlo import monte_carlo_kernel_fn
from jaxdyn.ntk import (
    NTKCost,
    empirical_ntk,
    ntk_by_group,
    ntk_by_group_fn,
    ntk_cost,
    ntk_fn,
    param_groups,
)
from jaxdyn.train import Trajectory, kernel_change, trajectory

__version__ = "0.1.0"

__all__ = [
    "NTKCost",
    "NTKVectorProduct",
    "Trajectory",
    "adapters",
    "as_model",
    "compare",
    "data",
    "dynamics",
    "empirical_ntk",
    "from_linen",
    "from_nnx",
    "from_stax",
    "infinite",
    "kernel_change",
    "linearize",
    "monte_carlo_kernel_fn",
    "nets",
    "ntk_by_group",
    "ntk_by_group_fn",
    "ntk_cost",
    "ntk_fn",
    "ntk_vp_fn",
    "param_groups",
    "results",
    "structure",
    "sweep",
    "taylor_expand",
    "train",
    "trajectory",
]
