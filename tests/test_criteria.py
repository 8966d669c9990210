"""Criterion objects: the protocol, a criterion of one's own, the period."""

import json
import math
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nagd_optax as nagd


def held_out_rises():
  """The docs' example: restart when a held-out loss, passed to update as
  an extra keyword argument, rises above its lowest value so far."""

  def before_update(lowest, info):
    loss = info.extra_args["held_out_loss"]
    return loss > lowest, jnp.minimum(lowest, loss)

  return nagd.criteria.Criterion(
      init=lambda params: jnp.asarray(jnp.inf), before_update=before_update
  )


def _held_out_rule(losses):
  """The same rule in plain Python: the updates that restart."""
  lowest, steps = math.inf, []
  for k, loss in enumerate(losses):
    if loss > lowest:
      steps.append(k)
    lowest = min(lowest, loss)
  return steps


def test_a_criterion_of_ones_own_restarts_where_its_rule_says():
  losses = [3.0, 2.0, 2.5, 1.0, 1.0, 1.5, 0.5, 0.7]
  optimizer = nagd.nagd(0.1, 0.9, restart=held_out_rises())
  params = jnp.ones(3)

  @jax.jit
  def step(state, held_out):
    return optimizer.update(params, state, params, held_out_loss=held_out)[1]

  state, restarted = optimizer.init(params), []
  for k, loss in enumerate(losses):
    before = int(state[0].restarts)
    state = step(state, loss)
    if int(state[0].restarts) > before:
      restarted.append(k)
  assert restarted == _held_out_rule(losses) == [2, 5, 7]


def test_a_restart_by_ones_own_criterion_is_a_fresh_start():
  """The update that restarts equals the first update of a fresh nagd."""
  optimizer = nagd.nagd(0.1, 0.9, restart=held_out_rises())
  plain = nagd.nagd(0.1, 0.9)
  params = jnp.array([1.0, -2.0])
  state = optimizer.init(params)
  for loss in (1.0, 0.5):
    _, state = optimizer.update(params, state, params, held_out_loss=loss)
  updates, _ = optimizer.update(2 * params, state, params, held_out_loss=0.9)
  expected, _ = plain.update(2 * params, plain.init(params), params)
  chex.assert_trees_all_close(updates, expected)


@pytest.mark.parametrize("reads_updates", [True, False])
def test_a_criterion_sees_the_update_only_if_it_reads_it(reads_updates):
  seen = []

  def after_update(state, info):
    seen.append(info.updates)
    return jnp.asarray(False), state

  criterion = nagd.criteria.Criterion(
      init=lambda params: optax.EmptyState(), after_update=after_update,
      reads_updates=reads_updates)
  optimizer = nagd.nagd(0.1, 0.5, restart=criterion)
  params = jnp.array([1.0, -2.0])
  state = optimizer.init(params)
  _, state = optimizer.update(params, state, params)
  updates, _ = optimizer.update(params, state, params)
  if reads_updates:
    # u_1 = g + mu (mu g + g) with g = params, in the learning rate's units.
    np.testing.assert_allclose(seen[-1], params * (1 + 0.5 * 1.5))
    np.testing.assert_allclose(updates, -0.1 * seen[-1], rtol=1e-6)
  else:
    assert seen[-1] is None


def test_shorthand_options_are_refused_with_a_criterion_object():
  with pytest.raises(ValueError, match="criteria.loss"):
    nagd.restart(nagd.nesterov_trace(), nagd.criteria.loss(),
                 loss_smoothing=0.9)
  with pytest.raises(ValueError, match="min_interval"):
    nagd.nagd(0.1, restart=nagd.criteria.gradient(), min_interval=3)


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: nagd.criteria.loss(1.0), "smoothing"),
        (lambda: nagd.criteria.loss(noise_tolerance=-1.0), "noise_tolerance"),
        (lambda: nagd.criteria.loss(min_interval=-1), "min_interval"),
        (lambda: nagd.criteria.gradient(min_interval=1.5), "min_interval"),
        (lambda: nagd.criteria.speed(measure="x"), "measure"),
        (lambda: nagd.criteria.every(0), "period"),
    ],
)
def test_bad_criterion_arguments_raise_naming_them(make, name):
  with pytest.raises(ValueError, match=name):
    make()


