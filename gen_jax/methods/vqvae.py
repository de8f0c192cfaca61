"""VQ-VAE and RQ-VAE: stage 1 of two-stage generation, images to a small grid of discrete codes.

An encoder maps an image to a grid of vectors [gh, gw, code_dim]; a quantizer replaces each
vector by its nearest codebook entry (`vector_quantizer`, van den Oord et al. 2017) or by a sum
of `depth` entries, each quantizing what the levels before it left (`residual_quantizer`, Lee et
al. 2022); the decoder maps the quantized grid to the parameters of each pixel's distribution
(`gen_jax.pixels`). Gradients pass the quantizer straight through. The loss per image is

    -log p(x | z_q) / (h w c)  +  codebook loss  +  model.commitment_weight * commitment loss

(van den Oord et al. 2017, eq. 3; with `model.ema_decay` > 0 the codebook follows exponential
moving averages of its assigned vectors instead and the codebook loss is 0). The codes
[gh, gw, depth] of an image are what a stage-2 prior (`gen_jax.methods.code_prior`) models;
`encode`, `decode` and `reconstruct` are its interface. The quantizer's statistics (EMA
codebook, cluster sizes) are the model state, updated by the train step, not by the optimizer.

Evaluation reports the reconstruction's negative log-likelihood in bits per dimension
(`recon_bpd`), the codebook perplexity (the exponential of the entropy of code usage) and usage
(the fraction of codes used) per batch. A VQ-VAE has no prior of its own, so it does not sample.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from gen_jax import names, pixels
from gen_jax.errors import SettingError
from gen_jax.methods.autoregressive_image import check_unit_images
from gen_jax.methods.base import DataSpec, Player
from gen_jax.nn import quantizers
from gen_jax.nn.vq_nets import VQAutoencoder, VQDecoder, VQEncoder
from gen_jax.types import Array, Batch, PRNGKey, Variables

PLAYER = "vqvae"
SAMPLING_KEYS = frozenset({"image"})
MODEL_RULES = dict(
    num_codes=dict(low=2, note="entries of each codebook"),
    code_dim=dict(low=1, note="width of the code vectors"),
    depth=dict(low=1, note="residual quantization levels (1 for a plain VQ-VAE)"),
    ema_decay=dict(low=0, high=1, high_open=True,
                   note="0 trains the codebook by its loss; else EMA updates"),
    dead_code_threshold=dict(low=0, note="EMA cluster size below which a code is restarted; 0 "
                                         "never"),
    commitment_weight=dict(low=0, note="beta of the commitment loss"),
    downsample=dict(low=0, note="halvings of the resolution: 8x8 -> 4x4 is 1"),
)


def default_model_config() -> dict[str, Any]:
  return dict(
      quantizer="vector_quantizer",  # `QUANTIZERS`: vector_quantizer | residual_quantizer
      num_codes=64, code_dim=16,
      depth=1,  # residual_quantizer's levels
      shared_codebook=True,  # residual_quantizer: one codebook for every level (Lee et al.)
      ema_decay=0.99, dead_code_threshold=0.0, commitment_weight=0.25,
      encoder_widths=(32, 64), decoder_widths=(64, 32), downsample=1, activation="gelu",
      likelihood="categorical",  # a gen_jax.pixels distribution of each pixel given z_q
      num_levels=0,  # grey levels; 0 reads them from the data
      num_mixtures=5,  # logistic_mixture's components
      image_key="image",
      image="mode",  # `IMAGES`: how decoded pixel distributions become images: mode | mean
  )


def mode_image(likelihood: pixels.PixelDistribution, params: Array) -> Array:
  """Each pixel at its most probable value."""
  return likelihood.mode(params)


def mean_image(likelihood: pixels.PixelDistribution, params: Array) -> Array:
  """Each pixel at its expected value."""
  return likelihood.mean(params)


@dataclasses.dataclass(frozen=True)
class VQVAE:
  """A VQ-VAE or RQ-VAE (module docstring).

  Attributes:
    network: the `VQAutoencoder`.
    likelihood: each pixel's distribution given the quantized grid.
    commitment_weight: beta of the commitment loss.
    image_key: the batch entry of the images, [batch, h, w, c] in [-1, 1].
    image_fn: `image_fn(likelihood, params) -> images` for `decode` and `reconstruct`.
  """

  network: VQAutoencoder
  likelihood: pixels.PixelDistribution
  commitment_weight: float = 0.25
  image_key: str = "image"
  image_fn: Any = mode_image

  @property
  def players(self) -> tuple[Player, ...]:
    return (Player(PLAYER, self.loss),)

  @property
  def num_codes(self) -> int:
    return self.network.quantizer.num_codes

  def init(self, rng: PRNGKey, batch: Batch) -> Variables:
    check_unit_images(batch[self.image_key], self.image_key)
    images = jnp.asarray(batch[self.image_key], jnp.float32)
    variables = self.network.init({"params": rng, "quantizer": rng}, images)
    state = {k: v for k, v in variables.items() if k != "params"}
    return {"params": {PLAYER: variables["params"]}, "model_state": state}

  def _apply(self, params, model_state, *args, **kwargs):
    return self.network.apply({"params": params, **model_state}, *args, **kwargs)

  def loss(self, params_all, player_params, batch: Batch, rng: PRNGKey, model_state):
    del params_all
    images = jnp.asarray(batch[self.image_key], jnp.float32)
    (out, _, aux), updated = self._apply(player_params, model_state, images, train=True,
                                         mutable=list(model_state), rngs={"quantizer": rng})
    nll = self.likelihood.nll(out, images)  # [batch] nats
    dims = math.prod(images.shape[1:])
    recon = jnp.mean(nll) / dims
    loss = recon + aux["codebook_loss"] + self.commitment_weight * aux["commitment_loss"]
    metrics = {"recon_bpd": recon / math.log(2.0), "commitment": aux["commitment_loss"],
               "codebook": aux["codebook_loss"], "perplexity": aux["perplexity"],
               "usage": aux["usage"]}
    return loss, (metrics, {**model_state, **updated})

  def evaluate(self, variables: Variables, batch: Batch, rng: PRNGKey) -> dict[str, Array]:
    """Per image: `recon_bpd`, -log2 p(x | z_q) / (h w c); and the batch's code `perplexity`
    and `usage` (each image carries its batch's value)."""
    del rng
    images = jnp.asarray(batch[self.image_key], jnp.float32)
    out, _, aux = self._apply(variables["params"][PLAYER], variables["model_state"], images)
    dims = math.prod(images.shape[1:])
    ones = jnp.ones(images.shape[0])
    return {"recon_bpd": self.likelihood.nll(out, images) / (dims * math.log(2.0)),
            "perplexity": aux["perplexity"] * ones, "usage": aux["usage"] * ones}

  def encode(self, variables: Variables, images: Array) -> Array:
    """The codes [batch, gh, gw, depth] int32 of images [batch, h, w, c] in [-1, 1]."""
    return self._apply(variables["params"][PLAYER], variables["model_state"],
                       jnp.asarray(images, jnp.float32), method=VQAutoencoder.encode)

  def decode(self, variables: Variables, codes: Array) -> Array:
    """Images [batch, h, w, c] in [-1, 1] of codes [batch, gh, gw, depth]."""
    out = self._apply(variables["params"][PLAYER], variables["model_state"], codes,
                      method=VQAutoencoder.decode_codes)
    return self.image_fn(self.likelihood, out)

  def reconstruct(self, variables: Variables, images: Array) -> Array:
    """decode(encode(images)): [batch, h, w, c]."""
    return self.decode(variables, self.encode(variables, images))

  def code_shape(self, image_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(gh, gw, depth) of the codes of an image of `image_shape`."""
    codes = jax.eval_shape(lambda: self.network.init_with_output(
        {"params": jax.random.PRNGKey(0), "quantizer": jax.random.PRNGKey(0)},
        jnp.zeros((1, *image_shape)), method=VQAutoencoder.encode)[0])
    return tuple(int(n) for n in codes.shape[1:])


QUANTIZERS = names.Kind("model.quantizer", quantizers,
                        where=lambda v: isinstance(v, type) and v.__name__.endswith("Quantizer"))
LIKELIHOODS = names.Kind("model.likelihood", pixels,
                         where=names.subclass_of(pixels.PixelDistribution))
IMAGES = names.Kind("model.image", __name__, suffix="_image")


def from_config(config: ml_collections.ConfigDict, spec: DataSpec) -> VQVAE:
  """The VQ-VAE of `config.model` for the images `spec` describes."""
  m = ml_collections.ConfigDict(config.model.to_dict())
  image_shape = spec.shape(m.image_key, what="model.image_key")
  if not m.num_levels:
    m.num_levels = spec.num_levels or 0
  likelihood = LIKELIHOODS.build(m.likelihood, m)
  factor = 2 ** m.downsample
  if image_shape[0] % factor or image_shape[1] % factor:
    raise SettingError(f"model.downsample={m.downsample} halves the {image_shape[0]}x"
                     f"{image_shape[1]} images {m.downsample} times, which does not divide "
                     f"them: lower it.")
  network = VQAutoencoder(
      encoder=VQEncoder(widths=tuple(m.encoder_widths), code_dim=m.code_dim,
                        downsample=m.downsample, activation=m.activation),
      quantizer=QUANTIZERS.build(m.quantizer, m),
      decoder=VQDecoder(image_shape=tuple(image_shape),
                        params_per_pixel=likelihood.params_per_pixel,
                        widths=tuple(m.decoder_widths), upsample=m.downsample,
                        activation=m.activation))
  return VQVAE(network=network, likelihood=likelihood, commitment_weight=m.commitment_weight,
               image_key=m.image_key, image_fn=IMAGES.get(m.image))
