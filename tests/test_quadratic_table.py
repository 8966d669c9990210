"""DESIGN.md's quadratic table: the GD and NAG (k-1)/(k+2) columns."""

import numpy as np
import pytest

import nagd_optax as nagd
from tests import problems

TOLERANCE = 1e-10  # on (f(x_k) - f*) / (f(x_0) - f*)

# kappa -> iterations, from DESIGN.md.
PUBLISHED_GD = {1e2: 784, 1e3: 6801, 1e4: 57548}
PUBLISHED_NAG = {1e2: 521, 1e3: 2330, 1e4: 7024}


def _iterations(optimizer, lam, x0):
  value_and_grad = problems.quadratic_value_and_grad(lam)
  threshold = TOLERANCE * float(value_and_grad(x0)[0])
  return problems.run_until(optimizer, value_and_grad, x0, threshold)[0]


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
  iterations = _iterations(nagd.nagd(1.0, 0.0), lam, x0)
  assert iterations == _gd_closed_form(lam, x0)
  assert iterations == pytest.approx(PUBLISHED_GD[kappa], rel=0.01)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("kappa", sorted(PUBLISHED_NAG))
def test_nesterov_column(kappa):
  lam, x0 = problems.quadratic(kappa)
  optimizer = nagd.nagd(1.0, nagd.schedules.nesterov_momentum())
  iterations = _iterations(optimizer, lam, x0)
  assert iterations == pytest.approx(PUBLISHED_NAG[kappa], rel=0.01)
