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
import optax
import pytest

import nagd_optax
from tests.conftest import log_compilations

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


def files_under(directory):
  return {p.relative_to(directory).as_posix() for p in directory.rglob("*")
          if p.is_file()}


def test_git_ignores_the_run_directory():
  """What the examples write by default, under runs/, leaves git status
  clean."""
  if not (ROOT / ".git").exists():
    pytest.skip("not a git checkout")
  for path in ("runs/digits/digits.md", "runs/convex/convex.png"):
    ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT,
                             check=False)
    assert ignored.returncode == 0, f"git does not ignore {path}"


@pytest.mark.slow
def test_digits_demo(tmp_path, monkeypatch):
  digits = fork("digits", tmp_path / "fork")
  monkeypatch.chdir(tmp_path)
  histories = digits.main(["--steps", "40", "--eval-every", "20"])
  # By default it writes under runs/digits/ of the current directory only.
  assert files_under(tmp_path) == {"fork/digits.py", "runs/digits/digits.md",
                                   "runs/digits/digits.png"}
  assert (tmp_path / "runs/digits/digits.png").stat().st_size > 10_000
  table = (tmp_path / "runs/digits/digits.md").read_text()
  assert table.count("\n| ") == 6  # header + 5 optimizers
  assert "| compile s | train s |" in table
  names = [h.name for h in histories]
  assert names == list(digits.contenders(40, 0.1, 3e-3))
  # Without restart nagd is Optax's Nesterov SGD, to the bit; the table and
  # the figure say so.
  nagd_run, sgd_run = histories[0], histories[1]
  assert nagd_run.test_loss == sgd_run.test_loss
  assert sgd_run.same_as == nagd_run.name
  assert f"{sgd_run.name}'s run is {nagd_run.name}'s to the last bit" in table
  # The restart claim is the run's: its restart count and accuracies.
  for with_restart, without in digits.RESTART_PAIRS:
    restarted = histories[names.index(with_restart)]
    plain = histories[names.index(without)]
    assert (f"restarted {restarted.restarts} times" in table
            and f"{plain.test_accuracy[-1]:.4f}" in table)
  assert all(h.test_accuracy[-1] > 0.5 for h in histories)
  assert all(h.compile_seconds > 0 and h.seconds > 0 for h in histories)


def test_digits_write_results_writes_the_committed_copies(tmp_path,
                                                          monkeypatch):
  digits = fork("digits", tmp_path / "examples")
  monkeypatch.setattr(digits, "contenders",
                      lambda steps, *_: {"sgd": optax.sgd(0.1)})
  monkeypatch.chdir(tmp_path)
  digits.main(["--steps", "4", "--eval-every", "2", "--write-results"])
  assert files_under(tmp_path) == {"examples/digits.py",
                                   "examples/results/digits.md",
                                   "examples/results/digits.png"}


def test_digits_times_exclude_compilation(tmp_path):
  """compile_step compiles the very step the timed loop then calls, so the
  loop's first step compiles nothing."""
  from flax import nnx  # pylint: disable=g-import-not-at-top

  digits = fork("digits", tmp_path)
  data = nagd_optax.problems.load_digits(0)
  images, labels = data.x_train[:8], data.y_train[:8]
  model = nagd_optax.problems.cnn(side=8, rngs=nnx.Rngs(0))
  # A momentum no other test compiles the step with.
  optimizer = nnx.Optimizer(model, nagd_optax.nagd(0.1, 0.37), wrt=nnx.Param)
  with log_compilations() as compiled:
    seconds = digits.compile_step(model, optimizer, images, labels)
  assert compiled and seconds > 0
  with log_compilations() as compiled:
    digits.train_step(model, optimizer, images, labels)
  assert not compiled
  assert int(optimizer.step[...]) == 1  # the copy's step left it untouched


