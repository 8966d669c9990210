"""Construction-time checks of hyperparameters.

A hyperparameter whose value is known is checked: a Python number, a NumPy
scalar or 0-d array, or a concrete 0-d JAX array. Something that is not a
real number (a string, None, a list, a complex number, a bool, an array with
more than one element) raises TypeError; a real number out of range raises
ValueError. Both name the argument and say what it must be.

A tracer (an injected hyperparameter under ``jax.jit``, or one mapped over
with ``jax.vmap``) has no value yet and passes through, and so does a
schedule where one is allowed. ``optax.inject_hyperparams(nagd.nagd)(...)``
hands the factory concrete 0-d arrays at ``init`` outside jit, which are
checked, and tracers under jit, which are not.
"""

import math
import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


def concrete_number(value: Any) -> float | None:
  """Returns ``value`` as a Python float if it is a Python or NumPy number.

  JAX arrays give None even when concrete: callers decide from the result
  what to build (e.g. whether to add weight decay), and that decision has to
  be the same for the concrete arrays ``optax.inject_hyperparams`` passes at
  ``init`` and the tracers it passes under jit.
  """
  if isinstance(value, numbers.Real):
    return float(value)
  if (
      isinstance(value, np.ndarray)
      and value.shape == ()
      and np.issubdtype(value.dtype, np.number)
  ):
    return float(value)
  return None


def _is_unknown(value: Any) -> bool:
  """True for a value not known at construction: a tracer, or an array
  spread over processes, which no single process can read."""
  return isinstance(value, jax.core.Tracer) or (
      isinstance(value, jax.Array) and not value.is_fully_addressable
  )


def _scalar_array_kind(value: Any) -> str | None:
  """"integer" or "real" for a 0-d NumPy or JAX array of that kind, else None
  (bool and complex arrays are neither)."""
  if not isinstance(value, (np.ndarray, np.generic, jax.Array)):
    return None
  if np.shape(value) != ():
    return None
  if jnp.issubdtype(value.dtype, jnp.integer):
    return "integer"
  if jnp.issubdtype(value.dtype, jnp.floating):
    return "real"
  return None


def _describe(value: Any) -> str:
  if value is None:
    return "None"
  if isinstance(value, (bool, np.bool_)):
    return f"the bool {value!r}"
  if isinstance(value, str):
    return f"the string {value!r}"
  if isinstance(value, (np.ndarray, np.generic, jax.Array)):
    return f"an array of shape {np.shape(value)} and dtype {value.dtype}"
  if callable(value):
    return f"the callable {getattr(value, '__name__', type(value).__name__)}"
  return f"{value!r} of type {type(value).__name__}"


def _real_number(
    value: Any, name: str, requirement: str, schedule_ok: bool
) -> float | None:
  """The value of a concrete real number; None for a tracer or a schedule.

  Raises TypeError for anything else.
  """
  if _is_unknown(value) or (schedule_ok and callable(value)):
    return None
  if isinstance(value, numbers.Real) and not isinstance(value, bool):
    return float(value)
  if _scalar_array_kind(value) is not None:
    return float(value)
  if callable(value):
    requirement += " (not a schedule)"
  raise TypeError(f"{name} must be {requirement}, got {_describe(value)}.")


def _check(
    value: Any,
    name: str,
    ok: Callable[[float], bool],
    requirement: str,
    schedule_ok: bool,
) -> None:
  if schedule_ok:
    requirement += " or a schedule"
  number = _real_number(value, name, requirement, schedule_ok)
  # NaN fails every comparison in `ok`, so it is rejected here too.
  if number is not None and not ok(number):
    raise ValueError(f"{name} must be {requirement}, got {value!r}.")


def check_at_least(
    value: Any, name: str, minimum: float = 0.0, *, schedule_ok: bool = False
) -> None:
  """Checks that a concrete ``value`` is a finite real number >= minimum.

  Raises TypeError if it is not a real number (or, with ``schedule_ok``, a
  callable), ValueError if it is out of range. Tracers are not checked.
  """
  _check(
      value,
      name,
      lambda x: math.isfinite(x) and x >= minimum,
      f"a finite number >= {minimum:g}",
      schedule_ok,
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
  """Checks that a concrete ``value`` is a real number in (low, high).

  With ``include_low`` the interval is [low, high). Raises TypeError if it
  is not a real number (or, with ``schedule_ok``, a callable), ValueError if
  it is out of range. Tracers are not checked.
  """
  bracket = "[" if include_low else "("
  _check(
      value,
      name,
      lambda x: (low <= x if include_low else low < x) and x < high,
      f"a number in {bracket}{low:g}, {high:g})",
      schedule_ok,
  )


def check_integer_at_least(value: Any, name: str, minimum: int) -> None:
  """Checks that a concrete ``value`` is an integer >= minimum.

  Raises TypeError if it is not a number at all, ValueError if it is a
  number but not an integer (2.5, 5.0) or below ``minimum``. Integer arrays
  count as integers; tracers are not checked.
  """
  if _is_unknown(value):
    return
  requirement = f"an integer >= {minimum}"
  kind = _scalar_array_kind(value)
  if isinstance(value, numbers.Integral) and not isinstance(value, bool):
    number = int(value)
  elif kind == "integer":
    number = int(value)
  elif kind == "real" or (
      isinstance(value, numbers.Real) and not isinstance(value, bool)
  ):
    raise ValueError(f"{name} must be {requirement}, got {value!r}.")
  else:
    raise TypeError(f"{name} must be {requirement}, got {_describe(value)}.")
  if number < minimum:
    raise ValueError(f"{name} must be {requirement}, got {value!r}.")
