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
2. monte_carlo_per_sample: NNGP + NTK Monte-Carlo estimates of a Dense(--width)-Relu-Dense(1)
   network (NTK parameterisation, W_std = 1, b_std = 0) on --mc-n points (numpy draws from one
   seed), --mc-samples samples, seconds per sample (median of --repeats calls after the first):
   - jaxdyn: `jaxdyn.monte_carlo_kernel_fn` of the `jaxdyn.nets` network, in this process;
   - neural-tangents: `nt.monte_carlo_kernel_fn(..., batch_size=b, vmap_axes=0,
     implementation=i, trace_axes=(-1,))` of the same `stax` network for each i in
     --nt-implementations and b in --nt-batch-sizes, each in a fresh subprocess of --nt-python
     (benchmarks/nt_reference/nt_monte_carlo.py; status "skipped" when that venv is missing);
   - the ratio NT's fastest per sample / jaxdyn's per sample;
   - an agreement check at --mc-check-samples samples: both sides' mean NNGP / NTK diagonals
     against each other (different RNGs: statistical agreement, z-scores from block standard
     errors) and against the analytic kernel.
   --sections monte_carlo runs only this part (output name gets `_mc`).

Output: benchmarks/results/matrix_free_<device>_<date>.json (or --out).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "nt_reference"))

import _common as C
import nt_monte_carlo as nt_mc

# The Monte-Carlo workload: jaxdyn.nets.Dense's defaults, passed explicitly to both libraries
# (neural-tangents' stax.Dense defaults to b_std=None, no bias).
MC_W_STD, MC_B_STD = 1.0, 0.0
MC_INPUT_SEED, MC_KEY = 1, 0
SECTIONS = ("matrix_free", "monte_carlo")


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
    row["cg"], (_, test_cg) = C.time_calls(lambda: free(None, f0, f0_test, vp_test), args.repeats)
    row["cg"]["products"] = free.info.products
    row["cg"]["residual"] = free.info.error
    t = np.array([args.t])
    row["lanczos"], (_, test_lz) = C.time_calls(lambda: free(t, f0, f0_test, vp_test), args.repeats)
    row["lanczos"]["products"] = free.info.products
    row["lanczos"]["error_estimate"] = free.info.error
    if n <= args.dense_max_n:

        def dense():
            k = jaxdyn.empirical_ntk(apply_fn, params, x)
            kt = jaxdyn.empirical_ntk(apply_fn, params, x_test, x)
            pred = jaxdyn.dynamics.mse(k, y, diag_reg=args.diag_reg)
            return pred(None, f0, f0_test, kt), pred(t, f0, f0_test, kt)

        row["dense"], ((_, test_inf), (_, test_t)) = C.time_calls(dense, args.repeats)
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
    """jaxdyn's and neural-tangents' `monte_carlo_kernel_fn` on one workload (see the module
    docstring): timings, the per-sample ratio and the statistical agreement check."""
    work = {
        "n": args.mc_n,
        "d_in": args.d_in,
        "width": args.width,
        "W_std": MC_W_STD,
        "b_std": MC_B_STD,
        "input_seed": MC_INPUT_SEED,
        "key": MC_KEY,
        "x64": bool(args.x64),
    }
    jd = _jaxdyn_monte_carlo(args, work)
    nt_side = _nt_monte_carlo(args, work)
    out = {
        "workload": {
            **work,
            "samples": args.mc_samples,
            "network": f"Dense({args.width}, W_std={MC_W_STD}, b_std={MC_B_STD})-Relu-"
            f"Dense(1, W_std={MC_W_STD}, b_std={MC_B_STD}), NTK parameterisation",
            "get": ["nngp", "ntk"],
            "inputs": f"numpy default_rng({MC_INPUT_SEED}).normal(size=(n, d_in))",
        },
        "jaxdyn": jd,
        "neural_tangents": nt_side,
        "ratio_nt_per_sample_over_jaxdyn": None,
        "ratio_nt_per_sample_cpu_over_jaxdyn": None,
        "ratio_note": "NT's fastest configuration's median seconds per sample / jaxdyn's "
        "fastest; > 1 "
        "means jaxdyn is faster. Per sample = median of the repeated calls (first call, "
        "with compilation, excluded) / samples.",
    }
    best = nt_side.get("best")
    if best is not None:
        out["ratio_nt_per_sample_over_jaxdyn"] = best["per_sample_s"] / jd["per_sample_s"]
        out["ratio_nt_per_sample_cpu_over_jaxdyn"] = (
            best["per_sample_cpu_s"] / jd["per_sample_cpu_s"]
        )
        out["inputs_identical"] = best["inputs_checksum"] == jd["inputs_checksum"]
    out["agreement"] = _agreement(jd.get("check"), nt_side.get("check"))
    ratio = out["ratio_nt_per_sample_over_jaxdyn"]
    print(
        f"monte carlo: jaxdyn {jd['per_sample_s'] * 1e3:.3g} ms per sample"
        + (
            f", neural-tangents {best['per_sample_s'] * 1e3:.3g} ms ({best['variant']}), "
            f"ratio {ratio:.3g}"
            if best
            else f", neural-tangents {nt_side['status']}: {nt_side.get('note', '')}"
        ),
        flush=True,
    )
    return out


