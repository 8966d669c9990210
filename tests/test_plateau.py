"""scale_on_plateau: the plateau rule, noise, negative losses, composition."""

import functools
import inspect
import json
import math
import pathlib

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


# Every numeric argument is passed, so that the traced pytree, and with it
# the compilation, is the same whichever ones a test sets.
_NUMERIC_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(
        nagd.scale_on_plateau).parameters.items()
    if type(parameter.default) in (int, float)
}


@jax.jit
def _run(values, hyperparams):
  """The scale after each update; the hyperparameters are traced, so one
  compilation serves every setting of the same shape."""
  optimizer = optax.inject_hyperparams(nagd.scale_on_plateau)(**hyperparams)
  params = jnp.zeros(2)

  def step(state, value):
    _, state = optimizer.update(params, state, value=value)
    return state, optax.tree.get(state, "scale")

  return jax.lax.scan(step, optimizer.init(params), values)[1]


# Every run is padded to this length, the longest the tests use.
_LENGTH = 2000


def _scales(values, **hyperparams):
  """Scales after each of ``values``, padded with NaN (which the rule
  ignores) to ``_LENGTH`` so that every run shares one compilation."""
  values = np.asarray(values, jnp.result_type(float))  # float64 with x64
  padded = np.full(_LENGTH, np.nan, values.dtype)
  padded[:values.size] = values
  scales = _run(jnp.asarray(padded), {**_NUMERIC_DEFAULTS, **hyperparams})
  return np.asarray(scales)[:values.size].tolist()


def test_a_flat_negative_loss_is_a_plateau():
  """Optax's multiplicative test never fires for a flat loss of -1."""
  scales = _scales([-1.0] * 12, patience=5)
  assert scales == [1.0] * 5 + [0.5] * 5 + [0.25] * 2
  assert scales == _plateau_rule([-1.0] * 12, patience=5)


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
  scales = _scales(values, patience=patience, cooldown=cooldown,
                   min_scale=min_scale, rtol=0.0)
  expected = _plateau_rule(values, patience=patience, cooldown=cooldown,
                           rtol=0.0, min_scale=min_scale)
  np.testing.assert_allclose(scales, expected)


def test_scale_untouched_while_the_loss_falls():
  values = list(np.geomspace(10.0, 1e-3, 200)) + list(-np.arange(200.0))
  assert _scales(values, patience=1) == [1.0] * 400


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


_TORCH = json.loads(
    (pathlib.Path(__file__).parent / "fixtures" / "torch_plateau_lrs.json")
    .read_text())


def _from_torch(kwargs, base_lr):
  """ReduceLROnPlateau(mode="min", **kwargs) in this library's arguments, as
  the docstring maps them (torch's defaults where kwargs omit one)."""
  threshold = kwargs.get("threshold", 1e-4)
  relative = kwargs.get("threshold_mode", "rel") == "rel"
  return dict(
      factor=kwargs.get("factor", 0.1),
      patience=kwargs.get("patience", 10) + 1,
      cooldown=kwargs.get("cooldown", 0),
      rtol=threshold if relative else 0.0,
      atol=0.0 if relative else threshold,
      min_scale=kwargs.get("min_lr", 0.0) / base_lr,
  )


def _torch_case(name, losses=None, **overrides):
  """(our learning rates, torch's), aligned: torch applies the lowering
  that a loss triggers from the next optimizer step, this transformation
  to the update that sees the loss."""
  case = _TORCH[name]
  losses = [math.nan if v is None else v for v in (losses or case["losses"])]
  arguments = {**_from_torch(case["kwargs"], case["base_lr"]), **overrides}
  ours = case["base_lr"] * np.asarray(_scales(losses, **arguments))
  return ours[:-1], np.asarray(case["lr_used"][1:])


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", ["rel", "abs", "cooldown_min_lr", "defaults"])
def test_matches_torch_reduce_lr_on_plateau(name):
  ours, torch = _torch_case(name)
  assert np.any(torch < _TORCH[name]["base_lr"])  # it does lower
  np.testing.assert_allclose(ours, torch, rtol=1e-12)


