"""Noise-conditioned denoisers: a small U-Net for images and an MLP for 2-D points.

Both take `(x_t, t, labels)` and return a prediction shaped like x_t (eps, x0 or v: the method
decides how to read it). `t` is the training timestep [batch] (int or float), embedded with
sinusoids (Vaswani et al. 2017, as in Ho et al. 2020) and an MLP. With `num_classes` set, labels
[batch] in [0, num_classes] are embedded too; label `num_classes` is the *null* label, which
classifier-free guidance trains in place of a dropped label and feeds for the unconditional
prediction (Ho & Salimans 2021).

The U-Net follows DDPM's (Ho et al. 2020, appendix B) without attention: at each resolution,
residual blocks (GroupNorm, SiLU, 3x3 conv, plus a projection of the time/label embedding), a
stride-2 convolution down, and on the way up nearest-neighbour resizing by 2 followed by a 3x3
convolution (`gen_jax.nn.convnets.resize_upsample`, faster than transposed convolutions under
XLA:CPU), with skip connections concatenated. Image sides must be divisible by 2^(levels - 1):
8x8 takes
up to 4 levels, 28x28 up to 3, 32x32 up to 6.
"""

import math
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from gen_jax.nn.convnets import resize_upsample
from gen_jax.nn.mlp import MLP, activation_fn
from gen_jax.types import Array


def sinusoidal_embedding(t: Array, dim: int, max_period: float = 10_000.0) -> Array:
  """[batch, dim] sinusoids of timesteps t [batch]: cos(t f_k) then sin(t f_k) with
  f_k = max_period^(-k / (dim / 2)), k = 0 .. dim/2 - 1 (`dim` even)."""
  if dim % 2:
    raise ValueError(f"the time embedding width must be even, got {dim}.")
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class ConditionEmbedding(nn.Module):
  """Time (and optional label) embedding [batch, features]: sinusoids -> Dense -> SiLU -> Dense,
  plus a learned embedding of the label (num_classes + 1 entries, the last the null label)."""

  features: int
  num_classes: int | None = None

  @nn.compact
  def __call__(self, t: Array, labels: Array | None) -> Array:
    emb = sinusoidal_embedding(t, self.features)
    emb = nn.Dense(self.features)(nn.silu(nn.Dense(self.features)(emb)))
    if self.num_classes is None:
      if labels is not None:
        raise ValueError("labels were given to an unconditional denoiser; set num_classes.")
      return emb
    if labels is None:
      raise ValueError(f"this denoiser is class-conditional (num_classes={self.num_classes}): "
                       f"pass labels [batch], {self.num_classes} for the null label.")
    return emb + nn.Embed(self.num_classes + 1, self.features, name="label_embed")(labels)


def _groups(channels: int) -> int:
  return math.gcd(channels, 8)


class ResBlock(nn.Module):
  """GroupNorm -> SiLU -> conv -> (+ embedding) -> GroupNorm -> SiLU -> dropout -> conv, plus
  the input (through a 1x1 conv when the width changes)."""

  features: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: Array, emb: Array, train: bool) -> Array:
    h = nn.silu(nn.GroupNorm(num_groups=_groups(x.shape[-1]))(x))
    h = nn.Conv(self.features, (3, 3))(h)
    h = h + nn.Dense(self.features)(nn.silu(emb))[:, None, None, :]
    h = nn.silu(nn.GroupNorm(num_groups=_groups(self.features))(h))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = nn.Conv(self.features, (3, 3))(h)
    if x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1, 1), name="skip")(x)
    return x + h


class UNet(nn.Module):
  """A U-Net denoiser for images [batch, h, w, c].

  Attributes:
    widths: channels at each resolution, finest first, e.g. (32, 64) for 8x8 (8x8 and 4x4).
    blocks_per_level: residual blocks per resolution on the way down (one more on the way up).
    emb_features: width of the time/label embedding (even).
    num_classes: when set, labels [batch] in [0, num_classes] are required (num_classes = null).
    dropout: dropout rate inside the residual blocks, in training only.
    out_channels: channels of the prediction; None copies the input's.
  """

  widths: Sequence[int] = (32, 64)
  blocks_per_level: int = 1
  emb_features: int = 128
  num_classes: int | None = None
  dropout: float = 0.0
  out_channels: int | None = None

  @nn.compact
  def __call__(self, x: Array, t: Array, labels: Array | None = None, train: bool = False
               ) -> Array:
    factor = 2 ** (len(self.widths) - 1)
    if x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(f"image sides {x.shape[1:3]} must be divisible by {factor} for "
                       f"{len(self.widths)} resolutions; use fewer widths.")
    emb = ConditionEmbedding(self.emb_features, self.num_classes)(t, labels)
    h = nn.Conv(self.widths[0], (3, 3), name="stem")(x)
    skips = [h]
    for level, width in enumerate(self.widths):
      for _ in range(self.blocks_per_level):
        h = ResBlock(width, self.dropout)(h, emb, train)
        skips.append(h)
      if level < len(self.widths) - 1:
        h = nn.Conv(width, (3, 3), strides=(2, 2), name=f"down_{level}")(h)
        skips.append(h)
    h = ResBlock(self.widths[-1], self.dropout)(h, emb, train)
    for level in reversed(range(len(self.widths))):
      for _ in range(self.blocks_per_level + 1):
        h = ResBlock(self.widths[level], self.dropout)(
            jnp.concatenate([h, skips.pop()], axis=-1), emb, train)
      if level > 0:
        h = resize_upsample(h, self.widths[level - 1], name=f"up_{level}")
    h = nn.silu(nn.GroupNorm(num_groups=_groups(h.shape[-1]))(h))
    out = nn.Conv(self.out_channels or x.shape[-1], (3, 3), name="head",
                  kernel_init=nn.initializers.zeros)(h)
    return out


class MLPDenoiser(nn.Module):
  """A denoiser for points [batch, d] (or any [batch, ...], flattened and reshaped back): the
  time (and label) embedding, concatenated to x_t, through `gen_jax.nn.mlp.MLP`.

  Attributes:
    features: hidden widths of the MLP.
    emb_features: width of the time/label embedding (even).
    num_classes: when set, labels [batch] in [0, num_classes] are required (num_classes = null).
    activation: a function name of `jax.nn` / `flax.linen`.
  """

  features: Sequence[int] = (256, 256, 256)
  emb_features: int = 64
  num_classes: int | None = None
  activation: str = "silu"

  @nn.compact
  def __call__(self, x: Array, t: Array, labels: Array | None = None, train: bool = False
               ) -> Array:
    del train
    activation_fn(self.activation)  # refuses an unknown name before any parameter is made
    emb = ConditionEmbedding(self.emb_features, self.num_classes)(t, labels)
    flat = jnp.reshape(x, (x.shape[0], -1))
    h = jnp.concatenate([flat, emb.astype(x.dtype)], axis=-1)
    out = MLP(features=tuple(self.features), out_features=flat.shape[-1],
              activation=self.activation)(h)
    return jnp.reshape(out, x.shape)
