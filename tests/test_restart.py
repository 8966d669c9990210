"""restart(): the criteria's rules, the state, errors, and noisy losses."""

import math

import chex
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nagd_optax as nagd


def _restart_steps(optimizer, values, params=None):
  """Feeds `values` as losses (with a constant gradient); returns the steps at
  which the inner state was reset, and the final state."""
  params = jnp.ones(3) if params is None else params
  state = optimizer.init(params)
  steps = []
  for k, value in enumerate(values):
    before = int(state.restarts)
    _, state = optimizer.update(params, state, params, value=value)
    if int(state.restarts) > before:
      steps.append(k)
  return steps, state


def _loss_rule(values, min_interval=0):
  """The function scheme in plain Python: restart at step k when the finite
  loss v_k rose above the lowest finite loss since the last restart."""
  lowest, last_restart, steps = math.inf, 0, []
  for k, value in enumerate(values):
    if not math.isfinite(value):
      continue
    if value > lowest and k - last_restart >= min_interval:
      steps.append(k)
      last_restart, lowest = k, value
    else:
      lowest = min(lowest, value)
  return steps


def test_loss_restarts_when_the_loss_rises():
  values = [5.0, 4.0, 3.0, 3.5, 2.0, 1.0, 1.5, 1.4, 1.6]
  optimizer = nagd.restart(nagd.nesterov_trace(0.9), "loss")
  steps, state = _restart_steps(optimizer, values)
  assert steps == [3, 6, 8] == _loss_rule(values)
  assert int(optax.tree.get(state, "restarts")) == 3


@hypothesis.settings(max_examples=40, deadline=None, derandomize=True)
@hypothesis.given(
    values=st.lists(
        st.one_of(
            # XLA:CPU flushes subnormals to zero; Python compares them.
            st.floats(-10, 10, width=32, allow_subnormal=False),
            st.sampled_from([math.nan, math.inf, -math.inf]),
        ),
        min_size=1,
        max_size=25,
    ),
    min_interval=st.integers(0, 4),
)
def test_loss_rule_matches_plain_python(values, min_interval):
  optimizer = nagd.restart(
      nagd.nesterov_trace(0.5), "loss", min_interval=min_interval
  )
  steps, state = _restart_steps(optimizer, values)
  assert steps == _loss_rule(values, min_interval)
  assert np.isfinite(state.criterion_state.lowest) or not any(
      math.isfinite(v) for v in values
  )


def test_non_finite_losses_never_restart_nor_poison_the_memory():
  values = [3.0, 2.0, math.nan, math.inf, 2.5, -math.inf, 1.0, math.nan, 1.2]
  optimizer = nagd.restart(nagd.nesterov_trace(0.9), "loss")
  steps, state = _restart_steps(optimizer, values)
  assert steps == [4, 8]  # 2.5 > 2.0 and 1.2 > 1.0; NaN/inf are skipped
  assert float(state.criterion_state.lowest) == pytest.approx(1.2)
  assert float(state.criterion_state.trend.mean) == pytest.approx(1.2)


def test_float64_losses_are_compared_in_float64(x64):
  """Near the optimum consecutive losses differ below float32's epsilon."""
  values = np.array([1.0, 1.0 - 2e-12, 1.0 - 4e-12, 1.0 - 3e-12])
  assert np.float32(values[3]) == np.float32(values[2])  # a float32 copy
  optimizer = nagd.restart(nagd.nesterov_trace(0.9), "loss")
  steps, state = _restart_steps(optimizer, jnp.asarray(values),
                                params=jnp.ones(3, jnp.float64))
  assert steps == [3]
  assert state.criterion_state.lowest.dtype == jnp.float64


def test_missing_value_raises_naming_value():
  optimizer = nagd.restart(nagd.nesterov_trace(0.9), "loss")
  params = jnp.ones(2)
  with pytest.raises(TypeError, match="value"):
    optimizer.update(params, optimizer.init(params), params)


def test_non_scalar_value_raises_naming_value():
  optimizer = nagd.nagd(0.1, restart="loss")
  params = jnp.ones(2)
  with pytest.raises(ValueError, match="value"):
    optimizer.update(params, optimizer.init(params), params, value=params)


def test_unknown_criterion_lists_the_valid_ones():
  with pytest.raises(ValueError, match="'loss', 'gradient', 'speed'"):
    nagd.restart(nagd.nesterov_trace(0.9), "function")
  with pytest.raises(ValueError, match="'interval', 'on_demand'"):
    nagd.nagd(0.1, restart="sometimes")


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(loss_smoothing=1.0), "loss_smoothing"),
        (dict(loss_smoothing=-0.1), "loss_smoothing"),
        (dict(loss_smoothing=math.nan), "loss_smoothing"),
        (dict(noise_tolerance=-1.0), "noise_tolerance"),
        (dict(min_interval=-1), "min_interval"),
        (dict(min_interval=2.5), "min_interval"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, name):
  with pytest.raises(ValueError, match=name):
    nagd.restart(nagd.nesterov_trace(0.9), "loss", **kwargs)


