"""Runs every benchmark and writes its results to benchmarks/results/.

Run:  python -m benchmarks.run_all [--quick]

--quick shrinks every benchmark (fewer problems, grids, rounds) to a few
minutes in all; the committed results come from the full run.
"""

import argparse
import time

from benchmarks import convergence
from benchmarks import step_cost
from benchmarks import training


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--no-write", action="store_true")
  args = parser.parse_args(argv)
  flags = (["--quick"] if args.quick else []) + (
      ["--no-write"] if args.no_write else [])
  for benchmark in (convergence, step_cost, training):
    start = time.perf_counter()
    # training writes benchmarks/results/ only when told to.
    benchmark.main(flags + (["--write-results"] if benchmark is training
                            and not args.no_write else []))
    print(f"[{benchmark.__name__}: {time.perf_counter() - start:.0f} s]")


if __name__ == "__main__":
  main()
