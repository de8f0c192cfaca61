"""Convolutional networks for small images: a classifier and the DCGAN players."""

from typing import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from gen_jax.errors import SettingError
from gen_jax.types import Array


class Classifier(nn.Module):
  """A small convnet classifier; its penultimate features serve Frechet distances.

  Attributes:
    num_classes: number of output logits.
    widths: channels of the 3x3 conv blocks; every block after the first halves the resolution.
    feature_dim: width of the penultimate (feature) layer.
  """

  num_classes: int
  widths: Sequence[int] = (32, 64)
  feature_dim: int = 128

  @nn.compact
  def __call__(self, images: jnp.ndarray, *, return_features: bool = False) -> jnp.ndarray:
    """images [batch, h, w, c] in [-1, 1] -> logits [batch, classes] (or features)."""
    x = images
    for i, width in enumerate(self.widths):
      x = nn.Conv(width, (3, 3), strides=(1, 1) if i == 0 else (2, 2))(x)
      x = nn.gelu(x)
    x = jnp.mean(x, axis=(1, 2))
    features = nn.gelu(nn.Dense(self.feature_dim)(x))
    if return_features:
      return features
    return nn.Dense(self.num_classes)(features)


class PrefixEncoder(nn.Module):
  """Images -> a language model's input embeddings: the `Classifier`'s trunk (same convolutions
  and feature layer) with a linear head to `prefix_length` vectors of width `d_model` instead of
  class logits (the vision encoder of Frozen, Tsimpoukelli et al. 2021, Sec. 3, at this scale).

  Attributes:
    prefix_length: P, the embeddings per image.
    d_model: their width (the language model's).
    widths, feature_dim: the trunk's, as `Classifier`'s.
  """

  prefix_length: int
  d_model: int
  widths: Sequence[int] = (32, 64)
  feature_dim: int = 128

  @nn.compact
  def __call__(self, images: jnp.ndarray) -> jnp.ndarray:
    """images [batch, h, w, c] in [-1, 1] -> embeddings [batch, prefix_length, d_model]."""
    if self.prefix_length < 1:
      raise SettingError(f"model.prefix_length must be at least 1, got {self.prefix_length}.")
    features = Classifier(num_classes=0, widths=self.widths, feature_dim=self.feature_dim,
                          name="trunk")(images, return_features=True)
    out = nn.Dense(self.prefix_length * self.d_model, name="head")(features)
    return out.reshape(images.shape[0], self.prefix_length, self.d_model)


# ----------------------------------------------------------------------------------------------
# DCGAN players (Radford et al. 2016), for small images: 8x8 digits, 28x28 MNIST, 32x32 CIFAR.
# ----------------------------------------------------------------------------------------------


def transpose_upsample(x: Array, features: int, name: str | None = None) -> Array:
  """Doubles the resolution with a 4x4 transposed convolution of stride 2 (DCGAN's choice)."""
  return nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME", name=name)(x)


def resize_upsample(x: Array, features: int, name: str | None = None) -> Array:
  """Doubles the resolution by nearest-neighbour repetition, then a 3x3 convolution (Odena et
  al. 2016, "Deconvolution and Checkerboard Artifacts"): the same output shape as
  `transpose_upsample`, no checkerboard pattern, and faster under XLA:CPU
  (docs/performance.md)."""
  batch, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (batch, h, 2, w, 2, c))
  return nn.Conv(features, (3, 3), name=name)(x.reshape(batch, 2 * h, 2 * w, c))


def _check_labels(name: str, num_classes: int | None, labels: Array | None, batch: int) -> None:
  if num_classes is None:
    if labels is not None:
      raise ValueError(f"labels were given to an unconditional {name}; set num_classes.")
  elif labels is None or labels.shape != (batch,):
    raise ValueError(f"this {name} is class-conditional (num_classes={num_classes}): pass int "
                     f"labels of shape [batch] = ({batch},), got "
                     f"{None if labels is None else labels.shape}.")


