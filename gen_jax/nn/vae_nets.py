"""Encoders and decoders for variational and plain autoencoders of small images.

The encoder maps images [batch, h, w, c] to a flat vector [batch, out_features] that a posterior
strategy of `gen_jax.methods.vae` splits into its parameters (a mean and a log-variance, or a
code alone). The decoder maps latents [batch, latent_dim] to the parameters of each pixel's
distribution, [batch, h, w, c, params_per_pixel], which a likelihood strategy interprets.
Both take `train` (dropout on) and need a "dropout" key then.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from gen_jax.errors import SettingError
from gen_jax.nn.mlp import activation_fn


class MLPEncoder(nn.Module):
  """Flattened image -> hidden Dense layers (activation, dropout) -> Dense(out_features).

  Attributes:
    features: widths of the hidden layers; () gives a linear map.
    out_features: width of the output (2 * latent_dim for a Gaussian posterior).
    activation: a function of `jax.nn` or `flax.linen`, by name.
    dropout: dropout rate on the input and after every hidden layer, in training only.
  """

  features: Sequence[int]
  out_features: int
  activation: str = "gelu"
  dropout: float = 0.0

  @nn.compact
  def __call__(self, images: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    """images [batch, h, w, c] -> [batch, out_features]."""
    act = activation_fn(self.activation)
    x = jnp.reshape(images, (images.shape[0], -1))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    for i, width in enumerate(self.features):
      x = act(nn.Dense(width, name=f"hidden_{i}")(x))
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.out_features, name="out")(x)


class MLPDecoder(nn.Module):
  """Latent -> hidden Dense layers (activation, dropout) -> per-pixel distribution parameters.

  Attributes:
    features: widths of the hidden layers; () gives a linear map (the linear-Gaussian model).
    image_shape: (h, w, c) of the images.
    params_per_pixel: outputs per pixel and channel (K logits, a mean and a log-scale, ...).
    activation: a function of `jax.nn` or `flax.linen`, by name.
    dropout: dropout rate after every hidden layer, in training only.
  """

  features: Sequence[int]
  image_shape: Sequence[int]
  params_per_pixel: int
  activation: str = "gelu"
  dropout: float = 0.0

  @nn.compact
  def __call__(self, z: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    """z [batch, latent_dim] -> [batch, h, w, c, params_per_pixel]."""
    act = activation_fn(self.activation)
    x = z
    for i, width in enumerate(self.features):
      x = act(nn.Dense(width, name=f"hidden_{i}")(x))
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    size = 1
    for d in self.image_shape:
      size *= d
    x = nn.Dense(size * self.params_per_pixel, name="out")(x)
    return jnp.reshape(x, (z.shape[0], *self.image_shape, self.params_per_pixel))


class ConvEncoder(nn.Module):
  """3x3 convolutions, each after the first halving the resolution, then Dense(out_features).

  Attributes:
    widths: channels of the conv layers.
    out_features: width of the output.
    activation: by name.
    dropout: dropout rate before the output layer, in training only.
  """

  widths: Sequence[int] = (32, 64)
  out_features: int = 32
  activation: str = "gelu"
  dropout: float = 0.0

  @nn.compact
  def __call__(self, images: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    """images [batch, h, w, c] -> [batch, out_features]."""
    act = activation_fn(self.activation)
    x = images
    for i, width in enumerate(self.widths):
      x = act(nn.Conv(width, (3, 3), strides=(1, 1) if i == 0 else (2, 2), name=f"conv_{i}")(x))
    x = jnp.reshape(x, (x.shape[0], -1))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.out_features, name="out")(x)


class ConvDecoder(nn.Module):
  """Dense to a coarse feature map, transposed 3x3 convolutions doubling the resolution, then a
  3x3 convolution to the per-pixel parameters. `image_shape`'s height and width must be
  divisible by 2 ** (len(widths) - 1).

  Attributes:
    widths: channels from coarse to fine; every one after the first doubles the resolution.
    image_shape: (h, w, c).
    params_per_pixel: outputs per pixel and channel.
    activation: by name.
    dropout: dropout rate after the first Dense, in training only.
  """

  image_shape: Sequence[int]
  params_per_pixel: int
  widths: Sequence[int] = (64, 32)
  activation: str = "gelu"
  dropout: float = 0.0

  @nn.compact
  def __call__(self, z: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    """z [batch, latent_dim] -> [batch, h, w, c, params_per_pixel]."""
    act = activation_fn(self.activation)
    h, w, c = self.image_shape
    factor = 2 ** (len(self.widths) - 1)
    if h % factor or w % factor:
      raise SettingError(f"model.image_shape {tuple(self.image_shape)} is not divisible by "
                         f"{factor} (one halving per width after the first, model.decoder_widths="
                         f"{tuple(self.widths)}): use fewer widths.")
    x = act(nn.Dense((h // factor) * (w // factor) * self.widths[0], name="project")(z))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = jnp.reshape(x, (z.shape[0], h // factor, w // factor, self.widths[0]))
    for i, width in enumerate(self.widths[1:]):
      x = act(nn.ConvTranspose(width, (3, 3), strides=(2, 2), name=f"up_{i}")(x))
    x = nn.Conv(c * self.params_per_pixel, (3, 3), name="out")(x)
    return jnp.reshape(x, (z.shape[0], h, w, c, self.params_per_pixel))
