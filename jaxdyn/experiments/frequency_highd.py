"""Experiment `frequency-highd`: the frequency principle in high dimension, by Gaussian filtering.

Xu, Zhang, Luo, Xiao and Ma (2019/2020), "Frequency principle: Fourier analysis sheds light on
deep neural networks", section "high-dimensional data": the target `y` on the training inputs
is split into `y_low = gaussian_filter(y, x, delta)` and `y_high = y - y_low`, and the relative
errors `e_low`, `e_high` of the network's outputs in each part (`filtered_errors`) are
recorded over training, for several `delta` (the papers use 3 for MNIST, 7 for CIFAR-10).

Points (one resumable file each):

- `(dataset, model)`: scikit-learn digits, MNIST-1D and Fashion-MNIST (only when its files are
  installed; else a note) with an MLP and a small CNN, full-batch Adam on the MSE to one-hot
  targets (`train.trajectory`), pixels as the loaders give them (digits and Fashion-MNIST in
  [0, 1], MNIST-1D unscaled).
- `(boolean, target)`: inputs uniform on {-1, 1}^n_bits, the full parity of all bits
  (`data.parity`) against the majority of the same inputs; train and test accuracy, and the
  share of the target's energy the filter calls low-frequency, `||y_low||^2 / ||y||^2`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdyn import data, results, sweep, train
from jaxdyn.analysis import frequency
from jaxdyn.experiments._runner import (
    ExperimentSettings,
    fail,
    finish,
    option,
    precision,
    settings_dict,
    validate,
)

NAME = "frequency-highd"
SUMMARY = "F-Principle in high dimension: Gaussian-filtered errors (digits, MNIST-1D, parity)"

DATASETS = ("digits", "mnist1d", "fashion_mnist")
MODELS = ("mlp", "cnn")
TARGETS = ("parity", "majority")
SHAPES = {"digits": (8, 8, 1), "mnist1d": (40, 1), "fashion_mnist": (28, 28, 1)}


@dataclasses.dataclass(frozen=True)
class Settings(ExperimentSettings):
    """Settings of one run; every field is a command-line option."""

    datasets: tuple[str, ...] = option(
        DATASETS, "datasets (fashion_mnist is skipped when not installed)", choices=DATASETS
    )
    models: tuple[str, ...] = option(MODELS, "models", choices=MODELS)
    n_train: int = option(1000, "training examples per dataset", minimum=2)
    n_test: int = option(500, "test examples per dataset", minimum=1)
    hidden: int = option(256, "hidden width of the MLP (ReLU, one hidden layer)", minimum=1)
    channels: tuple[int, ...] = option((16, 32), "channels of the CNN's stride-2 convs", minimum=1)
    learning_rate: float = option(1e-3, "Adam learning rate", minimum=0, strict_min=True)
    steps: int = option(1000, "full-batch Adam steps", minimum=1)
    record_every: int = option(50, "record every this many steps", minimum=1)
    deltas: tuple[float, ...] = option(
        (1.0, 3.0, 10.0), "filter variances delta for the datasets", minimum=0, strict_min=True
    )
    n_bits: int = option(21, "input bits of the Boolean part (odd: majority has no ties)",
                         minimum=1)  # fmt: skip
    boolean_train: int = option(1000, "Boolean training examples", minimum=2)
    boolean_test: int = option(1000, "Boolean test examples", minimum=1)
    boolean_hidden: int = option(512, "hidden width of the Boolean MLP", minimum=1)
    boolean_steps: int = option(2000, "full-batch Adam steps of the Boolean part", minimum=1)
    boolean_deltas: tuple[float, ...] = option(
        (3.0, 10.0), "filter variances for {-1, 1} inputs (|u|^2 = 4 x Hamming distance)",
        minimum=0, strict_min=True,
    )  # fmt: skip
    dtype: Literal["float32", "float64"] = option("float32", "floating-point type of the run")

    def check(self, name: Callable[[str], str]) -> None:
        for steps in ("steps", "boolean_steps"):
            if getattr(self, steps) % self.record_every:
                fail(
                    name(steps),
                    f"a multiple of {name('record_every')} ({self.record_every})",
                    repr(getattr(self, steps)),
                )
        if self.n_bits % 2 == 0:
            fail(name("n_bits"), "an odd int (the majority of an even count can tie)",
                 repr(self.n_bits))  # fmt: skip
        for field in ("datasets", "models", "deltas", "boolean_deltas"):
            values = getattr(self, field)
            if len(set(values)) != len(values):
                fail(name(field), "distinct values", repr(list(values)))


PRESETS: dict[str, dict[str, Any]] = {
    "small": dict(
        datasets=("digits",),
        models=("mlp",),
        n_train=64,
        n_test=32,
        hidden=16,
        channels=(4,),
        steps=40,
        record_every=20,
        n_bits=9,
        boolean_train=64,
        boolean_test=32,
        boolean_hidden=32,
        boolean_steps=40,
    ),
    "paper": dict(
        n_train=10000, n_test=2000, steps=5000, record_every=100, deltas=(1.0, 3.0, 7.0, 10.0)
    ),
}


# --------------------------------------------------------------------------- data


def load(name: str, settings: Settings) -> data.Dataset:
    """One dataset, one-hot targets, at the settings' sizes (raises FileNotFoundError when
    Fashion-MNIST's files are missing)."""
    kw = dict(n_train=settings.n_train, n_test=settings.n_test, seed=settings.seed)
    if name == "digits":
        return data.digits(**kw, one_hot=True)
    if name == "mnist1d":
        return data.mnist1d(**kw, one_hot=True)
    return data.fashion_mnist(**kw, one_hot=True)


