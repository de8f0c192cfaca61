"""A small byte-level text encoder for text-conditional diffusion (GLIDE, Nichol et al. 2022).

GLIDE encodes the caption with a transformer whose per-token outputs every attention layer of
the U-Net attends to, and whose pooled output is added to the timestep embedding. This is that
encoder at the digits' scale: byte embedding plus learned positions, `num_layers` pre-norm
transformer blocks (bidirectional self-attention among the real tokens, an MLP), a final
LayerNorm. Token id `PAD_ID` (0) is padding: padding keys are masked out of every attention, so
the features of the real tokens do not depend on what the padding positions hold, and the pooled
feature is the mean over the real tokens (zeros for the empty prompt, all padding). The features
at padding positions are left as computed (finite) and marked by `mask`; a reader must ignore
them. `Attention` is written here rather than taken from flax: with every Dense layer on 2-D
matrices the encoder's gradient ran several times faster under XLA:CPU than with
`nn.MultiHeadDotProductAttention` (its 3-D projections; measured at 64 features, 2 layers).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from gen_jax.conditioning import PAD_ID
from gen_jax.errors import SettingError, concrete
from gen_jax.types import Array


@struct.dataclass
class TextFeatures:
  """What `TextEncoder` returns."""

  tokens: Array  # [batch, length, features] per-token features (ignore where mask is False)
  mask: Array  # [batch, length] bool, True at real tokens
  pooled: Array  # [batch, features] mean over the real tokens; zeros for the empty prompt


def _dense(features: int, x: Array, **kwargs) -> Array:
  """A Dense layer applied to x [..., d] as one 2-D matrix [prod(...), d]: XLA:CPU's dot over
  a 3-D input, whose weight gradient contracts two axes, runs at half speed
  (docs/architecture.md, sequence models)."""
  out = nn.Dense(features, **kwargs)(x.reshape(-1, x.shape[-1]))
  return out.reshape(*x.shape[:-1], features)


class Attention(nn.Module):
  """Multi-head dot-product attention of queries [batch, q, d] over keys [batch, k, d_k] with
  a key mask [batch, k] bool (Vaswani et al. 2017): softmax(q k^T / sqrt(head_dim)) v per head,
  then an output projection to d. Masked keys' logits are set to the lowest float before the
  softmax, so their weights are exactly 0 whenever a query has an unmasked key (a row with none
  would weigh every key equally: callers keep one unmasked key per row, or ignore the row).

  Attributes:
    num_heads: heads; they divide d.
    out_init: initializer of the output projection's kernel (zeros: the block starts as the
      identity of its residual).
  """

  num_heads: int
  out_init: nn.initializers.Initializer = nn.linear.default_kernel_init

  @nn.compact
  def __call__(self, queries: Array, keys: Array, mask: Array) -> Array:
    b, nq, d = queries.shape
    nk = keys.shape[1]
    if d % self.num_heads:
      raise SettingError(f"{self.num_heads} attention heads must divide the width {d}.")
    head = d // self.num_heads
    q = _dense(d, queries, name="query").reshape(b, nq, self.num_heads, head)
    kv = _dense(2 * d, keys, name="key_value").reshape(b, nk, 2, self.num_heads, head)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, kv[:, :, 0]) / jnp.sqrt(jnp.float32(head))
    logits = jnp.where(mask[:, None, None, :], logits, jnp.finfo(logits.dtype).min)
    weights = jax.nn.softmax(logits, axis=-1)  # [batch, heads, q, k]
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, kv[:, :, 1]).reshape(b, nq, d)
    return _dense(d, out, name="out", kernel_init=self.out_init)


class TextEncoder(nn.Module):
  """Byte tokens [batch, length] int -> `TextFeatures`.

  Attributes:
    vocab_size: token ids 0 .. vocab_size - 1 (0 is padding).
    max_len: the longest text, the number of learned positions.
    features: width d of the token features.
    num_layers: transformer blocks.
    num_heads: attention heads (dividing `features`).
    mlp_ratio: hidden width of each block's MLP, in multiples of `features`.
  """

  vocab_size: int = 128
  max_len: int = 32
  features: int = 64
  num_layers: int = 2
  num_heads: int = 4
  mlp_ratio: int = 2

  @nn.compact
  def __call__(self, tokens: Array) -> TextFeatures:
    if tokens.ndim != 2 or tokens.shape[1] > self.max_len:
      raise SettingError(f"The text encoder reads token ids [batch, length <= {self.max_len}] "
                         f"(model.max_text_len), got shape {tokens.shape}.")
    if self.features % self.num_heads:
      raise SettingError(f"model.text_heads = {self.num_heads} must divide model.text_features "
                         f"= {self.features}.")
    values = concrete(tokens)
    if values is not None and values.size and (values.min() < 0
                                               or values.max() >= self.vocab_size):
      raise SettingError(f"Text token ids must lie in 0 .. {self.vocab_size - 1} "
                         f"(model.text_vocab_size), got {values.min()} .. {values.max()}.")
    mask = tokens != PAD_ID  # [batch, length]
    positions = self.param("positions", nn.initializers.normal(0.02),
                           (self.max_len, self.features))
    h = nn.Embed(self.vocab_size, self.features, name="embed")(tokens)
    h = h + positions[None, :tokens.shape[1]]
    for _ in range(self.num_layers):
      y = nn.LayerNorm()(h)
      h = h + Attention(self.num_heads)(y, y, mask)
      y = nn.LayerNorm()(h)
      h = h + _dense(self.features, nn.gelu(_dense(self.mlp_ratio * self.features, y)))
    h = nn.LayerNorm()(h)
    weights = mask[..., None].astype(h.dtype)  # [batch, length, 1]
    pooled = jnp.sum(h * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1.0)
    return TextFeatures(tokens=h, mask=mask, pooled=pooled)
