"""The loss statistics behind the smoothed restart and plateau tests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from nagd_optax import _loss_trend


def _standard_errors(values, smoothing):
  def step(trend, value):
    trend = _loss_trend.update_trend(trend, value, smoothing)
    return trend, _loss_trend.standard_error(trend, smoothing)

  return np.asarray(jax.lax.scan(step, _loss_trend.init_trend(),
                                 jnp.asarray(values))[1])


@pytest.mark.parametrize("smoothing", [0.9, 0.98])
@pytest.mark.parametrize("slope", [0.0, 0.01, -0.05])
def test_standard_error_is_the_ema_noise_whatever_the_trend(smoothing, slope):
  """Closed form: an EMA with factor s of white noise sigma has standard
  deviation sigma sqrt((1 - s)/(1 + s)); a linear trend must not add to it."""
  sigma, n = 0.3, 20000
  k = np.arange(n)
  values = 5.0 + slope * k + sigma * np.random.default_rng(0).standard_normal(n)
  estimate = np.median(_standard_errors(values, smoothing)[n // 4:])
  expected = sigma * np.sqrt((1 - smoothing) / (1 + smoothing))
  assert estimate == pytest.approx(expected, rel=0.05)


def test_a_noiseless_trend_has_no_standard_error():
  errors = _standard_errors(100.0 - 0.1 * np.arange(2000), 0.98)
  assert errors[-1] < 1e-3 * errors.max()


def test_non_finite_values_leave_the_statistics_alone():
  trend = _loss_trend.init_trend()
  for value in [1.0, 2.0, 0.5]:
    trend = _loss_trend.update_trend(trend, value, 0.9)
  for value in [jnp.nan, jnp.inf, -jnp.inf]:
    assert jax.tree.map(
        lambda a, b: bool(a == b),
        _loss_trend.update_trend(trend, value, 0.9), trend) == jax.tree.map(
            lambda _: True, trend)


def _fit(values):
  fit = _loss_trend.init_fit()
  for value in values:
    fit = _loss_trend.update_fit(fit, value)
  return fit


def test_linear_fit_matches_scipy_linregress():
  """Slope, residual scatter and slope standard error of ordinary least
  squares, against scipy's implementation."""
  values = 3.0 - 0.02 * np.arange(40) + np.random.default_rng(1).normal(
      0, 0.5, 40)
  fit = _fit(list(values) + [np.nan, np.inf])  # non-finite: ignored
  noise = _loss_trend.fit_noise(fit)
  slope, error = _loss_trend.fit_slope(fit, noise)
  expected = scipy.stats.linregress(np.arange(40), values)
  assert int(fit.count) == 40
  assert float(slope) == pytest.approx(expected.slope, rel=1e-4)
  assert float(error) == pytest.approx(expected.stderr, rel=1e-4)


def test_linear_fit_needs_two_losses_for_a_slope():
  slope, error = _loss_trend.fit_slope(_fit([2.0]), jnp.asarray(1.0))
  assert float(slope) == 0.0 and np.isinf(float(error))
  assert np.isnan(float(_loss_trend.fit_noise(_fit([2.0, 1.0]))))


@pytest.mark.parametrize("smoothing", [0.9, 0.98])
def test_lag_corrected_mean_tracks_a_clean_linear_fall(smoothing):
  """The EMA lags a loss falling by a per step by s a / (1 - s); the drift
  correction removes that lag (closed form)."""
  values = 10.0 - 0.01 * np.arange(2000)

  def step(trend, value):
    trend = _loss_trend.update_trend(trend, value, smoothing)
    return trend, (trend.mean,
                   _loss_trend.lag_corrected_mean(trend, smoothing, 3.0))

  _, (mean, level) = jax.lax.scan(step, _loss_trend.init_trend(),
                                  jnp.asarray(values))
  lag = smoothing * 0.01 / (1 - smoothing)
  np.testing.assert_allclose(mean[-1], values[-1] + lag, rtol=1e-4)
  np.testing.assert_allclose(level[-1], values[-1], atol=1e-3 * lag)


def test_lag_corrected_mean_never_raises_the_mean():
  values = 5.0 + 0.02 * np.arange(500) + np.random.default_rng(2).normal(
      0, 0.3, 500)  # a rising, noisy loss

  def step(trend, value):
    trend = _loss_trend.update_trend(trend, value, 0.95)
    return trend, trend.mean - _loss_trend.lag_corrected_mean(trend, 0.95,
                                                                2.0)

  gaps = jax.lax.scan(step, _loss_trend.init_trend(), jnp.asarray(values))[1]
  assert np.all(np.asarray(gaps) >= 0)


@pytest.mark.parametrize("slope", [0.0, -0.01])
def test_loss_noise_is_the_standard_deviation_of_one_loss(slope):
  sigma, n = 0.3, 20000
  values = 5.0 + slope * np.arange(n) + sigma * np.random.default_rng(
      3).standard_normal(n)

  def step(trend, value):
    trend = _loss_trend.update_trend(trend, value, 0.98)
    return trend, _loss_trend.loss_noise(trend, 0.98)

  noise = jax.lax.scan(step, _loss_trend.init_trend(), jnp.asarray(values))[1]
  assert np.median(np.asarray(noise)[n // 4:]) == pytest.approx(sigma,
                                                                rel=0.05)
