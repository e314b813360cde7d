"""Benchmarks of the `modular-addition` experiment's training (Tian 2024, CoGO).

Three measurements, each timed as first call (compile + run) and median of --repeats calls, in
wall time and in this process's CPU time (user + sys: on a shared machine the wall time is
inflated by other jobs, the CPU time much less):

1. layout: one vmapped group of --seeds x --weight-decays runs at (--d, --width), --epochs
   full-batch Adam epochs, computed two ways: `gather`, the first implementation (each pair's
   hidden vector gathered from W_a and W_b columns, whose gradient is a scatter-add), and
   `grid`, what `modular_addition.trainer` runs (the hidden vectors of all d^2 pairs as a
   broadcast sum, train and test pairs as masks). Both are the same loss; the max relative
   difference of their final weights is reported.
2. sweep_vs_loop: `modular_addition.trainer` on all runs at once (one vmapped program) against
   the same compiled trainer called once per run (R = 1), and the max abs difference of the
   final weights.
3. large: one run at d = --large-d (127), width --large-width (2048), timed over
   --large-epochs epochs and extrapolated to --target-epochs (10,000) Adam epochs (the per-epoch
   time of the timed call times the target; `extrapolated` says whether it was). The flop count
   per epoch (forward and backward matrix products, `6 d^3 width` on the grid) gives the rate.

Output: benchmarks/results/modular_<device>_<date>.json (or --out).
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
    return time.process_time()  # user + sys of every thread of this process


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def _settings(args, **kw):
    from jaxdyn.experiments import modular_addition as ma

    base = dict(
        d=(args.d,),
        width=(args.width,),
        weight_decay=tuple(args.weight_decays),
        seeds=args.seeds,
        epochs=args.epochs,
        record_every=args.epochs,
        dtype="float64" if args.x64 else "float32",
    )
    return ma.Settings(**{**base, **kw})


def grid_flops(d: int, width: int) -> float:
    """Flops of one epoch's matrix products on the grid: the forward `W_c @ h^2` and, in the
    backward pass, the gradients with respect to `h^2` and `W_c`: `3 x 2 d width d^2`."""
    return 6.0 * d**3 * width


def _gather_trainer(d: int, learning_rate: float, epochs: int):
    """The first implementation's training (the gather layout), no recording."""
    import jax
    import jax.numpy as jnp

    from jaxdyn.analysis import modular

    pairs = modular.all_pairs(d)
    opt = modular.optimizer(learning_rate, 0.0)

    def one_run(params, tr_idx, wd):
        p = pairs[tr_idx]

        def loss(q):
            h = jnp.take(q["W_a"], p[:, 0], axis=1) + jnp.take(q["W_b"], p[:, 1], axis=1)
            return modular._projected_mse((q["W_c"] @ (h * h)).T, p[:, 0], p[:, 1])

        def step(carry, _):
            params, state = carry
            grads = jax.tree_util.tree_map(lambda g, q: g + wd * q, jax.grad(loss)(params), params)
            updates, state = opt.update(grads, state, params)
            return (jax.tree_util.tree_map(jnp.add, params, updates), state), None

        (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=epochs)
        return params

    return jax.jit(jax.vmap(one_run))


def _max_rel(a: dict, b: dict) -> float:
    import numpy as np

    return max(
        float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k]))) / np.max(np.abs(b[k]))) for k in b
    )


def layout(args) -> dict:
    import jax.numpy as jnp
    import numpy as np

    from jaxdyn.experiments import modular_addition as ma

    s = _settings(args)
    g = ma.group_inputs(s, args.d, args.width)
    tr_idx = jnp.asarray(np.stack([np.flatnonzero(m) for m in np.asarray(g.train_mask)]))
    grid = ma.trainer(args.d, s.learning_rate, s.epochs, s.record_every)
    gather = _gather_trainer(args.d, s.learning_rate, s.epochs)
    t_grid, (p_grid, _) = C.time_calls(
        lambda: grid(g.params, g.train_mask, g.test_mask, g.weight_decay), args.repeats
    )
    t_gather, p_gather = C.time_calls(
        lambda: gather(g.params, tr_idx, g.weight_decay), args.repeats
    )
    runs = len(g.runs)
    return {
        "d": args.d,
        "width": args.width,
        "runs": runs,
        "epochs": args.epochs,
        "grid": t_grid,
        "gather": t_gather,
        "grid_cpu_ms_per_run_epoch": 1e3 * t_grid["median_cpu_s"] / (runs * args.epochs),
        "gather_cpu_ms_per_run_epoch": 1e3 * t_gather["median_cpu_s"] / (runs * args.epochs),
        "speedup_grid_over_gather_cpu": _ratio(t_gather["median_cpu_s"], t_grid["median_cpu_s"]),
        "speedup_grid_over_gather_wall": _ratio(t_gather["median_s"], t_grid["median_s"]),
        "grid_gflops_per_cpu_s": _ratio(
            grid_flops(args.d, args.width) * runs * args.epochs / 1e9, t_grid["median_cpu_s"]
        ),
        "max_rel_diff_final_weights": _max_rel(p_gather, p_grid),
    }