def test_interval_needs_a_period():
  with pytest.raises(ValueError, match="min_interval"):
    nagd.restart(nagd.nesterov_trace(0.9), "interval")
  with pytest.raises(ValueError, match="min_interval"):
    nagd.nagd(0.1, restart="interval", min_interval=0)


def test_interval_restarts_every_period():
  optimizer = nagd.restart(nagd.nesterov_trace(0.9), "interval",
                           min_interval=5)
  steps, _ = _restart_steps(optimizer, [0.0] * 23)
  # Each run of the inner transformation is exactly 5 updates long.
  assert steps == [5, 10, 15, 20]


def test_restart_gives_a_fresh_inner_state():
  """After a restart the inner state is exactly a fresh init: the momentum
  schedule starts again from k = 0."""
  inner = nagd.nesterov_trace(nagd.schedules.nesterov_momentum())
  optimizer = nagd.restart(inner, "interval", min_interval=3)
  params = jnp.array([1.0, -2.0])
  state = optimizer.init(params)
  grads = [params * (k + 1.0) for k in range(4)]
  for g in grads[:3]:
    _, state = optimizer.update(g, state, params)
  assert bool(state.restart_pending)
  updates, state = optimizer.update(grads[3], state, params)
  fresh_updates, fresh_state = inner.update(grads[3], inner.init(params))
  chex.assert_trees_all_close(updates, fresh_updates)
  chex.assert_trees_all_close(state.inner_state, fresh_state)
  assert int(state.inner_state.count) == 1


@pytest.mark.parametrize("criterion", ["on_demand", "loss", "gradient"])
def test_on_demand_restart_resets_this_update(criterion):
  optimizer = nagd.nagd(0.1, 0.9, restart=criterion)
  plain = nagd.nagd(0.1, 0.9)
  params = jnp.array([1.0, 2.0])
  state = optimizer.init(params)
  for _ in range(3):
    _, state = optimizer.update(params, state, params, value=1.0)
  updates, state = optimizer.update(
      params, state, params, value=1.0, restart=jnp.asarray(True)
  )
  fresh, _ = plain.update(params, plain.init(params), params)
  chex.assert_trees_all_close(updates, fresh)
  assert int(optax.tree.get(state, "restarts")) == 1


def test_on_demand_restart_can_be_traced():
  optimizer = nagd.nagd(0.1, 0.9, restart="on_demand")
  params = jnp.array([1.0, 2.0])

  @jax.jit
  def step(state, switch):
    return optimizer.update(params, state, params, restart=switch)[1]

  state = optimizer.init(params)
  state = step(state, False)
  state = step(state, True)
  state = step(state, False)
  assert int(optax.tree.get(state, "restarts")) == 1


def test_gradient_restart_fires_when_momentum_points_uphill():
  """<g_k, m_k> < 0 <=> grad f(y_k)^T (x_{k+1} - x_k) > 0 (m = -dx / lr)."""
  optimizer = nagd.restart(nagd.nesterov_trace(0.5), "gradient")
  params = jnp.zeros(2)
  state = optimizer.init(params)
  # m = (1, 0); <g, m> = 1 > 0.
  _, state = optimizer.update(jnp.array([1.0, 0.0]), state, params)
  assert not bool(state.restart_pending)
  # m = 0.5 (1, 0) + (-0.4, 1) = (0.1, 1); <g, m> = -0.04 + 1 > 0.
  _, state = optimizer.update(jnp.array([-0.4, 1.0]), state, params)
  assert not bool(state.restart_pending)
  # m = 0.5 (0.1, 1) + (-0.1, 0) = (-0.05, 0.5); <g, m> = 0.005 > 0.
  _, state = optimizer.update(jnp.array([-0.1, 0.0]), state, params)
  assert not bool(state.restart_pending)
  # m = 0.5 (-0.05, 0.5) + (0, -0.2) = (-0.025, 0.05); <g, m> = -0.01 < 0.
  _, state = optimizer.update(jnp.array([0.0, -0.2]), state, params)
  assert bool(state.restart_pending)


def test_gradient_criterion_needs_a_momentum_buffer():
  with pytest.raises(ValueError, match="momentum_buffer"):
    nagd.restart(optax.scale(-1.0), "gradient").init(jnp.ones(2))
  optimizer = nagd.restart(optax.adam(1e-2), "gradient",
                           momentum_buffer=lambda state: state[0].mu)
  params = jnp.ones(2)
  state = optimizer.init(params)
  for _ in range(5):
    _, state = optimizer.update(params, state, params)
  assert not bool(state.restart_pending)
  _, state = optimizer.update(-0.1 * params, state, params)
  assert bool(state.restart_pending)  # mu = 0.9 mu + 0.1 g still opposes g


