"""The config schema: every key a run reads, with its default, checked before anything compiles.

An experiment file (experiments/configs/*.py) sets only what differs from these defaults. A key
that is not here (or, under `model`, not in the method module's `default_model_config()`) is a
mistake and is refused with the valid keys listed.
"""

import difflib
from typing import Any, Iterable

import ml_collections

from gen_jax import names
from gen_jax.train import optimizers


class ConfigError(ValueError):
  """A config key or value the code would not use as the user meant."""


def _method_module(name: str):
  return names.submodule("gen_jax.methods", name, what="method", exclude=("base",))


def defaults(method: str = "") -> ml_collections.ConfigDict:
  """Every key with its default; with `method`, also that method's model keys.

  Experiment files start from `defaults("their_method")`, so that any key can be overridden on
  the command line (`--config.train.num_steps=10`).
  """
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.method = method  # a module of gen_jax.methods, e.g. "classifier", "gan"
  # The method's own keys: see its module's default_model_config().
  c.model = ml_collections.ConfigDict(
      _method_module(method).default_model_config() if method else {})
  c.data = ml_collections.ConfigDict(dict(
      name="",  # a gen_jax.data name, e.g. "digits", "toy2d/ring8", "python_source"
      batch_size=128,  # global batch, split over devices and processes
      train_split="train",
      eval_split="test",  # "" skips evaluation
      eval_batch_size=0,  # 0: the train batch size
      seq_len=0,  # token window for text datasets; 0 for others
      eval_stride=0,  # text: tokens between evaluation windows' starts; 0: seq_len - 1
      fresh=False,  # toy2d: a fresh exact sample every step instead of a fixed training set
      preprocess=(),  # names of gen_jax.data.preprocess functions, applied in order
      data_dir="",  # "" uses $GEN_JAX_DATA_DIR, else tfds' default
  ))
  c.optim = ml_collections.ConfigDict(optimizers.DEFAULTS)
  c.train = ml_collections.ConfigDict(dict(
      num_steps=1000,
      log_every=100,  # JSON lines / TensorBoard cadence; metrics are averaged over the interval
      eval_every=0,  # 0: evaluate at the end only
      sample_every=0,  # 0: sample at the end only
      num_samples=64,
      checkpoint_every=500,
      # Train steps per device call (unrolled over that many batches): amortises the host's
      # per-step work (dispatch, batch transfer) when a step takes well under a millisecond.
      # Results are the same; checkpoints, evaluation and samples still land on their steps.
      steps_per_call=1,
      max_to_keep=3,
      async_checkpoints=True,
      ema_decay=0.0,  # 0 disables the EMA of parameters
      progress_bar=True,
      # On the CPU backend, run each call on a worker thread (JAX's default) and return at once.
      # False runs it on the calling thread, where the step's large temporary buffers are reused
      # instead of mapped afresh each step: 1.5x faster for lm_python (gen_jax/host_memory.py).
      # Takes effect only before the process's first JAX computation.
      cpu_async_dispatch=True,
  ))
  return c


def _unknown(where: str, keys: Iterable[str], valid: Iterable[str]) -> ConfigError:
  valid = sorted(valid)
  parts = []
  for key in sorted(keys):
    close = difflib.get_close_matches(key, valid, n=1)
    parts.append(f"{where}{key}" + (f" (did you mean {where}{close[0]}?)" if close else ""))
  return ConfigError(f"Unknown config key(s): {', '.join(parts)}. "
                     f"Valid keys under {where or 'the top level'}: {', '.join(valid)}.")


def _merge(base: ml_collections.ConfigDict, user: ml_collections.ConfigDict, where: str,
           extra_sections: Iterable[str] = ()) -> None:
  """Copies `user` into `base`, refusing keys that `base` lacks."""
  extra = set(user.keys()) - set(base.keys()) - set(extra_sections)
  if extra:
    raise _unknown(where, extra, list(base.keys()) + list(extra_sections))
  for key, value in user.items():
    if key in extra_sections:
      continue
    if isinstance(base[key], ml_collections.ConfigDict) and key != "kwargs":
      if not isinstance(value, (ml_collections.ConfigDict, dict)):
        raise ConfigError(f"{where}{key} must be a dict of settings, got {value!r}.")
      _merge(base[key], ml_collections.ConfigDict(value), f"{where}{key}.")
    else:
      try:
        base[key] = value
      except TypeError as e:
        raise ConfigError(f"{where}{key}: {e}") from None


def resolve(user: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Returns the full config: defaults, the method's model defaults, then the user's values.

  Raises ConfigError / UnknownNameError for unknown keys or names, before any compilation.
  """
  if not user.get("method"):
    raise ConfigError("The config names no method: set config.method to one of the modules "
                      "of gen_jax.methods.")
  config = defaults(user.method)
  # Per-player optimizer overrides are sub-dicts of `optim`, checked once the players are known.
  players = [k for k, v in user.get("optim", {}).items()
             if isinstance(v, (dict, ml_collections.ConfigDict)) and k != "kwargs"]
  top = ml_collections.ConfigDict({k: v for k, v in user.items()})
  optim_user = top.get("optim", ml_collections.ConfigDict())
  _merge(config, ml_collections.ConfigDict({k: v for k, v in top.items() if k != "optim"}), "")
  _merge(config.optim, optim_user, "optim.", extra_sections=players)
  for player in players:
    overrides = ml_collections.ConfigDict(optim_user[player])
    extra = set(overrides.keys()) - set(optimizers.DEFAULTS)
    if extra:
      raise _unknown(f"optim.{player}.", extra, optimizers.DEFAULTS)
    config.optim[player] = overrides
  if not config.data.name:
    raise ConfigError("config.data.name is empty: name a dataset of gen_jax.data.")
  for key, least in (("num_steps", 1), ("log_every", 1), ("checkpoint_every", 1),
                     ("steps_per_call", 1), ("eval_every", 0), ("sample_every", 0)):
    value = config.train[key]
    if not isinstance(value, int) or value < least:
      raise ConfigError(f"config.train.{key} must be an integer of at least {least} "
                        f"(got {value!r}).")
  stride, window = config.data.eval_stride, config.data.seq_len
  if not isinstance(stride, int) or stride < 0 or (window and stride >= window):
    raise ConfigError(f"config.data.eval_stride must be 0 (windows sharing one token) or an "
                      f"integer from 1 to seq_len - 1 (got {stride!r}, seq_len {window}).")
  return config


def check_players(config: ml_collections.ConfigDict, players: Iterable[str]) -> None:
  """Refuses optimizer overrides for players the method does not have."""
  players = set(players)
  overrides = {k for k, v in config.optim.items()
               if isinstance(v, ml_collections.ConfigDict) and k != "kwargs"}
  if overrides - players:
    raise ConfigError(f"config.optim has overrides for {sorted(overrides - players)}, but "
                      f"method {config.method!r} has the players {sorted(players)}.")


def from_dict(values: dict[str, Any]) -> ml_collections.ConfigDict:
  """The inverse of `to_dict` (JSON lists become tuples again), resolved."""

  def tuples(value):
    if isinstance(value, dict):
      return {k: tuples(v) for k, v in value.items()}
    if isinstance(value, list):
      return tuple(tuples(v) for v in value)
    return value

  return resolve(ml_collections.ConfigDict(tuples(values)))


def to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """A JSON-friendly copy (tuples become lists)."""
  return _jsonable(config.to_dict())


def _jsonable(value: Any) -> Any:
  if isinstance(value, dict):
    return {k: _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  return value
