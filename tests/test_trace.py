"""nesterov_trace against Optax, against NumPy loops of Nesterov's method, and
against jaxopt's FISTA (a stored fixture)."""

import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nagd_optax as nagd
from tests import reference_methods

STEPS = 60
# Jitted, then eagerly: the eager runs (60 steps of two optimizers, op by op)
# are left to the full run.
JIT_THEN_EAGER = [pytest.param(True, id="jit"),
                  pytest.param(False, id="nojit", marks=pytest.mark.slow)]


def _logistic(seed=0):
  """(JAX value_and_grad, NumPy gradient, x0) of a small logistic regression."""
  problem = nagd.problems.synthetic_logistic(seed)
  return problem.value_and_grad, problem.grad, problem.x0


def _trajectory(optimizer, value_and_grad, x0, steps=STEPS, jit=True):
  """Runs optimizer from x0; returns the iterates (steps + 1, d).

  A loop of its own (not nagd.problems.trajectory): it also runs unjitted.
  """
  optimizer = optax.with_extra_args_support(optimizer)
  params = jnp.asarray(x0)
  state = optimizer.init(params)

  def step(params, state):
    value, grads = value_and_grad(params)
    updates, state = optimizer.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state

  if jit:
    step = jax.jit(step)
  iterates = [params]
  for _ in range(steps):
    params, state = step(params, state)
    iterates.append(params)
  return np.stack(iterates)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("jit", JIT_THEN_EAGER)
@pytest.mark.parametrize("momentum", [0.9, 0.5, 0.0])
@pytest.mark.parametrize(
    "learning_rate",
    [0.3, optax.cosine_decay_schedule(0.3, decay_steps=STEPS, alpha=0.1)],
    ids=["constant_lr", "cosine_lr"],
)
def test_constant_momentum_is_optax_sgd_nesterov(learning_rate, momentum, jit):
  value_and_grad, _, x0 = _logistic()
  ours = _trajectory(nagd.nagd(learning_rate, momentum), value_and_grad, x0,
                     jit=jit)
  reference = _trajectory(
      optax.sgd(learning_rate, momentum, nesterov=True), value_and_grad, x0,
      jit=jit,
  )
  assert ours.dtype == np.float64
  np.testing.assert_array_equal(ours, reference)  # bit for bit


def _two_sequence_method(grad, x0, learning_rate, beta, steps=STEPS):
  """The textbook method: x_j = y_{j-1} - lr grad(y_{j-1}),
  y_j = x_j + beta(j) (x_j - x_{j-1}), y_0 = x_0; returns y_0 .. y_steps."""
  x_previous = x0.copy()
  y = x0.copy()
  iterates = [y]
  for j in range(1, steps + 1):
    x = y - learning_rate * grad(y)
    y = x + beta(j) * (x - x_previous)
    x_previous = x
    iterates.append(y)
  return np.stack(iterates)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("jit", JIT_THEN_EAGER)
def test_nesterov_schedule_is_the_two_sequence_method(jit):
  value_and_grad, grad, x0 = _logistic()
  learning_rate = 0.9
  reference = _two_sequence_method(
      grad, x0, learning_rate, beta=lambda j: (j - 1) / (j + 2)
  )
  ours = _trajectory(
      nagd.nagd(learning_rate, nagd.schedules.nesterov_momentum()),
      value_and_grad,
      x0,
      jit=jit,
  )
  chex.assert_trees_all_close(ours, reference, rtol=1e-10, atol=1e-14)


@pytest.mark.usefixtures("x64")
def test_any_schedule_is_the_two_sequence_method():
  """An oscillating schedule exposes any off-by-one in the index shift."""
  value_and_grad, grad, x0 = _logistic(seed=1)

  def momentum(count):
    return 0.5 + 0.4 * jnp.cos(jnp.asarray(count, jnp.float64))

  # The two-sequence method extrapolates y_j with momentum(j - 1).
  reference = _two_sequence_method(
      grad, x0, 0.5, beta=lambda j: 0.5 + 0.4 * np.cos(j - 1.0)
  )
  ours = _trajectory(nagd.nagd(0.5, momentum), value_and_grad, x0)
  chex.assert_trees_all_close(ours, reference, rtol=1e-10, atol=1e-14)


@pytest.mark.usefixtures("x64")
def test_optax_sgd_with_injected_momentum_schedule_is_off_by_one():
  """Why the trace exists: Optax's trace uses one momentum value per step for
  both the decay and the extrapolation, so a schedule drifts from the method.
  """
  value_and_grad, grad, x0 = _logistic()
  reference = _two_sequence_method(
      grad, x0, 0.9, beta=lambda j: (j - 1) / (j + 2)
  )
  optax_nesterov = optax.inject_hyperparams(optax.sgd)(
      learning_rate=0.9,
      momentum=nagd.schedules.nesterov_momentum(),
      nesterov=True,
  )
  drifted = _trajectory(optax_nesterov, value_and_grad, x0)
  assert np.max(np.abs(drifted - reference)) > 1e-3