def sweep_vs_loop(args) -> dict:
    import jax

    from jaxdyn.experiments import modular_addition as ma

    s = _settings(args)
    g = ma.group_inputs(s, args.d, args.width)
    train = ma.trainer(args.d, s.learning_rate, s.epochs, s.record_every)
    runs = len(g.runs)

    def one(r):
        sl = slice(r, r + 1)
        return train(
            jax.tree_util.tree_map(lambda x: x[sl], g.params),
            g.train_mask[sl],
            g.test_mask[sl],
            g.weight_decay[sl],
        )[0]

    t_vmap, p_vmap = C.time_calls(
        lambda: train(g.params, g.train_mask, g.test_mask, g.weight_decay)[0], args.repeats
    )
    t_loop, p_loop = C.time_calls(lambda: [one(r) for r in range(runs)], args.repeats)
    p_loop = jax.tree_util.tree_map(lambda *x: jax.numpy.concatenate(x), *p_loop)
    return {
        "d": args.d,
        "width": args.width,
        "runs": runs,
        "seeds": args.seeds,
        "weight_decays": list(args.weight_decays),
        "epochs": args.epochs,
        "vmap": t_vmap,
        "loop": t_loop,
        "speedup_vmap_over_loop_cpu": _ratio(t_loop["median_cpu_s"], t_vmap["median_cpu_s"]),
        "speedup_vmap_over_loop_wall": _ratio(t_loop["median_s"], t_vmap["median_s"]),
        "max_rel_diff_final_weights": _max_rel(p_loop, p_vmap),
    }


def large(args) -> dict:
    from jaxdyn.experiments import modular_addition as ma

    s = _settings(
        args,
        d=(args.large_d,),
        width=(args.large_width,),
        weight_decay=(args.weight_decays[0],),
        seeds=1,
        epochs=args.large_epochs,
        record_every=args.large_epochs,
    )
    g = ma.group_inputs(s, args.large_d, args.large_width)
    train = ma.trainer(args.large_d, s.learning_rate, s.epochs, s.record_every)
    t, (_, hist) = C.time_calls(
        lambda: train(g.params, g.train_mask, g.test_mask, g.weight_decay), args.repeats
    )
    key = "median" if args.repeats else "first_call"
    per_epoch = t[f"{key}_s"] / args.large_epochs
    per_epoch_cpu = t[f"{key}_cpu_s"] / args.large_epochs
    return {
        "d": args.large_d,
        "width": args.large_width,
        "weight_decay": args.weight_decays[0],
        "epochs_timed": args.large_epochs,
        "target_epochs": args.target_epochs,
        "extrapolated": args.large_epochs != args.target_epochs,
        "timing": t,
        "seconds_per_epoch": per_epoch,
        "cpu_seconds_per_epoch": per_epoch_cpu,
        "target_epochs_s": per_epoch * args.target_epochs,
        "target_epochs_cpu_s": per_epoch_cpu * args.target_epochs,
        "gflops_per_cpu_s": _ratio(grid_flops(args.large_d, args.large_width) / 1e9, per_epoch_cpu),
        "final_train_loss": float(hist[0, -1, 0]),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--d", type=int, default=23, help="modulus for layout/sweep (default 23)")
    p.add_argument("--width", type=int, default=512, help="width for layout/sweep (default 512)")
    p.add_argument("--seeds", type=int, default=5, help="seeds (default 5)")
    p.add_argument(
        "--weight-decays",
        type=float,
        nargs="+",
        default=[1e-5, 5e-5, 1e-4, 2e-4, 5e-4],
        help="weight decays (default the experiment's five)",
    )
    p.add_argument("--epochs", type=int, default=200, help="epochs for layout/sweep (default 200)")
    p.add_argument("--large-d", type=int, default=127, help="modulus of the large run (127)")
    p.add_argument("--large-width", type=int, default=2048, help="width of the large run (2048)")
    p.add_argument(
        "--large-epochs", type=int, default=20, help="epochs timed in the large run (default 20)"
    )
    p.add_argument(
        "--target-epochs", type=int, default=10000, help="epochs extrapolated to (default 10000)"
    )
    p.add_argument("--repeats", type=int, default=1, help="timed calls after the first (default 1)")
    p.add_argument("--x64", action="store_true", help="float64 (default float32)")
    p.add_argument(
        "--tiny",
        action="store_true",
        help="tiny sizes for smoke tests (d=7, width 8, 2 seeds x 2 decays, 4 epochs; "
        "large d=11, width 16, 2 epochs)",
    )
    p.add_argument(
        "--only",
        nargs="+",
        choices=("layout", "sweep_vs_loop", "large"),
        default=["layout", "sweep_vs_loop", "large"],
        help="which measurements to run",
    )
    p.add_argument(
        "--out",
        default=None,
        help="output JSON (default benchmarks/results/modular_<device>_<date>.json)",
    )
    p.add_argument(
        "--out-dir", default=os.path.join(HERE, "results"), help="folder for the default name"
    )
    args = p.parse_args(argv)
    if args.tiny:
        args.d, args.width, args.seeds, args.weight_decays, args.epochs = 7, 8, 2, [1e-4, 5e-4], 4
        args.large_d, args.large_width, args.large_epochs, args.target_epochs = 11, 16, 2, 10

    import jax

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import jaxlib
    import optax

    import jaxdyn

    d = jax.devices()[0]
    results = {}
    for name, fn in (("layout", layout), ("sweep_vs_loop", sweep_vs_loop), ("large", large)):
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
        "modular",
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
        f"modular_{d.platform}_{C.today()}.json",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
