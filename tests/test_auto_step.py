"""scale_by_auto_step / nagd.nagd("auto"): the rule, its guarantees, Optax
conventions, memory and errors.

The references are plain NumPy loops of the rule as the docstring of
:func:`nagd_optax.scale_by_auto_step` states it (Malitsky & Mishchenko's
adaptive step for minibatches; a Barzilai-Borwein step with rejection and
backtracking for full batches), written here without calling the library,
and closed forms of the guarantees the paper proves.
"""

import inspect
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nagd_optax as nagd
from tests import conftest


# ---------------------------------------------------------------------------
# Reference: the loss statistics (LossTrend's docstrings), in NumPy.


class _Trend:
  """EMA mean, drift and innovation variance of the finite losses."""

  def __init__(self, smoothing):
    self.s = smoothing
    self.mean = self.drift = self.noise = 0.0
    self.count = 0

  def _debiased(self, ema, samples):
    return ema / (1 - self.s**samples) if samples > 0 else 0.0

  def add(self, value):
    if not math.isfinite(value):
      return
    s, innovation = self.s, value - self.mean
    residual = innovation - self._debiased(self.drift, max(self.count - 1, 0))
    if self.count == 0:
      self.mean = value
    else:
      self.mean = s * self.mean + (1 - s) * value
      self.drift = s * self.drift + (1 - s) * innovation
      self.noise = s * self.noise + (1 - s) * residual**2
    self.count += 1

  def _variance(self):
    return self._debiased(self.noise, max(self.count - 1, 0))

  def standard_error(self):  # of the smoothed loss
    return math.sqrt(self._variance() * (1 - self.s) / 2)

  def loss_noise(self):  # of one loss
    return math.sqrt(self._variance() * (1 + self.s) / 2)

  def settled(self):
    return self.count >= 1 / (1 - self.s)


# ---------------------------------------------------------------------------
# Reference: the minibatch rule, as the docstring states it.


class _Minibatch:
  """AdGD step on a Nesterov trace with constant momentum, relative first
  step, trust region and the two loss guards; restarts zero the trace."""

  def __init__(self, momentum, initial_step=1e-6, curvature_factor=1.0,
               trust_ratio=0.02, slow_growth=1.01, cut=0.5,
               loss_smoothing=0.9, spike_ratio=2.0, noise_tolerance=3.0,
               multiplier=lambda k: 1.0, gradient_restart=False):
    self.mu, self.initial_step, self.c = momentum, initial_step, curvature_factor
    self.multiplier, self.gradient_restart = multiplier, gradient_restart
    self.tau, self.slow_growth, self.cut = trust_ratio, slow_growth, cut
    self.s, self.ratio, self.z = loss_smoothing, spike_ratio, noise_tolerance
    self.trend, self.log_trend = _Trend(self.s), _Trend(self.s)
    self.m = self.previous_gradient = None
    self.step = 0.0       # lambda_{k-1}
    self.theta = math.inf  # lambda_{k-1} / lambda_{k-2}; AdGD's theta_0
    self.last_move = 0.0  # ||y_k - y_{k-1}||
    self.scale0 = 0.0     # ||y_0||
    self.lowest = math.inf
    self.restart_next = False
    self.ramping = True
    self.k = self.cuts = self.spikes = self.restarts = 0
    self.curvature = 0.0

  def _spike(self, f):
    if not math.isfinite(f):
      return True
    if self.trend.count < 5:
      return False
    level = self.trend.mean
    if not self.ramping and self.log_trend.count == self.trend.count and f > 0:
      return math.log(f) > self.log_trend.mean + max(
          math.log(self.ratio), self.z * self.log_trend.loss_noise())
    return f > level + max((self.ratio - 1) * abs(level),
                           self.z * self.trend.loss_noise())

  def update(self, g, y, f=None):
    """Returns the update -lambda_k d_k."""
    first = self.k == 0
    if self.m is None:
      self.m = np.zeros_like(g)
      self.previous_gradient = np.zeros_like(g)
    spike = f is not None and not first and self._spike(f)
    if self.restart_next or spike:
      self.m = np.zeros_like(g)
      self.restarts += 1
    self.m = self.mu * self.m + g
    d = g + self.mu * self.m
    d_norm = np.linalg.norm(d)
    # L_k = ||g_k - g_{k-1}|| / ||y_k - y_{k-1}||.
    self.curvature = (
        np.linalg.norm(g - self.previous_gradient) / self.last_move
        if self.last_move > 0 else 0.0)
    growth = math.sqrt(1 + self.theta) if self.ramping else self.slow_growth
    cap = self.c / self.curvature if self.curvature > 0 else math.inf
    step = min(growth * self.step, cap)
    y_norm = np.linalg.norm(y)
    if first:
      self.scale0 = y_norm
      step = self.initial_step * max(1.0, y_norm) / d_norm
    rose = cut = False
    if f is not None:
      self.trend.add(f)
      self.log_trend.add(math.log(f) if f > 0 else math.nan)
      settled = self.trend.settled()
      rose = settled and self.trend.mean > (
          self.lowest + self.z * self.trend.standard_error())
      cut = (spike or rose) and not first
      if cut:
        step = self.cut * min(step, self.step)
        self.cuts += 1
        self.spikes += spike
        self.ramping = False
      if cut or not settled:
        self.lowest = self.trend.mean
      else:
        self.lowest = min(self.lowest, self.trend.mean)
    if self.scale0 > 0:
      step = min(step, self.tau * max(y_norm, self.scale0) / d_norm)
    step = min(max(step, 1e-30), 1e30)
    self.theta = math.inf if first else step / self.step
    self.step = step
    applied = self.multiplier(self.k) * step
    self.last_move = applied * d_norm
    self.previous_gradient = g
    # O'Donoghue & Candes' gradient scheme: the momentum points uphill.
    self.restart_next = rose or (self.gradient_restart and g @ self.m < 0)
    self.k += 1
    return -applied * d


