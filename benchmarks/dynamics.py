"""Benchmarks of jaxdyn's closed-form dynamics and training trajectories.

Three comparisons, each timed as first call (compile + run) and median of --repeats calls:

1. closed_form_vs_scan: `jaxdyn.dynamics.mse(K, y, learning_rate, kind="gd")` evaluated at
   --times time points (0 .. T-1) on the n x n empirical NTK of a one-hidden-layer ReLU MLP
   (NTK parameterisation; --n examples, --width hidden units, 10 outputs), against running the
   T-1 gradient-descent steps of the linearized model in function space,
   `f <- f - lr K (f - y) / N` (N = y.size, the dynamics.mse convention) in a jitted lax.scan
   that records every step. The closed form's time includes building the predictor (its
   eigendecomposition). The max absolute difference of the two trajectories is reported.
   Also timed: the same closed form with `solve_dtype="float64"` (float64 eigendecomposition on host
   when x64 is off, float32 time evolution), and, on the float32 kernel, both variants' max error
   against a numpy float64 eigendecomposition reference at all time points, the evaluation alone
   with the eigendecomposition already cached (`closed_form_eval_only_cached_eigh`), plus the compiled
   evaluation's XLA temp memory next to the size of one (T, n, n) array it never builds.
2. ensemble_vmap_vs_sequential: `jax.vmap` of `jaxdyn.trajectory` over --seeds initial
   parameter sets (one compiled program) against the same jitted single-seed trajectory
   called once per seed.
3. scan_vs_python_loop: `jaxdyn.trajectory` (one lax.scan, under jax.jit) against a Python loop
   of jitted optax steps (full-batch `optax.sgd`) recording the train outputs every
   --record-every steps.

Output: benchmarks/results/dynamics_<device>_<date>.json (or --out).
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _common as C


def _mlp(key, d_in, width, k, dtype):
    import jax
    import jax.numpy as jnp
    import numpy as np

    k1, k2, k3, k4 = jax.random.split(key, 4)
    params = {
        "w1": jax.random.normal(k1, (d_in, width), dtype),
        "b1": 0.1 * jax.random.normal(k2, (width,), dtype),
        "w2": jax.random.normal(k3, (width, k), dtype),
        "b2": 0.1 * jax.random.normal(k4, (k,), dtype),
    }

    def apply_fn(p, x):
        h = jax.nn.relu(x @ p["w1"] / np.sqrt(d_in) + p["b1"][None, :])
        return h @ p["w2"] / np.sqrt(width) + p["b2"][None, :]

    del jnp
    return apply_fn, params


def closed_form_vs_scan(args, dtype) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxdyn

    key = jax.random.PRNGKey(0)
    kp, kx, ky = jax.random.split(key, 3)
    apply_fn, params = _mlp(kp, args.d_in, args.width, args.outputs, dtype)
    x = jax.random.normal(kx, (args.n, args.d_in), dtype)
    y = jax.random.normal(ky, (args.n, args.outputs), dtype)
    kmat = jax.block_until_ready(jaxdyn.ntk_fn(apply_fn)(x, None, params))
    f0 = apply_fn(params, x)
    lam_max = float(np.linalg.eigvalsh(np.asarray(kmat, np.float64))[-1])
    lr = 0.5 * 2 * y.size / lam_max  # half the critical learning rate
    ts = jnp.arange(args.times)
    n_out = y.size

    def closed_form():
        pred = jaxdyn.dynamics.mse(kmat, y, learning_rate=lr, kind="gd")
        return pred(ts, f0)

    def closed_form_f64():
        pred = jaxdyn.dynamics.mse(kmat, y, learning_rate=lr, kind="gd", solve_dtype="float64")
        return pred(ts, f0)

    @jax.jit
    def scan_gd(f0_, k_, y_):
        def step(f, _):
            return f - lr * (k_ @ (f - y_)) / n_out, f

        _, fs = jax.lax.scan(step, f0_, None, length=args.times)
        return fs

    cached = jaxdyn.dynamics.mse(kmat, y, learning_rate=lr, kind="gd")
    _ = cached.eigenvalues  # factorised once; every timed call below only evaluates
    t_eval, _ = C.time_calls(lambda: cached(ts, f0), args.repeats)
    t_cf, f_cf = C.time_calls(closed_form, args.repeats)
    t_cf64, f_cf64 = C.time_calls(closed_form_f64, args.repeats)
    t_scan, f_scan = C.time_calls(lambda: scan_gd(f0, kmat, y), args.repeats)
    diff = float(jnp.max(jnp.abs(jnp.asarray(f_cf) - f_scan)))
    # float64 reference on the kernel's exact (float32) entries: f_t = f0 + V diag((1-a)^t - 1) V^T r0.
    k64 = np.asarray(kmat, np.float64)
    lam, vecs = np.linalg.eigh(0.5 * (k64 + k64.T))
    lam = np.maximum(lam, 0.0)
    q = vecs.T @ (np.asarray(f0, np.float64) - np.asarray(y, np.float64))
    rho_m1 = np.power(1.0 - lr * lam / n_out, np.arange(args.times)[:, None]) - 1.0  # (T, n)
    ref = np.asarray(f0, np.float64)[None] + np.matmul(vecs, rho_m1[:, :, None] * q[None])
    err = {
        name: float(np.max(np.abs(np.asarray(f, np.float64) - ref)))
        for name, f in (
            ("closed_form", f_cf),
            ("closed_form_float64_eigh", f_cf64),
            ("scan_gd_steps", f_scan),
        )
    }
    pred = jaxdyn.dynamics.mse(kmat, y, learning_rate=lr, kind="gd")
    _ = pred.eigenvalues  # factorise first: the compiled evaluation then holds V as a constant
    mem = jax.jit(lambda f: pred(ts, f)).lower(f0).compile().memory_analysis()
    itemsize = np.dtype(dtype).itemsize
    return {
        "n": args.n,
        "outputs": args.outputs,
        "time_points": args.times,
        "width": args.width,
        "learning_rate": lr,
        "learning_rate_note": "half of the critical 2N/lambda_max",
        "closed_form": t_cf,
        "closed_form_float64_eigh": t_cf64,
        "scan_gd_steps": t_scan,
        "closed_form_eval_only_cached_eigh": t_eval,
        "speedup_scan_over_cached_eval": t_scan["median_s"] / t_eval["median_s"],
        "speedup_scan_over_closed_form": t_scan["median_s"] / t_cf["median_s"],
        "max_abs_diff": diff,
        "max_abs_err_vs_float64_reference": err,
        "kernel_condition_number": float(lam[-1] / max(lam[0], 1e-300)),
        "evaluation_xla_temp_bytes": int(mem.temp_size_in_bytes),
        "evaluation_xla_output_bytes": int(mem.output_size_in_bytes),
        "one_T_n_n_array_bytes": int(args.times * args.n * args.n * itemsize),
        "output_shape": list(np.shape(f_cf)),
    }


def _trajectory_setup(args, dtype):
    import jax

    kx, ky = jax.random.split(jax.random.PRNGKey(1))
    x = jax.random.normal(kx, (args.traj_n, args.d_in), dtype)
    y = jax.random.normal(ky, (args.traj_n, args.outputs), dtype)
    keys = jax.random.split(jax.random.PRNGKey(2), args.seeds)
    apply_fn = None
    params = []
    for k in keys:
        apply_fn, p = _mlp(k, args.d_in, args.width, args.outputs, dtype)
        params.append(p)
    return apply_fn, params, x, y


def ensemble(args, dtype) -> dict:
    import jax
    import numpy as np
    import optax

    import jaxdyn

    apply_fn, params, x, y = _trajectory_setup(args, dtype)
    stacked = jax.tree_util.tree_map(lambda *a: jax.numpy.stack(a), *params)
    opt = optax.sgd(args.lr)

    def one(p0):
        return jaxdyn.trajectory(
            apply_fn, p0, x, y, optimizer=opt, steps=args.steps, record_every=args.record_every
        ).f_train

    single = jax.jit(one)
    batched = jax.jit(jax.vmap(one))
    t_vmap, f_vmap = C.time_calls(lambda: batched(stacked), args.repeats)
    t_seq, f_seq = C.time_calls(lambda: [single(p) for p in params], args.repeats)
    diff = float(np.max(np.abs(np.asarray(f_vmap) - np.stack([np.asarray(f) for f in f_seq]))))
    return {
        "seeds": args.seeds,
        "n": args.traj_n,
        "width": args.width,
        "steps": args.steps,
        "record_every": args.record_every,
        "learning_rate": args.lr,
        "vmap": t_vmap,
        "sequential": t_seq,
        "speedup_vmap_over_sequential": t_seq["median_s"] / t_vmap["median_s"],
        "max_abs_diff": diff,
    }


def scan_vs_loop(args, dtype) -> dict:
    import jax
    import numpy as np
    import optax

    import jaxdyn

    apply_fn, params, x, y = _trajectory_setup(args, dtype)
    p0 = params[0]
    opt = optax.sgd(args.lr)
    scan = jax.jit(
        lambda p: (
            jaxdyn.trajectory(
                apply_fn, p, x, y, optimizer=opt, steps=args.steps, record_every=args.record_every
            ).f_train
        )
    )

    def loss(p):
        return jaxdyn.train.mse_loss(apply_fn(p, x), y)

    @jax.jit
    def step(p, state):
        updates, state = opt.update(jax.grad(loss)(p), state, p)
        return optax.apply_updates(p, updates), state

    outputs = jax.jit(lambda p: apply_fn(p, x))

    def loop():
        p, state = p0, opt.init(p0)
        rec = [outputs(p)]
        for s in range(1, args.steps + 1):
            p, state = step(p, state)
            if s % args.record_every == 0:
                rec.append(outputs(p))
        return jax.numpy.stack(rec)

    t_scan, f_scan = C.time_calls(lambda: scan(p0), args.repeats)
    t_loop, f_loop = C.time_calls(loop, args.repeats)
    diff = float(np.max(np.abs(np.asarray(f_scan) - np.asarray(f_loop))))
    return {
        "n": args.traj_n,
        "width": args.width,
        "steps": args.steps,
        "record_every": args.record_every,
        "learning_rate": args.lr,
        "scan_jit": t_scan,
        "python_loop": t_loop,
        "speedup_scan_over_loop": t_loop["median_s"] / t_scan["median_s"],
        "max_abs_diff": diff,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--n", type=int, default=1000, help="kernel size for the closed form (default 1000)"
    )
    p.add_argument("--times", type=int, default=1000, help="time points / GD steps (default 1000)")
    p.add_argument("--width", type=int, default=512, help="hidden width of the MLPs (default 512)")
    p.add_argument("--d-in", type=int, default=64, help="input dimension (default 64)")
    p.add_argument("--outputs", type=int, default=10, help="outputs k (default 10)")
    p.add_argument("--seeds", type=int, default=8, help="ensemble size (default 8)")
    p.add_argument(
        "--traj-n", type=int, default=256, help="training points for trajectories (default 256)"
    )
    p.add_argument(
        "--steps", type=int, default=500, help="optimizer steps for trajectories (default 500)"
    )
    p.add_argument("--record-every", type=int, default=10, help="record interval (default 10)")
    p.add_argument(
        "--lr", type=float, default=0.5, help="SGD learning rate for trajectories (default 0.5)"
    )
    p.add_argument("--repeats", type=int, default=3, help="timed calls after the first (default 3)")
    p.add_argument("--x64", action="store_true", help="float64 (default float32)")
    p.add_argument(
        "--tiny",
        action="store_true",
        help="tiny sizes for smoke tests (n=16, 20 times, width 16, 2 seeds, 20 steps, 1 repeat)",
    )
    p.add_argument(
        "--only",
        nargs="+",
        choices=("closed_form", "ensemble", "scan_vs_loop"),
        default=["closed_form", "ensemble", "scan_vs_loop"],
        help="which comparisons to run",
    )
    p.add_argument(
        "--out",
        default=None,
        help="output JSON (default benchmarks/results/dynamics_<device>_<date>.json)",
    )
    p.add_argument(
        "--out-dir",
        default=os.path.join(HERE, "results"),
        help="folder for the default output name",
    )
    args = p.parse_args(argv)
    if args.tiny:
        args.n, args.times, args.width, args.d_in, args.outputs = 16, 20, 16, 8, 3
        args.seeds, args.traj_n, args.steps, args.record_every, args.repeats = 2, 16, 20, 5, 1

    import jax

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import jaxlib
    import optax

    import jaxdyn

    dtype = jnp.float64 if args.x64 else jnp.float32
    d = jax.devices()[0]
    results = {}
    for name, fn in (
        ("closed_form", closed_form_vs_scan),
        ("ensemble", ensemble),
        ("scan_vs_loop", scan_vs_loop),
    ):
        if name in args.only:
            results[name] = fn(args, dtype)
            print(
                f"{name}: "
                + ", ".join(
                    f"{k}={v:.4g}"
                    for k, v in results[name].items()
                    if k.startswith("speedup") or k == "max_abs_diff"
                ),
                flush=True,
            )
            if "max_abs_err_vs_float64_reference" in results[name]:
                print(
                    f"  errors vs float64: {results[name]['max_abs_err_vs_float64_reference']}",
                    flush=True,
                )
    C.save_results(
        args,
        "dynamics",
        1,
        C.metadata(
            {
                "jax": jax.__version__,
                "jaxlib": jaxlib.__version__,
                "jaxdyn": jaxdyn.__version__,
                "optax": optax.__version__,
                "device": f"{d.platform}:{getattr(d, 'device_kind', '')}",
                "repeats": args.repeats,
                "dtype": "float64" if args.x64 else "float32",
                "tiny": args.tiny,
                "peak_rss_mib": C.peak_rss_mib(),
            }
        ),
        results,
        f"dynamics_{d.platform}_{C.today()}.json",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
