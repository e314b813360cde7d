"""Effective-model-complexity benchmark: one EMC search with its seeds and learning-rate grid
trained as ONE vmapped `emc.fits` call per size, against the same fits run one (rate, seed)
at a time.

Workload: an MLP (MNIST-1D inputs, 40 -> width -> width -> 10, ReLU) on random labels, minibatch
SGD, `emc.measure` from --n-min to --n-max at --precision. The one-by-one mode replays the
sizes the vmapped search tried, calling `emc.fits` with one rate and one seed per call, so
both modes do the same training; the worker checks that they reach the same outcome
(`outcomes_agree`: the same fitted / stop reason per run, which holds exactly because a run's
arithmetic does not depend on its neighbours in the batch).

Each mode is timed on a first call (compilations included: each padded size bucket compiles
once per batch shape) and then --repeats times warm (compiled code reused); wall and process
CPU time are recorded (the machine may be shared: compare CPU times).

Output: benchmarks/results/emc_<device>_<date>.json (or --out), schema as the other
benchmarks: {"benchmark", "schema_version", "meta", "results"}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _common as C  # noqa: E402

SCHEMA_VERSION = 1


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def run(args) -> list[dict]:
    import numpy as np

    from jaxdyn import data
    from jaxdyn.analysis import emc

    ds = data.mnist1d(args.n_max, 10, seed=0, dtype=np.float32)
    v = emc.make_variant(
        ds.x_train, ds.labels_train, ds.x_test, ds.labels_test, num_classes=10, labels="random"
    )
    model = emc.mlp((40,), 10, width=args.width, depth=2)
    seeds = list(range(args.seeds))
    opts = dict(
        optimizer="sgd", learning_rates=tuple(args.learning_rates), batch_size=64,
        max_steps=args.max_steps, patience=args.patience, rel_tol=0.01,
    )  # fmt: skip
    order = np.random.default_rng(0).permutation(args.n_max)
    x, y = v.x_train[order], v.labels_train[order]

    def vmapped():
        return emc.measure(
            model, v.x_train, v.labels_train, n_min=args.n_min, n_max=args.n_max, seeds=seeds,
            precision=args.precision, order_seed=0, **opts,
        )  # fmt: skip

    def one_by_one(sizes):
        out = {}
        for n in sizes:
            rows = []
            for lr in args.learning_rates:
                rows.append(
                    [
                        emc.fits(
                            model, x[:n], y[:n], seeds=(s,), **{**opts, "learning_rates": (lr,)}
                        )
                        for s in seeds
                    ]
                )
            out[n] = rows
        return out

    results = []
    m, w_first, c_first = _timed(vmapped)
    sizes = list(m.search.tried)
    warm = [_timed(vmapped)[1:] for _ in range(args.repeats)]
    results.append(
        dict(
            mode="vmapped",
            sizes=sizes,
            fits=len(sizes),
            runs_per_fit=len(seeds) * len(args.learning_rates),
            emc=m.emc,
            first_wall_s=w_first,
            first_cpu_s=c_first,
            warm_wall_s=statistics.median(t[0] for t in warm),
            warm_cpu_s=statistics.median(t[1] for t in warm),
        )  # fmt: skip
    )
    single, w1, c1 = _timed(lambda: one_by_one(sizes))
    warm1 = [_timed(lambda: one_by_one(sizes))[1:] for _ in range(args.repeats)]
    agree = True
    for t in m.search.trials:
        rec = t.records[0]
        for r in range(len(args.learning_rates)):
            for s in range(len(seeds)):
                o = single[t.n][r][s]
                agree &= bool(o.fitted[0, 0]) == bool(rec["fitted"][r][s])
                agree &= o.reason[0, 0] == rec["reason"][r][s]
    results.append(
        dict(
            mode="one_by_one",
            sizes=sizes,
            fits=len(sizes) * len(seeds) * len(args.learning_rates),
            runs_per_fit=1,
            first_wall_s=w1,
            first_cpu_s=c1,
            warm_wall_s=statistics.median(t[0] for t in warm1),
            warm_cpu_s=statistics.median(t[1] for t in warm1),
            outcomes_agree=agree,
        )  # fmt: skip
    )
    v_, o_ = results
    for key in ("first_cpu_s", "warm_cpu_s", "first_wall_s", "warm_wall_s"):
        v_[f"speedup_{key}"] = o_[key] / v_[key] if v_[key] else None
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--learning-rates", type=float, nargs="+", default=[0.03, 0.1, 0.3])
    p.add_argument("--n-min", type=int, default=64)
    p.add_argument("--n-max", type=int, default=2048)
    p.add_argument("--precision", type=float, default=0.1)
    p.add_argument("--max-steps", type=int, default=20000)
    p.add_argument("--patience", type=int, default=3000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    p.add_argument("--out", default=None)
    p.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)
    if args.tiny:
        args.width, args.seeds, args.learning_rates = 8, 2, [0.3]
        args.n_min, args.n_max, args.max_steps, args.repeats = 16, 64, 500, 1
    env = C.environment()
    meta = C.metadata({"environment": env, "args": vars(args)})
    results = run(args)
    for r in results:
        print(r)
    device = env["devices"][0]["platform"]
    C.save_results(args, "emc", SCHEMA_VERSION, meta, results, f"emc_{device}_{C.today()}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
