"""Experiment `linear-vs-real`: wide networks against their linearization and the closed form.

Lee et al. (2019), "Wide neural networks of any depth evolve as linear models under gradient
descent". For fully connected networks of several widths (NTK parameterisation) on a real
dataset, train with optax (full-batch GD by default) next to the linearized network trained
with the same optimizer and the closed-form dynamics of `jaxdyn.dynamics.mse` on the initial
empirical NTK. Records, per width and seed: the RMSE between network and linearization on test
inputs over time (its final value is the plateau error), the relative NTK change
`||Theta_T - Theta_0||_F / ||Theta_0||_F`, the relative weight change
`||theta_T - theta_0|| / ||theta_0||`, losses and test accuracies, and how closely the
linearized network follows the closed form; then fits log-log slopes against width. Built only
on jaxdyn's public API. Each finished (width, seed) point is written atomically, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxdyn
from jaxdyn import nets, results, sweep
from jaxdyn.experiments._runner import (
    ExperimentSettings,
    fail,
    finish,
    option,
    settings_dict,
    validate,
)

NAME = "linear-vs-real"
SUMMARY = "wide networks vs their linearization and the closed-form NTK dynamics (Lee et al. 2019)"

ACTIVATIONS: dict[str, Callable[[], nets.Layer]] = {
    "relu": nets.Relu,
    "erf": nets.Erf,
    "tanh": nets.Tanh,
}
OPTIMIZERS = ("sgd", "momentum", "adam")
# Classification datasets with a binary +-1 subset (`classes`); the file-based ones need their
# files (see `jaxdyn.data`) under --data-dir, $JAXDYN_DATA or the Debian dataset folder.
DATASETS = ("digits", "mnist1d", "fashion_mnist", "mnist", "cifar10")
FILE_DATASETS = ("fashion_mnist", "mnist", "cifar10")
# Seed-mean metrics whose log-log slope against width is fitted, and those tabulated per width.
SLOPE_METRICS = ("plateau_rmse", "kernel_change", "weight_change")
PER_WIDTH_METRICS = (
    *SLOPE_METRICS,
    "final_loss_net",
    "test_accuracy_net",
    "test_accuracy_lin",
    "critical_learning_rate",
)


@dataclasses.dataclass(frozen=True)
class Settings(ExperimentSettings):
    """Settings of one run; every field is a command-line option (`--n-train`, ...)."""

    dataset: str = option(
        "digits",
        "dataset (digits: scikit-learn's handwritten digits; "
        "fashion_mnist, mnist and cifar10 read their files)",
        choices=DATASETS,
    )
    data_dir: str | None = option(
        None,
        "folder with the dataset files (none: $JAXDYN_DATA, then "
        "/usr/share/datasets/fashion-mnist)",
    )
    classes: tuple[int, int] = option(
        (3, 8), "binary task: class A -> -1, B -> +1", minimum=0, metavar=("A", "B")
    )
    n_train: int = option(128, "training points", minimum=1)
    n_test: int = option(64, "test points", minimum=1)
    widths: tuple[int, ...] = option(
        (128, 256, 512, 1024, 2048),
        "hidden widths",
        minimum=1,
        min_len=2,
        why="to fit slopes against width",
    )
    seeds: int = option(2, "seeds per width (seed, seed + 1, ...)", minimum=1)
    depth: int = option(1, "hidden layers", minimum=1)
    activation: str = option("relu", "activation", choices=tuple(ACTIVATIONS))
    w_std: float = option(1.0, "weight scale W_std", minimum=0, strict_min=True)
    b_std: float = option(0.1, "bias scale b_std", minimum=0)
    optimizer: str = option(
        "sgd",
        "sgd (full-batch GD) and momentum have exact closed forms; adam has none",
        choices=OPTIMIZERS,
    )
    learning_rate: float = option(1.0, "learning rate", minimum=0, strict_min=True)
    momentum: float = option(0.9, "momentum for --optimizer momentum, in [0, 1)", minimum=0)
    steps: int = option(500, "optimizer steps", minimum=1)
    record_every: int = option(10, "record outputs every this many steps", minimum=1)
    dtype: Literal["float32", "float64"] = option(
        "float64", "floating-point type of the run (float64 enables JAX's x64 only inside the run)"
    )

    def check(self, name: Callable[[str], str]) -> None:
        if len(set(self.widths)) < 2:
            fail(
                name("widths"),
                "2 or more distinct widths (to fit slopes against width)",
                repr(list(self.widths)),
            )
        if self.classes[0] == self.classes[1]:
            fail(name("classes"), "two different classes", repr(list(self.classes)))
        if not self.momentum < 1:
            fail(
                name("momentum"), "in [0, 1) (a momentum >= 1 never converges)", repr(self.momentum)
            )
        if self.steps % self.record_every:
            fail(
                name("steps"),
                f"a multiple of {name('record_every')} ({self.record_every})",
                repr(self.steps),
            )


Config = Settings  # the name before the experiment protocol

# `--size` presets; explicit flags override them.
PRESETS: dict[str, dict[str, Any]] = {
    "small": dict(n_train=32, n_test=16, widths=(64, 128, 256), seeds=1, steps=100),
    "paper": dict(
        n_train=256,
        n_test=128,
        widths=(128, 256, 512, 1024, 2048, 4096),
        seeds=4,
        steps=1000,
        record_every=20,
    ),
}


def _layers(settings: Settings, width: int, d_out: int) -> nets.Layer:
    """`depth` x (Dense(width), activation), then Dense(d_out), in NTK parameterisation."""
    hidden = []
    for _ in range(settings.depth):
        hidden += [
            nets.Dense(width, W_std=settings.w_std, b_std=settings.b_std),
            ACTIVATIONS[settings.activation](),
        ]
    return nets.serial(*hidden, nets.Dense(d_out, W_std=settings.w_std, b_std=settings.b_std))


def init_params(key: jax.Array, sizes: Sequence[int], dtype) -> tuple:
    """Standard-normal parameters in the layout of `_layers`' `nets.serial`:
    `((W1, b1), (), (W2, b2), (), ..., (WL, bL))`, W `(fan_in, fan_out)`.

    The random stream is the one this experiment has always used (one key per Dense layer, the
    bias from `fold_in(key, 1)`), not `nets.serial`'s `init_fn`, so results do not change.
    """
    keys = jax.random.split(key, len(sizes) - 1)
    dense = [
        (
            jax.random.normal(k, (a, b), dtype),
            jax.random.normal(jax.random.fold_in(k, 1), (b,), dtype),
        )
        for k, a, b in zip(keys, sizes[:-1], sizes[1:])
    ]
    params: list = []
    for i, p in enumerate(dense):
        params += [p] if i == len(dense) - 1 else [p, ()]
    return tuple(params)


def load_data(settings: Settings):
    """Binary subset with +-1 targets, standardised with train statistics."""
    kwargs: dict[str, Any] = dict(
        n_train=settings.n_train,
        n_test=settings.n_test,
        standardize=True,
        seed=0,
        classes=tuple(settings.classes),
    )
    if settings.dataset in FILE_DATASETS:
        kwargs["data_dir"] = settings.data_dir
    ds = jaxdyn.data.load(settings.dataset, **kwargs)
    dtype = jnp.dtype(settings.dtype)
    flat = lambda a: jnp.asarray(a, dtype).reshape(a.shape[0], -1)  # noqa: E731
    return (
        flat(ds.x_train),
        jnp.asarray(ds.y_train, dtype),
        flat(ds.x_test),
        jnp.asarray(ds.y_test, dtype),
    )


def _optimizer(settings: Settings) -> tuple[optax.GradientTransformation, str | None]:
    """The optax optimizer and the closed-form `kind` that describes it exactly (None: none)."""
    if settings.optimizer == "sgd":
        return optax.sgd(settings.learning_rate), "gd"
    if settings.optimizer == "momentum":
        return optax.sgd(settings.learning_rate, momentum=settings.momentum), "momentum"
    return optax.adam(settings.learning_rate), None


def _norm(tree) -> float:
    leaves = jax.tree_util.tree_leaves(tree)
    return float(np.sqrt(sum(float(jnp.sum(a.astype(jnp.float64) ** 2)) for a in leaves)))


def run_point(settings: Settings, data, width: int, seed: int) -> dict[str, Any]:
    """Trains one (width, seed) point; returns JSON-serialisable metrics and curves."""
    x, y, xt, yt = data
    apply = _layers(settings, width, y.shape[1]).apply_fn
    sizes = [x.shape[1]] + [width] * settings.depth + [y.shape[1]]
    params0 = init_params(jax.random.PRNGKey(seed), sizes, jnp.dtype(settings.dtype))
    optimizer, kind = _optimizer(settings)
    run = dict(
        optimizer=optimizer,
        steps=settings.steps,
        record_every=settings.record_every,
        x_test=xt,
        y_test=yt,
    )
    # The critical rate of plain GD on the initial NTK, reported; for sgd (with or without
    # momentum) trajectory is told it too, so a rate above it warns before training starts.
    critical = float(
        jaxdyn.dynamics.mse(jaxdyn.empirical_ntk(apply, params0, x), y).critical_learning_rate
    )
    if kind is not None:
        beta = settings.momentum if kind == "momentum" else 0.0
        run.update(
            learning_rate=settings.learning_rate, critical_learning_rate=critical * (1 + beta)
        )
    net = jaxdyn.trajectory(
        apply, params0, x, y, kernel_every=settings.steps, keep_params=False, **run
    )
    lin = jaxdyn.trajectory(apply, params0, x, y, linearize=True, **run)
    closed = closed_loss = None
    theta = net.ntk[0]
    if kind is not None:
        theta_test = jaxdyn.empirical_ntk(apply, params0, xt, x)
        predict = jaxdyn.dynamics.mse(
            theta,
            y,
            learning_rate=settings.learning_rate,
            kind=kind,
            momentum=settings.momentum if kind == "momentum" else None,
        )
        f0 = apply(params0, x)
        closed = predict(net.steps, f0, apply(params0, xt), theta_test)
        closed_loss = predict.loss(net.steps, f0)
    agree = jaxdyn.compare.agreement(net, lin, closed, y_test=yt)
    tolist = lambda a: None if a is None else np.asarray(a, np.float64).tolist()  # noqa: E731
    show = min(3, xt.shape[0])
    return dict(
        plateau_rmse=float(agree.rmse_net_lin_test[-1]),
        kernel_change=float(jaxdyn.kernel_change(net)[-1]),
        weight_change=float(net.param_distance[-1]) / _norm(params0),
        final_loss_net=float(net.loss[-1]),
        final_loss_lin=float(lin.loss[-1]),
        test_accuracy_net=float(agree.accuracy_net_test[-1]),
        test_accuracy_lin=float(agree.accuracy_lin_test[-1]),
        critical_learning_rate=critical,
        steps=tolist(net.steps),
        rmse_net_lin_test=tolist(agree.rmse_net_lin_test),
        rmse_lin_closed_form_test=tolist(agree.rmse_lin_closed_form_test),
        loss_net=tolist(net.loss),
        loss_lin=tolist(lin.loss),
        loss_closed_form=tolist(closed_loss),
        f_test_net=tolist(net.f_test[:, :show, 0]),
        f_test_lin=tolist(lin.f_test[:, :show, 0]),
        f_test_closed_form=tolist(None if closed is None else closed[1][:, :show, 0]),
    )


def _per_width(points: list[dict[str, Any]], widths: list[int], seeds: list[int]):
    """metric -> (W,) seed means and standard deviations (ddof=0), from grid-ordered points."""
    mean, std = {}, {}
    for m in PER_WIDTH_METRICS:
        # None is a diverged (non-finite) value as stored in JSON: NaN here.
        table = np.array([np.nan if p[m] is None else p[m] for p in points], np.float64)
        table = table.reshape(len(widths), len(seeds))
        mean[m], std[m] = table.mean(axis=1), table.std(axis=1)
    return mean, std


def closed_form_agreement(points: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The worst test-output RMSE between the linearized network trained by optax and the
    closed form, over every width, seed and recorded step (None without a closed form: adam)."""
    worst = None
    for p in points:
        curve = p.get("rmse_lin_closed_form_test")
        if curve is None:
            continue
        value = float(np.max(np.array([np.nan if v is None else v for v in curve], np.float64)))
        if worst is None or not value <= worst["max_rmse"]:
            worst = dict(max_rmse=value, width=p["width"], seed=p["seed"])
        if np.isnan(value):
            break
    return worst


