"""The frozen captioner: an image encoder trained through a frozen byte language model. The
language model never changes, the prefix path is the language model's own teacher forcing, the
cached decoding equals recomputed full passes, caption accuracy is exact matching, and bad
settings are refused with the key to change."""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.errors import SettingError
from gen_jax.methods import frozen_captioner
from gen_jax.methods.frozen_captioner import FrozenCaptioner, exact_match
from gen_jax.train import config as config_lib
from gen_jax.train import setup as setup_lib
from gen_jax.train.loop import train_and_evaluate

CONFIGS = Path(__file__).resolve().parents[2] / "experiments/configs"


def config_of(name: str, arg: str = "tiny"):
  return config_lib.load_file(f"{CONFIGS / name}.py:{arg}")


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
  """Stage 1: the tiny caption language model, trained through the loop."""
  workdir = tmp_path_factory.mktemp("caption_lm")
  train_and_evaluate(config_of("caption_lm_digits"), workdir)
  return workdir


@pytest.fixture(scope="module")
def trained(lm, tmp_path_factory):
  """Stage 2 on the frozen stage-1 run, trained through the loop: (workdir, result)."""
  workdir = tmp_path_factory.mktemp("captioner")
  config = config_of("frozen_captioner_digits")
  config.frozen.lm = str(lm)
  config.optim.warmup_steps = 0  # so that the encoder moves
  return workdir, train_and_evaluate(config, workdir)


def captioner_config(lm, **model):
  config = config_of("frozen_captioner_digits")
  config.frozen.lm = str(lm)
  config.model.update(**model)
  return config


def digits_batch(setup, n=6):
  """A batch of n preprocessed training digits (images in [-1, 1], name captions)."""
  batch = next(setup_lib.load_data(setup.config, "train", train=True))
  return {k: v[:n] for k, v in batch.items()}


def test_both_stages_train_through_the_loop_and_the_language_model_stays_bitwise(lm, trained):
  workdir, result = trained
  assert int(result.state.step) == 3 and result.traces == 1
  assert set(result.eval_metrics) == {"bits_per_byte", "accuracy", "beam_accuracy"}
  assert all(np.isfinite(v) for v in result.eval_metrics.values())
  assert 0.0 <= result.eval_metrics["accuracy"] <= 1.0
  assert sorted(p.suffix for p in result.samples) == [".png", ".txt"]
  # The language model's parameters after stage 2, in memory and in stage 2's own checkpoint,
  # are bitwise those stage 1 saved.
  _, _, lm_state = setup_lib.load_checkpoint(lm)
  saved = lm_state.variables()["params"]
  _, _, captioner_state = setup_lib.load_checkpoint(workdir)
  for got in (result.state.model_state["frozen"]["lm"]["params"],
              captioner_state.model_state["frozen"]["lm"]["params"]):
    flat_got, flat_saved = jax.tree.leaves_with_path(got), jax.tree.leaves_with_path(saved)
    assert [p for p, _ in flat_got] == [p for p, _ in flat_saved]
    for (_, a), (_, b) in zip(flat_got, flat_saved):
      assert np.asarray(a).dtype == np.asarray(b).dtype
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # ... while the encoder trained.
  initial = setup_lib.make_setup(captioner_config(lm)).init_state()
  moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
                       initial.params["encoder"], result.state.params["encoder"])
  assert max(jax.tree.leaves(moved)) > 0


class _GivenPrefix(FrozenCaptioner):
  """The captioner with its encoder replaced by the identity: the "parameters" are the prefix."""

  def prefix(self, params, images):
    return params


