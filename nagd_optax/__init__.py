"""nagd_optax: Nesterov accelerated gradient descent for Optax.

Composable :class:`optax.GradientTransformation` s: an exact Nesterov momentum
trace (constant momentum or schedules), adaptive restart of any
transformation's state, loss-driven learning-rate control, warmup/decay and
momentum schedules, and the one-call optimizer :func:`nagd`. The reference
problems the library is tested and benchmarked on are in
:mod:`nagd_optax.problems`.
"""

from nagd_optax import criteria
from nagd_optax import problems
from nagd_optax import schedules
from nagd_optax._alias import nagd
from nagd_optax._auto_step import auto_step
from nagd_optax._auto_step import AutoStep
from nagd_optax._auto_step import AutoStepState
from nagd_optax._auto_step import scale_by_auto_step
from nagd_optax._plateau import scale_on_plateau
from nagd_optax._plateau import ScaleOnPlateauState
from nagd_optax._restart import restart
from nagd_optax._restart import RestartState
from nagd_optax._trace import nesterov_trace
from nagd_optax._trace import NesterovTraceState

__version__ = "0.1.0"

__all__ = [
    "AutoStep",
    "AutoStepState",
    "NesterovTraceState",
    "RestartState",
    "ScaleOnPlateauState",
    "criteria",
    "auto_step",
    "nagd",
    "nesterov_trace",
    "problems",
    "restart",
    "scale_by_auto_step",
    "scale_on_plateau",
    "schedules",
]
