"""The autoregressive method: the language model end to end on the tiny corpus, its decoding
strategies against `gen_jax.sampling.decoding`, its codecs, and non-text token data."""

import functools
import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax import names
from gen_jax.errors import SettingError
from gen_jax.methods import autoregressive
from gen_jax.methods.autoregressive import (BeamSearch, BytesCodec, Greedy, IdentityCodec,
                                            Sampling)
from gen_jax.sampling import decoding
from gen_jax.train import optimizers as optimizers_lib
from gen_jax.train import step as step_lib
from gen_jax.train import config as config_lib
from gen_jax.train.loop import build_method, load_checkpoint, load_data, train_and_evaluate

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "experiments/configs/lm_python.py"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  sys.path.insert(0, str(CONFIG.parent))
  import lm_python  # pylint: disable=import-outside-toplevel
  sys.path.pop(0)
  workdir = tmp_path_factory.mktemp("lm")
  return workdir, train_and_evaluate(lm_python.get_config("tiny"), workdir)


def test_tiny_run_evaluates_and_writes_text_samples(trained):
  workdir, result = trained
  config = config_lib.resolve(tiny_config())
  method = build_method(config)
  variables = result.state.variables()
  # Oracle: -log2 p(target) under the final model, summed in float64 over every scored target
  # of the held-out split (`mask` marks a window's targets, `valid` the real windows of the
  # padded last batch), over their number.
  total = count = 0.0
  for batch in load_data(config, config.data.eval_split, train=False):
    tokens = batch[method.tokens_key]
    logits = np.asarray(method.network.apply({"params": variables["params"]["model"]},
                                             tokens[:, :-1]), np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, tokens[:, 1:, None], -1)[..., 0]
    weights = batch.get("mask", np.ones(tokens.shape))[:, 1:] * batch.get(
        "valid", np.ones(len(tokens)))[:, None]
    total, count = total + np.sum(nll * weights), count + np.sum(weights)
  assert count > 1000
  np.testing.assert_allclose(result.eval_metrics["bits_per_token"], total / count / math.log(2),
                             rtol=1e-5)
  # A model with every parameter 0 has logits 0, uniform over the 256 bytes: exactly
  # log2(256) = 8 bits for every scored byte.
  zeros = jax.tree.map(jnp.zeros_like, variables)
  eval_step = jax.jit(step_lib.make_eval_step(method))
  sums = [eval_step(zeros, batch, jax.random.key(0))["bits_per_token"]
          for batch in load_data(config, config.data.eval_split, train=False)]
  assert sum(float(c) for _, c in sums) == count
  assert sum(float(s) for s, _ in sums) / count == pytest.approx(8.0, rel=1e-6)
  text = result.samples[0].read_text()
  assert text.startswith("def ") and result.samples[0].suffix == ".txt"


def test_load_checkpoint_restores_the_final_state(trained):
  workdir, result = trained
  config, method, state = load_checkpoint(workdir)
  assert config.method == "autoregressive"
  for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(result.state)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  tokens = method.sample(state.variables(), jax.random.PRNGKey(0), 3)
  # The method rebuilt from the checkpoint samples exactly as the run's own (built from the
  # config file): the same prompt, length and decoder settings, from the same parameters.
  run_method = build_method(config_lib.resolve(tiny_config()))
  np.testing.assert_array_equal(
      tokens, run_method.sample(result.state.variables(), jax.random.PRNGKey(0), 3))
  assert tokens.shape == (3, len("def ") + 8)  # tiny: model.sample_length = 8
  np.testing.assert_array_equal(np.asarray(tokens)[:, :4], [list(b"def ")] * 3)


def test_prompt_and_new_tokens_beyond_the_cache_are_refused_and_the_bound_is_exact(trained):
  # P prompt tokens and N new ones feed P + N - 1 tokens to the cache (the last is not fed).
  workdir, _ = trained
  _, method, state = load_checkpoint(workdir)
  prompt = np.zeros((1, method.network.max_len), np.int32)
  with pytest.raises(ValueError, match="A prompt of 32 tokens and max_new_tokens=2 feed 33 "
                                       "tokens to a cache of max_len=32: lower max_new_tokens "
                                       "to 1"):
    method.generate(state.variables(), jax.random.PRNGKey(0), prompt, max_new_tokens=2)
  out = method.generate(state.variables(), jax.random.PRNGKey(0), prompt, max_new_tokens=1)
  assert out.shape == (1, 1)


