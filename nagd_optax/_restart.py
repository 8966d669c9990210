"""Adaptive restart: reset a transformation's state when a criterion fires."""

from collections.abc import Callable
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nagd_optax import criteria as criteria_lib
from nagd_optax import _scalar_block
from nagd_optax.criteria import _protocol
from nagd_optax.criteria import _shorthands


class RestartState(NamedTuple):
  """State of :func:`restart`.

  Attributes:
    inner_state: the wrapped transformation's state.
    restarts: restarts applied so far, int32 (read it with
      ``optax.tree.get(state, "restarts")``).
    steps_since_restart: updates since ``init`` or the last restart, int32.
    restart_pending: whether the criterion fired on the last update, so that
      the next one starts from a fresh inner state.
    criterion_state: what the criterion keeps between updates (scalars
      only): the loss statistics for :func:`nagd_optax.criteria.loss`, the
      last step's squared length for :func:`nagd_optax.criteria.speed`, ...
      They feed only the restart decisions, and carry no derivative (the
      updates' derivatives are unaffected).

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import nagd_optax as nagd
    >>> optimizer = nagd.nagd(0.1, restart="loss")
    >>> params = jnp.ones(2)
    >>> state = optimizer.init(params)
    >>> for loss in [3.0, 2.0, 2.5]:  # the last one rose: restart
    ...   _, state = optimizer.update(params, state, params, value=loss)
    >>> int(optax.tree.get(state, "restarts"))
    1
  """

  inner_state: optax.OptState
  restarts: jax.Array
  steps_since_restart: jax.Array
  restart_pending: jax.Array
  criterion_state: Any

  @property
  def restart_next(self) -> jax.Array:
    """Deprecated name of :attr:`restart_pending`."""
    warnings.warn(
        "RestartState.restart_next is deprecated; use restart_pending.",
        DeprecationWarning,
        stacklevel=2,
    )
    return self.restart_pending

  @property
  def memory(self) -> Any:
    """Deprecated name of :attr:`criterion_state`."""
    warnings.warn(
        "RestartState.memory is deprecated; use criterion_state.",
        DeprecationWarning,
        stacklevel=2,
    )
    return self.criterion_state


def _is_masked(x: Any) -> bool:
  return isinstance(x, optax.MaskedNode)


def _buffers_named(field: str) -> Callable[[optax.OptState], list[Any]]:
  """Every value of the fields called ``field`` in a state (one per
  partition of ``optax.partition``, say)."""

  def find(inner_state):
    return [b for _, b in optax.tree.get_all_with_path(inner_state, field)]

  return find


def _one_buffer_per_parameter(buffers: list[Any], params: Any) -> Any:
  """Merges momentum buffers that cover disjoint parameters into one tree.

  ``optax.partition``/``masked`` give one buffer per part, masked
  (``optax.MaskedNode``) outside it. A buffer laid out unlike the parameters
  (``optax.flatten``), or two buffers of the same parameter (a chain of two
  momentum transformations), cannot be read as *the* momentum: ValueError.
  """
  layout = jax.tree.structure(params, is_leaf=_is_masked)
  for buffer in buffers:
    if jax.tree.structure(buffer, is_leaf=_is_masked) != layout:
      raise ValueError(
          "restart reads the momentum buffer, but the buffer found in the"
          " inner state is laid out unlike the parameters (e.g. a flat vector"
          " from optax.flatten). Put the flattening outside the restart,"
          " optax.flatten(nagd.restart(...)), or say which buffer is the"
          " momentum with momentum_buffer=lambda state: ...."
      )

  def merge(*leaves):
    present = [leaf for leaf in leaves if not _is_masked(leaf)]
    if len(present) > 1:
      raise ValueError(
          f"restart found {len(present)} momentum buffers for the same"
          " parameter in the inner state (e.g. two momentum transformations"
          " chained); say which one is the momentum with"
          " momentum_buffer=lambda state: ... (the buffer tree)."
      )
    return present[0] if present else optax.MaskedNode()

  return jax.tree.map(merge, *buffers, is_leaf=_is_masked)


def _keep_hyperparameters(fresh: Any, old: Any) -> Any:
  """``fresh`` with the injected hyperparameters of ``old``.

  A restart forgets what the optimizer learned (its momentum, its counts),
  not what the user set: hyperparameters injected with
  ``optax.inject_hyperparams`` (and their schedules) run on.
  """
  is_injected = lambda x: isinstance(x, optax.InjectStatefulHyperparamsState)

  def keep(new, previous):
    if not is_injected(new):
      return new
    return new._replace(
        count=previous.count,
        hyperparams=previous.hyperparams,
        hyperparams_states=previous.hyperparams_states,
    )

  return jax.tree.map(keep, fresh, old, is_leaf=is_injected)


