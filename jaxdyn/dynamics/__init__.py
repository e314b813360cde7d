"""Closed-form MSE training dynamics of linearized networks.

A network linearized around its initial parameters ``theta_0``,
``f(x, theta) = f(x, theta_0) + J(x) (theta - theta_0)``, trained on the loss

    L(f) = 0.5 * mean((f(x_train) - y_train) ** 2)      (mean over all N = y_train.size entries)

moves in function space only through its neural tangent kernel
``Theta = J(x_train) J(x_train)^T``. With the eigendecomposition ``Theta = V diag(lam) V^T`` every
optimiser considered here acts on each eigenmode independently, so the whole trajectory is given by
two scalar functions of ``(lam, t)`` per mode:

* ``rho(lam, t)``: the residual factor, ``r_t = V diag(rho) V^T r_0`` with
  ``r = f(x_train) - y_train``;
* ``gamma(lam, t)``: the coefficient factor, ``c_t = V diag(gamma) V^T r_0``; the weights move by
  ``omega_t = theta_t - theta_0 = J^T c_t`` and therefore any output moves by ``K(x, x_train) c_t``.

They satisfy ``rho - 1 = lam * gamma``. Three optimisers are supported (``kind``):

* ``"flow"``: gradient flow ``df/dt = -lr * Theta (f - y) / N`` (Lee et al. 2019, "Wide neural
  networks of any depth evolve as linear models under gradient descent"). Identical to
  ``neural_tangents.predict.gradient_descent_mse``. ``rho = exp(-lr lam t / N)``,
  ``gamma = expm1(-lr lam t / N) / lam``.
* ``"gd"``: discrete gradient descent, one ``optax.sgd(lr)`` step per unit of ``t``, exact at
  integer steps. ``rho = (1 - a)^t`` with ``a = lr lam / N``, ``gamma = -(1 - rho) / lam``.
* ``"momentum"``: heavy-ball momentum exactly as ``optax.sgd(lr, momentum=beta)`` applies it
  (``v <- beta v + g; theta <- theta - lr v``, ``v_0 = 0``), via an exact per-mode matrix power.

Conventions:

* Outputs ``f`` and targets ``y_train`` are ``(n, k)`` arrays (``n`` points, ``k`` outputs).
* ``k_train_train`` is either the traced ``(n, n)`` kernel (the same kernel for every output column;
  neural-tangents ``trace_axes=(-1,)``) or the full ``(n, n, k, k)`` kernel with
  ``K[i, j, a, b] = <df_a(x_i)/dtheta, df_b(x_j)/dtheta>`` (neural-tangents ``trace_axes=()``). The
  full kernel is handled as an ``(n*k, n*k)`` matrix acting on ``vec(f)`` with index
  ``(i, a) -> i*k + a`` (row-major ``reshape``).
* ``diag_reg`` is relative, as in neural-tangents: the kernel used everywhere (train dynamics
  included) is ``K + diag_reg * mean(diag(K)) * I``.

Scale and precision (`mse`):

* One eigendecomposition (cached, lazy) serves every time point and call; evaluating ``T`` times
  costs O(T D k) memory on top of the O(D^2) eigenvectors (no ``(T, D, D)`` array is ever formed:
  per-mode factors are ``(T, D)`` and contractions go through ``(T, D, k)``). ``t=None`` is a
  cached Cholesky solve and needs no eigendecomposition.
* ``solve_dtype="float64"`` on a float32 kernel: the kernel is symmetrised, regularised,
  eigendecomposed and Cholesky-factorised in float64 (its float32 entries taken as exact), by the
  same JAX code either way: directly when ``jax_enable_x64`` is on, else eagerly inside a local
  ``jax.enable_x64(True)`` scope (concrete kernels only). Then, with every output in float32:

  - train outputs and the loss of ``"flow"``/``"gd"`` evolve in float32 from the float64
    eigenpairs rounded once (they only rotate the residual by the orthogonal ``V`` and scale modes
    by ``|rho - 1| <= 2``, so rounding is not amplified); measured within 7e-7 of pure float64 at
    condition number 1e8 where the plain float32 path is off by 0.5;
  - test outputs, weights' coefficients (``gamma ~ 1/lam``), ``"momentum"`` (its per-mode
    ``1 - a`` rounds to 1 in float32 for slow modes) and ``t=None`` solves run in float64
    (with x64 off in the local scope, which needs concrete inputs).

`mse_ensemble` gives the mean and covariance over random initialisations of infinitely wide networks
trained by gradient flow (Lee et al. 2019, eqs. 14-16; = ``neural_tangents.predict.
gradient_descent_mse_ensemble``) from a ``kernel_fn`` returning the NNGP and NTK.

Beyond MSE and dense kernels (Lee et al. 2019 for any loss, optimizer and n):

* `gradient_descent` (``gradient_descent.py``): function-space dynamics of a linearized network
  for any loss (MSE, cross-entropy, any callable): the exact GD / heavy-ball recurrence or the
  gradient flow (diffrax);
* `gp_inference` (``gp_inference.py``): NNGP posterior, NTK-GP and NTK ensemble at t = infinity;
* `mse_matrix_free` (``mse_matrix_free.py``, private ``_krylov.py``): `mse` from kernel-vector
  products (`jaxdyn.ntk_vp_fn`): CG at t = infinity, Lanczos at finite t, no kernel in memory.

Layout: `mse` / `MSEPredictor` in ``mse.py``, `mse_ensemble` / `EnsemblePredictor` in
``ensemble.py``; private ``_modes.py`` (per-mode factors), ``_linalg.py`` (flattening,
factorisations, tolerances, the local float64 scope), ``_evolve.py`` (the compiled closed forms of
`MSEPredictor`) and ``_inputs.py`` (input checks beyond `jaxdyn._checks`).

Example::

    predictor = dynamics.mse(k_train_train, y_train, learning_rate=0.5)
    f_train_t, f_test_t = predictor(ts, f0_train, f0_test, k_test_train)   # (T, n, k), (T, m, k)
    losses = predictor.loss(ts, f0_train)                                 # (T,)
"""

from jaxdyn.dynamics.ensemble import GETS, EnsemblePredictor, Gaussian, mse_ensemble
from jaxdyn.dynamics.gp_inference import GP_GETS, GPInference, gp_inference
from jaxdyn.dynamics.gradient_descent import (
    GD_KINDS,
    LOSSES,
    GradientDescentPredictor,
    cross_entropy_loss,
    gradient_descent,
    mse_loss,
)

# ArrayLike and PyTree: the type aliases of the signatures, importable from here as before.
from jaxdyn.dynamics.mse import KINDS, ArrayLike, MSEPredictor, PyTree, mse  # noqa: F401
from jaxdyn.dynamics.mse_matrix_free import (
    MATRIX_FREE_KINDS,
    MatrixFreeInfo,
    MatrixFreePredictor,
    mse_matrix_free,
)

__all__ = [
    "GD_KINDS",
    "GP_GETS",
    "GPInference",
    "GETS",
    "KINDS",
    "LOSSES",
    "MATRIX_FREE_KINDS",
    "EnsemblePredictor",
    "Gaussian",
    "GradientDescentPredictor",
    "MSEPredictor",
    "MatrixFreeInfo",
    "MatrixFreePredictor",
    "cross_entropy_loss",
    "gp_inference",
    "gradient_descent",
    "mse",
    "mse_ensemble",
    "mse_loss",
    "mse_matrix_free",
]
