"""Condensed directions of a two-layer network: cosine similarity, clusters, merging.

A neuron's direction is its normalized input weight `u_k = (w_k, b_k) / ||(w_k, b_k)||` and
its amplitude `|a_k| ||(w_k, b_k)||` (how much it contributes to the output). `directions`
groups neurons whose directions agree (cosine >= threshold) greedily, largest amplitude
first; `merge` replaces each group by one neuron. For a positively homogeneous activation
(ReLU) `a_k sigma(theta_k . x~) = a_k ||theta_k|| sigma(u_k . x~)`, so a group of neurons on
one direction u is exactly one neuron `sign(s) sqrt|s| sigma(sqrt|s| u . x~)` with
`s = sum_k a_k ||theta_k||`; for other activations only exact duplicates merge exactly (a
weighted mean of theta, a summed). `directions` and `merge` run on the host (NumPy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxdyn._checks import check_array, check_bool, check_float, describe, fail, is_concrete

Array = Any
Params = dict


def _net(name: str, params: Any) -> tuple[int, int]:
    from jaxdyn.analysis.condensation import check_net_params

    return check_net_params(name, params)


def _theta(params: Params):
    return jnp.concatenate([params["w"], params["b"][:, None]], axis=1)  # (m, d + 1)


class CosineSimilarity(NamedTuple):
    """`similarity`: `(m, m)` cosine similarity of the neurons' directions, rows and columns
    in `order` (`(m,)`, neurons sorted by their entry of the leading eigenvector of the
    similarity matrix, so neurons of one direction sit in one block)."""

    similarity: Array
    order: Array


def cosine_similarity(params: Params) -> CosineSimilarity:
    """Cosine similarity of the normalized `(w_k, b_k)`, ordered by the leading eigenvector.

    Neurons with `(w, b) = 0` have no direction: their rows are 0. Jit-able.
    """
    _net("params", params)
    theta = _theta(params)
    norm = jnp.linalg.norm(theta, axis=1, keepdims=True)
    u = theta / jnp.where(norm > 0, norm, 1.0)
    sim = u @ u.T
    _, vecs = jnp.linalg.eigh(sim)
    order = jnp.argsort(vecs[:, -1], stable=True)
    return CosineSimilarity(sim[order][:, order], order)


class Directions(NamedTuple):
    """Clusters of neurons on one direction. K clusters, sorted by amplitude share.

    Attributes:
      count: K, the number of condensed directions.
      labels: `(m,)` cluster of each neuron (0 = the largest share).
      directions: `(K, d + 1)` amplitude-weighted mean direction of each cluster (unit).
      weights: `(K,)` each cluster's share of the total amplitude `sum |a| ||(w, b)||`.
      n_major: the fewest clusters holding at least `mass` of the amplitude.
    """

    count: int
    labels: np.ndarray
    directions: np.ndarray
    weights: np.ndarray
    n_major: int


def _host(name: str, params: Params) -> dict[str, np.ndarray]:
    _net(name, params)
    if not is_concrete(params):
        fail(name, "concrete arrays (clusters are found on the host, outside jit)", "traced values")
    return {k: np.asarray(v, np.float64) for k, v in params.items()}


def _cluster(theta: np.ndarray, amp: np.ndarray, threshold: float):
    norm = np.linalg.norm(theta, axis=1)
    u = theta / np.where(norm > 0, norm, 1.0)[:, None]
    labels = np.full(theta.shape[0], -1)
    leaders = []
    # largest amplitude first: a cluster is centred on its strongest neuron
    for i in np.argsort(-amp, kind="stable"):
        if labels[i] >= 0:
            continue
        free = labels < 0
        members = free & (u @ u[i] >= threshold)
        members[i] = True
        labels[members] = len(leaders)
        leaders.append(i)
    k = len(leaders)
    share = np.bincount(labels, weights=amp, minlength=k)
    centers = np.zeros((k, theta.shape[1]))
    np.add.at(centers, labels, amp[:, None] * u)
    # a cluster of zero amplitude keeps its leader's direction
    for c in range(k):
        if not np.any(centers[c]):
            centers[c] = u[leaders[c]]
    centers /= np.maximum(np.linalg.norm(centers, axis=1, keepdims=True), 1e-300)
    order = np.argsort(-share, kind="stable")
    relabel = np.empty(k, int)
    relabel[order] = np.arange(k)
    return relabel[labels], centers[order], share[order], u, norm


def directions(params: Params, *, threshold: float, mass: float = 0.9) -> Directions:
    """The condensed directions of a network: clusters of neurons whose directions agree.

    Args:
      params: `two_layer` parameters.
      threshold: cosine similarity in (-1, 1] above which two directions agree (e.g. 0.99).
      mass: share of the amplitude the `n_major` clusters must hold, in (0, 1].

    Returns:
      `Directions`. Host-side (NumPy); not traceable.
    """
    p = _host("params", params)
    threshold = check_float("threshold", threshold, minimum=-1, maximum=1, strict_min=True)
    mass = check_float("mass", mass, minimum=0, maximum=1, strict_min=True)
    theta = np.concatenate([p["w"], p["b"][:, None]], axis=1)
    amp = np.abs(p["a"]) * np.linalg.norm(theta, axis=1)
    labels, centers, share, _, _ = _cluster(theta, amp, threshold)
    total = share.sum()
    weights = share / total if total > 0 else np.full(share.shape, 1.0 / share.size)
    n_major = int(min(np.searchsorted(np.cumsum(weights), mass - 1e-12) + 1, weights.size))
    return Directions(int(centers.shape[0]), labels, centers, weights, n_major)


class Merged(NamedTuple):
    """`merge`'s result: `params` of the narrower network, its `width` (the effective number
    of neurons), `labels` `(m,)` (the merged neuron each original neuron went to, -1 for
    groups that cancel out), and, when `apply_fn` and `x` were given, the largest `error`
    `max |f_merged(x) - f(x)|` and `relative_error` (that over `max |f(x)|`), else None."""

    params: Params
    width: int
    labels: np.ndarray
    error: float | None
    relative_error: float | None


def merge(
    params: Params,
    *,
    threshold: float,
    apply_fn: Callable | None = None,
    x: Array | None = None,
    homogeneous: bool | None = None,
    prune: float = 0.0,
) -> Merged:
    """The equivalent narrower network: each cluster of `directions(params, threshold=...)`
    becomes one neuron.

    Args:
      params: `two_layer` parameters.
      threshold: as in `directions`.
      apply_fn, x: the model (any width; `two_layer`'s apply_fn) and `(n, d)` inputs on which
        to report the output error of the merged network; optional.
      homogeneous: merge by positive homogeneity (exact for ReLU on one direction); default:
        True unless `apply_fn.activation` names another activation.
      prune: also drop clusters holding less than this share of the total amplitude (0: keep
        all; the reported error then includes what they contributed).

    Returns:
      `Merged`. Clusters whose contributions cancel exactly are dropped (one neuron is kept
      if all do). Host-side.
    """
    p = _host("params", params)
    threshold = check_float("threshold", threshold, minimum=-1, maximum=1, strict_min=True)
    if (apply_fn is None) != (x is None):
        fail("apply_fn and x", "given together (the error is measured on x)", "only one of them")
    if apply_fn is not None and not callable(apply_fn):
        fail("apply_fn", "a callable apply_fn(params, x)", describe(apply_fn), TypeError)
    if homogeneous is None:
        homogeneous = getattr(apply_fn, "activation", "relu") == "relu"
    homogeneous = check_bool("homogeneous", homogeneous)
    prune = check_float("prune", prune, minimum=0, maximum=1)
    theta = np.concatenate([p["w"], p["b"][:, None]], axis=1)
    amp = np.abs(p["a"]) * np.linalg.norm(theta, axis=1)
    labels, centers, _, u, norm = _cluster(theta, amp, threshold)
    k = centers.shape[0]
    if homogeneous:
        signed = np.bincount(labels, weights=p["a"] * norm, minlength=k)
        scale = np.bincount(labels, weights=np.abs(p["a"]) * norm, minlength=k)
        root = np.sqrt(np.abs(signed))
        new_theta = centers * root[:, None]
        new_a = np.sign(signed) * root
    else:
        weight = np.abs(p["a"])
        total = np.bincount(labels, weights=weight, minlength=k)
        new_theta = np.zeros((k, theta.shape[1]))
        np.add.at(new_theta, labels, weight[:, None] * theta)
        new_theta /= np.where(total > 0, total, 1.0)[:, None]
        new_a = np.bincount(labels, weights=p["a"], minlength=k)
        signed, scale = new_a, np.bincount(labels, weights=np.abs(p["a"]), minlength=k)
    keep = np.abs(signed) > 1e-12 * np.maximum(scale, 1e-300)
    share = scale / max(float(scale.sum()), 1e-300)
    keep &= share >= prune
    if not keep.any():
        keep[0] = True
    index = np.cumsum(keep) - 1
    out_labels = np.where(keep[labels], index[labels], -1)
    dtype = np.asarray(params["a"]).dtype
    merged = {
        "a": jnp.asarray(new_a[keep], dtype),
        "w": jnp.asarray(new_theta[keep, :-1], dtype),
        "b": jnp.asarray(new_theta[keep, -1], dtype),
    }
    error = relative = None
    if apply_fn is not None:
        check_array("x", x, ndim=2, kinds="f")
        f0 = np.asarray(apply_fn(params, x), np.float64)
        f1 = np.asarray(apply_fn(merged, x), np.float64)
        error = float(np.max(np.abs(f1 - f0)))
        top = float(np.max(np.abs(f0)))
        relative = error / top if top > 0 else error
    return Merged(merged, int(keep.sum()), out_labels, error, relative)
