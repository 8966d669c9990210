"""Runs every benchmark; the full run regenerates benchmarks/results/.

Run:  python -m benchmarks.run_all [--quick] [--no-write]

The full run (no flag) runs every benchmark at full size, CUTEst included
(minutes from its cache, about 18 minutes cold), and regenerates the
committed results in benchmarks/results/ (each benchmark's --write-results).
--quick shrinks every benchmark (fewer problems, grids, rounds), leaves out
CUTEst, and writes to the git-ignored runs/ only; --no-write writes nothing.
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
