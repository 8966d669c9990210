"""The value every objective of :mod:`nagd_optax.problems` returns."""

from typing import Callable, NamedTuple

import numpy as np


class Problem(NamedTuple):
  r"""An objective, where to start, and what is known about it.

  ``value_and_grad`` is what a JAX run uses; ``f`` and ``grad`` are closed
  forms in NumPy (float64), for reference loops written independently of
  JAX and of this library. Constants that are not known are ``None``.

  Attributes:
    value_and_grad: a JAX function ``x -> (f(x), grad f(x))``. Its constants
      take the float precision in force when it is traced (float64 under
      ``jax.enable_x64``).
    x0: the starting point, a NumPy array.
    f_star: the minimum value, or ``None``.
    smoothness: the Lipschitz constant :math:`L` of the gradient, or ``None``
      (then :math:`1/L` is not a safe step).
    strong_convexity: the strong convexity constant :math:`\mu`, or
      ``None``.
    f: the objective in NumPy.
    grad: its gradient in NumPy.

  Example:
    >>> import nagd_optax as nagd
    >>> problem = nagd.problems.quadratic(100.0, n=4)
    >>> problem.smoothness, problem.strong_convexity, problem.f_star
    (1.0, 0.01, 0.0)
    >>> value, gradient = problem.value_and_grad(problem.x0)
    >>> bool(abs(float(value) - problem.f(problem.x0)) < 1e-5)
    True
  """

  value_and_grad: Callable
  x0: np.ndarray
  f_star: float | None
  smoothness: float | None
  strong_convexity: float | None
  f: Callable[[np.ndarray], float]
  grad: Callable[[np.ndarray], np.ndarray]
