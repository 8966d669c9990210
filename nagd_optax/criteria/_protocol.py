"""What a restart criterion is: a small protocol, and the reductions it uses."""

from collections.abc import Callable, Iterator
import collections
import contextlib
import contextvars
import functools
from typing import Any, NamedTuple

import jax
from jax.extend.core import get_opaque_trace_state
import jax.numpy as jnp
import numpy as np
import optax


class StepInfo(NamedTuple):
  """What :func:`nagd_optax.restart` shows a criterion at one update.

  Attributes:
    gradients: the updates handed to the restart wrapper, :math:`g_k` (the
      gradients, when it comes first in the chain).
    params: the parameters :math:`y_k` passed to ``update`` (or None).
    steps: updates since the inner state was last (re)initialised: before
      this update in ``before_update``, after it in ``after_update``; int32.
    extra_args: the keyword arguments of ``update`` (``value=``, ...).
    axis_name: the wrapper's ``axis_name``; use :meth:`inner_product`, which
      reduces over it correctly.
    updates: the inner transformation's output :math:`u_k` (``after_update``
      of criteria with ``reads_updates`` only).
    momentum: the inner state's momentum buffer :math:`m_k` after the update
      (``after_update`` of criteria with ``reads_momentum`` only).

  Example:
    A criterion that restarts once the gradient is small, read from the
    step information:

    >>> import jax.numpy as jnp
    >>> import optax
    >>> import nagd_optax as nagd
    >>> def small_gradient(threshold):
    ...   def after_update(state, info):
    ...     norm = jnp.sqrt(info.inner_product(info.gradients, info.gradients))
    ...     return norm < threshold, state
    ...   return nagd.criteria.Criterion(
    ...       init=lambda params: optax.EmptyState(),
    ...       after_update=after_update)
    >>> optimizer = nagd.nagd(0.1, restart=small_gradient(0.5))
    >>> state = optimizer.init(jnp.ones(2))
    >>> _, state = optimizer.update(jnp.array([0.3, 0.0]), state)
    >>> bool(state[0].restart_pending)
    True
  """

  gradients: optax.Updates
  params: optax.Params | None
  steps: jax.Array
  extra_args: dict[str, Any]
  axis_name: str | None = None
  updates: optax.Updates | None = None
  momentum: optax.Updates | None = None

  def inner_product(self, a: optax.Updates, b: optax.Updates) -> jax.Array:
    """:func:`tree_inner_product` over this update's ``axis_name``."""
    return tree_inner_product(a, b, self.axis_name)


