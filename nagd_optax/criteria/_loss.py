"""The function scheme: restart when the loss rises."""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from nagd_optax import _loss_trend
from nagd_optax import _validation
from nagd_optax.criteria import _protocol


class LossState(NamedTuple):
  """State of :func:`loss`.

  Attributes:
    trend: running statistics of the loss (see ``smoothing``); without
      smoothing only its ``mean`` (the last finite loss) and ``count`` are
      kept.
    lowest: the lowest (smoothed) loss since the criterion last fired; a
      rise is measured from it.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import nagd_optax as nagd
    >>> optimizer = nagd.nagd(0.1, restart=nagd.criteria.loss())
    >>> state = optimizer.init(jnp.ones(2))
    >>> for value in [3.0, 2.0]:
    ...   _, state = optimizer.update(jnp.ones(2), state, value=value)
    >>> float(optax.tree.get(state, "lowest"))
    2.0
  """

  trend: _loss_trend.LossTrend
  lowest: jax.Array


def loss(
    smoothing: float | jax.Array = 0.0,
    *,
    noise_tolerance: float | jax.Array = 3.0,
    min_interval: int = 0,
) -> _protocol.Criterion:
  r"""Restart when the loss rose: O'Donoghue & Candès' function scheme.

  At each update the loss :math:`f(y_k)` at the parameters being updated is
  passed as ``value=``; the criterion fires when

  .. math::

    f(y_k) > \min_{j < k} f(y_j)

  over the losses since the last restart (that is :math:`f(y_{k-1})` unless
  ``min_interval`` held an earlier rise back: then the loss must come back
  below where the run was, not merely fall), compared in the loss's own
  precision. The loss at :math:`y_k` is known before the update, so a rise
  restarts *this* update: no extrapolation from a worse point. A NaN or
  infinite loss never fires and is never stored.

  The paper tests :math:`f(x_k)` at the gradient-step point, which a training
  loop does not evaluate; this is the same test at the extrapolated point
  :math:`y_k`, where the gradient is taken.

  With ``smoothing`` :math:`s > 0` (for minibatch losses) the test becomes
  :math:`\bar f_k > \min_j \bar f_j + z\,\hat\sigma_k`: the exponential
  moving average of the loss rose above its lowest value since the last
  restart by more than ``noise_tolerance`` :math:`z` of its own standard
  errors, estimated from the losses. (Consecutive smoothed values alone do
  not help: their difference has the sign of the raw noise.) The first
  :math:`1/(1 - s)` losses only set the reference. ``smoothing=0.98`` keeps
  restarts on noisy minibatch losses rare.

  Args:
    smoothing: EMA factor :math:`s \in [0, 1)`; 0 is the paper's exact test
      for full-batch problems, about 0.98 suits minibatch losses.
    noise_tolerance: :math:`z \ge 0`, how many standard errors of the
      smoothed loss a rise must exceed (with ``smoothing > 0``).
    min_interval: the criterion does not fire within this many updates of
      the last restart.

  Returns:
    A :class:`Criterion` that reads ``value=`` (a scalar loss) from
    ``update``; a missing or non-scalar ``value`` raises an error naming it.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import nagd_optax as nagd
    >>> optimizer = nagd.nagd(0.1, restart=nagd.criteria.loss())
    >>> params = jnp.ones(2)
    >>> state = optimizer.init(params)
    >>> for value in [3.0, 2.0, 2.5]:  # the last one rose: restart
    ...   _, state = optimizer.update(params, state, params, value=value)
    >>> int(optax.tree.get(state, "restarts"))
    1

  References:
    O'Donoghue & Candès, `Adaptive Restart for Accelerated Gradient Schemes
    <https://arxiv.org/abs/1204.3982>`_, Foundations of Computational
    Mathematics, 2015.
  """
  _validation.check_in_interval(
      smoothing, "smoothing", 0.0, 1.0, include_low=True
  )
  _validation.check_at_least(noise_tolerance, "noise_tolerance", 0.0)
  _validation.check_integer_at_least(min_interval, "min_interval", 0)

  # The paper's test (no smoothing, known when the criterion is built) needs
  # only the last loss, not the noise statistics.
  unsmoothed = isinstance(smoothing, (int, float)) and smoothing == 0

  def init(params):
    del params
    trend = _loss_trend.init_trend()
    return LossState(trend=trend, lowest=jnp.full_like(trend.mean, jnp.inf))

  def before_update(state, info):
    value = _loss_trend.scalar_loss(
        info.extra_args.get("value"), "the loss restart criterion"
    )
    if unsmoothed:
      trend, margin = _loss_trend.update_level(state.trend, value), 0.0
    else:
      trend = _loss_trend.update_trend(state.trend, value, smoothing)
      margin = jnp.where(
          smoothing > 0,
          noise_tolerance * _loss_trend.standard_error(trend, smoothing),
          0.0,
      )
    finite = jnp.isfinite(value)
    settled = _loss_trend.settled(trend, smoothing)
    rose = (
        (info.steps >= min_interval)
        & finite
        & settled
        & (trend.mean > state.lowest + margin)
    )
    # After a restart, rises are measured from the level it started at; until
    # the average settles, the reference simply follows it.
    lowest = jnp.where(
        finite & (rose | ~settled),
        trend.mean,
        jnp.where(finite, jnp.minimum(state.lowest, trend.mean), state.lowest),
    )
    return rose, LossState(trend=trend, lowest=lowest)

  return _protocol.Criterion(init=init, before_update=before_update)