def test_restart_wraps_any_transformation():
  """An Adam restarted every 4 steps equals a fresh Adam each period."""
  adam = optax.adam(0.1)
  restarted = nagd.restart(adam, "interval", min_interval=4)
  params = jnp.array([1.0, -1.0, 0.5])
  grads = [jnp.sin(params * k) + 0.1 * k for k in range(8)]
  state = restarted.init(params)
  ours = []
  for g in grads:
    u, state = restarted.update(g, state, params)
    ours.append(u)
  expected = []
  for period in (grads[:4], grads[4:]):
    adam_state = adam.init(params)
    for g in period:
      u, adam_state = adam.update(g, adam_state, params)
      expected.append(u)
  chex.assert_trees_all_close(ours, expected, rtol=1e-6)


def test_speed_waits_min_interval_steps():
  optimizer = nagd.restart(nagd.nesterov_trace(0.0), "speed")
  params = jnp.ones(1)
  state = optimizer.init(params)
  fired = []
  for k in range(15):  # steps get shorter every time
    _, state = optimizer.update(params / (k + 1), state, params)
    fired.append(bool(state.restart_pending))
  # Fires once 10 updates were taken since the (re)start, then again 10
  # updates after the restart applied at update 11.
  assert fired == [False] * 9 + [True] + [False] * 5


# ----------------------------------------------------------------------------
# Noisy losses: smoothing makes the function scheme usable on minibatches.


def _minibatch_least_squares(optimizer, steps=3000, seed=1):
  """SGD on a least-squares problem with batches of 32 of 2000 rows.

  Returns (restarts, mean full-batch excess loss over the last 500 steps).
  """
  rng = np.random.default_rng(0)
  features = rng.standard_normal((2000, 20)) * np.logspace(0, -1, 20)
  targets = features @ rng.standard_normal(20) + 0.5 * rng.standard_normal(
      2000
  )
  optimum = np.linalg.lstsq(features, targets, rcond=None)[0]
  best = 0.5 * np.mean((features @ optimum - targets) ** 2)
  features, targets = jnp.asarray(features), jnp.asarray(targets)
  batches = jax.random.randint(jax.random.PRNGKey(seed), (steps, 32), 0, 2000)

  def loss(w, rows):
    residuals = features[rows] @ w - targets[rows]
    return 0.5 * jnp.mean(residuals**2)

  @jax.jit
  def train(w):
    def step(carry, rows):
      w, state = carry
      value, grads = jax.value_and_grad(loss)(w, rows)
      updates, state = optimizer.update(grads, state, w, value=value)
      full = 0.5 * jnp.mean((features @ w - targets) ** 2)
      return (optax.apply_updates(w, updates), state), full

    (_, state), history = jax.lax.scan(step, (w, optimizer.init(w)), batches)
    return state, history

  state, history = train(jnp.zeros(20))
  restarts = optax.tree.get(state, "restarts")
  excess = float(np.mean(np.asarray(history[-500:])) - best)
  return (0 if restarts is None else int(restarts)), excess


@pytest.fixture(scope="module")
def no_restart_run():
  return _minibatch_least_squares(nagd.nagd(0.05, 0.99))


@pytest.mark.slow  # three 3000-step least-squares runs, each compiled
def test_raw_loss_test_fires_on_about_every_other_minibatch(no_restart_run):
  restarts, _ = _minibatch_least_squares(
      nagd.nagd(0.05, 0.99, restart="loss")
  )
  assert restarts > 0.4 * 3000


@pytest.mark.slow
def test_smoothed_loss_restarts_rarely_and_converges_as_well(no_restart_run):
  restarts, excess = _minibatch_least_squares(
      nagd.nagd(0.05, 0.99, restart="loss", loss_smoothing=0.98)
  )
  assert restarts <= 0.05 * 3000
  _, no_restart_excess = no_restart_run
  assert excess <= no_restart_excess


def _synthetic_restarts(values, **kwargs):
  optimizer = nagd.restart(nagd.nesterov_trace(0.9), "loss", **kwargs)
  params = jnp.zeros(2)

  @jax.jit
  def run(values):
    def step(state, value):
      return optimizer.update(params, state, params, value=value)[1], None

    return jax.lax.scan(step, optimizer.init(params), values)[0].restarts

  return int(run(jnp.asarray(values, jnp.float32)))


@pytest.mark.parametrize("trend", ["falling", "exponential"])
def test_smoothed_loss_keeps_quiet_on_a_noisy_falling_loss(trend):
  k = np.arange(3000)
  noise = 0.3 * np.random.default_rng(0).standard_normal(3000)
  level = 10 - 0.002 * k if trend == "falling" else 1 + 3 * np.exp(-k / 500)
  assert _synthetic_restarts(level + noise) > 1000  # raw: every other step
  assert _synthetic_restarts(level + noise, loss_smoothing=0.98) <= 0.05 * 3000


