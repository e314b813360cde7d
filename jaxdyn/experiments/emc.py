"""Experiment `emc`: effective model complexity of MLPs and CNNs (Shwartz-Ziv et al. 2024).

For every run of the chosen `--study` (a model, a data variant and an optimizer, see
`emc_studies`), `jaxdyn.analysis.emc.measure` searches the largest training-set size the
training procedure fits to 100% training accuracy: geometric growth from `--n-min`, then
bisection to `--precision`; every size is trained from fresh initializations, the seeds and
the learning-rate grid as one vmapped `fits` call; a size counts as fitted when at least half
the seeds fit it at some rate of the grid. Every fit is a point file in `--out/points`, so an
interrupted run resumes without refitting. results.json holds one record per run (its
settings by name, `emc`, bracket, parameter count, seeds, learning rate, the outcome of every
tried size), the paper's headline orderings as measured, and the EMC gap against the
generalization gap.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from jaxdyn import data, results, sweep
from jaxdyn.analysis import emc
from jaxdyn.experiments import emc_studies
from jaxdyn.experiments._runner import (
    ExperimentSettings,
    fail,
    finish,
    option,
    settings_dict,
    validate,
)

NAME = "emc"
ACTIVATIONS = tuple(emc.ACTIVATIONS)
SUMMARY = "effective model complexity: how many samples a network fits (Shwartz-Ziv et al. 2024)"


@dataclasses.dataclass(frozen=True)
class Settings(ExperimentSettings):
    """Settings of one run; every field is a command-line option."""

    study: Literal[
        "labels",
        "inputs",
        "classes",
        "optimizers",
        "activations",
        "architectures",
        "scaling",
        "generalization",
        "all",
    ] = option("labels", "which comparison to run (all: every study, each run once)")
    dataset: Literal["mnist1d", "digits", "fashion_mnist"] = option(
        "mnist1d",
        "dataset (fashion_mnist: the IDX files in $JAXDYN_DATA/fashion-mnist or "
        "/usr/share/datasets/fashion-mnist, `apt-get install dataset-fashion-mnist`)",
    )
    widths: tuple[int, ...] = option((16, 32, 64), "MLP hidden widths", minimum=1)
    depth: int = option(2, "MLP hidden layers", minimum=0)
    cnn_depth: int = option(
        2, "CNN conv layers (widths matched to the MLPs' parameters)", minimum=1
    )
    class_counts: tuple[int, ...] = option(
        (2, 5, 10), "class counts of the classes study", minimum=2
    )
    optimizers: tuple[str, ...] = option(("sgd", "gd", "adam", "adamw"), "optimizers study")
    activations: tuple[str, ...] = option(("relu", "tanh"), "activations study")
    scaling_widths: tuple[int, ...] = option(
        (8, 16, 32, 64, 128), "scaling study widths", minimum=1
    )
    scaling_depths: tuple[int, ...] = option((1, 3, 4), "scaling study depths", minimum=0)
    seeds: int = option(3, "seeds per size (seed, seed + 1, ...)", minimum=1)
    learning_rates: tuple[float, ...] = option(
        (0.03, 0.1, 0.3), "learning-rate grid of sgd / gd", minimum=0, strict_min=True
    )
    adam_learning_rates: tuple[float, ...] = option(
        (1e-3, 3e-3, 1e-2), "learning-rate grid of adam / adamw", minimum=0, strict_min=True
    )
    batch_size: int = option(64, "minibatch size (sgd, adam, adamw)", minimum=1)
    max_steps: int = option(20000, "step cap of one fit", minimum=1)
    patience: int = option(
        3000, "steps without relative loss improvement before stopping", minimum=1
    )
    rel_tol: float = option(0.01, "relative loss improvement that resets the patience", minimum=0)
    n_min: int = option(64, "first training-set size", minimum=1)
    n_max: int = option(4096, "largest training-set size", minimum=2)
    precision: float = option(0.1, "relative width of the final bracket", minimum=0, maximum=1)
    n_test: int = option(1000, "test samples (for the generalization gap)", minimum=1)

    def check(self, name: Callable[[str], str]) -> None:
        if self.n_min > self.n_max:
            fail(name("n_min"), f"<= {name('n_max')} ({self.n_max})", repr(self.n_min))
        for field, allowed in (("optimizers", emc.OPTIMIZERS), ("activations", ACTIVATIONS)):
            for i, v in enumerate(getattr(self, field)):
                if v not in allowed:
                    fail(f"{name(field).strip('`')}[{i}]", f"one of {allowed}", repr(v))
        for field in ("widths", "class_counts", "optimizers", "activations", "scaling_widths"):
            values = getattr(self, field)
            if len(set(values)) != len(values):
                fail(name(field), "distinct values", repr(list(values)))
        classes = 10
        for i, c in enumerate(self.class_counts):
            if c > classes:
                fail(f"{name('class_counts').strip('`')}[{i}]", f"<= {classes}", repr(c))
        if self.dataset == "fashion_mnist" and (self.n_max > 60000 or self.n_test > 10000):
            fail(
                name("n_max") if self.n_max > 60000 else name("n_test"),
                "<= 60000 training / 10000 test samples (Fashion-MNIST's official splits)",
                repr(self.n_max if self.n_max > 60000 else self.n_test),
            )
        if self.dataset == "digits" and self.n_max + self.n_test > 1797:
            fail(
                name("n_max"),
                f"<= {1797 - self.n_test} (digits has 1797 samples, {self.n_test} for testing)",
                repr(self.n_max),
            )

    @property
    def num_classes(self) -> int:
        return 10


PRESETS: dict[str, dict[str, Any]] = {
    "small": dict(
        widths=(8, 16),
        seeds=2,
        learning_rates=(0.1, 0.3),
        max_steps=3000,
        patience=1000,
        n_min=16,
        n_max=512,
        precision=0.25,
        n_test=200,
        class_counts=(2, 10),
        optimizers=("sgd", "gd"),
        scaling_widths=(8, 16, 32),
        scaling_depths=(1,),
    ),  # fmt: skip
    "paper": dict(
        widths=(32, 64, 128, 256),
        seeds=5,
        learning_rates=(0.01, 0.03, 0.1, 0.3),
        adam_learning_rates=(3e-4, 1e-3, 3e-3, 1e-2),
        max_steps=100000,
        patience=10000,
        n_max=32768,
        precision=0.05,
        scaling_widths=(16, 32, 64, 128, 256, 512),
        scaling_depths=(1, 3, 4, 6),
        n_test=4000,
    ),  # fmt: skip
}


# --------------------------------------------------------------------------- data and models


def load_data(settings: Settings) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train (n_max, ...), labels_train, x_test (n_test, ...), labels_test), float32."""
    if settings.dataset == "mnist1d":
        ds = data.mnist1d(settings.n_max, settings.n_test, seed=settings.seed, dtype=np.float32)
        x, xt = ds.x_train, ds.x_test
    elif settings.dataset == "fashion_mnist":
        ds = data.fashion_mnist(
            n_train=settings.n_max, n_test=settings.n_test, seed=settings.seed,
            standardize=True, dtype=np.float32,
        )  # fmt: skip
        x, xt = ds.x_train.reshape(-1, 28, 28), ds.x_test.reshape(-1, 28, 28)
    else:
        ds = data.digits(
            n_train=settings.n_max, n_test=settings.n_test, seed=settings.seed,
            standardize=True, dtype=np.float32,
        )  # fmt: skip
        x, xt = ds.x_train.reshape(-1, 8, 8), ds.x_test.reshape(-1, 8, 8)
    return x, np.asarray(ds.labels_train), xt, np.asarray(ds.labels_test)


