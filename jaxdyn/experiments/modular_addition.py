"""Experiment `modular-addition`: the algebraic structure of what Adam finds on (a + b) mod d.

Tian (2024), "Composing global optimizers to reasoning tasks via algebraic objects in neural
nets" (CoGO). Two-layer quadratic networks `o(a, b) = W_c (W_a e_a + W_b e_b)^2` are trained
on a random train/test split of all d^2 pairs with the projected MSE, full batch, by Adam with
coupled L2 weight decay (`jaxdyn.analysis.modular.optimizer`). For each (d, width), every seed
and weight decay trains as ONE vmapped, jitted `lax.scan` run. Each run's per-frequency orders
(`frequency_orders`, k = 1..(d-1)/2) and the factorization of its order-4 and order-6
frequencies into "2 x 2" and "2 x 3" products (`factorize`) are stored, one point file per
(d, width), so a rerun resumes. results.json holds, per (d, width, weight decay), the
histogram of orders, the share of frequencies of order 4 or 6, the factorization fractions
and the test accuracy.

Cost: an epoch is three matrix products of `d x width x d^2` (forward, and the gradients with
respect to `h^2` and `W_c`), `6 d^3 width` flops, computed on the (a, b) grid (`grid_outputs`)
without gathers. On 2 CPU cores the d = 23 part of the default sweep (both widths, 25 runs
each, 10,000 epochs) takes minutes; the d = 71 part is ~4 x 10^14 flops, over half an hour at
the cores' peak rate (see the README section for measured times).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import results, sweep
from jaxdyn.analysis import modular
from jaxdyn.experiments._runner import (
    ExperimentSettings,
    fail,
    finish,
    option,
    precision,
    settings_dict,
    validate,
)

NAME = "modular-addition"
SUMMARY = "orders and factorization of Adam's solutions for modular addition (Tian 2024, CoGO)"

TOLERANCE = 0.1  # the authors' factorization acceptance factor
HISTORY = ("train_loss", "test_loss", "train_accuracy", "test_accuracy")


@dataclasses.dataclass(frozen=True)
class Settings(ExperimentSettings):
    """Settings of one run; every field is a command-line option (`--d`, `--width`, ...)."""

    d: tuple[int, ...] = option((23, 71), "moduli d (odd, >= 3)", minimum=3)
    width: tuple[int, ...] = option((256, 512), "hidden widths", minimum=1)
    weight_decay: tuple[float, ...] = option(
        (1e-5, 5e-5, 1e-4, 2e-4, 5e-4), "coupled L2 weight decays of Adam", minimum=0
    )
    learning_rate: float = option(0.01, "Adam learning rate", minimum=0, strict_min=True)
    epochs: int = option(10000, "full-batch epochs", minimum=1)
    record_every: int = option(
        100, "record losses and accuracies every this many epochs", minimum=1
    )
    seeds: int = option(5, "seeds per (d, width, weight decay) (seed, seed + 1, ...)", minimum=1)
    train_fraction: float = option(
        0.9, "share of the d^2 pairs used for training, in (0, 1)", minimum=0, strict_min=True
    )
    threshold: float = option(
        0.05, "|A_hat[j, k]| above which neuron j counts for frequency k", minimum=0
    )
    dtype: Literal["float32", "float64"] = option(
        "float32", "floating-point type of the run (float64 enables JAX's x64 only inside the run)"
    )

    def check(self, name: Callable[[str], str]) -> None:
        for i, d in enumerate(self.d):
            if d % 2 == 0:
                fail(
                    f"{name('d').strip('`')}[{i}]",
                    "an odd int >= 3 (frequencies k and d - k pair up)",
                    repr(d),
                )
        for field in ("d", "width", "weight_decay"):
            values = getattr(self, field)
            if len(set(values)) != len(values):
                fail(name(field), "distinct values", repr(list(values)))
        if not self.train_fraction < 1:
            fail(name("train_fraction"), "in (0, 1)", repr(self.train_fraction))
        for d in self.d:
            n_train = n_train_pairs(d, self.train_fraction)
            if not 1 <= n_train < d * d:
                fail(
                    name("train_fraction"),
                    f"a share leaving at least one train and one test pair of the {d * d} "
                    f"pairs at d = {d}",
                    repr(self.train_fraction),
                )
        if self.epochs % self.record_every:
            fail(
                name("epochs"),
                f"a multiple of {name('record_every')} ({self.record_every})",
                repr(self.epochs),
            )


PRESETS: dict[str, dict[str, Any]] = {
    "small": dict(
        d=(11,), width=(64,), weight_decay=(5e-5, 1e-4), epochs=300, record_every=50, seeds=2
    ),
    "paper": dict(d=(23, 71, 127), width=(256, 512)),
}


# --------------------------------------------------------------------------- training


def n_train_pairs(d: int, train_fraction: float) -> int:
    """How many of the d^2 pairs are training pairs."""
    return int(round(train_fraction * d * d))


def split(d: int, seed: int, train_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The random train/test split of `all_pairs(d)` for `seed`: `(train_idx, test_idx)`."""
    perm = np.asarray(
        jax.random.permutation(jax.random.fold_in(jax.random.PRNGKey(seed), 1), d * d)
    )
    n = n_train_pairs(d, train_fraction)
    return np.sort(perm[:n]), np.sort(perm[n:])


