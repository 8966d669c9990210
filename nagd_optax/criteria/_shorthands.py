"""The names accepted for a criterion: shorthands for the criterion objects."""

from typing import Any, Literal

from nagd_optax import _validation
from nagd_optax.criteria import _loss
from nagd_optax.criteria import _protocol
from nagd_optax.criteria import _schedule
from nagd_optax.criteria import _step

Name = Literal["loss", "gradient", "speed", "interval", "on_demand"]
NAMES: tuple[str, ...] = ("loss", "gradient", "speed", "interval", "on_demand")


def resolve(
    criterion: Any,
    *,
    loss_smoothing: Any = None,
    noise_tolerance: Any = None,
    min_interval: Any = None,
    argument: str = "criterion",
) -> _protocol.Criterion:
  """The :class:`Criterion` that ``criterion`` names (or is).

  The keyword arguments configure a named criterion, as
  ``restart(inner, "loss", loss_smoothing=0.98)`` always did: they map to the
  criterion's own arguments. None leaves the criterion's default.

  Args:
    criterion: a :class:`Criterion` or one of :data:`NAMES`.
    loss_smoothing: ``smoothing`` of :func:`loss`.
    noise_tolerance: ``noise_tolerance`` of :func:`loss`.
    min_interval: ``min_interval`` of every named criterion; the period of
      ``"interval"``.
    argument: the caller's name for ``criterion``, for error messages.
  """
  given = {
      name: value
      for name, value in (
          ("loss_smoothing", loss_smoothing),
          ("noise_tolerance", noise_tolerance),
          ("min_interval", min_interval),
      )
      if value is not None
  }
  if isinstance(criterion, _protocol.Criterion):
    if given:
      raise ValueError(
          f"{', '.join(given)} configure the criteria named by strings; give"
          " them to the criterion object instead, e.g."
          " nagd.criteria.loss(smoothing=0.98, min_interval=5)."
      )
    return criterion
  if not isinstance(criterion, str) or criterion not in NAMES:
    raise ValueError(
        f"{argument} must be a nagd.criteria.Criterion or one of"
        f" {', '.join(map(repr, NAMES))}; got {criterion!r}."
    )
  for name in ("loss_smoothing", "noise_tolerance"):
    # An injected zero (an array) is no request for smoothing either.
    if criterion != "loss" and _validation.concrete_number(
        given.get(name)
    ) not in (None, 0.0):
      raise ValueError(
          f"{name} applies to criterion 'loss' only; {criterion!r} does not"
          " read the loss."
      )
  interval = {} if min_interval is None else {"min_interval": min_interval}
  if criterion == "loss":
    # Checked here too, so that errors name the argument the caller wrote.
    if loss_smoothing is not None:
      _validation.check_in_interval(
          loss_smoothing, "loss_smoothing", 0.0, 1.0, include_low=True
      )
    options = {}
    if loss_smoothing is not None:
      options["smoothing"] = loss_smoothing
    if noise_tolerance is not None:
      options["noise_tolerance"] = noise_tolerance
    return _loss.loss(**options, **interval)
  if criterion == "gradient":
    return _step.gradient(**interval)
  if criterion == "speed":
    return _step.speed(**interval)
  if criterion == "interval":
    if min_interval is None:
      raise ValueError(
          "criterion 'interval' restarts every min_interval updates: pass"
          " min_interval (an integer >= 1), or use nagd.criteria.every(period)."
      )
    _validation.check_integer_at_least(min_interval, "min_interval", 1)
    return _schedule.every(min_interval)
  return _schedule.on_demand()
