"""Variational autoencoders (Kingma & Welling 2014) and plain autoencoders, one player.

One player, `vae`, holds the encoder's and the decoder's parameters. The method is a frozen
dataclass of strategies; every variant is a different strategy passed in, never a branch:

  encoder, decoder  Flax modules of `gen_jax.nn.vae_nets`, built by `{model.networks}_networks`
                    in this module (`mlp_networks`, `conv_networks`).
  posterior         `GaussianPosterior()`: q(z|x) = N(m(x), diag v(x)), sampled by
                    reparameterisation z = m + sqrt(v) * eps, with an analytic KL to the prior
                    N(0, I). `DeterministicPosterior()`: z = m(x) and no KL: a plain
                    autoencoder, whose decoder is then fed N(0, I) vectors by `sample` (for the
                    contrast with a VAE, whose training made the prior's samples decodable).
  likelihood        p(x|z) per pixel, a distribution of `gen_jax.pixels`: `Categorical(K)`
                    (integer grey levels), `DiscretizedLogistic(K)` (PixelCNN++'s binned
                    logistic, a mean and a scale per pixel), `LogisticMixture(K, M)`,
                    `Bernoulli()`, `Gaussian(std)`.
  image_fn          which image of p(x|z) samples, reconstructions and interpolations show:
                    `mode_image` (each pixel's most probable level: sharp) or `mean_image`
                    (its expected value: blurred where the decoder is unsure).
  objective         `ELBO(beta, free_bits, kl_warmup_steps)`: -ELBO with the KL weighted by beta,
                    optionally free bits per latent dimension and a linear KL warm-up.
                    `IWAE(train_samples)`: the k-sample importance-weighted bound (Burda et al.
                    2016).

A config names each strategy (`model.posterior = "gaussian"`, `model.likelihood =
"logistic_mixture"`, ...): each is a member of a `gen_jax.names.Kind` below, configured from the
model config by its parameters' names (`num_mixtures`, `gaussian_std`, `beta`, `free_bits`,
`kl_warmup_steps`, `train_samples`). The image shape and grey levels come from the data's
`DataSpec` unless the config sets them.

Images are `batch["image"]` [batch, h, w, c] scaled to [-1, 1] by `scale_to_unit`. The loss
functions of `gen_jax.losses.likelihood` do the maths; this file wires them.

KL warm-up needs the number of updates, which the generic step does not pass to a loss: the
player's model state holds a counter, `{"updates": [] int32}`, that the loss increments. It is
saved in checkpoints with the rest of the state, so a resumed run continues the schedule.
"""

import dataclasses
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from gen_jax import names, pixels
from gen_jax.errors import SettingError
from gen_jax.losses import likelihood as lik
from gen_jax.methods.base import DataSpec, Player
from gen_jax.nn import vae_nets
from gen_jax.sampling.latent import interpolate, spherical_path
from gen_jax.types import Array, Batch, Params, PRNGKey, Variables

PLAYER = "vae"
# Model keys that only change how a run samples and evaluates, never the parameters: a resumed
# run may change them (gen_jax.train.checkpoint).
SAMPLING_KEYS = frozenset({"eval_samples", "eval_chunk", "image"})


def default_model_config() -> dict[str, Any]:
  return dict(
      networks="mlp",  # `{networks}_networks(model, ...)` in this module: mlp | conv
      encoder_features=(256, 256),  # mlp: hidden widths
      decoder_features=(256, 256),
      encoder_widths=(32, 64),  # conv: channels
      decoder_widths=(64, 32),
      activation="gelu",
      dropout=0.0,  # dropout rate in both networks, in training only
      latent_dim=16,
      posterior="gaussian",  # `{Posterior}Posterior` in this module: gaussian | deterministic
      likelihood="categorical",  # a class of gen_jax.pixels: categorical |
      # discretized_logistic | logistic_mixture | bernoulli | gaussian
      num_mixtures=5,  # logistic_mixture: components per pixel
      gaussian_std=0.1,  # gaussian: the fixed standard deviation of each pixel
      objective="elbo",  # an Objective of this module: elbo | iwae
      beta=1.0,  # elbo: weight of the KL term
      free_bits=0.0,  # elbo: nats per latent dimension below which its KL is not penalised
      kl_warmup_steps=0,  # elbo: the KL weight rises linearly from 0 to beta over these updates
      train_samples=1,  # iwae: k of the training bound
      eval_samples=100,  # importance samples per test image for the ELBO and IWAE estimates
      eval_chunk=50,  # samples decoded at once; divides eval_samples
      image="mode",  # `{image}_image`: the image shown for p(x|z): mode | mean
      image_shape=(),  # () reads (h, w, c) from the data's spec
      num_levels=0,  # grey levels; 0 reads them from the data's spec
  )


