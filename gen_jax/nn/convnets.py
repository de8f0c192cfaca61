"""Convolutional networks for small images."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


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