class Criterion(NamedTuple):
  r"""A restart criterion: when :func:`nagd_optax.restart` resets its inner
  state.

  Like an :class:`optax.GradientTransformation`, a criterion is a tuple of
  pure functions around a state of its own (scalars: it must add no
  parameter-sized buffer). The wrapper calls, at every update,

  1. ``before_update(state, info) -> (restart_now, state)``, where ``info``
     is a :class:`StepInfo` without ``updates``/``momentum``: if
     ``restart_now``, this very update starts from a fresh inner state (the
     loss criterion does this: the loss at the parameters is known before
     the update);
  2. the inner update;
  3. ``after_update(state, info) -> (restart, state)``, ``info`` now holding
     the inner update and (with ``reads_momentum``) the momentum buffer: if
     ``restart``, the *next* update starts from a fresh inner state, or,
     with ``immediate=True``, this update is recomputed from a fresh state
     and the inner state is left fresh.

  Either function may be None. Decisions are boolean scalars (they may be
  traced); the wrapper applies them with a select, never a branch.

  Both must be pure functions. ``after_update`` is traced twice per update:
  once for its inner products (:meth:`StepInfo.inner_product`,
  :func:`tree_inner_product`), which run as reductions over the
  parameters, and once for its test on their values, which the wrapper
  compiles on CPU into one kernel with its counters; a ``jax.debug.print``
  or callback in it runs twice per step. Where that cannot be done (its
  inner products taken inside a nested transformation such as
  ``jax.checkpoint``, ``lax.cond``, ``vmap`` or ``jit``, or other ones
  when traced again: more, fewer, or of arrays it computes anew, which are
  new arrays on each trace), it is called once more as it is. The
  criterion's state carries no derivative.

  Attributes:
    init: ``params -> state``, the criterion's initial state (a pytree of
      scalars; ``optax.EmptyState()`` for none).
    before_update: the test on what is known before the update, or None.
    after_update: the test on the update just computed, or None.
    reads_momentum: whether ``after_update`` needs ``info.momentum``; the
      wrapper then checks at ``init`` that the inner state has a usable
      momentum buffer.
    immediate: whether a restart from ``after_update`` replaces this update
      instead of acting on the next one.
    reads_updates: whether ``after_update`` needs ``info.updates`` (the
      default); a criterion that does not can say so, and the wrapper then
      leaves it None instead of handing over a recomputation of the update
      that XLA would discard (tracing time on large trees).

  Example:
    A criterion of one's own: restart when a held-out loss, passed to
    ``update`` as an extra keyword argument, rises above its lowest value.

    >>> import jax.numpy as jnp
    >>> import optax
    >>> import nagd_optax as nagd
    >>> def held_out_rises():
    ...   def before_update(lowest, info):
    ...     loss = info.extra_args["held_out_loss"]
    ...     return loss > lowest, jnp.minimum(lowest, loss)
    ...   return nagd.criteria.Criterion(
    ...       init=lambda params: jnp.asarray(jnp.inf),
    ...       before_update=before_update)
    >>> optimizer = nagd.nagd(0.1, 0.9, restart=held_out_rises())
    >>> params = jnp.ones(2)
    >>> state = optimizer.init(params)
    >>> for held_out in [3.0, 2.0, 2.5, 1.0]:  # 2.5 rose: restart
    ...   _, state = optimizer.update(params, state, params,
    ...                               held_out_loss=held_out)
    >>> int(optax.tree.get(state, "restarts"))
    1
  """

  init: Callable[[optax.Params], Any]
  before_update: Callable[[Any, StepInfo], tuple[jax.Array, Any]] | None = (
      None
  )
  after_update: Callable[[Any, StepInfo], tuple[jax.Array, Any]] | None = (
      None
  )
  reads_momentum: bool = False
  immediate: bool = False
  reads_updates: bool = True


def no_state(params: optax.Params) -> optax.EmptyState:
  """The ``init`` of a criterion that remembers nothing."""
  del params
  return optax.EmptyState()


# Leaves of at most _SMALL_LEAF_SIZE elements share one reduction, up to
# _GATHERED_SIZE elements in all: gathering them is a copy (a temporary), so
# on a tree of many small leaves the rest are reduced one by one.
_SMALL_LEAF_SIZE = 4096
_GATHERED_SIZE = 65536
# More scalars than this are summed as one vector (see _sum_of_scalars).
_SUMMED_ONE_BY_ONE = 4
# The partial products that a restart criterion's bookkeeping receives as
# a vector: more are summed first (XLA:CPU compiles the bookkeeping as one
# kernel only while it reads less than a kilobyte).
_RECORDED_AT_MOST = 128


def is_small_leaf(x: jax.Array) -> bool:
  """Whether :func:`elementwise_map` and :func:`tree_inner_product` may
  gather ``x`` with other small leaves."""
  return x.size <= _SMALL_LEAF_SIZE


def _gathered(indices: list[int], sizes: list[int]) -> tuple[list[int],
                                                            list[int]]:
  """``indices`` split into those gathered into one array (the first ones,
  up to ``_GATHERED_SIZE`` elements in all, ``sizes[i]`` for index ``i``)
  and the rest."""
  total = 0
  for count, i in enumerate(indices):
    total += sizes[i]
    if total > _GATHERED_SIZE:
      return indices[:count], indices[count:]
  return indices, []


# Small leaves are raveled, concatenated and split with lax rather than jnp
# (the same operations): jnp's indexing and reshaping cost tracing time per
# leaf, on a transformer's hundred biases and norm scales a noticeable share
# of the compile time.


def _raveled(x: jax.Array) -> jax.Array:
  return x if x.ndim == 1 else jax.lax.reshape(x, (x.size,))


