"""A causal decoder-only transformer (GPT-style) with a KV cache for fast decoding.

Two modules:

* `DecoderStack` maps embedded inputs `[batch, length, d_model]` to hidden states of the same
  shape: positions (learned or rotary), pre-norm blocks of causal self-attention and an MLP, and a
  final norm. It owns the KV cache, so any model that embeds its own inputs (a language model, a
  prior over VQ codes, a raster-scan image transformer) gets cached decoding by wrapping it.
* `Transformer` is the language model: token embedding, `DecoderStack`, and a tied or untied
  output projection to `[batch, length, vocab]` logits.

Hyperparameters. `TransformerConfig` is the one frozen struct of a transformer's 13
hyperparameters, each documented there. `TransformerConfig.from_config(config.model)` reads them
from a config section whose keys are named like its fields (a method's `default_model_config()`
includes `dataclasses.asdict(TransformerConfig(...))`), `make()` builds the `Transformer` and
`Transformer.config` gives the struct back; `decoder_stack()` builds the `DecoderStack` alone for
models that bring their own embedding and head.

Decoding. `Transformer(...).init(rng, zeros([batch, max_len]), decode=True)["cache"]` creates the
cache collection (the way flax's lm1b example does): per block `cached_key` / `cached_value`
`[batch, max_len, heads, head_dim]`, one `cache_index` scalar for the whole stack and its
`padding` `[batch]` int32, the number of left-padding slots of each row (0 at `init`).
`gen_jax.sampling.decoding.init_cache` builds the same zeros without running the model, and sets
`padding` for a batch of prompts of different lengths, left-padded to one width
(`decoding.left_pad`): the padding slots are masked out of every query's view and each row's
positions count from its first real token, so each row decodes as it would alone. Then
`apply(..., tokens [batch, P], decode=True, mutable=["cache"])` writes the P new keys and values at
`cache_index .. cache_index + P - 1`, lets every new token attend to the whole cache before it and
causally among the new tokens, and advances `cache_index` by P: a prompt is prefilled in one call
and each later call appends one token. Positions in decode mode come from `cache_index` (minus
the row's padding). Writing past `max_len` is not checked under `jit` (XLA clamps the write): the
decoders of `gen_jax.sampling.decoding` check `prompt_length + new_tokens - 1 <= max_len`.

References:
  Vaswani et al., "Attention is all you need", 2017 (attention, the transformer block).
  Radford et al., "Language models are unsupervised multitask learners", 2019 (GPT-2: pre-norm,
    decoder-only, tied embeddings, N(0, 0.02) embedding init).
  Su et al., "RoFormer: Enhanced transformer with rotary position embedding", 2021 (rope).
  Zhang and Sennrich, "Root mean square layer normalization", 2019 (RMSNorm).
  Black et al., "GPT-NeoX-20B", 2022 (rotary embeddings on part of each head).
  So et al., "Primer: searching for efficient transformers for language modeling", 2021
    (squared ReLU).
"""

import dataclasses
import functools
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from gen_jax.errors import SettingError, concrete

Array = jax.Array
Dtype = Any

_NORMS = {"layer": nn.LayerNorm, "rms": nn.RMSNorm}
_POSITIONS = ("learned", "rope", "none")
# The MLP's nonlinearity; squared_relu is relu(x) ** 2.
_ACTIVATIONS = {"gelu": nn.gelu, "relu": nn.relu,
                "squared_relu": lambda x: jnp.square(nn.relu(x))}
