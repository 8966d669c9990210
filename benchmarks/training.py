"""Training: time to a target test accuracy, with and without a learning rate.

Two real, offline tasks: scikit-learn's digits with the examples' CNN
(``nagd_optax.problems.cnn``) at half width (target 97% test accuracy) and
MNIST-1D (generated locally by ``nagd_optax.problems.load_mnist1d``; a 1D CNN,
target 93%). Every run trains with minibatches of 64, measures test accuracy
every ``EVAL_EVERY`` steps and stops at the target; the wall time of the
jitted training steps (not compile time, not evaluation) is summed. A seed
fixes the initialisation, the batch order and (digits) the train/test split.

1. Time to target, 3 seeds: ``nagd.nagd("auto")`` at its defaults (no
   learning rate); nagd (restart="loss" with loss_smoothing=0.98, and
   restart="gradient"), optax.sgd(nesterov=True), optax.adamw and
   optax.nadamw with momentum 0.9 (b1 for Adam) and the learning rate tuned
   on a grid (the one with the fewest median steps over the seeds); and
   Optax's parameter-free methods at their defaults (contrib.dog, prodigy,
   dadapt_adamw, cocob, schedule_free_sgd, mechanize(sgd(1.0, nesterov))).
2. The automatic step's one scale knob, ``nagd.auto_step(initial_step=...)``,
   over 4 decades, and a start 10x too large.
3. Per-step cost of ``nagd.nagd("auto")`` against optax.sgd(nesterov=True):
   the whole jitted training step, and the optimizer update alone.
4. Robustness of the tuned methods (seed 0): learning rate x momentum in
   {0.9, 0.95, 0.99}; in how many cells does each reach the target?

Run:  python -m benchmarks.training [--quick] [--write-results]
Writes runs/training/ (git-ignored); with --write-results
benchmarks/results/training.md, training.png and training_momentum.png.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax import contrib

import nagd_optax as nagd
from benchmarks import _common
from benchmarks import step_cost

EVAL_EVERY = 25
BATCH_SIZE = 64
SEEDS = (0, 1, 2)
BUDGETS = {"digits": 1000, "mnist1d": 2000}  # steps


class CNN1D(nnx.Module):
  """Three 1D convolutions and a linear read-out, for MNIST-1D (length 40)."""

  def __init__(self, rngs: nnx.Rngs, width: int = 16):
    self.conv1 = nnx.Conv(1, width, (5,), rngs=rngs)
    self.conv2 = nnx.Conv(width, width, (3,), rngs=rngs)
    self.conv3 = nnx.Conv(width, width, (3,), rngs=rngs)
    self.head = nnx.Linear(width * 10, 10, rngs=rngs)

  def __call__(self, x):
    x = nnx.relu(self.conv1(x))
    x = nnx.avg_pool(nnx.relu(self.conv2(x)), (2,), strides=(2,))
    x = nnx.avg_pool(nnx.relu(self.conv3(x)), (2,), strides=(2,))
    return self.head(x.reshape(x.shape[0], -1))


def digits_task(seed: int = 0):
  graphdef, params = nnx.split(
      nagd.problems.cnn(side=8, rngs=nnx.Rngs(seed), width=16, hidden=64),
      nnx.Param)
  return dict(
      name="digits (CNN)", key="digits", seed=seed, target=0.97,
      graphdef=graphdef, params=params,
      data=tuple(map(jnp.asarray, nagd.problems.load_digits(seed))),
  )


def mnist1d_task(seed: int = 0):
  graphdef, params = nnx.split(CNN1D(nnx.Rngs(seed)), nnx.Param)
  return dict(
      name="MNIST-1D (1D CNN)", key="mnist1d", seed=seed, target=0.93,
      graphdef=graphdef, params=params,
      # Generated locally (~1 s), the same data for every seed.
      data=tuple(map(jnp.asarray, nagd.problems.load_mnist1d())),
  )


TASKS = (digits_task, mnist1d_task)

# Tuned methods: kind -> (factory, fixed arguments, name of its momentum
# argument). All are built with optax.inject_hyperparams, so the learning
# rate and momentum are state, and one compiled training step serves a grid.
OPTIMIZERS = {
    "nagd restart=loss": (
        nagd.nagd, dict(restart="loss", loss_smoothing=0.98), "momentum"),
    "nagd restart=gradient": (
        nagd.nagd, dict(restart="gradient"), "momentum"),
    "optax.sgd(nesterov=True)": (optax.sgd, dict(nesterov=True), "momentum"),
    "optax.adamw": (optax.adamw, dict(weight_decay=1e-4), "b1"),
    "optax.nadamw": (optax.nadamw, dict(weight_decay=1e-4), "b1"),
}
# The tuned baselines of the automatic step's bar.
TUNED_BASELINES = ("optax.sgd(nesterov=True)", "optax.adamw")

AUTO = 'nagd.nagd("auto")'
# Methods without a learning rate, at their defaults: label -> (factory,
# parameters to evaluate (None: the iterate itself)).
UNTUNED = {
    AUTO: (lambda: nagd.nagd("auto"), None),
    "optax.contrib.dadapt_adamw": (contrib.dadapt_adamw, None),
    "optax.contrib.prodigy": (contrib.prodigy, None),
    "optax.contrib.dog": (contrib.dog, None),
    "optax.contrib.cocob": (contrib.cocob, None),
    # Schedule-free SGD is evaluated where its authors evaluate it.
    "optax.contrib.schedule_free_sgd": (
        contrib.schedule_free_sgd, contrib.schedule_free_eval_params),
    # Mechanic scales its base optimizer's updates; the base runs at lr 1.
    "optax.contrib.mechanize(sgd(1.0, 0.9, nesterov))": (
        lambda: contrib.mechanize(optax.sgd(1.0, 0.9, nesterov=True)), None),
}


def optimizer(kind: str, learning_rate: float, momentum: float):
  factory, fixed, momentum_name = OPTIMIZERS[kind]
  return optax.inject_hyperparams(factory)(
      learning_rate=learning_rate, **{momentum_name: momentum}, **fixed
  )


def learning_rate_grid(kind: str, quick: bool):
  if "adam" in kind:
    return (3e-3,) if quick else (3e-4, 1e-3, 3e-3, 1e-2)
  return (0.1,) if quick else (0.01, 0.03, 0.1, 0.3)


_RESULTS: dict = {}
_COMPILED: dict = {}


def compiled_functions(task, key, tx, params, state, eval_params=None):
  """The jitted training step and accuracy of (task, key), compiled once.

  ``key`` names the compiled optimizer: injected hyperparameters are state,
  so one key serves every learning rate; the data are arguments, so one key
  serves every seed.
  """
  key = (task["key"], key)
  if key in _COMPILED:
    return _COMPILED[key]
  graphdef = task["graphdef"]

  def loss_fn(params, x, y):
    logits = nnx.merge(graphdef, params)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def step(params, state, x, y, index):
    loss, grads = jax.value_and_grad(loss_fn)(params, x[index], y[index])
    updates, state = tx.update(grads, state, params, value=loss)
    return optax.apply_updates(params, updates), state

  def accuracy(params, state, x, y):
    if eval_params is not None:
      params = eval_params(state, params)
    logits = nnx.merge(graphdef, params)(x)
    return jnp.mean(jnp.argmax(logits, -1) == y)

  # One jitted step, called in a Python loop: inside an XLA:CPU while loop
  # (lax.scan) the convolutions lose their fast kernels (~20x slower here),
  # and an unrolled scan takes long to compile.
  x_train, y_train, x_test, y_test = task["data"]
  index = np.zeros(BATCH_SIZE, np.int32)
  _COMPILED[key] = (
      jax.jit(step).lower(params, state, x_train, y_train, index).compile(),
      jax.jit(accuracy).lower(params, state, x_test, y_test).compile(),
  )
  return _COMPILED[key]


def batches(task, seed: int):
  """The minibatch indices of a run, EVAL_EVERY steps at a time."""
  rng = np.random.default_rng(seed)
  while True:
    yield rng.integers(0, len(task["data"][0]),
                       (EVAL_EVERY, BATCH_SIZE)).astype(np.int32)


def run(task, tx, key, max_steps: int, eval_params=None):
  """Steps and training seconds to reach the target (steps None if never),
  and the final optimizer state."""
  params = task["params"]
  state = tx.init(params)
  step, accuracy = compiled_functions(task, key, tx, params, state,
                                      eval_params)
  x_train, y_train, x_test, y_test = task["data"]
  seconds = 0.0
  for done, indices in zip(range(EVAL_EVERY, max_steps + 1, EVAL_EVERY),
                           batches(task, task["seed"])):
    start = time.perf_counter()
    for index in indices:
      params, state = step(params, state, x_train, y_train, index)
    jax.block_until_ready(params)
    seconds += time.perf_counter() - start
    if float(accuracy(params, state, x_test, y_test)) >= task["target"]:
      return done, seconds, state
    if not all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(params)):
      return None, seconds, state
  return None, seconds, state


def run_tuned(task, kind, learning_rate, momentum, max_steps):
  """``run`` of a tuned method, once per configuration and seed."""
  key = (task["key"], task["seed"], kind, learning_rate, momentum, max_steps)
  if key not in _RESULTS:
    steps, seconds, _ = run(task, optimizer(kind, learning_rate, momentum),
                            kind, max_steps)
    _RESULTS[key] = steps, seconds
  return _RESULTS[key]


def run_untuned(task, label, tx, eval_params, max_steps):
  """``run`` of a method without a learning rate, once per label and seed;
  also its final step size, where its state has one (nagd's auto step)."""
  key = (task["key"], task["seed"], label, max_steps)
  if key not in _RESULTS:
    steps, seconds, state = run(
        task, optax.with_extra_args_support(tx), label, max_steps,
        eval_params)
    step_size = optax.tree.get(state, "step_size")
    step_size = None if step_size is None else float(step_size)
    _RESULTS[key] = steps, seconds, step_size
  return _RESULTS[key]


# Summaries over seeds: steps to target (None: not reached) count as
# infinitely many, so a median is finite only if most seeds got there.
def median_steps(steps) -> float:
  return float(np.median([np.inf if s is None else s for s in steps]))


def format_steps(value: float, budget: int) -> str:
  return f"> {budget}" if np.isinf(value) else f"{value:g}"


def per_seed(steps) -> str:
  return " / ".join("-" if s is None else str(s) for s in steps)


def time_to_target(make_task, seeds, budget, quick, untuned=None, tuned=None):
  """Rows of the time-to-target table and, per method, its per-seed steps
  (at its best learning rate for the tuned ones)."""
  tasks = [make_task(seed) for seed in seeds]
  rows, steps_by_method = [], {}
  for label in UNTUNED if untuned is None else untuned:
    factory, eval_params = UNTUNED[label]
    results = [run_untuned(task, label, factory(), eval_params, budget)
               for task in tasks]
    steps = [r[0] for r in results]
    print(f"  {label}: {per_seed(steps)} steps", flush=True)
    steps_by_method[label] = steps
    rows.append((label, "-", per_seed(steps),
                 format_steps(median_steps(steps), budget),
                 f"{statistics.median(r[1] for r in results):.2f}", "-"))
  for kind in OPTIMIZERS if tuned is None else tuned:
    grid = learning_rate_grid(kind, quick)
    tried = {lr: [run_tuned(task, kind, lr, 0.9, budget) for task in tasks]
             for lr in grid}
    # Steps decide (wall times on a shared machine are noisy): the fewest
    # median steps over the seeds, then the fewest mean steps.
    def order(lr):
      steps = [r[0] for r in tried[lr]]
      finite = [s for s in steps if s is not None]
      return (median_steps(steps), -len(finite),
              np.mean(finite) if finite else np.inf)
    best = min(grid, key=order)
    steps = [r[0] for r in tried[best]]
    print(f"  {kind}: {per_seed(steps)} steps at its best lr {best:g}",
          flush=True)
    steps_by_method[kind] = steps
    cells = ", ".join(
        f"{lr:g}: "
        f"{format_steps(median_steps([r[0] for r in tried[lr]]), budget)}"
        for lr in grid)
    rows.append((kind, f"{best:g}", per_seed(steps),
                 format_steps(median_steps(steps), budget),
                 f"{statistics.median(r[1] for r in tried[best]):.2f}",
                 cells))
  return rows, steps_by_method


def ten_x_initial_step(task) -> float:
  """The ``initial_step`` whose first update is that of
  ``optax.sgd(1.0, 0.9, nesterov=True)``: a learning rate 10x the tuned 0.1.

  The auto step's first update moves the parameters by ``initial_step *
  max(1, ||y_0||)`` along its first direction :math:`d_0`, which with
  momentum 0.9 is Nesterov SGD's: so this is ``||d_0|| / max(1, ||y_0||)``
  with :math:`d_0` the first update of Nesterov SGD at learning rate 1, on
  the run's first minibatch.
  """
  x_train, y_train = task["data"][:2]
  index = next(batches(task, task["seed"]))[0]
  graphdef, params = task["graphdef"], task["params"]

  def loss_fn(params):
    logits = nnx.merge(graphdef, params)(x_train[index])
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, y_train[index]).mean()

  sgd = optax.sgd(1.0, 0.9, nesterov=True)
  grads = jax.jit(jax.grad(loss_fn))(params)
  first, _ = sgd.update(grads, sgd.init(params), params)
  return float(optax.tree.norm(first) / max(1.0, optax.tree.norm(params)))


