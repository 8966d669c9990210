"""Smoke tests of the example scripts: each one copied out alone, run briefly.

An example must run when copied out of the repository on its own: it may
import installed packages only (nagd_optax among them), no sibling module,
and must not edit ``sys.path``. So each test copies one script into an empty
directory and imports it from there (scale_out.py runs there in a fresh
process), runs a few steps, and checks the result against something
independent: Optax's own optimizer, closed forms, scikit-learn, or reference
figures computed independently of this library by plain NumPy loops of the
papers' algorithms (tests/reference_methods.py reproduces them).
"""

import ast
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import nagd_optax

ROOT = pathlib.Path(__file__).parents[1]
EXAMPLES = ROOT / "examples"
SCRIPTS = sorted(path.stem for path in EXAMPLES.glob("*.py"))


def fork(name, directory):
  """Copies examples/<name>.py alone into ``directory``, imports the copy."""
  directory.mkdir(parents=True, exist_ok=True)
  copy = directory / f"{name}.py"
  shutil.copy(EXAMPLES / f"{name}.py", copy)
  spec = importlib.util.spec_from_file_location(f"forked_{name}", copy)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # as for any import (dataclasses need it)
  spec.loader.exec_module(module)
  return module


def _imported_modules(source):
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      yield "." * node.level + (node.module or "")


@pytest.mark.parametrize("name", SCRIPTS)
def test_example_needs_only_installed_packages(name):
  """Its imports resolve outside this repository (but for nagd_optax): a
  copy made alone imports the same modules as the original."""
  source = (EXAMPLES / f"{name}.py").read_text()
  assert "sys.path" not in source
  for module in _imported_modules(source):
    assert not module.startswith("."), f"{name}: relative import {module}"
    top = module.split(".")[0]
    spec = importlib.util.find_spec(top)
    assert spec is not None, f"{name} imports {top}, which is not installed"
    if top == "nagd_optax":
      continue
    # Built-in modules have no location; namespace packages only folders.
    places = [spec.origin] if spec.has_location else list(
        spec.submodule_search_locations or [])
    for place in places:
      assert not pathlib.Path(place).resolve().is_relative_to(ROOT), (
          f"{name} imports {top} from this repository ({place})")


@pytest.mark.slow
def test_digits_demo(tmp_path):
  histories = fork("digits", tmp_path / "fork").main(
      ["--steps", "40", "--eval-every", "20", "--output-dir",
       str(tmp_path / "results")]
  )
  assert (tmp_path / "results" / "digits.png").stat().st_size > 10_000
  table = (tmp_path / "results" / "digits.md").read_text()
  assert table.count("\n| ") == 6  # header + 5 optimizers
  nagd_run, sgd_run = histories[0], histories[1]
  # The smoothed loss test cannot fire before its average has settled (50
  # losses), so in 40 steps nagd is Optax's Nesterov SGD, to the bit.
  assert nagd_run.restarts == 0
  assert nagd_run.test_loss == sgd_run.test_loss
  assert all(h.test_accuracy[-1] > 0.5 for h in histories)


@pytest.mark.slow
def test_mnist(tmp_path):
  result = fork("mnist", tmp_path).main(["--steps", "30"])
  assert result["test accuracy"][-1] > 0.3  # 10 classes: chance is 0.1
  assert result["restarts"] >= 0


@pytest.mark.slow
def test_low_memory(tmp_path):
  rows = fork("low_memory", tmp_path).main(["--steps", "10"])
  ratios = [float(row[2]) for row in rows]
  assert ratios == [1.0, 0.5, 2.0]  # one buffer, half of one, Adam's two


@pytest.mark.slow
def test_finetune(tmp_path):
  rows = fork("finetune", tmp_path).main(
      ["--steps", "15"]  # the smoke-run override: 15 steps of each
  )
  assert rows[0][-1] == 2 and rows[1][-1] == 0  # backbone + head restarted


@pytest.mark.slow
def test_regression(tmp_path):
  from sklearn.linear_model import LinearRegression  # pylint: disable=g-import-not-at-top

  results = fork("regression", tmp_path).main(["--steps", "200"])
  data = nagd_optax.problems.load_diabetes(0)
  sklearn_r2 = LinearRegression().fit(data.x_train, data.y_train).score(
      data.x_test, data.y_test
  )
  assert results["least squares (closed form)"]["test R^2"] == pytest.approx(
      sklearn_r2, rel=1e-4
  )
  plateau = results["nagd + scale_on_plateau"]
  assert plateau["restarts"] == plateau["times lowered"]


@pytest.mark.slow
def test_convex_reproduces_the_reference_iteration_counts(tmp_path):
  results = fork("convex", tmp_path / "fork").main([
      "--regularization", "1e-3", "--kappa", "100", "--steps", "2300",
      "--output-dir", str(tmp_path / "results"),
  ])
  logistic = results[0]
  # Reference figures: lambda = 1e-3, relative gap 1e-8 (gradient descent's
  # 16797 steps are checked in test_restart_figures.py, without the example's
  # 17000-step scans).
  assert logistic["f*"] == pytest.approx(0.059829471882, abs=1e-11)
  iterations = logistic["iterations"]
  assert iterations["gradient descent"] is None  # > 2300
  assert iterations["Nesterov, no restart"] == pytest.approx(2241, rel=0.01)
  assert iterations["Nesterov, restart=gradient"] == pytest.approx(480,
                                                                    rel=0.03)
  assert (tmp_path / "results" / "convex.png").exists()


@pytest.mark.slow
def test_linen_train_state(tmp_path):
  accuracy, restarts = fork("linen_train_state", tmp_path).main(
      ["--steps", "40"])
  assert accuracy > 0.5
  assert restarts == 0  # the smoothed loss settles after 50 losses


@pytest.mark.slow
def test_scale_out_resumes_bit_for_bit(tmp_path):
  """Run as a script from its lone copy, in a fresh process (8 simulated
  devices need XLA_FLAGS before JAX starts) that sees this nagd_optax and
  nothing else of the repository."""
  fork_dir, site = tmp_path / "fork", tmp_path / "site"
  fork_dir.mkdir()
  site.mkdir()
  shutil.copy(EXAMPLES / "scale_out.py", fork_dir)
  (site / "nagd_optax").symlink_to(pathlib.Path(nagd_optax.__file__).parent)
  result = subprocess.run(
      [sys.executable, "scale_out.py", "--steps", "8", "--checkpoint-dir",
       str(tmp_path / "checkpoints")],
      cwd=fork_dir, capture_output=True, text=True, timeout=240, check=False,
      env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(site)},
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert "8 devices" in result.stdout
  assert "bit-for-bit identical: True" in result.stdout
  assert "losses after the checkpoint identical: True" in result.stdout
  assert np.any([p.name == "step_4" for p in
                 (tmp_path / "checkpoints").iterdir()])
