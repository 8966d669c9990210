"""The benchmark scripts' building blocks, checked on small inputs.

The full runs take minutes (``python -m benchmarks.run_all --quick``); here
each piece runs briefly and is checked against an independent fact.
"""

import os
import pathlib
import subprocess

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nagd_optax as nagd
from benchmarks import convergence
from benchmarks import cutest
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
  # Nothing beats the lower bound, the automatic step included.
  assert all(k is None or k >= diagonal["bound"] for k, _ in counts.values())
  # The automatic step's cells carry its ratio to the known step 1/L.
  known, _ = counts[convergence.KNOWN_STEP]
  for name in (convergence.AUTO_FULL_BATCH, convergence.AUTO_DEFAULTS):
    count, note = counts[name]
    assert note == f"{count / known:.2f}x"


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


# CUTEst (benchmarks/cutest.py): the counting and the scores, on two tiny
# sif2jax problems and hand-made tables.


@pytest.mark.usefixtures("x64")
def test_cutest_adgd_is_malitsky_mishchenkos_algorithm():
  # Algorithm 1 of arXiv:1910.09529 as a plain NumPy loop, on a quadratic.
  scales = np.array([1.0, 10.0, 100.0])
  gradient = lambda x: scales * x
  x, step, growth = np.array([1.0, -2.0, 0.5]), 1e-3, np.inf
  x_previous, g_previous = x, gradient(x)
  x = x - step * g_previous
  expected = [x]
  for _ in range(20):
    g = gradient(x)
    new_step = min(np.sqrt(1 + growth) * step,
                   np.linalg.norm(x - x_previous)
                   / (2 * np.linalg.norm(g - g_previous)))
    growth, step = new_step / step, new_step
    x_previous, g_previous, x = x, g, x - new_step * g
    expected.append(x)

  adgd = cutest.scale_by_adgd(1e-3)
  params = jnp.array([1.0, -2.0, 0.5])
  state = adgd.init(params)
  update = jax.jit(adgd.update)
  for want in expected:
    updates, state = update(jnp.asarray(scales) * params, state)
    params = params + updates
    np.testing.assert_allclose(params, want, rtol=1e-12, atol=1e-14)


@pytest.mark.slow
@pytest.mark.usefixtures("x64")
def test_cutest_counts_every_objective_call():
  (problem,) = cutest.suite(["BEALE"])
  values = []  # of every call of the objective, in order

  def counted(x):
    value = problem.objective(x)
    # Callbacks run in a thread that enable_x64 does not reach, where a
    # float64 would arrive as a float32: send its bits.
    jax.debug.callback(
        lambda bits: values.append(np.asarray(bits).view(np.float64)[0]),
        jax.lax.bitcast_convert_type(value, jnp.uint32))
    return value

  lbfgs = cutest.methods()["lbfgs"]
  history, nonfinite, used = jax.device_get(cutest.make_runner(
      lbfgs, counted, problem.x0, problem.f_star, budget=60)())
  # lbfgs evaluates once, then once per line-search step: the count of the
  # runner is that of the calls (the last line search may pass the budget).
  assert len(values) == used >= 60
  record = cutest.record_of(history, nonfinite)
  # Each improvement is the value of the call it is counted at (a line
  # search accepts its last trial), and the best of the calls up to there.
  calls = np.array(values)
  np.testing.assert_array_equal(record.values, calls[record.evaluations - 1])
  accepted = np.minimum.accumulate(calls)[record.evaluations - 1]
  np.testing.assert_array_equal(record.values, accepted)
  assert record.evaluations[0] == 1 and record.nonfinite == 0


def test_cutest_tests_and_profiles_match_a_hand_count():
  Problem = cutest.Problem
  problems = [Problem("P", 1, 1.0, None, None), Problem("Q", 3, 0.0, None, None)]
  record = lambda pairs: cutest.Record(
      np.array([e for e, _ in pairs]), np.array([v for _, v in pairs]), 0)
  records = {  # f0 = 11 on P (whose f* 1 is wrong: b reaches 0.5), 4 on Q
      "a": {"P": record([(1, 11.0), (5, 1.5), (20, 1.0 + 1e-7)]),
            "Q": record([(1, 4.0), (9, 1e-4)])},
      "b": {"P": record([(1, 11.0), (30, 0.5)]),
            "Q": record([(1, 4.0), (40, 2e-3)])},
  }
  lowest = cutest.lowest_values(problems, records)
  assert lowest == {"P": 0.5, "Q": 1e-4}
  solve = lambda test, tol: cutest.evaluations_to_solve(
      problems, records, lowest, test, tol)
  assert solve("f*", 1e-6) == {"a": [20, None], "b": [30, None]}
  assert solve("f*", 1e-3) == {"a": [20, 9], "b": [30, None]}
  # Moré–Wild: f <= f_L + tol (f0 - f_L); at 1e-3, P: 0.5105, Q: 0.0041.
  assert solve("Moré–Wild", 1e-3) == {"a": [None, 9], "b": [30, 40]}
  assert cutest.geometric_mean_ratio([20, 9], [30, None]) == (20 / 30, 1)
  assert "| P | 1 | 0.5 | `b` | 5.0e-01 |" in cutest.suspicious_f_star(
      problems, records, lowest)

  table = {"a": [1, 4, None, 10], "b": [3, 2, 3, None], "c": [None] * 4}
  # Fewest per problem: 1, 2, 3, 10; ratios a: 1, 2, -, 1; b: 3, 1, 1, -.
  profile = cutest.performance_profile(table, np.array([1.0, 2.0, 3.0]))
  np.testing.assert_allclose(profile["a"], [2 / 4, 3 / 4, 3 / 4])
  np.testing.assert_allclose(profile["b"], [2 / 4, 2 / 4, 3 / 4])
  np.testing.assert_allclose(profile["c"], [0, 0, 0])
  # Evaluations / (n + 1) with n = 1, 3, 1, 4: a: 0.5, 1, -, 2.
  data = cutest.data_profile(table, [1, 3, 1, 4], np.array([0.5, 1.0, 2.0]))
  np.testing.assert_allclose(data["a"], [1 / 4, 2 / 4, 3 / 4])


