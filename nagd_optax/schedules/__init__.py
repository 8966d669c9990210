"""Schedules (step count -> value) for learning rates and momentum.

They follow Optax's schedule protocol: pure functions of an integer count,
jit- and vmap-able, usable wherever Optax takes a schedule.
"""

from nagd_optax.schedules._momentum import nesterov_momentum
from nagd_optax.schedules._momentum import strongly_convex_momentum

__all__ = [
    "nesterov_momentum",
    "strongly_convex_momentum",
]
