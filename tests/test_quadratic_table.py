"""The quadratic table: the GD and NAG (k-1)/(k+2) columns.

The reference figures were computed independently of this library by plain
NumPy loops of the papers' algorithms (tests/reference_methods.py reproduces
them); gradient descent is also checked against its closed form.
"""

import numpy as np
import pytest

import nagd_optax as nagd

pytestmark = pytest.mark.slow  # runs to 1e-10, up to 57,548 iterations

TOLERANCE = 1e-10  # on (f(x_k) - f*) / (f(x_0) - f*)

# kappa -> iterations.
PUBLISHED_GD = {1e2: 784, 1e3: 6801, 1e4: 57548}
PUBLISHED_NAG = {1e2: 521, 1e3: 2330, 1e4: 7024}


def _iterations(optimizer, problem):
  threshold = TOLERANCE * problem.f(problem.x0)
  return nagd.problems.run_until(optimizer, problem.value_and_grad,
                                 problem.x0, threshold)[0]


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
  problem = nagd.problems.quadratic(kappa)
  iterations = _iterations(nagd.nagd(1.0, 0.0), problem)
  lam = np.logspace(0.0, -np.log10(kappa), len(problem.x0))
  assert iterations == _gd_closed_form(lam, problem.x0)
  assert iterations == pytest.approx(PUBLISHED_GD[kappa], rel=0.01)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("kappa", sorted(PUBLISHED_NAG))
def test_nesterov_column(kappa):
  problem = nagd.problems.quadratic(kappa)
  optimizer = nagd.nagd(1.0, nagd.schedules.nesterov_momentum())
  assert _iterations(optimizer, problem) == pytest.approx(
      PUBLISHED_NAG[kappa], rel=0.01)