def test_a_prefix_of_token_embeddings_gives_the_language_models_own_teacher_forced_loss(lm):
  setup = setup_lib.make_setup(config_lib.resolve(captioner_config(lm, prefix_length=3)))
  method, part = setup.method, setup.frozen["lm"]
  batch = digits_batch(setup)
  state = method.init(jax.random.key(0), batch)["model_state"]
  given = _GivenPrefix(**{f.name: getattr(method, f.name) for f in dataclasses.fields(method)})
  # Three arbitrary bytes, fed as their embeddings through the prefix path...
  words = jax.random.randint(jax.random.key(1), (6, 3), 1, 256, jnp.int32)
  embedding = part.variables["params"]["model"]["embed"]["embedding"]
  sums, counts = given.token_losses(embedding[words], state, batch)
  # ... and as tokens before the caption, through the language model method's own evaluation,
  # scoring the caption's bytes after its start byte.
  caption, mask = batch["name_caption"], batch["name_caption_mask"]
  tokens = jnp.concatenate([words, caption], axis=1)
  weights = jnp.concatenate([jnp.zeros((6, 4)), mask[:, 1:]], axis=1)
  want_sums, want_counts = part.method.evaluate(
      part.variables, {"name_caption": tokens, "name_caption_mask": weights},
      jax.random.key(2))["bits_per_token"]
  np.testing.assert_allclose(np.asarray(sums) / np.log(2), want_sums, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(counts, want_counts)
  np.testing.assert_array_equal(counts, mask[:, 1:].sum(1))


def test_cached_greedy_captions_equal_argmax_of_full_passes_and_accuracy_counts_them(trained):
  workdir, _ = trained
  _, method, state = setup_lib.load_checkpoint(workdir)
  setup = setup_lib.load_run(workdir).setup
  batch = digits_batch(setup)
  variables = state.variables()
  images, caption = batch["image"], batch["name_caption"]
  caption_fn = jax.jit(lambda v, x, c: method.caption(v, x, c[:, :1], max_new_tokens=11))
  got = np.asarray(caption_fn(variables, images, caption))
  # Oracle: one full (uncached) pass of prefix + start + the tokens so far per step, argmax of
  # the last input's logits. The inputs are padded to one length (causal: the padding after
  # input t changes nothing before it), so the pass compiles once.
  prefix = method.prefix(variables["params"]["encoder"], images)
  full_pass = jax.jit(lambda tokens: method.lm.apply(
      {"params": method.lm_params(variables["model_state"])}, tokens, prefix_embeddings=prefix))
  tokens = np.zeros((len(images), 12), np.int32)
  tokens[:, 0] = caption[:, 0]
  done = np.zeros(len(tokens), bool)
  for t in range(11):
    logits = np.asarray(full_pass(jnp.asarray(tokens)))[:, method.prefix_length + t]
    tokens[:, t + 1] = np.where(done, 0, np.argmax(logits, -1))
    done |= tokens[:, t + 1] == method.eos_id
  want = tokens[:, 1:]
  np.testing.assert_array_equal(got, want)
  metrics = jax.jit(method.evaluate)(variables, batch, jax.random.key(0))
  np.testing.assert_array_equal(metrics["accuracy"],
                                exact_match(jnp.asarray(want), caption, batch["name_caption_mask"]))


def test_exact_match_on_hand_made_captions():
  start, end = 10, 10
  text = [start, *b"a two", end, 0, 0]  # "\na two\n" and padding
  captions = jnp.array([text] * 5, jnp.int32)
  mask = jnp.array([[1] * 7 + [0] * 2] * 5, jnp.float32)
  decoded = jnp.array([
      [*b"a two", end, 0, 0],  # the caption, then the decoder's padding: right
      [*b"a tWo", end, 0, 0],  # one byte wrong
      [*b"a two", 0, 0, 0],  # stopped without its end byte
      [*b"a two", 32, end, 0],  # a byte too many
      [*b"a two", end, 0, 7],  # a byte after the end (a decoder pads there)
  ], jnp.int32)
  np.testing.assert_array_equal(exact_match(decoded, captions, mask), [1, 0, 0, 0, 0])
  with pytest.raises(ValueError, match=r"decoded must be \[batch, L - 1\] = \(5, 8\)"):
    exact_match(decoded[:, :7], captions, mask)


def test_bad_settings_are_refused_naming_what_to_change(lm):
  setup = setup_lib.make_setup(config_lib.resolve(captioner_config(lm)))
  part, spec = setup.frozen["lm"], setup.spec
  config = config_lib.resolve(captioner_config(lm))
  # A frozen part of another method.
  other = dataclasses.replace(part, config=part.config.copy_and_resolve_references())
  other.config.unlock()
  other.config.method = "classifier"
  with pytest.raises(SettingError, match=r"config.frozen.lm = .* is a 'classifier' run: name "
                                         r"the workdir of a trained autoregressive run"):
    frozen_captioner.from_config(config, spec, {"lm": other})
  # A language model that never ends its captions.
  endless = dataclasses.replace(part, config=part.config.copy_and_resolve_references())
  endless.config.unlock()
  endless.config.model.eos_id = None
  with pytest.raises(SettingError, match="no model.eos_id"):
    frozen_captioner.from_config(config, spec, {"lm": endless})
  # Prefix length 0: refused by the schema and by the method.
  with pytest.raises(config_lib.ConfigError, match="prefix_length"):
    config_lib.resolve(captioner_config(lm, prefix_length=0))
  zero = captioner_config(lm)
  zero.model.prefix_length = 0
  with pytest.raises(SettingError, match="set it to 1 or more"):
    frozen_captioner.from_config(zero, spec, {"lm": part})
  # Captions that with the prefix overflow the language model's max_len (32 in the tiny LM).
  long_prefix = captioner_config(lm, prefix_length=25)
  method = frozen_captioner.from_config(long_prefix, spec, {"lm": part})
  batch = digits_batch(setup)
  with pytest.raises(SettingError, match=r"model.prefix_length=25 image embeddings and captions "
                                         r"of 12 bytes feed 36 inputs to a language model of "
                                         r"max_len=32: lower model.prefix_length to at most 21"):
    method.init(jax.random.key(0), batch)
  # Integer images, and a batch without captions.
  with pytest.raises(SettingError, match="scale_to_unit"):
    setup.method.init(jax.random.key(0), {**batch, "image": np.zeros((6, 8, 8, 1), np.uint8)})
  no_captions = {k: v for k, v in batch.items() if k != "name_caption"}
  with pytest.raises(KeyError, match="config.model.caption_key.*digit_name_captions"):
    setup.method.init(jax.random.key(0), no_captions)
  # A caption key the data do not have is refused before anything is built.
  unknown = captioner_config(lm, caption_key="caption_bytes")
  with pytest.raises(config_lib.ConfigError, match="config.model.caption_key must be a key"):
    config_lib.resolve(unknown)
