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


def test_gpt_tree_has_the_blocks_it_says():
  tree = jax.eval_shape(lambda: step_cost.gpt_tree(
      blocks=12, width=256, vocabulary=1024, context=256))
  d = 256
  # Per block: two layer norms (2d each), qkv (d x 3d + 3d), projection
  # (d x d + d), MLP (d x 4d + 4d, 4d x d + d); embeddings; final norm.
  block = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (
      4 * d * d + 4 * d) + (4 * d * d + d)
  expected = 1024 * d + 256 * d + 12 * block + 2 * d
  assert len(jax.tree.leaves(tree)) == 2 + 12 * 12 + 2
  assert sum(x.size for x in jax.tree.leaves(tree)) == expected


def test_floor_is_the_nesterov_update_on_a_flat_array():
  params = {"a": jnp.arange(3.0), "b": jnp.ones((2, 2))}
  grads = jax.tree.map(lambda p: 0.5 + p, params)
  run, _ = step_cost.make_floor(params, grads)
  p = np.concatenate([np.ravel(x) for x in jax.tree.leaves(params)])
  g = np.concatenate([np.ravel(x) for x in jax.tree.leaves(grads)])
  m = np.zeros_like(p)
  lr, mu = step_cost.LEARNING_RATE, step_cost.MOMENTUM
  for _ in range(2):
    m = mu * m + g
    p = p - lr * (g + mu * m)
    np.testing.assert_allclose(run(), p, rtol=1e-6)


@pytest.mark.slow
def test_torch_steps_are_nesterov_sgd():
  pytest.importorskip("torch")
  params = {"a": jnp.linspace(-1.0, 1.0, 5)}
  grads = {"a": jnp.cos(params["a"])}
  runs = step_cost.make_torch_steps(params, grads)  # takes one step
  assert set(runs) == {"torch SGD foreach=True", "torch SGD fused=True"}
  optimizer = optax.sgd(step_cost.LEARNING_RATE, step_cost.MOMENTUM,
                        nesterov=True)
  state = optimizer.init(params)
  expected = []
  for _ in range(3):
    updates, state = optimizer.update(grads, state)
    params = optax.apply_updates(params, updates)
    expected.append(params["a"])
  tensor = lambda run: run.__self__.param_groups[0]["params"][0].detach()
  for run in runs.values():
    np.testing.assert_allclose(tensor(run).numpy(), expected[0], rtol=1e-6)
  # The foreach kernel overwrites the gradients in place (with g + mu m),
  # so only the fused one can repeat a step on the same gradients.
  fused = runs["torch SGD fused=True"]
  fused()
  fused()
  np.testing.assert_allclose(tensor(fused).numpy(), expected[2], rtol=1e-6)


def test_per_round_ratios_and_bars():
  samples = {step_cost.BASELINE: [1.0, 2.0, 4.0], "x": [1.5, 2.0, 6.0]}
  ratios = step_cost.per_round_ratios(samples, step_cost.BASELINE)
  assert ratios["x"] == [1.5, 1.0, 1.5]
  results = {
      tree: {"step": {name: 1.0 for name, *_ in step_cost.BARS},
             "compile": {name: 1.6 for name, *_ in step_cost.BARS}}
      for tree in (step_cost.LARGE, step_cost.SMALL, step_cost.GPT)
  }
  lines = step_cost.check_bars(results)
  assert len(lines) == len(step_cost.BARS)
  for line, (_, _, bar, what) in zip(lines, step_cost.BARS):
    met = (1.0 if what == "step" else 1.6) <= bar
    assert ("**met**" in line) == met, line


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
