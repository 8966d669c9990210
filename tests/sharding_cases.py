"""Scale-out checks on 8 simulated CPU devices, one case per process.

Run by tests/test_sharding.py as ``python -m tests.sharding_cases CASE``;
XLA_FLAGS must give 8 host devices before JAX is imported, which a fresh
process guarantees (and a timeout guards against collective deadlocks).
"""

import os
import sys

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=8"
)

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import nagd_optax as nagd
from tests import sharding_cases_names

jax.config.update("jax_enable_x64", True)
MESH = jax.make_mesh((8,), ("x",), axis_types=(AxisType.Auto,))
CRITERIA = ("loss", "gradient", "speed")
STEPS = 500  # long enough for every criterion to restart


def _optimizer(criterion, axis_name=None):
  return nagd.nagd(
      1.0, nagd.schedules.nesterov_momentum(), restart=criterion,
      axis_name=axis_name,
  )


def _quadratic(n=512):
  lam = np.logspace(0, -3, n)
  x0 = np.random.default_rng(0).standard_normal(n)
  return jnp.asarray(lam), jnp.asarray(x0)


def _run_single_device(optimizer, lam, x0, steps):
  """The reference: the same steps on one device, no collectives."""

  @jax.jit
  def run(x):
    def step(carry, _):
      x, state = carry
      updates, state = optimizer.update(
          lam * x, state, x, value=0.5 * jnp.sum(lam * x * x)
      )
      return (optax.apply_updates(x, updates), state), None

    return jax.lax.scan(step, (x, optimizer.init(x)), length=steps)[0]

  return run(x0)


def jit_named_sharding():
  """Parameters sharded by NamedSharding, the step under jax.jit: the state,
  initialised from the sharded parameters, is sharded like them and stays
  so, and the result equals the one-device run."""
  sharding = NamedSharding(MESH, P("x"))
  replicated = NamedSharding(MESH, P())
  lam, x0 = _quadratic()
  for criterion in CRITERIA + (None,):
    optimizer = _optimizer(criterion)
    x = jax.device_put(x0, sharding)
    lam_sharded = jax.device_put(lam, sharding)
    state = optimizer.init(x)
    trace = optax.tree.get(state, "trace")
    assert trace.sharding.is_equivalent_to(sharding, 1), trace.sharding

    @jax.jit
    def step(x, state):
      updates, state = optimizer.update(
          lam_sharded * x, state, x, value=0.5 * jnp.sum(lam_sharded * x * x)
      )
      return optax.apply_updates(x, updates), state

    for _ in range(STEPS):
      # Waiting for each step keeps the 8 simulated devices' collectives from
      # queueing behind each other on a 2-core host (an XLA CPU rendezvous
      # deadlock, not something real devices do).
      x, state = jax.block_until_ready(step(x, state))
    assert x.sharding.is_equivalent_to(sharding, 1)
    trace = optax.tree.get(state, "trace")
    assert trace.sharding.is_equivalent_to(sharding, 1), trace.sharding
    restarts = optax.tree.get(state, "restarts")
    if restarts is not None:
      assert restarts.sharding.is_equivalent_to(replicated, 0)
    expected_x, expected_state = _run_single_device(optimizer, lam, x0, STEPS)
    np.testing.assert_allclose(x, expected_x, rtol=1e-9, atol=1e-12)
    assert criterion is None or int(optax.tree.get(state, "restarts")) > 0
    assert optax.tree.get(state, "restarts") == optax.tree.get(
        expected_state, "restarts"
    )
    print(f"jit_named_sharding {criterion}: ok,"
          f" restarts={optax.tree.get(state, 'restarts')}")


def jit_init_explicit_sharding():
  """With explicit (sharding-in-types) meshes, jax.jit(init) also returns
  the state sharded like the parameters."""
  mesh = jax.make_mesh((8,), ("x",), axis_types=(AxisType.Explicit,))
  sharding = NamedSharding(mesh, P("x"))
  with jax.set_mesh(mesh):
    params = jnp.zeros((64, 4), out_sharding=sharding)
    for criterion in CRITERIA + (None,):
      optimizer = _optimizer(criterion)
      state = jax.jit(optimizer.init)(params)
      assert jax.typeof(optax.tree.get(state, "trace")) == jax.typeof(params)
      _, new_state = jax.jit(optimizer.update)(
          params, state, params, value=jnp.zeros([])
      )
      chex_types = jax.tree.map(jax.typeof, (state, new_state))
      assert chex_types[0] == chex_types[1]
      print(f"jit_init_explicit_sharding {criterion}: ok")


