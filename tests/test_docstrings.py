"""The examples in the docstrings run and print what they claim."""

import doctest
import importlib
import pkgutil

import pytest

import nagd_optax

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(
        nagd_optax.__path__, prefix=nagd_optax.__name__ + "."
    )
)
# Seconds each: they load every bundled data set and compile the CNN, which
# tests/test_problems.py also checks, more quickly.
SLOW = {"nagd_optax.problems._data", "nagd_optax.problems._cnn"}


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name
    for name in MODULES
])
def test_docstring_examples(name):
  module = importlib.import_module(name)
  result = doctest.testmod(
      module,
      optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
      verbose=False,
  )
  assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
