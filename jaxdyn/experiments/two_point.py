"""Experiment `two-point`: the two-point effective theory fitted to many architectures.

van Rossem & Saxe (ICML 2024), "When representations align: universality in representation
learning dynamics", Figure 2. Each network learns the two points x in {-1, 0} -> targets
{0.6, 0.6 + sqrt(0.5)} (dx2 = 1, dy2 = 0.5) by full-batch SGD on `0.5 * MSE`; the
squared distance `h` of the two hidden representations at a tracked layer, the squared
output distance `y` and the alignment `w` are recorded every `record_every` epochs, and the
two rates `eta_h`, `eta_y` of the theory are fitted to them (`representation.fit_rates`),
in gradient-flow time `t = lr * epoch`. The loss curve of the theory takes a third rate,
fitted to the mean output error. For the deep leaky-ReLU net every hidden layer is fitted
(the error per tracked layer), and the four altered ODEs of the authors' negative control
are fitted to its tracked layer.

The authors' default network (20 hidden layers of 500 leaky-ReLU units, gain 1, lr 0.005,
6,000 epochs, tracked layer 10) is `--size paper`; the default is the same protocol at
width 200 (one 20 x 500 run costs ~45 s of CPU: the eleven architectures, 20 layer fits and
the controls take ~10 CPU minutes at width 500, ~4 at width 200). Seeds of one architecture
train as one vmapped run; each architecture is one resumable point.
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

from jaxdyn import results, sweep
from jaxdyn.analysis import representation as rep
from jaxdyn.experiments import _representation_common as common
from jaxdyn.experiments._runner import (
    ExperimentSettings,
    fail,
    finish,
    option,
    settings_dict,
    validate,
)

NAME = "two-point"
SUMMARY = "two-point theory of representation learning fitted to many nets (van Rossem & Saxe 2024)"

#: The architectures (see `build`): the deep leaky-ReLU net first (every layer fitted).
ARCHITECTURES = (
    "leaky_relu",
    "half_depth",
    "half_width",
    "tanh",
    "relu",
    "elu",
    "silu",
    "linear",
    "residual",
    "cnn",
    "shallow",
)
DEEP = "leaky_relu"
CNN_IMAGE = (8, 8, 1)  # the CNN sees x * u, u a fixed unit-norm 8x8 image (dx2 unchanged)

PAPER = dict(
    fit_error_deep="small: the fitted curves lie on the measured ones (Fig. 2)",
    fit_error_shallow="large: the theory fails for the 2-layer net",
    layers="middle layers fit best, the error rises toward the first and last",
)


@dataclasses.dataclass(frozen=True)
class Settings(ExperimentSettings):
    """Settings of one run; every field is a command-line option (`--depth`, ...)."""

    architectures: tuple[str, ...] = option(
        ARCHITECTURES, "architectures to train and fit", choices=ARCHITECTURES
    )
    depth: int = option(20, "hidden layers of the deep nets", minimum=2)
    width: int = option(200, "hidden units per layer (the paper: 500)", minimum=2)
    layer: int = option(10, "tracked hidden layer of the deep nets", minimum=1)
    gain: float = option(1.0, "Xavier gain of the initial weights", minimum=0, strict_min=True)
    learning_rate: float = option(0.005, "full-batch SGD learning rate", minimum=0, strict_min=True)
    epochs: int = option(6000, "full-batch SGD epochs", minimum=1)
    record_every: int = option(50, "record (h, y, w) every this many epochs", minimum=1)
    seeds: int = option(1, "seeds per architecture, trained as one vmapped run", minimum=1)
    cnn_channels: int = option(8, "feature maps per CNN layer", minimum=1)
    cnn_depth: int = option(6, "convolutional layers of the CNN", minimum=2)
    layer_fits: bool = option(True, "fit every hidden layer of the deep leaky-ReLU net")
    controls: bool = option(True, "fit the four altered ODEs to the deep net's tracked layer")
    fit_grid: int = option(13, "start-grid points per rate of every fit", minimum=2)
    dtype: Literal["float32", "float64"] = option("float32", "floating-point type of training")

    def check(self, name: Callable[[str], str]) -> None:
        if len(set(self.architectures)) != len(self.architectures):
            fail(name("architectures"), "distinct names", repr(list(self.architectures)))
        if self.layer > self.depth:
            fail(
                name("layer"),
                f"a hidden layer in 1..{name('depth')} ({self.depth})",
                repr(self.layer),
            )
        if self.epochs % self.record_every:
            fail(
                name("epochs"),
                f"a multiple of {name('record_every')} ({self.record_every})",
                repr(self.epochs),
            )
        if self.epochs // self.record_every < 2:
            fail(
                name("record_every"),
                "at most epochs / 2 (the fit needs 3 times)",
                repr(self.record_every),
            )


PRESETS: dict[str, dict[str, Any]] = {
    "small": dict(
        architectures=(DEEP, "shallow", "cnn"),
        depth=6,
        width=32,
        layer=3,
        epochs=600,
        record_every=50,
        cnn_channels=4,
        cnn_depth=3,
        controls=False,
    ),
    "paper": dict(width=500),
}


# --------------------------------------------------------------------------- models


def build(name: str, settings: Settings) -> tuple[rep.RepresentationModel, np.ndarray, int, str]:
    """The network `name`, its inputs for the two points, its tracked layer and a label."""
    d, w, g = settings.depth, settings.width, settings.gain
    mid = max(d // 2, 1)
    x = common.X_PAIR
    if name in ("leaky_relu", "tanh", "relu", "elu", "silu", "linear"):
        model = rep.mlp(1, w, d, 1, activation=name, gain=g)
        layer = settings.layer
        label = f"{d} x {w} {name}"
    elif name == "half_depth":
        model, layer = rep.mlp(1, w, mid, 1, gain=g), max(mid // 2, 1)
        label = f"{mid} x {w} leaky_relu"
    elif name == "half_width":
        model, layer = rep.mlp(1, w // 2, d, 1, gain=g), settings.layer
        label = f"{d} x {w // 2} leaky_relu"
    elif name == "residual":
        model, layer = rep.residual_mlp(1, w, d, 1, gain=g), settings.layer
        label = f"residual {d} x {w} leaky_relu"
    elif name == "cnn":
        c, depth = settings.cnn_channels, settings.cnn_depth
        model = rep.cnn(CNN_IMAGE, c, depth, 1, gain=g)
        x, layer = np.asarray(rep.image_embedding(x, CNN_IMAGE)), max(depth // 2, 1)
        label = f"CNN {depth} x {c} ch 3x3 on 8x8 (x * u)"
    elif name == "shallow":
        model, layer = rep.mlp(1, w, 1, 1, gain=g), 1
        label = f"2-layer ({w} leaky_relu)"
    else:  # pragma: no cover - Settings.check restricts the names
        fail("architecture", f"one of {ARCHITECTURES}", repr(name))
    return model, x, layer, label


# --------------------------------------------------------------------------- one architecture


def run_point(settings: Settings, name: str) -> dict[str, Any]:
    """Trains the seeds of one architecture (one vmapped run) and fits the theory; JSON-ready."""
    dtype = jnp.dtype(settings.dtype)
    model, x, layer, label = build(name, settings)
    n_layers = settings.depth if name == DEEP and settings.layer_fits else 0
    xj = jnp.asarray(x, dtype)
    yj = jnp.asarray(common.Y_PAIR, dtype)
    dx2, dy2 = common.separations(x, common.Y_PAIR)

    def observe(p):
        acts = model.hidden_fn(p, xj, (layer, *range(1, n_layers + 1)))
        h_layers = jnp.stack([jnp.sum((a[1] - a[0]) ** 2) for a in acts[1:]]) if n_layers else None
        return dict(reps=acts[0], h_layers=h_layers)

    seeds = list(range(settings.seed, settings.seed + settings.seeds))
    t0 = time.perf_counter()
    params0 = common.init_many(model, seeds, [settings.gain] * len(seeds), dtype)
    run = common.train_many(
        model,
        params0,
        xj,
        yj,
        learning_rate=settings.learning_rate,
        epochs=settings.epochs,
        record_every=settings.record_every,
        observe=observe,
    )
    train_seconds = time.perf_counter() - t0
    t = run["t"]
    runs = []
    for r, seed in enumerate(seeds):
        if not run["finite"][r]:
            runs.append(dict(seed=seed, diverged=True))
            continue
        obs, mean_err = common.pair_observables(
            run["observed"]["reps"][r], run["f_train"][r], common.Y_PAIR
        )
        fit = common.fit_run(obs, t, dx2, dy2, settings.fit_grid)
        mean_fit = rep.fit_mean_rate(mean_err, t)
        loss_theory = np.asarray(
            rep.theory_loss(np.asarray(fit["fitted"]), t, dy2, mean_fit.eta_mean, mean_err[0])
        )
        loss = run["loss"][r]
        record = dict(
            seed=seed,
            diverged=False,
            observed=obs.tolist(),
            loss=loss.tolist(),
            loss_theory=loss_theory.tolist(),
            loss_error=float(np.linalg.norm(loss_theory - loss) / np.linalg.norm(loss)),
            eta_mean=mean_fit.eta_mean,
            **fit,
        )
        if n_layers:
            layers = []
            for i in range(n_layers):
                o = obs.copy()
                o[:, 0] = run["observed"]["h_layers"][r][:, i]
                f = common.fit_run(o, t, dx2, dy2, settings.fit_grid)
                layers.append(dict(layer=i + 1, **{k: v for k, v in f.items() if k != "fitted"}))
            record["layers"] = layers
        if name == DEEP and settings.controls:
            record["controls"] = {
                key: float(
                    rep.fit_rates(obs, t, dx2, dy2, rhs=rhs, grid_points=settings.fit_grid).sse
                )
                for key, rhs in rep.NEGATIVE_CONTROLS.items()
            }
        runs.append(record)
    return dict(
        label=label,
        tracked_layer=layer,
        dx2=dx2,
        dy2=dy2,
        t=t.tolist(),
        runs=runs,
        train_seconds=train_seconds,
        fit_seconds=time.perf_counter() - t0 - train_seconds,
    )


def _mean(values: Sequence[float]) -> float | None:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def summarize(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per architecture: seed-mean rates and errors."""
    rows = []
    for p in points:
        ok = [r for r in p["runs"] if not r["diverged"]]
        row = dict(
            architecture=p["architecture"],
            label=p["label"],
            tracked_layer=p["tracked_layer"],
            seeds=len(p["runs"]),
            diverged=len(p["runs"]) - len(ok),
        )
        for key in ("eta_h", "eta_y", "eta_mean", "relative_error", "loss_error"):
            row[key] = _mean([r[key] for r in ok])
        for key in ("h_final", "h_final_fit", "h_final_fit_error", "h_inf", "h_inf_error"):
            row[key] = _mean([r[key] for r in ok])
        row["a_low"], row["a_high"] = (
            _mean([r["a_low"] for r in ok]),
            _mean([r["a_high"] for r in ok]),
        )
        row["curve_errors"] = {c: _mean([r["curve_errors"][c] for r in ok]) for c in "hyw"}
        if ok and "controls" in ok[0]:
            true = _mean([r["sse"] for r in ok])
            row["controls_sse"] = {
                k: _mean([r["controls"][k] for r in ok]) for k in ok[0]["controls"]
            }
            row["true_sse"] = true
            row["true_beats_every_control"] = all(
                v is not None and v > true for v in row["controls_sse"].values()
            )
        if ok and "layers" in ok[0]:
            row["layers"] = [
                dict(
                    layer=i + 1,
                    **{
                        k: _mean([r["layers"][i][k] for r in ok])
                        for k in ("eta_h", "eta_y", "relative_error", "h_inf_error")
                    },
                )
                for i in range(len(ok[0]["layers"]))
            ]
        rows.append(row)
    return rows