@pytest.mark.usefixtures("x64")
def test_torch_eps_is_a_floor_on_the_learning_rate():
  """Torch skips a lowering by no more than eps, so it stops at the first
  rate base * factor**n <= eps / (1 - factor); that is min_scale here."""
  case = _TORCH["eps"]
  base, factor, eps = case["base_lr"], 0.5, case["kwargs"]["eps"]
  n = math.ceil(math.log(eps / (1 - factor) / base, factor))
  ours, torch = _torch_case("eps", min_scale=factor**n)
  np.testing.assert_allclose(ours, torch, rtol=1e-12)
  assert torch.min() > eps  # the floor is torch's own, not a min_lr


@pytest.mark.usefixtures("x64")
def test_torch_counts_a_nan_loss_as_a_bad_epoch():
  losses = _TORCH["nan"]["losses"]
  ignored, torch = _torch_case("nan")
  assert np.any(ignored != torch)  # here a NaN loss is ignored
  bad = [1e30 if value is None else value for value in losses]
  np.testing.assert_allclose(_torch_case("nan", losses=bad)[0], torch)


@pytest.mark.usefixtures("x64")
def test_torch_never_lowers_on_a_flat_negative_loss():
  ours, torch = _torch_case("negative")
  assert np.all(torch == 1.0)  # -1 < -1 * (1 - threshold) is never true
  assert ours.min() < 1.0


def test_updates_are_scaled():
  optimizer = nagd.scale_on_plateau(0.1, patience=1)
  grads = {"a": jnp.ones(3), "b": jnp.full(2, -2.0, jnp.bfloat16)}
  state = optimizer.init(grads)
  update = jax.jit(optimizer.update)
  _, state = update(grads, state, value=1.0)
  updates, state = update(grads, state, value=1.0)  # no new low
  chex.assert_trees_all_close(updates, jax.tree.map(lambda g: 0.1 * g, grads))
  chex.assert_trees_all_equal_dtypes(updates, grads)


def test_non_finite_losses_are_ignored():
  values = [1.0, math.nan, math.inf, 0.5, math.nan, 0.4]
  assert _scales(values, patience=1) == [1.0] * 6
  optimizer = nagd.scale_on_plateau(0.5, patience=1)
  update = jax.jit(optimizer.update)
  state = optimizer.init(jnp.zeros(2))
  for value in values:
    _, state = update(jnp.zeros(2), state, value=value)
  assert float(state.best) == pytest.approx(0.4)


def _noisy(trend, seed):
  k = np.arange(2000)
  noise = 0.3 * np.random.default_rng(seed).standard_normal(2000)
  return {
      "falling": 10.0 - 0.005 * k,
      "flat": np.full(2000, 5.0),
      "falling, then flat": 10.0 - 0.005 * np.minimum(k, 1000),
  }[trend] + noise


def _first_lowering(values, **kwargs):
  lowered = np.flatnonzero(np.asarray(_scales(values, **kwargs)) < 1.0)
  return int(lowered[0]) if lowered.size else None


@pytest.mark.parametrize("seed", range(4))
def test_tells_noise_from_a_plateau(seed):
  """Noise std 0.3, patience 50, loss_smoothing 0.98: a steadily falling loss
  keeps the scale; an equally noisy flat loss, or the same fall once it
  turns flat, lowers it."""
  kwargs = dict(patience=50, loss_smoothing=0.98)
  assert _first_lowering(_noisy("falling", seed), **kwargs) is None
  assert _first_lowering(_noisy("flat", seed), **kwargs) is not None
  assert _first_lowering(_noisy("falling, then flat", seed), **kwargs) > 1000
  # Without smoothing the noise alone looks like a plateau.
  assert _first_lowering(_noisy("falling", seed), patience=50) is not None


@functools.partial(jax.jit, static_argnames="accumulation_size")
def _optax_scales(values, patience, accumulation_size):
  """Optax's reduce_on_plateau (factor 0.5, rtol 1e-4) on each row."""
  optimizer = optax.contrib.reduce_on_plateau(
      0.5, patience=patience, accumulation_size=accumulation_size)
  params = jnp.zeros(1)

  def run(row):
    def step(state, value):
      _, state = optimizer.update(params, state, value=value)
      return state, state.scale

    return jax.lax.scan(step, optimizer.init(params), row)[1]

  return jax.vmap(run)(values)


