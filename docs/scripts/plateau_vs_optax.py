"""Compares nagd.scale_on_plateau with optax.contrib.reduce_on_plateau.

Run:  python docs/scripts/plateau_vs_optax.py [--seeds 50] [--write-results]
(about 15 s on 2 CPU cores).

Both rules see the same synthetic noisy losses: a linear fall, a flat loss
and a fall that turns flat halfway. Optax averages ``accumulation_size`` (k)
losses and waits ``patience`` (p) averages; scale_on_plateau gets the
comparable window: ``patience=k * p`` updates and ``loss_smoothing=(k - 1) /
(k + 1)``, an exponential average with the same noise variance (sigma^2 / k)
and the same lag ((k - 1) / 2 steps) behind a linear trend as a mean of k
losses. A cut is *false* when the true loss fell by more than the rtol
threshold over the patience window before it (the loss before step 0
continues its first slope), *true* otherwise.

The table goes to runs/plateau_vs_optax/plateau_vs_optax.md (a git-ignored
run directory); --write-results regenerates the committed
docs/_static/plateau_vs_optax.md, which the docs include.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # this checkout's package, not an installed one

import nagd_optax as nagd  # pylint: disable=wrong-import-position

SCRATCH = ROOT / "runs" / "plateau_vs_optax" / "plateau_vs_optax.md"
RESULTS = ROOT / "docs" / "_static" / "plateau_vs_optax.md"

STEPS = 4000
KNEE = 2000  # where the fall turns flat
DROP = 1e-3  # fall of the true loss per step
RATIOS = (1, 3, 10, 30, 100, 300, 1000)  # noise standard deviation / DROP
WINDOWS = ((10, 5), (20, 5), (50, 2))  # (accumulation_size k, patience p)
KINDS = ("falling", "flat", "fall then flat")
FACTOR = 0.5
RTOL = 1e-4


def true_loss(kind: str) -> np.ndarray:
  step = np.arange(STEPS)
  if kind == "falling":
    return 10.0 - DROP * step
  if kind == "flat":
    return np.full(STEPS, 6.0)
  return 10.0 - DROP * np.minimum(step, KNEE)


def optimizers(k: int, p: int) -> dict[str, optax.GradientTransformation]:
  return {
      "nagd": nagd.scale_on_plateau(
          FACTOR, patience=k * p, loss_smoothing=(k - 1) / (k + 1), rtol=RTOL
      ),
      "optax": optax.contrib.reduce_on_plateau(
          FACTOR, patience=p, accumulation_size=k, rtol=RTOL
      ),
  }


def scales(optimizer, losses: np.ndarray) -> np.ndarray:
  """The scale after each update, for each row of ``losses``."""
  params = jnp.zeros(1)

  def run(values):
    def step(state, value):
      _, state = optimizer.update(params, state, value=value)
      return state, optax.tree.get(state, "scale")

    return jax.lax.scan(step, optimizer.init(params), values)[1]

  return np.asarray(jax.jit(jax.vmap(run))(jnp.asarray(losses, jnp.float32)))


def falling(true: np.ndarray, patience: int) -> np.ndarray:
  """Where the true loss fell by more than rtol * |loss| over the last
  ``patience`` steps."""
  slope = true[1] - true[0]
  before = true[0] - slope * np.arange(patience, 0, -1)
  drop = np.concatenate([before, true])[:STEPS] - true
  return drop > RTOL * np.abs(true)


def cut_statistics(scale: np.ndarray, true: np.ndarray, patience: int):
  """(false cuts, true cuts, median delay to the first true cut) over rows."""
  before = np.concatenate([np.ones_like(scale[:, :1]), scale[:, :-1]], axis=1)
  cuts = scale < before
  mask = falling(true, patience)
  start = int(np.argmax(~mask))  # the first step of the flat part
  delays = [
      np.flatnonzero(row & ~mask)[0] - start if (row & ~mask).any() else np.inf
      for row in cuts
  ]
  return (int((cuts & mask).sum()), int((cuts & ~mask).sum()),
          float(np.median(delays)))


def measure(seeds: int) -> dict:
  """{(k, p): {(kind, ratio): {rule: statistics}}}."""
  noise = np.stack([np.random.default_rng(seed).standard_normal(STEPS)
                    for seed in range(seeds)])
  cases = [(kind, ratio) for kind in KINDS for ratio in RATIOS]
  losses = np.concatenate(
      [true_loss(kind) + ratio * DROP * noise for kind, ratio in cases])
  results = {}
  start = time.perf_counter()
  for k, p in WINDOWS:
    results[k, p] = {case: {} for case in cases}
    for name, optimizer in optimizers(k, p).items():
      scale = scales(optimizer, losses).reshape(len(cases), seeds, STEPS)
      for (kind, ratio), rows in zip(cases, scale):
        results[k, p][kind, ratio][name] = cut_statistics(
            rows, true_loss(kind), k * p)
      print(f"  k={k}, p={p}, {name}: done at"
            f" {time.perf_counter() - start:.0f} s", flush=True)
  return results


def cell(statistics: dict, index: int) -> str:
  def text(value):
    if index < 2:
      return str(value)
    return "never" if np.isinf(value) else f"{value:.0f}"

  return " / ".join(text(statistics[name][index]) for name in ("nagd", "optax"))


def table(results: dict, seeds: int, command: str) -> str:
  cpu = platform.processor() or platform.machine()
  lines = [
      "Generated by `" + command + "` on a "
      f"{os.cpu_count()}-core CPU ({cpu}); nagd_optax {nagd.__version__},"
      f" jax {jax.__version__}, optax {optax.__version__}.",
      "",
      f"{seeds} seeds x {STEPS} steps per cell, Gaussian noise; the true loss"
      f" falls by {DROP:g} per step (from 10), stays at 6, or falls for"
      f" {KNEE} steps and then stays flat. Each cell reads"
      " `nagd / optax`: false cuts (while the true loss fell by more than"
      f" rtol = {RTOL:g} of itself over the patience window), true cuts,"
      " and the median delay from the start of the flat part to the first"
      " true cut. factor 0.5, no cooldown, default tolerances.",
  ]
  header = ("| noise / drop | falling: false cuts | flat: true cuts |"
            " flat: delay | fall then flat: false cuts |"
            " fall then flat: true cuts | fall then flat: delay |")
  for (k, p), rows in results.items():
    lines += [
        "",
        f"**optax `accumulation_size={k}, patience={p}`; nagd"
        f" `patience={k * p}, loss_smoothing={k - 1}/{k + 1}`**",
        "",
        header,
        "|" + "---|" * 7,
    ]
    for ratio in RATIOS:
      lines.append(
          f"| {ratio} | {cell(rows['falling', ratio], 0)} |"
          f" {cell(rows['flat', ratio], 1)} | {cell(rows['flat', ratio], 2)} |"
          f" {cell(rows['fall then flat', ratio], 0)} |"
          f" {cell(rows['fall then flat', ratio], 1)} |"
          f" {cell(rows['fall then flat', ratio], 2)} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> str:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", type=int, default=50)
  parser.add_argument("--write-results", action="store_true",
                      help=f"write {RESULTS.relative_to(ROOT)} (default:"
                      f" {SCRATCH.relative_to(ROOT)})")
  args = parser.parse_args(argv)
  if args.seeds < 1:
    parser.error("--seeds must be >= 1")
  command = "python docs/scripts/plateau_vs_optax.py" + "".join(
      f" {arg}" for arg in (argv if argv is not None else sys.argv[1:]))
  print(f"{len(WINDOWS)} windows x 2 rules, {args.seeds} seeds:", flush=True)
  text = table(measure(args.seeds), args.seeds, command)
  output = RESULTS if args.write_results else SCRATCH
  output.parent.mkdir(parents=True, exist_ok=True)
  output.write_text(text)
  print(text)
  print(f"written to {output}")
  return text


if __name__ == "__main__":
  main()
