"""Old import path of the hand-written reference models: they live in tests/helpers.py."""

from helpers import explicit_ntk, init_mlp, mlp_apply, nt_delta, nt_mlp_apply, nt_mlp_params

__all__ = ["explicit_ntk", "init_mlp", "mlp_apply", "nt_delta", "nt_mlp_apply", "nt_mlp_params"]
