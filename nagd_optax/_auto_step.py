"""An automatic step size for the Nesterov trace: no learning rate to tune."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nagd_optax import _loss_trend
from nagd_optax import _validation
from nagd_optax.criteria import _protocol

# Losses needed before the spike test trusts the loss statistics.
_MIN_LOSSES = 5


class AutoStepState(NamedTuple):
  """State of :func:`scale_by_auto_step`.

  Attributes:
    inner_state: the wrapped transformation's state (the momentum).
    previous_gradients: :math:`g_{k-1}`, the one parameter-sized buffer of
      the step estimate.
    step_size: :math:`\\lambda_k`, the step of the last update (before the
      ``multiplier``); read it with ``optax.tree.get(state, "step_size")``.
    curvature: :math:`L_k`, the last local curvature estimate (0 before the
      second update, or when the gradient did not change).
    growth: :math:`\\theta_k = \\lambda_k / \\lambda_{k-1}`.
    previous_step_norm_squared: :math:`\\|y_k - y_{k-1}\\|^2` of the last
      update.
    initial_param_norm: :math:`\\|y_0\\|`, the scale of the trust region.
    loss_trend: running statistics of the loss (``value=``).
    log_loss_trend: the same statistics of :math:`\\log f` (while every loss
      is positive).
    lowest_loss: the lowest smoothed loss since the step was last cut.
    restart_pending: the momentum restarts at the next update.
    ramping: whether the step still grows at the fast initial rate (until
      the first cut).
    count: updates so far, int32.
    cuts: how often a loss guard cut the step, int32.
    spikes: how many of those were loss spikes (the rest: smoothed rises).

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import nagd_optax as nagd
    >>> optimizer = nagd.nagd("auto")
    >>> params = jnp.array([1.0, 2.0])
    >>> state = optimizer.init(params)
    >>> for _ in range(3):
    ...   updates, state = optimizer.update(params, state, params,
    ...                                     value=0.5 * jnp.sum(params**2))
    ...   params = optax.apply_updates(params, updates)
    >>> print(f"{float(optax.tree.get(state, 'curvature')):.2f}")
    1.00
  """

  inner_state: optax.OptState
  previous_gradients: optax.Updates
  step_size: jax.Array
  curvature: jax.Array
  growth: jax.Array
  previous_step_norm_squared: jax.Array
  initial_param_norm: jax.Array
  loss_trend: _loss_trend.LossTrend
  log_loss_trend: _loss_trend.LossTrend
  lowest_loss: jax.Array
  restart_pending: jax.Array
  ramping: jax.Array
  count: jax.Array
  cuts: jax.Array
  spikes: jax.Array


def _accepts_restart(inner_state: Any) -> bool:
  """Whether ``inner`` holds a restart wrapper (which obeys ``restart=``)."""
  return bool(optax.tree.get_all_with_path(inner_state, "restarts"))


def scale_by_auto_step(
    inner: optax.GradientTransformation,
    *,
    initial_step: float = 1e-6,
    curvature_factor: float = 1.0,
    trust_ratio: float = 0.02,
    slow_growth: float = 1.01,
    cut: float = 0.5,
    loss_smoothing: float = 0.9,
    spike_ratio: float = 2.0,
    noise_tolerance: float = 3.0,
    multiplier: optax.ScalarOrSchedule = 1.0,
    axis_name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Scales the direction of ``inner`` by a step size it estimates itself.

  ``inner`` turns the gradient :math:`g_k` into a direction :math:`d_k` (a
  Nesterov trace, restarted or not); the update is
  :math:`u_k = -\lambda_k d_k`, with a step :math:`\lambda_k` set from the
  local curvature along the last step, bounded by a trust region relative to
  the parameters, and cut by loss guards:

  .. math::

    L_k = \frac{\|g_k - g_{k-1}\|}{\|y_k - y_{k-1}\|}, \qquad
    \lambda_k = \min\left(G_k \lambda_{k-1},\ \frac{c}{L_k},\
    \tau \frac{\max(\|y_k\|, \|y_0\|)}{\|d_k\|}\right),

  Malitsky & Mishchenko's adaptive gradient step (AdGD) with factor
  :math:`c` (``curvature_factor``): its growth :math:`G_k =
  \sqrt{1 + \lambda_{k-1}/\lambda_{k-2}}` finds the scale within a few
  dozen updates from any ``initial_step``; after the first cut the step
  grows by ``slow_growth`` per update at most. The relative trust region
  :math:`\tau` (``trust_ratio``) keeps one update from moving the parameters
  by more than a fraction of their norm, which a momentum-carried gradient
  spike would otherwise do (it is off when :math:`y_0 = 0`).

  With the loss passed as ``value=``, two guards watch it (they are off
  without it):

  - a *spike*, a loss far above its running level (more than ``spike_ratio``
    times it, and ``noise_tolerance`` standard deviations of the losses
    above it; in log space once the step has been cut, for positive losses)
    or a non-finite loss: the momentum restarts at once and the step is cut;
  - a *rise* of the smoothed loss (``loss_smoothing``) by more than
    ``noise_tolerance`` standard errors above its lowest value since the
    last cut: the step is cut and the momentum restarts at the next update.

  A cut multiplies the step by ``cut``. The momentum restarts through
  ``update(..., restart=True)``, which a :func:`nagd_optax.restart` wrapper
  inside ``inner`` obeys (:func:`nagd_optax.nagd` always puts one there).

  Minibatch gradients make the curvature estimate noisy: the gradient
  difference holds the noise of two minibatches, which inflates
  :math:`L_k`; :math:`c = 1` keeps the step above that noise floor (AdGD's
  :math:`c = 1/2` collapses on minibatches) and the guards and the trust
  region catch what the estimate misses.

  Args:
    inner: the transformation whose direction is scaled, e.g.
      ``nagd.restart(nagd.nesterov_trace(0.9), "on_demand")``; it must keep
      the sign of the gradient (a descent direction), so no learning rate
      inside it.
    initial_step: :math:`\lambda_0` relative to the scale of the problem:
      the first update moves the parameters by
      ``initial_step * max(1, ||y_0||)``. Only the first update uses it.
    curvature_factor: :math:`c` in :math:`\lambda \le c / L_k`.
    trust_ratio: :math:`\tau`, the largest fraction of
      :math:`\max(\|y_k\|, \|y_0\|)` one update moves the parameters by.
      ``float("inf")`` switches the trust region off.
    slow_growth: the largest growth of the step per update after the first
      cut, >= 1.
    cut: the factor of a cut, in (0, 1).
    loss_smoothing: the EMA factor of the loss statistics, in [0, 1).
    spike_ratio: a loss above this many times its running level (and
      ``noise_tolerance`` standard deviations above it) is a spike, > 1.
    noise_tolerance: :math:`z`, standard deviations (of one loss for a
      spike, of the smoothed loss for a rise) a loss must exceed.
    multiplier: a number or a schedule multiplying the step (e.g. a warmup
      or a cooldown shape); the estimate is of the step before it.
    axis_name: inside ``shard_map`` with parameters sharded over this axis,
      the norms are reduced over it (see
      :func:`nagd_optax.criteria.tree_inner_product`).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`AutoStepState`. ``update`` reads ``value=`` when given, and
    ``params`` for the trust region (without them there is none); it
    passes every extra argument to ``inner``.

  Example:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import nagd_optax as nagd
    >>> def loss(x):
    ...   return jnp.sum(jnp.array([1.0, 10.0]) * (x - 1.0) ** 2)
    >>> optimizer = nagd.scale_by_auto_step(
    ...     nagd.restart(nagd.nesterov_trace(0.9), "on_demand"))
    >>> x = jnp.zeros(2)
    >>> state = optimizer.init(x)
    >>> for _ in range(200):
    ...   value, grads = jax.value_and_grad(loss)(x)
    ...   updates, state = optimizer.update(grads, state, x, value=value)
    ...   x = optax.apply_updates(x, updates)
    >>> print(x.round(4))
    [1. 1.]

  References:
    Malitsky & Mishchenko, `Adaptive Gradient Descent without Descent
    <https://arxiv.org/abs/1910.09529>`_, ICML 2020.
  """
  _validation.check_at_least(initial_step, "initial_step", 0.0)
  if _validation.concrete_number(initial_step) == 0.0:
    raise ValueError("initial_step must be > 0, got 0.")
  _validation.check_at_least(curvature_factor, "curvature_factor", 0.0)
  if _validation.concrete_number(trust_ratio) != float("inf"):
    _validation.check_at_least(trust_ratio, "trust_ratio", 0.0)
  _validation.check_at_least(slow_growth, "slow_growth", 1.0)
  _validation.check_in_interval(cut, "cut", 0.0, 1.0)
  _validation.check_in_interval(
      loss_smoothing, "loss_smoothing", 0.0, 1.0, include_low=True
  )
  _validation.check_at_least(spike_ratio, "spike_ratio", 1.0)
  _validation.check_at_least(noise_tolerance, "noise_tolerance", 0.0)
  _validation.check_at_least(multiplier, "multiplier", 0.0, schedule_ok=True)
  inner = optax.with_extra_args_support(inner)
  dtype = _loss_trend.widest_float

  def init_fn(params):
    inner_state = inner.init(params)
    trend = _loss_trend.init_trend()
    scalar = lambda value: jnp.asarray(value, dtype())
    return AutoStepState(
        inner_state=inner_state,
        previous_gradients=optax.tree.zeros_like(params),
        step_size=scalar(0.0),
        curvature=scalar(0.0),
        growth=scalar(jnp.inf),
        previous_step_norm_squared=scalar(0.0),
        initial_param_norm=scalar(0.0),
        loss_trend=trend,
        log_loss_trend=_loss_trend.init_trend(),
        lowest_loss=jnp.full_like(trend.mean, jnp.inf),
        restart_pending=jnp.zeros([], jnp.bool_),
        ramping=jnp.ones([], jnp.bool_),
        count=jnp.zeros([], jnp.int32),
        cuts=jnp.zeros([], jnp.int32),
        spikes=jnp.zeros([], jnp.int32),
    )

  def norm_squared(tree):
    return _protocol.tree_inner_product(tree, tree, axis_name).astype(dtype())

  def update_fn(updates, state, params=None, *, value=None, **extra_args):
    first = state.count == 0
    guarded = value is not None
    if guarded:
      loss = _loss_trend.scalar_loss(value, "scale_by_auto_step").astype(
          dtype()
      )
      spike = _spike(state, loss) & ~first
    else:
      spike = jnp.zeros([], jnp.bool_)
    restart = state.restart_pending | spike
    if "restart" in extra_args:
      restart = restart | jnp.asarray(extra_args.pop("restart"), jnp.bool_)
    if guarded:
      extra_args["value"] = value
    direction, inner_state = inner.update(
        updates, state.inner_state, params, restart=restart, **extra_args
    )

    # Malitsky & Mishchenko's estimate along the last step.
    gradient_change = norm_squared(
        jax.tree.map(lambda g, h: g - h.astype(g.dtype), updates,
                     state.previous_gradients)
    )
    curvature = jnp.where(
        state.previous_step_norm_squared > 0,
        jnp.sqrt(gradient_change / _positive(state.previous_step_norm_squared)),
        0.0,
    )
    direction_norm = jnp.sqrt(norm_squared(direction))
    growth_factor = jnp.where(
        state.ramping, jnp.sqrt(1.0 + state.growth), slow_growth
    )
    step = jnp.minimum(
        growth_factor * state.step_size,
        jnp.where(curvature > 0, curvature_factor / _positive(curvature),
                  jnp.inf),
    )
    param_norm = (
        jnp.zeros([], dtype()) if params is None
        else jnp.sqrt(norm_squared(params))
    )
    initial_param_norm = jnp.where(first, param_norm, state.initial_param_norm)
    first_step = (
        initial_step * jnp.maximum(1.0, param_norm) / _positive(direction_norm)
    )
    step = jnp.where(first, first_step, step)

    # Loss guards: a spike or a rise of the smoothed loss cuts the step.
    if guarded:
      loss_trend = _loss_trend.update_trend(state.loss_trend, loss,
                                            loss_smoothing)
      log_loss_trend = _loss_trend.update_trend(
          state.log_loss_trend,
          jnp.where(loss > 0, jnp.log(jnp.where(loss > 0, loss, 1.0)), jnp.nan),
          loss_smoothing,
      )
      settled = _loss_trend.settled(loss_trend, loss_smoothing)
      rose = settled & (
          loss_trend.mean > state.lowest_loss + noise_tolerance
          * _loss_trend.standard_error(loss_trend, loss_smoothing)
      )
      cut_now = (spike | rose) & ~first
      step = jnp.where(cut_now, cut * jnp.minimum(step, state.step_size), step)
      lowest_loss = jnp.where(
          cut_now | ~settled,
          loss_trend.mean,
          jnp.minimum(state.lowest_loss, loss_trend.mean),
      )
    else:
      loss_trend, log_loss_trend = state.loss_trend, state.log_loss_trend
      rose = cut_now = jnp.zeros([], jnp.bool_)
      lowest_loss = state.lowest_loss

    trust = jnp.where(
        initial_param_norm > 0,
        trust_ratio * jnp.maximum(param_norm, initial_param_norm)
        / _positive(direction_norm),
        jnp.inf,
    )
    step = jnp.clip(jnp.minimum(step, trust), 1e-30, 1e30)
    applied = step * (multiplier(state.count) if callable(multiplier)
                      else multiplier)
    new_updates = jax.tree.map(
        lambda d: None if d is None else (-applied).astype(d.dtype) * d,
        direction,
        is_leaf=lambda d: d is None,
    )
    return new_updates, AutoStepState(
        inner_state=inner_state,
        previous_gradients=optax.tree.cast_like(updates,
                                                state.previous_gradients),
        step_size=step,
        curvature=curvature,
        growth=jnp.where(first, jnp.inf, step / _positive(state.step_size)),
        previous_step_norm_squared=(applied * direction_norm) ** 2,
        initial_param_norm=initial_param_norm,
        loss_trend=loss_trend,
        log_loss_trend=log_loss_trend,
        lowest_loss=lowest_loss,
        restart_pending=rose,
        ramping=state.ramping & ~cut_now,
        count=optax.safe_increment(state.count),
        cuts=state.cuts + cut_now.astype(jnp.int32),
        spikes=state.spikes + (spike & cut_now).astype(jnp.int32),
    )

  def _spike(state, loss):
    """A loss far above its running level, judged before it joins it."""
    trend, log_trend = state.loss_trend, state.log_loss_trend
    level = trend.mean
    noise = _loss_trend.loss_noise(trend, loss_smoothing)
    # Linear test: sign-safe (a negative loss has no ratio), for the ramp.
    linear = loss > level + jnp.maximum(
        (spike_ratio - 1.0) * jnp.abs(level), noise_tolerance * noise
    )
    # Log test, once the step has been cut and while every loss is positive:
    # late minibatch losses are small and heavy-tailed, and their spikes are
    # ratios, not differences.
    log_noise = _loss_trend.loss_noise(log_trend, loss_smoothing)
    every_loss_positive = log_trend.count == trend.count
    logarithmic = jnp.log(jnp.maximum(loss, 1e-300)) > log_trend.mean + (
        jnp.maximum(jnp.log(spike_ratio), noise_tolerance * log_noise)
    )
    use_log = ~state.ramping & every_loss_positive & (loss > 0)
    spiked = jnp.where(use_log, logarithmic, linear)
    return ~jnp.isfinite(loss) | ((trend.count >= _MIN_LOSSES) & spiked)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _positive(x: jax.Array) -> jax.Array:
  """``x`` where it is positive, else 1: a safe denominator under a where."""
  return jnp.where(x > 0, x, 1.0)


