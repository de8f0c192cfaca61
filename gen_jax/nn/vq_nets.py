"""The networks of a VQ-VAE / RQ-VAE: a convolutional encoder to a grid of vectors, a quantizer
(`gen_jax.nn.quantizers`) and a convolutional decoder to per-pixel distribution parameters.

The encoder halves the resolution `downsample` times (stride-2 3x3 convolutions), so an 8x8
image becomes a 4x4 (one halving) or 2x2 (two) grid of `code_dim` vectors; the decoder doubles
it back with nearest-neighbour resizes followed by 3x3 convolutions (on XLA's CPU backend a
transposed convolution costs more, `docs/performance.md`). `VQAutoencoder` ties the three
together: `__call__` encodes, quantizes and decodes; `encode` gives the codes; `decode_codes`
decodes codes without an image.

References:
  van den Oord, Vinyals and Kavukcuoglu, "Neural discrete representation learning", 2017.
  Lee, Kim, Kim, Cho and Han, "Autoregressive image generation using residual quantization",
    2022.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax.errors import SettingError
from gen_jax.nn.mlp import activation_fn

Array = jax.Array


class VQEncoder(nn.Module):
  """Images [batch, h, w, c] -> vectors [batch, h / 2^downsample, w / 2^downsample, code_dim].

  Attributes:
    widths: channels of the 3x3 convolutions; the first `downsample` of them have stride 2.
    code_dim: width of the output vectors (a 1x1 convolution).
    downsample: how many times the resolution is halved.
    activation: by name.
  """

  widths: Sequence[int]
  code_dim: int
  downsample: int = 1
  activation: str = "gelu"

  @nn.compact
  def __call__(self, images: Array) -> Array:
    if self.downsample > len(self.widths):
      raise SettingError(f"downsample={self.downsample} needs at least as many widths, got "
                       f"{tuple(self.widths)}: add widths or lower model.downsample.")
    act = activation_fn(self.activation)
    x = images
    for i, width in enumerate(self.widths):
      stride = 2 if i < self.downsample else 1
      x = act(nn.Conv(width, (3, 3), strides=(stride, stride), name=f"conv_{i}")(x))
    return nn.Conv(self.code_dim, (1, 1), name="to_code")(x)


class VQDecoder(nn.Module):
  """Vectors [batch, gh, gw, code_dim] -> per-pixel parameters [batch, h, w, c, P].

  Attributes:
    image_shape: (h, w, c); h and w are gh and gw times 2^upsample.
    params_per_pixel: P, the parameters of each pixel's distribution.
    widths: channels of the 3x3 convolutions; before each of the last `upsample` of them the
      resolution doubles (nearest neighbour).
    upsample: how many times the resolution doubles.
    activation: by name.
  """

  image_shape: Sequence[int]
  params_per_pixel: int
  widths: Sequence[int]
  upsample: int = 1
  activation: str = "gelu"

  @nn.compact
  def __call__(self, z: Array) -> Array:
    act = activation_fn(self.activation)
    h, w, c = self.image_shape
    if z.shape[1] * 2 ** self.upsample != h or z.shape[2] * 2 ** self.upsample != w:
      raise SettingError(f"A {z.shape[1]}x{z.shape[2]} code grid doubled {self.upsample} times is "
                       f"not the {h}x{w} image: set model.downsample consistently.")
    x = z
    first_up = len(self.widths) - self.upsample
    for i, width in enumerate(self.widths):
      if i >= first_up:
        x = jax.image.resize(x, (x.shape[0], 2 * x.shape[1], 2 * x.shape[2], x.shape[3]),
                             "nearest")
      x = act(nn.Conv(width, (3, 3), name=f"conv_{i}")(x))
    x = nn.Conv(c * self.params_per_pixel, (3, 3), name="out")(x)
    return jnp.reshape(x, (z.shape[0], h, w, c, self.params_per_pixel))


class VQAutoencoder(nn.Module):
  """Encoder, quantizer and decoder.

  Attributes:
    encoder: a `VQEncoder`.
    quantizer: a quantizer of `gen_jax.nn.quantizers`: `(z_q, codes, aux) = quantizer(z,
      train=...)` and `quantizer.decode(codes) -> z_q`.
    decoder: a `VQDecoder`.
  """

  encoder: nn.Module
  quantizer: nn.Module
  decoder: nn.Module

  def __call__(self, images: Array, *, train: bool = False
               ) -> tuple[Array, Array, dict[str, Any]]:
    """images [batch, h, w, c] -> (pixel parameters [batch, h, w, c, P], codes
    [batch, gh, gw, depth] int32, the quantizer's aux dict)."""
    z_q, codes, aux = self.quantizer(self.encoder(images), train=train)
    return self.decoder(z_q), codes, aux

  def encode(self, images: Array) -> Array:
    """The codes [batch, gh, gw, depth] int32 of images (no codebook update)."""
    return self.quantizer(self.encoder(images), train=False)[1]

  def decode_codes(self, codes: Array) -> Array:
    """Pixel parameters [batch, h, w, c, P] of codes [batch, gh, gw, depth]."""
    return self.decoder(self.quantizer.decode(codes))
