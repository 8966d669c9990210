"""An ill-conditioned quadratic with a known spectrum."""

import jax.numpy as jnp
import numpy as np

from nagd_optax.problems._problem import Problem


def quadratic(
    condition_number: float,
    n: int = 500,
    *,
    rotated: bool = False,
    seed: int = 0,
) -> Problem:
  r"""The quadratic :math:`f(x) = \frac12 \sum_i \lambda_i x_i^2`.

  The eigenvalues :math:`\lambda_i` run log-spaced from 1 down to
  :math:`1/\kappa`, so :math:`L = 1`, :math:`\mu = 1/\kappa` and
  :math:`f^* = 0`; they are paired, in that order, with
  :math:`x_0 \sim N(0, I)` drawn from ``numpy.random.default_rng(seed)``.
  The standard test of momentum on ill-conditioned problems: gradient descent
  needs :math:`O(\kappa \log(1/\epsilon))` steps, Nesterov's method
  :math:`O(\sqrt\kappa \log(1/\epsilon))` with :math:`\mu` known, and
  adaptive restart recovers that rate without it.

  With ``rotated=True`` the same spectrum is expressed in a random
  orthonormal basis :math:`Q` (from ``default_rng(1)``):
  :math:`f(x) = \frac12 (Qx)^\top \mathrm{diag}(\lambda) (Qx)` from
  :math:`Q^\top x_0`. First-order methods do the same on both; methods with a
  per-coordinate scaling (Adam) are flattered by the diagonal one.

  Args:
    condition_number: :math:`\kappa = L/\mu \ge 1`.
    n: the dimension.
    rotated: whether to use a random basis instead of the coordinate axes.
    seed: the seed of :math:`x_0`.

  Returns:
    A :class:`Problem`.

  Example:
    >>> import numpy as np
    >>> import nagd_optax as nagd
    >>> problem = nagd.problems.quadratic(1e3, n=3)
    >>> [f"{s:.3g}" for s in problem.grad(np.ones(3))]
    ['1', '0.0316', '0.001']

  References:
    O'Donoghue & Candès, `Adaptive Restart for Accelerated Gradient Schemes
    <https://arxiv.org/abs/1204.3982>`_, Foundations of Computational
    Mathematics 15, 2015.

    Nesterov, `Lectures on Convex Optimization`, Springer, 2018, Section
    2.2.
  """
  lam = np.logspace(0.0, -np.log10(condition_number), n)
  x0 = np.random.default_rng(seed).standard_normal(n)
  if rotated:
    basis = np.linalg.qr(np.random.default_rng(1).standard_normal((n, n)))[0]
    x0 = basis.T @ x0
  else:
    basis = None

  def f(x):
    z = x if basis is None else basis @ x
    return 0.5 * float(np.sum(lam * z * z))

  def grad(x):
    if basis is None:
      return lam * x
    return basis.T @ (lam * (basis @ x))

  def value_and_grad(x):
    eigenvalues = jnp.asarray(lam)
    if basis is None:
      return 0.5 * jnp.sum(eigenvalues * x * x), eigenvalues * x
    q = jnp.asarray(basis)
    z = q @ x
    return 0.5 * jnp.sum(eigenvalues * z * z), q.T @ (eigenvalues * z)

  return Problem(
      value_and_grad=value_and_grad,
      x0=x0,
      f_star=0.0,
      smoothness=1.0,
      strong_convexity=1.0 / condition_number,
      f=f,
      grad=grad,
  )
