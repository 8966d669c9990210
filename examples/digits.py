"""Main demo: a small CNN on scikit-learn's digits, nagd against Optax.

Trains the same CNN on the 1797 real 8x8 digits bundled with scikit-learn
(80/20 stratified split) for the same number of steps with

  * nagd at momentum 0.9 and optax.sgd(nesterov=True) at momentum 0.9, both
    with the same warmup + cosine learning rate: without restart nagd is
    Optax's Nesterov SGD, and the two runs come out bit-identical (the
    script checks and says so, and draws the second dashed over the first);
  * nagd at momentum 0.99 restarting when its momentum points uphill
    (restart="gradient"), against optax.sgd(nesterov=True) at momentum 0.99,
    which is the same run without restart: the script prints what the
    restart changed (steps to 97% test accuracy, final accuracy and loss);
  * optax.adamw with its usual warmup + cosine schedule.

Prints a table (final test accuracy and loss, steps to 97% test accuracy,
compile seconds, training seconds without compilation or evaluation,
restarts) and writes it, with a PNG of the loss and accuracy curves, to
runs/digits/ under the current directory (git-ignored);
--write-results writes them to examples/results/ instead, the copies the
README shows.

Takes about 30 s on the 2-core CPU the README was measured on
(``/usr/bin/time``: 32 s wall, 29 s of CPU, at a load average of 0.4-2.3).

Run:  python examples/digits.py [--steps 400] [--seed 0] [--write-results]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import time

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import nagd_optax as nagd

TARGET = 0.97
RUN_DIRECTORY = pathlib.Path("runs") / "digits"
RESULTS = pathlib.Path(__file__).parent / "results"


def contenders(steps: int, learning_rate: float, adam_learning_rate: float
               ) -> dict[str, optax.GradientTransformation]:
  """The optimizers compared, by name: one entry per row of the table.

  Each learning rate warms up over the first 5% of the steps, then decays
  with a cosine.
  """
  warmup_steps = max(1, steps // 20)

  def schedule(peak):
    return nagd.schedules.warmup(
        optax.cosine_decay_schedule(peak, steps - warmup_steps), warmup_steps
    )

  return {
      "nagd, momentum 0.9": nagd.nagd(schedule(learning_rate), 0.9),
      "optax.sgd(nesterov=True), momentum 0.9": optax.sgd(
          schedule(learning_rate), 0.9, nesterov=True
      ),
      "nagd, momentum 0.99, restart=gradient": nagd.nagd(
          schedule(learning_rate), 0.99, restart="gradient"
      ),
      "optax.sgd(nesterov=True), momentum 0.99": optax.sgd(
          schedule(learning_rate), 0.99, nesterov=True
      ),
      "optax.adamw": optax.adamw(schedule(adam_learning_rate),
                                 weight_decay=1e-4),
  }


# Runs that differ only in the restart, (with, without): nagd without
# restart is optax.sgd(nesterov=True) bit for bit, as the momentum-0.9 rows
# show.
RESTART_PAIRS = (
    ("nagd, momentum 0.99, restart=gradient",
     "optax.sgd(nesterov=True), momentum 0.99"),
)


def loss_fn(model, images, labels):
  logits = model(images)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return loss, logits


@nnx.jit
def train_step(model, optimizer, images, labels):
  """One step; the loss is passed on as ``value=`` (nagd's loss restart)."""
  (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(
      model, images, labels
  )
  optimizer.update(model, grads, value=loss)
  return loss


@nnx.jit
def evaluate(model, images, labels):
  loss, logits = loss_fn(model, images, labels)
  return loss, jnp.mean(jnp.argmax(logits, -1) == labels)


@dataclasses.dataclass
class History:
  """What a run records every ``eval_every`` steps, and its timings."""

  name: str
  steps: list[int] = dataclasses.field(default_factory=list)
  train_loss: list[float] = dataclasses.field(default_factory=list)
  test_loss: list[float] = dataclasses.field(default_factory=list)
  test_accuracy: list[float] = dataclasses.field(default_factory=list)
  compile_seconds: float = 0.0
  seconds: float = 0.0
  restarts: int | None = None
  same_as: str | None = None  # an earlier run with bit-identical curves

  def steps_to(self, accuracy: float) -> int | None:
    for step, value in zip(self.steps, self.test_accuracy):
      if value >= accuracy:
        return step
    return None

  def curves(self):
    return self.train_loss, self.test_loss, self.test_accuracy


def compile_step(model, optimizer, images, labels) -> float:
  """Compiles ``train_step`` for this model and optimizer; returns seconds.

  The call runs on a copy, so the run proper starts from untouched state and
  its first step finds the step compiled.
  """
  start = time.perf_counter()
  jax.block_until_ready(train_step(*nnx.clone((model, optimizer)), images,
                                   labels))
  return time.perf_counter() - start


def train(name, tx, data, *, steps, batch_size, eval_every, seed) -> History:
  """Trains a fresh CNN with ``tx`` for ``steps`` minibatch steps.

  ``History.compile_seconds`` is the compilation of the step;
  ``History.seconds`` the steps themselves, without compilation and without
  the test-set evaluations every ``eval_every`` steps.
  """
  model = nagd.problems.cnn(side=8, rngs=nnx.Rngs(seed))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  history = History(name)
  history.compile_seconds = compile_step(
      model, optimizer, data.x_train[:batch_size], data.y_train[:batch_size])
  rng = np.random.default_rng(seed)
  running, step = [], 0
  bar = tqdm(total=steps, desc=name, leave=False)
  while step < steps:
    order = rng.permutation(len(data.x_train))  # an epoch of full batches
    for start in range(0, len(order) - batch_size + 1, batch_size):
      index = order[start:start + batch_size]
      start_time = time.perf_counter()
      loss = train_step(model, optimizer, data.x_train[index],
                        data.y_train[index])
      running.append(float(loss))  # waits for the step: its own wall time
      history.seconds += time.perf_counter() - start_time
      step += 1
      bar.update(1)
      if step % eval_every == 0 or step == steps:
        test_loss, accuracy = evaluate(model, data.x_test, data.y_test)
        history.steps.append(step)
        history.train_loss.append(float(np.mean(running)))
        history.test_loss.append(float(test_loss))
        history.test_accuracy.append(float(accuracy))
        running = []
      if step == steps:
        break
  bar.close()
  # None for the optimizers without restart.
  restarts = optax.tree.get(nnx.as_pure(optimizer.opt_state), "restarts")
  history.restarts = None if restarts is None else int(restarts)
  return history


def mark_identical_runs(histories) -> None:
  """Sets ``same_as`` on each run whose curves equal an earlier run's."""
  for index, history in enumerate(histories):
    for earlier in histories[:index]:
      if earlier.same_as is None and history.curves() == earlier.curves():
        history.same_as = earlier.name
        break


def restart_effect(restarted: History, plain: History, test_size: int) -> str:
  """What the restart changed, from two runs that differ only in it."""

  def outcome(history):
    step = history.steps_to(TARGET)
    reached = (f"reached {TARGET:.0%} test accuracy at step {step}"
               if step is not None else f"never reached {TARGET:.0%}")
    return (f"{reached}, final test accuracy {history.test_accuracy[-1]:.4f}"
            f" and loss {history.test_loss[-1]:.4f}")

  facts = (f"{restarted.name} restarted {restarted.restarts} times:"
           f" {outcome(restarted)}; without restart ({plain.name}):"
           f" {outcome(plain)}.")
  if not restarted.restarts:
    return facts + " It never restarted, so restart did nothing here."
  never = float("inf")
  reached, reached_without = (history.steps_to(TARGET) or never
                              for history in (restarted, plain))
  gain = restarted.test_accuracy[-1] - plain.test_accuracy[-1]
  if abs(gain) < 1 / test_size and reached == reached_without:
    return facts + " Restart made no measurable difference here."
  if gain >= 0 and reached <= reached_without:
    return facts + " Restart helped."
  if gain <= 0 and reached >= reached_without:
    return facts + " Restart hurt."
  return facts + " Restart helped on one measure and hurt on the other."


def markdown_table(header, rows) -> str:
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def plot(histories, path):
  """Loss and test accuracy curves of the runs, one PNG.

  A run identical to an earlier one is drawn dashed over it, and its legend
  entry says so.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
  for history in histories:
    style = {"label": history.name}
    if history.same_as is not None:
      style = {"label": f"{history.name}\n(identical to {history.same_as})",
               "ls": (0, (4, 3)), "lw": 2.0}
    loss_axis.plot(history.steps, history.train_loss, lw=0.8, alpha=0.5,
                   ls=style.get("ls", "-"))
    color = loss_axis.lines[-1].get_color()
    loss_axis.plot(history.steps, history.test_loss, color=color, **style)
    accuracy_axis.plot(history.steps, history.test_accuracy, color=color,
                       **style)
  loss_axis.set_yscale("log")
  loss_axis.set(xlabel="step", ylabel="loss (thin: train, thick: test)")
  final = min(h.test_accuracy[-1] for h in histories)
  accuracy_axis.set(xlabel="step", ylabel="test accuracy",
                    ylim=(max(0.0, final - 0.15), 1.0))
  accuracy_axis.axhline(TARGET, color="0.5", ls=":", lw=1.0,
                        label=f"target: {TARGET:.0%} test accuracy")
  loss_axis.legend(fontsize=7)
  accuracy_axis.legend(fontsize=7, loc="lower right")
  for axis in (loss_axis, accuracy_axis):
    axis.grid(alpha=0.3)
  figure.suptitle("CNN on scikit-learn digits")
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)


def main(argv=None):
  started = time.perf_counter()
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=400)
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--learning-rate", type=float, default=0.1,
                      help="peak learning rate of the SGD runs")
  parser.add_argument("--adam-learning-rate", type=float, default=3e-3)
  parser.add_argument("--eval-every", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0)
  outputs = parser.add_mutually_exclusive_group()
  outputs.add_argument("--output-dir", type=pathlib.Path,
                       default=RUN_DIRECTORY)
  outputs.add_argument("--write-results", action="store_true",
                       help=f"write to {RESULTS} (the committed copies)")
  args = parser.parse_args(argv)
  output_dir = RESULTS if args.write_results else args.output_dir

  data = nagd.problems.load_digits(args.seed)
  runs = contenders(args.steps, args.learning_rate, args.adam_learning_rate)
  histories = []
  for name, tx in runs.items():
    history = train(name, tx, data, steps=args.steps,
                    batch_size=args.batch_size, eval_every=args.eval_every,
                    seed=args.seed)
    histories.append(history)
    tqdm.write(f"{name}: compiled in {history.compile_seconds:.1f} s,"
               f" {args.steps} steps in {history.seconds:.1f} s, final test"
               f" accuracy {history.test_accuracy[-1]:.4f}")
  mark_identical_runs(histories)

  rows = []
  for history in histories:
    reached = history.steps_to(TARGET)
    rows.append((
        history.name,
        f"{history.test_accuracy[-1]:.4f}",
        f"{history.test_loss[-1]:.4f}",
        reached if reached is not None else f"> {args.steps}",
        f"{history.compile_seconds:.1f}",
        f"{history.seconds:.1f}",
        "-" if history.restarts is None else history.restarts,
    ))
  table = markdown_table(
      ["optimizer", "final test accuracy", "final test loss",
       f"steps to {TARGET:.0%}", "compile s", "train s", "restarts"],
      rows,
  )
  header = (
      f"Digits CNN, {len(data.x_train)} train / {len(data.x_test)} test"
      f" images, {args.steps} steps of batch {args.batch_size}, seed"
      f" {args.seed}; test accuracy measured every {args.eval_every} steps;"
      f" peak learning rates {args.learning_rate} (SGD) and"
      f" {args.adam_learning_rate} (AdamW), each of a warmup + cosine"
      " schedule. \"compile s\" is the compilation of each optimizer's step;"
      " \"train s\" the steps after it, without evaluation, wall time on"
      f" {os.cpu_count()} CPU cores (1-minute load average"
      f" {os.getloadavg()[0]:.1f} at the end)."
  )
  by_name = {history.name: history for history in histories}
  notes = [f"{h.name}'s run is {h.same_as}'s to the last bit: their lines"
           " coincide (drawn dashed over solid)."
           for h in histories if h.same_as is not None]
  notes += [restart_effect(by_name[with_restart], by_name[without],
                           len(data.x_test))
            for with_restart, without in RESTART_PAIRS
            if with_restart in by_name and without in by_name]
  text = "\n\n".join([header, table, *notes])
  print(text)
  output_dir.mkdir(parents=True, exist_ok=True)
  command = "python examples/digits.py" + (
      " --write-results" if args.write_results else "")
  (output_dir / "digits.md").write_text(
      f"# Digits demo\n\n{text}\n\nGenerated by `{command}`.\n\n"
      "![curves](digits.png)\n"
  )
  plot(histories, output_dir / "digits.png")
  print(f"wrote {output_dir / 'digits.md'} and digits.png;"
        f" {time.perf_counter() - started:.0f} s in all")
  return histories


if __name__ == "__main__":
  main()