def test_the_shorthands_are_the_criteria():
  """restart="speed" and criteria.speed() give the same state structure and
  the same updates."""
  params = jnp.linspace(-1.0, 1.0, 5)
  for name, criterion in [
      ("loss", nagd.criteria.loss()),
      ("gradient", nagd.criteria.gradient()),
      ("speed", nagd.criteria.speed()),
      ("on_demand", nagd.criteria.on_demand()),
  ]:
    by_name = nagd.nagd(0.1, 0.9, restart=name)
    by_object = nagd.nagd(0.1, 0.9, restart=criterion)
    a, b = by_name.init(params), by_object.init(params)
    chex.assert_trees_all_equal_structs(a, b)
    for k in range(12):
      grads = jnp.cos(params * k)
      ua, a = by_name.update(grads, a, params, value=float(np.cos(k)))
      ub, b = by_object.update(grads, b, params, value=float(np.cos(k)))
      chex.assert_trees_all_equal(ua, ub)
    chex.assert_trees_all_equal(a, b)


def _every_rule(period, updates):
  """Scheduled restart in plain Python: the run containing update t ends
  once it is round(period(t)) updates long; returns the updates that start
  from a fresh state (restarts)."""
  restarted, length = [], 0
  for t in range(updates):
    if length > 0 and length >= restart_length:
      restarted.append(t)
      length = 0
    length += 1
    restart_length = max(round(period(t)), 1)
  return restarted


@pytest.mark.parametrize(
    "period",
    [
        3,
        optax.piecewise_constant_schedule(2, {7: 2.0, 20: 1.5}),  # 2, 4, 6
    ],
)
def test_every_restarts_on_its_period(period):
  optimizer = nagd.nagd(0.1, nagd.schedules.nesterov_momentum(),
                        restart=nagd.criteria.every(period))
  params = jnp.ones(2)

  @jax.jit
  def step(state):
    return optimizer.update(params, state, params)[1]

  state, restarted = optimizer.init(params), []
  for t in range(40):
    before = int(state[0].restarts)
    state = step(state)
    if int(state[0].restarts) > before:
      restarted.append(t)
  as_function = period if callable(period) else (lambda t: period)
  assert restarted == _every_rule(lambda t: float(as_function(t)), 40)


# ----------------------------------------------------------------------------
# SRSGD: the authors' optimizer, restated in PyTorch and stored as a fixture
# by tests/fixtures/make_srsgd_trajectories.py.

SRSGD_FIXTURE = pathlib.Path(__file__).parent / "fixtures" / (
    "srsgd_trajectories.npz"
)


def _srsgd_setting():
  fixture = np.load(SRSGD_FIXTURE)
  settings = json.loads(str(fixture["settings"]))
  (drop_epoch,) = settings["schedule"]
  drop = drop_epoch * settings["steps_per_epoch"]
  learning_rate = optax.piecewise_constant_schedule(
      settings["lr"], {drop: settings["gamma"]}
  )
  # The authors' restarting_iter R restarts every R - 1 updates.
  first, second = (r - 1 for r in settings["restart_schedule"])
  period = optax.piecewise_constant_schedule(first, {drop: second / first})
  return fixture, settings, drop, learning_rate, period


def _srsgd(learning_rate, period, weight_decay):
  """SRSGD as a chain: coupled decay, then the learning rate, then the
  restarted Nesterov trace, so that the momentum carries the step it was
  built with across a learning-rate drop (the authors' two-sequence form),
  rather than being rescaled by it (the buffer form of torch.optim.SGD)."""
  return optax.chain(
      optax.add_decayed_weights(weight_decay),
      optax.scale_by_learning_rate(learning_rate),
      nagd.restart(
          nagd.nesterov_trace(nagd.schedules.nesterov_momentum()),
          nagd.criteria.every(period),
      ),
  )


