"""jaxdyn's empirical NTK beside neural-tangents', run side by side.

For every workload of benchmarks/ntk.py (model, n, batch size) this driver alternates jaxdyn
methods and neural-tangents implementations (jaxdyn jacobian, NT impl1, ntvp, impl2, auto,
impl3, then structured, auto_nets and the matmul floor), each in its own fresh subprocess:
jaxdyn with this interpreter (sys.executable, i.e. .venv/bin/python), neural-tangents with
--nt-python (default /tmp/ntref/bin/python; build it as described in benchmarks/README.md).
Alternating spreads slow periods of a shared machine over both sides. The size rules are
ntk.py's: jaxdyn jacobian/ntvp/auto and NT implementations 1 and 2 only for n <= --slow-max-n
(default 128), NT implementation 3 always.

Writes benchmarks/results/compare_nt_<date>.json with both sides' results and per-(model, n)
rows: jaxdyn's fastest result and its fastest structured one, NT's fastest overall, fastest
unbatched and fastest batched, the speedups `NT time / jaxdyn time` against each (> 1: jaxdyn
faster), the structured MLP's ratio to the matmul floor, a check that both sides computed the
same kernel (relative difference of the traces), and a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "nt_reference"))

import _common as C
import nt_ntk
import ntk


def _best(results: list[dict]) -> dict | None:
    """Fastest ok result; medians of repeated calls win over single-call (--repeats 0) upper bounds."""
    ok = [r for r in results if r.get("status") == "ok"]
    repeated = [r for r in ok if not r.get("median_from_first_call")]
    pool = repeated or ok
    return min(pool, key=lambda r: r["median_s"]) if pool else None


def _label(r: dict) -> str:
    b = "" if r["batch_size"] is None else f", b={r['batch_size']}"
    v = r["variant"] + ("*" if r.get("median_from_first_call") else "")
    if (
        r.get("library") == "jaxdyn"
        and r["variant"] in ("auto", "auto_nets")
        and r.get("resolved_method")
    ):
        v = f"{v}->{r['resolved_method']}"
    return v + b


def _ratio(a: dict | None, b: dict | None) -> float | None:
    return a["median_s"] / b["median_s"] if a and b else None


def summarise(jd: list[dict], nt: list[dict]) -> list[dict]:
    """One row per (model, n). `jd` may hold matmul-floor records (library "matmul_floor"):
    they are the floor, never jaxdyn's best."""
    rows = []
    keys = []
    for r in jd + nt:
        key = (r["model"], r["n"])
        if key not in keys:
            keys.append(key)
    for model, n in keys:
        mine_all = [r for r in jd if (r["model"], r["n"]) == (model, n)]
        mine = [r for r in mine_all if r.get("library", "jaxdyn") == "jaxdyn"]
        floor = _best([r for r in mine_all if r.get("library") == "matmul_floor"])
        ref_all = [r for r in nt if (r["model"], r["n"]) == (model, n)]
        # NT's default vmap_axes=None apart: "NT fastest" is NT tuned (vmap_axes=0)
        dflt = [r for r in ref_all if r.get("nt_default")]
        bd = _best(dflt)
        bdb = _best([r for r in dflt if r["batch_size"] is not None])
        ref = [r for r in ref_all if not r.get("nt_default")]
        bj, bn = _best(mine), _best(ref)
        bs = _best([r for r in mine if r.get("resolved_method") == "structured"])
        bnu = _best([r for r in ref if r["batch_size"] is None])
        bnb = _best([r for r in ref if r["batch_size"] is not None])
        row = {
            "model": model,
            "n": n,
            "jaxdyn_best": _label(bj) if bj else None,
            "jaxdyn_best_s": bj["median_s"] if bj else None,
            "jaxdyn_best_method": bj.get("resolved_method") or bj["variant"] if bj else None,
            "jaxdyn_best_peak_rss_mib": bj.get("peak_rss_mib") if bj else None,
            "jaxdyn_structured": _label(bs) if bs else None,
            "jaxdyn_structured_s": bs["median_s"] if bs else None,
            "jaxdyn_structured_peak_rss_mib": bs.get("peak_rss_mib") if bs else None,
            "nt_best": _label(bn) if bn else None,
            "nt_best_s": bn["median_s"] if bn else None,
            "nt_best_unbatched": _label(bnu) if bnu else None,
            "nt_best_unbatched_s": bnu["median_s"] if bnu else None,
            "nt_best_batched": _label(bnb) if bnb else None,
            "nt_best_batched_s": bnb["median_s"] if bnb else None,
            "ratio_nt_over_jaxdyn": _ratio(bn, bj),
            "speedup_vs_nt_unbatched": _ratio(bnu, bj),
            "speedup_vs_nt_batched": _ratio(bnb, bj),
            "structured_speedup_vs_nt": _ratio(bn, bs),
            "structured_speedup_vs_nt_unbatched": _ratio(bnu, bs),
            "structured_speedup_vs_nt_batched": _ratio(bnb, bs),
            "nt_default": _label(bd) if bd else None,
            "nt_default_s": bd["median_s"] if bd else None,
            "nt_default_batched": _label(bdb) if bdb else None,
            "nt_default_batched_s": bdb["median_s"] if bdb else None,
            "speedup_vs_nt_default": _ratio(bd, bj),
            "speedup_vs_nt_default_batched": _ratio(bdb, bj),
            "matmul_floor_s": floor["median_s"] if floor else None,
            "matmul_flops": floor.get("matmul_flops") if floor else None,
            "ratio_to_matmul_floor": _ratio(bs, floor),
            "structured_gflops_per_s": (
                floor["matmul_flops"] / bs["median_s"] / 1e9
                if floor and bs and floor.get("matmul_flops")
                else None
            ),
            "jaxdyn_failed": [
                f"{_label(r)}: {r['status']}" for r in mine_all if r.get("status") != "ok"
            ],
            "nt_failed": [
                f"{_label(r)}: {r['status']}" for r in ref_all if r.get("status") != "ok"
            ],
        }
        if bj and bn:
            tj, tn = bj["kernel_trace"], bn["kernel_trace"]
            row["kernel_trace_rel_diff"] = abs(tj - tn) / max(abs(tn), 1e-30)
        rows.append(row)
    return rows