# ---------------------------------------------------------------------------
# Reference: the full-batch rule, as the docstring states it.


class _FullBatch:
  """Accept f_k <= f_b (then a BB2 step on the gradient, before the
  momentum); reject a rise (then back from the base point y_b along
  D = y_k - y_b to the quadratic model's minimiser, clipped to [0.1, 0.5])."""

  def __init__(self, momentum, initial_step=1e-6, curvature_factor=1.0):
    self.momentum = momentum  # a function of the count since a restart
    self.initial_step, self.c = initial_step, curvature_factor
    self.k = self.inner_count = self.rejections = self.restarts = 0
    self.step = 0.0
    self.curvature = 0.0
    self.restart_next = False

  def update(self, g, y, f, restart=False):
    if self.k == 0:
      self.m = np.zeros_like(g)  # the trace of the scaled gradients
      self.base_gradient = np.zeros_like(g)
      self.base_loss = math.inf
      self.move = np.zeros_like(g)  # D = y_k - y_b
    self.k += 1
    restart = restart or self.restart_next
    if self.k > 1 and not (math.isfinite(f) and f <= self.base_loss):
      self.rejections += 1
      slope = self.base_gradient @ self.move  # <g_b, D>
      if slope < 0:
        excess = f - self.base_loss - slope
        t = min(max(-slope / (2 * excess), 0.1), 0.5) if math.isfinite(
            f) else 0.1
        new_move, self.step = t * self.move, t * self.step
      else:  # D does not descend: a gradient step from y_b, then restart
        self.step *= 0.5 if math.isfinite(f) else 0.1
        new_move = -self.step * self.base_gradient
        restart = True
      update = new_move - self.move
      self.move = new_move
      self.restart_next = restart
      return update
    change = g - self.base_gradient
    secant = change @ self.move
    self.curvature = change @ change / secant if secant > 0 else 0.0
    if self.k == 1:
      step = self.initial_step * max(1.0, np.linalg.norm(y)) / np.linalg.norm(g)
    elif self.curvature > 0:
      step = self.c / self.curvature
    else:
      step = 2 * self.step
    self.step = min(max(step, 1e-30), 1e30)
    if restart:
      self.m = np.zeros_like(g)
      self.inner_count = 0
      self.restarts += 1
    scaled = self.step * g
    decay = self.momentum(max(self.inner_count - 1, 0))
    extrapolation = self.momentum(self.inner_count)
    self.m = decay * self.m + scaled
    self.inner_count += 1
    direction = scaled + extrapolation * self.m
    self.base_gradient, self.base_loss = g, f
    self.move = -direction
    self.restart_next = False
    return -direction


def _nesterov(k):
  return k / (k + 3)


# ---------------------------------------------------------------------------
# Running the library.


