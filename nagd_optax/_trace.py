"""The Nesterov momentum trace, for constant momentum and momentum schedules."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nagd_optax import _validation
from nagd_optax.criteria import _protocol


class NesterovTraceState(NamedTuple):
  """State of :func:`nesterov_trace`.

  Attributes:
    count: steps taken since ``init`` (or since the last restart), int32. A
      momentum schedule is evaluated at this count.
    trace: the momentum buffer ``m``, one array per parameter.

  Example:
    >>> import jax.numpy as jnp
    >>> import nagd_optax as nagd
    >>> state = nagd.nesterov_trace(0.9).init({"w": jnp.zeros(3)})
    >>> int(state.count), state.trace["w"].shape
    (0, (3,))
  """

  count: jax.Array
  trace: optax.Updates


def _is_none(x: Any) -> bool:
  return x is None


def _check_floating(tree: Any, what: str, remedy: str) -> None:
  """Raises naming the first leaf of ``tree`` whose dtype is not floating.

  A momentum kept in an integer dtype rounds to nothing (0.9 becomes 0), and
  a float0 gradient (``jax.grad(allow_int=True)``) supports no arithmetic:
  both are refused by name rather than failing later or silently.
  """
  leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_none)[0]
  for path, leaf in leaves:
    if leaf is None or isinstance(leaf, optax.MaskedNode):
      continue
    dtype = jnp.dtype(getattr(leaf, "dtype", jnp.result_type(leaf)))
    if not jnp.issubdtype(dtype, jnp.inexact):
      raise TypeError(
          f"nesterov_trace: {what} {jax.tree_util.keystr(path) or '(root)'}"
          f" has dtype {dtype}. {remedy}"
      )


class _Scalar:
  """A scalar (a Python float, or a traced schedule value), cast once per
  arithmetic dtype.

  Every leaf computes ``gradient + momentum * buffer`` in the dtype of its
  arrays: the momentum is cast first, so a float32 schedule value (or an
  injected hyperparameter) never promotes a bfloat16 leaf, and a Python
  float keeps full precision for a float64 one. Casting it once per dtype
  rather than once per leaf keeps tracing a tree of hundreds of leaves
  cheap.
  """

  def __init__(self, value, keep=None):
    self.value = value
    # keep: None, or a traced 0 or 1 that multiplies the value once cast
    # (in the arithmetic dtype, so keep = 1 leaves it as cast, bit for bit).
    self.keep = keep
    self._cast = {}

  def like(self, gradient, buffer) -> jax.Array:
    """The value in the arithmetic dtype of ``gradient`` and ``buffer``."""
    key = (gradient.dtype, buffer.dtype, _is_weak(gradient), _is_weak(buffer))
    if key not in self._cast:
      dtype = jnp.result_type(gradient, buffer)
      value = jnp.asarray(self.value, dtype=dtype)
      if self.keep is not None:
        value = value * jnp.asarray(self.keep, dtype=dtype)
      self._cast[key] = value
    return self._cast[key]


def _is_weak(x) -> bool:
  return bool(getattr(jax.typeof(x), "weak_type", False))


def _as_arrays(tree: Any) -> Any:
  """``tree`` with Python numbers as arrays (None leaves stay None)."""
  return jax.tree.map(
      lambda x: x if x is None or hasattr(x, "dtype") else jnp.asarray(x),
      tree, is_leaf=_is_none)


def _leaves(updates: Any, state: NesterovTraceState):
  """The gradients and the buffers of ``state`` as lists of leaves (None
  where a gradient is None), each leaf's arithmetic dtype (None there), and
  the gradients' treedef."""
  grads, treedef = jax.tree.flatten(_as_arrays(updates), is_leaf=_is_none)
  buffers = treedef.flatten_up_to(state.trace)
  dtypes = [None if g is None else jnp.result_type(g, m)
            for g, m in zip(grads, buffers)]
  return grads, buffers, dtypes, treedef