def shard_map_data_parallel():
  """Data parallelism: each device a slice of the batch, parameters
  replicated, the loss pmean-ed inside the differentiated function."""
  rng = np.random.default_rng(0)
  features = jnp.asarray(rng.standard_normal((64, 6)))
  targets = jnp.asarray(rng.standard_normal(64))

  def local_loss(w, xs, ys):
    return 0.5 * jnp.mean((xs @ w - ys) ** 2)

  for criterion in CRITERIA:
    optimizer = nagd.nagd(0.1, 0.9, restart=criterion)

    def train(w, xs, ys):
      def step(carry, _):
        w, state = carry
        value, grads = jax.value_and_grad(
            lambda w: jax.lax.pmean(local_loss(w, xs, ys), "x")
        )(w)
        updates, state = optimizer.update(grads, state, w, value=value)
        return (optax.apply_updates(w, updates), state), value

      (w, state), values = jax.lax.scan(
          step, (w, optimizer.init(w)), length=40
      )
      return w, optax.tree.get(state, "restarts"), values

    parallel = jax.jit(
        jax.shard_map(
            train,
            mesh=MESH,
            in_specs=(P(), P("x"), P("x")),
            out_specs=(P(), P(), P()),
        )
    )
    w, restarts, values = parallel(jnp.zeros(6), features, targets)
    expected_w, expected_restarts, expected_values = (
        _single_device_regression(optimizer, features, targets)
    )
    np.testing.assert_allclose(values, expected_values, rtol=1e-9)
    np.testing.assert_allclose(w, expected_w, rtol=1e-9, atol=1e-12)
    assert int(restarts) == int(expected_restarts)
    print(f"shard_map_data_parallel {criterion}: ok, restarts={int(restarts)}")


def _single_device_regression(optimizer, features, targets):
  def loss(w):
    return 0.5 * jnp.mean((features @ w - targets) ** 2)

  @jax.jit
  def train(w):
    def step(carry, _):
      w, state = carry
      value, grads = jax.value_and_grad(loss)(w)
      updates, state = optimizer.update(grads, state, w, value=value)
      return (optax.apply_updates(w, updates), state), value

    (w, state), values = jax.lax.scan(step, (w, optimizer.init(w)), length=40)
    return w, optax.tree.get(state, "restarts"), values

  return train(jnp.zeros(6))


def shard_map_sharded_parameters():
  """Parameters sharded inside shard_map, with axis_name: the inner products
  and norms of the restart tests are psum-ed, and every device takes the
  decisions of the one-device run."""
  lam, x0 = _quadratic()
  for criterion in CRITERIA:
    optimizer = _optimizer(criterion, axis_name="x")

    def train(lam, x):
      def step(carry, _):
        x, state = carry
        # The loss is a sum over all shards; its gradient is local.
        value = jax.lax.psum(0.5 * jnp.sum(lam * x * x), "x")
        updates, state = optimizer.update(lam * x, state, x, value=value)
        return (optax.apply_updates(x, updates), state), None

      (x, state), _ = jax.lax.scan(step, (x, optimizer.init(x)), length=STEPS)
      return x, optax.tree.get(state, "restarts")

    sharded = jax.jit(
        jax.shard_map(
            train, mesh=MESH, in_specs=(P("x"), P("x")),
            out_specs=(P("x"), P()),
        )
    )
    x, restarts = sharded(lam, x0)
    expected_x, expected_state = _run_single_device(
        _optimizer(criterion), lam, x0, STEPS
    )
    np.testing.assert_allclose(x, expected_x, rtol=1e-9, atol=1e-12)
    assert int(restarts) == int(optax.tree.get(expected_state, "restarts"))
    assert int(restarts) > 0
    print(f"shard_map_sharded_parameters {criterion}: ok,"
          f" restarts={int(restarts)}")


