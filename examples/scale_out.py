"""Scale-out and resume: data-parallel nagd on 8 devices, checkpointed midway.

Trains the digits CNN data-parallel on 8 simulated CPU devices (set up here
with XLA_FLAGS before JAX starts; on real accelerators drop that line): each
global batch is sharded over a ``data`` mesh axis with ``NamedSharding``,
parameters and optimizer state are replicated, and ``jax.jit`` inserts the
gradient all-reduce. The optimizer is nagd at momentum 0.99, restarting the
momentum whenever it points uphill (restart="gradient"); the script prints
the steps at which it restarted.

Halfway through, parameters, optimizer state and step are saved with
orbax-checkpoint. A second run restores that checkpoint (into the same
shardings), replays the second half, and must end bit for bit where the
uninterrupted run ended: the batch order is a function of (seed, epoch), and
nothing else carries state.

Multi-host (one process per host, e.g. on a TPU pod or a GPU cluster):

  1. call ``jax.distributed.initialize()`` first thing in every process
     (coordinator address, process count and id come from the environment on
     managed clusters, or pass them explicitly);
  2. build the mesh over all devices, ``jax.make_mesh((jax.device_count(),),
     ("data",), axis_types=(AxisType.Auto,))``;
  3. let each host load its own slice of every global batch and assemble it
     with ``jax.make_array_from_process_local_data(batch_sharding, local)``;
  4. save and restore with orbax-checkpoint to storage all hosts share.

nagd adds nothing host-specific: its state is replicated like the parameters
(or sharded like them, under ``NamedSharding`` parameters), and its restart
decisions are scalars computed identically everywhere.

Run:  python examples/scale_out.py [--steps 200] [--momentum 0.99]
      [--checkpoint-dir DIR]  (default: a temporary directory, removed)
"""

from __future__ import annotations

import argparse
import os
import pathlib
import tempfile

if "xla_force_host_platform_device_count" not in os.environ.get(
    "XLA_FLAGS", ""
):
  os.environ["XLA_FLAGS"] = (
      os.environ.get("XLA_FLAGS", "")
      + " --xla_force_host_platform_device_count=8"
  )

# pylint: disable=g-import-not-at-top,wrong-import-position
from flax import nnx
import jax
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

import nagd_optax as nagd

MOMENTUM = 0.99


def make_train_step(graphdef, optimizer):
  """A pure step (params, state, batch) -> (params, state, loss) for jit."""

  def loss_fn(params, images, labels):
    logits = nnx.merge(graphdef, params)(images)
    return optax.softmax_cross_entropy_with_integer_labels(logits,
                                                           labels).mean()

  def step(params, opt_state, images, labels):
    loss, grads = jax.value_and_grad(loss_fn)(params, images, labels)
    updates, opt_state = optimizer.update(grads, opt_state, params,
                                          value=loss)
    return optax.apply_updates(params, updates), opt_state, loss

  return step


def batch_indices(seed: int, step: int, n: int, batch_size: int):
  """The indices of global batch ``step``: a function of (seed, step) only."""
  per_epoch = n // batch_size
  epoch, position = divmod(step, per_epoch)
  order = np.random.default_rng([seed, epoch]).permutation(n)
  return order[position * batch_size:(position + 1) * batch_size]


def train(state, first_step, last_step, step_fn, data, batch_sharding,
          seed, batch_size, save=None):
  """Runs steps [first_step, last_step); ``save(step, state)`` at the middle
  step if given. Returns the final (params, opt_state), the losses and the
  steps at which the momentum was restarted."""
  params, opt_state = state
  losses, restarted_at = [], []
  restarts = int(optax.tree.get(opt_state, "restarts"))
  for step in range(first_step, last_step):
    if save is not None and step == save[0]:
      save[1](step, (params, opt_state))
    index = batch_indices(seed, step, len(data.x_train), batch_size)
    images = jax.device_put(data.x_train[index], batch_sharding)
    labels = jax.device_put(data.y_train[index], batch_sharding)
    params, opt_state, loss = step_fn(params, opt_state, images, labels)
    # Reading the loss waits for the step: the 8 simulated devices' all-
    # reduces then never queue behind each other on a small host.
    losses.append(float(loss))
    count = int(optax.tree.get(opt_state, "restarts"))
    if count > restarts:
      restarted_at.append(step)
    restarts = count
  return (params, opt_state), losses, restarted_at


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--momentum", type=float, default=MOMENTUM)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--checkpoint-dir", type=pathlib.Path, default=None,
                      help="keep the checkpoint here (default: a temporary"
                      " directory, removed at the end)")
  args = parser.parse_args(argv)
  if args.batch_size % jax.device_count():
    parser.error("--batch-size must be a multiple of the device count")
  if args.checkpoint_dir is not None:
    return run(args, args.checkpoint_dir)
  with tempfile.TemporaryDirectory(prefix="nagd_scale_out_") as directory:
    result = run(args, pathlib.Path(directory))
  print(f"removed the temporary checkpoint directory {directory}")
  return result