# The per-leaf arithmetic below is written with lax rather than jnp's
# operators: the dtypes are made equal first, so it is the same computation,
# and each jnp operator costs a jit dispatch when traced, which on trees of
# hundreds of leaves adds up to a noticeable share of the compile time.


def _cast(x: jax.Array, dtype) -> jax.Array:
  """``x.astype(dtype)``, skipped when it is a no-op (tracing time)."""
  return x if x.dtype == dtype else jax.lax.convert_element_type(x, dtype)


# Buffers whose rounding XLA:CPU recomputes: it counts the conversion from
# a wider float to float16 (or float64 to float32) as one cheap unary
# instruction, so it duplicates the whole computation of the new buffer
# into the parameter update's kernel, which then reads the old buffer while
# the step overwrites it in place: XLA copies the old buffer every step.
# (bfloat16's conversion it counts as expensive, and materialises.)
_ROUNDING_RECOMPUTED = (jnp.dtype(jnp.float16), jnp.dtype(jnp.float32))
# Leaves up to this size are left to be copied: in cache the copy is cheap,
# and the select costs more (float16 steps on 488 leaves of 4,096 elements,
# ratio to Optax's: 1.11 with the select against 1.09 copied; on 122 of
# 16,384: 1.04 against 1.12), as well as compile time on many leaves.
_COPIED_AT_MOST = 4096


@jax.custom_jvp
def _same_sign_and_magnitude(x: jax.Array) -> jax.Array:
  """``copysign(|x|, x)``: ``x`` bit for bit, written so that XLA:CPU
  materialises it once.

  For float16 and float32 this is ``x`` in every bit pattern (all 65,536
  float16 ones and float32 infinities, NaNs, zeros and subnormals are
  checked in tests/test_trace.py). A select of two values is not a unary
  instruction, so XLA:CPU keeps it, and the rounding under it, in the
  kernel that writes the new buffer; the parameter update then reads the
  new buffer instead of recomputing it from the old one, and the old
  buffer is overwritten in place with no copy. Measured (float16 buffer,
  2-core CPU, interleaved, ratio to Optax's float32 step): one 4M leaf
  0.87 against 1.02 copied, the GPT-like tree of benchmarks/step_cost.py
  0.90 against 1.48.
  """
  bits = {2: jnp.int16, 4: jnp.int32}[x.dtype.itemsize]  # float16, float32
  magnitude = jax.lax.abs(x)
  negative = jax.lax.lt(jax.lax.bitcast_convert_type(x, bits),
                        jnp.zeros([], bits))
  return jax.lax.select(negative, jax.lax.neg(magnitude), magnitude)


@_same_sign_and_magnitude.defjvp
def _same_sign_and_magnitude_jvp(primals, tangents):
  # The identity's derivative, 1. Differentiated as written, abs and the
  # select give -1 where x is -0: through a buffer that underflowed to -0
  # the derivative would flip sign.
  (x,), (tangent,) = primals, tangents
  return _same_sign_and_magnitude(x), tangent


def _rounded(xs: list[jax.Array], dtypes: list) -> list[jax.Array]:
  """Each ``x`` rounded to its buffer's dtype (as :func:`_cast`); where
  XLA:CPU would recompute that rounding from the old buffer, and the leaf
  has more than ``_COPIED_AT_MOST`` elements, in a form it does not (see
  :func:`_same_sign_and_magnitude`), on CPU only (``criteria._protocol.
  on_cpu``): other backends compile the cast alone, the copy was measured
  only on CPU."""
  rounded = [_cast(x, dtype) for x, dtype in zip(xs, dtypes)]
  recomputed = [i for i, (x, r) in enumerate(zip(xs, rounded))
                if r is not x and r.dtype in _ROUNDING_RECOMPUTED
                and r.size > _COPIED_AT_MOST]
  if not recomputed:
    return rounded
  materialised = _protocol.on_cpu(
      lambda rs: [_same_sign_and_magnitude(r) for r in rs],
      [rounded[i] for i in recomputed])
  for i, r in zip(recomputed, materialised):
    rounded[i] = r
  return rounded


