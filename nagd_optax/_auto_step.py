"""An automatic step size for the Nesterov trace: no learning rate to tune."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nagd_optax import _loss_trend
from nagd_optax import _restart
from nagd_optax import _validation
from nagd_optax.criteria import _protocol

# Losses needed before the spike test trusts the loss statistics.
_MIN_LOSSES = 5


class AutoStepState(NamedTuple):
  r"""State of :func:`scale_by_auto_step`.

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
    base_loss: with ``full_batch``: :math:`f(y_b)`, the loss at the base
      point :math:`y_b` (the last accepted one).
    step_coefficients: with ``full_batch``: :math:`(a, b)` such that the
      last step from the base point is
      :math:`y_k - y_b = a\,g_b + b\,m_b`, with :math:`g_b` the stored
      gradient and :math:`m_b` the inner momentum buffer.
    base_slope: with ``full_batch``: :math:`\langle g_b, y_k - y_b\rangle`.
    rejections: with ``full_batch``: how many updates went back because the
      loss rose, int32.

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
  base_loss: jax.Array
  step_coefficients: jax.Array
  base_slope: jax.Array
  rejections: jax.Array


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
    full_batch: bool = False,
    multiplier: optax.ScalarOrSchedule = 1.0,
    axis_name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Scales the direction of ``inner`` by a step size it estimates itself.

  ``inner`` turns the gradient :math:`g_k` into a direction :math:`d_k` (a
  Nesterov trace, restarted or not); the update is
  :math:`u_k = -\lambda_k d_k`, with a step :math:`\lambda_k` set from the
  local curvature along the last step. Two modes share that scheme.

  **Minibatches** (the default): the step is bounded by a trust region
  relative to the parameters and cut by loss guards:

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

  **Full batch** (``full_batch=True``: ``value=`` and the gradients are
  exact): a loss that rises is rejected, and the step is measured from the
  last accepted *base point* :math:`y_b`. With :math:`D_k = y_k - y_b` and
  :math:`\delta_k = g_k - g_b`:

  .. math::

    \text{accept } (f_k \le f_b):\quad
    L_k = \frac{\|\delta_k\|^2}{\langle \delta_k, D_k \rangle}, \qquad
    \lambda_k = \begin{cases} c / L_k & L_k > 0 \\
    2 \lambda_{k-1} & \text{otherwise,} \end{cases} \\
    \text{reject } (f_k > f_b \text{ or not finite}):\quad
    y_{k+1} = y_b + t D_k, \quad
    t = \mathrm{clip}\left(\frac{-\langle g_b, D_k \rangle}
    {2 (f_k - f_b - \langle g_b, D_k \rangle)}, 0.1, 0.5\right),

  the Barzilai–Borwein curvature along the last step (BB2; an
  underestimate of the largest curvature, so a long step), with no cap on
  its growth, and a backtrack to the minimiser of the quadratic through
  :math:`f_b`, :math:`\langle g_b, D_k \rangle` and :math:`f_k` (0.1 for a
  non-finite loss). A rejected update leaves ``inner``'s state (the
  momentum) and the base point as they were, and scales :math:`D` and
  :math:`\lambda` by :math:`t`. If :math:`D_k` does not descend from the
  base point (:math:`\langle g_b, D_k \rangle \ge 0`, which momentum can
  cause), it goes instead to the gradient step
  :math:`y_b - \lambda' g_b`, :math:`\lambda' = \lambda_{k-1}/2`
  (:math:`/10` for a non-finite loss), and the momentum restarts at the
  next accepted update (as does one asked for with ``restart=True`` on a
  rejected update). The trust region and the loss guards are
  off. The one stored gradient is :math:`g_b`, and :math:`D_k` is rebuilt
  from it and the momentum buffer :math:`m_b` of ``inner`` (its field
  ``trace``, as :func:`nagd_optax.nesterov_trace` has), whose direction is
  :math:`d_b = g_b + \mu_b m_b`: :math:`\mu_b` is measured as
  :math:`\langle d_b - g_b, m_b \rangle / \|m_b\|^2`, so no second buffer
  is kept. Use it with Nesterov's momentum schedule and the gradient
  restart, e.g. ``nagd.nagd(nagd.auto_step(full_batch=True),
  nagd.schedules.nesterov_momentum(), restart="gradient")``.

  Args:
    inner: the transformation whose direction is scaled, e.g.
      ``nagd.restart(nagd.nesterov_trace(0.9), "on_demand")``; it must keep
      the sign of the gradient (a descent direction), so no learning rate
      inside it.
    initial_step: :math:`\lambda_0` relative to the scale of the problem:
      the first update moves the parameters by
      ``initial_step * max(1, ||y_0||)`` (with ``full_batch``, the gradient
      part of it does: the momentum then adds :math:`\mu_0` times as much,
      none with ``nesterov_momentum()``). Only the first update uses it.
    curvature_factor: :math:`c > 0` in :math:`\lambda \le c / L_k`.
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
    full_batch: whether the loss and the gradients are exact (full-batch,
      deterministic): then rises are rejected as described above, and
      ``trust_ratio``, ``slow_growth``, ``cut``, ``loss_smoothing``,
      ``spike_ratio`` and ``noise_tolerance`` are unused. It needs
      ``value=`` at every update and a momentum buffer named ``trace`` in
      ``inner``.
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
    >>> @jax.jit
    ... def step(x, state):
    ...   value, grads = jax.value_and_grad(loss)(x)
    ...   updates, state = optimizer.update(grads, state, x, value=value)
    ...   return optax.apply_updates(x, updates), state
    >>> for _ in range(200):
    ...   x, state = step(x, state)
    >>> print(x.round(4))
    [1. 1.]

  References:
    Malitsky & Mishchenko, `Adaptive Gradient Descent without Descent
    <https://arxiv.org/abs/1910.09529>`_, ICML 2020.

    Barzilai & Borwein, `Two-Point Step Size Gradient Methods
    <https://doi.org/10.1093/imanum/8.1.141>`_, IMA Journal of Numerical
    Analysis 8, 1988.
  """
  _validation.check_at_least(initial_step, "initial_step", 0.0)
  if _validation.concrete_number(initial_step) == 0.0:
    raise ValueError("initial_step must be > 0, got 0.")
  _validation.check_at_least(curvature_factor, "curvature_factor", 0.0)
  if _validation.concrete_number(curvature_factor) == 0.0:
    raise ValueError("curvature_factor must be > 0, got 0.")
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
  if not isinstance(full_batch, bool):
    raise TypeError(f"full_batch must be a bool, got {full_batch!r}.")
  inner = optax.with_extra_args_support(inner)
  dtype = _loss_trend.widest_float

  def momentum_of(inner_state, params):
    """The momentum buffer of ``inner`` (zeros where ``inner`` masks a
    parameter out; a parameter masked out around this transformation, by an
    ``optax.masked`` outside it, stays a ``MaskedNode``)."""
    buffers = _restart._buffers_named("trace")(inner_state)
    if not buffers:
      raise ValueError(
          "scale_by_auto_step(full_batch=True) rebuilds the last step from"
          " the momentum buffer of inner, a field named 'trace' (as"
          " nagd.nesterov_trace has); the state of inner has none."
      )
    merged = _restart._one_buffer_per_parameter(buffers, params)
    return jax.tree.map(
        lambda m, p: jnp.zeros_like(p) if isinstance(m, optax.MaskedNode)
        and not isinstance(p, optax.MaskedNode) else m,
        merged, params, is_leaf=lambda m: isinstance(m, optax.MaskedNode),
    )

  def init_fn(params):
    inner_state = inner.init(params)
    if full_batch:
      momentum_of(inner_state, params)  # refuse an inner without one now
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
        base_loss=scalar(jnp.inf),
        step_coefficients=jnp.zeros([2], dtype()),
        base_slope=scalar(0.0),
        rejections=jnp.zeros([], jnp.int32),
    )

  def inner_product(a, b):
    return _protocol.tree_inner_product(a, b, axis_name).astype(dtype())

  def norm_squared(tree):
    return inner_product(tree, tree)

  def update_fn(updates, state, params=None, *, value=None, **extra_args):
    restart = state.restart_pending
    if "restart" in extra_args:
      restart = restart | jnp.asarray(extra_args.pop("restart"), jnp.bool_)
    if full_batch:
      return _full_batch_update(updates, state, params, value, restart,
                                extra_args)
    return _minibatch_update(updates, state, params, value, restart,
                             extra_args)

  def _multiplied(state, step):
    return step * (multiplier(state.count) if callable(multiplier)
                   else multiplier)

  def _minibatch_update(updates, state, params, value, restart, extra_args):
    first = state.count == 0
    guarded = value is not None
    if guarded:
      loss = _loss_trend.scalar_loss(value, "scale_by_auto_step").astype(
          dtype()
      )
      spike = _spike(state, loss) & ~first
      extra_args["value"] = value
    else:
      spike = jnp.zeros([], jnp.bool_)
    direction, inner_state = inner.update(
        updates, state.inner_state, params, restart=restart | spike,
        **extra_args
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
    applied = _multiplied(state, step)
    new_updates = jax.tree.map(
        lambda d: None if d is None else (-applied).astype(d.dtype) * d,
        direction,
        is_leaf=lambda d: d is None,
    )
    return new_updates, state._replace(
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

  def _full_batch_update(updates, state, params, value, restart, extra_args):
    first = state.count == 0
    loss = _loss_trend.scalar_loss(
        value, "scale_by_auto_step(full_batch=True)").astype(dtype())
    template = params if params is not None else updates
    base_gradients = state.previous_gradients
    base_momentum = momentum_of(state.inner_state, template)
    # The last step from the base point, D = a g_b + b m_b.
    a, b = state.step_coefficients[0], state.step_coefficients[1]
    combine = lambda a, b: jax.tree.map(
        lambda h, m: a.astype(h.dtype) * h + b.astype(h.dtype) * m.astype(
            h.dtype), base_gradients, base_momentum)
    gradient_change = jax.tree.map(lambda g, h: g - h.astype(g.dtype),
                                   updates, base_gradients)
    gradient_change_squared = norm_squared(gradient_change)
    secant = inner_product(gradient_change, combine(a, b))
    finite = jnp.isfinite(loss) & jnp.isfinite(gradient_change_squared)
    rejected = ~first & ~(finite & (loss <= state.base_loss))

    # Accepted: the BB2 step along the last step, uncapped.
    curvature = jnp.where(
        secant > 0, gradient_change_squared / _positive(secant), 0.0
    )
    step = jnp.where(curvature > 0, curvature_factor / _positive(curvature),
                     2.0 * state.step_size)
    # At the first update g_b = 0, so ||g_0||^2 is the gradient change.
    # ||y_0|| serves the first step only: a cond keeps its pass over the
    # parameters out of every later update.
    param_norm = (
        jnp.zeros([], dtype()) if params is None
        else jax.lax.cond(first, lambda: jnp.sqrt(norm_squared(params)),
                          lambda: jnp.zeros([], dtype()))
    )
    first_step = initial_step * jnp.maximum(1.0, param_norm) / _positive(
        jnp.sqrt(gradient_change_squared))
    step = jnp.clip(jnp.where(first, first_step, step), 1e-30, 1e30)
    applied = _multiplied(state, step)
    # The step scales the gradient before the momentum: with a step that
    # changes by orders of magnitude between updates, the momentum carries
    # past steps (the two-sequence form), not past gradients.
    scaled = jax.tree.map(lambda g: applied.astype(g.dtype) * g, updates)
    direction, inner_state = inner.update(
        scaled, state.inner_state, params, restart=restart, value=value,
        **extra_args
    )
    # The inner direction is d = s + mu m (s the scaled gradient, m the
    # buffer): mu, so that the next update can rebuild this step.
    momentum = momentum_of(inner_state, template)
    momentum_squared = norm_squared(momentum)
    extrapolation = jnp.where(
        momentum_squared > 0,
        inner_product(
            jax.tree.map(lambda d, s: d - s, direction, scaled), momentum
        ) / _positive(momentum_squared),
        0.0,
    )

    # Rejected: back along D to the minimiser of the quadratic through f_b,
    # <g_b, D> and f_k; if D does not descend from y_b, a gradient step from
    # y_b instead, with the momentum restarted.
    excess = loss - state.base_loss - state.base_slope
    backtrack = jnp.where(
        excess > 0, -state.base_slope / (2.0 * _positive(excess)), 0.5
    )
    backtrack = jnp.where(finite, jnp.clip(backtrack, 0.1, 0.5), 0.1)
    descends = state.base_slope < 0
    fallback_step = jnp.where(finite, 0.5, 0.1) * state.step_size
    base_gradient_squared = norm_squared(base_gradients)
    rejected_coefficients = jnp.where(
        descends, backtrack * state.step_coefficients,
        jnp.stack([-fallback_step, jnp.zeros_like(fallback_step)]),
    )
    # From y_k = y_b + D, the new point y_b + D' is D' - D away.
    shift = rejected_coefficients - state.step_coefficients
    back = combine(shift[0], shift[1])

    new_updates = jax.tree.map(
        lambda d, r: jnp.where(rejected, r.astype(d.dtype), -d),
        direction, back,
    )
    keep = lambda old, new: jnp.where(rejected, old, new)
    return new_updates, state._replace(
        inner_state=_restart._select(rejected, state.inner_state,
                                     inner_state),
        previous_gradients=jax.tree.map(
            lambda h, g: jnp.where(rejected, h, g.astype(h.dtype)),
            base_gradients, updates,
        ),
        step_size=keep(
            jnp.where(descends, backtrack * state.step_size, fallback_step),
            step),
        curvature=keep(state.curvature, curvature),
        growth=keep(jnp.where(descends, backtrack, 0.5),
                    jnp.where(first, jnp.inf,
                              step / _positive(state.step_size))),
        previous_step_norm_squared=keep(
            jnp.where(descends,
                      backtrack**2 * state.previous_step_norm_squared,
                      fallback_step**2 * base_gradient_squared),
            norm_squared(direction),
        ),
        # A restart asked for (or owed to a non-descending step) waits for
        # the next accepted update: a rejected one discards inner's update.
        restart_pending=rejected & (restart | ~descends),
        count=optax.safe_increment(state.count),
        base_loss=keep(state.base_loss, loss),
        step_coefficients=keep(rejected_coefficients,
                               jnp.stack([-applied, -extrapolation])),
        base_slope=keep(
            jnp.where(descends, backtrack * state.base_slope,
                      -fallback_step * base_gradient_squared),
            -inner_product(updates, direction)),
        rejections=state.rejections + rejected.astype(jnp.int32),
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
  full_batch: bool = False
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
    full_batch: bool = False,
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
      full_batch=full_batch,
      multiplier=multiplier,
  )

