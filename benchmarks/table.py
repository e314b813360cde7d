"""The README's performance table, rendered from the result JSON files.

Reads benchmarks/results/*.json (or the files given on the command line) and prints one
markdown table: per workload (model, n) jaxdyn's fastest result (method, median time, peak RSS),
neural-tangents' fastest, the speedup, and whether the project's performance goal for that
workload is met. With `--write README.md` the table replaces the text between the lines
`<!-- perf-table:begin -->` and `<!-- perf-table:end -->` of that file (an error if the markers
are missing). tests/test_benchmarks.py checks that the README's table is what this script
renders from the committed JSON, so the README cannot drift from the measurements.

Which results are used:
  * files: without arguments, every `compare_nt` file (side-by-side runs of compare_nt.py)
    and the newest file (by meta.date_utc, then name) of the other kinds, `ntk` (ntk.py) and
    `nt_ntk` (nt_reference/nt_ntk.py); tiny smoke-test runs and the per-side copies that
    `compare_nt.py --write-sides` writes are ignored;
  * per workload and side (jaxdyn, NT) the first of those files with an ok result for it
    supplies that side's results, side-by-side (compare_nt) files first, then the newest: a
    side-by-side run gives the rows it measured (rerun it after changing jaxdyn), ntk.py and
    nt_ntk.py runs fill in the workloads it did not run (n = 2048, 8192, 20000);
  * within them the fastest ok result (median of the repeated calls) as in compare_nt.py.

Usage:
  .venv/bin/python benchmarks/table.py                        # print the table
  .venv/bin/python benchmarks/table.py --write README.md      # update the README
  .venv/bin/python benchmarks/table.py results/a.json results/b.json
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from compare_nt import _best, _label, fmt_time, summarise

BEGIN = "<!-- perf-table:begin -->"
END = "<!-- perf-table:end -->"
GIB = 2**30

# The performance goals of the project's issue, per (model, n).
GOALS = {
    ("mlp", 128): ("speedup", 100.0, "nt_best"),
    ("mlp", 512): ("speedup", 300.0, "nt_best_batched"),
    ("mlp", 2048): ("floor", 2.0, None),
    ("mlp", 8192): ("memory", 4.0, None),
    ("mlp", 20000): ("runs", None, None),
    ("cnn", 64): ("speedup", 10.0, "nt_best"),
}
WORKLOADS = {
    "mlp": "MLP 784-512-512-512-10",
    "cnn": "CNN 2x conv3x3(32)",
    "wrn": "WRN stem + 2 blocks conv3x3(32)",
}


class TableError(Exception):
    pass


def kind_of(data: dict) -> str | None:
    """`compare_nt`, `ntk`, `nt_ntk`, or None for files the table ignores."""
    meta = data.get("meta", {})
    if meta.get("tiny"):
        return None
    if data.get("benchmark") == "compare_nt":
        return "compare_nt"
    if data.get("benchmark") != "ntk" or "side-by-side" in str(meta.get("source", "")):
        return None
    libs = {r.get("library") for r in data.get("results", [])}
    if "neural_tangents" in libs or "neural_tangents" in meta:
        return "nt_ntk"
    return "ntk"


def load(paths: list[str]) -> list[dict]:
    """[{path, kind, date, jaxdyn: [...], nt: [...]}] for the given files, newest first."""
    out = []
    for path in paths:
        with open(path) as fh:
            data = json.load(fh)
        kind = kind_of(data)
        if kind is None:
            continue
        if kind == "compare_nt":
            jd, nt = data.get("jaxdyn", []), data.get("neural_tangents", [])
        elif kind == "ntk":
            jd, nt = data.get("results", []), []
        else:
            jd, nt = [], data.get("results", [])
        out.append(
            {
                "path": path,
                "kind": kind,
                "date": data.get("meta", {}).get("date_utc", ""),
                "jaxdyn": jd,
                "nt": nt,
            }
        )
    out.sort(key=lambda f: (f["date"], os.path.basename(f["path"])), reverse=True)
    return out


def discover(results_dir: str) -> list[str]:
    """Every side-by-side (compare_nt) file and the newest file of each other kind in
    `results_dir` (per workload, `collect` then takes the newest that measured it)."""
    files = load(sorted(glob.glob(os.path.join(results_dir, "*.json"))))
    newest: dict[str, dict] = {}
    for f in files:  # newest first
        newest.setdefault(f["kind"], f)
    side_by_side = [f["path"] for f in files if f["kind"] == "compare_nt"]
    return side_by_side + [f["path"] for k, f in newest.items() if k != "compare_nt"]


def collect(files: list[dict]) -> tuple[list[dict], list[dict], list[str]]:
    """jaxdyn and NT results: per (model, n) and side, those of the first file with an ok
    result for it, side-by-side (compare_nt) files first, newest first within a kind. Also the
    names of the files that supplied anything."""
    files = sorted(files, key=lambda f: f["kind"] != "compare_nt")  # stable: newest first kept
    jd, nt, used = [], [], []
    for side, out in (("jaxdyn", jd), ("nt", nt)):
        keys = []
        for f in files:
            for r in f[side]:
                if (r["model"], r["n"]) not in keys:
                    keys.append((r["model"], r["n"]))
        for key in keys:
            have = [(f, [r for r in f[side] if (r["model"], r["n"]) == key]) for f in files]
            have = [(f, rs) for f, rs in have if rs]  # newest first
            f, rs = next(
                ((f, rs) for f, rs in have if any(r.get("status") == "ok" for r in rs)), have[0]
            )
            out.extend(rs)
            name = os.path.basename(f["path"])
            if name not in used:
                used.append(name)
    return jd, nt, used


def _mem(mib) -> str:
    if mib is None:
        return "-"
    return f"{mib:.0f} MiB" if mib < 1024 else f"{mib / 1024:.2f} GiB"


def _x(v) -> str:
    return "-" if v is None else (f"{v:.3g}x" if v < 100 else f"{v:.0f}x")


def goal_cells(row: dict) -> tuple[str, str]:
    """(goal text with the achieved value, 'yes' / 'no' / 'n/a')."""
    goal = GOALS.get((row["model"], row["n"]))
    if goal is None:
        return "-", "-"
    kind, target, ref = goal
    which = "NT fastest" if ref == "nt_best" else "NT fastest batched"
    text = (
        {
            "speedup": f">= {target}x vs {which}",
            "floor": f"<= {target}x matmul floor",
            "memory": f"peak < {target} GiB",
            "runs": "computes",
        }[kind]
        .replace(".0x", "x")
        .replace(".0 G", " G")
    )
    if row.get("jaxdyn_best_s") is None:
        return text, "no (no result)"
    if kind == "speedup":
        nt_s = row.get(f"{ref}_s")
        if nt_s is None:
            return text, "n/a (no NT result)"
        s = nt_s / row["jaxdyn_best_s"]
        text = f"{text} ({row[ref]}: {fmt_time(nt_s)}): {_x(s)}"
        if s >= target:
            return text, "yes"
        # the NT timings are of NT's default vmap_axes=None
        dflt = row.get("speedup_vs_nt_default" + ("_batched" if ref == "nt_best_batched" else ""))
        if dflt is not None and dflt >= target:
            return (
                f"{text}; vs NT default: {_x(dflt)}",
                "yes vs NT default (the issue's setup); no vs NT with vmap_axes=0",
            )
        return text + ("" if dflt is None else f"; vs NT default: {_x(dflt)}"), "no"
    if kind == "floor":
        r = row.get("ratio_to_matmul_floor")
        if r is None:
            return text, "n/a (no floor result)"
        rate = row.get("structured_gflops_per_s")
        rate = "" if rate is None else f", {rate:.0f} GFLOP/s"
        return f"{text}: {r:.3g}x{rate}", "yes" if r <= target else "no"
    if kind == "memory":
        mib = row.get("jaxdyn_best_peak_rss_mib")
        if mib is None:
            return text, "n/a"
        return f"{text}: {_mem(mib)}", "yes" if mib < target * 1024 else "no"
    return "computes (host-assembled if over the device budget)", "yes"


def render(files: list[dict]) -> str:
    jd, nt, used = collect(files)
    rows = {(r["model"], r["n"]): r for r in summarise(jd, nt)}
    for key in GOALS:
        rows.setdefault(
            key,
            {
                "model": key[0],
                "n": key[1],
                "jaxdyn_best": None,
                "jaxdyn_best_s": None,
                "jaxdyn_failed": [],
                "nt_failed": [],
            },
        )
    order = sorted(rows, key=lambda k: (k[0] != "mlp", k[1]))
    lines = [
        "| workload | n | jaxdyn method | time | peak memory | NT fastest (vmap_axes=0) | speedup | "
        "NT default (vmap_axes=None) | goal | goal met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in order:
        r = rows[key]
        mine = [
            x for x in jd if (x["model"], x["n"]) == key and x.get("library", "jaxdyn") == "jaxdyn"
        ]
        failed = sorted({x["status"] for x in mine if x.get("status") != "ok"})
        best = _best(mine)
        time = (
            fmt_time(r["jaxdyn_best_s"]) if best else ("not run" if not mine else "/".join(failed))
        )
        nt_cell = "-" if not r.get("nt_best") else f"{r['nt_best']}: {fmt_time(r['nt_best_s'])}"
        goal, met = goal_cells(r)
        dflt = (
            "-"
            if not r.get("nt_default")
            else (
                f"{r['nt_default']}: {fmt_time(r['nt_default_s'])} ({_x(r.get('speedup_vs_nt_default'))})"
            )
        )
        lines.append(
            f"| {WORKLOADS[key[0]]} | {key[1]} | {_label(best) if best else '-'} | {time} | "
            f"{_mem(r.get('jaxdyn_best_peak_rss_mib'))} | {nt_cell} | "
            f"{_x(r.get('ratio_nt_over_jaxdyn'))} | {dflt} | {goal} | {met} |"
        )
    lines += [
        "",
        "Median of repeated calls after the first (compile excluded); peak memory is the peak RSS "
        "of the benchmark process; speedup is NT fastest / jaxdyn fastest (> 1: jaxdyn faster); NT is "
        "always under `jax.jit`; `NT fastest` passes `vmap_axes=0` (NT at its best), `NT default` "
        "is implementation 3 with NT's default `vmap_axes=None`, as the issue's NT timings were "
        "taken, with jaxdyn's speedup over it; "
        "b = batch size, * = single call, compile included. Rendered by `benchmarks/table.py` from "
        + (
            ", ".join(f"`benchmarks/results/{u}`" for u in sorted(used))
            if used
            else "no result files"
        )
        + ".",
    ]
    return "\n".join(lines)


def replace_between_markers(text: str, table: str, path: str = "README.md") -> str:
    if BEGIN not in text or END not in text or text.index(BEGIN) > text.index(END):
        raise TableError(
            f"{path} has no '{BEGIN}' ... '{END}' markers; add them where the table goes."
        )
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}\n{END}{tail}"


def between_markers(text: str) -> str | None:
    """The text between the markers without the newlines next to them, or None without markers."""
    if BEGIN not in text or END not in text:
        return None
    inner = text.split(BEGIN, 1)[1].split(END, 1)[0]
    return inner.strip("\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "files",
        nargs="*",
        help="result JSON files (default: the newest of each kind in --results-dir)",
    )
    p.add_argument("--results-dir", default=os.path.join(HERE, "results"))
    p.add_argument(
        "--write",
        metavar="README",
        default=None,
        help=f"replace the text between {BEGIN} and {END} in this file",
    )
    args = p.parse_args(argv)
    paths = args.files or discover(args.results_dir)
    files = load(paths)
    if not files:
        p.error(f"no usable result files ({'given' if args.files else 'in ' + args.results_dir})")
    table = render(files)
    if args.write:
        try:
            with open(args.write) as fh:
                text = fh.read()
            new = replace_between_markers(text, table, args.write)
        except (TableError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        with open(args.write, "w") as fh:
            fh.write(new)
        print(f"updated the table in {args.write}")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
