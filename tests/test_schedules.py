"""Momentum schedules against their closed forms."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nagd_optax as nagd


def test_nesterov_momentum_is_the_paper_sequence():
  schedule = nagd.schedules.nesterov_momentum()
  # beta_j = (j - 1) / (j + 2) for the paper's j = 1, 2, ... is step j - 1.
  for j in range(1, 200):
    assert float(schedule(j - 1)) == pytest.approx((j - 1) / (j + 2), rel=1e-6)


def test_nesterov_momentum_jits_and_vmaps():
  schedule = nagd.schedules.nesterov_momentum()
  counts = jnp.arange(10, dtype=jnp.int32)
  values = jax.jit(jax.vmap(schedule))(counts)
  np.testing.assert_allclose(values, np.arange(10) / (np.arange(10) + 3.0))
  assert values.dtype == jnp.float32


@pytest.mark.usefixtures("x64")
def test_nesterov_momentum_is_float64_with_x64():
  value = nagd.schedules.nesterov_momentum()(jnp.asarray(7, jnp.int32))
  assert value.dtype == jnp.float64
  assert float(value) == 0.7  # 7 / 10, exactly as float64 divides it


@pytest.mark.parametrize(
    "kappa, expected", [(1.0, 0.0), (100.0, 9.0 / 11.0), (1e4, 99.0 / 101.0)]
)
def test_strongly_convex_momentum_closed_form(kappa, expected):
  schedule = nagd.schedules.strongly_convex_momentum(kappa)
  assert float(schedule(0)) == pytest.approx(expected, rel=1e-7)
  values = jax.jit(jax.vmap(schedule))(jnp.arange(5))
  np.testing.assert_allclose(values, np.full(5, expected), rtol=1e-7)


@pytest.mark.parametrize("kappa", [0.5, 0.0, -10.0, math.nan, math.inf])
def test_strongly_convex_momentum_rejects_bad_condition_number(kappa):
  with pytest.raises(ValueError, match="condition_number"):
    nagd.schedules.strongly_convex_momentum(kappa)
