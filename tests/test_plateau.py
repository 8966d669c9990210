"""scale_on_plateau: the plateau rule, noise, negative losses, composition."""

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


def _plateau_rule(values, factor=0.5, patience=3, cooldown=0, rtol=1e-4,
                  atol=0.0, min_scale=0.0):
  """The rule in plain Python (no smoothing): the scale after each update."""
  best, count, cool, scale, scales = math.inf, 0, 0, 1.0, []
  for value in values:
    if math.isfinite(value):
      improved = not math.isfinite(best) or value < best - (
          rtol * abs(best) + atol
      )
      if improved:
        best = value
      count = 0 if improved or cool > 0 else count + 1
      cool = max(cool - 1, 0)
      if count >= patience and scale > min_scale:
        scale, count, cool = max(scale * factor, min_scale), 0, cooldown
    scales.append(scale)
  return scales


def _scales(optimizer, values):
  params = jnp.zeros(2)
  state = optimizer.init(params)
  scales = []
  for value in values:
    _, state = optimizer.update(params, state, value=value)
    scales.append(float(state.scale))
  return scales, state


def test_a_flat_negative_loss_is_a_plateau():
  """Optax's multiplicative test never fires for a flat loss of -1."""
  scales, state = _scales(nagd.scale_on_plateau(0.5, patience=5), [-1.0] * 12)
  assert scales == [1.0] * 5 + [0.5] * 5 + [0.25] * 2
  assert scales == _plateau_rule([-1.0] * 12, patience=5)
  assert float(optax.tree.get(state, "scale")) == 0.25


@hypothesis.settings(max_examples=40, deadline=None, derandomize=True)
@hypothesis.given(
    values=st.lists(
        st.one_of(
            # XLA:CPU flushes subnormals to zero; Python compares them.
            st.floats(-5, 5, width=32, allow_subnormal=False),
            st.sampled_from([math.nan, math.inf]),
        ),
        min_size=1,
        max_size=30,
    ),
    patience=st.integers(1, 4),
    cooldown=st.integers(0, 3),
    min_scale=st.sampled_from([0.0, 0.3]),
)
def test_rule_matches_plain_python(values, patience, cooldown, min_scale):
  optimizer = nagd.scale_on_plateau(
      0.5, patience=patience, cooldown=cooldown, min_scale=min_scale, rtol=0.0
  )
  scales, _ = _scales(optimizer, values)
  expected = _plateau_rule(values, patience=patience, cooldown=cooldown,
                           rtol=0.0, min_scale=min_scale)
  np.testing.assert_allclose(scales, expected)


def test_scale_untouched_while_the_loss_falls():
  values = list(np.geomspace(10.0, 1e-3, 200)) + list(-np.arange(200.0))
  scales, _ = _scales(nagd.scale_on_plateau(0.5, patience=1), values)
  assert scales == [1.0] * 400


@pytest.mark.parametrize(
    "values, patience, smoothing",
    [
        (100.0 - 0.01 * np.arange(1000), 10, 0.98),  # slow linear fall
        (100.0 - 0.1 * np.arange(1000), 8, 0.98),
        (10.0 * np.exp(-np.arange(1000) / 500), 5, 0.9),  # exponential decay
        (1.0 + 10.0 * np.exp(-np.arange(1000) / 300), 10, 0.98),
    ],
)
def test_smoothed_scale_untouched_while_a_clean_loss_falls(values, patience,
                                                           smoothing):
  """A trend is not noise: a steadily falling loss must never look flat,
  whatever its slope against the patience."""
  assert _first_lowering(values, patience=patience,
                         loss_smoothing=smoothing) is None


def test_updates_are_scaled():
  optimizer = nagd.scale_on_plateau(0.1, patience=1)
  grads = {"a": jnp.ones(3), "b": jnp.full(2, -2.0, jnp.bfloat16)}
  state = optimizer.init(grads)
  _, state = optimizer.update(grads, state, value=1.0)
  updates, state = optimizer.update(grads, state, value=1.0)  # no improvement
  chex.assert_trees_all_close(updates, jax.tree.map(lambda g: 0.1 * g, grads))
  chex.assert_trees_all_equal_dtypes(updates, grads)


def test_non_finite_losses_are_ignored():
  values = [1.0, math.nan, math.inf, 0.5, math.nan, 0.4]
  scales, state = _scales(nagd.scale_on_plateau(0.5, patience=1), values)
  assert scales == [1.0] * 6
  assert float(state.best) == pytest.approx(0.4)


def _noisy(trend, seed):
  k = np.arange(2000)
  noise = 0.3 * np.random.default_rng(seed).standard_normal(2000)
  return {"falling": 10.0 - 0.005 * k, "flat": np.full(2000, 5.0)}[trend] + noise