class DCGANGenerator(nn.Module):
  """Latent [batch, d] -> images [batch, h, w, c] in (-1, 1).

  A Dense layer makes a [h / 2^n, w / 2^n, widths[0]] map; n = len(widths) - 1 upsampling
  blocks double the resolution, block i to widths[i + 1] channels; a 3x3 convolution and tanh
  give the image. Every hidden map is layer-normalised over its channels (per example and per
  pixel, so no batch statistics and no model state) before its ReLU.

  Attributes:
    image_shape: (h, w, c); h and w divisible by 2^n. (8, 8, 1) with widths (128, 64, 32)
      starts at 2x2; (28, 28, 1) with (128, 64, 32) at 7x7; (32, 32, 3) with 4 widths at 4x4.
    widths: channels at each resolution, lowest first.
    upsample_fn: `upsample_fn(x, features) -> x` at twice the resolution, called inside this
      module: `resize_upsample` or `transpose_upsample`.
    num_classes: when set, `__call__` takes int labels [batch] and concatenates a learned
      embedding of them to the latent.
    label_features: width of that label embedding.
  """

  image_shape: Sequence[int]
  widths: Sequence[int] = (128, 64, 32)
  upsample_fn: Callable[[Array, int], Array] = resize_upsample
  num_classes: int | None = None
  label_features: int = 16

  @nn.compact
  def __call__(self, z: Array, labels: Array | None = None) -> Array:
    h, w, c = self.image_shape
    ups = len(self.widths) - 1
    if ups < 0 or h % 2**ups or w % 2**ups:
      raise SettingError(f"model.image_shape {tuple(self.image_shape)} is not divisible by "
                         f"2^{ups} (one halving per generator width after the first, "
                         f"model.gen_widths={tuple(self.widths)}): use fewer widths.")
    _check_labels("generator", self.num_classes, labels, z.shape[0])
    x = z
    if self.num_classes is not None:
      embedding = nn.Embed(self.num_classes, self.label_features, name="label_embed")(labels)
      x = jnp.concatenate([x, embedding.astype(x.dtype)], axis=-1)
    h0, w0 = h >> ups, w >> ups
    x = nn.Dense(h0 * w0 * self.widths[0], name="project")(x)
    x = nn.relu(nn.LayerNorm()(x.reshape(z.shape[0], h0, w0, self.widths[0])))
    for width in self.widths[1:]:
      x = nn.relu(nn.LayerNorm()(self.upsample_fn(x, width)))
    return jnp.tanh(nn.Conv(c, (3, 3), name="to_image")(x))


class DCGANDiscriminator(nn.Module):
  """Images [batch, h, w, c] -> logits [batch].

  A 3x3 convolution at full resolution to widths[0] channels, then one strided 4x4 convolution
  per further width (each halves the resolution), leaky ReLU (0.2) after each; the flattened
  features f give the logit through a Dense layer. No normalisation: examples stay independent,
  as the gradient penalties require. A class-conditional discriminator adds the projection term
  <embed(y), f> of Miyato & Koyama 2018 ("cGANs with Projection Discriminator").

  Attributes:
    widths: channels at each resolution, highest resolution first.
    num_classes: when set, `__call__` takes int labels [batch].
  """

  widths: Sequence[int] = (32, 64, 128)
  num_classes: int | None = None

  @nn.compact
  def __call__(self, images: Array, labels: Array | None = None) -> Array:
    _check_labels("discriminator", self.num_classes, labels, images.shape[0])
    x = images
    for i, width in enumerate(self.widths):
      if i == 0:
        x = nn.Conv(width, (3, 3))(x)
      else:
        x = nn.Conv(width, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)))(x)
      x = nn.leaky_relu(x, 0.2)
    features = x.reshape(x.shape[0], -1)  # [batch, f]
    logits = nn.Dense(1, name="logit")(features)[:, 0]
    if self.num_classes is not None:
      embedding = nn.Embed(self.num_classes, features.shape[-1], name="label_embed")(labels)
      logits = logits + jnp.sum(embedding.astype(features.dtype) * features, axis=-1)
    return logits