def _srsgd_run(optimizer, fixture, state_at=None):
  """Runs the fixture's minibatches; ``state_at(step, params, state)`` may
  replace the state before a step."""
  features = jnp.asarray(fixture["features"])
  targets = jnp.asarray(fixture["targets"])

  def loss(x, batch):
    return 0.5 * jnp.mean((features[batch] @ x - targets[batch]) ** 2)

  @jax.jit
  def step(x, state, batch):
    updates, state = optimizer.update(jax.grad(loss)(x, batch), state, x)
    return optax.apply_updates(x, updates), state

  x = jnp.asarray(fixture["x0"])
  state, trajectory = optimizer.init(x), [x]
  for k, batch in enumerate(fixture["batch_indices"]):
    if state_at is not None:
      state = state_at(k, x, state)
    x, state = step(x, state, batch)
    trajectory.append(x)
  return np.stack(trajectory), state


def test_srsgd_authors_optimizer_across_a_learning_rate_drop(x64):
  """One SRSGD optimizer whose lr and restarting_iter change at the drop."""
  fixture, settings, _, learning_rate, period = _srsgd_setting()
  trajectory, state = _srsgd_run(
      _srsgd(learning_rate, period, settings["weight_decay"]), fixture
  )
  expected = fixture["same_optimizer/params"]
  np.testing.assert_allclose(trajectory, expected, rtol=1e-10, atol=1e-12)
  restarts = np.sum(fixture["same_optimizer/iter_count"][1:] == 1)
  assert int(optax.tree.get(state, "restarts")) == restarts > 0


def test_srsgd_authors_training_script(x64):
  """The authors' script builds a new SRSGD at each drop, carrying the
  counter over but not the momentum: the same chain, given at the drop a
  fresh state whose counts carry on."""
  fixture, settings, drop, learning_rate, period = _srsgd_setting()
  optimizer = _srsgd(learning_rate, period, settings["weight_decay"])

  def rebuilt_at_the_drop(step, params, state):
    if step != drop:
      return state
    fresh = optimizer.init(params)
    restart = fresh[2]._replace(
        steps_since_restart=state[2].steps_since_restart,
        restarts=state[2].restarts,
        criterion_state=state[2].criterion_state,
        inner_state=fresh[2].inner_state._replace(
            count=state[2].inner_state.count
        ),
    )
    return (fresh[0], state[1], restart)

  trajectory, _ = _srsgd_run(optimizer, fixture, rebuilt_at_the_drop)
  np.testing.assert_allclose(trajectory, fixture["script/params"],
                             rtol=1e-10, atol=1e-12)
  # Before the drop both runs are the same optimizer.
  np.testing.assert_array_equal(fixture["script/params"][: drop + 1],
                                fixture["same_optimizer/params"][: drop + 1])


def test_tree_inner_product_against_numpy():
  """Large, small and bfloat16 leaves, more small leaves than are gathered
  into one reduction, None and masked leaves: the sum of the leaves' inner
  products, as NumPy computes it in float64."""
  key = jax.random.PRNGKey(3)
  keys = iter(jax.random.split(key, 64))
  a = {"large": jax.random.normal(next(keys), (90, 80)),
       "bias": jax.random.normal(next(keys), (7,)),
       "bf16": jax.random.normal(next(keys), (5000,)).astype(jnp.bfloat16),
       "none": None,
       "masked": jnp.ones(3)}
  a.update({f"small{i:02d}": jax.random.normal(next(keys), (4096,))
            for i in range(20)})
  b = jax.tree.map(lambda x: None if x is None else 0.3 - 2 * x, a,
                   is_leaf=lambda x: x is None)
  b["masked"] = optax.MaskedNode()
  as_numpy = lambda x: np.asarray(x, np.float64)
  expected = sum(float(np.sum(as_numpy(a[k]) * as_numpy(b[k])))
                 for k in a if k not in ("none", "masked"))
  squared = sum(float(np.sum(as_numpy(a[k]) ** 2))
                for k in a if k != "none")
  product = jax.jit(nagd.criteria.tree_inner_product)(a, b)
  norm = jax.jit(lambda a: nagd.criteria.tree_inner_product(a, a))(a)
  np.testing.assert_allclose(float(product), expected, rtol=1e-5)
  np.testing.assert_allclose(float(norm), squared, rtol=1e-5)


