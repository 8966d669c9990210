"""The benchmark scripts' building blocks, checked on small inputs.

The full runs take minutes (``python -m benchmarks.run_all --quick``); here
each piece runs briefly and is checked against an independent fact.
"""

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


@pytest.mark.slow
def test_training_run_reports_steps_and_seconds():
  task = training.digits_task()
  task["target"] = 0.5
  steps, seconds = training.run(task, "optax.sgd(nesterov=True)", 0.1, 0.9,
                                max_steps=200)
  assert steps is not None and steps % training.EVAL_EVERY == 0
  assert seconds > 0
