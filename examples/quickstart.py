"""Quickstart: a wide network trained by gradient descent next to its NTK prediction.

Trains a 2-hidden-layer MLP (NTK parameterisation) on a built-in synthetic 1D regression
task with optax SGD, and puts its outputs beside (a) the same network linearized at
initialisation and trained with the same optimizer, and (b) the closed-form GD dynamics of
`jaxdyn.dynamics.mse` on the empirical NTK. Uses only jaxdyn's public API.

    python examples/quickstart.py [--width 512] [--steps 1000] [--out out/quickstart]
"""

import argparse
import json
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxdyn
from jaxdyn import plot

jax.config.update("jax_enable_x64", True)


def task(n_train: int, n_test: int, key: jax.Array):
    """1D regression, two frequencies: y = sin(pi x) + 0.5 sin(4 pi x)."""
    target = lambda x: jnp.sin(jnp.pi * x) + 0.5 * jnp.sin(4 * jnp.pi * x)  # noqa: E731
    x_train = jax.random.uniform(key, (n_train, 1), minval=-1.0, maxval=1.0)
    x_test = jnp.linspace(-1.0, 1.0, n_test)[:, None]
    return x_train, target(x_train), x_test, target(x_test)


def init_mlp(key: jax.Array, sizes: list[int]):
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        (jax.random.normal(k, (a, b)), jax.random.normal(jax.random.fold_in(k, 1), (b,)))
        for k, a, b in zip(keys, sizes[:-1], sizes[1:])
    ]


def mlp(params, x):
    """NTK parameterisation: z = W x / sqrt(fan_in) + 0.1 b, erf-like tanh activations."""
    h = x
    for i, (w, b) in enumerate(params):
        h = h @ w / np.sqrt(w.shape[0]) + 0.1 * b[None, :]
        if i < len(params) - 1:
            h = jnp.tanh(h)
    return h


def figure(
    x_train,
    y_train,
    x_test,
    y_test,
    net_test,
    closed_test,
    record,
    rmse_net,
    rmse_lin,
    *,
    width: int,
    steps: int,
):
    """The quickstart figure: the fit after training, and the distance to the closed form.

    Args:
      x_train, y_train: `(n, 1)` training data; x_test, y_test: `(m, 1)` test grid and target.
      net_test, closed_test: `(m, 1)` network and closed-form outputs after training.
      record: `(R,)` recorded steps (> 0: the right panel is log-log).
      rmse_net, rmse_lin: `(R,)` test RMSE of the network and of the linearized network to
        the closed form at `record`.
      width, steps: for the titles.

    Returns:
      A matplotlib `Figure` (never shown: no pyplot state).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(x_test[:, 0], y_test[:, 0], "k:", label="target")
    ax1.plot(x_test[:, 0], net_test[:, 0], lw=2, label="network (SGD)")
    ax1.plot(x_test[:, 0], closed_test[:, 0], "--", label="closed form (NTK)")
    ax1.plot(x_train[:, 0], y_train[:, 0], "k.", ms=8, label="training points")
    ax1.set(
        xlabel="input x",
        ylabel="output f(x) (target units)",
        title=f"after {steps} SGD steps, width {width}:\n"
        "the network's fit next to the NTK closed form",
    )
    ax1.legend(fontsize=8)
    # Step 0 is the common initialisation (zero distance): the log-log panel starts at step 1.
    plot.curves(
        record,
        {"network": rmse_net, "linearized network": rmse_lin},
        ax=ax2,
        logx=True,
        logy=True,
        xlabel="training step (SGD updates)",
        ylabel="test RMSE to the closed form (target units)",
        style_title="trained model",
        title="distance to the closed form: the linearized network\n"
        "matches it to float64 rounding, the network drifts slowly",
    )
    return fig


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--width", type=int, default=512, help="hidden width (default 512)")
    ap.add_argument("--n-train", type=int, default=32, help="training points (default 32)")
    ap.add_argument("--steps", type=int, default=1000, help="SGD steps (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument(
        "--out", default="out/quickstart", help="output folder (default out/quickstart)"
    )
    args = ap.parse_args()
    t_start = time.perf_counter()

    k_data, k_init = jax.random.split(jax.random.PRNGKey(args.seed))
    x_train, y_train, x_test, y_test = task(args.n_train, 100, k_data)
    params0 = init_mlp(k_init, [1, args.width, args.width, 1])

    kernel = jaxdyn.ntk_fn(mlp)
    theta = kernel(x_train, None, params0)  # (n, n)
    theta_test = kernel(x_test, x_train, params0)  # (m, n)
    lr = 0.5 * float(jaxdyn.dynamics.mse(theta, y_train).critical_learning_rate)
    predict = jaxdyn.dynamics.mse(theta, y_train, learning_rate=lr, kind="gd")

    record = np.unique(np.geomspace(1, args.steps, 25).astype(int))
    record = np.concatenate([[0], record])
    f0_train, f0_test = mlp(params0, x_train), mlp(params0, x_test)
    _, cf_test = predict(jnp.asarray(record), f0_train, f0_test, theta_test)
    # Full-batch optax SGD under lax.scan, recorded every step: the network, and the same
    # network linearized at initialisation.
    run = dict(optimizer=optax.sgd(lr), steps=args.steps, x_test=x_test, y_test=y_test)
    net = jaxdyn.trajectory(mlp, params0, x_train, y_train, **run)
    lin = jaxdyn.trajectory(mlp, params0, x_train, y_train, linearize=True, **run)
    nn_test, lin_test = net.f_test[record], lin.f_test[record]

    rmse = lambda a, b: float(jnp.sqrt(jnp.mean((a - b) ** 2)))  # noqa: E731
    rows = [
        dict(
            step=int(s),
            loss_closed_form=float(loss),
            rmse_net_vs_closed_form=rmse(nn_test[i], cf_test[i]),
            rmse_lin_vs_closed_form=rmse(lin_test[i], cf_test[i]),
        )
        for i, (s, loss) in enumerate(zip(record, predict.loss(jnp.asarray(record), f0_train)))
    ]
    print(f"width {args.width}, n_train {args.n_train}, lr {lr:.4g} (half the critical rate)")
    print(
        f"{'step':>6} {'loss (closed form)':>20} {'RMSE net-closed form':>22} "
        f"{'RMSE lin-closed form':>22}"
    )
    for r in rows[:: max(1, len(rows) // 10)] + [rows[-1]]:
        print(
            f"{r['step']:>6} {r['loss_closed_form']:>20.3e} {r['rmse_net_vs_closed_form']:>22.3e}"
            f" {r['rmse_lin_vs_closed_form']:>22.3e}"
        )

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = dict(
        settings=vars(args),
        learning_rate=lr,
        jax=jax.__version__,
        device=str(jax.devices()[0]),
        rows=rows,
        test_rmse_to_target=dict(
            network=rmse(nn_test[-1], y_test), closed_form=rmse(cf_test[-1], y_test)
        ),
    )
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, out / "results.json")

    fig = figure(
        x_train,
        y_train,
        x_test,
        y_test,
        nn_test[-1],
        cf_test[-1],
        record[1:],
        [r["rmse_net_vs_closed_form"] for r in rows[1:]],
        [r["rmse_lin_vs_closed_form"] for r in rows[1:]],
        width=args.width,
        steps=args.steps,
    )
    fig.savefig(out / "quickstart.png", dpi=120)
    print(
        f"wrote {out / 'results.json'} and {out / 'quickstart.png'} in "
        f"{time.perf_counter() - t_start:.1f} s"
    )


if __name__ == "__main__":
    main()
