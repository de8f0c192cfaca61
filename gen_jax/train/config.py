"""The config schema: every key a run reads, its default and the values it allows, checked by
`resolve` before anything compiles.

An experiment file (experiments/configs/*.py) sets only what differs from these defaults. A key
that is not here (or, under `model`, not in the method module's `default_model_config()`) is a
mistake and is refused with the valid keys listed. Every value is checked against the type of its
key's default (a float key also takes an int, a tuple key a list, a `placeholder` key None) and
against the key's `Rule`; a bad one is refused with one line naming the key, what it allows and
the value:

    config.train.max_to_keep must be an integer of at least 1 (got 0).

Where the rules live:

- `TOP`, `DATA`, `TRAIN`: each key as `(default, rule)`, side by side.
- `OPTIM_RULES`: the rules of `optimizers.DEFAULTS` (the shared optimizer settings); they check
  each player's overrides (`config.optim.<player>.*`) too. `optim.kwargs` is checked against the
  optax function's signature (the names, and the types of their defaults) and
  `OPTAX_KWARG_RULES`.
- `MODEL_RULES`: `config.model`'s keys come from the method's `default_model_config()`, so they
  are checked by the type of their default, and by range for the names in this table, which the
  methods share (`latent_dim`, `dropout`, `widths`, ...). A method that adds a numeric key under
  a new name declares its range in its own module's `MODEL_RULES` (a test lists the keys that
  lack one).
- `frozen`: one key per name in the method module's `FROZEN_PARTS`, the workdir of a trained run
  the method uses frozen (`gen_jax.train.setup`); required, so it has no default.
- `CROSS_CHECKS`: rules relating two keys (`model.sample_steps <= model.num_timesteps`).
- `_check_data`: what needs the dataset's `info`, read from its prepared files (a bundled
  dataset is prepared on first use, as the loop's first read would; one that needs a download
  and is not prepared is left to that read, which says how to prepare it): the splits exist, the
  batch fits the training split, the model's batch keys, classes, levels, vocabulary and image
  shape match the data, and the text-only and toy2d-only keys are unset for other data.
"""

import dataclasses
import difflib
import importlib.util
import inspect
import math
import numbers
import pathlib
import traceback
from collections.abc import Mapping
from typing import Any, Callable, Iterable, Sequence

import ml_collections
import numpy as np
import optax
from ml_collections import config_dict

from gen_jax import data as data_lib
from gen_jax import names
from gen_jax.data import preprocess as preprocess_lib
from gen_jax.train import optimizers


class ConfigError(ValueError):
  """A config key or value the code would not use as the user meant."""


@dataclasses.dataclass(frozen=True)
class Rule:
  """The values a key allows beyond the type of its default.

  Attributes:
    low, high: bounds of a number, or of each element of a tuple; None for no bound.
    low_open, high_open: the bound itself is excluded.
    also: values allowed outside the bounds, e.g. 0 for "off" or "read it from the data".
    nonempty: refuses "" and ().
    lengths: the lengths a tuple may have (empty: any).
    items: the type of a tuple's elements, for a default that is an empty tuple.
    choices: returns the strings allowed (for a string, or each element of a tuple).
    note: what the value means or why the range; it ends the message.
  """

  low: float | None = None
  high: float | None = None
  low_open: bool = False
  high_open: bool = False
  also: tuple[Any, ...] = ()
  nonempty: bool = False
  lengths: tuple[int, ...] = ()
  items: type | None = None
  choices: Callable[[], Sequence[str]] | None = None
  note: str = ""

  def noted(self, note: str) -> "Rule":
    return dataclasses.replace(self, note=note)


ANY = Rule()
NONEMPTY = Rule(nonempty=True)
POSITIVE = Rule(low=0, low_open=True)
FRACTION = Rule(low=0, high=1, high_open=True)  # [0, 1): rates and decays
UNIT = Rule(low=0, high=1)  # [0, 1]
SIZES = Rule(low=1, nonempty=True)  # layer widths: a non-empty tuple of positive integers


def at_least(low: float, note: str = "") -> Rule:
  return Rule(low=low, note=note)


def zero_or_at_least(low: float, note: str = "") -> Rule:
  """0 (off, or "read it from the data") or at least `low`."""
  return Rule(low=low, also=(0,), note=note)


def _preprocess_names() -> Sequence[str]:
  return preprocess_lib.__all__


# --- The schema: each key's default and rule --------------------------------------------------