def _jaxdyn_monte_carlo(args, work: dict) -> dict:
    """jaxdyn's side, in this process: each --mc-sample-batch-sizes value timed (the same
    samples: the keys do not depend on it), the fastest reported, then the check with it."""
    import jax

    import jaxdyn
    from jaxdyn import nets

    init_fn, apply_fn, kernel_fn = nets.serial(
        nets.Dense(args.width, W_std=MC_W_STD, b_std=MC_B_STD),
        nets.Relu(),
        nets.Dense(1, W_std=MC_W_STD, b_std=MC_B_STD),
    )
    x = jax.numpy.asarray(nt_mc.inputs(args.mc_n, args.d_in, MC_INPUT_SEED, work["x64"]))
    key = jax.random.PRNGKey(MC_KEY)
    configs = []
    for group in sorted({min(args.mc_samples, g) for g in args.mc_sample_batch_sizes}):
        mc = jaxdyn.monte_carlo_kernel_fn(
            init_fn, apply_fn, key, args.mc_samples, sample_batch_size=group
        )
        timing, est = nt_mc.time_calls(lambda mc=mc: mc(x), args.repeats)
        configs.append(
            {
                "variant": f"sample_batch_size={group}",
                "call": f"jaxdyn.monte_carlo_kernel_fn(init_fn, apply_fn, key, "
                f"{args.mc_samples}, sample_batch_size={group})(x)",
                "sample_batch_size": group,
                **timing,
                "per_sample_s": timing["median_s"] / args.mc_samples,
                "per_sample_cpu_s": timing["median_cpu_s"] / args.mc_samples,
                **nt_mc.mean_diagonals(est.nngp, est.ntk),
            }
        )
        print(
            f"[jaxdyn] monte carlo sample_batch_size={group}: "
            f"{configs[-1]['per_sample_s'] * 1e3:.3g} ms per sample (first call "
            f"{timing['first_call_s']:.3g} s)",
            flush=True,
        )
    best = min(configs, key=lambda r: r["per_sample_s"])
    rec = {
        "library": "jaxdyn",
        **{k: best[k] for k in ("variant", "call", "sample_batch_size")},
        **{k: best[k] for k in ("first_call_s", "median_s", "median_cpu_s")},
        **{k: best[k] for k in ("per_sample_s", "per_sample_cpu_s")},
        "inputs_checksum": nt_mc.checksum(x),
        "configs": configs,
    }
    exact = kernel_fn(x)
    rec["analytic"] = nt_mc.mean_diagonals(exact.nngp, exact.ntk)
    if args.mc_check_samples > 0:
        counts = nt_mc.check_counts(args.mc_check_samples, args.mc_check_blocks)
        check = jaxdyn.monte_carlo_kernel_fn(
            init_fn, apply_fn, key, counts, sample_batch_size=best["sample_batch_size"]
        )
        t0 = time.perf_counter()
        prefix = [nt_mc.mean_diagonals(k.nngp, k.ntk) for k in check(x)]
        rec["check"] = {"wall_s": time.perf_counter() - t0, **nt_mc.block_stats(counts, prefix)}
        rec["check"]["analytic"] = rec["analytic"]
    rec["peak_rss_mib"] = C.peak_rss_mib()
    return rec


