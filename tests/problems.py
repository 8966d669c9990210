"""Small, independent test problems: objectives with NumPy gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax


def logistic_regression(seed: int = 0, m: int = 40, d: int = 5):
  """A logistic regression with an L2 term: returns (loss, grad, x0).

  ``loss`` works on NumPy and JAX arrays alike (through the array API of
  its argument), ``grad`` is the closed-form NumPy gradient.
  """
  rng = np.random.default_rng(seed)
  features = rng.standard_normal((m, d))
  labels = np.where(rng.standard_normal(m) > 0, 1.0, -1.0)
  x0 = rng.standard_normal(d)

  def loss(x):
    xp = _namespace(x)
    margins = labels * (features @ x)
    return xp.mean(xp.logaddexp(0.0, -margins)) + 0.05 * xp.sum(x * x)

  def grad(x):
    margins = labels * (features @ x)
    weights = -labels / (1.0 + np.exp(margins))
    return features.T @ weights / m + 0.1 * x

  return loss, grad, x0


def _namespace(x):
  if isinstance(x, np.ndarray):
    return np
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  return jnp


def quadratic(condition_number: float, n: int = 500):
  """DESIGN.md's quadratic f(x) = 0.5 sum_i lam_i x_i^2 (L = 1, mu = 1/kappa).

  Returns (lam, x0). The eigenvalues run log-spaced from 1 down to 1/kappa,
  paired in that order with x0 ~ N(0, I) from default_rng(0): the pairing
  that reproduces the published GD column exactly.
  """
  lam = np.logspace(0.0, -np.log10(condition_number), n)
  x0 = np.random.default_rng(0).standard_normal(n)
  return lam, x0


def quadratic_value_and_grad(lam):
  """f(x) = 0.5 sum_i lam_i x_i^2 and its gradient lam * x, in JAX."""
  lam = jnp.asarray(lam)
  return lambda x: (0.5 * jnp.sum(lam * x * x), lam * x)


def run_until(optimizer, value_and_grad, x0, threshold, max_steps=10**6):
  """Steps ``optimizer`` until the loss at the parameters is <= threshold.

  One XLA while loop; the loss is passed as ``value=``. Returns the number
  of steps and the final optimizer state.
  """
  steps, state = _run_until(
      optimizer, value_and_grad, jnp.asarray(x0), threshold, max_steps
  )
  return int(steps), state


@functools.partial(jax.jit, static_argnums=(0, 1, 4))
def _run_until(optimizer, value_and_grad, x0, threshold, max_steps):
  def not_done(carry):
    params, _, k = carry
    return (value_and_grad(params)[0] > threshold) & (k < max_steps)

  def step(carry):
    params, state, k = carry
    value, grads = value_and_grad(params)
    updates, state = optimizer.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state, k + 1

  _, state, k = jax.lax.while_loop(
      not_done, step, (x0, optimizer.init(x0), 0)
  )
  return k, state


def trajectory(optimizer, value_and_grad, x0, steps):
  """The iterates params_0 .. params_steps, as a (steps + 1, ...) array."""
  return np.asarray(_trajectory(optimizer, value_and_grad, jnp.asarray(x0),
                                steps))


@functools.partial(jax.jit, static_argnums=(0, 1, 3))
def _trajectory(optimizer, value_and_grad, x0, steps):
  def step(carry, _):
    params, state = carry
    value, grads = value_and_grad(params)
    updates, state = optimizer.update(grads, state, params, value=value)
    params = optax.apply_updates(params, updates)
    return (params, state), params

  _, iterates = jax.lax.scan(step, (x0, optimizer.init(x0)), length=steps)
  return jnp.concatenate([x0[None], iterates])


def breast_cancer_logistic(regularization):
  """DESIGN.md's L2-regularised logistic regression on breast_cancer.

  Standardised features plus a bias column (m = 569, d = 31). Returns
  (f, grad) in NumPy, a JAX value_and_grad, the smoothness constant L and
  x0 = 0.
  """
  from sklearn.datasets import load_breast_cancer  # pylint: disable=g-import-not-at-top

  features, labels = load_breast_cancer(return_X_y=True)
  features = (features - features.mean(0)) / features.std(0)
  features = np.hstack([features, np.ones((len(features), 1))])
  a = features * (2.0 * labels - 1.0)[:, None]
  m = len(a)

  def f(w):
    return np.mean(np.logaddexp(0.0, -a @ w)) + 0.5 * regularization * w @ w

  def grad(w):
    return -a.T @ (1.0 / (1.0 + np.exp(a @ w))) / m + regularization * w

  a_jax = jnp.asarray(a)

  def jax_loss(w):
    return (
        jnp.mean(jnp.logaddexp(0.0, -a_jax @ w))
        + 0.5 * regularization * w @ w
    )

  smoothness = 0.25 * np.linalg.eigvalsh(features.T @ features).max() / m
  x0 = np.zeros(a.shape[1])
  return f, grad, jax.value_and_grad(jax_loss), smoothness + regularization, x0


def rosenbrock():
  """f(x) = (1 - x_1)^2 + 100 (x_2 - x_1^2)^2 from (-1.2, 1): NumPy f, grad,
  a JAX value_and_grad and x0."""

  def f(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2

  def grad(x):
    return np.array([
        -2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] ** 2),
        200 * (x[1] - x[0] ** 2),
    ])

  return f, grad, jax.value_and_grad(f), np.array([-1.2, 1.0])


def nesterov_worst_case(n, smoothness=1.0):
  """Nesterov's worst function for first-order methods (Lectures, 2.1.2).

  f(x) = L/4 (1/2 [x_1^2 + sum_i (x_i - x_{i+1})^2 + x_n^2] - x_1) on R^n.
  From x0 = 0, the k-th iterate of any method whose steps are combinations
  of past gradients lies in span(e_1, ..., e_k), where f >= f*_k with
  f*_k = L/8 (-1 + 1/(k + 1)). Returns (JAX value_and_grad, lower_bound(k),
  f*).
  """
  tridiagonal = (
      2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
  ) * smoothness / 4
  e1 = np.zeros(n)
  e1[0] = smoothness / 4
  a = jnp.asarray(tridiagonal)
  b = jnp.asarray(e1)

  def value_and_grad(x):
    return 0.5 * x @ (a @ x) - b @ x, a @ x - b

  def lower_bound(k):
    return smoothness / 8 * (-1 + 1 / (k + 1))

  return value_and_grad, lower_bound, lower_bound(n)
