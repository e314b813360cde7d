"""The training loop behind `jaxdyn.analysis.emc.fits`: every (learning rate, seed) run of one
training set as one vmapped, jitted `lax.scan` over a chunk of steps.

Shapes are bucketed: the training set is padded to `n_pad` (the next power of two) and the
padding masked out, and `n` and the steps per epoch enter as traced scalars, so every n of a
bisection inside one bucket reuses one compiled chunk. Each run carries its own stop code;
the stopping rule is evaluated inside the scan at every epoch end on the whole training set
(one forward pass), and a stopped run's parameters are frozen from then on, so the host only
reads the stop codes once per chunk.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

# stop codes; -1 while a run trains. "cap" is set on the host for runs still going at the cap.
REASONS = ("fitted", "plateau", "cap", "diverged")
FITTED, PLATEAU, CAP, DIVERGED = range(4)
OPTIMIZERS = ("sgd", "gd", "adam", "adamw")


def bucket(n: int) -> int:
    """The padded size of a training set of n samples: the next power of 4 from 8 (8, 32,
    128, ...). Coarse on purpose: a compilation costs seconds on CPU, the padding (masked,
    at most 4x) only the per-epoch evaluation and shuffle."""
    size = 8
    while size < n:
        size *= 4
    return size


def transformation(
    optimizer: str, momentum: float, weight_decay: float
) -> optax.GradientTransformation:
    """The optimizer at learning rate 1: every one of them is linear in the rate (optax's
    `scale_by_learning_rate` is their last step), so run r applies `lr[r] * updates`, which is
    exactly `optax.<optimizer>(lr[r], ...)` with the rate a traced, vmapped value."""
    if optimizer in ("sgd", "gd"):
        return optax.sgd(1.0, momentum=momentum or None)
    if optimizer == "adam":
        return optax.adam(1.0)
    return optax.adamw(1.0, weight_decay=weight_decay)


def cross_entropy(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
    """Weighted mean softmax cross-entropy: logits (m, k), labels (m,) ints, weights (m,)."""
    lse = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    return jnp.sum(weights * (lse - picked)) / jnp.maximum(jnp.sum(weights), 1.0)


def evaluate(apply: Callable, params: Any, x: jax.Array, labels: jax.Array, valid: jax.Array):
    """(mean cross-entropy, number correct) over the rows where `valid` (m,) is 1."""
    logits = apply(params, x)
    correct = jnp.sum(valid * (jnp.argmax(logits, axis=-1) == labels))
    return cross_entropy(logits, labels, valid), correct


@functools.lru_cache(maxsize=128)
def chunk_fn(
    apply: Callable,
    optimizer: str,
    momentum: float,
    weight_decay: float,
    batch: int,
    n_pad: int,
    chunk: int,
) -> Callable:
    """The jitted `chunk(state, t0, x, labels, n, steps_per_epoch, max_steps, patience,
    rel_tol) -> state` running `chunk` steps of every run (state batched over runs, data and
    the stopping rule shared and traced, so changing them does not recompile)."""
    tx = transformation(optimizer, momentum, weight_decay)
    full = optimizer == "gd"

    def run_step(state, t, x, labels, n, spe, max_steps, patience, rel_tol):
        pos = t % spe
        valid_all = (jnp.arange(n_pad) < n).astype(x.dtype)
        if full:
            idx, mask = jnp.arange(n_pad), valid_all
            perm = state["perm"]
        else:
            # a fresh random order of the n real samples at each epoch start (padding last)
            def new_perm():
                u = jax.random.uniform(jax.random.fold_in(state["key"], t // spe), (n_pad,))
                order = jnp.argsort(jnp.where(jnp.arange(n_pad) < n, u, 2.0)).astype(jnp.int32)
                return jnp.concatenate([order, jnp.zeros((batch,), jnp.int32)])

            perm = jax.lax.cond(pos == 0, new_perm, lambda: state["perm"])
            idx = jax.lax.dynamic_slice(perm, (pos * batch,), (batch,))
            mask = (pos * batch + jnp.arange(batch) < n).astype(x.dtype)
        params = state["params"]

        def batch_loss(p):
            return cross_entropy(apply(p, x[idx]), labels[idx], mask)

        grads = jax.grad(batch_loss)(params)
        updates, opt_state = tx.update(grads, state["opt"], params)
        stepped = jax.tree_util.tree_map(lambda p, u: p + state["lr"] * u, params, updates)
        active = (state["code"] < 0) & (t < max_steps)

        def keep(new, old):
            return jax.tree_util.tree_map(lambda a, b: jnp.where(active, a, b), new, old)

        params = keep(stepped, params)
        out = dict(
            state,
            params=params,
            opt=keep(opt_state, state["opt"]),
            perm=perm,
            steps=state["steps"] + active,
        )

        def epoch_end():
            loss, correct = evaluate(apply, params, x, labels, valid_all)
            improved = loss < state["best"] * (1.0 - rel_tol)
            since = jnp.where(improved, 0, state["since"] + spe)
            code = jnp.where(
                correct >= n,
                FITTED,
                jnp.where(~jnp.isfinite(loss), DIVERGED, jnp.where(since >= patience, PLATEAU, -1)),
            )
            return dict(
                best=jnp.where(active & improved, loss, state["best"]),
                since=jnp.where(active, since, state["since"]),
                code=jnp.where(active, code, state["code"]),
            )

        def no_check():
            return dict(best=state["best"], since=state["since"], code=state["code"])

        out.update(jax.lax.cond(pos == spe - 1, epoch_end, no_check))
        return out

    step = jax.vmap(run_step, in_axes=(0,) + (None,) * 8)

    @jax.jit
    def run_chunk(state, t0, x, labels, n, spe, max_steps, patience, rel_tol):
        def body(state, i):
            return step(state, t0 + i, x, labels, n, spe, max_steps, patience, rel_tol), None

        state, _ = jax.lax.scan(body, state, jnp.arange(chunk))
        return state

    return run_chunk


@functools.lru_cache(maxsize=128)
def _init_fn(
    init: Callable, optimizer: str, momentum: float, weight_decay: float, R: int, perm_len: int
) -> Callable:
    """Jitted `(seeds (S,), learning_rates (R,)) -> state` of the R x S runs, r-major (one
    compilation instead of a dozen eager ones)."""
    tx = transformation(optimizer, momentum, weight_decay)

    @jax.jit
    def make(seeds, lrs):
        keys = jax.vmap(jax.random.PRNGKey)(seeds)
        params0 = jax.vmap(lambda k: init(jax.random.fold_in(k, 0)))(keys)
        params = jax.tree_util.tree_map(lambda a: jnp.tile(a, (R,) + (1,) * (a.ndim - 1)), params0)
        S = seeds.shape[0]
        P = R * S
        dtype = lrs.dtype
        return dict(
            params=params,
            opt=jax.vmap(tx.init)(params),
            key=jnp.tile(jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys), (R, 1)),
            perm=jnp.zeros((P, perm_len), jnp.int32),
            lr=jnp.repeat(lrs, S),
            best=jnp.full((P,), jnp.inf, dtype),
            since=jnp.zeros((P,), jnp.int32),
            code=jnp.full((P,), -1, jnp.int32),
            steps=jnp.zeros((P,), jnp.int32),
        )

    return make


@functools.lru_cache(maxsize=128)
def _eval_fn(apply: Callable) -> Callable:
    return jax.jit(jax.vmap(functools.partial(evaluate, apply), in_axes=(0, None, None, None)))


def train(
    init: Callable,
    apply: Callable,
    x: np.ndarray,
    labels: np.ndarray,
    *,
    learning_rates: np.ndarray,
    seeds: tuple[int, ...],
    optimizer: str,
    momentum: float,
    weight_decay: float,
    batch_size: int,
    max_steps: int,
    patience: int,
    rel_tol: float,
    chunk_steps: int,
    n_pad: int,
    dtype: Any,
) -> dict[str, Any]:
    """Trains the R x S runs; returns numpy arrays over runs (flattened r-major) and params.

    Run (r, s) initializes from `PRNGKey(seeds[s])` (the same weights for every rate) and
    draws its minibatch orders from a key folded from it.
    """
    n = int(x.shape[0])
    R = len(learning_rates)
    xp = np.zeros((n_pad, *x.shape[1:]), dtype)
    xp[:n] = x
    yp = np.zeros((n_pad,), np.int32)
    yp[:n] = labels
    xj, yj = jnp.asarray(xp), jnp.asarray(yp)
    batch = n_pad if optimizer == "gd" else min(int(batch_size), n_pad)
    spe = 1 if optimizer == "gd" else math.ceil(n / batch)
    perm_len = n_pad if optimizer == "gd" else n_pad + batch
    state = _init_fn(init, optimizer, float(momentum), float(weight_decay), R, perm_len)(
        jnp.asarray(np.asarray(seeds, np.uint32)), jnp.asarray(learning_rates, dtype)
    )
    run_chunk = chunk_fn(
        apply, optimizer, float(momentum), float(weight_decay), batch, n_pad, int(chunk_steps)
    )
    tol = np.asarray(rel_tol, dtype)
    t0 = 0
    while t0 < max_steps:
        state = run_chunk(state, t0, xj, yj, n, spe, max_steps, patience, tol)
        t0 += chunk_steps
        if (np.asarray(state["code"]) >= 0).all():
            break
    valid = (np.arange(n_pad) < n).astype(dtype)
    loss, correct = _eval_fn(apply)(state["params"], xj, yj, valid)
    code = np.asarray(state["code"]).copy()
    correct = np.asarray(correct)
    # a run cut by the cap mid-epoch may have reached 100% since its last check: it fitted
    code[(code < 0) & (correct >= n)] = FITTED
    code[code < 0] = CAP
    return dict(
        params=state["params"],
        loss=np.asarray(loss, np.float64),
        accuracy=correct / n,
        code=code,
        steps=np.asarray(state["steps"]),
        steps_per_epoch=spe,
    )


def accuracy(apply: Callable, params: Any, x: np.ndarray, labels: np.ndarray, dtype) -> np.ndarray:
    """Accuracy of every run (params batched over runs) on (x, labels)."""
    xj = np.asarray(x, dtype)
    yj = np.asarray(labels, np.int32)
    _, correct = _eval_fn(apply)(params, xj, yj, np.ones((xj.shape[0],), dtype))
    return np.asarray(correct) / xj.shape[0]