def run(
    settings: Settings,
    out: str | os.PathLike,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Trains and fits every architecture (resuming from `out/points`), then writes figures and
    `results.json` (last). Fits run in float64 (x64 on inside this call only)."""
    validate(settings)
    with jax.enable_x64(True):
        t0 = time.perf_counter()
        stored = settings_dict(settings)
        points = sweep.sweep(
            lambda architecture: run_point(settings, architecture),
            {"architecture": list(settings.architectures)},
            out,
            settings=stored,
            required=("runs", "t", "label"),
            progress=progress,
            name="--out",
        )
        rows = summarize(points)
        res = dict(
            experiment=NAME,
            settings=stored,
            environment=results.environment(),
            wall_seconds=time.perf_counter() - t0,
            train_seconds=sum(float(p["train_seconds"]) for p in points),
            fit_seconds=sum(float(p["fit_seconds"]) for p in points),
            paper=PAPER,
            per_architecture=rows,
        )
        deep = [r for r in rows if r["architecture"] == DEEP and "layers" in r]
        if deep:
            res["per_layer"] = deep[0]["layers"]
    from jaxdyn.experiments import two_point_plots

    return finish(out, res, points, two_point_plots.save_figures)


def _fmt(v: Any, spec: str = ".3g") -> str:
    return "-" if v is None else format(v, spec)


def summary_lines(res: dict[str, Any]) -> Sequence[str]:
    """Human-readable summary printed by the CLI."""
    lines = [f"{'architecture':<34} {'eta_h':>8} {'eta_y':>8} {'fit err':>8} {'h_inf err':>9}"]
    for row in res["per_architecture"]:
        lines.append(
            f"{row['label']:<34} {_fmt(row['eta_h']):>8} {_fmt(row['eta_y']):>8} "
            f"{_fmt(row['relative_error'], '.2%'):>8} {_fmt(row['h_inf_error'], '.2%'):>9}"
        )
        if "controls_sse" in row:
            ratios = ", ".join(
                f"{k} x{v / row['true_sse']:.3g}" for k, v in row["controls_sse"].items() if v
            )
            lines.append(f"  altered ODEs' sse / true sse: {ratios}")
    if "per_layer" in res:
        errs = ", ".join(
            f"{r['layer']}: {_fmt(r['relative_error'], '.1%')}" for r in res["per_layer"]
        )
        lines.append(f"fit error per layer: {errs}")
    return lines