def _concatenated(xs: list[jax.Array]) -> jax.Array:
  """The 1-D arrays ``xs`` (of one dtype) end to end."""
  return xs[0] if len(xs) == 1 else jax.lax.concatenate(xs, 0)


def _dot(x: jax.Array, y: jax.Array) -> jax.Array:
  """<x, y> over every element (the real part, for complex leaves)."""
  if jnp.iscomplexobj(x) or jnp.iscomplexobj(y):
    return jnp.sum(jnp.real(jnp.conj(x) * y))
  return jnp.sum(x * y)


def _accumulation_dtype(x: jax.Array) -> jnp.dtype:
  # Reductions over bf16/f16 leaves accumulate in float32 (free inside the
  # reduction); float64 stays float64.
  return jnp.promote_types(x.dtype, jnp.float32)


def on_cpu(fn: Callable[..., list[jax.Array]], xs: list[jax.Array],
           *inputs: list[jax.Array]) -> list[jax.Array]:
  """``fn(xs, *inputs)`` (new values for ``xs``) where the program is
  compiled for CPU, ``xs`` as they are elsewhere: for what works around
  XLA:CPU's choices and was measured only there. One
  ``lax.platform_dependent`` covers all the arrays (one per leaf costs
  tracing time on trees of hundreds of leaves)."""
  sizes = [len(xs)] + [len(group) for group in inputs]

  def on_cpu_operands(*operands):
    groups, start = [], 0
    for size in sizes:
      groups.append(list(operands[start:start + size]))
      start += size
    return fn(*groups)

  return list(jax.lax.platform_dependent(
      *xs, *(x for group in inputs for x in group),
      cpu=on_cpu_operands, default=lambda *operands: list(operands[:len(xs)])))


def kept_apart(groups: list[tuple[jax.Array, ...]]
               ) -> list[tuple[jax.Array, ...]]:
  """``groups`` unchanged, as values XLA:CPU will not merge with equal ones.

  XLA merges equal computations across a program (common subexpression
  elimination). Two merges cost XLA:CPU memory and time in a criterion's
  reduction, which it hands to its YNNPACK kernels; these take in only
  operations none of whose results is used outside the reduction, and
  write a shared one out whole:

  - the float32 conversion of a bfloat16 momentum buffer, shared with the
    update's: a float32 temporary as large as the parameters (the bf16
    step with the gradient test ran at 3.0x Optax's instead of 1.4x on a
    GPT-like tree);
  - the broadcast of the momentum scalar, shared by the reductions of all
    leaves of one shape in the speed test: a leaf-sized buffer per shape
    (8% of a GPT-like tree's parameters), and 10% of the step.

  Passing each group (say a bf16 buffer, or the momentum scalar once per
  large leaf: one value per reduction) through a
  ``lax.optimization_barrier`` of its own makes its values its own, on CPU
  (:func:`on_cpu`); on other platforms the values are left to XLA. Inside
  ``shard_map`` a barrier's results vary over every mesh axis that one of
  its operands varies over, so each group is cast to that first.
  """
  flat = []
  for group in groups:
    axes = frozenset().union(*(_varying_axes(v) for v in group))
    flat.extend(
        jax.lax.pcast(v, tuple(sorted(axes - _varying_axes(v))),
                      to="varying") if axes - _varying_axes(v) else v
        for v in group)
  if not flat:
    return []

  def regroup(values):
    values = iter(values)
    return [tuple(next(values) for _ in group) for group in groups]

  def barriers(values):
    return [v for group in regroup(values)
            for v in jax.lax.optimization_barrier(group)]

  return regroup(on_cpu(barriers, flat))


def separately_widened(x: jax.Array, dtype) -> bool:
  """Whether :func:`widened` keeps ``x``'s conversion to ``dtype`` apart.

  For bfloat16, whose conversion XLA:CPU's YNNPACK reductions take in, and
  for any narrower buffer of float64 arithmetic (reduced by XLA itself: a
  float32 buffer's float64 conversion shared with the update's was written
  out whole for the gradient test, as large as the float64 parameters).
  YNNPACK does not take float16 in: its float32 conversion is written out
  whole, kept apart or not (tests/test_memory.py), so it is left to XLA.
  """
  return x.dtype != dtype and (x.dtype == jnp.bfloat16
                               or jnp.dtype(dtype) == jnp.float64)


