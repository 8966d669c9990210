"""Helpers shared by the benchmark scripts: timing, environment, tables."""

from __future__ import annotations

import importlib
import os
import platform
import statistics
import sys
import time
from typing import Callable, Sequence

import jax
import numpy as np
import optax

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "examples")


def example(name: str):
  """Imports examples/<name>.py, so that benchmarks reuse the examples' data
  sets and problems instead of defining them again."""
  if EXAMPLES not in sys.path:
    sys.path.insert(0, EXAMPLES)  # the examples import their `common`
  return importlib.import_module(name)


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


def interleaved_medians(
    runs: dict[str, Callable[[], object]], rounds: int, repeats: int
) -> dict[str, float]:
  """Median seconds per call of each function, timed in interleaved rounds.

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
  return {name: statistics.median(times) for name, times in samples.items()}


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
  lines = [
      "| " + " | ".join(header) + " |",
      "|" + "|".join("---" for _ in header) + "|",
  ]
  lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
  return "\n".join(lines)


def write(name: str, text: str) -> str:
  os.makedirs(RESULTS, exist_ok=True)
  path = os.path.join(RESULTS, name)
  with open(path, "w") as file:
    file.write(text)
  return path


def pyplot():
  """matplotlib.pyplot on the Agg backend (no display needed)."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  return plt


def save_figure(figure, name: str) -> str:
  """Writes ``figure`` to results/<name> and closes it."""
  os.makedirs(RESULTS, exist_ok=True)
  path = os.path.join(RESULTS, name)
  figure.tight_layout()
  figure.savefig(path, dpi=90)
  pyplot().close(figure)
  return path
