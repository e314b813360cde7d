"""Every figure the library, the `linear-vs-real` experiment and the examples draw has a title
and labelled x and y axes on every panel, and legends that name what tells the lines apart.
Built from small synthetic inputs (no training), on matplotlib's Agg renderer, so it is cheap.
The notebook's figures are checked where it runs, in tests/test_notebooks.py."""

import importlib.util
import pathlib

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")  # never a window, whatever MPLBACKEND says

from matplotlib import ticker  # noqa: E402

from jaxdyn import plot  # noqa: E402
from jaxdyn.experiments import linear_vs_real_plots  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
WIDTHS = (8, 16, 32)
METRICS = ("plateau_rmse", "kernel_change", "weight_change")
PNG_MAGIC = b"\x89PNG"


def assert_labelled(fig, what: str) -> None:
    """Each axes of `fig` has an x label, a y label and a title."""
    assert fig.axes, f"{what}: no axes"
    for i, ax in enumerate(fig.axes):
        for part, text in [
            ("x label", ax.get_xlabel()),
            ("y label", ax.get_ylabel()),
            ("title", ax.get_title()),
        ]:
            assert text.strip(), f"{what}, axes {i}: empty {part}"


def legend_texts(ax) -> list[list[str]]:
    """The entries of each legend on `ax` (the ones `add_artist` kept and the current one)."""
    from matplotlib.legend import Legend

    legends = [a for a in ax.artists if isinstance(a, Legend)]
    legends += [ax.get_legend()] if ax.get_legend() else []
    return [[t.get_text() for t in lg.get_texts()] for lg in legends]


def tick_texts(axis) -> list[str]:
    return [t.get_text() for t in axis.get_ticklabels() if t.get_text()]


def synthetic_points(closed_form: bool = True, steps: int = 6, shown: int = 3) -> list[dict]:
    """Point records shaped like `linear_vs_real.run_point`'s, filled with random numbers."""
    rng = np.random.default_rng(0)
    points = []
    for w in WIDTHS:
        for seed in (0, 1):
            f = rng.normal(size=(steps, shown))
            loss = np.geomspace(1.0, 1e-2, steps)
            points.append(
                dict(
                    width=w,
                    seed=seed,
                    steps=list(range(0, 10 * steps, 10)),
                    f_test_net=(f + 0.1 / w).tolist(),
                    f_test_lin=f.tolist(),
                    f_test_closed_form=(f + 1e-15).tolist() if closed_form else None,
                    loss_net=(loss * (1 + 1.0 / w)).tolist(),
                    loss_lin=loss.tolist(),
                    loss_closed_form=(loss * (1 + 1e-15)).tolist() if closed_form else None,
                    **{m: float(rng.uniform(0.01, 1.0)) for m in METRICS},
                )
            )
    return points


def synthetic_results() -> dict:
    """The parts of `results.json` the scaling figure reads."""
    return dict(
        per_width=[
            dict(width=w, **{m: dict(mean=0.5 * w**-0.5, std=0.01) for m in METRICS})
            for w in WIDTHS
        ],
        slope_fits={
            m: dict(slope=-0.5, intercept=np.log(0.5), r2=1.0, stderr=0.0) for m in METRICS
        },
    )


def load_example(name: str):
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The library's generic figures.


def test_curves_styles_and_colours_have_their_own_legends():
    steps = np.arange(5)
    ys = {
        (model, f"width {w}"): np.linspace(1, 2, 5) * w
        for model in ("network", "linearized")
        for w in (8, 16)
    }
    fig = plot.curves(
        steps,
        ys,
        xlabel="training step",
        ylabel="loss (target units²)",
        title="t",
        colour_title="width",
    )
    assert_labelled(fig, "plot.curves")
    ax = fig.axes[0]
    assert len(ax.lines) == 4
    assert legend_texts(ax) == [["network", "linearized"], ["width 8", "width 16"]]
    # line style follows the model, colour the width
    styles = {(l.get_linestyle(), l.get_marker()) for l in ax.lines}
    colours = {matplotlib.colors.to_hex(l.get_color()) for l in ax.lines}
    assert len(styles) == 2 and len(colours) == 2


def test_curves_with_plain_keys_and_log_axes():
    x = np.arange(1, 101)
    fig = plot.curves(
        x,
        {"a": 1.0 / x, "b": np.where(x > 1, 1e-16 * x, 0.0)},
        logx=True,
        logy=True,
        xlabel="step",
        ylabel="RMSE (target units)",
        title="t",
    )
    assert_labelled(fig, "plot.curves (log)")
    ax = fig.axes[0]
    assert legend_texts(ax) == [["a", "b"]]
    # the zero at x = 1 is not drawn (it has no place on a log axis)
    assert np.isnan(ax.lines[1].get_ydata()[0])
    with pytest.raises(ValueError, match=r"`curves\(ys\['a'\]\)` must have shape \(100,\)"):
        plot.curves(x, {"a": x[:-1]}, xlabel="x", ylabel="y", title="t")