TOP = dict(
    seed=(0, Rule(low=0, high=2**32 - 1, note="jax.random.PRNGKey keeps 32 bits, so a larger "
                                               "seed would repeat a smaller one")),
    method=("", NONEMPTY.noted("name a module of gen_jax.methods, e.g. 'classifier' or 'gan'")),
)

DATA = dict(
    # A gen_jax.data name, e.g. "digits", "toy2d/ring8", "python_source".
    name=("", NONEMPTY.noted("name a dataset of gen_jax.data (digits, toy2d/<ring8|grid25|"
                             "swiss_roll|two_moons>, python_source, sample_images/<128|64|256>) "
                             "or a prepared tfds one")),
    batch_size=(128, at_least(1)),  # global batch, split over devices and processes
    train_split=("train", NONEMPTY),  # a split of the dataset (checked against its info)
    eval_split=("test", ANY),  # "" skips evaluation
    eval_batch_size=(0, at_least(0, "0 means the train batch size")),
    seq_len=(0, zero_or_at_least(2, "tokens per window of a text dataset, 0 for others")),
    # Text: tokens between evaluation windows' starts; 0: seq_len - 1.
    eval_stride=(0, at_least(0)),
    fresh=(False, ANY),  # toy2d: a fresh exact sample every step instead of a fixed training set
    # Names of gen_jax.data.preprocess functions, applied in order.
    preprocess=((), Rule(items=str, choices=_preprocess_names)),
    data_dir=("", ANY),  # "" uses $GEN_JAX_DATA_DIR, else tfds' default
)

TRAIN = dict(
    num_steps=(1000, at_least(1)),
    # JSON lines / TensorBoard cadence; metrics are averaged over the interval.
    log_every=(100, at_least(1)),
    eval_every=(0, at_least(0, "0 evaluates at the end only")),
    sample_every=(0, at_least(0, "0 samples at the end only")),
    num_samples=(64, at_least(1)),
    checkpoint_every=(500, at_least(1)),
    # Train steps per device call (unrolled over that many batches): amortises the host's
    # per-step work (dispatch, batch transfer) when a step takes well under a millisecond.
    # Results are the same; checkpoints, evaluation and samples still land on their steps.
    steps_per_call=(1, at_least(1)),
    max_to_keep=(3, at_least(1, "the newest checkpoints kept, which a run resumes from")),
    async_checkpoints=(True, ANY),
    # params' EMA; step s: min(this, (1+s)/(10+s)), TF's EMA warm-up; 0: off
    ema_decay=(0.0, FRACTION.noted("0 turns the EMA off; at 1 it would never move")),
    progress_bar=(True, ANY),
    # On the CPU backend, run each call on a worker thread (JAX's default) and return at once.
    # False runs it on the calling thread, where the step's large temporary buffers are reused
    # instead of mapped afresh each step (gen_jax/host_memory.py). Process-wide: applied by the
    # entry point (experiments/main.py) before JAX starts, not by train_and_evaluate.
    cpu_async_dispatch=(True, ANY),
)

# The defaults are optimizers.DEFAULTS; these rules check config.optim and each player's
# overrides. Names (optimizer, schedule) are resolved, with close matches, by optimizers.py.
OPTIM_RULES = dict(
    name=NONEMPTY.noted("an optax optimizer that takes learning_rate (adam, adamw, sgd, ...)"),
    learning_rate=POSITIVE,
    schedule=NONEMPTY.noted("constant, cosine or linear"),
    warmup_steps=at_least(0),
    grad_clip_norm=at_least(0, "0 disables clipping"),
    kwargs=ANY,
)

# Ranges of optax arguments common to several optimizers; the type comes from the default in the
# function's signature (float when that is None).
OPTAX_KWARG_RULES = dict(
    b1=FRACTION, b2=FRACTION, momentum=FRACTION, decay=FRACTION, eps=at_least(0),
    eps_root=at_least(0), weight_decay=at_least(0),
)

# Ranges of the model keys, by name: the methods' default_model_config() keys that are numbers
# or tuples of numbers. A key's type always comes from its default; a key not listed here is
# checked by type only (and floats must be finite).
# `model.compute_dtype` of the methods that have it: mixed precision for accelerators, where
# bfloat16 matmuls are faster (on a CPU, float32 is).
COMPUTE_DTYPES = {"float32": "float32", "bfloat16": "bfloat16"}

