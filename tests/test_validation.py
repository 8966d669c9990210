"""Bad hyperparameters raise an error naming the argument: TypeError for what
is not a real number, ValueError for a number out of range."""

import inspect
import math

import jax
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


def test_valid_arrays_and_schedules_are_accepted():
  """Injected hyperparameters arrive as arrays; schedules are callables."""
  nagd.nagd(jnp.asarray(0.1), jnp.asarray(0.9), weight_decay=jnp.asarray(0.0))
  nagd.nagd(np.asarray(0.1), jnp.asarray(0.5, jnp.bfloat16))
  nagd.nagd(optax.linear_schedule(0.0, 0.1, 10), lambda count: 0.9)
  nagd.nagd(0.1, 0.9, restart="interval", min_interval=jnp.asarray(5))


def _id(value):
  """A stable test id: a lambda's repr holds its address."""
  return "callable" if callable(value) else repr(value)


NOT_NUMBERS = [
    "0.1", None, [0.1], (0.1,), 1 + 2j, np.complex64(1.0), True,
    np.bool_(False), np.ones(2), jnp.ones(2), jnp.ones((1,)),
    jnp.asarray(1.0 + 0.0j), jnp.asarray(True),
]


@pytest.mark.parametrize("value", NOT_NUMBERS, ids=_id)
@pytest.mark.parametrize(
    "make, name",
    [
        (nagd.nagd, "learning_rate"),
        (lambda v: nagd.nagd(0.1, v), "momentum"),
        (lambda v: nagd.nagd(0.1, weight_decay=v), "weight_decay"),
        (nagd.nesterov_trace, "momentum"),
        (lambda v: nagd.schedules.step_decay(v, 0.5, 10), "init_value"),
        (lambda v: nagd.schedules.step_decay(0.1, v, 10), "factor"),
        (lambda v: nagd.schedules.strongly_convex_momentum(v),
         "condition_number"),
    ],
)
def test_what_is_not_a_number_raises_type_error(make, name, value):
  if name == "weight_decay" and value is None:
    pytest.skip("weight_decay=None is its default: no weight decay")
  with pytest.raises(TypeError, match=f"{name} must be a"):
    make(value)


@pytest.mark.parametrize(
    "value", ["10", None, [10], True, 1 + 0j, jnp.ones(2, jnp.int32),
              lambda count: 10],
    ids=_id,
)
def test_what_is_not_an_integer_raises_type_error(value):
  with pytest.raises(TypeError, match="every must be an integer >= 1"):
    nagd.schedules.step_decay(0.1, 0.5, value)
  with pytest.raises(TypeError, match="warmup_steps must be an integer"):
    nagd.schedules.warmup(0.1, value)


@pytest.mark.parametrize(
    "value", [2.5, 10.0, np.float64(3.0), jnp.asarray(10.0), 0,
              np.int64(-1), jnp.asarray(0), np.asarray(0, np.int8)],
    ids=_id,
)
def test_a_number_that_is_no_valid_integer_raises_value_error(value):
  with pytest.raises(ValueError, match="every must be an integer >= 1"):
    nagd.schedules.step_decay(0.1, 0.5, value)


def test_a_schedule_where_none_is_allowed_raises_type_error():
  with pytest.raises(TypeError, match=r"weight_decay .*\(not a schedule\)"):
    nagd.nagd(0.1, weight_decay=optax.constant_schedule(1e-3))


@pytest.mark.parametrize(
    "momentum",
    [jnp.array(1.2), jnp.asarray(-0.1), jnp.asarray(1.0, jnp.bfloat16),
     jnp.asarray(jnp.nan), np.array(1.2), np.float32(1.0)],
    ids=_id,
)
def test_concrete_arrays_out_of_range_raise_value_error(momentum):
  with pytest.raises(ValueError, match="momentum must be a number in"):
    nagd.nagd(0.1, momentum)
  with pytest.raises(ValueError, match="learning_rate must be a finite"):
    nagd.nagd(-jnp.abs(momentum) - 1)