@pytest.mark.parametrize("decode", ["beam", "sample", "greedy"])
def test_sample_script_prints_continuations_of_the_prompt(trained, decode):
  workdir, _ = trained
  out = subprocess.run(
      [sys.executable, str(ROOT / "experiments/sample.py"), f"--workdir={workdir}",
       "--prompt=import ", "--length=5", f"--decode={decode}",
       *{"beam": ["--beam_size=3"], "sample": ["--num=2"], "greedy": []}[decode]],
      capture_output=True, text=True, timeout=300, env=dict(os.environ))
  assert out.returncode == 0, out.stderr[-2000:]
  blocks = [b for b in out.stdout.split("=== ") if b.strip()]
  assert len(blocks) == {"beam": 3, "sample": 2, "greedy": 1}[decode]
  assert all(b.split("\n", 1)[1].startswith("import ") for b in blocks)


def tiny_config(**model):
  """lm_python's tiny variant (a random-init model is enough here) with `model` overrides."""
  spec = importlib.util.spec_from_file_location("lm_python_config", CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("tiny")
  config.model.update(model)
  return config


@functools.lru_cache(maxsize=None)
def tiny_method(**model):
  method = autoregressive.from_config(tiny_config(**model))
  tokens = np.zeros((1, 9), np.int32)
  return method, method.init(jax.random.key(0), {method.tokens_key: tokens})


# Each decoder and the call of gen_jax.sampling.decoding it must equal, settings written out.
DECODERS = {
    "greedy": (Greedy(), lambda f, p, c, r, n: decoding.greedy(
        f, p, c, max_new_tokens=n).sequences),
    "greedy_eos": (Greedy(eos_id=32), lambda f, p, c, r, n: decoding.greedy(
        f, p, c, max_new_tokens=n, eos_id=32).sequences),
    "sampling": (Sampling(temperature=0.7, top_k=20, top_p=0.9),
                 lambda f, p, c, r, n: decoding.sample(f, p, c, r, max_new_tokens=n,
                                                       temperature=0.7, top_k=20,
                                                       top_p=0.9).sequences),
    "sampling_eos": (Sampling(temperature=1.5, eos_id=101), lambda f, p, c, r, n: decoding.sample(
        f, p, c, r, max_new_tokens=n, temperature=1.5, eos_id=101).sequences),
    "beam_search": (BeamSearch(beam_size=3, length_penalty=0.6, eos_id=32),
                    lambda f, p, c, r, n: decoding.beam_search(
                        f, p, c, beam_size=3, max_new_tokens=n, eos_id=32,
                        length_penalty=0.6).sequences[:, 0]),
}


@pytest.mark.parametrize("name", DECODERS)
def test_decoders_give_the_tokens_of_the_decoding_functions(name):
  decoder, direct = DECODERS[name]
  method, variables = tiny_method()
  prompt = jnp.array([[100, 101, 102], [10, 32, 32]], jnp.int32)

  def both(variables, rng):
    ours = method.generate(variables, rng, prompt, max_new_tokens=6, decoder=decoder)
    params = variables["params"][autoregressive.PLAYER]
    return ours, direct(decoding.make_tokens_to_logits(method.network, params), prompt,
                        decoding.init_cache(method.network, 2), rng, 6)

  ours, expected = jax.jit(both)(variables, jax.random.key(7))
  assert ours.shape == (2, 6) and ours.dtype == jnp.int32
  np.testing.assert_array_equal(ours, expected)


def test_sample_uses_the_configured_decoder():
  method, variables = tiny_method(decoder="beam_search", beam_size=2, sample_length=5)
  assert method.decoder == BeamSearch(beam_size=2)
  prompt = jnp.tile(jnp.array([tuple(b"def ")], jnp.int32), (3, 1))

  def both(variables):
    best = decoding.beam_search(
        decoding.make_tokens_to_logits(method.network, variables["params"][autoregressive.PLAYER]),
        prompt, decoding.init_cache(method.network, 3), beam_size=2, max_new_tokens=5,
        eos_id=None).sequences[:, 0]
    return method.sample(variables, jax.random.key(0), 3), best

  samples, best = jax.jit(both)(variables)
  np.testing.assert_array_equal(samples, np.concatenate([prompt, best], axis=1))


@pytest.mark.parametrize("settings,expected", [
    (dict(decoder="greedy"), Greedy()),
    (dict(decoder="greedy", eos_id=10), Greedy(eos_id=10)),
    (dict(decoder="sampling", temperature=0.5, top_k=7, top_p=0.8),
     Sampling(temperature=0.5, top_k=7, top_p=0.8)),
    (dict(decoder="beam_search", beam_size=5, length_penalty=0.6, eos_id=0),
     BeamSearch(beam_size=5, length_penalty=0.6, eos_id=0)),
])
def test_the_config_names_the_decoder_and_its_settings(settings, expected):
  assert autoregressive.from_config(tiny_config(**settings)).decoder == expected


def test_an_unknown_decoder_is_refused_with_the_choices():
  with pytest.raises(names.UnknownNameError, match="beam_search, greedy, sampling"):
    autoregressive.from_config(tiny_config(decoder="beam"))


def test_byte_codec_round_trips_utf8_text():
  codec = BytesCodec()
  assert codec.encode("d\u00e9f\n") == (100, 0xC3, 0xA9, 102, 10)
  for text in ("def f(x):\n  return x", "\u00e9\u00e8", "\U0001F600 ", ""):
    assert codec.decode(codec.encode(text)) == text
  # Ids that are no byte, and broken UTF-8, show as the replacement character.
  assert codec.decode([104, 300, 105, 0xC3]) == "h\ufffdi\ufffd"


def test_identity_codec_reads_and_writes_ids():
  codec = IdentityCodec()
  assert codec.encode("3, 1 4\n15") == (3, 1, 4, 15)
  assert codec.encode(codec.decode((0, 15, 7))) == (0, 15, 7)
  assert codec.decode(np.array([2, 0])) == "2 0"
  with pytest.raises(ValueError, match="non-negative integers"):
    codec.encode("3 x")


@pytest.mark.parametrize("settings,message", [
    (dict(codec="identity", sample_prompt=" "), "gives no token ids"),
    (dict(vocab_size=100, sample_prompt="def "), r"ids \[100, 101, 102\] .*model.vocab_size=100"),
    (dict(codec="identity", vocab_size=16, sample_prompt="3 16 99"), r"ids \[16, 99\]"),
    (dict(sample_length=30), r"plus model.sample_length=30 needs 33 positions, which exceeds "
                             r"model.max_len=32"),
])
def test_a_prompt_the_model_cannot_decode_is_refused_by_from_config(settings, message):
  # Refused when the method is built, not when the loop first samples at the end of a run; a
  # SettingError, which experiments/main.py prints in one line.
  with pytest.raises(SettingError, match=message):
    autoregressive.from_config(tiny_config(**settings))


def test_a_sample_prompt_the_codec_cannot_read_is_a_setting_error():
  with pytest.raises(SettingError, match="model.sample_prompt: The identity codec reads token "
                                         "ids as non-negative integers"):
    autoregressive.from_config(tiny_config(codec="identity", sample_prompt="3 x"))


@pytest.mark.parametrize("call", ["generate", "beam_search"])
def test_prompt_ids_outside_the_vocabulary_are_refused_before_decoding(call):
  # vocab_size 256: ids 256 and -1 do not exist. The method names them (the caller's argument:
  # a ValueError, not a SettingError) before the decoders trace the model, also when the
  # prompt is closed over by a jitted function, as experiments/sample.py does.
  method, variables = tiny_method()
  run = {
      "generate": lambda prompt: method.generate(variables, jax.random.key(0), prompt,
                                                 max_new_tokens=2, decoder=Greedy()),
      "beam_search": lambda prompt: method.beam_search(variables, prompt, max_new_tokens=2,
                                                       beam_size=2).sequences,
  }[call]
  cases = [
      (np.array([[1, 256], [300, 2]], np.int32), r"The prompt holds the token ids \[256, 300\]"),
      ([[5, -1, 7], [4]], r"Prompt 0 holds the token ids \[-1\]"),
  ]
  for prompt, message in cases:
    with pytest.raises(ValueError, match=message + r", outside the model's vocabulary "
                                       r"\[0, 256\) \(model.vocab_size=256\)") as error:
      jax.jit(lambda: run(prompt))()
    assert not isinstance(error.value, SettingError)
  assert run([[5, 255, 7], [0]]).shape[-1] == 2  # the edges of the vocabulary are ids


@pytest.mark.parametrize("call", ["generate", "beam_search"])
@pytest.mark.parametrize("prompt, message", [
    # A float id would be cast to int32 and truncated (1.7 decoded as 1): refused, even whole.
    ([[1, 2], [1.7]], r"Prompt 1 is not token ids: got dtype float64 \(\[1.7\]\)"),
    (np.array([[1.5, 2.0]]), r"The prompt is not token ids: got dtype float64"),
    (np.array([[1.0, 2.0]], np.float32), r"The prompt is not token ids: got dtype float32"),
    (np.array([[True, False]]), r"The prompt is not token ids: got dtype bool"),
    # Text is the codec's to encode (numpy would otherwise fail comparing it with ints).
    ("def ", r"The prompt is not token ids: got dtype <U4 \('def '\)"),
    (["def ", "im"], r"Prompt 0 is not token ids: got dtype <U4"),
    ([b"def "], r"Prompt 0 is not token ids: got dtype \|S4"),
])
def test_a_prompt_that_is_not_integer_ids_is_refused_with_the_codec_named(call, prompt, message):
  # The oracle: only integer dtypes are token ids. Each of these would otherwise decode
  # silently wrong (a truncated id) or fail inside numpy; the message says to pass ints and
  # how to get them from text. Also when jitted with the prompt closed over, as sample.py does.
  method, variables = tiny_method()
  run = {
      "generate": lambda p: method.generate(variables, jax.random.key(0), p, max_new_tokens=2,
                                            decoder=Greedy()),
      "beam_search": lambda p: method.beam_search(variables, p, max_new_tokens=2,
                                                  beam_size=2).sequences,
  }[call]
  advice = (r"Pass token ids \(ints\); encode text with the model's codec, e.g. "
            r"method.codec.encode\(text\)")
  with pytest.raises(ValueError, match=message + r".*\. " + advice):
    jax.jit(lambda: run(prompt))()
  with pytest.raises(ValueError, match=r"The prompt is not token ids: got dtype float32\. "):
    jax.jit(run)(jnp.ones((1, 2), jnp.float32))  # traced: the dtype is still known
  assert run([[1, 2], [1]]).shape[-1] == 2  # the same prompts as ints decode


def test_integer_codes_under_their_own_key_train_one_step_and_sample_ids_in_range():
  config = tiny_config(vocab_size=16, tokens_key="codes", codec="identity", sample_prompt="5",
                       sample_length=6, decoder="sampling", temperature=1.0, top_p=1.0)
  config.optim.warmup_steps = 0  # so that the one step moves the parameters
  method = autoregressive.from_config(config)
  codes = jax.random.randint(jax.random.key(0), (4, 9), 0, 16, jnp.int32)
  batch = {"codes": codes}  # no "tokens": nothing reads a byte-text key
  optimizers = optimizers_lib.make_optimizers(config.optim, (autoregressive.PLAYER,), 1)
  state = step_lib.init_state(method, optimizers, jax.random.key(1), batch, ema_decay=0.0)
  params = state.params[autoregressive.PLAYER]
  new_state, metrics = jax.jit(step_lib.make_train_step(method, optimizers))(state, batch)
  # Oracle: the mean next-code cross-entropy of the initial model, in float64, in bits.
  logits = np.asarray(method.network.apply({"params": params}, codes[:, :-1]), np.float64)
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(log_probs, np.asarray(codes[:, 1:, None]), -1)
  np.testing.assert_allclose(metrics["model/bits_per_token"], nll.mean() / math.log(2),
                             rtol=1e-5)
  assert int(new_state.step) == 1
  assert not np.allclose(new_state.params[autoregressive.PLAYER]["embed"]["embedding"],
                         params["embed"]["embedding"])
  samples = np.asarray(jax.jit(lambda v: method.sample(v, jax.random.key(2), 3))(
      new_state.variables()))
  assert samples.shape == (3, 7) and samples.dtype == np.int32
  assert (samples[:, 0] == 5).all() and samples.min() >= 0 and samples.max() < 16
  assert len(set(samples[:, 1:].ravel().tolist())) > 1  # sampled, not a constant
  sums, counts = method.evaluate(new_state.variables(), batch, jax.random.key(3))[
      "bits_per_token"]
  np.testing.assert_array_equal(counts, [8.0] * 4)
  with pytest.raises(KeyError, match="no 'codes'.*config.model.tokens_key"):
    method.init(jax.random.key(0), {"tokens": codes})


@pytest.mark.parametrize("name", ["greedy", "sampling", "beam_search"])
def test_generate_continues_prompts_of_different_lengths_each_as_alone(name):
  decoder, _ = DECODERS[name]
  method, variables = tiny_method()
  prompts = [[100, 101, 102], [10], [32, 32]]
  keys = jax.random.split(jax.random.key(5), len(prompts))
  # Jitted, as sample.py calls it: one compile per prompt shape instead of eager op dispatch.
  generate = lambda p: jax.jit(lambda v, k: method.generate(v, k, p, max_new_tokens=4,
                                                            decoder=decoder))
  batch = generate(prompts)(variables, keys)
  for row, prompt in enumerate(prompts):
    alone = generate(np.asarray([prompt], np.int32))(variables, keys[row:row + 1])
    np.testing.assert_array_equal(batch[row], alone[0])


def test_bfloat16_compute_keeps_float32_parameters_and_matches_float32_loss():
  # Mixed precision: the same parameters give the float32 loss up to bfloat16 rounding
  # (8 mantissa bits: ~0.4% per operation), and the gradients stay float32.
  method32, variables = tiny_method()
  method16, _ = tiny_method(compute_dtype="bfloat16")
  tokens = jax.random.randint(jax.random.key(1), (4, 17), 0, 256)
  batch = {method32.tokens_key: tokens}
  params = variables["params"]
  player = autoregressive.PLAYER

  def loss(method, p):
    return method.loss({player: p}, p, batch, None, {})[0]

  loss32, grads32 = jax.jit(jax.value_and_grad(lambda p: loss(method32, p)))(params[player])
  loss16, grads16 = jax.jit(jax.value_and_grad(lambda p: loss(method16, p)))(params[player])
  assert method16.network.dtype == jnp.bfloat16
  np.testing.assert_allclose(loss16, loss32, rtol=2e-2)
  # It computes in bfloat16: every matrix product of the traced loss (XLA:CPU may upcast them
  # when it compiles, so the check reads the program, not the loss's last digits).
  for method, dtype in ((method16, jnp.bfloat16), (method32, jnp.float32)):
    jaxpr = jax.make_jaxpr(lambda p: loss(method, p))(params[player]).jaxpr
    products = {eqn.outvars[0].aval.dtype for eqn in jaxpr.eqns
                if eqn.primitive.name == "dot_general"}
    assert products == {jnp.dtype(dtype)}, products
  assert {leaf.dtype for leaf in jax.tree.leaves(grads16)} == {jnp.dtype(jnp.float32)}
  with pytest.raises(config_lib.ConfigError,
                     match=r"model.compute_dtype must be a string from: float32, bfloat16 "
                           r"\(got 'float16'\)"):
    config_lib.resolve(tiny_config(compute_dtype="float16"))
