"""L2-regularised logistic regression: on breast_cancer, and a small one."""

import jax
import jax.numpy as jnp
import numpy as np

from nagd_optax.problems import _optional
from nagd_optax.problems._problem import Problem


def breast_cancer_logistic(regularization: float) -> Problem:
  r"""L2-regularised logistic regression on the breast cancer data set.

  .. math::

    f(w) = \frac1m \sum_{i=1}^m \log(1 + e^{-b_i a_i^\top w})
      + \frac\lambda2 \|w\|^2

  on scikit-learn's copy of the Wisconsin diagnostic breast cancer data
  (:math:`m = 569` tumours, 30 features standardised to zero mean and unit
  variance, plus a bias column: :math:`d = 31`; labels
  :math:`b_i = \pm 1`), from :math:`w_0 = 0`. The logistic loss has
  curvature at most 1/4, so
  :math:`L = \lambda_{\max}(A^\top A)/(4m) + \lambda`; :math:`\mu = \lambda`;
  :math:`f^*` is found by Newton's method in NumPy (float64).

  Needs scikit-learn (``pip install "nagd_optax[examples]"``).

  Args:
    regularization: :math:`\lambda > 0`.

  Returns:
    A :class:`Problem`.

  Example:
    >>> import nagd_optax as nagd
    >>> problem = nagd.problems.breast_cancer_logistic(1e-3)
    >>> problem.x0.shape, round(problem.f_star, 6)
    ((31,), 0.059829)

  References:
    Street, Wolberg & Mangasarian, `Nuclear feature extraction for breast
    tumor diagnosis`, Biomedical Image Processing and Biomedical
    Visualization, SPIE 1905, 1993 (the data set; UCI Machine Learning
    Repository, Breast Cancer Wisconsin (Diagnostic)).

    O'Donoghue & Candès, `Adaptive Restart for Accelerated Gradient Schemes
    <https://arxiv.org/abs/1204.3982>`_, Foundations of Computational
    Mathematics 15, 2015 (logistic regression as a test of restart).
  """
  load_breast_cancer = _optional.load("sklearn.datasets",
                                      "load_breast_cancer", "examples")
  features, labels = load_breast_cancer(return_X_y=True)
  features = (features - features.mean(0)) / features.std(0)
  features = np.hstack([features, np.ones((len(features), 1))])
  signed = features * (2.0 * labels - 1.0)[:, None]
  return _logistic(signed, regularization, np.zeros(signed.shape[1]),
                   f_star=True)


def synthetic_logistic(seed: int = 0, m: int = 40, d: int = 5) -> Problem:
  r"""A small L2-regularised logistic regression on random data.

  Features :math:`a_i \sim N(0, I_d)`, labels :math:`b_i = \pm 1` with equal
  odds, :math:`\lambda = 0.1` and :math:`x_0 \sim N(0, I_d)`, all drawn from
  ``numpy.random.default_rng(seed)`` in that order; the objective is that of
  :func:`breast_cancer_logistic`. Small and smooth: for comparing
  trajectories step by step. :math:`f^*` is not computed (``None``).

  Args:
    seed: the seed of the data and of :math:`x_0`.
    m: the number of samples.
    d: the dimension.

  Returns:
    A :class:`Problem`.

  Example:
    >>> import nagd_optax as nagd
    >>> problem = nagd.problems.synthetic_logistic()
    >>> problem.x0.shape, problem.strong_convexity
    ((5,), 0.1)
  """
  rng = np.random.default_rng(seed)
  features = rng.standard_normal((m, d))
  labels = np.where(rng.standard_normal(m) > 0, 1.0, -1.0)
  x0 = rng.standard_normal(d)
  return _logistic(features * labels[:, None], 0.1, x0, f_star=False)


def _logistic(signed, regularization, x0, f_star):
  """The problem for rows b_i a_i of ``signed``."""
  m = len(signed)

  def f(w):
    return float(np.mean(np.logaddexp(0.0, -signed @ w))
                 + 0.5 * regularization * w @ w)

  def grad(w):
    return -signed.T @ (1.0 / (1.0 + np.exp(signed @ w))) / m + (
        regularization * w)

  def loss(w):
    a = jnp.asarray(signed)
    return jnp.mean(jnp.logaddexp(0.0, -a @ w)) + 0.5 * regularization * w @ w

  smoothness = 0.25 * np.linalg.eigvalsh(signed.T @ signed).max() / m
  return Problem(
      value_and_grad=jax.value_and_grad(loss),
      x0=x0,
      f_star=_newton_minimum(signed, regularization, x0, f) if f_star else None,
      smoothness=float(smoothness + regularization),
      strong_convexity=regularization,
      f=f,
      grad=grad,
  )


def _newton_minimum(signed, regularization, w, f, iterations=30):
  """f* by Newton's method: the problems are small, the Hessian is cheap."""
  m, d = signed.shape
  for _ in range(iterations):
    p = 1.0 / (1.0 + np.exp(signed @ w))  # sigmoid(-b_i a_i^T w)
    gradient = -signed.T @ p / m + regularization * w
    hessian = (signed.T * (p * (1.0 - p))) @ signed / m + (
        regularization * np.eye(d))
    w = w - np.linalg.solve(hessian, gradient)
  return f(w)
