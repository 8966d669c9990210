"""Bad hyperparameters raise ValueError naming the argument."""

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nagd_optax as nagd


@pytest.mark.parametrize("learning_rate", [-0.1, math.nan, math.inf, -math.inf])
def test_bad_learning_rate(learning_rate):
  with pytest.raises(ValueError, match="learning_rate"):
    nagd.nagd(learning_rate)


@pytest.mark.parametrize("momentum", [1.0, 1.5, -0.1, math.nan, np.float32(1.0)])
@pytest.mark.parametrize("factory", ["nagd", "nesterov_trace"])
def test_bad_momentum(factory, momentum):
  with pytest.raises(ValueError, match="momentum"):
    if factory == "nagd":
      nagd.nagd(0.1, momentum)
    else:
      nagd.nesterov_trace(momentum)


@pytest.mark.parametrize("weight_decay", [-1e-4, math.nan, math.inf])
def test_bad_weight_decay(weight_decay):
  with pytest.raises(ValueError, match="weight_decay"):
    nagd.nagd(0.1, weight_decay=weight_decay)


def test_good_edge_values_are_accepted():
  nagd.nagd(0.0, 0.0, weight_decay=0.0)
  nagd.nagd(np.float32(0.1), np.float64(0.99))
  nagd.nesterov_trace(0.999999)


def test_arrays_and_schedules_are_not_validated():
  """Injected hyperparameters arrive as arrays; schedules are callables."""
  nagd.nagd(jnp.asarray(0.1), jnp.asarray(0.9), weight_decay=jnp.asarray(0.0))
  nagd.nagd(optax.linear_schedule(0.0, 0.1, 10), lambda count: 0.9)
  optax.inject_hyperparams(nagd.nagd)(
      learning_rate=0.1, momentum=0.9, weight_decay=1e-3
  )


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(restart="bogus"), "restart"),
        (dict(loss_smoothing=0.9), "loss_smoothing"),
        (dict(min_interval=5), "min_interval"),
        (dict(axis_name="data"), "axis_name"),
        (dict(restart="gradient", loss_smoothing=0.5), "loss_smoothing"),
        (dict(accumulator_dtype=jnp.int8), "accumulator_dtype"),
    ],
)
def test_arguments_without_effect_or_meaning_raise(kwargs, name):
  with pytest.raises(ValueError, match=name):
    nagd.nagd(0.1, **kwargs)
