"""Quickstart: logistic regression on breast_cancer, GD against Nesterov.

L2-regularised logistic regression on scikit-learn's bundled breast-cancer
data (569 patients, 30 features, standardised, plus a bias column), solved
to a relative gap of 1e-8 with step 1/L by

  * gradient descent                     (nagd.nagd(1/L, momentum=0)),
  * optax.sgd(1/L, 0.9, nesterov=True)   (Optax's Nesterov momentum),
  * Nesterov's method                    (nagd.nagd(1/L, nesterov_momentum())).

Run:  python examples/quickstart.py [--regularization 1e-3] [--max-steps N]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_breast_cancer

import nagd_optax as nagd


def make_problem(regularization: float):
  """Returns the objective, its smoothness constant L and a start point."""
  features, labels = load_breast_cancer(return_X_y=True)
  features = (features - features.mean(0)) / features.std(0)
  features = np.hstack([features, np.ones((len(features), 1))])
  signs = 2.0 * labels - 1.0
  a = jnp.asarray(features * signs[:, None])

  def objective(w):
    return jnp.mean(jnp.logaddexp(0.0, -a @ w)) + 0.5 * regularization * w @ w

  # The logistic loss has curvature <= 1/4.
  smoothness = 0.25 * np.linalg.eigvalsh(features.T @ features).max() / len(
      features
  ) + regularization
  return objective, smoothness, jnp.zeros(a.shape[1])


def minimum(objective, w0, iterations=30):
  """f* by Newton's method (31 unknowns: the Hessian is cheap and exact)."""
  w = w0
  for _ in range(iterations):
    w = w - jnp.linalg.solve(jax.hessian(objective)(w), jax.grad(objective)(w))
  return float(objective(w))


def solve(optimizer, objective, w0, max_steps):
  """Runs the optimizer in one jitted while loop; returns the value history."""

  @jax.jit
  def run(w):
    def step(carry, _):
      w, state = carry
      value, grad = jax.value_and_grad(objective)(w)
      updates, state = optimizer.update(grad, state, w, value=value)
      return (optax.apply_updates(w, updates), state), value

    (w, _), values = jax.lax.scan(
        step, (w, optimizer.init(w)), length=max_steps
    )
    return w, values

  return run(w0)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--regularization", type=float, default=1e-3)
  parser.add_argument("--max-steps", type=int, default=20000)
  parser.add_argument("--gap", type=float, default=1e-8)
  args = parser.parse_args(argv)

  # Relative gaps of 1e-8 need float64.
  with jax.enable_x64(True):
    return compare(args)


def compare(args):
  objective, smoothness, w0 = make_problem(args.regularization)
  step = 1.0 / smoothness
  optimizers = {
      "gradient descent": nagd.nagd(step, 0.0),
      "optax.sgd(nesterov=True), momentum 0.9": optax.sgd(
          step, 0.9, nesterov=True
      ),
      "nagd, nesterov_momentum()": nagd.nagd(
          step, nagd.schedules.nesterov_momentum()
      ),
  }
  histories = {}
  for name, optimizer in optimizers.items():
    start = time.perf_counter()
    _, values = solve(optimizer, objective, w0, args.max_steps)
    histories[name] = (np.asarray(values), time.perf_counter() - start)

  best = minimum(objective, w0)
  print(
      f"breast_cancer logistic regression, lambda={args.regularization:g},"
      f" L={smoothness:.4f}, f*={best:.12f}"
  )
  print(f"{'optimizer':42s} {'steps to gap ' + format(args.gap, 'g'):>18s}"
        f" {'wall s':>8s}")
  steps_to_gap = {"f*": best}
  for name, (values, seconds) in histories.items():
    reached = np.nonzero((values - best) / (values[0] - best) <= args.gap)[0]
    steps_to_gap[name] = int(reached[0]) if reached.size else None
    steps = f"{reached[0]}" if reached.size else f"> {args.max_steps}"
    print(f"{name:42s} {steps:>18s} {seconds:8.2f}")
  return steps_to_gap


if __name__ == "__main__":
  main()
