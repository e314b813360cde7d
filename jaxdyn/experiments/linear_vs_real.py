"""Experiment `linear-vs-real`: wide networks against their linearization and the closed form.

Lee et al. (2019), "Wide neural networks of any depth evolve as linear models under gradient
descent". For fully connected networks of several widths (NTK parameterisation) on a real
dataset, train with optax (full-batch GD by default) next to the linearized network trained
with the same optimizer and the closed-form dynamics of `jaxdyn.dynamics.mse` on the initial
empirical NTK. Records, per width and seed: the RMSE between network and linearization on test
inputs over time (its final value is the plateau error), the relative NTK change
`||Theta_T - Theta_0||_F / ||Theta_0||_F`, the relative weight change
`||theta_T - theta_0|| / ||theta_0||`, losses and test accuracies; then fits log-log slopes
against width. Built only on jaxdyn's public API. Each finished (width, seed) point is written
atomically, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxdyn

NAME = "linear-vs-real"
SUMMARY = "wide networks vs their linearization and the closed-form NTK dynamics (Lee et al. 2019)"

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu, "erf": jax.scipy.special.erf, "tanh": jnp.tanh}
OPTIMIZERS = ("sgd", "momentum", "adam")
# Classification datasets with a binary +-1 subset (`classes`); the file-based ones need their
# files (see `jaxdyn.data`) under --data-dir, $JAXDYN_DATA or the Debian dataset folder.
DATASETS = ("digits", "mnist1d", "fashion_mnist", "mnist", "cifar10")
FILE_DATASETS = ("fashion_mnist", "mnist", "cifar10")


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of one run; every field is a command-line option (`--n-train`, ...)."""
    dataset: str = "digits"
    data_dir: str | None = None
    classes: tuple[int, int] = (3, 8)
    n_train: int = 128
    n_test: int = 64
    widths: tuple[int, ...] = (128, 256, 512, 1024, 2048)
    seeds: int = 2
    depth: int = 1
    activation: str = "relu"
    w_std: float = 1.0
    b_std: float = 0.1
    optimizer: str = "sgd"
    learning_rate: float = 1.0
    momentum: float = 0.9
    steps: int = 500
    record_every: int = 10
    dtype: str = "float64"

    def validate(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"`dataset` must be one of {DATASETS}; got {self.dataset!r}.")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {tuple(ACTIVATIONS)}; got {self.activation!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"`optimizer` must be one of {OPTIMIZERS}; got {self.optimizer!r}.")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"`dtype` must be 'float32' or 'float64'; got {self.dtype!r}.")
        if not self.widths or any(w < 1 for w in self.widths):
            raise ValueError(f"`widths` must be positive ints; got {self.widths!r}.")
        for name in ("n_train", "n_test", "seeds", "depth", "steps", "record_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1; got {getattr(self, name)!r}.")
        if self.steps % self.record_every:
            raise ValueError(f"`steps` ({self.steps}) must be a multiple of `record_every` "
                             f"({self.record_every}).")
        if self.learning_rate <= 0:
            raise ValueError(f"`learning_rate` must be > 0; got {self.learning_rate!r}.")


def mlp_fn(depth: int, activation: str, w_std: float, b_std: float):
    """(init, apply) of a fully connected net in NTK parameterisation:
    `z = w_std / sqrt(fan_in) * x @ W + b_std * b`, W and b standard normal."""
    act = ACTIVATIONS[activation]

    def init(key: jax.Array, d_in: int, width: int, d_out: int, dtype) -> list:
        sizes = [d_in] + [width] * depth + [d_out]
        keys = jax.random.split(key, len(sizes) - 1)
        return [(jax.random.normal(k, (a, b), dtype), jax.random.normal(jax.random.fold_in(k, 1), (b,), dtype))
                for k, a, b in zip(keys, sizes[:-1], sizes[1:])]

    def apply(params: list, x: jax.Array) -> jax.Array:
        h = x
        for i, (w, b) in enumerate(params):
            h = (w_std / float(np.sqrt(w.shape[0]))) * (h @ w) + b_std * b[None, :]
            if i < len(params) - 1:
                h = act(h)
        return h
    return init, apply


def load_data(config: Config):
    """Binary subset with +-1 targets, standardised with train statistics."""
    kwargs: dict[str, Any] = dict(n_train=config.n_train, n_test=config.n_test, standardize=True,
                                  seed=0, classes=tuple(config.classes))
    if config.dataset in FILE_DATASETS:
        kwargs["data_dir"] = config.data_dir
    ds = jaxdyn.data.load(config.dataset, **kwargs)
    dtype = jnp.dtype(config.dtype)
    flat = lambda a: jnp.asarray(a, dtype).reshape(a.shape[0], -1)  # noqa: E731
    return flat(ds.x_train), jnp.asarray(ds.y_train, dtype), flat(ds.x_test), jnp.asarray(ds.y_test, dtype)