def _select(condition: jax.Array, on_true: Any, on_false: Any) -> Any:
  # A fresh state is a constant (zeros, count 0): selecting it is fused into
  # the inner update, with no extra pass over the parameters. lax.select
  # with a scalar predicate rather than jnp.where: the same operation, with
  # less Python per leaf to trace.
  condition = jnp.asarray(condition, jnp.bool_)

  def select(a, b):
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.dtype != b.dtype:
      a = a.astype(b.dtype)
    if a.shape != b.shape:
      a = jnp.broadcast_to(a, b.shape)
    return jax.lax.select(condition, a, b)

  return jax.tree.map(select, on_true, on_false)


def restart(
    inner: optax.GradientTransformation,
    criterion: criteria_lib.Criterion | _shorthands.Name = "loss",
    *,
    loss_smoothing: float | None = None,
    noise_tolerance: float | None = None,
    min_interval: int | None = None,
    axis_name: str | None = None,
    momentum_buffer: Callable[[optax.OptState], optax.Updates] | None = None,
    momentum_field: str | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Restarts ``inner`` (a fresh ``init`` state) when ``criterion`` fires.

  Accelerated methods overshoot once their momentum exceeds what the local
  curvature supports, and the loss then ripples. Restarting the momentum at
  the first sign of it recovers the optimal linear rate on strongly convex
  problems without knowing the strong-convexity constant (O'Donoghue &
  Candès). With :func:`nagd_optax.nesterov_trace` and a momentum schedule
  such as :func:`nagd_optax.schedules.nesterov_momentum` inside, the
  schedule starts again from :math:`k = 0` at each restart.

  At each update the criterion (a :class:`nagd_optax.criteria.Criterion`)
  is asked before the inner update, from what is known then (the loss), and
  after it, from the update just computed (the gradient :math:`g_k`, the
  inner output :math:`u_k`, the inner momentum buffer :math:`m_k`). A
  restart before the update resets this update's inner state; one after it
  resets the next update's (or, for an ``immediate`` criterion, recomputes
  this update from a fresh state). Either way the reset is elementwise with
  a scalar decision (a select per leaf; for :func:`nagd_optax.nesterov_trace`
  its buffer times 0 or 1), no second pass, and the criteria keep only
  scalars.

  The criteria (``nagd_optax.criteria``, with their string shorthands):

  - :func:`~nagd_optax.criteria.loss` (``"loss"``): the loss passed as
    ``value=`` rose; optionally smoothed for minibatch losses.
  - :func:`~nagd_optax.criteria.gradient` (``"gradient"``): the momentum
    points uphill, :math:`\langle g_k, m_k \rangle < 0`.
  - :func:`~nagd_optax.criteria.speed` (``"speed"``): the step got shorter.
  - :func:`~nagd_optax.criteria.every` (``"interval"``, with
    ``min_interval`` as the period): a fixed or scheduled period.
  - :func:`~nagd_optax.criteria.on_demand` (``"on_demand"``): only when
    asked.

  Each is a variant of a published scheme; their docstrings say where they
  differ from the paper (the loss is taken at :math:`y_k`, the gradient
  test acts on the next update unless ``immediate=True``, the speed test
  measures :math:`u_k` unless ``measure="momentum"``). A criterion of one's
  own is a few lines: see :class:`nagd_optax.criteria.Criterion`.

  With any criterion, ``update(..., restart=True)`` restarts at once: the
  inner state is reset before this update (e.g. when fine-tuning switches to
  new data). ``restart`` may be a traced bool.

  What a restart resets: the whole inner state returns to ``inner.init``
  (momentum buffers, step counts and with them momentum schedules), except
  hyperparameters injected with ``optax.inject_hyperparams`` inside
  ``inner``, which keep their current values and schedules. Keep learning-
  rate schedules outside ``inner`` unless they should restart too (as
  :func:`nagd_optax.nagd` does). When a criterion fires,
  :func:`nagd_optax.nesterov_trace` resets itself by multiplying its buffer
  by zero (XLA:CPU compiles that faster than a select): the same as
  ``init`` for a finite buffer, while one holding an infinity or NaN stays
  NaN (the loss, gradient and speed tests never fire on such values; a
  periodic or custom criterion may). ``update(..., restart=True)`` resets
  by a select and so also clears such a buffer.

  Args:
    inner: the transformation whose state is restarted, e.g.
      :func:`nagd_optax.nesterov_trace`. A restart calls ``inner.init`` on
      ``params`` (on the updates when ``params`` is not passed).
    criterion: a :class:`nagd_optax.criteria.Criterion`, or one of the
      shorthands ``"loss"``, ``"gradient"``, ``"speed"``, ``"interval"``,
      ``"on_demand"``.
    loss_smoothing: with ``"loss"``: its ``smoothing``.
    noise_tolerance: with ``"loss"``: its ``noise_tolerance``.
    min_interval: with a shorthand: the criterion's ``min_interval`` (the
      period of ``"interval"``). ``None`` keeps its default (10 for
      ``"speed"``, else 0).
    axis_name: inside ``jax.shard_map``/``pmap`` with parameters sharded
      over this axis, the criteria's inner products and norms are reduced
      over it (counting replicated leaves once, see
      :func:`nagd_optax.criteria.tree_inner_product`), so every device
      takes the same decision. The loss passed as ``value=`` must already be
      the same on every device (``pmean`` it).
    momentum_buffer: for criteria that read the momentum buffer
      (``gradient``, ``speed(measure="momentum")``): a function from the
      inner state to the buffer, a tree laid out like the parameters, e.g.
      ``lambda state: state[0].mu`` for ``optax.adam``. ``None`` reads the
      fields named ``trace`` (:func:`nagd_optax.nesterov_trace`,
      ``optax.trace``, ``optax.sgd``), merging the disjoint buffers of
      ``optax.partition``/``masked``. A layout that cannot be read as one
      buffer per parameter is refused at ``init``.
    momentum_field: deprecated; ``momentum_field="mu"`` is
      ``momentum_buffer`` reading the fields named ``mu``.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`RestartState`. ``update`` takes ``restart=`` and passes all
    extra keyword arguments (``value=``, ...) to the criterion and to
    ``inner``.

  Example:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import nagd_optax as nagd
    >>> curvatures = jnp.logspace(0, -2, 50)   # condition number 100
    >>> def loss(x):
    ...   return 0.5 * jnp.sum(curvatures * x**2)
    >>> def minimise(criterion, steps=150):
    ...   optimizer = optax.chain(
    ...       nagd.restart(
    ...           nagd.nesterov_trace(nagd.schedules.nesterov_momentum()),
    ...           criterion=criterion,
    ...       ),
    ...       optax.scale_by_learning_rate(1.0),  # step 1/L
    ...   )
    ...   x = jnp.ones(50)
    ...   state = optimizer.init(x)
    ...   for _ in range(steps):
    ...     value, grads = jax.value_and_grad(loss)(x)
    ...     updates, state = optimizer.update(grads, state, x, value=value)
    ...     x = optax.apply_updates(x, updates)
    ...   return loss(x) / loss(jnp.ones(50)), optax.tree.get(state, "restarts")
    >>> never, _ = minimise("on_demand")   # Nesterov's method, no restart
    >>> restarted, restarts = minimise(nagd.criteria.gradient())
    >>> print(f"{float(never):.0e} vs {float(restarted):.0e}, {int(restarts)} restarts")
    4e-07 vs 6e-12, 3 restarts

  References:
    O'Donoghue & Candès, `Adaptive Restart for Accelerated Gradient Schemes
    <https://arxiv.org/abs/1204.3982>`_, Foundations of Computational
    Mathematics, 2015.

    Su, Boyd & Candès, `A Differential Equation for Modeling Nesterov's
    Accelerated Gradient Method <https://arxiv.org/abs/1503.01243>`_, JMLR
    2016 (speed restart).
  """
  criterion = _shorthands.resolve(
      criterion,
      loss_smoothing=loss_smoothing,
      noise_tolerance=noise_tolerance,
      min_interval=min_interval,
  )
  if momentum_field is not None:
    if momentum_buffer is not None:
      raise ValueError(
          "momentum_field is the deprecated form of momentum_buffer; pass"
          " only momentum_buffer."
      )
    warnings.warn(
        f"momentum_field={momentum_field!r} is deprecated; pass"
        " momentum_buffer=lambda state: ... (the buffer tree), e.g."
        " lambda state: state[0].mu for optax.adam.",
        DeprecationWarning,
        stacklevel=2,
    )
  find_buffers = _buffers_named(momentum_field or "trace")
  if momentum_buffer is not None:
    if not callable(momentum_buffer):
      raise TypeError(
          "momentum_buffer must be a function from the inner state to the"
          f" momentum buffer (e.g. lambda state: state[0].mu), got"
          f" {momentum_buffer!r}."
      )
    find_buffers = lambda inner_state: [momentum_buffer(inner_state)]
  # The criteria see the inner update recomputed where the inner
  # transformation says how (nesterov_trace): the same values, in a form a
  # reduction over them fuses without a parameter-sized copy of the update.
  updates_again = getattr(inner, "updates_again", None)
  # Likewise the update that an immediate criterion replaces, written from
  # the buffer as stored after the reset: recomputed from a fresh state, it
  # read the buffer before the reset, which XLA then kept as a whole copy.
  updates_after_reset = getattr(inner, "updates_after_reset", None)
  # And a reset that the inner transformation does itself (nesterov_trace
  # multiplies its buffer by 0 or 1): a select per leaf compiles slowly.
  fresh_where = getattr(inner, "fresh_where", None)
  # Or folds the reset before the update into the update itself
  # (nesterov_trace decays the buffer by mu * 0 where it resets): one
  # multiplication per element fewer.
  update_reset_where = getattr(inner, "update_reset_where", None)
  inner = optax.with_extra_args_support(inner)

  def momentum_of(inner_state, params):
    buffers = find_buffers(inner_state)
    if not buffers:
      raise ValueError(
          "This restart criterion reads the momentum buffer, and the inner"
          f" state has no field named {momentum_field or 'trace'!r}; say"
          " which buffer is the momentum with momentum_buffer=lambda state:"
          " ... (e.g. lambda state: state[0].mu for optax.adam), or use a"
          " criterion that does not read it."
      )
    return _one_buffer_per_parameter(buffers, params)

  def init_fn(params):
    inner_state = inner.init(params)
    if criterion.reads_momentum:
      momentum_of(inner_state, params)  # refuse an unusable layout now
    return RestartState(
        inner_state=inner_state,
        restarts=jnp.zeros([], jnp.int32),
        steps_since_restart=jnp.zeros([], jnp.int32),
        restart_pending=jnp.zeros([], jnp.bool_),
        criterion_state=criterion.init(params),
    )

  def update_fn(updates, state, params=None, *, restart=False, **extra_args):
    info = criteria_lib.StepInfo(
        gradients=updates,
        params=params,
        steps=state.steps_since_restart,
        extra_args=extra_args,
        axis_name=axis_name,
    )
    requested = (None if restart is False
                 else jnp.asarray(restart, jnp.bool_))

    # The scalar bookkeeping before the update, one kernel on CPU
    # (_scalar_block): the criterion's test on what is known now (the
    # loss), the decision, the counters.
    def decide_before(scalars):
      criterion_state, pending, requested, restarts, steps, scalar_args = (
          scalars)
      reset = pending
      if criterion.before_update is not None:
        fired, criterion_state = criterion.before_update(
            criterion_state,
            info._replace(steps=steps,
                          extra_args={**extra_args, **scalar_args}),
        )
        reset = reset | fired
      any_reset = reset if requested is None else reset | requested
      restarts = jnp.where(any_reset, optax.safe_increment(restarts),
                           restarts)
      steps = optax.safe_increment(jnp.where(any_reset, 0, steps))
      return reset, criterion_state, restarts, steps

    reset, criterion_state, restarts, steps = (
        _scalar_block.computed_together(decide_before, (
            state.criterion_state, state.restart_pending, requested,
            state.restarts, state.steps_since_restart,
            {k: v for k, v in extra_args.items() if _is_scalar(v)},
        )))

    def reset_where(condition, inner_state, *, select=False):
      # nesterov_trace resets itself (by a multiplication unless select);
      # any other inner state is selected against a fresh init.
      if fresh_where is not None:
        return fresh_where(condition, inner_state, select=select)
      return _select(condition, fresh_state(), inner_state)

    def fresh_state():
      return _keep_hyperparameters(
          inner.init(_init_template(params, updates)), state.inner_state
      )

    inner_state = state.inner_state
    if requested is not None:
      # A restart asked for by the caller (after rolling the parameters
      # back, say) returns to init by a select, which also clears a buffer
      # that holds an infinity or NaN; the criteria never fire on those.
      inner_state = reset_where(requested, inner_state, select=True)
    if update_reset_where is not None:
      # state_before then has the reset count but the buffer before the
      # reset: the hooks given it below (nesterov_trace's) read only its
      # count.
      new_updates, inner_state, state_before = update_reset_where(
          updates, inner_state, reset)
    else:
      inner_state = reset_where(reset, inner_state)
      state_before = inner_state
      new_updates, inner_state = inner.update(
          updates, inner_state, params, **extra_args
      )
    pending = jnp.zeros([], jnp.bool_)
    if criterion.after_update is not None:
      # Small leaves of the recomputed update are reduced as the array
      # they were computed in (see _protocol.split_leaves_remembered).
      with _protocol.split_leaves_remembered():
        info = info._replace(
            steps=steps,
            updates=(
                None if not criterion.reads_updates
                else new_updates if updates_again is None
                else updates_again(updates, state_before, inner_state)
            ),
            momentum=(
                momentum_of(inner_state, _init_template(params, updates))
                if criterion.reads_momentum else None
            ),
        )
        fired, criterion_state, restarts, steps, recording = (
            _decided_after(criterion, criterion_state, info, restarts,
                           steps))
      if criterion.immediate:
        inner_state = reset_where(fired, inner_state)
        if updates_after_reset is not None:
          new_updates = updates_after_reset(
              updates, state_before, inner_state, fired
          )
        else:
          fresh_updates, _ = inner.update(
              updates, fresh_state(), params, **extra_args
          )
          new_updates = _select(fired, fresh_updates, new_updates)
      else:
        pending = fired
        if recording is not None:
          # The update waits for the test's reductions (see released).
          new_updates = _protocol.released(new_updates, recording)
    return new_updates, RestartState(
        inner_state=inner_state,
        restarts=restarts,
        steps_since_restart=steps,
        restart_pending=pending,
        criterion_state=criterion_state,
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _decided_after(criterion, criterion_state, info, restarts, steps):
  """The criterion's test after the update, the counters when it restarts
  at once, and the recording of its reductions (None where they were not
  replayed): ``(fired, criterion_state, restarts, steps, recording)``.

  The criterion's reductions over the parameters are kernels of their own;
  its test on them is scalar bookkeeping like the one before the update.
  So it is traced twice: once for the reductions (the test is discarded),
  once on their values, in one kernel with the counters
  (:mod:`nagd_optax._scalar_block`). Where the values cannot be replayed (an
  inner product taken inside a nested transformation: ``jax.checkpoint``,
  ``lax.cond``, ``vmap``, ``jit``; or a criterion that takes other inner
  products when traced again: more, fewer, or of other arrays), the
  criterion is called as it is, once more.
  """

  def decide(scalars):
    criterion_state, reductions, restarts, steps = scalars
    with _protocol.replayed_reductions(reductions, recording.operands):
      fired, criterion_state = criterion.after_update(
          criterion_state, info._replace(steps=steps))
    return counted(fired, criterion_state, restarts, steps)

  def counted(fired, criterion_state, restarts, steps):
    if criterion.immediate:
      restarts = jnp.where(fired, optax.safe_increment(restarts), restarts)
      steps = jnp.where(fired, 0, steps)
    return fired, criterion_state, restarts, steps

  try:
    with _protocol.recorded_reductions() as recording:
      criterion.after_update(criterion_state, info)
    return *_scalar_block.computed_together(
        decide, (criterion_state, recording.values, restarts, steps)
    ), recording
  except (jax.errors.UnexpectedTracerError, _protocol.ReplayImpossible):
    fired, criterion_state = criterion.after_update(criterion_state, info)
    return *counted(fired, criterion_state, restarts, steps), None


def _is_scalar(x: Any) -> bool:
  """Whether an extra argument of ``update`` enters the scalar bookkeeping
  as its operand (a loss, say) rather than as a value it closes over."""
  return isinstance(x, (jax.Array, float, int, bool)) and jnp.ndim(x) == 0


def _init_template(params, updates):
  """What the inner ``init`` is called on to build a fresh state.

  The parameters when given; otherwise the updates, which have their shapes
  (dtypes are restored from the old state by the caller). A None update has
  no shape, so then the parameters are needed.
  """
  if params is not None:
    return params
  if any(u is None for u in jax.tree.leaves(updates, is_leaf=lambda u: u is None)):
    raise ValueError(
        "restart needs params in update(updates, state, params) when some"
        " updates are None: the fresh inner state is built from them."
    )
  return updates
