"""Factoring one frequency's neurons of a quadratic network into semiring factors.

The host-side half of `jaxdyn.analysis.modular.factorize` (numpy, not jit): given the
Fourier coefficients `F = (alpha, beta, gamma)` `(3, q)` of the q = 4 or 6 neurons assigned to
a frequency, search every neuron order and `(alpha, beta)` sign flip for the arrangement as a
2 x (q/2) grid `factor2 (x) factor_other`, score it by the authors' ratio-spread error
(`cogo/factorize_sol.py` in facebookresearch/luckmatters), and name each factor by the sum
potentials (monomials) it kills. Argument checks live in the public wrapper.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np

__all__ = ["Factorization", "factorize_blocks"]

# The monomials of one frequency's sum potentials, as functions of F = (alpha, beta, gamma)
# rows; "R_n" is the (a, b)-constant term a^ac + b^bc, the one that needs only the sum.
_MONOMIALS = {
    "abc": lambda a, b, c: a * b * c,
    "^abc": lambda a, b, c: np.conj(a) * b * c,
    "a^bc": lambda a, b, c: a * np.conj(b) * c,
    "^a^bc": lambda a, b, c: np.conj(a) * np.conj(b) * c,
    "aac": lambda a, b, c: a * a * c,
    "bbc": lambda a, b, c: b * b * c,
    "^a^ac": lambda a, b, c: np.conj(a) ** 2 * c,
    "^b^bc": lambda a, b, c: np.conj(b) ** 2 * c,
    "a^ac": lambda a, b, c: abs(a) ** 2 * c,
    "b^bc": lambda a, b, c: abs(b) ** 2 * c,
}
_KILLS = {  # factor name -> the monomials it must kill (checked in this order)
    "nu=i": ("^abc", "a^bc", "aac", "bbc", "^a^ac", "^b^bc"),
    "nu": ("aac", "bbc"),
    "xi": ("^a^bc",),
    "syn": ("^abc", "a^bc", "^a^bc", "^a^ac", "^b^bc", "a^ac", "b^bc"),
    # what an order-3 partner of z_{nu=i} must kill (the authors' "order-3-syn-ab")
    "syn-ab": ("^a^bc", "a^ac", "b^bc"),
}


def _kills(f: np.ndarray, tolerance: float) -> set[str]:
    """Monomials whose sum over the columns of f is below `tolerance` x the sum of |terms|."""
    out = set()
    for name, mono in _MONOMIALS.items():
        t = mono(f[0], f[1], f[2])
        if abs(np.sum(t)) <= tolerance * max(np.sum(np.abs(t)), 1e-300):
            out.add(name)
    return out


def _factor_type(f: np.ndarray, tolerance: float, kills: set[str] | None = None) -> str:
    kills = _kills(f, tolerance) if kills is None else kills
    if "abc" in kills:
        return "degenerate"
    # xi before nu: z_xi at xi = exp(i pi / 4) is also a z_nu; the piece of an order-4
    # solution is the one that kills ^a^bc
    names = ("nu=i", "xi", "nu") if f.shape[1] == 2 else ("syn", "syn-ab")
    return next((n for n in names if set(_KILLS[n]) <= kills), "other")


class Factorization(NamedTuple):
    """How one frequency's neurons factor (see `factorize`).

    Attributes:
      k: the frequency.
      neurons: `(q,)` indices of the neurons assigned to k, in factor order: neuron
        `neurons[i * (q // 2) + j]` is the product of column i of `factor2` and column j of
        `factor_other`.
      error: the authors' error, `||ratio - mean ratio||` over the 3 rows (smallest over
        neuron orders and signs).
      factorable: `error <= tolerance * sqrt(3 q)`. Where several arrangements are
        acceptable, the one whose factors have known types and kill the most monomials.
      kind: "2x2" (q = 4) or "2x3" (q = 6).
      factor2: `(3, 2)` complex, the order-2 factor (first column ones).
      factor_other: `(3, q // 2)` complex, the other factor: the first grid row itself, so
        `factor2[:, i] * factor_other[:, j]` is neuron `neurons[i * (q // 2) + j]`'s
        `(alpha, beta, gamma)` up to the sign of (alpha, beta) (and the fitting error).
      types: the factors' types by the monomials they kill: "nu=i", "xi", "nu" (order 2),
        "syn", "syn-ab" (order 3; "syn-ab" kills ^a^bc, a^ac, b^bc, what a partner of
        z_{nu=i} needs), "other", "degenerate" (abc = 0); for "2x2" sorted.
    """

    k: int
    neurons: np.ndarray
    error: float
    factorable: bool
    kind: str
    factor2: np.ndarray
    factor_other: np.ndarray
    types: tuple[str, str]


def _arrangements(f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every neuron order and (alpha, beta) sign pattern of the 2 x m grid, best first.

    Returns the errors `(N,)`, the orders `(N, q)` and the grids `(N, 3, 2, m)`, N = q! 2^(q-1).
    """
    q = f.shape[1]
    m = q // 2
    perms = np.array(list(itertools.permutations(range(q))))  # (P, q)
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=q - 1)))  # (S, q - 1)
    signs = np.concatenate([np.ones((len(signs), 1)), signs], axis=1)  # a global flip
    g = f[:, perms]  # (3, P, q)
    row_sign = np.stack([signs, signs, np.ones_like(signs)])  # (3, S, q)
    g = (g[:, :, None, :] * row_sign[:, None, :, :]).reshape(3, -1, 2, m)  # (3, P*S, 2, m)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = g[:, :, 1, :] / g[:, :, 0, :]  # (3, N, m)
        err = np.sqrt(np.sum(np.abs(ratio - ratio.mean(-1, keepdims=True)) ** 2, axis=(0, 2)))
    err = np.where(np.isfinite(err), err, np.inf)
    order = np.argsort(err, kind="stable")
    return err[order], np.repeat(perms, len(signs), axis=0)[order], g.transpose(1, 0, 2, 3)[order]