def test_power_laws_plain_width_ticks_no_minor_labels():
    widths = np.array([300, 400, 500, 600])
    means = {"gap": 2.0 * widths**-0.5}
    fit = {"gap": linear_vs_real_plots._Fit(-0.5, np.log(2.0))}
    fig = plot.power_laws(
        widths, means, {"gap": 0.1 * means["gap"]}, fit, ylabel="RMSE (target units)", title="t"
    )
    assert_labelled(fig, "plot.power_laws")
    fig.draw_without_rendering()
    ax = fig.axes[0]
    # the widths themselves label the x axis (not 3x10^2, 4x10^2, ... colliding)
    assert tick_texts(ax.xaxis) == ["300", "400", "500", "600"]
    for axis in (ax.xaxis, ax.yaxis):
        assert isinstance(axis.get_minor_formatter(), ticker.NullFormatter)
        assert not any("times" in t or "^" in t for t in tick_texts(axis))
    texts = legend_texts(ax)[0]
    assert "gap: fitted slope -0.50" in texts and "reference slope -1" in texts
    with pytest.raises(TypeError, match=r"`power_laws\(fits\)`.*got dict"):
        plot.power_laws(widths, means, fits={"gap": {"slope": 1}}, ylabel="y", title="t")


def test_network_vs_kernel_figure():
    xs = np.linspace(-1, 1, 20)
    fig = plot.network_vs_kernel(
        xs,
        np.sin(xs),
        0.1 + 0 * xs,
        np.sin(xs)[None] + np.zeros((3, 1)),
        x_train=xs[::5],
        y_train=np.sin(xs[::5]),
        y_test=np.sin(xs),
    )
    assert_labelled(fig, "plot.network_vs_kernel")


# The linear-vs-real experiment's figures.


@pytest.mark.parametrize("closed_form", [True, False], ids=["sgd", "adam"])
def test_linear_vs_real_figures_are_labelled(closed_form):
    points = synthetic_points(closed_form)
    outputs = linear_vs_real_plots.outputs_figure(points)
    assert_labelled(outputs, "outputs.png")
    assert len(outputs.axes) == 2
    models = ["network", "linearized"] + (["closed form"] if closed_form else [])
    assert legend_texts(outputs.axes[-1]) == [models, [f"test point {j}" for j in (1, 2, 3)]]
    loss = linear_vs_real_plots.loss_figure(points)
    assert_labelled(loss, "loss.png")
    gap_legends = legend_texts(loss.axes[1])
    assert gap_legends[0] == (["network", "linearized"] if closed_form else ["network"])
    assert gap_legends[1] == [f"width {w}" for w in WIDTHS]
    # the gaps are drawn, not the losses: |network - closed form| = loss_lin / w to rounding
    p = next(q for q in points if q["width"] == WIDTHS[0] and q["seed"] == 0)
    np.testing.assert_allclose(
        loss.axes[1].lines[0].get_ydata(), np.asarray(p["loss_lin"]) / WIDTHS[0], rtol=1e-12
    )
    scaling = linear_vs_real_plots.scaling_figure(synthetic_results())
    assert_labelled(scaling, "scaling.png")
    scaling.draw_without_rendering()
    for ax in scaling.axes:
        assert tick_texts(ax.xaxis) == [str(w) for w in WIDTHS]


def test_save_figures_writes_pngs(tmp_path):
    points, results = synthetic_points(), synthetic_results()
    names = linear_vs_real_plots.save_figures(results, points, tmp_path)
    assert names == ["outputs.png", "loss.png", "scaling.png"]
    for name in names:
        assert (tmp_path / name).read_bytes()[:4] == PNG_MAGIC


# The examples' figures, from the functions their main() calls.


def test_quickstart_figure_is_labelled():
    quickstart = load_example("quickstart")
    x = np.linspace(-1, 1, 10)[:, None]
    steps = np.arange(1, 6)
    fig = quickstart.figure(
        x[::3],
        np.sin(x[::3]),
        x,
        np.sin(x),
        np.sin(x),
        np.sin(x) + 0.01,
        steps,
        1e-3 * steps,
        1e-16 * steps,
        width=16,
        steps=5,
    )
    assert_labelled(fig, "quickstart.png")


def test_network_vs_kernel_example_figure_is_labelled():
    example = load_example("network_vs_kernel")
    x = np.linspace(-1, 1, 10)[:, None]
    fig = example.figure(
        x,
        np.sin(x[:, 0]),
        0.1 + 0 * x[:, 0],
        np.sin(x[:, 0])[None].repeat(2, 0),
        x[::3],
        np.sin(x[::3]),
        np.sin(x),
        seeds=2,
        width=16,
    )
    assert_labelled(fig, "network_vs_kernel.png")


def test_log_tick_text_is_plain():
    """Widths such as 1024 and 2048 read as themselves, not `1.02e+03` (the default job's)."""
    texts = [plot._plain(v) for v in (1024.0, 2048.0, 300.0, 0.05, 1e-5, 2.5)]
    assert texts == ["1024", "2048", "300", "0.05", "1e-05", "2.5"]
