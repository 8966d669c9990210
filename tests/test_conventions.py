"""Optax conventions, for every optimizer the library builds.

Each test checks one convention (a dtype, a wrapper, a transformation of the
step) by comparing against the same computation done the plain way: without
the wrapper, in a Python loop, or by hand. The numerics of the optimizers
themselves are checked against Optax, PyTorch and NumPy in test_trace.py and
test_torch_reference.py.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nagd_optax as nagd
from tests.conftest import log_compilations

OPTIMIZERS = {
    "trace": lambda: nagd.nesterov_trace(0.9),
    "trace_schedule": lambda: nagd.nesterov_trace(
        nagd.schedules.nesterov_momentum()
    ),
    "trace_bf16_accumulator": lambda: nagd.nesterov_trace(
        0.9, accumulator_dtype=jnp.bfloat16
    ),
    "nagd": lambda: nagd.nagd(0.1, 0.9),
    "nagd_schedules_weight_decay": lambda: nagd.nagd(
        optax.cosine_decay_schedule(0.1, 100),
        nagd.schedules.nesterov_momentum(),
        weight_decay=1e-3,
    ),
    "restart_loss": lambda: nagd.nagd(
        0.1, nagd.schedules.nesterov_momentum(), restart="loss"
    ),
    "restart_loss_smoothed": lambda: nagd.nagd(
        0.1, 0.9, restart="loss", loss_smoothing=0.9, min_interval=2
    ),
    "restart_gradient": lambda: nagd.nagd(0.1, 0.9, restart="gradient"),
    "restart_speed": lambda: nagd.nagd(0.1, 0.9, restart="speed",
                                       min_interval=1),
    "restart_interval": lambda: nagd.nagd(0.1, 0.9, restart="interval",
                                          min_interval=2),
    "restart_on_demand_bf16": lambda: nagd.nagd(
        0.1, 0.9, restart="on_demand", accumulator_dtype=jnp.bfloat16
    ),
    "restart_adam_gradient": lambda: nagd.restart(
        optax.adam(0.1), "gradient", momentum_buffer=lambda state: state[0].mu
    ),
    "auto": lambda: nagd.nagd("auto"),
    "auto_full_batch": lambda: nagd.nagd(
        nagd.auto_step(full_batch=True), nagd.schedules.nesterov_momentum(),
        restart="gradient",
    ),
    "plateau_in_chain": lambda: optax.chain(
        nagd.nagd(nagd.schedules.wsd(0.1, 2, 2, 2), 0.9),
        nagd.scale_on_plateau(0.5, patience=2),
    ),
    "plateau_restarting_inner": lambda: nagd.scale_on_plateau(
        0.5,
        patience=2,
        loss_smoothing=0.5,
        inner=nagd.nagd(0.1, nagd.schedules.sutskever_momentum(0.9, 2),
                        restart="on_demand"),
        restart_momentum=True,
    ),
}


# Each check compiles its optimizer anew. The quick run (-m "not slow") checks
# three (the trace, nagd, schedules, weight decay, restart by the loss and by
# the momentum, the loss statistics); the full run checks every optimizer.
QUICK = ("nagd_schedules_weight_decay", "restart_loss_smoothed",
         "restart_gradient")


@pytest.fixture(params=[
    pytest.param(name, marks=() if name in QUICK else pytest.mark.slow)
    for name in sorted(OPTIMIZERS)
])
def optimizer(request):
  return optax.with_extra_args_support(OPTIMIZERS[request.param]())


def _params(dtype=jnp.float32):
  return {
      "w": jnp.linspace(-1.0, 1.0, 12, dtype=dtype).reshape(3, 4),
      "b": jnp.array([0.5, -0.25], dtype=dtype),
  }


def _grads(params, k):
  """A bounded, deterministic gradient sequence that depends on the params."""
  return jax.tree.map(lambda p: jnp.cos(k + 2 * p).astype(p.dtype), params)


def _value(k):
  """A loss that rises every few steps, so that loss restarts happen."""
  return jnp.cos(2.0 * k)


def _step(optimizer, params, state, k):
  updates, state = optimizer.update(
      _grads(params, k), state, params, value=_value(k)
  )
  return optax.apply_updates(params, updates), state, updates


def _run(optimizer, params, steps):
  state = optimizer.init(params)
  for k in range(steps):
    params, state, _ = _step(optimizer, params, state, k)
  return params, state


@pytest.mark.parametrize(
    "dtype", [jnp.bfloat16, jnp.float16, jnp.float32, jnp.float64]
)
def test_dtypes_are_preserved(optimizer, dtype):
  with jax.enable_x64(dtype == jnp.float64):
    params = _params(dtype)
    state = optimizer.init(params)
    for k in range(3):
      new_params, new_state, updates = _step(optimizer, params, state, k)
      chex.assert_trees_all_equal_dtypes(updates, params)
      chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)
      params, state = new_params, new_state


def test_no_recompilation_on_second_call(optimizer):
  step = jax.jit(lambda p, s, k: _step(optimizer, p, s, k))
  params = _params()
  state = optimizer.init(params)
  params, state, _ = step(params, state, 0)
  with log_compilations() as compilations:
    step(params, state, 1)
  assert not compilations, "the optimizer recompiles on the second call"


def test_lax_scan_matches_python_loop(optimizer):
  params = _params()

  def body(carry, k):
    params, state = carry
    params, state, _ = _step(optimizer, params, state, k)
    return (params, state), None

  (scanned, _), _ = jax.lax.scan(
      body, (params, optimizer.init(params)), jnp.arange(5)
  )
  looped, _ = _run(optimizer, params, 5)
  chex.assert_trees_all_close(scanned, looped, rtol=1e-5, atol=1e-6)


def test_lax_cond_can_skip_a_step(optimizer):
  params = _params()
  state = optimizer.init(params)
  grads = _grads(params, 0)

  @jax.jit
  def maybe_update(take_step, state):
    return jax.lax.cond(
        take_step,
        lambda s: optimizer.update(grads, s, params, value=1.0),
        lambda s: (jax.tree.map(jnp.zeros_like, grads), s),
        state,
    )

  skipped_updates, skipped_state = maybe_update(False, state)
  taken_updates, _ = maybe_update(True, state)
  expected_updates, _ = optimizer.update(grads, state, params, value=1.0)
  chex.assert_trees_all_equal(skipped_state, state)
  chex.assert_trees_all_close(taken_updates, expected_updates, rtol=1e-5, atol=1e-6)
  assert all(jnp.all(u == 0) for u in jax.tree.leaves(skipped_updates))


def test_multi_steps_averages_gradients(optimizer):
  """MultiSteps(every_k=3) equals the optimizer fed the mean of 3 gradients."""
  every_k = 3
  params = _params()
  accumulated = optax.MultiSteps(optimizer, every_k_schedule=every_k)
  # MultiSteps branches with lax.cond, which outside jit compiles the inner
  # optimizer anew at every call; jitted, it compiles once.
  accumulated_update = jax.jit(accumulated.update)
  state = accumulated.init(params)
  plain_state = optimizer.init(params)
  expected = params
  for k in range(2 * every_k):
    updates, state = accumulated_update(
        _grads(params, k), state, params, value=_value(k)
    )
    params = optax.apply_updates(params, updates)
    if (k + 1) % every_k == 0:
      mean = jax.tree.map(
          lambda *g: sum(g) / every_k,
          *[_grads(expected, j) for j in range(k + 1 - every_k, k + 1)],
      )
      # MultiSteps hands the inner optimizer the extra arguments of the
      # step that completes the accumulation.
      updates, plain_state = optimizer.update(
          mean, plain_state, expected, value=_value(k)
      )
      expected = optax.apply_updates(expected, updates)
    chex.assert_trees_all_close(params, expected, rtol=1e-5, atol=1e-6)


def test_masked_leaves_pass_through(optimizer):
  masked = optax.masked(optimizer, {"w": True, "b": False})
  params = _params()
  state = masked.init(params)
  plain_state = optimizer.init({"w": params["w"]})
  for k in range(3):
    grads = _grads(params, k)
    updates, state = masked.update(grads, state, params, value=_value(k))
    expected, plain_state = optimizer.update(
        {"w": grads["w"]}, plain_state, {"w": params["w"]}, value=_value(k)
    )
    chex.assert_trees_all_close(updates["w"], expected["w"], rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_equal(updates["b"], grads["b"])
    params = optax.apply_updates(params, updates)


def test_chain_composes(optimizer):
  chained = optax.chain(optax.scale(-2.0), optimizer, optax.scale(0.5))
  params = _params()
  state = chained.init(params)
  plain_state = optimizer.init(params)
  for k in range(3):
    grads = _grads(params, k)
    updates, state = chained.update(grads, state, params, value=_value(k))
    expected, plain_state = optimizer.update(
        jax.tree.map(lambda g: -2.0 * g, grads), plain_state, params,
        value=_value(k),
    )
    chex.assert_trees_all_close(
        updates, jax.tree.map(lambda u: 0.5 * u, expected), rtol=1e-5
    )
    params = optax.apply_updates(params, updates)


def test_flatten_matches_unflattened(optimizer):
  flat, _ = _run(optax.flatten(optimizer), _params(), 4)
  tree, _ = _run(optimizer, _params(), 4)
  chex.assert_trees_all_close(flat, tree, rtol=1e-5, atol=1e-6)


def test_abstract_init(optimizer):
  params = _params()
  abstract = jax.tree.map(
      lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params
  )
  from_abstract = optimizer.init(abstract)
  chex.assert_trees_all_equal(from_abstract, optimizer.init(params))
  chex.assert_trees_all_equal_shapes_and_dtypes(
      jax.eval_shape(optimizer.init, abstract), optimizer.init(params)
  )


def test_empty_parameter_tree(optimizer):
  state = optimizer.init({})
  updates, new_state = optimizer.update({}, state, {}, value=1.0)
  assert updates == {}
  chex.assert_trees_all_equal_structs(new_state, state)


def test_apply_if_finite_skips_non_finite_gradients(optimizer):
  guarded = optax.apply_if_finite(optimizer, max_consecutive_errors=3)
  # apply_if_finite branches with lax.cond, which outside jit compiles the
  # inner optimizer anew at every call; jitted, both calls share one.
  update = jax.jit(guarded.update)
  params = _params()
  state = guarded.init(params)
  updates, state = update(_grads(params, 0), state, params, value=_value(0))
  params = optax.apply_updates(params, updates)
  bad = jax.tree.map(lambda p: jnp.full_like(p, jnp.nan), params)
  updates, bad_state = update(bad, state, params, value=_value(1))
  assert all(jnp.all(u == 0) for u in jax.tree.leaves(updates))
  chex.assert_trees_all_equal(bad_state.inner_state, state.inner_state)
  assert int(bad_state.notfinite_count) == 1


def test_inject_hyperparams_matches_static_hyperparameters():
  injected = optax.inject_hyperparams(nagd.nagd)(
      learning_rate=0.1, momentum=0.9, weight_decay=1e-2
  )
  fixed = optax.with_extra_args_support(
      nagd.nagd(0.1, 0.9, weight_decay=1e-2)
  )
  injected_params, injected_state = _run(injected, _params(), 4)
  fixed_params, _ = _run(fixed, _params(), 4)
  chex.assert_trees_all_close(injected_params, fixed_params, rtol=1e-5, atol=1e-6)
  assert float(injected_state.hyperparams["learning_rate"]) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "restart", ["loss", "gradient", "speed", "interval", "on_demand"]
)
def test_inject_hyperparams_with_restart(restart):
  kwargs = dict(restart=restart, min_interval=2)
  if restart == "loss":
    kwargs["loss_smoothing"] = 0.5
  injected = optax.inject_hyperparams(nagd.nagd)(
      learning_rate=0.1, momentum=0.9, **kwargs
  )
  fixed = optax.with_extra_args_support(nagd.nagd(0.1, 0.9, **kwargs))
  injected_params, injected_state = _run(injected, _params(), 6)
  fixed_params, fixed_state = _run(fixed, _params(), 6)
  chex.assert_trees_all_close(injected_params, fixed_params, rtol=1e-5,
                              atol=1e-6)
  assert optax.tree.get(injected_state, "restarts") == optax.tree.get(
      fixed_state, "restarts"
  )


def test_inject_hyperparams_learning_rate_can_be_changed():
  injected = optax.inject_hyperparams(nagd.nagd)(learning_rate=0.1)
  params = _params()
  state = injected.init(params)
  state.hyperparams["learning_rate"] = jnp.zeros([])
  updates, _ = injected.update(_grads(params, 0), state, params)
  assert all(jnp.all(u == 0) for u in jax.tree.leaves(updates))


def test_inject_hyperparams_with_static_momentum_schedule():
  schedule = nagd.schedules.nesterov_momentum()
  injected = optax.inject_hyperparams(nagd.nagd, static_args=("momentum",))(
      learning_rate=0.1, momentum=schedule
  )
  fixed = optax.with_extra_args_support(nagd.nagd(0.1, schedule))
  chex.assert_trees_all_close(
      _run(injected, _params(), 4)[0], _run(fixed, _params(), 4)[0], rtol=1e-5
  )


def _state_bytes(state):
  return sum(x.nbytes for x in jax.tree.leaves(state))


def test_state_is_one_buffer_per_parameter_and_bf16_halves_it():
  params = {"w": jnp.zeros((256, 128)), "b": jnp.zeros(128)}
  param_bytes = _state_bytes(params)
  counter_bytes = 4  # the int32 step count
  full = nagd.nagd(0.1).init(params)
  half = nagd.nagd(0.1, accumulator_dtype=jnp.bfloat16).init(params)
  assert _state_bytes(full) == param_bytes + counter_bytes
  assert _state_bytes(half) == param_bytes // 2 + counter_bytes
  # Optax's Nesterov SGD keeps the same single buffer.
  assert _state_bytes(full) - counter_bytes == _state_bytes(
      optax.sgd(0.1, 0.9, nesterov=True).init(params)
  )


def test_bf16_accumulator_tracks_float32_momentum():
  """bf16 storage rounds the buffer (relative error ~2^-8), nothing worse."""
  params = _params()
  full, _ = _run(optax.with_extra_args_support(nagd.nagd(0.05)), params, 20)
  half, _ = _run(
      optax.with_extra_args_support(
          nagd.nagd(0.05, accumulator_dtype=jnp.bfloat16)
      ),
      params,
      20,
  )
  for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(half)):
    np.testing.assert_allclose(a, b, atol=2e-2)


def test_update_accepts_and_ignores_extra_keyword_arguments():
  optimizer = nagd.nagd(0.1)
  params = _params()
  state = optimizer.init(params)
  grads = _grads(params, 0)
  with_extra, _ = optimizer.update(grads, state, params, value=3.0, other=1)
  without, _ = optimizer.update(grads, state, params)
  chex.assert_trees_all_equal(with_extra, without)
