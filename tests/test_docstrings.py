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


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
  module = importlib.import_module(name)
  result = doctest.testmod(
      module,
      optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
      verbose=False,
  )
  assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
