"""Errors every layer may raise (this module imports nothing of gen_jax)."""


class SettingError(ValueError):
  """A setting (a config value, or an argument built from one) that a network or method cannot
  use. The message names the setting and what to change; `experiments/main.py` prints it as one
  line."""
