"""Benchmarks of the frequency-principle analysis (`jaxdyn.analysis.frequency`).

Each timing is the first call (compile + run) and the median of --repeats further calls, in
wall time and in this process's CPU time (user + sys: on a shared machine the wall time is
inflated by other jobs, the CPU time much less).

1. filter: `gaussian_filter(y, x, delta)` for n in --sizes (default 10,000 and 60,000) inputs
   of dimension --dim (784, MNIST's) and --k (10) target columns, in its default row blocks,
   against `matmul_floor`: a jitted function doing only the matrix products the filter
   needs for its squared distances (the same row blocks of `x_b @ x.T`, each reduced to a
   row sum so nothing (n, n) is kept). Flop counts: the floor `2 n^2 d`, the filter
   `2 n^2 (d + k)` (distances, then weights @ y); `gflops_per_cpu_s` and the ratio of times.
   Sizes above --large-n use --repeats-large repeats (default 0: the first call stands in).
2. seeds_vmap_vs_loop: `train.trajectory` of a tanh MLP on `sin x + sin 3x + sin 5x` (101
   points), --seeds seeds as one `jax.vmap`ped program against the same jitted single-seed
   program called once per seed; the max abs difference of the final outputs.

Output: benchmarks/results/frequency_<device>_<date>.json (or --out).
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


def matmul_floor(batch_size: int):
    """The filter's matrix products alone: row blocks of `x_b @ x.T`, each reduced."""
    import functools

    import jax
    import jax.numpy as jnp

    @functools.partial(jax.jit)
    def floor(x):
        n = x.shape[0]
        blocks = -(-n // batch_size)
        rows = jnp.pad(x, ((0, blocks * batch_size - n), (0, 0))).reshape(blocks, batch_size, -1)
        hi = jax.lax.Precision.HIGHEST
        return jax.lax.map(lambda xb: jnp.sum(jnp.matmul(xb, x.T, precision=hi), axis=1), rows)

    return floor


def filter_bench(args) -> list[dict]:
    import jax.numpy as jnp
    import numpy as np

    from jaxdyn.analysis import frequency

    out = []
    for n in args.sizes:
        repeats = args.repeats if n <= args.large_n else args.repeats_large
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.uniform(0, 1, size=(n, args.dim)), jnp.float32)
        y = jnp.asarray(rng.normal(size=(n, args.k)), jnp.float32)
        batch = frequency.default_filter_batch(n)
        t_f, y_low = C.time_calls(
            lambda x=x, y=y: frequency.gaussian_filter(y, x, args.delta), repeats
        )
        floor = matmul_floor(batch)
        t_m, _ = C.time_calls(lambda x=x, floor=floor: floor(x), repeats)
        f_floor = 2.0 * n * n * args.dim
        f_filter = 2.0 * n * n * (args.dim + args.k)
        row = {
            "n": n,
            "dim": args.dim,
            "k": args.k,
            "delta": args.delta,
            "batch_size": batch,
            "filter": t_f,
            "matmul_floor": t_m,
            "filter_flops": f_filter,
            "floor_flops": f_floor,
            "filter_gflops_per_cpu_s": _ratio(f_filter / 1e9, t_f["median_cpu_s"]),
            "filter_gflops_per_s": _ratio(f_filter / 1e9, t_f["median_s"]),
            "floor_gflops_per_cpu_s": _ratio(f_floor / 1e9, t_m["median_cpu_s"]),
            "floor_gflops_per_s": _ratio(f_floor / 1e9, t_m["median_s"]),
            "ratio_to_matmul_floor_cpu": _ratio(t_f["median_cpu_s"], t_m["median_cpu_s"]),
            "ratio_to_matmul_floor_wall": _ratio(t_f["median_s"], t_m["median_s"]),
            "finite": bool(np.isfinite(np.asarray(y_low)).all()),
        }
        out.append(row)
        print(
            f"filter n={n}: {t_f['median_s']:.3g} s ({t_f['median_cpu_s']:.3g} CPU s), floor "
            f"{t_m['median_s']:.3g} s, ratio {row['ratio_to_matmul_floor_cpu']:.3g} (CPU), "
            f"{row['filter_gflops_per_cpu_s']:.3g} GFLOP/CPU-s",
            flush=True,
        )
    return out


