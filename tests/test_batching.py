"""jaxdyn.batching: every blocked evaluation equals the direct numpy computation.

The kernels here are plain products of float64 numpy arrays, so the references are exact
brute force; block sizes are uneven (padding) and both larger and smaller than n.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import batching

RNG = np.random.default_rng(0)
X1, X2 = RNG.standard_normal((7, 3)), RNG.standard_normal((5, 3))
W = RNG.standard_normal((3, 2))  # outputs (n, 2), for kernels with an output pair


def pair_kernel(u, v):
    """{"gram": (b1, b2), "outer": (b1, b2, 2, 2)} of two blocks of rows."""
    fu, fv = u @ W, v @ W
    return {"gram": u @ v.T, "outer": jnp.einsum("ia,jb->ijab", fu, fv)}


def reference(a, b):
    fa, fb = a @ W, b @ W
    return {"gram": a @ b.T, "outer": np.einsum("ia,jb->ijab", fa, fb)}


def assert_equal_trees(got, want):
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_allclose(np.asarray(got[name]), want[name], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("b", [1, 3, 7, 10])
def test_map_rows_equals_direct(b):
    got = batching.map_rows(lambda u: {"sq": u**2, "sum": u.sum(axis=1)}, X1, b)
    assert_equal_trees(got, {"sq": X1**2, "sum": X1.sum(axis=1)})


@pytest.mark.parametrize("b1, b2", [(3, 2), (7, 5), (2, 10), (100, 100)])
def test_map_pairs_equals_direct(b1, b2):
    assert_equal_trees(batching.map_pairs(pair_kernel, X1, X2, b1, b2), reference(X1, X2))


@pytest.mark.parametrize("b", [1, 2, 3, 7, 9])
def test_map_upper_equals_direct(b):
    assert_equal_trees(batching.map_upper(pair_kernel, X1, b), reference(X1, X1))


@pytest.mark.parametrize("b", [2, 3])
def test_map_upper_computes_blocks_on_and_above_the_diagonal_only(b):
    # With an asymmetric M, u M v^T is not a symmetric kernel: blocks i <= j then hold
    # X M X^T, and the transposed blocks i > j hold X M^T X^T, which shows who was computed.
    m = RNG.standard_normal((3, 3))
    got = np.asarray(batching.map_upper(lambda u, v: u @ m @ v.T, X1, b))
    block = np.arange(7) // b
    upper = block[:, None] <= block[None, :]
    np.testing.assert_allclose(
        got, np.where(upper, X1 @ m @ X1.T, X1 @ m.T @ X1.T), rtol=1e-13, atol=1e-13
    )


def test_transpose_pairs_swaps_examples_and_each_output_pair():
    a = RNG.standard_normal((4, 3, 2, 5, 6, 7))
    np.testing.assert_array_equal(batching.transpose_pairs(a), np.transpose(a, (1, 0, 3, 2, 5, 4)))
    np.testing.assert_array_equal(
        batching.transpose_pairs(a[None], lead=1)[0], np.transpose(a, (1, 0, 3, 2, 5, 4))
    )


def test_pad_blocks_unblock():
    padded = batching.pad_rows(X1, 3)
    assert padded.shape == (9, 3)
    np.testing.assert_array_equal(padded[7:], np.stack([X1[-1], X1[-1]]))  # the last row repeated
    blocked = batching.blocks({"x": X1}, 3)["x"]
    assert blocked.shape == (3, 3, 3)
    np.testing.assert_array_equal(batching.unblock(blocked, 7), X1)
    assert batching.pad_rows(X1, 7) is X1


@pytest.mark.parametrize("rows", [1, 3, 7, 8])
def test_host_rows_assembles_numpy_arrays(rows):
    shapes = []

    def fn(u):
        shapes.append(u.shape)
        return pair_kernel(u, X2)

    got = batching.host_rows(fn, X1, rows)
    assert all(isinstance(a, np.ndarray) for a in got.values())
    assert set(shapes) == {(rows, 3)}  # every block padded to the same shape
    assert_equal_trees(got, reference(X1, X2))
