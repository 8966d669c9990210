"""nagd against PyTorch's SGD(nesterov=True) trajectories stored as fixtures.

The fixture file and the script that generated it live in tests/fixtures/;
torch itself is not needed to run these tests.
"""

import json
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nagd_optax as nagd

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "torch_sgd_trajectories.npz"
DATA = dict(np.load(FIXTURE))
CASES = json.loads(str(DATA["cases"]))


def _learning_rate(case):
  learning_rate, _, _, eta_min = case
  if eta_min is None:
    return learning_rate
  steps = len(DATA["constant_lr/lr"])
  return optax.cosine_decay_schedule(
      learning_rate, decay_steps=steps, alpha=eta_min / learning_rate
  )


def _loss(params):
  margins = DATA["labels"] * (DATA["features"] @ params["w"] + params["b"])
  return jnp.mean(jnp.logaddexp(0.0, -margins))


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("jit", [True, False], ids=["jit", "nojit"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torch_sgd_nesterov(name, jit):
  case = CASES[name]
  _, momentum, weight_decay, _ = case
  learning_rate = _learning_rate(case)
  optimizer = nagd.nagd(learning_rate, momentum, weight_decay=weight_decay)
  params = {"w": jnp.asarray(DATA["w0"]), "b": jnp.asarray(DATA["b0"])}
  state = optimizer.init(params)

  def step(params, state):
    value, grads = jax.value_and_grad(_loss)(params)
    updates, state = optimizer.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state

  if jit:
    step = jax.jit(step)
  ws, bs = [params["w"]], [params["b"]]
  for _ in range(len(DATA[f"{name}/lr"])):
    params, state = step(params, state)
    ws.append(params["w"])
    bs.append(params["b"])
  chex.assert_trees_all_close(
      (np.stack(ws), np.stack(bs)),
      (DATA[f"{name}/w"], DATA[f"{name}/b"]),
      rtol=1e-10,
      atol=1e-14,
  )


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", [n for n in sorted(CASES) if "cosine" in n])
def test_optax_cosine_schedule_is_torch_cosine_annealing(name):
  """The schedule the trajectory test uses is the one torch used."""
  schedule = _learning_rate(CASES[name])
  torch_lrs = DATA[f"{name}/lr"]
  ours = np.array([schedule(k) for k in range(len(torch_lrs))])
  np.testing.assert_allclose(ours, torch_lrs, rtol=1e-12)
