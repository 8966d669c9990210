"""Running statistics of a noisy scalar loss, for loss-driven decisions.

Both the ``"loss"`` restart criterion and :func:`scale_on_plateau` must tell a
real change of the loss from minibatch noise. Comparing consecutive values of
an exponential moving average (EMA) does not: the sign of
``ema_k - ema_{k-1} = (1 - s)(loss_k - ema_{k-1})`` is as noisy as the loss
itself. What does is to compare the EMA with a reference *up to its own
standard error*, which these statistics estimate from the data. The estimate
must see only the noise: a trend (a loss that keeps falling) is not noise,
and counting it as noise would make a falling loss look flat.

A :class:`LinearFit` is the other half: the least-squares line through the
losses of a window, whose slope says whether the loss still falls, with a
standard error from the same noise estimate.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class LossTrend(NamedTuple):
  """Exponential moving statistics of the finite losses seen so far.

  Attributes:
    mean: EMA of the loss; it starts at the first loss, so it has no bias
      towards zero.
    drift: EMA of the innovations ``loss - previous mean``; under a steady
      trend the innovations settle at a constant (the mean's lag), which
      ``drift`` predicts.
    noise: EMA of the squared residual ``innovation - predicted drift``:
      the innovations' variance around the trend.
    count: number of finite losses seen, int32.
  """

  mean: jax.Array
  drift: jax.Array
  noise: jax.Array
  count: jax.Array


def scalar_loss(value: Any, who: str) -> jax.Array:
  """``value`` as a scalar array; TypeError/ValueError naming ``value``.

  Args:
    value: what was passed as ``value=`` (None when nothing was).
    who: the transformation that needs it, for the error message.
  """
  if value is None:
    raise TypeError(
        f"{who} needs the loss at the current parameters: call"
        " update(updates, state, params, value=loss)."
    )
  value = jnp.asarray(value)
  if value.ndim != 0:
    raise ValueError(
        f"value must be a scalar loss, got an array of shape {value.shape};"
        " reduce it (e.g. with jnp.mean) before passing it."
    )
  return value


def widest_float() -> jnp.dtype:
  """The widest float available (float64 with x64): stored without rounding.

  A float64 loss rounded to float32 stalls a comparison of losses near the
  optimum, where consecutive losses differ by less than float32's epsilon.
  """
  return jnp.result_type(float)


def init_trend() -> LossTrend:
  dtype = widest_float()
  return LossTrend(
      mean=jnp.zeros([], dtype),
      drift=jnp.zeros([], dtype),
      noise=jnp.zeros([], dtype),
      count=jnp.zeros([], jnp.int32),
  )


def _debiased(ema: jax.Array, smoothing, samples: jax.Array) -> jax.Array:
  """An EMA started at zero, debiased for that start (as in Adam); 0 before
  any sample."""
  debias = 1 - jnp.power(jnp.asarray(smoothing, ema.dtype), samples)
  return jnp.where(samples > 0, ema / jnp.where(samples > 0, debias, 1), 0.0)


def update_trend(
    trend: LossTrend, value: jax.Array, smoothing: float | jax.Array
) -> LossTrend:
  r"""Adds ``value`` to the statistics; a NaN or infinite value is ignored.

  With :math:`e_k = f_k - \bar f_{k-1}` the innovation and :math:`\hat d`
  the debiased drift before it:

  .. math::

    \bar f_k = s \bar f_{k-1} + (1 - s) f_k, \quad
    d_k = s d_{k-1} + (1 - s) e_k, \quad
    v_k = s v_{k-1} + (1 - s) (e_k - \hat d_{k-1})^2.
  """
  value = jnp.asarray(value).astype(trend.mean.dtype)
  first = trend.count == 0
  innovations = jnp.maximum(trend.count - 1, 0)  # seen before this one
  innovation = value - trend.mean
  residual = innovation - _debiased(trend.drift, smoothing, innovations)

  def ema(old, new):
    return jnp.where(first, old, smoothing * old + (1 - smoothing) * new)

  updated = LossTrend(
      mean=jnp.where(first, value, ema(trend.mean, value)),
      drift=ema(trend.drift, innovation),
      noise=ema(trend.noise, residual**2),
      count=optax.safe_increment(trend.count),
  )
  finite = jnp.isfinite(value)
  return jax.tree.map(lambda new, old: jnp.where(finite, new, old), updated,
                      trend)


def update_level(trend: LossTrend, value: jax.Array) -> LossTrend:
  """:func:`update_trend` without smoothing (``smoothing=0``), kept short.

  The mean is then the last finite loss and the count the number of finite
  losses; without smoothing there is no noise to estimate, so ``drift`` and
  ``noise`` keep their values. Fewer scalars to compute means fewer kernels
  for XLA to compile in every step that reads the loss.
  """
  value = jnp.asarray(value).astype(trend.mean.dtype)
  finite = jnp.isfinite(value)
  return trend._replace(
      mean=jnp.where(finite, value, trend.mean),
      count=jnp.where(finite, optax.safe_increment(trend.count), trend.count),
  )


def standard_error(
    trend: LossTrend, smoothing: float | jax.Array
) -> jax.Array:
  r"""Standard deviation of ``trend.mean`` around the loss's true level.

  For a loss with noise variance :math:`\sigma^2`, the EMA with factor
  :math:`s` has variance :math:`\sigma^2 (1 - s)/(1 + s)`, and an innovation
  has variance :math:`\sigma^2 \cdot 2/(1 + s)`; so the EMA's variance is the
  innovations' times :math:`(1 - s)/2`. The innovations are measured around
  their drift, so a steady trend adds nothing (the drift's own noise adds a
  fraction :math:`(1 - s)/(1 + s)` of caution). EMAs are debiased for their
  zero start (as in Adam).
  """
  innovations = jnp.maximum(trend.count - 1, 0)
  variance = _debiased(trend.noise, smoothing, innovations)
  return jnp.sqrt(variance * (1 - smoothing) / 2)


def loss_noise(trend: LossTrend, smoothing: float | jax.Array) -> jax.Array:
  r"""Standard deviation :math:`\hat\sigma` of one loss around its trend.

  An innovation has variance :math:`\sigma^2 \cdot 2/(1 + s)` (see
  :func:`standard_error`), so :math:`\hat\sigma^2 = v (1 + s)/2`.
  """
  innovations = jnp.maximum(trend.count - 1, 0)
  variance = _debiased(trend.noise, smoothing, innovations)
  return jnp.sqrt(variance * (1 + smoothing) / 2)


def lag_corrected_mean(
    trend: LossTrend, smoothing: float | jax.Array, noise_tolerance
) -> jax.Array:
  r"""The EMA moved down by its lag behind a significantly falling loss.

  Under a steady slope :math:`a` the EMA lags the loss by
  :math:`s a/(1 - s)` and the drift settles at :math:`a/(1 - s)`, so
  :math:`\bar f_k + s \hat d_k` is the loss's current level. White noise of
  standard deviation :math:`\sigma` gives the drift a standard deviation
  :math:`\sigma \sqrt{2 (1 - s)/(1 + s)^3}`; the correction uses the
  drift's upper confidence bound, :math:`\min(\hat d_k + z\,
  \mathrm{se}(\hat d_k), 0)`, so it acts only on a significant fall and never
  raises the level:

  .. math::

    \ell_k = \bar f_k + s \min\left(\hat d_k + z\,\mathrm{se}(\hat d_k),
    0\right).
  """
  innovations = jnp.maximum(trend.count - 1, 0)
  drift = _debiased(trend.drift, smoothing, innovations)
  drift_error = loss_noise(trend, smoothing) * jnp.sqrt(
      2 * (1 - smoothing) / (1 + smoothing) ** 3
  )
  bound = jnp.minimum(drift + noise_tolerance * drift_error, 0.0)
  # With s = 0 the mean is the loss itself; 0 * a non-finite bound is NaN.
  return trend.mean + jnp.where(smoothing > 0, smoothing * bound, 0.0)


def settled(trend: LossTrend, smoothing: float | jax.Array) -> jax.Array:
  """Whether the average has seen about 1/(1 - s) losses (its time constant).

  Before that it leans on its first few values, whose noise is not yet
  averaged out; decisions compare against it only once it has settled.
  """
  return trend.count >= 1.0 / (1.0 - smoothing)


class LinearFit(NamedTuple):
  r"""Running least-squares line through the finite losses of a window.

  The losses sit at abscissae 0, 1, 2, ... (one per finite loss), whose
  mean :math:`(n - 1)/2` and sum of squares :math:`n (n^2 - 1)/12` are
  known, so three numbers hold the fit.

  Attributes:
    count: number of losses in the window, int32.
    mean: their mean.
    cross: :math:`\sum_i (x_i - \bar x)(f_i - \bar f)`.
    squares: :math:`\sum_i (f_i - \bar f)^2`.
  """

  count: jax.Array
  mean: jax.Array
  cross: jax.Array
  squares: jax.Array


def init_fit() -> LinearFit:
  dtype = widest_float()
  return LinearFit(
      count=jnp.zeros([], jnp.int32),
      mean=jnp.zeros([], dtype),
      cross=jnp.zeros([], dtype),
      squares=jnp.zeros([], dtype),
  )


def update_fit(fit: LinearFit, value: jax.Array) -> LinearFit:
  r"""Adds ``value`` at abscissa ``count``; a NaN or infinite one is ignored.

  Welford's update: with :math:`n` losses before it, the new abscissa lies
  :math:`(n + 1)/2` from the old mean abscissa :math:`(n - 1)/2`, so
  :math:`C \leftarrow C + \tfrac{n + 1}{2} (f - \bar f_{n + 1})`.
  """
  value = jnp.asarray(value).astype(fit.mean.dtype)
  count = optax.safe_increment(fit.count)
  size = count.astype(fit.mean.dtype)
  mean = fit.mean + (value - fit.mean) / size
  cross = fit.cross + size / 2 * (value - mean)
  squares = fit.squares + (value - fit.mean) * (value - mean)
  finite = jnp.isfinite(value)
  return jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                      LinearFit(count, mean, cross, squares), fit)


def fit_noise(fit: LinearFit) -> jax.Array:
  """Standard deviation of the losses around the fitted line (n - 2 degrees
  of freedom); NaN with fewer than three losses."""
  size = fit.count.astype(fit.mean.dtype)
  spread = size * (size * size - 1) / 12
  residual = fit.squares - fit.cross**2 / jnp.where(spread > 0, spread, 1.0)
  return jnp.where(size > 2, jnp.sqrt(jnp.maximum(residual, 0.0) /
                                      jnp.maximum(size - 2, 1.0)), jnp.nan)


def fit_slope(fit: LinearFit, noise: jax.Array) -> tuple[jax.Array, jax.Array]:
  r"""The fitted slope per loss and its standard error.

  For losses with independent noise of standard deviation ``noise``, the
  slope :math:`C/S_{xx}` has standard error :math:`\sigma/\sqrt{S_{xx}}`,
  :math:`S_{xx} = n (n^2 - 1)/12`. With fewer than two losses there is no
  slope: 0 with an infinite standard error.
  """
  size = fit.count.astype(fit.mean.dtype)
  spread = size * (size * size - 1) / 12
  some = spread > 0
  safe = jnp.where(some, spread, 1.0)
  slope = jnp.where(some, fit.cross / safe, 0.0)
  error = jnp.where(some, noise / jnp.sqrt(safe), jnp.inf)
  return slope, error