def widened(xs: list[jax.Array], dtypes: list) -> list[jax.Array]:
  """``[x.astype(dtype) ...]``, a bfloat16 ``x`` converted apart from other
  conversions of it (see :func:`kept_apart` and
  :func:`separately_widened`): for reductions over a bfloat16 buffer."""
  apart = [i for i, (x, dtype) in enumerate(zip(xs, dtypes))
           if separately_widened(x, dtype)]
  out = list(xs)
  for i, (x,) in zip(apart, kept_apart([(xs[i],) for i in apart])):
    out[i] = x
  return [x if x.dtype == dtype else x.astype(dtype)
          for x, dtype in zip(out, dtypes)]


def _varying_axes(x: jax.Array) -> frozenset[str]:
  """The manual mesh axes over which ``x`` varies inside ``shard_map``.

  JAX tracks this when ``check_vma=True`` (its default) and reports it on
  the value's type; outside ``shard_map``, under ``pmap`` and with
  ``check_vma=False`` the set is empty.
  """
  manual_axis_type = getattr(jax.typeof(x), "manual_axis_type", None)
  return frozenset(getattr(manual_axis_type, "varying", ()))


def elementwise_map(fn: Callable[..., jax.Array], tree: Any,
                    *rest: Any) -> Any:
  """``jax.tree.map(fn, tree, *rest)`` for an elementwise ``fn``, with the
  small leaves computed together.

  Leaves of at most ``_SMALL_LEAF_SIZE`` elements are raveled and
  concatenated (grouped by their dtypes and the mesh axes they vary over;
  up to ``_GATHERED_SIZE`` elements in all, the rest are mapped one by one),
  ``fn`` is applied once per group and the result is split back into
  leaves. Where :func:`tree_inner_product` then gathers the same small
  leaves in the same order (leaves of one dtype, outside ``shard_map`` or
  over one mesh axis; it groups by accumulation dtype, so bf16 leaves next
  to float32 ones fall in another order), it reduces the array they were
  split from, within :func:`split_leaves_remembered`, and otherwise
  concatenates them again, which XLA folds into one kernel that reads the
  inputs' small leaves directly (the values are the same either way).
  Mapped leaf by leaf instead, XLA writes each small leaf's result in a
  kernel of its own first (about a hundred on a transformer's biases and
  norm scales), which costs compile time. Leaves that are None in
  ``tree`` give None.
  """
  flat, treedef = jax.tree.flatten(tree, is_leaf=lambda x: x is None)
  others = [treedef.flatten_up_to(other) for other in rest]
  out = [None] * len(flat)
  small = collections.defaultdict(list)
  for i, leaves in enumerate(zip(flat, *others)):
    if leaves[0] is None:
      continue
    if not is_small_leaf(leaves[0]):
      out[i] = fn(*leaves)
      continue
    key = tuple((x.dtype, _varying_axes(x)) for x in leaves)
    small[key].append(i)
  sizes = [0 if x is None else x.size for x in flat]
  for group in small.values():
    indices, one_by_one = _gathered(group, sizes)
    for i in one_by_one:
      out[i] = fn(*(leaves[i] for leaves in [flat, *others]))
    if not indices:
      continue
    together = fn(*(
        _concatenated([_raveled(leaves[i]) for i in indices])
        for leaves in [flat, *others]
    ))
    offset = 0
    views = _SPLIT.get()
    for i in indices:
      size = flat[i].size
      out[i] = jax.lax.reshape(
          jax.lax.slice_in_dim(together, offset, offset + size),
          flat[i].shape)
      if views is not None:
        views[id(out[i])] = (out[i], together, offset)
      offset += size
  return treedef.unflatten(out)


# The small leaves elementwise_map split from one array, within
# split_leaves_remembered: {id(leaf): (leaf, array, offset)}.
_SPLIT: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "nagd_optax_split_leaves", default=None)