def test_digits_restart_claim_follows_the_runs(tmp_path):
  digits = fork("digits", tmp_path)

  def run(name, accuracies, restarts=None):
    return digits.History(name, steps=[10, 20], test_loss=[1.0, 0.5],
                          test_accuracy=accuracies, restarts=restarts)

  plain = run("plain", [0.9, 0.95])
  assert "restart did nothing" in digits.restart_effect(
      run("restarted", [0.9, 0.95], 0), plain, 360)
  assert "no measurable difference" in digits.restart_effect(
      run("restarted", [0.9, 0.951], 3), plain, 360)
  helped = digits.restart_effect(run("restarted", [0.97, 0.98], 3), plain,
                                 360)
  assert "Restart helped." in helped
  assert "reached 97% test accuracy at step 10" in helped
  assert "never reached 97%" in helped
  assert "Restart hurt." in digits.restart_effect(
      run("restarted", [0.9, 0.93], 3), plain, 360)


@pytest.mark.slow
def test_mnist(tmp_path, monkeypatch, capsys):
  mnist = fork("mnist", tmp_path / "fork")
  monkeypatch.chdir(tmp_path)
  runs = mnist.main(["--steps", "30"])
  assert files_under(tmp_path) == {"fork/mnist.py"}  # prints only
  restarted, plain = runs["restart=gradient"], runs["no restart"]
  assert restarted["test accuracy"][-1] > 0.3  # 10 classes: chance is 0.1
  assert plain["restarts"] is None  # plain nagd has no restart counter
  output = capsys.readouterr().out
  assert mnist.restart_effect(restarted, plain, 1000) in output
  assert f"restarted {restarted['restarts']} times" in output or (
      restarted["restarts"] == 0 and "never restarted" in output)


@pytest.mark.slow
def test_low_memory(tmp_path, monkeypatch, capsys):
  low_memory = fork("low_memory", tmp_path / "fork")
  monkeypatch.chdir(tmp_path)
  rows = low_memory.main(["--steps", "10"])
  assert files_under(tmp_path) == {"fork/low_memory.py"}
  ratios = [float(row[2]) for row in rows]
  # One buffer, half of one (bfloat16, float16), Adam's two.
  assert ratios == [1.0, 0.5, 0.5, 2.0]
  # Progress: a line as each run ends (here after 10 steps).
  progress = [line for line in capsys.readouterr().out.splitlines()
              if ": step 10/10, test accuracy" in line]
  assert [line.split(":")[0] for line in progress] == [r[0] for r in rows]


@pytest.mark.slow
def test_finetune(tmp_path, monkeypatch, capsys):
  finetune = fork("finetune", tmp_path / "fork")
  monkeypatch.chdir(tmp_path)
  rows = finetune.main(
      ["--steps", "15"]  # the smoke-run override: 15 steps of each
  )
  assert files_under(tmp_path) == {"fork/finetune.py"}
  assert rows[0][-1] == 2 and rows[1][-1] == 0  # backbone + head restarted
  output = capsys.readouterr().out
  assert "Restart at the switch" in output.splitlines()[-1]


def test_finetune_restart_claim_follows_the_runs(tmp_path):
  finetune = fork("finetune", tmp_path)
  # 180 test images: 0.5 and 0.502 differ by less than half an image.
  same = finetune.restart_effect([0.5, 0.9, 0.0], [0.502, 0.9, 0.0],
                                 [10, 150], 180, 0.1, 25.0)
  assert "made no measurable difference" in same
  assert "(0.1) is 250x smaller than the first gradient" in same
  changed = finetune.restart_effect([0.6, 0.9, 0.0], [0.5, 0.9, 0.0],
                                    [10, 150], 180, 10.0, 37.0)
  assert "step 10: 0.600 against 0.500, step 150: 0.900 against 0.900" in (
      changed)