def _run(optimizer, gradient, y0, steps, losses=None, loss=None):
  """``steps`` jitted updates; returns the iterates, the states' step sizes,
  curvatures, cuts, spikes, restarts, rejections, and the final state.

  The loss passed as ``value=`` is ``losses[k]`` (a fixed sequence), or
  ``loss(y_k)``, or nothing.
  """

  def step(carry, fed):
    y, state = carry
    if loss is not None:
      extra = {"value": loss(y)}
    elif losses is not None:
      extra = {"value": fed}
    else:
      extra = {}
    updates, state = optimizer.update(gradient(y), state, y, **extra)
    y = optax.apply_updates(y, updates)
    record = {name: optax.tree.get(state, name) for name in (
        "step_size", "curvature", "cuts", "spikes", "restarts", "rejections")}
    return (y, state), (y, record)

  @jax.jit
  def run(y0):
    xs = None if losses is None else jnp.asarray(losses)
    return jax.lax.scan(step, (y0, optimizer.init(y0)), xs, length=steps)

  (_, state), (iterates, records) = run(jnp.asarray(y0))
  return np.asarray(iterates), jax.tree.map(np.asarray, records), state


def _reference_run(reference, gradient, y0, steps, losses=None, loss=None):
  y = np.asarray(y0, np.float64)
  iterates, records = [], []
  for k in range(steps):
    if loss is not None:
      f = loss(y)
    elif losses is not None:
      f = float(losses[k])
    else:
      f = None
    args = (gradient(y), y) if f is None else (gradient(y), y, f)
    y = y + reference.update(*args)
    iterates.append(y)
    records.append((reference.step, getattr(reference, "rejections", 0)))
  steps, rejections = np.asarray(records).T
  return np.asarray(iterates), steps, rejections


_CURVATURES = np.logspace(0, -2, 6)  # a diagonal quadratic, L = 1, mu = 0.01
_MINIMUM = np.linspace(-1.0, 2.0, 6)


def _quadratic_gradient(y):
  return _CURVATURES * (y - _MINIMUM)


def _quadratic_loss(y):
  return 0.5 * (_CURVATURES * (y - _MINIMUM) ** 2).sum()


# ---------------------------------------------------------------------------
# 1. The minibatch rule, iteration for iteration.


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("y0_scale", [
    0.0, pytest.param(1.0, marks=pytest.mark.slow), 30.0])
def test_minibatch_rule_without_loss_matches_reference(y0_scale):
  """No value=: AdGD's step with the sqrt(1 + theta) growth, the relative
  first step and the trust region (off from y0 = 0; binding from far)."""
  y0 = y0_scale * np.ones(6)
  optimizer = nagd.nagd("auto", 0.9)
  iterates, records, state = _run(optimizer, _quadratic_gradient, y0, 60)
  reference = _Minibatch(0.9)
  expected, expected_steps, _ = _reference_run(
      reference, _quadratic_gradient, y0, 60)
  np.testing.assert_allclose(records["step_size"], expected_steps, rtol=1e-9)
  np.testing.assert_allclose(iterates, expected, rtol=1e-9, atol=1e-12)
  assert float(optax.tree.get(state, "curvature")) == pytest.approx(
      reference.curvature, rel=1e-9)
  assert int(optax.tree.get(state, "cuts")) == 0
  assert int(optax.tree.get(state, "restarts")) == 0


def _guarded_losses():
  """A falling loss with deterministic wiggles, a spike at 15 (during the
  ramp: the linear test), another at 45 (after the first cut: the log
  test), and a rise from 65 on (the smoothed-rise test)."""
  k = np.arange(90)
  losses = 5.0 * 0.98**k + 0.02 * np.sin(1.7 * k) + 1.0
  losses[15] *= 4.0
  losses[45] *= 3.0
  losses[65:] += 0.1 * np.arange(25)
  return losses