def seeds_bench(args) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from jaxdyn import train
    from jaxdyn.analysis import frequency

    model = frequency.mlp((1, *args.widths, 1), "tanh", w_std=np.sqrt(1 / 200), b_std=0.0)
    x = jnp.linspace(-np.pi, np.pi, 101)[:, None]
    y = jnp.sin(x) + jnp.sin(3 * x) + jnp.sin(5 * x)
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(args.seeds))
    params = jax.vmap(model.init)(keys)

    def one(p):
        traj = train.trajectory(
            model.apply, p, x, y, optimizer=optax.adam(2e-4), steps=args.steps,
            record_every=args.steps,
        )  # fmt: skip
        return traj.f_train[-1]

    vmapped, single = jax.jit(jax.vmap(one)), jax.jit(one)
    t_v, f_v = C.time_calls(lambda: vmapped(params), args.repeats)
    seeds = [jax.tree_util.tree_map(lambda a, s=s: a[s], params) for s in range(args.seeds)]
    t_l, f_l = C.time_calls(lambda: jnp.stack([single(p) for p in seeds]), args.repeats)
    return {
        "seeds": args.seeds,
        "widths": list(args.widths),
        "steps": args.steps,
        "vmap": t_v,
        "loop": t_l,
        "speedup_vmap_over_loop_cpu": _ratio(t_l["median_cpu_s"], t_v["median_cpu_s"]),
        "speedup_vmap_over_loop_wall": _ratio(t_l["median_s"], t_v["median_s"]),
        "max_abs_diff_final_outputs": float(np.max(np.abs(np.asarray(f_v) - np.asarray(f_l)))),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[10000, 60000], help="filter n")
    p.add_argument("--dim", type=int, default=784, help="input dimension (default 784)")
    p.add_argument("--k", type=int, default=10, help="target columns (default 10)")
    p.add_argument("--delta", type=float, default=3.0, help="filter variance (default 3)")
    p.add_argument("--large-n", type=int, default=20000, help="n above which --repeats-large")
    p.add_argument("--repeats", type=int, default=3, help="timed calls after the first (3)")
    p.add_argument("--repeats-large", type=int, default=0, help="repeats above --large-n (0)")
    p.add_argument("--seeds", type=int, default=8, help="seeds of the vmap test (default 8)")
    p.add_argument("--widths", type=int, nargs="+", default=[200, 200, 100], help="hidden")
    p.add_argument("--steps", type=int, default=500, help="Adam steps per seed (default 500)")
    p.add_argument("--tiny", action="store_true", help="tiny sizes for smoke tests")
    p.add_argument(
        "--only", nargs="+", choices=("filter", "seeds"), default=["filter", "seeds"],
        help="which measurements to run",
    )  # fmt: skip
    p.add_argument("--out", default=None, help="output JSON (default in --out-dir)")
    p.add_argument("--out-dir", default=os.path.join(HERE, "results"), help="default folder")
    args = p.parse_args(argv)
    if args.tiny:
        args.sizes, args.dim, args.k, args.seeds, args.widths, args.steps = [50], 6, 2, 2, [8], 4
        args.repeats = min(args.repeats, 1)

    import jax
    import jaxlib
    import optax

    import jaxdyn

    d = jax.devices()[0]
    results = {}
    if "filter" in args.only:
        results["filter"] = filter_bench(args)
    if "seeds" in args.only:
        results["seeds_vmap_vs_loop"] = seeds_bench(args)
        r = results["seeds_vmap_vs_loop"]
        print(
            f"seeds: vmap {r['vmap']['median_s']:.3g} s, loop {r['loop']['median_s']:.3g} s, "
            f"speedup {r['speedup_vmap_over_loop_cpu']:.3g} (CPU)",
            flush=True,
        )
    C.save_results(
        args,
        "frequency",
        1,
        C.metadata(
            {
                "jax": jax.__version__,
                "jaxlib": jaxlib.__version__,
                "jaxdyn": jaxdyn.__version__,
                "optax": optax.__version__,
                "device": f"{d.platform}:{getattr(d, 'device_kind', '')}",
                "repeats": args.repeats,
                "repeats_large": args.repeats_large,
                "dtype": "float32",
                "tiny": args.tiny,
                "environment": C.environment(),
                "peak_rss_mib": C.peak_rss_mib(),
            }
        ),
        results,
        f"frequency_{d.platform}_{C.today()}.json",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
