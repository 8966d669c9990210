"""Adaptive restart: reset a transformation's state when a criterion fires."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nagd_optax import _loss_trend
from nagd_optax import _validation

Criterion = Literal["loss", "gradient", "speed", "interval", "on_demand"]
CRITERIA: tuple[str, ...] = ("loss", "gradient", "speed", "interval",
                             "on_demand")

# Su, Boyd & Candès' k_min: the speed test needs a few steps of momentum
# build-up before a shorter step means anything.
SPEED_MIN_INTERVAL = 10


class RestartState(NamedTuple):
  """State of :func:`restart`.

  Attributes:
    inner_state: the wrapped transformation's state.
    restarts: restarts applied so far, int32 (read it with
      ``optax.tree.get(state, "restarts")``).
    steps_since_restart: updates since ``init`` or the last restart, int32.
    restart_next: whether the criterion fired on the last update, so that the
      next one starts from a fresh inner state.
    memory: what the criterion keeps between steps (scalars only): the loss
      statistics for ``"loss"``, the last step's squared length for
      ``"speed"``, nothing for the others.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import nagd_optax as nagd
    >>> optimizer = nagd.nagd(0.1, restart="loss")
    >>> params = jnp.ones(2)
    >>> state = optimizer.init(params)
    >>> for loss in [3.0, 2.0, 2.5]:  # the last one rose: restart
    ...   _, state = optimizer.update(params, state, params, value=loss)
    >>> int(optax.tree.get(state, "restarts"))
    1
  """

  inner_state: optax.OptState
  restarts: jax.Array
  steps_since_restart: jax.Array
  restart_next: jax.Array
  memory: Any


class LossMemory(NamedTuple):
  """What the ``"loss"`` criterion remembers.

  Attributes:
    trend: running statistics of the loss (see ``loss_smoothing``).
    lowest: the lowest smoothed loss since the criterion last fired; a rise
      is measured from it.
  """

  trend: _loss_trend.LossTrend
  lowest: jax.Array


class SpeedMemory(NamedTuple):
  """What the ``"speed"`` criterion remembers: the last step's squared norm."""

  previous_step_norm_squared: jax.Array


def _accumulation_dtype(x: jax.Array) -> jnp.dtype:
  # Reductions over bf16/f16 leaves accumulate in float32 (free inside the
  # fused reduction); float64 stays float64.
  return jnp.promote_types(x.dtype, jnp.float32)


def _tree_inner_product(a, b, axis_name) -> jax.Array:
  """Re sum_i <a_i, b_i> over all leaves, psum-ed over ``axis_name``.

  Leaves that are None in ``a`` or masked out (``optax.MaskedNode``) in ``b``
  are skipped; complex leaves contribute Re(conj(a) b).
  """

  def leaf_product(x, y):
    if x is None or isinstance(y, optax.MaskedNode):
      return None
    dtype = _accumulation_dtype(x)
    return jnp.sum(jnp.real(jnp.conj(x.astype(dtype)) * y.astype(dtype)))

  products = jax.tree.leaves(
      jax.tree.map(leaf_product, a, b, is_leaf=lambda x: x is None)
  )
  total = sum(products, jnp.zeros([], jnp.float32))
  return total if axis_name is None else jax.lax.psum(total, axis_name)


