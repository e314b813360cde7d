"""jaxdyn: a JAX toolkit for studying how neural networks learn.

Public API, re-exported from the modules that define it:

- `linearize`, `taylor_expand`: Taylor models of `apply_fn(params, x)` in its parameters.
- `empirical_ntk`, `ntk_fn`, `ntk_by_group`, `ntk_by_group_fn`, `ntk_cost`, `param_groups`:
  the empirical neural tangent kernel.
- `dynamics`: closed-form MSE training dynamics (`dynamics.mse`) and infinite-width
  ensembles (`dynamics.mse_ensemble`).
- `data`: offline datasets (scikit-learn digits, MNIST-1D, synthetic tasks) and IDX /
  CIFAR-10 binary readers.
- `train`: real training under `lax.scan` with any optax optimizer (`trajectory`,
  `Trajectory`, `kernel_change`).
- `compare`: network vs linearization vs closed form (`agreement`), log-log slopes,
  resumable `width_sweep`.
- `nets`: stax-style layers with three faces, `serial(...) -> (init_fn, apply_fn, kernel_fn)`;
  `infinite` holds their infinite-width NNGP/NTK recursions.
- `from_linen`, `from_nnx`, `from_stax`, `as_model`: turn flax and stax models into
  `apply_fn(params, x)`.
- `structure`: the linear-layer structure (`LinearStructure`) that the fast
  `method="structured"` NTK uses.
"""
from jaxdyn import compare, data, dynamics, infinite, nets, structure, train
from jaxdyn.linearize import linearize, taylor_expand
from jaxdyn.models import as_model, from_linen, from_nnx, from_stax
from jaxdyn.train import Trajectory, kernel_change, trajectory
from jaxdyn.ntk import (NTKCost, empirical_ntk, ntk_by_group, ntk_by_group_fn, ntk_cost,
                        ntk_fn, param_groups)

__version__ = "0.1.0"

__all__ = [
    "NTKCost", "as_model", "compare", "data", "dynamics", "infinite", "nets", "empirical_ntk", "from_linen", "from_nnx", "from_stax",
    "linearize", "ntk_by_group", "ntk_by_group_fn", "ntk_cost", "ntk_fn", "param_groups",
    "structure", "taylor_expand", "train", "Trajectory", "trajectory", "kernel_change",
]
