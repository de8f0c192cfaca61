"""Tests of the causal transformer: causality, cached decoding against full passes, positions."""

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from gen_jax.errors import SettingError
from gen_jax.nn.transformer import (CausalSelfAttention, DecoderStack, Transformer,
                                    TransformerConfig, apply_rope, rope_tables)
from gen_jax.sampling import decoding

VOCAB, MAX_LEN, BATCH = 13, 12, 3


def make_model(dtype=jnp.float32, **overrides):
  config = dict(vocab_size=VOCAB, num_layers=2, num_heads=4, d_model=32, d_ff=64,
                max_len=MAX_LEN, positions="learned", tie_embeddings=False)
  config.update(overrides)
  return TransformerConfig(**config).make(dtype=dtype)


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
           dict(positions="learned", tie_embeddings=True),
           dict(positions="learned", norm="rms", norm_params=False, activation="squared_relu"),
           dict(positions="rope", rope_fraction=0.5)]


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


@pytest.mark.parametrize("rope_fraction", [1.0, 0.5])
def test_rope_logits_are_invariant_to_a_position_offset(rope_fraction):
  # Rotary attention scores depend on relative positions only (the unrotated channels of a
  # partial rotation on none).
  _, params, full, _ = setup(positions="rope", rope_fraction=rope_fraction)
  model = make_model(positions="rope", rope_fraction=rope_fraction)
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


def test_partial_rope_rotates_only_the_first_channels():
  x = jax.random.normal(jax.random.key(0), (2, 5, 3, 8))
  ids = jnp.arange(5)[None] + 7
  partial = apply_rope(x, *rope_tables(ids, 4))
  np.testing.assert_array_equal(partial[..., 4:], x[..., 4:])
  np.testing.assert_allclose(partial[..., :4], apply_rope(x[..., :4], *rope_tables(ids, 4)),
                             atol=1e-6)
  # Rotations keep each channel pair's norm and change its direction.
  pair_norm = lambda y: jnp.hypot(y[..., :2], y[..., 2:4])
  np.testing.assert_allclose(pair_norm(partial), pair_norm(x), rtol=1e-5)
  assert np.abs(partial[..., :4] - x[..., :4]).max() > 0.1


@pytest.mark.parametrize("positions,rope_fraction", [("rope", 1.0), ("rope", 0.5),
                                                     ("learned", 1.0)])
def test_learns_to_copy_a_sequence_from_the_far_end_of_the_window(positions, rope_fraction):
  # Oracle: the second half of [0, x, x] (x: 48 random tokens of 15) is predictable only by
  # attending exactly 48 positions back; chance is ln(15) = 2.7 nats. A working attention and
  # position scheme gets there in ~100 Adam steps (rope and learned alike, seen at 0.005 nats).
  half, vocab = 48, 16
  model = TransformerConfig(vocab_size=vocab, num_layers=2, num_heads=2, d_model=32, d_ff=64,
                            max_len=2 * half, positions=positions,
                            rope_fraction=rope_fraction).make()
  params = model.init(jax.random.key(0), jnp.zeros((1, 2 * half), jnp.int32))["params"]
  optimizer = optax.adam(1e-2)

  def copy_loss(params, tokens):
    logits = model.apply({"params": params}, tokens[:, :-1])
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:])
    return nll[:, half:].mean()

  @jax.jit
  def step(params, opt_state, seed):
    x = jax.random.randint(jax.random.key(seed), (16, half), 1, vocab)
    tokens = jnp.concatenate([jnp.zeros((16, 1), jnp.int32), x, x], axis=1)
    loss, grads = jax.value_and_grad(copy_loss)(params, tokens)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, loss

  opt_state, losses = optimizer.init(params), []
  for seed in range(150):
    params, opt_state, loss = step(params, opt_state, seed)
    losses.append(float(loss))
  assert losses[0] > 2.0
  assert np.mean(losses[-10:]) < 0.05, losses[-10:]


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