def runs_of(settings: Settings) -> list[tuple[int, float]]:
    """The (seed, weight decay) of every run of one (d, width), in vmapped order."""
    seeds = range(settings.seed, settings.seed + settings.seeds)
    return [(s, float(wd)) for s in seeds for wd in settings.weight_decay]


def grid_outputs(params: dict) -> jax.Array:
    """Outputs on all d^2 pairs, `(d, d^2)` (column `a d + b` is `o(a, b)`, `all_pairs` order).

    The same function as `apply_fn(params, all_pairs(d)).T`, computed on the (a, b) grid:
    `h[j, a, b] = W_a[j, a] + W_b[j, b]` is a broadcast, so neither the forward pass nor the
    gradient gathers or scatters (the backward of a gather is a serial scatter-add on the CPU,
    which made training three times slower); train and test pairs are masks on the grid.
    """
    width, d = params["W_a"].shape
    h = params["W_a"][:, :, None] + params["W_b"][:, None, :]  # (width, d, d)
    return params["W_c"] @ (h * h).reshape(width, d * d)


def grid_loss_accuracy(out: jax.Array, mask: jax.Array, d: int) -> tuple[jax.Array, jax.Array]:
    """Projected MSE and accuracy of `grid_outputs` `(d, d^2)` over the pairs where `mask`
    `(d^2,)` is 1: `projected_mse` and `accuracy` of those pairs' outputs."""
    pairs = modular.all_pairs(d)
    label = (pairs[:, 0] + pairs[:, 1]) % d  # (d^2,)
    target = (jnp.arange(d)[:, None] == label[None, :]).astype(out.dtype)  # (d, d^2)
    r = out - jnp.mean(out, axis=0, keepdims=True) - (target - 1.0 / d)
    n = jnp.sum(mask)
    loss = jnp.sum(jnp.sum(r * r, axis=0) * mask) / n
    acc = jnp.sum((jnp.argmax(out, axis=0) == label) * mask) / n
    return loss, acc


class GroupInputs(NamedTuple):
    """What one (d, width) group's vmapped run starts from (R runs, `runs_of` order).

    Attributes:
      runs: `[(seed, weight_decay)]`, R of them.
      params: `quadratic_net` parameters stacked on a leading `(R,)` axis.
      train_mask, test_mask: `(R, d^2)`, 1 on run r's train (test) pairs of `all_pairs(d)`.
      weight_decay: `(R,)`.
    """

    runs: list[tuple[int, float]]
    params: dict
    train_mask: jax.Array
    test_mask: jax.Array
    weight_decay: jax.Array


