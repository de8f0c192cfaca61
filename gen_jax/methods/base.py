"""The Method protocol: what the generic trainer needs from a generative method.

A method is a frozen dataclass of strategies (networks, loss functions, schedules) built by its
module's `from_config(config, spec)`, where `spec` (a `DataSpec`) says what the method may know
of its data: the shapes and dtypes of one example, grey levels, classes. Methods never read the
data themselves (no method imports the `data` or `viz` packages, and none writes a file):
whoever reads the data (the loop, a benchmark, a notebook) makes the spec and hands it over.
A method declares its trainable parameter groups as an ordered tuple of players; the one train
step in `gen_jax.train.step` updates them in that order.
"""

import dataclasses
from typing import Any, Mapping, Protocol

import numpy as np

from gen_jax.errors import SettingError
from gen_jax.types import Array, Batch, LossFn, PRNGKey, Variables


@dataclasses.dataclass(frozen=True)
class Player:
  """A named parameter group with its own loss and its own optimizer.

  Attributes:
    name: key of this player's parameters in `variables["params"]` and of its optimizer config
      in `config.optim` (an optional sub-dict overriding the shared optimizer settings).
    loss_fn: see `gen_jax.types.LossFn`.
    repeats: how many updates this player makes per train step (a GAN's `n_critic`); each
      update sees the same batch and a fresh key.
  """

  name: str
  loss_fn: LossFn
  repeats: int = 1


@dataclasses.dataclass(frozen=True)
class Feature:
  """The shape and dtype of one entry of one example (batch axis excluded)."""

  shape: tuple[int, ...]
  dtype: str  # a NumPy dtype name: "float32", "int32", "uint8", "bool"


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """What a method may know of its data, handed to `from_config`; plain JSON (`to_dict`), so
  that it can be stored with a checkpoint.

  Attributes:
    features: {batch key: Feature} of one example as the dataset stores it (before the
      config's preprocessing, which keeps shapes: `scale_to_unit` turns uint8 levels into
      float32 in [-1, 1]); nested entries are keyed "outer/inner".
    num_levels: grey levels of the stored images (17 for digits, 256 for 8-bit images), or None.
    num_classes: label classes (toy2d: the mixture's modes), or None.
    vocab_size: tokens of a byte stream (256), or None.
    name: the dataset's name, for messages.
  """

  features: Mapping[str, Feature] = dataclasses.field(default_factory=dict)
  num_levels: int | None = None
  num_classes: int | None = None
  vocab_size: int | None = None
  name: str = ""

  def feature(self, key: str, *, what: str = "") -> Feature:
    """The entry `key`; refused with the data's keys when it has none. `what` names the config
    key that chose it (e.g. "model.data_key"), for the message."""
    if key not in self.features:
      chosen = f" ({what} = {key!r})" if what else ""
      fix = f": set {what} to one of them" if what else ""
      raise KeyError(f"The data {self.name or ''} have no entry {key!r}{chosen}; their entries "
                     f"are {', '.join(sorted(self.features)) or 'none'}{fix}.")
    return self.features[key]

  def shape(self, key: str, *, what: str = "") -> tuple[int, ...]:
    """The shape of one example's `key`, e.g. (8, 8, 1) for digits' "image"."""
    return self.feature(key, what=what).shape

  def to_dict(self) -> dict[str, Any]:
    return {"name": self.name, "num_levels": self.num_levels, "num_classes": self.num_classes,
            "vocab_size": self.vocab_size,
            "features": {k: {"shape": list(f.shape), "dtype": f.dtype}
                         for k, f in self.features.items()}}

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> "DataSpec":
    """The inverse of `to_dict` (after a JSON round trip too)."""
    features = {k: Feature(tuple(int(n) for n in f["shape"]), str(f["dtype"]))
                for k, f in values.get("features", {}).items()}
    return cls(features=features, num_levels=values.get("num_levels"),
               num_classes=values.get("num_classes"), vocab_size=values.get("vocab_size"),
               name=values.get("name", ""))

  @classmethod
  def from_info(cls, info: Any) -> "DataSpec":
    """The spec of a `data.DatasetInfo` (read by attribute: this module does not import
    the data package): its `element_spec` of shape-dtype structs, levels, classes, vocabulary."""
    return cls(features=_features(info.element_spec), num_levels=info.num_levels,
               num_classes=info.num_classes, vocab_size=getattr(info, "vocab_size", None),
               name=getattr(info, "name", ""))

  @classmethod
  def from_batch(cls, batch: Mapping[str, Any], **kwargs: Any) -> "DataSpec":
    """The spec of a batch's arrays (their leading batch axis dropped), e.g. in tests;
    `kwargs` set `num_levels`, `num_classes`, `vocab_size`, `name`."""
    features = {k: Feature(tuple(np.shape(v)[1:]), np.asarray(v).dtype.name)
                for k, v in _flat(batch).items()}
    return cls(features=features, **kwargs)


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      out.update(_flat(value, f"{prefix}{key}/"))
    else:
      out[f"{prefix}{key}"] = value
  return out


def _features(element_spec: Mapping[str, Any]) -> dict[str, Feature]:
  return {k: Feature(tuple(int(n) for n in s.shape), np.dtype(s.dtype).name)
          for k, s in _flat(element_spec).items()}


class Method(Protocol):
  """What `train_and_evaluate` calls. All functions are pure and never jit themselves."""

  players: tuple[Player, ...]

  def init(self, rng: PRNGKey, batch: Batch) -> Variables:
    """Returns {"params": {player.name: params}, "model_state": {...}} for one example batch."""

  def sample(self, variables: Variables, rng: PRNGKey, num: int) -> Array | Mapping[str, Array]:
    """Draws `num` samples: images [num, h, w, c] in [-1, 1], points [num, 2], or tokens."""

  def evaluate(self, variables: Variables, batch: Batch, rng: PRNGKey
               ) -> dict[str, Array | tuple[Array, Array]]:
    """Per-example evaluation metrics: values [batch] (averaged over examples), or pairs
    (sums [batch], counts [batch]) averaged as sum(sums) / sum(counts), e.g. over tokens."""

  # Figures beyond the samples are drawn by the `viz` package, from arrays that a method computes
  # with pure functions of its own (the GAN's `gan_lab`, whose frames
  # `viz/gan_plots.py`'s `make_plot_fn` draws for the loop in 2-D runs).


def frozen_run(frozen: Mapping[str, Any], name: str, method: str) -> Any:
  """The frozen part `name` (a `gen_jax.train.setup.FrozenPart`), which must be a run of
  `method`.

  Raises:
    SettingError: `config.frozen.<name>` names a run of another method.
  """
  part = frozen[name]
  if part.config.method != method:
    raise SettingError(f"config.frozen.{name} = {part.workdir!r} is a {part.config.method!r} "
                       f"run: name the workdir of a trained {method} run.")
  return part