MODEL_RULES = dict(
    # Sizes of networks.
    latent_dim=at_least(1), data_dim=at_least(1), feature_dim=at_least(1),
    emb_features=at_least(1), label_features=at_least(1), blocks_per_level=at_least(1),
    vocab_size=at_least(1), num_layers=at_least(1), num_heads=at_least(1), d_model=at_least(1),
    d_ff=at_least(1), max_len=at_least(1),
    # Widths of successive layers: a non-empty tuple of positive integers.
    widths=SIZES, features=SIZES, gen_features=SIZES, disc_features=SIZES,
    encoder_features=SIZES, decoder_features=SIZES, encoder_widths=SIZES, decoder_widths=SIZES,
    gen_widths=SIZES, disc_widths=SIZES,
    image_shape=Rule(low=1, lengths=(0, 3), items=int,
                     note="(height, width, channels); () reads it from the dataset"),
    # Probabilities of dropping a unit or a label, and label smoothing: 1 would drop everything.
    dropout=FRACTION, dropout_rate=FRACTION, label_dropout=FRACTION, label_smoothing=FRACTION,
    compute_dtype=Rule(choices=lambda: tuple(COMPUTE_DTYPES),
                       note="activations and matmuls; parameters and the loss stay float32"),
    # Labels: 0 means unconditional (or none).
    num_classes=at_least(0),
    num_levels=zero_or_at_least(2, "grey levels of the images; 0 reads them from the dataset"),
    # GAN.
    n_critic=at_least(1, "discriminator updates per generator update"),
    penalty_weight=at_least(0),
    gradient_penalty_target=at_least(0, "the gradient norm pulled to; 0 centres it at zero"),
    # Diffusion.
    num_timesteps=at_least(1),
    sample_steps=at_least(1, "sampler steps, at most model.num_timesteps"),
    eta=UNIT.noted("DDIM: 0 deterministic, 1 DDPM's posterior variance"),
    guidance_scale=at_least(0, "0 unconditional, 1 conditional, > 1 guided"),
    clip_x0=at_least(0, "0 does not clip"),
    data_scale=POSITIVE,
    min_snr_gamma=POSITIVE.noted("the SNR at which min(SNR, gamma) saturates"),
    # VAE.
    beta=at_least(0), free_bits=at_least(0), kl_warmup_steps=at_least(0),
    num_mixtures=at_least(1), gaussian_std=POSITIVE, train_samples=at_least(1),
    eval_samples=at_least(1), eval_chunk=at_least(1, "it divides model.eval_samples"),
    # Sequence models and their samples.
    rope_fraction=UNIT, sample_length=at_least(1),
    temperature=at_least(0, "0 is greedy"), top_k=at_least(0, "0 keeps every token"),
    top_p=Rule(low=0, high=1, low_open=True, note="1 keeps every token"),
    beam_size=at_least(1), length_penalty=at_least(0, "GNMT's alpha; 0: none"),
    eos_id=at_least(0, "a token id below model.vocab_size, or None for no end token"),
)


# --- Checking one value -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Spec:
  """What a key accepts: values of `kind` (bool, int, float, str, tuple, dict, or object for
  anything) within `rule`, and None when `optional`."""

  kind: type
  rule: Rule = ANY
  optional: bool = False
  items: type | None = None  # a tuple's element kind; None for any


def _kind(value: Any) -> type:
  for kind in (bool, int, float, str):  # bool first: True is an int too
    if isinstance(value, kind):
      return kind
  if isinstance(value, (tuple, list)):
    return tuple
  return dict if _is_dict(value) else object


def _spec(default: Any, rule: Rule = ANY) -> _Spec:
  """The spec of a key from its default (a `config_dict.placeholder` gives a type and None)."""
  if isinstance(default, config_dict.FieldReference):
    kind = {bool: bool, int: int, float: float, str: str, tuple: tuple, list: tuple}.get(
        default.get_type(), object)
    return _Spec(kind, rule, optional=default.get() is None)
  kind = _kind(default)
  items = rule.items or (_kind(default[0]) if kind is tuple and default else None)
  return _Spec(kind, rule, optional=default is None, items=items)


def _is_dict(value: Any) -> bool:
  return isinstance(value, (Mapping, ml_collections.ConfigDict))


class _Refused(Exception):
  """A value outside its spec; `_checked` turns it into a ConfigError naming the key."""