def _first_lowering(values, **kwargs):
  optimizer = nagd.scale_on_plateau(0.5, **kwargs)
  params = jnp.zeros(2)

  @jax.jit
  def run(values):
    def step(state, value):
      state = optimizer.update(params, state, value=value)[1]
      return state, state.scale

    return jax.lax.scan(step, optimizer.init(params), values)[1]

  scales = np.asarray(run(jnp.asarray(values, jnp.float32)))
  lowered = np.nonzero(scales < 1.0)[0]
  return int(lowered[0]) if lowered.size else None


@pytest.mark.parametrize("seed", range(4))
def test_tells_noise_from_a_plateau(seed):
  """Noise std 0.3, patience 50, loss_smoothing 0.98: a steadily falling loss
  keeps the scale; an equally noisy flat loss lowers it."""
  kwargs = dict(patience=50, loss_smoothing=0.98)
  assert _first_lowering(_noisy("falling", seed), **kwargs) is None
  flat = _first_lowering(_noisy("flat", seed), **kwargs)
  assert flat is not None and flat < 300
  # Without smoothing the noise alone looks like a plateau.
  assert _first_lowering(_noisy("falling", seed), patience=50) is not None


def test_cooldown_and_min_scale():
  optimizer = nagd.scale_on_plateau(0.5, patience=2, cooldown=3, min_scale=0.2)
  scales, _ = _scales(optimizer, [1.0] * 16)
  expected = _plateau_rule([1.0] * 16, patience=2, cooldown=3, min_scale=0.2)
  np.testing.assert_allclose(scales, expected, rtol=1e-6)
  # Patience 2 after the first loss, then 3 cooldown updates + patience 2.
  np.testing.assert_allclose(scales[:8], [1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25])
  assert min(scales) == pytest.approx(0.2)


def test_restart_momentum_restarts_the_inner_optimizer():
  inner = nagd.nagd(0.1, 0.9, restart="on_demand")
  optimizer = nagd.scale_on_plateau(
      0.5, patience=2, inner=inner, restart_momentum=True
  )
  params = jnp.array([1.0, -2.0])
  state = optimizer.init(params)
  grads = jnp.array([0.5, 0.25])
  for value in [3.0, 3.0]:
    updates, state = optimizer.update(grads, state, params, value=value)
  assert int(optax.tree.get(state, "restarts")) == 0
  updates, state = optimizer.update(grads, state, params, value=3.0)
  assert bool(state.lowered)
  assert int(optax.tree.get(state, "restarts")) == 1
  fresh, _ = inner.update(grads, inner.init(params), params)
  chex.assert_trees_all_close(updates, 0.5 * fresh)


def test_in_a_chain_with_nagd():
  optimizer = optax.chain(nagd.nagd(0.1, 0.9), nagd.scale_on_plateau(0.5))
  params = jnp.ones(3)
  state = optimizer.init(params)
  step = jax.jit(lambda p, s, v: optimizer.update(p, s, p, value=v))
  for value in [3.0, 2.0, 1.0]:
    updates, state = step(params, state, value)
  assert float(optax.tree.get(state, "scale")) == 1.0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(factor=1.0), "factor"),
        (dict(factor=0.0), "factor"),
        (dict(factor=-0.5), "factor"),
        (dict(patience=0), "patience"),
        (dict(patience=2.5), "patience"),
        (dict(cooldown=-1), "cooldown"),
        (dict(loss_smoothing=1.0), "loss_smoothing"),
        (dict(rtol=-1e-3), "rtol"),
        (dict(atol=math.nan), "atol"),
        (dict(min_scale=1.0), "min_scale"),
        (dict(restart_momentum=True), "inner"),
    ],
)
def test_nonsense_arguments_raise_naming_them(kwargs, name):
  with pytest.raises(ValueError, match=name):
    nagd.scale_on_plateau(**kwargs)


def test_restart_momentum_needs_a_restart_wrapper():
  optimizer = nagd.scale_on_plateau(inner=nagd.nagd(0.1), restart_momentum=True)
  with pytest.raises(ValueError, match="restart"):
    optimizer.init(jnp.ones(2))


def test_value_is_required_and_scalar():
  optimizer = nagd.scale_on_plateau()
  params = jnp.ones(2)
  state = optimizer.init(params)
  with pytest.raises(TypeError, match="value"):
    optimizer.update(params, state)
  with pytest.raises(ValueError, match="value"):
    optimizer.update(params, state, value=params)


def test_inject_hyperparams_keeps_the_state_dtypes_under_x64(x64):
  optimizer = optax.inject_hyperparams(nagd.scale_on_plateau)(factor=0.5,
                                                              patience=1)
  params = jnp.zeros(2)
  state = optimizer.init(params)

  def step(state, value):
    return optimizer.update(params, state, value=value)[1], None

  final, _ = jax.lax.scan(step, state, jnp.ones(5))
  chex.assert_trees_all_equal_shapes_and_dtypes(final, state)
  assert float(optax.tree.get(final, "scale")) == 0.5**4