def initial_step_sweep(make_task, seeds, budget, initial_steps):
  """Per setting of ``initial_step`` (and "10x"): per-seed steps, the final
  step sizes, and the 10x start's initial_step per seed."""
  tasks = [make_task(seed) for seed in seeds]
  results, ten_x = {}, []
  for setting in initial_steps:
    cells = []
    for task in tasks:
      if setting == "10x":
        value = ten_x_initial_step(task)
        ten_x.append(value)
        label = f"{AUTO} 10x start, seed {task['seed']}"
      else:
        value = setting
        label = (AUTO if setting == nagd.auto_step().initial_step
                 else f"{AUTO} initial_step={setting:g}")
      tx = (nagd.nagd("auto") if label == AUTO
            else nagd.nagd(nagd.auto_step(initial_step=value)))
      cells.append(run_untuned(task, label, tx, None, budget))
    results[setting] = cells
  return results, ten_x


def whole_step_runs(task, optimizers, steps: int = 50):
  """Per optimizer, a function running one jitted training step (forward,
  backward, update) from its own carry, over a fixed cycle of batches."""
  x_train, y_train = task["data"][:2]
  indices = np.random.default_rng(0).integers(
      0, len(x_train), (steps, BATCH_SIZE)).astype(np.int32)
  runs = {}
  for name, tx in optimizers.items():
    params = task["params"]
    state = tx.init(params)
    step, _ = compiled_functions(task, ("cost", name), tx, params, state)
    carry = [params, state, 0]

    def run_one(step=step, carry=carry):
      index = indices[carry[2] % steps]
      carry[0], carry[1] = step(carry[0], carry[1], x_train, y_train, index)
      carry[2] += 1
      return carry[0]

    for _ in range(5):  # warm up (and leave the first, special steps)
      run_one()
    runs[name] = run_one
  return runs


