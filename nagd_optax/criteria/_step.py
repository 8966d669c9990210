"""Tests on the step just taken: the gradient and speed schemes.

Both decide from the update just computed and act on the next one (or, for
the exact gradient scheme, recompute this one), so they need no loss and add
only scalars to the state.
"""

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from nagd_optax import _loss_trend
from nagd_optax import _validation
from nagd_optax.criteria import _protocol

# Su, Boyd & Candès' k_min: the speed test needs a few steps of momentum
# build-up before a shorter step means anything.
SPEED_MIN_INTERVAL = 10


def gradient(
    *, min_interval: int = 0, immediate: bool = False
) -> _protocol.Criterion:
  r"""Restart when the momentum points uphill: the gradient scheme.

  With :math:`g_k = \nabla f(y_k)` and the inner momentum buffer
  :math:`m_k` after the update, the criterion fires when

  .. math::

    \langle g_k, m_k \rangle < 0,

  which for :func:`nagd_optax.nesterov_trace` (where
  :math:`m_k = -(x_{k+1} - x_k)/\eta` in the two-sequence form) is
  O'Donoghue & Candès' test :math:`\nabla f(y_k)^\top (x_{k+1} - x_k) > 0`.
  The inner product is taken on the step just computed, so no extra buffer
  is kept. The buffer must accumulate the gradients themselves (as
  ``nesterov_trace``, ``optax.trace`` and Adam's ``mu`` do), so keep negative
  scalings such as the learning rate after it; see
  :func:`nagd_optax.restart`'s ``momentum_buffer`` for which buffer is read.

  Two forms:

  - ``immediate=False`` (the default): the *next* update starts from a fresh
    inner state, and the update that fired keeps its extrapolation
    :math:`\mu_k m_k`.
  - ``immediate=True``: the paper's scheme. The update that fired is
    recomputed from a fresh inner state (for ``nesterov_trace`` with a
    momentum schedule starting at 0, a plain gradient step:
    :math:`y_{k+1} = x_{k+1}`), and the inner state is left fresh. It reads
    the gradients and the buffer twice (once for the test, once for the
    update) but keeps no more memory.

  Args:
    min_interval: the criterion does not fire within this many updates of
      the last restart.
    immediate: recompute the update that fired from a fresh state, as the
      paper does, instead of restarting at the next update.

  Returns:
    A :class:`Criterion` that reads the momentum buffer.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import nagd_optax as nagd
    >>> optimizer = nagd.nagd(0.1, 0.5, restart=nagd.criteria.gradient())
    >>> params = jnp.zeros(2)
    >>> state = optimizer.init(params)
    >>> _, state = optimizer.update(jnp.array([1.0, 0.0]), state, params)
    >>> _, state = optimizer.update(jnp.array([-2.0, 0.0]), state, params)
    >>> bool(state[0].restart_pending)  # m = 0.5 - 2 = -1.5, along g = -2
    False
    >>> _, state = optimizer.update(jnp.array([0.5, 0.0]), state, params)
    >>> bool(state[0].restart_pending)  # m = -0.75 + 0.5 opposes g = 0.5
    True

  References:
    O'Donoghue & Candès, `Adaptive Restart for Accelerated Gradient Schemes
    <https://arxiv.org/abs/1204.3982>`_, Foundations of Computational
    Mathematics, 2015.
  """
  _validation.check_integer_at_least(min_interval, "min_interval", 0)
  if not isinstance(immediate, bool):
    raise TypeError(f"immediate must be True or False, got {immediate!r}.")

  def after_update(state, info):
    uphill = info.inner_product(info.gradients, info.momentum) < 0
    return (info.steps >= min_interval) & uphill, state

  return _protocol.Criterion(
      init=_protocol.no_state,
      after_update=after_update,
      reads_momentum=True,
      immediate=immediate,
      reads_updates=False,
  )


class SpeedState(NamedTuple):
  """State of :func:`speed`.

  Attributes:
    previous_norm_squared: the squared length of the last step measured.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import nagd_optax as nagd
    >>> optimizer = nagd.nagd(0.1, 0.0, restart=nagd.criteria.speed())
    >>> state = optimizer.init(jnp.ones(2))
    >>> _, state = optimizer.update(jnp.array([3.0, 4.0]), state)
    >>> float(optax.tree.get(state, "previous_norm_squared"))
    25.0
  """

  previous_norm_squared: jax.Array


def speed(
    *,
    min_interval: int = SPEED_MIN_INTERVAL,
    measure: Literal["update", "momentum"] = "update",
) -> _protocol.Criterion:
  r"""Restart when the step got shorter: Su, Boyd & Candès' speed scheme.

  The criterion fires when the step just computed is shorter than the one
  before, after at least ``min_interval`` updates since the last restart;
  the next update starts from a fresh inner state. Which step is measured:

  - ``measure="update"`` (the default): the inner update,
    :math:`\|u_k\| < \|u_{k-1}\|`, i.e. the step of the parameters
    :math:`y_{k+1} - y_k` at a constant learning rate.
  - ``measure="momentum"``: the momentum buffer,
    :math:`\|m_k\| < \|m_{k-1}\|`, which for
    :func:`nagd_optax.nesterov_trace` at a constant learning rate is the
    paper's :math:`\|x_{k+1} - x_k\| < \|x_k - x_{k-1}\|` on the
    gradient-step sequence.

  With :func:`nagd_optax.nesterov_trace` as the inner transformation, the
  norm of :math:`u_k = g_k + \mu_k m_k` is taken on the update recomputed
  from :math:`g_k` and :math:`m_k` (the same numbers, bit for bit), which
  XLA reduces without materialising :math:`u_k`: no parameter-sized
  temporary.

  Args:
    min_interval: Su, Boyd & Candès' :math:`k_{\min}`: updates after a
      restart during which the test does not fire (10 by default).
    measure: ``"update"`` or ``"momentum"``.

  Returns:
    A :class:`Criterion`; it reads the momentum buffer with
    ``measure="momentum"``.

  Example:
    >>> import jax.numpy as jnp
    >>> import nagd_optax as nagd
    >>> optimizer = nagd.nagd(
    ...     0.1, 0.0, restart=nagd.criteria.speed(min_interval=2))
    >>> params = jnp.ones(1)
    >>> state = optimizer.init(params)
    >>> fired = []
    >>> for gradient in [1.0, 2.0, 3.0, 2.5]:  # the last step is shorter
    ...   _, state = optimizer.update(gradient * params, state, params)
    ...   fired.append(bool(state[0].restart_pending))
    >>> fired
    [False, False, False, True]

  References:
    Su, Boyd & Candès, `A Differential Equation for Modeling Nesterov's
    Accelerated Gradient Method <https://arxiv.org/abs/1503.01243>`_, JMLR
    2016.
  """
  _validation.check_integer_at_least(min_interval, "min_interval", 0)
  if measure not in ("update", "momentum"):
    raise ValueError(
        f"measure must be 'update' or 'momentum', got {measure!r}."
    )

  def init(params):
    del params
    return SpeedState(jnp.zeros([], _loss_trend.widest_float()))

  def after_update(state, info):
    step = info.updates if measure == "update" else info.momentum
    norm_squared = info.inner_product(step, step)
    previous = state.previous_norm_squared
    shorter = (info.steps >= min_interval) & (norm_squared < previous)
    return shorter, SpeedState(norm_squared.astype(previous.dtype))

  return _protocol.Criterion(
      init=init,
      after_update=after_update,
      reads_momentum=measure == "momentum",
      reads_updates=measure == "update",
  )
