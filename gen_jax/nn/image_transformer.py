"""A raster-scan image transformer: a causal transformer over an image's sub-pixels.

An image [h, w, c] of grey levels is read as N = h * w * c tokens in raster order (row by row,
left to right, the channels of a pixel in order), the order of Image GPT (Chen et al., 2020).
Input position n holds the token *before* sub-pixel n (position 0 a start token: the class
label, or one "unconditional" token) and carries the 2-D position of sub-pixel n, the one it
predicts; the output at n are the parameters of sub-pixel n's distribution. Attention is causal,
so sub-pixel n is predicted from sub-pixels 0 .. n-1 only.

2-D positions (Parmar et al., 2018, "Image Transformer", Sec. 3.1): `positions_2d = "learned"`
adds a learned row embedding, column embedding and channel embedding; `"sinusoidal"` gives half
of the width to sines and cosines of the row and half to those of the column (Vaswani et al.,
2017, eq. 5, per axis), plus a learned channel embedding when there are several channels.

The blocks, norm and KV cache are `gen_jax.nn.transformer.DecoderStack`'s (its own 1-D
positions off): `init_cache(model, batch)` of `gen_jax.sampling.decoding` builds the cache, and
`apply(..., tokens [batch, 1], start=n, decode=True, mutable=["cache"])` appends one token.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax.errors import SettingError
from gen_jax.nn.transformer import DecoderStack, TransformerConfig

Array = jax.Array

_POSITIONS_2D = ("learned", "sinusoidal")
_EMBED_INIT = nn.initializers.normal(stddev=0.02)


def sinusoids(positions: Array, dim: int) -> Array:
  """Sines and cosines of integer positions [n] at `dim // 2` wavelengths from 1 to 10,000
  (Vaswani et al., 2017, eq. 5): [n, dim] (dim even)."""
  inv_freq = 1.0 / (10000.0 ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
  angles = positions.astype(jnp.float32)[:, None] * inv_freq
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class ImageTransformer(nn.Module):
  """Causal transformer over sub-pixel tokens with 2-D positions (module docstring).

  Attributes:
    stack: the transformer's hyperparameters (`vocab_size`, `max_len`, `positions` and
      `tie_embeddings` are ignored: the vocabulary is `num_levels` plus the start tokens, the
      length is h * w * c).
    image_shape: (h, w, c).
    num_levels: K, the grey levels (tokens 0 .. K-1).
    out_features: outputs per sub-pixel: the parameters of its distribution.
    num_classes: > 0: start token `K + label`; 0: the one start token `K`. Label `num_classes`
      (a conditioning's null label) is a start token of its own.
    positions_2d: "learned" or "sinusoidal".
  """

  stack: TransformerConfig
  image_shape: tuple[int, int, int]
  num_levels: int
  out_features: int
  num_classes: int = 0
  positions_2d: str = "learned"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @property
  def max_len(self) -> int:
    """N = h * w * c, the sequence length (and the KV cache's)."""
    return math.prod(self.image_shape)

  def start_tokens(self, labels: Array | None, num: int) -> Array:
    """The start token of each sequence: [num] int32."""
    if labels is None:
      return jnp.full((num,), self.num_levels, jnp.int32)
    return self.num_levels + jnp.asarray(labels, jnp.int32)

  def _positions(self, index: Array, d_model: int) -> Array:
    """[L, d_model] 2-D position embeddings of sub-pixels `index` [L]."""
    h, w, c = self.image_shape
    row, col, channel = index // (w * c), (index // c) % w, index % c
    if self.positions_2d == "learned":
      tables = [self.param(f"{axis}_embedding", _EMBED_INIT, (size, d_model), self.param_dtype)
                for axis, size in (("row", h), ("col", w), ("channel", c))]
      return sum(jnp.take(t, i, axis=0) for t, i in zip(tables, (row, col, channel)))
    half = d_model // 2
    out = jnp.concatenate([sinusoids(row, half), sinusoids(col, d_model - half)], axis=-1)
    if c > 1:
      table = self.param("channel_embedding", _EMBED_INIT, (c, d_model), self.param_dtype)
      out = out + jnp.take(table, channel, axis=0)
    return out

  @nn.compact
  def __call__(self, tokens: Array, *, start: Array | int = 0, decode: bool = False,
               deterministic: bool = True) -> Array:
    """Distribution parameters of the sub-pixels `start .. start + L - 1`.

    Args:
      tokens: [batch, L] int: the start token then levels of sub-pixels (input n is the token
        before sub-pixel start + n).
      start: the index of the first predicted sub-pixel (the cache index in decode mode).
      decode: use and update the "cache" collection (one call per new token).
      deterministic: disables dropout.

    Returns:
      [batch, L, out_features] float32.

    Raises:
      ValueError: an unknown `positions_2d`, an odd `d_model` with sinusoids, or more tokens
        than h * w * c.
    """
    if self.positions_2d not in _POSITIONS_2D:
      raise SettingError(f"positions_2d must be one of {_POSITIONS_2D}, got "
                       f"{self.positions_2d!r}: set model.positions_2d.")
    d_model = self.stack.d_model
    if self.positions_2d == "sinusoidal" and d_model % 4:
      raise SettingError(f"2-D sinusoids need d_model divisible by 4, got {d_model}: set "
                       f"model.d_model.")
    length = tokens.shape[1]
    if length > self.max_len:
      raise ValueError(f"{length} tokens exceed the image's {self.max_len} sub-pixels.")
    vocab = self.num_levels + self.num_classes + 1
    embed = nn.Embed(vocab, d_model, embedding_init=_EMBED_INIT, dtype=self.dtype,
                     param_dtype=self.param_dtype, name="token_embedding")
    index = start + jnp.arange(length, dtype=jnp.int32)
    x = embed(tokens) + self._positions(index, d_model).astype(self.dtype)[None]
    s = self.stack
    h = DecoderStack(num_layers=s.num_layers, num_heads=s.num_heads, d_ff=s.d_ff,
                     max_len=self.max_len, dropout_rate=s.dropout_rate, positions="none",
                     norm=s.norm, norm_params=s.norm_params, activation=s.activation,
                     dtype=self.dtype, param_dtype=self.param_dtype, name="stack")(
                         x, deterministic=deterministic, decode=decode)
    out = nn.Dense(self.out_features, kernel_init=nn.initializers.zeros, dtype=self.dtype,
                   param_dtype=self.param_dtype, name="head")(h)
    return out.astype(jnp.float32)
