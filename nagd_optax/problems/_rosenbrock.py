"""Rosenbrock's banana-shaped valley: smooth, nonconvex."""

import jax
import numpy as np

from nagd_optax.problems._problem import Problem


def rosenbrock() -> Problem:
  r"""Rosenbrock's function :math:`f(x) = (1 - x_1)^2 + 100 (x_2 - x_1^2)^2`.

  From the classic start :math:`x_0 = (-1.2, 1)`, down a curved, narrow
  valley to :math:`x^* = (1, 1)`, :math:`f^* = 0`. It is nonconvex and its
  gradient is not globally Lipschitz, so ``smoothness`` and
  ``strong_convexity`` are ``None``: a step must be chosen (``1e-3`` is
  stable from :math:`x_0`).

  Returns:
    A :class:`Problem`. Its ``f`` accepts NumPy and JAX arrays alike.

  Example:
    >>> import numpy as np
    >>> import nagd_optax as nagd
    >>> problem = nagd.problems.rosenbrock()
    >>> round(float(problem.f(problem.x0)), 6)
    24.2
    >>> x_star = np.ones(2)
    >>> float(problem.f(x_star)), float(np.abs(problem.grad(x_star)).max())
    (0.0, 0.0)

  References:
    Rosenbrock, `An automatic method for finding the greatest or least value
    of a function`, The Computer Journal 3(3), 1960.
  """

  def f(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2

  def grad(x):
    return np.array([
        -2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] ** 2),
        200 * (x[1] - x[0] ** 2),
    ])

  return Problem(
      value_and_grad=jax.value_and_grad(f),
      x0=np.array([-1.2, 1.0]),
      f_star=0.0,
      smoothness=None,
      strong_convexity=None,
      f=f,
      grad=grad,
  )
