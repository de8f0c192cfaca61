"""Likelihoods, KL divergences and bounds against SciPy / NumPy references and closed forms."""

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from gen_jax.losses import likelihood as lik



def jitted(fn):
  """One compiled call instead of one compilation per primitive in eager mode (faster tests)."""
  static = ("num_levels",) if "num_levels" in inspect.signature(fn).parameters else ()
  return jax.jit(fn, static_argnames=static)


def test_standard_gaussian_kl_closed_form_for_known_gaussians():
  # KL(N(1, 1) || N(0, 1)) = 1/2; KL(N(0, e) || N(0, 1)) = (e - 1 - 1) / 2; sums over dims.
  mean = jnp.array([[1.0, 0.0], [0.0, 0.0]])
  log_var = jnp.array([[0.0, 1.0], [0.0, 0.0]])
  np.testing.assert_allclose(lik.standard_gaussian_kl(mean=mean, log_var=log_var),
                             [0.5 + (math.e - 2) / 2, 0.0], rtol=1e-6)


def test_gaussian_kl_general_matches_the_formula_and_the_standard_case():
  rng = np.random.default_rng(0)
  m1, m2 = rng.normal(size=(2, 5, 3))
  lv1, lv2 = rng.normal(size=(2, 5, 3))
  want = 0.5 * np.sum(lv2 - lv1 + (np.exp(lv1) + (m1 - m2) ** 2) / np.exp(lv2) - 1, axis=1)
  got = jitted(lik.gaussian_kl)(mean=m1, log_var=lv1, prior_mean=m2, prior_log_var=lv2)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(jitted(lik.gaussian_kl)(mean=m1, log_var=lv1, prior_mean=0.0,
                                             prior_log_var=0.0),
                             lik.standard_gaussian_kl(mean=m1, log_var=lv1), rtol=1e-5)


def test_gaussian_kl_matches_a_monte_carlo_estimate():
  rng = np.random.default_rng(1)
  mq, lvq, mp, lvp = np.array([0.3, -1.0]), np.array([-0.5, 0.4]), np.array([1.0, 0.2]), \
      np.array([0.3, -0.2])
  n = 400_000
  z = mq + np.exp(0.5 * lvq) * rng.standard_normal((n, 2))
  log_ratio = (stats.norm.logpdf(z, mq, np.exp(0.5 * lvq))
               - stats.norm.logpdf(z, mp, np.exp(0.5 * lvp))).sum(1)
  estimate, stderr = log_ratio.mean(), log_ratio.std() / math.sqrt(n)
  got = float(jitted(lik.gaussian_kl)(mean=mq[None], log_var=lvq[None], prior_mean=mp[None],
                              prior_log_var=lvp[None])[0])
  assert abs(got - estimate) < 4 * stderr


def test_gaussian_nll_matches_scipy():
  rng = np.random.default_rng(2)
  x, mean, log_var = rng.normal(size=(3, 4, 2, 3))
  want = -stats.norm.logpdf(x, mean, np.exp(0.5 * log_var)).reshape(4, -1).sum(1)
  got = jitted(lik.gaussian_nll)(x=x, mean=mean, log_var=log_var)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_bernoulli_nll_matches_scipy_and_is_finite_for_large_logits():
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(4, 6)) * 3
  x = rng.integers(0, 2, (4, 6))
  want = -stats.bernoulli.logpmf(x, special.expit(logits)).sum(1)
  np.testing.assert_allclose(lik.bernoulli_nll(logits=logits, x=x), want, rtol=1e-5)
  np.testing.assert_allclose(lik.bernoulli_nll(logits=jnp.array([[200.0, -200.0]]),
                                               x=jnp.array([[0.0, 1.0]])), [400.0])


def test_categorical_nll_matches_numpy_log_softmax():
  rng = np.random.default_rng(4)
  logits = rng.normal(size=(3, 2, 2, 1, 17))
  levels = rng.integers(0, 17, (3, 2, 2, 1))
  log_probs = logits - special.logsumexp(logits, axis=-1, keepdims=True)
  want = -np.take_along_axis(log_probs, levels[..., None], -1).reshape(3, -1).sum(1)
  got = jitted(lik.categorical_nll)(logits=logits, levels=levels)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_uniform_categorical_gives_log2_of_the_number_of_levels_bits_per_dim():
  levels = np.random.default_rng(5).integers(0, 17, (6, 8, 8, 1))
  nll = jitted(lik.categorical_nll)(logits=jnp.zeros((6, 8, 8, 1, 17)), levels=levels)
  np.testing.assert_allclose(lik.bits_per_dim(nll=nll, num_dims=64), np.full(6, math.log2(17)),
                             rtol=1e-6)


def _logistic_reference(x, mean, scale, k):
  """P(level) by SciPy's logistic CDF in float64, outer bins open."""
  half = 1.0 / (k - 1)
  upper = np.where(x > 1 - half, 1.0, stats.logistic.cdf(x + half, mean, scale))
  lower = np.where(x < -1 + half, 0.0, stats.logistic.cdf(x - half, mean, scale))
  return upper - lower