def test_tree_inner_product_of_one_array_in_two_precisions(x64):
  """One array paired with a float16 leaf (accumulated in float32) and
  with a float64 leaf (accumulated in float64): each product in its own
  precision, as NumPy computes them."""
  w = jnp.linspace(0.1, 1.0, 5000, dtype=jnp.float64)
  # The float16 pair small, so that its float32 rounding stays below the
  # tolerance, which float32 rounding of the float64 pair would exceed.
  z = (1e-3 * jnp.linspace(-1.0, 1.0, 5000)).astype(jnp.float16)
  product = nagd.criteria.tree_inner_product({"r": z, "s": w},
                                             {"r": w, "s": w})
  assert product.dtype == jnp.float64
  wide_w = np.asarray(w)
  expected = (np.sum(np.asarray(z, np.float32) * wide_w.astype(np.float32),
                     dtype=np.float64)
              + np.sum(wide_w * wide_w))
  np.testing.assert_allclose(float(product), expected, rtol=1e-9)


@pytest.mark.parametrize("count", [3, 130])
def test_recorded_inner_products_replay_as_their_sums(count):
  """What the restart does with a criterion (record its inner products,
  then replay them to its test): the replayed value is the inner product
  as NumPy computes it in float64, with few large leaves and with more
  than are handed over one by one (130 > 128: summed first)."""
  rng = np.random.default_rng(5)
  a = {f"w{i:03d}": jnp.asarray(rng.normal(size=4097), jnp.float32)
       for i in range(count)}
  a["small"] = jnp.asarray(rng.normal(size=30), jnp.float32)
  b = {k: 0.5 - 2 * v for k, v in a.items()}

  @jax.jit
  def replayed(a, b):
    with nagd.criteria._protocol.recorded_reductions() as recording:
      nagd.criteria.tree_inner_product(a, b)
    with nagd.criteria._protocol.replayed_reductions(recording.values,
                                                     recording.operands):
      return nagd.criteria.tree_inner_product(a, b), recording.values

  value, recorded = replayed(a, b)
  (across, local), = recorded
  assert across is None and local.shape == ((count + 1,) if count <= 128
                                            else (1,))
  expected = sum(float(np.sum(np.asarray(a[k], np.float64)
                              * np.asarray(b[k], np.float64))) for k in a)
  np.testing.assert_allclose(float(value), expected, rtol=1e-5)


