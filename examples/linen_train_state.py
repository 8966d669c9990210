"""Flax Linen: a TrainState whose apply_gradients forwards ``value=``.

``flax.training.train_state.TrainState.apply_gradients`` calls
``tx.update(grads, opt_state, params)`` with no extra arguments, so nagd's
loss-driven transforms (``restart="loss"``, ``scale_on_plateau``) never see
the loss and raise a TypeError naming ``value``. The few lines of
``TrainState`` below forward it. Trains a Linen CNN on scikit-learn's digits
with nagd and the noise-robust loss restart, and prints test accuracy and
restarts.

Run:  python examples/linen_train_state.py [--steps 400]
"""

from __future__ import annotations

import argparse

import flax.linen as nn
from flax.training import train_state
import jax
import jax.numpy as jnp
import numpy as np
import optax

import nagd_optax as nagd


class TrainState(train_state.TrainState):
  """A TrainState that passes the loss on to the optimizer as ``value=``."""

  def apply_gradients(self, *, grads, value=None, **kwargs):
    updates, opt_state = self.tx.update(
        grads, self.opt_state, self.params, value=value
    )
    return self.replace(
        step=self.step + 1,
        params=optax.apply_updates(self.params, updates),
        opt_state=opt_state,
        **kwargs,
    )


class CNN(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(32, (3, 3))(x))
    x = nn.avg_pool(nn.relu(nn.Conv(64, (3, 3))(x)), (2, 2), strides=(2, 2))
    x = nn.relu(nn.Dense(128)(x.reshape(x.shape[0], -1)))
    return nn.Dense(10)(x)


def loss_fn(params, apply_fn, images, labels):
  logits = apply_fn({"params": params}, images)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@jax.jit
def train_step(state: TrainState, images, labels):
  loss, grads = jax.value_and_grad(loss_fn)(state.params, state.apply_fn,
                                            images, labels)
  return state.apply_gradients(grads=grads, value=loss), loss


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=400)
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)

  data = nagd.problems.load_digits(args.seed)
  model = CNN()
  params = model.init(jax.random.PRNGKey(args.seed), data.x_train[:1])["params"]
  state = TrainState.create(
      apply_fn=model.apply,
      params=params,
      tx=nagd.nagd(optax.cosine_decay_schedule(0.1, args.steps), 0.9,
                   restart="loss", loss_smoothing=0.98),
  )
  rng = np.random.default_rng(args.seed)
  step = 0
  while step < args.steps:
    order = rng.permutation(len(data.x_train))  # an epoch of full batches
    for start in range(0, len(order) - args.batch_size + 1, args.batch_size):
      index = order[start:start + args.batch_size]
      state, loss = train_step(state, data.x_train[index], data.y_train[index])
      step += 1
      if step == args.steps:
        break
  logits = model.apply({"params": state.params}, data.x_test)
  accuracy = float(jnp.mean(jnp.argmax(logits, -1) == data.y_test))
  restarts = int(optax.tree.get(state.opt_state, "restarts"))
  print(f"Linen CNN, {args.steps} steps: final train loss {float(loss):.4f},"
        f" test accuracy {accuracy:.4f}, {restarts} momentum restarts")
  return accuracy, restarts


if __name__ == "__main__":
  main()
