"""Shared test helpers."""

import contextlib
import logging
import re

import jax
import pytest


class _RecordingHandler(logging.Handler):

  def __init__(self):
    super().__init__()
    self.records = []

  def emit(self, record):
    self.records.append(record)


@contextlib.contextmanager
def log_compilations():
  """Collects the XLA compilations that happen inside the block.

  Optax has the same helper, but only in its private ``optax._src``; this is
  the public-API version (``jax.log_compiles`` plus a logging handler).
  """
  handler = _RecordingHandler()
  logger = logging.getLogger("jax")
  logger.addHandler(handler)
  compilations = []
  try:
    with jax.log_compiles():
      yield compilations
  finally:
    logger.removeHandler(handler)
  compilations.extend(
      r for r in handler.records
      if re.search(r"Finished .* compilation", r.getMessage())
  )


@pytest.fixture
def x64():
  """Runs the test with 64-bit floats enabled."""
  with jax.enable_x64(True):
    yield