def _special_values(dtype, size: int, seed: int) -> np.ndarray:
  """``size`` numbers of ``dtype``: random bit patterns (NaNs with payloads,
  infinities and subnormals among them) after the edge cases spelled out."""
  finfo = np.finfo(dtype)
  edges = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1.0, -1.0,
                    finfo.max, -finfo.max, finfo.tiny, -finfo.tiny,
                    finfo.smallest_subnormal, -finfo.smallest_subnormal],
                   dtype)
  bits = np.uint32 if dtype == np.float32 else np.uint64
  rng = np.random.default_rng(seed)
  random = rng.integers(0, np.iinfo(bits).max, size - edges.size,
                        dtype=bits, endpoint=True).view(dtype)
  # A NaN with a payload, in both signs.
  payload = np.array([0x7FC01234, 0xFFC04321] if dtype == np.float32
                     else [0x7FF8000000001234, 0xFFF8000000004321], bits)
  return np.concatenate([edges, payload.view(dtype), random])[:size]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_released_update_is_the_same_numbers_bit_for_bit(dtype, x64):
  """``_protocol.released`` multiplies each large leaf by a 1.0 computed
  from its inner product, so that XLA:CPU updates it after the reduction.
  Whatever the product (here NaN, infinite or zero too), the leaves come
  back bit for bit (x * 1.0 = x); bfloat16, complex and small leaves
  untouched."""
  from nagd_optax.criteria import _protocol
  np_dtype = np.dtype(dtype)
  bits = np.uint32 if np_dtype == np.float32 else np.uint64
  a = {"large": jnp.asarray(_special_values(np_dtype, 6000, 0)),
       "finite": jnp.asarray(np.linspace(-3, 3, 5000, dtype=np_dtype)),
       "bf16": jnp.linspace(-1, 1, 5000).astype(jnp.bfloat16),
       "complex": jnp.linspace(-1, 1, 5000) * (1 + 2j),
       "small": jnp.asarray(_special_values(np_dtype, 30, 1)),
       "none": None}
  b = jax.tree.map(lambda x: None if x is None else x * 0.5 + 1, a,
                   is_leaf=lambda x: x is None)

  @jax.jit
  def released(a, b):
    with _protocol.recorded_reductions() as recording:
      product = nagd.criteria.tree_inner_product(a, b)
    return _protocol.released(a, recording), product

  out, product = released(a, b)
  assert np.isnan(float(product))  # the large leaf holds NaNs
  assert out["none"] is None
  for name in ("large", "finite", "small"):
    np.testing.assert_array_equal(np.asarray(out[name]).view(bits),
                                  np.asarray(a[name]).view(bits))
  np.testing.assert_array_equal(np.asarray(out["bf16"]).view(np.uint16),
                                np.asarray(a["bf16"]).view(np.uint16))
  np.testing.assert_array_equal(np.asarray(out["complex"]),
                                np.asarray(a["complex"]))


def _update_kernels(compiled_text: str, shape: str) -> list[list[str]]:
  """The operand shapes of each fusion in the compiled entry computation
  that computes a ``shape`` array (the parameter and momentum updates)."""
  entry = compiled_text[compiled_text.index("\nENTRY"):].splitlines()
  shapes, kernels = {}, []
  for line in (line.strip() for line in entry):
    if not line.startswith("%") or " = " not in line:
      continue
    name, rest = line.split(" = ", 1)
    shapes[name] = rest.split(" ")[0]
    if rest.startswith(shape) and " fusion(" in rest:
      kernels.append(rest.split(" fusion(")[1].split(")")[0].split(", "))
  return [[shapes.get(operand.strip()) for operand in operands]
          for operands in kernels]


@pytest.mark.parametrize("restart", ["gradient", "speed"])
def test_a_large_leaf_is_updated_after_its_reduction(restart):
  """On XLA:CPU the runtime runs kernels side by side as soon as what they
  read is written: the parameter update has to read the reduction's
  result to wait for it. In the compiled step (learning rate and momentum
  constants) the update kernel of each large leaf takes a scalar operand,
  the reduction's; without the release it reads only arrays."""
  params = {"w": jnp.ones(6000), "v": jnp.ones((100, 70)),
            "b": jnp.ones(10)}
  optimizer = nagd.nagd(0.1, 0.9, restart=restart)

  def step(params, state, grads):
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  text = jax.jit(step, donate_argnums=(0, 1)).lower(
      params, optimizer.init(params), params).compile().as_text()
  for shape in ("f32[6000]", "f32[100,70]"):
    kernels = _update_kernels(text, shape)
    assert any("f32[]" in operand_shapes for operand_shapes in kernels), (
        kernels)


def test_derivatives_pass_through_a_released_update():
  """The factor 1.0 is a constant to derivatives: under jit the update of a
  large leaf with restart="gradient" has, at the first step (m = 0),
  d u / d g = -lr (1 + mu) (u = -lr (g + mu (g + mu m))), forward and
  reverse."""
  lr, mu = 0.1, 0.9
  optimizer = nagd.nagd(lr, mu, restart="gradient")
  params = {"w": jnp.ones(6000)}
  state = optimizer.init(params)
  grads = {"w": jnp.linspace(-1.0, 1.0, 6000)}
  update = jax.jit(lambda g: optimizer.update(g, state, params)[0])
  _, tangent = jax.jvp(update, (grads,), (jax.tree.map(jnp.ones_like, grads),))
  np.testing.assert_allclose(np.asarray(tangent["w"]), -lr * (1 + mu),
                             rtol=1e-6)
  cotangent = jax.grad(lambda g: jnp.sum(update(g)["w"]))(grads)
  np.testing.assert_allclose(np.asarray(cotangent["w"]), -lr * (1 + mu),
                             rtol=1e-6)


