"""Momentum schedules: step count -> momentum, for :func:`nesterov_trace`."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from nagd_optax import _validation
from nagd_optax.schedules._counts import as_float


def nesterov_momentum() -> optax.Schedule:
  r"""Nesterov's momentum sequence for smooth convex problems.

  .. math::

    \mu_k = \frac{k}{k + 3}, \quad k = 0, 1, \dots

  which is :math:`\beta_j = (j - 1)/(j + 2)` in the usual 1-based count
  :math:`j = k + 1` of the two-sequence method
  :math:`y_j = x_j + \beta_j (x_j - x_{j-1})`: the first step is a plain
  gradient step, and momentum then grows towards 1. With
  :func:`nagd_optax.nesterov_trace` and step :math:`1/L` this is Nesterov's
  method with its :math:`O(1/k^2)` rate; inside :func:`nagd_optax.restart` the
  sequence starts again from :math:`k = 0` at each restart, which is
  O'Donoghue & Candès' adaptive restart.

  Returns:
    A schedule mapping the step count (int) to the momentum, in the default
    float dtype (float64 when x64 is enabled).

  Example:
    >>> import nagd_optax as nagd
    >>> schedule = nagd.schedules.nesterov_momentum()
    >>> [round(float(schedule(k)), 4) for k in range(4)]
    [0.0, 0.25, 0.4, 0.5]

  References:
    Nesterov, `A method for solving the convex programming problem with
    convergence rate O(1/k^2)`, Soviet Mathematics Doklady 27, 1983.

    Beck & Teboulle, `A fast iterative shrinkage-thresholding algorithm for
    linear inverse problems`, SIAM J. Imaging Sciences, 2009.
  """

  def schedule(count: jax.typing.ArrayLike) -> jax.Array:
    k = as_float(count)
    return k / (k + 3.0)

  return schedule


def strongly_convex_momentum(condition_number: float) -> optax.Schedule:
  r"""The optimal constant momentum for a strongly convex problem.

  .. math::

    \mu = \frac{\sqrt{\kappa} - 1}{\sqrt{\kappa} + 1},
    \qquad \kappa = L / \mu_{\mathrm{sc}} \ge 1,

  which with step :math:`1/L` converges linearly at rate
  :math:`1 - 1/\sqrt{\kappa}`. It needs the strong-convexity constant; the
  restart schemes of :func:`nagd_optax.restart` get close without it.

  Args:
    condition_number: :math:`\kappa = L/\mu_{\mathrm{sc}}`, a number >= 1.

  Returns:
    A constant schedule (step count -> momentum), in the default float dtype.

  Example:
    >>> import nagd_optax as nagd
    >>> schedule = nagd.schedules.strongly_convex_momentum(100.0)
    >>> round(float(schedule(0)), 6)
    0.818182

  References:
    Nesterov, `Introductory Lectures on Convex Optimization`, Springer 2004,
    section 2.2.
  """
  _validation.check_at_least(condition_number, "condition_number", 1.0)
  root = math.sqrt(condition_number)
  momentum = (root - 1.0) / (root + 1.0)

  def schedule(count: jax.typing.ArrayLike) -> jax.Array:
    return jnp.full_like(as_float(count), momentum)

  return schedule


def sutskever_momentum(
    max_momentum: float = 0.99, every: int = 250
) -> optax.Schedule:
  r"""The momentum schedule of Sutskever et al. for deep networks.

  .. math::

    \mu_t = \min\left(1 - 2^{-1 - \log_2(\lfloor t / n \rfloor + 1)},
    \mu_{\max}\right) = \min\left(1 - \frac{1}{2(\lfloor t/n \rfloor + 1)},
    \mu_{\max}\right),

  i.e. 0.5, 0.75, 0.833, ... every :math:`n` steps, capped at
  :math:`\mu_{\max}`. Pass it as the ``momentum`` of
  :func:`nagd_optax.nagd` or :func:`nagd_optax.nesterov_trace`.

  Args:
    max_momentum: :math:`\mu_{\max} \in [0, 1)`.
    every: :math:`n \ge 1` steps per stage.

  Returns:
    A momentum schedule (step count -> momentum), in the default float dtype.

  Example:
    >>> import nagd_optax as nagd
    >>> schedule = nagd.schedules.sutskever_momentum(0.9, every=250)
    >>> [round(float(schedule(t)), 4) for t in (0, 250, 500, 1250, 5000)]
    [0.5, 0.75, 0.8333, 0.9, 0.9]

  References:
    Sutskever, Martens, Dahl & Hinton, `On the importance of initialization
    and momentum in deep learning
    <https://proceedings.mlr.press/v28/sutskever13.html>`_, ICML 2013.
  """
  _validation.check_in_interval(
      max_momentum, "max_momentum", 0.0, 1.0, include_low=True
  )
  _validation.check_integer_at_least(every, "every", 1)

  def schedule(count: jax.typing.ArrayLike) -> jax.Array:
    stage = jnp.floor(as_float(count) / every)
    return jnp.minimum(1.0 - 1.0 / (2.0 * (stage + 1.0)), max_momentum)

  return schedule
