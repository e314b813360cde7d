"""neural-tangents' `monte_carlo_kernel_fn` on the Monte-Carlo workload of benchmarks/matrix_free.py.

Runs in the reference venv (jax 0.4.23, neural-tangents 0.6.5; see requirements.txt and
benchmarks/README.md) as a worker that benchmarks/matrix_free.py starts in a fresh subprocess
of `--nt-python` (`run_spec`, through `_common.run_worker`; the result comes back on a
`_common.RESULT_TAG` line). The network is the one jaxdyn's side builds with `jaxdyn.nets`:
`stax.serial(stax.Dense(width, W_std, b_std), stax.Relu(), stax.Dense(1, W_std, b_std))` in the
NTK parameterisation (W_std = 1, b_std = 0: `jaxdyn.nets.Dense`'s defaults, passed explicitly
because NT's default b_std is None, no bias), on the same inputs (`inputs`: numpy draws from one
seed, so both venvs get identical numbers; the worker returns their checksum).

Two roles (`spec["role"]`):
- "time": `nt.monte_carlo_kernel_fn(init_fn, apply_fn, PRNGKey(key), samples, batch_size=b,
  vmap_axes=0, implementation=i, trace_axes=(-1,))` called on `(x, None, ("nngp", "ntk"))`: the
  first call (compile + run) apart from the median of `repeats` further calls, wall and CPU
  time. The kernels of every configuration come from the same key, hence the same samples.
- "check": the same function with `n_samples` a list of `blocks` equally spaced counts up to
  `check_samples` (NT then yields the nested prefix means of one pass): the mean diagonal of
  the NNGP and NTK estimates with a standard error from the block means (`block_stats`).

The helpers `inputs`, `time_calls`, `mean_diagonals` and `block_stats` import only numpy/jax,
so matrix_free.py uses the same ones for jaxdyn's side (as compare_nt.py imports nt_ntk.py).
This file is excluded from the repository's ruff configuration with the rest of nt_reference/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
sys.path.insert(0, BENCH)

import _common as C

IMPLEMENTATIONS = (1, 2, 3)


# --------------------------------------------------------------------------- shared helpers


def inputs(n: int, d: int, seed: int, x64: bool):
    """`(n, d)` standard normal inputs drawn with numpy (identical in both venvs)."""
    import numpy as np

    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float64 if x64 else np.float32)


def checksum(x) -> float:
    import numpy as np

    return float(np.asarray(x, np.float64).sum())


def time_calls(call, repeats: int):
    """First call (compile + one run) timed apart from `repeats` further calls; wall and
    process CPU time (all threads) of each. Returns `(timing, last output)`."""
    import jax
    import numpy as np

    w0, c0 = time.perf_counter(), time.process_time()
    out = jax.block_until_ready(call())
    first, first_cpu = time.perf_counter() - w0, time.process_time() - c0
    times, cpu = [], []
    for _ in range(repeats):
        del out
        w0, c0 = time.perf_counter(), time.process_time()
        out = jax.block_until_ready(call())
        times.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    median = float(np.median(times)) if times else first
    return {
        "first_call_s": first,
        "first_call_cpu_s": first_cpu,
        "times_s": times,
        "cpu_times_s": cpu,
        "median_s": median,
        "median_cpu_s": float(np.median(cpu)) if cpu else first_cpu,
        "median_from_first_call": not times,
        "compile_s_est": max(first - median, 0.0) if times else None,
    }, out


def mean_diagonals(nngp, ntk) -> dict:
    """Mean of the diagonal of each `(n, n)` kernel, and whether both are finite."""
    import numpy as np

    nngp, ntk = np.asarray(nngp, np.float64), np.asarray(ntk, np.float64)
    return {
        "nngp_mean_diag": float(np.mean(np.diag(nngp))),
        "ntk_mean_diag": float(np.mean(np.diag(ntk))),
        "finite": bool(np.isfinite(nngp).all() and np.isfinite(ntk).all()),
        "shape": list(ntk.shape),
    }


def block_stats(counts: list[int], prefix: list[dict]) -> dict:
    """Mean and standard error of the mean diagonals from nested prefix estimates.

    `prefix[i]` holds `mean_diagonals` of the estimate over the first `counts[i]` samples; the
    mean over samples `counts[i-1]..counts[i]` is recovered as a difference of prefix sums, and
    the standard error is the spread of these equal-size block means over sqrt(blocks)."""
    import numpy as np

    out = {"samples": counts[-1], "blocks": len(counts)}
    sizes = np.diff([0, *counts])
    for name in ("nngp_mean_diag", "ntk_mean_diag"):
        sums = np.array([c * p[name] for c, p in zip(counts, prefix)])
        blocks = np.diff(np.concatenate([[0.0], sums])) / sizes
        out[name] = float(prefix[-1][name])
        out[name + "_se"] = (
            float(np.std(blocks, ddof=1) / np.sqrt(len(blocks))) if len(blocks) > 1 else None
        )
    out["finite"] = all(p["finite"] for p in prefix)
    return out


def check_counts(samples: int, blocks: int) -> list[int]:
    """`blocks` equal block ends up to `samples` (fewer blocks when samples < blocks)."""
    blocks = max(1, min(blocks, samples))
    size = samples // blocks
    return [size * (i + 1) for i in range(blocks)]


# --------------------------------------------------------------------------- worker side


def versions() -> dict:
    import neural_tangents as nt

    return C.device_versions(neural_tangents=nt.__version__)


def worker(spec: dict) -> dict:
    import jax

    if spec["x64"]:
        jax.config.update("jax_enable_x64", True)
    import neural_tangents as nt
    from neural_tangents import stax

    w, b_std, w_std = spec["width"], spec["b_std"], spec["W_std"]
    init_fn, apply_fn, _ = stax.serial(
        stax.Dense(w, W_std=w_std, b_std=b_std),
        stax.Relu(),
        stax.Dense(1, W_std=w_std, b_std=b_std),
    )
    x = jax.numpy.asarray(inputs(spec["n"], spec["d_in"], spec["input_seed"], spec["x64"]))
    jax.block_until_ready(x)
    # NT's batch_size: 0 means the whole kernel at once (and it must divide n otherwise)
    batch = 0 if spec["batch_size"] is None else spec["batch_size"]
    key = jax.random.PRNGKey(spec["key"])
    kwargs = dict(
        batch_size=batch, vmap_axes=0, implementation=spec["implementation"], trace_axes=(-1,)
    )
    get = ("nngp", "ntk")
    rec = {
        **spec,
        "status": "ok",
        "library": "neural_tangents",
        "variant": f"impl{spec['implementation']}"
        + ("" if spec["batch_size"] is None else f"_b{batch}"),
        "inputs_checksum": checksum(x),
        "call": f"nt.monte_carlo_kernel_fn(init_fn, apply_fn, key, n, batch_size={batch}, vmap_axes=0, "
        f"implementation={spec['implementation']}, trace_axes=(-1,))(x, None, get=('nngp', 'ntk'))",
    }
    if spec["role"] == "time":
        kfn = nt.monte_carlo_kernel_fn(init_fn, apply_fn, key, spec["samples"], **kwargs)
        timing, out = time_calls(lambda: kfn(x, None, get), spec["repeats"])
        rec.update(timing)
        rec["per_sample_s"] = timing["median_s"] / spec["samples"]
        rec["per_sample_cpu_s"] = timing["median_cpu_s"] / spec["samples"]
        rec.update(mean_diagonals(out.nngp, out.ntk))
    else:
        counts = check_counts(spec["check_samples"], spec["blocks"])
        kfn = nt.monte_carlo_kernel_fn(init_fn, apply_fn, key, counts, **kwargs)
        t0 = time.perf_counter()
        prefix = [mean_diagonals(k.nngp, k.ntk) for k in kfn(x, None, get)]
        rec["wall_s"] = time.perf_counter() - t0
        rec.update(block_stats(counts, prefix))
    rec["peak_rss_mib"] = C.peak_rss_mib()
    rec["versions"] = versions()
    return rec


# --------------------------------------------------------------------------- parent side


def run_spec(spec: dict, python: str, timeout_s: float, max_rss_gib: float) -> dict:
    """Runs one spec in a fresh subprocess of `python` (the reference venv's interpreter)."""
    cmd = [python, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    res = C.run_worker(cmd, timeout_s, max_rss_gib, env=C.python_env())
    if res.get("status") != "ok":
        res = {**spec, "library": "neural_tangents", **res}
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--worker", required=True, help="JSON spec (started by benchmarks/matrix_free.py)"
    )
    args = p.parse_args(argv)
    C.emit(worker(json.loads(args.worker)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
