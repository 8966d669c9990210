"""A few scalar operations with several results, compiled as one kernel."""

from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

Out = TypeVar("Out")


def computed_together(fn: Callable[[Any], Out], inputs: Any) -> Out:
  """``fn(inputs)``, on CPU compiled as one kernel, with no derivative.

  ``fn`` is the scalar bookkeeping of an update, here
  :func:`nagd_optax.restart`'s: a criterion's test and statistics, the
  decision, the restart counters. XLA compiles each fusion to a kernel of
  its own, and scalar operations with several results make one fusion per
  result: six for the loss criterion, on XLA:CPU 10-25 ms of compile
  time apiece (``benchmarks/results/step_cost.md`` compares compile
  times). A small while loop, on the other hand, XLA:CPU compiles whole,
  as one kernel (its small-while-loop hoisting). So on CPU ``fn`` runs in a
  loop that runs once:

  - the loop's start flag passes an ``optimization_barrier``, so XLA
    cannot count its trips and replace the loop by its body;
  - the body reads ``inputs`` through a barrier together with the flag, so
    XLA does not hoist ``fn``'s operations out of the loop as invariant.

  XLA:CPU takes a loop in only while it reads and writes less than a
  kilobyte (``xla_cpu_small_while_loop_byte_threshold``), so ``inputs``
  are a few scalars or a short vector.

  Values closed over by ``fn`` (say the gradients, for a criterion that
  reads them) enter the loop as constants; the loop then reads large
  buffers, XLA leaves it as a loop, and the result is the same. The
  decision also reaches the parameter-sized kernels as a computed buffer,
  so XLA does not copy its operations into each of them. On other
  platforms (where a loop's condition may wait on the host at every step)
  ``fn`` is left to XLA, and outside ``jit`` it is called as it is.

  Derivatives do not flow through (inputs and closed-over values pass
  ``lax.stop_gradient``: reverse-mode differentiation does not go through
  a while loop). The restart's bookkeeping only feeds its decisions, which
  are piecewise constant, so no derivative of the updates is lost.

  Args:
    fn: a pure function of ``inputs`` (a pytree of scalars).
    inputs: its argument.

  Returns:
    ``fn(inputs)``.
  """
  leaves = jax.tree.leaves(inputs)
  if not any(isinstance(x, jax.core.Tracer) for x in leaves):
    return fn(inputs)
  inputs = jax.tree.map(jax.lax.stop_gradient, inputs)
  converted, closed_over = jax.closure_convert(fn, inputs)
  closed_over = [jax.lax.stop_gradient(c) for c in closed_over]
  leaves, treedef = jax.tree.flatten(inputs)
  shapes = jax.eval_shape(converted, inputs, *closed_over)
  results = jax.tree.structure(shapes)
  count = len(leaves)

  def call(operands):
    return jax.tree.leaves(
        converted(treedef.unflatten(operands[:count]), *operands[count:]))

  def once(*operands):
    inputs, constants = list(operands[:count]), list(operands[count:])

    def body(carry):
      start, inputs, _ = carry
      # Read through a barrier with the start flag, the inputs count as
      # changing in the loop: XLA does not hoist fn out of it. One barrier
      # per input: inside shard_map a barrier's results vary over every
      # mesh axis that one of its operands varies over.
      read = [jax.lax.optimization_barrier((start, x))[1] for x in inputs]
      return (jnp.zeros([], jnp.bool_), inputs, call(read + constants))

    start = jax.lax.optimization_barrier(jnp.ones([], jnp.bool_))
    placeholder = [_zeros(s) for s in jax.tree.leaves(shapes)]
    return jax.lax.while_loop(lambda carry: carry[0], body,
                              (start, inputs, placeholder))[2]

  return results.unflatten(jax.lax.platform_dependent(
      *leaves, *closed_over, cpu=once, default=lambda *o: call(list(o))))


def _zeros(shape: jax.ShapeDtypeStruct) -> jax.Array:
  """Zeros of ``shape``'s type, varying over the same ``shard_map`` axes
  (a loop's carry keeps its type)."""
  zeros = jnp.zeros(shape.shape, shape.dtype)
  manual_axis_type = getattr(shape, "manual_axis_type", None)
  axes = tuple(sorted(getattr(manual_axis_type, "varying", ())))
  return jax.lax.pcast(zeros, axes, to="varying") if axes else zeros
