"""Shared by the benchmark scripts: workload models, subprocess runner, metadata.

Only jax and numpy are imported here (lazily, inside the model builders), so the same file
serves jaxdyn's venv (jax 0.10) and the neural-tangents reference venv (jax 0.4.23). Nothing
here imports jaxdyn or neural_tangents: the environment record comes from jaxdyn's one
capture, `jaxdyn/results.py`, loaded by its file path (it needs only the standard library,
numpy and jax), so both venvs record it the same way.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import itertools
import json
import os
import platform
import resource
import subprocess
import threading
import time

RESULT_TAG = "BENCH_RESULT "
RESULTS_PY = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jaxdyn", "results.py"
)
LOAD_NOTE = (
    "Measured on a shared machine: other jobs (test suites) may have been running "
    "concurrently, so timings can be inflated and noisy."
)

# Full-size workloads (the ones the README table reports) and tiny ones for the smoke test.
MLP_WIDTHS = (784, 512, 512, 512, 10)
TINY_MLP_WIDTHS = (16, 32, 32, 4)
CNN = {"hw": 28, "channels": 32, "out": 10}
TINY_CNN = {"hw": 6, "channels": 4, "out": 3}
# Wide ResNet of one group (jaxdyn.nets.WideResnet): conv stem, pre-activation residual blocks
WRN = {"hw": 28, "channels": 32, "blocks": 2, "out": 10}
TINY_WRN = {"hw": 6, "channels": 4, "blocks": 1, "out": 3}


# --------------------------------------------------------------------------- models


def _ntk_conv(h, layer):
    """3x3 SAME convolution in NTK parameterization: `conv(h, W) / sqrt(fan_in) + b`."""
    import numpy as np
    from jax import lax

    fan_in = layer["w"].shape[0] * layer["w"].shape[1] * layer["w"].shape[2]
    out = lax.conv_general_dilated(
        h,
        layer["w"],
        window_strides=(1, 1),
        padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return out / np.sqrt(fan_in) + layer["b"][None, None, None, :]


def build_model(name: str, n: int, tiny: bool, x64: bool, seed: int = 0):
    """Returns `(apply_fn, params, x, k_outputs, num_params)` for workload `name`."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    dtype = jnp.float64 if x64 else jnp.float32
    # numpy draws, so both venvs (whose jax PRNG defaults differ) get identical params and inputs
    rng = np.random.default_rng(seed)

    def normal(shape):
        return jnp.asarray(rng.standard_normal(shape), dtype)

    if name == "mlp":
        widths = TINY_MLP_WIDTHS if tiny else MLP_WIDTHS
        params = [
            {"w": normal((fan_in, fan_out)), "b": 0.1 * normal((fan_out,))}
            for fan_in, fan_out in itertools.pairwise(widths)
        ]

        def apply_fn(p, x):
            h = x
            for i, layer in enumerate(p):
                fan_in = layer["w"].shape[0]
                h = h @ layer["w"] / np.sqrt(fan_in) + layer["b"][None, :]
                if i < len(p) - 1:
                    h = jax.nn.relu(h)
            return h

        x = normal((n, widths[0]))
        k_out = widths[-1]
    elif name == "cnn":
        cfg = TINY_CNN if tiny else CNN
        hw, c, k_out = cfg["hw"], cfg["channels"], cfg["out"]
        params = {
            "conv1": {"w": normal((3, 3, 1, c)), "b": 0.1 * normal((c,))},
            "conv2": {"w": normal((3, 3, c, c)), "b": 0.1 * normal((c,))},
            "dense": {"w": normal((hw * hw * c, k_out)), "b": 0.1 * normal((k_out,))},
        }

        def apply_fn(p, x):
            h = jax.nn.relu(_ntk_conv(x, p["conv1"]))
            h = jax.nn.relu(_ntk_conv(h, p["conv2"]))
            h = h.reshape(h.shape[0], -1)
            return h @ p["dense"]["w"] / np.sqrt(h.shape[1]) + p["dense"]["b"][None, :]

        x = normal((n, hw, hw, 1))
    elif name == "wrn":
        cfg = TINY_WRN if tiny else WRN
        hw, c, k_out = cfg["hw"], cfg["channels"], cfg["out"]
        convs = [(1, c)] + [(c, c)] * (2 * cfg["blocks"])
        params = {
            "convs": [{"w": normal((3, 3, a, b)), "b": 0.1 * normal((b,))} for a, b in convs],
            "dense": {"w": normal((c, k_out)), "b": 0.1 * normal((k_out,))},
        }

        def apply_fn(p, x):
            h = _ntk_conv(x, p["convs"][0])
            for i in range(1, len(p["convs"]), 2):  # x + conv(relu(conv(relu(x))))
                r = _ntk_conv(jax.nn.relu(h), p["convs"][i])
                h = h + _ntk_conv(jax.nn.relu(r), p["convs"][i + 1])
            h = jnp.mean(jax.nn.relu(h), axis=(1, 2))
            return h @ p["dense"]["w"] / np.sqrt(h.shape[1]) + p["dense"]["b"][None, :]

        x = normal((n, hw, hw, 1))
    else:
        raise ValueError(f"unknown model {name!r}; expected 'mlp', 'cnn' or 'wrn'")
    num_params = int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params)))
    return apply_fn, params, x, k_out, num_params


