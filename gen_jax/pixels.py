"""Distributions over pixels: how a network's output [..., h, w, c, P] defines p(x) per pixel.

Images are [..., h, w, c] in [-1, 1], as `gen_jax.data.preprocess.scale_to_unit` scales them:
grey level k of K sits at 2k / (K - 1) - 1. A distribution reads P = `params_per_pixel` numbers
per pixel, `params` [..., h, w, c, P], and gives

  nll(params, x)           -log p(x) per example, [batch] (nats, summed over the pixels; the
                           maths is `gen_jax.losses.likelihood`'s)
  level_log_probs(params)  log P(level k) of each pixel, [..., h, w, c, K] (discrete ones)
  mean(params)             each pixel's expected value, [..., h, w, c]
  mode(params)             each pixel's most probable value, [..., h, w, c]
  sample(params, rng)      one draw of every pixel, independently, [..., h, w, c]

The distributions over K grey levels (`Categorical`, `DiscretizedLogistic`, `LogisticMixture`,
and `Bernoulli`, whose 2 levels are -1 and 1) derive their mean and mode from
`level_log_probs`, once, in `LevelDistribution`. Each samples in its own way (the logistics by
inverse CDF and rounding, PixelCNN++'s sampler), so that a test can check sampling against
`level_log_probs`. `Gaussian` is a continuous density (its bits per dim are not those of
discrete data) and has no levels.

A config names a distribution by its class in snake case (`model.likelihood =
"logistic_mixture"`); its fields are set from the config (`gen_jax.names.Kind.build`): `num_levels`
from the data, `num_mixtures`, `gaussian_std`.
"""

import abc
import dataclasses
import math
import numbers

import jax
import jax.numpy as jnp

from gen_jax.losses import likelihood as lik
from gen_jax.types import Array, PRNGKey


def levels_to_unit(levels: Array, num_levels: int) -> Array:
  """Grey levels 0 .. K-1 (any dtype) -> their values 2k / (K - 1) - 1 in [-1, 1]."""
  return levels * (2.0 / (num_levels - 1)) - 1.0


class PixelDistribution(abc.ABC):
  """A distribution of each pixel given P parameters; see the module docstring."""

  @property
  @abc.abstractmethod
  def params_per_pixel(self) -> int:
    """P, the parameters per pixel."""

  @abc.abstractmethod
  def nll(self, params: Array, x: Array) -> Array:
    """-log p(x) per example: params [batch, h, w, c, P], x [batch, h, w, c] -> [batch]."""

  @abc.abstractmethod
  def mean(self, params: Array) -> Array:
    """Each pixel's expected value: [..., h, w, c] in [-1, 1]."""

  @abc.abstractmethod
  def mode(self, params: Array) -> Array:
    """Each pixel's most probable value: [..., h, w, c]."""

  @abc.abstractmethod
  def sample(self, params: Array, rng: PRNGKey) -> Array:
    """One independent draw of every pixel: [..., h, w, c]."""


class LevelDistribution(PixelDistribution):
  """A distribution over K grey levels per pixel: mean and mode from `level_log_probs`."""

  num_levels: int

  def _check_levels(self):
    if not isinstance(self.num_levels, numbers.Integral) or self.num_levels < 2:
      raise ValueError(f"{type(self).__name__} needs num_levels >= 2 grey levels, got "
                       f"{self.num_levels!r}: set model.num_levels, or use data whose info has "
                       "num_levels (e.g. digits: 17, 8-bit images: 256).")

  @abc.abstractmethod
  def level_log_probs(self, params: Array) -> Array:
    """log P(level k) of each pixel: [..., K]."""

  def mean(self, params: Array) -> Array:
    """The expected level, scaled to [-1, 1]."""
    probs = jax.nn.softmax(self.level_log_probs(params), axis=-1)  # renormalised against rounding
    return levels_to_unit(probs @ jnp.arange(self.num_levels, dtype=probs.dtype),
                          self.num_levels)

  def mode(self, params: Array) -> Array:
    """The most probable level (the lowest of ties), scaled to [-1, 1]."""
    log_probs = self.level_log_probs(params)
    return levels_to_unit(jnp.argmax(log_probs, axis=-1).astype(log_probs.dtype),
                          self.num_levels)

  def sample(self, params: Array, rng: PRNGKey) -> Array:
    """A level drawn from `level_log_probs`, scaled to [-1, 1]."""
    log_probs = self.level_log_probs(params)
    levels = jax.random.categorical(rng, log_probs, axis=-1)
    return levels_to_unit(levels.astype(log_probs.dtype), self.num_levels)