@pytest.mark.usefixtures("x64")
def test_minibatch_guards_match_reference():
  """With value=: spikes restart the momentum at once and cut the step,
  a smoothed rise cuts it and restarts the momentum at the next update,
  the first cut ends the fast growth."""
  losses = _guarded_losses()
  y0 = np.ones(6)
  optimizer = nagd.nagd("auto", 0.9)
  iterates, records, _ = _run(optimizer, _quadratic_gradient, y0, 90,
                              losses=losses)
  reference = _Minibatch(0.9)
  expected, expected_steps, _ = _reference_run(
      reference, _quadratic_gradient, y0, 90, losses=losses)
  # The reference sees the events the sequence was built for.
  assert reference.spikes == 2
  assert reference.cuts > reference.spikes  # at least one rise
  np.testing.assert_allclose(records["step_size"], expected_steps, rtol=1e-9)
  np.testing.assert_allclose(iterates, expected, rtol=1e-9, atol=1e-12)
  assert records["spikes"][-1] == reference.spikes
  assert records["cuts"][-1] == reference.cuts
  assert records["restarts"][-1] == reference.restarts
  # A cut halves the smaller of the new and the last step.
  cut_at = np.flatnonzero(np.diff(records["cuts"])) + 1
  assert cut_at.size == reference.cuts - records["cuts"][0]
  for k in cut_at:
    assert records["step_size"][k] <= 0.5 * records["step_size"][k - 1] * (
        1 + 1e-12)


@pytest.mark.slow  # a compilation; the guards are checked quick above
@pytest.mark.usefixtures("x64")
def test_minibatch_non_finite_loss_is_a_spike():
  losses = 5.0 * 0.98 ** np.arange(30)
  losses[20] = np.nan
  y0 = np.ones(6)
  _, records, _ = _run(nagd.nagd("auto", 0.9), _quadratic_gradient, y0, 30,
                       losses=losses)
  reference = _Minibatch(0.9)
  _, expected_steps, _ = _reference_run(reference, _quadratic_gradient, y0, 30,
                                     losses=losses)
  np.testing.assert_allclose(records["step_size"], expected_steps, rtol=1e-9)
  assert records["spikes"][19] == 0 and records["spikes"][20] == 1
  assert records["restarts"][20] == 1


# ---------------------------------------------------------------------------
# 2. The full-batch rule, iteration for iteration.


def _full_batch(momentum, restart=None):
  return nagd.nagd(nagd.auto_step(full_batch=True), momentum, restart=restart)


@pytest.mark.slow  # two compilations; the quadratic is quick
@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("momentum", ["nesterov", 0.9])
def test_full_batch_rule_on_rosenbrock_matches_reference(momentum):
  """From (-1.2, 1): BB2 steps overshoot the valley, so rises are rejected
  and backtracked.

  Where the secant is nearly flat (nonconvex parts of the valley) the step
  c / L_k amplifies rounding by orders of magnitude (the library rebuilds
  D_k from two coefficients, the reference keeps it), so the comparison is
  to 1e-6 over the first 20 updates and to 1e-2 over 40, with the same
  accepts and rejects at every update.
  """
  problem = nagd.problems.rosenbrock()
  schedule = (nagd.schedules.nesterov_momentum() if momentum == "nesterov"
              else momentum)
  iterates, records, _ = _run(
      _full_batch(schedule), lambda y: problem.value_and_grad(y)[1],
      problem.x0, 40, loss=lambda y: problem.value_and_grad(y)[0])
  reference = _FullBatch(_nesterov if momentum == "nesterov"
                         else lambda k: momentum)
  expected, expected_steps, rejections = _reference_run(
      reference, problem.grad, problem.x0, 40, loss=problem.f)
  assert reference.rejections >= 1
  np.testing.assert_array_equal(records["rejections"], rejections)
  np.testing.assert_allclose(records["step_size"][:20], expected_steps[:20],
                             rtol=1e-6)
  np.testing.assert_allclose(iterates[:20], expected[:20], rtol=1e-6)
  np.testing.assert_allclose(records["step_size"], expected_steps, rtol=1e-2)
  np.testing.assert_allclose(iterates, expected, rtol=1e-2)
  # Rejections return to the base point's side: the accepted losses fall.
  losses = np.array([problem.f(problem.x0)] + [problem.f(y) for y in expected])
  accepted = losses[:-1][np.diff(np.r_[0, rejections]) == 0]
  assert np.all(np.diff(accepted) <= 0)


@pytest.mark.usefixtures("x64")
def test_full_batch_rule_on_quadratic_matches_reference():
  y0 = np.full(6, 3.0)
  iterates, records, state = _run(
      _full_batch(nagd.schedules.nesterov_momentum()), _quadratic_gradient,
      y0, 60, loss=_quadratic_loss)
  reference = _FullBatch(_nesterov)
  expected, expected_steps, _ = _reference_run(
      reference, _quadratic_gradient, y0, 60, loss=_quadratic_loss)
  assert reference.rejections >= 1
  np.testing.assert_allclose(records["step_size"], expected_steps, rtol=1e-8)
  np.testing.assert_allclose(iterates, expected, rtol=1e-8, atol=1e-12)
  assert int(optax.tree.get(state, "rejections")) == reference.rejections