def _conform(kind: type | None, value: Any, rule: Rule) -> Any:
  """`value` as `kind` (an int given to a float key becomes a float), if `rule` allows it."""
  if kind is bool:
    if not isinstance(value, (bool, np.bool_)):
      raise _Refused
    return bool(value)
  if kind in (int, float):
    number_type = numbers.Integral if kind is int else numbers.Real
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, number_type):
      raise _Refused
    try:
      value = kind(value)
    except OverflowError:
      raise _Refused from None
    if not math.isfinite(value):
      raise _Refused
    if value in rule.also:
      return value
    if rule.low is not None and (value < rule.low or rule.low_open and value == rule.low):
      raise _Refused
    if rule.high is not None and (value > rule.high or rule.high_open and value == rule.high):
      raise _Refused
    return value
  if kind is str:
    if not isinstance(value, str) or (rule.nonempty and not value):
      raise _Refused
    if rule.choices is not None and value not in rule.choices():
      raise _Refused
    return value
  return value  # an element of a tuple whose default gives no type


def _conform_value(spec: _Spec, value: Any) -> Any:
  if value is None and spec.optional:
    return None
  rule = spec.rule
  if spec.kind is tuple:
    if not isinstance(value, (tuple, list)):
      raise _Refused
    if (rule.nonempty and not value) or (rule.lengths and len(value) not in rule.lengths):
      raise _Refused
    return tuple(_conform(spec.items, item, rule) for item in value)
  if spec.kind is dict:
    if not _is_dict(value):
      raise _Refused
    return value
  return _conform(spec.kind, value, rule)


_KIND_NAMES = {bool: ("True or False", "booleans"), int: ("an integer", "integers"),
               float: ("a finite number", "finite numbers"), str: ("a string", "strings")}


def _number(x: float) -> str:
  return str(int(x)) if float(x).is_integer() else repr(x)


def _range(rule: Rule) -> str:
  low, high = rule.low, rule.high
  if low is not None and high is not None:
    return (f" in {'(' if rule.low_open else '['}{_number(low)}, "
            f"{_number(high)}{')' if rule.high_open else ']'}")
  if low is not None:
    return f" greater than {_number(low)}" if rule.low_open else f" of at least {_number(low)}"
  if high is not None:
    return f" less than {_number(high)}" if rule.high_open else f" of at most {_number(high)}"
  return ""


def _describe(spec: _Spec) -> str:
  """What `spec` allows, in words: "an integer of at least 1", "a tuple of 3 integers ..."."""
  rule = spec.rule
  choices = f" from: {', '.join(rule.choices())}" if rule.choices is not None else ""
  if spec.kind is tuple:
    items = (_KIND_NAMES[spec.items][1] if spec.items in _KIND_NAMES else "values")
    items += _range(rule) + choices
    sizes = [str(n) for n in rule.lengths if n]
    if sizes:
      text = f"a tuple of {' or '.join(sizes)} {items}"
    else:
      text = f"a {'non-empty ' if rule.nonempty else ''}tuple of {items}"
    text = ("() or " if 0 in rule.lengths else "") + text
  elif spec.kind is dict:
    text = "a dict of settings"
  elif spec.kind in _KIND_NAMES:
    text = _KIND_NAMES[spec.kind][0]
    if spec.kind is str and rule.nonempty:
      text = "a non-empty string"
    text += (_range(rule) if spec.kind in (int, float) else "") + choices
    text = "".join(f"{v!r} or " for v in rule.also) + text
  else:
    text = "any value"
  return ("None or " if spec.optional else "") + text


def _short(value: Any) -> str:
  text = repr(value)
  return text if len(text) <= 80 else text[:77] + "..."


def _checked(path: str, value: Any, spec: _Spec) -> Any:
  """`value` conformed to `spec`, or a one-line ConfigError naming the key, what it allows and
  the value."""
  try:
    return _conform_value(spec, value)
  except _Refused:
    hint = (f"; write ({value!r},) for a tuple of one"
            if spec.kind is tuple and isinstance(value, str) else "")
    note = f": {spec.rule.note}" if spec.rule.note else ""
    raise ConfigError(f"config.{path} must be {_describe(spec)} (got {_short(value)}){hint}"
                      f"{note}.") from None


# --- Building and resolving configs -----------------------------------------------------------


def _method_module(name: str):
  return names.submodule("gen_jax.methods", name, what="method", exclude=("base",))


def _specs(section: Mapping[str, tuple[Any, Rule]]) -> dict[str, _Spec]:
  return {key: _spec(default, rule) for key, (default, rule) in section.items()}


def _optim_specs() -> dict[str, _Spec]:
  return {key: _spec(default, OPTIM_RULES.get(key, ANY))
          for key, default in optimizers.DEFAULTS.items()}