class AutoStep(NamedTuple):
  """The settings of an automatic step, for ``nagd.nagd(learning_rate=...)``.

  ``nagd.nagd("auto")`` is ``nagd.nagd(nagd.auto_step())``; pass this to
  change a setting, e.g. ``nagd.nagd(nagd.auto_step(multiplier=schedule))``.
  The fields are the keyword arguments of :func:`scale_by_auto_step`.

  Example:
    >>> import optax
    >>> import nagd_optax as nagd
    >>> cooldown = optax.linear_schedule(1.0, 0.0, 1000, transition_begin=800)
    >>> optimizer = nagd.nagd(nagd.auto_step(multiplier=cooldown))
  """

  initial_step: float = 1e-6
  curvature_factor: float = 1.0
  trust_ratio: float = 0.02
  slow_growth: float = 1.01
  cut: float = 0.5
  loss_smoothing: float = 0.9
  spike_ratio: float = 2.0
  noise_tolerance: float = 3.0
  multiplier: optax.ScalarOrSchedule = 1.0


def auto_step(
    *,
    initial_step: float = 1e-6,
    curvature_factor: float = 1.0,
    trust_ratio: float = 0.02,
    slow_growth: float = 1.01,
    cut: float = 0.5,
    loss_smoothing: float = 0.9,
    spike_ratio: float = 2.0,
    noise_tolerance: float = 3.0,
    multiplier: optax.ScalarOrSchedule = 1.0,
) -> AutoStep:
  """Settings of an automatic step for ``nagd.nagd(learning_rate=...)``.

  See :func:`scale_by_auto_step` for what each setting does.

  Returns:
    An :class:`AutoStep`.

  Example:
    >>> import nagd_optax as nagd
    >>> optimizer = nagd.nagd(nagd.auto_step(trust_ratio=0.05), 0.9)
  """
  return AutoStep(
      initial_step=initial_step,
      curvature_factor=curvature_factor,
      trust_ratio=trust_ratio,
      slow_growth=slow_growth,
      cut=cut,
      loss_smoothing=loss_smoothing,
      spike_ratio=spike_ratio,
      noise_tolerance=noise_tolerance,
      multiplier=multiplier,
  )

