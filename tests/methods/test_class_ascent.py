"""Gradient ascent on a frozen classifier's class score: the train step is x + eta grad_x
score_y(x) image by image, the images start where the config says, and ascent raises the
score."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.methods import class_ascent
from gen_jax.train import config as config_lib
from gen_jax.train import setup as setup_lib
from gen_jax.train.loop import train_and_evaluate

CONFIGS = Path(__file__).resolve().parents[2] / "experiments/configs"
BATCH = {"image": np.zeros((32, 8, 8, 1), np.float32), "label": np.zeros((32,), np.int32)}


def config_of(name: str, arg: str = "tiny"):
  return config_lib.load_file(f"{CONFIGS / name}.py:{arg}")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("classifier")
  train_and_evaluate(config_of("classifier_digits"), workdir)
  return workdir


def ascent_setup(classifier, arg="tiny", **model):
  config = config_of("class_ascent_digits", arg)
  config.frozen.classifier = str(classifier)
  config.model.update(**model)
  return setup_lib.make_setup(config_lib.resolve(config))


def test_one_sgd_step_is_x_plus_eta_times_each_images_own_score_gradient(classifier):
  setup = ascent_setup(classifier, l2_weight=0.0)
  method, state = setup.method, setup.init_state()
  images, model_state = state.params["image"], state.model_state
  assert images.shape == (4, 8, 8, 1)
  np.testing.assert_array_equal(np.asarray(method.targets), [0, 1, 2, 3])

  def logit(x, i):  # the target logit of image i alone, through the classifier's own network
    params = model_state["frozen"]["classifier"]["params"]["classifier"]
    return method.classifier.network.apply({"params": params}, x[None])[0, i]

  start = np.asarray(images)  # the step donates the state
  expected = np.asarray(images + setup.config.optim.learning_rate * jnp.stack(
      [jax.grad(logit)(images[i], i) for i in range(4)]))
  new_state, _ = setup.train_step()(state, BATCH)  # the batch is not read
  np.testing.assert_allclose(np.asarray(new_state.params["image"]), expected, rtol=1e-5,
                             atol=1e-6)
  assert float(np.abs(expected - start).max()) > 0


def test_the_l2_penalty_and_log_prob_score_enter_the_gradient(classifier):
  setup = ascent_setup(classifier, score="log_prob", l2_weight=0.5)
  method, state = setup.method, setup.init_state()
  images, model_state = state.params["image"], state.model_state
  grad = jax.grad(lambda x: method.loss(None, x, None, None, model_state)[0])(images)
  log_prob = lambda x: jnp.sum(jnp.take_along_axis(
      jax.nn.log_softmax(method.logits(model_state, x)), method.targets[:, None], -1))
  expected = jax.grad(log_prob)(images) - 0.5 * 2 * images  # -(d/dx)(-score + lambda |x|^2)
  np.testing.assert_allclose(np.asarray(-grad), np.asarray(expected), rtol=1e-5, atol=1e-6)


def test_data_start_takes_the_first_image_of_another_class(classifier):
  method = ascent_setup(classifier, "data,tiny").method
  labels = jnp.array([0, 0, 1, 3, 2, 1])
  images = jnp.arange(6, dtype=jnp.float32)[:, None, None, None] * jnp.ones((6, 8, 8, 1)) / 10
  start = method.init(jax.random.PRNGKey(0), {"image": images, "label": labels})
  first = start["params"]["image"][:, 0, 0, 0] * 10
  # Targets 0, 1, 2, 3: the first image at index >= i not of that class is 2, 1, 2, 4.
  np.testing.assert_allclose(np.asarray(first), [2, 1, 2, 4], atol=1e-6)


def test_ascent_raises_the_score_and_evaluation_reports_the_images(classifier):
  setup = ascent_setup(classifier, noise_std=0.3)
  method, state = setup.method, setup.init_state()
  before = method.scores(state.model_state, state.params["image"])
  step = setup.train_step()
  for _ in range(5):
    state, _ = step(state, BATCH)
  after = method.scores(state.model_state, state.params["image"])
  assert np.all(np.asarray(after) > np.asarray(before))
  metrics = method.evaluate(state.variables(), {"image": jnp.zeros((3, 8, 8, 1))}, None)
  per_image = method.image_metrics(state.variables())
  np.testing.assert_allclose(np.asarray(metrics["target_prob"]),
                             np.full(3, float(per_image["target_prob"].mean())), rtol=1e-6)
  assert float(metrics["rms_change"][0]) > 0
  samples = method.sample(state.variables(), None, 6)
  np.testing.assert_array_equal(np.asarray(samples[4:]), np.asarray(samples[:2]))


def test_the_frozen_part_must_be_a_classifier_and_choices_are_checked(classifier):
  config = config_of("class_ascent_digits")
  config.frozen.classifier = str(classifier)
  config.model.score = "probability"
  with pytest.raises(config_lib.ConfigError, match="model.score"):
    config_lib.resolve(config)
  config.model.score = "logit"
  config.model.target_class = 10
  with pytest.raises(ValueError, match="target_class=10: use -1"):
    setup_lib.make_setup(config_lib.resolve(config))
  config.model.target_class = -1
  vae = setup_lib.FrozenPart(workdir="runs/vae", step=1, config=config_lib.defaults("vae"),
                             method=None, variables=None, spec=None)
  with pytest.raises(ValueError, match="'runs/vae' is a 'vae' run: name the workdir of a "
                                       "trained classifier run"):
    class_ascent.from_config(config_lib.resolve(config), None, {"classifier": vae})
