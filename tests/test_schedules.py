"""Schedules against their closed forms (or, for FISTA's momentum, against
its recursion in 40-digit decimal arithmetic)."""

import decimal
import functools
import math

import optax

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nagd_optax as nagd
from tests import reference_methods


def test_nesterov_momentum_is_the_paper_sequence():
  schedule = nagd.schedules.nesterov_momentum()
  # beta_j = (j - 1) / (j + 2) for the paper's j = 1, 2, ... is step j - 1.
  for j in range(1, 200):
    assert float(schedule(j - 1)) == pytest.approx((j - 1) / (j + 2), rel=1e-6)


def test_nesterov_momentum_jits_and_vmaps():
  schedule = nagd.schedules.nesterov_momentum()
  counts = jnp.arange(10, dtype=jnp.int32)
  values = jax.jit(jax.vmap(schedule))(counts)
  np.testing.assert_allclose(values, np.arange(10) / (np.arange(10) + 3.0))
  assert values.dtype == jnp.float32


@pytest.mark.usefixtures("x64")
def test_nesterov_momentum_is_float64_with_x64():
  value = nagd.schedules.nesterov_momentum()(jnp.asarray(7, jnp.int32))
  assert value.dtype == jnp.float64
  assert float(value) == 0.7  # 7 / 10, exactly as float64 divides it


@pytest.mark.parametrize(
    "kappa, expected", [(1.0, 0.0), (100.0, 9.0 / 11.0), (1e4, 99.0 / 101.0)]
)
def test_strongly_convex_momentum_closed_form(kappa, expected):
  schedule = nagd.schedules.strongly_convex_momentum(kappa)
  assert float(schedule(0)) == pytest.approx(expected, rel=1e-7)
  values = jax.jit(jax.vmap(schedule))(jnp.arange(5))
  np.testing.assert_allclose(values, np.full(5, expected), rtol=1e-7)


@pytest.mark.parametrize("kappa", [0.5, 0.0, -10.0, math.nan, math.inf])
def test_strongly_convex_momentum_rejects_bad_condition_number(kappa):
  with pytest.raises(ValueError, match="condition_number"):
    nagd.schedules.strongly_convex_momentum(kappa)


# ----------------------------------------------------------------------------
# Learning-rate schedules: closed forms at and around every boundary.

S = nagd.schedules


def _values(schedule, steps):
  return np.array([float(schedule(k)) for k in steps])


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_warmup_of_a_constant(kind):
  schedule = S.warmup(0.1, warmup_steps=10, kind=kind)
  steps = [0, 1, 5, 9, 10, 11, 1000]
  ramp = {"linear": lambda t: t, "cosine": lambda t: 0.5 * (1 - np.cos(np.pi * t))}
  expected = [0.1 * ramp[kind](k / 10) if k < 10 else 0.1 for k in steps]
  np.testing.assert_allclose(_values(schedule, steps), expected, rtol=1e-6,
                             atol=1e-9)
  if kind == "linear":
    assert float(schedule(5)) == pytest.approx(0.05)


def test_warmup_runs_the_wrapped_schedule_from_its_own_step_zero():
  cosine = optax.cosine_decay_schedule(1.0, decay_steps=100, alpha=0.1)
  schedule = S.warmup(cosine, warmup_steps=20, init_value=0.2)
  for k in [0, 10, 19]:
    assert float(schedule(k)) == pytest.approx(0.2 + 0.8 * k / 20, rel=1e-6)
  for k in [20, 21, 70, 120, 200]:
    closed_form = 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(k - 20, 100) / 100))
    assert float(schedule(k)) == pytest.approx(closed_form, rel=1e-6)


def test_zero_warmup_is_the_schedule_itself():
  schedule = S.warmup(0.3, warmup_steps=0)
  np.testing.assert_allclose(_values(schedule, [0, 1, 50]), [0.3] * 3)


@pytest.mark.parametrize("decay", ["linear", "cosine", "sqrt"])
def test_wsd_closed_form(decay):
  schedule = S.wsd(1.0, 10, 80, 10, decay=decay)
  shape = {
      "linear": lambda t: 1 - t,
      "cosine": lambda t: 0.5 * (1 + np.cos(np.pi * t)),
      "sqrt": lambda t: 1 - np.sqrt(t),
  }[decay]
  for k, expected in [(0, 0.0), (5, 0.5), (9, 0.9), (10, 1.0), (50, 1.0),
                      (89, 1.0), (90, 1.0), (100, 0.0), (150, 0.0)]:
    assert float(schedule(k)) == pytest.approx(expected, abs=1e-6), k
  for k in [91, 95, 99]:
    assert float(schedule(k)) == pytest.approx(shape((k - 90) / 10), abs=1e-6)
  if decay == "linear":
    assert float(schedule(95)) == pytest.approx(0.5)


