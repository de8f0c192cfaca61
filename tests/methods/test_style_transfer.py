"""Style transfer: the loss is the weighted sum of the perceptual terms on the frozen network's
features, optimising the style term alone from noise lowers it by a large factor (Adam and
L-BFGS), and VGG-19 weights come from a user's file or are refused with where to get them."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.losses import perceptual
from gen_jax.nn import vgg
from gen_jax.train import config as config_lib
from gen_jax.train import setup as setup_lib

CONFIGS = Path(__file__).resolve().parents[2] / "experiments/configs"


def config_of(arg: str = "tiny", **model):
  config = config_lib.load_file(f"{CONFIGS / 'style_transfer.py'}:{arg}")
  config.model.update(**model)
  return config


def first_batch(config):
  return setup_lib.first_batch(setup_lib.load_data(config, "train", train=True))


def test_the_loss_is_the_weighted_sum_of_the_perceptual_terms():
  config = config_lib.resolve(config_of(tv_weight=0.5))
  setup = setup_lib.make_setup(config)
  method, state = setup.method, setup.init_state(first_batch(config))
  image, model_state = state.params["image"], state.model_state
  content, style = model_state["content"], model_state["style"]
  assert image.shape == content.shape == style.shape == (1, 64, 64, 3)
  assert not np.array_equal(np.asarray(content), np.asarray(style))  # china and flower
  np.testing.assert_array_equal(np.asarray(image), np.asarray(content))  # starts at C
  params = model_state["frozen"]["features"]
  assert set(params) == {"block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2"}
  g = jnp.clip(image + 0.1 * jax.random.normal(jax.random.PRNGKey(0), image.shape), -1, 1)
  feats = vgg.VGG19(pooling="average").apply({"params": params}, g, layers=method.layers)
  c_feats = vgg.VGG19(pooling="average").apply({"params": params}, content,
                                               layers=("block2_conv2",))
  s_feats = vgg.VGG19(pooling="average").apply({"params": params}, style, layers=method.layers)
  content_term = jnp.mean((feats["block2_conv2"] - c_feats["block2_conv2"]) ** 2)
  style_term = sum(0.5 * jnp.mean((perceptual.gram_matrix(feats[k])
                                   - perceptual.gram_matrix(s_feats[k])) ** 2)
                   for k in ("block1_conv1", "block2_conv1"))
  tv = perceptual.total_variation(images=g)[0]
  loss, (metrics, _) = method.loss(None, g, None, None, model_state)
  np.testing.assert_allclose(float(loss), float(content_term + 1e3 * style_term + 0.5 * tv),
                             rtol=1e-4)
  np.testing.assert_allclose(float(metrics["content_loss"]), float(content_term), rtol=1e-4)
  zero, _ = method.loss(None, content, None, None, model_state)
  assert float(method.terms(model_state, content)["content_loss"][0]) == 0.0
  assert float(zero) > 0  # the style term of C is not S's


@pytest.fixture
def optimized_xla():
  """XLA's optimisations, which tests/conftest.py turns off: unoptimised, L-BFGS's line search
  over VGG-19's convolutions compiles to a step 40x slower than optimised."""
  before = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", False)
  yield
  jax.config.update("jax_disable_most_optimizations", before)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_optimising_the_style_alone_from_noise_lowers_it_by_a_large_factor(optimizer,
                                                                           optimized_xla):
  config = config_of("noise,tiny,lbfgs" if optimizer == "lbfgs" else "noise,tiny",
                     content_weight=0.0)
  # L-BFGS's line search costs several network passes a step: it gets fewer steps.
  num_steps = 60 if optimizer == "adam" else 8
  config.train.num_steps = num_steps
  if optimizer == "adam":
    config.optim.learning_rate = 0.05
  config = config_lib.resolve(config)
  setup = setup_lib.make_setup(config)
  batch = first_batch(config)
  state = setup.init_state(batch)
  before = float(setup.method.terms(state.model_state, state.params["image"])["style_loss"][0])
  step = setup.train_step()
  for _ in range(num_steps):
    state, _ = step(state, batch)
  after = float(setup.method.terms(state.model_state, state.params["image"])["style_loss"][0])
  assert after < before / 10, (before, after)


def test_weights_come_from_a_file_or_are_refused_with_where_to_get_them(tmp_path):
  params = vgg.random_params(seed=3)
  vgg.save_npz(params, tmp_path / "vgg19.npz")
  config = config_lib.resolve(config_of(weights=str(tmp_path / "vgg19.npz")))
  method = setup_lib.build_method(config)
  for layer, leaves in method.network_params.items():
    np.testing.assert_array_equal(np.asarray(leaves["kernel"]),
                                  np.asarray(params["params"][layer]["kernel"]))
  config = config_lib.resolve(config_of(weights=str(tmp_path / "missing.h5")))
  with pytest.raises(FileNotFoundError, match="model.weights="):
    setup_lib.build_method(config)


def test_grey_images_and_labels_the_data_lack_are_refused():
  config = config_of(style_label=7)
  with pytest.raises(ValueError, match="model.style_label=7: the data sample_images/64 have "
                                       "labels 0 .. 1"):
    setup_lib.make_setup(config_lib.resolve(config))
  config = config_of()
  config.data.update(name="digits", batch_size=4)
  with pytest.raises(ValueError, match="reads RGB images"):
    setup_lib.make_setup(config_lib.resolve(config))
