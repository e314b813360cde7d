"""Convolutions inside loops: `jaxdyn.nets.Conv` (its derivatives in XLA's fast layout, see
jaxdyn/_nets_conv.py) against `lax.conv_general_dilated`'s own derivative rules.

Workload: the benchmark CNN (3x3 SAME conv 1 -> 32, ReLU, 3x3 SAME conv 32 -> 32, ReLU,
flatten, dense 10; NTK parameterization) on n = --n 28x28x1 inputs, float32. Timed, for each
of the two convolution implementations (`nets` = jaxdyn's `conv2d`, `lax` = the same network
with `nets.conv2d` replaced by the plain convolution for this run):
  * train_scan: --steps gradient-descent steps on an MSE loss under one `lax.scan`;
  * train_python: the same steps, one jitted gradient step per Python iteration;
  * ntk_blocked: the structured empirical NTK (traced) with `batch_size=--block`, i.e. one
    `lax.map` step per block of rows;
  * ntk_one_block: the same kernel with `batch_size=n` (Grams in one block; the factors of
    conv models still go in blocks of `jaxdyn._ntk_structured.CONV_BLOCK` rows).
Each: the first call (compile + run) apart from the median of --repeats calls.

Output: benchmarks/results/conv_loops_<device>_<date>.json (or --out).
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _common as C


def run(args, impl: str) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxdyn
    import jaxdyn._nets_conv as nets_conv
    from jaxdyn import nets

    original = nets.conv2d
    if impl == "lax":
        nets.conv2d = lambda x, W, s, p: nets_conv._conv(x, W, s, p, nets_conv._HWIO)
    try:
        cfg = C.TINY_CNN if args.tiny else C.CNN
        kw = dict(W_std=1.0, b_std=1.0, parameterization="ntk")
        conv = lambda: nets.Conv(cfg["channels"], (3, 3), padding="SAME", **kw)  # noqa: E731
        init_fn, apply_fn, _ = nets.serial(
            conv(), nets.Relu(), conv(), nets.Relu(), nets.Flatten(), nets.Dense(cfg["out"], **kw)
        )
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.standard_normal((args.n, cfg["hw"], cfg["hw"], 1)), jnp.float32)
        y = jnp.asarray(rng.standard_normal((args.n, cfg["out"])), jnp.float32)
        _, params = init_fn(jax.random.PRNGKey(0), x.shape)
        loss = lambda p: jnp.mean((apply_fn(p, x) - y) ** 2)  # noqa: E731

        def step(p, _):
            g = jax.grad(loss)(p)
            return jax.tree.map(lambda a, b: a - 0.1 * b, p, g), None

        scan = jax.jit(lambda p: jax.lax.scan(step, p, None, length=args.steps)[0])
        one = jax.jit(lambda p: step(p, None)[0])

        def python_loop():
            p = params
            for _ in range(args.steps):
                p = one(p)
            return p

        blocked = jaxdyn.ntk_fn(apply_fn, method="structured", batch_size=args.block)
        single = jaxdyn.ntk_fn(apply_fn, method="structured", batch_size=args.n)
        out = {
            "train_scan": C.time_calls(lambda: scan(params), args.repeats)[0],
            "train_python": C.time_calls(python_loop, args.repeats)[0],
            "ntk_blocked": C.time_calls(lambda: blocked(x, None, params), args.repeats)[0],
            "ntk_one_block": C.time_calls(lambda: single(x, None, params), args.repeats)[0],
        }
        for name, r in out.items():
            print(f"[{impl}] {name}: median {r['median_s']:.4g} s", flush=True)
        return out
    finally:
        nets.conv2d = original


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--block", type=int, default=16, help="rows per block of the blocked NTK")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tiny", action="store_true", help="smoke-test sizes")
    p.add_argument("--out", default=None)
    p.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)
    if args.tiny:
        args.n, args.steps, args.block, args.repeats = 8, 2, 4, 1

    import jax
    import jaxlib

    import jaxdyn

    meta = C.metadata(
        {
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "jaxdyn": jaxdyn.__version__,
            "device": f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}",
            "tiny": args.tiny,
            "args": vars(args),
        }
    )
    results = {impl: run(args, impl) for impl in ("nets", "lax")}
    results["speedup_lax_over_nets"] = {
        k: results["lax"][k]["median_s"] / results["nets"][k]["median_s"] for k in results["nets"]
    }
    print(results["speedup_lax_over_nets"])
    d = jax.devices()[0]
    C.save_results(
        args,
        "conv_loops",
        1,
        meta,
        results,
        f"conv_loops_{d.platform}_{C.today()}{'_tiny' if args.tiny else ''}.json",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
