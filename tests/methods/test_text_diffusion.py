"""Text-conditional diffusion (GLIDE-style): the empty prompt is the null condition of
classifier-free guidance, masked text never reaches the U-Net, the text path leaves the label
and unconditional U-Nets as they were, held-out examples give no gradient, a train step lowers
the loss, and bad settings and prompts are refused with what to change."""

import dataclasses
import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from gen_jax import conditioning
from gen_jax.conditioning import TextConditional, encode_text
from gen_jax.data import captions
from gen_jax.errors import SettingError
from gen_jax.methods import diffusion
from gen_jax.methods.base import DataSpec, Feature
from gen_jax.nn import text, unet
from gen_jax.train import config as config_lib
from gen_jax.train import step as step_lib

ROOT = Path(__file__).resolve().parents[2]
DIGITS = DataSpec(features={"image": Feature((8, 8, 1), "uint8"), "label": Feature((), "int32")},
                  num_levels=17, num_classes=10, name="digits")


def tiny_config(**model) -> ml_collections.ConfigDict:
  spec = importlib.util.spec_from_file_location(
      "ddpm_digits_text", ROOT / "experiments/configs/ddpm_digits_text.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("tiny")
  config.model.update(model)
  return config


def tiny(**model) -> diffusion.Diffusion:
  return diffusion.from_config(config_lib.resolve(tiny_config(**model)), DIGITS)


def text_batch(n: int = 8) -> dict:
  prompts = [captions.caption(i % 10, [("thick",), ("thin", "slanted"), ()][i % 3])
             for i in range(n)]
  return {"image": jnp.linspace(-1, 1, n * 64).reshape(n, 8, 8, 1),
          "caption": jnp.asarray(encode_text(prompts, captions.CAPTION_LEN)),
          "weight": jnp.ones((n,), jnp.float32)}


def init(method, batch):
  return jax.jit(method.init)(jax.random.PRNGKey(0), batch)


def perturbed(params):
  """`params` moved off their initial values, so that the zero-initialised heads (the U-Net's
  output, the attention blocks' output projections) pass the input and the prompt on."""
  return jax.tree.map(lambda p: p + 0.05 * jnp.sin(jnp.arange(p.size).reshape(p.shape)),
                      params)


def test_the_null_condition_is_the_empty_prompt():
  cond = TextConditional(prompts=("a thick seven", "an eight"), max_len=16, drop_prob=0.5)
  np.testing.assert_array_equal(cond.null(3), cond.encode(["", "", ""]))
  np.testing.assert_array_equal(cond.null(3), 0)
  np.testing.assert_array_equal(cond.lookup(jnp.array([1, 0])),
                                encode_text(["an eight", "a thick seven"], 16))
  np.testing.assert_array_equal(cond.blocks(4), cond.encode(["a thick seven"] * 2
                                                            + ["an eight"] * 2))
  assert cond.num_conditions == 2
  # Training drops a caption to exactly the empty prompt's tokens, one Bernoulli per example.
  batch = {"caption": cond.encode(["a thin one"] * 8)}
  rng = jax.random.PRNGKey(4)
  drop = np.asarray(jax.random.bernoulli(rng, 0.5, (8,)))
  assert 0 < drop.sum() < 8
  got = np.asarray(cond.train(batch, rng))
  np.testing.assert_array_equal(got[drop], cond.encode([""] * int(drop.sum())))
  np.testing.assert_array_equal(got[~drop], batch["caption"][~drop])


def test_text_conditional_refuses_bad_prompts_and_batches():
  with pytest.raises(ValueError, match=r"model.prompts\[1\] = 'a thick, wide, slanted seven' "
                                       r"is 28 bytes.*raise model.max_text_len"):
    TextConditional(prompts=("a seven", "a thick, wide, slanted seven"), max_len=16)
  with pytest.raises(ValueError, match=r"outside the text vocabulary"):
    TextConditional(prompts=("a séven",), max_len=16)
  with pytest.raises(ValueError, match=r"set model.prompts"):
    TextConditional(prompts=(), max_len=16)
  with pytest.raises(ValueError, match=r"set model.label_dropout"):
    TextConditional(prompts=("a one",), max_len=16, drop_prob=1.0)
  cond = TextConditional(prompts=("a one",), max_len=16)
  with pytest.raises(KeyError, match=r"no 'caption' entry.*'digit_captions'"):
    cond.eval({"image": np.zeros((2, 8, 8, 1))})
  with pytest.raises(ValueError, match=r"\[batch, 16\] \(model.max_text_len\), got shape "
                                       r"\(2, 32\)"):
    cond.eval({"caption": np.zeros((2, 32), np.int32)})


def test_config_settings_are_checked():
  with pytest.raises(ValueError, match=r"model.prompts\[0\].*raise model.max_text_len"):
    tiny(prompts=("a thick, narrow, slanted three",), max_text_len=16)
  with pytest.raises(ValueError, match=r"outside the text vocabulary.*model.text_vocab_size"):
    tiny(prompts=("a thick séven",))
  with pytest.raises(ValueError, match=r"label_key='label' and model.text_key='caption'.*clear"):
    tiny(label_key="label", num_classes=10)
  with pytest.raises(ValueError, match=r"set model.network='text_unet'"):
    tiny(network="unet")
  with pytest.raises(ValueError, match=r"set model.text_key"):
    tiny(text_key="")
  method = tiny(attention_levels=(2,))  # the tiny U-Net has levels 0 and 1
  with pytest.raises(SettingError, match=r"model.attention_levels must be levels 0 .. 1"):
    init(method, text_batch())


def test_text_attention_ignores_masked_tokens_exactly():
  block = unet.TextAttention(num_heads=2)
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 4, 8))
  text_a = jax.random.normal(jax.random.PRNGKey(1), (3, 5, 6))
  text_b = text_a.at[:, 3:].set(1e3)  # different values at the masked positions
  mask = jnp.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], bool)
  variables = block.init(jax.random.PRNGKey(2), x, text_a, mask)
  # Perturb the zero-initialised output projection so that the block is not the identity.
  variables = jax.tree.map(lambda p: p + 0.1 * jnp.cos(jnp.arange(p.size).reshape(p.shape)),
                           variables)
  apply = jax.jit(block.apply)
  out_a, out_b = apply(variables, x, text_a, mask), apply(variables, x, text_b, mask)
  np.testing.assert_array_equal(out_a, out_b)  # bitwise: masked weights are exactly 0
  assert not np.allclose(out_a, x)
  # All padding (row 2) is the image attending to itself alone: the same as no text at all.
  alone = apply(variables, x[2:], text_a[2:, :0], mask[2:, :0])
  np.testing.assert_allclose(out_a[2:], alone, atol=1e-6)
  assert np.all(np.isfinite(out_a))


