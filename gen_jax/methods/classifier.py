"""A supervised image classifier through the generic players step.

Not a generative model: it proves the training backbone end to end, and its trained features
are the extractor behind the Frechet distances that the benchmarks report for generated images.

With `model.adversarial_epsilon` > 0 it is trained adversarially (Madry et al. 2018, eq. 2.1):
each training batch is replaced by its PGD examples (`gen_jax.attacks.pgd`: random start,
`adversarial_steps` steps of `adversarial_step_size` within the `adversarial_norm` ball of that
radius, made with the current parameters held fixed), and evaluation adds the accuracy under the
same attack (`adversarial_accuracy`).
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from gen_jax import attacks
from gen_jax.errors import SettingError
from gen_jax.methods.base import DataSpec, Player
from gen_jax.nn.convnets import Classifier as ClassifierNet
from gen_jax.types import Batch, PRNGKey, Variables

PLAYER = "classifier"
# Model keys that only change how a run samples and evaluates, never the parameters: a resumed
# run may change them (gen_jax.train.checkpoint). None: each defines the network or its loss.
SAMPLING_KEYS = frozenset()
NORMS = ("linf", "l2")
MODEL_RULES = dict(
    adversarial_epsilon=dict(low=0.0, note="the attack's radius in [-1, 1] pixel units (0: off)"),
    adversarial_steps=dict(low=1, note="PGD steps per training batch"),
    adversarial_step_size=dict(low=0.0, note="PGD's step; 0: 2.5 epsilon / steps"),
    adversarial_norm=dict(choices=lambda: NORMS, note="the attack's ball"),
)


def default_model_config() -> dict[str, Any]:
  return dict(num_classes=10, widths=(32, 64), feature_dim=128, label_smoothing=0.0,
              # Adversarial training (module docstring): 0 trains on the clean images.
              adversarial_epsilon=0.0, adversarial_norm="linf", adversarial_steps=7,
              adversarial_step_size=0.0)  # 0: 2.5 epsilon / steps (Madry et al. 2018)


@dataclasses.dataclass(frozen=True)
class Classifier:
  """Cross-entropy on `batch["image"]` ([batch, h, w, c] in [-1, 1]) and `batch["label"]`."""

  network: ClassifierNet
  label_smoothing: float = 0.0
  adversarial: dict[str, Any] | None = None  # pgd's keyword arguments; None: clean training

  @property
  def players(self) -> tuple[Player, ...]:
    return (Player(PLAYER, self.loss),)

  def init(self, rng: PRNGKey, batch: Batch) -> Variables:
    params = self.network.init(rng, jnp.asarray(batch["image"], jnp.float32))["params"]
    return {"params": {PLAYER: params}, "model_state": {}}

  def logits(self, params, images: jax.Array) -> jax.Array:
    """Logits [batch, num_classes] of images [batch, h, w, c] in [-1, 1]."""
    return self.network.apply({"params": params}, images)

  def attack(self, params, batch: Batch, rng: PRNGKey) -> jax.Array:
    """The PGD examples [batch, h, w, c] of the batch's images against `params`, held fixed.

    Raises:
      SettingError: integer images (the attack works in [-1, 1]).
    """
    if not jnp.issubdtype(batch["image"].dtype, jnp.floating):
      raise SettingError(f"Adversarial training attacks images in [-1, 1], but the batch's "
                         f"images are {batch['image'].dtype} grey levels: add 'scale_to_unit' "
                         "to data.preprocess.")
    params = jax.lax.stop_gradient(params)
    return attacks.pgd(lambda x: self.logits(params, x), batch["image"], batch["label"], rng,
                       **self.adversarial)

  def _per_example(self, params, batch: Batch) -> tuple[jax.Array, jax.Array]:
    logits = self.logits(params, batch["image"])
    num_classes = logits.shape[-1]
    labels = optax.smooth_labels(jax.nn.one_hot(batch["label"], num_classes),
                                 self.label_smoothing)
    loss = optax.softmax_cross_entropy(logits, labels)
    accuracy = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return loss, accuracy

  def loss(self, params_all, player_params, batch, rng, model_state):
    del params_all
    if self.adversarial:
      batch = {**batch, "image": self.attack(player_params, batch, rng)}
    loss, accuracy = self._per_example(player_params, batch)
    return jnp.mean(loss), ({"accuracy": jnp.mean(accuracy)}, model_state)

  def evaluate(self, variables: Variables, batch: Batch, rng: PRNGKey) -> dict[str, jax.Array]:
    params = variables["params"][PLAYER]
    loss, accuracy = self._per_example(params, batch)
    metrics = {"loss": loss, "accuracy": accuracy}
    if self.adversarial:
      attacked = {**batch, "image": self.attack(params, batch, rng)}
      metrics["adversarial_accuracy"] = self._per_example(params, attacked)[1]
    return metrics

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
  adversarial = None
  if m.adversarial_epsilon > 0:
    if m.adversarial_norm not in NORMS:
      raise SettingError(f"model.adversarial_norm={m.adversarial_norm!r}: use one of "
                         f"{', '.join(NORMS)}.")
    step = m.adversarial_step_size or 2.5 * m.adversarial_epsilon / m.adversarial_steps
    adversarial = dict(epsilon=m.adversarial_epsilon, step_size=step,
                       num_steps=m.adversarial_steps, norm=m.adversarial_norm)
  return Classifier(
      network=ClassifierNet(num_classes=m.num_classes, widths=tuple(m.widths),
                            feature_dim=m.feature_dim),
      label_smoothing=m.label_smoothing, adversarial=adversarial)