def _nt_monte_carlo(args, work: dict) -> dict:
    """NT's side: every (implementation, batch size) in a fresh subprocess of --nt-python,
    then the agreement check with the fastest configuration. Never raises: a missing venv or a
    failed worker is a status."""
    if not os.path.exists(args.nt_python):
        return {
            "status": "skipped",
            "note": f"--nt-python {args.nt_python} does not exist (build the reference venv: "
            "see benchmarks/README.md)",
            "nt_python": args.nt_python,
        }
    n = args.mc_n
    batches = []
    for b in C.parse_batch_sizes(args.nt_batch_sizes):
        # NT's batch size must divide n; one at or above n is the unbatched kernel
        if b is None or (b < n and n % b == 0):
            batches.append(b)
    configs = []
    for impl in args.nt_implementations:
        for b in batches:
            spec = {
                **work,
                "role": "time",
                "samples": args.mc_samples,
                "repeats": args.repeats,
                "implementation": impl,
                "batch_size": b,
            }
            res = nt_mc.run_spec(spec, args.nt_python, args.timeout, args.max_rss_gb)
            configs.append(res)
            msg = (
                f"{res['per_sample_s'] * 1e3:.3g} ms per sample (first call "
                f"{res['first_call_s']:.3g} s)"
                if res.get("status") == "ok"
                else f"{res.get('status')}: {res.get('note', '')}"
            )
            print(f"[nt] monte carlo impl{impl} batch_size={b}: {msg}", flush=True)
    ok = [r for r in configs if r.get("status") == "ok"]
    side = {
        "status": "ok" if ok else "error",
        "nt_python": args.nt_python,
        "configs": configs,
        "best": None,
        "check": None,
    }
    if not ok:
        side["note"] = "no neural-tangents configuration ran (see configs)"
        return side
    best = min(ok, key=lambda r: r["per_sample_s"])
    side["best"] = {
        k: best[k]
        for k in (
            "variant",
            "implementation",
            "batch_size",
            "call",
            "first_call_s",
            "median_s",
            "median_cpu_s",
            "per_sample_s",
            "per_sample_cpu_s",
            "inputs_checksum",
        )
    }
    side["versions"] = {k: v for k, v in best["versions"].items() if k != "environment"}
    # every configuration uses the same key, hence the same samples: equal up to rounding
    ref = ok[0]
    side["max_rel_diff_between_configs"] = max(
        abs(r[name] - ref[name]) / abs(ref[name])
        for r in ok
        for name in ("nngp_mean_diag", "ntk_mean_diag")
    )
    if args.mc_check_samples > 0:
        spec = {
            **work,
            "role": "check",
            "check_samples": args.mc_check_samples,
            "blocks": args.mc_check_blocks,
            "implementation": best["implementation"],
            "batch_size": best["batch_size"],
        }
        side["check"] = nt_mc.run_spec(spec, args.nt_python, args.timeout, args.max_rss_gb)
    return side