def test_tracers_pass_through():
  """Inside jit or vmap the values are unknown: not checked, and used."""
  params = jnp.array([1.0, -2.0])

  def first_update(learning_rate, momentum):
    optimizer = nagd.nagd(learning_rate, momentum)
    updates, _ = optimizer.update(params, optimizer.init(params), params)
    return updates

  jitted = jax.jit(first_update)(jnp.asarray(0.1), jnp.asarray(0.5))
  # The first update is -lr (1 + momentum) g: a plain step plus extrapolation.
  np.testing.assert_allclose(jitted, -0.1 * 1.5 * params, rtol=1e-6)
  mapped = jax.vmap(first_update)(jnp.array([0.1, 0.2]), jnp.array([0.5, 0.0]))
  np.testing.assert_allclose(
      mapped, [-0.15 * params, -0.2 * params], rtol=1e-6
  )


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
def test_inject_hyperparams_with_valid_values(jit):
  """inject_hyperparams hands nagd concrete arrays at init and, per update,
  concrete arrays (eagerly) or tracers (under jit); its updates are those
  of the optimizer built directly."""
  learning_rate = nagd.schedules.wsd(0.1, 2, 1, 2, end_value=0.01)
  injected = optax.inject_hyperparams(nagd.nagd)(
      learning_rate=learning_rate, momentum=0.9, weight_decay=1e-3
  )
  direct = nagd.nagd(learning_rate, 0.9, weight_decay=1e-3)
  params = jnp.array([1.0, -2.0, 0.5])
  state, direct_state = injected.init(params), direct.init(params)
  update = jax.jit(injected.update) if jit else injected.update
  for k in range(6):
    grads = jnp.sin(params + k)
    updates, state = update(grads, state, params)
    expected, direct_state = direct.update(grads, direct_state, params)
    np.testing.assert_allclose(updates, expected, rtol=1e-13)
    params = optax.apply_updates(params, updates)


def test_inject_hyperparams_checks_concrete_values_at_init():
  optimizer = optax.inject_hyperparams(nagd.nagd)(learning_rate=0.1,
                                                  momentum=1.2)
  with pytest.raises(ValueError, match="momentum"):
    optimizer.init(jnp.ones(2))


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


def _public_functions():
  for module in (nagd, nagd.schedules, nagd.criteria, nagd.problems):
    for name in module.__all__:
      value = getattr(module, name)
      if inspect.isfunction(value):
        yield f"{module.__name__}.{name}", value


@pytest.mark.parametrize("name, function", list(_public_functions()))
def test_public_annotations_are_objects_not_strings(name, function):
  """Tools such as Optax's schedule check read the annotations: they must be
  the real types (no `from __future__ import annotations`)."""
  hints = [p.annotation for p in inspect.signature(function).parameters.values()]
  hints.append(inspect.signature(function).return_annotation)
  assert not any(isinstance(hint, str) for hint in hints), name


def test_learning_rate_is_annotated_as_a_schedule():
  annotation = inspect.signature(nagd.nagd).parameters["learning_rate"]
  assert annotation.annotation is optax.ScalarOrSchedule


# ----------------------------------------------------------------------------
# Misuse that used to pass silently.


def test_a_restart_request_without_a_criterion_raises_saying_what_to_do():
  optimizer = nagd.nagd(0.1, 0.9)
  params = jnp.ones(2)
  state = optimizer.init(params)
  optimizer.update(params, state, params, restart=False)  # nothing asked
  with pytest.raises(ValueError, match="restart='on_demand'"):
    optimizer.update(params, state, params, restart=True)
  with pytest.raises(ValueError, match="restart='on_demand'"):
    jax.jit(lambda s, r: optimizer.update(params, s, params, restart=r))(
        state, jnp.asarray(True))


def test_integer_parameters_are_refused_at_init_by_name():
  params = {"w": jnp.ones(2), "steps": jnp.asarray(3, jnp.int32)}
  with pytest.raises(TypeError, match=r"\['steps'\].*int32.*optax.masked"):
    nagd.nagd(0.1).init(params)
  with pytest.raises(TypeError, match=r"\['flag'\].*bool"):
    nagd.nesterov_trace().init({"flag": jnp.asarray(True)})


def test_float0_gradients_are_refused_by_name():
  params = {"w": jnp.ones(2), "n": jnp.asarray(3, jnp.int32)}
  grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2) * p["n"], allow_int=True)(
      params)
  optimizer = nagd.nagd(0.1)
  state = optimizer.init({"w": jnp.ones(2), "n": jnp.ones(())})
  with pytest.raises(TypeError, match=r"\['n'\].*float0.*allow_int"):
    optimizer.update(grads, state)
  # What the message suggests works: mask the integer leaf out.
  masked = optax.masked(nagd.nagd(0.1), {"w": True, "n": False})
  updates, _ = masked.update(grads, masked.init(params), params)
  np.testing.assert_allclose(updates["w"], -0.1 * 1.9 * 6.0, rtol=1e-6)