@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_block_norm_params_fold_into_the_next_dense_layer(norm):
  # Oracle: a block's norm, with scale s and bias c, feeds a Dense layer (W, b), and
  # (x_hat * s + c) @ W + b = x_hat @ (s[:, None] * W) + (c @ W + b). So the model without the
  # blocks' norm parameters, given the folded Dense weights, computes the same logits.
  _, params, full, _ = setup(positions="learned", norm=norm)
  rng = np.random.default_rng(0)
  with_norms = jax.tree.map(np.array, params)  # copies: setup's parameters are cached
  folded = jax.tree.map(np.array, params)
  for layer in range(2):
    block, folded_block = with_norms["decoder"][f"block_{layer}"], folded["decoder"][
        f"block_{layer}"]
    for norm_name, dense_path in (("attention_norm", ("attention", "qkv")),
                                  ("mlp_norm", ("mlp_in",))):
      scale = rng.uniform(0.5, 1.5, size=32).astype(np.float32)
      block[norm_name]["scale"] = scale
      bias = np.zeros(32, np.float32)
      if norm == "layer":
        bias = block[norm_name]["bias"] = rng.normal(size=32).astype(np.float32)
      del folded_block[norm_name]
      dense = functools.reduce(dict.__getitem__, dense_path, folded_block)
      dense["bias"] = dense["bias"] + bias @ dense["kernel"]
      dense["kernel"] = scale[:, None] * dense["kernel"]
  model = make_model(positions="learned", norm=norm, norm_params=False)
  tokens = random_tokens(4)
  without = jax.jit(model.apply)({"params": folded}, tokens)
  np.testing.assert_allclose(without, full(with_norms, tokens), atol=1e-4)
  # The random scales matter: the same weights unfolded give different logits.
  assert np.abs(without - full(params, tokens)).max() > 1e-2


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
  stack = TransformerConfig(vocab_size=1, num_layers=1, num_heads=2, d_model=8, d_ff=16,
                            max_len=6, positions="rope").decoder_stack()
  x = jax.random.normal(jax.random.key(0), (2, 6, 8))
  params = jax.jit(stack.init)(jax.random.key(1), x)
  apply = jax.jit(stack.apply)
  hidden = apply(params, x)
  assert hidden.shape == (2, 6, 8)
  np.testing.assert_allclose(apply(params, x.at[:, 4:].set(0.0))[:, :4], hidden[:, :4],
                             atol=1e-6)


@pytest.mark.parametrize("overrides,message", [
    (dict(positions="sinusoidal"), r"model.positions must be one of \('learned', 'rope', "
                                   r"'none'\), got 'sinusoidal'"),
    (dict(norm="batch"), r"model.norm must be one of \('layer', 'rms'\), got 'batch'"),
    (dict(activation="swish"), r"model.activation must be one of \('gelu', 'relu', "
                               r"'squared_relu'\), got 'swish'"),
    (dict(positions="rope", rope_fraction=0.0), r"model.rope_fraction must be in \(0, 1\]"),
    (dict(num_heads=5), "model.d_model=32 is not divisible by model.num_heads=5"),
    (dict(positions="rope", num_heads=32), "even head_dim; .* 32 / 32 = 1"),
])
def test_bad_configs_are_refused_as_settings(overrides, message):
  # Each comes from a config key: a SettingError, which experiments/main.py prints in one line.
  with pytest.raises(SettingError, match=message):
    make_model(**overrides).init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))


def test_too_long_inputs_are_refused_as_the_callers_error():
  # The caller's input shape, not a setting: a plain ValueError, so main.py shows the traceback
  # of the code that passed it.
  model = make_model()
  with pytest.raises(ValueError, match="exceeds max_len") as error:
    model.init(jax.random.key(0), jnp.zeros((1, MAX_LEN + 1), jnp.int32))
  assert not isinstance(error.value, SettingError)
  with pytest.raises(ValueError, match="max_len") as error:
    model.init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32), decode=True)
  assert not isinstance(error.value, SettingError)


def _hyperparameters(module_cls, exclude=("parent", "name", "dtype", "param_dtype")):
  return {f.name: f.default for f in dataclasses.fields(module_cls) if f.name not in exclude}


