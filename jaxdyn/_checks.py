"""The input checks shared by every public entry point: one vocabulary, one message style.

Every message reads "`NAME` must be EXPECTED; got RECEIVED." where NAME is the argument as
the user wrote it (qualified by the public function where the bare name is ambiguous, e.g.
"trajectory(y_train)"). TypeError for the wrong kind of object, ValueError for a wrong value
or shape. Checks on *values* (NaN, ranges of arrays) run only when the values are concrete
(outside `jit`/`vmap`/`grad`), so every checked function stays traceable; checks on shapes,
dtypes and PyTree structure are static and run under tracing too.

Example:
    >>> check_int("steps", 0, minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: `steps` must be a positive int; got 0.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

import jax
import jax.numpy as jnp
import numpy as np


class ArgumentTypeError(TypeError, ValueError):
    """A TypeError that is also a ValueError.

    Raised by `check_int` and `check_float` for the wrong kind of number (2.5 for a count, a
    string for a float). Before these checks existed such values raised ValueError, so the
    class keeps `except ValueError` callers working, as `numpy.exceptions.AxisError`
    (ValueError and IndexError) does for axes.
    """


def _quote(name: str) -> str:
    return name if name.startswith("`") else f"`{name}`"


def _leaf(name: str, path: tuple) -> str:
    """`name` followed by a PyTree path, inside the backticks: `params['W1']`."""
    return _quote(name)[:-1] + jax.tree_util.keystr(path) + "`"


def describe(value: Any) -> str:
    """Short description of a received value for an error message.

    Arrays are described by shape and dtype (never by their values); small scalars and strings
    by their repr; anything else by repr (cut to 80 characters) and its type.
    """
    if isinstance(value, jax.core.Tracer) or (
        hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, np.generic)
    ):
        if (
            not isinstance(value, jax.core.Tracer)
            and tuple(value.shape) == ()
            and hasattr(value, "item")
        ):
            return f"{value.item()!r} (a 0-d array of dtype {np.dtype(value.dtype).name})"
        return f"an array of shape {tuple(value.shape)} and dtype {np.dtype(value.dtype).name}"
    if value is None or isinstance(value, (bool, str, int, float)):
        return repr(value)
    if isinstance(value, (np.generic, numbers.Number)):
        item = value.item() if isinstance(value, np.generic) else value
        return f"{item!r} ({type(value).__name__})"
    text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    return f"{text} (a {type(value).__name__})"


def fail(name: str, expected: str, got: str, exc: type[Exception] = ValueError) -> NoReturn:
    """Raises `exc("`name` must be expected; got got.")`, the one message style.

    Args:
      name: the argument as the user wrote it, e.g. "x_train" or "trajectory(y_train)";
        backticks are added unless `name` already starts with one.
      expected: what the argument must be, e.g. "a positive int".
      got: what was received, e.g. "0" or "shape (10, 2)" (see `describe`).
      exc: the exception class; TypeError for wrong kinds of objects, ValueError for values.
    """
    raise exc(f"{_quote(name)} must be {expected}; got {got}.")


def is_concrete(*trees: Any) -> bool:
    """True when no leaf of `trees` is a tracer (we are outside jit/vmap/grad)."""
    leaves = jax.tree_util.tree_leaves(trees)
    return not any(isinstance(a, jax.core.Tracer) for a in leaves)


def _bounds(kind: str, minimum, maximum, strict_min: bool) -> str:
    if minimum is not None and maximum is not None:
        article = "an" if kind == "int" else "a"
        return f"{article} {kind} in {'(' if strict_min else '['}{minimum}, {maximum}]"
    if minimum is not None:
        if minimum == 0:
            return f"a positive {kind}" if strict_min else f"a non-negative {kind}"
        if minimum == 1 and not strict_min and kind == "int":
            return "a positive int"
        return f"{'an' if kind == 'int' else 'a'} {kind} {'>' if strict_min else '>='} {minimum}"
    if maximum is not None:
        return f"{'an' if kind == 'int' else 'a'} {kind} <= {maximum}"
    return "an int" if kind == "int" else "a finite float"


def _expected(kind: str, minimum, maximum, strict_min: bool, allow_none: bool, hint: str) -> str:
    text = _bounds(kind, minimum, maximum, strict_min) + (" or None" if allow_none else "")
    return f"{text} ({hint})" if hint else text


def check_int(
    name: str,
    value: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    allow_none: bool = False,
    hint: str = "",
) -> int | None:
    """Checks a count or index and returns it as a Python int.

    Accepts Python and NumPy integers (and 0-d integer arrays); refuses bool and floats, even
    integral ones (2.0), since a float count is usually a mistake upstream.

    Args:
      name: the argument, as the user wrote it.
      value: the received value.
      minimum, maximum: inclusive bounds, or None.
      allow_none: return None for None instead of refusing it.
      hint: extra words for the message, e.g. "steps between two records".

    Returns:
      `int(value)`, or None.

    Raises:
      ArgumentTypeError (a TypeError and ValueError): `value` is not an integer.
      ValueError: `value` is out of bounds.
    """
    expected = _expected("int", minimum, maximum, False, allow_none, hint)
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or isinstance(value, jax.core.Tracer):
        fail(name, expected, describe(value), ArgumentTypeError)
    if isinstance(value, (int, np.integer)):
        out = int(value)
    elif (
        hasattr(value, "dtype")
        and getattr(value, "ndim", None) == 0
        and np.dtype(value.dtype).kind in "iu"
    ):
        out = operator.index(value)
    else:
        fail(name, expected, describe(value), ArgumentTypeError)
    if (minimum is not None and out < minimum) or (maximum is not None and out > maximum):
        fail(name, expected, describe(value))
    return out


def check_float(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_min: bool = False,
    allow_none: bool = False,
    hint: str = "",
) -> float | None:
    """Checks a real, finite number and returns it as a Python float.

    Accepts Python/NumPy ints and floats and 0-d real arrays; refuses bool, complex, strings,
    NaN and Inf. A traced value (under jit/vmap) is returned unchanged, unchecked.

    Args:
      name: the argument, as the user wrote it.
      value: the received value.
      minimum, maximum: bounds, or None; `minimum` is exclusive when `strict_min`.
      allow_none: return None for None instead of refusing it.
      hint: extra words for the message, e.g. "bytes, e.g. 2**30 for 1 GiB".

    Returns:
      `float(value)`, or None, or the tracer itself.

    Raises:
      ArgumentTypeError (a TypeError and ValueError): `value` is not a real number.
      ValueError: NaN, Inf or out of bounds.
    """
    expected = _expected("float", minimum, maximum, strict_min, allow_none, hint)
    if value is None and allow_none:
        return None
    if isinstance(value, jax.core.Tracer):
        return value
    if isinstance(value, (bool, np.bool_)):
        fail(name, expected, describe(value), ArgumentTypeError)
    if isinstance(value, (numbers.Real, np.integer, np.floating)):
        out = float(value)
    elif (
        hasattr(value, "dtype")
        and getattr(value, "ndim", None) == 0
        and np.dtype(value.dtype).kind in "iuf"
    ):
        out = float(value)
    else:
        fail(name, expected, describe(value), ArgumentTypeError)
    below = minimum is not None and (out <= minimum if strict_min else out < minimum)
    if not math.isfinite(out) or below or (maximum is not None and out > maximum):
        fail(name, expected, describe(value))
    return out


def check_bool(name: str, value: Any) -> bool:
    """Checks a flag (Python or NumPy bool; not 0/1, not strings) and returns it as bool.

    Raises:
      TypeError: `value` is not a bool.
    """
    if not isinstance(value, (bool, np.bool_)):
        fail(name, "True or False", describe(value), TypeError)
    return bool(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Checks that `value` is one of `choices` and returns it.

    Raises:
      ValueError: `value` is not among `choices` (including unhashable or array values).
    """
    choices = tuple(choices)
    try:
        # bool(value == c): arrays raise; True == 1 must not count as a match
        ok = any(
            value is c or (bool(value == c) and isinstance(value, bool) == isinstance(c, bool))
            for c in choices
        )
    except (TypeError, ValueError):  # arrays: ambiguous truth value
        ok = False
    if not ok:
        fail(name, "one of " + ", ".join(repr(c) for c in choices), describe(value))
    return value