def cost_optimizers():
  return {
      "optax.sgd(nesterov=True)": optax.sgd(0.1, 0.9, nesterov=True),
      "nagd.nagd(0.1, 0.9)": nagd.nagd(0.1, 0.9),
      AUTO: nagd.nagd("auto"),
  }


def per_step_cost(make_task, rounds, repeats):
  """Per task and per measurement (whole step, update alone): per optimizer,
  (median ms, ratio to Optax, lowest and highest block ratio).

  ``repeats``: steps per sample of the whole step; the update alone, about
  a tenth of that, takes 4x as many.
  """
  baseline = "optax.sgd(nesterov=True)"
  out = {}
  for make in make_task:
    task = make(0)
    measured = {}
    runs = whole_step_runs(task, cost_optimizers())
    _common.interleaved_samples(runs, 1, repeats)  # a round to warm up
    samples = _common.interleaved_samples(runs, rounds, repeats)
    measured["whole training step"] = samples
    params = task["params"]
    grads = jax.tree.map(lambda p: 1e-2 * p, params)
    runs = {name: step_cost.make_step(tx, jax.tree.map(jnp.copy, params),
                                      grads)[0]
            for name, tx in cost_optimizers().items()}
    _common.interleaved_samples(runs, 1, 4 * repeats)
    measured["update + apply_updates"] = _common.interleaved_samples(
        runs, rounds, 4 * repeats)
    out[task["name"]] = {
        what: {name: (1e3 * statistics.median(s),) + ratio
               for (name, s), ratio in zip(
                   samples.items(),
                   _common.median_ratios(samples, baseline).values())}
        for what, samples in measured.items()
    }
  return out


