"""Runs every benchmark and writes its results to benchmarks/results/.

Run:  python -m benchmarks.run_all [--quick]

--quick shrinks every benchmark (fewer problems, grids, rounds) to a few
minutes in all, and leaves out the CUTEst benchmark (benchmarks.cutest:
minutes from its cache, about 18 minutes cold); the committed results come
from the full run.
"""

import argparse
import time

from benchmarks import convergence
from benchmarks import cutest
from benchmarks import step_cost
from benchmarks import training


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--no-write", action="store_true")
  args = parser.parse_args(argv)
  flags = (["--quick"] if args.quick else []) + (
      ["--no-write"] if args.no_write else [])
  runs = [(convergence, flags), (step_cost, flags), (training, flags)]
  if not args.quick:  # CUTEst in the full suite only
    runs.append((cutest, []))
  # Only the full suite regenerates the committed results.
  write = [] if args.quick or args.no_write else ["--write-results"]
  for benchmark, benchmark_flags in runs:
    start = time.perf_counter()
    benchmark.main(benchmark_flags + write)
    print(f"[{benchmark.__name__}: {time.perf_counter() - start:.0f} s]")


if __name__ == "__main__":
  main()
