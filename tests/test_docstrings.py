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
# Seconds each: they load every bundled data set, compile the CNN, or run
# two restart schemes for 150 steps op by op; tests/test_problems.py and
# tests/test_restart.py check the same, more quickly.
SLOW = {"nagd_optax.problems._data", "nagd_optax.problems._cnn",
        "nagd_optax._restart"}


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
