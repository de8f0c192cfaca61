"""Prefix tuning of a frozen LM: the frozen weights never move, a prefix made of a prompt's keys
and values acts as that prompt (in training passes and through the decoding cache), an empty
prefix is the LM itself, and codes trained in earlier runs are kept."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.errors import SettingError
from gen_jax.losses import sequence
from gen_jax.methods import autoregressive as ar
from gen_jax.methods import prefix_tuning
from gen_jax.sampling import decoding
from gen_jax.train import config as config_lib
from gen_jax.train import setup as setup_lib
from gen_jax.train.loop import train_and_evaluate

CONFIGS = Path(__file__).resolve().parents[2] / "experiments/configs"


def config_of(name: str, arg: str = "tiny"):
  return config_lib.load_file(f"{CONFIGS / name}.py:{arg}")


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("lm")
  train_and_evaluate(config_of("lm_python"), workdir)
  return workdir


def prefix_setup(lm_workdir, arg="tiny", **model):
  config = config_of("prefix_tuning_python", arg)
  config.frozen.lm = str(lm_workdir)
  config.model.update(**model)
  return setup_lib.make_setup(config_lib.resolve(config))


def _batch(setup, seed=0):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(0, 256, size=(4, 29)).astype(np.int32)
  return {"tokens": tokens, "mask": np.ones_like(tokens, np.float32)}


@pytest.mark.parametrize("tune", ["prefix", "all"])
def test_the_frozen_lm_stays_bitwise_unchanged(lm, tune):
  setup = prefix_setup(lm, tune=tune)
  state = setup.init_state()
  frozen_before = jax.tree.map(np.array, state.model_state["frozen"]["lm"])
  tuned_before = jax.tree.map(np.array, state.params[prefix_tuning.PLAYER])
  # The frozen part's own variables, as restored from the LM's workdir.
  restored = setup.frozen["lm"].variables["params"]
  jax.tree.map(np.testing.assert_array_equal, frozen_before["params"],
               jax.tree.map(np.array, restored))
  step = setup.train_step()
  for seed in range(3):
    state, _ = step(state, _batch(setup, seed))
  frozen_after = jax.tree.map(np.array, state.model_state["frozen"]["lm"])
  jax.tree.map(np.testing.assert_array_equal, frozen_after, frozen_before)
  tuned_after = state.params[prefix_tuning.PLAYER]
  moved = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != b)), tuned_after, tuned_before)
  assert all(jax.tree.leaves(moved["prefix"]))
  if tune == "all":  # the tuned copy of the LM moves, starting from the frozen weights
    assert set(tuned_after) == {"prefix", "lm"} and all(jax.tree.leaves(moved["lm"]))
    jax.tree.map(np.testing.assert_array_equal, tuned_before["lm"],
                 frozen_before["params"][ar.PLAYER])
  else:
    assert set(tuned_after) == {"prefix"}


def _prompt_kv(network, params, prompt):
  """The keys and values a prompt [1, P] writes into the cache: [layers, 2, 1, P, heads, hd]."""
  _, variables = network.apply({"params": params, "cache": decoding.init_cache(network, 1)},
                               prompt, decode=True, mutable=["cache"])
  stack = variables["cache"]["decoder"]
  blocks = [stack[f"block_{i}"]["attention"] for i in range(network.num_layers)]
  num = prompt.shape[1]
  return jnp.stack([jnp.stack([b["cached_key"][:, :num], b["cached_value"][:, :num]])
                    for b in blocks])


def test_a_prefix_of_a_prompts_keys_and_values_is_that_prompt(lm):
  # Oracle: the frozen LM reading the prompt. With prefix_hidden = 0 the table is the prefix,
  # so it can be set to the prompt's keys and values.
  setup = prefix_setup(lm, prefix_hidden=0)
  method, state = setup.method, setup.init_state()
  network, lm_params = method.network, method.lm_variables["params"][ar.PLAYER]
  prompt = jnp.asarray([[105, 109, 112, 111]], jnp.int32)  # "impo"
  kv = _prompt_kv(network, lm_params, prompt)
  table = kv[:, :, 0].transpose(2, 0, 1, 3, 4).reshape(4, -1)  # [P, layers * 2 * heads * hd]
  variables = state.variables()
  variables["params"][prefix_tuning.PLAYER]["prefix"]["table"] = table
  np.testing.assert_array_equal(method.prefix_kv(variables, 0), kv)

  # Training and evaluation: the windows' losses after the prefix are those after the prompt.
  batch = _batch(setup)
  sums, counts = method.token_losses(variables, batch, 0)
  tokens = jnp.asarray(batch["tokens"])
  full = jnp.concatenate([jnp.tile(prompt, (4, 1)), tokens[:, :-1]], axis=1)
  logits = network.apply({"params": lm_params}, full)[:, 4:]
  want, want_counts = sequence.cross_entropy(logits=logits, targets=tokens[:, 1:])
  np.testing.assert_allclose(sums, want, rtol=1e-5)
  np.testing.assert_array_equal(counts, want_counts)

  # Sampling: through the cache, the unchanged decoders continue as after the prompt.
  start = jnp.asarray([[100, 101, 102, 32]] * 2, jnp.int32)  # "def "
  # (Greedy and beam search: sampling draws from these same logits, tested with the decoders.)
  for decoder in (ar.Greedy(), ar.BeamSearch(beam_size=2)):
    got = method.generate(variables, jax.random.key(3), start, max_new_tokens=6, code=0,
                          decoder=decoder)
    lm_variables = {"params": {ar.PLAYER: lm_params}, "model_state": {}}
    want = method.lm.generate(lm_variables, jax.random.key(3),
                              jnp.concatenate([jnp.tile(prompt, (2, 1)), start], axis=1),
                              max_new_tokens=6, decoder=decoder)
    np.testing.assert_array_equal(got, want)
  # The prefix's slots count against the LM's max_len: 32 - 4 leaves 28 (4 + 25 - 1).
  # The check is made while tracing, so tracing alone (eval_shape) shows it.
  fits = lambda n: jax.eval_shape(lambda: method.generate(
      variables, jax.random.key(0), start, max_new_tokens=n, code=0, decoder=ar.Greedy()))
  assert fits(25).shape == (2, 25)  # the new tokens
  with pytest.raises(ValueError, match="max_len"):
    fits(26)
  # Jitted, as the loop samples.
  samples = setup.sample_fn(2)(variables, jax.random.key(1))
  assert samples.shape == (2, 4 + method.sample_length)


@pytest.mark.parametrize("prefix_length", [0, 4])
def test_an_empty_prefix_or_no_code_is_the_unconditional_lm(lm, prefix_length):
  setup = prefix_setup(lm, prefix_length=prefix_length)
  method, state = setup.method, setup.init_state()
  code = 0 if prefix_length == 0 else -1
  variables = state.variables()
  lm_variables = {"params": method.lm_variables["params"], "model_state": {}}
  batch = _batch(setup)
  sums, counts = method.token_losses(variables, batch, code)
  want = method.lm.evaluate(lm_variables, batch, None)["bits_per_token"]
  np.testing.assert_allclose(sums / np.log(2.0), want[0], rtol=1e-6)
  np.testing.assert_array_equal(counts, want[1])
  start = jnp.asarray([[100, 101, 102, 32]] * 3, jnp.int32)
  got = method.generate(variables, jax.random.key(5), start, max_new_tokens=8, code=code)
  np.testing.assert_array_equal(
      got, method.lm.generate(lm_variables, jax.random.key(5), start, max_new_tokens=8,
                              decoder=method.decoder))
  if prefix_length:  # a trained code differs from no prefix
    assert not np.allclose(method.token_losses(variables, batch, 0)[0], sums)


def test_plain_fine_tuning_without_a_prefix_trains_and_checkpoints(lm, tmp_path):
  # prefix_length = 0 with tune = "all" is the fine-tuning baseline: no empty arrays are saved.
  config = config_of("prefix_tuning_python", "all,tiny")
  config.frozen.lm = str(lm)
  config.model.prefix_length = 0
  result = train_and_evaluate(config, tmp_path)
  assert int(result.state.step) == config.train.num_steps
  assert result.state.params[prefix_tuning.PLAYER]["prefix"] == {}
  run = setup_lib.load_run(tmp_path)
  jax.tree.map(np.testing.assert_array_equal, run.state.params, result.state.params)


def test_a_later_run_keeps_the_earlier_codes_and_trains_its_own(lm, tmp_path):
  first = config_of("prefix_tuning_python")
  first.frozen.lm = str(lm)
  first.model.update(num_prefixes=2, train_code=0)
  train_and_evaluate(first, tmp_path / "code0")
  run0 = setup_lib.load_run(tmp_path / "code0")
  code0 = run0.setup.method.prefix_kv(run0.state.variables(), 0)

  setup = prefix_setup(tmp_path / "code0", num_prefixes=2, train_code=1, sample_code=0)
  method, state = setup.method, setup.init_state()
  assert method.trained_codes == (0, 1)
  variables = state.variables()
  np.testing.assert_array_equal(method.prefix_kv(variables, 0), code0)
  # The LM is the first run's frozen LM, unchanged.
  jax.tree.map(np.testing.assert_array_equal, state.model_state["frozen"]["lm"],
               run0.state.model_state["frozen"]["lm"])
  new_state, _ = setup.train_step()(state, _batch(setup))
  variables = new_state.variables()
  np.testing.assert_array_equal(method.prefix_kv(variables, 0), code0)
  assert not np.allclose(method.prefix_kv(variables, 1), code0)
  prefixes = method.prefixes(variables)
  assert prefixes.shape == (2, 1, 2, 1, 4, 2, 8)
  np.testing.assert_array_equal(prefixes[0], code0)
  # The loop's samples use code 0, kept from the first run, with the decoders unchanged.
  assert setup.sample_fn(2)(variables, jax.random.key(0)).shape == (2, 12)

  with pytest.raises(SettingError, match="model.num_prefixes = 2 and model.prefix_length = 4"):
    prefix_setup(tmp_path / "code0", num_prefixes=3, train_code=1)

  # The second run, trained and restored as sample.py restores it (host arrays in its state):
  # its samples use model.sample_code's prefix, code 0, not the code it trained.
  second = config_of("prefix_tuning_python")
  second.frozen.lm = str(tmp_path / "code0")
  # Greedy: the argmax of the tiny LM's flat distributions follows any change of prefix.
  second.model.update(num_prefixes=2, train_code=1, sample_code=0, decoder="greedy")
  train_and_evaluate(second, tmp_path / "code1")
  run1 = setup_lib.load_run(tmp_path / "code1")
  method, variables = run1.setup.method, run1.state.variables()
  assert method.prefixes(variables).shape == (2, 1, 2, 1, 4, 2, 8)
  # Code 1's prefix, made large so that it moves the tiny LM's argmax; code 0's is stored.
  variables = {**variables, "params": jax.tree.map(lambda x: 30.0 * x, variables["params"])}
  rng, prompt = jax.random.key(3), jnp.asarray([method.sample_prompt] * 2, jnp.int32)
  samples = method.sample(variables, rng, 2)[:, prompt.shape[1]:]
  by_code = {code: method.generate(variables, rng, prompt, max_new_tokens=samples.shape[1],
                                   code=code) for code in (0, 1)}
  np.testing.assert_array_equal(samples, by_code[0])
  assert not np.array_equal(by_code[0], by_code[1])


def test_bad_settings_are_refused(lm):
  with pytest.raises(SettingError, match="sample_code = 1 has no prefix"):
    prefix_setup(lm, num_prefixes=2, sample_code=1)
  with pytest.raises(SettingError, match="train_code = 2 must be from 0"):
    prefix_setup(lm, num_prefixes=2, train_code=2)
  with pytest.raises(SettingError, match="seq_len must be at most 25"):
    prefix_setup(lm, prefix_length=8)
  with pytest.raises(ValueError, match="Code 1 has no prefix"):
    setup = prefix_setup(lm)
    setup.method.prefix_kv(setup.init_state().variables(), 1)
  config = config_of("prefix_tuning_python")
  config.frozen.lm = str(lm)
  config.model.tune = "everything"
  with pytest.raises(config_lib.ConfigError, match="model.tune"):
    config_lib.resolve(config)
  vae = setup_lib.FrozenPart(workdir="runs/vae", step=1, config=config_lib.defaults("vae"),
                             method=None, variables=None, spec=None)
  config.model.tune = "prefix"
  with pytest.raises(SettingError, match="'runs/vae' is a 'vae' run: name the workdir of a "
                                         "trained autoregressive run"):
    prefix_tuning.from_config(config_lib.resolve(config), None, {"lm": vae})
