"""Warmup and decay schedules that Optax does not have.

What Optax has (``cosine_decay_schedule``, ``join_schedules``, ...) is used,
not written again; ``step_decay`` is the exception, because Optax's
staircase ``exponential_decay`` computes in float32 even under x64.
"""

import math
from typing import Literal

import jax
import jax.numpy as jnp
import optax

from nagd_optax import _validation
from nagd_optax.schedules._counts import as_float

Interpolation = Literal["linear", "cosine", "sqrt"]


def _check_kind(kind: str, name: str, allowed: tuple[str, ...]) -> None:
  if kind not in allowed:
    raise ValueError(
        f"{name} must be one of {', '.join(map(repr, allowed))}; got {kind!r}."
    )


def _interpolate(
    start: optax.ScalarOrSchedule | jax.Array,
    end: optax.ScalarOrSchedule | jax.Array,
    steps: int,
    kind: Interpolation,
) -> optax.Schedule:
  r"""From ``start`` at step 0 to ``end`` at step ``steps`` (and after).

  With progress :math:`t = \min(k / n, 1)` the value is
  :math:`s + (e - s)\, w(t)`, where :math:`w(t)` is :math:`t` (linear),
  :math:`(1 - \cos \pi t)/2` (cosine) or :math:`\sqrt{t}` (square root).
  """

  def schedule(count):
    if steps == 0:
      progress = jnp.ones_like(as_float(count))
    else:
      progress = jnp.clip(as_float(count) / steps, 0.0, 1.0)
    if kind == "linear":
      weight = progress
    elif kind == "cosine":
      weight = 0.5 * (1.0 - jnp.cos(math.pi * progress))
    else:
      weight = jnp.sqrt(progress)
    return start + (end - start) * weight

  return schedule


def _constant(value) -> optax.Schedule:
  return lambda count: jnp.full_like(as_float(count), value)


def warmup(
    schedule: optax.ScalarOrSchedule,
    warmup_steps: int,
    init_value: float = 0.0,
    kind: Literal["linear", "cosine"] = "linear",
) -> optax.Schedule:
  r"""Puts a warmup in front of any schedule or constant.

  .. math::

    \eta_k = \begin{cases}
      \eta_0 + (\eta^\star - \eta_0)\, w(k / W) & k < W, \\
      \mathrm{schedule}(k - W) & k \ge W,
    \end{cases}
    \qquad \eta^\star = \mathrm{schedule}(0),

  with :math:`w(t) = t` (linear) or :math:`(1 - \cos \pi t)/2` (cosine). The
  wrapped schedule runs from its own step 0 once the warmup is over.

  Args:
    schedule: a schedule or a constant (the value to warm up to).
    warmup_steps: :math:`W \ge 0` steps of warmup.
    init_value: :math:`\eta_0`, the value at step 0.
    kind: ``"linear"`` or ``"cosine"``.

  Returns:
    A schedule (step count -> value).

  Example:
    >>> import optax
    >>> import nagd_optax as nagd
    >>> schedule = nagd.schedules.warmup(0.1, warmup_steps=10)
    >>> [round(float(schedule(k)), 4) for k in (0, 5, 10, 20)]
    [0.0, 0.05, 0.1, 0.1]
    >>> cosine = optax.cosine_decay_schedule(0.1, decay_steps=100)
    >>> schedule = nagd.schedules.warmup(cosine, warmup_steps=10)
    >>> round(float(schedule(60)), 4)  # cosine at its step 50
    0.05

  References:
    Goyal et al., `Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour
    <https://arxiv.org/abs/1706.02677>`_, 2017.
  """
  _validation.check_integer_at_least(warmup_steps, "warmup_steps", 0)
  _validation.check_at_least(init_value, "init_value", 0.0)
  _validation.check_at_least(schedule, "schedule", 0.0, schedule_ok=True)
  _check_kind(kind, "kind", ("linear", "cosine"))
  after = schedule if callable(schedule) else _constant(schedule)
  ramp = _interpolate(init_value, after(0), warmup_steps, kind)
  return optax.join_schedules([ramp, after], [warmup_steps])


