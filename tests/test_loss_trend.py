"""The loss statistics behind the smoothed restart and plateau tests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
