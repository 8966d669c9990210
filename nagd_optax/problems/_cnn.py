"""A small CNN for the digit data sets, in Flax NNX."""


def cnn(side: int, rngs, width: int = 32, hidden: int = 128,
        classes: int = 10):
  """The Flax MNIST example's CNN, for 8x8 or 28x28 single-channel images.

  ``conv1`` (3x3, ``width`` channels), ``conv2`` (3x3, ``2 * width``), each
  followed by a ReLU, ``linear1`` (``hidden`` units, ReLU) and ``head``
  (``classes`` logits); 2x2 average pooling follows each convolution for
  28x28 inputs (as in Flax's MNIST example) and only the second one for 8x8
  inputs. The parameters sit under those attribute names (the ``head``
  alone is the output layer). ``model.features(x)`` is the output of
  ``linear1``. Needs Flax (``pip install "nagd_optax[examples]"``).

  Args:
    side: the height and width of the input images (8 or 28).
    rngs: a ``flax.nnx.Rngs``, for the initial parameters.
    width: the channels of the first convolution.
    hidden: the units of the hidden dense layer.
    classes: the number of outputs.

  Returns:
    A ``flax.nnx.Module`` mapping ``(N, side, side, 1)`` images to
    ``(N, classes)`` logits.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> import nagd_optax as nagd
    >>> model = nagd.problems.cnn(8, nnx.Rngs(0))
    >>> model(jnp.zeros((2, 8, 8, 1))).shape
    (2, 10)

  References:
    The Flax authors, `MNIST example
    <https://github.com/google/flax/tree/main/examples/mnist>`_.
  """
  try:
    from nagd_optax.problems import _cnn_module  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ImportError(
        'cnn needs Flax: pip install "nagd_optax[examples]"'
    ) from error
  return _cnn_module.CNN(side, rngs, width=width, hidden=hidden,
                         classes=classes)
