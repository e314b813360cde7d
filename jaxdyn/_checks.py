"""Input checks shared by the public entry points. Messages name the argument, what was
received and what was expected; checks on values run only when the values are concrete
(outside `jit`), so every function stays traceable."""
from __future__ import annotations

from typing import Any

import jax
import numpy as np


def is_concrete(*arrays: Any) -> bool:
    """True when no leaf of `arrays` is a tracer (we are outside jit/vmap/grad)."""
    leaves = jax.tree_util.tree_leaves(arrays)
    return not any(isinstance(a, jax.core.Tracer) for a in leaves)


def check_same_structure(name: str, tree: Any, ref_name: str, ref: Any) -> None:
    """Raises ValueError when `tree` and `ref` have different PyTree structure."""
    s1, s2 = jax.tree_util.tree_structure(tree), jax.tree_util.tree_structure(ref)
    if s1 != s2:
        raise ValueError(
            f"`{name}` must have the same PyTree structure as `{ref_name}`; got\n  {s1}\n"
            f"expected\n  {s2}.")


def check_finite(name: str, x: Any) -> None:
    """Raises ValueError when a concrete array (or PyTree of arrays) holds NaN or Inf."""
    if x is None or not is_concrete(x):
        return
    for path, leaf in jax.tree_util.tree_leaves_with_path(x):
        a = np.asarray(leaf)
        if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
            where = "" if not path else f" (leaf {jax.tree_util.keystr(path)})"
            bad = np.argwhere(~np.isfinite(a))
            raise ValueError(
                f"`{name}`{where} contains {int(bad.shape[0])} NaN/Inf value(s), first at index "
                f"{tuple(int(i) for i in bad[0])}; expected finite values.")


def check_array(name: str, x: Any, *, min_ndim: int = 1) -> None:
    """Raises TypeError for non-arrays and ValueError for too few dimensions."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"`{name}` must be an array; got {type(x).__name__}.")
    if x.ndim < min_ndim:
        raise ValueError(
            f"`{name}` must have at least {min_ndim} dimension(s) with the batch axis first; "
            f"got shape {tuple(x.shape)}.")
