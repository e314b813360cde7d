"""Experiment `frequency-image`: the frequency principle on a photograph (2-D regression).

Xu et al. (2019/2020) fit a network to a gray image as a function of pixel position and
show the outline arriving before the details. Here: scikit-learn's bundled photograph
(`sklearn.datasets.load_sample_image`, offline), gray values (mean of RGB, in [0, 1]) block-
averaged down to `height x width`, pixel positions scaled to [-1, 1]^2; a ReLU MLP trained by
full-batch Adam on the MSE (`train.trajectory`). Recorded: snapshots of the network's image,
and `radial_dft_error` (2-D DFT error in `bins` rings of radial frequency) over training, with
the step after which each ring stays below `threshold` (`convergence_steps`). One resumable
point per seed.
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

from jaxdyn import results, sweep, train
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

NAME = "frequency-image"
SUMMARY = "F-Principle on a photograph: pixel position -> gray value, 2-D DFT error by ring"

IMAGES = ("china.jpg", "flower.jpg")


@dataclasses.dataclass(frozen=True)
class Settings(ExperimentSettings):
    """Settings of one run; every field is a command-line option."""

    image: Literal["china.jpg", "flower.jpg"] = option("china.jpg", "sklearn sample image")
    height: int = option(32, "rows after block-averaging", minimum=4)
    width: int = option(48, "columns after block-averaging", minimum=4)
    hidden: tuple[int, ...] = option((256, 256, 128), "hidden widths of the ReLU MLP", minimum=1)
    learning_rate: float = option(1e-3, "Adam learning rate", minimum=0, strict_min=True)
    steps: int = option(4000, "full-batch Adam steps", minimum=1)
    record_every: int = option(100, "record every this many steps", minimum=1)
    bins: int = option(6, "rings of radial frequency", minimum=1)
    threshold: float = option(0.5, "relative ring error to stay below", minimum=0,
                              strict_min=True)  # fmt: skip
    snapshots: int = option(4, "network images shown in the figure", minimum=1)
    seeds: int = option(1, "seeds (seed, seed + 1, ...), one point each", minimum=1)
    dtype: Literal["float32", "float64"] = option("float32", "floating-point type of the run")

    def check(self, name: Callable[[str], str]) -> None:
        if self.steps % self.record_every:
            fail(name("steps"), f"a multiple of {name('record_every')} ({self.record_every})",
                 repr(self.steps))  # fmt: skip
        if self.height > 427 or self.width > 640:
            fail(name("height"), "at most the photograph's 427 x 640 pixels",
                 f"{self.height} x {self.width}")  # fmt: skip


PRESETS: dict[str, dict[str, Any]] = {
    "small": dict(height=12, width=16, hidden=(32, 32), steps=100, record_every=50, bins=3),
    "paper": dict(
        height=107,
        width=160,
        hidden=(500, 400, 300, 200, 100),
        steps=20000,
        record_every=500,
        bins=10,
    ),  # fmt: skip
}


def gray_image(name: str, height: int, width: int) -> np.ndarray:
    """The sample photograph in gray (mean of RGB, scaled to [0, 1]), block-averaged to
    `(height, width)` (its centre crop to a multiple of the block size)."""
    from sklearn.datasets import load_sample_image

    img = load_sample_image(name).astype(np.float64).mean(axis=2) / 255.0
    bh, bw = img.shape[0] // height, img.shape[1] // width
    top, left = (img.shape[0] - bh * height) // 2, (img.shape[1] - bw * width) // 2
    crop = img[top : top + bh * height, left : left + bw * width]
    return crop.reshape(height, bh, width, bw).mean(axis=(1, 3))


def positions(height: int, width: int) -> np.ndarray:
    """`(height * width, 2)` pixel positions (row, column) scaled to [-1, 1], row-major."""
    rows, cols = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
    return np.stack([rows.ravel(), cols.ravel()], axis=1)


def run_seed(settings: Settings, seed: int) -> dict[str, Any]:
    dtype = jnp.dtype(settings.dtype)
    h, w = settings.height, settings.width
    img = gray_image(settings.image, h, w)
    x = jnp.asarray(positions(h, w), dtype)
    y = jnp.asarray(img.reshape(-1, 1), dtype)
    model = frequency.mlp((2, *settings.hidden, 1), "relu")
    traj = train.trajectory(
        model.apply,
        model.init(jax.random.PRNGKey(seed), dtype),
        x,
        y,
        optimizer=optax.adam(settings.learning_rate),
        steps=settings.steps,
        record_every=settings.record_every,
    )
    outs = np.asarray(traj.f_train[..., 0], np.float64).reshape(-1, h, w)
    err, edges = frequency.radial_dft_error(outs, img, settings.bins)
    steps = np.asarray(traj.steps)
    conv = frequency.convergence_steps(jnp.asarray(err), jnp.asarray(steps), settings.threshold)
    pick = np.unique(np.linspace(0, len(steps) - 1, settings.snapshots + 1).round().astype(int))[1:]
    return dict(
        steps=steps.tolist(),
        loss=np.asarray(traj.loss, np.float64).tolist(),
        ring_errors=np.asarray(err, np.float64).tolist(),  # (T, bins)
        ring_edges=np.asarray(edges).tolist(),
        convergence_steps=np.asarray(conv).tolist(),
        snapshot_steps=steps[pick].tolist(),
        snapshots=outs[pick].tolist(),
        target=img.tolist(),
    )


def run(
    settings: Settings,
    out: str | os.PathLike,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Trains every seed (resuming from `out/points`), writes figures and results.json."""
    validate(settings)
    x64 = precision(settings.dtype)
    with x64:
        t0 = time.perf_counter()
        stored = settings_dict(settings)
        points = sweep.sweep(
            lambda seed: run_seed(settings, seed),
            {"seed": list(range(settings.seed, settings.seed + settings.seeds))},
            out,
            settings=stored,
            required=("ring_errors",),
            progress=progress,
            name="--out",
        )
        notes = [
            f"seed {p['seed']}: NaN/Inf loss"
            for p in points
            if not np.all(np.isfinite(np.asarray(p["loss"], float)))
        ]
        conv = np.asarray([p["convergence_steps"] for p in points], float)
        res = dict(
            experiment=NAME,
            settings=stored,
            environment=results.environment(),
            wall_seconds=time.perf_counter() - t0,
            notes=notes,
            ring_edges=points[0]["ring_edges"],
            convergence_steps=conv.astype(int).tolist(),  # (seeds, bins), -1: never
            low_to_high=[bool(_ordered(c)) for c in conv],
            final_ring_errors=[p["ring_errors"][-1] for p in points],
        )
    from jaxdyn.experiments import frequency_image_plots

    return finish(out, res, points, frequency_image_plots.save_figures)


def _ordered(conv: np.ndarray) -> bool:
    """Rings that converged did so in order of frequency (non-decreasing steps), and a ring
    that never converged has only never-converged rings above it."""
    c = np.where(conv < 0, np.inf, conv)
    return bool(np.all(c[1:] >= c[:-1]))  # inf >= inf holds (np.diff would give NaN)


def summary_lines(res: dict[str, Any]) -> Sequence[str]:
    """Human-readable summary printed by the CLI."""
    edges = res["ring_edges"]
    lines = [
        "rings (cycles/pixel): "
        + ", ".join(f"[{a:.2f}, {b:.2f})" for a, b in zip(edges[:-1], edges[1:]))
    ]
    for conv, ordered in zip(res["convergence_steps"], res["low_to_high"]):
        lines.append(f"convergence steps per ring: {conv} (low to high: {ordered})")
    return lines
