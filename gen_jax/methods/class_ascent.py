"""Images made by a classifier's gradient: gradient ascent on a class score.

The images themselves are the parameters of the one player, "image" ([num_images, h, w, c]),
and the train step is the generic players step: with `optim.name = "sgd"` and no momentum it is

    x_t = x_{t-1} + eta * grad_x score_y(x_{t-1})      (eta = optim.learning_rate)

(Simonyan et al. 2014, "Deep Inside Convolutional Networks", Sec. 2, eq. 1, without their L2
penalty unless `model.l2_weight` > 0). The classifier is a trained `classifier` run, named by
`config.frozen.classifier`, restored and never trained here. Image i ascends class
`model.target_class`, or class i mod num_classes when it is -1, so that one run makes every
class. `model.score` is the class's logit (Simonyan et al.'s unnormalised score) or its log
softmax probability. The classifier always reads the images clipped to the valid range [-1, 1],
so it scores exactly what the samples show.

`model.start` sets x_0: "noise" (N(0, model.noise_std^2) per pixel, clipped) shows the classic
finding that the ascent reaches a confident class decision on an image that still looks like
noise; "data" starts image i from the first image at index i or later of the first training
batch whose label is not its target, and shows that a real digit changes little while the
classifier's decision flips (an adversarial example reached without any bound on the change).

Evaluation scores the current images, not the eval batch: `target_prob` (the classifier's
probability of each image's target class), `target_rate` (the fraction classified as their
target) and `rms_change` (root mean square change from x_0, in [-1, 1] units), each the mean
over the images, repeated for every example of the eval batch so that the loop's averages are
these values. Samples are the clipped images.
"""

import dataclasses
import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections

from gen_jax.errors import SettingError
from gen_jax.methods.base import DataSpec, Player, frozen_run
from gen_jax.types import Array, Batch, PRNGKey, Variables

PLAYER = "image"
FROZEN_PARTS = ("classifier",)
SAMPLING_KEYS = frozenset()
SCORES = ("logit", "log_prob")
STARTS = ("noise", "data")
MODEL_RULES = dict(
    num_images=dict(low=1, note="images ascended at once"),
    noise_std=dict(low=0.0, note="the standard deviation of the starting noise"),
    l2_weight=dict(low=0.0, note="lambda of the L2 penalty lambda ||x||^2 on each image"),
    target_class=dict(low=-1, note="a class, or -1 for image i -> class i mod num_classes"),
    score=dict(choices=lambda: SCORES, note="the class score ascended"),
    start=dict(choices=lambda: STARTS, note="where the images start"),
)


def default_model_config() -> dict[str, Any]:
  return dict(
      num_images=10,  # images ascended at once
      target_class=-1,  # the class every image ascends; -1: image i ascends i mod num_classes
      score="logit",  # logit | log_prob: the class score ascended
      start="noise",  # noise | data: x_0 (module docstring)
      noise_std=0.1,  # start="noise": x_0 ~ N(0, noise_std^2), clipped to [-1, 1]
      l2_weight=0.0,  # lambda: the loss is -score + lambda ||x||^2 (Simonyan et al. 2014)
  )