def _agreement(jd: dict | None, nt: dict | None) -> dict:
    """Both sides' mean NNGP/NTK diagonals at the check's sample count, against each other and
    against the infinite-width kernel (exact in expectation for one hidden layer)."""
    note = (
        "The two libraries draw their initialisations with different RNG streams, so the "
        "estimates agree only statistically: z = difference / sqrt(se_jaxdyn^2 + se_nt^2), "
        "with standard errors from the spread of equal-size block means of one pass; "
        "|z| < 4 is counted as agreement. For this one-hidden-layer network both estimates are "
        "unbiased for the analytic kernel (nets.kernel_fn) at any width."
    )
    if not jd or not nt or nt.get("status") != "ok":
        return {"status": "skipped", "note": "needs both sides' check runs", "method": note}
    out = {"status": "ok", "samples": jd["samples"], "blocks": jd["blocks"], "method": note}
    for name in ("nngp_mean_diag", "ntk_mean_diag"):
        a, b, exact = jd[name], nt[name], jd["analytic"][name]
        se = (jd[name + "_se"] ** 2 + nt[name + "_se"] ** 2) ** 0.5 if jd[name + "_se"] else None
        out[name] = {
            "jaxdyn": a,
            "neural_tangents": b,
            "analytic": exact,
            "rel_diff": abs(a - b) / abs(exact),
            "jaxdyn_rel_err": abs(a - exact) / abs(exact),
            "nt_rel_err": abs(b - exact) / abs(exact),
            "z": (a - b) / se if se else None,
        }
    zs = [out[k]["z"] for k in ("nngp_mean_diag", "ntk_mean_diag")]
    out["agree"] = all(z is not None and abs(z) < 4 for z in zs)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--sections",
        nargs="+",
        default=list(SECTIONS),
        choices=SECTIONS,
        help="what to run (default both; only monte_carlo: output name gets _mc)",
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
    p.add_argument(
        "--mc-sample-batch-sizes",
        type=int,
        nargs="+",
        default=[1, 32],
        help="jaxdyn's sample_batch_size values (samples vmapped together; default 1 32)",
    )
    p.add_argument(
        "--mc-check-samples",
        type=int,
        default=1024,
        help="samples of the agreement check, one untimed pass per side (0: no check)",
    )
    p.add_argument("--mc-check-blocks", type=int, default=16, help="blocks for its std errors")
    p.add_argument(
        "--nt-python",
        default="/tmp/ntref/bin/python",
        help="interpreter of the neural-tangents reference venv (default /tmp/ntref/bin/python; "
        "missing: NT's side is recorded as skipped)",
    )
    p.add_argument(
        "--nt-implementations",
        type=int,
        nargs="+",
        default=list(nt_mc.IMPLEMENTATIONS),
        choices=nt_mc.IMPLEMENTATIONS,
        help="NT implementations (default 1 2 3)",
    )
    p.add_argument(
        "--nt-batch-sizes",
        nargs="+",
        default=["none", "32"],
        help="NT batch sizes; 'none' = unbatched; used only when below and dividing --mc-n "
        "(default: none 32)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per NT subprocess")
    p.add_argument(
        "--max-rss-gb",
        type=float,
        default=round(0.6 * C.total_ram_gib(), 1),
        help="kill an NT subprocess above this RSS in GiB (default 60%% of RAM)",
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--x64", action="store_true", help="float64 (default float32)")
    p.add_argument("--tiny", action="store_true", help="smoke-test sizes")
    p.add_argument("--out", default=None)
    p.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)
    load_at_start = list(os.getloadavg())  # C.metadata below runs after the measurements
    if args.tiny:
        args.sizes, args.dense_max_n, args.m, args.d_in, args.width = [16, 32], 16, 4, 4, 8
        args.mc_n, args.mc_samples, args.repeats, args.krylov_dim = 4, 4, 1, 16
        args.mc_check_samples, args.mc_check_blocks = 16, 4
        args.nt_implementations, args.nt_batch_sizes = [3], ["none"]
        args.mc_sample_batch_sizes = [2]

    import jax

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import jaxlib

    import jaxdyn

    dtype = jnp.float64 if args.x64 else jnp.float32
    results = {}
    if "matrix_free" in args.sections:
        results["matrix_free_vs_dense"] = matrix_free_vs_dense(args, dtype)
    if "monte_carlo" in args.sections:
        results["monte_carlo_per_sample"] = monte_carlo_per_sample(args, dtype)
    d = jax.devices()[0]
    suffix = ("_mc" if "matrix_free" not in args.sections else "") + ("_tiny" if args.tiny else "")
    meta = C.metadata(
        {
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "jaxdyn": jaxdyn.__version__,
            "device": f"{d.platform}:{d.device_kind}",
            "repeats": args.repeats,
            "dtype": "float64" if args.x64 else "float32",
            "sections": args.sections,
            "args": vars(args),
        }
    )
    meta["loadavg_at_end"] = meta.pop("loadavg_at_start", None)
    meta["loadavg_at_start"] = load_at_start
    C.save_results(
        args, "matrix_free", 2, meta, results, f"matrix_free_{d.platform}_{C.today()}{suffix}.json"
    )


if __name__ == "__main__":
    main()