def test_config_struct_lists_the_transformer_attributes():
  # The module keeps its keyword attributes (callers build it directly too); the struct must
  # name exactly those, with the same defaults, so that make() and `config` are inverses.
  assert _hyperparameters(Transformer) == _hyperparameters(TransformerConfig, ())
  stack = _hyperparameters(DecoderStack)
  shared = {k: v for k, v in _hyperparameters(TransformerConfig, ()).items() if k in stack}
  # What the stack has beyond the struct (rope_base) keeps its default.
  assert set(stack) - set(shared) == {"rope_base"}
  config = TransformerConfig(vocab_size=VOCAB, num_layers=3, num_heads=2, d_model=8, d_ff=24,
                             max_len=7, dropout_rate=0.25, positions="rope", norm="rms",
                             tie_embeddings=False, rope_fraction=0.5, norm_params=False,
                             activation="relu")
  model = config.make(dtype=jnp.bfloat16)
  assert model.config == config and model.dtype == jnp.bfloat16
  assert {k: getattr(model, k) for k in shared} == {k: getattr(config, k) for k in shared}
  built = config.decoder_stack(rope_base=500.0)
  assert {k: getattr(built, k) for k in shared} == {k: getattr(config, k) for k in shared}
  assert built.rope_base == 500.0


def test_config_struct_round_trips_through_a_config_section():
  config = TransformerConfig(vocab_size=17, num_layers=3, d_model=48, positions="rope",
                             rope_fraction=0.25, norm="rms", norm_params=False,
                             activation="squared_relu", tie_embeddings=False)
  # A method's config.model holds the struct's keys among its own, and is saved as JSON.
  section = ml_collections.ConfigDict(dict(dataclasses.asdict(config), label_smoothing=0.1))
  assert TransformerConfig.from_config(section) == config
  assert TransformerConfig.from_config(json.loads(json.dumps(section.to_dict()))) == config
  assert TransformerConfig.from_config(dataclasses.asdict(config)).make().config == config
  del section["norm_params"]
  with pytest.raises(SettingError, match=r"lacks the transformer keys \['norm_params'\]"):
    TransformerConfig.from_config(section)


def test_parameter_paths_are_those_checkpoints_hold():
  # Checkpoints are restored by path: a model built from the struct must keep the names.
  config = TransformerConfig(vocab_size=5, num_layers=1, num_heads=2, d_model=8, d_ff=16,
                             max_len=4, tie_embeddings=False)
  shapes = jax.eval_shape(config.make().init, jax.random.key(0), jnp.zeros((1, 4), jnp.int32))
  paths = {"/".join(k.key for k in path): leaf.shape
           for path, leaf in jax.tree_util.tree_leaves_with_path(shapes["params"])}
  block = {"attention_norm/scale": (8,), "attention_norm/bias": (8,),
           "attention/qkv/kernel": (8, 24), "attention/qkv/bias": (24,),
           "attention/out/kernel": (8, 8), "attention/out/bias": (8,),
           "mlp_norm/scale": (8,), "mlp_norm/bias": (8,), "mlp_in/kernel": (8, 16),
           "mlp_in/bias": (16,), "mlp_out/kernel": (16, 8), "mlp_out/bias": (8,)}
  assert paths == {"embed/embedding": (5, 8), "decoder/pos_embedding": (4, 8),
                   **{f"decoder/block_0/{k}": v for k, v in block.items()},
                   "decoder/final_norm/scale": (8,), "decoder/final_norm/bias": (8,),
                   "logits/kernel": (8, 5), "logits/bias": (5,)}


def _prefix_model(positions):
  from gen_jax.nn.transformer import Transformer  # pylint: disable=g-import-not-at-top
  model = Transformer(vocab_size=13, num_layers=2, num_heads=2, d_model=16, d_ff=32, max_len=12,
                      positions=positions)
  params = model.init(jax.random.key(0), jnp.zeros((1, 12), jnp.int32))["params"]
  return model, params


