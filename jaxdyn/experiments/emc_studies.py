"""The studies of the `emc` experiment: which (model, data variant, optimizer) runs each one
searches, and the headline comparisons read from their records.

A run is a flat dict of named settings (`architecture`, `width`, `depth`, `activation`,
`labels`, `inputs`, `classes`, `optimizer`): it names the search's points in the sweep folder
and is copied into its results record. `--study all` is the union of the studies, each run once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxdyn.analysis import emc

STUDIES = (
    "labels",
    "inputs",
    "classes",
    "optimizers",
    "activations",
    "architectures",
    "scaling",
    "generalization",
)
RUN_FIELDS = (
    "architecture",
    "width",
    "depth",
    "activation",
    "labels",
    "inputs",
    "classes",
    "optimizer",
)


def _run(settings: Any, **kw: Any) -> dict[str, Any]:
    base = dict(
        architecture="mlp",
        width=settings.widths[len(settings.widths) // 2],
        depth=settings.depth,
        activation="relu",
        labels="semantic",
        inputs="real",
        classes=settings.num_classes,
        optimizer="sgd",
    )
    base.update(kw)
    return {k: base[k] for k in RUN_FIELDS}


def matched_cnn_width(settings: Any, input_shape: tuple[int, ...], mlp_width: int) -> int:
    """The CNN width whose parameter count is closest to that of the MLP of `mlp_width`."""
    k = settings.num_classes
    target = emc.mlp(input_shape, k, width=mlp_width, depth=settings.depth).num_params
    counts = {
        w: emc.cnn(input_shape, k, width=w, depth=settings.cnn_depth).num_params
        for w in range(1, 4 * mlp_width + 1)
    }
    return min(counts, key=lambda w: (abs(counts[w] - target), w))


def study_runs(study: str, settings: Any, input_shape: tuple[int, ...]) -> list[dict[str, Any]]:
    """The runs of one study, in order."""
    mid = settings.widths[len(settings.widths) // 2]
    both = ("semantic", "random")
    if study == "labels":
        return [_run(settings, width=w, labels=lab) for w in settings.widths for lab in both]
    if study == "inputs":
        return [_run(settings, width=mid, inputs=i) for i in emc.INPUTS]
    if study == "classes":
        return [
            _run(settings, width=mid, classes=c, labels=lab)
            for c in settings.class_counts
            for lab in both
        ]
    if study == "optimizers":
        return [_run(settings, width=mid, optimizer=o) for o in settings.optimizers]
    if study == "activations":
        return [
            _run(settings, width=w, activation=a)
            for w in settings.widths
            for a in settings.activations
        ]
    if study == "architectures":
        runs = []
        for w in settings.widths:
            cw = matched_cnn_width(settings, input_shape, w)
            for lab in both:
                runs.append(_run(settings, width=w, labels=lab))
                runs.append(
                    _run(
                        settings, architecture="cnn", width=cw, depth=settings.cnn_depth, labels=lab
                    )  # fmt: skip
                )
        return runs
    if study == "scaling":
        runs = [_run(settings, width=w) for w in settings.scaling_widths]
        runs += [_run(settings, width=mid, depth=d) for d in settings.scaling_depths]
        return runs
    if study == "generalization":
        runs = []
        for w in settings.widths:
            cw = matched_cnn_width(settings, input_shape, w)
            for lab in both:
                runs.append(_run(settings, width=w, labels=lab))
                runs.append(
                    _run(
                        settings, architecture="cnn", width=cw, depth=settings.cnn_depth, labels=lab
                    )  # fmt: skip
                )
        return runs
    raise ValueError(f"`study` must be one of {STUDIES + ('all',)}; got {study!r}.")


def runs_of(settings: Any, input_shape: tuple[int, ...]) -> list[tuple[str, dict]]:
    """(study, run) pairs of `settings.study`; with "all", each run once (first study)."""
    studies = STUDIES if settings.study == "all" else (settings.study,)
    seen, out = set(), []
    for study in studies:
        for run in study_runs(study, settings, input_shape):
            tag = tuple(run.values())
            if tag not in seen:
                seen.add(tag)
                out.append((study, run))
    return out


def run_name(run: dict[str, Any]) -> str:
    """A short label: "mlp w32 d2 relu, random labels, sgd"."""
    parts = [f"{run['architecture']} w{run['width']} d{run['depth']} {run['activation']}"]
    if run["labels"] != "semantic":
        parts.append(f"{run['labels']} labels")
    if run["inputs"] != "real":
        parts.append(f"{run['inputs']} inputs")
    parts.append(f"{run['classes']} classes")
    parts.append(run["optimizer"])
    return ", ".join(parts)


# --------------------------------------------------------------------------- headlines


def _find(records: Sequence[dict], **kw: Any) -> list[dict]:
    return [r for r in records if all(r.get(k) == v for k, v in kw.items())]


def _pair(a: dict, b: dict, strict: bool) -> dict[str, Any]:
    ea, eb = a["emc"], b["emc"]
    holds = None if ea is None or eb is None else (ea > eb if strict else ea >= eb)
    # the margin over seeds: does every seed's own EMC estimate keep the order?
    sa, sb = a.get("per_seed_emc") or [], b.get("per_seed_emc") or []
    per_seed = None
    if sa and sb and None not in sa and None not in sb:
        per_seed = bool(min(sa) > max(sb)) if strict else bool(min(sa) >= max(sb))
    return dict(
        a=run_name(a),
        b=run_name(b),
        emc_a=ea,
        emc_b=eb,
        params_a=a["num_params"],
        params_b=b["num_params"],
        ratio=None if not ea or not eb else ea / eb,
        per_seed_emc_a=sa,
        per_seed_emc_b=sb,
        holds=holds,
        holds_for_every_seed=per_seed,
    )


def _ranks(v: Sequence[float]) -> np.ndarray:
    """Ranks 0..n-1 of v, ties given their mean rank."""
    v = np.asarray(v, float)
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(len(v))
    for value in np.unique(v):
        tie = v == value
        ranks[tie] = ranks[tie].mean()
    return ranks


def _spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson of the tie-averaged ranks); None below 3 points
    or when one side is constant."""
    if len(x) < 3:
        return None
    rx, ry = _ranks(x), _ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def headlines(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The paper's orderings, measured: one entry per headline whose runs are present."""
    out = []

    def add(name, paper, pairs):
        if pairs:
            known = [p["holds"] for p in pairs if p["holds"] is not None]
            out.append(
                dict(
                    headline=name,
                    paper=paper,
                    pairs=pairs,
                    holds=bool(known) and all(known),
                    holds_in=f"{sum(known)}/{len(known)}",
                )
            )

    fields = ("architecture", "width", "depth", "activation", "inputs", "classes", "optimizer")
    pairs = []
    for r in _find(records, labels="semantic"):
        other = _find(records, labels="random", **{k: r[k] for k in fields})
        if other:
            pairs.append(_pair(r, other[0], strict=True))
    add("semantic > random labels", "networks fit far more semantic than random labels", pairs)

    def compare(field, a_val, b_val, strict, name, paper, **fixed):
        pairs = []
        rest = [f for f in RUN_FIELDS if f not in (field, *fixed)]
        for a in _find(records, **{field: a_val}, **fixed):
            match = {k: a[k] for k in rest}
            b = _find(records, **{field: b_val}, **fixed, **match)
            if b:
                pairs.append(_pair(a, b[0], strict))
        add(name, paper, pairs)

    compare("optimizer", "sgd", "gd", False, "SGD >= full-batch GD", "SGD fits more than GD")
    compare("activation", "relu", "tanh", True, "ReLU > tanh", "ReLU fits more than tanh")
    pairs = []
    for a in _find(records, architecture="cnn"):
        rest = ("activation", "labels", "inputs", "classes", "optimizer")
        for b in _find(records, architecture="mlp", **{k: a[k] for k in rest}):
            if abs(math.log(a["num_params"] / b["num_params"])) < math.log(1.25):
                pairs.append(_pair(a, b, strict=True))
    add(
        "CNN > MLP at equal parameters",
        "CNNs are more parameter-efficient than MLPs, even on random labels",
        pairs,
    )
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        if r["emc"] is not None:
            key = tuple(r[k] for k in RUN_FIELDS if k not in ("width", "depth"))
            groups.setdefault(key, []).append(r)
    trends = []
    for rs in groups.values():
        if len({r["num_params"] for r in rs}) >= 3:
            rho = _spearman([r["num_params"] for r in rs], [r["emc"] for r in rs])
            holds = rho is not None and rho > 0
            trends.append(dict(runs=[run_name(r) for r in rs], spearman=rho, holds=holds))
    if trends:
        out.append(
            dict(
                headline="EMC grows with parameter count",
                paper="EMC grows with parameters, and stays below the parameter count",
                trends=trends,
                holds=all(t["holds"] for t in trends),
                holds_in=f"{sum(t['holds'] for t in trends)}/{len(trends)}",
            )
        )
    return out


def generalization_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model with both label kinds: the EMC gap `(semantic - random) / semantic` and the
    generalization gap (train minus test accuracy of the semantic model trained at its EMC)."""
    rows = []
    fields = ("architecture", "width", "depth", "activation", "inputs", "classes", "optimizer")
    for r in _find(records, labels="semantic"):
        other = _find(records, labels="random", **{k: r[k] for k in fields})
        if not other or not r["emc"] or other[0]["emc"] is None:
            continue
        if r["test_accuracy"] is None or r["train_accuracy"] is None:
            continue
        rows.append(
            dict(
                model=run_name(r),
                num_params=r["num_params"],
                emc_semantic=r["emc"],
                emc_random=other[0]["emc"],
                emc_gap=emc.emc_gap(r["emc"], other[0]["emc"]),
                generalization_gap=r["train_accuracy"] - r["test_accuracy"],
                test_accuracy=r["test_accuracy"],
            )
        )
    return rows


def correlation(rows: Sequence[dict[str, Any]]) -> float | None:
    """Pearson correlation of the EMC gap and the generalization gap across models."""
    if len(rows) < 3:
        return None
    a = np.array([r["emc_gap"] for r in rows])
    b = np.array([r["generalization_gap"] for r in rows])
    if a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])