def test_constant_schedule_equals_constant_momentum():
  value_and_grad, _, x0 = _logistic()
  x0 = x0.astype(np.float32)
  as_float = _trajectory(nagd.nesterov_trace(0.8), value_and_grad, x0,
                         steps=10)
  as_schedule = _trajectory(
      nagd.nesterov_trace(optax.constant_schedule(0.8)), value_and_grad, x0,
      steps=10,
  )
  reference = _trajectory(optax.trace(0.8, nesterov=True), value_and_grad, x0,
                          steps=10)
  chex.assert_trees_all_close(as_float, reference, rtol=1e-6)
  chex.assert_trees_all_close(as_schedule, reference, rtol=1e-6)


def test_state_counts_steps_and_holds_the_buffer():
  optimizer = nagd.nesterov_trace(0.5)
  grads = {"w": jnp.array([1.0, 2.0])}
  state = optimizer.init(grads)
  _, state = optimizer.update(grads, state)
  _, state = optimizer.update(grads, state)
  assert state.count.dtype == jnp.int32 and int(state.count) == 2
  # m_1 = 0.5 * m_0 + g with m_0 = g.
  chex.assert_trees_all_close(state.trace, {"w": jnp.array([1.5, 3.0])})
  assert optax.tree.get(state, "count") == 2


def test_none_gradients_pass_through():
  optimizer = nagd.nesterov_trace(0.9)
  params = {"a": jnp.ones(2), "b": jnp.ones(3)}
  state = optimizer.init(params)
  updates, new_state = optimizer.update({"a": jnp.ones(2), "b": None}, state)
  assert updates["b"] is None
  chex.assert_trees_all_close(updates["a"], jnp.full(2, 1.9))
  # The buffer of the parameter without a gradient is kept, not dropped.
  chex.assert_trees_all_equal_structs(new_state, state)


# ----------------------------------------------------------------------------
# FISTA: jaxopt's ProximalGradient(acceleration=True) with a zero prox, stored
# by tests/fixtures/make_jaxopt_fista_trajectories.py. jaxopt's state holds
# the extrapolated points y_k, the parameters our optimizer holds.

FISTA_FIXTURE = np.load(
    pathlib.Path(__file__).parent / "fixtures" / "jaxopt_fista_trajectories.npz"
)
FISTA_PROBLEMS = ["least_squares", "logistic"]


def _fista_problem(name):
  """(JAX loss, NumPy loss, NumPy gradient) of a fixture problem."""
  data = {key.split("/")[1]: FISTA_FIXTURE[key]
          for key in FISTA_FIXTURE.files if key.startswith(name + "/")}
  if name == "least_squares":  # ||A x - b||^2 / (2m)
    a, b = data["A"], data["b"]

    def loss(x):
      return 0.5 * ((a @ x - b) ** 2).mean()

    def grad(x):
      return a.T @ (a @ x - b) / len(a)

  else:  # mean(log(1 + exp(-l X w))) + l2/2 ||w||^2
    features, labels, l2 = data["features"], data["labels"], data["l2"]

    def loss(w):
      margins = labels * (features @ w)
      namespace = np if isinstance(w, np.ndarray) else jnp
      return namespace.logaddexp(0.0, -margins).mean() + 0.5 * l2 * w @ w

    def grad(w):
      margins = labels * (features @ w)
      return -features.T @ (labels / (1 + np.exp(margins))) / len(labels) + (
          l2 * w
      )

  return loss, grad, data


