"""Construction-time checks of hyperparameters.

Every check applies to concrete Python (or NumPy) numbers only. A JAX array,
a tracer or a schedule passes through untouched, so that
``optax.inject_hyperparams(nagd.nagd)(...)``, which hands the factory arrays,
keeps working.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import jax
import numpy as np


def concrete_number(value: Any) -> float | None:
  """Returns ``value`` as a Python float if it is a concrete number, else None."""
  if isinstance(value, numbers.Real):
    return float(value)
  if (
      isinstance(value, np.ndarray)
      and value.shape == ()
      and np.issubdtype(value.dtype, np.number)
  ):
    return float(value)
  return None


def _check(
    value: Any, name: str, ok: Callable[[float], bool], requirement: str
) -> None:
  number = concrete_number(value)
  # NaN fails every comparison in `ok`, so it is rejected here too.
  if number is not None and not ok(number):
    raise ValueError(f"{name} must be {requirement}, got {value!r}.")


def _or_schedule(schedule_ok: bool) -> str:
  return " or a schedule" if schedule_ok else ""


def check_at_least(
    value: Any, name: str, minimum: float = 0.0, *, schedule_ok: bool = False
) -> None:
  """Raises ValueError unless a concrete ``value`` is finite and >= minimum."""
  _check(
      value,
      name,
      lambda x: math.isfinite(x) and x >= minimum,
      f"a finite number >= {minimum:g}{_or_schedule(schedule_ok)}",
  )


def check_in_interval(
    value: Any,
    name: str,
    low: float,
    high: float,
    *,
    include_low: bool = False,
    schedule_ok: bool = False,
) -> None:
  """Raises ValueError unless a concrete ``value`` lies in (low, high).

  With ``include_low`` the interval is [low, high).
  """
  bracket = "[" if include_low else "("
  _check(
      value,
      name,
      lambda x: (low <= x if include_low else low < x) and x < high,
      f"in {bracket}{low:g}, {high:g}){_or_schedule(schedule_ok)}",
  )


def check_integer_at_least(value: Any, name: str, minimum: int) -> None:
  """Raises ValueError unless ``value`` is an integer >= minimum.

  A JAX array (an injected hyperparameter) is not checked.
  """
  if isinstance(value, jax.Array):
    return
  is_integer = isinstance(value, numbers.Integral) and not isinstance(
      value, bool
  )
  if not is_integer or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