@dataclasses.dataclass(frozen=True)
class ClassAscent:
  """Gradient ascent on a frozen classifier's class score (module docstring).

  Attributes:
    classifier: the frozen `Classifier` method.
    classifier_variables: its restored variables, kept in the model state as
      `model_state["frozen"]["classifier"]`.
    image_shape: (h, w, c) of the images the classifier reads.
    num_classes: the classifier's classes.
    num_images: images ascended at once.
    target_class: the class of every image, or -1 for image i -> i mod num_classes.
    score: "logit" or "log_prob".
    start: "noise" or "data".
    noise_std: the starting noise's standard deviation.
    l2_weight: the L2 penalty's weight.
  """

  classifier: Any
  classifier_variables: Any
  image_shape: tuple[int, ...]
  num_classes: int
  num_images: int = 10
  target_class: int = -1
  score: str = "logit"
  start: str = "noise"
  noise_std: float = 0.1
  l2_weight: float = 0.0

  @property
  def players(self) -> tuple[Player, ...]:
    return (Player(PLAYER, self.loss),)

  @property
  def targets(self) -> Array:
    """The class each image ascends, [num_images] int32."""
    if self.target_class >= 0:
      return jnp.full((self.num_images,), self.target_class, jnp.int32)
    return jnp.arange(self.num_images, dtype=jnp.int32) % self.num_classes

  def logits(self, model_state, images: Array) -> Array:
    """The frozen classifier's logits [n, num_classes] of images [n, h, w, c], clipped to the
    valid range first."""
    params = model_state["frozen"]["classifier"]["params"]["classifier"]
    return self.classifier.network.apply({"params": params}, jnp.clip(images, -1.0, 1.0))

  def scores(self, model_state, images: Array) -> Array:
    """Each image's score for its target class, [num_images]."""
    logits = self.logits(model_state, images)
    if self.score == "log_prob":
      logits = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(logits, self.targets[:, None], axis=-1)[:, 0]

  def _start(self, rng: PRNGKey, batch: Batch) -> Array:
    shape = (self.num_images, *self.image_shape)
    if self.start == "noise":
      return jnp.clip(self.noise_std * jax.random.normal(rng, shape), -1.0, 1.0)
    images = jnp.asarray(batch["image"], jnp.float32)
    labels = jnp.asarray(batch["label"], jnp.int32)
    # Image i: the first batch image at index >= i of a class other than its target (else the
    # first image), so that the starts differ. [num_images, batch]:
    later = jnp.arange(labels.shape[0])[None, :] >= jnp.arange(self.num_images)[:, None]
    other = later & (labels[None, :] != self.targets[:, None])
    return images[jnp.argmax(other, axis=1)]

  def init(self, rng: PRNGKey, batch: Batch) -> Variables:
    if tuple(batch["image"].shape[1:]) != tuple(self.image_shape):
      raise SettingError(f"The classifier reads images {tuple(self.image_shape)}, the data have "
                         f"{tuple(batch['image'].shape[1:])}: use the data it was trained on.")
    start = self._start(rng, batch)
    return {"params": {PLAYER: start},
            "model_state": {"start": start,
                            "frozen": {"classifier": self.classifier_variables}}}

  def loss(self, params_all, player_params, batch: Batch, rng: PRNGKey, model_state):
    """-score_y(x) + lambda ||x||^2, summed over the images, so that each image's gradient is
    its own."""
    del params_all, batch, rng
    scores = self.scores(model_state, player_params)
    penalty = self.l2_weight * jnp.sum(player_params ** 2, axis=(1, 2, 3))
    loss = jnp.sum(penalty - scores)
    return loss, ({"score": jnp.mean(scores)}, model_state)

  def image_metrics(self, variables: Variables) -> dict[str, Array]:
    """`target_prob`, `target_classified` and `change` of each image, [num_images] each."""
    images, state = variables["params"][PLAYER], variables["model_state"]
    probs = jax.nn.softmax(self.logits(state, images), axis=-1)
    shown = jnp.clip(images, -1.0, 1.0)
    return {
        "target_prob": jnp.take_along_axis(probs, self.targets[:, None], axis=-1)[:, 0],
        "target_classified": (jnp.argmax(probs, -1) == self.targets).astype(jnp.float32),
        "change": jnp.sqrt(jnp.mean((shown - state["start"]) ** 2, axis=(1, 2, 3))),
    }

  def evaluate(self, variables: Variables, batch: Batch, rng: PRNGKey) -> dict[str, Array]:
    """The images' mean `target_prob`, `target_rate` and `rms_change`, each repeated [batch]
    (module docstring)."""
    del rng
    num = jax.tree.leaves(batch)[0].shape[0]
    m = self.image_metrics(variables)
    means = {"target_prob": jnp.mean(m["target_prob"]),
             "target_rate": jnp.mean(m["target_classified"]),
             "rms_change": jnp.sqrt(jnp.mean(m["change"] ** 2))}
    return {k: jnp.full((num,), v) for k, v in means.items()}

  def sample(self, variables: Variables, rng: PRNGKey, num: int) -> Array:
    """The first `num` images (cycling when `num` > num_images), clipped to [-1, 1]:
    [num, h, w, c]."""
    del rng
    images = jnp.clip(variables["params"][PLAYER], -1.0, 1.0)
    return jnp.tile(images, (math.ceil(num / self.num_images), 1, 1, 1))[:num]


def from_config(config: ml_collections.ConfigDict, spec: DataSpec,
                frozen: Mapping[str, Any]) -> ClassAscent:
  """Ascent of `config.model` on the frozen `classifier` (a `classifier` run)."""
  m = config.model
  part = frozen_run(frozen, "classifier", "classifier")
  num_classes = part.config.model.num_classes
  if not -1 <= m.target_class < num_classes:
    raise SettingError(f"model.target_class={m.target_class}: use -1 (every class in turn) or a "
                       f"class in 0 .. {num_classes - 1}.")
  image_shape = tuple(part.spec.shape("image"))
  if m.start == "data":
    spec.feature("label", what="model.start='data'")
  return ClassAscent(
      classifier=part.method, classifier_variables=part.variables, image_shape=image_shape,
      num_classes=num_classes, num_images=m.num_images, target_class=m.target_class,
      score=m.score, start=m.start, noise_std=m.noise_std, l2_weight=m.l2_weight)