# ----------------------------------------------------------------------------------------------
# Posterior strategies: the encoder's output -> latents.
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GaussianPosterior:
  """q(z|x) = N(mean, diag exp(log_var)); the encoder outputs [mean, log_var] ([batch, 2d])."""

  has_density = True

  def out_features(self, latent_dim: int) -> int:
    return 2 * latent_dim

  def split(self, enc_out: Array) -> tuple[Array, Array]:
    mean, log_var = jnp.split(enc_out, 2, axis=-1)
    return mean, log_var  # [batch, d] each

  def code(self, enc_out: Array) -> Array:
    """The posterior mean [batch, d]: the deterministic code used for reconstructions."""
    return self.split(enc_out)[0]

  def draw(self, enc_out: Array, rng: PRNGKey, num: int) -> Array:
    """`num` reparameterised samples z = mean + exp(log_var / 2) * eps: [num, batch, d].

    The noise eps ~ N(0, I) does not depend on the parameters, so gradients flow through mean
    and log_var (Kingma & Welling 2014, section 2.4).
    """
    mean, log_var = self.split(enc_out)
    eps = jax.random.normal(rng, (num, *mean.shape), mean.dtype)
    return mean + jnp.exp(0.5 * log_var) * eps

  def kl_per_dim(self, enc_out: Array) -> Array:
    """KL(q || N(0, I)) of each latent dimension: [batch, d]."""
    mean, log_var = self.split(enc_out)
    d = mean.shape[-1]
    # The per-example KL of [batch * d, 1] arrays is the KL of each dimension.
    return lik.standard_gaussian_kl(mean=mean.reshape(-1, 1), log_var=log_var.reshape(-1, 1)
                                    ).reshape(-1, d)

  def kl(self, enc_out: Array) -> Array:
    """KL(q(z|x) || N(0, I)): [batch]."""
    mean, log_var = self.split(enc_out)
    return lik.standard_gaussian_kl(mean=mean, log_var=log_var)

  def log_density(self, z: Array, enc_out: Array) -> Array:
    """log q(z|x) of samples z [num, batch, d]: [num, batch]."""
    mean, log_var = self.split(enc_out)
    num, batch, d = z.shape
    nll = lik.gaussian_nll(x=z.reshape(num * batch, d),
                           mean=jnp.broadcast_to(mean, z.shape).reshape(num * batch, d),
                           log_var=jnp.broadcast_to(log_var, z.shape).reshape(num * batch, d))
    return -nll.reshape(num, batch)


@dataclasses.dataclass(frozen=True)
class DeterministicPosterior:
  """A plain autoencoder: z = encoder(x), no noise and no KL (q is a point mass, which has no
  density: the IWAE bound and the ELBO are undefined, and the objective is reconstruction)."""

  has_density = False

  def out_features(self, latent_dim: int) -> int:
    return latent_dim

  def code(self, enc_out: Array) -> Array:
    return enc_out

  def draw(self, enc_out: Array, rng: PRNGKey, num: int) -> Array:
    del rng
    return jnp.broadcast_to(enc_out, (num, *enc_out.shape))

  def kl_per_dim(self, enc_out: Array) -> Array:
    return jnp.zeros_like(enc_out)

  def kl(self, enc_out: Array) -> Array:
    return jnp.zeros(enc_out.shape[:1], enc_out.dtype)

  def log_density(self, z: Array, enc_out: Array) -> Array:
    raise ValueError("a deterministic posterior has no density: use GaussianPosterior for "
                     "the IWAE bound.")


# ----------------------------------------------------------------------------------------------
# The image shown of p(x|z) (`model.image`): a pixel distribution of `gen_jax.pixels` and the
# decoder's output [..., h, w, c, P] -> images [..., h, w, c] in [-1, 1].
# ----------------------------------------------------------------------------------------------


def mode_image(likelihood: pixels.PixelDistribution, params: Array) -> Array:
  """Each pixel's most probable value under p(x|z): images [..., h, w, c] in [-1, 1]."""
  return likelihood.mode(params)


