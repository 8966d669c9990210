"""Restarts that read no signal from the run: on a period, or on demand."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from nagd_optax import _validation
from nagd_optax.criteria import _protocol


class EveryState(NamedTuple):
  """State of :func:`every`.

  Attributes:
    count: updates since ``init`` (never reset by restarts), int32: what a
      period schedule is evaluated at.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import nagd_optax as nagd
    >>> optimizer = nagd.nagd(0.1, restart=nagd.criteria.every(2))
    >>> state = optimizer.init(jnp.ones(2))
    >>> for _ in range(3):
    ...   _, state = optimizer.update(jnp.ones(2), state)
    >>> int(optax.tree.get(state, "criterion_state").count)
    3
  """

  count: jax.Array


def every(period: int | optax.Schedule) -> _protocol.Criterion:
  r"""Restart on a fixed (or scheduled) period: scheduled restart.

  Each run of the inner transformation between restarts is ``period``
  updates long. ``period`` may be a schedule of the update count
  :math:`t = 0, 1, \dots` since ``init`` (never reset by restarts): the
  run that contains update :math:`t` ends once it is
  :math:`\lfloor \mathrm{period}(t) \rfloor` updates long. That is the
  scheduled restart of SRSGD, whose period grows at each learning-rate
  stage, e.g. with :func:`optax.piecewise_constant_schedule`.

  Args:
    period: an integer >= 1, or a schedule (update count -> period, >= 1).

  Returns:
    A :class:`Criterion`.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import nagd_optax as nagd
    >>> optimizer = nagd.nagd(
    ...     0.1, nagd.schedules.nesterov_momentum(),
    ...     restart=nagd.criteria.every(3))
    >>> params = jnp.ones(2)
    >>> state = optimizer.init(params)
    >>> for _ in range(7):
    ...   _, state = optimizer.update(params, state, params)
    >>> int(optax.tree.get(state, "restarts"))  # before updates 4 and 7
    2

  References:
    Wang, Nguyen, Bertozzi, Baraniuk & Osher, `Scheduled Restart Momentum for
    Accelerated Stochastic Gradient Descent
    <https://arxiv.org/abs/2002.10583>`_, 2020 (SRSGD).
  """
  if not callable(period):
    _validation.check_integer_at_least(period, "period", 1)

  def init(params):
    del params
    return EveryState(count=jnp.zeros([], jnp.int32))

  def after_update(state, info):
    length = period(state.count) if callable(period) else period
    done = info.steps >= jnp.maximum(jnp.round(length), 1)
    return done, EveryState(count=optax.safe_increment(state.count))

  return _protocol.Criterion(
      init=init, after_update=after_update, reads_updates=False
  )


def on_demand() -> _protocol.Criterion:
  """Restart only when asked: ``update(..., restart=True)``.

  Every criterion obeys ``restart=True``; this one fires on nothing else
  (e.g. for fine-tuning, where the data switch is the signal).

  Returns:
    A :class:`Criterion` that never fires by itself.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import nagd_optax as nagd
    >>> optimizer = nagd.nagd(0.1, 0.9, restart=nagd.criteria.on_demand())
    >>> params = jnp.ones(2)
    >>> state = optimizer.init(params)
    >>> _, state = optimizer.update(params, state, params)
    >>> _, state = optimizer.update(params, state, params, restart=True)
    >>> int(optax.tree.get(state, "restarts"))
    1
  """
  return _protocol.Criterion(init=_protocol.no_state)
