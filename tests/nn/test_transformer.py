"""Tests of the causal transformer: causality, cached decoding against full passes, positions."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.nn.transformer import CausalSelfAttention, DecoderStack, Transformer
from gen_jax.sampling import decoding

VOCAB, MAX_LEN, BATCH = 13, 12, 3


def make_model(**overrides):
  config = dict(vocab_size=VOCAB, num_layers=2, num_heads=4, d_model=32, d_ff=64,
                max_len=MAX_LEN, positions="learned", tie_embeddings=False)
  config.update(overrides)
  return Transformer(**config)


@functools.lru_cache(maxsize=None)
def setup(**overrides):
  """(model, params, jitted full pass, jitted cached step) for one configuration."""
  model = make_model(**overrides)
  params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, MAX_LEN), jnp.int32))["params"]
  full = jax.jit(lambda params, tokens: model.apply({"params": params}, tokens))
  step = jax.jit(decoding.make_tokens_to_logits(model, params))
  return model, params, full, step


def random_tokens(seed, length=MAX_LEN):
  return jax.random.randint(jax.random.key(seed), (BATCH, length), 0, VOCAB, jnp.int32)


CONFIGS = [dict(positions="learned"), dict(positions="rope"),
           dict(positions="rope", norm="rms", tie_embeddings=True),
           dict(positions="learned", tie_embeddings=True)]


@pytest.mark.parametrize("config", CONFIGS)
def test_future_tokens_do_not_change_past_logits(config):
  _, params, full, _ = setup(**config)
  tokens = random_tokens(1)
  logits = full(params, tokens)
  for position in (0, 5, MAX_LEN - 1):
    changed = tokens.at[:, position:].set((tokens[:, position:] + 1) % VOCAB)
    new_logits = full(params, changed)
    np.testing.assert_allclose(new_logits[:, :position], logits[:, :position], atol=1e-6)
    assert np.abs(new_logits[:, position:] - logits[:, position:]).min(axis=-1).max() > 1e-4


@pytest.mark.parametrize("config", CONFIGS)
def test_cached_decoding_equals_full_pass(config):
  model, params, full, step = setup(**config)
  tokens = random_tokens(2)
  expected = np.asarray(full(params, tokens))
  # Prefill 4 tokens, then a chunk of 3, then one token at a time to the end of the cache.
  chunks = [(0, 4), (4, 7)] + [(t, t + 1) for t in range(7, MAX_LEN)]
  cache = decoding.init_cache(model, BATCH)
  for start, stop in chunks:
    logits, cache = step(tokens[:, start:stop], cache)
    np.testing.assert_allclose(logits, expected[:, start:stop], atol=1e-5,
                               err_msg=f"tokens {start}:{stop}")
  assert int(cache["decoder"]["cache_index"]) == MAX_LEN


def numpy_causal_attention(params, x, num_heads):
  """Masked softmax attention over the whole square, written out in NumPy (float64)."""
  x = np.asarray(x, np.float64)
  batch, length, d_model = x.shape
  head_dim = d_model // num_heads
  dense = lambda p, h: h @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"])
  qkv = dense(params["qkv"], x).reshape(batch, length, 3, num_heads, head_dim)
  q, k, v = qkv[:, :, 0] * head_dim ** -0.5, qkv[:, :, 1], qkv[:, :, 2]
  logits = np.einsum("bqhd,bkhd->bhqk", q, k)
  logits = np.where(np.tril(np.ones((length, length), bool)), logits, -np.inf)
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  out = np.einsum("bhqk,bkhd->bqhd", weights, v).reshape(batch, length, d_model)
  return dense(params["out"], out)


@pytest.mark.parametrize("query_block", [1, 5, 12, 64])
def test_blocked_attention_equals_full_softmax(query_block):
  # Blocks of 5 split 12 queries unevenly (5, 5, 2); 12 and 64 are one block.
  length, d_model, heads = 12, 16, 2
  x = jax.random.normal(jax.random.key(0), (2, length, d_model))
  mask = jnp.tril(jnp.ones((length, length), bool))[None, None]
  attention = CausalSelfAttention(heads, query_block=query_block)
  apply = jax.jit(lambda params, x: attention.apply(params, x, mask, None, False, None))
  params = attention.init(jax.random.key(1), x, mask, None, False, None)
  np.testing.assert_allclose(apply(params, x), numpy_causal_attention(params["params"], x, heads),
                             atol=1e-5)
  one_block = CausalSelfAttention(heads, query_block=length)
  loss = lambda module: lambda x: jnp.sum(
      jnp.sin(module.apply(params, x, mask, None, False, None)))
  np.testing.assert_allclose(jax.jit(jax.grad(loss(attention)))(x),
                             jax.jit(jax.grad(loss(one_block)))(x), atol=1e-5)


def test_cached_step_jit_equals_no_jit():
  model, params, _, step = setup(positions="rope")
  tokens = random_tokens(3, 6)
  eager = decoding.make_tokens_to_logits(model, params)
  cache_jit = cache_eager = decoding.init_cache(model, BATCH)
  for start, stop in [(0, 4), (4, 5), (5, 6)]:
    logits_jit, cache_jit = step(tokens[:, start:stop], cache_jit)
    logits_eager, cache_eager = eager(tokens[:, start:stop], cache_eager)
    np.testing.assert_allclose(logits_jit, logits_eager, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), cache_jit, cache_eager)


def test_rope_logits_are_invariant_to_a_position_offset():
  # Rotary attention scores depend on relative positions only.
  _, params, full, _ = setup(positions="rope")
  model = make_model(positions="rope")
  tokens = random_tokens(4, 8)
  with_ids = jax.jit(lambda model, params, ids: model.apply({"params": params}, tokens,
                                                          position_ids=ids), static_argnums=0)
  shifted = with_ids(model, params, jnp.arange(8)[None] + 4)
  np.testing.assert_allclose(shifted, full(params, tokens), atol=1e-5)
  learned_model, learned_params, learned_full, _ = setup(positions="learned")
  explicit = with_ids(learned_model, learned_params,
                      jnp.broadcast_to(jnp.arange(8), (BATCH, 8)))
  np.testing.assert_allclose(explicit, learned_full(learned_params, tokens), atol=1e-6)
  moved = with_ids(learned_model, learned_params, jnp.arange(8)[None] + 4)
  assert np.abs(moved - explicit).max() > 1e-3


def test_parameter_shapes_and_tying():
  _, untied, _, _ = setup(positions="learned")
  _, tied, _, _ = setup(positions="learned", tie_embeddings=True)
  count = lambda params: sum(x.size for x in jax.tree.leaves(params))
  assert count(untied) - count(tied) == 32 * VOCAB + VOCAB  # the Dense kernel and bias
  block = untied["decoder"]["block_0"]
  assert block["attention"]["qkv"]["kernel"].shape == (32, 96)  # fused QKV projection
  assert untied["decoder"]["pos_embedding"].shape == (MAX_LEN, 32)
  _, rope, _, _ = setup(positions="rope")
  assert "pos_embedding" not in rope["decoder"]


def test_dropout_only_when_not_deterministic():
  model = make_model(dropout_rate=0.5)
  _, params, full, _ = setup(positions="learned")
  tokens = random_tokens(5)
  apply = jax.jit(lambda rng, deterministic: model.apply(
      {"params": params}, tokens, deterministic=deterministic, rngs={"dropout": rng}),
                  static_argnums=1)
  np.testing.assert_allclose(apply(jax.random.key(0), True), full(params, tokens), atol=1e-6)
  noisy = [apply(jax.random.key(i), False) for i in range(2)]
  assert np.abs(noisy[0] - noisy[1]).max() > 1e-3


def test_bfloat16_computation_returns_float32_logits():
  model = make_model(positions="rope", dtype=jnp.bfloat16)
  _, params, full, _ = setup(positions="rope")
  tokens = random_tokens(6)
  logits = jax.jit(model.apply)({"params": params}, tokens)
  assert logits.dtype == jnp.float32 and logits.shape == (BATCH, MAX_LEN, VOCAB)
  np.testing.assert_allclose(logits, full(params, tokens), atol=0.1)


def test_decoder_stack_takes_embedded_inputs():
  stack = DecoderStack(num_layers=1, num_heads=2, d_ff=16, max_len=6, positions="rope")
  x = jax.random.normal(jax.random.key(0), (2, 6, 8))
  params = jax.jit(stack.init)(jax.random.key(1), x)
  apply = jax.jit(stack.apply)
  hidden = apply(params, x)
  assert hidden.shape == (2, 6, 8)
  np.testing.assert_allclose(apply(params, x.at[:, 4:].set(0.0))[:, :4], hidden[:, :4],
                             atol=1e-6)


@pytest.mark.parametrize("overrides,message", [
    (dict(positions="sinusoidal"), "positions"),
    (dict(norm="batch"), "norm"),
    (dict(num_heads=5), "divisible"),
    (dict(positions="rope", num_heads=32), "even head_dim"),
])
def test_bad_configs_are_refused(overrides, message):
  with pytest.raises(ValueError, match=message):
    make_model(**overrides).init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))


def test_too_long_inputs_are_refused():
  model = make_model()
  with pytest.raises(ValueError, match="exceeds max_len"):
    model.init(jax.random.key(0), jnp.zeros((1, MAX_LEN + 1), jnp.int32))
  with pytest.raises(ValueError, match="max_len"):
    model.init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32), decode=True)