def contraction_flops(n1: int, n2: int, k: int, num_params: int) -> float:
    """Flops of the traced NTK as a Jacobian contraction, `sum_{a,p} J1[i,a,p] J2[j,a,p]`:
    `2 n1 n2 k P` (multiply + add). A reference count: methods that avoid the contraction
    (NTK-vector products, structured rules) get an *effective* rate from it."""
    return 2.0 * n1 * n2 * k * num_params


# --------------------------------------------------------------------------- worker side


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def block(out):
    """`block_until_ready` for a jax array; a numpy array (a kernel assembled on the host) is
    returned as is."""
    fn = getattr(out, "block_until_ready", None)
    if fn is not None:
        fn()
    return out


def _kernel_checks(out) -> dict:
    """Shape, dtype, trace and finiteness of a kernel without a full-size temporary."""
    import numpy as np

    if isinstance(out, np.ndarray):
        finite = all(
            bool(np.isfinite(out[i : i + 1024]).all()) for i in range(0, max(out.shape[0], 1), 1024)
        )
        trace = float(np.trace(out)) if out.ndim == 2 else float(out.sum())
        return {
            "kernel_shape": list(out.shape),
            "kernel_dtype": str(out.dtype),
            "kernel_trace": trace,
            "finite": finite,
            "kernel_on_host": True,
        }
    import jax.numpy as jnp

    trace = float(jnp.trace(out)) if out.ndim == 2 else float(jnp.sum(out))
    return {
        "kernel_shape": list(out.shape),
        "kernel_dtype": str(out.dtype),
        "kernel_trace": trace,
        "finite": bool(jnp.isfinite(out).all()),
        "kernel_on_host": False,
    }


def time_calls(fn, repeats: int) -> tuple[dict, object]:
    """`(timing, first output)` of a jax call: the first call (compile + one run) apart from
    `repeats` timed calls, wall and CPU time (user + sys of every thread of this process).

    With `repeats=0` the first call, compile included, stands in for the medians and
    `median_from_first_call` says so."""
    import jax
    import numpy as np

    t0, c0 = time.perf_counter(), time.process_time()
    out = jax.block_until_ready(fn())
    first, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    times, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {
        "first_call_s": first,
        "first_call_cpu_s": first_cpu,
        "times_s": times,
        "cpu_times_s": cpus,
        "median_s": float(np.median(times)) if times else first,
        "median_cpu_s": float(np.median(cpus)) if cpus else first_cpu,
        "median_from_first_call": not times,
        "compile_s_est": max(first - float(np.median(times)), 0.0) if times else None,
    }, out


