"""Tests for the matrix-free NTK (`jaxdyn.ntk_vp_fn`) and `dynamics.mse_matrix_free`, float64.

References: the NTK from an explicit full-batch Jacobian (`helpers.flat_jacobian_ntk`) and the
dense closed forms of `dynamics.mse` (eigendecomposition / Cholesky).
"""

import resource
import time

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import flat_jacobian_ntk, mlp_apply

import jaxdyn
from jaxdyn import dynamics


def mlp_params(rng, sizes):
    return [
        (jnp.asarray(rng.normal(size=(a, b))), jnp.asarray(rng.normal(size=(b,))))
        for a, b in zip(sizes[:-1], sizes[1:])
    ]


def to_4d(flat, m, n, k):
    return flat.reshape(m, k, n, k).transpose(0, 2, 1, 3)


# batch_size=4 (padded blocks) costs a second compilation (~1.6 s of CPU): slow tier.
@pytest.mark.parametrize("batch_size", [None, pytest.param(4, marks=pytest.mark.slow)])
def test_ntk_vp_equals_explicit_ntk_product(batch_size):
    rng = np.random.default_rng(0)
    n, m, d, k = 10, 6, 4, 3
    x, x_test = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    params = mlp_params(rng, [d, 24, k])
    flat = np.asarray(flat_jacobian_ntk(mlp_apply, params, np.concatenate([x, x_test])))
    v = rng.normal(size=(n, k))
    vp = jaxdyn.ntk_vp_fn(mlp_apply, params, x, batch_size=batch_size)
    vp_test = jaxdyn.ntk_vp_fn(mlp_apply, params, x_test, x, batch_size=batch_size)
    want = (flat[: n * k, : n * k] @ v.reshape(-1)).reshape(n, k)
    want_test = (flat[n * k :, : n * k] @ v.reshape(-1)).reshape(m, k)
    np.testing.assert_allclose(vp(v), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(vp_test(v), want_test, rtol=1e-12, atol=1e-12)
    assert np.isclose(vp.mean_diagonal(), np.mean(np.diagonal(flat)[: n * k]), rtol=1e-12)
    assert vp_test.shape == (m, n, k)
    with pytest.raises(ValueError, match="x1 with itself"):
        vp_test.mean_diagonal()
    with pytest.raises(ValueError, match=r"\(n2, k\) = \(10, 3\)"):
        vp(v[:, :2])


@pytest.fixture(scope="module")
def problem():
    """n = 512 train points, one output, a tanh MLP with more parameters (2177) than points (so
    its NTK is well conditioned, ~4e3): its NTK-vector product, its explicit dense kernel and
    that kernel's eigendecomposition (numpy: the dense reference, computed once)."""
    rng = np.random.default_rng(1)
    n, m, d = 512, 16, 32
    x, x_test = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    params = mlp_params(rng, [d, 64, 1])
    flat = np.asarray(flat_jacobian_ntk(mlp_apply, params, np.concatenate([x, x_test])))
    outputs = np.asarray(mlp_apply(params, np.concatenate([x, x_test])))
    lam, vecs = np.linalg.eigh(flat[:n, :n])
    return dict(
        vp=jaxdyn.ntk_vp_fn(mlp_apply, params, x),
        vp_test=jaxdyn.ntk_vp_fn(mlp_apply, params, x_test, x),
        k=flat[:n, :n],
        k_test=flat[n:, :n],
        lam=lam,
        vecs=vecs,
        y=np.sin(x[:, :1]) + 0.1 * rng.normal(size=(n, 1)),
        f0=outputs[:n],
        f0_test=outputs[n:],
    )


def dense_reference(p, t, lr, kind, ridge=0.0):
    """Train and test outputs from the eigendecomposition (numpy), ``t`` 1-D or None."""
    lam = p["lam"] + ridge
    r0 = p["vecs"].T @ (p["f0"] - p["y"])  # (n, 1) in the eigenbasis
    if t is None:
        return p["y"], p["f0_test"] - p["k_test"] @ (p["vecs"] @ (r0 / lam[:, None]))
    a = lr * lam[None, :] / lam.size
    rho = np.exp(-a * t[:, None]) if kind == "flow" else (1 - a) ** t[:, None]  # (T, n)
    gamma = -(1 - rho) / lam[None, :]
    train = p["y"][None] + np.einsum("ij,tj,jk->tik", p["vecs"], rho, r0)
    test = p["f0_test"][None] + np.einsum("mi,ij,tj,jk->tmk", p["k_test"], p["vecs"], gamma, r0)
    return train, test


@pytest.mark.parametrize("diag_reg", [0.0, 1e-2])
def test_infinite_time_equals_dense(problem, diag_reg):
    p = problem
    free = dynamics.mse_matrix_free(p["vp"], p["y"], diag_reg=diag_reg, tol=1e-13)
    train, test = free(None, p["f0"], p["f0_test"], p["vp_test"])
    ridge = diag_reg * np.mean(np.diagonal(p["k"]))
    want_train, want_test = dense_reference(p, None, None, None, ridge)
    assert free.info.method == "cg" and free.info.error <= 1e-12
    np.testing.assert_allclose(train, want_train, rtol=0, atol=1e-8)
    np.testing.assert_allclose(test, want_test, rtol=0, atol=1e-8)
    # The test outputs moved far from f0: the solve is not trivially right.
    assert float(np.max(np.abs(want_test - p["f0_test"]))) > 0.1


# "gd" differs from "flow" only in the per-mode factors; its compilation (~3 s of CPU) runs in
# the slow tier.
@pytest.mark.parametrize("kind", ["flow", pytest.param("gd", marks=pytest.mark.slow)])
def test_finite_time_equals_dense(problem, kind):
    p = problem
    ts = np.array([[0, 30], [3000, 300]])
    lr = 1.8 * p["lam"].size / p["lam"][-1]  # 0.9 x the critical rate of GD
    # gd: the operator as a dense array (the solvers accept one), flow: the NTK-vector product.
    op, op_test = (p["vp"], p["vp_test"]) if kind == "flow" else (p["k"], p["k_test"])
    free = dynamics.mse_matrix_free(op, p["y"], learning_rate=lr, kind=kind, tol=1e-12)
    train, test = free(ts, p["f0"], p["f0_test"], op_test)
    want_train, want_test = dense_reference(p, ts.reshape(-1), lr, kind)
    assert free.info.method == "lanczos" and free.info.error <= 1e-12
    assert train.shape == (2, 2, 512, 1) and test.shape == (2, 2, 16, 1)
    np.testing.assert_allclose(train.reshape(4, 512, 1), want_train, rtol=0, atol=1e-8)
    np.testing.assert_allclose(test.reshape(4, 16, 1), want_test, rtol=0, atol=1e-8)
    assert float(np.max(np.abs(want_test[-1] - p["f0_test"]))) > 0.1


@pytest.mark.slow  # two more compilations (~3 s of CPU): outside the default budget
def test_loss_and_krylov_limit_warns():
    """`loss` (from the Krylov coordinates, no outputs formed) and t = None on a dense 40 x 40
    kernel of condition 1e8; a Krylov basis too small for it warns."""
    rng = np.random.default_rng(2)
    vecs = np.linalg.qr(rng.normal(size=(40, 40)))[0]
    kernel = (vecs * np.logspace(-6, 2, 40)) @ vecs.T
    y, f0, ts = rng.normal(size=(40, 1)), rng.normal(size=(40, 1)), np.array([0.0, 1e3, 1e7])
    dense = dynamics.mse(kernel, y, learning_rate=0.5)
    free = dynamics.mse_matrix_free(kernel, y, learning_rate=0.5)
    np.testing.assert_allclose(free.loss(ts, f0), dense.loss(ts, f0), rtol=1e-9)
    assert free.info.products <= 40
    small = dynamics.mse_matrix_free(kernel, y, learning_rate=0.5, krylov_dim=3)
    with pytest.warns(UserWarning, match="krylov_dim"):
        small.loss(ts, f0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="momentum"), "heavy ball"),
        (dict(k_train_train=np.eye(4)), "k_train_train"),
        (dict(k_train_train=lambda v: v, diag_reg=0.1), "mean_diagonal"),
        (dict(krylov_dim=0), "krylov_dim"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = dict(k_train_train=np.eye(3), y_train=np.zeros((3, 1)))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        dynamics.mse_matrix_free(args.pop("k_train_train"), args.pop("y_train"), **args)


@pytest.mark.slow
def test_infinite_time_at_n_100000():
    """t = infinity at n = 100,000 (a dense kernel would be 80 GB in float64): CG on NTK-vector
    products of a 2-layer MLP, blocks of 10,000 examples; residual and peak memory reported.

    The prediction is checked by its defining property: the train outputs interpolate the
    (regularised) targets, i.e. the CG residual is below tol."""
    rng = np.random.default_rng(3)
    n, d, m = 100_000, 8, 100
    x = rng.normal(size=(n, d))
    params = mlp_params(rng, [d, 64, 1])
    y = np.sin(x[:, :1] + x[:, 1:2])
    f0 = np.asarray(mlp_apply(params, x))
    x_test = rng.normal(size=(m, d))
    vp = jaxdyn.ntk_vp_fn(mlp_apply, params, x, batch_size=10_000)
    vp_test = jaxdyn.ntk_vp_fn(mlp_apply, params, x_test, x, batch_size=10_000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    # A ridge of 0.1 mean(diag K) (a strongly regularised fit) keeps CG to a few hundred
    # products at this n on a shared 2-core machine; tol 1e-6 is ample for a ridge fit.
    free = dynamics.mse_matrix_free(vp, y, diag_reg=0.1, tol=1e-6, maxiter=3000)
    train, test = free(None, f0, np.asarray(mlp_apply(params, x_test)), vp_test)
    test.block_until_ready()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"\nn = {n}: CG {free.info.products} products, residual {free.info.error:.2e}, "
        f"{seconds:.1f} s, peak RSS {peak:.2f} GiB (before the solve {before:.2f} GiB)"
    )
    assert free.info.error <= 1e-6
    assert np.all(np.isfinite(np.asarray(test)))
    # Regularised train outputs sit between f0 and y: closer to y than f0 was.
    assert float(jnp.mean((train - y) ** 2)) < 0.5 * float(np.mean((f0 - y) ** 2))
    assert peak < 8.0  # GiB: the dense kernel alone would need 80