@pytest.mark.usefixtures("x64")
def test_full_batch_restart_waits_for_an_accepted_update():
  """Fed losses that reject chosen updates: where momentum makes D_k ascend
  from the base point, the rejected update falls back to a gradient step
  and the momentum restarts at the next *accepted* update, also when the
  fallback itself is rejected (updates 9 and 10 here)."""
  curvatures = np.array([1.0, 0.05])
  gradient = lambda y: curvatures * y
  losses = 10.0 - 0.1 * np.arange(30)
  losses[[4, 7, 9, 10, 24, 25, 27, 28]] = 100.0  # rises: rejected
  y0 = np.array([3.0, 3.0])
  iterates, records, _ = _run(_full_batch(0.9), gradient, y0, 30,
                              losses=losses)
  reference = _FullBatch(lambda k: 0.9)
  expected, expected_steps, rejections = _reference_run(
      reference, gradient, y0, 30, losses=losses)
  assert reference.restarts >= 1
  np.testing.assert_array_equal(records["rejections"], rejections)
  assert records["restarts"][-1] == reference.restarts
  np.testing.assert_allclose(records["step_size"], expected_steps, rtol=1e-9)
  np.testing.assert_allclose(iterates, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.slow  # a compilation
@pytest.mark.usefixtures("x64")
def test_weight_decay_multiplier_and_gradient_restart_compose():
  """nagd("auto") with a coupled weight decay (the gradient the step sees
  is g + wd y), a multiplier schedule (the estimate is of the step before
  it: the last move is multiplier * lambda * ||d||) and the gradient
  restart criterion, against the reference."""
  weight_decay = 0.05
  # (optax.linear_schedule would round to float32 at an int32 count.)
  multiplier = lambda k: 1.0 / (1.0 + 0.05 * k)
  optimizer = nagd.nagd(nagd.auto_step(multiplier=multiplier), 0.9,
                        restart="gradient", weight_decay=weight_decay)
  losses = _guarded_losses()[:60]
  y0 = np.zeros(6)  # no trust region: the momentum overshoots
  iterates, records, _ = _run(optimizer, _quadratic_gradient, y0, 60,
                              losses=losses)
  reference = _Minibatch(0.9, multiplier=multiplier,
                         gradient_restart=True)
  decayed = lambda y: _quadratic_gradient(y) + weight_decay * y
  expected, expected_steps, _ = _reference_run(reference, decayed, y0, 60,
                                               losses=losses)
  assert reference.restarts > reference.spikes  # the criterion fired too
  np.testing.assert_allclose(records["step_size"], expected_steps, rtol=1e-9)
  np.testing.assert_allclose(iterates, expected, rtol=1e-9, atol=1e-12)
  assert records["restarts"][-1] == reference.restarts


@pytest.mark.slow  # 300 steps
@pytest.mark.usefixtures("x64")
def test_loss_restart_composes():
  """restart="loss" restarts on raw rises of a full-batch loss, on top of
  the guards' restarts, and the run still converges."""
  optimizer = nagd.nagd("auto", 0.9, restart="loss")
  y0 = np.ones(6)
  iterates, records, _ = _run(optimizer, _quadratic_gradient, y0, 300,
                              loss=_quadratic_loss)
  assert records["restarts"][-1] > records["cuts"][-1]
  assert _quadratic_loss(iterates[-1]) < 1e-8 * _quadratic_loss(y0)


# ---------------------------------------------------------------------------
# 3. The guarantees, in closed form.


def _plain_auto(curvature_factor=1.0, **settings):
  """The rule with momentum 0 and no trust region: AdGD itself."""
  return nagd.nagd(nagd.auto_step(curvature_factor=curvature_factor,
                                  trust_ratio=float("inf"), **settings), 0.0)


@pytest.mark.usefixtures("x64")
def test_curvature_is_exact_on_a_one_dimensional_quadratic():
  """f(y) = L/2 (y - 1)^2: the gradient change over the step is L times
  the step, so L_k = L at every update after the first (the step is c/L
  with c = 1/2, which halves the distance to the minimum each time)."""
  curvature = 7.0
  gradient = lambda y: curvature * (y - 1.0)
  # 15 halvings: further on, y - 1 cancels digits of the gradient.
  _, records, _ = _run(_plain_auto(0.5), gradient, np.zeros(1), 15)
  np.testing.assert_allclose(records["curvature"][1:], curvature, rtol=1e-10)
  np.testing.assert_allclose(records["step_size"][1:], 0.5 / curvature,
                             rtol=1e-10)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_adgd_bounds_on_a_diagonal_quadratic(momentum):
  """Malitsky & Mishchenko's lemmas: mu <= L_k <= L, so with c = 1/2 the
  step never falls below 1/(2L) after the first update (by induction:
  sqrt(1 + theta) > 1), and it grows by at most sqrt(1 + theta_{k-1})."""
  largest, smallest = _CURVATURES.max(), _CURVATURES.min()
  optimizer = nagd.nagd(nagd.auto_step(curvature_factor=0.5,
                                       trust_ratio=float("inf")), momentum)
  _, records, _ = _run(optimizer, _quadratic_gradient, np.full(6, 5.0), 60)
  curvatures, steps = records["curvature"][1:], records["step_size"]
  measured = curvatures > 0  # 0: the gradient did not change (converged)
  assert measured.sum() >= 30
  assert np.all(curvatures[measured] <= largest * (1 + 1e-12))
  assert np.all(curvatures[measured] >= smallest * (1 - 1e-12))
  assert np.all(steps[1:] >= 0.5 / largest * (1 - 1e-12))
  theta = steps[1:] / steps[:-1]
  assert np.all(theta[1:] <= np.sqrt(1 + theta[:-1]) * (1 + 1e-12))


@pytest.mark.slow  # a compilation
@pytest.mark.usefixtures("x64")
def test_bb2_curvature_lies_between_mu_and_l():
  """Full batch: ||delta||^2 / <delta, D> = D'A^2D / D'AD on a quadratic,
  a Rayleigh quotient of A, so in [mu, L]."""
  optimizer = _full_batch(nagd.schedules.nesterov_momentum(),
                          restart="gradient")
  _, records, _ = _run(optimizer, _quadratic_gradient, np.full(6, 5.0), 80,
                       loss=_quadratic_loss)
  curvatures = records["curvature"]
  measured = curvatures > 0
  assert measured.sum() >= 40
  assert np.all(curvatures[measured] <= _CURVATURES.max() * (1 + 1e-12))
  assert np.all(curvatures[measured] >= _CURVATURES.min() * (1 - 1e-12))


@pytest.mark.slow  # four compilations
@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("full_batch", [False, True])
@pytest.mark.parametrize("scale", [0.3, 4.0])
def test_first_step_is_relative_to_the_parameters(full_batch, scale):
  """lambda_0 = initial_step * max(1, ||y_0||) / ||g_0|| (momentum 0)."""
  y0 = scale * np.linspace(1.0, 2.0, 6) / np.linalg.norm(np.linspace(1, 2, 6))
  optimizer = nagd.nagd(nagd.auto_step(initial_step=1e-3,
                                       full_batch=full_batch), 0.0)
  params = jnp.asarray(y0)
  state = optimizer.init(params)
  updates, state = optimizer.update(
      jnp.asarray(_quadratic_gradient(y0)), state, params,
      value=_quadratic_loss(y0))
  expected = 1e-3 * max(1.0, scale) / np.linalg.norm(_quadratic_gradient(y0))
  assert float(optax.tree.get(state, "step_size")) == pytest.approx(
      expected, rel=1e-12)
  assert np.linalg.norm(updates) == pytest.approx(1e-3 * max(1.0, scale),
                                                  rel=1e-12)


# ---------------------------------------------------------------------------
# 4. Conventions (the generic ones run in tests/test_conventions.py).


def _params(dtype=jnp.float32):
  return {"w": jnp.linspace(-1.0, 1.0, 12, dtype=dtype).reshape(3, 4),
          "b": jnp.array([0.5, -0.25, 1.0], dtype=dtype)}


def _tree_loss(params):
  return sum(jnp.sum((p.astype(jnp.promote_types(p.dtype, jnp.float32))
                      - 0.3) ** 2)
             for p in jax.tree.leaves(params))


AUTO_OPTIMIZERS = {
    "minibatch": lambda: nagd.nagd("auto"),
    "full_batch": lambda: nagd.nagd(
        nagd.auto_step(full_batch=True), nagd.schedules.nesterov_momentum(),
        restart="gradient"),
}


@pytest.mark.slow  # four compilations
@pytest.mark.parametrize("mode", sorted(AUTO_OPTIMIZERS))
def test_jit_compiles_once_and_keeps_dtypes(mode):
  optimizer = AUTO_OPTIMIZERS[mode]()

  @jax.jit
  def step(params, state):
    value, grads = jax.value_and_grad(_tree_loss)(params)
    updates, state = optimizer.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state, updates

  for dtype in (jnp.float32, jnp.bfloat16):
    params = _params(dtype)
    state = optimizer.init(params)
    params, state, _ = step(params, state)
    with conftest.log_compilations() as compilations:
      for _ in range(3):
        new_params, new_state, updates = step(params, state)
        chex.assert_trees_all_equal_dtypes(updates, params)
        chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)
        chex.assert_trees_all_equal_dtypes(new_params, params)
        params, state = new_params, new_state
    assert not compilations, "the update recompiles on later calls"


