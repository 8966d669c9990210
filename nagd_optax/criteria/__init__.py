"""Restart criteria: when :func:`nagd_optax.restart` resets its inner state.

A criterion is a small object (a :class:`Criterion`: ``init``,
``before_update``, ``after_update``) with its own arguments and its own
scalar state. The built-in ones are the schemes of the literature; the names
``"loss"``, ``"gradient"``, ``"speed"``, ``"interval"`` and ``"on_demand"``
accepted by :func:`nagd_optax.restart` and :func:`nagd_optax.nagd` are
shorthands for them.
"""

from nagd_optax.criteria._loss import loss
from nagd_optax.criteria._loss import LossState
from nagd_optax.criteria._protocol import Criterion
from nagd_optax.criteria._protocol import StepInfo
from nagd_optax.criteria._protocol import tree_inner_product
from nagd_optax.criteria._schedule import every
from nagd_optax.criteria._schedule import EveryState
from nagd_optax.criteria._schedule import on_demand
from nagd_optax.criteria._step import gradient
from nagd_optax.criteria._step import speed
from nagd_optax.criteria._step import SpeedState

__all__ = [
    "Criterion",
    "EveryState",
    "LossState",
    "SpeedState",
    "StepInfo",
    "every",
    "gradient",
    "loss",
    "on_demand",
    "speed",
    "tree_inner_product",
]