def test_smoothed_loss_still_restarts_on_a_rising_loss():
  k = np.arange(3000)
  noise = 0.3 * np.random.default_rng(0).standard_normal(3000)
  restarts = _synthetic_restarts(5 + 0.002 * k + noise, loss_smoothing=0.98)
  assert restarts >= 20  # a genuine rise is caught again and again


def test_loss_noise_of_1e6_f0(x64):
  """With loss noise of 1e-6 f0 on the quadratic, the raw function test fires
  about every other step; the gradient test, blind to the loss, 2-3 times in
  3000 steps (kappa = 1e5), and converges regardless (figures computed
  independently of this library by plain NumPy loops of the papers'
  algorithms)."""
  problem = nagd.problems.quadratic(1e5)
  f0 = problem.f(problem.x0)
  noise = 1e-6 * f0 * np.random.default_rng(1).standard_normal(3000)

  def run(criterion):
    optimizer = nagd.nagd(1.0, nagd.schedules.nesterov_momentum(),
                          restart=criterion)

    @jax.jit
    def go(noise):
      def step(carry, eps):
        x, state = carry
        value, grads = problem.value_and_grad(x)
        updates, state = optimizer.update(grads, state, x, value=value + eps)
        return (optax.apply_updates(x, updates), state), None

      x = jnp.asarray(problem.x0)
      return jax.lax.scan(step, (x, optimizer.init(x)), noise)[0]

    x, state = go(jnp.asarray(noise))
    relative_loss = problem.f(np.asarray(x)) / f0
    return int(optax.tree.get(state, "restarts")), relative_loss

  loss_restarts, loss_final = run("loss")
  gradient_restarts, gradient_final = run("gradient")
  assert 0.35 * 3000 <= loss_restarts <= 0.65 * 3000
  assert 2 <= gradient_restarts <= 3
  assert gradient_final < 1e-9 < 1e-6 < loss_final


# ----------------------------------------------------------------------------
# Cost: restart adds scalars to the state and a select per leaf, no branch.


@pytest.mark.parametrize("criterion", nagd.criteria._shorthands.NAMES)
def test_restart_adds_only_scalars_to_the_state(criterion):
  params = {"w": jnp.zeros((64, 32)), "b": jnp.zeros(32)}
  kwargs = {"min_interval": 5} if criterion == "interval" else {}
  state = nagd.nagd(0.1, restart=criterion, **kwargs).init(params)
  plain = nagd.nagd(0.1).init(params)
  restart_state = state[0]
  added = [
      leaf for field, value in restart_state._asdict().items()
      if field != "inner_state" for leaf in jax.tree.leaves(value)
  ]
  assert all(leaf.shape == () for leaf in added)
  chex.assert_trees_all_equal_shapes_and_dtypes(restart_state.inner_state,
                                                plain[0])


def _equations(jaxpr):
  """All equations of a jaxpr, nested ones (pjit, cond branches) included."""
  for equation in jaxpr.eqns:
    yield equation
    for param in equation.params.values():
      for sub in param if isinstance(param, (list, tuple)) else [param]:
        sub = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
        if hasattr(sub, "eqns"):
          yield from _equations(sub)


def _primitives(jaxpr):
  """Names of all primitives in a jaxpr, nested ones (pjit, ...) included."""
  for equation in _equations(jaxpr):
    yield equation.primitive.name


@pytest.mark.parametrize("criterion", nagd.criteria._shorthands.NAMES)
def test_the_decision_is_a_select_not_a_branch(criterion):
  kwargs = {"min_interval": 5} if criterion == "interval" else {}
  optimizer = nagd.nagd(0.1, restart=criterion, **kwargs)
  params = {"w": jnp.ones((8, 4)), "b": jnp.ones(4)}
  state = optimizer.init(params)
  jaxpr = jax.make_jaxpr(
      lambda g, s: optimizer.update(g, s, params, value=1.0)
  )(params, state)
  primitives = set(_primitives(jaxpr.jaxpr))
  assert "select_n" in primitives
  # No branch over the tree: a conditional or loop may only pass scalars
  # (on CPU the scalar bookkeeping runs in a loop, see _scalar_block).
  # A choice of platform (lax.platform_dependent) is made when lowering,
  # not at run time: conditionals on it are not branches.
  equations = list(_equations(jaxpr.jaxpr))
  platform = {v for e in equations if e.primitive.name == "platform_index"
              for v in e.outvars}
  for equation in equations:
    if equation.primitive.name == "cond" and equation.invars[0] in platform:
      continue
    if equation.primitive.name in {"cond", "while", "scan"}:
      # Scalars, and a vector of partial inner products.
      for v in [*equation.invars, *equation.outvars]:
        assert v.aval.ndim <= 1 and v.aval.size < 4, equation


