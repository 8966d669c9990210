"""Regression: an MLP on scikit-learn's diabetes data, with loss-driven control.

An MLP (10 -> 16 -> 16 -> 1, L2 weight decay) predicts disease progression from 10 baseline
variables (442 patients, 80/20 split, standardised). Minibatch training with
nagd at a constant learning rate is compared with the same optimizer inside
nagd.scale_on_plateau, which halves the step whenever the smoothed minibatch
loss stops improving and restarts the momentum at the same time. Prints test
MSE and R^2 (with ordinary least squares as a yardstick), how often the
scale was lowered, and the restarts.

Run:  python examples/regression.py [--steps 2000]
"""

from __future__ import annotations

import argparse

from flax import nnx
import jax.numpy as jnp
import numpy as np
import optax

import nagd_optax as nagd


class MLP(nnx.Module):

  def __init__(self, features: int, rngs: nnx.Rngs, hidden: int = 16):
    self.layer1 = nnx.Linear(features, hidden, rngs=rngs)
    self.layer2 = nnx.Linear(hidden, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, 1, rngs=rngs)

  def __call__(self, x):
    x = nnx.relu(self.layer1(x))
    x = nnx.relu(self.layer2(x))
    return self.out(x)[:, 0]


def mse(model, x, y):
  return jnp.mean((model(x) - y) ** 2)


@nnx.jit
def train_step(model, optimizer, x, y):
  loss, grads = nnx.value_and_grad(mse)(model, x, y)
  optimizer.update(model, grads, value=loss)
  return loss


def train(tx, data, steps, batch_size, seed):
  model = MLP(data.x_train.shape[1], nnx.Rngs(seed))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  rng = np.random.default_rng(seed)
  step, lowered = 0, 0
  while step < steps:
    order = rng.permutation(len(data.x_train))  # an epoch of full batches
    for start in range(0, len(order) - batch_size + 1, batch_size):
      index = order[start:start + batch_size]
      train_step(model, optimizer, data.x_train[index], data.y_train[index])
      state = nnx.as_pure(optimizer.opt_state)
      lowered += int(bool(optax.tree.get(state, "lowered", False)))
      step += 1
      if step == steps:
        break
  test_mse = float(mse(model, data.x_test, data.y_test))
  scale = optax.tree.get(state, "scale")
  restarts = optax.tree.get(state, "restarts")  # None without restart
  return {
      "test MSE": test_mse,
      "test R^2": 1.0 - test_mse / float(np.var(data.y_test)),
      "times lowered": lowered,
      "final scale": 1.0 if scale is None else float(scale),
      "restarts": None if restarts is None else int(restarts),
  }


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=2000)
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--learning-rate", type=float, default=0.01)
  parser.add_argument("--weight-decay", type=float, default=0.03)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)

  data = nagd.problems.load_diabetes(args.seed)
  constant = nagd.nagd(args.learning_rate, 0.9,
                       weight_decay=args.weight_decay)
  on_plateau = nagd.scale_on_plateau(
      0.5,
      patience=100,
      cooldown=100,
      loss_smoothing=0.98,
      min_scale=1e-3,
      inner=nagd.nagd(args.learning_rate, 0.9, weight_decay=args.weight_decay,
                      restart="on_demand"),
      restart_momentum=True,
  )
  results = {}
  for name, tx in (("nagd, constant learning rate", constant),
                   ("nagd + scale_on_plateau", on_plateau)):
    results[name] = train(tx, data, args.steps, args.batch_size, args.seed)
    print(f"{name}: {args.steps} steps, test MSE"
          f" {results[name]['test MSE']:.4f}", flush=True)
  # Ordinary least squares (with an intercept), as a yardstick.
  design = np.hstack([data.x_train, np.ones((len(data.x_train), 1))])
  coefficients = np.linalg.lstsq(design, data.y_train, rcond=None)[0]
  test_design = np.hstack([data.x_test, np.ones((len(data.x_test), 1))])
  linear_mse = float(np.mean((test_design @ coefficients - data.y_test) ** 2))
  results["least squares (closed form)"] = {
      "test MSE": linear_mse,
      "test R^2": 1.0 - linear_mse / float(np.var(data.y_test)),
      "times lowered": "-", "final scale": "-", "restarts": "-",
  }
  header = list(next(iter(results.values())))
  rows = [
      (name, *(f"{v:.4f}" if isinstance(v, float) else v
               for v in result.values()))
      for name, result in results.items()
  ]
  print(f"diabetes MLP, {len(data.x_train)} train / {len(data.x_test)} test,"
        f" {args.steps} steps of batch {args.batch_size} (standardised"
        " target: MSE 1 = predicting the mean)")
  header = ["optimizer", *header]
  print("| " + " | ".join(header) + " |")
  print("|" + "|".join("---" for _ in header) + "|")
  for row in rows:
    print("| " + " | ".join(str(cell) for cell in row) + " |")
  return results


if __name__ == "__main__":
  main()