def restart(
    inner: optax.GradientTransformation,
    criterion: Criterion = "loss",
    *,
    loss_smoothing: float = 0.0,
    noise_tolerance: float = 3.0,
    min_interval: int | None = None,
    axis_name: str | None = None,
    momentum_field: str = "trace",
) -> optax.GradientTransformationExtraArgs:
  r"""Restarts ``inner`` (a fresh ``init`` state) when ``criterion`` fires.

  Accelerated methods overshoot once their momentum exceeds what the local
  curvature supports, and the loss then ripples. Restarting the momentum at
  the first sign of it recovers the optimal linear rate on strongly convex
  problems without knowing the strong-convexity constant (O'Donoghue &
  Candès). With :func:`nagd_optax.nesterov_trace` and
  :func:`nagd_optax.schedules.nesterov_momentum` inside, the schedule starts
  again from :math:`k = 0` at each restart: that is their algorithm.

  Every criterion looks at the update just computed (parameters :math:`y_k`,
  gradient :math:`g_k`, inner output :math:`u_k`, inner momentum buffer
  :math:`m_k`) and, when it fires, the *next* update starts from a fresh
  inner state. Deciding one step ahead is what keeps the cost to scalars: the
  test is reduced in the same fused pass as the update, and the reset is a
  scalar ``jnp.where`` per leaf. The criteria:

  - ``"loss"`` (function scheme): the loss rose,
    :math:`f(y_k) > f(y_{k-1})`, compared in the loss's own precision. More
    exactly, the reference is the lowest loss since the last restart, which
    is :math:`f(y_{k-1})` unless ``min_interval`` held an earlier rise back
    (then the loss must come back below where the run was, not merely fall).
    A NaN or infinite loss never fires and is never stored. With
    ``loss_smoothing`` :math:`s > 0` (for minibatch losses), the test becomes
    :math:`\bar f_k > \min_{j} \bar f_j + z\,\hat\sigma_k`: the exponential
    moving average of the loss rose above its lowest value since the last
    restart by more than ``noise_tolerance`` :math:`z` of its own standard
    errors, estimated from the losses. (Consecutive smoothed values alone do
    not help: their difference has the sign of the raw noise.) The first
    :math:`1/(1 - s)` losses only set the reference.
    ``loss_smoothing=0.98`` keeps restarts on noisy minibatch losses rare.
  - ``"gradient"``: the momentum points uphill,
    :math:`\langle g_k, m_k \rangle < 0`, i.e.
    :math:`\nabla f(y_k)^\top (x_{k+1} - x_k) > 0` in the two-sequence form.
    The momentum buffer is the inner state's field ``momentum_field``; it
    must accumulate the gradients themselves (as ``nesterov_trace``,
    ``optax.trace`` and Adam's ``mu`` do), so keep negative scalings such
    as the learning rate after the momentum. No extra buffer: the inner
    product is taken on the step just computed.
  - ``"speed"`` (Su, Boyd & Candès): the step got shorter,
    :math:`\|u_k\| < \|u_{k-1}\|`, after at least ``min_interval`` (default
    10) steps since the last restart.
  - ``"interval"``: every ``min_interval`` steps (a fixed restart period).
  - ``"on_demand"``: only when asked (below).

  With any criterion, ``update(..., restart=True)`` restarts at once: the
  inner state is reset before this update (e.g. when fine-tuning switches to
  new data). ``restart`` may be a traced bool.

  Args:
    inner: the transformation whose state is restarted, e.g.
      :func:`nagd_optax.nesterov_trace`. Keep learning-rate schedules outside
      it unless they should restart too. A restart calls ``inner.init`` on
      ``params`` (on the updates when ``params`` is not passed).
    criterion: one of ``"loss"``, ``"gradient"``, ``"speed"``, ``"interval"``,
      ``"on_demand"``.
    loss_smoothing: EMA factor :math:`s \in [0, 1)` for ``"loss"``. 0 is the
      paper's exact test for full-batch problems; about 0.98 suits minibatch
      losses.
    noise_tolerance: for ``"loss"`` with ``loss_smoothing > 0``, how many
      standard errors of the smoothed loss a rise must exceed.
    min_interval: no criterion fires within this many updates of the last
      restart. ``None`` means 10 for ``"speed"`` and 0 otherwise; ``"interval"``
      needs it (it is the period).
    axis_name: inside ``jax.shard_map``/``pmap`` with parameters sharded over
      this axis, the inner products and norms are ``psum``-ed over it, so
      every device takes the same decision. The loss passed as ``value=``
      must already be the same on every device (``pmean``/``psum`` it).
    momentum_field: the field of ``inner``'s state that holds the momentum
      buffer, for ``"gradient"``: ``"trace"`` for
      :func:`nagd_optax.nesterov_trace` and ``optax.trace``, ``"mu"`` for
      ``optax.adam``.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`RestartState`. ``update`` takes ``value=`` (the loss, needed by
    ``"loss"``) and ``restart=``, and passes all extra arguments to ``inner``.

  Example:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import nagd_optax as nagd
    >>> curvatures = jnp.logspace(0, -2, 50)   # condition number 100
    >>> def loss(x):
    ...   return 0.5 * jnp.sum(curvatures * x**2)
    >>> def minimise(criterion, steps=150):
    ...   optimizer = optax.chain(
    ...       nagd.restart(
    ...           nagd.nesterov_trace(nagd.schedules.nesterov_momentum()),
    ...           criterion=criterion,
    ...       ),
    ...       optax.scale_by_learning_rate(1.0),  # step 1/L
    ...   )
    ...   x = jnp.ones(50)
    ...   state = optimizer.init(x)
    ...   for _ in range(steps):
    ...     value, grads = jax.value_and_grad(loss)(x)
    ...     updates, state = optimizer.update(grads, state, x, value=value)
    ...     x = optax.apply_updates(x, updates)
    ...   return loss(x) / loss(jnp.ones(50)), optax.tree.get(state, "restarts")
    >>> never, _ = minimise("on_demand")   # Nesterov's method, no restart
    >>> restarted, restarts = minimise("gradient")
    >>> print(f"{float(never):.0e} vs {float(restarted):.0e}, {int(restarts)} restarts")
    4e-07 vs 6e-12, 3 restarts

  References:
    O'Donoghue & Candès, `Adaptive Restart for Accelerated Gradient Schemes
    <https://arxiv.org/abs/1204.3982>`_, Foundations of Computational
    Mathematics, 2015.

    Su, Boyd & Candès, `A Differential Equation for Modeling Nesterov's
    Accelerated Gradient Method <https://arxiv.org/abs/1503.01243>`_, JMLR
    2016 (speed restart).
  """
  if criterion not in CRITERIA:
    raise ValueError(
        f"criterion must be one of {', '.join(map(repr, CRITERIA))}; got"
        f" {criterion!r}."
    )
  _validation.check_in_interval(
      loss_smoothing, "loss_smoothing", 0.0, 1.0, include_low=True
  )
  if criterion != "loss" and _validation.concrete_number(loss_smoothing):
    raise ValueError(
        f"loss_smoothing applies to criterion='loss' only; criterion"
        f" {criterion!r} does not read the loss."
    )
  _validation.check_at_least(noise_tolerance, "noise_tolerance", 0.0)
  if min_interval is None:
    if criterion == "interval":
      raise ValueError(
          "criterion='interval' restarts every min_interval steps: pass"
          " min_interval (an integer >= 1)."
      )
    min_interval = SPEED_MIN_INTERVAL if criterion == "speed" else 0
  _validation.check_integer_at_least(
      min_interval, "min_interval", 1 if criterion == "interval" else 0
  )
  inner = optax.with_extra_args_support(inner)

  def init_memory():
    if criterion == "loss":
      trend = _loss_trend.init_trend()
      return LossMemory(trend=trend, lowest=jnp.full_like(trend.mean, jnp.inf))
    if criterion == "speed":
      return SpeedMemory(jnp.zeros([], _loss_trend.widest_float()))
    return optax.EmptyState()

  def init_fn(params):
    if criterion == "gradient":
      momentum_buffers(inner.init(params))  # fail early, at init
    return RestartState(
        inner_state=inner.init(params),
        restarts=jnp.zeros([], jnp.int32),
        steps_since_restart=jnp.zeros([], jnp.int32),
        restart_next=jnp.zeros([], jnp.bool_),
        memory=init_memory(),
    )

  def momentum_buffers(inner_state):
    """Every momentum buffer in the inner state (one per partition)."""
    buffers = [
        buffer
        for _, buffer in optax.tree.get_all_with_path(inner_state,
                                                      momentum_field)
    ]
    if not buffers:
      raise ValueError(
          f"criterion='gradient' reads the momentum buffer from the field"
          f" {momentum_field!r} of the inner state, which has none; pass"
          " momentum_field= (e.g. 'mu' for optax.adam) or use another"
          " criterion."
      )
    return buffers

  def loss_rose(memory, allowed, value):
    """The function scheme, on the loss at the parameters being updated."""
    trend = _loss_trend.update_trend(memory.trend, value, loss_smoothing)
    margin = jnp.where(
        loss_smoothing > 0,
        noise_tolerance * _loss_trend.standard_error(trend, loss_smoothing),
        0.0,
    )
    finite = jnp.isfinite(value)
    settled = _loss_trend.settled(trend, loss_smoothing)
    rose = allowed & finite & settled & (trend.mean > memory.lowest + margin)
    # After a restart, rises are measured from the level it started at; until
    # the average settles, the reference simply follows it.
    lowest = jnp.where(
        finite & (rose | ~settled),
        trend.mean,
        jnp.where(finite, jnp.minimum(memory.lowest, trend.mean), memory.lowest),
    )
    return rose, LossMemory(trend=trend, lowest=lowest)

  def step_test(memory, allowed, gradients, updates, inner_state):
    """The tests on the step just computed; they act on the next update."""
    if criterion == "gradient":
      # With optax.partition, each part holds a buffer (masked elsewhere).
      uphill = sum(
          _tree_inner_product(gradients, buffer, axis_name)
          for buffer in momentum_buffers(inner_state)
      )
      return allowed & (uphill < 0), memory
    if criterion == "speed":
      norm_squared = _tree_inner_product(updates, updates, axis_name)
      previous = memory.previous_step_norm_squared
      return allowed & (norm_squared < previous), SpeedMemory(
          norm_squared.astype(previous.dtype)
      )
    return allowed & (criterion == "interval"), memory

  def update_fn(updates, state, params=None, *, restart=False, **extra_args):
    memory = state.memory
    reset = state.restart_next | jnp.asarray(restart, jnp.bool_)
    if criterion == "loss":
      # The loss at these parameters is known before the update, so a rise
      # restarts this very update: no extrapolation from a worse point.
      rose, memory = loss_rose(
          memory,
          state.steps_since_restart >= min_interval,
          _loss_trend.scalar_loss(
              extra_args.get("value"), "restart(criterion='loss')"
          ),
      )
      reset = reset | rose
    # A fresh state is a constant (zeros, count 0): selecting it is fused
    # into the inner update, with no extra pass over the parameters.
    inner_state = jax.tree.map(
        lambda new, old: jnp.where(reset, new, old).astype(old.dtype),
        inner.init(_init_template(params, updates)),
        state.inner_state,
    )
    new_updates, inner_state = inner.update(
        updates, inner_state, params, **extra_args
    )
    steps = optax.safe_increment(
        jnp.where(reset, 0, state.steps_since_restart)
    )
    restart_next, memory = step_test(
        memory, steps >= min_interval, updates, new_updates, inner_state
    )
    return new_updates, RestartState(
        inner_state=inner_state,
        restarts=jnp.where(
            reset, optax.safe_increment(state.restarts), state.restarts
        ),
        steps_since_restart=steps,
        restart_next=restart_next,
        memory=memory,
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _init_template(params, updates):
  """What the inner ``init`` is called on to build a fresh state.

  The parameters when given; otherwise the updates, which have their shapes
  (dtypes are restored from the old state by the caller). A None update has
  no shape, so then the parameters are needed.
  """
  if params is not None:
    return params
  if any(u is None for u in jax.tree.leaves(updates, is_leaf=lambda u: u is None)):
    raise ValueError(
        "restart needs params in update(updates, state, params) when some"
        " updates are None: the fresh inner state is built from them."
    )
  return updates
