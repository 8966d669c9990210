"""The names of the cases in tests/sharding_cases.py, importable without
importing JAX (that module must set XLA_FLAGS before JAX loads)."""

CASES = (
    "jit_named_sharding",
    "jit_init_explicit_sharding",
    "shard_map_data_parallel",
    "shard_map_sharded_parameters",
    "shard_map_mixed_parameters",
    "shard_map_auto_step",
    "shard_map_per_device_decisions",
)