def _optimizer(config: Config) -> tuple[optax.GradientTransformation, str | None]:
    """The optax optimizer and the closed-form `kind` that describes it exactly (None: none)."""
    if config.optimizer == "sgd":
        return optax.sgd(config.learning_rate), "gd"
    if config.optimizer == "momentum":
        return optax.sgd(config.learning_rate, momentum=config.momentum), "momentum"
    return optax.adam(config.learning_rate), None


def _norm(tree) -> float:
    return float(np.sqrt(sum(float(jnp.sum(a.astype(jnp.float64) ** 2)) for a in jax.tree_util.tree_leaves(tree))))


def run_point(config: Config, data, width: int, seed: int) -> dict[str, Any]:
    """Trains one (width, seed) point; returns JSON-serialisable metrics and curves."""
    x, y, xt, yt = data
    init, apply = mlp_fn(config.depth, config.activation, config.w_std, config.b_std)
    params0 = init(jax.random.PRNGKey(seed), x.shape[1], width, y.shape[1], jnp.dtype(config.dtype))
    optimizer, kind = _optimizer(config)
    run = dict(optimizer=optimizer, steps=config.steps, record_every=config.record_every,
               x_test=xt, y_test=yt)
    net = jaxdyn.trajectory(apply, params0, x, y, kernel_every=config.steps, keep_params=False, **run)
    lin = jaxdyn.trajectory(apply, params0, x, y, linearize=True, **run)
    closed = None
    theta = net.ntk[0]
    critical = float(jaxdyn.dynamics.mse(theta, y).critical_learning_rate)
    if kind is not None:
        theta_test = jaxdyn.empirical_ntk(apply, params0, xt, x)
        predict = jaxdyn.dynamics.mse(theta, y, learning_rate=config.learning_rate, kind=kind,
                                      momentum=config.momentum if kind == "momentum" else None)
        closed = predict(net.steps, apply(params0, x), apply(params0, xt), theta_test)
    agree = jaxdyn.compare.agreement(net, lin, closed, y_test=yt)
    tolist = lambda a: None if a is None else np.asarray(a, np.float64).tolist()  # noqa: E731
    show = min(3, xt.shape[0])
    return dict(
        plateau_rmse=float(agree.rmse_net_lin_test[-1]),
        kernel_change=float(jaxdyn.kernel_change(net)[-1]),
        weight_change=float(net.param_distance[-1]) / _norm(params0),
        final_loss_net=float(net.loss[-1]), final_loss_lin=float(lin.loss[-1]),
        test_accuracy_net=float(agree.accuracy_net_test[-1]),
        test_accuracy_lin=float(agree.accuracy_lin_test[-1]),
        critical_learning_rate=critical,
        steps=tolist(net.steps),
        rmse_net_lin_test=tolist(agree.rmse_net_lin_test),
        rmse_lin_closed_form_test=tolist(agree.rmse_lin_closed_form_test),
        loss_net=tolist(net.loss), loss_lin=tolist(lin.loss),
        loss_closed_form=tolist(None if closed is None else jnp.mean((closed[0] - y[None]) ** 2, axis=(1, 2)) / 2),
        f_test_net=tolist(net.f_test[:, :show, 0]), f_test_lin=tolist(lin.f_test[:, :show, 0]),
        f_test_closed_form=tolist(None if closed is None else closed[1][:, :show, 0]),
    )


def _environment() -> dict[str, Any]:
    import flax
    return dict(jax=jax.__version__, jaxlib=jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
                flax=flax.__version__, optax=optax.__version__, numpy=np.__version__,
                jaxdyn=jaxdyn.__version__, python=platform.python_version(),
                device=str(jax.devices()[0]), device_kind=jax.devices()[0].device_kind,
                platform=jax.devices()[0].platform, device_count=jax.device_count())


