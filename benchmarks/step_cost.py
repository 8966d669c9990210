"""Per-step cost of nagd against optax.sgd(nesterov=True), in one process.

For each parameter tree, every variant's jitted step (update + apply, fixed
gradients, buffers donated) is timed in interleaved rounds. Reported per
variant: the median over rounds of its time over Optax's in the same round;
the floor's time over its time (the fraction of the floor it reaches);
compile time against Optax's; state bytes. The floor is the same update
jitted over the tree as one flat array (donated), without per-leaf kernels
(see ``make_floor``). PyTorch's
``SGD(nesterov=True)`` with ``foreach=True`` and ``fused=True`` runs on the
same trees when torch is installed. Last, the optimizer's share of a real
training step: the digits CNN of ``nagd_optax.problems``.

Run:  python -m benchmarks.step_cost [--quick] [--write-results]
Writes runs/step_cost/step_cost.md and .png; with --write-results,
benchmarks/results/step_cost.md and step_cost.png (the committed results).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import os
import random
import re
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import nagd_optax as nagd
from benchmarks import _common

BASELINE = "optax.sgd(nesterov=True)"
# The same Optax step again, timed like the others: how far from 1.00 an
# identical program lands is this run's resolution.
CONTROL = "optax.sgd(nesterov=True), again (control)"
LARGE, SMALL, GPT = "one 4M leaf", "500 leaves of 4k", "GPT-like (d=256)"
FLOOR = "floor: the update on one flat array"
LEARNING_RATE, MOMENTUM = 1e-3, 0.9


def gpt_tree(blocks: int = 12, width: int = 256, vocabulary: int = 1024,
             context: int = 256) -> dict:
  """A GPT-like parameter tree: embeddings, ``blocks`` transformer blocks
  (layer norms, attention, MLP; 12 leaves each), a final layer norm. At the
  defaults: 148 leaves, 9.8M parameters."""
  key = jax.random.PRNGKey(0)
  normal = lambda *shape: jax.random.normal(key, shape)
  d = width
  tree = {"embed": normal(vocabulary, d), "position": normal(context, d)}
  for b in range(blocks):
    tree[f"block{b:02d}"] = {
        "ln1_scale": jnp.ones(d), "ln1_bias": jnp.zeros(d),
        "qkv": normal(d, 3 * d), "qkv_bias": jnp.zeros(3 * d),
        "proj": normal(d, d), "proj_bias": jnp.zeros(d),
        "ln2_scale": jnp.ones(d), "ln2_bias": jnp.zeros(d),
        "fc": normal(d, 4 * d), "fc_bias": jnp.zeros(4 * d),
        "out": normal(4 * d, d), "out_bias": jnp.zeros(d),
    }
  tree["lnf_scale"], tree["lnf_bias"] = jnp.ones(d), jnp.zeros(d)
  return tree


def trees(quick: bool) -> dict[str, dict]:
  """Parameter trees (float32), keyed by a description."""
  scale = 4 if quick else 1
  key = jax.random.PRNGKey(0)
  return {
      LARGE: {"w": jax.random.normal(key, (4_194_304 // scale,))},
      SMALL: {
          f"w{i:03d}": jax.random.normal(key, (4096 // scale,))
          for i in range(500)
      },
      GPT: gpt_tree(blocks=3 if quick else 12),
  }


def optimizers() -> dict[str, optax.GradientTransformationExtraArgs]:
  lr, momentum = LEARNING_RATE, MOMENTUM
  return {
      BASELINE: optax.sgd(lr, momentum, nesterov=True),
      CONTROL: optax.sgd(lr, momentum, nesterov=True),
      "nagd": nagd.nagd(lr, momentum),
      "nagd bf16 momentum": nagd.nagd(
          lr, momentum, accumulator_dtype=jnp.bfloat16
      ),
      "nagd f16 momentum": nagd.nagd(
          lr, momentum, accumulator_dtype=jnp.float16
      ),
      "nagd restart=loss": nagd.nagd(lr, momentum, restart="loss"),
      "nagd restart=gradient": nagd.nagd(lr, momentum, restart="gradient"),
      "nagd restart=speed": nagd.nagd(lr, momentum, restart="speed"),
      # bf16 momentum with the criteria that reduce over the buffer.
      "nagd bf16, restart=gradient": nagd.nagd(
          lr, momentum, accumulator_dtype=jnp.bfloat16, restart="gradient"
      ),
      "nagd bf16, restart=speed": nagd.nagd(
          lr, momentum, accumulator_dtype=jnp.bfloat16, restart="speed"
      ),
      'nagd("auto")': nagd.nagd("auto"),
  }


def _timed_compile(lower):
  """Calls ``lower()`` (a jitted function's ``.lower(...)``) and compiles the
  result; returns the compiled step and the CPU seconds of this process
  both took (less sensitive to other load than wall time).

  Python's garbage collector is run before and held off during: tracing
  makes many objects, and a collection falling into one variant's compile
  but not another's widened the spread of the per-round ratios.
  """
  with _no_garbage_collection():
    start = time.process_time()
    compiled = lower().compile()
    return compiled, time.process_time() - start


@contextlib.contextmanager
def _no_garbage_collection():
  """Collects garbage, then holds the collector off within the context."""
  gc.collect()
  gc.disable()
  try:
    yield
  finally:
    gc.enable()


def make_step(optimizer, params, grads):
  """A jitted training step with donated parameters and state.

  Gradients are an argument (not a constant XLA could fold into the step).
  Returns a function running one step, and the compile time in CPU seconds
  of this process (less sensitive to other load than wall time).
  """

  def step(params, state, grads, value):
    updates, state = optimizer.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state

  jitted = jax.jit(step, donate_argnums=(0, 1))
  compiled, compile_seconds = _timed_compile(lambda: jitted.lower(
      params, optimizer.init(params), grads, jnp.float32(1.0)))
  carry = [params, optimizer.init(params)]
  losses = _falling_loss_with_rises()

  def run():
    carry[:] = compiled(carry[0], carry[1], grads, next(losses))
    return carry[0]

  return run, compile_seconds


def make_floor(params, grads):
  """The floor: the Nesterov update jitted over the tree as one flat array
  (donated), with no per-leaf kernels; returns (run, compile CPU seconds).

  XLA:CPU compiles it to two kernels, m = mu m + g and then
  p -= lr (g + mu m) from the new m: 6 arrays moved, where one kernel
  reading p, g, m and writing p, m would move 5.
  """
  flat = lambda tree: jnp.concatenate([x.ravel() for x in
                                       jax.tree.leaves(tree)])
  p, g = flat(params), flat(grads)

  def step(p, m, g):
    m = MOMENTUM * m + g
    return p - LEARNING_RATE * (g + MOMENTUM * m), m

  jitted = jax.jit(step, donate_argnums=(0, 1))
  compiled, compile_seconds = _timed_compile(lambda: jitted.lower(p, p, g))
  carry = [p, jnp.zeros_like(p)]

  def run():
    carry[:] = compiled(carry[0], carry[1], g)
    return carry[0]

  return run, compile_seconds


def make_torch_steps(params, grads) -> dict:
  """``torch.optim.SGD(nesterov=True)``, foreach and fused, on the same
  tree, on one thread; {} when torch is not installed.

  With two threads, torch's OpenMP threads and XLA's thread pool contend on
  a 2-core machine and torch ran 10-50x slower than alone. The foreach
  kernel overwrites the gradients with ``g + mu m`` (the fused one does
  not): its later steps see other numbers, the same work.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return {}
  torch.set_num_threads(1)
  runs = {}
  for kind in ("foreach", "fused"):
    tensors = [torch.tensor(np.asarray(x)).requires_grad_()
               for x in jax.tree.leaves(params)]
    for tensor, grad in zip(tensors, jax.tree.leaves(grads)):
      tensor.grad = torch.tensor(np.asarray(grad))
    try:
      optimizer = torch.optim.SGD(tensors, lr=LEARNING_RATE,
                                  momentum=MOMENTUM, nesterov=True,
                                  **{kind: True})
      optimizer.step()
    except (RuntimeError, TypeError):  # no such kernel in this build
      continue
    runs[f"torch SGD {kind}=True"] = optimizer.step
  return runs


def _falling_loss_with_rises(count: int = 1024):
  """A slowly falling loss that rises every 7th step (restarts do happen),
  cycling through ``count`` values.

  The values are on the device before any step is timed, as a loss
  computed by the previous step would be. Computed with jax arithmetic per
  step, they had cost every variant a dispatch inside its timed step
  (tens of microseconds, more than Optax's whole step on a tree of a few
  elements), and the variants that read the loss had waited for it.
  """
  values, value = [], 1.0
  for step in range(1, count + 1):
    value = value * 0.999 + (1e-3 if step % 7 == 0 else 0.0)
    values.append(jax.device_put(np.float32(value)))
  return itertools.cycle(values)


def state_bytes(optimizer, params) -> int:
  return sum(x.nbytes for x in jax.tree.leaves(optimizer.init(params)))


def interleaved_samples(runs, rounds: int, repeats: int, seed: int = 0):
  """Seconds per call of each function, one sample per interleaved round.

  Each round calls every function ``repeats`` times in turn, in an order
  shuffled per round (so no variant always follows the same one), blocking
  on the result (``jax.block_until_ready`` is a no-op on torch's None).
  """
  order = random.Random(seed)
  names = list(runs)
  samples = {name: [] for name in names}
  for _ in range(rounds):
    order.shuffle(names)
    with _no_garbage_collection():  # a collection per round, between them
      for name in names:
        start = time.perf_counter()
        for _ in range(repeats):
          jax.block_until_ready(runs[name]())
        samples[name].append((time.perf_counter() - start) / repeats)
  return samples


def per_round_ratios(samples, reference: str) -> dict[str, list[float]]:
  """Each round's time over ``reference``'s in the same round."""
  return {
      name: [t / r for t, r in zip(times, samples[reference])]
      for name, times in samples.items()
  }


def quartiles(values) -> tuple[float, float, float]:
  q1, median, q3 = np.percentile(values, [25, 50, 75])
  return float(q1), float(median), float(q3)


def training_share(rounds: int, repeats: int) -> list[tuple]:
  """The optimizer's share of a digits-CNN training step (batch 64).

  Times the jitted step with each optimizer and the same step without one
  (forward, backward, ``params - lr * grads``), interleaved; the share is
  the difference over the full step's time.
  """
  from flax import nnx  # pylint: disable=g-import-not-at-top

  model = nagd.problems.cnn(side=8, rngs=nnx.Rngs(0), width=16, hidden=64)
  graphdef, params = nnx.split(model, nnx.Param)
  data = nagd.problems.load_digits(0)
  x, y = jnp.asarray(data.x_train[:64]), jnp.asarray(data.y_train[:64])

  def loss_fn(params):
    logits = nnx.merge(graphdef, params)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def make(optimizer):
    def step(params, state):
      loss, grads = jax.value_and_grad(loss_fn)(params)
      if optimizer is None:
        return jax.tree.map(lambda p, g: p - LEARNING_RATE * g, params,
                            grads), state
      updates, state = optimizer.update(grads, state, params, value=loss)
      return optax.apply_updates(params, updates), state

    # Every call starts from the same parameters and state (nothing is
    # donated or carried over): the variants then time the same arithmetic
    # on the same numbers, where trajectories that drifted apart (say into
    # subnormal floats) could time differently.
    jitted = jax.jit(step)
    state = None if optimizer is None else optimizer.init(params)

    def run():
      return jitted(params, state)[0]

    jax.block_until_ready(run())
    return run

  chosen = {name: optimizer for name, optimizer in optimizers().items()
            if "16" not in name}  # no bf16 / f16 buffers
  runs = {"no optimizer (p - lr g)": make(None)}
  runs.update({name: make(optimizer) for name, optimizer in chosen.items()})
  samples = interleaved_samples(runs, rounds, repeats)
  bare = samples["no optimizer (p - lr g)"]
  rows = []
  for name in chosen:
    shares = [(t - b) / t for t, b in zip(samples[name], bare)]
    rows.append((name, f"{1e3 * statistics.median(samples[name]):.3f}",
                 f"{100 * statistics.median(shares):.1f}%"))
  rows.append(("no optimizer (p - lr g)",
               f"{1e3 * statistics.median(bare):.3f}", "-"))
  n_params = sum(p.size for p in jax.tree.leaves(params))
  return rows, n_params




def kernel_compile_costs(rounds: int) -> list[tuple]:
  """What XLA:CPU's compile time depends on, in small programs.

  Each program maps one elementwise expression over a tree of leaves:
  leaves of distinct shapes give distinct kernels, leaves of one shape
  identical ones. The same expression with a reset by a select, or by a
  multiplication by a traced 0/1 scalar, shows what each costs per distinct
  kernel. Medians of CPU seconds over ``rounds`` interleaved rounds.
  """
  distinct = lambda n: {f"{i:03d}": jnp.ones((256 + i, 64)) for i in range(n)}
  same = lambda n: {f"{i:03d}": jnp.ones((256, 64)) for i in range(n)}
  s = jnp.ones(2)
  fma = lambda tree, s: jax.tree.map(lambda x: x * s[0] + s[1], tree)
  select = lambda tree, s: jax.tree.map(
      lambda x: jax.lax.select(s[0] > 0, jnp.zeros_like(x), x) * s[1], tree)
  keep = lambda tree, s: jax.tree.map(
      lambda x: x * jnp.where(s[0] > 0, 0.0, 1.0) * s[1], tree)
  programs = {
      "16 kernels of distinct shapes, x * a + b": (fma, distinct(16)),
      "16 of distinct shapes, reset by a select": (select, distinct(16)),
      "16 of distinct shapes, reset by times 0 or 1": (keep, distinct(16)),
      "100 kernels of one shape, x * a + b": (fma, same(100)),
      "100 kernels of distinct shapes, x * a + b": (fma, distinct(100)),
  }
  samples = {name: [] for name in programs}
  order = list(programs)
  for r in range(rounds):
    random.Random(r).shuffle(order)
    for name in order:
      function, tree = programs[name]
      # A fresh function each time: nothing is served from JAX's caches.
      samples[name].append(_timed_compile(
          lambda function=function, tree=tree: jax.jit(
              lambda tree, s: function(tree, s)).lower(tree, s))[1])
  return [(name, f"{statistics.median(times):.3f}")
          for name, times in samples.items()]


def compiled_kernels(optimizer, params) -> tuple[int, int]:
  """(kernels, distinct kernels) in the compiled step.

  Kernels are the fusions XLA:CPU emits; two are the same when their
  computations read alike once instruction names are stripped (read from
  the compiled HLO text).
  """

  def step(params, state, grads, value):
    updates, state = optimizer.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state

  text = jax.jit(step, donate_argnums=(0, 1)).lower(
      params, optimizer.init(params), params, jnp.float32(1.0)
  ).compile().as_text()
  bodies = []
  for computation in text.split("\n\n"):  # computations, one per block
    computation = computation.strip()
    header = computation.split("\n", 1)[0]
    if not header.startswith("%") or "fused" not in header.split("(")[0]:
      continue
    body = re.sub(r"metadata=\{[^}]*\}", "", computation)
    body = re.sub(r"param_\d+(\.\d+)?", "param", body)
    bodies.append(re.sub(r"%[\w.\-]+", "%", body))
  return len(bodies), len(set(bodies))


# The bars this benchmark is held to (CPU); None: every tree.
BARS = (
    ("nagd restart=speed", None, 1.75, "step"),
    ("nagd bf16 momentum", (LARGE, GPT), 0.95, "step"),
    ("nagd", None, 1.05, "step"),
    ("nagd restart=loss", None, 1.05, "step"),
    ("nagd restart=gradient", (LARGE, GPT), 1.35, "step"),
    # Compile time: on the GPT-like tree, where it was found to double.
    ("nagd restart=loss", (GPT,), 1.5, "compile"),
    ("nagd restart=gradient", (GPT,), 1.5, "compile"),
    ("nagd restart=speed", (GPT,), 1.5, "compile"),
)


def check_bars(results) -> list[str]:
  """One line per bar: the measured ratios and whether each is met."""
  lines = []
  for name, tree_names, bar, what in BARS:
    figures, met = [], True
    for tree_name, result in results.items():
      if tree_names is not None and tree_name not in tree_names:
        continue
      value = result[what][name]
      met &= value <= bar
      figures.append(f"{tree_name} {value:.2f}")
    kind = "step time" if what == "step" else "compile time"
    lines.append(f"- {name}, {kind} <= {bar}x Optax's: "
                 f"{'**met**' if met else '**not met**'} ("
                 + "; ".join(figures) + ")")
  return lines


def plot(results, path):
  """Per tree, each variant's step time over Optax's, with the bars."""
  plt = _common.pyplot()
  figure, axes = plt.subplots(1, len(results), sharey=True, squeeze=False,
                              figsize=(4 + 4 * len(results), 5))
  for axis, (tree_name, result) in zip(axes[0], results.items()):
    names = list(result["step"])[::-1]
    axis.barh(names, [result["step"][n] for n in names], color="tab:blue")
    for goal, color, style in ((1.0, "k", "-"), (1.05, "g", "--"),
                               (1.35, "tab:orange", "-."),
                               (1.75, "r", ":")):
      axis.axvline(goal, color=color, linestyle=style, lw=1)
    axis.set(title=tree_name, xlabel=f"step time / {BASELINE}")
    axis.grid(axis="x", alpha=0.3)
  return _common.save_figure(figure, os.path.basename(path),
                             os.path.dirname(path))


def main(argv=None) -> str:
  load_before = os.getloadavg()[0]
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="smaller trees and fewer rounds (a smoke run)")
  parser.add_argument("--write-results", action="store_true",
                      help="write benchmarks/results/ (the committed"
                      " results) instead of runs/")
  parser.add_argument("--no-write", action="store_true",
                      help="write nothing")
  args = parser.parse_args(argv)
  rounds, repeats = (3, 2) if args.quick else (150, 5)
  compiles = 1 if args.quick else 7
  started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
  command = "python -m benchmarks.step_cost" + (
      " --quick" if args.quick else "") + (
          " --write-results" if args.write_results else "")

  sections = [
      "# Step cost: nagd vs optax.sgd(nesterov=True), a flat-array floor"
      " and PyTorch\n",
      f"Command: `{command}`, run {started}. Machine and versions:"
      f" {_common.environment()}. 1-minute load average {load_before:.1f}"
      f" at the start and {os.getloadavg()[0]:.1f} at the end (2 cores);"
      " rounds are interleaved, so other load falls on all variants alike,"
      " but absolute times move, and the per-round ratios of millisecond"
      " steps spread widely (see the quartiles).\n",
      f"Per round, each variant runs {repeats} steps (update + apply, fixed"
      " gradients, buffers donated) in turn, in an order shuffled per round;"
      f" {rounds} rounds. *Ratio to Optax*: the median over rounds of the"
      " variant's time over Optax's in the same round (in brackets the"
      " quartiles of that per-round ratio). *Of floor*: the median over"
      " rounds of the floor's time over the variant's, i.e. the fraction of"
      " the floor reached. The floor is the same update (m = mu m + g;"
      " p -= lr (g + mu m)) jitted over the tree as one flat float32 array"
      " (donated): no per-leaf kernels. XLA:CPU compiles it to two kernels"
      " (m from g and m, then p from p and the new m), moving 6 arrays; one"
      " kernel reading p, g, m and writing p, m would move 5, and PyTorch's"
      " fused kernel is such a kernel (whether it beats this floor varies"
      " between runs and trees). PyTorch runs on one thread (with two, its"
      " threads and"
      " XLA's contend on this machine and it ran 10-50x slower). *Compile*:"
      " CPU seconds of this process to lower and compile the step (the"
      f" median of {compiles} rounds, each compiling every variant once in"
      " an order shuffled per round) and, in brackets, the median over"
      " rounds of its ratio to Optax's in the same round (the floor is"
      " compiled once: its time over Optax's median).\n",
  ]
  results = {}
  for tree_name, params in trees(args.quick).items():
    print(f"step cost: {tree_name}", flush=True)
    grads = jax.tree.map(lambda p: 1e-2 * p, params)
    param_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
    runs, memory = {}, {}
    compile_samples = {name: [] for name in optimizers()}
    order = list(compile_samples)
    for _ in range(compiles):
      random.Random(len(compile_samples[BASELINE])).shuffle(order)
      for name in order:
        copy = jax.tree.map(jnp.copy, params)
        runs[name], seconds = make_step(optimizers()[name], copy, grads)
        compile_samples[name].append(seconds)
    runs = {name: runs[name] for name in compile_samples}  # table order
    compile_times = {name: statistics.median(times)
                     for name, times in compile_samples.items()}
    compile_ratio = {
        name: statistics.median(
            t / o for t, o in zip(times, compile_samples[BASELINE]))
        for name, times in compile_samples.items()
    }
    for name, optimizer in optimizers().items():
      memory[name] = f"{state_bytes(optimizer, params) / param_bytes:.2f}"
    runs[FLOOR], compile_times[FLOOR] = make_floor(params, grads)
    compile_ratio[FLOOR] = compile_times[FLOOR] / compile_times[BASELINE]
    memory[FLOOR] = "1.00"
    for name, run in make_torch_steps(params, grads).items():
      runs[name], compile_times[name], memory[name] = run, None, "1.00"
    samples = interleaved_samples(runs, rounds, repeats)
    to_optax = per_round_ratios(samples, BASELINE)
    floor_share = {name: [1 / r for r in ratios]
                   for name, ratios in per_round_ratios(samples,
                                                        FLOOR).items()}
    step = {name: quartiles(ratios)[1] for name, ratios in to_optax.items()}
    results[tree_name] = {"step": step, "compile": compile_ratio}
    rows = []
    for name in runs:
      q1, median, q3 = quartiles(to_optax[name])
      seconds = compile_times[name]
      rows.append((
          name,
          f"{1e3 * statistics.median(samples[name]):.2f}",
          f"{median:.2f} ({q1:.2f}-{q3:.2f})",
          f"{statistics.median(floor_share[name]):.2f}",
          "-" if seconds is None else
          f"{seconds:.2f} ({compile_ratio[name]:.2f}x)",
          memory[name],
      ))
    sections.append(
        f"## {tree_name}: {len(jax.tree.leaves(params))} leaves,"
        f" {sum(x.size for x in jax.tree.leaves(params)) / 1e6:.1f}M float32"
        " parameters\n")
    sections.append(_common.markdown_table(
        ["variant", "ms / step", "ratio to Optax", "of floor",
         "compile s (x Optax's)", "state / params (bytes)"],
        rows,
    ) + "\n")
  # A digits step takes milliseconds: more steps per round.
  share_rows, n_params = training_share(rounds, 4 * repeats)
  sections.append(
      f"## The optimizer in a training step: digits CNN ({n_params:,}"
      " parameters), batch 64\n")
  sections.append(
      f"The jitted step (forward, backward, update, apply; {4 * repeats}"
      " steps per round) with each"
      " optimizer, and without one (`p - lr g`), interleaved; *share*: the"
      " median over rounds of (step - step without optimizer) / step.\n")
  sections.append(_common.markdown_table(
      ["optimizer", "ms / step", "share of the step"], share_rows) + "\n")
  print("step cost: what compile time depends on", flush=True)
  cost_rows = kernel_compile_costs(compiles)
  gpt_params = trees(args.quick)[GPT]
  count_rows = [
      (name, *compiled_kernels(optimizer, gpt_params))
      for name, optimizer in optimizers().items()
  ]
  sections.append("## What compile time depends on (XLA:CPU)\n")
  sections.append(
      "CPU seconds to lower and compile small programs (median over"
      f" {compiles} interleaved rounds): each distinct kernel costs"
      " compile time, a kernel identical to one already compiled little,"
      " and a select costs more than a multiplication.\n")
  sections.append(_common.markdown_table(["program", "compile s"],
                                         cost_rows) + "\n")
  sections.append(
      f"Kernels in each variant's compiled step on the {GPT} tree (fusions,"
      " and how many of them differ once names are stripped):\n")
  sections.append(_common.markdown_table(
      ["variant", "kernels", "distinct"], count_rows) + "\n")
  sections.append("## Bars (CPU)\n")
  sections.append(
      "The control, Optax's step timed again as a variant of its own,"
      " measured "
      + "; ".join(f"{tree_name} {result['step'][CONTROL]:.2f} (compile"
                  f" {result['compile'][CONTROL]:.2f})"
                  for tree_name, result in results.items())
      + ": an identical program lands that far from 1.00, so a ratio that"
      " close to its bar is within this run's resolution.\n")
  sections.append("\n".join(check_bars(results)) + "\n")
  name = "step_cost"
  sections.append(f"![step cost]({name}.png)\n\nLines: 1.0 (Optax), 1.05"
                  " (trace, loss restart), 1.35 (gradient restart), 1.75"
                  " (speed restart).\n")
  text = "\n".join(sections)
  print(text)
  if not args.no_write:
    folder = _common.output_directory("step_cost", args.write_results)
    print("wrote", _common.write(f"{name}.md", text, folder))
    print("wrote", plot(results, os.path.join(folder, f"{name}.png")))
  return text


if __name__ == "__main__":
  main()
