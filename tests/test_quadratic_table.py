"""DESIGN.md's quadratic table: the GD and NAG (k-1)/(k+2) columns."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nagd_optax as nagd
from tests import problems

TOLERANCE = 1e-10  # on (f(x_k) - f*) / (f(x_0) - f*)

# kappa -> iterations, from DESIGN.md.
PUBLISHED_GD = {1e2: 784, 1e3: 6801, 1e4: 57548}
PUBLISHED_NAG = {1e2: 521, 1e3: 2330, 1e4: 7024}


@functools.partial(jax.jit, static_argnums=0)
def _iterations_to_tolerance(optimizer, lam, x0):
  """Steps until f(params) / f(x0) <= TOLERANCE, in one XLA while loop."""

  def f(x):
    return 0.5 * jnp.sum(lam * x * x)

  f0 = f(x0)

  def not_converged(carry):
    params, _, k = carry
    return (f(params) > TOLERANCE * f0) & (k < 10**6)

  def step(carry):
    params, state, k = carry
    updates, state = optimizer.update(lam * params, state, params)
    return optax.apply_updates(params, updates), state, k + 1

  _, _, k = jax.lax.while_loop(
      not_converged, step, (x0, optimizer.init(x0), 0)
  )
  return k


def _gd_closed_form(lam, x0):
  """GD with step 1 scales x_i by (1 - lam_i) per step: f_k is explicit."""
  weights = lam * x0**2
  k = 0
  while np.sum(weights * (1 - lam) ** (2 * k)) > TOLERANCE * np.sum(weights):
    k += 1
  return k


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("kappa", sorted(PUBLISHED_GD))
def test_gradient_descent_column(kappa):
  lam, x0 = problems.quadratic(kappa)
  iterations = int(
      _iterations_to_tolerance(nagd.nagd(1.0, 0.0), jnp.asarray(lam), x0)
  )
  assert iterations == _gd_closed_form(lam, x0)
  assert iterations == pytest.approx(PUBLISHED_GD[kappa], rel=0.01)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("kappa", sorted(PUBLISHED_NAG))
def test_nesterov_column(kappa):
  lam, x0 = problems.quadratic(kappa)
  optimizer = nagd.nagd(1.0, nagd.schedules.nesterov_momentum())
  iterations = int(_iterations_to_tolerance(optimizer, jnp.asarray(lam), x0))
  assert iterations == pytest.approx(PUBLISHED_NAG[kappa], rel=0.01)