def run(config: Config, out_dir: str | os.PathLike, *,
        progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Runs the sweep (resuming from `out_dir/points`), writes `results.json` and figures.

    Returns the results dict (also in `out_dir/results.json`).
    """
    config.validate()
    if config.dtype == "float64" and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings_path = out / "settings.json"
    settings = dataclasses.asdict(config)
    if settings_path.exists():
        previous = json.loads(settings_path.read_text())
        if previous != json.loads(json.dumps(settings)):
            raise ValueError(
                f"`out` {str(out)!r} holds a run with other settings ({previous}); resume it with "
                "the same options or choose another --out.")
    t0 = time.perf_counter()
    data = load_data(config)     # before claiming the folder: a missing dataset leaves no trace
    jaxdyn.compare.write_json_atomic(settings_path, settings)
    sweep = jaxdyn.compare.width_sweep(
        lambda w, s: run_point(config, data, w, s), list(config.widths), list(range(config.seeds)),
        out_dir=out, progress=progress,
        metrics=["plateau_rmse", "kernel_change", "weight_change"])
    results = dict(
        experiment=NAME, settings=settings, environment=_environment(),
        wall_seconds=time.perf_counter() - t0,
        plateau_rmse_slope=sweep.slopes["plateau_rmse"].slope,
        kernel_change_slope=sweep.slopes["kernel_change"].slope,
        weight_change_slope=sweep.slopes["weight_change"].slope,
        slope_fits={k: v._asdict() for k, v in sweep.slopes.items()},
        per_width=[dict(width=int(w), **{m: dict(mean=float(sweep.mean[m][i]), std=float(sweep.std[m][i]))
                                          for m in ("plateau_rmse", "kernel_change", "weight_change",
                                                    "final_loss_net", "test_accuracy_net",
                                                    "test_accuracy_lin", "critical_learning_rate")})
                   for i, w in enumerate(sweep.widths)],
        figures=["outputs.png", "loss.png", "scaling.png"],
    )
    jaxdyn.compare.write_json_atomic(out / "results.json", results)
    from jaxdyn import plot
    plot.save_linear_vs_real_figures(results, sweep.points, out)
    return results


def options() -> list[tuple[str, dict[str, Any]]]:
    """Command-line options (argparse add_argument keyword dicts), one per Config field."""
    d = Config()
    return [
        ("--dataset", dict(default=d.dataset, choices=DATASETS,
                           help=f"dataset (default {d.dataset}: scikit-learn's handwritten digits; "
                                "fashion_mnist, mnist and cifar10 read their files)")),
        ("--data-dir", dict(default=None, help="folder with the dataset files (default: $JAXDYN_DATA, "
                                               "then /usr/share/datasets/fashion-mnist)")),
        ("--classes", dict(default=list(d.classes), type=int, nargs=2, metavar=("A", "B"),
                           help=f"binary task: class A -> -1, B -> +1 (default {d.classes[0]} {d.classes[1]})")),
        ("--n-train", dict(default=d.n_train, type=int, help=f"training points (default {d.n_train})")),
        ("--n-test", dict(default=d.n_test, type=int, help=f"test points (default {d.n_test})")),
        ("--widths", dict(default=list(d.widths), type=int, nargs="+",
                          help=f"hidden widths (default {' '.join(map(str, d.widths))})")),
        ("--seeds", dict(default=d.seeds, type=int, help=f"seeds per width (default {d.seeds})")),
        ("--depth", dict(default=d.depth, type=int, help=f"hidden layers (default {d.depth})")),
        ("--activation", dict(default=d.activation, choices=tuple(ACTIVATIONS),
                              help=f"activation (default {d.activation})")),
        ("--w-std", dict(default=d.w_std, type=float, help=f"weight scale W_std (default {d.w_std})")),
        ("--b-std", dict(default=d.b_std, type=float, help=f"bias scale b_std (default {d.b_std})")),
        ("--optimizer", dict(default=d.optimizer, choices=OPTIMIZERS,
                             help="sgd (full-batch GD) and momentum have exact closed forms; adam has none "
                                  f"(default {d.optimizer})")),
        ("--learning-rate", dict(default=d.learning_rate, type=float,
                                 help=f"learning rate (default {d.learning_rate})")),
        ("--momentum", dict(default=d.momentum, type=float,
                            help=f"momentum for --optimizer momentum (default {d.momentum})")),
        ("--steps", dict(default=d.steps, type=int, help=f"optimizer steps (default {d.steps})")),
        ("--record-every", dict(default=d.record_every, type=int,
                                help=f"record outputs every this many steps (default {d.record_every})")),
        ("--dtype", dict(default=d.dtype, choices=("float32", "float64"),
                         help=f"floating point type (default {d.dtype})")),
    ]


def config_from_args(args) -> Config:
    return Config(dataset=args.dataset, data_dir=args.data_dir, classes=tuple(args.classes), n_train=args.n_train,
                  n_test=args.n_test, widths=tuple(args.widths), seeds=args.seeds, depth=args.depth,
                  activation=args.activation, w_std=args.w_std, b_std=args.b_std,
                  optimizer=args.optimizer, learning_rate=args.learning_rate,
                  momentum=args.momentum, steps=args.steps, record_every=args.record_every,
                  dtype=args.dtype)


def summary_lines(results: dict[str, Any]) -> Sequence[str]:
    """Human-readable summary printed by the CLI."""
    lines = [f"{'width':>7} {'plateau RMSE':>13} {'kernel change':>14} {'weight change':>14} "
             f"{'test acc':>9}"]
    for row in results["per_width"]:
        lines.append(f"{row['width']:>7} {row['plateau_rmse']['mean']:>13.3e} "
                     f"{row['kernel_change']['mean']:>14.3e} {row['weight_change']['mean']:>14.3e} "
                     f"{row['test_accuracy_net']['mean']:>9.3f}")
    lines.append(f"fitted log-log slopes: plateau RMSE {results['plateau_rmse_slope']:+.2f}, "
                 f"kernel change {results['kernel_change_slope']:+.2f}, "
                 f"weight change {results['weight_change_slope']:+.2f}")
    return lines