def time_kernel(call, repeats: int) -> dict:
    """First call (compile + one run) timed separately, then `repeats` timed calls.

    With `repeats=0` `median_s` is the first call's time (an upper bound, compile included) and
    `median_from_first_call` is true. `peak_rss_mib` is read right after the timed calls, before
    the checks of the result (trace, finiteness) allocate anything."""
    import numpy as np

    t0 = time.perf_counter()
    out = block(call())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        del out
        t0 = time.perf_counter()
        out = block(call())
        times.append(time.perf_counter() - t0)
    peak = peak_rss_mib()
    # With repeats=0 (workloads too slow to repeat) the first call, compile included, stands in.
    median = float(np.median(times)) if times else first
    return {
        "first_call_s": first,
        "compile_s_est": max(first - median, 0.0) if times else None,
        "times_s": times,
        "median_s": median,
        "min_s": min(times) if times else first,
        "median_from_first_call": not times,
        "peak_rss_mib": peak,
        **_kernel_checks(out),
    }


def emit(result: dict) -> None:
    print(RESULT_TAG + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- parent side


def _rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def total_ram_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 8.0


def run_worker(
    cmd: list[str], timeout_s: float, max_rss_gib: float, env: dict | None = None
) -> dict:
    """Runs one workload in a fresh subprocess and returns its result dict.

    The parent polls the child's RSS: above `max_rss_gib` the child is killed and recorded as
    `status="oom"` (so a too-big workload cannot take the shared machine down); past
    `timeout_s` it is killed and recorded as `status="timeout"`; a child killed by the kernel
    (SIGKILL) is also recorded as `oom`.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    polled_peak = 0.0
    status = None
    chunks: dict[str, str] = {}

    def drain(name, stream):
        chunks[name] = stream.read()

    threads = [
        threading.Thread(target=drain, args=(nm, st), daemon=True)
        for nm, st in (("stdout", proc.stdout), ("stderr", proc.stderr))
    ]
    for th in threads:
        th.start()
    while proc.poll() is None:
        rss = _rss_mib(proc.pid)
        if rss is not None:
            polled_peak = max(polled_peak, rss)
            if rss > max_rss_gib * 1024:
                status = "oom"
                proc.kill()
                break
        if time.perf_counter() - t0 > timeout_s:
            status = "timeout"
            proc.kill()
            break
        time.sleep(0.05)
    proc.wait()
    for th in threads:
        th.join(timeout=10)
    wall = time.perf_counter() - t0
    out, err = chunks.get("stdout", ""), chunks.get("stderr", "")
    result = None
    for line in out.splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG) :])
    if result is None:
        result = {}
        if status is None:
            if (
                proc.returncode == -9
                or "RESOURCE_EXHAUSTED" in err
                or "MemoryError" in err
                or "Out of memory" in err
            ):
                status = "oom"
            else:
                status = "error"
        result["status"] = status
        if status == "oom":
            result["note"] = (
                f"killed: RSS above --max-rss-gb={max_rss_gib:g}"
                if proc.returncode == -9 and polled_peak > max_rss_gib * 1024
                else "out of memory"
            )
        elif status == "timeout":
            result["note"] = f"killed after {timeout_s:g} s (--timeout)"
        else:
            result["note"] = f"exit code {proc.returncode}"
            result["stderr_tail"] = err[-2000:]
    result["subprocess_wall_s"] = wall
    result["polled_peak_rss_mib"] = polled_peak
    return result


def metadata(extra: dict | None = None) -> dict:
    meta = {
        "date_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "host_platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "affinity_cpu_count": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "total_ram_gib": round(total_ram_gib(), 2),
        "machine_may_be_loaded": True,
        "load_note": LOAD_NOTE,
    }
    try:
        meta["loadavg_at_start"] = list(os.getloadavg())
    except OSError:
        pass
    if extra:
        meta.update(extra)
    return meta


_RESULTS = None


def _results_module():
    """`jaxdyn/results.py` as a standalone module (no `import jaxdyn`; see the docstring)."""
    global _RESULTS
    if _RESULTS is None:
        spec = importlib.util.spec_from_file_location("_jaxdyn_results", RESULTS_PY)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _RESULTS = module
    return _RESULTS


def environment() -> dict:
    """`jaxdyn.results.environment()` of this process: versions, backend, devices, x64."""
    return _results_module().environment()


def _device_name(env: dict) -> str:
    d = env["devices"][0]
    return f"{d['platform']}:{d['kind']}"


def child_versions(python: str, modules: list[str]) -> dict:
    """Versions and default device reported by another interpreter (e.g. the NT venv):
    `{module: version, "device": "platform:kind", "environment": its environment()}`."""
    code = (
        "import importlib, importlib.util, json\n"
        f"spec = importlib.util.spec_from_file_location('_jaxdyn_results', {RESULTS_PY!r})\n"
        "results = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(results)\n"
        "v = {}\n"
        f"for m in {modules!r}:\n"
        "    try:\n"
        "        mod = importlib.import_module(m)\n"
        "        v[m] = getattr(mod, '__version__', 'unknown')\n"
        "    except Exception as e:\n"
        "        v[m] = 'unavailable: ' + type(e).__name__\n"
        "env = results.environment()\n"
        "d = env['devices'][0]\n"
        "v['device'] = d['platform'] + ':' + d['kind']\n"
        "v['environment'] = env\n"
        "print('" + RESULT_TAG + "' + json.dumps(v))\n"
    )
    proc = subprocess.run(
        [python, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    return {"error": proc.stderr[-500:]}


def today() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d")


def write_json(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=False)
        fh.write("\n")
    os.replace(tmp, path)


def save_results(
    args, benchmark: str, schema_version: int, meta: dict, results: list, name: str
) -> str:
    """Writes `{"benchmark", "schema_version", "meta", "results"}` to `args.out`, or to
    `args.out_dir/name`; prints and returns the path."""
    out = args.out or os.path.join(args.out_dir, name)
    write_json(
        out,
        {
            "benchmark": benchmark,
            "schema_version": schema_version,
            "meta": meta,
            "results": results,
        },
    )
    print(f"wrote {out}")
    return out


def workloads(sizes: list[int], cnn_n, batch_sizes: list[int | None], wrn_n=None) -> list[dict]:
    """(model, n, batch_size) triples. A batch size is used only when it is below n.

    `cnn_n` and `wrn_n` are one CNN (Wide ResNet) size or a list of them (0, None or an empty
    list: none)."""

    def listed(v):
        return [c for c in ([v] if isinstance(v, int) else list(v or [])) if c > 0]

    out = []
    for model, ns in (("mlp", sizes), ("cnn", listed(cnn_n)), ("wrn", listed(wrn_n))):
        for n in ns:
            for b in batch_sizes:
                if b is None or b < n:
                    out.append({"model": model, "n": n, "batch_size": b})
    return out


def repeats_for(n: int, args) -> int:
    """--repeats, or --repeats-large for n >= --large-n (where one call takes minutes)."""
    if n >= getattr(args, "large_n", 10**9):
        return getattr(args, "repeats_large", args.repeats)
    return args.repeats


def timeout_for(n: int, args) -> float:
    """--timeout, or --timeout-large for n >= --large-n."""
    if n >= getattr(args, "large_n", 10**9):
        return getattr(args, "timeout_large", args.timeout)
    return args.timeout


def mlp_widths(tiny: bool) -> tuple[int, ...]:
    return TINY_MLP_WIDTHS if tiny else MLP_WIDTHS


def mlp_matmul_flops(n: int, widths) -> dict:
    """Flops of the matrix products the structured NTK of an MLP needs for n examples against
    themselves (traced over the k outputs), counted as 2 m n p per (m x p)(p x n) product:

    * forward: `h_l @ W_l` for every layer, `2 n d_l w_l`;
    * the k output-gradient backward passes for the batch: `G_l @ W_l^T` into every layer but
      the first, `2 n k w_l d_l` (the gradient at the output is the identity, no product);
    * per layer the input Gram `(n x d_l)(d_l x n)`, `2 n^2 d_l`, and the output-gradient Gram
      `(n x k w_l)(k w_l x n)`, `2 n^2 k w_l`.

    Full products are counted (no use of the Grams' symmetry)."""
    k = widths[-1]
    layers = list(itertools.pairwise(widths))
    fwd = sum(2.0 * n * d * w for d, w in layers)
    bwd = sum(2.0 * n * k * w * d for d, w in layers[1:])
    gram_h = sum(2.0 * n * n * d for d, _ in layers)
    gram_g = sum(2.0 * n * n * k * w for _, w in layers)
    return {
        "forward": fwd,
        "backward": bwd,
        "input_grams": gram_h,
        "output_grad_grams": gram_g,
        "total": fwd + bwd + gram_h + gram_g,
    }


def nets_params(name: str, params):
    """The hand-written workload's params in the layout of the equivalent `jaxdyn.nets.serial`
    network: a tuple with `(W, b)` per Dense/Conv layer and `()` per Relu/Flatten (the arrays
    themselves are shared, so both models are the same function of the same numbers)."""
    if name == "mlp":
        out = []
        for i, layer in enumerate(params):
            out.append((layer["w"], layer["b"]))
            if i < len(params) - 1:
                out.append(())
        return tuple(out)
    if name == "cnn":
        return (
            (params["conv1"]["w"], params["conv1"]["b"]),
            (),
            (params["conv2"]["w"], params["conv2"]["b"]),
            (),
            (),
            (params["dense"]["w"], params["dense"]["b"]),
        )
    if name == "wrn":  # the layout of nets.WideResnet: stem, blocks, Relu, pool, Dense
        convs = [(layer["w"], layer["b"]) for layer in params["convs"]]
        blocks = tuple(
            ((), (((), convs[i], (), convs[i + 1]), ()), ()) for i in range(1, len(convs), 2)
        )
        return (convs[0], *blocks, (), (), (params["dense"]["w"], params["dense"]["b"]))
    raise ValueError(f"unknown model {name!r}")


def parse_batch_sizes(values: list[str]) -> list[int | None]:
    out: list[int | None] = []
    for v in values:
        out.append(None if v.lower() in ("none", "0") else int(v))
    return out


def python_env() -> dict:
    """Environment for children: no preallocation surprises, quiet TF/XLA logs."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return env


def workload_name(w: dict) -> str:
    b = "" if w["batch_size"] is None else f" b={w['batch_size']}"
    return f"{w['model']} n={w['n']}{b}"


def ok_record(
    spec: dict,
    library: str,
    variant: str,
    k: int,
    num_params: int,
    timing: dict,
    rss_before: float,
    **extra,
) -> dict:
    """The result of one successful workload, in the schema both libraries' scripts share."""
    import jax

    flops = contraction_flops(spec["n"], spec["n"], k, num_params)
    return {
        **spec,
        "status": "ok",
        "library": library,
        "variant": variant,
        **extra,
        "num_params": num_params,
        "outputs": k,
        **timing,
        "contraction_flops": flops,
        "effective_gflops_per_s": flops / timing["median_s"] / 1e9,
        "peak_rss_mib": timing.get("peak_rss_mib", peak_rss_mib()),
        "rss_after_setup_mib": rss_before,
        "device": str(jax.devices()[0].platform),
    }


def device_versions(**libraries: str) -> dict:
    """jax/jaxlib versions, the device, and the given library versions, plus this process's
    full `environment()` record under "environment"."""
    env = environment()
    return {
        "jax": env["jax"],
        "jaxlib": env["jaxlib"],
        **libraries,
        "device": _device_name(env),
        "device_platform": env["devices"][0]["platform"],
        "environment": env,
    }
