"""nagd_optax: Nesterov accelerated gradient descent for Optax.

Composable :class:`optax.GradientTransformation` s: an exact Nesterov momentum
trace (constant momentum or schedules), and the one-call optimizer
:func:`nagd`.
"""

from nagd_optax import schedules
from nagd_optax._alias import nagd
from nagd_optax._trace import nesterov_trace
from nagd_optax._trace import NesterovTraceState

__version__ = "0.1.0"

__all__ = [
    "NesterovTraceState",
    "nagd",
    "nesterov_trace",
    "schedules",
]