def mean_image(likelihood: pixels.PixelDistribution, params: Array) -> Array:
  """Each pixel's expected value under p(x|z): images [..., h, w, c] in [-1, 1]."""
  return likelihood.mean(params)


# ----------------------------------------------------------------------------------------------
# Objectives: what training minimises, given the method's networks.
# ----------------------------------------------------------------------------------------------


class Objective:
  """What training minimises: `objective(vae, params, x, rng, updates) -> (loss, metrics)`,
  with x [batch, h, w, c] and `updates` the number of updates made so far ([] int32)."""

  def __call__(self, vae: "VAE", params: Params, x: Array, rng: PRNGKey, updates: Array
               ) -> tuple[Array, dict[str, Array]]:
    raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class ELBO(Objective):
  """-ELBO = E_q[-log p(x|z)] (one sample) + w * KL(q(z|x) || N(0, I)), with the analytic KL.

  Attributes:
    beta: the KL weight w after warm-up (Higgins et al. 2017); 1 gives the ELBO.
    free_bits: lambda of Kingma et al. 2016 (IAF, appendix C.8): each latent dimension's KL,
      averaged over the batch, is replaced by max(lambda, KL_d), so dimensions below lambda nats
      get no pressure towards the prior. 0 disables it.
    kl_warmup_steps: w rises linearly, w = beta * min(1, (updates + 1) / kl_warmup_steps), over
      this many updates (Bowman et al. 2016; Sonderby et al. 2016). 0 disables it.
  """

  beta: float = 1.0
  free_bits: float = 0.0
  kl_warmup_steps: int = 0

  def kl_weight(self, updates: Array) -> Array:
    if self.kl_warmup_steps <= 0:
      return jnp.asarray(self.beta, jnp.float32)
    ramp = jnp.minimum(1.0, (updates + 1).astype(jnp.float32) / self.kl_warmup_steps)
    return self.beta * ramp

  def __call__(self, vae: "VAE", params: Params, x: Array, rng: PRNGKey, updates: Array
               ) -> tuple[Array, dict[str, Array]]:
    enc_rng, z_rng, dec_rng = jax.random.split(rng, 3)
    enc_out = vae.encode(params, x, train=True, rng=enc_rng)
    z = vae.posterior.draw(enc_out, z_rng, 1)[0]
    nll = vae.likelihood.nll(vae.decode(params, z, train=True, rng=dec_rng), x)  # [batch]
    kl = vae.posterior.kl(enc_out)  # [batch]
    kl_term = jnp.mean(kl)
    if self.free_bits > 0:
      kl_term = jnp.sum(jnp.maximum(self.free_bits,
                                    jnp.mean(vae.posterior.kl_per_dim(enc_out), axis=0)))
    weight = self.kl_weight(updates)
    loss = jnp.mean(nll) + weight * kl_term
    num_dims = math.prod(x.shape[1:])
    return loss, {"nll": jnp.mean(nll), "kl": jnp.mean(kl), "kl_weight": weight,
                  "elbo_bpd": jnp.mean(lik.bits_per_dim(nll=nll + kl, num_dims=num_dims))}


@dataclasses.dataclass(frozen=True)
class IWAE(Objective):
  """-L_k, the k-sample importance-weighted bound of Burda et al. 2016 (eq. 8), trained through
  reparameterised samples. k = 1 is the ELBO with a sampled KL.

  Attributes:
    train_samples: k, the importance samples per training example.
  """

  train_samples: int = 5

  def __call__(self, vae: "VAE", params: Params, x: Array, rng: PRNGKey, updates: Array
               ) -> tuple[Array, dict[str, Array]]:
    del updates
    enc_rng, z_rng, dec_rng = jax.random.split(rng, 3)
    enc_out = vae.encode(params, x, train=True, rng=enc_rng)
    z = vae.posterior.draw(enc_out, z_rng, self.train_samples)  # [k, batch, d]
    nll, log_weights = vae.nll_and_log_weights(params, x, enc_out, z, train=True, rng=dec_rng)
    bound = lik.iwae_bound(log_weights=log_weights)  # [batch]
    num_dims = math.prod(x.shape[1:])
    return -jnp.mean(bound), {
        "nll": jnp.mean(nll), "kl": jnp.mean(vae.posterior.kl(enc_out)),
        "iwae_bpd": jnp.mean(lik.bits_per_dim(nll=-bound, num_dims=num_dims))}