@dataclasses.dataclass(frozen=True)
class Categorical(LevelDistribution):
  """A softmax over the K grey levels of each pixel (K logits per pixel)."""

  num_levels: int

  def __post_init__(self):
    self._check_levels()

  @property
  def params_per_pixel(self) -> int:
    return self.num_levels

  def nll(self, params: Array, x: Array) -> Array:
    return lik.categorical_nll(logits=params, levels=lik.levels_from_unit(x, self.num_levels))

  def level_log_probs(self, params: Array) -> Array:
    return jax.nn.log_softmax(params, axis=-1)


def _logistic_levels(mean: Array, log_scale: Array, rng: PRNGKey, num_levels: int) -> Array:
  """Levels of logistic draws x = mean + s L, L ~ Logistic(0, 1), each rounded to its bin (outer
  bins open): PixelCNN++'s sampler. `s` is the NLL's scale, clipped below at exp(-7)."""
  scale = jnp.exp(jnp.maximum(log_scale, lik.MIN_LOG_SCALE))
  x = mean + scale * jax.random.logistic(rng, mean.shape, mean.dtype)
  return lik.levels_from_unit(x, num_levels)


def _binned_log_probs(means: Array, log_scales: Array, logit_weights: Array | None,
                      num_levels: int) -> Array:
  """log P(level k) for every k of a (mixture of) binned logistic(s): [..., K].

  Each level's probability is the likelihood of the one-pixel image at that level, so this
  reuses the NLL itself: the K levels become a batch axis of single-pixel examples.
  """
  m = means.shape[-1]
  flat_means = means.reshape(-1, 1, m)
  flat_scales = log_scales.reshape(-1, 1, m)
  levels = levels_to_unit(jnp.arange(num_levels, dtype=means.dtype), num_levels)

  def one_level(x):
    x = jnp.full(flat_means.shape[:2], x)
    if logit_weights is None:
      return -lik.discretized_logistic_nll(x=x, mean=flat_means[..., 0],
                                           log_scale=flat_scales[..., 0], num_levels=num_levels)
    return -lik.discretized_logistic_mixture_nll(
        x=x, logit_weights=logit_weights.reshape(-1, 1, m), means=flat_means,
        log_scales=flat_scales, num_levels=num_levels)

  log_probs = jax.vmap(one_level, out_axes=-1)(levels)  # [pixels, K]
  return log_probs.reshape(*means.shape[:-1], num_levels)


@dataclasses.dataclass(frozen=True)
class DiscretizedLogistic(LevelDistribution):
  """A logistic binned into K levels, with its own location and log-scale per pixel (2 params:
  [..., 0] the location, [..., 1] the log-scale)."""

  num_levels: int

  def __post_init__(self):
    self._check_levels()

  @property
  def params_per_pixel(self) -> int:
    return 2

  def nll(self, params: Array, x: Array) -> Array:
    return lik.discretized_logistic_nll(x=x, mean=params[..., 0], log_scale=params[..., 1],
                                        num_levels=self.num_levels)

  def level_log_probs(self, params: Array) -> Array:
    """log P(level k) of each pixel, exactly (outer bins open): [..., K]."""
    return _binned_log_probs(params[..., :1], params[..., 1:], None, self.num_levels)

  def sample(self, params: Array, rng: PRNGKey) -> Array:
    levels = _logistic_levels(params[..., 0], params[..., 1], rng, self.num_levels)
    return levels_to_unit(levels.astype(params.dtype), self.num_levels)


