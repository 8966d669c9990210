"""Training: time to a target test accuracy, and robustness to momentum.

Two real, offline tasks: scikit-learn's digits with the examples' CNN
(``nagd_optax.problems.cnn``) at half width (target 97% test accuracy) and
MNIST-1D (generated locally by ``nagd_optax.problems.load_mnist1d``; a 1D CNN,
target 93%). Every run trains with
minibatches of 64 at a constant learning rate, measures test accuracy every
``EVAL_EVERY`` steps and stops at the target; the wall time of the jitted
training steps (not compile time, not evaluation) is summed.

1. Time to target: nagd (restart="loss" with loss_smoothing=0.98, and
   restart="gradient"), optax.sgd(nesterov=True), optax.adamw and
   optax.nadamw, momentum 0.9 (b1 for Adam), each with its learning rate
   tuned on a small grid (the grid and every result are reported).
2. Robustness: learning rate x momentum in {0.9, 0.95, 0.99}; in how many
   cells does each optimizer reach the target within the budget? Restart
   should make high momentum safe: the table shows whether it does.

Run:  python -m benchmarks.training [--quick]
Writes results/training.md and results/training.png.
"""

from __future__ import annotations

import argparse
import time

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import nagd_optax as nagd
from benchmarks import _common

EVAL_EVERY = 25
BATCH_SIZE = 64


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
      name="digits (CNN)", target=0.97, graphdef=graphdef, params=params,
      data=nagd.problems.load_digits(seed),
  )


def mnist1d_task(seed: int = 0):
  graphdef, params = nnx.split(CNN1D(nnx.Rngs(seed)), nnx.Param)
  return dict(
      name="MNIST-1D (1D CNN)", target=0.93, graphdef=graphdef, params=params,
      data=nagd.problems.load_mnist1d(),  # generated locally, ~1 s
  )


# kind -> (factory, fixed arguments, name of its momentum argument). All are
# built with optax.inject_hyperparams, so the learning rate and momentum are
# state, and one compiled training step serves a whole grid.
OPTIMIZERS = {
    "nagd restart=loss": (
        nagd.nagd, dict(restart="loss", loss_smoothing=0.98), "momentum"),
    "nagd restart=gradient": (
        nagd.nagd, dict(restart="gradient"), "momentum"),
    "optax.sgd(nesterov=True)": (optax.sgd, dict(nesterov=True), "momentum"),
    "optax.adamw": (optax.adamw, dict(weight_decay=1e-4), "b1"),
    "optax.nadamw": (optax.nadamw, dict(weight_decay=1e-4), "b1"),
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


def run_cached(task, kind, learning_rate, momentum, max_steps):
  """``run`` once per configuration (the two studies share the 0.9 cells)."""
  key = (task["name"], kind, learning_rate, momentum, max_steps)
  if key not in _RESULTS:
    _RESULTS[key] = run(task, kind, learning_rate, momentum, max_steps)
  return _RESULTS[key]


def compiled_functions(task, kind, params, state):
  """The jitted training step and accuracy of (task, kind), compiled once."""
  key = (task["name"], kind)
  if key in _COMPILED:
    return _COMPILED[key]
  x_train, y_train, x_test, y_test = map(jnp.asarray, task["data"])
  graphdef = task["graphdef"]
  tx = optimizer(kind, 0.0, 0.0)  # the values live in the state

  def loss_fn(params, x, y):
    logits = nnx.merge(graphdef, params)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def step(params, state, index):
    loss, grads = jax.value_and_grad(loss_fn)(params, x_train[index],
                                              y_train[index])
    updates, state = tx.update(grads, state, params, value=loss)
    return optax.apply_updates(params, updates), state

  def accuracy(params):
    logits = nnx.merge(graphdef, params)(x_test)
    return jnp.mean(jnp.argmax(logits, -1) == y_test)

  # One jitted step, called in a Python loop: inside an XLA:CPU while loop
  # (lax.scan) the convolutions lose their fast kernels (~20x slower here),
  # and an unrolled scan takes long to compile.
  index = np.zeros(BATCH_SIZE, np.int32)
  _COMPILED[key] = (
      jax.jit(step).lower(params, state, index).compile(),
      jax.jit(accuracy).lower(params).compile(),
  )
  return _COMPILED[key]


def run(task, kind, learning_rate, momentum, max_steps: int, seed: int = 0):
  """Steps and training seconds to reach the target (None if never)."""
  params = task["params"]
  state = optimizer(kind, learning_rate, momentum).init(params)
  step, accuracy = compiled_functions(task, kind, params, state)
  rng = np.random.default_rng(seed)
  seconds = 0.0
  for done in range(EVAL_EVERY, max_steps + 1, EVAL_EVERY):
    indices = rng.integers(0, len(task["data"][0]),
                           (EVAL_EVERY, BATCH_SIZE)).astype(np.int32)
    start = time.perf_counter()
    for index in indices:
      params, state = step(params, state, index)
    jax.block_until_ready(params)
    seconds += time.perf_counter() - start
    if float(accuracy(params)) >= task["target"]:
      return done, seconds
    if not all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(params)):
      return None, seconds
  return None, seconds


