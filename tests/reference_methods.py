"""Plain NumPy loops of the textbook methods: the references for the tests.

Written from the papers, in the two-sequence form, independently of the
library's buffer form.
"""

import math

import numpy as np


def nesterov_beta(j):
  """beta_j = (j - 1)/(j + 2), j = 1, 2, ... iterations since (re)start."""
  return (j - 1) / (j + 2)


def fista_beta_sequence(n):
  """The theta/FISTA sequence of O'Donoghue & Candès (q = 0), Beck & Teboulle.

  t_1 = 1, t_{j+1} = (1 + sqrt(1 + 4 t_j^2))/2, beta_j = (t_j - 1)/t_{j+1};
  returns a function j -> beta_j for j <= n.
  """
  betas = [0.0]
  t = 1.0
  for _ in range(n + 1):
    t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
    betas.append((t - 1) / t_next)
    t = t_next
  return lambda j: betas[j]


def accelerated_gradient(
    f,
    grad,
    x0,
    step,
    scheme=None,
    beta=nesterov_beta,
    min_interval=0,
    stop=None,
    max_iterations=10**6,
):
  """Nesterov's method with O'Donoghue & Candès' adaptive restart.

  x_{k+1} = y_k - step * grad(y_k),
  y_{k+1} = x_{k+1} + beta_{j+1} (x_{k+1} - x_k),  j = iterations since the
  last (re)start. A restart drops the momentum: the method starts afresh
  from the current point (x_k := y_k, j := 0). Schemes:

  - "function": f(y_k) > f(y_{k-1}): restart before stepping from y_k.
  - "gradient": grad(y_k)^T (x_{k+1} - x_k) > 0: restart at the next step.
  - "gradient_paper": the same test, acted on as O'Donoghue & Candès do:
    the extrapolation is dropped (y_{k+1} = x_{k+1}) and the momentum
    sequence restarts from there (theta_{k+1} = 1).
  - "speed": ||y_{k+1} - y_k|| < ||y_k - y_{k-1}||, once at least
    min_interval steps were taken since the last restart: at the next step.
  - "speed_paper": Su, Boyd & Candès' test on the gradient-step points,
    ||x_{k+1} - x_k|| < ||x_k - x_{k-1}||, acted on likewise (their
    j <- 1 at the next iteration).

  Returns (iterations until stop(f(y_k)), restarts, the iterates y_k).
  """
  x = np.array(x0, dtype=np.float64)
  y = x.copy()
  j = 0
  restarts = 0
  restart_next = False
  previous_value = math.inf
  previous_step_length = 0.0
  iterates = [y]
  for k in range(max_iterations):
    value = f(y)
    if stop is not None and stop(value):
      return k, restarts, np.stack(iterates)
    if scheme == "function":
      if value > previous_value and j >= min_interval:
        restart_next = True
      previous_value = value
    if restart_next:
      x, j, restart_next = y.copy(), 0, False
      restarts += 1
    g = grad(y)
    x_next = y - step * g
    j += 1
    y_next = x_next + beta(j) * (x_next - x)
    if scheme == "gradient":
      restart_next = g @ (x_next - x) > 0 and j >= min_interval
    elif scheme == "gradient_paper":
      if g @ (x_next - x) > 0 and j >= min_interval:
        y_next, j = x_next.copy(), 0
        restarts += 1
    elif scheme in ("speed", "speed_paper"):
      if scheme == "speed":
        step_length = np.linalg.norm(y_next - y)
      else:
        step_length = np.linalg.norm(x_next - x)
      restart_next = step_length < previous_step_length and j >= min_interval
      previous_step_length = step_length
    x, y = x_next, y_next
    iterates.append(y)
  return max_iterations, restarts, np.stack(iterates)
