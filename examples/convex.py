"""Convex problems: gradient descent, Nesterov, and Nesterov with restarts.

Two smooth convex problems in float64, step 1/L:

  * L2-regularised logistic regression on scikit-learn's breast_cancer
    (569 patients, 30 standardised features plus a bias), f* by Newton's
    method;
  * an ill-conditioned quadratic f(x) = 0.5 sum_i lam_i x_i^2 (n = 500,
    lam log-spaced from 1 to 1/kappa, f* = 0).

Each is solved by gradient descent, optax.sgd(nesterov=True) with momentum
0.9, Nesterov's method (momentum (k-1)/(k+2)) without restart and with each
restart scheme (a fixed period of --interval steps for "interval"), and, for
the quadratic, the optimal constant momentum that
needs kappa. Prints each problem's iterations to the target relative gap as
soon as it is solved, with what restart saved over the same method without
restart, and writes a log-scale plot of f - f* against iterations to
runs/convex/convex.png under the current directory (git-ignored);
--write-results writes examples/results/convex.png instead, the copy the
README links to. Both problems come from nagd_optax.problems, which cites
their sources.

Takes about 10 s of CPU on the 2-core CPU the README was measured on
(``/usr/bin/time``: 10 s of CPU, 20 s wall under a load average of 7).

Run:  python examples/convex.py [--regularization 1e-3] [--kappa 1e4]
      [--interval 100] [--seed 0] [--write-results]
"""

from __future__ import annotations

import argparse
import pathlib

import jax
import numpy as np
import optax

import nagd_optax as nagd

RUN_DIRECTORY = pathlib.Path("runs") / "convex"
RESULTS = pathlib.Path(__file__).parent / "results"


def methods(step_size: float, condition_number: float | None,
            interval: int = 100):
  nesterov = nagd.schedules.nesterov_momentum()
  contenders = {
      "gradient descent": nagd.nagd(step_size, 0.0),
      "optax.sgd(nesterov=True), momentum 0.9": optax.sgd(
          step_size, 0.9, nesterov=True
      ),
      "Nesterov, no restart": nagd.nagd(step_size, nesterov),
  }
  for criterion in ("loss", "gradient", "speed"):
    contenders[f"Nesterov, restart={criterion}"] = nagd.nagd(
        step_size, nesterov, restart=criterion
    )
  # A fixed period must guess the conditioning (its best value grows like
  # sqrt(kappa)); the adaptive schemes above need no guess.
  contenders[f"Nesterov, restart=interval ({interval})"] = nagd.nagd(
      step_size, nesterov, restart="interval", min_interval=interval
  )
  if condition_number is not None:
    contenders["constant momentum from kappa (needs mu)"] = nagd.nagd(
        step_size, nagd.schedules.strongly_convex_momentum(condition_number)
    )
  return contenders


def compare(name, problem, gap, steps, condition_number, interval):
  """Iterations to the relative gap, and the f - f* curves, per method.

  ``problem`` is a ``nagd.problems.Problem``: its JAX ``value_and_grad``,
  starting point ``x0``, smoothness L (the step is 1/L) and minimum ``f_star``.
  """
  f_star = problem.f_star
  f0 = problem.f(problem.x0)
  curves, iterations = {}, {}
  for method, optimizer in methods(1.0 / problem.smoothness, condition_number,
                                   interval).items():
    # The loss at every iterate, from one jitted scan of optimizer.update(
    # grads, state, params, value=loss).
    values, _ = nagd.problems.trajectory(
        optimizer, problem.value_and_grad, problem.x0, steps, iterates=False)
    curves[method] = np.maximum(values - f_star, 1e-300)
    reached = np.nonzero((values - f_star) <= gap * (f0 - f_star))[0]
    iterations[method] = int(reached[0]) if reached.size else None
  return {"name": name, "f*": f_star, "iterations": iterations,
          "curves": curves}


def restart_savings(iterations, steps) -> str:
  """What each restart scheme saved over Nesterov without restart."""
  plain = iterations["Nesterov, no restart"]
  parts = []
  for method, count in iterations.items():
    if not method.startswith("Nesterov, restart="):
      continue
    scheme = method.removeprefix("Nesterov, ")
    if count is None:
      parts.append(f"{scheme} did not reach it")
    elif plain is None:
      parts.append(f"{scheme} {count} (no restart: > {steps})")
    else:
      parts.append(f"{scheme} {count} ({plain / count:.1f}x fewer)"
                   if count < plain else
                   f"{scheme} {count} ({count / plain:.1f}x more)")
  shown = f"> {steps}" if plain is None else plain
  return f"Nesterov without restart: {shown} iterations; " + ", ".join(parts)


PLOTTED_ITERATIONS = 5000


def plot(results, path):
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  figure, axes = plt.subplots(1, len(results), figsize=(7 * len(results), 4.5))
  for axis, result in zip(np.atleast_1d(axes), results):
    top = 0.0
    for method, curve in result["curves"].items():
      axis.semilogy(curve[:PLOTTED_ITERATIONS], label=method, lw=1.2)
      top = max(top, float(curve[0]))
    axis.set(title=result["name"], xlabel="iteration", ylabel="f - f*")
    axis.set_ylim(1e-14, 10 * top)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
  figure.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  figure.savefig(path, dpi=100)
  plt.close(figure)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--regularization", type=float, default=1e-3)
  parser.add_argument("--kappa", type=float, default=1e4)
  parser.add_argument("--steps", type=int, default=20000)
  parser.add_argument("--gap", type=float, default=1e-8)
  parser.add_argument("--interval", type=int, default=100,
                      help="period of the fixed (interval) restart")
  parser.add_argument("--seed", type=int, default=0,
                      help="seed of the quadratic's starting point")
  outputs = parser.add_mutually_exclusive_group()
  outputs.add_argument("--output-dir", type=pathlib.Path,
                       default=RUN_DIRECTORY)
  outputs.add_argument("--write-results", action="store_true",
                       help=f"write to {RESULTS} (the committed copy)")
  parser.add_argument("--no-plot", action="store_true")
  args = parser.parse_args(argv)
  output_dir = RESULTS if args.write_results else args.output_dir

  problems = [
      (f"breast_cancer logistic regression, lambda = {args.regularization:g}",
       lambda: nagd.problems.breast_cancer_logistic(args.regularization),
       None),
      (f"quadratic, kappa = {args.kappa:g}",
       lambda: nagd.problems.quadratic(args.kappa, seed=args.seed),
       args.kappa),
  ]
  results = []
  for name, problem, condition_number in problems:
    # Relative gaps of 1e-8 need float64.
    with jax.enable_x64(True):
      result = compare(name, problem(), args.gap, args.steps,
                       condition_number, args.interval)
    results.append(result)
    print(f"{result['name']}: f* = {result['f*']:.12f}; iterations to a"
          f" relative gap of {args.gap:g}")
    print("| method | iterations |\n|---|---|")
    for method, count in result["iterations"].items():
      print(f"| {method} | {f'> {args.steps}' if count is None else count} |")
    print(restart_savings(result["iterations"], args.steps), flush=True)
  if not args.no_plot:
    plot(results, output_dir / "convex.png")
    print(f"wrote {output_dir / 'convex.png'}")
  return results


if __name__ == "__main__":
  main()