def _plus_momentum(gradient, buffer, momentum: _Scalar):
  """``gradient + momentum * buffer`` in the dtype of its arrays."""
  scalar = momentum.like(gradient, buffer)
  return jax.lax.add(_cast(gradient, scalar.dtype),
                     jax.lax.mul(scalar, _cast(buffer, scalar.dtype)))


def _minus_negated_momentum(gradient, buffer, negated: jax.Array):
  """``_plus_momentum`` written as ``gradient - (-momentum) * buffer``,
  given ``negated`` = -momentum in the arithmetic dtype.

  The same value bit for bit (negation is exact, and subtracting a negated
  number is adding it), but an expression XLA does not merge with the
  update's: a reduction over it then reads the gradient and the buffer
  directly instead of a materialised copy of the update.
  """
  return jax.lax.sub(_cast(gradient, negated.dtype),
                     jax.lax.mul(negated, _cast(buffer, negated.dtype)))


class _NesterovTrace(optax.GradientTransformation):
  """The transformation :func:`nesterov_trace` returns.

  A plain ``optax.GradientTransformation`` that also carries
  ``updates_again(gradients, state, new_state)``: the updates of the step
  from ``state`` to ``new_state``, recomputed from the gradients and the new
  buffer. :func:`nagd_optax.restart` hands these to its criteria, so that a
  norm of the update (the speed criterion) adds no parameter-sized
  temporary.

  It also carries ``updates_after_reset(gradients, state, new_state,
  reset)``: the same updates where ``reset`` is false, and where it is true
  the updates of the step from a fresh state (up to the sign of zero: a
  gradient of -0 gives -0 here, +0 from a fresh state), both written from
  the buffer the step stores (``new_state``, whose buffer is zero where
  ``reset``).
  :func:`nagd_optax.restart` uses it for criteria that replace the update
  that fired (``gradient(immediate=True)``): recomputing that update from
  the buffer before its reset made XLA keep a copy of the whole buffer.

  And ``fresh_where(reset, state, select=False)``: ``state``, or where
  ``reset`` (a traced boolean) the state ``init`` gives, with the buffer
  multiplied by 0 or 1 rather than selected (``select=True`` selects).
  :func:`nagd_optax.restart` resets through it: XLA:CPU compiles a distinct
  per-leaf kernel with a select in it markedly slower than one with a
  multiplication (``python -m benchmarks.step_cost`` measures both). It is
  the fresh state for every finite buffer (up to the sign of zero); a
  buffer that holds an infinity or NaN stays NaN (a restart asked for with
  ``update(..., restart=True)`` selects instead, and clears it).

  And ``update_reset_where(gradients, state, reset)``: ``update`` from
  ``fresh_where(reset, state)``, with the reset folded into the step (the
  buffer decays by mu * 0 where ``reset``; a buffer without a
  gradient is multiplied by 0), returning ``(updates, new_state,
  state_before)``, where ``state_before`` has the reset count and the
  buffer as given (``updates_again`` and ``updates_after_reset`` read only
  its count). :func:`nagd_optax.restart` resets through it before the
  update: one multiplication per element fewer.
  """


def _multiplied_by(keep: _Scalar):
  """``m -> m * keep`` in the buffer's dtype: a reset where keep is 0."""
  return lambda m: jax.lax.mul(m, keep.like(m, m))


def _count_reset_where(reset: jax.Array, count: jax.Array) -> jax.Array:
  return jnp.where(reset, jnp.zeros_like(count), count)


def _extrapolation_momentum(momentum, count) -> _Scalar:
  """mu_k, the momentum that extrapolates at step ``count``."""
  return _Scalar(momentum(count) if callable(momentum) else momentum)