@functools.lru_cache(maxsize=64)
def build_model(
    architecture: str, width: int, depth: int, activation: str, input_shape: tuple, classes: int
) -> emc.Model:
    """The model of a run (cached, so runs sharing a model share its compiled training)."""
    if architecture == "mlp":
        return emc.mlp(input_shape, classes, width=width, depth=depth, activation=activation)
    return emc.cnn(input_shape, classes, width=width, depth=depth, activation=activation)


def per_seed_emc(trials: list[dict], seeds: list[int]) -> list[int | None]:
    """Each seed's own EMC estimate from the tried sizes (any rate): the largest n it fitted
    below the smallest n it did not fit (None if it fitted no tried size)."""
    out = []
    for s in range(len(seeds)):
        fitted = {t["n"]: bool(np.any(np.asarray(t["fitted"])[:, s])) for t in trials}
        fails = [n for n, f in fitted.items() if not f]
        hi = min(fails) if fails else None
        ok = [n for n, f in fitted.items() if f and (hi is None or n < hi)]
        out.append(max(ok) if ok else None)
    return out


def measure_run(settings: Settings, run: dict, task: tuple, swept, progress) -> dict[str, Any]:
    """Searches the EMC of one run; returns its results record."""
    x, y, xt, yt = task
    v = emc.make_variant(
        x, y, xt, yt, num_classes=settings.num_classes, labels=run["labels"],
        inputs=run["inputs"], classes=run["classes"], seed=settings.seed,
    )  # fmt: skip
    model = build_model(
        run["architecture"], run["width"], run["depth"], run["activation"],
        tuple(x.shape[1:]), v.num_classes,
    )  # fmt: skip
    adam = run["optimizer"] in ("adam", "adamw")
    lrs = settings.adam_learning_rates if adam else settings.learning_rates
    seeds = list(range(settings.seed, settings.seed + settings.seeds))
    t0 = time.perf_counter()
    m = emc.measure(
        model, v.x_train, v.labels_train, n_min=settings.n_min, n_max=settings.n_max,
        seeds=seeds, precision=settings.precision, order_seed=settings.seed,
        sweep=swept, key=run, progress=progress,
        optimizer=run["optimizer"], learning_rates=lrs, batch_size=settings.batch_size,
        max_steps=settings.max_steps, patience=settings.patience, rel_tol=settings.rel_tol,
        x_test=v.x_test, labels_test=v.labels_test,
    )  # fmt: skip
    s = m.search
    trials = []
    for t in s.trials:
        rec = t.records[0]
        trials.append(
            dict(
                n=t.n,
                fitted_n=t.fitted,
                counts=list(t.counts),
                best_learning_rate=float(rec["learning_rates"][t.best]),
                capped=t.capped,
                fitted=rec["fitted"],
                reason=rec["reason"],
                steps=rec["steps"],
                train_accuracy=rec["train_accuracy"],
                test_accuracy=rec.get("test_accuracy"),
                seconds=rec.get("seconds"),
            )
        )
    finite = all(np.all(np.isfinite(np.asarray(t["train_accuracy"], float))) for t in trials)
    diverged = sum(np.sum(np.asarray(t["reason"]) == "diverged") for t in trials)
    return dict(
        **run,
        dataset=settings.dataset,
        name=emc_studies.run_name(run),
        num_params=model.num_params,
        emc=m.emc,
        bracket=list(s.bracket),
        status=s.status,
        seeds=seeds,
        learning_rates=list(lrs),
        learning_rate=m.learning_rate,
        test_accuracy=m.test_accuracy,
        train_accuracy=m.train_accuracy,
        emc_per_param=None if m.emc is None else m.emc / model.num_params,
        per_seed_emc=per_seed_emc(trials, seeds),
        capped_sizes=list(s.capped),
        diverged_runs=int(diverged),
        finite=bool(finite),
        search_seconds=time.perf_counter() - t0,
        outcomes=trials,
    )


