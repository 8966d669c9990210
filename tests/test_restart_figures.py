"""Adaptive restart against NumPy loops of the papers, and reference figures.

Each run of the library is compared with a plain NumPy loop of the textbook
algorithm (tests/reference_methods.py): iteration counts, restart counts and
iterates must agree. The counts must also match reference figures computed
independently of this library by plain NumPy loops of the papers' algorithms
(tests/reference_methods.py reproduces them).
"""

import chex
import numpy as np
import optax
import pytest

import nagd_optax as nagd
from tests import reference_methods

pytestmark = pytest.mark.usefixtures("x64")

SPEED_MIN_INTERVAL = 10  # Su, Boyd & Candès' k_min
# The library's criterion -> the reference loop's scheme and its min_interval.
CRITERIA = {
    "loss": (nagd.criteria.loss(), "function", 0),
    "gradient": (nagd.criteria.gradient(), "gradient", 0),
    "gradient_paper": (
        nagd.criteria.gradient(immediate=True), "gradient_paper", 0
    ),
    "speed": (nagd.criteria.speed(), "speed", SPEED_MIN_INTERVAL),
    "speed_paper": (
        nagd.criteria.speed(measure="momentum"), "speed_paper",
        SPEED_MIN_INTERVAL,
    ),
}

# Reference figures (computed independently of this library, see above):
# iterations to (f - f*)/(f0 - f*) <= 1e-10 on the quadratic.
PUBLISHED_QUADRATIC = {
    "loss": {1e2: 134, 1e3: 435, 1e4: 1694, 1e5: 2743},
    "gradient": {1e2: 117, 1e3: 443, 1e4: 1022, 1e5: 2754},
    "speed": {1e2: 240, 1e3: 754, 1e4: 2228, 1e5: 6176},
}
# Reference figures: breast_cancer logistic regression, relative gap 1e-8.
PUBLISHED_LOGISTIC_F_STAR = {
    1e-2: 0.100446303781, 1e-3: 0.059829471882, 1e-4: 0.042655627270
}
PUBLISHED_LOGISTIC_GRADIENT_RESTART = {1e-2: 164, 1e-3: 480, 1e-4: 1508}
PUBLISHED_LOGISTIC_GD = {1e-3: 16797}
# Reference figures: Rosenbrock from (-1.2, 1), step 1e-3, until f <= 1e-10.
PUBLISHED_ROSENBROCK = {"gd": 26593, "nag": 1716, "restart": 316}


def _optimizer(learning_rate, criterion):
  return nagd.nagd(
      learning_rate,
      nagd.schedules.nesterov_momentum(),
      restart=None if criterion is None else CRITERIA[criterion][0],
  )


def _reference(f, grad, x0, step, criterion, **kwargs):
  _, scheme, min_interval = CRITERIA.get(criterion, (None, None, 0))
  return reference_methods.accelerated_gradient(
      f, grad, x0, step, scheme=scheme, min_interval=min_interval, **kwargs
  )


def _quadratic_reference(problem, criterion, **kwargs):
  """The NumPy loop on the quadratic with step 1/L = 1."""
  return _reference(problem.f, problem.grad, problem.x0, 1.0, criterion,
                    **kwargs)


def _rosenbrock():
  problem = nagd.problems.rosenbrock()
  return problem.f, problem.grad, problem.value_and_grad, problem.x0


@pytest.mark.slow
@pytest.mark.parametrize("kappa", [1e2, 1e3, 1e4, 1e5])
@pytest.mark.parametrize("criterion", sorted(CRITERIA))
def test_quadratic_table(criterion, kappa):
  problem = nagd.problems.quadratic(kappa)
  threshold = 1e-10 * problem.f(problem.x0)
  iterations, restarts, _ = _quadratic_reference(
      problem, criterion, stop=lambda value: value <= threshold
  )
  ours, state = nagd.problems.run_until(
      _optimizer(1.0, criterion), problem.value_and_grad, problem.x0,
      threshold,
  )
  assert ours == iterations
  assert int(optax.tree.get(state, "restarts")) == restarts
  if criterion in PUBLISHED_QUADRATIC:
    assert ours == pytest.approx(PUBLISHED_QUADRATIC[criterion][kappa],
                                 rel=0.03)