@pytest.mark.slow  # two compilations
@pytest.mark.parametrize("mode", sorted(AUTO_OPTIMIZERS))
def test_state_fields_are_readable_with_optax_tree_get(mode):
  optimizer = optax.chain(optax.clip_by_global_norm(10.0),
                          AUTO_OPTIMIZERS[mode]())
  params = _params()
  state = optimizer.init(params)
  update = jax.jit(optimizer.update)
  for _ in range(3):
    value, grads = jax.value_and_grad(_tree_loss)(params)
    updates, state = update(grads, state, params, value=value)
    params = optax.apply_updates(params, updates)
  for name in ("step_size", "curvature", "cuts", "spikes", "rejections"):
    assert optax.tree.get(state, name).shape == ()
  assert float(optax.tree.get(state, "step_size")) > 0
  assert float(optax.tree.get(state, "curvature")) > 0


@pytest.mark.slow  # unjitted updates
def test_inject_hyperparams_injects_the_momentum():
  """learning_rate=nagd.auto_step() is static (not a number); the momentum
  is injected, and the run equals the plain optimizer's."""
  injected = optax.inject_hyperparams(nagd.nagd)(
      learning_rate=nagd.auto_step(), momentum=0.9)
  plain = nagd.nagd(nagd.auto_step(), 0.9)
  params = plain_params = _params()
  state, plain_state = injected.init(params), plain.init(params)
  for _ in range(5):
    value, grads = jax.value_and_grad(_tree_loss)(params)
    updates, state = injected.update(grads, state, params, value=value)
    params = optax.apply_updates(params, updates)
    value, grads = jax.value_and_grad(_tree_loss)(plain_params)
    updates, plain_state = plain.update(grads, plain_state, plain_params,
                                        value=value)
    plain_params = optax.apply_updates(plain_params, updates)
  assert set(state.hyperparams) == {"momentum"}
  chex.assert_trees_all_close(params, plain_params, rtol=1e-6)
  assert float(optax.tree.get(state, "step_size")) == pytest.approx(
      float(optax.tree.get(plain_state, "step_size")), rel=1e-6)


