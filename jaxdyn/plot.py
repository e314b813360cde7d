"""Generic matplotlib figures from arrays and library result objects.

Every function draws on the `ax` it is given (a new `Figure` when `ax` is None) and returns
that axes' `Figure`. Nothing here touches pyplot's global state or the backend, and matplotlib
is imported only when a figure is drawn, so the module is safe in notebooks, scripts, threads
and headless (Agg) runs. Nothing here knows an experiment's file format: experiments turn
their records into arrays and compose these functions (see
`jaxdyn/experiments/linear_vs_real_plots.py`).

Every axes gets an x label, a y label (with units where the quantity has any) and a title; the
legends show exactly what tells the lines apart (in `curves`: line style for one factor, colour
for another).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["curves", "network_vs_kernel", "power_laws", "tidy_log_axis"]

# Line styles in the order `curves` hands them out: solid, dashed, open circles (a marker with
# no line, so a curve that coincides with a dashed one stays visible), dotted, dash-dot.
_STYLES = (
    {"linestyle": "-", "linewidth": 2.0},
    {"linestyle": "--", "linewidth": 1.5},
    {"linestyle": "none", "marker": "o", "markerfacecolor": "none", "markersize": 5},
    {"linestyle": ":", "linewidth": 2.0},
    {"linestyle": "-.", "linewidth": 1.5},
)
_REFERENCE_STYLES = (":", "--", "-.")


def _figure_and_axes(ax, figsize: tuple[float, float]):
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots()


def _colours(n: int) -> list[str]:
    # tab10 while it lasts, then evenly spaced viridis colours (still distinguishable in print).
    if n <= 10:
        return [f"C{i}" for i in range(n)]
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def _plain(value: float, _pos=None) -> str:
    """Tick text for log axes: `0.05`, `300`, `2048`, `1e-05`, never `3x10^2` or `2.05e+03`."""
    if 1 <= abs(value) < 1e6 and float(value).is_integer():
        return str(int(value))
    return f"{value:.3g}"


def tidy_log_axis(axis, values: Sequence[float] | None = None) -> None:
    """Readable ticks on a log-scale matplotlib `Axis` (`ax.xaxis` or `ax.yaxis`).

    Minor ticks keep their marks but lose their labels (matplotlib labels them when the axis
    spans less than a decade, and `3x10^2` then collides with `4x10^2`). The labels are
    plain numbers: at `values` when given (e.g. the widths of a sweep), at 1, 2, 5 times
    powers of ten when the data span under two decades, at powers of ten otherwise.

    Args:
      axis: a matplotlib `Axis` on a log scale, after the data are drawn (its view limits
        choose the ticks).
      values: optional positions to label, e.g. the `(W,)` widths.
    """
    from matplotlib import ticker

    if values is not None:
        axis.set_major_locator(ticker.FixedLocator(np.asarray(values, float)))
        axis.set_major_formatter(ticker.FuncFormatter(_plain))
    else:
        lo, hi = sorted(axis.get_view_interval())
        if lo > 0 and hi / lo < 100:
            subs = (1.0, 2.0, 5.0) if hi / lo >= 4 else tuple(float(s) for s in range(1, 10))
            axis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
            axis.set_major_formatter(ticker.FuncFormatter(_plain))
    axis.set_minor_formatter(ticker.NullFormatter())


def _positive(y: np.ndarray, log: bool) -> np.ndarray:
    # Zeros (e.g. a gap at step 0, where every model starts from the same outputs) have no
    # place on a log axis; NaN leaves a break in the line instead of a warning.
    return np.where(y > 0, y, np.nan) if log else y


def curves(
    x: Any,
    ys: Mapping[Any, Any],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    style_title: str = "model",
    colour_title: str | None = None,
    logx: bool = False,
    logy: bool = False,
    legend: bool = True,
    ax=None,
):
    """Lines over a shared abscissa; line style tells one factor apart, colour another.

    Keys `(style_key, colour_key)` put, e.g., the model in the line style and the width or
    the test example in the colour; the legends then say exactly that (one legend of line
    styles drawn in grey, one of colours drawn solid). A key that is a plain string, or a
    colour key of None, gives a line whose colour follows its style (one legend).

    Args:
      x: `(T,)` abscissa (e.g. training steps).
      ys: key -> `(T,)` values, in drawing order (the order fixes styles and colours).
      xlabel, ylabel, title: axis labels (with units) and the title (what to look at).
      style_title, colour_title: legend titles (e.g. "model", "width").
      logx, logy: log scales; values <= 0 are not drawn on a log axis.
      legend: False leaves the legends out (e.g. on all but one panel of a figure).
      ax: axes to draw on (default: a new figure).

    Returns:
      The `Figure` of `ax`.
    """
    from matplotlib.lines import Line2D

    fig, ax = _figure_and_axes(ax, (6, 4.5))
    xs = np.asarray(x, float).reshape(-1)
    keys = [(k, None) if not isinstance(k, tuple) else k for k in ys]
    style_keys = list(dict.fromkeys(s for s, _ in keys))
    colour_keys = list(dict.fromkeys(c for _, c in keys if c is not None))
    by_style = all(c is None for _, c in keys)
    style_of = {s: _STYLES[i % len(_STYLES)] for i, s in enumerate(style_keys)}
    colours = _colours(len(style_keys) if by_style else len(colour_keys))
    colour_of = dict(zip(style_keys if by_style else colour_keys, colours))
    for key, (s, c) in zip(ys, keys):
        y = _positive(np.asarray(ys[key], float).reshape(-1), logy)
        if y.shape != xs.shape:
            raise ValueError(
                f"`curves(ys[{key!r}])` must have shape {xs.shape} like `x`; got {y.shape}."
            )
        colour = colour_of[s] if by_style else colour_of.get(c, "0.25")  # None: grey
        ax.plot(xs, y, color=colour, markevery=max(1, xs.size // 15), **style_of[s])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logx:
        ax.set_xscale("log")
        tidy_log_axis(ax.xaxis)
    if logy:
        ax.set_yscale("log")
        tidy_log_axis(ax.yaxis)
    if legend:
        grey = "0.25"
        styles = [
            Line2D([], [], color=colour_of[s] if by_style else grey, **style_of[s])
            for s in style_keys
        ]
        # Beside the axes, not on the data; constrained layout makes room for them.
        first = ax.legend(
            styles,
            [str(s) for s in style_keys],
            title=style_title,
            fontsize=8,
            title_fontsize=8,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
        )
        if colour_keys:
            ax.add_artist(first)
            swatches = [Line2D([], [], color=colour_of[c], linewidth=2.0) for c in colour_keys]
            ax.legend(
                swatches,
                [str(c) for c in colour_keys],
                title=colour_title,
                fontsize=8,
                title_fontsize=8,
                loc="lower left",
                bbox_to_anchor=(1.02, 0.0),
            )
    return fig


def _fit_parts(fit: Any) -> tuple[float, float]:
    """(slope, intercept) of a `compare.Slope` or any object with those attributes."""
    try:
        return float(fit.slope), float(fit.intercept)
    except AttributeError:
        raise TypeError(
            "`power_laws(fits)` values must have `slope` and `intercept` attributes "
            f"(a `jaxdyn.compare.Slope`); got {type(fit).__name__}."
        ) from None


def power_laws(
    x: Any,
    means: Mapping[str, Any],
    stds: Mapping[str, Any] | None = None,
    fits: Mapping[str, Any] | None = None,
    *,
    keys: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    reference_slopes: Sequence[float] = (-1.0, -0.5),
    xlabel: str = "width",
    ylabel: str,
    title: str,
    ax=None,
):
    """Quantities against a size on log-log axes, with fitted and reference power laws.

    Takes `jaxdyn.compare.width_sweep`'s result directly:
    `power_laws(sweep.widths, sweep.mean, sweep.std, sweep.slopes, keys=[...], ...)`.

    Args:
      x: `(W,)` positive sizes (e.g. widths); every one is a labelled tick.
      means: name -> `(W,)` positive values (e.g. means over seeds).
      stds: optional name -> `(W,)` spreads, drawn as error bars.
      fits: optional name -> fitted `Slope` (`slope`, `intercept` of `log y` on `log x`),
        drawn as a line with the slope in the legend.
      keys: names to draw (default: those of `fits`, else all of `means`).
      labels: optional name -> legend text (default: the name).
      reference_slopes: slopes drawn as black lines through the first point of the first
        quantity, to compare against (e.g. -1/2 for `1/sqrt(width)`).
      xlabel, ylabel, title: axis labels (with units) and the title.
      ax: axes to draw on (default: a new figure).

    Returns:
      The `Figure` of `ax`.
    """
    fig, ax = _figure_and_axes(ax, (6, 4.5))
    xs = np.asarray(x, float).reshape(-1)
    names = list(keys) if keys is not None else list(fits if fits is not None else means)
    labels = dict(labels or {})
    for i, name in enumerate(names):
        mean = np.asarray(means[name], float).reshape(-1)
        std = None if stds is None else np.asarray(stds[name], float).reshape(-1)
        text = labels.get(name, name)
        colour = f"C{i % 10}"
        if fits is not None and name in fits:
            slope, intercept = _fit_parts(fits[name])
            text = f"{text}: fitted slope {slope:+.2f}"
            ax.plot(xs, np.exp(intercept) * xs**slope, "-", color=colour, alpha=0.5)
        ax.errorbar(xs, mean, yerr=std, fmt="osd^v"[i % 5], color=colour, capsize=3, label=text)
    if names and reference_slopes:
        anchor = float(np.asarray(means[names[0]], float).reshape(-1)[0])
        for j, slope in enumerate(reference_slopes):
            ax.plot(
                xs,
                anchor * (xs / xs[0]) ** slope,
                color="k",
                lw=1,
                linestyle=_REFERENCE_STYLES[j % len(_REFERENCE_STYLES)],
                label=f"reference slope {slope:g}",
            )
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel, title=title)
    tidy_log_axis(ax.xaxis, xs)
    tidy_log_axis(ax.yaxis)
    ax.legend(fontsize=8)
    return fig


def network_vs_kernel(
    x_test,
    mean,
    std,
    net_outputs,
    *,
    x_train=None,
    y_train=None,
    y_test=None,
    ax=None,
    title: str | None = None,
):
    """Trained finite networks against the infinite-width ensemble on 1D inputs.

    Args:
      x_test: `(m,)` or `(m, 1)` test inputs (sorted for a clean line).
      mean, std: `(m,)` ensemble mean and standard deviation (`mse_ensemble`), drawn as a
        line and a 2-sigma band.
      net_outputs: `(S, m)` outputs of S trained networks (different seeds).
      x_train, y_train, y_test: optional data to overlay.
      ax: axes to draw on (default: a new figure).
      title: default "trained networks vs the infinite-width prediction".

    Returns:
      The `Figure` of `ax`.
    """
    fig, ax = _figure_and_axes(ax, (6, 4.5))
    xs = np.asarray(x_test).reshape(-1)
    mean, std = np.asarray(mean).reshape(-1), np.asarray(std).reshape(-1)
    nets_ = np.asarray(net_outputs).reshape(-1, xs.size)
    for i, f in enumerate(nets_):
        ax.plot(
            xs, f, color="tab:blue", alpha=0.25, lw=1, label="trained networks" if i == 0 else None
        )
    ax.plot(xs, mean, color="tab:red", lw=2, label="infinite-width mean")
    ax.fill_between(
        xs,
        mean - 2 * std,
        mean + 2 * std,
        color="tab:red",
        alpha=0.15,
        label="infinite-width mean ± 2 sigma",
    )
    if y_test is not None:
        ax.plot(xs, np.asarray(y_test).reshape(-1), "k:", label="target")
    if x_train is not None and y_train is not None:
        ax.plot(
            np.asarray(x_train).reshape(-1),
            np.asarray(y_train).reshape(-1),
            "k.",
            ms=8,
            label="training points",
        )
    ax.set(
        xlabel="input x",
        ylabel="output f(x) (target units)",
        title=title or "trained networks vs the infinite-width prediction",
    )
    ax.legend(fontsize=8)
    return fig
