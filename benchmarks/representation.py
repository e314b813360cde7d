"""Benchmarks of the representation-dynamics experiments (van Rossem & Saxe 2024).

Two measurements, each timed as first call (compile + run) and median of --repeats calls, in
wall time and in this process's CPU time (user + sys: on a shared machine the wall time is
inflated by other jobs, the CPU time much less):

1. sweep_vs_loop: --seeds x --gains runs of the `two-point` network (--depth x --width
   leaky ReLU, the two-point task, full-batch SGD lr 0.005 for --epochs epochs, the tracked
   layer recorded every --record-every epochs) trained as ONE vmapped program
   (`_representation_common.train_many`, as the experiments do) against the same compiled
   program called once per run (R = 1), and the max relative difference of the recorded
   hidden representations.
2. fit: `representation.fit_rates` (13 x 13 start grid of ODE solves, then least squares in
   log-rates, every solve by diffrax Kvaerno5) on the measured (h, y, w) of one run of the
   first gain over --fit-epochs epochs (121 times); the first call includes the solver's
   compilation. Also the number of ODE solves it made.

Output: benchmarks/results/representation_<device>_<date>.json (or --out).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _common as C


def _cpu() -> float:
    return time.process_time()


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def _setup(args, epochs=None, record_every=None):
    import jax.numpy as jnp

    from jaxdyn.analysis import representation as rep
    from jaxdyn.experiments import _representation_common as common

    model = rep.mlp(1, args.width, args.depth, 1)
    runs = [(s, g) for g in args.gains for s in range(args.seeds)]
    dtype = jnp.float64 if args.x64 else jnp.float32
    params0 = common.init_many(model, [s for s, _ in runs], [g for _, g in runs], dtype)
    x = jnp.asarray(common.X_PAIR, dtype)
    y = jnp.asarray(common.Y_PAIR, dtype)
    layer = min(args.layer, args.depth)

    def train(p):
        return common.train_many(
            model,
            p,
            x,
            y,
            learning_rate=0.005,
            epochs=epochs or args.epochs,
            record_every=record_every or args.record_every,
            observe=lambda q: model.hidden_fn(q, x, layer),
        )

    return runs, params0, train


def sweep_vs_loop(args) -> dict:
    import jax
    import numpy as np

    runs, params0, train = _setup(args)
    t_vmap, out_vmap = C.time_calls(lambda: train(params0)["observed"], args.repeats)

    def loop():
        return [
            train(jax.tree_util.tree_map(lambda a, r=r: a[r : r + 1], params0))["observed"]
            for r in range(len(runs))
        ]

    t_loop, out_loop = C.time_calls(loop, args.repeats)
    stacked = np.concatenate(out_loop)
    diff = float(np.max(np.abs(stacked - out_vmap)) / np.max(np.abs(out_vmap)))
    return {
        "depth": args.depth,
        "width": args.width,
        "runs": len(runs),
        "seeds": args.seeds,
        "gains": list(args.gains),
        "epochs": args.epochs,
        "vmap": t_vmap,
        "loop": t_loop,
        "cpu_ms_per_run_epoch_vmap": 1e3 * t_vmap["median_cpu_s"] / (len(runs) * args.epochs),
        "speedup_vmap_over_loop_cpu": _ratio(t_loop["median_cpu_s"], t_vmap["median_cpu_s"]),
        "speedup_vmap_over_loop_wall": _ratio(t_loop["median_s"], t_vmap["median_s"]),
        "max_rel_diff_hidden": diff,
    }


def fit(args) -> dict:
    import jax

    from jaxdyn.analysis import _two_point_ode
    from jaxdyn.analysis import representation as rep
    from jaxdyn.experiments import _representation_common as common

    # the fit needs the whole trajectory (a run stopped on its plateau fits badly): one run of
    # --fit-epochs (the protocol's 6,000), recorded at 121 times
    _, params0, train = _setup(args, epochs=args.fit_epochs, record_every=args.fit_epochs // 120)
    first = jax.tree_util.tree_map(lambda a: a[:1], params0)
    run = train(first)
    with jax.enable_x64(True):
        obs, _ = common.pair_observables(run["observed"][0], run["f_train"][0], common.Y_PAIR)
        calls = {"n": 0}
        solve = _two_point_ode._solve

        def counted(*a, **k):
            calls["n"] += 1
            return solve(*a, **k)

        rep._solve = counted  # count the solves of one fit (restored below)
        try:
            t, res = C.time_calls(lambda: rep.fit_rates(obs, run["t"], 1.0, 0.5).curves, 0)
            solves = calls["n"]
            t_rep, _ = C.time_calls(
                lambda: rep.fit_rates(obs, run["t"], 1.0, 0.5).curves, args.repeats
            )
        finally:
            rep._solve = solve
        f = rep.fit_rates(obs, run["t"], 1.0, 0.5)
    t_rep["first_call_s"], t_rep["first_call_cpu_s"] = t["first_call_s"], t["first_call_cpu_s"]
    return {
        "times": len(run["t"]),
        "timing": t_rep,
        "ode_solves_per_fit": solves,
        "cpu_ms_per_solve": 1e3 * t_rep["median_cpu_s"] / solves if solves else float("nan"),
        "eta_h": f.eta_h,
        "eta_y": f.eta_y,
        "relative_error": f.relative_error,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--depth", type=int, default=20, help="hidden layers (default 20)")
    p.add_argument("--width", type=int, default=200, help="hidden units (default 200)")
    p.add_argument("--layer", type=int, default=10, help="tracked layer (default 10)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per gain (default 3)")
    p.add_argument(
        "--gains", type=float, nargs="+", default=[0.7, 1.0, 1.4], help="gains (0.7 1.0 1.4)"
    )
    p.add_argument("--epochs", type=int, default=1000, help="epochs timed (default 1000)")
    p.add_argument("--record-every", type=int, default=50, help="record interval (default 50)")
    p.add_argument(
        "--fit-epochs", type=int, default=6000, help="epochs of the fitted run (default 6000)"
    )
    p.add_argument("--repeats", type=int, default=1, help="timed calls after the first (default 1)")
    p.add_argument("--x64", action="store_true", help="train in float64 (default float32)")
    p.add_argument(
        "--tiny", action="store_true", help="tiny sizes for smoke tests (3 x 8, 2 x 2 runs)"
    )
    p.add_argument(
        "--only",
        nargs="+",
        choices=("sweep_vs_loop", "fit"),
        default=["sweep_vs_loop", "fit"],
        help="which measurements to run",
    )
    p.add_argument("--out", default=None, help="output JSON (default benchmarks/results/...)")
    p.add_argument(
        "--out-dir", default=os.path.join(HERE, "results"), help="folder for the default name"
    )
    args = p.parse_args(argv)
    if args.tiny:
        args.depth, args.width, args.layer, args.seeds, args.gains = 3, 8, 2, 2, [0.8, 1.2]
        args.epochs, args.record_every, args.fit_epochs = 40, 10, 240

    import jax
    import jaxlib
    import optax

    import jaxdyn

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    d = jax.devices()[0]
    results = {}
    for name, fn in (("sweep_vs_loop", sweep_vs_loop), ("fit", fit)):
        if name in args.only:
            results[name] = fn(args)
            print(
                f"{name}: "
                + ", ".join(
                    f"{k}={v:.4g}"
                    for k, v in results[name].items()
                    if isinstance(v, float) and not isinstance(v, bool)
                ),
                flush=True,
            )
    C.save_results(
        args,
        "representation",
        1,
        C.metadata(
            {
                "jax": jax.__version__,
                "jaxlib": jaxlib.__version__,
                "jaxdyn": jaxdyn.__version__,
                "optax": optax.__version__,
                "device": f"{d.platform}:{getattr(d, 'device_kind', '')}",
                "repeats": args.repeats,
                "dtype": "float64" if args.x64 else "float32",
                "tiny": args.tiny,
                "peak_rss_mib": C.peak_rss_mib(),
            }
        ),
        results,
        f"representation_{d.platform}_{C.today()}.json",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
