"""Gaussian filtering (`jaxdyn.analysis._frequency_filter`, re-exported from
`jaxdyn.analysis.frequency`): against the O(n^2) definition in numpy, blocked against
unblocked, the limits delta -> 0 and delta -> inf, the errors of an exact fit, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.analysis._frequency_filter import (
    FilteredErrors,
    default_filter_batch,
    filtered_errors,
    gaussian_filter,
    radial_dft_error,
)


def numpy_filter(y, x, delta):
    """The definition, one row at a time, distances by explicit differences (not matmul)."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.asarray(y, np.float64).reshape(len(x), -1)
    out = np.empty_like(y)
    for i in range(len(x)):
        w = np.exp(-np.sum((x[i] - x) ** 2, axis=1) / (2 * delta))
        out[i] = w @ y / w.sum()
    return out


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 5))
    y = np.stack([np.sin(2 * x[:, 0]) + x[:, 1], np.cos(5 * x[:, 2])], axis=1)
    return x, y


@pytest.mark.parametrize("delta", [0.3, 2.0])
def test_matches_numpy_definition(sample, delta):
    x, y = sample
    with jax.enable_x64(True):
        got = gaussian_filter(jnp.asarray(y), jnp.asarray(x), delta, batch_size=8)
        assert got.dtype == jnp.float64 and got.shape == y.shape
        np.testing.assert_allclose(np.asarray(got), numpy_filter(y, x, delta), rtol=1e-11)
        # 1-D targets and image-shaped inputs (flattened to one vector per example)
        got1 = gaussian_filter(y[:, 0], x.reshape(37, 5, 1), delta)
        np.testing.assert_allclose(np.asarray(got1), numpy_filter(y[:, 0], x, delta)[:, 0],
                                   rtol=1e-11)  # fmt: skip


def test_blocked_equals_unblocked(sample):
    x, y = sample
    with jax.enable_x64(True):
        full = gaussian_filter(y, x, 1.0, batch_size=len(x))
        for b in (1, 5, 36, 1000):  # 37 = 7 * 5 + 2: a padded last block
            np.testing.assert_allclose(gaussian_filter(y, x, 1.0, batch_size=b), full, rtol=1e-13)
        np.testing.assert_allclose(gaussian_filter(y, x, 1.0), full, rtol=1e-13)
    assert default_filter_batch(60_000) == 2**24 // 60_000
    assert default_filter_batch(10) == 10


def test_limits_delta_to_zero_and_infinity(sample):
    x, y = sample
    with jax.enable_x64(True):
        # distinct inputs: every other weight underflows, the row's own weight is 1 (shifted)
        np.testing.assert_array_equal(np.asarray(gaussian_filter(y, x, 1e-12)), y)
        wide = gaussian_filter(y, x, 1e14)
        np.testing.assert_allclose(wide, np.broadcast_to(y.mean(axis=0), y.shape), rtol=1e-9)
    # float32: the shift keeps delta -> 0 exact too (no 0/0 from underflowed weights)
    got32 = gaussian_filter(y.astype(np.float32), x.astype(np.float32), 1e-8)
    np.testing.assert_array_equal(np.asarray(got32), y.astype(np.float32))


def test_filtered_errors(sample):
    x, y = sample
    with jax.enable_x64(True):
        zero = filtered_errors(y, y, x, 1.0)
        assert isinstance(zero, FilteredErrors)
        # the target and the output are different columns of one matmul, whose summation
        # order may differ per column (SIMD lanes): zero up to float64 rounding, not bitwise
        assert abs(float(zero.e_low)) < 1e-14 and abs(float(zero.e_high)) < 1e-14
        # against the definition, for a stack of outputs (one filter pass)
        rng = np.random.default_rng(1)
        hs = np.stack([y + 0.1 * rng.normal(size=y.shape), np.zeros_like(y), y])
        got = filtered_errors(hs, y, x, 1.0, batch_size=4)
        y_low = numpy_filter(y, x, 1.0)
        for t, h in enumerate(hs):
            h_low = numpy_filter(h, x, 1.0)
            e_low = np.sqrt(np.sum((y_low - h_low) ** 2) / np.sum(y_low**2))
            e_high = np.sqrt(np.sum((y - y_low - h + h_low) ** 2) / np.sum((y - y_low) ** 2))
            assert float(got.e_low[t]) == pytest.approx(e_low, rel=1e-10)
            assert float(got.e_high[t]) == pytest.approx(e_high, rel=1e-10)
        assert float(got.e_low[1]) == pytest.approx(1.0) and float(got.e_high[2]) < 1e-14


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x, y: gaussian_filter(y, x, 0.0), "`delta` must be a positive float"),
        (lambda x, y: gaussian_filter(y, x, -1.0), "`delta` must be a positive float"),
        (lambda x, y: gaussian_filter(y[:-1], x, 1.0), r"`y` must be .*n = x.shape\[0\] = 37"),
        (lambda x, y: gaussian_filter(np.where(y > 1.5, np.nan, y), x, 1.0), "`y`.* NaN"),
        (lambda x, y: gaussian_filter(y, np.where(x > 2, np.inf, x), 1.0), "`x`.* NaN"),
        (lambda x, y: gaussian_filter(y, x, 1.0, batch_size=0), "`batch_size`"),
        (lambda x, y: filtered_errors(y[:, :1], y, x, 1.0), r"`filtered_errors\(h\)`"),
        (lambda x, y: filtered_errors(y, y, x[:-2], 1.0), "`y` must be"),
    ],
)
def test_bad_input_is_named(sample, call, match):
    x, y = sample
    with pytest.raises(ValueError, match=match):
        call(x, y)


def test_benchmark_smoke(tmp_path):
    """benchmarks/frequency.py at tiny size, in this process (no second jax import)."""
    import importlib.util
    import json
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "frequency.py"
    spec = importlib.util.spec_from_file_location("_frequency_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "frequency.json"
    assert bench.main(["--tiny", "--only", "filter", "--repeats", "0", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["benchmark"] == "frequency" and {"jax", "device", "repeats"} <= set(res["meta"])
    (row,) = res["results"]["filter"]
    assert row["n"] == 50 and row["finite"] and row["filter_flops"] == 2.0 * 50 * 50 * (6 + 2)
    assert row["filter"]["median_from_first_call"] and row["matmul_floor"]["median_s"] > 0


def test_radial_dft_error_against_a_loop_over_frequencies():
    rng = np.random.default_rng(2)
    target = rng.normal(size=(6, 10))
    outs = target[None] + 0.3 * rng.normal(size=(2, 6, 10))
    with jax.enable_x64(True):
        err, edges = radial_dft_error(outs, target, bins=3)
        one, _ = radial_dft_error(target, target, bins=3)
    f = np.fft.fft2(target)
    num, den = np.zeros((2, 3)), np.zeros(3)
    for i in range(6):
        for j in range(10):
            r = np.hypot(np.fft.fftfreq(6)[i], np.fft.fftfreq(10)[j])
            b = min(int(np.sum(r >= edges[1:-1])), 2)  # the ring [edges[b], edges[b + 1])
            den[b] += abs(f[i, j]) ** 2
            for t in range(2):
                num[t, b] += abs(np.fft.fft2(outs[t])[i, j] - f[i, j]) ** 2
    np.testing.assert_allclose(np.asarray(err), np.sqrt(num / den), rtol=1e-10)
    assert edges[0] == 0 and edges[-1] == pytest.approx(np.hypot(0.5, 0.5))
    np.testing.assert_allclose(np.asarray(one), 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="radial_dft_error"):
        radial_dft_error(outs[:, :5], target)