def run(args, directory: pathlib.Path):
  """Trains, checkpoints under ``directory`` midway, resumes, compares."""
  mesh = jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(AxisType.Auto,))
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P("data"))
  data = nagd.problems.load_digits(args.seed)

  graphdef, params = nnx.split(
      nagd.problems.cnn(side=8, rngs=nnx.Rngs(args.seed)), nnx.Param)
  params = jax.device_put(params, replicated)
  optimizer = nagd.nagd(
      optax.cosine_decay_schedule(0.1, args.steps), args.momentum,
      restart="gradient",
  )
  opt_state = jax.device_put(optimizer.init(params), replicated)
  step_fn = jax.jit(make_train_step(graphdef, optimizer))
  middle = args.steps // 2

  path = (directory / f"step_{middle}").absolute()
  checkpointer = ocp.StandardCheckpointer()

  def save(step, state):
    checkpointer.save(path, {"state": state, "step": step}, force=True)
    checkpointer.wait_until_finished()
    print(f"step {step}: saved the checkpoint to {path}", flush=True)

  leaf = jax.tree.leaves(params)[0]
  print(f"{jax.device_count()} devices, mesh {dict(mesh.shape)}; global batch"
        f" {args.batch_size} sharded as {batch_sharding.spec}, parameters"
        f" {leaf.sharding.spec} on {len(leaf.sharding.device_set)} devices;"
        f" training {args.steps} steps", flush=True)
  (final_params, final_opt_state), losses, restarted_at = train(
      (params, opt_state), 0, args.steps, step_fn, data, batch_sharding,
      args.seed, args.batch_size, save=(middle, save))

  # Resume: restore into abstract targets that carry the shardings.
  target = {
      "state": jax.tree.map(
          lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
          (params, opt_state),
      ),
      "step": 0,
  }
  restored = checkpointer.restore(path, target)
  print(f"resuming from step {int(restored['step'])}", flush=True)
  (resumed_params, resumed_opt_state), resumed_losses, resumed_restarts = train(
      restored["state"], int(restored["step"]), args.steps, step_fn, data,
      batch_sharding, args.seed, args.batch_size)

  identical = all(
      np.array_equal(a, b) for a, b in zip(
          jax.tree.leaves((final_params, final_opt_state)),
          jax.tree.leaves((resumed_params, resumed_opt_state)),
      )
  )
  @jax.jit
  def test_accuracy(params):
    logits = nnx.merge(graphdef, params)(data.x_test)
    return jnp.mean(jnp.argmax(logits, -1) == data.y_test)

  accuracy = float(test_accuracy(final_params))
  before = [step for step in restarted_at if step < middle]
  after = [step for step in restarted_at if step >= middle]
  print(f"final train loss {losses[-1]:.4f}, test accuracy {accuracy:.4f};"
        f" momentum {args.momentum:g}, restarted {len(restarted_at)} times"
        f" (at steps {before} before the checkpoint, {after} after)")
  if after:
    restart_note = (
        f" (it restarted at steps {resumed_restarts}: the same steps as the"
        f" uninterrupted run: {resumed_restarts == after})")
  else:
    restart_note = (" (no restart fell after the checkpoint, so this run"
                    " does not test that restart decisions survive it)")
  print(f"resumed run: losses after the checkpoint identical:"
        f" {resumed_losses == losses[middle:]}; final parameters and"
        f" optimizer state bit-for-bit identical: {identical}{restart_note}")
  return {"identical": identical and resumed_losses == losses[middle:],
          "accuracy": accuracy, "restarted_at": restarted_at,
          "resumed_restarted_at": resumed_restarts}


if __name__ == "__main__":
  main()
