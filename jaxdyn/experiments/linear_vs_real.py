"""Experiment `linear-vs-real`: wide networks against their linearization and the closed form.

Lee et al. (2019), "Wide neural networks of any depth evolve as linear models under gradient
descent". For networks of several widths (NTK parameterisation: fully connected `--model mlp`,
convolutional `cnn`, Wide ResNet `wrn`) on a real dataset (binary or multi-class `--classes`),
train with optax (full-batch GD by default; heavy-ball momentum, minibatch SGD with
`--batch-size`, adam) on the MSE or cross-entropy `--loss`, next to the linearized network
trained with the same optimizer and the analytic dynamics on the initial empirical NTK: the
closed form of `jaxdyn.dynamics.mse` for MSE, the function-space recurrence of
`jaxdyn.dynamics.gradient_descent` for cross-entropy (full batch; minibatches and adam have
none). Records, per width and seed: the RMSE between network and linearization on test
inputs over time (its final value is the plateau error), the relative NTK change
`||Theta_T - Theta_0||_F / ||Theta_0||_F`, the relative weight change
`||theta_T - theta_0|| / ||theta_0||`, losses and test accuracies, a few test outputs and
individual weights over time for network, linearization and analytic (Lee et al.'s Figure 4),
and how closely the linearized network follows the analytic prediction; then fits log-log
slopes against width. `--study plateau` instead sweeps architecture x dataset size x width
for the plateau RMSE against width (their Figure 8; `_linear_vs_real_plateau`). Built only
on jaxdyn's public API. Each finished point is written atomically, so an interrupted run
resumes where it stopped.
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

import jaxdyn
from jaxdyn import results, sweep
from jaxdyn.experiments import _linear_vs_real_models as models
from jaxdyn.experiments import _linear_vs_real_plateau as _plateau
from jaxdyn.experiments._linear_vs_real_models import (
    ACTIVATIONS,
    DATASETS,
    FILE_DATASETS,
    IMAGE_DATASETS,
    LOSSES,
    MODELS,
    init_mlp_params,
    load_data,
    tolist,
)
from jaxdyn.experiments._runner import (
    ExperimentSettings,
    fail,
    finish,
    option,
    precision,
    settings_dict,
    validate,
)

NAME = "linear-vs-real"
SUMMARY = "wide networks vs their linearization and the closed-form NTK dynamics (Lee et al. 2019)"

OPTIMIZERS = ("sgd", "gd", "momentum", "adam")
STUDIES = ("width", "plateau")
__all__ = ["ACTIVATIONS", "DATASETS", "FILE_DATASETS", "IMAGE_DATASETS", "LOSSES", "MODELS"]
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
    classes: tuple[int, ...] = option(
        (3, 8),
        "classes kept: two give a binary task (A -> -1, B -> +1 under MSE), more a "
        "multi-class one (one-hot targets, one output per class)",
        minimum=0,
        min_len=2,
        why="a classification task",
    )
    model: str = option(
        "mlp",
        "architecture: mlp (fully connected), cnn (3x3 SAME convolutions, Flatten, Dense) or "
        "wrn (Wide ResNet: Conv stem, --depth residual blocks); for cnn and wrn the widths "
        "are channels and the dataset must hold images",
        choices=MODELS,
    )
    loss: str = option(
        "mse",
        "mse (0.5 mean((f - y)^2), closed-form dynamics) or cross-entropy (softmax, one "
        "output per class, function-space recurrence)",
        choices=LOSSES,
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
    depth: int = option(1, "hidden layers (mlp, cnn) or residual blocks (wrn)", minimum=1)
    activation: str = option("relu", "activation", choices=tuple(ACTIVATIONS))
    w_std: float = option(1.0, "weight scale W_std", minimum=0, strict_min=True)
    b_std: float = option(0.1, "bias scale b_std", minimum=0)
    optimizer: str = option(
        "sgd",
        "gd (full-batch gradient descent), sgd (optax.sgd on minibatches of --batch-size; "
        "without it the full batch, i.e. gd), momentum (heavy ball) or adam; full-batch gd "
        "and momentum have exact analytic dynamics, minibatches and adam none",
        choices=OPTIMIZERS,
    )
    batch_size: int | None = option(
        None, "minibatch size (a fresh permutation per epoch); none: full batch", minimum=1
    )
    learning_rate: float = option(1.0, "learning rate", minimum=0, strict_min=True)
    momentum: float = option(0.9, "momentum for --optimizer momentum, in [0, 1)", minimum=0)
    steps: int = option(500, "optimizer steps", minimum=1)
    record_every: int = option(10, "record outputs every this many steps", minimum=1)
    dtype: Literal["float32", "float64"] = option(
        "float64", "floating-point type of the run (float64 enables JAX's x64 only inside the run)"
    )
    study: str = option(
        "width",
        "width: one architecture against width (curves, weights, scaling); plateau: the "
        "plateau RMSE against width for every --plateau-models x --plateau-n-train",
        choices=STUDIES,
    )
    plateau_models: tuple[str, ...] = option(
        MODELS, "architectures of --study plateau", choices=MODELS
    )
    plateau_n_train: tuple[int, ...] = option(
        (32, 64, 128), "training-set sizes of --study plateau", minimum=1
    )

    def check(self, name: Callable[[str], str]) -> None:
        if len(set(self.widths)) < 2:
            fail(
                name("widths"),
                "2 or more distinct widths (to fit slopes against width)",
                repr(list(self.widths)),
            )
        if len(set(self.classes)) != len(self.classes):
            fail(name("classes"), "distinct classes", repr(list(self.classes)))
        used = set(self.plateau_models) if self.study == "plateau" else {self.model}
        if used - {"mlp"} and self.dataset not in IMAGE_DATASETS:
            fail(
                name("model" if self.study == "width" else "plateau_models"),
                f"mlp for the vector dataset {self.dataset!r} (cnn and wrn need one of "
                f"{', '.join(IMAGE_DATASETS)})",
                repr(sorted(used)),
            )
        if self.optimizer == "gd" and self.batch_size is not None:
            fail(
                name("batch_size"),
                "none with --optimizer gd (full batch; use --optimizer sgd for minibatches)",
                repr(self.batch_size),
            )
        sizes = self.plateau_n_train if self.study == "plateau" else (self.n_train,)
        if self.batch_size is not None and self.batch_size > min(sizes):
            fail(
                name("batch_size"),
                f"at most the training-set size {min(sizes)}",
                repr(self.batch_size),
            )
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


def _layers(settings: Settings, width: int, d_out: int):
    """The network of `settings.model` (see `_linear_vs_real_models.layers`)."""
    return models.layers(settings, width, d_out)


init_params = init_mlp_params  # the name before the architectures grew


def _norm(tree) -> float:
    leaves = jax.tree_util.tree_leaves(tree)
    return float(np.sqrt(sum(float(jnp.sum(a.astype(jnp.float64) ** 2)) for a in leaves)))


def run_point(settings: Settings, data, width: int, seed: int) -> dict[str, Any]:
    """Trains one (width, seed) point; returns JSON-serialisable metrics and curves."""
    x, y, xt, yt = data
    net_layers = _layers(settings, width, y.shape[1])
    apply = net_layers.apply_fn
    params0 = models.init(settings, net_layers, x, width, y.shape[1], seed)
    optimizer, kind = models.optimizer(settings)
    picks = models.weight_picks(settings, apply, params0, x, y)
    run = dict(
        optimizer=optimizer,
        steps=settings.steps,
        record_every=settings.record_every,
        x_test=xt,
        y_test=yt,
        loss=models.train_loss(settings),
        observe=models.observe_weights(picks),
    )
    if settings.batch_size is not None:
        # one key for both runs: the network and its linearization see the same minibatches
        run.update(batch_size=settings.batch_size, key=jax.random.PRNGKey(10_000 + seed))
    ks = models.kernels(apply, params0, data)
    # The critical rate of plain GD on the initial NTK, reported; for full-batch MSE (with or
    # without momentum) trajectory is told it too, so a rate above it warns before training.
    critical = models.critical_learning_rate(settings, ks[0], y)
    if kind is not None and settings.loss == "mse":
        beta = settings.momentum if kind == "momentum" else 0.0
        run.update(
            learning_rate=settings.learning_rate, critical_learning_rate=critical * (1 + beta)
        )
    net = jaxdyn.trajectory(
        apply, params0, x, y, kernel_every=settings.steps, keep_params=False, **run
    )
    lin = jaxdyn.trajectory(apply, params0, x, y, linearize=True, **run)
    pred = None
    if kind is not None:
        pred = models.analytic(settings, apply, params0, data, ks, net.steps, kind, picks)
    closed = None if pred is None else (pred.f_train, pred.f_test)
    agree = jaxdyn.compare.agreement(net, lin, closed, y_test=yt)
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
        analytic=None if pred is None else pred.name,
        steps=tolist(net.steps),
        rmse_net_lin_test=tolist(agree.rmse_net_lin_test),
        rmse_lin_closed_form_test=tolist(agree.rmse_lin_closed_form_test),
        loss_net=tolist(net.loss),
        loss_lin=tolist(lin.loss),
        loss_closed_form=tolist(None if pred is None else pred.loss),
        f_test_net=tolist(net.f_test[:, :show, 0]),
        f_test_lin=tolist(lin.f_test[:, :show, 0]),
        f_test_closed_form=tolist(None if pred is None else pred.f_test[:, :show, 0]),
        weights_net=tolist(net.observed),
        weights_lin=tolist(lin.observed),
        weights_closed_form=tolist(None if pred is None else pred.weights),
        weight_names=[
            f"{'first' if i < models.WEIGHTS_PER_LAYER else 'last'} layer, weight "
            f"{i % models.WEIGHTS_PER_LAYER + 1}"
            for i in range(len(picks))
        ],
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
    x64 = precision(settings.dtype)
    # imported here: matplotlib is not needed to list or validate experiments
    from jaxdyn.experiments import linear_vs_real_plots

    if settings.study == "plateau":
        with x64:
            res, points = _plateau.run_plateau(
                settings,
                out,
                progress,
                run_point=run_point,
                load_data=load_data,
                stored=settings_dict(settings),
                name=NAME,
            )
        return finish(out, res, points, linear_vs_real_plots.save_plateau_figures)
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
            analytic=points[0].get("analytic"),
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
    return finish(out, res, points, linear_vs_real_plots.save_figures)


def summary_lines(res: dict[str, Any]) -> Sequence[str]:
    """Human-readable summary printed by the CLI."""
    if res.get("study") == "plateau":
        return _plateau.summary_lines(res)
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
            f"linearized network vs {res.get('analytic') or 'closed form'}: max test RMSE "
            f"{agree['max_rmse']:.1e} "
            f"(width {agree['width']}, seed {agree['seed']})"
        )
    return lines