def _factors(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.mean(grid[:, 1, :] / grid[:, 0, :], axis=1)
    return np.stack([np.ones(3, dtype=complex), ratio], axis=1), grid[:, 0, :]


def factorize_blocks(
    d: int,
    assignment: np.ndarray,
    fourier: tuple[np.ndarray, np.ndarray, np.ndarray],
    tolerance: float,
) -> list[Factorization]:
    """`factorize`'s search on checked inputs: `assignment (width,)` each neuron's frequency,
    `fourier` the `(A, B, C)` of `fourier_params` as complex numpy arrays."""
    a_hat, b_hat, c_hat = fourier
    out = []
    for k in range(1, (d - 1) // 2 + 1):
        idx = np.flatnonzero(assignment == k)
        q = len(idx)
        if q not in (4, 6):
            continue
        f = np.stack([a_hat[idx, k], b_hat[idx, k], c_hat[idx, k]])
        errs, perms, grids = _arrangements(f)
        accept = tolerance * math.sqrt(3 * q)
        # A product factors in several exact ways (z_{nu=i} (x) z_syn also as z_{nu=i w} (x)
        # z_syn, or z_{nu=i} (x) a sign-mixed triple): among the acceptable arrangements,
        # report the one whose factors are of known types and kill the most monomials.
        pick, best = 0, (-1, 0)
        for i in range(min(int(np.sum(errs <= accept)), 1024)):
            pair = _factors(grids[i])
            kills = [_kills(x, tolerance) for x in pair]
            t = [_factor_type(x, tolerance, ks) for x, ks in zip(pair, kills)]
            known = "other" not in t and "degenerate" not in t
            score = (int(known), sum(len(ks) for ks in kills))
            if score > best:
                pick, best = i, score
        f2, fo = _factors(grids[pick])
        types = (_factor_type(f2, tolerance), _factor_type(fo, tolerance))
        if q == 4:
            types = tuple(sorted(types))
        out.append(
            Factorization(
                k,
                idx[perms[pick]],
                float(errs[pick]),
                bool(errs[pick] <= accept),
                "2x2" if q == 4 else "2x3",
                f2,
                fo,
                types,
            )
        )
    return out
