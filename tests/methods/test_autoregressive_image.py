"""Autoregressive image models: causality in raster order, exact likelihoods, samplers that draw
from the model's own distribution, cached decoding equal to recomputation, completion."""

import dataclasses
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gen_jax import pixels
from gen_jax.methods import autoregressive_image as ar
from gen_jax.methods.base import DataSpec, Feature
from gen_jax.train import config as config_lib

def make(network: str, image_shape=(4, 3, 1), num_levels=5, **model) -> ar.AutoregressiveImage:
  config = config_lib.defaults("autoregressive_image")
  config.model.update(network=network, channels=8, num_layers=2, kernel_size=3,
                      first_kernel_size=3, num_heads=2, d_model=16, d_ff=32, **model)
  features = {"image": Feature(tuple(image_shape), "uint8"), "label": Feature((), "int32")}
  spec = DataSpec(features=features, num_levels=num_levels, num_classes=3, name="test")
  return ar.from_config(config, spec)


def random_variables(method: ar.AutoregressiveImage, seed: int = 0, batch=None):
  """Initialised parameters, every leaf perturbed so that none is zero (the heads start at 0)."""
  if batch is None:
    batch = {"image": jnp.zeros((2, *method.image_shape)), "label": jnp.zeros((2,), jnp.int32)}
  variables = method.init(jax.random.PRNGKey(seed), batch)
  leaves, tree = jax.tree.flatten(variables["params"])
  keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
  leaves = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
  return {"params": jax.tree.unflatten(tree, leaves), "model_state": {}}


def random_levels(method, num, seed):
  return jax.random.randint(jax.random.PRNGKey(seed), (num, method.num_dims), 0,
                            method.likelihood.num_levels)


# The plain PixelCNN's causality is tested with its network (tests/nn/test_pixelcnn.py).
@pytest.mark.parametrize("network", ["gated_pixel_cnn", "image_transformer"])
@pytest.mark.parametrize("image_shape", [(4, 3, 1), (2, 3, 2)])
def test_outputs_depend_only_on_earlier_sub_pixels(network, image_shape):
  # Changing sub-pixels n .. N-1 (channels of a pixel included) leaves the outputs of sub-pixels
  # 0 .. n exactly unchanged: each is predicted from the sub-pixels before it only.
  method = make(network, image_shape)
  variables = random_variables(method)
  params = variables["params"]["model"]
  levels = random_levels(method, 2, seed=1)
  network = jax.jit(lambda levels: method.network(params, levels, None))
  base = network(levels)
  changed_any = False
  for n in range(method.num_dims):
    other = levels.at[:, n:].set((levels[:, n:] + 1) % method.likelihood.num_levels)
    out = network(other)
    np.testing.assert_array_equal(np.asarray(out[:, :n + 1]), np.asarray(base[:, :n + 1]),
                                  err_msg=f"output at or before sub-pixel {n} saw sub-pixel {n}")
    changed_any |= bool(n + 1 < method.num_dims and not np.array_equal(out[:, n + 1:],
                                                                         base[:, n + 1:]))
  assert changed_any, "the outputs never depend on the input"


class MarkovChain:
  """A hand-made 'network': sub-pixel n's logits are log T[x_{n-1}] (log p0 for n = 0)."""

  cached = False

  def __init__(self, p0, transition):
    self.log_p0, self.log_t = np.log(p0), np.log(transition)

  def __call__(self, params, levels, labels, **kwargs):
    previous = jnp.concatenate([jnp.zeros_like(levels[:, :1]), levels[:, :-1]], axis=1)
    out = jnp.asarray(self.log_t)[previous]
    return out.at[:, 0].set(jnp.asarray(self.log_p0))

  def init(self, rng, levels, labels):
    return {}


def test_exact_log_likelihood_is_the_sum_of_the_conditionals():
  rng = np.random.default_rng(0)
  k = 4
  p0 = rng.dirichlet(np.ones(k))
  transition = rng.dirichlet(np.ones(k), size=k)
  method = dataclasses.replace(make("gated_pixel_cnn", (2, 3, 1), k),
                               network=MarkovChain(p0, transition))
  levels = rng.integers(0, k, size=(5, 6))
  images = pixels.levels_to_unit(levels.reshape(5, 2, 3, 1).astype(np.float32), k)
  expected = -(np.log(p0[levels[:, 0]])
               + np.log(transition[levels[:, :-1], levels[:, 1:]]).sum(1)) / (6 * math.log(2))
  got = method.evaluate({"params": {"model": {}}}, {"image": images}, None)["bits_per_dim"]
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(method.levels(jnp.asarray(images))), levels)


