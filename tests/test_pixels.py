"""Distributions over pixels (gen_jax.pixels): level probabilities, means and modes against NumPy,
the NLL against the level probabilities, and sampling against them (chi-square, fixed key)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from gen_jax import pixels

K = 5
UNIT = 2 * np.arange(K) / (K - 1) - 1  # the levels' values in [-1, 1]


def _logistic_cdf(x, mean, log_scale):
  return special.expit((x - mean) / np.exp(np.maximum(log_scale, -7.0)))


def _binned(mean, log_scale):
  """P(level k) of a logistic binned around the level values, outer bins open: [..., K]."""
  mean, log_scale = np.asarray(mean, np.float64)[..., None], np.asarray(log_scale)[..., None]
  half = 1.0 / (K - 1)
  upper = np.where(np.arange(K) == K - 1, 1.0, _logistic_cdf(UNIT + half, mean, log_scale))
  lower = np.where(np.arange(K) == 0, 0.0, _logistic_cdf(UNIT - half, mean, log_scale))
  return upper - lower


# Four pixels [1, 2, 2, 1] of each distribution, with NumPy's P(level k) of each: [4, K].
def _categorical():
  logits = np.array([[2.0, 0.0, -1.0, 0.5, 0.0], [0.0] * 5, [-3.0, 1.0, 1.0, 0.0, 4.0],
                     [0.3, 0.2, 0.1, 0.0, -0.1]])
  probs = special.softmax(logits, axis=-1)
  return pixels.Categorical(K), logits.reshape(1, 2, 2, 1, K), probs


def _logistic():
  params = np.array([[0.1, -1.0], [-0.9, -0.5], [1.3, 0.2], [0.0, -3.0]])
  return (pixels.DiscretizedLogistic(K), params.reshape(1, 2, 2, 1, 2),
          _binned(params[:, 0], params[:, 1]))


def _mixture():
  weights = np.array([[0.0, 1.0], [2.0, -2.0], [0.5, 0.5], [-1.0, 0.0]])
  means = np.array([[-0.5, 0.5], [0.9, -0.9], [0.0, 0.0], [-1.2, 0.4]])
  log_scales = np.array([[-1.5, -1.0], [-0.5, -2.0], [-2.5, 0.0], [-1.0, -1.0]])
  w = special.softmax(weights, axis=-1)
  probs = np.einsum("pm,pmk->pk", w, _binned(means, log_scales))
  params = np.concatenate([weights, means, log_scales], axis=-1)
  return pixels.LogisticMixture(K, 2), params.reshape(1, 2, 2, 1, 6), probs


def _bernoulli():
  logits = np.array([0.0, 1.5, -2.0, 0.3])
  p = special.expit(logits)
  return pixels.Bernoulli(), logits.reshape(1, 2, 2, 1, 1), np.stack([1 - p, p], -1)


LEVEL_CASES = {"categorical": _categorical, "discretized_logistic": _logistic,
               "logistic_mixture": _mixture, "bernoulli": _bernoulli}


@pytest.mark.parametrize("case", LEVEL_CASES)
def test_level_probabilities_means_and_modes_against_numpy(case):
  dist, params, probs = LEVEL_CASES[case]()
  params = jnp.asarray(params, jnp.float32)
  levels = probs.shape[-1]
  unit = 2 * np.arange(levels) / (levels - 1) - 1
  got = np.exp(np.asarray(jax.jit(dist.level_log_probs)(params))).reshape(4, levels)
  np.testing.assert_allclose(got, probs, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(jax.jit(dist.mean)(params)).ravel(), probs @ unit,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(jax.jit(dist.mode)(params)).ravel(),
                                unit[np.argmax(probs, -1)])
  # The NLL of each level's image is minus the log-probability of that level at every pixel.
  for k in range(levels):
    x = jnp.full((1, 2, 2, 1), unit[k], jnp.float32)
    np.testing.assert_allclose(jax.jit(dist.nll)(params, x), [-np.log(probs[:, k]).sum()],
                               rtol=1e-5)


@pytest.mark.parametrize("case", LEVEL_CASES)
def test_samples_follow_the_level_probabilities(case):
  """20,000 draws per pixel with a fixed key: each pixel's level counts against
  n * P(level k) by Pearson's chi-square, pooled over the 4 pixels; and every draw is a level."""
  dist, params, probs = LEVEL_CASES[case]()
  n = 20_000
  levels = probs.shape[-1]
  batch = jnp.broadcast_to(jnp.asarray(params, jnp.float32), (n, *params.shape[1:]))
  x = np.asarray(jax.jit(dist.sample)(batch, jax.random.PRNGKey(0))).reshape(n, 4)
  k = np.round((x + 1) * (levels - 1) / 2).astype(int)
  np.testing.assert_allclose(x, 2 * k / (levels - 1) - 1, atol=1e-6)
  counts = np.stack([np.bincount(k[:, p], minlength=levels) for p in range(4)])
  expected = n * probs
  keep = expected > 5  # Pearson's approximation needs expected counts of at least 5
  assert counts[~keep].sum() <= 10 + 3 * expected[~keep].sum()
  chi2 = np.sum((counts[keep] - expected[keep]) ** 2 / expected[keep])
  dof = keep.sum() - 4
  assert stats.chi2.sf(chi2, dof) > 1e-3, (chi2, dof)


