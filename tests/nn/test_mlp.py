"""Tests for gen_jax.nn.mlp: shapes, an exact forward pass, and label conditioning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.errors import SettingError
from gen_jax.nn.mlp import MLP


def _init_apply(module, x, labels=None, seed=0):
  variables = module.init(jax.random.key(seed), x, labels)
  return variables, module.apply(variables, x, labels)


def test_generator_and_discriminator_shapes():
  z = jnp.ones((7, 3))
  _, points = _init_apply(MLP(features=(64, 64), out_features=2), z)
  assert points.shape == (7, 2)
  variables, logits = _init_apply(MLP(features=(64, 64)), points)
  assert logits.shape == (7,)
  # Exact parameter count: 2*64+64 + 64*64+64 + 64*1+1.
  count = sum(p.size for p in jax.tree.leaves(variables["params"]))
  assert count == (2 * 64 + 64) + (64 * 64 + 64) + (64 + 1)


def test_images_are_flattened():
  _, out = _init_apply(MLP(features=(8,), out_features=3), jnp.ones((2, 4, 4, 1)))
  assert out.shape == (2, 3)


def _np_layer_norm(h):
  # flax.linen.LayerNorm at initialisation: scale 1, bias 0, epsilon 1e-6.
  return (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-6)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_forward_pass_matches_numpy(layer_norm):
  x = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
  module = MLP(features=(6, 4), out_features=2, activation="tanh", layer_norm=layer_norm)
  variables, out = _init_apply(module, jnp.asarray(x))
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
  assert ("norm_0" in p) == layer_norm

  h = np.float64(x)
  for i in range(2):
    h = h @ p[f"hidden_{i}"]["kernel"] + p[f"hidden_{i}"]["bias"]
    if layer_norm:
      h = _np_layer_norm(h)
    h = np.tanh(h)
  expected = h @ p["out"]["kernel"] + p["out"]["bias"]
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


# NumPy oracles with jax.nn's default arguments: leaky_relu's negative slope 0.01, gelu's tanh
# approximation (approximate=True), elu's alpha 1.
NUMPY_ACTIVATIONS = {
    "relu": lambda h: np.maximum(h, 0.0),
    "leaky_relu": lambda h: np.where(h >= 0, h, 0.01 * h),
    "gelu": lambda h: 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3))),
    "silu": lambda h: h / (1 + np.exp(-h)),
    "elu": lambda h: np.where(h > 0, h, np.expm1(h)),
    "tanh": np.tanh,
}


@pytest.mark.parametrize("activation", sorted(NUMPY_ACTIVATIONS))
def test_activations_are_looked_up_by_name(activation):
  x = 2.0 * np.random.default_rng(1).normal(size=(16, 2)).astype(np.float32)
  variables, out = _init_apply(MLP(features=(32,), activation=activation), jnp.asarray(x))
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
  h = np.float64(x) @ p["hidden_0"]["kernel"] + p["hidden_0"]["bias"]
  # Pre-activations on both sides of 0 and beyond +-1, where every pair of these activations
  # differs: a module that applied another one would miss the oracle.
  assert h.min() < -1.0 and h.max() > 1.0
  expected = NUMPY_ACTIVATIONS[activation](h) @ p["out"]["kernel"][:, 0] + p["out"]["bias"][0]
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_unknown_activation_is_refused():
  # A SettingError (model.activation), which experiments/main.py prints in one line.
  with pytest.raises(SettingError, match="unknown activation 'relux'"):
    _init_apply(MLP(features=(8,), activation="relux"), jnp.ones((3, 2)))
  with pytest.raises(SettingError, match="unknown activation 'Dense'"):
    _init_apply(MLP(features=(8,), activation="Dense"), jnp.ones((3, 2)))


def test_conditional_output_depends_on_its_own_label():
  module = MLP(features=(32, 32), out_features=2, num_classes=3, label_features=4)
  x = jnp.tile(jnp.array([[0.5, -1.0]]), (3, 1))  # one input, three times
  labels = jnp.array([0, 1, 2])
  variables, out = _init_apply(module, x, labels)
  assert out.shape == (3, 2)
  assert variables["params"]["label_embed"]["embedding"].shape == (3, 4)
  # The same input with different labels gives three different outputs.
  assert not np.allclose(out[0], out[1]) and not np.allclose(out[1], out[2])
  assert not np.allclose(out[0], out[2])
  # Changing example 0's label changes example 0 only.
  relabelled = module.apply(variables, x, jnp.array([2, 1, 2]))
  np.testing.assert_allclose(relabelled[0], out[2], rtol=1e-6)
  np.testing.assert_array_equal(relabelled[1:], out[1:])


def test_labels_must_match_the_module():
  x = jnp.ones((3, 2))
  with pytest.raises(ValueError, match="pass labels"):
    _init_apply(MLP(features=(8,), num_classes=3), x)
  with pytest.raises(ValueError, match="unconditional"):
    _init_apply(MLP(features=(8,)), x, jnp.zeros(3, jnp.int32))
  with pytest.raises(ValueError, match=r"labels must have shape \[batch\]"):
    _init_apply(MLP(features=(8,), num_classes=3), x, jnp.zeros((3, 1), jnp.int32))