def test_text_encoder_masks_padding_and_pools_the_real_tokens():
  encoder = text.TextEncoder(vocab_size=128, max_len=8, features=8, num_layers=2, num_heads=2)
  tokens = jnp.asarray(encode_text(["ab", "", "abcdefgh"], 8))
  variables = encoder.init(jax.random.PRNGKey(0), tokens)
  out = jax.jit(encoder.apply)(variables, tokens)
  np.testing.assert_array_equal(out.mask, tokens != 0)
  np.testing.assert_array_equal(out.pooled[1], 0.0)  # the empty prompt pools to zeros
  np.testing.assert_allclose(out.pooled[0], out.tokens[0, :2].mean(0), rtol=1e-6)
  # A prompt's features do not depend on how much padding follows it.
  short = jax.jit(encoder.apply)(variables, tokens[:1, :4])
  np.testing.assert_allclose(short.tokens[0, :2], out.tokens[0, :2], atol=1e-6)
  with pytest.raises(SettingError, match=r"0 .. 127 \(model.text_vocab_size\)"):
    encoder.apply(variables, jnp.array([[200, 1, 0, 0, 0, 0, 0, 0]]))
  with pytest.raises(SettingError, match=r"length <= 8"):
    encoder.apply(variables, jnp.zeros((1, 9), jnp.int32))


def test_the_label_and_unconditional_unets_are_unchanged_by_the_text_path():
  x, t = jnp.ones((2, 8, 8, 1)), jnp.array([1, 2])
  for labels, classes in ((None, None), (jnp.array([1, 10]), 10)):
    plain = unet.UNet(widths=(4, 8), emb_features=8, num_classes=classes)
    with_levels = dataclasses.replace(plain, attention_levels=(0, 1))
    a = plain.init(jax.random.PRNGKey(0), x, t, labels)
    b = with_levels.init(jax.random.PRNGKey(0), x, t, labels)
    assert jax.tree.structure(a) == jax.tree.structure(b)  # no attention without text
    np.testing.assert_array_equal(plain.apply(a, x, t, labels), with_levels.apply(a, x, t, labels))


