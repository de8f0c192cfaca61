"""Two-stage generation: the VQ-VAE's codebook is model state the train step updates, its codes
decode to its reconstructions, and the prior over a frozen tokenizer's codes is causal in the
RQ order, samples the same with and without its cache, and decodes its codes with the
tokenizer."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.train import config as config_lib
from gen_jax.train import setup as setup_lib
from gen_jax.train.loop import load_checkpoint, train_and_evaluate

CONFIGS = Path(__file__).resolve().parents[2] / "experiments/configs"


def config_of(name: str, arg: str = "tiny"):
  return config_lib.load_file(f"{CONFIGS / name}.py:{arg}")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
  """A tiny RQ-VAE (depth 2) trained a few steps, and the state it started from."""
  workdir = tmp_path_factory.mktemp("rq")
  config = config_of("vqvae_digits", "rq2,tiny")
  config.model.dead_code_threshold = 0.0
  setup = setup_lib.make_setup(config_lib.resolve(config))
  initial = setup.init_state()
  result = train_and_evaluate(config, workdir)
  return workdir, setup, initial, result


def test_the_ema_codebook_is_state_that_training_updates(tokenizer):
  _, _, initial, result = tokenizer
  state = result.state
  assert "codebook" not in str(jax.tree_util.tree_structure(state.params))
  before = initial.model_state["quantizer"]["quantizer"]["codebook"]
  after = state.model_state["quantizer"]["quantizer"]["codebook"]
  assert before.shape == after.shape == (1, 8, 4)  # one shared codebook of 8 codes of width 4
  assert not np.allclose(np.asarray(before), np.asarray(after))


def test_codes_decode_to_the_reconstruction(tokenizer):
  workdir, _, _, _ = tokenizer
  _, method, state = load_checkpoint(workdir)
  variables = state.variables()
  images = jax.random.uniform(jax.random.PRNGKey(0), (5, 8, 8, 1), minval=-1, maxval=1)
  codes = method.encode(variables, images)
  assert codes.shape == (5, 4, 4, 2) and codes.dtype == jnp.int32
  assert int(codes.min()) >= 0 and int(codes.max()) < method.num_codes
  np.testing.assert_array_equal(np.asarray(method.reconstruct(variables, images)),
                                np.asarray(method.decode(variables, codes)))
  assert method.code_shape((8, 8, 1)) == (4, 4, 2)


@pytest.fixture(scope="module")
def prior(tokenizer, tmp_path_factory):
  workdir, _, _, _ = tokenizer
  config = config_of("code_prior_digits", "conditional,tiny")
  config.frozen.tokenizer = str(workdir)
  setup = setup_lib.make_setup(config_lib.resolve(config))
  variables = setup.init_state().variables()
  leaves, tree = jax.tree.flatten(variables["params"])
  keys = jax.random.split(jax.random.PRNGKey(3), len(leaves))
  params = jax.tree.unflatten(tree, [x + 0.3 * jax.random.normal(k, x.shape)
                                     for x, k in zip(leaves, keys)])
  return setup.method, {**variables, "params": params}


def test_the_prior_is_causal_in_the_rq_order(prior):
  # Sub-pixel n of the prior's "image" is code n in raster order over the grid and, within a
  # position, over depth: changing codes n.. leaves the outputs of codes 0..n unchanged.
  method, variables = prior
  network, params = method.prior.network, variables["params"]["model"]
  codes = jax.random.randint(jax.random.PRNGKey(0), (2, 32), 0, 8)
  labels = jnp.array([1, 7])
  apply = jax.jit(lambda codes: network(params, codes, labels))
  base = apply(codes)
  for n in range(32):
    out = apply(codes.at[:, n:].set((codes[:, n:] + 1) % 8))
    np.testing.assert_array_equal(np.asarray(out[:, :n + 1]), np.asarray(base[:, :n + 1]))


def test_cached_prior_sampling_equals_recomputing_and_decodes_with_the_tokenizer(prior):
  method, variables = prior
  rng = jax.random.PRNGKey(5)
  cached = method.sample_codes(variables, rng, 10, cached=True)
  recomputed = method.sample_codes(variables, rng, 10, cached=False)
  assert cached.shape == (10, 4, 4, 2)
  np.testing.assert_array_equal(np.asarray(cached), np.asarray(recomputed))
  tokenizer_variables = variables["model_state"]["frozen"]["tokenizer"]
  np.testing.assert_array_equal(
      np.asarray(method.sample(variables, rng, 10)),
      np.asarray(method.tokenizer.decode(tokenizer_variables, cached)))


def test_the_tokenizer_must_be_a_vqvae_run(tmp_path):
  classifier = config_of("classifier_digits")
  train_and_evaluate(classifier, tmp_path / "classifier")
  config = config_of("code_prior_digits")
  config.frozen.tokenizer = str(tmp_path / "classifier")
  with pytest.raises(ValueError, match="is a 'classifier' run: name the workdir of a trained "
                                       "vqvae run"):
    setup_lib.make_setup(config_lib.resolve(config))