def group_inputs(settings: Settings, d: int, width: int) -> GroupInputs:
    """Run r initializes from `PRNGKey(seed)` (`quadratic_net`'s init, drawn in float32 and
    cast to `settings.dtype`) and splits the pairs with `split(d, seed, ...)`."""
    dtype = jnp.dtype(settings.dtype)
    init_fn, _ = modular.quadratic_net(d, width)
    runs = runs_of(settings)
    splits = {s: split(d, s, settings.train_fraction) for s in {s for s, _ in runs}}
    masks = np.zeros((2, len(runs), d * d))
    for r, (s, _) in enumerate(runs):
        masks[0, r, splits[s][0]] = 1.0
        masks[1, r, splits[s][1]] = 1.0
    # drawn in float32 whatever the run's dtype, so that a float64 run is the same run in
    # higher precision (jax.random draws other numbers for another dtype)
    params0 = jax.tree_util.tree_map(
        lambda *x: jnp.stack(x).astype(dtype),
        *[init_fn(jax.random.PRNGKey(s), jnp.float32) for s, _ in runs],
    )
    wds = jnp.asarray([wd for _, wd in runs], dtype)
    return GroupInputs(
        runs, params0, jnp.asarray(masks[0], dtype), jnp.asarray(masks[1], dtype), wds
    )


@functools.lru_cache(maxsize=8)  # one compilation per (d, schedule) and shape, reused
def trainer(d: int, learning_rate: float, epochs: int, record_every: int) -> Callable:
    """The jitted, vmapped training of R runs: `(params, train_mask, test_mask, weight_decay)`
    (as in `GroupInputs`) -> `(final params (R, ...), history (R, T, 4))`, T = epochs /
    record_every + 1, history columns in `HISTORY` order.

    Adam with coupled decay is `modular.optimizer(lr, 0)` applied to `grad + weight_decay *
    params`, which is `modular.optimizer(lr, weight_decay)` with the decay as a traced
    (vmapped) value. Losses are computed on the pair grid (`grid_outputs`) with the train and
    test pairs as masks; the history is recorded every `record_every` epochs.
    """
    opt = modular.optimizer(learning_rate, 0.0)
    chunks = epochs // record_every

    def one_run(params, tr, te, wd):
        def train_loss(q):
            return grid_loss_accuracy(grid_outputs(q), tr, d)[0]

        def step(carry, _):
            params, state = carry
            grads = jax.grad(train_loss)(params)
            grads = jax.tree_util.tree_map(lambda g, q: g + wd * q, grads, params)
            updates, state = opt.update(grads, state, params)
            params = jax.tree_util.tree_map(lambda q, u: q + u, params, updates)
            return (params, state), None

        def record(params):
            out = grid_outputs(params)  # one forward pass for both splits
            (l_tr, a_tr), (l_te, a_te) = (grid_loss_accuracy(out, m, d) for m in (tr, te))
            return jnp.stack([l_tr, l_te, a_tr, a_te])

        def chunk(carry, _):
            carry, _ = jax.lax.scan(step, carry, None, length=record_every)
            return carry, record(carry[0])

        start = record(params)
        (params, _), hist = jax.lax.scan(chunk, (params, opt.init(params)), None, length=chunks)
        return params, jnp.concatenate([start[None], hist])  # (T, 4)

    return jax.jit(jax.vmap(one_run))


