"""Fine-tuning: a slower backbone, a faster head, and a momentum restart.

Pretrains the digits CNN on scikit-learn's digits 0-4, then fine-tunes it on
digits 5-9 with the same optimizer, continuing its state:

  * the backbone (convolutions and first dense layer) and the head have their
    own nagd (optax.multi_transform); the backbone's learning rate drops 10x
    when the data switches, the head's does not;
  * at the switch the momentum of both is restarted on demand,
    ``optimizer.update(model, grads, value=loss, restart=True)``, so that
    steps built up on the old digits do not carry over to the new ones.

The run is repeated from the same pretrained state without the restart, and
the table compares test accuracy on the new digits early in fine-tuning and
at the end, and on the old digits at the end (the head, trained on 5-9 only,
forgets 0-4: this is fine-tuning, not continual learning). The script also
prints the size of the momentum left over at the switch next to the first
gradient on the new data: when the leftover is small, as after a converged
pretraining, the restart changes little; it matters when the switch comes
while the momentum is still large.

Run:  python examples/finetune.py [--pretrain-steps 300] [--finetune-steps 150]
      [--steps N]  (smoke run: N of each)
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from flax import nnx
import jax
import numpy as np
import optax

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position

import nagd_optax as nagd  # pylint: disable=g-import-not-at-top,wrong-import-position


def subset(data: common.Split, classes) -> common.Split:
  train = np.isin(data.y_train, classes)
  test = np.isin(data.y_test, classes)
  return common.Split(data.x_train[train], data.y_train[train],
                      data.x_test[test], data.y_test[test])


def part_of(path) -> str:
  """'head' for the output layer's parameters, 'backbone' for the rest."""
  return "head" if path[0].key == "head" else "backbone"


def make_optimizer(learning_rate, switch_step, backbone_factor):
  backbone_rate = optax.join_schedules(
      [optax.constant_schedule(learning_rate),
       optax.constant_schedule(learning_rate * backbone_factor)],
      [switch_step],
  )
  return optax.multi_transform(
      {
          "backbone": nagd.nagd(backbone_rate, 0.9, restart="on_demand"),
          "head": nagd.nagd(learning_rate, 0.9, restart="on_demand"),
      },
      lambda params: jax.tree_util.tree_map_with_path(
          lambda path, _: part_of(path), params
      ),
  )


@nnx.jit
def train_step(model, optimizer, images, labels, restart):
  (loss, _), grads = nnx.value_and_grad(common.cross_entropy, has_aux=True)(
      model, images, labels
  )
  optimizer.update(model, grads, value=loss, restart=restart)
  return loss


def run(model, optimizer, data, steps, rng, batch_size, restart_first_step,
        eval_at=()):
  """Trains for ``steps``; returns {step: new-task test accuracy}."""
  accuracies, step = {}, 0
  while step < steps:
    for index in common.batches(rng, len(data.x_train), batch_size):
      train_step(model, optimizer, data.x_train[index], data.y_train[index],
                 restart_first_step and step == 0)
      step += 1
      if step in eval_at:
        accuracies[step] = float(common.evaluate(model, data.x_test,
                                                 data.y_test)[1])
      if step == steps:
        break
  return accuracies


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--pretrain-steps", type=int, default=300)
  parser.add_argument("--finetune-steps", type=int, default=150)
  parser.add_argument("--learning-rate", type=float, default=0.05)
  parser.add_argument("--backbone-factor", type=float, default=0.1)
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--steps", type=int, default=None,
                      help="smoke-run override: this many pretraining and"
                      " this many fine-tuning steps")
  args = parser.parse_args(argv)
  if args.steps is not None:
    args.pretrain_steps = args.finetune_steps = args.steps

  digits = common.load_digits(args.seed)
  old, new = subset(digits, [0, 1, 2, 3, 4]), subset(digits, [5, 6, 7, 8, 9])
  model = common.CNN(side=8, rngs=nnx.Rngs(args.seed))
  optimizer = nnx.Optimizer(
      model,
      make_optimizer(args.learning_rate, args.pretrain_steps,
                     args.backbone_factor),
      wrt=nnx.Param,
  )
  rng = np.random.default_rng(args.seed)
  run(model, optimizer, old, args.pretrain_steps, rng, args.batch_size, False)
  pretrained = float(common.evaluate(model, old.x_test, old.y_test)[1])
  traces = optax.tree.get_all_with_path(nnx.as_pure(optimizer.opt_state),
                                        "trace")
  leftover = optax.tree.norm([trace for _, trace in traces])
  (_, _), first_gradient = nnx.value_and_grad(
      common.cross_entropy, has_aux=True)(model, new.x_train[:args.batch_size],
                                          new.y_train[:args.batch_size])
  gradient_norm = optax.tree.norm(nnx.state(first_gradient, nnx.Param))

  eval_at = sorted({10, 25, 50, args.finetune_steps} - {0})
  eval_at = [s for s in eval_at if s <= args.finetune_steps]
  rows = []
  for restart in (True, False):
    branch_model, branch_optimizer = nnx.clone((model, optimizer))
    accuracies = run(branch_model, branch_optimizer, new, args.finetune_steps,
                     np.random.default_rng(args.seed + 1), args.batch_size,
                     restart, eval_at)
    old_accuracy = float(common.evaluate(branch_model, old.x_test,
                                         old.y_test)[1])
    rows.append((
        "restart at the switch" if restart else "no restart",
        *(f"{accuracies[s]:.3f}" for s in eval_at),
        f"{old_accuracy:.3f}",
        common.restarts(branch_optimizer),
    ))
  print(f"pretrained on digits 0-4 ({args.pretrain_steps} steps): test"
        f" accuracy {pretrained:.3f}; fine-tuning on 5-9, backbone learning"
        f" rate x{args.backbone_factor:g}; at the switch |momentum| ="
        f" {float(leftover):.3g}, |first gradient| = {float(gradient_norm):.3g}")
  print(common.markdown_table(
      ["fine-tuning", *(f"new digits, step {s}" for s in eval_at),
       "old digits, end", "restarts (backbone + head)"],
      rows,
  ))
  return rows


if __name__ == "__main__":
  main()