def run(
    settings: Settings,
    out: str | os.PathLike,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Runs the sweep (resuming from `out/points`), writes figures and `results.json`.

    Every setting is checked, and the data loaded, before `out` is claimed, so a failing call
    leaves no `settings.json` behind. Float64 runs enable JAX's x64 inside this call only.

    Returns:
      The results dict (also in `out/results.json`, written last: its presence means done).
    """
    validate(settings)
    # x64 as a context, never the global flag; float32 runs leave the caller's setting alone.
    x64 = jax.enable_x64(True) if settings.dtype == "float64" else contextlib.nullcontext()
    with x64:
        t0 = time.perf_counter()
        # before claiming the folder: a missing dataset leaves no trace
        data = load_data(settings)
        widths = sorted(set(settings.widths))
        seeds = list(range(settings.seed, settings.seed + settings.seeds))
        stored = settings_dict(settings)
        points = sweep.sweep(
            lambda width, seed: run_point(settings, data, width, seed),
            {"width": widths, "seed": seeds},
            out,
            settings=stored,
            required=PER_WIDTH_METRICS,
            progress=progress,
            name="out",
        )
        mean, std = _per_width(points, widths, seeds)
        slopes = {
            m: jaxdyn.compare.fit_loglog_slope(np.array(widths, np.float64), mean[m])
            for m in SLOPE_METRICS
        }
        res = dict(
            experiment=NAME,
            settings=stored,
            environment=results.environment(),
            wall_seconds=time.perf_counter() - t0,
            **{f"{m}_slope": slopes[m].slope for m in SLOPE_METRICS},
            slope_fits={k: v._asdict() for k, v in slopes.items()},
            linearized_vs_closed_form=closed_form_agreement(points),
            per_width=[
                dict(
                    width=int(w),
                    **{
                        m: dict(mean=float(mean[m][i]), std=float(std[m][i]))
                        for m in PER_WIDTH_METRICS
                    },
                )
                for i, w in enumerate(widths)
            ],
        )
    # imported here: matplotlib is not needed to list or validate experiments
    from jaxdyn.experiments import linear_vs_real_plots

    return finish(out, res, points, linear_vs_real_plots.save_figures)


def summary_lines(res: dict[str, Any]) -> Sequence[str]:
    """Human-readable summary printed by the CLI."""
    lines = [
        f"{'width':>7} {'plateau RMSE':>13} {'kernel change':>14} {'weight change':>14} "
        f"{'test acc':>9}"
    ]
    for row in res["per_width"]:
        lines.append(
            f"{row['width']:>7} {row['plateau_rmse']['mean']:>13.3e} "
            f"{row['kernel_change']['mean']:>14.3e} {row['weight_change']['mean']:>14.3e} "
            f"{row['test_accuracy_net']['mean']:>9.3f}"
        )
    lines.append(
        f"fitted log-log slopes: plateau RMSE {res['plateau_rmse_slope']:+.2f}, "
        f"kernel change {res['kernel_change_slope']:+.2f}, "
        f"weight change {res['weight_change_slope']:+.2f}"
    )
    agree = res.get("linearized_vs_closed_form")
    if agree is not None:
        lines.append(
            f"linearized network vs closed form: max test RMSE {agree['max_rmse']:.1e} "
            f"(width {agree['width']}, seed {agree['seed']})"
        )
    return lines