@pytest.mark.parametrize("k", [17, 256])
def test_discretized_logistic_nll_matches_scipy(k):
  rng = np.random.default_rng(6)
  levels = rng.integers(0, k, (5, 4, 4, 1))
  levels[0, 0, 0, 0], levels[0, 0, 1, 0] = 0, k - 1  # both open-ended bins
  x = 2 * levels / (k - 1) - 1
  mean = rng.uniform(-1, 1, x.shape)
  log_scale = rng.uniform(-3, 0, x.shape)
  want = -np.log(_logistic_reference(x, mean, np.exp(log_scale), k)).reshape(5, -1).sum(1)
  got = jitted(lik.discretized_logistic_nll)(x=x.astype(np.float32), mean=mean.astype(np.float32),
                                     log_scale=log_scale.astype(np.float32), num_levels=k)
  np.testing.assert_allclose(got, want, rtol=2e-4)


def test_discretized_logistic_probabilities_sum_to_one_and_stay_finite():
  k = 17
  x = jnp.linspace(-1, 1, k)[:, None]  # one single-pixel example per level
  for mean, log_scale in [(0.2, -1.0), (0.9, -6.0), (-30.0, 3.0), (0.0, -20.0)]:
    nll = jitted(lik.discretized_logistic_nll)(x=x, mean=jnp.full_like(x, mean),
                                       log_scale=jnp.full_like(x, log_scale), num_levels=k)
    assert np.all(np.isfinite(nll))
    np.testing.assert_allclose(np.exp(-nll).sum(), 1.0, rtol=1e-4)


def test_discretized_logistic_mixture_matches_numpy_and_reduces_to_one_component():
  rng = np.random.default_rng(7)
  k, m = 17, 3
  levels = rng.integers(0, k, (4, 3, 3, 1))
  x = (2 * levels / (k - 1) - 1).astype(np.float32)
  weights = rng.normal(size=(*x.shape, m)).astype(np.float32)
  means = rng.uniform(-1, 1, (*x.shape, m)).astype(np.float32)
  log_scales = rng.uniform(-3, 0, (*x.shape, m)).astype(np.float32)
  probs = _logistic_reference(x[..., None], means, np.exp(log_scales), k)
  mixed = (special.softmax(weights, -1) * probs).sum(-1)
  want = -np.log(mixed).reshape(4, -1).sum(1)
  got = jitted(lik.discretized_logistic_mixture_nll)(x=x, logit_weights=weights, means=means,
                                             log_scales=log_scales, num_levels=k)
  np.testing.assert_allclose(got, want, rtol=2e-4)
  one = jitted(lik.discretized_logistic_mixture_nll)(x=x, logit_weights=weights[..., :1],
                                             means=means[..., :1], log_scales=log_scales[..., :1],
                                             num_levels=k)
  np.testing.assert_allclose(one, jitted(lik.discretized_logistic_nll)(
      x=x, mean=means[..., 0], log_scale=log_scales[..., 0], num_levels=k), rtol=1e-6)


def test_iwae_bound_is_the_log_mean_exp_of_the_weights():
  rng = np.random.default_rng(8)
  log_w = rng.normal(size=(7, 3)) * 5 - 100  # far below exp's range: needs logsumexp
  want = special.logsumexp(log_w, axis=0) - math.log(7)
  np.testing.assert_allclose(jitted(lik.iwae_bound)(log_weights=log_w), want, rtol=1e-6)
  np.testing.assert_allclose(jitted(lik.iwae_bound)(log_weights=log_w[:1]), log_w[0], rtol=1e-6)
  # Jensen: the bound is at least the mean log weight (the ELBO estimate).
  assert np.all(np.asarray(jitted(lik.iwae_bound)(log_weights=log_w)) >= log_w.mean(0))


def test_elbo_terms_and_bits_per_dim():
  nll, kl = jnp.array([3.0, 5.0]), jnp.array([1.0, 2.0])
  np.testing.assert_allclose(lik.negative_elbo(nll=nll, kl=kl), [4.0, 7.0])
  np.testing.assert_allclose(lik.negative_elbo(nll=nll, kl=kl, beta=0.5), [3.5, 6.0])
  np.testing.assert_allclose(
      lik.log_importance_weights(log_likelihood=jnp.array([-1.0]), log_prior=jnp.array([-2.0]),
                                 log_posterior=jnp.array([-0.5])), [-2.5])
  np.testing.assert_allclose(lik.bits_per_dim(nll=jnp.array([64 * math.log(2)]), num_dims=64),
                             [1.0], rtol=1e-6)


def test_levels_from_unit_inverts_scale_to_unit():
  levels = np.arange(17)
  np.testing.assert_array_equal(lik.levels_from_unit(2 * levels / 16 - 1, 17), levels)