def test_the_empty_prompt_is_the_unconditional_branch_of_guidance():
  method = tiny()
  batch = text_batch(4)
  variables = init(method, batch)
  params = perturbed(variables["params"]["denoiser"])
  variables = {"params": {"denoiser": params}, "model_state": {}}
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 1))
  t = jnp.array([3, 10, 25, 40])
  prompts = method.conditioning.encode(["a thick seven", "a thin one", "an eight", "a two"])
  empty = method.conditioning.encode([""] * 4)

  @jax.jit  # w traced: one compile serves the three scales
  def predictions(params, w):
    guided = method.denoise_fn({"params": {"denoiser": params}}, prompts, w)(x, t)
    return guided, method.denoise(params, x, t, prompts), method.denoise(params, x, t, empty)

  (w0, cond, uncond), (w1, _, _), (w3, _, _) = [predictions(params, jnp.float32(w))
                                                for w in (0.0, 1.0, 3.0)]
  np.testing.assert_array_equal(w0, uncond)  # w = 0: exactly the empty prompt's prediction
  np.testing.assert_array_equal(w1, cond)
  np.testing.assert_allclose(w3, uncond + 3 * (cond - uncond), rtol=1e-5, atol=1e-5)
  assert not np.allclose(cond, uncond, atol=1e-4)  # the prompt matters
  # The evaluation's unconditional loss is the empty prompt's too.
  metrics = jax.jit(method.evaluate)(variables, batch, jax.random.PRNGKey(2))
  want, with_prompts = jax.jit(lambda: [
      method.per_example_loss(params, method.data(batch), c, jax.random.PRNGKey(2))[0]
      for c in (empty, batch["caption"])])()
  # Two separately compiled programs may sum in another order (1 ulp apart on jax 0.12), so
  # the match is to float32 rounding; the batch's own captions give losses over 1e-4 away.
  np.testing.assert_allclose(metrics["uncond_loss"], want, rtol=1e-6, atol=0)
  assert np.min(np.abs(with_prompts - want) / want) > 1e-4


def test_held_out_examples_give_no_gradient():
  method = tiny()
  batch = text_batch(8)
  batch["weight"] = jnp.array([1, 0, 1, 1, 0, 1, 1, 1], jnp.float32)
  params = perturbed(init(method, batch)["params"]["denoiser"])
  rng = jax.random.PRNGKey(5)

  @jax.jit
  def loss_and_image_grad(params, image):
    return jax.value_and_grad(
        lambda im: method.loss({}, params, {**batch, "image": im}, rng, {})[0])(image)

  loss, grad_image = loss_and_image_grad(params, batch["image"])
  assert np.all(np.asarray(grad_image)[[1, 4]] == 0)  # weight 0: no influence at all
  assert np.all(np.any(np.asarray(grad_image)[[0, 2, 3, 5]] != 0, axis=(1, 2, 3)))
  # The loss is the mean over the kept examples of the per-example loss at the same draws.
  caption_rng, loss_rng = jax.random.split(rng)
  captions_in = method.conditioning.train(batch, caption_rng)
  per_example = jax.jit(lambda: method.per_example_loss(
      params, method.data(batch), captions_in, loss_rng, train=True)[0])()
  np.testing.assert_allclose(loss, np.mean(np.asarray(per_example)[batch["weight"] == 1]),
                             rtol=1e-6)


def test_train_steps_lower_the_loss_on_a_tiny_batch():
  method = tiny(widths=(8, 16), emb_features=16, text_features=16)
  batch = text_batch(8)
  optimizers = {"denoiser": optax.adam(3e-3)}
  state = step_lib.init_state(method, optimizers, jax.random.PRNGKey(0), batch, ema_decay=0.0)
  step = jax.jit(step_lib.make_train_step(method, optimizers))
  params_0 = state.params["denoiser"]
  keys = jax.random.split(jax.random.PRNGKey(1), 8)  # 8 draws of t and noise per example
  eval_loss = jax.jit(lambda p: jnp.mean(jax.vmap(lambda k: method.per_example_loss(
      p, method.data(batch), batch["caption"], k)[0])(keys)))
  before = float(eval_loss(params_0))
  for _ in range(60):
    state, metrics = step(state, batch)
  after = float(eval_loss(state.params["denoiser"]))
  assert np.isfinite(metrics["denoiser/loss"])
  assert after < 0.7 * before, (before, after)
  grads_moved = [np.any(a != b) for a, b in zip(
      jax.tree.leaves(params_0["encoder"]), jax.tree.leaves(state.params["denoiser"]["encoder"]))]
  assert all(grads_moved)  # the text encoder is trained with the U-Net (nothing is frozen)


def test_samples_come_in_prompt_blocks():
  method = tiny()
  batch = text_batch(4)
  variables = init(method, batch)
  out = jax.jit(lambda v: method.sample(v, jax.random.PRNGKey(0), 20))(variables)
  assert out["samples"].shape == (20, 8, 8, 1)
  assert np.all(np.abs(np.asarray(out["samples"])) <= 1.0)
  # The default conditions are the prompts in blocks: two per prompt for the ten prompts.
  blocks = np.asarray(method.conditioning.blocks(20))
  assert conditioning.decode_text(blocks[::2]) == list(method.conditioning.prompts)