def shard_map_mixed_parameters():
  """Sharded weights next to a replicated bias, with axis_name: the bias is
  counted once, not once per device, so the 8-device run takes the
  decisions of the one-device run (JAX tells the two kinds of leaves apart
  by whether they vary over the axis)."""
  lam, x0 = _quadratic()
  # A replicated leaf whose share of <g, m> decides some restarts.
  curvature = jnp.asarray([1.0, 0.5, 0.2, 0.05])
  bias0 = 4.0 * jnp.asarray([1.0, -1.0, 1.0, -1.0])

  def gradients(params, lam):
    return {"w": lam * params["w"], "b": curvature * params["b"]}

  for criterion in ("gradient", "speed"):
    optimizer = _optimizer(criterion, axis_name="x")

    def train(lam, w, b):
      def step(carry, _):
        params, state = carry
        updates, state = optimizer.update(gradients(params, lam), state,
                                          params)
        return (optax.apply_updates(params, updates), state), params

      params = {"w": w, "b": b}
      (params, state), history = jax.lax.scan(
          step, (params, optimizer.init(params)), length=STEPS)
      return params["w"], params["b"], history["b"], optax.tree.get(
          state, "restarts")

    sharded = jax.jit(
        jax.shard_map(
            train, mesh=MESH, in_specs=(P("x"), P("x"), P()),
            out_specs=(P("x"), P(), P(), P()),
        )
    )
    w, b, bias_history, restarts = sharded(lam, x0, bias0)

    single = _optimizer(criterion)

    @jax.jit
    def reference(params):
      def step(carry, _):
        params, state = carry
        updates, state = single.update(gradients(params, lam), state, params)
        return (optax.apply_updates(params, updates), state), params["b"]

      return jax.lax.scan(step, (params, single.init(params)), length=STEPS)

    (expected, expected_state), expected_history = reference(
        {"w": jnp.asarray(x0), "b": bias0})
    np.testing.assert_allclose(w, expected["w"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b, expected["b"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(bias_history, expected_history, rtol=1e-9,
                               atol=1e-12)
    assert int(restarts) == int(optax.tree.get(expected_state, "restarts"))
    assert int(restarts) > 0
    print(f"shard_map_mixed_parameters {criterion}: ok,"
          f" restarts={int(restarts)}")


def _auto_step_runs(optimizer, single, gradient_and_loss, params, data,
                    steps):
  """The 8-device run (with axis_name, the loss psum-ed; params and data
  sharded alike) and the one-device run of the same optimizer: the params,
  and the records of each step."""
  fields = ("step_size", "curvature", "cuts", "rejections", "restarts")

  def run(optimizer, params, data, reduce):
    def step(carry, _):
      params, state = carry
      gradients, value = gradient_and_loss(params, data)
      updates, state = optimizer.update(gradients, state, params,
                                        value=reduce(value))
      return (optax.apply_updates(params, updates), state), tuple(
          optax.tree.get(state, name) for name in fields)

    (params, _), records = jax.lax.scan(
        step, (params, optimizer.init(params)), length=steps)
    return params, dict(zip(fields, records))

  spec = jax.tree.map(lambda _: P("x"), params)
  sharded = jax.jit(jax.shard_map(
      lambda p, d: run(optimizer, p, d, lambda v: jax.lax.psum(v, "x")),
      mesh=MESH, in_specs=(spec, P("x")), out_specs=(spec, P())))
  reference = jax.jit(lambda p, d: run(single, p, d, lambda v: v))
  return sharded(params, data), reference(params, data)


def shard_map_auto_step():
  """The automatic step with parameters sharded inside shard_map, with
  axis_name: its norms and inner products are psum-ed, so the 8-device run
  takes the steps, restarts and rejections of the one-device run."""
  # Minibatch rule: a quadratic from 0 (no trust region), where momentum 0.9
  # overshoots and the gradient criterion restarts it.
  lam, _ = _quadratic()

  def quadratic(x, lam):
    return lam * (x - 3.0), 0.5 * jnp.sum(lam * (x - 3.0) ** 2)

  # Full-batch rule: 256 Rosenbrock pairs from (-1.2, 1), whose first BB2
  # steps overshoot the valley and are rejected. Near the valley floor the
  # curvature estimate divides rounding (which differs with the order of
  # the psum) by small gradient changes, so the runs are compared early.
  def rosenbrock(p, _):
    a, b = p["a"], p["b"]
    gradients = {"a": -2 * (1 - a) - 400 * a * (b - a**2),
                 "b": 200 * (b - a**2)}
    return gradients, jnp.sum((1 - a) ** 2 + 100 * (b - a**2) ** 2)

  cases = {
      "minibatch": (lambda axis_name: nagd.nagd(
          "auto", 0.9, restart="gradient", axis_name=axis_name),
                    quadratic, jnp.zeros(512), lam, 100, 1e-8),
      "full_batch": (lambda axis_name: nagd.nagd(
          nagd.auto_step(full_batch=True),
          nagd.schedules.nesterov_momentum(), restart="gradient",
          axis_name=axis_name),
                     rosenbrock, {"a": jnp.full(256, -1.2),
                                  "b": jnp.ones(256)}, jnp.zeros(8), 20,
                     1e-7),
  }
  for mode, (make, gradient_and_loss, params, data, steps,
             rtol) in cases.items():
    (params, records), (expected, expected_records) = _auto_step_runs(
        make("x"), make(None), gradient_and_loss, params, data, steps)
    for name in records:
      np.testing.assert_allclose(records[name], expected_records[name],
                                 rtol=rtol, err_msg=name)
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(expected)):
      np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-12)
    events = int(records["restarts"][-1]) + int(records["rejections"][-1])
    assert events > 0, mode
    print(f"shard_map_auto_step {mode}: ok,"
          f" restarts={int(records['restarts'][-1])},"
          f" rejections={int(records['rejections'][-1])}")


def shard_map_per_device_decisions():
  """Without axis_name each device restarts on its own loss: the devices
  take different decisions (and a per-device restart= flag), and each
  matches the same run alone on one device."""
  # Momentum 0.99 overshoots: the loss rises (restart) on some devices only.
  scales = jnp.asarray(np.linspace(0.5, 1.0, 8))
  lam = jnp.asarray(np.logspace(0, -2, 16))
  steps = 40

  def run(scale, x, flags, restart_flag):
    optimizer = nagd.nagd(0.8, 0.99, restart="loss")
    loss = lambda x: 0.5 * scale * jnp.sum(lam * x**2)

    # A Python loop: a scan's carry would have to be cast to varying.
    state = optimizer.init(x)
    for k in range(steps):
      value, grads = jax.value_and_grad(loss)(x)
      updates, state = optimizer.update(
          grads, state, x, value=value,
          **({"restart": flags[k]} if restart_flag else {}))
      x = optax.apply_updates(x, updates)
    return x, optax.tree.get(state, "restarts")

  x0 = jnp.ones((8, 16))
  flags = jnp.zeros((8, steps), bool).at[jnp.arange(8), 4 * jnp.arange(8)
                                         + 3].set(True)
  for restart_flag in (False, True):
    per_device = jax.jit(jax.shard_map(
        lambda s, x, f: jax.tree.map(
            lambda a: a[None],
            run(s[0], x[0], f[0], restart_flag)),
        mesh=MESH, in_specs=(P("x"), P("x"), P("x")),
        out_specs=(P("x"), P("x")),
    ))
    x, restarts = per_device(scales, x0, flags)
    # The reference: the eight runs side by side on one device.
    expected_x, expected_restarts = jax.jit(jax.vmap(
        lambda s, x, f: run(s, x, f, restart_flag)))(scales, x0, flags)
    np.testing.assert_allclose(x, expected_x, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(restarts, expected_restarts)
    assert len(set(np.asarray(restarts).tolist())) > 1, restarts
    print(f"shard_map_per_device_decisions restart_flag={restart_flag}: ok,"
          f" restarts={np.asarray(restarts).tolist()}")


CASES = {
    "jit_named_sharding": jit_named_sharding,
    "jit_init_explicit_sharding": jit_init_explicit_sharding,
    "shard_map_data_parallel": shard_map_data_parallel,
    "shard_map_sharded_parameters": shard_map_sharded_parameters,
    "shard_map_mixed_parameters": shard_map_mixed_parameters,
    "shard_map_auto_step": shard_map_auto_step,
    "shard_map_per_device_decisions": shard_map_per_device_decisions,
}

assert set(CASES) == set(sharding_cases_names.CASES)

if __name__ == "__main__":
  assert jax.device_count() == 8, jax.devices()
  CASES[sys.argv[1]]()