# ----------------------------------------------------------------------------------------------
# The method.
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VAE:
  """A (variational) autoencoder on `batch["image"]`, [batch, h, w, c] in [-1, 1].

  Attributes:
    encoder: `apply(variables, images, train=...) -> [batch, posterior.out_features(d)]`.
    decoder: `apply(variables, z [batch, d], train=...) -> [batch, h, w, c, P]`, with P the
      likelihood's `params_per_pixel`.
    posterior: `GaussianPosterior()` or `DeterministicPosterior()`.
    likelihood: a distribution of `gen_jax.pixels` (`Categorical`, `DiscretizedLogistic`, ...).
    objective: an `Objective`: `ELBO(...)` or `IWAE(k)`.
    latent_dim: d; the prior is N(0, I_d).
    eval_samples: importance samples per example for `evaluate`'s ELBO and IWAE estimates.
    eval_chunk: samples decoded at once (a `lax.map` over eval_samples / eval_chunk chunks
      keeps memory bounded); must divide eval_samples.
    image_fn: `image_fn(likelihood, params) -> images`, the image of p(x|z) that `generate`
      (and so `sample`, `reconstruct`, `interpolate_images`) returns: `mode_image` or
      `mean_image`.
  """

  encoder: nn.Module
  decoder: nn.Module
  posterior: GaussianPosterior | DeterministicPosterior
  likelihood: pixels.PixelDistribution
  objective: Objective
  latent_dim: int
  eval_samples: int = 100
  eval_chunk: int = 50
  image_fn: Callable[[pixels.PixelDistribution, Array], Array] = mode_image

  def __post_init__(self):
    if self.eval_samples < 1 or self.eval_chunk < 1 or self.eval_samples % self.eval_chunk:
      raise SettingError(f"model.eval_chunk ({self.eval_chunk}) must divide model.eval_samples "
                         f"({self.eval_samples}), both positive.")
    if isinstance(self.objective, IWAE) and not self.posterior.has_density:
      raise SettingError("the IWAE objective (model.objective='iwae') needs a posterior with a "
                         "density: set model.posterior='gaussian', or model.objective='elbo' for "
                         "a plain autoencoder.")

  @property
  def players(self) -> tuple[Player, ...]:
    return (Player(PLAYER, self.loss),)

  def init(self, rng: PRNGKey, batch: Batch) -> Variables:
    enc_rng, dec_rng = jax.random.split(rng)
    images = jnp.asarray(batch["image"], jnp.float32)
    z = jnp.zeros((images.shape[0], self.latent_dim), jnp.float32)
    params = {"encoder": self.encoder.init(enc_rng, images)["params"],
              "decoder": self.decoder.init(dec_rng, z)["params"]}
    return {"params": {PLAYER: params}, "model_state": {"updates": jnp.zeros([], jnp.int32)}}

  # The networks as functions of the player's parameters.

  def encode(self, params: Params, images: Array, *, train: bool = False,
             rng: PRNGKey | None = None) -> Array:
    """The encoder's output [batch, posterior.out_features(d)]; `rng` drives dropout."""
    rngs = {"dropout": rng} if train else {}
    return self.encoder.apply({"params": params["encoder"]}, images, train=train, rngs=rngs)

  def decode(self, params: Params, z: Array, *, train: bool = False,
             rng: PRNGKey | None = None) -> Array:
    """Pixel distribution parameters [batch, h, w, c, P] of latents z [batch, d]."""
    rngs = {"dropout": rng} if train else {}
    return self.decoder.apply({"params": params["decoder"]}, z, train=train, rngs=rngs)

  def nll_and_log_weights(self, params: Params, x: Array, enc_out: Array, z: Array, *,
                          train: bool = False, rng: PRNGKey | None = None
                          ) -> tuple[Array, Array]:
    """-log p(x|z) and log w = log p(x|z) + log p(z) - log q(z|x) for z [k, batch, d]:
    both [k, batch]."""
    k, batch, d = z.shape
    flat_z = z.reshape(k * batch, d)
    flat_x = jnp.broadcast_to(x, (k, *x.shape)).reshape(k * batch, *x.shape[1:])
    nll = self.likelihood.nll(self.decode(params, flat_z, train=train, rng=rng), flat_x)
    nll = nll.reshape(k, batch)
    log_prior = -lik.gaussian_nll(x=flat_z, mean=0.0, log_var=0.0).reshape(k, batch)
    log_weights = lik.log_importance_weights(
        log_likelihood=-nll, log_prior=log_prior,
        log_posterior=self.posterior.log_density(z, enc_out))
    return nll, log_weights

  # The player's loss.

  def loss(self, params_all, player_params, batch, rng, model_state):
    del params_all
    x = jnp.asarray(batch["image"], jnp.float32)
    updates = model_state["updates"]
    loss, metrics = self.objective(self, player_params, x, rng, updates)
    return loss, (metrics, {**model_state, "updates": updates + 1})

  # Evaluation.

  def bounds(self, params: Params, x: Array, rng: PRNGKey, num_samples: int, chunk: int
             ) -> dict[str, Array]:
    """Per-example estimates in nats, [batch] each, from `num_samples` draws of q(z|x):

      nll    the mean over the draws of -log p(x|z) (the reconstruction term),
      kl     the analytic KL(q(z|x) || N(0, I)),
      elbo   nll + kl: the negative ELBO (an upper bound on -log p(x)),
      iwae   -L_k with k = num_samples: a tighter upper bound on -log p(x).

    The draws are decoded `chunk` at a time by `lax.map`, so memory grows with the batch
    times `chunk`, not `num_samples`; the log-weights themselves are [num_samples, batch].
    """
    enc_out = self.encode(params, x)

    def one_chunk(index):
      z = self.posterior.draw(enc_out, jax.random.fold_in(rng, index), chunk)
      return self.nll_and_log_weights(params, x, enc_out, z)

    nll, log_weights = jax.lax.map(one_chunk, jnp.arange(num_samples // chunk))
    nll = nll.reshape(num_samples, -1)
    log_weights = log_weights.reshape(num_samples, -1)
    kl = self.posterior.kl(enc_out)
    mean_nll = jnp.mean(nll, axis=0)
    return {"nll": mean_nll, "kl": kl, "elbo": lik.negative_elbo(nll=mean_nll, kl=kl),
            "iwae": -lik.iwae_bound(log_weights=log_weights)}

  def evaluate(self, variables: Variables, batch: Batch, rng: PRNGKey) -> dict[str, Array]:
    """Per-example metrics [batch] in bits per dim: `elbo_bpd` and `iwae_bpd` (upper bounds
    on the NLL, k = eval_samples), `recon_bpd` and `kl_bpd`, its two terms. A plain autoencoder
    has neither bound: it reports `recon_bpd`, the NLL of the image decoded from its code."""
    params = variables["params"][PLAYER]
    x = jnp.asarray(batch["image"], jnp.float32)
    num_dims = math.prod(x.shape[1:])
    bpd = lambda nats: lik.bits_per_dim(nll=nats, num_dims=num_dims)
    if not self.posterior.has_density:
      code = self.posterior.code(self.encode(params, x))
      return {"recon_bpd": bpd(self.likelihood.nll(self.decode(params, code), x))}
    b = self.bounds(params, x, rng, self.eval_samples, self.eval_chunk)
    return {"elbo_bpd": bpd(b["elbo"]), "iwae_bpd": bpd(b["iwae"]),
            "recon_bpd": bpd(b["nll"]), "kl_bpd": bpd(b["kl"])}

  # Sampling, reconstructions and interpolations: images [n, h, w, c] in [-1, 1], each the
  # `image_fn` (mode or mean) of its pixel distributions.

  def generate(self, variables: Variables, z: Array) -> Array:
    """The image of p(x|z) (its mode or mean, by `image_fn`) for latents z [n, d]:
    [n, h, w, c]."""
    return self.image_fn(self.likelihood, self.decode(variables["params"][PLAYER], z))

  def reconstruct(self, variables: Variables, images: Array) -> Array:
    """Decoded posterior means (codes) of images [n, h, w, c]: [n, h, w, c]."""
    params = variables["params"][PLAYER]
    return self.generate(variables, self.posterior.code(self.encode(params, images)))

  def interpolate_images(self, variables: Variables, start: Array, end: Array, steps: int,
                         path_fn: Callable[[Array, Array, Array], Array] = spherical_path
                         ) -> Array:
    """Decoded paths between the codes of images `start` and `end` [n, h, w, c]:
    [n * steps, h, w, c], row by row (path i is images i * steps ... (i + 1) * steps - 1)."""
    params = variables["params"][PLAYER]
    z0 = self.posterior.code(self.encode(params, start))
    z1 = self.posterior.code(self.encode(params, end))
    return self.generate(variables, interpolate(z0, z1, steps, path_fn).reshape(-1, z0.shape[-1]))

  def sample(self, variables: Variables, rng: PRNGKey, num: int) -> dict[str, Array]:
    """`samples`: decoded draws z ~ N(0, I), [num, h, w, c]. `interpolation`: s = isqrt(num)
    spherical paths of s steps between pairs of prior draws, [s * s, h, w, c] (one path per row
    of the loop's square grid). A plain autoencoder's decoder gets the same N(0, I) vectors."""
    z_rng, path_rng = jax.random.split(rng)
    z = jax.random.normal(z_rng, (num, self.latent_dim))
    steps = max(math.isqrt(num), 2)
    ends = jax.random.normal(path_rng, (2, steps, self.latent_dim))
    path = interpolate(ends[0], ends[1], steps, spherical_path).reshape(-1, self.latent_dim)
    return {"samples": self.generate(variables, z), "interpolation": self.generate(variables, path)}


# ----------------------------------------------------------------------------------------------
# Building from a config: each strategy a config names is a member of a `names.Kind`, configured
# from the model config (`names.Kind.build`).
# ----------------------------------------------------------------------------------------------

NETWORKS = names.Kind("model.networks", __name__, suffix="_networks")
POSTERIORS = names.Kind("model.posterior", __name__, suffix="_posterior")
LIKELIHOODS = names.Kind("model.likelihood", pixels,
                         where=names.subclass_of(pixels.PixelDistribution))
OBJECTIVES = names.Kind("model.objective", __name__, where=names.subclass_of(Objective))
IMAGES = names.Kind("model.image", __name__, suffix="_image")


def mlp_networks(m: ml_collections.ConfigDict, image_shape: tuple[int, ...], out_features: int,
                 params_per_pixel: int) -> tuple[nn.Module, nn.Module]:
  return (vae_nets.MLPEncoder(features=tuple(m.encoder_features), out_features=out_features,
                              activation=m.activation, dropout=m.dropout),
          vae_nets.MLPDecoder(features=tuple(m.decoder_features), image_shape=image_shape,
                              params_per_pixel=params_per_pixel, activation=m.activation,
                              dropout=m.dropout))


def conv_networks(m: ml_collections.ConfigDict, image_shape: tuple[int, ...], out_features: int,
                  params_per_pixel: int) -> tuple[nn.Module, nn.Module]:
  return (vae_nets.ConvEncoder(widths=tuple(m.encoder_widths), out_features=out_features,
                               activation=m.activation, dropout=m.dropout),
          vae_nets.ConvDecoder(widths=tuple(m.decoder_widths), image_shape=image_shape,
                               params_per_pixel=params_per_pixel, activation=m.activation,
                               dropout=m.dropout))


def from_config(config: ml_collections.ConfigDict, spec: DataSpec | None = None) -> VAE:
  """The VAE of `config.model`; the image shape and grey levels that the config leaves unset
  (`()`, 0) are the data's (`spec`: its "image" entry and `num_levels`)."""
  m = ml_collections.ConfigDict(config.model.to_dict())
  if not m.image_shape:
    if spec is None:
      raise SettingError("model.image_shape is () and no data spec was given: pass "
                         "from_config(config, spec) or set model.image_shape, e.g. (8, 8, 1).")
    m.image_shape = spec.shape("image")
  if not m.num_levels and spec is not None:
    m.num_levels = spec.num_levels or 0
  posterior = POSTERIORS.build(m.posterior, m)
  likelihood = LIKELIHOODS.build(m.likelihood, m)
  encoder, decoder = NETWORKS.get(m.networks)(
      m, tuple(m.image_shape), posterior.out_features(m.latent_dim), likelihood.params_per_pixel)
  return VAE(encoder=encoder, decoder=decoder, posterior=posterior, likelihood=likelihood,
             objective=OBJECTIVES.build(m.objective, m), latent_dim=m.latent_dim,
             eval_samples=m.eval_samples, eval_chunk=m.eval_chunk,
             image_fn=IMAGES.get(m.image))