# ----------------------------------------------------------------------------
# Edge cases: no params, None updates, masked/partitioned inners, complex.


def test_update_without_params_keeps_the_state_dtypes():
  """The fresh state is built from the updates when params are not passed;
  it takes the old state's dtypes (bf16 params, float32 gradients)."""
  optimizer = nagd.restart(nagd.nesterov_trace(0.9), "interval",
                           min_interval=1)
  params = jnp.ones(3, jnp.bfloat16)
  state = optimizer.init(params)

  def step(state, k):
    grads = jnp.full(3, k, jnp.float32)
    return optimizer.update(grads, state)[1], None

  final, _ = jax.lax.scan(step, state, jnp.arange(4.0))
  chex.assert_trees_all_equal_shapes_and_dtypes(final, state)
  assert int(final.restarts) == 3


def test_none_updates_need_params_to_build_a_fresh_state():
  # A generic inner transformation (here hidden in a chain) is reset to its
  # init state, built from the parameters: a None update has no shape.
  optimizer = nagd.restart(optax.chain(nagd.nesterov_trace(0.9)), "on_demand")
  params = {"a": jnp.ones(2), "b": jnp.ones(3)}
  state = optimizer.init(params)
  grads = {"a": jnp.ones(2), "b": None}
  with pytest.raises(ValueError, match="params"):
    optimizer.update(grads, state)
  updates, new_state = optimizer.update(grads, state, params, restart=True)
  assert updates["b"] is None
  chex.assert_trees_all_equal_structs(new_state, state)


def test_nesterov_trace_resets_itself_without_params():
  # nesterov_trace resets its own buffers (to zero), so no parameters are
  # needed, and a parameter without a gradient keeps a zero buffer.
  optimizer = nagd.restart(nagd.nesterov_trace(0.9), "on_demand")
  params = {"a": jnp.ones(2), "b": jnp.ones(3)}
  state = optimizer.init(params)
  _, state = optimizer.update({"a": jnp.ones(2), "b": jnp.ones(3)}, state)
  updates, new_state = optimizer.update(
      {"a": 2 * jnp.ones(2), "b": None}, state, restart=True
  )
  assert updates["b"] is None
  chex.assert_trees_all_equal_structs(new_state, state)
  np.testing.assert_array_equal(new_state.inner_state.trace["b"], 0.0)
  np.testing.assert_array_equal(new_state.inner_state.trace["a"], 2.0)
  two = np.float32(2.0)
  np.testing.assert_array_equal(updates["a"], two + np.float32(0.9) * two)
  assert int(new_state.inner_state.count) == 1


def _uphill(grads, buffers):
  return sum(float(np.sum(np.asarray(g) * np.asarray(m)))
             for g, m in zip(grads, buffers)) < 0


def test_gradient_criterion_inside_masked_and_partitioned_inners():
  params = {"a": jnp.zeros(2), "b": jnp.zeros(2)}
  steps = [{"a": jnp.array([1.0, 0.0]), "b": jnp.array([0.0, 1.0])},
           {"a": jnp.array([-0.4, 0.0]), "b": jnp.array([0.0, 0.1])}]
  masked = nagd.restart(
      optax.masked(nagd.nesterov_trace(0.5), {"a": True, "b": False}),
      "gradient",
  )
  partitioned = nagd.restart(
      optax.partition(
          {"x": nagd.nesterov_trace(0.5), "y": nagd.nesterov_trace(0.5)},
          {"a": "x", "b": "y"},
      ),
      "gradient",
  )
  # By hand: the momentum is m = 0.5 m + g per leaf (only "a" when masked).
  buffers = {"a": np.zeros(2), "b": np.zeros(2)}
  masked_state, partitioned_state = masked.init(params), partitioned.init(params)
  for grads in steps:
    buffers = {k: 0.5 * buffers[k] + np.asarray(g) for k, g in grads.items()}
    _, masked_state = masked.update(grads, masked_state, params)
    _, partitioned_state = partitioned.update(grads, partitioned_state, params)
    assert bool(masked_state.restart_pending) == _uphill([grads["a"]],
                                                      [buffers["a"]])
    assert bool(partitioned_state.restart_pending) == _uphill(
        [grads["a"], grads["b"]], [buffers["a"], buffers["b"]])
  # The last step: "a" alone went uphill (-0.04), "a" and "b" together did
  # not (-0.04 + 0.06).
  assert bool(masked_state.restart_pending)
  assert not bool(partitioned_state.restart_pending)