def robustness(task, kinds, momenta, max_steps, quick):
  """Table rows, and per optimizer its grid of steps (momentum x lr; NaN:
  target not reached)."""
  rows, grids = [], {}
  for kind in kinds:
    grid = learning_rate_grid(kind, quick)
    steps = np.full((len(momenta), len(grid)), np.nan)
    for i, momentum in enumerate(momenta):
      for j, lr in enumerate(grid):
        reached, _ = run_tuned(task, kind, lr, momentum, max_steps)
        steps[i, j] = np.nan if reached is None else reached
    grids[kind] = (grid, steps)
    cells = [f"{momentum:g}/{lr:g}: "
             f"{'-' if np.isnan(steps[i, j]) else int(steps[i, j])}"
             for i, momentum in enumerate(momenta)
             for j, lr in enumerate(grid)]
    rows.append((kind, f"{int(np.sum(~np.isnan(steps)))} / {steps.size}",
                 "; ".join(cells)))
  return rows, grids


def plot_time_to_target(steps_by_task, budgets, bars, name,
                        directory=_common.RESULTS):
  """Per task, each method's steps to target per seed (crosses at the right
  edge: not reached), with the automatic step's bar."""
  plt = _common.pyplot()
  tasks = list(steps_by_task)
  labels = list(steps_by_task[tasks[0]])
  figure, axes = plt.subplots(
      1, len(tasks), sharey=True, squeeze=False,
      figsize=(7 * len(tasks), 0.32 * len(labels) + 1.5))
  for axis, task_name in zip(axes[0], tasks):
    budget = budgets[task_name]
    for row, label in enumerate(labels[::-1]):
      steps = steps_by_task[task_name][label]
      color = "tab:red" if '("auto")' in label else "tab:blue"
      reached = [s for s in steps if s is not None]
      axis.scatter(reached, [row] * len(reached), color=color, s=18,
                   alpha=0.7)
      missed = len(steps) - len(reached)
      if missed:
        axis.scatter([budget * 1.02] * missed, [row] * missed, marker="x",
                     color="k", s=24)
    axis.axvline(bars[task_name], color="tab:red", linestyle="--", lw=1)
    axis.set_yticks(range(len(labels)), [
        label.replace("optax.contrib.", "").replace("), ", "),\n")
        .replace("mechanize(", "mechanize(\n") for label in labels[::-1]
    ], fontsize=7)
    axis.set(title=task_name, xlim=(0, budget * 1.05),
             xlabel="steps to target (one dot per seed; x: not reached;"
             "\ndashed: 1.3x the tuned-grid best median)")
    axis.grid(axis="x", alpha=0.3)
  return _common.save_figure(figure, name, directory)