def _small_tree(seed):
  keys = jax.random.split(jax.random.PRNGKey(seed), 4)
  return {"a": jax.random.normal(keys[0], (30,)),
          "b": jax.random.normal(keys[1], (4, 5)),
          "c": jax.random.normal(keys[2], (7,)),
          "big": jax.random.normal(keys[3], (5000,))}


def test_small_leaves_split_together_are_reduced_as_their_array():
  """Within split_leaves_remembered, the inner product of leaves that
  elementwise_map computed together is taken on the array they were split
  from: the same value as NumPy's (float64) sum, and no slice is left in
  the lowered program; without the context each small leaf is sliced."""
  from nagd_optax.criteria import _protocol
  g, m = _small_tree(0), _small_tree(1)
  fn = lambda x, y: x - (-0.9) * y

  def norm_and_product(g, m, remembered):
    def compute():
      u = _protocol.elementwise_map(fn, g, m)
      return (nagd.criteria.tree_inner_product(u, u),
              nagd.criteria.tree_inner_product(u, m))
    if not remembered:
      return compute()
    with _protocol.split_leaves_remembered():
      return compute()

  u = {k: np.asarray(g[k], np.float64) + 0.9 * np.asarray(m[k], np.float64)
       for k in g}
  expected = (sum(np.sum(u[k] ** 2) for k in u),
              sum(np.sum(u[k] * np.asarray(m[k], np.float64)) for k in u))
  for remembered in (True, False):
    got = jax.jit(lambda g, m: norm_and_product(g, m, remembered))(g, m)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)
  slices = [jax.jit(lambda g, m: norm_and_product(g, m, remembered)).lower(
      g, m).as_text().count("stablehlo.slice") for remembered in (True, False)]
  assert slices == [0, 3], slices


def test_leaves_split_otherwise_are_gathered_anew():
  """Small leaves gathered in another order, or only some of them, are
  concatenated anew (the array they were split from is not all of them, in
  that order): the values are NumPy's."""
  from nagd_optax.criteria import _protocol
  g, m = _small_tree(2), _small_tree(3)
  fn = lambda x, y: x * y

  def products(g, m):
    with _protocol.split_leaves_remembered():
      u = _protocol.elementwise_map(fn, g, m)
      # Flattened in key order: b, c, a.
      reordered = {"z": u["a"], "y": u["c"], "x": u["b"]}
      against = {"z": m["a"], "y": m["c"], "x": m["b"]}
      some = {"a": u["a"], "c": u["c"]}
      return (nagd.criteria.tree_inner_product(reordered, against),
              nagd.criteria.tree_inner_product(some, some))

  u = {k: np.asarray(g[k], np.float64) * np.asarray(m[k], np.float64)
       for k in g}
  expected = (sum(np.sum(u[k] * np.asarray(m[k], np.float64)) for k in "abc"),
              sum(np.sum(u[k] ** 2) for k in "ac"))
  np.testing.assert_allclose(np.asarray(jax.jit(products)(g, m)), expected,
                             rtol=1e-5)


def test_the_speed_step_slices_no_small_leaf():
  """restart="speed" reduces the small leaves of its recomputed update as
  the array they were computed in: the lowered step holds no slice (JAX
  lowers each one as a function of its own; 98 on a GPT-like tree)."""
  params = {f"bias{i}": jnp.ones(64) for i in range(12)}
  params["w"] = jnp.ones(6000)
  optimizer = nagd.nagd(0.1, 0.9, restart="speed")

  def step(params, state, grads):
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  text = jax.jit(step).lower(params, optimizer.init(params),
                             params).as_text()
  assert "stablehlo.slice" not in text
