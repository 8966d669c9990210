"""Smoke test of examples/auto_step.py, copied out alone and run briefly."""

from flax import nnx
import numpy as np
import optax
import pytest

import nagd_optax as nagd
from tests.test_examples import fork


@pytest.mark.slow  # three short CNN trainings (their compilations)
def test_auto_step_example(tmp_path):
  example = fork("auto_step", tmp_path / "fork")
  output = tmp_path / "runs"
  records = example.main(["--steps", "6", "--eval-every", "1", "--no-plot",
                          "--output-dir", str(output)])
  # The first automatic step, in closed form: the update moves the weights
  # by initial_step * max(1, ||y_0||) along d_0 = (1 + 0.9) g_0.
  data = nagd.problems.load_digits(0)
  model = nagd.problems.cnn(side=8, rngs=nnx.Rngs(0))
  index = np.random.default_rng(0).permutation(len(data.x_train))[:64]
  params = nnx.state(model, nnx.Param)

  def loss(model):
    return optax.softmax_cross_entropy_with_integer_labels(
        model(data.x_train[index]), data.y_train[index]).mean()

  gradient_norm = float(optax.tree.norm(nnx.grad(loss)(model)))
  param_norm = float(optax.tree.norm(params))
  expected = 1e-6 * max(1.0, param_norm) / (1.9 * gradient_norm)
  assert records['nagd("auto")']["step_size"][0] == pytest.approx(
      expected, rel=1e-4)  # float32

  table = (output / "auto_step.md").read_text()
  assert table.count("\n| ") == 4  # header + 3 optimizers
  automatic = records['nagd("auto")']
  assert automatic["step"] == [1, 2, 3, 4, 5, 6]
  assert all(np.isfinite(s) and s > 0 for s in automatic["step_size"])
  assert [r["step_size"] for n, r in records.items() if n != 'nagd("auto")'
          ] == [[None] * 6] * 2
