"""Likelihoods, Gaussian KL divergences, the ELBO and the IWAE bound, per example.

Every function is pure and keyword-only. Per-example functions take arrays with a leading batch
axis and sum over every axis after it, returning shape [batch]; the caller reduces. Values are
in nats; `bits_per_dim` converts.

  standard_gaussian_kl(*, mean, log_var)                       KL(N(m, diag v) || N(0, I))
  gaussian_kl(*, mean, log_var, prior_mean, prior_log_var)     KL between diagonal Gaussians
  gaussian_nll(*, x, mean, log_var)                            -log N(x; m, diag v)
  bernoulli_nll(*, logits, x)                                  binary cross-entropy
  categorical_nll(*, logits, levels)                           integer pixels (digits: 17 levels)
  discretized_logistic_nll(*, x, mean, log_scale, num_levels)  PixelCNN++'s binned logistic
  discretized_logistic_mixture_nll(*, x, logit_weights, means, log_scales, num_levels)
  negative_elbo(*, nll, kl, beta=1.0)                          nll + beta * KL
  log_importance_weights(*, log_likelihood, log_prior, log_posterior)
  iwae_bound(*, log_weights)                                   log-mean-exp over k samples
  bits_per_dim(*, nll, num_dims)                               nats per example -> bits per dim

Discretized likelihoods take images scaled by `gen_jax.data.preprocess.scale_to_unit`: grey
level `k` of `K` sits at `x = 2k / (K - 1) - 1` and owns the bin `[x - 1/(K-1), x + 1/(K-1)]`;
the outermost bins extend to -inf and +inf so that the K probabilities sum to one. Their NLLs
are therefore exact negative log-probabilities of the integer data, and `bits_per_dim` of them
is comparable with any other discrete model of the same data. A continuous density
(`gaussian_nll`) is not: its bits per dim depend on the scaling of the data.
"""

import math

import jax
import jax.numpy as jnp

from gen_jax.types import Array

# PixelCNN++ clips log scales from below: narrower logistics than this put all mass in one bin.
MIN_LOG_SCALE = -7.0


def _sum_per_example(values: Array) -> Array:
  """Sums [batch, ...] over every axis after the first: [batch]."""
  values = jnp.asarray(values)
  if values.ndim == 0:
    raise ValueError("per-example losses need a leading batch axis; got a scalar.")
  return jnp.sum(values.reshape(values.shape[0], -1), axis=1)


# ----------------------------------------------------------------------------------------------
# Gaussians.
# ----------------------------------------------------------------------------------------------


def gaussian_kl(*, mean: Array, log_var: Array, prior_mean: Array, prior_log_var: Array
                ) -> Array:
  """KL(q || p) between diagonal Gaussians q = N(mean, diag exp(log_var)) and p likewise.

    KL = 1/2 sum_d [ log v_p - log v_q + (v_q + (m_q - m_p)^2) / v_p - 1 ]

  (the closed form for Gaussians, e.g. Kingma & Welling 2014, "Auto-Encoding Variational
  Bayes", appendix B, for the standard-normal special case).

  Args:
    mean, log_var: [batch, ...] parameters of q.
    prior_mean, prior_log_var: parameters of p, broadcastable to `mean`.

  Returns:
    [batch] KL divergences in nats, summed over every axis after the first.
  """
  prior_mean = jnp.broadcast_to(prior_mean, jnp.shape(mean))
  prior_log_var = jnp.broadcast_to(prior_log_var, jnp.shape(mean))
  per_dim = 0.5 * (prior_log_var - log_var
                   + (jnp.exp(log_var) + jnp.square(mean - prior_mean)) * jnp.exp(-prior_log_var)
                   - 1.0)
  return _sum_per_example(per_dim)


def standard_gaussian_kl(*, mean: Array, log_var: Array) -> Array:
  """KL(N(mean, diag exp(log_var)) || N(0, I)) = 1/2 sum_d [m^2 + v - log v - 1].

  Kingma & Welling 2014, "Auto-Encoding Variational Bayes", appendix B.

  Args:
    mean, log_var: [batch, ...] parameters of the diagonal Gaussian.

  Returns:
    [batch] KL divergences in nats.
  """
  per_dim = 0.5 * (jnp.square(mean) + jnp.exp(log_var) - log_var - 1.0)
  return _sum_per_example(per_dim)


