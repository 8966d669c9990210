"""The benchmark scripts' building blocks, checked on small inputs.

The full runs take minutes (``python -m benchmarks.run_all --quick``); here
each piece runs briefly and is checked against an independent fact.
"""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nagd_optax as nagd
from benchmarks import convergence
from benchmarks import step_cost
from benchmarks import training


@pytest.mark.slow
@pytest.mark.usefixtures("x64")
def test_convergence_problems_and_counts():
  diagonal = convergence.quadratic(1e2)
  rotated = convergence.quadratic(1e2, rotated=True)
  gd = nagd.nagd(1.0, 0.0)
  # The reference GD figure (GD's closed form gives it too, see
  # test_quadratic_table.py); first-order methods are rotation invariant.
  assert convergence.iterations(gd, diagonal, 10**4) == 784
  assert convergence.iterations(gd, rotated, 10**4) == 784
  counts, curves = convergence.run_problem(diagonal, 10**4)
  assert counts["nagd + restart=gradient"][0] == pytest.approx(117, rel=0.03)
  assert all(len(c) == convergence.CURVE_STEPS for c in curves.values())
  # Nothing beats the lower bound.
  assert all(k is None or k >= diagonal["bound"] for k, _ in counts.values())


def test_worst_case_bound_matches_its_definition():
  problem = convergence.worst_case(101)
  bound = problem["bound"]  # iterations below which the gap is > 1e-3
  f_star = problem["f_star"]
  gap = lambda k: ((-1 + 1 / (k + 1)) / 8 - f_star) / (0.0 - f_star)
  assert gap(bound) <= 1e-3 < gap(bound - 1)


@pytest.mark.slow
def test_step_cost_steps_run_for_every_optimizer():
  params = {"a": jnp.ones(64), "b": jnp.ones((4, 8))}
  grads = jax.tree.map(lambda p: 0.1 * p, params)
  for name, optimizer in step_cost.optimizers().items():
    run, _ = step_cost.make_step(
        optimizer, jax.tree.map(jnp.copy, params), grads)
    # The step donates its buffers: copy what it returned before the next.
    first = jax.tree.map(np.asarray, run())
    second = run()
    assert not np.allclose(first["a"], second["a"]), name


def test_training_optimizers_equal_their_uninjected_selves():
  params = {"w": jnp.linspace(-1.0, 1.0, 6)}
  grads = {"w": jnp.cos(params["w"])}
  plain = {
      "nagd restart=gradient": nagd.nagd(0.1, 0.95, restart="gradient"),
      "optax.sgd(nesterov=True)": optax.sgd(0.1, 0.95, nesterov=True),
      "optax.adamw": optax.adamw(0.1, b1=0.95, weight_decay=1e-4),
  }
  for kind, reference in plain.items():
    injected = training.optimizer(kind, 0.1, 0.95)
    state, reference_state = injected.init(params), reference.init(params)
    for _ in range(3):
      updates, state = injected.update(grads, state, params, value=1.0)
      expected, reference_state = reference.update(
          grads, reference_state, params, value=1.0)
      # Injected hyperparameters are float32 arrays; Python floats are not.
      np.testing.assert_allclose(updates["w"], expected["w"], rtol=1e-5)


def test_training_summaries_count_a_missed_target_as_infinite():
  # Median of (25, 50, inf) and of (25, inf, inf).
  assert training.median_steps([25, None, 50]) == 50
  assert training.median_steps([None, 25, None]) == np.inf
  assert training.format_steps(np.inf, 1000) == "> 1000"
  assert training.per_seed([25, None]) == "25 / -"


@pytest.mark.slow
def test_training_ten_x_start_is_ten_times_the_tuned_sgd_step():
  # With the trust region off, nagd("auto")'s first update from the 10x
  # initial_step is Optax's Nesterov SGD's at learning rate 1.0 (10x 0.1).
  # A small classifier on random data stands in for the tasks' CNNs.
  graphdef, params = nnx.split(nnx.Linear(5, 3, rngs=nnx.Rngs(0)), nnx.Param)
  x = jax.random.normal(jax.random.PRNGKey(0), (200, 5))
  y = jax.random.randint(jax.random.PRNGKey(1), (200,), 0, 3)
  task = dict(seed=0, graphdef=graphdef, params=params, data=(x, y, x, y))
  index = next(training.batches(task, task["seed"]))[0]

  def loss(params):
    logits = nnx.merge(graphdef, params)(x[index])
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, y[index]).mean()

  grads = jax.grad(loss)(params)
  auto = nagd.nagd(nagd.auto_step(
      initial_step=training.ten_x_initial_step(task),
      trust_ratio=float("inf")))
  updates, _ = auto.update(grads, auto.init(params), params)
  sgd = optax.sgd(1.0, 0.9, nesterov=True)
  expected, _ = sgd.update(grads, sgd.init(params), params)
  for u, e in zip(jax.tree.leaves(updates), jax.tree.leaves(expected)):
    np.testing.assert_allclose(u, e, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_training_time_to_target_reports_every_method_and_seed():
  def task(seed):
    task = training.digits_task(seed)
    task["target"] = 0.5  # reached within the tiny budget
    return task

  budget = 100
  kinds = (training.AUTO, "optax.sgd(nesterov=True)")
  rows, steps = training.time_to_target(
      task, (0, 1), budget, quick=True, untuned=kinds[:1], tuned=kinds[1:])
  assert [row[0] for row in rows] == list(kinds)
  for label, _, per_seed, median, seconds, _ in rows:
    assert len(steps[label]) == 2
    for s in steps[label]:
      assert s is None or (s % training.EVAL_EVERY == 0 and 0 < s <= budget)
    assert per_seed == " / ".join("-" if s is None else str(s)
                                  for s in steps[label])
    values = sorted(np.inf if s is None else s for s in steps[label])
    assert median == training.format_steps((values[0] + values[1]) / 2,
                                           budget)
    assert float(seconds) > 0
  assert rows[1][1] == "0.1"  # the quick grid's one learning rate
