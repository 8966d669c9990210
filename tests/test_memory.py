"""No parameter-sized temporaries: read from XLA's compiled memory analysis.

A restart criterion reduces over the update or the momentum buffer. Done
carelessly, XLA materialises the whole update ``g + mu m`` as a temporary to
take its norm: as much memory again as the parameters, and a pass over it.
Optax's own Nesterov step is the reference: it needs no temporary at all.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nagd_optax as nagd

# Two leaves of one shape: XLA would share one broadcast of the momentum
# scalar between their reductions in the speed test and write it out whole.
PARAMS = {
    "w": jnp.ones((256, 1024)),
    "w2": jnp.ones((256, 1024)),
    "v": jnp.ones(200_000),
    "b": jnp.ones(1024),
}
PARAM_BYTES = sum(x.nbytes for x in jax.tree.leaves(PARAMS))

CRITERIA = {
    "no restart": None,
    "loss": "loss",
    "loss, smoothed": nagd.criteria.loss(0.98),
    "gradient": "gradient",
    "gradient, immediate": nagd.criteria.gradient(immediate=True),
    "speed": "speed",
    "speed, momentum": nagd.criteria.speed(measure="momentum"),
    "every": nagd.criteria.every(3),
    "on_demand": "on_demand",
}


def _nagd(criterion, accumulator_dtype):
  """nagd at momentum 0.9 with ``criterion`` (None: no restart)."""
  return nagd.nagd(0.1, 0.9, accumulator_dtype=accumulator_dtype,
                   **({} if criterion is None else {"restart": criterion}))


def _temporary_bytes(optimizer, params):
  """Temporary bytes of one jitted, donated step (update + apply)."""

  def step(params, state, grads, value):
    updates, state = optimizer.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state

  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(
      params, optimizer.init(params), params, jnp.float32(1.0)
  ).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def test_optax_reference_needs_no_temporary():
  # What "no temporary" means on this backend: Optax's step needs none.
  optax_bytes = _temporary_bytes(optax.sgd(0.1, 0.9, nesterov=True), PARAMS)
  assert optax_bytes < 0.01 * PARAM_BYTES


# The criteria that reduce over a float16 buffer: XLA:CPU hands the
# reduction to YNNPACK, which takes no float16 in, so the buffer's float32
# conversion is written out whole (as large as the float32 parameters).
# Open (strict): no formulation of the reduction tried avoids it.
_READ_THE_BUFFER = ("gradient", "gradient, immediate", "speed",
                    "speed, momentum")
_FLOAT16_CONVERSION = pytest.mark.xfail(
    strict=True,
    reason="float16 buffer: its float32 conversion is written out for the"
    " criterion's reduction (YNNPACK takes no float16 in); open.")


@pytest.mark.parametrize("name,accumulator_dtype", [
    pytest.param(name, dtype, marks=_FLOAT16_CONVERSION)
    if dtype == jnp.float16 and name in _READ_THE_BUFFER else (name, dtype)
    for name in sorted(CRITERIA)
    for dtype in (None, jnp.bfloat16, jnp.float16)
])
def test_no_criterion_adds_a_parameter_sized_temporary(name,
                                                       accumulator_dtype):
  criterion = CRITERIA[name]
  optimizer = _nagd(criterion, accumulator_dtype)
  temporary = _temporary_bytes(optimizer, PARAMS)
  # The smallest large leaf is a fifth of the tree: a copy of any leaf, of
  # the update or of a conversion fails. What may remain: the small leaves
  # gathered for one reduction (0.3% here).
  assert temporary < 0.02 * PARAM_BYTES, (name, temporary / PARAM_BYTES)


@pytest.mark.parametrize("name", _READ_THE_BUFFER)
def test_a_float16_buffer_is_not_copied_beside_its_conversion(name):
  """With the criteria above, the float16 buffer's float32 conversion is the
  only large temporary: no copy of the old buffer on top of it, and no
  broadcast of the momentum written out for the speed test.

  XLA:CPU had recomputed the new float16 buffer from the old one inside the
  parameter update's kernel, and kept a copy of the old buffer because the
  step overwrites it in place (1.14-1.5x of the float32 parameters in all).
  """
  optimizer = _nagd(CRITERIA[name], jnp.float16)
  temporary = _temporary_bytes(optimizer, PARAMS)
  conversion = PARAM_BYTES  # float32, one element per parameter
  # What may remain besides: the small leaves gathered for one reduction.
  assert temporary < 1.02 * conversion, (name, temporary / PARAM_BYTES)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("criterion,accumulator_dtype", [
    (None, jnp.float32), ("loss", jnp.float32), ("gradient", jnp.float32),
    ("speed", jnp.float32), (None, jnp.float16), ("loss", jnp.float16),
])
def test_a_narrower_buffer_of_float64_parameters_is_not_copied(
    criterion, accumulator_dtype):
  """float64 parameters (smooth problems) with a float32 or float16 buffer:
  XLA:CPU recomputed either rounding from the old buffer, as for float16
  under float32, and copied the old buffer each step; with the gradient
  test it also wrote out the float32 buffer's float64 conversion. (With a
  float16 buffer the gradient and speed tests still write out its
  conversion.)"""
  params = jax.tree.map(lambda x: x.astype(jnp.float64), PARAMS)
  optimizer = _nagd(criterion, accumulator_dtype)
  temporary = _temporary_bytes(optimizer, params)
  assert temporary < 0.01 * 2 * PARAM_BYTES, temporary / PARAM_BYTES


@pytest.mark.parametrize("criterion", ["gradient", "speed"])
@pytest.mark.parametrize("accumulator_dtype", [None, jnp.bfloat16])
def test_many_small_leaves_are_not_gathered_whole(criterion,
                                                  accumulator_dtype):
  """Small leaves are gathered into one array for one reduction (compile
  time); on a tree of nothing but small leaves that copy would be the size
  of the parameters. It is capped (at 65,536 elements)."""
  params = {f"w{i:03d}": jnp.ones(4096) for i in range(300)}
  optimizer = _nagd(criterion, accumulator_dtype)
  temporary = _temporary_bytes(optimizer, params)
  param_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
  assert temporary < 0.25 * param_bytes, temporary / param_bytes


def _assert_same_bits(expected, actual):
  for leaf, other in zip(jax.tree.leaves(expected), jax.tree.leaves(actual)):
    assert leaf.dtype == other.dtype
    bits = np.uint16 if leaf.dtype.itemsize == 2 else np.uint32
    np.testing.assert_array_equal(np.asarray(leaf).view(bits),
                                  np.asarray(other).view(bits))


@pytest.mark.parametrize("momentum,grad_dtype,accumulator_dtype", [
    (0.9, jnp.float32, None),
    (nagd.schedules.nesterov_momentum(), jnp.float32, None),
    (0.9, jnp.bfloat16, jnp.float32),
    (0.9, jnp.float32, jnp.bfloat16),
    (0.9, jnp.float32, jnp.float16),
])
def test_criteria_see_the_update_bit_for_bit(momentum, grad_dtype,
                                             accumulator_dtype):
  """The speed criterion reduces over the update recomputed in a form XLA
  does not merge with the update itself (which is what avoids the copy);
  the two must be the same numbers, bit for bit, in one jitted step."""
  trace = nagd.nesterov_trace(momentum, accumulator_dtype=accumulator_dtype)
  key = jax.random.PRNGKey(0)
  # Small leaves (computed together) and a large one (computed alone).
  grads = {"w": jax.random.normal(key, (5, 7)).astype(grad_dtype),
           "b": jax.random.normal(key, (3,)).astype(grad_dtype),
           "large": jax.random.normal(key, (70, 80)).astype(grad_dtype)}

  @jax.jit
  def both(state, grads):
    updates, new_state = trace.update(grads, state)
    return updates, trace.updates_again(grads, state, new_state), new_state

  state = trace.init(grads)
  for _ in range(3):
    updates, again, state = both(state, grads)
    _assert_same_bits(updates, again)
    grads = jax.tree.map(lambda g: -0.7 * g, grads)


@pytest.mark.parametrize("momentum,grad_dtype,accumulator_dtype", [
    (0.9, jnp.float32, None),
    (nagd.schedules.nesterov_momentum(), jnp.float32, None),
    (0.9, jnp.bfloat16, jnp.float32),
    (0.9, jnp.float32, jnp.bfloat16),
])
def test_the_replaced_update_is_the_update_from_a_fresh_state_bit_for_bit(
    momentum, grad_dtype, accumulator_dtype):
  """gradient(immediate=True) writes the update that fired from the buffer
  after its reset (which is what avoids the copy): where the reset fires it
  must be, bit for bit, the update a fresh state gives; elsewhere the
  update itself. (Gradients here have no zeros: for g = -0 the two differ
  in the sign of zero, as the docstring says.)"""
  trace = nagd.nesterov_trace(momentum, accumulator_dtype=accumulator_dtype)
  key = jax.random.PRNGKey(1)
  grads = {"w": jax.random.normal(key, (5, 7)).astype(grad_dtype),
           "b": jax.random.normal(key, (3,)).astype(grad_dtype),
           "large": jax.random.normal(key, (70, 80)).astype(grad_dtype)}

  @jax.jit
  def both(state, grads, reset):
    updates, new_state = trace.update(grads, state)
    fresh = trace.init(grads)
    fresh_updates, _ = trace.update(grads, fresh)
    kept = jax.tree.map(lambda f, m: jnp.where(reset, f, m), fresh, new_state)
    return (updates, fresh_updates,
            trace.updates_after_reset(grads, state, kept, reset), new_state)

  state = trace.init(grads)
  for step in range(4):
    reset = jnp.asarray(step % 2 == 1)
    updates, fresh_updates, written, state = both(state, grads, reset)
    expected = fresh_updates if bool(reset) else updates
    _assert_same_bits(expected, written)
    grads = jax.tree.map(lambda g: -0.7 * g, grads)


def test_small_leaves_computed_together_are_the_same_numbers():
  """The recomputed update handles small leaves concatenated (one kernel
  for all of them); it must equal the leaf-by-leaf map bit for bit, None
  leaves, mixed dtypes and shapes included."""
  from nagd_optax.criteria import _protocol
  key = jax.random.PRNGKey(2)
  a = {"big": jax.random.normal(key, (70, 80)),
       "s1": jax.random.normal(key, (3, 4)),
       "s2": jax.random.normal(key, (5,)).astype(jnp.bfloat16),
       "s3": jax.random.normal(key, ()),
       "none": None,
       "s4": jax.random.normal(key, (7, 2))}
  # More small leaves than are gathered into one array: the rest one by one.
  a.update({f"many{i:02d}": jax.random.normal(jax.random.PRNGKey(i), (4096,))
            for i in range(20)})
  b = jax.tree.map(lambda x: 0.5 - x, a)
  fn = lambda x, y: x - (-0.9) * y * y
  together = jax.jit(lambda a, b: _protocol.elementwise_map(fn, a, b))(a, b)
  expected = jax.jit(lambda a, b: jax.tree.map(fn, a, b))(a, b)
  assert together["none"] is None
  _assert_same_bits(expected, together)
  chex.assert_trees_all_equal_shapes_and_dtypes(together, expected)