@pytest.mark.slow  # two compilations
@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("mode", sorted(AUTO_OPTIMIZERS))
def test_multi_steps_equals_the_mean_gradient(mode):
  """optax.MultiSteps(every_k=2) equals the optimizer fed the mean gradient
  (and the loss of the step that completes the accumulation). In float64,
  accumulator included: the curvature estimate after the tiny first step
  divides by a gradient change of 1e-7 relative, which would magnify
  float32 rounding of the mean to 1e-1."""
  optimizer = AUTO_OPTIMIZERS[mode]()
  accumulated = optax.MultiSteps(optimizer, every_k_schedule=2,
                                 accumulator_dtype=jnp.float64)
  update = jax.jit(accumulated.update)
  params = expected = _params(jnp.float64)
  state, plain_state = accumulated.init(params), optimizer.init(params)
  shifts = (0.1, -0.2)
  for k in range(6):
    loss = lambda p, k=k: _tree_loss(p) + shifts[k % 2] * sum(
        jnp.sum(x) for x in jax.tree.leaves(p))
    value, grads = jax.value_and_grad(loss)(params)
    updates, state = update(grads, state, params, value=value)
    params = optax.apply_updates(params, updates)
    if k % 2 == 1:
      mean = jax.tree.map(lambda g: g + sum(shifts) / 2,
                          jax.grad(_tree_loss)(expected))
      updates, plain_state = optimizer.update(mean, plain_state, expected,
                                              value=value)
      expected = optax.apply_updates(expected, updates)
    chex.assert_trees_all_close(params, expected, rtol=1e-8, atol=1e-12)