@contextlib.contextmanager
def split_leaves_remembered() -> Iterator[None]:
  """Within this context :func:`tree_inner_product` reduces small leaves
  that :func:`elementwise_map` computed together, and are gathered again in
  the same order, as the array they were split from (the same values)
  instead of slicing and concatenating them anew.

  XLA folds the slices and the concatenation away, but JAX lowers each
  slice to StableHLO as a function of its own: 98 for the speed test's
  recomputed update on the GPT-like tree of ``benchmarks/step_cost.py``
  (its biases and norm scales), about 0.1 ms apiece on the 2-core CPU.
  :func:`nagd_optax.restart` opens it around its criterion's test.
  """
  token = _SPLIT.set({})
  try:
    yield
  finally:
    _SPLIT.reset(token)


def _split_from(xs: list[jax.Array]) -> jax.Array | None:
  """The array that :func:`elementwise_map` split all of into ``xs``, in
  this order, or None."""
  views = _SPLIT.get()
  if not views:
    return None
  whole, offset = None, 0
  for x in xs:
    leaf, array, start = views.get(id(x), (None, None, None))
    if leaf is not x or start != offset or (whole is not None
                                            and array is not whole):
      return None
    whole, offset = array, offset + x.size
  return whole if offset == whole.size else None


def tree_inner_product(
    a: optax.Updates, b: optax.Updates, axis_name: str | None = None
) -> jax.Array:
  r""":math:`\mathrm{Re} \sum_i \langle a_i, b_i \rangle` over the leaves,
  across devices when the leaves are sharded over ``axis_name``.

  Leaves that are None in ``a`` or masked out (``optax.MaskedNode``) in
  ``b`` are skipped; complex leaves contribute
  :math:`\mathrm{Re}(\bar a_i b_i)`; bf16/f16 leaves are accumulated in
  float32. The order of summation is XLA's and depends on how the leaves
  are grouped (small leaves gathered into one reduction, the rest one by
  one): the result is exact to rounding, not bit for bit across versions
  of this function or layouts of the tree.

  Inside ``jax.shard_map``, a leaf that is sharded over ``axis_name`` holds
  a different part of the parameter on each device, so its partial sums are
  ``psum``-ed; a leaf that is replicated over it (a bias next to sharded
  weights) already holds the whole parameter and is counted once. JAX tells
  the two apart when ``shard_map`` checks varying axes (``check_vma=True``,
  its default). Where it does not (``check_vma=False``, ``pmap``), every leaf
  is taken as sharded, which is exact when all of them are.

  Args:
    a: a tree of arrays (e.g. the gradients).
    b: a tree with the structure of ``a`` (e.g. the momentum buffer).
    axis_name: the mapped axis to reduce over, or None.

  Returns:
    A scalar, the same on every device along ``axis_name``.

  Example:
    >>> import jax.numpy as jnp
    >>> import nagd_optax as nagd
    >>> a = {"w": jnp.array([1.0, 2.0]), "b": jnp.array(3.0)}
    >>> float(nagd.criteria.tree_inner_product(a, a))
    14.0
  """
  session = _REDUCTIONS.get()
  if session is not None and not session.traced_here():
    # Inside a nested transformation of the criterion (jax.checkpoint,
    # lax.cond, vmap, jit): values of its trace cannot leave it.
    session.nested = True
    session = None
  if session is not None and session.replayed is not None:
    return _summed(*session.next(_operands(a, b, axis_name)))
  across, local, own = _partial_products(a, b, axis_name)
  if session is None:
    return _summed(across, local)
  # Recorded as one vector, which the restart's scalar bookkeeping sums
  # inside its one kernel (and not in a kernel of its own).
  if local is not None:
    local = _vector([_sum_of_scalars(local)] if len(local) > _RECORDED_AT_MOST
                    else local)
  session.recorded.values.append((across, local))
  session.recorded.operands.append(_operands(a, b, axis_name))
  session.recorded.own_products.append(
      (jax.tree.structure(a, is_leaf=lambda x: x is None), own))
  return _summed(across, local)


