"""A supervised image classifier through the generic players step.

Not a generative model: it proves the training backbone end to end, and its trained features
are the extractor behind the Frechet distances that the benchmarks report for generated images.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from gen_jax.methods.base import DataSpec, Player
from gen_jax.nn.convnets import Classifier as ClassifierNet
from gen_jax.types import Batch, PRNGKey, Variables

PLAYER = "classifier"
# Model keys that only change how a run samples and evaluates, never the parameters: a resumed
# run may change them (gen_jax.train.checkpoint). None: each defines the network or its loss.
SAMPLING_KEYS = frozenset()


def default_model_config() -> dict[str, Any]:
  return dict(num_classes=10, widths=(32, 64), feature_dim=128, label_smoothing=0.0)


@dataclasses.dataclass(frozen=True)
class Classifier:
  """Cross-entropy on `batch["image"]` ([batch, h, w, c] in [-1, 1]) and `batch["label"]`."""

  network: ClassifierNet
  label_smoothing: float = 0.0

  @property
  def players(self) -> tuple[Player, ...]:
    return (Player(PLAYER, self.loss),)

  def init(self, rng: PRNGKey, batch: Batch) -> Variables:
    params = self.network.init(rng, jnp.asarray(batch["image"], jnp.float32))["params"]
    return {"params": {PLAYER: params}, "model_state": {}}

  def _per_example(self, params, batch: Batch) -> tuple[jax.Array, jax.Array]:
    logits = self.network.apply({"params": params}, batch["image"])
    num_classes = logits.shape[-1]
    labels = optax.smooth_labels(jax.nn.one_hot(batch["label"], num_classes),
                                 self.label_smoothing)
    loss = optax.softmax_cross_entropy(logits, labels)
    accuracy = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return loss, accuracy

  def loss(self, params_all, player_params, batch, rng, model_state):
    del params_all, rng
    loss, accuracy = self._per_example(player_params, batch)
    return jnp.mean(loss), ({"accuracy": jnp.mean(accuracy)}, model_state)

  def evaluate(self, variables: Variables, batch: Batch, rng: PRNGKey) -> dict[str, jax.Array]:
    del rng
    loss, accuracy = self._per_example(variables["params"][PLAYER], batch)
    return {"loss": loss, "accuracy": accuracy}

  def features(self, variables: Variables, images: jax.Array) -> jax.Array:
    """Penultimate features [batch, feature_dim] of images [batch, h, w, c] in [-1, 1]."""
    return self.network.apply({"params": variables["params"][PLAYER]}, images,
                              return_features=True)


def from_config(config: ml_collections.ConfigDict, spec: DataSpec | None = None) -> Classifier:
  """The classifier of `config.model`; `spec`, when given, is checked to hold images and
  labels."""
  m = config.model
  if spec is not None:
    spec.feature("image")
    spec.feature("label")
  return Classifier(
      network=ClassifierNet(num_classes=m.num_classes, widths=tuple(m.widths),
                            feature_dim=m.feature_dim),
      label_smoothing=m.label_smoothing)
