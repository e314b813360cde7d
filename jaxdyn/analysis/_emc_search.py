"""The EMC search of `jaxdyn.analysis.emc.search`: geometric growth until the first failure,
then bisection, with a stated rule for combining seeds and resumable fits.

Decision at one n. The oracle returns, per seed, whether each of A alternatives (e.g. the
learning rates of a grid) fitted: a `(A, S)` boolean array. Alternative a "fits n" when the
count of its fitted seeds passes the seed rule; n counts as fitted when at least one
alternative fits it (the paper tunes hyperparameters per setting); the recorded alternative
is the one with the most fitted seeds (ties: the first).

Seed rules (S seeds, c of them fitted): "half" c >= S / 2, "majority" c > S / 2, "all"
c == S, "any" c >= 1, or a float q in (0, 1]: c >= q S.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxdyn._checks import check_float, check_int, describe, fail

RULES = ("half", "majority", "all", "any")


class Trial(NamedTuple):
    """One tried n.

    Attributes:
      n: the training-set size.
      fitted: the decision (see the module docstring).
      counts: fitted seeds per alternative, `(A,)` ints.
      best: the alternative with the most fitted seeds.
      capped: some run that did not fit stopped at the step cap (so "not fitted" at this n
        is not evidence that the model cannot fit it).
      records: the oracle's records (one per seed, or one for all seeds when batched).
    """

    n: int
    fitted: bool
    counts: tuple[int, ...]
    best: int
    capped: bool
    records: tuple[dict, ...]


class SearchResult(NamedTuple):
    """Result of `search`.

    Attributes:
      emc: the largest n judged fitted with the next tried size above it not fitted (to the
        precision asked for); `n_max` when everything fitted (then a lower bound, see
        `status`); None when n_min did not fit.
      bracket: `(largest fitted n or None, smallest not-fitted n or None)`.
      status: "bracketed", "all_fit" (n_max fitted: the EMC is at least n_max) or "none_fit".
      trials: every tried n in the order tried.
      seeds: the seeds; rule: the seed rule; precision: the relative bracket width asked for.
    """

    emc: int | None
    bracket: tuple[int | None, int | None]
    status: str
    trials: tuple[Trial, ...]
    seeds: tuple[int, ...]
    rule: str | float
    precision: float

    @property
    def tried(self) -> tuple[int, ...]:
        """The tried sizes, in order."""
        return tuple(t.n for t in self.trials)

    def trial(self, n: int) -> Trial:
        """The trial at size n (KeyError if n was not tried)."""
        for t in self.trials:
            if t.n == n:
                return t
        raise KeyError(f"n = {n} was not tried; tried {sorted(self.tried)}.")

    @property
    def capped(self) -> tuple[int, ...]:
        """The tried sizes where some non-fitting run hit the step cap."""
        return tuple(t.n for t in self.trials if t.capped)


def check_rule(rule: Any) -> str | float:
    """The seed rule, checked: one of `RULES` or a float in (0, 1]."""
    if isinstance(rule, str):
        if rule not in RULES:
            fail("rule", f"one of {RULES} or a float in (0, 1]", repr(rule))
        return rule
    return check_float("rule", rule, minimum=0.0, maximum=1.0, strict_min=True)


def passes(count: int, seeds: int, rule: str | float) -> bool:
    """Whether `count` fitted seeds of `seeds` pass `rule`."""
    if rule == "half":
        return 2 * count >= seeds
    if rule == "majority":
        return 2 * count > seeds
    if rule == "all":
        return count == seeds
    if rule == "any":
        return count >= 1
    return count >= rule * seeds - 1e-9


def as_record(value: Any, where: str) -> dict[str, Any]:
    """An oracle's answer as a dict with a "fitted" entry: a bool, an object with `fitted`
    (an outcome; its `record()` is used when it has one), or a dict with "fitted"."""
    if isinstance(value, (bool, np.bool_)):
        return {"fitted": bool(value)}
    if isinstance(value, Mapping):
        if "fitted" not in value:
            fail(
                where,
                "a bool, an outcome with `fitted` or a dict with 'fitted'",
                f"a dict without 'fitted' (keys {sorted(value)})",
                TypeError,
            )
        return dict(value)
    if hasattr(value, "record") and callable(value.record):
        return dict(value.record())
    if hasattr(value, "fitted"):
        return {"fitted": np.asarray(value.fitted).tolist()}
    fail(
        where,
        "a bool, an outcome with `fitted` or a dict with 'fitted'",
        describe(value),
        TypeError,
    )


def _fitted(record: dict, where: str) -> np.ndarray:
    arr = np.asarray(record["fitted"])
    if arr.dtype != bool and not (arr.dtype.kind in "iu" and np.isin(arr, (0, 1)).all()):
        fail(f"{where}['fitted']", "a bool or an array of bools", describe(record["fitted"]))
    return arr.astype(bool)


def _capped(records: Sequence[dict], fitted: np.ndarray, batched: bool) -> bool:
    """Whether a run that did not fit stopped at the step cap; `fitted` is `(A, S)`."""
    for s, r in enumerate(records):
        if "reason" not in r:
            continue
        reason = np.asarray(r["reason"])
        mine = fitted if batched else fitted[:, s]
        if reason.size not in (1, mine.size):
            continue  # an oracle's own reason format: not ours to read
        reason = np.broadcast_to(reason.reshape(-1) if reason.size > 1 else reason, (mine.size,))
        if np.any((reason == "cap") & ~mine.reshape(-1)):
            return True
    return False


def search(
    fits_at: Callable[[int, Any], Any],
    *,
    n_min: int,
    n_max: int,
    seeds: Sequence[int] = (0,),
    rule: str | float = "half",
    growth: float = 2.0,
    precision: float = 0.05,
    batched: bool = False,
    sweep: Any = None,
    key: Mapping[str, Any] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> SearchResult:
    """The largest n that `fits_at` fits: the effective model complexity.

    Procedure: try n_min; then grow n <- min(n_max, ceil(growth * n)) while n fits; after the
    first failure, bisect the bracket (largest fitted, smallest not fitted) at its integer
    midpoint until its width is at most `max(1, floor(precision * lower end))`. Every n is
    trained from a fresh initialization by the oracle; each n is tried once.

    Args:
      fits_at: `fits_at(n, seed)` (or `fits_at(n, seeds)` when `batched`) -> a bool, an
        outcome with a `fitted` field (e.g. `fits`'s `FitOutcome`), or a dict with "fitted".
        Per seed, `fitted` may be an array over alternatives (learning rates); batched, its
        last axis is the seeds. An outcome's "reason" entries ("cap") mark capped runs.
      n_min, n_max: the sizes to search between, `1 <= n_min <= n_max`.
      seeds: the seeds, combined by `rule` (see the module docstring).
      rule: "half" (at least half the seeds fit), "majority", "all", "any" or a fraction.
      growth: factor of the geometric phase, > 1.
      precision: relative width of the final bracket; 0 bisects to adjacent integers.
      batched: call the oracle once per n with all seeds (e.g. `fits` vmapped over seeds).
      sweep: a `jaxdyn.sweep.Sweep` (`open_sweep(...)`): each answer is stored as point
        `{**key, "n": n, "seed": s}` (or `{**key, "n": n}` batched), so an interrupted search
        replays the finished fits from disk and loses none. None: nothing stored.
      key: fields naming this search inside `sweep` (e.g. `{"model": "mlp-w64", "labels":
        "random"}`); required with `sweep`.
      progress: `progress(done, estimated_total, description)` after each tried n.

    Returns:
      A `SearchResult`.

    Raises:
      ValueError/TypeError: bad arguments (n_min > n_max, ...) or a bad oracle answer.
    """
    n_min = check_int("n_min", n_min, minimum=1)
    n_max = check_int("n_max", n_max, minimum=1)
    if n_min > n_max:
        fail("n_min", f"<= n_max ({n_max})", repr(n_min))
    if not callable(fits_at):
        fail("fits_at", "callable fits_at(n, seed)", describe(fits_at), TypeError)
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
        fail("seeds", "a non-empty sequence of ints", describe(seeds), TypeError)
    seeds = tuple(check_int(f"seeds[{i}]", s, minimum=0) for i, s in enumerate(seeds))
    if len(set(seeds)) != len(seeds):
        fail("seeds", "distinct ints", repr(list(seeds)))
    rule = check_rule(rule)
    growth = check_float("growth", growth, minimum=1.0, strict_min=True)
    precision = check_float("precision", precision, minimum=0.0, maximum=1.0)
    if sweep is not None and (key is None or not isinstance(key, Mapping)):
        fail("key", "a dict of fields naming this search in `sweep`", describe(key), TypeError)
    base = dict(key or {})
    for reserved in ("n", "seed"):
        if reserved in base:
            fail("key", f"a dict without the field {reserved!r} (search adds it)", repr(base))

    def ask(n: int, what: Any, point: dict) -> dict:
        where = f"fits_at({n}, {what!r})"

        def run() -> dict:
            return as_record(fits_at(n, what), where)

        rec = run() if sweep is None else sweep.point(point, run, required="fitted")
        return rec

    trials: dict[int, Trial] = {}
    order: list[Trial] = []

    def try_n(n: int) -> bool:
        if batched:
            records = (ask(n, seeds, {**base, "n": n}),)
            fitted = _fitted(records[0], f"fits_at({n}, seeds)")
            if fitted.ndim == 0 or fitted.shape[-1] != len(seeds):
                fail(
                    f"fits_at({n}, seeds)['fitted']",
                    f"an array whose last axis holds the {len(seeds)} seeds",
                    f"shape {fitted.shape}",
                )
            fitted = fitted.reshape(-1, len(seeds))
        else:
            records = tuple(ask(n, s, {**base, "n": n, "seed": s}) for s in seeds)
            per = [_fitted(r, f"fits_at({n}, {s})").reshape(-1) for r, s in zip(records, seeds)]
            if len({p.shape for p in per}) != 1:
                fail(
                    f"fits_at({n}, seed)['fitted']",
                    "the same shape for every seed",
                    repr([p.shape for p in per]),
                )
            fitted = np.stack(per, -1)
        counts = fitted.sum(-1)
        ok = bool(any(passes(int(c), len(seeds), rule) for c in counts))
        capped = _capped(records, fitted, batched)
        t = Trial(n, ok, tuple(int(c) for c in counts), int(np.argmax(counts)), capped, records)
        trials[n] = t
        order.append(t)
        if progress is not None:
            lo, hi = _bracket(trials)
            left = 0 if hi is None and lo == n_max else _left(lo, hi, n_max, growth, precision)
            progress(len(order), len(order) + left, f"n {n}: {'fitted' if ok else 'not fitted'}")
        return ok

    n = n_min
    if not try_n(n):
        return SearchResult(None, (None, n_min), "none_fit", tuple(order), seeds, rule, precision)
    while n < n_max:
        n = min(n_max, max(n + 1, math.ceil(growth * n)))
        if not try_n(n):
            break
    else:
        return SearchResult(n_max, (n_max, None), "all_fit", tuple(order), seeds, rule, precision)
    lo, hi = _bracket(trials)
    while hi - lo > max(1, math.floor(precision * lo)):
        mid = (lo + hi) // 2
        try_n(mid)
        lo, hi = _bracket(trials)
    return SearchResult(lo, (lo, hi), "bracketed", tuple(order), seeds, rule, precision)


def _bracket(trials: Mapping[int, Trial]) -> tuple[int | None, int | None]:
    """(largest fitted n below the smallest failure, smallest failure). With a noisy oracle
    a fitted n may lie above a failure; the bracket keeps the lowest failure and the largest
    fitted n below it, so bisection stays inside the first bracket it found."""
    fails = [n for n, t in trials.items() if not t.fitted]
    hi = min(fails) if fails else None
    fitted = [n for n, t in trials.items() if t.fitted and (hi is None or n < hi)]
    return (max(fitted) if fitted else None), hi


def _left(lo, hi, n_max, growth, precision) -> int:
    """A rough count of the tries still to come, for a progress bar."""
    if hi is None:
        grow = math.ceil(math.log(max(n_max / max(lo, 1), 1.0)) / math.log(growth))
        return grow + max(0, math.ceil(math.log2(max(lo, 2) * (growth - 1))))
    width = max(1, math.floor(precision * lo))
    return max(0, math.ceil(math.log2(max(hi - lo, 1) / width)))