def wsd(
    peak_value: float,
    warmup_steps: int,
    stable_steps: int,
    decay_steps: int,
    end_value: float = 0.0,
    decay: Interpolation = "linear",
) -> optax.Schedule:
  r"""Warmup-stable-decay: linear warmup, a constant stretch, a cooldown.

  .. math::

    \eta_k = \begin{cases}
      \eta^\star k / W & k < W, \\
      \eta^\star & W \le k < W + S, \\
      \eta^\star + (\eta_{\mathrm{end}} - \eta^\star)\, w((k - W - S)/D)
        & k \ge W + S,
    \end{cases}

  with cooldown shape :math:`w(t)` = :math:`t` (linear),
  :math:`(1 - \cos \pi t)/2` (cosine) or :math:`\sqrt{t}` (``"sqrt"``: the
  :math:`1 - \sqrt{t}` cooldown of Hägele et al.), held at
  :math:`\eta_{\mathrm{end}}` after :math:`W + S + D` steps.

  Args:
    peak_value: :math:`\eta^\star`.
    warmup_steps: :math:`W \ge 0`.
    stable_steps: :math:`S \ge 0`.
    decay_steps: :math:`D \ge 0`.
    end_value: :math:`\eta_{\mathrm{end}}`.
    decay: ``"linear"``, ``"cosine"`` or ``"sqrt"``.

  Returns:
    A schedule (step count -> value).

  Example:
    >>> import nagd_optax as nagd
    >>> schedule = nagd.schedules.wsd(1.0, 10, 80, 10)
    >>> [round(float(schedule(k)), 4) for k in (5, 10, 90, 95, 100)]
    [0.5, 1.0, 1.0, 0.5, 0.0]

  References:
    Hägele et al., `Scaling Laws and Compute-Optimal Training Beyond Fixed
    Training Durations <https://arxiv.org/abs/2405.18392>`_, 2024.
  """
  for value, name in (
      (warmup_steps, "warmup_steps"),
      (stable_steps, "stable_steps"),
      (decay_steps, "decay_steps"),
  ):
    _validation.check_integer_at_least(value, name, 0)
  _validation.check_at_least(peak_value, "peak_value", 0.0)
  _validation.check_at_least(end_value, "end_value", 0.0)
  _check_kind(decay, "decay", ("linear", "cosine", "sqrt"))
  return optax.join_schedules(
      [
          _interpolate(0.0, peak_value, warmup_steps, "linear"),
          _constant(peak_value),
          _interpolate(peak_value, end_value, decay_steps, decay),
      ],
      [warmup_steps, warmup_steps + stable_steps],
  )


def inverse_sqrt(peak_value: float, warmup_steps: int) -> optax.Schedule:
  r"""Linear warmup, then decay with the inverse square root of the step.

  .. math::

    \eta_k = \begin{cases}
      \eta^\star k / W & k < W, \\
      \eta^\star \sqrt{W / k} & k \ge W.
    \end{cases}

  Args:
    peak_value: :math:`\eta^\star`, reached at step :math:`W`.
    warmup_steps: :math:`W \ge 1`.

  Returns:
    A schedule (step count -> value).

  Example:
    >>> import nagd_optax as nagd
    >>> schedule = nagd.schedules.inverse_sqrt(1.0, warmup_steps=100)
    >>> [round(float(schedule(k)), 4) for k in (50, 100, 400)]
    [0.5, 1.0, 0.5]

  References:
    Vaswani et al., `Attention Is All You Need
    <https://arxiv.org/abs/1706.03762>`_, 2017.
  """
  _validation.check_integer_at_least(warmup_steps, "warmup_steps", 1)
  _validation.check_at_least(peak_value, "peak_value", 0.0)

  def decay(steps_after_warmup):
    step = as_float(steps_after_warmup) + warmup_steps
    return peak_value * jnp.sqrt(warmup_steps / step)

  return optax.join_schedules(
      [_interpolate(0.0, peak_value, warmup_steps, "linear"), decay],
      [warmup_steps],
  )


def step_decay(init_value: float, factor: float, every: int) -> optax.Schedule:
  r"""Proportional (staircase) decay: :math:`\eta_k = \eta_0 f^{\lfloor k / n \rfloor}`.

  The same values as ``optax.exponential_decay(init_value, every, factor,
  staircase=True)``, but in the default float dtype (float64 when x64 is
  enabled), and with its arguments checked.

  Args:
    init_value: :math:`\eta_0`.
    factor: :math:`f \in (0, 1)`, applied every ``every`` steps.
    every: :math:`n \ge 1`.

  Returns:
    A schedule (step count -> value).

  Example:
    >>> import nagd_optax as nagd
    >>> schedule = nagd.schedules.step_decay(0.1, factor=0.5, every=30)
    >>> [round(float(schedule(k)), 4) for k in (0, 29, 30, 60)]
    [0.1, 0.1, 0.05, 0.025]

  References:
    He, Zhang, Ren & Sun, `Deep Residual Learning for Image Recognition
    <https://arxiv.org/abs/1512.03385>`_, 2016 (the step schedule of
    ImageNet training).
  """
  _validation.check_at_least(init_value, "init_value", 0.0)
  _validation.check_in_interval(factor, "factor", 0.0, 1.0)
  _validation.check_integer_at_least(every, "every", 1)

  def schedule(count: jax.typing.ArrayLike) -> jax.Array:
    # Not optax.exponential_decay: it divides the int32 step count by an
    # int, which JAX does in float32 even under x64, and takes the power in
    # float32 too, so a float64 run's learning rate would be off by ~1e-7
    # relative. The integer division here is exact, and the power is taken
    # in the default float dtype.
    stage = as_float(jnp.floor_divide(count, every))
    return init_value * factor**stage

  return schedule