def boolean_data(settings: Settings, target: str) -> data.Dataset:
    """Uniform {-1, 1}^n_bits inputs with the full parity or the majority as `(n, 1)` target."""
    ds = data.parity(
        settings.n_bits,
        n_train=settings.boolean_train,
        n_test=settings.boolean_test,
        support=tuple(range(settings.n_bits)),
        seed=settings.seed,
    )
    if target == "parity":
        return ds
    y_train = np.sign(ds.x_train.sum(axis=1, keepdims=True))
    y_test = np.sign(ds.x_test.sum(axis=1, keepdims=True))
    return ds._replace(y_train=y_train, y_test=y_test, name="majority")


def model_for(name: str, dataset: str, settings: Settings) -> frequency.Model:
    d = int(np.prod(SHAPES[dataset]))
    if name == "mlp":
        return frequency.mlp((d, settings.hidden, 10), "relu", w_std=None, b_std=0.0)
    return frequency.cnn(SHAPES[dataset], settings.channels, 10, "relu")


# --------------------------------------------------------------------------- points


def _accuracy(f: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """`(T, n, k)` outputs -> `(T,)` arg-max accuracy (sign agreement for k = 1)."""
    if f.shape[-1] == 1:
        return np.mean(np.sign(f[..., 0]) == labels[None], axis=1)
    return np.mean(np.argmax(f, axis=-1) == labels[None], axis=1)


def filter_record(traj_f: np.ndarray, y: np.ndarray, x: np.ndarray, deltas) -> dict[str, Any]:
    """e_low / e_high over the recorded outputs and the target's low-frequency share, per delta."""
    out = {}
    for delta in deltas:
        e = frequency.filtered_errors(traj_f, y, x, delta)
        y_low = np.asarray(frequency.gaussian_filter(y, x, delta), np.float64)
        out[f"{delta:g}"] = dict(
            e_low=np.asarray(e.e_low, np.float64).tolist(),
            e_high=np.asarray(e.e_high, np.float64).tolist(),
            low_energy_share=float(np.sum(y_low**2) / np.sum(np.asarray(y, np.float64) ** 2)),
        )
    return out


def _train(model, ds, settings: Settings, steps: int, dtype) -> tuple[Any, np.ndarray]:
    x = jnp.asarray(ds.x_train.reshape(len(ds.x_train), -1), dtype)
    params0 = model.init(jax.random.PRNGKey(settings.seed), dtype)
    traj = train.trajectory(
        model.apply,
        params0,
        x,
        jnp.asarray(ds.y_train, dtype),
        optimizer=optax.adam(settings.learning_rate),
        steps=steps,
        record_every=settings.record_every,
        x_test=jnp.asarray(ds.x_test.reshape(len(ds.x_test), -1), dtype),
        y_test=jnp.asarray(ds.y_test, dtype),
    )
    return traj, np.asarray(x)


def run_dataset(settings: Settings, dataset: str, model: str) -> dict[str, Any]:
    """Trains one (dataset, model) and filters its recorded outputs."""
    dtype = jnp.dtype(settings.dtype)
    try:
        ds = load(dataset, settings)
    except FileNotFoundError as error:
        return dict(skipped=str(error).splitlines()[0], steps=[])
    traj, x = _train(model_for(model, dataset, settings), ds, settings, settings.steps, dtype)
    f = np.asarray(traj.f_train)
    return dict(
        skipped=None,
        steps=np.asarray(traj.steps).tolist(),
        train_loss=np.asarray(traj.loss, np.float64).tolist(),
        train_accuracy=_accuracy(f, ds.labels_train).tolist(),
        test_accuracy=_accuracy(np.asarray(traj.f_test), ds.labels_test).tolist(),
        filtered=filter_record(f, np.asarray(ds.y_train, f.dtype), x, settings.deltas),
    )


def run_boolean(settings: Settings, target: str) -> dict[str, Any]:
    """Trains the Boolean MLP on the parity or the majority target and filters it."""
    dtype = jnp.dtype(settings.dtype)
    ds = boolean_data(settings, target)
    model = frequency.mlp((settings.n_bits, settings.boolean_hidden, 1), "relu")
    traj, x = _train(model, ds, settings, settings.boolean_steps, dtype)
    f = np.asarray(traj.f_train)
    return dict(
        steps=np.asarray(traj.steps).tolist(),
        train_loss=np.asarray(traj.loss, np.float64).tolist(),
        train_accuracy=_accuracy(f, ds.y_train[:, 0]).tolist(),
        test_accuracy=_accuracy(np.asarray(traj.f_test), ds.y_test[:, 0]).tolist(),
        filtered=filter_record(f, np.asarray(ds.y_train, f.dtype), x, settings.boolean_deltas),
    )


def run(
    settings: Settings,
    out: str | os.PathLike,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Runs every point (resuming from `out/points`), writes figures and results.json."""
    validate(settings)
    x64 = precision(settings.dtype)
    with x64:
        t0 = time.perf_counter()
        stored = settings_dict(settings)
        sw = sweep.open_sweep(out, stored, name="--out")
        jobs = [
            (dict(part="dataset", name=d, model=m), lambda d=d, m=m: run_dataset(settings, d, m))
            for d in settings.datasets
            for m in settings.models
        ]
        jobs += [
            (dict(part="boolean", name=t, model="mlp"), lambda t=t: run_boolean(settings, t))
            for t in TARGETS
        ]
        points, notes = [], []
        for i, (key, job) in enumerate(jobs):
            rec = sw.point(key, job, required=("steps",))
            points.append(rec)
            if rec.get("skipped"):
                notes.append(f"{key['name']} skipped: {rec['skipped']}")
            elif not np.all(np.isfinite(np.asarray(rec["train_loss"], float))):
                notes.append(f"{key['name']}/{key['model']}: NaN/Inf training loss")
            if progress is not None:
                progress(i + 1, len(jobs), f"{key['name']} {key['model']}")
        res = dict(
            experiment=NAME,
            settings=stored,
            environment=results.environment(),
            wall_seconds=time.perf_counter() - t0,
            notes=notes,
            per_point=[summarize_point(p) for p in points if not p.get("skipped")],
        )
    from jaxdyn.experiments import frequency_highd_plots

    return finish(out, res, points, frequency_highd_plots.save_figures)


def _first_below(values: Sequence[float], steps: Sequence[int], level: float) -> int:
    """The first recorded step at which `values` is below `level`, -1 if never."""
    for v, s in zip(values, steps):
        if v is not None and v < level:
            return int(s)
    return -1


def summarize_point(p: dict[str, Any]) -> dict[str, Any]:
    """Final accuracies; per delta the final e_low / e_high and when each first drops below
    0.5 (low first is the frequency principle)."""
    per_delta = {}
    for delta, f in p["filtered"].items():
        per_delta[delta] = dict(
            low_energy_share=f["low_energy_share"],
            final_e_low=f["e_low"][-1],
            final_e_high=f["e_high"][-1],
            e_low_below_half_at=_first_below(f["e_low"], p["steps"], 0.5),
            e_high_below_half_at=_first_below(f["e_high"], p["steps"], 0.5),
        )
    return dict(
        part=p["part"],
        name=p["name"],
        model=p["model"],
        final_train_accuracy=p["train_accuracy"][-1],
        final_test_accuracy=p["test_accuracy"][-1],
        per_delta=per_delta,
    )


def summary_lines(res: dict[str, Any]) -> Sequence[str]:
    """Human-readable summary printed by the CLI."""
    lines = [
        f"{'data':>14} {'model':>5} {'train':>6} {'test':>6}  delta: e_low<0.5 / e_high<0.5 at"
    ]
    for r in res["per_point"]:
        deltas = "  ".join(
            f"{d}: {v['e_low_below_half_at']}/{v['e_high_below_half_at']} "
            f"(low share {v['low_energy_share']:.2f})"
            for d, v in r["per_delta"].items()
        )
        lines.append(
            f"{r['name']:>14} {r['model']:>5} {r['final_train_accuracy']:>6.3f} "
            f"{r['final_test_accuracy']:>6.3f}  {deltas}"
        )
    lines += list(res["notes"])
    return lines
