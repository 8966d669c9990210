"""Optax's own checks for contributed optimizers, run on ours.

Optax ships the checks it runs on every optimizer contributed to it in
``optax/contrib/_common_test.py``: extra keyword arguments, no recompilation,
convergence on a parabola, Rosenbrock, a matrix and a mixed tree, wrapping in
``inject_hyperparams`` (same updates and state as the plain optimizer),
dtype preservation, ``MultiSteps``, state stability under ``lax.cond`` from
float16 to float64, and learning-rate schedules. Its test class is reused
here, not copied: its parameterized test functions are applied to this
library's optimizers, with its factory lookup pointed at them.

Optax's checks pass the loss (``value=``) to the optimizers they know read
it, by name (``"momo"``, ``"momo_adam"``); the optimizers here that read the
loss run under those names.
"""

from unittest import mock

from absl.testing import parameterized
import jax.numpy as jnp
import pytest
from optax.contrib import _common_test as optax_checks

import nagd_optax as nagd

_READS_NO_LOSS = "nagd"
_READS_THE_LOSS = "momo"  # Optax passes value= to it in every check.
_PLATEAU = "momo_adam"  # Likewise; a factory without a learning rate.

_FACTORIES = {
    _READS_NO_LOSS: nagd.nagd,
    _READS_THE_LOSS: nagd.nagd,
    _PLATEAU: nagd.scale_on_plateau,
}


def _ours(opt_name, **opt_kwargs):
  return {
      "opt_name": opt_name,
      "opt_kwargs": opt_kwargs,
      "wrapper_name": None,
      "wrapper_kwargs": None,
  }


OPTIMIZERS = (
    _ours(_READS_NO_LOSS, learning_rate=1e-3),
    _ours(_READS_NO_LOSS, learning_rate=1e-3,
          momentum=nagd.schedules.nesterov_momentum()),
    _ours(_READS_NO_LOSS, learning_rate=1e-3, restart="gradient"),
    _ours(_READS_NO_LOSS, learning_rate=1e-3, restart="speed"),
    _ours(_READS_NO_LOSS, learning_rate=1e-3, restart="interval",
          min_interval=100),
    _ours(_READS_NO_LOSS, learning_rate=1e-3, restart="on_demand"),
    _ours(_READS_THE_LOSS, learning_rate=1e-3, restart="loss"),
    _ours(_READS_THE_LOSS, learning_rate=1e-3,
          momentum=nagd.schedules.nesterov_momentum(), restart="loss"),
    _ours(_READS_THE_LOSS, learning_rate="auto"),
    _ours(_PLATEAU, patience=100, rtol=0.0,
          inner=nagd.nagd(1e-3, 0.9, restart="on_demand"),
          restart_momentum=True),
)


def _factory(opt_name):
  return _FACTORIES[opt_name]


def _optax_check(name):
  """The test function behind Optax's parameterized test ``name``."""
  return getattr(optax_checks.ContribTest, f"{name}0").__wrapped__


@pytest.mark.slow  # ~150 compilations, and 30,000-step convergence scans
class OptaxCommonChecks(parameterized.TestCase):
  """Each test is Optax's, parameterized over this library's optimizers."""

  def setUp(self):
    super().setUp()
    patcher = mock.patch.object(optax_checks, "_get_opt_factory", _factory)
    patcher.start()
    self.addCleanup(patcher.stop)

  test_optimizers_accept_extra_args = parameterized.product(
      OPTIMIZERS, wrap=[False]
  )(_optax_check("test_optimizers_accept_extra_args"))

  test_optimizers = parameterized.product(
      OPTIMIZERS,
      target=(
          optax_checks._setup_parabola,  # pylint: disable=protected-access
          optax_checks._setup_rosenbrock,  # pylint: disable=protected-access
          optax_checks._setup_matrix_parabola,  # pylint: disable=protected-access
          optax_checks._setup_mixed_tensor_target,  # pylint: disable=protected-access
      ),
      dtype=("float32",),
  )(_optax_check("test_optimizers"))

  test_optimizers_can_be_wrapped_in_inject_hyperparams = parameterized.product(
      OPTIMIZERS
  )(_optax_check("test_optimizers_can_be_wrapped_in_inject_hyperparams"))

  test_preserve_dtype = parameterized.product(
      OPTIMIZERS, dtype=("bfloat16", "float32")
  )(_optax_check("test_preserve_dtype"))

  test_gradient_accumulation = parameterized.product(
      OPTIMIZERS, dtype=("bfloat16", "float32")
  )(_optax_check("test_gradient_accumulation"))

  test_state_shape_dtype_shard_stability = parameterized.product(
      OPTIMIZERS,
      dtype=(jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64),
  )(_optax_check("test_state_shape_dtype_shard_stability"))

  test_optimizers_accept_learning_rate_schedule_if_type_annotated_as_such = (
      parameterized.product(OPTIMIZERS)(
          _optax_check(
              "test_optimizers_accept_learning_rate_schedule_if_type_"
              "annotated_as_such"
          )
      )
  )
