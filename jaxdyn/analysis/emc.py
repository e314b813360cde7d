"""Effective model complexity (EMC): how many samples a network fits in practice.

Shwartz-Ziv, Goldblum, Bansal, Bruss, LeCun and Wilson (2024), "Just how flexible are neural
networks in practice?": train on n samples; if training reaches 100% training accuracy, start
again from a fresh initialization with a larger n; the largest n fitted perfectly is the EMC.

- `fits(model, x, labels, ...)`: trains every (learning rate, seed) pair on one training set
  as ONE vmapped, jitted `lax.scan` run (chunks of `chunk_steps` steps, the stopping rule
  evaluated inside), and returns a `FitOutcome`.
- `search(fits_at, n_min=..., n_max=...)`: geometric growth until a failure, then bisection,
  several seeds combined by a stated rule, resumable through `jaxdyn.sweep` (see
  `_emc_search`'s docstring for the decision rule).
- `measure(model, x, labels, ...)`: `search` over nested subsets of one dataset with `fits`
  as the oracle, plus the test accuracy of the model trained at its EMC.
- Models (`mlp`, `cnn`, `model`) and data variations (`make_variant`: labels semantic /
  random, inputs real / Gaussian / permuted, classes merged at random).

Stopping rule of `fits` (per run). Every `steps_per_epoch = ceil(n / batch_size)` steps (1 for
full-batch "gd") the whole training set is evaluated and the run stops as soon as:

1. "fitted": training accuracy is 100% (argmax of the logits equals the label on all n);
2. "diverged": the training loss is NaN or Inf;
3. "plateau": the training loss has not dropped below `(1 - rel_tol)` times its best value so
   far for `patience` steps;
4. "cap": `max_steps` steps were taken (reported separately: a capped run is NOT evidence that
   the model cannot fit the set; `search` flags the n where a non-fitting run was capped).

A stopped run's parameters are frozen. The reported training accuracy and loss are evaluated
on the final parameters, so they equal a direct evaluation of the returned model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn._checks import check_choice, check_float, check_int, describe, fail
from jaxdyn.analysis import _emc_train
from jaxdyn.analysis._emc_data import INPUTS, LABELS, Variant, make_variant, merge_map
from jaxdyn.analysis._emc_models import ACTIVATIONS, Model, cnn, count_params, mlp, model
from jaxdyn.analysis._emc_search import RULES, SearchResult, Trial, passes, search
from jaxdyn.analysis._emc_train import OPTIMIZERS, REASONS

__all__ = [
    "ACTIVATIONS",
    "INPUTS",
    "LABELS",
    "OPTIMIZERS",
    "REASONS",
    "RULES",
    "FitOutcome",
    "Measurement",
    "Model",
    "SearchResult",
    "Trial",
    "Variant",
    "cnn",
    "count_params",
    "emc_gap",
    "fits",
    "make_variant",
    "measure",
    "merge_map",
    "mlp",
    "model",
    "passes",
    "search",
]


class FitOutcome(NamedTuple):
    """What `fits` found, per learning rate r (R of them) and seed s (S of them).

    Attributes:
      fitted: `(R, S)` bools, training accuracy 100% at the end.
      train_accuracy: `(R, S)` accuracy of the final parameters on the training set.
      loss: `(R, S)` mean cross-entropy of the final parameters on the training set.
      steps: `(R, S)` optimizer steps taken; epochs: `(R, S)` the same in epochs.
      reason: `(R, S)` why each run stopped, one of `REASONS`.
      test_accuracy: `(R, S)` accuracy on the test set, or None without one.
      learning_rates: `(R,)`; seeds: `(S,)`; n: the training-set size.
      num_params: parameters of the model; seconds: wall time of the call.
      params: the final parameters, leaves `(R, S, ...)`, or None (`return_params=False`).
    """

    fitted: np.ndarray
    train_accuracy: np.ndarray
    loss: np.ndarray
    steps: np.ndarray
    epochs: np.ndarray
    reason: np.ndarray
    test_accuracy: np.ndarray | None
    learning_rates: tuple[float, ...]
    seeds: tuple[int, ...]
    n: int
    num_params: int
    seconds: float
    params: Any = None

    def record(self) -> dict[str, Any]:
        """JSON-ready dict of everything but the parameters (what `search` stores)."""
        out = {k: v for k, v in self._asdict().items() if k != "params"}
        for k, v in out.items():
            if isinstance(v, np.ndarray):
                out[k] = v.tolist()
        out["learning_rates"], out["seeds"] = list(self.learning_rates), list(self.seeds)
        return out


def _floats(name: str, values: Any) -> tuple[float, ...]:
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = (values,)
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        fail(name, "a non-empty sequence of positive floats", describe(values), TypeError)
    return tuple(
        check_float(f"{name}[{i}]", v, minimum=0.0, strict_min=True) for i, v in enumerate(values)
    )


def _ints(name: str, values: Any) -> tuple[int, ...]:
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        values = (values,)
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        fail(name, "a non-empty sequence of non-negative ints", describe(values), TypeError)
    out = tuple(check_int(f"{name}[{i}]", v, minimum=0) for i, v in enumerate(values))
    if len(set(out)) != len(out):
        fail(name, "distinct ints", repr(list(out)))
    return out


def _check_model(model: Any) -> None:
    if not (callable(getattr(model, "init", None)) and callable(getattr(model, "apply", None))):
        fail(
            "model",
            "a model with init(key) -> params and apply(params, x) -> logits (e.g. emc.mlp)",
            describe(model),
            TypeError,
        )


def _check_data(model: Any, x: Any, labels: Any, num_classes: int, names=("x", "labels")):
    x = np.asarray(x)
    if x.ndim < 2 or x.dtype.kind not in "fiu" or x.shape[0] < 1:
        fail(names[0], "a real array (n, *input_shape) with n >= 1", describe(x))
    if not np.all(np.isfinite(x)):
        fail(names[0], "finite (no NaN or Inf)", f"{int(np.sum(~np.isfinite(x)))} non-finite")
    shape = getattr(model, "input_shape", None)
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        fail(names[0], f"inputs of shape (n, {', '.join(map(str, shape))})", f"{x.shape}")
    y = np.asarray(labels)
    if y.shape != (x.shape[0],) or y.dtype.kind not in "iu":
        fail(names[1], f"an int array of shape ({x.shape[0]},)", describe(labels), TypeError)
    if y.min() < 0 or y.max() >= num_classes:
        fail(
            names[1],
            f"class labels in [0, {num_classes}) (num_classes = {num_classes})",
            f"labels in [{y.min()}, {y.max()}]",
        )
    return x, y


def fits(
    model: Model,
    x: Any,
    labels: Any,
    *,
    num_classes: int | None = None,
    optimizer: str = "sgd",
    learning_rates: Sequence[float] = (0.1,),
    seeds: Sequence[int] = (0,),
    batch_size: int = 64,
    momentum: float = 0.0,
    weight_decay: float = 1e-4,
    max_steps: int = 20000,
    patience: int = 2000,
    rel_tol: float = 1e-3,
    chunk_steps: int = 500,
    x_test: Any = None,
    labels_test: Any = None,
    return_params: bool = False,
    dtype: Any = jnp.float32,
) -> FitOutcome:
    """Trains `model` on (x, labels) from fresh initializations until the stopping rule.

    Every (learning rate, seed) pair is one run; all runs train together, vmapped, in jitted
    `lax.scan` chunks of `chunk_steps` steps. Loss: softmax cross-entropy. Run (r, s) starts
    from `model.init(fold_in(PRNGKey(seeds[s]), 0))`, the same weights for every rate.

    Args:
      model: a `Model` (`mlp`, `cnn`) or any object with `init(key)` and `apply(params, x)`.
      x: `(n, *input_shape)` inputs; labels: `(n,)` ints in `[0, num_classes)`.
      num_classes: classes (default `model.num_classes`); the model must output that many.
      optimizer: "sgd" (minibatch), "gd" (full batch), "adam" or "adamw" (minibatch).
      learning_rates: the rate grid, `(R,)`; seeds: `(S,)`.
      batch_size: minibatch size (ignored by "gd").
      momentum: heavy-ball momentum of "sgd"/"gd"; weight_decay: of "adamw".
      max_steps, patience, rel_tol: the stopping rule (module docstring), in optimizer steps.
      chunk_steps: steps per jitted chunk (the host checks "all stopped" between chunks).
      x_test, labels_test: optional test set, for `test_accuracy`.
      return_params: keep the final parameters (leaves `(R, S, ...)`).
      dtype: floating type of inputs and training.

    Returns:
      A `FitOutcome`.

    Raises:
      TypeError/ValueError: a bad argument, labels outside `[0, num_classes)`, or a model
        whose output is not `(n, num_classes)`.
    """
    t0 = time.perf_counter()
    _check_model(model)
    k = getattr(model, "num_classes", None) if num_classes is None else num_classes
    if k is None:
        fail("num_classes", "an int >= 2 (the model has no num_classes)", "None", TypeError)
    k = check_int("num_classes", k, minimum=2)
    x, y = _check_data(model, x, labels, k)
    optimizer = check_choice("optimizer", optimizer, OPTIMIZERS)
    lrs, seeds = _floats("learning_rates", learning_rates), _ints("seeds", seeds)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    momentum = check_float("momentum", momentum, minimum=0.0, maximum=1.0)
    if momentum >= 1.0:
        fail("momentum", "a float in [0, 1)", repr(momentum))
    weight_decay = check_float("weight_decay", weight_decay, minimum=0.0)
    max_steps = check_int("max_steps", max_steps, minimum=1)
    patience = check_int("patience", patience, minimum=1)
    rel_tol = check_float("rel_tol", rel_tol, minimum=0.0, maximum=1.0)
    chunk_steps = check_int("chunk_steps", chunk_steps, minimum=1)
    dtype = jnp.dtype(dtype)
    if x_test is not None or labels_test is not None:
        if x_test is None or labels_test is None:
            fail("x_test", "given together with labels_test", "only one of them", TypeError)
        x_test, y_test = _check_data(model, x_test, labels_test, k, ("x_test", "labels_test"))
    params_shape = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    out = jax.eval_shape(model.apply, params_shape, jax.ShapeDtypeStruct((2, *x.shape[1:]), dtype))
    if not hasattr(out, "shape") or tuple(out.shape) != (2, k):
        got = getattr(out, "shape", describe(out))
        fail(
            "model",
            f"a model whose output is (n, num_classes) = (n, {k})",
            f"(n, ...) = {got} for n = 2",
        )

    n = x.shape[0]
    res = _emc_train.train(
        model.init, model.apply, x, y,
        learning_rates=np.asarray(lrs), seeds=seeds, optimizer=optimizer, momentum=momentum,
        weight_decay=weight_decay, batch_size=batch_size, max_steps=max_steps,
        patience=patience, rel_tol=rel_tol, chunk_steps=chunk_steps,
        n_pad=_emc_train.bucket(n), dtype=dtype,
    )  # fmt: skip
    R, S = len(lrs), len(seeds)
    shape = (R, S)
    test_acc = None
    if x_test is not None:
        test_acc = _emc_train.accuracy(model.apply, res["params"], x_test, y_test, dtype)
        test_acc = test_acc.reshape(shape)
    params = None
    if return_params:
        params = jax.tree_util.tree_map(
            lambda a: np.asarray(a).reshape(shape + a.shape[1:]), res["params"]
        )
    steps = res["steps"].reshape(shape)
    return FitOutcome(
        fitted=(res["code"] == _emc_train.FITTED).reshape(shape),
        train_accuracy=res["accuracy"].reshape(shape),
        loss=res["loss"].reshape(shape),
        steps=steps,
        epochs=steps / res["steps_per_epoch"],
        reason=np.asarray(REASONS, dtype=object)[res["code"]].reshape(shape),
        test_accuracy=test_acc,
        learning_rates=lrs,
        seeds=seeds,
        n=n,
        num_params=count_params(params_shape),
        seconds=time.perf_counter() - t0,
        params=params,
    )


class Measurement(NamedTuple):
    """Result of `measure`: the search, and the model trained at its EMC.

    Attributes:
      search: the `SearchResult` (`.emc`, `.bracket`, `.trials`).
      emc: `search.emc`.
      learning_rate: the rate of the grid with the most fitted seeds at the EMC (None when
        nothing fitted).
      test_accuracy: mean over seeds, at that rate, of the test accuracy of the runs trained
        on the EMC samples (None without a test set or a fitted size).
      train_accuracy: the same for the training accuracy.
      num_params: parameters of the model.
    """

    search: SearchResult
    emc: int | None
    learning_rate: float | None
    test_accuracy: float | None
    train_accuracy: float | None
    num_params: int


def measure(
    model: Model,
    x: Any,
    labels: Any,
    *,
    n_min: int,
    n_max: int,
    seeds: Sequence[int] = (0,),
    rule: str | float = "half",
    growth: float = 2.0,
    precision: float = 0.05,
    order_seed: int = 0,
    sweep: Any = None,
    key: Mapping[str, Any] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    **fit_options: Any,
) -> Measurement:
    """The EMC of `model` on one dataset: `search` with `fits` on nested subsets.

    Size n trains on the first n samples of one fixed random order of (x, labels)
    (`np.random.default_rng(order_seed)`), so larger sets contain smaller ones; the seeds and
    the learning-rate grid of `fit_options` train as one vmapped `fits` call per n.

    Args:
      model, x, labels: as in `fits`; n_max must not exceed the number of samples.
      n_min, n_max, seeds, rule, growth, precision, sweep, key, progress: as in `search`.
      order_seed: seeds the order of the samples.
      **fit_options: passed to `fits` (optimizer, learning_rates, x_test, labels_test, ...).

    Returns:
      A `Measurement`.
    """
    _check_model(model)
    k = fit_options.get("num_classes", getattr(model, "num_classes", None))
    k = check_int("num_classes", k, minimum=2)
    x, y = _check_data(model, x, labels, k)
    n_max = check_int("n_max", n_max, minimum=1)
    if n_max > x.shape[0]:
        fail("n_max", f"<= the {x.shape[0]} samples of `x`", repr(n_max))
    if "seeds" in fit_options:
        fail("fit_options", "free of `seeds` (pass seeds to measure)", "seeds", TypeError)
    order = np.random.default_rng(check_int("order_seed", order_seed, minimum=0)).permutation(
        x.shape[0]
    )
    x, y = x[order], y[order]

    def fits_at(n: int, seed_group: tuple[int, ...]) -> FitOutcome:
        return fits(model, x[:n], y[:n], seeds=seed_group, **fit_options)

    res = search(
        fits_at, n_min=n_min, n_max=n_max, seeds=seeds, rule=rule, growth=growth,
        precision=precision, batched=True, sweep=sweep, key=key, progress=progress,
    )  # fmt: skip
    num_params = count_params(jax.eval_shape(model.init, jax.random.PRNGKey(0)))
    if res.emc is None:
        return Measurement(res, None, None, None, None, num_params)
    trial = res.trial(res.emc)
    rec = trial.records[0]
    best = trial.best
    lr = float(rec["learning_rates"][best]) if "learning_rates" in rec else None
    test = rec.get("test_accuracy")
    test = None if test is None else float(np.mean(np.asarray(test)[best]))
    train = float(np.mean(np.asarray(rec["train_accuracy"])[best]))
    return Measurement(res, res.emc, lr, test, train, num_params)


def emc_gap(emc_semantic: float, emc_random: float) -> float:
    """The relative EMC gap between semantic and random labels, `(semantic - random) /
    semantic`: 0 when random labels are fitted as easily, near 1 when far fewer are."""
    s = check_float("emc_semantic", emc_semantic, minimum=0.0, strict_min=True)
    r = check_float("emc_random", emc_random, minimum=0.0)
    return (s - r) / s
