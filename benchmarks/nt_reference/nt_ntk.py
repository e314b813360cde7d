"""The workloads of benchmarks/ntk.py with neural-tangents' empirical NTK (reference).

Runs in the reference venv (jax 0.4.23, neural-tangents 0.6.5; see requirements.txt and
benchmarks/README.md), never in jaxdyn's. For each implementation in --implementations
(1 = Jacobian contraction, 2 = NTK-vector products, 3 = structured derivatives) and batch
size, `jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), implementation=i, vmap_axes=0))`
is timed on (x, None, params); batched kernels are `nt.batch(that, batch_size=b)`. For n <=
--default-max-n, implementation 3 is also timed with neural-tangents' default `vmap_axes=None`
(variant `impl3_default`): how it is called unless one knows to pass `vmap_axes=0`, and how
the project issue's reference timings were taken (its 19 / 9 / 3.9 s at MLP n=128 are
implementations 1 / 2 / 3 with that default). Each
workload runs in its own subprocess; the JSON schema is the one of benchmarks/ntk.py with
`library="neural_tangents"` and `variant="impl<i>"`.

Output: benchmarks/results/nt_ntk_<device>_<date>.json (or --out).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
sys.path.insert(0, BENCH)

import _common as C

IMPLEMENTATIONS = (1, 2, 3)


def worker(spec: dict) -> dict:
    import jax
    if spec["x64"]:
        jax.config.update("jax_enable_x64", True)
    import neural_tangents as nt

    apply_fn, params, x, k, num_params = C.build_model(spec["model"], spec["n"], spec["tiny"], spec["x64"])
    jax.block_until_ready((params, x))
    variant = f"impl{spec['implementation']}" + ("_default" if spec.get("nt_default") else "")
    b = spec["n"] if spec["batch_size"] is None else spec["batch_size"]
    if spec["implementation"] == 1:
        # Jacobians of the block inputs (one when x2 is None and unbatched, two per block when
        # nt.batch passes separate x1/x2 blocks): the estimate jaxdyn's cost model uses.
        n_jac = 1 if spec["batch_size"] is None else 2
        predicted_gib = n_jac * b * k * num_params * x.dtype.itemsize / 2**30
        if predicted_gib > spec.get("max_rss_gib", float("inf")):
            return {**spec, "status": "skipped_memory", "library": "neural_tangents", "variant": variant,
                    "note": (f"not run: Jacobians of a {b}x{b} block need about {predicted_gib:.3g} GiB, "
                             f"over --max-rss-gb={spec['max_rss_gib']:g} (would run out of memory)")}
    rss_before = C.peak_rss_mib()
    # vmap_axes=0 tells NT that examples are independent; its default (None) does not
    vmap = {} if spec.get("nt_default") else {"vmap_axes": 0}
    kfn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), implementation=spec["implementation"],
                                      **vmap))
    if spec["batch_size"] is not None:
        kfn = nt.batch(kfn, batch_size=spec["batch_size"])
    timing = C.time_kernel(lambda: kfn(x, None, params), spec["repeats"])
    return C.ok_record(spec, "neural_tangents", variant, k, num_params, timing, rss_before,
                       versions=versions())


def versions() -> dict:
    import neural_tangents as nt
    return C.device_versions(neural_tangents=nt.__version__)


def specs_for(workload: dict, args) -> list[dict]:
    """NT specs of one (model, n, batch_size) workload: implementations 1 and 2 only for
    n <= --slow-max-n (they take minutes per call above it on a CPU), batch sizes only from
    --batch-sizes."""
    n, b = workload["n"], workload["batch_size"]
    if b not in C.parse_batch_sizes(args.batch_sizes):
        return []
    slow_max_n = getattr(args, "slow_max_n", None)
    specs = [{**workload, "implementation": i, "repeats": C.repeats_for(n, args), "x64": args.x64,
              "tiny": args.tiny, "max_rss_gib": args.max_rss_gb}
             for i in args.implementations if i == 3 or slow_max_n is None or n <= slow_max_n]
    # NT's default vmap_axes=None (the timings): implementation 3 only (the fastest
    # with that default too), and only up to --default-max-n (about a minute per call there).
    if 3 in args.implementations and n <= getattr(args, "default_max_n", 0):
        specs.append({**specs[-1], "implementation": 3, "nt_default": True,
                      "repeats": min(C.repeats_for(n, args), 2)})
    return specs


def run_spec(spec: dict, args, python: str | None = None) -> dict:
    cmd = [python or sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    res = C.run_worker(cmd, C.timeout_for(spec["n"], args), args.max_rss_gb, env=C.python_env())
    if res.get("status") != "ok":
        res = {**spec, "library": "neural_tangents", "variant": f"impl{spec['implementation']}", **res}
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 512], help="MLP sizes n (default 128 512)")
    p.add_argument("--cnn-n", type=int, nargs="+", default=[64], help="CNN sizes n (0 skips the CNN; default 64)")
    p.add_argument("--wrn-n", type=int, nargs="+", default=[64], help="Wide ResNet sizes n (0 skips it; default 64)")
    p.add_argument("--batch-sizes", nargs="+", default=["none", "64"],
                   help="batch sizes; 'none' = unbatched; used only when below n (default: none 64)")
    p.add_argument("--implementations", type=int, nargs="+", default=list(IMPLEMENTATIONS),
                   choices=IMPLEMENTATIONS, help="NT implementations (default 1 2 3)")
    p.add_argument("--slow-max-n", type=int, default=None,
                   help="run implementations 1 and 2 only for n <= this (default: always)")
    p.add_argument("--default-max-n", type=int, default=512,
                   help="also time implementation 3 with NT's default vmap_axes=None for n <= this (default 512; 0: never)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls after the first (default 3; 0: report the first call, compile included)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per workload subprocess (default 300)")
    p.add_argument("--max-rss-gb", type=float, default=round(0.6 * C.total_ram_gib(), 1),
                   help="kill a workload above this RSS in GiB, recorded as oom (default 60%% of RAM)")
    p.add_argument("--x64", action="store_true", help="float64 (default float32)")
    p.add_argument("--tiny", action="store_true", help="tiny models for smoke tests")
    p.add_argument("--out", default=None, help="output JSON path")
    p.add_argument("--out-dir", default=os.path.join(BENCH, "results"), help="folder for the default output name")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker is not None:
        C.emit(worker(json.loads(args.worker)))
        return 0
    if args.x64:
        import jax
        jax.config.update("jax_enable_x64", True)
    ver = versions()
    results = []
    for w in C.workloads(args.sizes, args.cnn_n, C.parse_batch_sizes(args.batch_sizes), args.wrn_n):
        for spec in specs_for(w, args):
            res = run_spec(spec, args)
            results.append(res)
            msg = (f"median {res['median_s']:.4g} s, first call {res['first_call_s']:.4g} s"
                   if res.get("status") == "ok" else f"{res.get('status')}: {res.get('note', '')}")
            print(f"[nt] {C.workload_name(w)} impl{spec['implementation']}: {msg}", flush=True)
    C.save_results(args, "ntk", 1, C.metadata({
        **ver, "repeats": args.repeats, "dtype": "float64" if args.x64 else "float32",
        "tiny": args.tiny, "per_workload_subprocess": True, "timeout_s": args.timeout,
        "max_rss_gib": args.max_rss_gb, "x2": "None (kernel of x against itself)"}), results,
        f"nt_ntk_{ver['device_platform']}_{C.today()}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