@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_a_prefix_of_a_prompts_keys_and_values_acts_as_the_prompt(positions):
  # Oracle: the prompt itself. Its keys and values, read from the cache after a prefill, given
  # as prefix_kv (full pass) or written into an empty cache (decoding) must give the logits of
  # the prompt followed by the tokens.
  from gen_jax.nn import transformer  # pylint: disable=g-import-not-at-top
  from gen_jax.sampling import decoding  # pylint: disable=g-import-not-at-top
  model, params = _prefix_model(positions)
  prompt = jnp.array([[3, 5, 7, 2], [1, 1, 9, 4]], jnp.int32)
  tokens = jnp.array([[6, 8, 10], [12, 0, 3]], jnp.int32)
  _, variables = model.apply({"params": params, "cache": decoding.init_cache(model, 2)}, prompt,
                             decode=True, mutable=["cache"])
  blocks = [variables["cache"]["decoder"][f"block_{i}"]["attention"] for i in range(2)]
  prefix_kv = jnp.stack([jnp.stack([b["cached_key"][:, :4], b["cached_value"][:, :4]])
                         for b in blocks])  # [layers, 2, batch, P, heads, head_dim]
  want = model.apply({"params": params}, jnp.concatenate([prompt, tokens], axis=1))[:, 4:]
  got = model.apply({"params": params}, tokens, prefix_kv=prefix_kv)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  cache = transformer.write_prefix(decoding.init_cache(model, 2), prefix_kv)
  stepped, _ = model.apply({"params": params, "cache": cache}, tokens, decode=True,
                           mutable=["cache"])
  np.testing.assert_allclose(stepped, want, rtol=1e-5, atol=1e-5)
  # An empty prefix is no prefix.
  empty = prefix_kv[:, :, :, :0]
  np.testing.assert_allclose(model.apply({"params": params}, tokens, prefix_kv=empty),
                             model.apply({"params": params}, tokens), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("decode", [False, True])
def test_prefix_embeddings_act_as_the_embedded_tokens(decode):
  from gen_jax.sampling import decoding  # pylint: disable=g-import-not-at-top
  model, params = _prefix_model("rope")
  prompt = jnp.array([[3, 5, 7], [1, 9, 4]], jnp.int32)
  tokens = jnp.array([[6, 8], [12, 0]], jnp.int32)
  embedded = params["embed"]["embedding"][prompt]  # [batch, 3, d_model]
  want = model.apply({"params": params}, jnp.concatenate([prompt, tokens], axis=1))
  if decode:  # the prefix alone (no tokens) fills the cache, then the tokens follow
    _, variables = model.apply({"params": params, "cache": decoding.init_cache(model, 2)},
                               tokens[:, :0], prefix_embeddings=embedded, decode=True,
                               mutable=["cache"])
    got, _ = model.apply({"params": params, "cache": variables["cache"]}, tokens, decode=True,
                         mutable=["cache"])
    want = want[:, 3:]
  else:
    got = model.apply({"params": params}, tokens, prefix_embeddings=embedded)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_prefixes_of_the_wrong_shape_are_refused():
  from gen_jax.nn import transformer  # pylint: disable=g-import-not-at-top
  from gen_jax.sampling import decoding  # pylint: disable=g-import-not-at-top
  model, params = _prefix_model("rope")
  tokens = jnp.zeros((2, 3), jnp.int32)
  with pytest.raises(ValueError, match=r"prefix_kv must be \[num_layers=2, 2, batch or 1, P, "
                                       r"heads=2, head_dim=8\], got \(3, 2, 1, 4, 2, 8\)"):
    model.apply({"params": params}, tokens, prefix_kv=jnp.zeros((3, 2, 1, 4, 2, 8)))
  with pytest.raises(ValueError, match=r"prefix_embeddings must be \[batch=2, P, d_model=16\]"):
    model.apply({"params": params}, tokens, prefix_embeddings=jnp.zeros((2, 4, 8)))
  with pytest.raises(ValueError, match="exceeds max_len=12"):
    model.apply({"params": params}, tokens, prefix_kv=jnp.zeros((2, 2, 1, 10, 2, 8)))
  with pytest.raises(ValueError, match="without left padding"):
    transformer.write_prefix(decoding.init_cache(model, 2, [0, 1]), jnp.zeros((2, 2, 1, 4, 2, 8)))