@pytest.mark.slow
def test_regression(tmp_path, monkeypatch):
  from sklearn.linear_model import LinearRegression  # pylint: disable=g-import-not-at-top

  regression = fork("regression", tmp_path / "fork")
  monkeypatch.chdir(tmp_path)
  results = regression.main(["--steps", "200"])
  assert files_under(tmp_path) == {"fork/regression.py"}
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
def test_convex_reproduces_the_reference_iteration_counts(tmp_path,
                                                          monkeypatch,
                                                          capsys):
  convex = fork("convex", tmp_path / "fork")
  monkeypatch.chdir(tmp_path)
  results = convex.main([
      "--regularization", "1e-3", "--kappa", "100", "--steps", "2300",
  ])
  # By default the plot goes under runs/convex/ of the current directory.
  assert files_under(tmp_path) == {"fork/convex.py", "runs/convex/convex.png"}
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
  # The printed savings are the run's iteration counts.
  plain = iterations["Nesterov, no restart"]
  restarted = iterations["Nesterov, restart=gradient"]
  output = capsys.readouterr().out
  assert f"Nesterov without restart: {plain} iterations" in output
  assert (f"restart=gradient {restarted} ({plain / restarted:.1f}x fewer)"
          in output)


@pytest.mark.slow
def test_linen_train_state(tmp_path, monkeypatch, capsys):
  linen = fork("linen_train_state", tmp_path / "fork")
  monkeypatch.chdir(tmp_path)
  runs = linen.main(["--steps", "40"])
  assert files_under(tmp_path) == {"fork/linen_train_state.py"}
  restarted, plain = runs["restart=loss"], runs["no restart"]
  assert restarted["test accuracy"][-1] > 0.5
  assert isinstance(restarted["restarts"], int) and plain["restarts"] is None
  assert linen.restart_effect(restarted, plain, 360) in capsys.readouterr().out


@pytest.mark.parametrize("name", ["mnist", "linen_train_state"])
def test_restart_claim_follows_the_runs(tmp_path, name):
  restart_effect = fork(name, tmp_path).restart_effect

  def run(accuracies, restarts=None):
    return {"test accuracy": accuracies, "restarts": restarts}

  plain = run([0.90, 0.95])
  assert "restart did nothing" in restart_effect(run([0.9, 0.95], 0), plain,
                                                 1000)
  assert "no measurable difference" in restart_effect(
      run([0.9, 0.9502], 3), plain, 1000)  # a fifth of a test image
  effect = restart_effect(run([0.92, 0.94], 3), plain, 1000)
  assert "restarted 3 times" in effect
  assert "0.920 against 0.900, 0.940 against 0.950" in effect
  assert "ahead at 1 of 2 and behind at 1" in effect


@pytest.mark.slow
def test_scale_out_resumes_bit_for_bit(tmp_path):
  """Run as a script from its lone copy, in a fresh process (8 simulated
  devices need XLA_FLAGS before JAX starts) that sees this nagd_optax and
  nothing else of the repository. Its checkpoint goes to a temporary
  directory, removed at the end."""
  fork_dir, site, temporary = (tmp_path / "fork", tmp_path / "site",
                               tmp_path / "tmp")
  for directory in (fork_dir, site, temporary):
    directory.mkdir()
  shutil.copy(EXAMPLES / "scale_out.py", fork_dir)
  (site / "nagd_optax").symlink_to(pathlib.Path(nagd_optax.__file__).parent)
  result = subprocess.run(
      [sys.executable, "scale_out.py", "--steps", "8"],
      cwd=fork_dir, capture_output=True, text=True, timeout=240, check=False,
      env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(site),
           "TMPDIR": str(temporary)},
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert "8 devices" in result.stdout
  assert "bit-for-bit identical: True" in result.stdout
  assert "losses after the checkpoint identical: True" in result.stdout
  assert f"saved the checkpoint to {temporary}" in result.stdout
  assert "step_4" in result.stdout
  assert "removed the temporary checkpoint directory" in result.stdout
  assert not list(temporary.iterdir())  # the checkpoint is gone
  assert files_under(fork_dir) == {"scale_out.py"}
  # The restart steps it prints before and after the checkpoint, and the
  # resumed run's verdict on them.
  assert "restarted " in result.stdout
  assert ("the same steps as the uninterrupted run: True" in result.stdout
          or "no restart fell after the checkpoint" in result.stdout)