def test_complex_parameters_use_the_real_inner_product():
  """<g, m> = Re(sum conj(g) m): a gradient aligned with its momentum is
  downhill whatever its phase."""
  for criterion in ("gradient", "speed"):
    optimizer = nagd.restart(nagd.nesterov_trace(0.5), criterion,
                             min_interval=1)
    params = jnp.full(3, 1j, jnp.complex64)
    state = optimizer.init(params)
    fired = []
    for k in range(4):
      _, state = optimizer.update(params * (1.0 + k), state, params)
      fired.append(bool(state.restart_pending))
    assert not any(fired), criterion  # growing, aligned steps: no restart
    if criterion == "speed":
      assert float(state.criterion_state.previous_norm_squared) > 0


# ----------------------------------------------------------------------------
# Which buffer is the momentum; what a restart resets; deprecated names.


def test_two_momentum_buffers_of_the_same_parameters_are_refused_at_init():
  inner = optax.chain(nagd.nesterov_trace(0.9), optax.trace(0.5))
  with pytest.raises(ValueError, match="momentum_buffer"):
    nagd.restart(inner, "gradient").init(jnp.ones(3))


def test_momentum_buffer_says_which_buffer_is_read():
  """With momentum_buffer picking the second of two buffers, the test is
  <g, m> on that buffer alone, checked against the buffer computed by hand."""
  inner = optax.chain(nagd.nesterov_trace(0.9), optax.trace(0.5))
  optimizer = nagd.restart(inner, "gradient",
                           momentum_buffer=lambda state: state[1].trace)
  params = jnp.zeros(2)
  state = optimizer.init(params)
  first = np.zeros(2)  # nesterov_trace's buffer
  second = np.zeros(2)  # optax.trace's buffer, fed nesterov_trace's output
  for g in ([-3.0, -1.0], [-1.0, 1.0], [3.0, 1.0]):
    g = np.asarray(g)
    first = 0.9 * first + g
    second = 0.5 * second + (g + 0.9 * first)
    _, state = optimizer.update(jnp.asarray(g), state, params)
    assert bool(state.restart_pending) == bool(g @ second < 0)
  # The last gradient opposes the second buffer, not the first.
  assert bool(state.restart_pending) and g @ first > 0


def test_a_flattened_buffer_is_refused_at_init_with_what_to_do():
  params = {"a": jnp.ones(2), "b": jnp.ones(3)}
  optimizer = nagd.restart(optax.flatten(nagd.nesterov_trace(0.9)),
                           "gradient")
  with pytest.raises(ValueError, match=r"optax.flatten\(nagd.restart"):
    optimizer.init(params)
  # The suggested order works, and equals the unflattened restart.
  flat = optax.flatten(nagd.restart(nagd.nesterov_trace(0.9), "gradient"))
  tree = nagd.restart(nagd.nesterov_trace(0.9), "gradient")
  flat_state, tree_state = flat.init(params), tree.init(params)
  for k in range(6):
    grads = jax.tree.map(lambda p: jnp.cos(k * p + k), params)
    flat_updates, flat_state = flat.update(grads, flat_state, params)
    tree_updates, tree_state = tree.update(grads, tree_state, params)
    chex.assert_trees_all_close(flat_updates, tree_updates, rtol=1e-6)


def test_momentum_buffer_must_be_callable():
  with pytest.raises(TypeError, match="momentum_buffer"):
    nagd.restart(nagd.nesterov_trace(), "gradient", momentum_buffer="trace")


def test_momentum_field_still_works_but_is_deprecated():
  with pytest.warns(DeprecationWarning, match="momentum_buffer"):
    old = nagd.restart(optax.adam(1e-2), "gradient", momentum_field="mu")
  new = nagd.restart(optax.adam(1e-2), "gradient",
                     momentum_buffer=lambda state: state[0].mu)
  params = jnp.ones(2)
  old_state, new_state = old.init(params), new.init(params)
  for g in (params, params, -0.1 * params):
    _, old_state = old.update(g, old_state, params)
    _, new_state = new.update(g, new_state, params)
  chex.assert_trees_all_equal(old_state, new_state)


def test_renamed_state_fields_warn_and_still_answer():
  state = nagd.restart(nagd.nesterov_trace(), "loss").init(jnp.ones(2))
  with pytest.warns(DeprecationWarning, match="restart_pending"):
    assert state.restart_next is state.restart_pending
  with pytest.warns(DeprecationWarning, match="criterion_state"):
    assert state.memory is state.criterion_state


def test_a_restart_keeps_injected_hyperparameters():
  """inject_hyperparams inside the restart: the momentum restarts, the
  learning rate the user set does not return to its initial value. After
  the restart the updates are those of a fresh SGD at the new rate."""
  inner = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1,
                                              momentum=0.9, nesterov=True)
  optimizer = nagd.restart(inner, "on_demand")
  params = jnp.array([1.0, -1.0])
  state = optimizer.init(params)
  _, state = optimizer.update(params, state, params)
  state.inner_state.hyperparams["learning_rate"] = jnp.asarray(0.01)
  grads = [jnp.array([0.5, 2.0]), jnp.array([-1.0, 0.3])]
  ours = []
  for k, g in enumerate(grads):
    updates, state = optimizer.update(g, state, params, restart=k == 0)
    ours.append(updates)
  sgd = optax.sgd(0.01, 0.9, nesterov=True)
  sgd_state, expected = sgd.init(params), []
  for g in grads:
    updates, sgd_state = sgd.update(g, sgd_state, params)
    expected.append(updates)
  chex.assert_trees_all_close(ours, expected, rtol=1e-6)
  assert float(state.inner_state.hyperparams["learning_rate"]) == np.float32(0.01)


