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
    best: the lowest (lag-corrected, smoothed) loss that counted as a new
      low.
    plateau_count: updates since the last new low, int32.
    cooldown_count: updates left before the plateau count runs again.
    trend: running statistics of the loss.
    recent_fit: least-squares line through the losses since the last new
      low.
    trend_fit: least-squares line through the losses since the new low that
      preceded the last lowering (all the losses before the first).
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
  recent_fit: _loss_trend.LinearFit
  trend_fit: _loss_trend.LinearFit
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
    noise_tolerance: float = 3.0,
    min_scale: float = 0.0,
    inner: optax.GradientTransformation | None = None,
    restart_momentum: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""Scales updates down by ``factor`` when the loss stops falling.

  Without smoothing, with :math:`f_k` the loss passed as ``value=`` and
  :math:`b` the lowest loss that counted as a new low, update :math:`k` makes
  a new low when

  .. math::

    f_k < b - \tau, \qquad \tau = r |b| + a,

  with relative and absolute tolerances :math:`r` (``rtol``) and :math:`a`
  (``atol``). After ``patience`` (:math:`P`) updates without a new low the
  scale is multiplied by ``factor`` (down to ``min_scale``), and the count
  waits ``cooldown`` updates before it runs again. The threshold is
  additive, so negative losses are handled (Optax's ``reduce_on_plateau``
  tests ``value < best * (1 - rtol)``, which a flat negative loss never
  fails). A NaN or infinite loss is ignored.

  With ``loss_smoothing`` :math:`s > 0` the losses are noisy, and a lowering
  needs *evidence that the loss stopped falling*, not merely a lack of
  evidence that it still falls. A new low is then one of the smoothed loss
  :math:`\ell_k`: the loss's exponential moving average, moved down by its
  lag behind the loss when the loss falls significantly (see below), so that
  it stops making new lows soon after the loss stops falling. Any new low
  counts, however small against the noise: a falling loss keeps making them,
  a flat one makes them ever more rarely. After :math:`P` updates without
  one, the scale is lowered unless the losses themselves still show a fall.
  With :math:`\beta_T \pm \sigma_T` the least-squares slope (per update) of
  the losses in the trend window :math:`T` (since the new low that preceded
  the last lowering; before the first lowering, all losses) and
  :math:`\beta_R \pm \sigma_R` that of the recent window :math:`R \subseteq
  T` (since the last new low), the loss still falls when

  .. math::

    \beta_T + z \sigma_T < -\tau / P
    \quad\text{and}\quad
    \beta_R - \beta_T \le z \sqrt{\sigma_R^2 - \sigma_T^2}:

  the trend window falls significantly faster than :math:`\tau` per
  ``patience`` updates, and the recent losses do not fall significantly
  more slowly (for nested windows the difference of the slopes has variance
  :math:`\sigma_R^2 - \sigma_T^2`). :math:`z` is ``noise_tolerance``, and
  the standard errors come from the losses' scatter around the trend
  window's line. The lag correction uses the drift :math:`\hat d_k` of the
  innovations :math:`f_k - \bar f_{k-1}`, which under a steady slope
  :math:`\alpha` settles at :math:`\alpha/(1 - s)` while the average lags by
  :math:`s \alpha/(1 - s)`: :math:`\ell_k = \bar f_k + s \min(\hat d_k +
  z\,\mathrm{se}(\hat d_k), 0)`. The first :math:`1/(1 - s)` losses (the
  average's time constant) only set :math:`b`.

  Measured on synthetic linear falls with noise 1 to 1000 times the drop
  per update, against Optax's ``reduce_on_plateau`` with a window of the
  same noise and lag (``accumulation_size`` :math:`k`, ``patience``
  :math:`P/k`, :math:`s = (k - 1)/(k + 1)`): fewer false lowerings wherever
  Optax makes any, and as many lowerings of a flat noisy loss within 0.1%;
  but after such a slow, noisy fall turns flat it waits longer than Optax
  (the table is on the documentation's plateau page).

  Place it after the learning rate in a chain, or give it the optimizer as
  ``inner`` (its updates are then scaled). With ``restart_momentum=True`` the
  inner optimizer is also restarted when the scale is lowered: it is called
  with ``restart=True``, which every :func:`nagd_optax.restart` wrapper inside
  it (e.g. ``nagd(..., restart="on_demand")``, one per ``optax.partition``
  part) obeys.

  From PyTorch's ``ReduceLROnPlateau(mode="min")`` (without smoothing; each
  line checked against torch 2.13): its ``patience=p`` is ``patience=p + 1``
  here, as it lowers after *more than* ``p`` bad epochs; its
  ``threshold_mode="rel"`` with ``threshold=t`` is ``rtol=t`` and ``"abs"``
  is ``atol=t`` (its relative test, ``loss < best * (1 - t)``, never fires on
  a flat negative loss); ``cooldown`` is the same; ``min_lr`` is
  ``min_scale`` times the base rate. Its ``eps`` skips a lowering by no more
  than ``eps``, so the rate stops at the first ``base * factor**n <= eps /
  (1 - factor)``: ``min_scale=factor**n`` here. It counts a NaN loss as a bad
  epoch, where this ignores it. And it applies a lowering from the step
  after the one whose loss triggered it, where this scales the update that
  sees the loss.

  Args:
    factor: multiplies the scale on a plateau, in :math:`(0, 1)`.
    patience: updates without a new low before lowering, >= 1.
    cooldown: updates after lowering during which the plateau count is held
      at zero, >= 0.
    loss_smoothing: EMA factor :math:`s \in [0, 1)` of the loss; about 0.98
      for minibatch losses.
    rtol: relative improvement threshold, >= 0 (of :math:`|b|`).
    atol: absolute improvement threshold, >= 0.
    noise_tolerance: :math:`z \ge 0`, the standard errors each test needs
      (only with ``loss_smoothing > 0``): a fall to hold a lowering back, a
      slowdown to release it, a negative drift for the lag correction. 3
      instead of 2 measured fewer false lowerings on noisy falls and longer
      waits after a noisy fall turns flat.
    min_scale: the scale is never lowered below this, in [0, 1).
    inner: an optional transformation whose updates are scaled.
    restart_momentum: restart ``inner`` whenever the scale is lowered; needs
      at least one restart wrapper inside ``inner``.

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
    with a sign-safe threshold and, for noisy losses, a test for a fall by
    least squares (e.g. Montgomery, Peck & Vining, *Introduction to Linear
    Regression Analysis*, ch. 2).
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
    # One wrapper per optax.partition part is fine: each obeys restart=True.
    if restart_momentum and not optax.tree.get_all_with_path(inner_state,
                                                             "restarts"):
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
        recent_fit=_loss_trend.init_fit(),
        trend_fit=_loss_trend.init_fit(),
        lowered=jnp.zeros([], jnp.bool_),
        inner_state=inner_state,
    )

  def still_falling(trend, recent_fit, trend_fit, tolerance):
    """Whether the losses show a fall that a lowering must wait out."""
    # The scatter around the trend window's own line; the running estimate
    # while that window holds fewer than three losses.
    noise = _loss_trend.fit_noise(trend_fit)
    noise = jnp.where(jnp.isnan(noise),
                      _loss_trend.loss_noise(trend, loss_smoothing), noise)
    trend_slope, trend_error = _loss_trend.fit_slope(trend_fit, noise)
    recent_slope, recent_error = _loss_trend.fit_slope(recent_fit, noise)
    was_falling = trend_slope + noise_tolerance * trend_error < (
        -tolerance / patience
    )
    # The windows are nested, so their slopes differ by noise of variance
    # recent_error**2 - trend_error**2 (zero when they are the same window).
    difference_error = jnp.sqrt(
        jnp.maximum(recent_error**2 - trend_error**2, 0.0)
    )
    slowed = recent_slope - trend_slope > noise_tolerance * difference_error
    return (loss_smoothing > 0) & was_falling & ~slowed

  def update_fn(updates, state, params=None, *, value=None, **extra_args):
    value = _loss_trend.scalar_loss(value, "scale_on_plateau")
    finite = jnp.isfinite(value)
    trend = _loss_trend.update_trend(state.trend, value, loss_smoothing)
    level = _loss_trend.lag_corrected_mean(trend, loss_smoothing,
                                           noise_tolerance)
    # inf - inf is NaN: the first finite loss always makes a new low.
    tolerance = jnp.where(
        jnp.isfinite(state.best), rtol * jnp.abs(state.best) + atol, 0.0
    )
    # Until the average settles, the best simply follows it: its first values
    # are no reference.
    settled = _loss_trend.settled(trend, loss_smoothing)
    new_low = finite & settled & (level < state.best - tolerance)
    best = jnp.where(new_low | (finite & ~settled), level, state.best)
    cooling = state.cooldown_count > 0
    plateau_count = jnp.where(
        new_low | (finite & ~settled) | cooling,
        0,
        jnp.where(finite, optax.safe_increment(state.plateau_count),
                  state.plateau_count),
    )
    recent_fit = _loss_trend.update_fit(
        jax.tree.map(lambda empty, fit: jnp.where(new_low, empty, fit),
                     _loss_trend.init_fit(), state.recent_fit),
        value,
    )
    trend_fit = _loss_trend.update_fit(state.trend_fit, value)
    lowered = (
        (plateau_count >= patience)
        & (state.scale > min_scale)
        & ~still_falling(trend, recent_fit, trend_fit, tolerance)
    )
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
        best=best,
        plateau_count=jnp.where(lowered, 0, plateau_count),
        cooldown_count=cooldown_count.astype(jnp.int32),
        trend=trend,
        recent_fit=recent_fit,
        # After a lowering the trend is measured afresh, from the last new low.
        trend_fit=jax.tree.map(
            lambda recent, old: jnp.where(lowered, recent, old),
            recent_fit, trend_fit),
        lowered=lowered,
        inner_state=inner_state,
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