def test_wsd_end_value():
  schedule = S.wsd(2.0, 0, 5, 10, end_value=0.5)
  np.testing.assert_allclose(
      _values(schedule, [0, 4, 5, 10, 15, 30]),
      [2.0, 2.0, 2.0, 2.0 - 1.5 * 0.5, 0.5, 0.5],
      rtol=1e-6,
  )


def test_inverse_sqrt_closed_form():
  schedule = S.inverse_sqrt(0.5, warmup_steps=100)
  for k in [0, 1, 50, 99]:
    assert float(schedule(k)) == pytest.approx(0.5 * k / 100, abs=1e-7)
  for k in [100, 101, 400, 10_000]:
    assert float(schedule(k)) == pytest.approx(0.5 * np.sqrt(100 / k), rel=1e-6)


def test_step_decay_closed_form():
  schedule = S.step_decay(0.1, factor=0.5, every=30)
  steps = [0, 29, 30, 31, 59, 60, 90, 299]
  np.testing.assert_allclose(
      _values(schedule, steps), [0.1 * 0.5 ** (k // 30) for k in steps],
      rtol=1e-6,
  )


def test_sutskever_momentum_closed_form():
  schedule = S.sutskever_momentum(0.99, every=250)
  for t in [0, 249, 250, 499, 500, 2000, 30_000, 10**6]:
    paper = min(1 - 2 ** (-1 - np.log2(np.floor(t / 250) + 1)), 0.99)
    assert float(schedule(t)) == pytest.approx(paper, rel=1e-6), t


SCHEDULES = {
    "warmup": lambda: S.warmup(0.1, 10, kind="cosine"),
    "wsd": lambda: S.wsd(1.0, 10, 80, 10, decay="sqrt"),
    "inverse_sqrt": lambda: S.inverse_sqrt(1.0, 10),
    "step_decay": lambda: S.step_decay(1.0, 0.5, 7),
    "sutskever_momentum": lambda: S.sutskever_momentum(0.9, 5),
    "nesterov_momentum": S.nesterov_momentum,
    "fista_momentum": S.fista_momentum,
    "strongly_convex_momentum": lambda: S.strongly_convex_momentum(50.0),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedules_jit_and_vmap_over_steps(name):
  schedule = SCHEDULES[name]()
  counts = jnp.arange(120, dtype=jnp.int32)
  batched = jax.jit(jax.vmap(schedule))(counts)
  # range, not counts: iterating over a JAX array compiles an unstack.
  one_by_one = np.array([float(schedule(k)) for k in range(len(counts))])
  assert batched.shape == (120,)
  np.testing.assert_allclose(batched, one_by_one, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: S.warmup(0.1, -1), "warmup_steps"),
        (lambda: S.warmup(0.1, 2.5), "warmup_steps"),
        (lambda: S.warmup(0.1, 5, kind="exponential"), "kind"),
        (lambda: S.wsd(1.0, -1, 10, 10), "warmup_steps"),
        (lambda: S.wsd(1.0, 10, -5, 10), "stable_steps"),
        (lambda: S.wsd(1.0, 10, 10, -1), "decay_steps"),
        (lambda: S.wsd(1.0, 10, 10, 10, decay="step"), "decay"),
        (lambda: S.inverse_sqrt(1.0, 0), "warmup_steps"),
        (lambda: S.inverse_sqrt(1.0, -3), "warmup_steps"),
        (lambda: S.step_decay(1.0, 0.5, 0), "every"),
        (lambda: S.step_decay(1.0, 1.0, 10), "factor"),
        (lambda: S.step_decay(1.0, 0.0, 10), "factor"),
        (lambda: S.step_decay(1.0, 1.5, 10), "factor"),
        (lambda: S.sutskever_momentum(1.0), "max_momentum"),
        (lambda: S.warmup(-0.1, 5), "schedule"),
        (lambda: S.warmup(0.1, 5, init_value=math.nan), "init_value"),
        (lambda: S.wsd(math.nan, 10, 10, 10), "peak_value"),
        (lambda: S.wsd(-1.0, 10, 10, 10), "peak_value"),
        (lambda: S.wsd(1.0, 10, 10, 10, end_value=-0.1), "end_value"),
        (lambda: S.inverse_sqrt(-1.0, 10), "peak_value"),
        (lambda: S.step_decay(-1.0, 0.5, 10), "init_value"),
        (lambda: S.step_decay(math.inf, 0.5, 10), "init_value"),
        (lambda: S.sutskever_momentum(0.9, every=0), "every"),
    ],
)
def test_nonsense_arguments_raise_naming_them(make, name):
  with pytest.raises(ValueError, match=name):
    make()


def test_schedules_drive_nagd():
  """A WSD learning rate and Sutskever's momentum in nagd, against a NumPy
  loop of the buffer recursion with both schedules in closed form."""
  optimizer = nagd.nagd(S.wsd(0.1, 3, 4, 3), S.sutskever_momentum(0.9, every=2))

  def learning_rate(k):  # wsd(0.1, 3, 4, 3), linear cooldown
    if k < 3:
      return 0.1 * k / 3
    return 0.1 if k < 7 else 0.1 * (1 - min(k - 7, 3) / 3)

  def momentum(k):  # sutskever_momentum(0.9, every=2)
    return min(1 - 1 / (2 * (k // 2 + 1)), 0.9)

  params = jnp.array([1.0, -1.0])
  state = optimizer.init(params)
  buffer = np.zeros(2)
  for k in range(12):
    grads = np.sin(np.asarray(params) + k)
    updates, state = optimizer.update(jnp.asarray(grads, jnp.float32), state,
                                      params)
    buffer = (momentum(k - 1) if k else 0.0) * buffer + grads
    expected = -learning_rate(k) * (grads + momentum(k) * buffer)
    np.testing.assert_allclose(updates, expected, rtol=1e-5, atol=1e-7)
    params = params + updates


def test_schedules_with_inject_hyperparams():
  """Injected, a learning-rate schedule is evaluated by Optax at each step;
  the steps equal those of the schedule passed to nagd directly."""
  schedule = S.warmup(S.step_decay(0.2, 0.5, 3), warmup_steps=4)
  injected = optax.inject_hyperparams(nagd.nagd)(
      learning_rate=schedule, momentum=0.5
  )
  direct = nagd.nagd(schedule, 0.5)
  params = jnp.ones(2)
  state, direct_state = injected.init(params), direct.init(params)
  for k in range(10):
    grads = jnp.cos(params * k)
    updates, state = injected.update(grads, state, params)
    expected, direct_state = direct.update(grads, direct_state, params)
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(
        float(schedule(k)), rel=1e-6, abs=1e-9
    )
    np.testing.assert_allclose(updates, expected, rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------
# Under x64 every schedule is float64 and as exact as its closed form in
# Python floats. The values (1e-3, 0.3, ...) are not exact in float32, so a
# float32 step anywhere inside would show as a ~1e-8 relative error.


def _cosine_ramp(t):
  return 0.5 * (1.0 - math.cos(math.pi * t))


def _wsd(k, peak, warmup_steps, stable_steps, decay_steps, end, shape):
  if k < warmup_steps:
    return peak * k / warmup_steps
  if k < warmup_steps + stable_steps:
    return peak
  t = min((k - warmup_steps - stable_steps) / decay_steps, 1.0)
  return peak + (end - peak) * shape(t)


X64_CASES = {
    "warmup_linear": (
        lambda: S.warmup(1e-3, 10, init_value=3e-4),
        lambda k: 3e-4 + 7e-4 * k / 10 if k < 10 else 1e-3,
    ),
    "warmup_cosine": (
        lambda: S.warmup(1e-3, 10, init_value=3e-4, kind="cosine"),
        lambda k: 3e-4 + 7e-4 * _cosine_ramp(k / 10) if k < 10 else 1e-3,
    ),
    "warmup_of_step_decay": (
        lambda: S.warmup(S.step_decay(1e-3, 0.3, 7), 10, init_value=1e-4),
        lambda k: (1e-4 + 9e-4 * k / 10 if k < 10
                   else 1e-3 * 0.3 ** ((k - 10) // 7)),
    ),
    "wsd_linear": (
        lambda: S.wsd(1e-3, 10, 20, 30, end_value=1e-4),
        lambda k: _wsd(k, 1e-3, 10, 20, 30, 1e-4, lambda t: t),
    ),
    "wsd_cosine": (
        lambda: S.wsd(1e-3, 10, 20, 30, end_value=1e-4, decay="cosine"),
        lambda k: _wsd(k, 1e-3, 10, 20, 30, 1e-4, _cosine_ramp),
    ),
    "wsd_sqrt": (
        lambda: S.wsd(1e-3, 10, 20, 30, end_value=1e-4, decay="sqrt"),
        lambda k: _wsd(k, 1e-3, 10, 20, 30, 1e-4, math.sqrt),
    ),
    "inverse_sqrt": (
        lambda: S.inverse_sqrt(1e-3, 30),
        lambda k: 1e-3 * k / 30 if k < 30 else 1e-3 * math.sqrt(30 / k),
    ),
    "step_decay": (
        lambda: S.step_decay(1e-3, 0.3, 7),
        lambda k: 1e-3 * 0.3 ** (k // 7),
    ),
    "nesterov_momentum": (S.nesterov_momentum, lambda k: k / (k + 3)),
    "strongly_convex_momentum": (
        lambda: S.strongly_convex_momentum(30.0),
        lambda k: (math.sqrt(30.0) - 1) / (math.sqrt(30.0) + 1),
    ),
    "sutskever_momentum": (
        lambda: S.sutskever_momentum(0.97, every=7),
        lambda k: min(1 - 1 / (2 * (k // 7 + 1)), 0.97),
    ),
}
X64_STEPS = list(range(130)) + [1000, 12_345, 10**6]


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("jit", [True, False], ids=["jit_vmap", "eager"])
@pytest.mark.parametrize("name", sorted(X64_CASES))
def test_schedules_are_float64_and_exact_under_x64(name, jit):
  make, closed_form = X64_CASES[name]
  schedule = make()
  # The optimizers' step counts are int32, also under x64.
  counts = jnp.asarray(X64_STEPS, jnp.int32)
  if jit:
    values = jax.jit(jax.vmap(schedule))(counts)
  else:
    # Not iterating over counts, which compiles an unstack of 133 outputs.
    values = jnp.stack([schedule(jnp.asarray(k, jnp.int32))
                        for k in X64_STEPS])
  assert values.dtype == jnp.float64
  expected = [closed_form(k) for k in X64_STEPS]
  np.testing.assert_allclose(values, expected, rtol=1e-15, atol=0.0)


# ----------------------------------------------------------------------------
# FISTA's momentum: the t-sequence, computed here by its recursion.

FISTA_STEPS = 20_000


@functools.cache
def _fista_momentum_40_digits():
  """mu_k = beta_{k+1} = (t_{k+1} - 1)/t_{k+2}, k < FISTA_STEPS, from the
  recursion t_1 = 1, t_{j+1} = (1 + sqrt(1 + 4 t_j^2))/2 in 40 digits."""
  with decimal.localcontext() as context:
    context.prec = 40
    t = [decimal.Decimal(1)]
    for _ in range(FISTA_STEPS):
      t.append((1 + (1 + 4 * t[-1] ** 2).sqrt()) / 2)
    return np.array([float((t[k] - 1) / t[k + 1]) for k in range(FISTA_STEPS)])


FISTA_COUNTS = list(range(300)) + [499, 1000, 4321, 10_000, FISTA_STEPS - 1]


@pytest.mark.usefixtures("x64")
def test_fista_momentum_is_the_t_sequence_to_float64_rounding():
  schedule = S.fista_momentum()
  counts = jnp.asarray(FISTA_COUNTS, jnp.int32)
  values = jax.jit(jax.vmap(schedule))(counts)
  assert values.dtype == jnp.float64
  expected = _fista_momentum_40_digits()[FISTA_COUNTS]
  np.testing.assert_allclose(values, expected, rtol=1e-15, atol=0.0)
  for k in (0, 1, 31, 32, 33, 4321):  # eagerly, around the table's end
    value = schedule(jnp.asarray(k, jnp.int32))
    assert value.dtype == jnp.float64
    assert float(value) == pytest.approx(expected[FISTA_COUNTS.index(k)],
                                         rel=1e-15, abs=0.0)


@pytest.mark.usefixtures("x64")
def test_fista_momentum_at_a_million_steps():
  """Against the recursion in Python floats, whose own rounding drifts by
  ~1e-14 relative over 1e6 steps."""
  beta = reference_methods.fista_beta_sequence(10**6 + 1)
  schedule = jax.jit(S.fista_momentum())
  for k in (10**5, 654_321, 10**6):
    value = schedule(jnp.asarray(k, jnp.int32))
    assert float(value) == pytest.approx(beta(k + 1), rel=1e-13, abs=0.0)


def test_fista_momentum_in_float32():
  schedule = S.fista_momentum()
  values = jax.jit(jax.vmap(schedule))(jnp.asarray(FISTA_COUNTS, jnp.int32))
  assert values.dtype == jnp.float32
  np.testing.assert_allclose(values, _fista_momentum_40_digits()[FISTA_COUNTS],
                             rtol=5e-7, atol=0.0)

