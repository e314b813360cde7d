"""Empirical-NTK benchmarks for jaxdyn.ntk_fn.

Workloads (traced NTK, trace_axes=(-1,), of x against itself, x2=None):
  * MLP 784-512-512-512-10, ReLU, NTK parameterisation (z = x @ W / sqrt(fan_in) + b), for
    n in --sizes (default 128 512; 2048 and 8192 are possible but slow with the current
    jacobian/ntvp methods on CPU);
  * CNN: two 3x3 SAME convolutions of 32 channels with ReLU (lax.conv_general_dilated),
    flatten, dense 10, on 28x28x1 inputs, n = --cnn-n (default 64).

For each method in --methods and batch size in --batch-sizes (a batch size is only used when
it is below n) one workload runs in its own fresh subprocess, so the peak RSS reported is that
workload's. Each records the first call (compile + one run) separately from the median of
--repeats timed calls (block_until_ready), the peak RSS, and an effective GFLOP/s from the
Jacobian-contraction flop count 2 n^2 k P. Workloads killed for memory (--max-rss-gb) or time
(--timeout) are recorded as "oom" / "timeout".

Output: benchmarks/results/ntk_<device>_<date>.json (or --out).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _common as C

METHODS = ("jacobian", "ntvp", "auto")


def worker(spec: dict) -> dict:
    """Runs one workload in this process (called in the child)."""
    import jax
    if spec["x64"]:
        jax.config.update("jax_enable_x64", True)
    import jaxdyn

    apply_fn, params, x, k, num_params = C.build_model(spec["model"], spec["n"], spec["tiny"], spec["x64"])
    jax.block_until_ready((params, x))
    rss_before = C.peak_rss_mib()
    cost = jaxdyn.ntk_cost(apply_fn, params, x, batch_size=spec["batch_size"])
    chosen = cost.method if spec["method"] == "auto" else spec["method"]
    predicted_gib = cost.memory_bytes[chosen] / 2**30
    if predicted_gib > spec.get("max_rss_gib", float("inf")):
        return {**spec, "status": "skipped_memory", "library": "jaxdyn", "variant": spec["method"],
                "resolved_method": chosen, "cost_model_memory_gib": predicted_gib,
                "note": (f"not run: jaxdyn's cost model predicts {predicted_gib:.3g} GiB for {chosen}, "
                         f"over --max-rss-gb={spec['max_rss_gib']:g} (would run out of memory)")}
    kernel = jaxdyn.ntk_fn(apply_fn, trace_axes=(-1,), method=spec["method"], batch_size=spec["batch_size"])
    timing = C.time_kernel(lambda: kernel(x, None, params), spec["repeats"])
    return C.ok_record(spec, "jaxdyn", spec["method"], k, num_params, timing, rss_before,
                       resolved_method=chosen,
                       auto_reason=cost.reason if spec["method"] == "auto" else None,
                       cost_model_memory_gib=predicted_gib)


def versions() -> dict:
    import jaxdyn
    return C.device_versions(jaxdyn=jaxdyn.__version__)


def specs(args) -> list[dict]:
    out = []
    for w in C.workloads(args.sizes, args.cnn_n, C.parse_batch_sizes(args.batch_sizes)):
        for m in args.methods:
            out.append({**w, "method": m, "repeats": args.repeats, "x64": args.x64, "tiny": args.tiny,
                        "max_rss_gib": args.max_rss_gb})
    return out


def run_spec(spec: dict, args, python: str | None = None) -> dict:
    """Runs one spec, in a subprocess unless --no-subprocess."""
    if args.no_subprocess:
        try:
            return worker(spec)
        except Exception as e:  # noqa: BLE001 - recorded, the run goes on
            status = "oom" if "RESOURCE_EXHAUSTED" in str(e) or isinstance(e, MemoryError) else "error"
            return {**spec, "library": "jaxdyn", "variant": spec["method"], "status": status,
                    "note": f"{type(e).__name__}: {str(e)[:500]}"}
    cmd = [python or sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    res = C.run_worker(cmd, args.timeout, args.max_rss_gb, env=C.python_env())
    if res.get("status") != "ok":
        res = {**spec, "library": "jaxdyn", "variant": spec["method"], **res}
    return res


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 512],
                   help="MLP sizes n (default: 128 512; 2048 8192 possible but slow on CPU)")
    p.add_argument("--cnn-n", type=int, default=64, help="CNN size n (0 skips the CNN; default 64)")
    p.add_argument("--batch-sizes", nargs="+", default=["none", "64"],
                   help="batch sizes; 'none' = unbatched; a size is used only when below n (default: none 64)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls after the first (default 3; 0: report the first call, compile included)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per workload subprocess (default 300)")
    p.add_argument("--max-rss-gb", type=float, default=round(0.6 * C.total_ram_gib(), 1),
                   help="kill a workload whose RSS exceeds this many GiB, recorded as oom (default 60%% of RAM)")
    p.add_argument("--x64", action="store_true", help="float64 (default float32)")
    p.add_argument("--tiny", action="store_true",
                   help="tiny models (MLP 16-32-32-4, CNN 6x6 with 4 channels) for smoke tests")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS,
                   help="jaxdyn methods (default: jacobian ntvp auto)")
    p.add_argument("--out", default=None, help="output JSON path (default benchmarks/results/ntk_<device>_<date>.json)")
    p.add_argument("--out-dir", default=os.path.join(HERE, "results"), help="folder for the default output name")
    p.add_argument("--no-subprocess", action="store_true",
                   help="run every workload in this process (fast smoke tests; peak RSS is then cumulative)")
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
    for spec in specs(args):
        res = run_spec(spec, args)
        results.append(res)
        msg = (f"median {res['median_s']:.4g} s, first call {res['first_call_s']:.4g} s, "
               f"peak RSS {res.get('peak_rss_mib', 0):.0f} MiB" if res.get("status") == "ok"
               else f"{res.get('status')}: {res.get('note', '')}")
        print(f"[jaxdyn] {C.workload_name(spec)} {spec['method']}: {msg}", flush=True)
    payload = {
        "benchmark": "ntk", "schema_version": 1,
        "meta": C.metadata({**ver, "repeats": args.repeats, "dtype": "float64" if args.x64 else "float32",
                            "tiny": args.tiny, "per_workload_subprocess": not args.no_subprocess,
                            "timeout_s": args.timeout, "max_rss_gib": args.max_rss_gb,
                            "x2": "None (kernel of x against itself)"}),
        "results": results,
    }
    out = args.out or os.path.join(args.out_dir, f"ntk_{ver['device_platform']}_{C.today()}.json")
    C.write_json(out, payload)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