def fmt_time(t) -> str:
    return "failed" if t is None else (f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s")


def fmt_ratio(x) -> str:
    return "n/a" if x is None else f"{x:.3g}x"


def markdown(rows: list[dict]) -> str:
    def with_time(label, t):
        return "-" if label is None else f"{label}: {fmt_time(t)}"

    lines = [
        (
            "| workload | jaxdyn best (method) | jaxdyn time | peak RSS | NT fastest unbatched | "
            "NT fastest batched | speedup vs NT unbatched | speedup vs NT batched | structured / matmul floor |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = f"{r['model'].upper()} n={r['n']}"
        rss = r.get("jaxdyn_best_peak_rss_mib")
        floor = r.get("ratio_to_matmul_floor")
        lines.append(
            f"| {name} | {r['jaxdyn_best'] or '-'} | {fmt_time(r['jaxdyn_best_s'])} | "
            f"{'-' if rss is None else f'{rss:.0f} MiB'} | "
            f"{with_time(r.get('nt_best_unbatched'), r.get('nt_best_unbatched_s'))} | "
            f"{with_time(r.get('nt_best_batched'), r.get('nt_best_batched_s'))} | "
            f"{fmt_ratio(r.get('speedup_vs_nt_unbatched'))} | {fmt_ratio(r.get('speedup_vs_nt_batched'))} | "
            f"{'-' if floor is None else f'{floor:.3g}x'} |"
        )
    if any(
        "*" in str(r.get(c) or "")
        for r in rows
        for c in ("jaxdyn_best", "nt_best_unbatched", "nt_best_batched")
    ):
        lines.append("")
        lines.append("\\* a single call, compile included (run with --repeats 0): an upper bound.")
    return "\n".join(lines)


def merge(paths: list[str], out: str) -> int:
    """Combines the results of several compare_nt runs; the summary is recomputed."""
    import json

    parts = []
    for path in paths:
        with open(path) as fh:
            parts.append(json.load(fh))
    jd = [r for part in parts for r in part["jaxdyn"]]
    nt = [r for part in parts for r in part["neural_tangents"]]
    ntk.annotate_floor(jd)
    rows = summarise(jd, nt)
    table = markdown(rows)
    meta = dict(parts[0]["meta"])
    meta["repeats"] = sorted({part["meta"]["repeats"] for part in parts})
    meta["merged_from"] = [
        {
            "file": os.path.basename(path),
            "date_utc": part["meta"]["date_utc"],
            "repeats": part["meta"]["repeats"],
            "timeout_s": part["meta"]["timeout_s"],
            "loadavg_at_start": part["meta"].get("loadavg_at_start"),
        }
        for path, part in zip(paths, parts)
    ]
    C.write_json(
        out,
        {
            "benchmark": "compare_nt",
            "schema_version": 1,
            "meta": meta,
            "summary": rows,
            "markdown_table": table,
            "jaxdyn": jd,
            "neural_tangents": nt,
        },
    )
    print(table)
    print(f"\nwrote {out}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ntk.add_common_args(p)
    p.set_defaults(sizes=[128, 512], cnn_n=[64, 256], wrn_n=[64])
    p.add_argument(
        "--methods",
        nargs="+",
        default=list(ntk.METHODS),
        choices=ntk.METHODS,
        help="jaxdyn methods (default: all: jacobian ntvp auto structured auto_nets matmul_floor)",
    )
    p.add_argument(
        "--implementations",
        type=int,
        nargs="+",
        default=list(nt_ntk.IMPLEMENTATIONS),
        choices=nt_ntk.IMPLEMENTATIONS,
        help="neural-tangents implementations (default 1 2 3)",
    )
    p.add_argument(
        "--nt-python",
        default="/tmp/ntref/bin/python",
        help="interpreter of the neural-tangents reference venv (default /tmp/ntref/bin/python)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="output JSON (default benchmarks/results/compare_nt_<date>.json)",
    )
    p.add_argument(
        "--out-dir",
        default=os.path.join(HERE, "results"),
        help="folder for the default output name",
    )
    p.add_argument(
        "--write-sides",
        action="store_true",
        help="also write each side's results as ntk_<device><suffix>.json / nt_ntk_<device><suffix>.json",
    )
    p.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="JSON",
        help="run nothing: combine earlier compare_nt JSON files (e.g. runs with different "
        "--sizes/--repeats) into one with a recomputed summary, written to --out",
    )
    args = p.parse_args(argv)
    args.no_subprocess = False
    if args.merge:
        return merge(
            args.merge, args.out or os.path.join(args.out_dir, f"compare_nt_{C.today()}.json")
        )
    if not os.path.exists(args.nt_python):
        p.error(
            f"--nt-python {args.nt_python} does not exist; see benchmarks/README.md to create the venv"
        )

    jd_ver = ntk.versions()
    nt_ver = C.child_versions(
        args.nt_python, ["jax", "jaxlib", "neural_tangents", "numpy", "scipy"]
    )
    jd_res, nt_res = [], []
    for w in ntk.all_workloads(args):
        jd_specs = ntk.specs_for(w, args)
        nt_specs = nt_ntk.specs_for(w, args)
        for i in range(max(len(jd_specs), len(nt_specs))):
            for side, specs, runner, python, bucket in (
                ("jaxdyn", jd_specs, ntk.run_spec, sys.executable, jd_res),
                ("nt", nt_specs, nt_ntk.run_spec, args.nt_python, nt_res),
            ):
                if i >= len(specs):
                    continue
                res = runner(specs[i], args, python=python)
                bucket.append(res)
                msg = (
                    f"median {res['median_s']:.4g} s (first call {res['first_call_s']:.3g} s, "
                    f"peak RSS {res.get('peak_rss_mib', 0):.0f} MiB)"
                    if res.get("status") == "ok"
                    else f"{res.get('status')}: {res.get('note', '')}"
                )
                print(f"[{side}] {C.workload_name(w)} {res['variant']}: {msg}", flush=True)
    ntk.annotate_floor(jd_res)
    rows = summarise(jd_res, nt_res)
    table = markdown(rows)
    payload = {
        "benchmark": "compare_nt",
        "schema_version": 2,
        "meta": C.metadata(
            {
                "jaxdyn_side": jd_ver,
                "nt_side": nt_ver,
                "nt_python": args.nt_python,
                "jaxdyn_python": sys.executable,
                "repeats": args.repeats,
                "repeats_large": args.repeats_large,
                "large_n": args.large_n,
                "slow_max_n": args.slow_max_n,
                "memory_budget_gib": args.memory_budget_gb,
                "dtype": "float64" if args.x64 else "float32",
                "tiny": args.tiny,
                "timeout_s": args.timeout,
                "max_rss_gib": args.max_rss_gb,
                "x2": "None (kernel of x against itself)",
                "ratio": "NT fastest median / jaxdyn fastest median over methods and batch sizes; "
                "> 1 means jaxdyn is faster; speedup_vs_nt_unbatched / _batched use NT's "
                "fastest unbatched / batched result",
                "jaxdyn_precision": "ntk_fn default precision='highest'; NT default precision",
            }
        ),
        "summary": rows,
        "markdown_table": table,
        "jaxdyn": jd_res,
        "neural_tangents": nt_res,
    }
    out = args.out or os.path.join(args.out_dir, f"compare_nt_{C.today()}.json")
    C.write_json(out, payload)
    if args.write_sides:
        # The same runs in the schemas of ntk.py and nt_reference/nt_ntk.py.
        suffix = os.path.splitext(os.path.basename(out))[0].replace("compare_nt", "")
        common = {
            "repeats": args.repeats,
            "dtype": payload["meta"]["dtype"],
            "tiny": args.tiny,
            "per_workload_subprocess": True,
            "timeout_s": args.timeout,
            "max_rss_gib": args.max_rss_gb,
            "x2": "None (kernel of x against itself)",
            "source": "compare_nt.py side-by-side run",
        }
        for name, ver, res in (("ntk", jd_ver, jd_res), ("nt_ntk", nt_ver, nt_res)):
            side = os.path.join(
                os.path.dirname(out),
                f"{name}_{ver.get('device', 'cpu').split(':')[0]}{suffix}.json",
            )
            C.write_json(
                side,
                {
                    "benchmark": "ntk",
                    "schema_version": 1,
                    "meta": C.metadata({**ver, **common}),
                    "results": res,
                },
            )
            print(f"wrote {side}")
    print()
    print(table)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