def plot_momentum(grids_by_task, momenta, name, directory=_common.RESULTS):
  """One panel per task and optimizer: steps to target over momentum x
  learning rate; blank cells never reached it."""
  plt = _common.pyplot()
  tasks = list(grids_by_task)
  kinds = list(grids_by_task[tasks[0]])
  figure, axes = plt.subplots(len(tasks), len(kinds), squeeze=False,
                              figsize=(3.2 * len(kinds), 2.8 * len(tasks)))
  for row, task_name in enumerate(tasks):
    # One colour scale per task: its slowest run that reached the target.
    slowest = np.nanmax([np.nanmax(s) for _, s in
                         grids_by_task[task_name].values()])
    for column, kind in enumerate(kinds):
      axis = axes[row, column]
      grid, steps = grids_by_task[task_name][kind]
      axis.imshow(steps, cmap="viridis_r", aspect="auto", vmin=0,
                  vmax=slowest)
      for (i, j), value in np.ndenumerate(steps):
        axis.text(j, i, "-" if np.isnan(value) else int(value),
                  ha="center", va="center", fontsize=8, color="w")
      axis.set_xticks(range(len(grid)), [f"{lr:g}" for lr in grid],
                      fontsize=7)
      axis.set_yticks(range(len(momenta)), [f"{m:g}" for m in momenta],
                      fontsize=7)
      axis.set_title(f"{task_name}\n{kind}", fontsize=8)
      axis.set(xlabel="learning rate", ylabel="momentum (b1)")
      axis.set_facecolor("0.85")  # NaN cells: never reached the target
  return _common.save_figure(figure, name, directory)


def verdict(met: bool) -> str:
  return "**met**" if met else "**not met**"


