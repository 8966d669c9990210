"""Loss-driven learning-rate control: lower the step when the loss stalls."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nagd_optax import _loss_trend
from nagd_optax import _validation


class ScaleOnPlateauState(NamedTuple):
  """State of :func:`scale_on_plateau`.

  Attributes:
    scale: the factor the updates are multiplied by (read it with
      ``optax.tree.get(state, "scale")``).
    best: the best (lowest) smoothed loss that counted as an improvement.
    plateau_count: updates since the last improvement, int32.
    cooldown_count: updates left before the plateau count runs again.
    trend: running statistics of the loss.
    lowered: whether this update lowered the scale.
    inner_state: the wrapped transformation's state (``EmptyState`` when
      there is none).

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import nagd_optax as nagd
    >>> optimizer = nagd.scale_on_plateau(0.5, patience=2)
    >>> state = optimizer.init(jnp.zeros(1))
    >>> for loss in [1.0, 1.0, 1.0]:
    ...   _, state = optimizer.update(jnp.zeros(1), state, value=loss)
    >>> float(optax.tree.get(state, "scale"))
    0.5
  """

  scale: jax.Array
  best: jax.Array
  plateau_count: jax.Array
  cooldown_count: jax.Array
  trend: _loss_trend.LossTrend
  lowered: jax.Array
  inner_state: Any


def scale_on_plateau(
    factor: float = 0.5,
    *,
    patience: int = 10,
    cooldown: int = 0,
    loss_smoothing: float = 0.0,
    rtol: float = 1e-4,
    atol: float = 0.0,
    noise_tolerance: float = 2.0,
    min_scale: float = 0.0,
    inner: optax.GradientTransformation | None = None,
    restart_momentum: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""Scales updates down by ``factor`` when the loss stops improving.

  With :math:`\bar f_k` the loss passed as ``value=`` (its exponential moving
  average when ``loss_smoothing`` :math:`s > 0`) and :math:`b` the best
  smoothed loss that counted as an improvement, an update improves when

  .. math::

    \bar f_k < b - \left(r |b| + a + z \hat\sigma_k\right),

  with relative and absolute tolerances :math:`r` (``rtol``), :math:`a`
  (``atol``) and, when smoothing, :math:`z` (``noise_tolerance``) standard
  errors :math:`\hat\sigma_k` of the smoothed loss, estimated from the
  losses. After ``patience`` updates without improvement the scale is
  multiplied by ``factor`` (down to ``min_scale``), and the count waits
  ``cooldown`` updates before it runs again. The threshold is additive, so
  negative losses are handled (Optax's ``reduce_on_plateau`` tests
  ``value < best * (1 - rtol)``, which a flat negative loss never fails);
  the noise term tells a noisy but falling loss, which keeps beating
  :math:`b` by more than its noise, from a flat one, which does not. A NaN or
  infinite loss is ignored. The scale never changes while the loss keeps
  falling by more than :math:`r |b| + a` within ``patience`` updates,
  smoothed or not: :math:`\hat\sigma_k` measures the losses' scatter around
  their trend, so a steady fall does not count as noise.
  With smoothing, the first :math:`1/(1 - s)` losses (the average's time
  constant) only set :math:`b`: an average of a few noisy losses is no
  reference.

  Place it after the learning rate in a chain, or give it the optimizer as
  ``inner`` (its updates are then scaled). With ``restart_momentum=True`` the
  inner optimizer is also restarted when the scale is lowered: it is called
  with ``restart=True``, which a :func:`nagd_optax.restart` wrapper inside it
  (e.g. ``nagd(..., restart="on_demand")``) obeys.

  Args:
    factor: multiplies the scale on a plateau, in :math:`(0, 1)`.
    patience: updates without improvement before lowering, >= 1.
    cooldown: updates after lowering during which the plateau count is held
      at zero, >= 0.
    loss_smoothing: EMA factor :math:`s \in [0, 1)` of the loss; about 0.98
      for minibatch losses.
    rtol: relative improvement threshold, >= 0 (of :math:`|b|`).
    atol: absolute improvement threshold, >= 0.
    noise_tolerance: :math:`z \ge 0`, standard errors of the smoothed loss an
      improvement must exceed (only with ``loss_smoothing > 0``). Lower than
      for restarts: a missed improvement lowers the step for good, a
      spurious one only delays that by ``patience`` updates.
    min_scale: the scale is never lowered below this, in [0, 1).
    inner: an optional transformation whose updates are scaled.
    restart_momentum: restart ``inner`` whenever the scale is lowered; needs
      a restart wrapper inside ``inner``.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose ``update`` needs
    ``value=`` (the scalar loss), with state :class:`ScaleOnPlateauState`.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import nagd_optax as nagd
    >>> optimizer = nagd.scale_on_plateau(0.5, patience=3)
    >>> params = jnp.zeros(2)
    >>> state = optimizer.init(params)
    >>> for loss in [-1.0, -2.0, -2.0, -2.0, -2.0]:  # falls, then flat
    ...   updates, state = optimizer.update(params + 1, state, value=loss)
    >>> float(optax.tree.get(state, "scale")), updates.tolist()
    (0.5, [0.5, 0.5])

  References:
    Like PyTorch's ``ReduceLROnPlateau`` and Optax's ``reduce_on_plateau``,
    with a noise-aware, sign-safe improvement test.
  """
  _validation.check_in_interval(factor, "factor", 0.0, 1.0)
  _validation.check_integer_at_least(patience, "patience", 1)
  _validation.check_integer_at_least(cooldown, "cooldown", 0)
  _validation.check_in_interval(
      loss_smoothing, "loss_smoothing", 0.0, 1.0, include_low=True
  )
  _validation.check_at_least(rtol, "rtol", 0.0)
  _validation.check_at_least(atol, "atol", 0.0)
  _validation.check_at_least(noise_tolerance, "noise_tolerance", 0.0)
  _validation.check_in_interval(
      min_scale, "min_scale", 0.0, 1.0, include_low=True
  )
  if restart_momentum and inner is None:
    raise ValueError(
        "restart_momentum=True restarts the optimizer given as inner=; pass"
        " inner=nagd.nagd(..., restart='on_demand') (or another"
        " transformation with a nagd.restart wrapper)."
    )
  if inner is not None:
    inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    inner_state = optax.EmptyState() if inner is None else inner.init(params)
    if restart_momentum and optax.tree.get(inner_state, "restarts") is None:
      raise ValueError(
          "restart_momentum=True needs a nagd.restart wrapper inside inner"
          " (its state has no 'restarts' field); e.g. inner=nagd.nagd(...,"
          " restart='on_demand')."
      )
    trend = _loss_trend.init_trend()
    return ScaleOnPlateauState(
        scale=jnp.ones([], _loss_trend.widest_float()),
        best=jnp.full_like(trend.mean, jnp.inf),
        plateau_count=jnp.zeros([], jnp.int32),
        cooldown_count=jnp.zeros([], jnp.int32),
        trend=trend,
        lowered=jnp.zeros([], jnp.bool_),
        inner_state=inner_state,
    )

  def update_fn(updates, state, params=None, *, value=None, **extra_args):
    value = _loss_trend.scalar_loss(value, "scale_on_plateau")
    finite = jnp.isfinite(value)
    trend = _loss_trend.update_trend(state.trend, value, loss_smoothing)
    noise = jnp.where(
        loss_smoothing > 0,
        noise_tolerance * _loss_trend.standard_error(trend, loss_smoothing),
        0.0,
    )
    # inf - inf is NaN: the first finite loss always improves.
    threshold = jnp.where(
        jnp.isfinite(state.best), rtol * jnp.abs(state.best) + atol + noise, 0.0
    )
    # Until the average settles, its best value simply follows it.
    settled = _loss_trend.settled(trend, loss_smoothing)
    improved = finite & (~settled | (trend.mean < state.best - threshold))
    cooling = state.cooldown_count > 0
    plateau_count = jnp.where(
        improved | cooling,
        0,
        jnp.where(finite, optax.safe_increment(state.plateau_count),
                  state.plateau_count),
    )
    lowered = (plateau_count >= patience) & (state.scale > min_scale)
    scale = jnp.where(
        lowered, jnp.maximum(state.scale * factor, min_scale), state.scale
    ).astype(state.scale.dtype)  # an injected float64 factor must not widen it
    cooldown_count = jnp.where(
        lowered, cooldown, jnp.maximum(state.cooldown_count - finite, 0)
    )

    inner_state = state.inner_state
    if inner is not None:
      if restart_momentum:
        extra_args["restart"] = lowered | extra_args.get("restart", False)
      updates, inner_state = inner.update(
          updates, inner_state, params, value=value, **extra_args
      )
    updates = jax.tree.map(
        lambda u: None if u is None else u * scale.astype(u.dtype),
        updates,
        is_leaf=lambda u: u is None,
    )
    return updates, ScaleOnPlateauState(
        scale=scale,
        best=jnp.where(improved, trend.mean, state.best),
        plateau_count=jnp.where(lowered, 0, plateau_count),
        cooldown_count=cooldown_count.astype(jnp.int32),
        trend=trend,
        lowered=lowered,
        inner_state=inner_state,
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