def model_rules(method: str) -> dict[str, Rule]:
  """The ranges of `method`'s model keys: `MODEL_RULES`, and the rules its module declares for
  keys of its own (`MODEL_RULES = {key: dict(low=..., note=...)}`, each the arguments of a
  `Rule`: methods do not import this package), which take precedence."""
  own = getattr(_method_module(method), "MODEL_RULES", {})
  return {**MODEL_RULES, **{key: Rule(**kwargs) for key, kwargs in own.items()}}


def _model_specs(method: str) -> dict[str, _Spec]:
  rules = model_rules(method)
  return {key: _spec(default, rules.get(key, ANY))
          for key, default in _method_module(method).default_model_config().items()}


def defaults(method: str = "") -> ml_collections.ConfigDict:
  """Every key with its default; with `method`, also that method's model keys.

  Experiment files start from `defaults("their_method")`, so that any key can be overridden on
  the command line (`--config.train.num_steps=10`). The dict is not type-safe: a value of the
  wrong type is let through here and refused by `resolve`, which names the key and what it
  allows (ml_collections' own type error names neither, and is raised from inside it).
  """
  model = _method_module(method).default_model_config() if method else {}
  return ml_collections.ConfigDict(dict(
      seed=TOP["seed"][0],
      method=method,  # a module of gen_jax.methods, e.g. "classifier", "gan"
      model=model,  # the method's own keys: see its module's default_model_config()
      # {part: workdir} of the trained runs the method uses frozen (its module's FROZEN_PARTS).
      frozen={part: "" for part in _frozen_parts(method)},
      data={key: default for key, (default, _) in DATA.items()},
      optim=dict(optimizers.DEFAULTS),
      train={key: default for key, (default, _) in TRAIN.items()},
  ), type_safe=False)


def _frozen_parts(method: str) -> tuple[str, ...]:
  return tuple(getattr(_method_module(method), "FROZEN_PARTS", ())) if method else ()


def _frozen_specs(method: str) -> dict[str, _Spec]:
  return {part: _spec("", NONEMPTY.noted(f"name the workdir of a trained run to use as the "
                                         f"method's frozen {part!r}"))
          for part in _frozen_parts(method)}


def _unknown(where: str, keys: Iterable[str], valid: Iterable[str]) -> ConfigError:
  valid = sorted(valid)
  parts = []
  for key in sorted(keys):
    close = difflib.get_close_matches(key, valid, n=1)
    parts.append(f"{where}{key}" + (f" (did you mean {where}{close[0]}?)" if close else ""))
  return ConfigError(f"Unknown config key(s): {', '.join(parts)}. "
                     f"Valid keys under {where or 'the top level'}: {', '.join(valid)}.")


def _merge(base: ml_collections.ConfigDict, user: Any, where: str, specs: Mapping[str, _Spec],
           skip: Iterable[str] = ()) -> None:
  """Copies the section `user` into `base`, each value checked against its key's spec; refuses
  keys that `specs` lacks. Keys in `skip` are left to the caller."""
  if not _is_dict(user):
    raise ConfigError(f"config.{where[:-1]} must be a dict of settings (got {_short(user)}).")
  skip = set(skip)
  extra = set(user.keys()) - set(specs) - skip
  if extra:
    raise _unknown(where, extra, list(specs) + sorted(skip))
  for key, value in user.items():
    if key not in skip:
      base[key] = _checked(f"{where}{key}", value, specs[key])