_EMBED_INIT = nn.initializers.normal(stddev=0.02)


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """The hyperparameters of a `Transformer` (of its `DecoderStack`: all but `vocab_size` and
  `tie_embeddings`; `d_model` is the width of the stack's inputs). Frozen, so hashable: a config
  can be closed over by a jitted function."""

  vocab_size: int  # number of token ids
  num_layers: int = 2  # transformer blocks
  num_heads: int = 4  # attention heads; must divide d_model
  d_model: int = 128  # width of the residual stream
  d_ff: int = 512  # hidden width of the MLP (commonly 4 * d_model)
  max_len: int = 256  # the longest sequence: learned position table and KV-cache length
  dropout_rate: float = 0.0  # residual and embedding dropout, active when not deterministic
  # "learned" (an added [max_len, d_model] table), "rope" (rotary) or "none" (the inputs carry
  # their positions, e.g. a raster-scan image model's 2-D ones)
  positions: str = "learned"
  norm: str = "layer"  # "layer" (LayerNorm) or "rms" (RMSNorm)
  tie_embeddings: bool = True  # logits from the transposed token embedding, else a Dense layer
  # With rope, the fraction of each head's channels that are rotated (rounded to an even number,
  # at least 2); the others carry no position (GPT-NeoX's partial rotary embedding).
  rope_fraction: float = 1.0
  # Learn the blocks' norm scales (and LayerNorm biases), which the Dense layer after each norm
  # can absorb (see `DecoderBlock`); the final norm always has them.
  norm_params: bool = True
  # The MLP's nonlinearity: "gelu" (tanh approximation), "relu" or "squared_relu".
  activation: str = "gelu"

  @classmethod
  def from_config(cls, model: Mapping[str, Any]) -> "TransformerConfig":
    """The struct from a config section such as `config.model`, which holds one key per field;
    its other keys (a method's own settings) are ignored.

    Raises:
      SettingError: the section lacks some of the fields.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [name for name in names if name not in model]
    if missing:
      raise SettingError(f"The model config lacks the transformer keys {missing}: add them "
                         f"(the fields of gen_jax.nn.transformer.TransformerConfig) to the "
                         f"method's default_model_config().")
    return cls(**{name: model[name] for name in names})

  def make(self, **kwargs) -> "Transformer":
    """The `Transformer` with these hyperparameters; `kwargs` are its other attributes (`dtype`,
    `param_dtype`, `name`)."""
    return Transformer(**dataclasses.asdict(self), **kwargs)

  def decoder_stack(self, **kwargs) -> "DecoderStack":
    """The `DecoderStack` with these hyperparameters (those it has); `kwargs` are its other
    attributes (`dtype`, `param_dtype`, `rope_base`, `name`)."""
    own = {f.name for f in dataclasses.fields(DecoderStack)}
    return DecoderStack(**{k: v for k, v in dataclasses.asdict(self).items() if k in own},
                        **kwargs)


def rope_tables(position_ids: Array, head_dim: int, base: float = 10000.0) -> tuple[Array, Array]:
  """Sines and cosines of rotary position embeddings (Su et al., 2021).

  Channel pair `(i, i + head_dim / 2)` of a query or key at position `p` is rotated by the angle
  `p * base ** (-2 i / head_dim)`.

  Args:
    position_ids: `[batch, length]` int positions (batch may be 1 to broadcast).
    head_dim: the even number of rotated channels: the size of one attention head, or fewer
      for a partial rotation (see `apply_rope`).
    base: wavelength base.

  Returns:
    `(sin, cos)`, each `[batch, length, 1, head_dim // 2]` float32 (the 1 broadcasts over heads).
  """
  inv_freq = base ** (-jnp.arange(0, head_dim // 2, dtype=jnp.float32) * 2.0 / head_dim)
  angles = position_ids.astype(jnp.float32)[..., None] * inv_freq  # [batch, length, head_dim/2]
  return jnp.sin(angles)[:, :, None, :], jnp.cos(angles)[:, :, None, :]


def apply_rope(x: Array, sin: Array, cos: Array) -> Array:
  """Rotates `x` `[batch, length, ..., head_dim]` (e.g. `[..., heads, head_dim]`) by the tables
  of `rope_tables`, which must broadcast against its leading axes. Tables built for
  `rotary_dims < head_dim` rotate the first `rotary_dims` channels and leave the others as they
  are (partial rotary embeddings, as in GPT-NeoX)."""
  rotary_dims = 2 * sin.shape[-1]
  x1, x2 = jnp.split(x[..., :rotary_dims].astype(jnp.float32), 2, axis=-1)
  parts = [x1 * cos - x2 * sin, x2 * cos + x1 * sin]
  if rotary_dims < x.shape[-1]:
    parts.append(x[..., rotary_dims:].astype(jnp.float32))
  return jnp.concatenate(parts, axis=-1).astype(x.dtype)


def _dense(x: Array, dense: nn.Dense) -> Array:
  """`dense` applied to `x` `[..., d]` reshaped to one `[rows, d]` matrix. On XLA's CPU backend a
  Dense layer over `[batch, length, d]` (whose weight gradient contracts two axes) ran at half
  the speed of the same layer over `[batch * length, d]` (experiments/benchmarks/lm_step.py)."""
  return dense(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], dense.features)


def _attend(q: Array, k: Array, v: Array, mask: Array, dtype: Dtype) -> Array:
  """Softmax attention of scaled `q` `[batch, heads, queries, head_dim]` over `k`, `v`
  `[batch, heads, keys, head_dim]` where `mask` `[1, 1, queries, keys]` is True; the softmax
  runs in float32. Returns `[batch, heads, queries, head_dim]`. (Heads-major: both products
  are then batched matrix products without transposes.)

  The normalisation is deferred: the unnormalised weights `exp(logits - max)` multiply `v` and
  the `[queries, head_dim]` result is divided by their row sums, instead of dividing the
  `[queries, keys]` weights first. The same softmax, with one pass less over the largest tensor
  forward and backward (2.2x faster attention on CPU). The row maximum only shifts the
  exponent for range, so no gradient flows through it (the softmax is invariant to it)."""
  logits = jnp.einsum("bhqd,bhkd->bhqk", q, k).astype(jnp.float32)
  logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  shift = lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
  weights = jnp.exp(logits - shift)  # [batch, heads, queries, keys], unnormalised
  out = jnp.einsum("bhqk,bhkd->bhqd", weights.astype(dtype), v)
  total = jnp.sum(weights, axis=-1, keepdims=True)  # [batch, heads, queries, 1]
  return (out / total.astype(out.dtype)).astype(dtype)


class CausalSelfAttention(nn.Module):
  """Multi-head self-attention with a fused QKV projection and an optional KV cache.

  The mask and the rotary tables are built once per call by `DecoderStack` and shared by every
  layer.

  Attributes:
    num_heads: attention heads.
    query_block: queries per block of the blocked causal attention of a full (uncached) pass.
    dtype: computation dtype; parameters are `param_dtype`; softmax runs in float32.
  """

  num_heads: int
  query_block: int = 64
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Array, rope: tuple[Array, Array] | None, decode: bool,
               cache_index: Array | None, prefix: Array | None = None) -> Array:
    """Attends each position to the allowed ones.

    Args:
      x: `[batch, length, d_model]` normalised inputs.
      mask: `[1, 1, length, keys]` bool, True where a query may attend to a key; `keys` is
        `length` without a cache and the cache length with one.
      rope: `(sin, cos)` from `rope_tables`, or None for no rotation.
      decode: create the cache variables `[batch, length, heads, head_dim]` if they do not exist
        (inside `init`, where `length` is the cache length) and use them if they do.
      cache_index: the scalar int32 cache slot of `x[:, 0]` when the cache exists, else None.
      prefix: optional `[2, batch or 1, P, heads, head_dim]` keys and values that every query
        of a full (uncached) pass sees before the sequence's own (prefix tuning).

    Returns:
      `[batch, length, d_model]`.
    """
    batch, length, d_model = x.shape
    head_dim = d_model // self.num_heads
    qkv = _dense(x, nn.Dense(3 * d_model, dtype=self.dtype, param_dtype=self.param_dtype,
                             name="qkv"))
    qkv = qkv.reshape(batch, length, 3, self.num_heads, head_dim)
    qk, v = qkv[:, :, :2], qkv[:, :, 2]
    if rope is not None:  # one rotation of queries and keys together: [..., 2, heads, head_dim]
      qk = apply_rope(qk, *(table[:, :, None] for table in rope))
    q, k = qk[:, :, 0], qk[:, :, 1]  # each [batch, length, heads, head_dim]

    if decode:
      cached_key = self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
      cached_value = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
    if cache_index is not None:
      # [batch, max_len, heads, head_dim]: slots past the newest token hold zeros or stale
      # entries; the mask hides them.
      start = (0, cache_index, 0, 0)
      k = lax.dynamic_update_slice(cached_key.value, k.astype(cached_key.value.dtype), start)
      v = lax.dynamic_update_slice(cached_value.value, v.astype(cached_value.value.dtype), start)
      cached_key.value, cached_value.value = k, v

    q = q * jnp.asarray(head_dim ** -0.5, q.dtype)
    if length == 1:
      # One query (a decode step): broadcast-multiply-reduce reads the cache once in its own
      # layout, where a dot_general would first transpose all of it to [batch, heads, ...].
      logits = jnp.sum(q * k, axis=-1, dtype=jnp.float32)[:, None]  # [batch, 1, keys, heads]
      logits = jnp.where(mask.transpose(0, 2, 3, 1), logits, jnp.finfo(jnp.float32).min)
      weights = jax.nn.softmax(logits, axis=2).astype(self.dtype)
      out = jnp.sum(weights[:, 0, :, :, None] * v, axis=1)[:, None]  # [batch, 1, heads, hd]
      out = out.reshape(batch, length, d_model)
    elif cache_index is None:
      # Causal blocks: the queries of block [start, end) can only see keys < end, so each block
      # multiplies and normalises against that prefix alone. Besides skipping most of the masked
      # upper triangle, the [batch, heads, block, end] scores stay small enough for the CPU
      # caches, where one [batch, heads, length, length] softmax is memory-bound. On CPU, for the
      # lm_python config, this makes the forward pass 2.5x and the train step 1.2x faster
      # (experiments/benchmarks/lm_step.py --baseline_ref).
      q, k, v = (x.transpose(0, 2, 1, 3) for x in (q, k, v))  # [batch, heads, length, hd]
      num_prefix = 0 if prefix is None else prefix.shape[2]
      if num_prefix:  # [batch, heads, P, hd], seen by every query
        pk, pv = (jnp.broadcast_to(p, (batch,) + p.shape[1:]).transpose(0, 2, 1, 3).astype(
            k.dtype) for p in prefix)
      outs = []
      for start in range(0, length, self.query_block):
        end = min(start + self.query_block, length)
        keys, values, block_mask = k[:, :, :end], v[:, :, :end], mask[..., start:end, :end]
        if num_prefix:
          keys = jnp.concatenate([pk, keys], axis=2)
          values = jnp.concatenate([pv, values], axis=2)
          block_mask = jnp.concatenate(
              [jnp.ones(block_mask.shape[:-1] + (num_prefix,), bool), block_mask], axis=-1)
        outs.append(_attend(q[:, :, start:end], keys, values, block_mask, self.dtype))
      out = jnp.concatenate(outs, axis=2).transpose(0, 2, 1, 3).reshape(batch, length, d_model)
    else:
      q, k, v = (x.transpose(0, 2, 1, 3) for x in (q, k, v))
      out = _attend(q, k, v, mask, self.dtype).transpose(0, 2, 1, 3).reshape(
          batch, length, d_model)
    return _dense(out, nn.Dense(d_model, dtype=self.dtype, param_dtype=self.param_dtype,
                                name="out"))


class DecoderBlock(nn.Module):
  """Pre-norm block: `x + attn(norm(x))`, then `h + mlp(norm(h))`, with residual dropout.

  `norm_params=False` drops the two norms' scale and bias: each norm's output goes straight into
  a Dense layer, whose weights and bias can absorb them, so the block computes the same family
  of functions with fewer elementwise operations (on CPU, XLA materialises the broadcast
  scale); only the optimisation (initialisation, weight decay, Adam's per-weight steps) differs.
  """

  num_heads: int
  d_ff: int
  dropout_rate: float = 0.0
  norm: str = "layer"
  norm_params: bool = True
  activation: str = "gelu"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Array, rope: tuple[Array, Array] | None, decode: bool,
               cache_index: Array | None, deterministic: bool,
               prefix: Array | None = None) -> Array:
    norm = _NORMS[self.norm]
    if not self.norm_params:
      # Each norm feeds a Dense layer, which can absorb a scale (and a bias) into its weights.
      no_params = {"use_scale": False} if self.norm == "rms" else {"use_scale": False,
                                                                      "use_bias": False}
      norm = functools.partial(norm, **no_params)
    shape = x.shape
    x = x.reshape(-1, shape[-1])  # [batch * length, d_model]: see `_dense`
    h = norm(dtype=self.dtype, param_dtype=self.param_dtype, name="attention_norm")(x)
    h = CausalSelfAttention(self.num_heads, dtype=self.dtype, param_dtype=self.param_dtype,
                            name="attention")(
        h.reshape(shape), mask, rope, decode, cache_index, prefix)
    x = x + nn.Dropout(self.dropout_rate)(h.reshape(x.shape), deterministic=deterministic)
    h = norm(dtype=self.dtype, param_dtype=self.param_dtype, name="mlp_norm")(x)
    h = nn.Dense(self.d_ff, dtype=self.dtype, param_dtype=self.param_dtype, name="mlp_in")(h)
    h = nn.Dense(shape[-1], dtype=self.dtype, param_dtype=self.param_dtype, name="mlp_out")(
        _ACTIVATIONS[self.activation](h))
    return (x + nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)).reshape(shape)


class DecoderStack(nn.Module):
  """Causal transformer over embedded inputs: positions, `num_layers` blocks, a final norm.

  Attributes:
    num_layers ... activation: as the fields of `TransformerConfig` of the same names (documented
      there); `TransformerConfig.decoder_stack()` builds the stack from one.
    rope_base: the rotary embeddings' wavelength base.
    dtype: computation dtype; parameters are `param_dtype`; softmax runs in float32.
  """

  num_layers: int
  num_heads: int
  d_ff: int
  max_len: int
  dropout_rate: float = 0.0
  positions: str = "learned"
  norm: str = "layer"
  rope_base: float = 10000.0
  rope_fraction: float = 1.0
  norm_params: bool = True
  activation: str = "gelu"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, *, position_ids: Array | None = None, deterministic: bool = True,
               decode: bool = False, prefix_kv: Array | None = None) -> Array:
    """Runs the stack.

    Args:
      x: `[batch, length, d_model]` embedded inputs.
      position_ids: optional `[batch, length]` int positions; by default `0 .. length - 1`, or
        `cache_index .. cache_index + length - 1` in decode mode. Attention is causal in the
        order of `x` (and of the cache) whatever the positions are.
      deterministic: disables dropout.
      decode: use and update the "cache" collection (see the module docstring).
      prefix_kv: optional `[num_layers, 2, batch or 1, P, heads, head_dim]` keys and values
        that every position attends to before the sequence (prefix tuning, Li and Liang 2021);
        the sequence's positions then start at P, as after a P-token prompt. Full passes only:
        to decode after a prefix, write it into the cache (`write_prefix`).

    Returns:
      `[batch, length, d_model]` hidden states after the final norm.

    Raises:
      SettingError: a field it cannot use (positions, norm, activation, rope_fraction, a width
        the heads do not divide, an odd rotary head_dim).
      ValueError: inputs (with the prefix) longer than `max_len`, a `prefix_kv` of another
        shape or in decode mode, or a cache created from an input shorter than `max_len`.
    """
    batch, length, d_model = x.shape
    num_prefix = 0 if prefix_kv is None else prefix_kv.shape[3]
    self._check(num_prefix + length, d_model)
    if prefix_kv is not None:
      head_dim = d_model // self.num_heads
      want = (self.num_layers, 2, None, None, self.num_heads, head_dim)
      if prefix_kv.ndim != 6 or any(w not in (None, g) for w, g in zip(want, prefix_kv.shape)) \
          or prefix_kv.shape[2] not in (1, batch):
        raise ValueError(f"prefix_kv must be [num_layers={self.num_layers}, 2, batch or 1, P, "
                         f"heads={self.num_heads}, head_dim={head_dim}], got {prefix_kv.shape}.")
      if decode:
        raise ValueError("prefix_kv is for full passes; to decode after a prefix, write it into "
                         "the cache with gen_jax.nn.transformer.write_prefix.")

    cache_index = None
    if decode:
      # The first call (inside `init`) only creates the cache; it runs like a full pass.
      initialized = self.has_variable("cache", "cache_index")
      index = self.variable("cache", "cache_index", lambda: jnp.zeros((), jnp.int32))
      padding = self.variable("cache", "padding", lambda: jnp.zeros((batch,), jnp.int32))
      if initialized:
        cache_index = index.value
        index.value = cache_index + length
      elif length != self.max_len:
        raise ValueError(f"Create the cache with a [batch, max_len={self.max_len}] input, got "
                         f"length {length}.")

    steps = jnp.arange(length, dtype=jnp.int32)
    if cache_index is None:
      mask = (steps[None, :] <= steps[:, None])[None, None]  # [1, 1, length, length]
      default_ids = num_prefix + steps[None, :]  # [1, length]
    else:
      # Row b's first `padding[b]` slots hold left padding: no query sees them, and its
      # positions count from its first real token.
      slots = jnp.arange(self.max_len, dtype=jnp.int32)
      pad = padding.value[:, None, None]  # [batch, 1, 1]
      mask = (slots[None, :] <= (cache_index + steps)[:, None]) & (slots >= pad)
      mask = mask[:, None]  # [batch, 1, length, keys]
      default_ids = jnp.maximum(cache_index + steps - pad[:, 0], 0)  # [batch, length]
    if position_ids is None:
      position_ids = default_ids

    rope = None
    if self.positions == "learned":
      table = self.param("pos_embedding", _EMBED_INIT, (self.max_len, d_model), self.param_dtype)
      x = x + jnp.take(table, position_ids, axis=0).astype(x.dtype)
    elif self.positions == "rope":
      rope = rope_tables(position_ids, self._rotary_dims(d_model), self.rope_base)

    x = nn.Dropout(self.dropout_rate)(x.astype(self.dtype), deterministic=deterministic)
    for layer in range(self.num_layers):
      x = DecoderBlock(self.num_heads, self.d_ff, self.dropout_rate, self.norm,
                       self.norm_params, self.activation, self.dtype, self.param_dtype,
                       name=f"block_{layer}")(
                           x, mask, rope, decode, cache_index, deterministic,
                           None if prefix_kv is None else prefix_kv[layer])
    return _NORMS[self.norm](dtype=self.dtype, param_dtype=self.param_dtype, name="final_norm")(x)

  def _rotary_dims(self, d_model: int) -> int:
    head_dim = d_model // self.num_heads
    return max(2, 2 * round(head_dim * self.rope_fraction / 2))

  def _check(self, length: int, d_model: int):
    """Refuses settings the stack cannot use (a `SettingError`, which `experiments/main.py`
    prints in one line) and inputs longer than `max_len` (a `ValueError`: the caller's shape)."""
    if self.positions not in _POSITIONS:
      raise SettingError(f"model.positions must be one of {_POSITIONS}, got "
                         f"{self.positions!r}: set it to one of them.")
    if self.norm not in _NORMS:
      raise SettingError(f"model.norm must be one of {tuple(_NORMS)}, got {self.norm!r}: set it "
                         f"to one of them.")
    if self.activation not in _ACTIVATIONS:
      raise SettingError(f"model.activation must be one of {tuple(_ACTIVATIONS)}, got "
                         f"{self.activation!r}: set it to one of them.")
    if d_model % self.num_heads:
      raise SettingError(f"model.d_model={d_model} is not divisible by model.num_heads="
                         f"{self.num_heads}: change one so that the heads split the width.")
    if not 0.0 < self.rope_fraction <= 1.0:
      raise SettingError(f"model.rope_fraction must be in (0, 1], got {self.rope_fraction}.")
    if self.positions == "rope" and (d_model // self.num_heads) % 2:
      raise SettingError(f"rope needs an even head_dim; got model.d_model / model.num_heads = "
                         f"{d_model} / {self.num_heads} = {d_model // self.num_heads}: change "
                         f"one, or set model.positions to 'learned'.")
    if length > self.max_len:
      raise ValueError(f"Input length {length} exceeds max_len={self.max_len}; raise max_len.")


class Transformer(nn.Module):
  """A GPT-style causal language model.

  Attributes:
    vocab_size ... activation: the fields of `TransformerConfig`, documented there, with its
      defaults (a test keeps the two lists equal). Build one from a config with
      `TransformerConfig.from_config(config.model).make()`; `config` gives the struct back.
    dtype: computation dtype (e.g. `jnp.bfloat16`); logits are returned as float32.
    param_dtype: parameter dtype.
  """

  vocab_size: int
  num_layers: int = 2
  num_heads: int = 4
  d_model: int = 128
  d_ff: int = 512
  max_len: int = 256
  dropout_rate: float = 0.0
  positions: str = "learned"
  norm: str = "layer"
  tie_embeddings: bool = True
  rope_fraction: float = 1.0
  norm_params: bool = True
  activation: str = "gelu"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @property
  def config(self) -> TransformerConfig:
    """This model's hyperparameters as one struct."""
    return TransformerConfig(**{f.name: getattr(self, f.name)
                                for f in dataclasses.fields(TransformerConfig)})

  @nn.compact
  def __call__(self, tokens: Array, *, position_ids: Array | None = None,
               deterministic: bool = True, decode: bool = False,
               prefix_kv: Array | None = None,
               prefix_embeddings: Array | None = None) -> Array:
    """Next-token logits.

    Args:
      tokens: `[batch, length]` int32 token ids (length may be 0 after a prefix).
      position_ids: optional `[batch, length]` positions (see `DecoderStack`).
      deterministic: disables dropout (a "dropout" rng is needed otherwise).
      decode: use and update the "cache" collection; call with `mutable=["cache"]`.
      prefix_kv: optional per-layer keys and values before the sequence (`DecoderStack`).
      prefix_embeddings: optional `[batch, P, d_model]` inputs placed before the tokens'
        embeddings, as if they were embedded tokens (a frozen LM conditioned on an image,
        Tsimpoukelli et al. 2021); works in decode mode too, which writes them into the cache.

    Returns:
      `[batch, P + length, vocab]` float32 logits (P = 0 without `prefix_embeddings`); position
      `i` predicts the token after input `i`.
    """
    embed = nn.Embed(self.vocab_size, self.d_model, embedding_init=_EMBED_INIT, dtype=self.dtype,
                     param_dtype=self.param_dtype, name="embed")
    stack = self.config.decoder_stack(dtype=self.dtype, param_dtype=self.param_dtype,
                                      name="decoder")
    x = embed(tokens)
    if prefix_embeddings is not None:
      if prefix_embeddings.ndim != 3 or prefix_embeddings.shape[0] != tokens.shape[0] \
          or prefix_embeddings.shape[2] != self.d_model:
        raise ValueError(f"prefix_embeddings must be [batch={tokens.shape[0]}, P, d_model="
                         f"{self.d_model}], got {prefix_embeddings.shape}.")
      x = jnp.concatenate([prefix_embeddings.astype(x.dtype), x], axis=1)
    h = stack(x, position_ids=position_ids, deterministic=deterministic, decode=decode,
              prefix_kv=prefix_kv)
    if self.tie_embeddings:
      logits = embed.attend(h.reshape(-1, self.d_model)).reshape(*h.shape[:-1], self.vocab_size)
    else:
      logits = _dense(h, nn.Dense(self.vocab_size, dtype=self.dtype, param_dtype=self.param_dtype,
                                  name="logits"))
    return logits.astype(jnp.float32)


def write_prefix(cache: Any, prefix_kv: Array) -> Any:
  """An empty decoding cache (`decoding.init_cache`) with `prefix_kv` in its first P slots.

  The keys and values of `DecoderStack`'s `prefix_kv` are written into every block's cache at
  slots 0 .. P-1 and `cache_index` becomes P: the decoders then continue as after a P-token
  prompt whose keys and values these are (the prompt's tokens start at position P).

  Args:
    cache: the "cache" collection of a `Transformer` (or of a module holding a `DecoderStack`
      named "decoder"), empty, for `batch` rows.
    prefix_kv: `[num_layers, 2, batch or 1, P, heads, head_dim]`.

  Returns:
    The cache with the prefix written.

  Raises:
    ValueError: `prefix_kv` whose layers or trailing shape do not match the cache.
  """
  stack = dict(cache["decoder"])
  blocks = sorted((k for k in stack if k.startswith("block_")), key=lambda k: int(k[6:]))
  key_shape = stack[blocks[0]]["attention"]["cached_key"].shape  # [batch, max_len, heads, hd]
  if (prefix_kv.ndim != 6 or prefix_kv.shape[:2] != (len(blocks), 2)
      or prefix_kv.shape[2] not in (1, key_shape[0]) or prefix_kv.shape[3] > key_shape[1]
      or prefix_kv.shape[4:] != key_shape[2:]):
    raise ValueError(f"prefix_kv must be [num_layers={len(blocks)}, 2, batch or 1, P <= max_len="
                     f"{key_shape[1]}, {key_shape[2]}, {key_shape[3]}] for this cache, got "
                     f"{prefix_kv.shape}.")
  # Checked when the padding is known at trace time; under `jit` (a cache made by `init_cache`
  # inside the jitted function is traced) it cannot be, and the caller must not pad.
  padding = concrete(stack["padding"]) if "padding" in stack else None
  if padding is not None and padding.any():
    raise ValueError("write_prefix takes a cache without left padding: a prefix and prompts of "
                     "different lengths do not combine; decode such prompts one length at a time.")
  num_prefix = prefix_kv.shape[3]
  for layer, name in enumerate(blocks):
    attention = dict(stack[name]["attention"])
    for which, entry in enumerate(("cached_key", "cached_value")):
      old = attention[entry]
      values = jnp.broadcast_to(prefix_kv[layer, which], (old.shape[0],) + prefix_kv.shape[3:])
      attention[entry] = old.at[:, :num_prefix].set(values.astype(old.dtype))
    stack[name] = {**stack[name], "attention": attention}
  stack["cache_index"] = jnp.asarray(num_prefix, jnp.int32)
  return {**cache, "decoder": stack}