def gaussian_nll(*, x: Array, mean: Array, log_var: Array) -> Array:
  """Negative log-density of a diagonal Gaussian:

    -log N(x; m, diag v) = 1/2 sum_d [ log(2 pi) + log v + (x - m)^2 / v ].

  Args:
    x: [batch, ...] points.
    mean, log_var: broadcastable to `x`.

  Returns:
    [batch] negative log-densities in nats (a density: not a probability of discrete data).
  """
  x = jnp.asarray(x)
  log_var = jnp.broadcast_to(log_var, x.shape)
  per_dim = 0.5 * (math.log(2 * math.pi) + log_var + jnp.square(x - mean) * jnp.exp(-log_var))
  return _sum_per_example(per_dim)


# ----------------------------------------------------------------------------------------------
# Pixel likelihoods.
# ----------------------------------------------------------------------------------------------


def bernoulli_nll(*, logits: Array, x: Array) -> Array:
  """Binary cross-entropy with logits: sum_d softplus(l) - x l = -[x log p + (1 - x) log(1 - p)].

  With x in {0, 1} this is the negative log-probability of binary data (Kingma & Welling 2014,
  appendix C.1), written with softplus so that logits of any size give exact finite values.

  Args:
    logits: [batch, ...] pre-sigmoid logits.
    x: [batch, ...] targets in {0, 1} (or in [0, 1] for a cross-entropy).

  Returns:
    [batch] negative log-likelihoods in nats.
  """
  return _sum_per_example(jax.nn.softplus(logits) - x * logits)


def categorical_nll(*, logits: Array, levels: Array) -> Array:
  """Negative log-probability of integer values under independent categoricals:

    -sum_d log softmax(logits_d)[levels_d]

  the per-pixel softmax of van den Oord et al. 2016, "Pixel Recurrent Neural Networks".

  Args:
    logits: [batch, ..., K] unnormalised log-probabilities of the K values.
    levels: [batch, ...] integers in [0, K).

  Returns:
    [batch] negative log-likelihoods in nats.
  """
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  picked = jnp.take_along_axis(log_probs, jnp.asarray(levels, jnp.int32)[..., None], axis=-1)
  return -_sum_per_example(picked[..., 0])


def levels_from_unit(x: Array, num_levels: int) -> Array:
  """The integer grey levels of images scaled by `scale_to_unit`: round((x + 1)(K - 1) / 2)."""
  return jnp.clip(jnp.round((x + 1.0) * (0.5 * (num_levels - 1))), 0, num_levels - 1
                  ).astype(jnp.int32)


def _log_sigmoid_difference(a: Array, b: Array) -> Array:
  """log(sigmoid(a) - sigmoid(b)) for a > b, without cancellation.

  sigmoid(a) - sigmoid(b) = (e^a - e^b) / ((1 + e^a)(1 + e^b)), so its log is
  a + log(1 - e^(b - a)) - softplus(a) - softplus(b); each term stays finite.
  """
  return a - jax.nn.softplus(a) - jax.nn.softplus(b) + jnp.log(-jnp.expm1(b - a))


def _discretized_logistic_log_prob(x: Array, mean: Array, log_scale: Array,
                                   num_levels: int) -> Array:
  """Elementwise log P(level of x) under a logistic binned into `num_levels` levels."""
  log_scale = jnp.maximum(log_scale, MIN_LOG_SCALE)
  inv_scale = jnp.exp(-log_scale)
  half_bin = 1.0 / (num_levels - 1)
  centred = x - mean
  upper = inv_scale * (centred + half_bin)  # logit of the CDF at the bin's upper edge
  lower = inv_scale * (centred - half_bin)
  # Lowest level: log CDF(upper) = log sigmoid(upper); highest: log(1 - sigmoid(lower)).
  log_cdf_upper = -jax.nn.softplus(-upper)
  log_one_minus_cdf_lower = -jax.nn.softplus(lower)
  log_mass = _log_sigmoid_difference(upper, lower)
  level = levels_from_unit(x, num_levels)
  return jnp.where(level == 0, log_cdf_upper,
                   jnp.where(level == num_levels - 1, log_one_minus_cdf_lower, log_mass))


