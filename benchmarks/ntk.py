"""Empirical-NTK benchmarks for jaxdyn.ntk_fn.

Workloads (traced NTK, trace_axes=(-1,), of x against itself, x2=None):
  * MLP 784-512-512-512-10, ReLU, NTK parameterisation (z = x @ W / sqrt(fan_in) + b), n in
    --sizes (default 128 512 2048 8192 20000);
  * CNN: two 3x3 SAME convolutions of 32 channels with ReLU, flatten, dense 10, on 28x28x1
    inputs, n in --cnn-n (default 64 256);
  * WRN: `jaxdyn.nets.WideResnet(2, 32, 10)` (3x3 SAME conv stem 1 -> 32, two pre-activation
    residual blocks x + Conv(Relu(Conv(Relu(x)))) of 32 channels, ReLU, global average pool,
    dense 10) on 28x28x1 inputs, n in --wrn-n (default 64).

Each workload exists twice, as the same function of the same numbers (parameters drawn with
numpy, shared): hand-written with jax (benchmarks/_common.py, what neural-tangents also runs)
and built with jaxdyn.nets.serial(Dense/Conv, Relu, Flatten), which carries
`apply_fn.linear_structure`. Methods (--methods):
  * jacobian, ntvp, auto: jaxdyn.ntk_fn on the hand-written model (no structure, so auto picks
    jacobian or ntvp); only for n <= --slow-max-n (default 128: minutes per call above it);
  * structured: ntk_fn(method="structured") on the nets model;
  * auto_nets: ntk_fn(method="auto") on the nets model (n <= --auto-nets-max-n);
  * matmul_floor (MLP and CNN, n <= --floor-max-n; benchmarks/_floors.py): a bare jitted
    function doing exactly the products the structured method needs (MLP: forward pass, the k
    output-gradient backward passes, per layer the input Gram and the output-gradient Gram;
    CNN: also the transposed convolution and the per-example weight-gradient products) and
    nothing else; its time is the floor the structured results are compared with
    (`ratio_to_matmul_floor`, `gflops_per_s` from `_common.mlp_matmul_flops` /
    `_floors.cnn_matmul_flops`).
Before timing a nets model the worker checks that its apply_fn equals the hand-written one on
the first 8 examples (`nets_check`; a mismatch is an error result).

For each method and batch size (a batch size is only used when it is below n; structured and
auto_nets run with --structured-batch-sizes, default `none` = ntk_fn chooses from its memory
budget) one workload runs in its own fresh subprocess, so the peak RSS reported is that
workload's. Each records the first call (compile + one run) separately from the median of
--repeats timed calls (--repeats-large for n >= --large-n), the peak RSS, the device and the
versions. Workloads killed for memory (--max-rss-gb) or time (--timeout, --timeout-large) are
recorded as "oom" / "timeout", exceptions as "error": a failure never stops the run.

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
import _floors as F

SLOW_METHODS = ("jacobian", "ntvp", "auto")  # hand-written model
NETS_METHODS = ("structured", "auto_nets")  # jaxdyn.nets model
FLOOR = "matmul_floor"
METHODS = SLOW_METHODS + NETS_METHODS + (FLOOR,)
NETS_CHECK_EXAMPLES = 8


def nets_model(name: str, tiny: bool, hw_apply, hw_params, x):
    """The jaxdyn.nets version of workload `name` with the hand-written model's parameter
    values, and a check that both compute the same function on `x[:8]`."""
    import jax
    import numpy as np

    from jaxdyn import nets

    if name == "mlp":
        widths = C.mlp_widths(tiny)
        layers = []
        for i, w in enumerate(widths[1:]):
            layers.append(nets.Dense(w, W_std=1.0, b_std=1.0, parameterization="ntk"))
            if i < len(widths) - 2:
                layers.append(nets.Relu())
    elif name == "cnn":
        cfg = C.TINY_CNN if tiny else C.CNN
        conv = lambda: nets.Conv(
            cfg["channels"], (3, 3), padding="SAME", W_std=1.0, b_std=1.0, parameterization="ntk"
        )
        layers = [
            conv(),
            nets.Relu(),
            conv(),
            nets.Relu(),
            nets.Flatten(),
            nets.Dense(cfg["out"], W_std=1.0, b_std=1.0, parameterization="ntk"),
        ]
    elif name == "wrn":
        cfg = C.TINY_WRN if tiny else C.WRN
        kw = dict(W_std=1.0, b_std=1.0, parameterization="ntk")
        layers = [nets.WideResnet(cfg["blocks"], cfg["channels"], cfg["out"], **kw)]
    else:
        raise ValueError(f"unknown model {name!r}")
    net = nets.serial(*layers) if len(layers) > 1 else layers[0]
    init_fn, apply_fn = net[0], net[1]
    params = C.nets_params(name, hw_params)
    _, ref = init_fn(jax.random.PRNGKey(0), tuple(x.shape))
    ref_shapes = jax.tree_util.tree_map(lambda a: tuple(a.shape), ref)
    got_shapes = jax.tree_util.tree_map(lambda a: tuple(a.shape), params)
    if ref_shapes != got_shapes:
        raise AssertionError(f"nets params layout {got_shapes} differs from init_fn's {ref_shapes}")
    xs = x[:NETS_CHECK_EXAMPLES]
    a = np.asarray(apply_fn(params, xs), np.float64)
    b = np.asarray(hw_apply(hw_params, xs), np.float64)
    diff, scale = float(np.max(np.abs(a - b))), float(np.max(np.abs(b)))
    tol = (1e-10 if x.dtype == np.float64 else 1e-5) * max(scale, 1.0)
    check = {
        "examples": int(xs.shape[0]),
        "max_abs_diff": diff,
        "max_abs_output": scale,
        "tol": tol,
    }
    if a.shape != b.shape or not diff <= tol:
        raise AssertionError(f"the jaxdyn.nets {name} differs from the hand-written one: {check}")
    return apply_fn, params, check


def _floor_worker(spec: dict, params, x, k, num_params, rss_before) -> dict:
    if spec["model"] == "cnn":
        f, ops = F.conv_floor_fn(params, x)
        timing = C.time_kernel(lambda: f(params, x, ops), spec["repeats"])
        flops = F.cnn_matmul_flops(spec["n"], spec["tiny"])
        return _floor_record(spec, k, num_params, timing, rss_before, flops)
    widths = C.mlp_widths(spec["tiny"])
    f = F.matmul_floor_fn(widths)
    timing = C.time_kernel(lambda: f(params, x), spec["repeats"])
    flops = C.mlp_matmul_flops(spec["n"], widths)
    return _floor_record(spec, k, num_params, timing, rss_before, flops)


def _floor_record(spec, k, num_params, timing, rss_before, flops) -> dict:
    rec = C.ok_record(
        spec,
        "matmul_floor",
        FLOOR,
        k,
        num_params,
        timing,
        rss_before,
        resolved_method=FLOOR,
        versions=versions(),
        matmul_flops=flops["total"],
        matmul_flops_breakdown=flops,
    )
    rec["gflops_per_s"] = flops["total"] / timing["median_s"] / 1e9
    return rec


def worker(spec: dict) -> dict:
    """Runs one workload in this process (called in the child)."""
    import jax

    if spec["x64"]:
        jax.config.update("jax_enable_x64", True)
    import jaxdyn

    method = spec["method"]
    apply_fn, params, x, k, num_params = C.build_model(
        spec["model"], spec["n"], spec["tiny"], spec["x64"]
    )
    jax.block_until_ready((params, x))
    if method == FLOOR:
        return _floor_worker(spec, params, x, k, num_params, C.peak_rss_mib())
    extra = {"model_impl": "jax"}
    if method in NETS_METHODS:
        apply_fn, params, check = nets_model(spec["model"], spec["tiny"], apply_fn, params, x)
        extra = {"model_impl": "jaxdyn.nets", "nets_check": check}
    jd_method = "auto" if method == "auto_nets" else method
    budget = spec.get("memory_budget_gib")
    kwargs = {} if budget is None else {"memory_budget": budget * 2**30}
    rss_before = C.peak_rss_mib()
    chosen, reason, predicted_gib = (method if method == "structured" else None), None, None
    try:
        cost = jaxdyn.ntk_cost(apply_fn, params, x, batch_size=spec["batch_size"], **kwargs)
        chosen = cost.method if jd_method == "auto" else jd_method
        reason = cost.reason if jd_method == "auto" else None
        mem = getattr(cost, "memory_bytes", {}) or {}
        predicted_gib = mem[chosen] / 2**30 if chosen in mem else None
    except Exception as e:  # noqa: BLE001 - the cost model is informative only
        extra["cost_model_error"] = f"{type(e).__name__}: {str(e)[:300]}"
    if (
        chosen in ("jacobian", "ntvp")
        and predicted_gib is not None
        and predicted_gib > spec.get("max_rss_gib", float("inf"))
    ):
        return {
            **spec,
            "status": "skipped_memory",
            "library": "jaxdyn",
            "variant": method,
            "resolved_method": chosen,
            "cost_model_memory_gib": predicted_gib,
            **extra,
            "note": (
                f"not run: jaxdyn's cost model predicts {predicted_gib:.3g} GiB for {chosen}, "
                f"over --max-rss-gb={spec['max_rss_gib']:g} (would run out of memory)"
            ),
        }
    kernel = jaxdyn.ntk_fn(
        apply_fn, trace_axes=(-1,), method=jd_method, batch_size=spec["batch_size"], **kwargs
    )
    timing = C.time_kernel(lambda: kernel(x, None, params), spec["repeats"])
    rec = C.ok_record(
        spec,
        "jaxdyn",
        method,
        k,
        num_params,
        timing,
        rss_before,
        resolved_method=chosen,
        auto_reason=reason,
        cost_model_memory_gib=predicted_gib,
        versions=versions(),
        **extra,
    )
    if chosen == "structured":
        flops = (
            C.mlp_matmul_flops(spec["n"], C.mlp_widths(spec["tiny"]))
            if spec["model"] == "mlp"
            else F.cnn_matmul_flops(spec["n"], spec["tiny"])
        )
        rec["matmul_flops"] = flops["total"]
        rec["gflops_per_s"] = flops["total"] / timing["median_s"] / 1e9
    return rec


def annotate_floor(results: list[dict]) -> None:
    """Adds `matmul_floor_s`, `ratio_to_matmul_floor` (time / floor time) and
    `floor_trace_rel_diff` to every ok structured MLP result with an ok floor at the same n."""
    floors = {
        (r["model"], r["n"]): r
        for r in results
        if r.get("variant") == FLOOR and r.get("status") == "ok"
    }
    for r in results:
        f = floors.get((r.get("model"), r.get("n")))
        if (
            f is None
            or r.get("status") != "ok"
            or r.get("library") != "jaxdyn"
            or r.get("resolved_method") != "structured"
        ):
            continue
        r["matmul_floor_s"] = f["median_s"]
        r["ratio_to_matmul_floor"] = r["median_s"] / f["median_s"]
        r["floor_trace_rel_diff"] = abs(r["kernel_trace"] - f["kernel_trace"]) / max(
            abs(f["kernel_trace"]), 1e-30
        )


def versions() -> dict:
    import jaxdyn

    return C.device_versions(jaxdyn=jaxdyn.__version__)


def specs_for(workload: dict, args) -> list[dict]:
    """The jaxdyn specs of one (model, n, batch_size) workload, in --methods order, after the
    size rules: jacobian/ntvp/auto only for n <= --slow-max-n and a batch size from
    --batch-sizes; structured/auto_nets with a batch size from --structured-batch-sizes
    (auto_nets only for n <= --auto-nets-max-n); matmul_floor (MLP and CNN) unbatched,
    n <= --floor-max-n."""
    n, b = workload["n"], workload["batch_size"]
    out = []
    for m in args.methods:
        if m in SLOW_METHODS:
            ok = n <= args.slow_max_n and b in C.parse_batch_sizes(args.batch_sizes)
        elif m in NETS_METHODS:
            ok = b in C.parse_batch_sizes(args.structured_batch_sizes) and (
                m == "structured" or n <= args.auto_nets_max_n
            )
        else:
            ok = workload["model"] in ("mlp", "cnn") and b is None and n <= args.floor_max_n
        if ok:
            out.append(
                {
                    **workload,
                    "method": m,
                    "repeats": C.repeats_for(n, args),
                    "x64": args.x64,
                    "tiny": args.tiny,
                    "max_rss_gib": args.max_rss_gb,
                    "memory_budget_gib": args.memory_budget_gb,
                }
            )
    return out


def all_workloads(args) -> list[dict]:
    bs = []
    for v in C.parse_batch_sizes(args.batch_sizes) + C.parse_batch_sizes(
        args.structured_batch_sizes
    ):
        if v not in bs:
            bs.append(v)
    return C.workloads(args.sizes, args.cnn_n, bs, getattr(args, "wrn_n", None))


def specs(args) -> list[dict]:
    return [s for w in all_workloads(args) for s in specs_for(w, args)]


def run_spec(spec: dict, args, python: str | None = None) -> dict:
    """Runs one spec, in a subprocess unless --no-subprocess."""
    if args.no_subprocess:
        try:
            return worker(spec)
        except Exception as e:  # noqa: BLE001 - recorded, the run goes on
            status = (
                "oom" if "RESOURCE_EXHAUSTED" in str(e) or isinstance(e, MemoryError) else "error"
            )
            lib = "matmul_floor" if spec["method"] == FLOOR else "jaxdyn"
            return {
                **spec,
                "library": lib,
                "variant": spec["method"],
                "status": status,
                "note": f"{type(e).__name__}: {str(e)[:500]}",
            }
    cmd = [python or sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    res = C.run_worker(cmd, C.timeout_for(spec["n"], args), args.max_rss_gb, env=C.python_env())
    if res.get("status") != "ok":
        lib = "matmul_floor" if spec["method"] == FLOOR else "jaxdyn"
        res = {**spec, "library": lib, "variant": spec["method"], **res}
    return res


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[128, 512, 2048, 8192, 20000],
        help="MLP sizes n (default: 128 512 2048 8192 20000)",
    )
    p.add_argument(
        "--cnn-n",
        type=int,
        nargs="+",
        default=[64, 256],
        help="CNN sizes n (0 skips the CNN; default 64 256)",
    )
    p.add_argument(
        "--wrn-n",
        type=int,
        nargs="+",
        default=[64],
        help="Wide ResNet sizes n (0 skips it; default 64)",
    )
    p.add_argument(
        "--batch-sizes",
        nargs="+",
        default=["none", "64"],
        help="batch sizes of the jacobian/ntvp/auto methods (and neural-tangents); 'none' = "
        "unbatched; a size is used only when below n (default: none 64)",
    )
    p.add_argument(
        "--structured-batch-sizes",
        nargs="+",
        default=["none"],
        help="batch sizes of structured/auto_nets; 'none' = ntk_fn's default, chosen from its "
        "memory budget (default: none)",
    )
    p.add_argument(
        "--slow-max-n",
        type=int,
        default=128,
        help="run jacobian/ntvp/auto (and neural-tangents' implementations 1 and 2) only for "
        "n <= this (default 128; they take minutes per call above it on a CPU)",
    )
    p.add_argument(
        "--default-max-n",
        type=int,
        default=512,
        help="neural-tangents side (compare_nt.py): also time implementation 3 with NT's default "
        "vmap_axes=None, for n <= this (default 512; 0: never)",
    )
    p.add_argument(
        "--auto-nets-max-n",
        type=int,
        default=8192,
        help="auto_nets only for n <= this (default 8192)",
    )
    p.add_argument(
        "--floor-max-n",
        type=int,
        default=8192,
        help="matmul_floor only for n <= this (default 8192)",
    )
    p.add_argument(
        "--memory-budget-gb",
        type=float,
        default=None,
        help="memory_budget passed to ntk_fn / ntk_cost in GiB (default: ntk_fn's own)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed calls after the first (default 3; 0: report the first call, compile included)",
    )
    p.add_argument(
        "--large-n",
        type=int,
        default=8192,
        help="n from which --repeats-large and --timeout-large apply (default 8192)",
    )
    p.add_argument(
        "--repeats-large",
        type=int,
        default=1,
        help="timed calls after the first for n >= --large-n (default 1)",
    )
    p.add_argument(
        "--timeout", type=float, default=300.0, help="seconds per workload subprocess (default 300)"
    )
    p.add_argument(
        "--timeout-large",
        type=float,
        default=1800.0,
        help="seconds per workload subprocess for n >= --large-n (default 1800)",
    )
    p.add_argument(
        "--max-rss-gb",
        type=float,
        default=round(0.6 * C.total_ram_gib(), 1),
        help="kill a workload whose RSS exceeds this many GiB, recorded as oom (default 60%% of RAM)",
    )
    p.add_argument("--x64", action="store_true", help="float64 (default float32)")
    p.add_argument(
        "--tiny",
        action="store_true",
        help="tiny models (MLP 16-32-32-4, CNN 6x6 with 4 channels) for smoke tests",
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(p)
    p.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS),
        choices=METHODS,
        help="jaxdyn methods (default: all: jacobian ntvp auto structured auto_nets matmul_floor)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="output JSON path (default benchmarks/results/ntk_<device>_<date>.json)",
    )
    p.add_argument(
        "--out-dir",
        default=os.path.join(HERE, "results"),
        help="folder for the default output name",
    )
    p.add_argument(
        "--no-subprocess",
        action="store_true",
        help="run every workload in this process (fast smoke tests; peak RSS is then cumulative)",
    )
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
        msg = (
            f"median {res['median_s']:.4g} s, first call {res['first_call_s']:.4g} s, "
            f"peak RSS {res.get('peak_rss_mib', 0):.0f} MiB"
            if res.get("status") == "ok"
            else f"{res.get('status')}: {res.get('note', '')}"
        )
        print(f"[jaxdyn] {C.workload_name(spec)} {spec['method']}: {msg}", flush=True)
    annotate_floor(results)
    for r in results:
        if "ratio_to_matmul_floor" in r:
            print(
                f"[jaxdyn] {C.workload_name(r)} {r['variant']}: {r['ratio_to_matmul_floor']:.3g}x the matmul "
                f"floor ({r['matmul_floor_s']:.4g} s), {r['gflops_per_s']:.4g} GFLOP/s",
                flush=True,
            )
    C.save_results(
        args,
        "ntk",
        2,
        C.metadata(
            {
                **ver,
                "repeats": args.repeats,
                "repeats_large": args.repeats_large,
                "large_n": args.large_n,
                "timeout_large_s": args.timeout_large,
                "memory_budget_gib": args.memory_budget_gb,
                "dtype": "float64" if args.x64 else "float32",
                "tiny": args.tiny,
                "per_workload_subprocess": not args.no_subprocess,
                "timeout_s": args.timeout,
                "max_rss_gib": args.max_rss_gb,
                "x2": "None (kernel of x against itself)",
            }
        ),
        results,
        f"ntk_{ver['device_platform']}_{C.today()}.json",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
