"""Per-step cost of nagd against optax.sgd(nesterov=True), in one process.

For each parameter tree, every optimizer's jitted step (update + apply, with
fixed gradients, buffers donated) is timed in interleaved rounds; the table
reports median milliseconds per step and the ratio of medians to Optax.
Also reports compile time and optimizer-state bytes against Adam's.

Run:  python -m benchmarks.step_cost [--quick]
Writes benchmarks/results/step_cost.md and step_cost.png.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import nagd_optax as nagd
from benchmarks import _common


def flax_cnn_parameters() -> dict:
  """The parameter tree of Flax's MNIST example CNN (824k parameters)."""
  from flax import nnx  # pylint: disable=g-import-not-at-top

  class CNN(nnx.Module):

    def __init__(self, rngs: nnx.Rngs):
      self.conv1 = nnx.Conv(1, 32, (3, 3), rngs=rngs)
      self.conv2 = nnx.Conv(32, 64, (3, 3), rngs=rngs)
      self.linear1 = nnx.Linear(64 * 7 * 7, 256, rngs=rngs)
      self.linear2 = nnx.Linear(256, 10, rngs=rngs)

  return nnx.to_pure_dict(nnx.state(CNN(nnx.Rngs(0)), nnx.Param))


def trees(quick: bool) -> dict[str, dict]:
  """Parameter trees (float32), keyed by a description."""
  scale = 4 if quick else 1
  key = jax.random.PRNGKey(0)
  return {
      "one 4M leaf": {
          "w": jax.random.normal(key, (4_194_304 // scale,))
      },
      "500 leaves of 4k": {
          f"w{i:03d}": jax.random.normal(key, (4096 // scale,))
          for i in range(500)
      },
      "Flax CNN (MNIST example, 824k)": flax_cnn_parameters(),
  }


def optimizers() -> dict[str, optax.GradientTransformationExtraArgs]:
  lr, momentum = 1e-3, 0.9
  return {
      "optax.sgd(nesterov=True)": optax.sgd(lr, momentum, nesterov=True),
      "nagd": nagd.nagd(lr, momentum),
      "nagd bf16 accumulator": nagd.nagd(
          lr, momentum, accumulator_dtype=jnp.bfloat16
      ),
      "nagd restart=loss": nagd.nagd(lr, momentum, restart="loss"),
      "nagd restart=loss, smoothed": nagd.nagd(
          lr, momentum, restart="loss", loss_smoothing=0.98
      ),
      "nagd restart=gradient": nagd.nagd(lr, momentum, restart="gradient"),
      "nagd restart=speed": nagd.nagd(lr, momentum, restart="speed"),
      "nagd restart=interval": nagd.nagd(
          lr, momentum, restart="interval", min_interval=100
      ),
      "optax.flatten(optax.sgd(nesterov=True))": optax.flatten(
          optax.sgd(lr, momentum, nesterov=True)
      ),
      "optax.flatten(nagd)": optax.flatten(nagd.nagd(lr, momentum)),
      "optax.flatten(nagd restart=gradient)": optax.flatten(
          nagd.nagd(lr, momentum, restart="gradient")
      ),
      "optax.adam": optax.adam(lr),
  }


def make_step(optimizer, params, grads):
  """A jitted training step with donated parameters and state.

  Gradients are an argument (not a constant XLA could fold into the step).
  Returns a function running one step, and the compile time in seconds.
  """

  def step(params, state, grads, value):
    updates, state = optimizer.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state

  jitted = jax.jit(step, donate_argnums=(0, 1))
  start = time.perf_counter()
  compiled = jitted.lower(
      params, optimizer.init(params), grads, jnp.float32(1.0)
  ).compile()
  compile_seconds = time.perf_counter() - start
  carry = [params, optimizer.init(params)]
  losses = iter(_falling_loss_with_rises())

  def run():
    carry[:] = compiled(carry[0], carry[1], grads, next(losses))
    return carry[0]

  return run, compile_seconds


def _falling_loss_with_rises():
  """A slowly falling loss that rises every 7th step: restarts do happen."""
  value, step = 1.0, 0
  while True:
    step += 1
    value = value * 0.999 + (1e-3 if step % 7 == 0 else 0.0)
    yield jnp.float32(value)


def state_bytes(optimizer, params) -> int:
  return sum(x.nbytes for x in jax.tree.leaves(optimizer.init(params)))


def plot(ratios_by_tree, name):
  """Per tree, each optimizer's step time over Optax's, with the goals."""
  plt = _common.pyplot()
  figure, axes = plt.subplots(1, len(ratios_by_tree), sharey=True,
                              squeeze=False,
                              figsize=(4 + 4 * len(ratios_by_tree), 5))
  for axis, (tree_name, ratios) in zip(axes[0], ratios_by_tree.items()):
    names = list(ratios)[::-1]
    axis.barh(names, [ratios[n] for n in names], color="tab:blue")
    for goal, color, style in ((1.0, "k", "-"), (1.05, "g", "--"),
                               (1.10, "r", ":")):
      axis.axvline(goal, color=color, linestyle=style, lw=1)
    axis.set(title=tree_name, xlabel="step time / optax.sgd(nesterov=True)")
    axis.grid(axis="x", alpha=0.3)
  return _common.save_figure(figure, name)


def main(argv=None) -> str:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="smaller trees and fewer rounds (a smoke run)")
  parser.add_argument("--no-write", action="store_true")
  args = parser.parse_args(argv)
  rounds, repeats = (3, 3) if args.quick else (60, 10)

  sections = [
      "# Step cost: nagd vs optax.sgd(nesterov=True)\n",
      f"Machine and versions: {_common.environment()}.\n",
      "Median time per jitted step (update + apply_updates, buffers donated,"
      f" fixed gradients), over {rounds} interleaved rounds of {repeats}"
      " steps; ratio = median / median of optax.sgd(nesterov=True) in the"
      " same process; ratio range: the lowest and highest ratio over three"
      " consecutive blocks of the rounds, i.e. how much the ratio moves on"
      " this machine. Reproduce with `python -m benchmarks.step_cost`.\n",
  ]
  ratios_by_tree = {}
  for tree_name, params in trees(args.quick).items():
    grads = jax.tree.map(lambda p: 1e-2 * p, params)
    param_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
    runs, compile_times, memory = {}, {}, {}
    for name, optimizer in optimizers().items():
      copy = jax.tree.map(jnp.copy, params)
      runs[name], compile_times[name] = make_step(optimizer, copy, grads)
      memory[name] = state_bytes(optimizer, params)
    samples = _common.interleaved_samples(runs, rounds, repeats)
    ratios = _common.median_ratios(samples, "optax.sgd(nesterov=True)")
    ratios_by_tree[tree_name] = {name: r[0] for name, r in ratios.items()}
    rows = [
        (
            name,
            f"{1e3 * statistics.median(samples[name]):.2f}",
            f"{ratios[name][0]:.3f}",
            f"{ratios[name][1]:.2f}-{ratios[name][2]:.2f}",
            f"{compile_times[name]:.2f}",
            f"{memory[name] / param_bytes:.3f}",
        )
        for name in runs
    ]
    sections.append(f"## {tree_name}: {len(jax.tree.leaves(params))} leaves,"
                    f" {param_bytes / 2**20:.1f} MiB of float32 parameters\n")
    sections.append(_common.markdown_table(
        ["optimizer", "ms / step", "ratio to Optax", "ratio range",
         "compile s", "state bytes / param bytes"],
        rows,
    ) + "\n")
  sections.append("![step cost](step_cost.png)\n\nDashed: the 1.05x goal"
                  " (trace, loss restart); dotted: 1.10x (gradient restart).\n")
  text = "\n".join(sections)
  print(text)
  if not args.no_write:
    print("wrote", _common.write("step_cost.md", text))
    print("wrote", plot(ratios_by_tree, "step_cost.png"))
  return text


if __name__ == "__main__":
  main()
