"""The one-call optimizer :func:`nagd`."""

from typing import Any

import optax

from nagd_optax import _auto_step
from nagd_optax import _restart
from nagd_optax import _trace
from nagd_optax import _validation
from nagd_optax import criteria
from nagd_optax.criteria import _shorthands


# learning_rate also takes "auto" or an AutoStep (see the docstring); its
# annotation stays optax.ScalarOrSchedule, the alias by which Optax's own
# checks recognise an optimizer that accepts a learning-rate schedule.
def nagd(
    learning_rate: optax.ScalarOrSchedule,
    momentum: optax.ScalarOrSchedule = 0.9,
    *,
    restart: criteria.Criterion | _shorthands.Name | None = None,
    weight_decay: float | None = None,
    accumulator_dtype: Any | None = None,
    loss_smoothing: float | None = None,
    min_interval: int | None = None,
    axis_name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Nesterov accelerated gradient descent.

  With learning rate :math:`\eta_k`, momentum :math:`\mu_k` and coupled weight
  decay :math:`\lambda`, each step takes the gradient :math:`g_k` at the
  parameters :math:`y_k` and computes

  .. math::

    d_k = g_k + \lambda y_k, \qquad
    m_k = \mu_{k-1} m_{k-1} + d_k, \qquad
    y_{k+1} = y_k - \eta_k (d_k + \mu_k m_k).

  With constant momentum and without weight decay this is
  ``optax.sgd(lr, momentum, nesterov=True)`` bit for bit; with weight decay
  too it is ``torch.optim.SGD(lr, momentum, nesterov=True,
  weight_decay=...)`` to rounding (relative differences of at most 6e-14
  in float64 over 40 steps). With a momentum schedule such as
  :func:`nagd_optax.schedules.nesterov_momentum` it is the classical
  two-sequence method (see :func:`nagd_optax.nesterov_trace`).

  With ``restart``, the momentum (buffer and schedule) restarts when the
  criterion fires (see :func:`nagd_optax.restart`); with
  ``nesterov_momentum()`` that is O'Donoghue & Candès' adaptive restart, in
  the variants described in :mod:`nagd_optax.criteria`.

  Args:
    learning_rate: a number >= 0 or a schedule (step count -> learning
      rate); or ``"auto"`` for a step the optimizer sets itself (see
      :func:`nagd_optax.scale_by_auto_step`), or :func:`nagd_optax.auto_step`
      settings to change how.
    momentum: a number in ``[0, 1)`` or a momentum schedule. With
      ``optax.inject_hyperparams``, pass a momentum schedule as a static
      argument (``static_args=("momentum",)``): injected, it would be
      evaluated once per step and lose the index shift described in
      :func:`nagd_optax.nesterov_trace`.
    restart: ``None`` (never), or a criterion of :func:`nagd_optax.restart`:
      a :class:`nagd_optax.criteria.Criterion` (e.g.
      ``nagd.criteria.loss(smoothing=0.98)``) or one of the shorthands
      ``"loss"`` (pass ``value=loss`` to ``update``), ``"gradient"``,
      ``"speed"``, ``"interval"`` or ``"on_demand"``. Any of them also
      restarts on ``update(..., restart=True)``.
    weight_decay: coupled L2 strength :math:`\lambda \ge 0`, added to the
      gradient before momentum as in ``torch.optim.SGD``; it then needs
      ``params`` in ``update``. ``None`` (or a literal 0) adds nothing and
      needs no ``params``. For decoupled (AdamW-style) decay, chain
      ``optax.add_decayed_weights`` after this optimizer instead.
    accumulator_dtype: dtype of the momentum buffer (``jnp.bfloat16`` or
      ``jnp.float16`` halves the optimizer state of float32 parameters);
      ``None`` uses the parameters' dtype. The update is computed in the
      wider dtype from the buffer as stored (see
      :func:`nagd_optax.nesterov_trace`).
    loss_smoothing: with ``restart="loss"``: its smoothing, 0 (the default)
      compares raw losses (the paper's test, for full-batch problems); about
      0.98 for minibatch losses (see :func:`nagd_optax.criteria.loss`).
    min_interval: with a shorthand ``restart``: updates after a restart
      during which it does not fire (the period for ``"interval"``);
      ``None``: 10 for ``"speed"``, else 0.
    axis_name: the mapped axis over which parameters are sharded inside
      ``shard_map``/``pmap``, so that restart decisions agree on all devices.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`. ``update`` accepts
    extra keyword arguments: ``value=`` (the loss, required with
    ``restart="loss"``, ignored otherwise) and ``restart=`` (an on-demand
    restart; an optimizer built without a restart criterion raises a
    ValueError rather than drop it silently, as Optax's chain would).

  Example:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import nagd_optax as nagd
    >>> def loss(params):
    ...   return jnp.sum((params - 3.0) ** 2)
    >>> optimizer = nagd.nagd(learning_rate=0.1, momentum=0.9)
    >>> params = jnp.zeros(2)
    >>> state = optimizer.init(params)
    >>> for _ in range(100):
    ...   value, grads = jax.value_and_grad(loss)(params)
    ...   updates, state = optimizer.update(grads, state, params, value=value)
    ...   params = optax.apply_updates(params, updates)
    >>> print(params.round(4))
    [3. 3.]

  References:
    Nesterov, `A method for solving the convex programming problem with
    convergence rate O(1/k^2)`, Soviet Mathematics Doklady 27, 1983.

    Sutskever, Martens, Dahl & Hinton, `On the importance of initialization
    and momentum in deep learning
    <https://proceedings.mlr.press/v28/sutskever13.html>`_, ICML 2013.
  """
  automatic = isinstance(learning_rate, _auto_step.AutoStep) or (
      isinstance(learning_rate, str) and learning_rate == "auto"
  )
  if isinstance(learning_rate, str) and not automatic:
    raise TypeError(
        "learning_rate must be a finite number >= 0, a schedule, or 'auto'"
        f" for the automatic step, got the string {learning_rate!r}."
    )
  if learning_rate is _auto_step.auto_step:
    raise TypeError(
        "learning_rate must be the settings nagd.auto_step(...) returns, got"
        " the function nagd.auto_step itself: call it, e.g."
        " nagd.nagd(nagd.auto_step()), or pass 'auto'."
    )
  if not automatic:
    _validation.check_at_least(
        learning_rate, "learning_rate", 0.0, schedule_ok=True
    )
  if weight_decay is not None:
    _validation.check_at_least(weight_decay, "weight_decay", 0.0)
  if restart is None and not automatic:
    unused = [
        name for name, given in (
            ("loss_smoothing", loss_smoothing is not None),
            ("min_interval", min_interval is not None),
            ("axis_name", axis_name is not None),
        ) if given
    ]
    if unused:
      raise ValueError(
          f"{', '.join(unused)} only apply with a restart criterion; pass"
          " restart=... (e.g. 'loss') or drop them."
      )

  transforms = []
  if weight_decay is not None:
    # The transformation is chained whenever a weight decay is given, so
    # that the state has one structure whether the value is a number or an
    # array injected by optax.inject_hyperparams; a literal zero is the
    # identity, which needs no params.
    transforms.append(
        optax.identity()
        if _validation.concrete_number(weight_decay) == 0.0
        else optax.add_decayed_weights(weight_decay)
    )
  momentum_trace = _trace.nesterov_trace(
      momentum, accumulator_dtype=accumulator_dtype
  )
  if restart is not None or automatic:
    # Only the momentum restarts; the learning rate (or the automatic step,
    # whose guards restart the momentum on demand) runs on.
    momentum_trace = _restart.restart(
        momentum_trace,
        _shorthands.resolve(
            "on_demand" if restart is None else restart,
            loss_smoothing=loss_smoothing,
            min_interval=min_interval,
            argument="restart",
        ),
        axis_name=axis_name,
    )
  if automatic:
    settings = (
        _auto_step.auto_step() if isinstance(learning_rate, str)
        else learning_rate
    )
    transforms.append(_auto_step.scale_by_auto_step(
        momentum_trace, axis_name=axis_name, **settings._asdict()
    ))
    return optax.chain(*transforms)
  transforms.append(momentum_trace)
  transforms.append(optax.scale_by_learning_rate(learning_rate))
  optimizer = optax.chain(*transforms)
  if restart is None:
    optimizer = _refusing_restart_requests(optimizer)
  return optimizer


def _refusing_restart_requests(
    optimizer: optax.GradientTransformationExtraArgs,
) -> optax.GradientTransformationExtraArgs:
  """Raises when ``update(..., restart=...)`` reaches an optimizer with
  nothing to restart, which Optax's chain would otherwise drop silently."""

  def update_fn(updates, state, params=None, **extra_args):
    request = extra_args.get("restart")
    if request is not None and request is not False:
      raise ValueError(
          "update(..., restart=...) was passed to a nagd optimizer built"
          " without a restart criterion, so it would be ignored; build it"
          " with restart='on_demand' (or another criterion) to restart on"
          " demand."
      )
    return optimizer.update(updates, state, params, **extra_args)

  return optax.GradientTransformationExtraArgs(optimizer.init, update_fn)
