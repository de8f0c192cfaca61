"""Style-transfer losses against NumPy references, hand values, the paper's normalisation and
gradient (Gatys et al. 2016, eq. 1-6), and their invariances."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.losses import perceptual


def _features(shape, seed):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _np_gram(f):
  """Unnormalised Gram sum_positions F_i F_j in float64 (Gatys et al. eq. 3), [batch, c, c]."""
  f = np.float64(f)
  return np.einsum("bhwi,bhwj->bij", f, f)


def _permute_positions(f, seed):
  """The same feature vectors at shuffled spatial positions (one permutation for the batch)."""
  b, h, w, c = f.shape
  perm = np.random.default_rng(seed).permutation(h * w)
  return f.reshape(b, h * w, c)[:, perm].reshape(b, h, w, c)


# ----------------------------------------------------------------------------------------------
# Gram matrix.
# ----------------------------------------------------------------------------------------------


def test_gram_matrix_matches_numpy_einsum():
  f = _features((3, 4, 7, 5), seed=0)  # h != w catches a transposed or mis-sized sum
  gram = perceptual.gram_matrix(features=f)
  assert gram.shape == (3, 5, 5) and gram.dtype == jnp.float32
  np.testing.assert_allclose(gram, _np_gram(f) / (4 * 7), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(gram, np.swapaxes(gram, 1, 2))
  np.testing.assert_array_equal(perceptual.gram_matrix(f), gram)  # positional too
  # One position: the outer product of its feature vector; two: the mean of the two.
  v, u = np.array([1.0, -2.0, 3.0]), np.array([0.5, 4.0, 0.0])
  np.testing.assert_allclose(perceptual.gram_matrix(features=v.reshape(1, 1, 1, 3))[0],
                             np.outer(v, v), rtol=1e-7)
  two = np.stack([v, u]).reshape(1, 2, 1, 3)
  np.testing.assert_allclose(perceptual.gram_matrix(features=two)[0],
                             (np.outer(v, v) + np.outer(u, u)) / 2, rtol=1e-7)


def test_gram_matrix_computes_bfloat16_features_in_float32():
  f = _features((2, 3, 4, 6), seed=1)
  f_bf16 = jnp.asarray(f, jnp.bfloat16)
  gram = perceptual.gram_matrix(features=f_bf16)
  assert gram.dtype == jnp.float32
  # The same as the float32 Gram of the (rounded) bfloat16 values.
  np.testing.assert_allclose(gram, _np_gram(np.float32(f_bf16)) / 12, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Content loss.
# ----------------------------------------------------------------------------------------------


def test_content_loss_hand_values_and_zero_at_the_target():
  # Example 0: differences (1, 2) -> (1 + 4) / 2; example 1: differences (0, 4) -> 16 / 2.
  features = np.array([[1.0, 3.0], [2.0, 2.0]], np.float32).reshape(2, 1, 2, 1)
  target = np.array([[0.0, 1.0], [2.0, -2.0]], np.float32).reshape(2, 1, 2, 1)
  np.testing.assert_allclose(perceptual.content_loss(features=features, target=target),
                             [2.5, 8.0], rtol=1e-7)
  f = _features((3, 4, 5, 6), seed=2)
  np.testing.assert_array_equal(perceptual.content_loss(features=f, target=f), np.zeros(3))


def test_content_loss_relation_to_gatys_eq1_and_its_gradient():
  f, p = _features((2, 3, 4, 5), seed=3), _features((2, 3, 4, 5), seed=4)
  n, m = 5, 3 * 4  # channels N_l, positions M_l
  gatys = 0.5 * np.sum((np.float64(f) - p) ** 2, axis=(1, 2, 3))  # eq. 1
  np.testing.assert_allclose(perceptual.content_loss(features=f, target=p),
                             2 / (n * m) * gatys, rtol=1e-5)
  # d/dF of mean (F - P)^2 is 2 (F - P) / (h w c) (Gatys eq. 2 times 2 / (N M)).
  grad = jax.grad(lambda x: perceptual.content_loss(features=x, target=p).sum())(f)
  np.testing.assert_allclose(grad, 2 * (np.float64(f) - p) / (n * m), rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------------------------
# Style loss.
# ----------------------------------------------------------------------------------------------

SHAPES = {"conv1": (3, 6, 4, 2), "conv2": (3, 3, 2, 5)}  # layers of different size and channels


def _style_inputs(seed):
  features = {name: _features(shape, seed + i) for i, (name, shape) in enumerate(SHAPES.items())}
  # conv1: one style image for the batch ([1, c, c]); conv2: a target per example.
  style = {"conv1": _features((1, 5, 3, 2), seed + 10), "conv2": _features((3, 2, 2, 5), seed + 11)}
  target_grams = {name: perceptual.gram_matrix(features=s) for name, s in style.items()}
  return features, style, target_grams


def test_style_loss_matches_numpy():
  features, style, target_grams = _style_inputs(seed=5)
  weights = {"conv1": 0.7, "conv2": 2.0}
  got = perceptual.style_loss(features=features, target_grams=target_grams, weights=weights)
  want = 0.0
  for name, f in features.items():
    g = _np_gram(f) / (f.shape[1] * f.shape[2])
    a = _np_gram(style[name]) / (style[name].shape[1] * style[name].shape[2])
    want = want + weights[name] * np.mean((g - a) ** 2, axis=(1, 2))  # a broadcasts from [1]
  assert got.shape == (3,)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # A batch-1 target is the same as that target repeated for every example.
  tiled = dict(target_grams, conv1=jnp.tile(target_grams["conv1"], (3, 1, 1)))
  np.testing.assert_array_equal(
      perceptual.style_loss(features=features, target_grams=tiled, weights=weights), got)


def test_style_loss_relation_to_gatys_eq4_and_eq6():
  # With unnormalised Grams G, A (eq. 3), E_l = sum (G - A)^2 / (4 N^2 M^2) (eq. 4), and its
  # gradient with respect to F [M, N] is F (G - A) / (N^2 M^2) (eq. 6, before the ReLU mask).
  f, s = _features((2, 3, 5, 4), seed=6), _features((1, 4, 4, 4), seed=7)
  n, m = 4, 3 * 5
  g, a = _np_gram(f), _np_gram(s) * m / 16  # the style image's Gram rescaled to M positions
  e_l = np.sum((g - a) ** 2, axis=(1, 2)) / (4 * n**2 * m**2)
  w = 0.3
  loss_fn = lambda x: perceptual.style_loss(features={"l": x}, target_grams={
      "l": perceptual.gram_matrix(features=s)}, weights={"l": w})
  np.testing.assert_allclose(loss_fn(f), 4 * w * e_l, rtol=1e-5)
  grad = jax.grad(lambda x: loss_fn(x).sum())(f)
  f_flat = np.float64(f).reshape(2, m, n)
  de_df = np.einsum("bmi,bij->bmj", f_flat, g - a) / (n**2 * m**2)
  np.testing.assert_allclose(grad.reshape(2, m, n), 4 * w * de_df, rtol=1e-4, atol=1e-7)


def test_style_loss_is_zero_at_the_target_and_blind_to_positions():
  features, _, target_grams = _style_inputs(seed=8)
  weights = {"conv1": 1.0, "conv2": 0.5}
  own = {name: perceptual.gram_matrix(features=f) for name, f in features.items()}
  np.testing.assert_array_equal(
      perceptual.style_loss(features=features, target_grams=own, weights=weights), np.zeros(3))

  shuffled = {name: _permute_positions(f, seed=9) for name, f in features.items()}
  assert not np.array_equal(shuffled["conv1"], features["conv1"])
  # The style loss against any target is unchanged (up to the summation order's rounding) ...
  np.testing.assert_allclose(
      perceptual.style_loss(features=shuffled, target_grams=target_grams, weights=weights),
      perceptual.style_loss(features=features, target_grams=target_grams, weights=weights),
      rtol=1e-5)
  np.testing.assert_allclose(
      perceptual.style_loss(features=shuffled, target_grams=own, weights=weights), np.zeros(3),
      atol=1e-10)
  # ... while the content loss sees the move: it is the mean squared displacement of the values.
  f = features["conv1"]
  moved = perceptual.content_loss(features=shuffled["conv1"], target=f)
  np.testing.assert_allclose(moved, np.mean((shuffled["conv1"] - np.float64(f)) ** 2, (1, 2, 3)),
                             rtol=1e-5)
  assert np.all(np.asarray(moved) > 0.1)


def test_style_weights_enter_linearly():
  features, _, target_grams = _style_inputs(seed=12)
  loss = lambda w1, w2: np.asarray(perceptual.style_loss(
      features=features, target_grams=target_grams, weights={"conv1": w1, "conv2": w2}))
  conv1_term = loss(0.8, 0.0)
  # Doubling conv1's weight adds conv1's term once more; the terms add up to the total.
  np.testing.assert_allclose(loss(1.6, 1.5), loss(0.8, 1.5) + conv1_term, rtol=1e-6)
  np.testing.assert_allclose(loss(0.8, 1.5), conv1_term + loss(0.0, 1.5), rtol=1e-6)
  assert np.all(conv1_term > 0)
  np.testing.assert_array_equal(loss(0.0, 0.0), np.zeros(3))


def test_style_loss_under_jit_with_traced_weights():
  features, _, target_grams = _style_inputs(seed=13)
  weights = {"conv1": 0.4, "conv2": 1.2}
  eager = perceptual.style_loss(features=features, target_grams=target_grams, weights=weights)
  jitted = jax.jit(lambda f, w: perceptual.style_loss(features=f, target_grams=target_grams,
                                                      weights=w))
  np.testing.assert_allclose(jitted(features, weights), eager, rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# Total variation.
# ----------------------------------------------------------------------------------------------


def test_total_variation_hand_values():
  # [[0, 1, 3], [2, 2, 2]]: vertical differences 2, 1, -1 -> mean square 6 / 3 = 2; horizontal
  # differences 1, 2 and 0, 0 -> mean square 5 / 4; total 3.25.
  image = np.array([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]], np.float32)
  np.testing.assert_allclose(perceptual.total_variation(images=image[None, :, :, None]), [3.25],
                             rtol=1e-7)
  # A second channel 2 * image (4x the squares) averages with the first: (3.25 + 13) / 2.
  two_channels = np.stack([image, 2 * image], axis=-1)[None]
  np.testing.assert_allclose(perceptual.total_variation(images=two_channels), [8.125],
                             rtol=1e-7)


def test_total_variation_of_constants_and_shifts():
  constant = np.full((2, 4, 5, 3), 0.37, np.float32)
  np.testing.assert_array_equal(perceptual.total_variation(images=constant), np.zeros(2))
  x = _features((4, 5, 6, 3), seed=14)
  tv = perceptual.total_variation(images=x)
  assert tv.shape == (4,) and np.all(np.asarray(tv) > 0)
  np.testing.assert_allclose(perceptual.total_variation(images=x + 2.5), tv, rtol=1e-5)
  # Squared differences: scaling the image by 3 scales tv by 9.
  np.testing.assert_allclose(perceptual.total_variation(images=3 * x), 9 * tv, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Errors.
# ----------------------------------------------------------------------------------------------


def test_wrong_ranks_and_shapes_are_refused():
  rank3 = np.zeros((4, 5, 3), np.float32)
  with pytest.raises(ValueError, match=r"features must have shape \[batch, h, w, c\]"):
    perceptual.gram_matrix(features=rank3)
  with pytest.raises(ValueError, match=r"target must have shape \[batch, h, w, c\]"):
    perceptual.content_loss(features=rank3[None], target=rank3)
  with pytest.raises(ValueError, match="same shape"):
    perceptual.content_loss(features=np.zeros((2, 4, 5, 3)), target=np.zeros((1, 4, 5, 3)))
  with pytest.raises(ValueError, match=r"images must have shape \[batch, h, w, c\]"):
    perceptual.total_variation(images=rank3)
  with pytest.raises(ValueError, match="at least 2 x 2 pixels"):
    perceptual.total_variation(images=np.zeros((2, 1, 5, 3)))
  with pytest.raises(TypeError):
    perceptual.content_loss(rank3[None], rank3[None])  # keyword-only


def test_style_loss_arguments_are_checked():
  features, _, target_grams = _style_inputs(seed=15)
  weights = {"conv1": 1.0, "conv2": 1.0}

  def call(features=features, target_grams=target_grams, weights=weights):
    return perceptual.style_loss(features=features, target_grams=target_grams, weights=weights)

  with pytest.raises(ValueError, match=r"\['conv2'\] are in features but not in target_grams"):
    call(target_grams={"conv1": target_grams["conv1"]})
  with pytest.raises(ValueError, match=r"\['conv3'\] are in weights but not in features"):
    call(weights=dict(weights, conv3=1.0))
  with pytest.raises(ValueError, match="at least one layer"):
    call(features={}, target_grams={}, weights={})
  for bad in (-0.5, float("nan"), float("inf")):
    with pytest.raises(ValueError, match=r"weights\['conv2'\] must be finite and >= 0"):
      call(weights=dict(weights, conv2=bad))
  with pytest.raises(ValueError, match=r"weights\['conv1'\] must be a number"):
    call(weights=dict(weights, conv1=np.ones(2)))
  with pytest.raises(ValueError, match=r"target_grams\['conv2'\] is a Gram matrix of 3 channels "
                     r"but features\['conv2'\] has 5 channels"):
    call(target_grams=dict(target_grams, conv2=np.zeros((1, 3, 3), np.float32)))
  with pytest.raises(ValueError, match=r"must have shape \[batch or 1, c, c\]"):
    call(target_grams=dict(target_grams, conv2=np.zeros((1, 5, 4), np.float32)))
  with pytest.raises(ValueError, match="one Gram per example, or a batch of 1"):
    call(target_grams=dict(target_grams, conv2=np.zeros((2, 5, 5), np.float32)))
  with pytest.raises(ValueError, match=r"features\['conv2'\] has batch 2"):
    call(features=dict(features, conv2=features["conv2"][:2]))
  with pytest.raises(ValueError, match=r"features\['conv1'\] must have shape \[batch, h, w, c\]"):
    call(features=dict(features, conv1=features["conv1"][0]))
