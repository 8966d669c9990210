"""Momentum schedules: step count -> momentum, for :func:`nesterov_trace`."""

import math

import jax
import jax.numpy as jnp
import optax

from nagd_optax import _validation
from nagd_optax.schedules._counts import as_float


def nesterov_momentum() -> optax.Schedule:
  r"""The momentum sequence :math:`(j - 1)/(j + 2)` for smooth convex problems.

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

  This closed form is Tseng's choice :math:`\theta_k = 2/(k + 2)`, the
  sequence of Su, Boyd & Candès. Nesterov's 1983 method and Beck &
  Teboulle's FISTA use another sequence, with the same
  :math:`1 - 3/k` asymptotics: :func:`fista_momentum`.

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

    Tseng, `On accelerated proximal gradient methods for convex-concave
    optimization`, manuscript, 2008.

    Su, Boyd & Candès, `A Differential Equation for Modeling Nesterov's
    Accelerated Gradient Method <https://arxiv.org/abs/1503.01243>`_, JMLR
    2016.
  """

  def schedule(count: jax.typing.ArrayLike) -> jax.Array:
    k = as_float(count)
    return k / (k + 3.0)

  return schedule


# FISTA's t_n (t_1 = 1, t_{n+1} = f(t_n), f(t) = (1 + sqrt(1 + 4 t^2))/2) has
# no closed form, and running the recursion up to the step count costs O(k)
# per call (a lax.fori_loop: 50 ms per momentum value at k = 1e6 on a CPU
# core, so O(k^2) over a run). Instead,
# t_n is found from the sequence's Abel function A, for which
# A(f(t)) = A(t) + 1 and so A(t_n) = n + A_inf. A has the asymptotic series
#   A(t) = 2t - ln(t)/2 + sum_m c_m t^-m,
# with these (m, c_m) (c_1 = 0; the c_m follow from matching powers of 1/t in
# A(f(t)) - A(t) = 1). Truncated after c_8, its error is below 3e-16 from
# n = 32 on.
_FISTA_ABEL_SERIES = (
    (2, -1 / 192),
    (3, -1 / 576),
    (4, -1 / 3840),
    (5, 1 / 7200),
    (6, 397 / 3096576),
    (7, 1027 / 36126720),
    (8, -113 / 3538944),
)
# A_inf = lim A(t_n) - n for t_1 = 1, from the recursion to n = 20000 in
# 40-digit arithmetic.
_FISTA_ABEL_OFFSET = 0.99304449203835697542


def _fista_t_by_recursion(steps: int) -> tuple[float, ...]:
  """t_1 .. t_steps by the recursion, in Python floats."""
  t = [1.0]
  while len(t) < steps:
    t.append((1.0 + math.sqrt(1.0 + 4.0 * t[-1] ** 2)) / 2.0)
  return tuple(t)


# Up to n = 32, where the series is not yet accurate, t_n is looked up.
_FISTA_DIRECT = _fista_t_by_recursion(32)


def _fista_t(n: jax.Array) -> jax.Array:
  """FISTA's t_n for whole numbers n >= 1 (a float array), in n's dtype.

  O(1): a table lookup for n <= 32, else three Newton steps on
  A(t) = n + A_inf (two reach float64 rounding from n = 33 on).
  """
  direct_steps = len(_FISTA_DIRECT)
  table = jnp.asarray(_FISTA_DIRECT, n.dtype)
  direct = table[jnp.clip(n, 1, direct_steps).astype(jnp.int32) - 1]
  # jnp.where evaluates both branches: clamping n keeps the Newton branch
  # where the series holds (and finite) for the n that take the table.
  abel = jnp.maximum(n, direct_steps) + _FISTA_ABEL_OFFSET
  t = (abel + 0.5 * jnp.log(0.5 * abel)) / 2  # 2t - ln(t)/2 = A, nearly
  for _ in range(3):
    r = 1 / t
    series = sum(c * r**m for m, c in _FISTA_ABEL_SERIES)
    slope = 2 - 0.5 * r - sum(
        m * c * r ** (m + 1) for m, c in _FISTA_ABEL_SERIES
    )
    t = t - (2 * t - 0.5 * jnp.log(t) + series - abel) / slope
  return jnp.where(n <= direct_steps, direct, t)


def fista_momentum() -> optax.Schedule:
  r"""FISTA's momentum: Beck & Teboulle's :math:`t`-sequence.

  .. math::

    t_1 = 1, \quad t_{j+1} = \frac{1 + \sqrt{1 + 4 t_j^2}}{2}, \quad
    \beta_j = \frac{t_j - 1}{t_{j+1}}, \quad \mu_k = \beta_{k+1},
    \quad k = 0, 1, \dots

  in the count convention of :func:`nesterov_momentum`: :math:`\mu_0 = 0`,
  so the first step is a plain gradient step. Nesterov's 1983 method uses
  the same sequence. With :func:`nagd_optax.nesterov_trace` (or
  :func:`nagd_optax.nagd`) and step :math:`1/L`, the parameters are FISTA's
  extrapolated points :math:`y_k` (without a proximal term). It differs from
  :func:`nesterov_momentum`'s :math:`(j - 1)/(j + 2)` by
  :math:`O(\log j / j^2)`; the two give different iterates but the same
  :math:`O(1/k^2)` rate.

  The recursion has no closed form, and running it costs :math:`O(k)` per
  call, so :math:`t_n` is computed in :math:`O(1)` instead: from a table for
  :math:`n \le 32` and, beyond, by inverting the asymptotic series of the
  sequence's Abel function :math:`A` (:math:`A(t_{n+1}) = A(t_n) + 1`) with
  Newton's method. That is a few hundred flops per call, for any count, and
  exact to float64 rounding (:math:`\sim 10^{-16}` relative; the float64
  recursion itself drifts to :math:`\sim 10^{-14}` by :math:`k = 10^6`).

  Returns:
    A schedule mapping the step count (int) to the momentum, in the default
    float dtype (float64 when x64 is enabled).

  Example:
    >>> import nagd_optax as nagd
    >>> fista = nagd.schedules.fista_momentum()
    >>> [round(float(fista(k)), 4) for k in range(4)]
    [0.0, 0.2818, 0.434, 0.5311]
    >>> round(float(fista(10**6)), 6)  # as cheap as at step 0
    0.999997
    >>> optimizer = nagd.nagd(1.0, fista)  # FISTA for L = 1, step 1/L

  References:
    Beck & Teboulle, `A fast iterative shrinkage-thresholding algorithm for
    linear inverse problems`, SIAM J. Imaging Sciences 2(1), 2009.

    Nesterov, `A method for solving the convex programming problem with
    convergence rate O(1/k^2)`, Soviet Mathematics Doklady 27, 1983.
  """

  # Jitted so that an eager call is one dispatch, not some hundred small ops.
  @jax.jit
  def schedule(count: jax.typing.ArrayLike) -> jax.Array:
    j = as_float(count) + 1.0
    return (_fista_t(j) - 1.0) / _fista_t(j + 1.0)

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