@dataclasses.dataclass(frozen=True)
class LogisticMixture(LevelDistribution):
  """A mixture of M binned logistics per pixel (PixelCNN++ without the colour coupling):
  [..., :M] the weights' logits, [..., M:2M] the locations, [..., 2M:] the log-scales."""

  num_levels: int
  num_mixtures: int

  def __post_init__(self):
    self._check_levels()
    if not isinstance(self.num_mixtures, numbers.Integral) or self.num_mixtures < 1:
      raise ValueError(f"LogisticMixture needs num_mixtures >= 1, got {self.num_mixtures!r}: "
                       "set model.num_mixtures.")

  @property
  def params_per_pixel(self) -> int:
    return 3 * self.num_mixtures

  def _split(self, params: Array) -> tuple[Array, Array, Array]:
    m = self.num_mixtures
    return params[..., :m], params[..., m:2 * m], params[..., 2 * m:]

  def nll(self, params: Array, x: Array) -> Array:
    weights, means, log_scales = self._split(params)
    return lik.discretized_logistic_mixture_nll(x=x, logit_weights=weights, means=means,
                                                log_scales=log_scales,
                                                num_levels=self.num_levels)

  def level_log_probs(self, params: Array) -> Array:
    weights, means, log_scales = self._split(params)
    return _binned_log_probs(means, log_scales, weights, self.num_levels)

  def sample(self, params: Array, rng: PRNGKey) -> Array:
    """A component drawn from the weights, then a binned logistic draw of it."""
    component_rng, logistic_rng = jax.random.split(rng)
    weights, means, log_scales = self._split(params)
    component = jax.random.categorical(component_rng, weights, axis=-1)[..., None]
    pick = lambda a: jnp.take_along_axis(a, component, axis=-1)[..., 0]
    levels = _logistic_levels(pick(means), pick(log_scales), logistic_rng, self.num_levels)
    return levels_to_unit(levels.astype(params.dtype), self.num_levels)


@dataclasses.dataclass(frozen=True)
class Bernoulli(LevelDistribution):
  """One logit l per pixel over the two levels -1 and 1: P(1) = sigmoid(l). The NLL's target is
  (x + 1) / 2 in [0, 1]: exact for binary images, a cross-entropy (not a likelihood) for grey
  ones."""

  num_levels = 2  # a class constant, not a field: the levels are -1 and 1

  @property
  def params_per_pixel(self) -> int:
    return 1

  def nll(self, params: Array, x: Array) -> Array:
    return lik.bernoulli_nll(logits=params[..., 0], x=0.5 * (x + 1.0))

  def level_log_probs(self, params: Array) -> Array:
    """[log P(-1), log P(1)] = [log sigmoid(-l), log sigmoid(l)]: [..., 2]."""
    logits = params[..., 0]
    return jnp.stack([jax.nn.log_sigmoid(-logits), jax.nn.log_sigmoid(logits)], axis=-1)

  def sample(self, params: Array, rng: PRNGKey) -> Array:
    on = jax.random.bernoulli(rng, jax.nn.sigmoid(params[..., 0]))
    return jnp.where(on, 1.0, -1.0).astype(params.dtype)


@dataclasses.dataclass(frozen=True)
class Gaussian(PixelDistribution):
  """N(params[..., 0], std^2) per pixel, with a fixed standard deviation (a continuous density:
  its bits per dim are not those of discrete data)."""

  std: float

  @property
  def params_per_pixel(self) -> int:
    return 1

  def nll(self, params: Array, x: Array) -> Array:
    return lik.gaussian_nll(x=x, mean=params[..., 0], log_var=2.0 * math.log(self.std))

  def mean(self, params: Array) -> Array:
    return params[..., 0]

  def mode(self, params: Array) -> Array:
    return params[..., 0]

  def sample(self, params: Array, rng: PRNGKey) -> Array:
    mean = params[..., 0]
    return mean + self.std * jax.random.normal(rng, mean.shape, mean.dtype)