def resolve(user: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Returns the full config: defaults, the method's model defaults, then the user's values.

  Every value is checked (see the module docstring), and the dataset's info read to check the
  splits and what the model expects of the data. Returns values of the defaults' types (floats
  for ints given to float keys, tuples for lists).

  Raises:
    ConfigError: an unknown key or a value its key does not allow, in one line that names them.
    UnknownNameError: an unknown method.
  """
  if not _is_dict(user):
    raise ConfigError(f"A config is an ml_collections.ConfigDict (got {_short(user)}).")
  top = _specs(TOP)
  method = _checked("method", user.get("method", ""), top["method"])
  config = defaults(method)
  sections = dict(model=_model_specs(method), frozen=_frozen_specs(method), data=_specs(DATA),
                  optim=_optim_specs(), train=_specs(TRAIN))
  extra = set(user.keys()) - set(config.keys())
  if extra:
    raise _unknown("", extra, config.keys())
  for key in top:
    if key in user:
      config[key] = _checked(key, user[key], top[key])
  for key in ("model", "frozen", "data", "train"):
    if key in user:
      _merge(config[key], user[key], f"{key}.", sections[key])
  for part in sections["frozen"]:  # unset: the empty default
    _checked(f"frozen.{part}", config.frozen[part], sections["frozen"][part])
    # Absolute, so that the saved config names the same run from any working directory.
    config.frozen[part] = str(pathlib.Path(config.frozen[part]).expanduser().absolute())
  optim = user.get("optim", ml_collections.ConfigDict())
  # Per-player optimizer overrides are sub-dicts of `optim`, checked once the players are known.
  players = ([k for k, v in optim.items() if _is_dict(v) and k not in sections["optim"]]
             if _is_dict(optim) else [])
  _merge(config.optim, optim, "optim.", sections["optim"], skip=players)
  for player in players:
    overrides = ml_collections.ConfigDict()
    _merge(overrides, optim[player], f"optim.{player}.", sections["optim"])
    config.optim[player] = overrides
  for check in CROSS_CHECKS:
    check(config)
  _check_data(config)
  return config


def check_players(config: ml_collections.ConfigDict, players: Iterable[str]) -> None:
  """Refuses optimizer overrides for players the method does not have."""
  players = set(players)
  overrides = {k for k, v in config.optim.items()
               if isinstance(v, ml_collections.ConfigDict) and k != "kwargs"}
  if overrides - players:
    raise ConfigError(f"config.optim has overrides for {sorted(overrides - players)}, but "
                      f"method {config.method!r} has the players {sorted(players)}.")


# --- Rules relating keys ----------------------------------------------------------------------


def _check_eval_stride(config: ml_collections.ConfigDict) -> None:
  stride, window = config.data.eval_stride, config.data.seq_len
  if window and stride >= window:
    raise ConfigError(f"config.data.eval_stride must be 0 (windows sharing one token) or an "
                      f"integer from 1 to seq_len - 1 (got {stride!r}, seq_len {window}).")


def _check_sample_steps(config: ml_collections.ConfigDict) -> None:
  m = config.model
  if "sample_steps" in m and "num_timesteps" in m and m.sample_steps > m.num_timesteps:
    raise ConfigError(f"config.model.sample_steps must be an integer from 1 to "
                      f"model.num_timesteps = {m.num_timesteps} (got {m.sample_steps}).")


def _check_eval_chunk(config: ml_collections.ConfigDict) -> None:
  m = config.model
  if "eval_chunk" in m and "eval_samples" in m and m.eval_samples % m.eval_chunk:
    raise ConfigError(f"config.model.eval_chunk must divide model.eval_samples = "
                      f"{m.eval_samples} (got {m.eval_chunk}).")


def _check_heads(config: ml_collections.ConfigDict) -> None:
  m = config.model
  if "num_heads" in m and "d_model" in m and m.d_model % m.num_heads:
    raise ConfigError(f"config.model.num_heads must divide model.d_model = {m.d_model} "
                      f"(got {m.num_heads}).")


def _check_labels(config: ml_collections.ConfigDict) -> None:
  # A model with a label_key is conditional only when it is set (num_classes 0 otherwise); one
  # without (a classifier) always predicts labels.
  m = config.model
  if "num_classes" in m and m.num_classes < 1 and m.get("label_key", "always"):
    when, label = ((" when config.model.label_key is set", f", label_key {m.label_key!r}")
                   if "label_key" in m else ("", ""))
    raise ConfigError(f"config.model.num_classes must be at least 1{when} (got "
                      f"{m.num_classes}{label}).")


def _check_eos(config: ml_collections.ConfigDict) -> None:
  m = config.model
  if m.get("eos_id") is not None and "vocab_size" in m and m.eos_id >= m.vocab_size:
    raise ConfigError(f"config.model.eos_id must be a token id below model.vocab_size = "
                      f"{m.vocab_size} (got {m.eos_id}).")


def _check_window(config: ml_collections.ConfigDict) -> None:
  # A window of seq_len tokens feeds seq_len - 1 of them to the model.
  seq_len, m = config.data.seq_len, config.model
  if seq_len and "max_len" in m and seq_len - 1 > m.max_len:
    raise ConfigError(f"config.data.seq_len must be at most model.max_len + 1 = "
                      f"{m.max_len + 1}, since the model reads seq_len - 1 tokens (got "
                      f"{seq_len}).")


def _check_optimizers(config: ml_collections.ConfigDict) -> None:
  """`optim.kwargs`, shared and per player, against the signature of the player's optimizer."""
  optim = config.optim
  _check_optax_kwargs("optim.", optim.name, optim.kwargs)
  for player, overrides in optim.items():
    if isinstance(overrides, ml_collections.ConfigDict) and player != "kwargs":
      settings = optimizers.player_config(optim, player)
      where = f"optim.{player}." if "kwargs" in overrides else "optim."
      _check_optax_kwargs(where, settings["name"], settings["kwargs"],
                          f" (the optimizer of player {player!r})")