def test_a_requested_restart_clears_a_non_finite_buffer():
  """After a NaN gradient (the parameters rolled back by the caller), a
  restart asked for with restart=True starts from a clean buffer: the
  update is a fresh optimizer's first update."""
  optimizer = nagd.nagd(0.1, 0.9, restart="gradient")
  params = jnp.array([1.0, -2.0])
  state = optimizer.init(params)
  _, state = optimizer.update(jnp.array([jnp.nan, 1.0]), state, params)
  assert not np.all(np.isfinite(state[0].inner_state.trace))
  grads = jnp.array([0.5, -0.25])
  updates, state = optimizer.update(grads, state, params, restart=True)
  fresh = nagd.nagd(0.1, 0.9)
  expected, _ = fresh.update(grads, fresh.init(params), params)
  np.testing.assert_array_equal(updates, expected)
  assert np.all(np.isfinite(state[0].inner_state.trace))


# ----------------------------------------------------------------------------
# The scalar bookkeeping: one kernel on CPU, no derivative lost.


@pytest.mark.parametrize("criterion", ["loss", "gradient", "speed",
                                       "interval", "on_demand"])
def test_scalar_bookkeeping_is_one_kernel_per_side_of_the_update(criterion):
  """On CPU the criterion's test, the decision and the counters compile as
  one kernel before the update and one after it (a while loop that XLA:CPU
  hoists into a single kernel, marked xla_cpu_small_call), not a kernel
  per result."""
  if jax.default_backend() != "cpu":
    pytest.skip("XLA:CPU's small-loop kernels")
  kwargs = {"min_interval": 5} if criterion == "interval" else {}
  optimizer = nagd.nagd(0.1, 0.9, restart=criterion, **kwargs)
  params = {f"w{i}": jnp.ones((64, 64)) for i in range(8)}
  params["b"] = jnp.ones(5)

  def step(p, s, g):
    u, s = optimizer.update(g, s, p, value=1.0)
    return optax.apply_updates(p, u), s

  text = jax.jit(step).lower(params, optimizer.init(params),
                             params).compile().as_text()
  after = nagd.criteria._shorthands.resolve(criterion, **kwargs).after_update
  assert text.count('xla_cpu_small_call="true"') == (
      1 if after is None else 2)
  assert " while(" not in text.split("ENTRY", 1)[1]


@pytest.mark.parametrize("criterion", ["loss", "gradient", "speed"])
def test_updates_differentiate_through_a_restart(criterion):
  """Reverse-mode derivatives pass the restart, whose bookkeeping is held
  out of differentiation. From a fresh state the update is
  u = -lr (1 + mu) g and the new buffer m = g, so the derivative of
  sum(u) + sum(m) + (the criterion's float statistics) by g is
  -lr (1 + mu) + 1 everywhere, and by the loss passed as value= it is 0
  (the statistics carry no derivative)."""
  lr, mu = 0.1, 0.9
  optimizer = nagd.nagd(lr, mu, restart=criterion)
  params = {"w": jnp.ones((30, 40)), "b": jnp.ones(3)}
  state = optimizer.init(params)

  def total(grads, value):
    updates, new_state = optimizer.update(grads, state, params, value=value)
    floats = [x for x in jax.tree.leaves((updates, new_state))
              if jnp.issubdtype(x.dtype, jnp.floating)]
    statistics = len(floats) - 2 * len(jax.tree.leaves(params))
    assert statistics > 0 if criterion != "gradient" else statistics == 0
    return sum(jnp.sum(x) for x in floats)

  for fn in (jax.grad(total, argnums=(0, 1)),
             jax.jit(jax.grad(total, argnums=(0, 1)))):
    d_grads, d_value = fn(jax.tree.map(lambda p: 0.5 * p, params), 2.0)
    for leaf in jax.tree.leaves(d_grads):
      np.testing.assert_allclose(leaf, 1 - lr * (1 + mu), rtol=1e-6)
    assert float(d_value) == 0.0


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
def test_a_criterion_restart_resets_a_buffer_without_gradient(jit):
  """A restart resets the whole inner state: a parameter without a
  gradient on the step a restart takes effect has its buffer zeroed, and
  its next update is a first step's, (1 + mu) g."""
  mu = 0.9
  optimizer = nagd.restart(nagd.nesterov_trace(mu), nagd.criteria.every(2))
  params = {"a": jnp.ones(3), "b": jnp.ones(2)}
  state = optimizer.init(params)
  update = jax.jit(optimizer.update) if jit else optimizer.update
  for _ in range(2):
    _, state = update(params, state, params)
  np.testing.assert_allclose(state.inner_state.trace["b"], 1 + mu,
                             rtol=1e-7)  # m = g + mu g
  _, state = update({"a": jnp.ones(3), "b": None}, state, params)
  assert int(state.restarts) == 1
  np.testing.assert_array_equal(state.inner_state.trace["b"], 0.0)
  updates, _ = update(params, state, params)
  np.testing.assert_allclose(updates["b"], 1 + mu, rtol=1e-7)


