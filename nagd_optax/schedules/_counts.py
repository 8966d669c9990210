"""Step counts as floats, for schedules."""

import jax
import jax.numpy as jnp


def as_float(count: jax.typing.ArrayLike) -> jax.Array:
  """The count in the default float dtype (float64 when x64 is enabled).

  int32 / int32 is float32 in JAX even with x64 enabled, so dividing counts
  directly would round float64 runs' schedules to float32.
  """
  return jnp.asarray(count, dtype=jnp.result_type(float))
