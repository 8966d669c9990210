"""The digits CNN as a Flax NNX module (imported by :func:`cnn` on demand)."""

from flax import nnx


class CNN(nnx.Module):
  """Two 3x3 convolutions and two dense layers, for 8x8 or 28x28 digits."""

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
