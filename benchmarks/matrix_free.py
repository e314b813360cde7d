"""Benchmarks of the matrix-free NTK dynamics and the Monte-Carlo kernels.

1. matrix_free_vs_dense: t = infinity test predictions (and one finite-t Krylov prediction) of a
   one-hidden-layer tanh MLP (--d-in inputs, --width hidden, 1 output) on n train points, for
   each n in --sizes:
   - dense: `jaxdyn.empirical_ntk` (train-train and test-train) + `dynamics.mse(...)(None, ...)`
     (Cholesky), only for n <= --dense-max-n (the n x n kernel must fit);
   - cg: `dynamics.mse_matrix_free(jaxdyn.ntk_vp_fn(...), diag_reg=--diag-reg)(None, ...)`:
     conjugate gradients on NTK-vector products (a vjp and a jvp per product), no kernel;
   - lanczos: the same predictor at --t (finite time, Krylov basis of at most --krylov-dim).
   Reported: first call (compile + run), median of --repeats, products used, the max abs
   difference to dense where both ran, and peak RSS after each n.
2. monte_carlo_per_sample: `jaxdyn.monte_carlo_kernel_fn` (NNGP + NTK) of a Dense(--width)-Relu-
   Dense(1) `jaxdyn.nets` network on --mc-n points, --mc-samples samples: seconds per sample.
   (neural-tangents' `monte_carlo_kernel_fn` side by side needs its pinned environment, which
   this script does not run.)

Output: benchmarks/results/matrix_free_<device>_<date>.json (or --out).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _common as C


def _time(fn, repeats: int):
    import jax
    import numpy as np

    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    median = float(np.median(times)) if times else float("nan")
    return {
        "first_call_s": first,
        "times_s": times,
        "median_s": median,
        "compile_s_est": max(first - median, 0.0) if times else first,
    }, out


def matrix_free_vs_dense(args, dtype) -> list[dict]:
    return [_size_row(args, dtype, n) for n in args.sizes]


def _size_row(args, dtype, n: int) -> dict:
    import jax.numpy as jnp
    import numpy as np

    import jaxdyn

    rng = np.random.default_rng(0)
    d, h = args.d_in, args.width
    params = {
        "w1": jnp.asarray(rng.normal(size=(d, h)), dtype),
        "b1": jnp.asarray(rng.normal(size=(h,)), dtype),
        "w2": jnp.asarray(rng.normal(size=(h, 1)), dtype),
    }

    def apply_fn(p, x):
        z = jnp.tanh(x @ p["w1"] / np.sqrt(p["w1"].shape[0]) + 0.1 * p["b1"])
        return z @ p["w2"] / np.sqrt(p["w2"].shape[0])

    x = jnp.asarray(rng.normal(size=(n, d)), dtype)
    x_test = jnp.asarray(rng.normal(size=(args.m, d)), dtype)
    y = jnp.sin(x[:, :1])
    f0, f0_test = apply_fn(params, x), apply_fn(params, x_test)
    block = None if n <= args.block else args.block
    row = {"n": n, "m": args.m, "params": d * h + h + h, "block": block}

    vp = jaxdyn.ntk_vp_fn(apply_fn, params, x, batch_size=block)
    vp_test = jaxdyn.ntk_vp_fn(apply_fn, params, x_test, x, batch_size=block)
    mean_diag = vp.mean_diagonal()  # once; the ridge is relative to it, as in dynamics.mse
    free = jaxdyn.dynamics.mse_matrix_free(
        vp,
        y,
        diag_reg=args.diag_reg,
        tol=args.tol,
        krylov_dim=args.krylov_dim,
        mean_diagonal=mean_diag,
    )
    row["cg"], (_, test_cg) = _time(lambda: free(None, f0, f0_test, vp_test), args.repeats)
    row["cg"]["products"] = free.info.products
    row["cg"]["residual"] = free.info.error
    t = np.array([args.t])
    row["lanczos"], (_, test_lz) = _time(lambda: free(t, f0, f0_test, vp_test), args.repeats)
    row["lanczos"]["products"] = free.info.products
    row["lanczos"]["error_estimate"] = free.info.error
    if n <= args.dense_max_n:

        def dense():
            k = jaxdyn.empirical_ntk(apply_fn, params, x)
            kt = jaxdyn.empirical_ntk(apply_fn, params, x_test, x)
            pred = jaxdyn.dynamics.mse(k, y, diag_reg=args.diag_reg)
            return pred(None, f0, f0_test, kt), pred(t, f0, f0_test, kt)

        row["dense"], ((_, test_inf), (_, test_t)) = _time(dense, args.repeats)
        row["max_abs_diff_cg_vs_dense"] = float(jnp.max(jnp.abs(test_cg - test_inf)))
        row["max_abs_diff_lanczos_vs_dense"] = float(jnp.max(jnp.abs(test_lz - test_t)))
        row["speedup_cg_vs_dense"] = row["dense"]["median_s"] / row["cg"]["median_s"]
    row["peak_rss_mib"] = C.peak_rss_mib()
    print(
        f"n={n}: cg {row['cg']['median_s']:.3g}s ({row['cg']['products']} products), "
        f"lanczos {row['lanczos']['median_s']:.3g}s ({row['lanczos']['products']}), "
        + (f"dense {row['dense']['median_s']:.3g}s, " if "dense" in row else "")
        + f"peak RSS {row['peak_rss_mib']:.0f} MiB",
        flush=True,
    )
    return row


def monte_carlo_per_sample(args, dtype) -> dict:
    import jax
    import numpy as np

    import jaxdyn
    from jaxdyn import nets

    init_fn, apply_fn, _ = nets.serial(nets.Dense(args.width), nets.Relu(), nets.Dense(1))
    x = np.random.default_rng(1).normal(size=(args.mc_n, args.d_in)).astype(dtype)
    mc = jaxdyn.monte_carlo_kernel_fn(
        init_fn,
        apply_fn,
        jax.random.PRNGKey(0),
        args.mc_samples,
        sample_batch_size=min(args.mc_samples, 32),
    )
    timing, _ = _time(lambda: mc(x), args.repeats)
    timing["n"], timing["samples"] = args.mc_n, args.mc_samples
    timing["per_sample_s"] = timing["median_s"] / args.mc_samples
    print(f"monte carlo: {timing['per_sample_s'] * 1e3:.3g} ms per sample", flush=True)
    return timing


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    p.add_argument("--dense-max-n", type=int, default=4096, help="largest n for the dense path")
    p.add_argument("--m", type=int, default=64, help="test points (default 64)")
    p.add_argument("--d-in", type=int, default=32)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--block", type=int, default=4096, help="rows per vjp/jvp block (large n)")
    p.add_argument("--diag-reg", type=float, default=1e-3)
    p.add_argument("--tol", type=float, default=None)
    p.add_argument("--t", type=float, default=1000.0, help="finite time for Lanczos")
    p.add_argument("--krylov-dim", type=int, default=128)
    p.add_argument("--mc-n", type=int, default=64)
    p.add_argument("--mc-samples", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--x64", action="store_true", help="float64 (default float32)")
    p.add_argument("--tiny", action="store_true", help="smoke-test sizes")
    p.add_argument("--out", default=None)
    p.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)
    if args.tiny:
        args.sizes, args.dense_max_n, args.m, args.d_in, args.width = [16, 32], 16, 4, 4, 8
        args.mc_n, args.mc_samples, args.repeats, args.krylov_dim = 4, 4, 1, 16

    import jax

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import jaxlib

    import jaxdyn

    dtype = jnp.float64 if args.x64 else jnp.float32
    results = {
        "matrix_free_vs_dense": matrix_free_vs_dense(args, dtype),
        "monte_carlo_per_sample": monte_carlo_per_sample(args, dtype),
    }
    d = jax.devices()[0]
    C.save_results(
        args,
        "matrix_free",
        1,
        C.metadata(
            {
                "jax": jax.__version__,
                "jaxlib": jaxlib.__version__,
                "jaxdyn": jaxdyn.__version__,
                "device": f"{d.platform}:{d.device_kind}",
                "repeats": args.repeats,
                "dtype": "float64" if args.x64 else "float32",
                "args": vars(args),
            }
        ),
        results,
        f"matrix_free_{d.platform}_{C.today()}{'_tiny' if args.tiny else ''}.json",
    )


if __name__ == "__main__":
    main()
