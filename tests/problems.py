"""Small, independent test problems: objectives with NumPy gradients."""

import numpy as np


def logistic_regression(seed: int = 0, m: int = 40, d: int = 5):
  """A logistic regression with an L2 term: returns (loss, grad, x0).

  ``loss`` works on NumPy and JAX arrays alike (through the array API of
  its argument), ``grad`` is the closed-form NumPy gradient.
  """
  rng = np.random.default_rng(seed)
  features = rng.standard_normal((m, d))
  labels = np.where(rng.standard_normal(m) > 0, 1.0, -1.0)
  x0 = rng.standard_normal(d)

  def loss(x):
    xp = _namespace(x)
    margins = labels * (features @ x)
    return xp.mean(xp.logaddexp(0.0, -margins)) + 0.05 * xp.sum(x * x)

  def grad(x):
    margins = labels * (features @ x)
    weights = -labels / (1.0 + np.exp(margins))
    return features.T @ weights / m + 0.1 * x

  return loss, grad, x0


def _namespace(x):
  if isinstance(x, np.ndarray):
    return np
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  return jnp


def quadratic(condition_number: float, n: int = 500):
  """DESIGN.md's quadratic f(x) = 0.5 sum_i lam_i x_i^2 (L = 1, mu = 1/kappa).

  Returns (lam, x0). The eigenvalues run log-spaced from 1 down to 1/kappa,
  paired in that order with x0 ~ N(0, I) from default_rng(0): the pairing
  that reproduces the published GD column exactly.
  """
  lam = np.logspace(0.0, -np.log10(condition_number), n)
  x0 = np.random.default_rng(0).standard_normal(n)
  return lam, x0
