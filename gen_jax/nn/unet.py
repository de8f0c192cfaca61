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

`TextUNet` is the text-conditional U-Net of GLIDE (Nichol et al. 2022, sec. 2.3 and appendix):
a `gen_jax.nn.text.TextEncoder` reads the prompt's byte tokens; its pooled feature is projected
and added to the timestep embedding, and at the resolutions `attention_levels` an attention
block after each residual block (and in the middle) lets every pixel attend to the text tokens,
projected to the block's width, together with the pixels of its own feature map (GLIDE's
attention layers concatenate the text keys and values to the image's). Padding tokens are masked
out, so the empty prompt gives the image's self-attention alone, and the pooled feature is zero:
the unconditional model of classifier-free guidance is the model's reading of the empty prompt.
Without text (`context=None`) the U-Net has no attention and the parameters of `UNet` as before.
"""

import math
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from gen_jax.errors import SettingError
from gen_jax.nn.convnets import resize_upsample
from gen_jax.nn.mlp import MLP, activation_fn
from gen_jax.nn.text import Attention, TextEncoder, TextFeatures
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
    if self.features % 2:  # the sinusoids come in cos/sin pairs
      raise SettingError(f"model.emb_features={self.features}: the time embedding's width must "
                         "be even; set model.emb_features to an even number.")
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


class TextAttention(nn.Module):
  """GLIDE's attention block: x + out(attention(GroupNorm(x) -> [pixels; text tokens])).

  Queries are the pixels of x [batch, h, w, c]; keys and values are the same pixels followed by
  the text tokens [batch, length, d], projected to c channels; text keys where `mask` [batch,
  length] is False get zero weight (exactly: their logits are set to the lowest float before the
  softmax), so their values never reach the output. The output projection starts at zero, so the
  block starts as the identity.

  Attributes:
    num_heads: attention heads (dividing the channels c).
  """

  num_heads: int = 4

  @nn.compact
  def __call__(self, x: Array, text: Array, mask: Array) -> Array:
    b, h, w, c = x.shape
    if c % self.num_heads:
      raise SettingError(f"model.attention_heads = {self.num_heads} must divide the width {c} "
                         "of every U-Net level listed in model.attention_levels.")
    pixels = nn.GroupNorm(num_groups=_groups(c))(x).reshape(b, h * w, c)
    text = nn.Dense(c, name="text_proj")(text.reshape(-1, text.shape[-1])).reshape(b, -1, c)
    keys = jnp.concatenate([pixels, text], axis=1)  # [batch, h * w + length, c]
    key_mask = jnp.concatenate([jnp.ones((b, h * w), bool), mask], axis=1)
    out = Attention(self.num_heads, out_init=nn.initializers.zeros)(pixels, keys, key_mask)
    return x + out.reshape(b, h, w, c)


class UNet(nn.Module):
  """A U-Net denoiser for images [batch, h, w, c].

  Attributes:
    widths: channels at each resolution, finest first, e.g. (32, 64) for 8x8 (8x8 and 4x4).
    blocks_per_level: residual blocks per resolution on the way down (one more on the way up).
    emb_features: width of the time/label embedding (even).
    num_classes: when set, labels [batch] in [0, num_classes] are required (num_classes = null).
    dropout: dropout rate inside the residual blocks, in training only.
    out_channels: channels of the prediction; None copies the input's.
    attention_levels: levels (0 the finest) with a `TextAttention` block after every residual
      block, the middle one included when the coarsest level is listed; used only with
      `context` (text), ignored without.
    attention_heads: heads of those blocks.
  """

  widths: Sequence[int] = (32, 64)
  blocks_per_level: int = 1
  emb_features: int = 128
  num_classes: int | None = None
  dropout: float = 0.0
  out_channels: int | None = None
  attention_levels: Sequence[int] = ()
  attention_heads: int = 4

  @nn.compact
  def __call__(self, x: Array, t: Array, labels: Array | None = None, train: bool = False, *,
               context: TextFeatures | None = None) -> Array:
    """The prediction [batch, h, w, c] for x_t [batch, h, w, c] at timesteps t [batch]; with
    `context` (a `TextEncoder`'s output), its pooled feature is added to the embedding and the
    attention levels attend to its tokens."""
    factor = 2 ** (len(self.widths) - 1)
    if x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(f"image sides {x.shape[1:3]} must be divisible by {factor} for "
                       f"{len(self.widths)} resolutions; use fewer widths.")
    bad = [level for level in self.attention_levels if not 0 <= level < len(self.widths)]
    if bad:
      raise SettingError(f"model.attention_levels must be levels 0 .. {len(self.widths) - 1} "
                         f"of the {len(self.widths)} widths, got {tuple(self.attention_levels)}.")
    emb = ConditionEmbedding(self.emb_features, self.num_classes)(t, labels)
    if context is not None:
      emb = emb + nn.Dense(self.emb_features, name="text_embed")(context.pooled)

    def attend(h: Array, level: int) -> Array:
      if context is None or level not in self.attention_levels:
        return h
      return TextAttention(self.attention_heads)(h, context.tokens, context.mask)

    h = nn.Conv(self.widths[0], (3, 3), name="stem")(x)
    skips = [h]
    for level, width in enumerate(self.widths):
      for _ in range(self.blocks_per_level):
        h = attend(ResBlock(width, self.dropout)(h, emb, train), level)
        skips.append(h)
      if level < len(self.widths) - 1:
        h = nn.Conv(width, (3, 3), strides=(2, 2), name=f"down_{level}")(h)
        skips.append(h)
    h = attend(ResBlock(self.widths[-1], self.dropout)(h, emb, train), len(self.widths) - 1)
    for level in reversed(range(len(self.widths))):
      for _ in range(self.blocks_per_level + 1):
        h = attend(ResBlock(self.widths[level], self.dropout)(
            jnp.concatenate([h, skips.pop()], axis=-1), emb, train), level)
      if level > 0:
        h = resize_upsample(h, self.widths[level - 1], name=f"up_{level}")
    h = nn.silu(nn.GroupNorm(num_groups=_groups(h.shape[-1]))(h))
    out = nn.Conv(self.out_channels or x.shape[-1], (3, 3), name="head",
                  kernel_init=nn.initializers.zeros)(h)
    return out


class TextUNet(nn.Module):
  """GLIDE's text-conditional U-Net: `TextEncoder` on the prompt's byte tokens, then `UNet` with
  its `context` (module docstring). `__call__(x, t, tokens [batch, length], train)`: the same
  signature as `UNet` with token ids in place of labels, so the diffusion method takes either.

  Attributes:
    unet: the U-Net, with `attention_levels` set and no `num_classes`.
    encoder: the text encoder.
  """

  unet: UNet
  encoder: TextEncoder

  @nn.compact
  def __call__(self, x: Array, t: Array, tokens: Array | None, train: bool = False) -> Array:
    if tokens is None:
      raise ValueError("this denoiser is text-conditional: pass byte token ids [batch, length] "
                       "(all padding, 0, for the empty prompt).")
    return self.unet(x, t, None, train, context=self.encoder(tokens))


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
