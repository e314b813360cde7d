"""Experiment `representation-digits`: the two-point theory on real data.

van Rossem & Saxe (ICML 2024), Section 5: a 4 x 200 leaky-ReLU MLP (Xavier gain 1, zero
biases) learns scikit-learn's digits (1797 8x8 images, pixels in [0, 1], one-hot targets) by
minibatch SGD on `0.5 * MSE`; the hidden representations of two chosen training images (the
first of `--class-a` and the first of `--class-b`) are recorded at `--layer` every
`--record-every` steps, and the two rates of the theory are fitted to their `(h, y, w)`
(`dx2 = ||x_a - x_b||^2`, `dy2 = 2`). Time is `t = lr x step`. Seeds train as one vmapped
run; the whole run is one resumable point.
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

from jaxdyn import data, results, sweep
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

NAME = "representation-digits"
SUMMARY = "two-point theory fitted to two images of a digits MLP (van Rossem & Saxe 2024)"


@dataclasses.dataclass(frozen=True)
class Settings(ExperimentSettings):
    """Settings of one run; every field is a command-line option."""

    depth: int = option(4, "hidden layers of the leaky-ReLU MLP", minimum=1)
    width: int = option(200, "hidden units per layer", minimum=2)
    layer: int = option(2, "tracked hidden layer", minimum=1)
    gain: float = option(1.0, "Xavier gain", minimum=0, strict_min=True)
    learning_rate: float = option(0.05, "minibatch SGD learning rate", minimum=0, strict_min=True)
    batch_size: int = option(32, "minibatch size", minimum=1)
    epochs: int = option(60, "epochs over the training set", minimum=1)
    record_every: int = option(22, "record every this many SGD steps", minimum=1)
    class_a: int = option(0, "class of the first tracked image", minimum=0, maximum=9)
    class_b: int = option(1, "class of the second tracked image", minimum=0, maximum=9)
    seeds: int = option(2, "seeds, trained as one vmapped run", minimum=1)
    fit_grid: int = option(13, "start-grid points per rate of the fit", minimum=2)
    dtype: Literal["float32", "float64"] = option("float32", "floating-point type of training")

    def check(self, name: Callable[[str], str]) -> None:
        if self.layer > self.depth:
            fail(name("layer"), f"a hidden layer in 1..{self.depth}", repr(self.layer))
        if self.class_a == self.class_b:
            fail(name("class_b"), f"a class other than {name('class_a')}", repr(self.class_b))
        steps = self.epochs * (1437 // self.batch_size)  # 1437 training images (test 20%)
        if steps % self.record_every or steps // self.record_every < 2:
            fail(
                name("record_every"),
                f"a divisor of the {steps} SGD steps, at most half of them",
                repr(self.record_every),
            )


PRESETS: dict[str, dict[str, Any]] = {
    "small": dict(width=32, epochs=4, record_every=22, seeds=1, fit_grid=5),
    "paper": dict(epochs=200, record_every=88, seeds=5),
}


def run_point(settings: Settings) -> dict[str, Any]:
    """Trains every seed (one vmapped run) and fits the tracked pair; JSON-ready."""
    dtype = jnp.dtype(settings.dtype)
    ds = data.digits(seed=0, one_hot=True)
    labels = np.asarray(ds.labels_train)
    a = int(np.flatnonzero(labels == settings.class_a)[0])
    b = int(np.flatnonzero(labels == settings.class_b)[0])
    x = jnp.asarray(ds.x_train, dtype)
    y = jnp.asarray(ds.y_train, dtype)
    pair = x[jnp.array([a, b])]
    model = rep.mlp(64, settings.width, settings.depth, 10, gain=settings.gain)
    seeds = list(range(settings.seed, settings.seed + settings.seeds))
    t0 = time.perf_counter()
    params0 = common.init_many(model, seeds, [settings.gain] * len(seeds), dtype)
    keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s), 7) for s in seeds])
    run = common.train_many(
        model,
        params0,
        x,
        y,
        learning_rate=settings.learning_rate,
        epochs=settings.epochs,
        record_every=settings.record_every,
        observe=lambda p: dict(
            reps=model.hidden_fn(p, pair, settings.layer), out=model.apply_fn(p, pair)
        ),
        batch_size=settings.batch_size,
        keys=keys,
    )
    train_seconds = time.perf_counter() - t0
    targets = np.asarray(ds.y_train)[[a, b]]
    dx2, dy2 = common.separations(np.asarray(ds.x_train)[[a, b]], targets)
    runs = []
    for r, seed in enumerate(seeds):
        if not run["finite"][r]:
            runs.append(dict(seed=seed, diverged=True))
            continue
        obs, _ = common.pair_observables(
            run["observed"]["reps"][r], run["observed"]["out"][r], targets
        )
        fit = common.fit_run(obs, run["t"], dx2, dy2, settings.fit_grid)
        runs.append(
            dict(
                seed=seed,
                diverged=False,
                observed=obs.tolist(),
                final_loss=float(run["loss"][r, -1]),
                **fit,
            )
        )
    return dict(
        images=[a, b],
        dx2=dx2,
        dy2=dy2,
        t=run["t"].tolist(),
        runs=runs,
        train_seconds=train_seconds,
    )


def run(
    settings: Settings,
    out: str | os.PathLike,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Trains, fits (one resumable point), writes the figure and results.json."""
    validate(settings)
    with jax.enable_x64(True):
        t0 = time.perf_counter()
        stored = settings_dict(settings)
        sw = sweep.open_sweep(out, stored, name="--out")
        point = sw.point({"part": "digits"}, lambda: run_point(settings), required=("runs",))
        if progress:
            progress(1, 1, "digits")
        ok = [r for r in point["runs"] if not r["diverged"]]
        keys = ("eta_h", "eta_y", "relative_error", "h_final", "h_inf", "h_inf_error")
        res = dict(
            experiment=NAME,
            settings=stored,
            environment=results.environment(),
            images=point["images"],
            dx2=point["dx2"],
            dy2=point["dy2"],
            per_seed=[{"seed": r["seed"], **{k: r[k] for k in keys}} for r in ok]
            + [{"seed": r["seed"], "diverged": True} for r in point["runs"] if r["diverged"]],
            mean={k: float(np.mean([r[k] for r in ok])) for k in keys} if ok else None,
            wall_seconds=time.perf_counter() - t0,
        )
    from jaxdyn.experiments import representation_digits_plots

    return finish(out, res, point, representation_digits_plots.save_figures)


def summary_lines(res: dict[str, Any]) -> Sequence[str]:
    """Human-readable summary printed by the CLI."""
    m = res["mean"]
    if m is None:
        return ["every seed diverged"]
    return [
        f"images {res['images']} (dx2 {res['dx2']:.3g}, dy2 {res['dy2']:.3g}): "
        f"eta_h {m['eta_h']:.3g}, eta_y {m['eta_y']:.3g}, fit error {m['relative_error']:.2%}, "
        f"final h {m['h_final']:.3g} vs h_inf {m['h_inf']:.3g} ({m['h_inf_error']:.1%})"
    ]