def _lowerings(scales):
  """Number of lowerings in each row of scales."""
  scales = np.asarray(scales)
  return int(np.sum(scales[:, 1:] < scales[:, :-1]) + np.sum(scales[:, 0] < 1))


@pytest.mark.slow  # 32 noisy runs of 2000 steps under each rule
@pytest.mark.parametrize(
    "trend, window, patience, noise_over_drop",
    [
        ("falling", 10, 5, 100),
        ("falling", 20, 5, 300),
        ("falling", 50, 2, 1000),
        ("flat", 20, 5, 30),
        ("flat", 50, 2, 100),
        ("flat", 50, 2, 1000),
    ],
)
def test_against_optax_reduce_on_plateau(trend, window, patience,
                                         noise_over_drop):
  """Seeded noisy losses, against Optax's rule with the same window: on a
  linear fall (by 1e-3 per update, so every lowering is false) no more
  lowerings, on an equally noisy flat loss no fewer.

  Optax averages ``window`` losses and waits ``patience`` averages; the
  comparable smoothing has the same noise and lag: s = (k - 1)/(k + 1).
  """
  steps, drop = 2000, 1e-3
  values = noise_over_drop * drop * np.random.default_rng(0).standard_normal(
      (32, steps))
  values += 10.0 - drop * np.arange(steps) if trend == "falling" else 6.0
  ours = _lowerings([
      _scales(row, patience=window * patience,
              loss_smoothing=(window - 1) / (window + 1))
      for row in values
  ])
  reference = _lowerings(_optax_scales(jnp.asarray(values, jnp.float32),
                                       patience, window))
  if trend == "falling":
    assert reference > 0  # the comparison is not vacuous
    assert ours <= reference
  else:
    assert ours >= reference


def test_cooldown_and_min_scale():
  scales = _scales([1.0] * 16, patience=2, cooldown=3, min_scale=0.2)
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


def _two_parts(**kwargs):
  """optax.partition of two nagd optimizers over {"x": ..., "y": ...}."""
  return optax.partition(
      {"a": nagd.nagd(0.1, 0.9, **kwargs), "b": nagd.nagd(0.2, 0.5, **kwargs)},
      {"x": "a", "y": "b"},
  )


def test_restart_momentum_restarts_every_part_of_a_partition():
  inner = _two_parts(restart="on_demand")
  optimizer = nagd.scale_on_plateau(
      0.5, patience=2, inner=inner, restart_momentum=True
  )
  params = {"x": jnp.array([1.0, -2.0]), "y": jnp.array([0.5, 3.0, -1.0])}
  grads = jax.tree.map(lambda p: 0.25 * p + 0.5, params)
  state = optimizer.init(params)

  def restarts(state):
    return [int(r) for _, r in optax.tree.get_all_with_path(state, "restarts")]

  for value in [3.0, 3.0]:
    updates, state = optimizer.update(grads, state, params, value=value)
  assert restarts(state) == [0, 0]
  updates, state = optimizer.update(grads, state, params, value=3.0)
  assert bool(state.lowered)
  assert restarts(state) == [1, 1]
  # Both momenta restarted: the update is a fresh optimizer's first, halved.
  fresh, _ = inner.update(grads, inner.init(params), params)
  chex.assert_trees_all_close(updates, jax.tree.map(lambda u: 0.5 * u, fresh))


@pytest.mark.parametrize(
    "inner", [nagd.nagd(0.1), _two_parts()], ids=["nagd", "partition"]
)
def test_restart_momentum_needs_a_restart_wrapper(inner):
  optimizer = nagd.scale_on_plateau(inner=inner, restart_momentum=True)
  with pytest.raises(ValueError, match="restart wrapper"):
    optimizer.init({"x": jnp.ones(2), "y": jnp.ones(3)})


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
