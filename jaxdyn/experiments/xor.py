"""Experiment `xor`: representational geometry of XOR from rich to lazy learning.

van Rossem & Saxe (ICML 2024), Figure 4. The four XOR points `x in {-1, 1}^2`, targets
`-x_1 x_2` (+1 when the signs differ), are learnt by a deep ReLU MLP by full-batch SGD on
`0.5 * MSE` at gains 0.85 (rich), 1.25 (intermediate) and 2.0 (lazy); every (gain, seed)
trains in one vmapped run. At the end, the squared hidden distances of the six pairs
(`representation.rsm(squared=True)`) are put beside the two-point theory's pairwise
prediction: the rates fitted to the six pair trajectories of each gain are averaged (over
pairs and seeds), and each pair's `h_inf` is predicted from its measured start. In the rich
regime, pairs with the same label (`dy = 0`, so `A_low = 0`) merge.
"""

from __future__ import annotations

import dataclasses
import itertools
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

NAME = "xor"
SUMMARY = "XOR hidden distance matrices vs the two-point theory, rich to lazy (van Rossem & Saxe)"

X_XOR = np.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
Y_XOR = -X_XOR[:, :1] * X_XOR[:, 1:]  # (4, 1): -1, 1, 1, -1
PAIRS = tuple(itertools.combinations(range(4), 2))
PAPER = dict(rich="same-label points merge (distance ~0) at gain 0.85", lazy="geometry ~kept")


@dataclasses.dataclass(frozen=True)
class Settings(ExperimentSettings):
    """Settings of one run; every field is a command-line option."""

    depth: int = option(6, "hidden layers of the ReLU MLP", minimum=1)
    width: int = option(100, "hidden units per layer", minimum=2)
    layer: int = option(3, "tracked hidden layer", minimum=1)
    gains: tuple[float, ...] = option(
        (0.85, 1.25, 2.0), "Xavier gains (rich, intermediate, lazy)", minimum=0, strict_min=True
    )
    learning_rate: float = option(0.005, "full-batch SGD learning rate", minimum=0, strict_min=True)
    epochs: int = option(10000, "full-batch SGD epochs", minimum=1)
    record_every: int = option(100, "record every this many epochs", minimum=1)
    seeds: int = option(2, "seeds per gain", minimum=1)
    fit_grid: int = option(13, "start-grid points per rate of every fit", minimum=2)
    dtype: Literal["float32", "float64"] = option("float32", "floating-point type of training")

    def check(self, name: Callable[[str], str]) -> None:
        if self.layer > self.depth:
            fail(name("layer"), f"a hidden layer in 1..{self.depth}", repr(self.layer))
        if len(set(self.gains)) != len(self.gains):
            fail(name("gains"), "distinct values", repr(list(self.gains)))
        if self.epochs % self.record_every or self.epochs // self.record_every < 2:
            fail(
                name("epochs"),
                f"a multiple of {name('record_every')} ({self.record_every}), at least twice it",
                repr(self.epochs),
            )


PRESETS: dict[str, dict[str, Any]] = {
    "small": dict(depth=3, width=32, layer=2, epochs=1000, record_every=100, seeds=1),
    "paper": dict(depth=10, width=500, layer=5, epochs=20000, record_every=200, seeds=5),
}


def run_point(settings: Settings) -> dict[str, Any]:
    """Every (gain, seed) in one vmapped run; pair fits and matrices; JSON-ready."""
    dtype = jnp.dtype(settings.dtype)
    model = rep.mlp(2, settings.width, settings.depth, 1, activation="relu")
    seeds = range(settings.seed, settings.seed + settings.seeds)
    runs_of = [(float(g), s) for g in settings.gains for s in seeds]
    xj = jnp.asarray(X_XOR, dtype)
    t0 = time.perf_counter()
    params0 = common.init_many(model, [s for _, s in runs_of], [g for g, _ in runs_of], dtype)
    run = common.train_many(
        model,
        params0,
        xj,
        jnp.asarray(Y_XOR, dtype),
        learning_rate=settings.learning_rate,
        epochs=settings.epochs,
        record_every=settings.record_every,
        observe=lambda p: model.hidden_fn(p, xj, settings.layer),
    )
    train_seconds = time.perf_counter() - t0
    runs = []
    for r, (gain, seed) in enumerate(runs_of):
        if not run["finite"][r]:
            runs.append(dict(gain=gain, seed=seed, diverged=True))
            continue
        reps = run["observed"][r]  # (T, 4, width)
        pairs = []
        for i, j in PAIRS:
            sub = reps[:, [i, j]]
            obs, _ = common.pair_observables(sub, run["f_train"][r][:, [i, j]], Y_XOR[[i, j]])
            dx2, dy2 = common.separations(X_XOR[[i, j]], Y_XOR[[i, j]])
            fit = rep.fit_rates(obs, run["t"], dx2, dy2, grid_points=settings.fit_grid)
            pairs.append(
                dict(
                    pair=[i, j],
                    dx2=dx2,
                    dy2=dy2,
                    start=obs[0].tolist(),
                    eta_h=fit.eta_h,
                    eta_y=fit.eta_y,
                    relative_error=fit.relative_error,
                )
            )
        runs.append(
            dict(
                gain=gain,
                seed=seed,
                diverged=False,
                rsm_start=np.asarray(rep.rsm(reps[0], squared=True)).tolist(),
                rsm_final=np.asarray(rep.rsm(reps[-1], squared=True)).tolist(),
                pairs=pairs,
                final_loss=float(run["loss"][r, -1]),
            )
        )
    return dict(runs=runs, train_seconds=train_seconds)