def _partial_products(
    a: optax.Updates, b: optax.Updates, axis_name: str | None
) -> tuple[jax.Array | None, list[jax.Array] | None, dict[int, jax.Array]]:
  """:func:`tree_inner_product` before its last sums: the part reduced
  across devices (None without ``axis_name``), the local partial products
  (None when everything was reduced across devices), and the products of
  the large leaves (each reduced on its own), keyed by the leaf's position
  in ``a`` (None leaves counted)."""
  varying, invariant = [], []
  own = {}
  # Small leaves (biases, norm scales) are concatenated and reduced at once:
  # one reduction per leaf costs compile time (about 3 ms each on CPU), and
  # copying a few thousand numbers costs next to nothing. Not more than
  # _GATHERED_SIZE elements: the copy is a temporary.
  small = collections.defaultdict(list)

  leaves, structure = jax.tree.flatten(a, is_leaf=lambda x: x is None)
  pairs, positions = [], []
  for position, (x, y) in enumerate(zip(leaves,
                                        structure.flatten_up_to(b))):
    if x is not None and not isinstance(y, optax.MaskedNode):
      pairs.append((x, y))
      positions.append(position)
  dtypes = [_accumulation_dtype(x) for x, _ in pairs]
  # Each array widened once (a squared norm reads each leaf twice), all in
  # one go (see widened).
  todo = {}
  for pair, dtype in zip(pairs, dtypes):
    for v in pair:
      todo.setdefault((id(v), dtype), (v, dtype))
  wide = dict(zip(todo, widened([v for v, _ in todo.values()],
                                [d for _, d in todo.values()])))

  for (x, y), dtype, position in zip(pairs, dtypes, positions):
    x, y = wide[id(x), dtype], wide[id(y), dtype]
    sharded = axis_name is not None and axis_name in (
        _varying_axes(x) | _varying_axes(y))
    if is_small_leaf(x):
      small[sharded, dtype].append((x, y))
      continue
    own[position] = _dot(x, y)
    (varying if sharded else invariant).append(own[position])

  def gathered(leaves):
    whole = _split_from(leaves)
    if whole is not None:
      return whole
    return _concatenated([_raveled(x) for x in leaves])

  for (sharded, _), small_pairs in small.items():
    products = varying if sharded else invariant
    indices, one_by_one = _gathered(list(range(len(small_pairs))),
                                    [x.size for x, _ in small_pairs])
    products.extend(_dot(*map(_raveled, small_pairs[i])) for i in one_by_one)
    if not indices:
      continue
    xs, ys = zip(*(small_pairs[i] for i in indices))
    x = gathered(xs)
    if a is b:  # a squared norm: one concatenation
      y = x
    else:
      y = gathered(ys)
    products.append(_dot(x, y))
  if axis_name is None:
    return None, invariant, own
  if not varying:
    # Nothing is known to vary over the axis: either JAX does not track it
    # (every leaf is then taken as sharded) or every leaf is replicated,
    # where the psum scales the whole product by the axis size, which no
    # criterion's comparison depends on.
    return jax.lax.psum(_sum_of_scalars(invariant), axis_name), None, own
  return (jax.lax.psum(_sum_of_scalars(varying), axis_name), invariant,
          own)


def _summed(across: jax.Array | None,
            local: list[jax.Array] | jax.Array | None) -> jax.Array:
  """The inner product from :func:`_partial_products` (``local`` a list of
  scalars, or a vector of them)."""
  if local is None:
    return across
  if isinstance(local, list):
    total = _sum_of_scalars(local)
  else:
    total = jnp.sum(local) + jnp.zeros([], jnp.float32)
  return total if across is None else across + total


def _sum_of_scalars(xs: list[jax.Array]) -> jax.Array:
  """``sum(xs)`` of many scalars (one per large leaf), in float32 or wider.

  Added up as they are, XLA makes one fusion of the additions, with an
  operand per scalar, and compiles it slowly: on XLA:CPU 30 ms for the 50
  products of a GPT-like tree and 0.25 s for the 480 of a tree of small
  leaves. Stacked into one vector and reduced, they cost a concatenation
  and a reduction (XLA would turn a reduction of the concatenation back
  into the additions, hence the barrier between them).
  """
  zero = jnp.zeros([], jnp.float32)
  if len(xs) <= _SUMMED_ONE_BY_ONE:
    return sum(xs, zero)
  return jnp.sum(jax.lax.optimization_barrier(_vector(xs))) + zero


