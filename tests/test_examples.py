"""Smoke tests of the example scripts: a short run of each, checked."""

import importlib.util
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).parents[1] / "examples"


def load_example(name):
  spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_quickstart_reproduces_the_published_iteration_counts():
  pytest.importorskip("sklearn")
  quickstart = load_example("quickstart")
  steps = quickstart.main(["--regularization", "1e-3", "--max-steps", "17000"])
  # DESIGN.md: lambda = 1e-3, relative gap 1e-8: GD 16797, NAG 2241.
  assert steps["f*"] == pytest.approx(0.059829471882, abs=1e-11)
  assert steps["gradient descent"] == pytest.approx(16797, rel=0.01)
  assert steps["nagd, nesterov_momentum()"] == pytest.approx(2241, rel=0.01)
