"""Errors every layer may raise, and the helper their argument checks share (this module
imports nothing of gen_jax)."""

from typing import Any

import jax
import numpy as np


class SettingError(ValueError):
  """A setting (a config value, or an argument built from one) that a network or method cannot
  use. The message names the setting and what to change; `experiments/main.py` prints it as one
  line."""


class MissingFileError(SettingError, FileNotFoundError):
  """A file a setting names (a weight file) that does not exist; the message says where to get
  it and which setting takes its path. Both a `SettingError` and a `FileNotFoundError`."""


def concrete(value: Any) -> np.ndarray | None:
  """`value` as a NumPy array when it is known at trace time (a Python number, a NumPy or an
  unjitted JAX array), so that an argument check can read it; None when it is traced under
  `jit`, where it cannot be checked."""
  try:
    return np.asarray(value)
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return None