@pytest.mark.parametrize("criterion", [None, *sorted(CRITERIA)])
def test_iterates_equal_the_reference(criterion):
  problem = nagd.problems.quadratic(1e3)
  _, _, expected = _quadratic_reference(problem, criterion,
                                        max_iterations=600)
  _, ours = nagd.problems.trajectory(
      _optimizer(1.0, criterion), problem.value_and_grad, problem.x0, 600
  )
  chex.assert_trees_all_close(ours, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("regularization", sorted(PUBLISHED_LOGISTIC_F_STAR))
@pytest.mark.parametrize("criterion", ["gradient", "gradient_paper", "loss"])
def test_logistic_regression(regularization, criterion):
  problem = nagd.problems.breast_cancer_logistic(regularization)
  f_star = PUBLISHED_LOGISTIC_F_STAR[regularization]
  assert problem.f_star == pytest.approx(f_star, abs=1e-11)
  step = 1 / problem.smoothness
  threshold = f_star + 1e-8 * (problem.f(problem.x0) - f_star)
  iterations, restarts, _ = _reference(
      problem.f, problem.grad, problem.x0, step, criterion,
      stop=lambda value: value <= threshold,
  )
  ours, state = nagd.problems.run_until(
      _optimizer(step, criterion), problem.value_and_grad, problem.x0,
      threshold,
  )
  assert ours == iterations
  assert int(optax.tree.get(state, "restarts")) == restarts
  if criterion == "gradient":
    published = PUBLISHED_LOGISTIC_GRADIENT_RESTART[regularization]
    assert ours == pytest.approx(published, rel=0.03)


@pytest.mark.slow
def test_logistic_regression_gradient_descent():
  problem = nagd.problems.breast_cancer_logistic(1e-3)
  f_star = PUBLISHED_LOGISTIC_F_STAR[1e-3]
  step = 1 / problem.smoothness
  threshold = f_star + 1e-8 * (problem.f(problem.x0) - f_star)
  iterations, _, _ = _reference(
      problem.f, problem.grad, problem.x0, step, None,
      beta=lambda j: 0.0, stop=lambda value: value <= threshold,
  )
  ours, _ = nagd.problems.run_until(
      nagd.nagd(step, 0.0), problem.value_and_grad, problem.x0, threshold
  )
  assert ours == iterations
  assert ours == pytest.approx(PUBLISHED_LOGISTIC_GD[1e-3], rel=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("criterion", ["loss", "gradient"])
def test_rosenbrock_restart(criterion):
  f, grad, value_and_grad, x0 = _rosenbrock()
  iterations, restarts, _ = _reference(
      f, grad, x0, 1e-3, criterion, stop=lambda value: value <= 1e-10
  )
  ours, state = nagd.problems.run_until(
      _optimizer(1e-3, criterion), value_and_grad, x0, 1e-10
  )
  assert (ours, int(optax.tree.get(state, "restarts"))) == (iterations, restarts)
  assert ours == pytest.approx(PUBLISHED_ROSENBROCK["restart"], rel=0.03)


@pytest.mark.slow
def test_rosenbrock_without_restart():
  f, grad, value_and_grad, x0 = _rosenbrock()
  stop = lambda value: value <= 1e-10
  gd, _ = nagd.problems.run_until(nagd.nagd(1e-3, 0.0), value_and_grad, x0,
                                  1e-10)
  assert gd == pytest.approx(PUBLISHED_ROSENBROCK["gd"], rel=0.01)
  iterations, _, _ = _reference(f, grad, x0, 1e-3, None, stop=stop)
  ours, _ = nagd.problems.run_until(_optimizer(1e-3, None), value_and_grad,
                                    x0, 1e-10)
  assert ours == iterations
  # The published NAG figure comes from the theta (FISTA) sequence of
  # O'Donoghue & Candès, not (k-1)/(k+2): that loop reproduces it.
  fista = reference_methods.fista_beta_sequence(10**4)
  fista_iterations, _, _ = reference_methods.accelerated_gradient(
      f, grad, x0, 1e-3, beta=fista, stop=stop
  )
  assert fista_iterations == pytest.approx(PUBLISHED_ROSENBROCK["nag"],
                                           rel=0.01)


@pytest.mark.slow
@pytest.mark.parametrize(
    "optimizer",
    [
        nagd.nagd(1.0, 0.0),
        nagd.nagd(1.0, 0.9),
        nagd.nagd(1.0, 0.99),
        _optimizer(1.0, None),
        _optimizer(1.0, "loss"),
        _optimizer(1.0, "gradient"),
        _optimizer(1.0, "speed"),
        nagd.nagd(1.0, 0.99, restart="interval", min_interval=20),
    ],
    ids=["gd", "nesterov_0.9", "nesterov_0.99", "nesterov_schedule",
         "loss_restart", "gradient_restart", "speed_restart",
         "interval_restart"],
)
def test_never_beats_the_first_order_lower_bound(optimizer):
  """On Nesterov's worst function, y_k lies in span(e_1..e_k), where
  f >= f*_k: a run below that bound would reveal a bug."""
  problem = nagd.problems.nesterov_worst_case(301)
  f_star = problem.f_star
  _, iterates = nagd.problems.trajectory(optimizer, problem.value_and_grad,
                                         problem.x0, 150)
  values = np.array([problem.f(y) for y in iterates])
  bounds = nagd.problems.worst_case_lower_bound(np.arange(len(values)))
  assert np.all(values - f_star >= (bounds - f_star) * (1 - 1e-9))
  # The iterates do make progress (the bound is not vacuous).
  assert values[-1] < values[0] + 0.5 * (f_star - values[0])
