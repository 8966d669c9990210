"""Nesterov's worst function for first-order methods, and its lower bound."""

import jax.numpy as jnp
import numpy as np

from nagd_optax.problems._problem import Problem


def nesterov_worst_case(n: int, smoothness: float = 1.0) -> Problem:
  r"""Nesterov's tridiagonal worst case for first-order methods.

  .. math::

    f(x) = \frac L4 \left( \frac12 \left[ x_1^2
      + \sum_{i=1}^{n-1} (x_i - x_{i+1})^2 + x_n^2 \right] - x_1 \right)

  on :math:`\mathbb{R}^n`, from :math:`x_0 = 0`: convex and :math:`L`-smooth,
  with :math:`f^* = \frac L8 \left(-1 + \frac1{n + 1}\right)`. Any method
  whose steps are combinations of past gradients keeps its :math:`k`-th
  iterate in :math:`\mathrm{span}(e_1, \dots, e_k)`, where
  :math:`f \ge` :func:`worst_case_lower_bound` :math:`(k)`: no first-order
  run can go below it, which makes it a check on any implementation.

  The matrix is applied as a stencil (no dense :math:`n \times n` matrix),
  so large :math:`n` is cheap.

  Args:
    n: the dimension.
    smoothness: :math:`L`.

  Returns:
    A :class:`Problem` (``strong_convexity`` is ``None``).

  Example:
    >>> import nagd_optax as nagd
    >>> problem = nagd.problems.nesterov_worst_case(3)
    >>> problem.f_star, problem.grad(problem.x0).tolist()
    (-0.09375, [-0.25, 0.0, 0.0])

  References:
    Nesterov, `Lectures on Convex Optimization`, Springer, 2018, Section
    2.1.2.
  """
  quarter = smoothness / 4

  def stencil(x, pad):
    padded = pad(x, 1)
    return quarter * (2 * x - padded[:-2] - padded[2:])

  def f(x):
    return float(0.5 * x @ stencil(x, np.pad) - quarter * x[0])

  def grad(x):
    gradient = stencil(x, np.pad)
    gradient[0] -= quarter
    return gradient

  def value_and_grad(x):
    ax = stencil(x, jnp.pad)
    return 0.5 * x @ ax - quarter * x[0], ax.at[0].add(-quarter)

  return Problem(
      value_and_grad=value_and_grad,
      x0=np.zeros(n),
      f_star=worst_case_lower_bound(n, smoothness),
      smoothness=smoothness,
      strong_convexity=None,
      f=f,
      grad=grad,
  )


def worst_case_lower_bound(k, smoothness: float = 1.0):
  r"""The least value of :func:`nesterov_worst_case` on its first k axes.

  .. math::

    f^*_k = \frac L8 \left(-1 + \frac1{k + 1}\right)

  is the minimum of :math:`f` over :math:`\mathrm{span}(e_1, \dots, e_k)`,
  where the :math:`k`-th iterate of any first-order method from
  :math:`x_0 = 0` lies (for :math:`k \le n`; :math:`f^*_n = f^*`).

  Args:
    k: the iteration, an int or a NumPy array of them.
    smoothness: :math:`L`.

  Returns:
    :math:`f^*_k`, a float or an array like ``k``.

  Example:
    >>> import numpy as np
    >>> import nagd_optax as nagd
    >>> nagd.problems.worst_case_lower_bound(1)
    -0.0625
    >>> nagd.problems.worst_case_lower_bound(np.arange(3)).tolist()
    [0.0, -0.0625, -0.08333333333333334]

  References:
    Nesterov, `Lectures on Convex Optimization`, Springer, 2018, Section
    2.1.2.
  """
  bound = smoothness / 8 * (-1 + 1 / (np.asarray(k) + 1))
  return float(bound) if bound.ndim == 0 else bound