def _uphill_on(inner_product):
  """A custom criterion: restart when the step points uphill (O'Donoghue
  and Candes' gradient scheme), <g, d> < 0 for the trace's output d (the
  step is -lr d), its inner product taken by ``inner_product(info)``."""

  def after_update(state, info):
    return inner_product(info) < 0, state

  return nagd.criteria.Criterion(
      init=nagd.criteria._protocol.no_state, after_update=after_update)


def _changing_products():
  calls = []

  def products(info):
    calls.append(None)  # one more inner product at each trace
    taken = [info.inner_product(info.gradients, info.updates)
             for _ in range(len(calls))]
    return taken[-1]

  return products


def _other_arrays_when_retraced():
  calls = []

  def products(info):
    calls.append(None)  # <g, g> when first traced, <g, d> after
    other = info.gradients if len(calls) % 3 == 1 else info.updates
    return info.inner_product(info.gradients, other)

  return products


_INNER_PRODUCTS_TAKEN = {
    "directly": lambda: lambda info: info.inner_product(
        info.gradients, info.updates),
    "under jax.checkpoint": lambda: lambda info: jax.checkpoint(
        info.inner_product)(info.gradients, info.updates),
    "under lax.cond": lambda: lambda info: jax.lax.cond(
        info.steps >= 0,
        lambda: info.inner_product(info.gradients, info.updates),
        lambda: jnp.zeros([], jnp.float32)),
    "under vmap": lambda: lambda info: jax.vmap(
        lambda s: info.inner_product(
            info.gradients, jax.tree.map(lambda u: s * u, info.updates))
    )(jnp.array([1.0, 2.0]))[0],
    "under jit": lambda: lambda info: jax.jit(
        nagd.criteria.tree_inner_product)(info.gradients, info.updates),
    "differently on each trace": _changing_products,
    "of other arrays when retraced": _other_arrays_when_retraced,
}


@pytest.mark.parametrize("taken", list(_INNER_PRODUCTS_TAKEN))
@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
def test_a_custom_criterion_restarts_however_it_takes_its_inner_products(
    taken, jit):
  """The wrapper traces after_update twice to compile its test with the
  counters; where the inner products cannot be replayed (taken inside a
  nested transformation, or different on retracing) it calls the criterion
  once as it is. Either way the iterates and the restarts are those of a
  NumPy loop of Nesterov's method with the gradient restart on an
  ill-conditioned quadratic."""
  lr, mu, steps = 0.01, 0.95, 60
  scales = np.array([1.0, 10.0, 100.0])
  x0 = np.array([1.0, -2.0, 3.0])

  x, m, pending, restarts = x0.copy(), np.zeros(3), False, []
  for k in range(steps):
    g = scales * x
    if pending:
      m = np.zeros(3)
    m = g + mu * m
    u = -lr * (g + mu * m)
    pending = float(g @ u) > 0
    if pending:
      restarts.append(k + 1)  # counted when the next update starts fresh
    x = x + u
  assert 2 <= len(restarts) < steps // 2

  optimizer = optax.chain(
      nagd.restart(nagd.nesterov_trace(mu),
                   _uphill_on(_INNER_PRODUCTS_TAKEN[taken]())),
      optax.scale(-lr))

  def step(params, state):
    updates, state = optimizer.update(scales * params, state, params)
    return optax.apply_updates(params, updates), state

  params = jnp.asarray(x0, jnp.float32)
  state = optimizer.init(params)
  if jit:
    step = jax.jit(step)
    if jax.default_backend() == "cpu":
      # Replayed, the test runs in the small kernel after the update; where
      # it cannot be, the criterion is called as it is (no such kernel).
      text = step.lower(params, state).compile().as_text()
      assert text.count('xla_cpu_small_call="true"') == (
          2 if taken == "directly" else 1)
  counted = []
  for k in range(steps):
    before = int(state[0].restarts)
    params, state = step(params, state)
    if int(state[0].restarts) > before:
      counted.append(k)
  assert counted == [k for k in restarts if k < steps]
  np.testing.assert_allclose(params, x, rtol=1e-4, atol=1e-6)