def main(argv=None) -> str:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="one seed, one learning rate, half budgets")
  parser.add_argument("--write-results", action="store_true",
                      help="write benchmarks/results/ (else runs/)")
  parser.add_argument("--no-write", action="store_true")
  args = parser.parse_args(argv)

  seeds = SEEDS[:1] if args.quick else SEEDS
  momenta = (0.9, 0.99) if args.quick else (0.9, 0.95, 0.99)
  initial_steps = ((1e-6, 1e-3, "10x") if args.quick else
                   (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, "10x"))
  rounds, repeats = (3, 10) if args.quick else (30, 50)
  command = "nice -n 5 python -m benchmarks.training" + (
      " --quick" if args.quick else "") + (
          " --write-results" if args.write_results else "")
  start = time.perf_counter()
  sections = [
      "# Training: time to target, with and without a learning rate\n",
      f"Machine and versions: {_common.environment()}; a 2-core CPU shared"
      " with other jobs while this ran. Run on"
      f" {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
      f" with `{command}`.\n",
      f"Minibatches of {BATCH_SIZE}, test accuracy every {EVAL_EVERY} steps"
      " (so steps are multiples of it); time = jitted training steps only"
      " (compile and evaluation excluded), on a shared machine: compare steps,"
      " and seconds only within a table. Seeds "
      f"{', '.join(map(str, seeds))}; a seed fixes the initialisation, the"
      " batch order and (digits) the split. Runs are chaotic: the same"
      " method with a numerically different but equivalent implementation"
      " moves single runs by 1-3 evaluations, so read single cells as"
      " +-50 steps.\n",
  ]
  steps_by_task, bar_by_task, budget_by_task, bars = {}, {}, {}, []
  grids_by_task = {}
  for make in TASKS:
    task_name, task_key = make(0)["name"], make(0)["key"]
    print(f"{task_name}: time to target", flush=True)
    budget = BUDGETS[task_key] // (2 if args.quick else 1)
    target = make(0)["target"]
    rows, steps = time_to_target(make, seeds, budget, args.quick)
    sections.append(f"## {task_name}: to {target:.0%} test accuracy within"
                    f" {budget} steps\n")
    sections.append(
        "Steps to target per seed ('-': not reached), their median (a seed"
        " that missed counts as infinitely many) and the median training"
        " seconds. Tuned methods: momentum (Adam: b1) 0.9 and the learning"
        " rate of the grid in the last column (median steps per learning"
        " rate) with the fewest median steps; the others at their defaults"
        " (no learning rate given).\n")
    sections.append(_common.markdown_table(
        ["method", "lr", "steps per seed", "median steps", "median s",
         "grid (lr: median steps)"], rows) + "\n")

    sweep, ten_x = initial_step_sweep(make, seeds, budget, initial_steps)
    sweep_rows = []
    for setting, cells in sweep.items():
      name = ("10x start" if setting == "10x" else
              f"initial_step={setting:g}" + (
                  " (default)" if setting == nagd.auto_step().initial_step
                  else ""))
      sweep_rows.append((
          name, per_seed([c[0] for c in cells]),
          format_steps(median_steps([c[0] for c in cells]), budget),
          " / ".join("-" if c[2] is None else f"{c[2]:.3g}" for c in cells)))
      steps[f'nagd("auto"), {name}'] = [c[0] for c in cells]
    sections.append(
        f"### {AUTO}: its scale knob and a 10x start\n\n"
        "`nagd.nagd(nagd.auto_step(initial_step=...))`: the first update"
        " moves the parameters by `initial_step * max(1, ||y_0||)`; only the"
        " first update uses it (from then on the curvature estimate sets the"
        " step, and the trust region caps every update at 2% of the"
        " parameters' norm). The 10x start sets `initial_step` so that the"
        " first update is that of `optax.sgd(1.0, 0.9, nesterov=True)`,"
        " 10x Nesterov SGD's tuned learning rate 0.1: initial_step = "
        + ", ".join(f"{v:.3g}" for v in ten_x) + " per seed"
        + (" (above the trust ratio 0.02, so the trust region caps that"
           " first update)" if min(ten_x) > 0.02 else "")
        + ". Last column: the step size at the end of each run.\n")
    sections.append(_common.markdown_table(
        ["setting", "steps per seed", "median steps",
         "final step size per seed"], sweep_rows) + "\n")

    # The bars.
    auto = median_steps(steps[AUTO])
    tuned = {kind: median_steps(steps[kind]) for kind in TUNED_BASELINES}
    best_kind = min(tuned, key=tuned.get)
    bar = 1.3 * tuned[best_kind]
    steps_by_task[task_name] = steps
    bar_by_task[task_name] = bar
    budget_by_task[task_name] = budget
    bars.append(
        f"- {task_name}: {AUTO} median {format_steps(auto, budget)} steps vs"
        f" tuned-grid best {best_kind} {format_steps(tuned[best_kind], budget)}"
        f" (ratio {auto / tuned[best_kind]:.2f}; bar 1.3x):"
        f" {verdict(auto <= bar)}.")
    fastest = min(OPTIMIZERS, key=lambda kind: median_steps(steps[kind]))
    bars.append(
        f"- {task_name}, for comparison: the fastest tuned method of the"
        f" table, {fastest}, takes"
        f" {format_steps(median_steps(steps[fastest]), budget)} median steps"
        f" ({AUTO}: {auto / median_steps(steps[fastest]):.2f}x).")
    for peer in ("optax.contrib.dadapt_adamw", "optax.contrib.prodigy"):
      other = median_steps(steps[peer])
      bars.append(
          f"- {task_name}: goal, match or beat {peer} at its defaults"
          f" ({format_steps(other, budget)} median steps):"
          f" {verdict(auto <= other)}.")
    missed = sum(c[0] is None for cells in sweep.values() for c in cells)
    bars.append(
        f"- {task_name}: target reached in every initial_step setting and"
        f" from the 10x start, every seed ({missed} of"
        f" {sum(len(c) for c in sweep.values())} runs missed):"
        f" {verdict(missed == 0)}.")

    sections.append(f"### Robustness of the tuned methods: momentum x"
                    f" learning rate, seed 0, {budget} steps\n")
    task = make(0)
    rows, grids_by_task[task_name] = robustness(
        task, list(OPTIMIZERS), momenta, budget, args.quick)
    sections.append(_common.markdown_table(
        ["optimizer", "cells reaching the target",
         "momentum/lr: steps"], rows) + "\n")

  costs = per_step_cost(TASKS, rounds, repeats)
  sections.append(
      f"## Per-step cost of {AUTO}\n\n"
      f"Median time per step over {rounds} interleaved rounds of {repeats}"
      f" steps (update alone: {4 * repeats} steps); ratio = median / median"
      " of optax.sgd(0.1, 0.9, nesterov=True) in the same process; range:"
      " the lowest and highest ratio over three consecutive blocks of"
      " rounds. Whole training step: forward, backward"
      " and update, jitted, on the task's minibatches (seed 0's network);"
      " update + apply_updates: the optimizer alone on the same parameter"
      " tree, fixed gradients, buffers donated (as in"
      " `benchmarks/step_cost.py`).\n")
  cost_rows = []
  for task_name, measured in costs.items():
    for what, by_name in measured.items():
      for name, (ms, ratio, low, high) in by_name.items():
        cost_rows.append((task_name, what, name, f"{ms:.3f}", f"{ratio:.2f}",
                          f"{low:.2f}-{high:.2f}"))
      ratio = by_name[AUTO][1]
      bars.append(f"- {task_name}, {what}: {AUTO} costs {ratio:.2f}x"
                  f" optax.sgd(nesterov=True) per step (bar 1.2x):"
                  f" {verdict(ratio <= 1.2)}.")
  sections.append(_common.markdown_table(
      ["task", "measured", "optimizer", "ms / step", "ratio to Optax",
       "ratio range"], cost_rows) + "\n")

  sections.append("## The bars of the automatic step\n")
  sections.append("\n".join(bars) + "\n")
  sections.append(
      "![time to target](training.png)\n\nSteps to the target, one dot per"
      f" seed ({AUTO} in red); dashed: 1.3x the tuned-grid best median.\n")
  sections.append(
      "![momentum robustness](training_momentum.png)\n\nSteps to the target"
      " per momentum and learning rate, seed 0; '-': not reached.\n")
  sections.append(f"Ran in {time.perf_counter() - start:.0f} s.")
  text = "\n".join(sections)
  print(text)
  if not args.no_write:
    directory = _common.output_directory("training", args.write_results)
    print("wrote", _common.write("training.md", text, directory))
    print("wrote", plot_time_to_target(steps_by_task, budget_by_task,
                                       bar_by_task, "training.png", directory))
    print("wrote", plot_momentum(grids_by_task, momenta,
                                 "training_momentum.png", directory))
  return text


if __name__ == "__main__":
  main()