def _vector(xs: list[jax.Array]) -> jax.Array:
  """The scalars ``xs`` as one vector (of their common dtype)."""
  if not xs:
    return jnp.zeros([0], jnp.float32)
  return jnp.stack(jnp.broadcast_arrays(*xs))


class Recording(NamedTuple):
  """The inner products a criterion took, per call of
  :func:`tree_inner_product`, in order.

  Attributes:
    values: the part reduced across devices (or None) and a vector of the
      local partial products (or None).
    operands: the arrays it was called with (the leaves of both trees, and
      the axis name): a replay must be called with the same arrays.
    own_products: the structure of the first tree (None leaves counted)
      and the products of its large leaves, by position (see
      :func:`released`).
  """
  values: list[Any]
  operands: list[Any]
  own_products: list[Any]


def _operands(a: optax.Updates, b: optax.Updates,
              axis_name: str | None) -> tuple:
  return tuple(jax.tree.leaves(a)), tuple(jax.tree.leaves(b)), axis_name


def _same_operands(taken: tuple, recorded: tuple) -> bool:
  """Whether two calls took the inner product of the same arrays (the same
  objects: a criterion traced twice sees the same arrays in its info)."""
  (a, b, axis), (a_0, b_0, axis_0) = taken, recorded
  return (axis == axis_0 and len(a) == len(a_0) and len(b) == len(b_0)
          and all(x is y for x, y in zip(a + b, a_0 + b_0)))


class _Reductions:
  """The inner products taken while tracing a criterion: recorded, or
  replayed from values computed before (see :func:`recorded_reductions`)."""

  def __init__(self, replayed=None, operands=None):
    self.recorded = Recording([], [], [])
    self.replayed = None if replayed is None else list(replayed)
    self.operands = operands
    self.taken = 0
    self.trace = get_opaque_trace_state()
    self.nested = False

  def traced_here(self) -> bool:
    """Whether JAX traces in the transformation the session began in."""
    return get_opaque_trace_state() == self.trace

  def next(self, operands: tuple):
    if self.taken == len(self.replayed) or not _same_operands(
        operands, self.operands[self.taken]):
      raise ReplayImpossible(_RETRACED_DIFFERENTLY)
    self.taken += 1
    return self.replayed[self.taken - 1]


class ReplayImpossible(RuntimeError):
  """Raised by :func:`replayed_reductions` when the inner products taken
  differ from those recorded (more, fewer, or of other arrays), and by
  both contexts when one was taken inside a nested transformation."""


_RETRACED_DIFFERENTLY = (
    "A restart criterion took other inner products when traced a second"
    " time than the first (more, fewer, or of other arrays): they cannot"
    " be replayed.")

_NESTED = (
    "An inner product was taken inside a nested transformation of the"
    " criterion (jax.checkpoint, lax.cond, vmap, jit); its value cannot be"
    " recorded outside it.")

_REDUCTIONS: contextvars.ContextVar[_Reductions | None] = (
    contextvars.ContextVar("nagd_optax_reductions", default=None))


@contextlib.contextmanager
def recorded_reductions() -> Iterator[Recording]:
  """Within this context :func:`tree_inner_product` records its partial
  products and the arrays it was called with (in the :class:`Recording`
  it yields).

  With :func:`replayed_reductions`, :func:`nagd_optax.restart` separates a
  criterion's reductions over the parameters, which XLA runs as kernels
  of their own, from its scalar test, which it compiles together with the
  restart's other scalar bookkeeping (:mod:`nagd_optax._scalar_block`):
  the criterion is traced once recording (its test is then discarded),
  and once more replaying.
  """
  session = _Reductions()
  token = _REDUCTIONS.set(session)
  try:
    yield session.recorded
  finally:
    _REDUCTIONS.reset(token)
  if session.nested:
    raise ReplayImpossible(_NESTED)


