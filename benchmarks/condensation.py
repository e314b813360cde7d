"""Benchmark of one phase-diagram row: vmapped against a Python loop and against plain GD.

For each width in --widths, the row of points (gamma, gamma') = (--gamma, g') for g' in
--gamma-primes (default 5 points) trains on the authors' 1-D data (x = -0.5, 0, 0.5 ->
y = -0.5, 0, 1) for exactly --steps gradient steps (the MSE target is set below reach, so every
point does the same work):

  * vmapped: `condensation.fit_grid(width, points, ...)`, the whole row as one compiled,
    vmapped `lax.while_loop`;
  * loop: `condensation.fit(apply_fn, params0, ...)` once per point in a Python loop (one
    compilation shared by all points: the scales are traced arguments);
  * plain_gd: a bare jitted, vmapped `lax.scan` of plain gradient steps (`jax.grad` of the
    MSE, fixed rate) on the same row, without the curvature bound, the rise check or the
    history: what the rate rule costs over the simplest loop (`ratio_to_plain_gd` = vmapped /
    plain_gd; below 1 where the hand-derived gradient beats autodiff's).

Each is timed as the first call (compile + run) and the median of --repeats calls, in wall
and in process CPU time (the machine may be shared; CPU time is the fairer comparison). The
vmapped and looped runs must agree (`max_rd_diff`, relative). Output:
benchmarks/results/condensation_<device>_<date>.json (or --out).
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _common as C  # noqa: E402


def bench_width(args, width: int, dtype) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxdyn.analysis import condensation as cond

    x = jnp.asarray([[-0.5], [0.0], [0.5]], dtype)
    y = jnp.asarray([[-0.5], [0.0], [1.0]], dtype)
    points = [(args.gamma, gp) for gp in args.gamma_primes]
    key = jax.random.PRNGKey(0)
    opts = dict(mse_target=1e-300, max_steps=args.steps, chunk=min(100, args.steps))

    def vmapped():
        return cond.fit_grid(width, points, x, y, key=key, dtype=dtype, **opts)

    models = [cond.two_layer(width, gamma=g, gamma_prime=gp) for g, gp in points]
    starts = [init_fn(key, dtype) for init_fn, _ in models]

    def loop():
        return [cond.fit(ap, p0, x, y, **opts) for (_, ap), p0 in zip(models, starts)]

    p0s = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *starts)
    alphas = jnp.asarray([ap.alpha for _, ap in models], dtype)

    def loss(p, alpha):
        return 0.5 * jnp.mean((cond.forward(p, x, alpha) - y) ** 2)

    @jax.jit
    def floor(p0s, alphas):
        def one(p, alpha):
            def step(q, _):
                g = jax.grad(loss)(q, alpha)
                return jax.tree_util.tree_map(lambda u, v: u - 1e-3 * v, q, g), None

            return jax.lax.scan(step, p, None, length=args.steps)[0]

        return jax.vmap(one)(p0s, alphas)

    t_v, (params0, res) = C.time_calls(vmapped, args.repeats)
    t_l, outs = C.time_calls(loop, args.repeats)
    t_f, _ = C.time_calls(lambda: floor(p0s, alphas), args.repeats)
    rd_v = np.asarray(jax.vmap(cond.relative_distance)(res.params, params0))
    rd_l = np.array([float(cond.relative_distance(o.params, p0)) for o, p0 in zip(outs, starts)])
    row = dict(
        width=width,
        points=len(points),
        steps=args.steps,
        vmapped=t_v,
        loop=t_l,
        plain_gd=t_f,
        speedup_vmapped_vs_loop=t_l["median_s"] / t_v["median_s"],
        speedup_vmapped_vs_loop_cpu=t_l["median_cpu_s"] / max(t_v["median_cpu_s"], 1e-12),
        ratio_to_plain_gd=t_v["median_s"] / t_f["median_s"],
        max_rd_diff=float(np.max(np.abs(rd_v - rd_l) / np.abs(rd_l))),
        all_steps_done=bool(np.all(np.asarray(res.steps) == args.steps)),
    )
    print(
        f"width {width}: vmapped {t_v['median_s']:.3g} s, loop {t_l['median_s']:.3g} s "
        f"(x{row['speedup_vmapped_vs_loop']:.2f}; cpu x{row['speedup_vmapped_vs_loop_cpu']:.2f}), "
        f"plain GD {t_f['median_s']:.3g} s (ratio {row['ratio_to_plain_gd']:.2f}), "
        f"rd diff {row['max_rd_diff']:.1e}",
        flush=True,
    )
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--widths", type=int, nargs="+", default=[1000, 4000, 16000, 100000], help="widths m"
    )
    p.add_argument("--gamma", type=float, default=1.25, help="gamma of the row (default 1.25)")
    p.add_argument(
        "--gamma-primes",
        type=float,
        nargs="+",
        default=[-0.75, -0.25, 0.25, 0.75, 1.25],
        help="gamma' of the row's points",
    )
    p.add_argument("--steps", type=int, default=500, help="gradient steps per point (500)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls after the first (3)")
    p.add_argument("--x64", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--tiny", action="store_true", help="smoke-test sizes")
    p.add_argument("--out", default=None, help="output JSON path")
    p.add_argument("--out-dir", default=os.path.join(HERE, "results"), help="output folder")
    args = p.parse_args(argv)
    if args.tiny:
        args.widths, args.steps, args.repeats, args.gamma_primes = [20, 40], 20, 1, [-0.5, 0.5]

    import jax

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import jaxlib

    import jaxdyn

    dtype = jnp.float64 if args.x64 else jnp.float32
    d = jax.devices()[0]
    results = [bench_width(args, m, dtype) for m in args.widths]
    C.save_results(
        args,
        "condensation",
        1,
        C.metadata(
            {
                "jax": jax.__version__,
                "jaxlib": jaxlib.__version__,
                "jaxdyn": jaxdyn.__version__,
                "device": f"{d.platform}:{getattr(d, 'device_kind', '')}",
                "repeats": args.repeats,
                "dtype": "float64" if args.x64 else "float32",
                "tiny": args.tiny,
                "gamma": args.gamma,
                "gamma_primes": args.gamma_primes,
                "peak_rss_mib": C.peak_rss_mib(),
            }
        ),
        results,
        f"condensation_{d.platform}_{C.today()}.json",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
