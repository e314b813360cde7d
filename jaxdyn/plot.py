"""Matplotlib figures. Each function returns a `Figure` (or draws on a given `ax`) and never
touches pyplot's global state, so it is safe in notebooks, scripts and threads."""
from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["linear_vs_real_outputs", "linear_vs_real_losses", "network_vs_kernel", "width_scaling",
           "save_linear_vs_real_figures"]


def _figure(figsize=(10, 4)):
    from matplotlib.figure import Figure
    return Figure(figsize=figsize, layout="constrained")


def _pick(points: Sequence[dict[str, Any]], width: int) -> dict[str, Any]:
    return next(p for p in points if p["width"] == width and p["seed"] == min(
        q["seed"] for q in points if q["width"] == width))


def linear_vs_real_outputs(points: Sequence[dict[str, Any]], widths: Sequence[int] | None = None):
    """Test outputs over training steps: network (solid), linearization (dashed) and closed
    form (dotted), one panel per width (default: narrowest and widest)."""
    all_widths = sorted({p["width"] for p in points})
    widths = list(widths) if widths is not None else sorted({all_widths[0], all_widths[-1]})
    fig = _figure((5 * len(widths), 4))
    axes = np.atleast_1d(fig.subplots(1, len(widths), sharey=True))
    for ax, w in zip(axes, widths):
        p = _pick(points, w)
        steps = np.asarray(p["steps"])
        net, lin = np.asarray(p["f_test_net"]), np.asarray(p["f_test_lin"])
        cf = None if p.get("f_test_closed_form") is None else np.asarray(p["f_test_closed_form"])
        for j in range(net.shape[1]):
            line, = ax.plot(steps, net[:, j], lw=2, label="network" if j == 0 else None)
            ax.plot(steps, lin[:, j], "--", color="k", lw=1, label="linearized" if j == 0 else None)
            if cf is not None:
                ax.plot(steps, cf[:, j], ":", color=line.get_color(), lw=3, alpha=0.6,
                        label="closed form" if j == 0 else None)
        ax.set(title=f"width {w}", xlabel="step", ylabel="output on test points")
    axes[0].legend()
    return fig


def linear_vs_real_losses(points: Sequence[dict[str, Any]], width: int | None = None):
    """Training loss over steps for network, linearization and closed form (one width)."""
    width = width if width is not None else max(p["width"] for p in points)
    p = _pick(points, width)
    fig = _figure((5, 4))
    ax = fig.subplots()
    steps = np.maximum(np.asarray(p["steps"]), 1)
    ax.loglog(steps, p["loss_net"], lw=2, label="network")
    ax.loglog(steps, p["loss_lin"], "--", color="k", label="linearized")
    if p.get("loss_closed_form") is not None:
        ax.loglog(steps, p["loss_closed_form"], ":", lw=3, label="closed form")
    ax.set(title=f"training loss, width {width}", xlabel="step (step 0 drawn at 1)", ylabel="loss")
    ax.legend()
    return fig


def width_scaling(results: dict[str, Any], ax=None):
    """Plateau RMSE(f, f_lin) and relative kernel / weight change against width, log-log,
    with the fitted power laws and the reference slopes -1 and -1/2."""
    fig = None
    if ax is None:
        fig = _figure((6, 4.5))
        ax = fig.subplots()
    rows = results["per_width"]
    w = np.array([r["width"] for r in rows], float)
    for key, label, marker in [("plateau_rmse", "plateau RMSE(f, f_lin)", "o"),
                               ("kernel_change", "kernel change", "s"),
                               ("weight_change", "weight change", "^")]:
        mean = np.array([r[key]["mean"] for r in rows])
        std = np.array([r[key]["std"] for r in rows])
        fit = results["slope_fits"][key]
        ax.errorbar(w, mean, yerr=std, fmt=marker, capsize=3,
                    label=f"{label}: slope {fit['slope']:+.2f}")
        ax.plot(w, np.exp(fit["intercept"]) * w ** fit["slope"], "-", color=ax.lines[-1].get_color()
                if ax.lines else None, alpha=0.5)
    for slope, style in [(-1.0, "k:"), (-0.5, "k--")]:
        ref = rows[0]["plateau_rmse"]["mean"] * (w / w[0]) ** slope
        ax.plot(w, ref, style, lw=1, label=f"reference slope {slope:g}")
    ax.set(xscale="log", yscale="log", xlabel="width", title="distance from the linear regime")
    ax.legend(fontsize=8)
    return fig if fig is not None else ax.figure


def save_linear_vs_real_figures(results: dict[str, Any], points: Sequence[dict[str, Any]],
                                out_dir: str | pathlib.Path) -> list[pathlib.Path]:
    """Writes outputs.png, loss.png and scaling.png for the `linear-vs-real` experiment."""
    out = pathlib.Path(out_dir)
    paths = []
    for name, fig in [("outputs.png", linear_vs_real_outputs(points)),
                      ("loss.png", linear_vs_real_losses(points)),
                      ("scaling.png", width_scaling(results))]:
        fig.savefig(out / name, dpi=110)
        paths.append(out / name)
    return paths


def network_vs_kernel(x_test, mean, std, net_outputs, *, x_train=None, y_train=None,
                      y_test=None, ax=None, title: str | None = None):
    """Trained finite networks against the infinite-width ensemble on 1D inputs.

    Args:
      x_test: `(m,)` or `(m, 1)` test inputs (sorted for a clean line).
      mean, std: `(m,)` ensemble mean and standard deviation (`mse_ensemble`), drawn as a
        line and a 2-sigma band.
      net_outputs: `(S, m)` outputs of S trained networks (different seeds).
      x_train, y_train, y_test: optional data to overlay.
    """
    fig = None
    if ax is None:
        fig = _figure((6, 4.5))
        ax = fig.subplots()
    xs = np.asarray(x_test).reshape(-1)
    mean, std = np.asarray(mean).reshape(-1), np.asarray(std).reshape(-1)
    nets_ = np.asarray(net_outputs).reshape(-1, xs.size)
    for i, f in enumerate(nets_):
        ax.plot(xs, f, color="tab:blue", alpha=0.25, lw=1, label="trained networks" if i == 0 else None)
    ax.plot(xs, mean, color="tab:red", lw=2, label="infinite-width mean")
    ax.fill_between(xs, mean - 2 * std, mean + 2 * std, color="tab:red", alpha=0.15, label="2 sigma")
    if y_test is not None:
        ax.plot(xs, np.asarray(y_test).reshape(-1), "k:", label="target")
    if x_train is not None and y_train is not None:
        ax.plot(np.asarray(x_train).reshape(-1), np.asarray(y_train).reshape(-1), "k.", ms=8, label="train")
    ax.set(xlabel="x", ylabel="output", title=title or "network vs kernel")
    ax.legend(fontsize=8)
    return fig if fig is not None else ax.figure
