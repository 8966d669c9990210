"""Momentum schedules: step count -> momentum, for :func:`nesterov_trace`."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from nagd_optax import _validation


def _as_float(count: jax.typing.ArrayLike) -> jax.Array:
  # int32 / int32 is float32 in JAX even with x64 enabled; divide in the
  # default float type so that float64 runs get float64 momenta.
  return jnp.asarray(count, dtype=jnp.result_type(float))


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
    k = _as_float(count)
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
    return jnp.full(jnp.shape(count), momentum, dtype=jnp.result_type(float))

  return schedule