def check_array(
    name: str,
    x: Any,
    *,
    ndim: int | None = None,
    min_ndim: int | None = None,
    allow_empty: bool = False,
    kinds: str = "biuf",
) -> Any:
    """Checks an array argument's kind, rank and batch size (static: runs under jit too).

    Args:
      name: the argument, as the user wrote it.
      x: anything with `shape` and `dtype` (jax/numpy arrays, tracers, ShapeDtypeStruct).
      ndim: the exact rank required, or None.
      min_ndim: the least rank required, or None.
      allow_empty: accept a batch axis (axis 0) of length 0.
      kinds: the accepted `dtype.kind`s: b bool, i/u integers, f floats, c complex.

    Returns:
      `x`, unchanged.

    Raises:
      TypeError: `x` is not an array, or its dtype kind is not in `kinds` (complex inputs:
        jaxdyn is real-valued).
      ValueError: wrong rank, or an empty batch axis.
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype") or isinstance(x, np.generic):
        fail(name, "an array (jax.Array or numpy.ndarray)", describe(x), TypeError)
    dtype = np.dtype(x.dtype)
    if dtype.kind not in kinds:
        if dtype.kind == "c":
            fail(
                name,
                "a real array (jaxdyn is real-valued; pass the real and imaginary parts "
                "as separate features)",
                f"dtype {dtype.name}",
                TypeError,
            )
        allowed = {"b": "bool", "i": "int", "u": "unsigned int", "f": "float", "c": "complex"}
        fail(
            name,
            "an array of dtype " + " or ".join(allowed.get(k, k) for k in kinds),
            f"dtype {dtype.name}",
            TypeError,
        )
    shape = tuple(x.shape)
    if ndim is not None and len(shape) != ndim:
        fail(
            name,
            f"a {ndim}-dimensional array" + (" with the batch axis first" if ndim else ""),
            f"shape {shape}",
        )
    if min_ndim is not None and len(shape) < min_ndim:
        fail(
            name,
            f"an array with at least {min_ndim} dimension(s), the batch axis first",
            f"shape {shape}",
        )
    if not allow_empty and len(shape) >= 1 and shape[0] == 0:
        fail(name, "a non-empty batch (at least one example along axis 0)", f"shape {shape}")
    return x


def check_finite(name: str, tree: Any) -> None:
    """Raises ValueError when a concrete array (or PyTree of arrays) holds NaN or Inf.

    Skips None, traced values and non-float leaves. The message names the leaf (its PyTree
    path after `name`), how many values are bad and the index of the first.
    """
    if tree is None or not is_concrete(tree):
        return
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if not hasattr(leaf, "dtype") and not isinstance(leaf, (float, complex)):
            continue
        if isinstance(leaf, jax.Array):
            if np.dtype(leaf.dtype).kind not in "fc":
                continue
            # Reduced on the device, so only a bad leaf is copied to the host; eagerly even
            # when called while tracing (a concrete array closed over by a jitted function).
            with jax.ensure_compile_time_eval():
                if bool(jnp.all(jnp.isfinite(leaf))):
                    continue
        a = np.asarray(leaf)
        if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
            bad = np.argwhere(~np.isfinite(a))
            where = (
                f"first at index {tuple(int(i) for i in bad[0])}" if a.ndim else f"value {a.item()}"
            )
            fail(_leaf(name, path), "finite", f"{int(bad.shape[0])} NaN/Inf value(s), {where}")


def _paths(tree: Any) -> dict[str, Any]:
    return {jax.tree_util.keystr(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def check_same_structure(name: str, tree: Any, ref_name: str, ref: Any):
    """Checks that `tree` has the PyTree structure of `ref` and returns that structure.

    The message lists the leaves missing from `tree` and the extra ones, by path.

    Raises:
      ValueError: the structures differ.
    """
    s1, s2 = jax.tree_util.tree_structure(tree), jax.tree_util.tree_structure(ref)
    if s1 != s2:
        p1, p2 = _paths(tree), _paths(ref)
        missing = [p for p in p2 if p not in p1]
        extra = [p for p in p1 if p not in p2]
        if missing or extra:
            detail = "; ".join(
                part
                for part in (
                    "missing leaves "
                    + ", ".join(missing[:5])
                    + (" ..." if len(missing) > 5 else "")
                    if missing
                    else "",
                    "extra leaves " + ", ".join(extra[:5]) + (" ..." if len(extra) > 5 else "")
                    if extra
                    else "",
                )
                if part
            )
        else:
            detail = f"structure {s1}, expected {s2}"
        fail(name, f"a PyTree with the same structure as {_quote(ref_name)}", detail)
    return s1


def check_params(name: str, params: Any, ref_name: str, ref: Any):
    """Checks that `params` fit `ref`: same PyTree structure, and each leaf an array of the
    same shape as the matching leaf of `ref` (dtypes may differ). Static: runs under jit.

    Returns:
      The PyTree structure.

    Raises:
      ValueError: different structure, or a leaf of another shape.
      TypeError: a leaf is not an array or number, or is complex.
    """
    treedef = check_same_structure(name, params, ref_name, ref)
    got = jax.tree_util.tree_leaves_with_path(params)
    for (path, leaf), want in zip(got, jax.tree_util.tree_leaves(ref)):
        leaf_name = _leaf(name, path)
        if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")) and not isinstance(
            leaf, (numbers.Real, np.generic)
        ):
            fail(leaf_name, "an array", describe(leaf), TypeError)
        dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
        if np.dtype(dtype).kind == "c":
            fail(leaf_name, "a real array (jaxdyn is real-valued)", describe(leaf), TypeError)
        if np.shape(leaf) != np.shape(want):
            fail(
                leaf_name,
                f"an array of shape {np.shape(want)}, as {_leaf(ref_name, path)}",
                f"shape {np.shape(leaf)}",
            )
    return treedef


def check_axes(name: str, axes: Any, ndim: int | None) -> tuple[int, ...]:
    """Checks an int or a sequence of ints naming axes of an `ndim`-dimensional array.

    Args:
      name: the argument, as the user wrote it.
      axes: an int, or a tuple/list of ints (Python or NumPy); negative ints count from the end.
      ndim: the rank the axes refer to; None when it is not known yet (no range check, negative
        axes are kept as given).

    Returns:
      The axes as a tuple of ints, made non-negative when `ndim` is given, in the given order.

    Raises:
      TypeError: a string, a float or bool axis, or anything that is not an int or sequence.
      ValueError: an axis out of range, or the same axis twice.
    """
    expected = (
        "an int or a tuple of ints (axes)"
        if ndim is None
        else (
            f"an int or a tuple of ints (axes of a {ndim}-dimensional array, from {-ndim} to "
            f"{ndim - 1})"
        )
    )
    if isinstance(axes, (int, np.integer)) and not isinstance(axes, (bool, np.bool_)):
        seq: Sequence[Any] = (axes,)
    elif isinstance(axes, (tuple, list)):
        seq = axes
    else:
        fail(name, expected, describe(axes), TypeError)
    if any(isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, np.integer)) for a in seq):
        fail(name, expected, describe(tuple(seq)), TypeError)
    out = tuple(int(a) for a in seq)
    if ndim is not None:
        if any(not -ndim <= a < ndim for a in out):
            fail(name, expected, f"{out} (out of range)")
        out = tuple(a % ndim if ndim else a for a in out)
    if len(set(out)) != len(out):
        fail(name, expected + " without repeats", f"{tuple(int(a) for a in seq)}")
    return out


def check_batch_size(name: str, value: Any) -> int | None:
    """Checks an optional block/minibatch size: a positive int or None (returned as int)."""
    return check_int(name, value, minimum=1, allow_none=True)


def check_inputs(
    x1: Any, x2: Any = None, *, names: tuple[str, str] = ("x1", "x2"), min_ndim: int = 1
) -> None:
    """Checks a pair of kernel inputs `x1 (n1, ...)` and optional `x2 (n2, ...)`.

    Each must be a real, non-empty array with the batch axis first (`check_array`); both must
    have the same per-example shape; concrete values must be finite (`check_finite`).

    Raises:
      TypeError: not an array, or complex.
      ValueError: too few dimensions, an empty batch, different per-example shapes, NaN/Inf.
    """
    check_array(names[0], x1, min_ndim=min_ndim)
    if x2 is not None:
        check_array(names[1], x2, min_ndim=min_ndim)
        if tuple(x1.shape[1:]) != tuple(x2.shape[1:]):
            fail(
                names[1],
                f"an array with the same per-example shape as {_quote(names[0])}, "
                f"(n2, {', '.join(map(str, x1.shape[1:]))})",
                f"shape {tuple(x2.shape)} (batch axis first)",
            )
    check_finite(names[0], x1)
    check_finite(names[1], x2)


def _abstract(tree: Any) -> Any:
    return jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype) if hasattr(a, "dtype") else a, tree
    )


def _tree_summary(tree: Any) -> str:
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    parts = [f"{jax.tree_util.keystr(p) or 'leaf'} {tuple(np.shape(a))}" for p, a in leaves[:6]]
    more = f", ... ({len(leaves)} leaves)" if len(leaves) > 6 else ""
    return (
        f"a {type(tree).__name__} with leaves " + ", ".join(parts) + more
        if parts
        else f"an empty {type(tree).__name__}"
    )


def model_error(
    error: Exception,
    x_name: str,
    x: Any,
    params_name: str = "params",
    apply_name: str = "apply_fn",
    params: Any = None,
) -> ValueError:
    """The ValueError to raise (`from error`) when the model itself fails on the user's input.

    A lookup error (KeyError, IndexError, AttributeError) means the parameters lack what the
    model reads, so the message leads with `params_name` and summarises the leaves; any other
    error (typically a shape mismatch) leads with `x_name` and its shape. Both name the other
    argument and quote the model's error.
    """
    text = f"{type(error).__name__}: {error}".strip()
    first = text.splitlines()[0] if text else type(error).__name__
    first = first if len(first) <= 300 else first[:297] + "..."
    first = first if first.endswith(".") else first + "."
    call = f"`{apply_name}({params_name}, {x_name})`"
    if isinstance(error, (KeyError, IndexError, AttributeError)):
        got = _tree_summary(params) if params is not None else "parameters"
        return ValueError(
            f"{_quote(params_name)} must hold every parameter that {call} reads (from the same "
            f"model's init); got {got}, on which the model raised {first}"
        )
    shape = (
        f"shape {tuple(x.shape)} and dtype {np.dtype(x.dtype).name}"
        if hasattr(x, "shape") and hasattr(x, "dtype")
        else describe(x)
    )
    return ValueError(
        f"{_quote(x_name)} must be an input that {call} accepts (the rank and per-example shape "
        f"the model was built for, with {_quote(params_name)} from the same model); got {shape}, "
        f"on which the model raised {first}"
    )


# A model that is not traceable (Python control flow on values, a leaked tracer) fails whatever
# its inputs: its own error says more than one blaming `x`.
_NOT_INPUT_ERRORS = (
    jax.errors.JAXTypeError,
    jax.errors.JAXIndexError,
    jax.errors.UnexpectedTracerError,
)


def check_model_input(
    apply_fn: Any,
    params: Any,
    x: Any,
    *,
    x_name: str = "x",
    params_name: str = "params",
    apply_name: str = "apply_fn",
) -> Any:
    """Evaluates `apply_fn(params, x)` abstractly (`jax.eval_shape`: no computation, no
    compilation) and returns its output shapes; a model that refuses `x` or `params` (wrong
    rank, wrong feature size, a missing parameter) raises a ValueError that names `x_name`,
    its shape, `params_name`, and quotes the model's own error, instead of a raw
    `dot_general` or `KeyError` from inside the model. Runs under jit too (shapes are static).

    Raises:
      ValueError: the model raised on these inputs (chained to the model's exception).
    """
    try:
        return jax.eval_shape(apply_fn, _abstract(params), _abstract(x))
    except _NOT_INPUT_ERRORS:
        raise
    except Exception as error:  # noqa: BLE001 - whatever the model raises, named in user terms
        raise model_error(error, x_name, x, params_name, apply_name, params) from error