def run(
    settings: Settings,
    out: str | os.PathLike,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Runs every search of the study (resuming from `out/points`), writes the figures and
    `results.json` (last: its presence means done)."""
    validate(settings)
    t0 = time.perf_counter()
    stored = settings_dict(settings)
    swept = sweep.open_sweep(out, stored, name="--out")
    task = load_data(settings)
    runs = emc_studies.runs_of(settings, tuple(task[0].shape[1:]))
    records = []
    for i, (study, r) in enumerate(runs):

        def bar(done, total, desc, i=i, r=r):
            if progress is not None:
                progress(i, len(runs), f"{emc_studies.run_name(r)}: {desc}")

        rec = measure_run(settings, r, task, swept, bar)
        records.append(dict(study=study, **rec))
        if progress is not None:
            progress(i + 1, len(runs), f"{rec['name']}: emc {rec['emc']}")
    rows = emc_studies.generalization_rows(records)
    res = dict(
        experiment=NAME,
        settings=stored,
        environment=results.environment(),
        wall_seconds=time.perf_counter() - t0,
        stopping_rule=(
            "a fit stops at 100% training accuracy ('fitted'), a non-finite loss ('diverged'), "
            f"no relative loss improvement of {settings.rel_tol} for {settings.patience} steps "
            f"('plateau'), or {settings.max_steps} steps ('cap': not evidence of failure)"
        ),
        seed_rule="a size is fitted when at least half the seeds fit it at some rate of the grid",
        records=records,
        headlines=emc_studies.headlines(records),
        generalization=rows,
        generalization_correlation=emc_studies.correlation(rows),
        nonfinite_runs=sum(r["diverged_runs"] for r in records),
    )
    from jaxdyn.experiments import emc_plots  # matplotlib only when figures are drawn

    return finish(out, res, records, emc_plots.save_figures)


def summary_lines(res: dict[str, Any]) -> list[str]:
    """One line per run and per headline."""
    lines = []
    for r in res["records"]:
        lines.append(
            f"{r['name']}: EMC {r['emc']} (bracket {r['bracket']}, {r['status']}), "
            f"{r['num_params']} params, lr {r['learning_rate']}, test acc {r['test_accuracy']}"
        )
    for h in res["headlines"]:
        lines.append(f"{h['headline']}: holds in {h['holds_in']}")
    if res.get("generalization_correlation") is not None:
        lines.append(f"EMC gap vs generalization gap: r = {res['generalization_correlation']:.2f}")
    return lines