def nesterov_trace(
    momentum: optax.ScalarOrSchedule = 0.9,
    *,
    accumulator_dtype: Any | None = None,
) -> optax.GradientTransformation:
  r"""Nesterov momentum, exact for constant momentum and for schedules.

  With gradients :math:`g_k`, the step count :math:`k = 0, 1, \dots` and
  :math:`\mu_k` the momentum at step :math:`k`, the buffer and the update are

  .. math::

    m_k = \mu_{k-1} m_{k-1} + g_k, \qquad m_{-1} = 0, \\
    u_k = g_k + \mu_k m_k .

  With a constant :math:`\mu` this is the Nesterov update of
  ``optax.sgd(lr, mu, nesterov=True)`` bit for bit, and of
  ``torch.optim.SGD(lr=lr, momentum=mu, nesterov=True)`` to rounding.

  With a schedule it is the classical two-sequence method, iteration for
  iteration: applying :math:`-\eta u_k` to the parameters :math:`y_k` is

  .. math::

    x_{k+1} = y_k - \eta \nabla f(y_k), \qquad
    y_{k+1} = x_{k+1} + \mu_k (x_{k+1} - x_k), \qquad x_0 = y_0 .

  Note the index shift: the momentum that extrapolates at step :math:`k`
  decays the buffer at step :math:`k + 1`. ``optax.trace`` uses one value
  for both and so drifts from the method by one index when its decay varies.
  (With a learning-rate schedule, the buffer form matches Optax/PyTorch; the
  two-sequence form would also rescale the buffer by
  :math:`\eta_{k-1}/\eta_k`.)

  Args:
    momentum: a float in ``[0, 1)``, or a schedule mapping the step count
      (int32, from 0) to the momentum :math:`\mu_k`, e.g.
      :func:`nagd_optax.schedules.nesterov_momentum`.
    accumulator_dtype: dtype in which the buffer is stored (e.g.
      ``jnp.bfloat16`` halves the optimizer memory of float32 parameters).
      ``None`` stores it in the parameters' dtype. Must be a float dtype.
      Arithmetic happens in the wider of the gradients' and the buffer's
      dtypes; the updates come out in the gradients' dtype. The buffer is
      rounded to its dtype before the extrapolation reads it, so
      :math:`u_k = g_k + \mu_k\,\mathrm{round}(m_k)`: that lets XLA update
      a bfloat16 or float16 buffer in place without a copy per leaf. (On
      CPU a float16 buffer, and a float32 one of float64 parameters, is
      written as ``copysign(|x|, x)``, the same bits, which XLA:CPU does
      not recompute from the old buffer; ``tests/test_memory.py``. Leaves
      of at most 4,096 elements are left to be copied: in cache that costs
      less than the select.)

  Returns:
    A :class:`optax.GradientTransformation` with state
    :class:`NesterovTraceState`.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import nagd_optax as nagd
    >>> optimizer = optax.chain(
    ...     nagd.nesterov_trace(nagd.schedules.nesterov_momentum()),
    ...     optax.scale_by_learning_rate(0.1),
    ... )
    >>> params = jnp.array([1.0, -2.0])
    >>> state = optimizer.init(params)
    >>> for _ in range(3):
    ...   grads = params  # gradient of 0.5 * ||params||^2
    ...   updates, state = optimizer.update(grads, state)
    ...   params = optax.apply_updates(params, updates)
    >>> [round(float(p), 5) for p in params]  # y_3 of the two-sequence method
    [0.66825, -1.3365]

  References:
    Nesterov, `A method for solving the convex programming problem with
    convergence rate O(1/k^2)`, Soviet Mathematics Doklady 27, 1983.

    Sutskever, Martens, Dahl & Hinton, `On the importance of initialization
    and momentum in deep learning
    <https://proceedings.mlr.press/v28/sutskever13.html>`_, ICML 2013.
  """
  _validation.check_in_interval(
      momentum, "momentum", 0.0, 1.0, include_low=True, schedule_ok=True
  )
  if accumulator_dtype is not None:
    accumulator_dtype = jax.dtypes.canonicalize_dtype(accumulator_dtype)
    if not jnp.issubdtype(accumulator_dtype, jnp.floating):
      raise ValueError(
          "accumulator_dtype must be a floating dtype (e.g. jnp.bfloat16),"
          f" got {accumulator_dtype}: an integer buffer would round the"
          " momentum away."
      )

  def init_fn(params):
    _check_floating(
        params, "parameter",
        "Momentum cannot be kept for integer or boolean parameters: leave"
        " them out of the optimizer (optax.masked, optax.partition with"
        " optax.set_to_zero, or nnx.Optimizer(..., wrt=nnx.Param)).",
    )
    return NesterovTraceState(
        count=jnp.zeros([], jnp.int32),
        trace=optax.tree.zeros_like(params, dtype=accumulator_dtype),
    )

  def update_fn(updates, state, params=None):
    del params
    return updated(updates, state)

  def updated(updates, state, keep=None):
    # keep (see update_reset_where) multiplies the decay of the buffer.
    updates = _as_arrays(updates)
    _check_floating(
        updates, "the gradient of",
        "A float0 gradient comes from jax.grad(..., allow_int=True) on an"
        " integer parameter: leave integer parameters out of the optimizer"
        " (optax.masked, or nnx.Optimizer(..., wrt=nnx.Param)).",
    )
    if callable(momentum):
      # Step k extrapolates with mu_k, which step k + 1 then uses to decay the
      # buffer; at k = 0 the buffer is zero, so any decay would do.
      decay = _Scalar(momentum(jnp.maximum(state.count - 1, 0)), keep)
    else:
      decay = _Scalar(momentum, keep)
    extrapolation = _extrapolation_momentum(momentum, state.count)
    # A None gradient (a parameter without one this step) keeps its buffer,
    # so the state's structure never changes.
    # Arithmetic runs in the wider of the two dtypes; the buffer is stored in
    # its own dtype, so no dtype changes between steps.
    # Where keep is 0 a buffer without a gradient this step is reset too.
    without_gradient = ((lambda m: m) if keep is None
                        else _multiplied_by(_Scalar(keep)))
    grads, buffers, _, treedef = _leaves(updates, state)
    new_buffers = _rounded([
        without_gradient(m) if g is None else _plus_momentum(g, m, decay)
        for g, m in zip(grads, buffers)], [m.dtype for m in buffers])
    # The extrapolation reads the buffer as stored: with a bf16 buffer it is
    # the rounded momentum, which lets XLA overwrite the old buffer in place
    # (reading the unrounded value made it copy every leaf each step).
    new_updates = [
        None if g is None
        else _cast(_plus_momentum(g, m, extrapolation), g.dtype)
        for g, m in zip(grads, new_buffers)]
    return treedef.unflatten(new_updates), NesterovTraceState(
        count=optax.safe_increment(state.count),
        trace=treedef.unflatten(new_buffers))

  def updates_again(updates, state, new_state):
    negated = _Scalar(-_extrapolation_momentum(momentum, state.count).value)
    grads, buffers, dtypes, treedef = _leaves(updates, new_state)
    present = [i for i, g in enumerate(grads) if g is not None]
    # A buffer is widened apart where criteria._protocol.separately_widened
    # says (bf16, and any buffer narrower than float64 arithmetic; not
    # float16 under float32).
    widened_apart = lambda i: _protocol.separately_widened(buffers[i],
                                                           dtypes[i])
    large = [i for i in present if not _protocol.is_small_leaf(grads[i])]
    # A large leaf's momentum is its own (one barrier for all of them), and
    # a bf16 buffer is converted apart from the update's conversion
    # (criteria._protocol.kept_apart): on CPU the reduction over these
    # updates then broadcasts the momentum and converts the buffer inside
    # itself, with no parameter-sized temporary. (A float16 buffer's
    # conversion YNNPACK does not take in, and XLA writes it out; kept
    # apart, the momentum's broadcast at least is not written out as well.)
    apart = [i for i in present if widened_apart(i)]
    groups = [(buffers[i],) for i in apart]
    if large:
      groups.append(tuple(negated.like(grads[i], buffers[i]) for i in large))
    kept = _protocol.kept_apart(groups)
    for i, (buffer,) in zip(apart, kept):
      buffers[i] = buffer
    scalars = kept[len(apart)] if large else ()
    out = [None] * len(grads)
    for i, scalar in zip(large, scalars):
      out[i] = _cast(_minus_negated_momentum(grads[i], buffers[i], scalar),
                     grads[i].dtype)
    # Small leaves are recomputed together, as the criteria reduce them.
    large_ones = set(large)
    small = lambda leaves: treedef.unflatten(
        [None if i in large_ones else x for i, x in enumerate(leaves)])
    together = jax.tree.leaves(_protocol.elementwise_map(
        lambda g, m: _cast(_minus_negated_momentum(
            g, m, negated.like(g, m)), g.dtype),
        small(grads), small(buffers)), is_leaf=_is_none)
    return treedef.unflatten(
        [out[i] if i in large_ones else x for i, x in enumerate(together)])

  def updates_after_reset(updates, state, new_state, reset):
    # From a fresh state (count 0, buffer 0) the step stores the buffer
    # 0 * mu + g_k = g_k in the buffer's dtype and returns
    # g_k + mu_0 * that; otherwise g_k + mu_k * m_k. Both read only the
    # gradients and the buffer as stored after the step.
    extrapolation = _extrapolation_momentum(momentum, state.count)
    first = _extrapolation_momentum(momentum, jnp.zeros([], jnp.int32))

    grads, buffers, dtypes, treedef = _leaves(updates, new_state)
    present = [i for i, g in enumerate(grads) if g is not None]
    # The buffer widened apart from the update's conversion of it (a bf16
    # buffer was otherwise written out whole in float32).
    wide = _protocol.widened([buffers[i] for i in present],
                             [dtypes[i] for i in present])

    def leaf(g, m, wide_m):
      fresh = first.like(g, m) * g.astype(m.dtype)
      kept = extrapolation.like(g, m) * wide_m
      return (g + jnp.where(reset, fresh, kept)).astype(g.dtype)

    out = [None] * len(grads)
    for i, wide_m in zip(present, wide):
      out[i] = leaf(grads[i], buffers[i], wide_m)
    return treedef.unflatten(out)

  def update_reset_where(updates, state, reset):
    # update_fn from the state reset where `reset`: the buffer is decayed
    # into the new one by mu * 0 instead of being multiplied by 0 first
    # (fresh_where); a buffer without a gradient this step is multiplied
    # by 0. The same values in exact arithmetic, and bit for bit where
    # reset is a scalar (a buffer holding an infinity or NaN gives NaN
    # either way); under vmap, where reset is batched, XLA:CPU compiles
    # (mu * keep) * m otherwise than mu * (m * keep), within a few ulp.
    # One multiplication per element fewer: a faster step for the loss
    # restart (benchmarks/results/README.md). The state before the update
    # comes back with its count reset and its buffer as it was:
    # updates_again and updates_after_reset read only its count.
    state = NesterovTraceState(
        count=_count_reset_where(reset, state.count), trace=state.trace)
    new_updates, new_state = updated(updates, state,
                                     keep=jnp.where(reset, 0, 1))
    return new_updates, new_state, state

  def fresh_where(reset, state, *, select=False):
    if select:  # slower to compile, but clears an infinity or NaN too
      reset_leaf = lambda m: jax.lax.select(reset, jnp.zeros_like(m), m)
    else:
      reset_leaf = _multiplied_by(_Scalar(jnp.where(reset, 0, 1)))
    return NesterovTraceState(
        count=_count_reset_where(reset, state.count),
        trace=jax.tree.map(reset_leaf, state.trace),
    )

  transformation = _NesterovTrace(init_fn, update_fn)
  transformation.updates_again = updates_again
  transformation.updates_after_reset = updates_after_reset
  transformation.fresh_where = fresh_where
  transformation.update_reset_where = update_reset_where
  return transformation