@contextlib.contextmanager
def replayed_reductions(recorded: list[Any],
                        operands: list[Any]) -> Iterator[None]:
  """Within this context :func:`tree_inner_product` returns the sums of
  ``recorded`` (a :class:`Recording`'s values, or values computed from
  them), one per call and in order; all of them must be taken, each of
  the same arrays as the recorded call (the recording's ``operands``),
  else :class:`ReplayImpossible`."""
  session = _Reductions(recorded, operands)
  token = _REDUCTIONS.set(session)
  try:
    yield
  finally:
    _REDUCTIONS.reset(token)
  if session.nested or session.taken != len(session.replayed):
    raise ReplayImpossible(_RETRACED_DIFFERENTLY)


def released(updates: optax.Updates, recording: Recording) -> optax.Updates:
  """``updates``, each large leaf multiplied by an exact 1.0 computed from
  the recorded inner product of that leaf: the same numbers, which XLA:CPU
  then computes only once that reduction is done.

  XLA:CPU's runtime starts a kernel as soon as the buffers it reads are
  written and runs the ready ones side by side (when a program has more
  than 8 kernels). A leaf's update reads the gradient and the new
  momentum, as the criterion's reduction of that leaf does, so the two
  started together and shared the two cores (``jax.profiler`` traces of
  the restart="gradient" step on one 4M leaf: the reduction, in
  YNNPACK's threads, ran while the update's kernel did). Reading the
  reduction's result, the update waits for it. Interleaved against the
  code without this (``benchmarks/step_cost.py``'s steps, one process,
  built in either order), restart="gradient" went from 1.34-1.42 to
  1.27-1.29x Optax's step on one 4M leaf, "speed" from 1.40-1.46 to
  1.35-1.39. Per leaf, not all at once: with every update waiting for all
  the reductions, the GPT-like tree's step went from 1.34-1.36 to
  1.41-1.43x ("gradient") and from 1.43 to 1.54x ("speed"), where per leaf
  it is 1.31-1.32x and 1.42-1.44x (other leaves' kernels fill the cores
  meanwhile). Small leaves (at most 4,096 elements) are left alone; on a
  tree of 500 of them no difference could be told from the noise.

  The factor is 1.0 whatever the product (its bits, read as an integer,
  clamped to [1, 1] and converted), and multiplying
  a float32 or float64 number by 1.0 gives it back bit for bit (NaN,
  infinities, -0 and subnormals included); narrower and complex leaves,
  whose products by 1.0 go through a conversion or a complex multiply, are
  left alone. Derivatives pass through unchanged (the factor is a constant
  to them). Only where the update is traced, and only on CPU
  (:func:`on_cpu`): other backends see the updates as they are.
  """
  leaves, structure = jax.tree.flatten(updates, is_leaf=lambda u: u is None)
  products = collections.defaultdict(list)
  for recorded_structure, own in recording.own_products:
    if recorded_structure == structure:
      for position, product in own.items():
        products[position].append(product)
  chosen = [i for i in sorted(products)
            if leaves[i] is not None
            and isinstance(leaves[i], jax.core.Tracer)
            and leaves[i].dtype in (jnp.float32, jnp.float64)]
  if not chosen:
    return updates
  # One value per leaf: any function of all its products waits for them
  # (their sum, in a dtype common to them).
  def total(xs):
    dtype = jnp.result_type(*xs)
    return functools.reduce(
        jax.lax.add, [jax.lax.convert_element_type(x, dtype) for x in xs])

  taken = [total(products[i]) for i in chosen]

  def times_one(us, ts):
    return [jax.lax.mul(u, _exactly_one(t, u.dtype)) for u, t in zip(us, ts)]

  done = on_cpu(times_one, [leaves[i] for i in chosen], taken)
  for i, u in zip(chosen, done):
    leaves[i] = u
  return structure.unflatten(leaves)


def _exactly_one(x: jax.Array, dtype) -> jax.Array:
  """1.0 in ``dtype``, computed from the bits of ``x`` (float32 or float64)
  as an integer clamped to [1, 1], which XLA's simplifier does not fold to
  a constant. ``lax`` throughout: it is traced once per large leaf, where
  each of jnp's operators costs a dispatch."""
  integer = np.int32 if x.dtype == np.float32 else np.int64
  one = np.array(1, integer)
  bits = jax.lax.bitcast_convert_type(x, integer)
  return jax.lax.convert_element_type(jax.lax.clamp(one, bits, one), dtype)