def test_gaussian_mean_mode_and_samples():
  dist = pixels.Gaussian(0.25)
  mean = np.array([-0.5, 0.0, 0.3, 0.9], np.float32).reshape(1, 2, 2, 1, 1)
  np.testing.assert_array_equal(dist.mean(jnp.asarray(mean)), mean[..., 0])
  np.testing.assert_array_equal(dist.mode(jnp.asarray(mean)), mean[..., 0])
  n = 20_000
  x = np.asarray(dist.sample(jnp.broadcast_to(jnp.asarray(mean), (n, 2, 2, 1, 1)),
                             jax.random.PRNGKey(1))).reshape(n, 4)
  # Sample means within 4 standard errors; variances by the chi-square of (n - 1) s^2 / std^2.
  assert np.all(np.abs(x.mean(0) - mean.ravel()) < 4 * 0.25 / math.sqrt(n))
  scaled = (n - 1) * x.var(0, ddof=1) / 0.25**2
  assert np.all(stats.chi2.sf(scaled, n - 1) > 1e-4) and np.all(stats.chi2.cdf(scaled, n - 1)
                                                                 > 1e-4)
  # -log N(x; m, std^2), summed over the pixels.
  want = -stats.norm.logpdf(np.zeros(4), mean.ravel(), 0.25).sum()
  np.testing.assert_allclose(dist.nll(jnp.asarray(mean), jnp.zeros((1, 2, 2, 1))), [want],
                             rtol=1e-5)


def test_sharp_distributions_put_their_mean_and_mode_on_a_level():
  """The oracles of the VAE's image strategies: a sharp logit or logistic at level k has mean
  and mode k's value; a mixture's mean is the weights' average of its components' levels."""
  k = 17
  x = 2 * np.arange(k) / (k - 1) - 1
  logits = jnp.where(jax.nn.one_hot(jnp.arange(k), k) > 0, 30.0, 0.0)[:, None, None, None, :]
  np.testing.assert_allclose(jax.jit(pixels.Categorical(k).mean)(logits).ravel(), x, atol=1e-6)
  np.testing.assert_allclose(jax.jit(pixels.Categorical(k).mode)(logits).ravel(), x, atol=1e-6)
  sharp = jnp.stack([jnp.asarray(x), jnp.full(k, -7.0)], -1)[:, None, None, None, :]
  np.testing.assert_allclose(jax.jit(pixels.DiscretizedLogistic(k).mean)(sharp).ravel(), x,
                             atol=1e-5)
  mix = jnp.array([0.0, math.log(3.0), x[4], x[12], -7.0, -7.0])[None, None, None, None]
  mixture = pixels.LogisticMixture(k, 2)
  np.testing.assert_allclose(jax.jit(mixture.mean)(mix).ravel(), [0.25 * x[4] + 0.75 * x[12]],
                             atol=1e-5)
  np.testing.assert_allclose(jax.jit(mixture.mode)(mix).ravel(), [x[12]], atol=1e-6)


def test_bad_settings_are_refused_with_the_key_to_set():
  with pytest.raises(ValueError, match="model.num_levels"):
    pixels.Categorical(0)
  with pytest.raises(ValueError, match="model.num_mixtures"):
    pixels.LogisticMixture(17, 0)