def time_to_target(task, kinds, max_steps, quick):
  """Per optimizer: every grid point's result, and the best."""
  rows, results = [], {}
  for kind in kinds:
    grid = learning_rate_grid(kind, quick)
    tried = {lr: run_cached(task, kind, lr, 0.9, max_steps) for lr in grid}
    reached = {lr: r for lr, r in tried.items() if r[0] is not None}
    # Steps decide (wall times on a shared machine are noisy); time breaks
    # ties.
    best = min(reached, key=lambda lr: reached[lr]) if reached else None
    results[kind] = (best, tried)
    cells = ", ".join(
        f"{lr:g}: {'-' if r[0] is None else r[0]}" for lr, r in tried.items())
    if best is None:
      rows.append((kind, "-", f"> {max_steps}", "-", cells))
    else:
      steps, seconds = tried[best]
      rows.append((kind, f"{best:g}", steps, f"{seconds:.2f}", cells))
  return rows, results


def robustness(task, kinds, momenta, max_steps, quick):
  """Table rows, and per optimizer its grid of steps (momentum x lr; NaN:
  target not reached)."""
  rows, grids = [], {}
  for kind in kinds:
    grid = learning_rate_grid(kind, quick)
    steps = np.full((len(momenta), len(grid)), np.nan)
    for i, momentum in enumerate(momenta):
      for j, lr in enumerate(grid):
        reached, _ = run_cached(task, kind, lr, momentum, max_steps)
        steps[i, j] = np.nan if reached is None else reached
    grids[kind] = (grid, steps)
    cells = [f"{momentum:g}/{lr:g}: "
             f"{'-' if np.isnan(steps[i, j]) else int(steps[i, j])}"
             for i, momentum in enumerate(momenta)
             for j, lr in enumerate(grid)]
    rows.append((kind, f"{int(np.sum(~np.isnan(steps)))} / {steps.size}",
                 "; ".join(cells)))
  return rows, grids


def plot(grids_by_task, momenta, name):
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
  return _common.save_figure(figure, name)


def main(argv=None) -> str:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--no-write", action="store_true")
  args = parser.parse_args(argv)

  kinds = ["nagd restart=loss", "nagd restart=gradient",
           "optax.sgd(nesterov=True)", "optax.adamw", "optax.nadamw"]
  momenta = (0.9, 0.99) if args.quick else (0.9, 0.95, 0.99)
  start = time.perf_counter()
  sections = [
      "# Training: time to target and robustness\n",
      f"Machine and versions: {_common.environment()}.\n",
      f"Minibatches of {BATCH_SIZE}, constant learning rate, test accuracy"
      f" every {EVAL_EVERY} steps; time = jitted training steps only"
      " (compile and evaluation excluded). Reproduce with"
      " `python -m benchmarks.training`.\n",
  ]
  grids_by_task = {}
  for make, budget in ((digits_task, 1000), (mnist1d_task, 2000)):
    task = make()
    budget = budget // 2 if args.quick else budget
    rows, _ = time_to_target(task, kinds, budget, args.quick)
    sections.append(f"## {task['name']}: to {task['target']:.0%} test"
                    f" accuracy within {budget} steps\n")
    sections.append("Momentum (Adam: b1) 0.9; learning rate tuned on the"
                    " grid in the last column (steps to target per learning"
                    " rate, '-' = not reached); the best takes the fewest"
                    " steps (ties: the least wall time).\n")
    sections.append(_common.markdown_table(
        ["optimizer", "best lr", "steps", "seconds",
         "grid (lr: steps)"], rows) + "\n")
    sections.append(f"### Robustness: momentum x learning rate, {budget}"
                    " steps\n")
    rows, grids_by_task[task["name"]] = robustness(task, kinds, momenta,
                                                   budget, args.quick)
    sections.append(_common.markdown_table(
        ["optimizer", "cells reaching the target",
         "momentum/lr: steps"], rows) + "\n")
  sections.append("![robustness](training.png)\n\nSteps to the target"
                  " per momentum and learning rate; '-': not reached.\n")
  sections.append(f"Ran in {time.perf_counter() - start:.0f} s.")
  text = "\n".join(sections)
  print(text)
  if not args.no_write:
    print("wrote", _common.write("training.md", text))
    print("wrote", plot(grids_by_task, momenta, "training.png"))
  return text


if __name__ == "__main__":
  main()
