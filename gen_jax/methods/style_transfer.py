"""Neural style transfer (Gatys, Ecker & Bethge 2016): an image optimised to have one image's
content and another's style, as seen by a frozen convolutional network.

The image G itself is the parameter of the one player, "image" ([1, h, w, 3] in [-1, 1]), and
the train step is the generic players step on

    loss(G) = content_weight * L_content(G, C) + style_weight * L_style(G, S)
              + tv_weight * TV(G)

(Gatys et al. 2016, eq. 7, plus the total-variation prior of Mahendran & Vedaldi 2015), with
`gen_jax.losses.perceptual`'s losses on the features of `gen_jax.nn.vgg.VGG19`: the content
loss at `model.content_layer`, the style loss over the Gram matrices of `model.style_layers`
(equally weighted). The network is never trained. Its weights are the ImageNet VGG-19 weights a
user has as a file (`model.weights`: the Keras `.h5` or an `.npz`, `gen_jax.nn.vgg`), or by
default random weights from `model.feature_seed`: random convolutional features capture texture
statistics (Ustyuzhaninov et al. 2017), so the method runs offline, but they are not ImageNet
features and the results are labelled as such. The weights of the layers used are kept in the
model state (`model_state["frozen"]["features"]`) with the content target and the style Gram
matrices, so checkpoints restore the whole problem.

The content image C and the style image S are the first images of the first training batch
whose `model.label_key` entry is `model.content_label` and `model.style_label` (the bundled
`sample_images` dataset: 0 is scikit-learn's "china" photo, 1 its "flower"); G starts from C
(`model.start = "content"`) or from noise (`"noise"`). Evaluation reports the current image's
`content_loss`, `style_loss` and `total_variation`, repeated for each eval example; samples are
the triptych C, S, G (clipped to [-1, 1]), so the loop's sample grids show the progress.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from gen_jax.errors import SettingError
from gen_jax.losses import perceptual
from gen_jax.methods.base import DataSpec, Player
from gen_jax.nn import vgg
from gen_jax.types import Array, Batch, PRNGKey, Variables

PLAYER = "image"
SAMPLING_KEYS = frozenset()
STARTS = ("content", "noise")
MODEL_RULES = dict(
    content_weight=dict(low=0.0, note="the content loss's weight"),
    style_weight=dict(low=0.0, note="the style loss's weight"),
    tv_weight=dict(low=0.0, note="the total-variation weight"),
    noise_std=dict(low=0.0, note="start='noise': the starting noise's standard deviation"),
    start=dict(choices=lambda: STARTS, note="where the image starts"),
    pooling=dict(choices=lambda: tuple(vgg.POOLINGS), note="VGG-19's pooling"),
    content_layer=dict(choices=lambda: vgg.LAYERS, note="a VGG-19 layer"),
    style_layers=dict(choices=lambda: vgg.LAYERS, nonempty=True, note="VGG-19 layers"),
    feature_seed=dict(low=0, note="the seed of the random VGG-19 weights"),
    content_label=dict(low=0, note="the label of the content image in the data"),
    style_label=dict(low=0, note="the label of the style image in the data"),
)


def default_model_config() -> dict[str, Any]:
  return dict(
      content_layer="block4_conv2",
      style_layers=("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1",
                    "block5_conv1"),
      content_weight=1.0, style_weight=1e3, tv_weight=0.0,
      start="content",  # content | noise
      noise_std=0.1,
      weights="",  # a VGG-19 weight file (.h5 Keras or .npz); "" random weights (offline)
      feature_seed=0,  # the random weights' seed when weights = ""
      pooling="average",  # average | max: Gatys et al. use average pooling for synthesis
      image_key="image", label_key="label",
      content_label=0, style_label=1,
  )


@dataclasses.dataclass(frozen=True)
class StyleTransfer:
  """Style transfer on a frozen VGG-19 (module docstring).

  Attributes:
    network: the `VGG19` feature extractor.
    network_params: its parameters for the layers used (kept in the model state at init).
    content_layer: the layer of the content loss.
    style_layers: the layers of the style loss, equally weighted.
    content_weight, style_weight, tv_weight: the weights of the three terms.
    start: "content" or "noise".
    noise_std: the starting noise's standard deviation.
    content_label, style_label: the labels that pick C and S from the first batch.
    image_key, label_key: the batch entries of the images and the labels.
  """

  network: vgg.VGG19
  network_params: Any
  content_layer: str
  style_layers: tuple[str, ...]
  content_weight: float = 1.0
  style_weight: float = 1e3
  tv_weight: float = 0.0
  start: str = "content"
  noise_std: float = 0.1
  content_label: int = 0
  style_label: int = 1
  image_key: str = "image"
  label_key: str = "label"

  @property
  def players(self) -> tuple[Player, ...]:
    return (Player(PLAYER, self.loss),)

  @property
  def layers(self) -> tuple[str, ...]:
    return tuple(dict.fromkeys((self.content_layer, *self.style_layers)))

  def features(self, model_state, images: Array) -> dict[str, Array]:
    """The features {layer: [n, h', w', c']} of images [n, h, w, 3] in [-1, 1]."""
    return self.network.apply({"params": model_state["frozen"]["features"]}, images,
                              layers=self.layers)

  def _pick(self, batch: Batch, label: int) -> Array:
    images = jnp.asarray(batch[self.image_key], jnp.float32)
    first = jnp.argmax(jnp.asarray(batch[self.label_key]) == label)
    return images[first][None]  # [1, h, w, 3]

  def init(self, rng: PRNGKey, batch: Batch) -> Variables:
    content, style = self._pick(batch, self.content_label), self._pick(batch, self.style_label)
    state = {"frozen": {"features": self.network_params}}
    c_feats, s_feats = self.features(state, content), self.features(state, style)
    start = content if self.start == "content" else jnp.clip(
        self.noise_std * jax.random.normal(rng, content.shape), -1.0, 1.0)
    state.update(content=content, style=style, content_target=c_feats[self.content_layer],
                 style_grams={layer: perceptual.gram_matrix(s_feats[layer])
                              for layer in self.style_layers})
    return {"params": {PLAYER: start}, "model_state": state}

  def terms(self, model_state, image: Array) -> dict[str, Array]:
    """`content_loss`, `style_loss` and `total_variation` of image [1, h, w, 3], each [1]."""
    feats = self.features(model_state, image)
    weights = {layer: 1.0 / len(self.style_layers) for layer in self.style_layers}
    return {
        "content_loss": perceptual.content_loss(features=feats[self.content_layer],
                                                target=model_state["content_target"]),
        "style_loss": perceptual.style_loss(features={k: feats[k] for k in self.style_layers},
                                            target_grams=model_state["style_grams"],
                                            weights=weights),
        "total_variation": perceptual.total_variation(images=image),
    }

  def loss(self, params_all, player_params, batch: Batch, rng: PRNGKey, model_state):
    del params_all, batch, rng
    terms = self.terms(model_state, player_params)
    loss = (self.content_weight * terms["content_loss"] + self.style_weight * terms["style_loss"]
            + self.tv_weight * terms["total_variation"])
    return jnp.sum(loss), ({k: jnp.mean(v) for k, v in terms.items()}, model_state)

  def evaluate(self, variables: Variables, batch: Batch, rng: PRNGKey) -> dict[str, Array]:
    """The current image's three terms, each repeated [batch] (module docstring)."""
    del rng
    num = jax.tree.leaves(batch)[0].shape[0]
    terms = self.terms(variables["model_state"], variables["params"][PLAYER])
    return {k: jnp.full((num,), jnp.mean(v)) for k, v in terms.items()}

  def sample(self, variables: Variables, rng: PRNGKey, num: int) -> Array:
    """The triptych content, style, stylised image [3, h, w, 3] in [-1, 1], repeated to `num`
    images."""
    del rng
    state = variables["model_state"]
    images = jnp.concatenate([state["content"], state["style"],
                              jnp.clip(variables["params"][PLAYER], -1.0, 1.0)])
    return jnp.tile(images, (math.ceil(num / 3), 1, 1, 1))[:num]


def from_config(config: ml_collections.ConfigDict, spec: DataSpec) -> StyleTransfer:
  """Style transfer of `config.model` on the images `spec` describes.

  Raises:
    SettingError: images that are not RGB [h, w, 3], or a content or style label the data do
      not have.
    FileNotFoundError, ValueError: `model.weights` names a missing or malformed file
      (`gen_jax.nn.vgg`).
  """
  m = config.model
  shape = tuple(spec.shape(m.image_key, what="model.image_key"))
  spec.feature(m.label_key, what="model.label_key")
  if len(shape) != 3 or shape[-1] != 3:
    raise SettingError(f"Style transfer reads RGB images [h, w, 3]; the data's {m.image_key!r} "
                       f"entries are {shape}: use colour images (e.g. data.name="
                       "'sample_images/128').")
  for key in ("content_label", "style_label"):
    if spec.num_classes is not None and m[key] >= spec.num_classes:
      raise SettingError(f"model.{key}={m[key]}: the data {spec.name} have labels 0 .. "
                         f"{spec.num_classes - 1}; pick the image by one of them.")
  network = vgg.VGG19(pooling=m.pooling)
  layers = tuple(dict.fromkeys((m.content_layer, *m.style_layers)))
  if m.weights:
    params = vgg.load_params(m.weights)["params"]
    used = jax.eval_shape(lambda: network.init(jax.random.PRNGKey(0),
                                               jnp.zeros((1, *shape)), layers=layers))["params"]
    params = {name: params[name] for name in used}
  else:
    params = network.init(jax.random.PRNGKey(m.feature_seed), jnp.zeros((1, *shape)),
                          layers=layers)["params"]
  return StyleTransfer(
      network=network, network_params=params, content_layer=m.content_layer,
      style_layers=tuple(m.style_layers), content_weight=m.content_weight,
      style_weight=m.style_weight, tv_weight=m.tv_weight, start=m.start, noise_std=m.noise_std,
      content_label=m.content_label, style_label=m.style_label, image_key=m.image_key,
      label_key=m.label_key)
