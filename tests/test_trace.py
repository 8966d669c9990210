"""nesterov_trace against Optax, and against NumPy loops of Nesterov's method."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nagd_optax as nagd
from tests import problems

STEPS = 60


def _trajectory(optimizer, loss, x0, steps=STEPS, jit=True):
  """Runs optimizer on loss from x0; returns the iterates (steps + 1, d)."""
  optimizer = optax.with_extra_args_support(optimizer)
  params = jnp.asarray(x0)
  state = optimizer.init(params)

  def step(params, state):
    value, grads = jax.value_and_grad(loss)(params)
    updates, state = optimizer.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state

  if jit:
    step = jax.jit(step)
  iterates = [params]
  for _ in range(steps):
    params, state = step(params, state)
    iterates.append(params)
  return np.stack(iterates)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("jit", [True, False], ids=["jit", "nojit"])
@pytest.mark.parametrize("momentum", [0.9, 0.5, 0.0])
@pytest.mark.parametrize(
    "learning_rate",
    [0.3, optax.cosine_decay_schedule(0.3, decay_steps=STEPS, alpha=0.1)],
    ids=["constant_lr", "cosine_lr"],
)
def test_constant_momentum_is_optax_sgd_nesterov(learning_rate, momentum, jit):
  loss, _, x0 = problems.logistic_regression()
  ours = _trajectory(nagd.nagd(learning_rate, momentum), loss, x0, jit=jit)
  reference = _trajectory(
      optax.sgd(learning_rate, momentum, nesterov=True), loss, x0, jit=jit
  )
  assert ours.dtype == np.float64
  chex.assert_trees_all_close(ours, reference, rtol=1e-10, atol=0.0)


def _two_sequence_method(grad, x0, learning_rate, beta, steps=STEPS):
  """The textbook method: x_j = y_{j-1} - lr grad(y_{j-1}),
  y_j = x_j + beta(j) (x_j - x_{j-1}), y_0 = x_0; returns y_0 .. y_steps."""
  x_previous = x0.copy()
  y = x0.copy()
  iterates = [y]
  for j in range(1, steps + 1):
    x = y - learning_rate * grad(y)
    y = x + beta(j) * (x - x_previous)
    x_previous = x
    iterates.append(y)
  return np.stack(iterates)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("jit", [True, False], ids=["jit", "nojit"])
def test_nesterov_schedule_is_the_two_sequence_method(jit):
  loss, grad, x0 = problems.logistic_regression()
  learning_rate = 0.9
  reference = _two_sequence_method(
      grad, x0, learning_rate, beta=lambda j: (j - 1) / (j + 2)
  )
  ours = _trajectory(
      nagd.nagd(learning_rate, nagd.schedules.nesterov_momentum()),
      loss,
      x0,
      jit=jit,
  )
  chex.assert_trees_all_close(ours, reference, rtol=1e-10, atol=1e-14)


@pytest.mark.usefixtures("x64")
def test_any_schedule_is_the_two_sequence_method():
  """An oscillating schedule exposes any off-by-one in the index shift."""
  loss, grad, x0 = problems.logistic_regression(seed=1)

  def momentum(count):
    return 0.5 + 0.4 * jnp.cos(jnp.asarray(count, jnp.float64))

  # The two-sequence method extrapolates y_j with momentum(j - 1).
  reference = _two_sequence_method(
      grad, x0, 0.5, beta=lambda j: 0.5 + 0.4 * np.cos(j - 1.0)
  )
  ours = _trajectory(nagd.nagd(0.5, momentum), loss, x0)
  chex.assert_trees_all_close(ours, reference, rtol=1e-10, atol=1e-14)


@pytest.mark.usefixtures("x64")
def test_optax_sgd_with_injected_momentum_schedule_is_off_by_one():
  """Why the trace exists: Optax's trace uses one momentum value per step for
  both the decay and the extrapolation, so a schedule drifts from the method.
  """
  loss, grad, x0 = problems.logistic_regression()
  reference = _two_sequence_method(
      grad, x0, 0.9, beta=lambda j: (j - 1) / (j + 2)
  )
  optax_nesterov = optax.inject_hyperparams(optax.sgd)(
      learning_rate=0.9,
      momentum=nagd.schedules.nesterov_momentum(),
      nesterov=True,
  )
  drifted = _trajectory(optax_nesterov, loss, x0)
  assert np.max(np.abs(drifted - reference)) > 1e-3


def test_constant_schedule_equals_constant_momentum():
  loss, _, x0 = problems.logistic_regression()
  x0 = x0.astype(np.float32)
  as_float = _trajectory(nagd.nesterov_trace(0.8), loss, x0, steps=10)
  as_schedule = _trajectory(
      nagd.nesterov_trace(optax.constant_schedule(0.8)), loss, x0, steps=10
  )
  reference = _trajectory(optax.trace(0.8, nesterov=True), loss, x0, steps=10)
  chex.assert_trees_all_close(as_float, reference, rtol=1e-6)
  chex.assert_trees_all_close(as_schedule, reference, rtol=1e-6)


def test_state_counts_steps_and_holds_the_buffer():
  optimizer = nagd.nesterov_trace(0.5)
  grads = {"w": jnp.array([1.0, 2.0])}
  state = optimizer.init(grads)
  _, state = optimizer.update(grads, state)
  _, state = optimizer.update(grads, state)
  assert state.count.dtype == jnp.int32 and int(state.count) == 2
  # m_1 = 0.5 * m_0 + g with m_0 = g.
  chex.assert_trees_all_close(state.trace, {"w": jnp.array([1.5, 3.0])})
  assert optax.tree.get(state, "count") == 2


def test_none_gradients_pass_through():
  optimizer = nagd.nesterov_trace(0.9)
  params = {"a": jnp.ones(2), "b": jnp.ones(3)}
  state = optimizer.init(params)
  updates, new_state = optimizer.update({"a": jnp.ones(2), "b": None}, state)
  assert updates["b"] is None
  chex.assert_trees_all_close(updates["a"], jnp.full(2, 1.9))
  # The buffer of the parameter without a gradient is kept, not dropped.
  chex.assert_trees_all_equal_structs(new_state, state)