def discretized_logistic_nll(*, x: Array, mean: Array, log_scale: Array, num_levels: int
                             ) -> Array:
  """Negative log-probability of grey levels under a discretized logistic per pixel.

    P(x) = sigmoid((x + 1/(K-1) - mu) / s) - sigmoid((x - 1/(K-1) - mu) / s),

  with the lowest bin extended to -inf and the highest to +inf (Salimans et al. 2017,
  "PixelCNN++", eq. 2; Kingma et al. 2016, "Improving Variational Inference with Inverse
  Autoregressive Flow", for the VAE decoder). Log scales are clipped below at -7 as in
  PixelCNN++.

  Args:
    x: [batch, ...] images scaled by `scale_to_unit` (bin centres in [-1, 1]).
    mean, log_scale: [batch, ...] location mu and log s of each pixel's logistic.
    num_levels: K, the number of grey levels (17 for digits, 256 for 8-bit images).

  Returns:
    [batch] negative log-likelihoods in nats.
  """
  return -_sum_per_example(_discretized_logistic_log_prob(x, mean, log_scale, num_levels))


def discretized_logistic_mixture_nll(*, x: Array, logit_weights: Array, means: Array,
                                     log_scales: Array, num_levels: int) -> Array:
  """Negative log-probability under a mixture of M discretized logistics per pixel,

    P(x) = sum_m softmax(w)_m P_m(x),

  each P_m as in `discretized_logistic_nll` (Salimans et al. 2017, "PixelCNN++", section 2.1;
  here without the coupling between colour channels).

  Args:
    x: [batch, ...] images scaled by `scale_to_unit`.
    logit_weights, means, log_scales: [batch, ..., M] per-pixel mixture parameters.
    num_levels: K, the number of grey levels.

  Returns:
    [batch] negative log-likelihoods in nats.
  """
  log_probs = _discretized_logistic_log_prob(jnp.asarray(x)[..., None], means, log_scales,
                                             num_levels)
  mixed = jax.nn.logsumexp(jax.nn.log_softmax(logit_weights, axis=-1) + log_probs, axis=-1)
  return -_sum_per_example(mixed)


# ----------------------------------------------------------------------------------------------
# Bounds.
# ----------------------------------------------------------------------------------------------


def negative_elbo(*, nll: Array, kl: Array, beta: float | Array = 1.0) -> Array:
  """The negative evidence lower bound with a weighted KL term:

    -ELBO = E_q[-log p(x|z)] + beta KL(q(z|x) || p(z)),

  Kingma & Welling 2014, eq. 10 (beta = 1); beta != 1 is the beta-VAE of Higgins et al. 2017,
  which is a bound on -log p(x) only for beta >= 1.

  Args:
    nll: [batch] reconstruction negative log-likelihoods (one sample of z, or an average).
    kl: [batch] KL divergences.
    beta: weight of the KL term.

  Returns:
    [batch] in nats.
  """
  return nll + beta * kl


def log_importance_weights(*, log_likelihood: Array, log_prior: Array, log_posterior: Array
                           ) -> Array:
  """log w = log p(x|z) + log p(z) - log q(z|x) for samples z ~ q(z|x); any equal shapes."""
  return log_likelihood + log_prior - log_posterior


def iwae_bound(*, log_weights: Array) -> Array:
  """The importance-weighted bound of Burda et al. 2016, "Importance Weighted Autoencoders", eq. 8:

    L_k = log (1/k) sum_{i=1..k} w_i,   w_i = p(x, z_i) / q(z_i | x),   z_i ~ q(z | x),

  computed as logsumexp(log w) - log k. L_1 is the ELBO (with a sampled KL); E[L_k] increases
  with k towards log p(x).

  Args:
    log_weights: [k, batch] log importance weights of k samples per example.

  Returns:
    [batch] lower bounds on log p(x), in nats.
  """
  log_weights = jnp.asarray(log_weights)
  return jax.nn.logsumexp(log_weights, axis=0) - math.log(log_weights.shape[0])


def bits_per_dim(*, nll: Array, num_dims: int) -> Array:
  """nll / (num_dims * ln 2): nats per example to bits per dimension (pixel and channel).

  Args:
    nll: [batch] negative log-likelihoods (or bounds) in nats.
    num_dims: dimensions per example, e.g. h * w * c.

  Returns:
    [batch] bits per dimension.
  """
  return nll / (num_dims * math.log(2.0))