# ---------------------------------------------------------------------------
# 5. Memory: two parameter-sized buffers, Adam's footprint.


def _parameter_sized(state, params):
  sizes = sorted(p.size for p in jax.tree.leaves(params))
  big = [x for x in jax.tree.leaves(state) if x.size > 2]
  small = [x for x in jax.tree.leaves(state) if x.size <= 2]
  return sorted(x.size for x in big), sizes, small


@pytest.mark.parametrize("mode", sorted(AUTO_OPTIMIZERS))
def test_state_holds_two_parameter_sized_buffers(mode):
  params = {"w": jnp.zeros((64, 32)), "b": jnp.zeros(32),
            "c": jnp.zeros((3, 5, 7))}
  state = AUTO_OPTIMIZERS[mode]().init(params)
  buffers, sizes, small = _parameter_sized(state, params)
  assert buffers == sorted(2 * sizes)  # the trace and g_{k-1} (or g_b)
  assert len(small) <= 40  # scalars (and full_batch's two coefficients)
  adam_buffers, _, _ = _parameter_sized(optax.adam(1e-3).init(params),
                                        params)
  assert buffers == adam_buffers
  state_bytes = sum(x.nbytes for x in jax.tree.leaves(state))
  param_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
  assert 2 * param_bytes <= state_bytes <= 2 * param_bytes + 40 * 8


# ---------------------------------------------------------------------------
# 6. Bad input.


@pytest.mark.parametrize(
    "setting, value, error",
    [
        ("full_batch", 1, TypeError),
        ("full_batch", "yes", TypeError),
        ("initial_step", -1e-3, ValueError),
        ("initial_step", 0.0, ValueError),
        ("curvature_factor", 0.0, ValueError),
        ("trust_ratio", -0.1, ValueError),
        ("trust_ratio", float("nan"), ValueError),
        ("slow_growth", 0.9, ValueError),
        ("cut", 1.0, ValueError),
        ("loss_smoothing", 1.0, ValueError),
        ("spike_ratio", 0.5, ValueError),
        ("noise_tolerance", -1.0, ValueError),
        ("multiplier", -1.0, ValueError),
    ],
)
def test_bad_settings_raise_naming_them(setting, value, error):
  with pytest.raises(error, match=f"{setting} must be"):
    nagd.nagd(nagd.auto_step(**{setting: value}))
  with pytest.raises(error, match=f"{setting} must be"):
    nagd.scale_by_auto_step(nagd.nesterov_trace(0.9), **{setting: value})


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: nagd.nagd("Auto"), TypeError, "learning_rate.*'auto'"),
        (lambda: nagd.nagd("automatic"), TypeError, "learning_rate.*'auto'"),
        (lambda: nagd.nagd(nagd.auto_step), TypeError,
         "learning_rate.*call it"),
        (lambda: nagd.nagd("auto", loss_smoothing=0.9), ValueError,
         "loss_smoothing"),
        (lambda: nagd.scale_by_auto_step(
            optax.scale_by_rms(), full_batch=True).init(jnp.ones(2)),
         ValueError, "'trace'"),
    ],
)
def test_bad_arguments_raise_naming_them(make, error, match):
  with pytest.raises(error, match=match):
    make()


@pytest.mark.parametrize("value", [None, jnp.ones(2)])
def test_full_batch_needs_a_scalar_loss(value):
  optimizer = nagd.nagd(nagd.auto_step(full_batch=True))
  params = jnp.ones(2)
  state = optimizer.init(params)
  with pytest.raises((TypeError, ValueError), match="value"):
    optimizer.update(params, state, params, value=value)


def test_the_three_spellings_of_the_settings_share_their_defaults():
  # scale_by_auto_step's keywords, the AutoStep fields and auto_step's
  # keywords are written out three times (for signatures users can read):
  # they must not drift apart.
  def keyword_defaults(function):
    return {name: parameter.default
            for name, parameter in inspect.signature(function).parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY}

  fields = nagd.AutoStep._field_defaults  # pylint: disable=protected-access
  assert keyword_defaults(nagd.auto_step) == fields
  transform = keyword_defaults(nagd.scale_by_auto_step)
  assert {name: transform[name] for name in fields} == fields
  assert set(transform) - set(fields) == {"axis_name"}
