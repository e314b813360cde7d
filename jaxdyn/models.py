"""Deprecated location of the model adapters: use `jaxdyn.adapters`.

The adapters (`as_model`, `from_linen`, `from_nnx`, `from_stax`, also exported by `jaxdyn`)
moved to `jaxdyn/adapters.py` so that a file name says what it holds (networks live in
`jaxdyn.nets`); this module re-exports them so `from jaxdyn.models import ...` keeps working.
"""

from jaxdyn.adapters import ApplyFn, PyTree, as_model, from_linen, from_nnx, from_stax

__all__ = ["ApplyFn", "PyTree", "as_model", "from_linen", "from_nnx", "from_stax"]
