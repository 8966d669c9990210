"""Helpers shared by the benchmark scripts: timing, environment, tables."""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable, Sequence

import jax
import numpy as np
import optax

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def environment() -> str:
  """One markdown line: versions and machine, for every results file."""
  import flax  # pylint: disable=g-import-not-at-top

  import nagd_optax  # pylint: disable=g-import-not-at-top

  cpu = platform.processor() or platform.machine()
  return (
      f"nagd_optax {nagd_optax.__version__}, jax {jax.__version__}, optax"
      f" {optax.__version__}, flax {flax.__version__}, numpy"
      f" {np.__version__}, Python {platform.python_version()};"
      f" {jax.devices()[0].platform.upper()} ({cpu}, {os.cpu_count()} cores)"
  )


def interleaved_samples(
    runs: dict[str, Callable[[], object]], rounds: int, repeats: int
) -> dict[str, list[float]]:
  """Seconds per call of each function, one sample per interleaved round.

  Each round calls every function ``repeats`` times in turn (blocking on the
  result), so slow drifts of a noisy machine hit all of them alike.
  """
  samples: dict[str, list[float]] = {name: [] for name in runs}
  for _ in range(rounds):
    for name, run in runs.items():
      start = time.perf_counter()
      for _ in range(repeats):
        jax.block_until_ready(run())
      samples[name].append((time.perf_counter() - start) / repeats)
  return samples


def median_ratios(
    samples: dict[str, list[float]], baseline: str, blocks: int = 3
) -> dict[str, tuple[float, float, float]]:
  """Per function: median / the baseline's median over all rounds, and the
  lowest and highest such ratio over ``blocks`` consecutive blocks of rounds
  (how much the ratio moves on this machine)."""
  def ratio(name, lo, hi):
    return (statistics.median(samples[name][lo:hi])
            / statistics.median(samples[baseline][lo:hi]))

  rounds = len(samples[baseline])
  edges = [round(i * rounds / blocks) for i in range(blocks + 1)]
  result = {}
  for name in samples:
    per_block = [ratio(name, lo, hi) for lo, hi in zip(edges, edges[1:])
                 if hi > lo]
    result[name] = (ratio(name, 0, rounds), min(per_block), max(per_block))
  return result


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
  lines = [
      "| " + " | ".join(header) + " |",
      "|" + "|".join("---" for _ in header) + "|",
  ]
  lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
  return "\n".join(lines)


# Where ordinary runs write: the repository's git-ignored run directory.
RUNS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "runs")


def output_directory(benchmark: str, write_results: bool) -> str:
  """benchmarks/results/ with ``--write-results``, else runs/<benchmark>/."""
  return RESULTS if write_results else os.path.join(RUNS, benchmark)


def write(name: str, text: str, directory: str = RESULTS) -> str:
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, name)
  with open(path, "w") as file:
    file.write(text)
  return path


def pyplot():
  """matplotlib.pyplot on the Agg backend (no display needed)."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  return plt


def save_figure(figure, name: str, directory: str = RESULTS) -> str:
  """Writes ``figure`` to <directory>/<name> and closes it."""
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, name)
  figure.tight_layout()
  figure.savefig(path, dpi=90)
  pyplot().close(figure)
  return path
