"""Packages the problems need only when called: imported on demand."""

import importlib


def load(module: str, name: str, extra: str):
  """``module.name``, or an ImportError that says which extra to install."""
  try:
    return getattr(importlib.import_module(module), name)
  except ImportError as error:
    raise ImportError(
        f"{module.split('.')[0]} is not installed:"
        f' pip install "nagd_optax[{extra}]"'
    ) from error
