"""Schedules (step count -> value) for learning rates and momentum.

They follow Optax's schedule protocol: pure functions of an integer count,
jit- and vmap-able, usable wherever Optax takes a schedule. What Optax has
already (``optax.cosine_decay_schedule``, ``optax.exponential_decay``,
``optax.join_schedules``, ...) composes with these.
"""

from nagd_optax.schedules._learning_rate import inverse_sqrt
from nagd_optax.schedules._learning_rate import step_decay
from nagd_optax.schedules._learning_rate import warmup
from nagd_optax.schedules._learning_rate import wsd
from nagd_optax.schedules._momentum import fista_momentum
from nagd_optax.schedules._momentum import nesterov_momentum
from nagd_optax.schedules._momentum import strongly_convex_momentum
from nagd_optax.schedules._momentum import sutskever_momentum

__all__ = [
    "fista_momentum",
    "inverse_sqrt",
    "nesterov_momentum",
    "step_decay",
    "strongly_convex_momentum",
    "sutskever_momentum",
    "warmup",
    "wsd",
]