def _relative_distance(a, b):
  """||a_k - b_k|| / ||b_k|| for each row k."""
  return np.linalg.norm(a - b, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", FISTA_PROBLEMS)
def test_fista_momentum_reproduces_jaxopt_fista(name):
  loss, _, data = _fista_problem(name)
  steps = int(FISTA_FIXTURE["steps"])
  optimizer = nagd.nagd(float(data["stepsize"]),
                        nagd.schedules.fista_momentum())
  ours = _trajectory(optimizer, jax.value_and_grad(loss), data["x0"],
                     steps=steps)
  assert ours.dtype == np.float64
  assert _relative_distance(ours, data["y"]).max() < 1e-10
  # jaxopt's params are the gradient steps x_{k+1} = y_k - grad f(y_k) / L.
  gradient = jax.jit(jax.grad(loss))  # eagerly, each of 300 calls retraces
  gradient_steps = ours[:-1] - data["stepsize"] * np.stack(
      [gradient(y) for y in ours[:-1]]
  )
  assert _relative_distance(gradient_steps, data["x"][1:]).max() < 1e-10


@pytest.mark.usefixtures("x64")
def test_fista_momentum_is_jaxopts_momentum():
  """mu_k = (t_{k+1} - 1)/t_{k+2}, from jaxopt's stored t_1, t_2, ..."""
  t = FISTA_FIXTURE["least_squares/t"]
  counts = jnp.arange(len(t) - 1, dtype=jnp.int32)
  ours = jax.vmap(nagd.schedules.fista_momentum())(counts)
  np.testing.assert_allclose(ours, (t[:-1] - 1) / t[1:], rtol=1e-15, atol=0)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", FISTA_PROBLEMS)
def test_nesterov_momentum_is_not_fista_but_the_two_sequence_method(name):
  """(j - 1)/(j + 2) is another sequence than FISTA's: a different path,
  which is the NumPy two-sequence loop with that beta."""
  loss, grad, data = _fista_problem(name)
  steps = 200
  ours = _trajectory(
      nagd.nagd(float(data["stepsize"]), nagd.schedules.nesterov_momentum()),
      jax.value_and_grad(loss), data["x0"], steps=steps,
  )
  # Both approach the same minimiser; on the way they are ~1e-2 apart.
  assert _relative_distance(ours, data["y"][: steps + 1]).max() > 1e-2
  _, _, reference = reference_methods.accelerated_gradient(
      loss, grad, data["x0"], data["stepsize"],
      beta=reference_methods.nesterov_beta, max_iterations=steps,
  )
  assert _relative_distance(ours, reference).max() < 1e-10


@pytest.mark.parametrize("jitted", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("name", ["bfloat16", "float16"])
def test_a_narrow_buffer_is_rounded_before_the_extrapolation_reads_it(
    name, jitted):
  """NumPy arithmetic of each step: the buffer rounded to bfloat16
  (ml_dtypes) or float16 after each update, and the update read from the
  rounded buffer, computed in float32. The leaf has more than 4,096
  elements: on CPU a float16 buffer that large is written in the form
  XLA:CPU materialises (smaller ones as a bare conversion)."""
  import ml_dtypes  # pylint: disable=g-import-not-at-top

  dtype = {"bfloat16": ml_dtypes.bfloat16, "float16": np.float16}[name]
  rng = np.random.default_rng(0)
  size = 5000
  grads = rng.standard_normal((30, size)).astype(np.float32)
  grads[:, :100] *= 1e-9  # underflows to +-0 in float16
  momentum = np.float32(0.9)
  trace = nagd.nesterov_trace(0.9, accumulator_dtype=getattr(jnp, name))
  update = jax.jit(trace.update) if jitted else trace.update
  state = trace.init(jnp.zeros(size, jnp.float32))
  ours, our_buffers = [], []
  for g in grads:
    updates, state = update(jnp.asarray(g), state)
    ours.append(np.asarray(updates))
    our_buffers.append(np.asarray(state.trace))
  # Each step's buffer is g + mu m rounded to the buffer's dtype, from the
  # previous buffer (step by step, so that a different rounding does not
  # carry over): computed in float32 with two roundings, or, jitted, with
  # one (XLA:CPU fuses it into an FMA); bit for bit one of the two.
  previous = np.zeros(size, dtype)
  for g, m in zip(grads, our_buffers):
    wide = previous.astype(np.float32)
    two_roundings = (g + momentum * wide).astype(dtype)
    one_rounding = (g.astype(np.float64) + np.float64(momentum) * wide
                    ).astype(np.float32).astype(dtype)
    bits = m.view(np.uint16)
    assert np.all((bits == two_roundings.view(np.uint16))
                  | (bits == one_rounding.view(np.uint16)))
    previous = m
  our_buffers = [m.astype(np.float32) for m in our_buffers]
  # Each update is read from the buffer as stored: g + mu round(m), to
  # float32 rounding (two roundings at most, or one with FMA).
  for g, u, m in zip(grads, ours, our_buffers):
    product = np.float64(momentum) * m
    np.testing.assert_array_less(
        np.abs(u - (g + product)),
        2 ** -23 * (np.abs(g) + np.abs(product)) + 1e-45)
  assert state.trace.dtype == getattr(jnp, name)


def test_a_float16_buffer_passes_derivatives_through_its_rounding():
  """Differentiating through the update (as meta-learning does): the
  rounding's derivative is 1, so d m / d g = 1 and d u / d g = 1 + mu, also
  where the buffer underflowed to +-0 (differentiated as abs and a select,
  the form XLA:CPU materialises would give -1 at -0)."""
  n = 8192  # over the 4,096 elements below which the buffer is copied
  trace = nagd.nesterov_trace(0.9, accumulator_dtype=jnp.float16)
  grads = jnp.asarray(np.repeat(np.float32([-1e-9, 1e-9, -1.0, 1.0]),
                                n // 4))

  def step(g):
    updates, state = trace.update(g, trace.init(g))
    return updates, state.trace.astype(jnp.float32)

  (_, buffer), (d_updates, d_buffer) = jax.jit(
      lambda g: jax.jvp(step, (g,), (jnp.ones_like(g),)))(grads)
  assert np.all(np.asarray(buffer)[: n // 2] == 0)  # underflowed
  np.testing.assert_array_equal(d_buffer, np.ones(n, np.float32))
  np.testing.assert_allclose(d_updates, np.full(n, 1.9, np.float32),
                             rtol=1e-7)
  reverse = jax.jit(jax.grad(lambda g: jnp.sum(step(g)[1])))(grads)
  np.testing.assert_array_equal(reverse, np.ones(n, np.float32))


def test_the_rounding_form_xla_materialises_is_the_identity_bit_for_bit():
  """On CPU a float16 (or, under float64 arithmetic, a float32) buffer is
  rounded and then written as copysign(|x|, x), which XLA:CPU does not
  recompute from the old buffer (tests/test_memory.py). It must be x in
  every bit: all 65,536 float16 patterns, and float32 infinities, NaNs with
  payloads, zeros, subnormals and a million random patterns."""
  from nagd_optax import _trace  # pylint: disable=g-import-not-at-top

  identity = jax.jit(_trace._same_sign_and_magnitude)  # pylint: disable=protected-access
  half = np.arange(2 ** 16, dtype=np.uint32).astype(np.uint16)
  np.testing.assert_array_equal(
      np.asarray(identity(jnp.asarray(half.view(np.float16)))).view(np.uint16),
      half)
  special = np.array([0, 0x80000000, 1, 0x80000001, 0x007FFFFF, 0x7F800000,
                      0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001,
                      0x7FC12345, 0xFFFFFFFF, 0x3F800000], np.uint32)
  random = np.random.default_rng(0).integers(0, 2 ** 32, 1_000_000,
                                             dtype=np.uint32)
  single = np.concatenate([special, random])
  np.testing.assert_array_equal(
      np.asarray(identity(jnp.asarray(single.view(np.float32)))).view(
          np.uint32), single)


@pytest.mark.parametrize("accumulator_dtype", [None, jnp.bfloat16])
def test_fresh_where_is_the_init_state_or_the_state_itself(accumulator_dtype):
  """The reset nesterov_trace offers restart: where it fires, the state
  init gives (zero buffers, count 0); elsewhere the state unchanged."""
  trace = nagd.nesterov_trace(0.9, accumulator_dtype=accumulator_dtype)
  params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
  state = trace.init(params)
  for grads in ({"w": -jnp.ones((3, 2)), "b": jnp.array([2.0, -3.0])},) * 2:
    _, state = trace.update(grads, state)
  reset = jax.jit(trace.fresh_where)
  kept = reset(jnp.asarray(False), state)
  chex.assert_trees_all_equal(kept, state)
  fresh = reset(jnp.asarray(True), state)
  chex.assert_trees_all_equal_dtypes(fresh, trace.init(params))
  chex.assert_trees_all_equal(fresh, trace.init(params))


def test_python_number_gradients_are_taken_as_arrays():
  trace = nagd.nesterov_trace(0.9)
  state = trace.init({"a": jnp.ones(())})
  updates, state = trace.update({"a": 1.0}, state)
  # u_0 = g + 0.9 (0 + g) with g = 1, in float32.
  np.testing.assert_array_equal(updates["a"], np.float32(1) + np.float32(0.9))
  assert state.trace["a"].dtype == jnp.float32


def test_fresh_where_by_multiplication_keeps_nan_a_select_clears_it():
  trace = nagd.nesterov_trace(0.9)
  state = trace.init(jnp.zeros(2))
  _, state = trace.update(jnp.array([jnp.nan, 1.0]), state)
  multiplied = trace.fresh_where(jnp.asarray(True), state)
  assert np.isnan(multiplied.trace[0]) and multiplied.trace[1] == 0.0
  selected = trace.fresh_where(jnp.asarray(True), state, select=True)
  chex.assert_trees_all_equal(selected, trace.init(jnp.zeros(2)))