def predict(point: dict[str, Any], gain: float) -> dict[str, Any]:
    """Seed-mean measured final matrix and the theory's pairwise prediction at one gain."""
    mine = [r for r in point["runs"] if r["gain"] == gain and not r["diverged"]]
    if not mine:
        return dict(gain=gain, runs=0)
    eta_h = float(np.mean([p["eta_h"] for r in mine for p in r["pairs"]]))
    eta_y = float(np.mean([p["eta_y"] for r in mine for p in r["pairs"]]))
    measured = np.mean([np.asarray(r["rsm_final"]) for r in mine], axis=0)
    start = np.mean([np.asarray(r["rsm_start"]) for r in mine], axis=0)
    predicted = np.zeros((4, 4))
    for r in mine:
        for p in r["pairs"]:
            i, j = p["pair"]
            h = float(
                rep.fixed_point(np.asarray(p["start"]), eta_h, eta_y, p["dx2"], p["dy2"]).h_inf
            )
            predicted[i, j] += h / len(mine)
            predicted[j, i] = predicted[i, j]
    iu = np.triu_indices(4, 1)
    same = Y_XOR[iu[0], 0] == Y_XOR[iu[1], 0]
    m, q = measured[iu], predicted[iu]
    return dict(
        gain=gain,
        runs=len(mine),
        eta_h=eta_h,
        eta_y=eta_y,
        fit_error=float(np.mean([p["relative_error"] for r in mine for p in r["pairs"]])),
        measured=measured.tolist(),
        predicted=predicted.tolist(),
        start=start.tolist(),
        pair_relative_error=float(np.linalg.norm(q - m) / np.linalg.norm(m)),
        same_over_different=float(m[same].mean() / m[~same].mean()),
        same_over_different_predicted=float(q[same].mean() / q[~same].mean()),
        final_loss=float(np.mean([r["final_loss"] for r in mine])),
    )


def run(
    settings: Settings,
    out: str | os.PathLike,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Trains every (gain, seed) (one resumable point), figures, results.json."""
    validate(settings)
    with jax.enable_x64(True):
        t0 = time.perf_counter()
        stored = settings_dict(settings)
        sw = sweep.open_sweep(out, stored, name="--out")
        point = sw.point({"part": "xor"}, lambda: run_point(settings), required=("runs",))
        if progress:
            progress(1, 1, "xor")
        rows = [predict(point, float(g)) for g in settings.gains]
        res = dict(
            experiment=NAME,
            settings=stored,
            environment=results.environment(),
            paper=PAPER,
            per_gain=rows,
            wall_seconds=time.perf_counter() - t0,
        )
    from jaxdyn.experiments import xor_plots

    return finish(out, res, point, xor_plots.save_figures)


def summary_lines(res: dict[str, Any]) -> Sequence[str]:
    """Human-readable summary printed by the CLI."""
    lines = [f"{'gain':>6} {'same/diff':>10} {'theory':>8} {'pair err':>9} {'fit err':>8}"]
    for r in res["per_gain"]:
        if not r["runs"]:
            lines.append(f"{r['gain']:>6.3g} diverged")
            continue
        lines.append(
            f"{r['gain']:>6.3g} {r['same_over_different']:>10.3g} "
            f"{r['same_over_different_predicted']:>8.3g} {r['pair_relative_error']:>9.2%} "
            f"{r['fit_error']:>8.2%}"
        )
    lines.append("same/diff: final squared distance of same-label over different-label pairs")
    return lines
