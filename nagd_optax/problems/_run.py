"""Running an optimizer on an objective, in one XLA program."""

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax


def run_until(
    optimizer: optax.GradientTransformationExtraArgs,
    value_and_grad: Callable,
    x0: jax.typing.ArrayLike,
    threshold: float,
    max_steps: int = 10**6,
) -> tuple[int, optax.OptState]:
  """Steps ``optimizer`` until the loss at the parameters is at most threshold.

  One jitted ``jax.lax.while_loop``: at each step the loss and gradient at
  the current parameters are computed, the loop stops if the loss is at
  most ``threshold``, and otherwise the update is applied, with the loss
  passed as ``value=`` (for the loss-driven transformations). The count of
  steps is therefore the number of iterations needed to reach the
  threshold. Compiled once per (optimizer, value_and_grad, max_steps).

  Args:
    optimizer: the transformation to run; its ``update`` takes ``value=``
      (wrap a plain one in :func:`optax.with_extra_args_support`).
    value_and_grad: ``params -> (loss, gradient)``, in JAX.
    x0: the starting parameters (an array).
    threshold: the loss to reach.
    max_steps: the most steps to take.

  Returns:
    ``(steps, state)``: the steps taken (``max_steps`` if the threshold was
    not reached) and the final optimizer state.

  Example:
    >>> import nagd_optax as nagd
    >>> problem = nagd.problems.quadratic(10.0, n=5)
    >>> steps, state = nagd.problems.run_until(
    ...     nagd.nagd(1.0, 0.0), problem.value_and_grad, problem.x0, 1e-6)
    >>> steps
    46
  """
  steps, state = _run_until(
      optimizer, value_and_grad, jnp.asarray(x0), threshold, max_steps
  )
  return int(steps), state


@functools.partial(jax.jit, static_argnums=(0, 1, 4))
def _run_until(optimizer, value_and_grad, x0, threshold, max_steps):
  def not_done(carry):
    params, _, k = carry
    return (value_and_grad(params)[0] > threshold) & (k < max_steps)

  def step(carry):
    params, state, k = carry
    value, grads = value_and_grad(params)
    updates, state = optimizer.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state, k + 1

  _, state, k = jax.lax.while_loop(
      not_done, step, (x0, optimizer.init(x0), 0)
  )
  return k, state


def trajectory(
    optimizer: optax.GradientTransformationExtraArgs,
    value_and_grad: Callable,
    x0: jax.typing.ArrayLike,
    steps: int,
    *,
    iterates: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
  r"""Runs ``steps`` updates and returns the losses and the iterates.

  One jitted ``jax.lax.scan``; the loss at each step's parameters is passed
  to the update as ``value=``.

  Args:
    optimizer: the transformation to run; its ``update`` takes ``value=``.
    value_and_grad: ``params -> (loss, gradient)``, in JAX.
    x0: the starting parameters (an array).
    steps: the number of updates.
    iterates: whether to keep the iterates (``steps + 1`` copies of the
      parameters: leave it off for large problems).

  Returns:
    ``(values, iterates)`` as NumPy arrays. ``values[k]`` is the loss at the
    parameters :math:`x_k` of update :math:`k` (its ``value=``), for
    :math:`k = 0, \dots,` ``steps - 1``; ``iterates`` stacks
    :math:`x_0, \dots, x_{steps}` along a new first axis (shape
    ``(steps + 1, *x0.shape)``), or is ``None``.

  Example:
    >>> import nagd_optax as nagd
    >>> problem = nagd.problems.quadratic(10.0, n=5)
    >>> values, iterates = nagd.problems.trajectory(
    ...     nagd.nagd(1.0, 0.0), problem.value_and_grad, problem.x0, 3)
    >>> values.shape, iterates.shape
    ((3,), (4, 5))
  """
  values, path = _trajectory(optimizer, value_and_grad, jnp.asarray(x0),
                             steps, iterates)
  return np.asarray(values), None if path is None else np.asarray(path)


@functools.partial(jax.jit, static_argnums=(0, 1, 3, 4))
def _trajectory(optimizer, value_and_grad, x0, steps, keep_iterates):
  def step(carry, _):
    params, state = carry
    value, grads = value_and_grad(params)
    updates, state = optimizer.update(grads, state, params, value=value)
    params = optax.apply_updates(params, updates)
    return (params, state), (value, params if keep_iterates else None)

  _, (values, path) = jax.lax.scan(
      step, (x0, optimizer.init(x0)), length=steps
  )
  if keep_iterates:
    path = jnp.concatenate([x0[None], path])
  return values, path