def train_group(settings: Settings, d: int, width: int) -> dict[str, Any]:
    """Trains every (seed, weight decay) of one (d, width) as one vmapped, jitted scan
    (`group_inputs`, then `trainer`).

    Returns:
      `runs` [(seed, weight_decay)], `params` (dict of `(R, ...)` arrays, the final weights),
      `epochs` `(T,)`, and `(R, T)` arrays under the names of `HISTORY`.
    """
    g = group_inputs(settings, d, width)
    train = trainer(d, settings.learning_rate, settings.epochs, settings.record_every)
    final, hist = train(g.params, g.train_mask, g.test_mask, g.weight_decay)
    hist = np.asarray(hist, np.float64)
    out = dict(
        runs=g.runs,
        params=final,
        epochs=np.arange(settings.epochs // settings.record_every + 1) * settings.record_every,
    )
    for i, key in enumerate(HISTORY):
        out[key] = hist[:, :, i]
    return out


# --------------------------------------------------------------------------- analysis


def run_params(params: dict, r: int) -> dict:
    """Run r's parameters out of the stacked `(R, ...)` dict."""
    return {k: v[r] for k, v in params.items()}


def analyse_run(params: dict, threshold: float) -> dict[str, Any]:
    """Orders (k = 1..K), neurons assigned per k, and the factorization of orders 4 and 6."""
    fo = modular.frequency_orders(params, threshold=threshold)
    facs = modular.factorize(params, tolerance=TOLERANCE, threshold=threshold)
    fac = {}
    for kind in ("2x2", "2x3"):
        mine = [f for f in facs if f.kind == kind]
        types: dict[str, int] = {}
        for f in mine:
            if f.factorable:
                t = "*".join(map(str, f.types))
                types[t] = types.get(t, 0) + 1
        fac[kind] = dict(
            frequencies=len(mine), factorable=sum(bool(f.factorable) for f in mine), types=types
        )
    return dict(
        orders=np.asarray(fo.orders).tolist(),
        assigned=np.asarray(fo.assigned).tolist(),
        factorization=fac,
    )


def fourier_magnitudes(params: dict) -> dict[str, list]:
    """`|A|`, `|B|`, `|C|` at frequencies 0..K, `(width, K + 1)` each, as lists."""
    d = params["W_a"].shape[1]
    k_max = (d - 1) // 2
    return {
        name: np.abs(np.asarray(x)[:, : k_max + 1]).tolist()
        for name, x in zip(("A", "B", "C"), modular.fourier_params(params))
    }


def run_point(settings: Settings, d: int, width: int) -> dict[str, Any]:
    """Trains and analyses one (d, width) group; JSON-ready."""
    t0 = time.perf_counter()
    g = train_group(settings, d, width)
    train_seconds = time.perf_counter() - t0
    params = jax.tree_util.tree_map(lambda x: np.asarray(x), g["params"])
    runs = []
    for r, (seed, wd) in enumerate(g["runs"]):
        p = run_params(params, r)
        # a diverged run (NaN/Inf anywhere in its weights or history) is kept and flagged;
        # its non-finite numbers are stored as null by `jaxdyn.sweep`
        finite = bool(
            np.all(np.isfinite([g[k][r] for k in HISTORY]))
            and all(np.all(np.isfinite(v)) for v in p.values())
        )
        runs.append(
            dict(
                seed=seed,
                weight_decay=wd,
                finite=finite,
                **analyse_run(p, settings.threshold),
                **{f"final_{k}": float(g[k][r, -1]) for k in HISTORY},
                history={k: g[k][r].tolist() for k in HISTORY},
            )
        )
    # one run's Fourier magnitudes for the figure: the first seed, at 5e-5 if swept
    wds = [wd for _, wd in g["runs"]]
    pick = wds.index(5e-5) if 5e-5 in wds else 0
    example = dict(
        seed=g["runs"][pick][0],
        weight_decay=g["runs"][pick][1],
        assignment=np.asarray(
            modular.frequency_orders(
                run_params(params, pick), threshold=settings.threshold
            ).assignment
        ).tolist(),
        **fourier_magnitudes(run_params(params, pick)),
    )
    return dict(
        epochs=g["epochs"].tolist(),
        runs=runs,
        example=example,
        train_seconds=train_seconds,
        analysis_seconds=time.perf_counter() - t0 - train_seconds,
    )


def summarize(points: Sequence[dict[str, Any]], weight_decays: Sequence[float]) -> list[dict]:
    """One row per (d, width, weight decay): orders histogram, shares, factorization, accuracy."""
    rows = []
    for p in points:
        d = int(p["d"])
        for wd in weight_decays:
            mine = [r for r in p["runs"] if r["weight_decay"] == float(wd)]
            orders = np.array([o for r in mine for o in r["orders"]], int)
            counts = np.bincount(orders, minlength=7)
            fac = {}
            for kind in ("2x2", "2x3"):
                n = sum(r["factorization"][kind]["frequencies"] for r in mine)
                ok = sum(r["factorization"][kind]["factorable"] for r in mine)
                types: dict[str, int] = {}
                for r in mine:
                    for t, c in r["factorization"][kind]["types"].items():
                        types[t] = types.get(t, 0) + c
                fac[kind] = dict(
                    frequencies=n, factorable=ok, fraction=ok / n if n else None, types=types
                )
            n_all = fac["2x2"]["frequencies"] + fac["2x3"]["frequencies"]
            ok_all = fac["2x2"]["factorable"] + fac["2x3"]["factorable"]
            # None: a diverged run's non-finite value as stored in JSON; NaN here
            test_acc = np.array([r["final_test_accuracy"] for r in mine], dtype=float)
            train_acc = np.array([r["final_train_accuracy"] for r in mine], dtype=float)
            rows.append(
                dict(
                    d=d,
                    width=int(p["width"]),
                    weight_decay=float(wd),
                    runs=len(mine),
                    frequencies=int(orders.size),
                    order_histogram={str(o): int(c) for o, c in enumerate(counts) if c},
                    fraction_order_4_or_6=float(np.mean((orders == 4) | (orders == 6))),
                    fraction_order_4=float(np.mean(orders == 4)),
                    fraction_order_6=float(np.mean(orders == 6)),
                    factorization=fac,
                    factorization_fraction=ok_all / n_all if n_all else None,
                    test_accuracy_mean=float(test_acc.mean()),
                    test_accuracy_min=float(test_acc.min()),
                    train_accuracy_mean=float(train_acc.mean()),
                    diverged_runs=sum(not r["finite"] for r in mine),
                )
            )
    return rows


def run(
    settings: Settings,
    out: str | os.PathLike,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Runs the sweep over (d, width) (resuming from `out/points`), writes figures and
    `results.json` (last: its presence means done). Float64 runs enable x64 inside only."""
    validate(settings)
    x64 = precision(settings.dtype)
    with x64:
        t0 = time.perf_counter()
        stored = settings_dict(settings)
        points = sweep.sweep(
            lambda d, width: run_point(settings, d, width),
            {"d": list(settings.d), "width": list(settings.width)},
            out,
            settings=stored,
            required=("runs", "example", "epochs"),
            progress=progress,
            name="--out",
        )
        rows = summarize(points, settings.weight_decay)
        res = dict(
            experiment=NAME,
            settings=stored,
            environment=results.environment(),
            wall_seconds=time.perf_counter() - t0,
            train_seconds=sum(float(p["train_seconds"]) for p in points),
            paper_factorization_fraction=0.95,
            per_setting=rows,
            runs=[
                dict(
                    d=int(p["d"]),
                    width=int(p["width"]),
                    **{k: r[k] for k in r if k != "history"},
                )
                for p in points
                for r in p["runs"]
            ],
        )
    # imported here: matplotlib is not needed to list or validate experiments
    from jaxdyn.experiments import modular_addition_plots

    return finish(out, res, points, modular_addition_plots.save_figures)


def summary_lines(res: dict[str, Any]) -> Sequence[str]:
    """Human-readable summary printed by the CLI."""
    lines = [
        f"{'d':>4} {'width':>6} {'decay':>8} {'test acc':>9} {'order 4|6':>10} "
        f"{'2x2 ok':>8} {'2x3 ok':>8} {'factor':>7}"
    ]

    def frac(f):
        return f"{f['factorable']}/{f['frequencies']}"

    for row in res["per_setting"]:
        ff = row["factorization_fraction"]
        lines.append(
            f"{row['d']:>4} {row['width']:>6} {row['weight_decay']:>8.0e} "
            f"{row['test_accuracy_mean']:>9.3f} {row['fraction_order_4_or_6']:>10.2f} "
            f"{frac(row['factorization']['2x2']):>8} {frac(row['factorization']['2x3']):>8} "
            f"{'-' if ff is None else f'{ff:.2f}':>7}"
        )
    lines.append("paper: ~95% of order-4/6 frequencies factor (width 512, decay 5e-5)")
    return lines
