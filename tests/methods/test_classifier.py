"""Adversarial training: the classifier's loss is its cross-entropy on the PGD examples of the
batch, made with its current parameters, and evaluation adds the accuracy under that attack."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gen_jax.methods import classifier
from gen_jax.train import config as config_lib


def make(**model):
  config = config_lib.defaults("classifier")
  config.model.update(widths=(4, 8), feature_dim=8, **model)
  return classifier.from_config(config)


def test_adversarial_training_fits_the_pgd_examples_of_the_current_parameters():
  method = make(adversarial_epsilon=0.3, adversarial_steps=3)
  assert method.adversarial == dict(epsilon=0.3, step_size=0.25, num_steps=3, norm="linf")
  images = jax.random.uniform(jax.random.PRNGKey(0), (6, 8, 8, 1), minval=-1, maxval=1)
  batch = {"image": images, "label": jnp.arange(6) % 10}
  params = method.init(jax.random.PRNGKey(1), batch)["params"]["classifier"]
  rng = jax.random.PRNGKey(2)
  loss, _ = jax.jit(lambda p: method.loss(None, p, batch, rng, {}))(params)
  adv = jax.jit(lambda p: method.attack(p, batch, rng))(params)
  assert float(jnp.max(jnp.abs(adv - images))) <= 0.3 + 1e-6
  expected = optax.softmax_cross_entropy_with_integer_labels(
      method.logits(params, adv), batch["label"]).mean()
  clean = optax.softmax_cross_entropy_with_integer_labels(
      method.logits(params, images), batch["label"]).mean()
  np.testing.assert_allclose(float(loss), float(expected), rtol=1e-6)
  assert float(loss) > float(clean)  # PGD raised the loss it trains on
  # The examples are held fixed: the gradient is the clean-loss gradient at the PGD images.
  grads = jax.jit(jax.grad(lambda p: method.loss(None, p, batch, rng, {})[0]))(params)
  at_adv = jax.jit(jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
      method.logits(p, adv), batch["label"]).mean()))(params)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(at_adv)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
  metrics = jax.jit(lambda p: method.evaluate({"params": {"classifier": p}}, batch, rng))(params)
  assert set(metrics) == {"loss", "accuracy", "adversarial_accuracy"}
  assert np.all(np.asarray(metrics["adversarial_accuracy"]) <= 1)


def test_plain_training_has_no_attack_and_bad_norms_are_refused():
  assert make().adversarial is None
  assert "adversarial_accuracy" not in make().evaluate(
      {"params": {"classifier": make().init(jax.random.PRNGKey(0), {"image": jnp.zeros(
          (2, 8, 8, 1))})["params"]["classifier"]}},
      {"image": jnp.zeros((2, 8, 8, 1)), "label": jnp.zeros((2,), jnp.int32)}, None)
  method = make(adversarial_epsilon=0.1)
  grey_levels = {"image": jnp.zeros((2, 8, 8, 1), jnp.uint8), "label": jnp.zeros((2,), jnp.int32)}
  with pytest.raises(ValueError, match="add 'scale_to_unit' to data.preprocess"):
    method.attack(None, grey_levels, jax.random.PRNGKey(0))
  config = config_lib.defaults("classifier")
  config.model.update(adversarial_epsilon=0.1, adversarial_norm="l1")
  with pytest.raises(ValueError, match="adversarial_norm"):
    config_lib.resolve(config)
