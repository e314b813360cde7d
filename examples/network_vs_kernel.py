"""Network vs kernel: an ensemble of wide networks trained by gradient descent next to the
infinite-width prediction of `jaxdyn.dynamics.mse_ensemble` (mean and 2-sigma band over
random initialisations, Lee et al. 2019 eqs. 14-16). One model description, `nets.serial`,
gives both: `apply_fn` for the finite networks and `kernel_fn` for the infinite ones.

    python examples/network_vs_kernel.py [--width 512] [--seeds 16] [--steps 1000] [--out DIR]
"""

import argparse
import json
import pathlib

import jax
import jax.numpy as jnp
import optax

import jaxdyn
from jaxdyn import nets, plot

jax.config.update("jax_enable_x64", True)


def figure(x_test, mean, std, f_nets, x_train, y_train, y_test, *, seeds: int, width: int):
    """The example's figure: `(S, m)` trained-network outputs `f_nets` on the `(m, 1)` grid
    `x_test` against the `(m,)` infinite-width `mean` and `std`. Returns a `Figure`."""
    return plot.network_vs_kernel(
        x_test,
        mean,
        std,
        f_nets,
        x_train=x_train,
        y_train=y_train,
        y_test=y_test,
        title=f"{seeds} networks of width {width} vs infinite width:\n"
        "most of each network should lie inside the 2-sigma band",
    )


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--width", type=int, default=512, help="hidden width (default 512)")
    ap.add_argument("--seeds", type=int, default=16, help="networks in the ensemble (default 16)")
    ap.add_argument("--steps", type=int, default=1000, help="gradient descent steps (default 1000)")
    ap.add_argument("--out", default="out/network_vs_kernel", help="output folder")
    args = ap.parse_args(argv)

    ds = jaxdyn.data.multi_frequency_1d(n_train=12, n_test=100, frequencies=(1, 2), seed=0)
    x, y, xt, yt = map(jnp.asarray, (ds.x_train, ds.y_train, ds.x_test, ds.y_test))
    init_fn, apply_fn, kernel_fn = nets.serial(
        nets.Dense(args.width, W_std=1.5, b_std=0.5),
        nets.Erf(),
        nets.Dense(args.width, W_std=1.5, b_std=0.5),
        nets.Erf(),
        nets.Dense(1, W_std=1.5, b_std=0.5),
    )

    k_train = kernel_fn(x, None, "ntk")
    lr = 0.5 * float(jaxdyn.dynamics.mse(k_train, y).critical_learning_rate)
    ensemble = jaxdyn.dynamics.mse_ensemble(kernel_fn, x, y, learning_rate=lr)
    gauss = ensemble(xt, get="ntk", t=float(args.steps), compute_cov=True)
    mean, std = gauss.mean[:, 0], jnp.sqrt(jnp.clip(jnp.diagonal(gauss.covariance), 0.0))

    keys = jax.random.split(jax.random.PRNGKey(1), args.seeds)
    params = [init_fn(key, x.shape)[1] for key in keys]
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *params)
    train_one = lambda p: jaxdyn.trajectory(
        apply_fn,
        p,
        x,
        y,
        optimizer=optax.sgd(lr),  # noqa: E731
        steps=args.steps,
        record_every=args.steps,
        x_test=xt,
    )
    trajs = jax.vmap(train_one)(stacked)  # all seeds in one compiled program
    f_nets = trajs.f_test[:, -1, :, 0]  # (S, m)

    emp_mean, emp_std = f_nets.mean(0), f_nets.std(0)
    summary = dict(
        width=args.width,
        seeds=args.seeds,
        steps=args.steps,
        learning_rate=lr,
        rmse_mean=float(jnp.sqrt(jnp.mean((emp_mean - mean) ** 2))),
        rmse_std=float(jnp.sqrt(jnp.mean((emp_std - std) ** 2))),
        mean_std=float(jnp.mean(std)),
        fraction_inside_2_sigma=float(jnp.mean(jnp.abs(f_nets - mean) <= 2 * std)),
    )
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jaxdyn.compare.write_json_atomic(out / "results.json", summary)
    fig = figure(xt, mean, std, f_nets, x, y, yt, seeds=args.seeds, width=args.width)
    fig.savefig(out / "network_vs_kernel.png", dpi=120)
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