def _check_optax_kwargs(where: str, name: str, kwargs: Mapping[str, Any], whose: str = ""
                        ) -> None:
  optimizer_fn = getattr(optax, name, None)
  if not callable(optimizer_fn):
    return  # an unknown name is refused, with close matches, when the optimizer is built
  try:
    parameters = inspect.signature(optimizer_fn).parameters
  except (TypeError, ValueError):
    return
  takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
  named = {n: p for n, p in parameters.items() if n != "learning_rate" and p.kind in (
      inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
  for key, value in kwargs.items():
    path = f"{where}kwargs.{key}"
    if key == "learning_rate":
      raise ConfigError(f"config.{path} must not be set: config.{where[:-1] or 'optim'}"
                        f".learning_rate gives it, with the warm-up and schedule.")
    if key not in named:
      if takes_any:
        continue
      close = difflib.get_close_matches(key, named, n=1)
      raise ConfigError(f"config.{path} is not an argument of optax.{name}{whose}"
                        + (f" (did you mean {close[0]}?)" if close else "")
                        + f"; its arguments: {', '.join(named)}.")
    default, rule = named[key].default, OPTAX_KWARG_RULES.get(key, ANY)
    if isinstance(default, (bool, int, float, str)):
      _checked(path, value, _spec(default, rule))
    elif key in OPTAX_KWARG_RULES:
      _checked(path, value, _Spec(float, rule, optional=default is None))
  missing = [n for n, p in named.items()
             if p.default is inspect.Parameter.empty and n not in kwargs]
  if missing:
    raise ConfigError(f"config.{where}kwargs must set {', '.join(missing)}: optax.{name}{whose} "
                      f"has no default for {'it' if len(missing) == 1 else 'them'}.")


CROSS_CHECKS = (_check_eval_stride, _check_sample_steps, _check_eval_chunk, _check_heads,
                _check_labels, _check_eos, _check_window, _check_optimizers)


def _split_names(split: str) -> list[str]:
  """The split names in a tfds split string: "train[:90%]+test" -> ["train", "test"]."""
  return [part.split("[", 1)[0].strip() for part in split.split("+")]


def _check_data(config: ml_collections.ConfigDict) -> None:
  """What needs the dataset's info: its splits, kind, batch keys, classes, levels and shapes."""
  d, m = config.data, config.model
  try:
    info = data_lib.info(d.name, d.data_dir or None)
  except data_lib.DatasetNotPreparedError:
    return  # the loop's first read refuses it, with the command that prepares it
  except ValueError as error:  # an unknown dataset or dataset config
    raise ConfigError(f"config.data.name: {error}") from None
  splits = sorted(info.splits)  # empty under tfds.testing.mock_data
  for key in ("train_split", "eval_split"):
    unknown = [s for s in _split_names(d[key]) if s not in splits] if d[key] else []
    if splits and unknown:
      close = difflib.get_close_matches(unknown[0], splits, n=1)
      raise ConfigError(
          f"config.data.{key} must be a split of {info.name}: {', '.join(splits)}, or a "
          f"slice or sum of them ('train[:90%]', 'train+test') (got {d[key]!r})"
          + (f"; did you mean {close[0]!r}?" if close else "."))
  if d.fresh and info.mixture is None:
    raise ConfigError(f"config.data.fresh must be False for {info.name}: fresh samples are "
                      f"drawn from the exact toy2d distributions only (got True).")
  if info.vocab_size is None:
    for key in ("seq_len", "eval_stride"):
      if d[key]:
        raise ConfigError(f"config.data.{key} must be 0 for {info.name}, whose examples are not "
                          f"a token stream (got {d[key]!r}).")
  elif "tokens" in info.element_spec:
    window = info.element_spec["tokens"].shape[0]  # seq_len, or the pipeline's default
    if d.eval_stride >= (d.seq_len or window):
      raise ConfigError(f"config.data.eval_stride must be 0 or an integer from 1 to "
                        f"{(d.seq_len or window) - 1}, below the window (got {d.eval_stride}).")
  size = info.splits.get(d.train_split)
  if info.vocab_size is None and not d.fresh and size is not None and d.batch_size > size:
    raise ConfigError(f"config.data.batch_size must be at most the {size} examples of the "
                      f"{d.train_split!r} split of {info.name} (got {d.batch_size}).")
  # Model keys named `*_key` name entries of the batch: the dataset's, or added by a step of
  # data.preprocess (`preprocess.ADDED_KEYS`).
  entries = set(info.element_spec).union(*(preprocess_lib.ADDED_KEYS.get(name, ())
                                           for name in d.preprocess))
  for key in sorted(k for k in m.keys() if k.endswith("_key")):
    if isinstance(m[key], str) and m[key] and m[key] not in entries:
      added = "" if entries == set(info.element_spec) else " and data.preprocess"
      raise ConfigError(f"config.model.{key} must be a key of the examples of {info.name}"
                        f"{added}: {', '.join(sorted(entries))} (got {m[key]!r}).")
  for key, have, what in (("num_classes", info.num_classes, "classes"),
                          ("num_levels", info.num_levels, "grey levels"),
                          ("vocab_size", info.vocab_size, "token ids")):
    if m.get(key) and have and m[key] < have:
      raise ConfigError(f"config.model.{key} must be at least the {have} {what} of {info.name} "
                        f"(got {m[key]}).")
  shape, example = m.get("image_shape"), info.element_spec.get(m.get("data_key", "image"))
  if shape and example is not None and tuple(shape) != tuple(example.shape):
    raise ConfigError(f"config.model.image_shape must be () or the shape of the examples of "
                      f"{info.name}, {tuple(example.shape)} (got {tuple(shape)}).")


# --- Config files and command-line overrides --------------------------------------------------


def load_file(spec: str) -> ml_collections.ConfigDict:
  """`get_config(arg)` of an experiment file, `spec` = "path.py[:arg]" as `--config` takes it.

  Raises:
    ConfigError: in one line, for a file that does not exist or does not load, that has no
      `get_config`, or whose `get_config(arg)` fails (the original error is the cause).
  """
  path, colon, arg = spec.partition(":")
  file = pathlib.Path(path)
  if not file.is_file():
    raise ConfigError(f"The config file {path!r} does not exist: pass an experiment file, e.g. "
                      f"--config experiments/configs/classifier_digits.py[:tiny].")
  module_spec = importlib.util.spec_from_file_location(f"config_{file.stem}", file)
  if module_spec is None:
    raise ConfigError(f"The config file {path!r} is not a Python file (.py).")
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as error:  # anything a broken file raises is reported in one line
    raise ConfigError(f"The config file {path} does not load: {_summary(error, file)}") from error
  get_config = getattr(module, "get_config", None)
  if not callable(get_config):
    raise ConfigError(f"The config file {path} defines no get_config(arg): an experiment file "
                      f"returns its ConfigDict from get_config (see experiments/configs/).")
  try:
    config = get_config(*([arg] if colon else []))
  except Exception as error:  # e.g. an unknown variant: the file's own message, in one line
    raise ConfigError(f"{path}: get_config({arg!r}) failed: {_summary(error, file)}") from error
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"{path}: get_config({arg!r}) returned {_short(config)}, not an "
                      f"ml_collections.ConfigDict.")
  return config


def _summary(error: BaseException, file: pathlib.Path) -> str:
  """"Type: message (line N)", on one line; N is the line of `file` that raised it."""
  lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
           if pathlib.Path(frame.filename).resolve() == file.resolve()]
  if isinstance(error, SyntaxError) and error.lineno:
    lines.append(error.lineno)
  message = " ".join(str(error).split())
  return f"{type(error).__name__}: {message}" + (f" (line {lines[-1]})" if lines else "")


def check_override(config: ml_collections.ConfigDict, path: str) -> None:
  """Refuses a command-line override `--config.PATH=...` of a key that `config` lacks, with the
  close match and the valid keys (config_flags sets existing keys only)."""
  node, where = config, ""
  for part in path.split("."):
    if not _is_dict(node):
      raise ConfigError(f"config.{where[:-1]} is a value, not a section: override it as "
                        f"--config.{where[:-1]}=VALUE.")
    if part not in node:
      if where.endswith("kwargs.") or not node.keys():  # a dict given whole: optim.kwargs
        raise ConfigError(f"config.{where}{part} cannot be added on the command line: give the "
                          f"whole dict, e.g. --config.{where[:-1]}=\"{{'{part}': VALUE}}\".")
      raise _unknown(where, [part], node.keys())
    node, where = node[part], f"{where}{part}."


# --- Saving ---------------------------------------------------------------------------------


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