@pytest.mark.parametrize("network,cached", [("gated_pixel_cnn", False),
                                            ("image_transformer", True),
                                            ("image_transformer", False)])
def test_samples_follow_the_model_distribution(network, cached):
  # 2x2 images of 3 levels: all 81 images' probabilities from the exact likelihood sum to 1, and
  # 6,000 samples match them (chi-square test).
  method = make(network, (2, 2, 1), 3)
  variables = random_variables(method, seed=3)
  all_levels = np.array(list(itertools.product(range(3), repeat=4)))
  images = method.images(jnp.asarray(all_levels))
  bpd = method.evaluate(variables, {"image": images}, None)["bits_per_dim"]
  probs = np.exp(-np.asarray(bpd, np.float64) * 4 * math.log(2))
  np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-4)
  num = 6000
  draws = jax.jit(lambda v, r: method.sample_levels(v, r, None, num, cached=cached))(
      variables, jax.random.PRNGKey(7))
  index = np.asarray(draws) @ (3 ** np.arange(3, -1, -1))
  counts = np.bincount(index, minlength=81)
  expected = probs / probs.sum() * num
  keep = expected >= 5  # the chi-square approximation needs expected counts of 5 or more
  statistic = ((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum()
  statistic += (counts[~keep].sum() - expected[~keep].sum()) ** 2 / max(expected[~keep].sum(), 1)
  p_value = stats.chi2.sf(statistic, keep.sum())
  assert p_value > 1e-3, (statistic, keep.sum())


def test_cached_transformer_sampling_equals_recomputing_every_step():
  method = make("image_transformer", (3, 3, 2), 7, num_classes=3, label_key="label")
  variables = random_variables(method, seed=5)
  labels = jnp.array([0, 1, 2, 1])
  rng = jax.random.PRNGKey(11)
  cached = method.sample_levels(variables, rng, labels, 4, cached=True)
  recomputed = method.sample_levels(variables, rng, labels, 4, cached=False)
  np.testing.assert_array_equal(np.asarray(cached), np.asarray(recomputed))
  assert len(np.unique(np.asarray(cached))) > 2  # not a constant draw


@pytest.mark.parametrize("network", ["gated_pixel_cnn", "image_transformer"])
def test_completion_keeps_the_given_rows(network):
  method = make(network, (4, 3, 1), 5)
  variables = random_variables(method, seed=2)
  images = method.images(random_levels(method, 3, seed=4))
  images = jnp.repeat(images, 4, axis=0)  # four completions of each image
  out = np.asarray(method.complete(variables, jax.random.PRNGKey(0), images, rows=2))
  np.testing.assert_array_equal(out[:, :2], np.asarray(images)[:, :2])
  assert not np.array_equal(out[:, 2:], np.asarray(images)[:, 2:])
  assert not np.array_equal(out[0::4][:, 2:], out[1::4][:, 2:]), "completions are not redrawn"
  with pytest.raises(ValueError, match="rows must be in 0 .. 4"):
    method.complete(variables, jax.random.PRNGKey(0), images, rows=5)
  with pytest.raises(ValueError, match=r"complete takes images \[num, 4, 3, 1\]"):
    method.complete(variables, jax.random.PRNGKey(0), images[:, :2], rows=1)


def test_class_labels_change_the_distribution():
  for network in ("gated_pixel_cnn", "image_transformer"):
    method = make(network, (2, 2, 1), 3, label_key="label", num_classes=3)
    variables = random_variables(method, seed=1)
    images = method.images(random_levels(method, 2, seed=0))
    a = method.evaluate(variables, {"image": images, "label": jnp.array([0, 0])}, None)
    b = method.evaluate(variables, {"image": images, "label": jnp.array([2, 2])}, None)
    assert not np.allclose(a["bits_per_dim"], b["bits_per_dim"]), network


def test_temperature_zero_takes_the_most_probable_level():
  method = make("image_transformer", (2, 2, 1), 3)
  variables = random_variables(method, seed=4)
  a = method.sample_levels(variables, jax.random.PRNGKey(0), None, 3, temperature=0.0)
  b = method.sample_levels(variables, jax.random.PRNGKey(1), None, 3, temperature=0.0)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Greedy: the first sub-pixel is the argmax of its distribution.
  out = method.network(variables["params"]["model"], a, None)
  assert int(a[0, 0]) == int(jnp.argmax(out[0, 0]))


def test_bad_configs_are_refused_with_what_to_change():
  config = config_lib.defaults("autoregressive_image")
  spec = DataSpec(features={"image": Feature((8, 8, 1), "uint8")}, num_levels=17, name="digits")
  config.model.image_key = "pixels"
  with pytest.raises(KeyError, match="set model.image_key to one of them"):
    ar.from_config(config, spec)
  config.model.image_key = "image"
  config.model.network = "pixelcnn"
  with pytest.raises(Exception, match="model.network"):
    ar.from_config(config, spec)
  config.model.network = "gated_pixel_cnn"
  config.model.label_key = "label"
  with pytest.raises(KeyError, match="model.label_key"):
    ar.from_config(config, spec)


def test_only_the_networks_are_network_choices_and_levels_must_be_scaled():
  assert ar.NETWORKS.choices() == ["gated_pixel_cnn", "image_transformer", "pixel_cnn"]
  method = make("gated_pixel_cnn", (2, 2, 1), 3)
  batch = {"image": np.zeros((2, 2, 2, 1), np.uint8)}
  with pytest.raises(ValueError, match="add 'scale_to_unit' to data.preprocess"):
    method.init(jax.random.PRNGKey(0), batch)


@pytest.mark.parametrize("network,cached", [("gated_pixel_cnn", False),
                                            ("image_transformer", True)])
def test_guidance_scale_zero_is_the_unconditional_model_and_two_extrapolates(network, cached):
  # w = 0 leaves log p(x_n | x_<n), the null label's distribution: the same draws (same rng) as
  # sampling the null label without guidance. w = 3 draws from 3 log p(.|y) - 2 log p(.|null),
  # renormalised: greedy decoding takes its argmax at the first sub-pixel.
  method = make(network, (2, 2, 1), 4, label_key="label", num_classes=3, label_dropout=0.1)
  variables = random_variables(method, seed=6)
  labels, null = jnp.array([0, 1, 2, 1, 0, 2]), jnp.full((6,), 3)
  rng = jax.random.PRNGKey(7)
  guided = method.sample_levels(variables, rng, labels, 6, guidance_scale=0.0, cached=cached)
  plain = method.sample_levels(variables, rng, null, 6, guidance_scale=1.0, cached=cached)
  np.testing.assert_array_equal(np.asarray(guided), np.asarray(plain))
  greedy = method.sample_levels(variables, rng, labels, 6, guidance_scale=3.0, temperature=0.0,
                                cached=cached)
  zeros = jnp.zeros((6, method.num_dims), jnp.int32)
  log_p = lambda y: jax.nn.log_softmax(method.network(variables["params"]["model"], zeros, y)[:, 0])
  assert not np.allclose(log_p(labels), log_p(null), atol=1e-2)  # the labels matter
  expected = jnp.argmax(3.0 * log_p(labels) - 2.0 * log_p(null), axis=-1)
  assert not np.array_equal(expected, jnp.argmax(log_p(labels), axis=-1))  # w = 3 is not w = 1
  np.testing.assert_array_equal(np.asarray(greedy[:, 0]), np.asarray(expected))


def test_guided_cached_sampling_equals_recomputing():
  method = make("image_transformer", (2, 3, 1), 5, label_key="label", num_classes=3,
                label_dropout=0.2)
  variables = random_variables(method, seed=6)
  labels, rng = jnp.array([2, 0, 1]), jax.random.PRNGKey(3)
  cached = method.sample_levels(variables, rng, labels, 3, guidance_scale=3.0, cached=True)
  recomputed = method.sample_levels(variables, rng, labels, 3, guidance_scale=3.0, cached=False)
  np.testing.assert_array_equal(np.asarray(cached), np.asarray(recomputed))


def test_label_dropout_trains_the_null_label_and_guidance_needs_it():
  method = make("image_transformer", (2, 2, 1), 3, label_key="label", num_classes=3,
                label_dropout=0.5)
  variables = random_variables(method, seed=0)
  images = method.images(random_levels(method, 32, seed=1))
  batch = {"image": images, "label": jnp.zeros((32,), jnp.int32)}
  params = variables["params"]["model"]
  grads = jax.jit(jax.grad(lambda p: method.loss(None, p, batch, jax.random.PRNGKey(0),
                                                 {})[0]))(params)
  embedding = grads["token_embedding"]["embedding"]  # rows: levels, then start tokens K + label
  assert np.abs(np.asarray(embedding[3 + 3])).sum() > 0, "the null start token got no gradient"
  assert np.abs(np.asarray(embedding[3 + 1])).sum() == 0  # label 1 is not in the batch
  with pytest.raises(ValueError, match="label_dropout=0.1"):
    make("image_transformer", label_key="label", num_classes=3, guidance_scale=2.0)
  with pytest.raises(ValueError, match="set model.label_key"):
    make("gated_pixel_cnn", label_dropout=0.1)