@pytest.mark.slow
def test_cutest_runs_a_subset_and_reuses_its_results(tmp_path):
  text = cutest.main(["--problems", "BEALE", "ROSENBR", "--methods", "adgd",
                      "polyak-oracle", "--budget", "300", "--runs-dir",
                      str(tmp_path), "--no-compilation-cache"])
  assert (tmp_path / "cutest.png").stat().st_size > 0
  with jax.enable_x64(True):
    problems = cutest.suite(["BEALE", "ROSENBR"])
    contenders = {name: cutest.methods()[name]
                  for name in ("adgd", "polyak-oracle")}
    cache = cutest._Cache(str(tmp_path), {  # pylint: disable=protected-access
        name: cutest.fingerprint(method, 300)
        for name, method in contenders.items()})
    records, made, reused = cutest.run_suite(problems, contenders, 300, cache)
  assert (made, reused) == (0, 4)
  # Both start at f(y0): BEALE's y0 is (1, 1), ROSENBR's (-1.2, 1).
  beale = lambda x, y: ((1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2
                        + (2.625 - x + x * y**3) ** 2)
  assert records["adgd"]["BEALE"].f0 == pytest.approx(beale(1.0, 1.0))
  assert records["adgd"]["ROSENBR"].f0 == pytest.approx(24.2)
  # The report's per-problem rows are the cached records' counts.
  for problem in problems:
    cells = [
        cutest._cell(records[name][problem.name].first_reaching(  # pylint: disable=protected-access
            1e-6 * max(1.0, abs(problem.f_star)) + problem.f_star))
        for name in contenders]
    lowest = min(records[name][problem.name].best for name in contenders)
    assert (f"| {problem.name} | 2 | {problem.f_star:.7g} | {lowest:.7g} | "
            + " | ".join(cells) + " |") in text


@pytest.mark.parametrize("argv,writes,with_cutest", [
    (["--quick"], False, False),
    ([], True, True),
    (["--no-write"], False, True),
])
def test_only_the_full_run_all_regenerates_the_committed_results(
    monkeypatch, argv, writes, with_cutest):
  from benchmarks import run_all  # pylint: disable=g-import-not-at-top
  calls = {}
  for module in (convergence, step_cost, training, cutest):
    monkeypatch.setattr(module, "main",
                        lambda flags, name=module.__name__:
                        calls.setdefault(name, flags))
  run_all.main(argv)
  assert ("benchmarks.cutest" in calls) == with_cutest
  for name, flags in calls.items():
    assert ("--write-results" in flags) == writes, (name, flags)


def test_ordinary_runs_write_to_the_git_ignored_run_directory():
  from benchmarks import _common  # pylint: disable=g-import-not-at-top
  directory = _common.output_directory("convergence", write_results=False)
  assert directory.endswith(os.path.join("runs", "convergence"))
  assert _common.output_directory("convergence", True) == _common.RESULTS
  ignored = subprocess.run(
      ["git", "check-ignore", "-q", os.path.join(directory, "x.md")],
      cwd=os.path.dirname(_common.RESULTS), check=False)
  if (pathlib.Path(_common.RESULTS).parents[1] / ".git").exists():
    assert ignored.returncode == 0


def test_step_cost_counts_identical_kernels_once():
  # Leaves of one shape compile to kernels that read alike: the distinct
  # count stays that of one leaf while the kernel count grows with them.
  optimizer = optax.sgd(0.1, 0.9, nesterov=True)
  one = step_cost.compiled_kernels(optimizer, {"a": jnp.ones((64, 32))})
  four = step_cost.compiled_kernels(
      optimizer, {k: jnp.ones((64, 32)) for k in "abcd"})
  assert four[0] == 4 * one[0]
  assert four[1] == one[1]
