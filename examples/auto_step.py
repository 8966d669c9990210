"""No learning rate to tune: nagd("auto") against fixed steps on the digits.

Trains the same small CNN on scikit-learn's 1797 8x8 digits (80/20
stratified split, minibatches of 64) with Nesterov momentum 0.9 and

  * nagd.nagd("auto"): no learning rate; the step is set from the local
    curvature along the last step (Malitsky & Mishchenko's adaptive step),
    within a trust region relative to the weights, and cut when the
    minibatch loss passed as ``value=`` spikes or rises;
  * nagd.nagd(0.1): the constant learning rate that is the peak of the
    digits demo's schedule (examples/digits.py);
  * nagd.nagd(1.0): the same, 10 times too large.

Prints the test accuracy and loss every --eval-every steps, the automatic
step's size (read with optax.tree.get(state, "step_size")) and its cuts,
and writes a table and a PNG of the curves to runs/auto_step/ (git-ignored).

Run:  python examples/auto_step.py [--steps 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import pathlib

from flax import nnx
import jax.numpy as jnp
import numpy as np
import optax

import nagd_optax as nagd

OUTPUT = pathlib.Path("runs") / "auto_step"


def optimizers(learning_rate: float):
  return {
      'nagd("auto")': nagd.nagd("auto", 0.9),
      f"nagd({learning_rate:g})": nagd.nagd(learning_rate, 0.9),
      f"nagd({10 * learning_rate:g}), 10x too large": nagd.nagd(
          10 * learning_rate, 0.9),
  }


def loss_fn(model, images, labels):
  logits = model(images)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return loss, logits


@nnx.jit
def train_step(model, optimizer, images, labels):
  """One step; the loss goes to the optimizer as ``value=`` (the automatic
  step's guards read it; a fixed step ignores it)."""
  (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(
      model, images, labels)
  optimizer.update(model, grads, value=loss)
  return loss


@nnx.jit
def evaluate(model, images, labels):
  loss, logits = loss_fn(model, images, labels)
  return loss, jnp.mean(jnp.argmax(logits, -1) == labels)


def train(name, tx, data, *, steps, batch_size, eval_every, seed):
  """Returns the evaluation steps, test losses, test accuracies and (for the
  automatic step) its step sizes at those steps."""
  model = nagd.problems.cnn(side=8, rngs=nnx.Rngs(seed))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  rng = np.random.default_rng(seed)
  record = {"step": [], "test_loss": [], "test_accuracy": [], "step_size": []}
  step = 0
  while step < steps:
    order = rng.permutation(len(data.x_train))
    for start in range(0, len(order) - batch_size + 1, batch_size):
      index = order[start:start + batch_size]
      train_step(model, optimizer, data.x_train[index], data.y_train[index])
      step += 1
      if step % eval_every == 0 or step == steps:
        loss, accuracy = evaluate(model, data.x_test, data.y_test)
        state = nnx.as_pure(optimizer.opt_state)
        step_size = optax.tree.get(state, "step_size")  # None if fixed
        record["step"].append(step)
        record["test_loss"].append(float(loss))
        record["test_accuracy"].append(float(accuracy))
        record["step_size"].append(
            None if step_size is None else float(step_size))
        print(f"{name:>28} step {step:4d}: test loss {float(loss):8.4f},"
              f" accuracy {float(accuracy):.3f}"
              + ("" if step_size is None
                 else f", step size {float(step_size):.3g}"))
      if step == steps:
        break
  cuts = optax.tree.get(nnx.as_pure(optimizer.opt_state), "cuts")
  record["cuts"] = None if cuts is None else int(cuts)
  return record


def plot(records, path):
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  figure, (loss_axis, step_axis) = plt.subplots(1, 2, figsize=(11, 4))
  for name, record in records.items():
    loss_axis.plot(record["step"], record["test_loss"], label=name)
    if record["step_size"][0] is not None:
      step_axis.plot(record["step"], record["step_size"], label=name)
  loss_axis.set(xlabel="step", ylabel="test loss", yscale="log")
  step_axis.set(xlabel="step", ylabel="automatic step size", yscale="log")
  for axis in (loss_axis, step_axis):
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--learning-rate", type=float, default=0.1,
                      help="the fixed step compared (and 10 times it)")
  parser.add_argument("--eval-every", type=int, default=50)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--output-dir", type=pathlib.Path, default=OUTPUT)
  parser.add_argument("--no-plot", action="store_true")
  args = parser.parse_args(argv)

  data = nagd.problems.load_digits(args.seed)
  records = {
      name: train(name, tx, data, steps=args.steps,
                  batch_size=args.batch_size, eval_every=args.eval_every,
                  seed=args.seed)
      for name, tx in optimizers(args.learning_rate).items()
  }
  lines = ["| optimizer | final test accuracy | final test loss | cuts |",
           "|---|---|---|---|"]
  for name, record in records.items():
    lines.append(
        f"| {name} | {record['test_accuracy'][-1]:.4f} |"
        f" {record['test_loss'][-1]:.4f} |"
        f" {'-' if record['cuts'] is None else record['cuts']} |")
  table = "\n".join(lines)
  header = (f"Digits CNN, {args.steps} steps of batch {args.batch_size},"
            f" momentum 0.9, seed {args.seed}.")
  print(header)
  print(table)
  args.output_dir.mkdir(parents=True, exist_ok=True)
  (args.output_dir / "auto_step.md").write_text(
      f"# nagd('auto') on the digits\n\n{header}\n\nGenerated by `python"
      f" examples/auto_step.py`.\n\n{table}\n")
  if not args.no_plot:
    plot(records, args.output_dir / "auto_step.png")
  print(f"wrote {args.output_dir}")
  return records


if __name__ == "__main__":
  main()
