"""Stage 2 of two-stage generation: an autoregressive prior over a frozen VQ-VAE's codes.

The tokenizer is a trained `vqvae` run, named by `config.frozen.tokenizer` and handed over
restored (`gen_jax.train.setup`); it is never trained here. Each training image becomes its code
grid [gh, gw, depth], read in raster order over the grid and, at each position, over depth
(the RQ-Transformer's order, Lee et al. 2022, Sec. 3.2, here with one transformer over the
flattened sequence), and an image transformer with 2-D positions
(`gen_jax.methods.autoregressive_image`, its `image_transformer` network) learns p(codes) as a
product of categoricals over the codebook. Sampling draws the codes one at a time with the KV
cache (temperature, top-k, top-p) and decodes them with the tokenizer's decoder; with
`model.label_key` the prior is class-conditional (a class start token), and with
`model.label_dropout` > 0 its samples can use classifier-free guidance (`model.guidance_scale`,
as in `gen_jax.methods.autoregressive_image`).

Evaluation reports the exact negative log-likelihood of the test images' codes in bits per code
and per image (the image's likelihood under the two-stage model is not computed: the decoder
maps a code grid to one image distribution, which the prior does not score).
"""

import dataclasses
import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections

from gen_jax import pixels
from gen_jax.conditioning import Conditioning
from gen_jax.errors import SettingError
from gen_jax.methods import autoregressive_image as ar
from gen_jax.methods.base import DataSpec, Player, frozen_run
from gen_jax.types import Array, Batch, PRNGKey, Variables

PLAYER = "model"
FROZEN_PARTS = ("tokenizer",)
SAMPLING_KEYS = ar.SAMPLING_KEYS


def default_model_config() -> dict[str, Any]:
  return dict(
      # The image transformer over the code grid: fields of TransformerConfig.
      num_layers=4, num_heads=4, d_model=128, d_ff=512, dropout_rate=0.1, norm="layer",
      norm_params=True, activation="gelu",
      positions_2d="learned",  # learned | sinusoidal (row, column and depth embeddings)
      image_key="image",  # the batch entry of the images the tokenizer encodes
      label_key="",  # "" unconditional; else the batch entry of int labels ("label")
      num_classes=0,  # number of labels when label_key is set
      label_dropout=0.0,  # probability of training on the null label (for guidance)
      guidance_scale=1.0,  # w: 0 unconditional, 1 conditional, > 1 guided (needs label_dropout)
      temperature=1.0, top_k=0, top_p=1.0,  # samples (gen_jax.sampling.decoding.filter_logits)
      sample_cache=True,
      compute_dtype="float32",  # "bfloat16": mixed precision for GPUs and TPUs
  )


@dataclasses.dataclass(frozen=True)
class CodePrior:
  """A prior over a frozen tokenizer's codes (module docstring).

  Attributes:
    prior: the `AutoregressiveImage` over the code grid (its "images" are code grids, its
      levels the codebook entries).
    tokenizer: the frozen `VQVAE` method.
    tokenizer_variables: its restored variables, kept in the model state as
      `model_state["frozen"]["tokenizer"]`.
    image_key: the batch entry of the images.
  """

  prior: ar.AutoregressiveImage
  tokenizer: Any
  tokenizer_variables: Any
  image_key: str = "image"

  @property
  def players(self) -> tuple[Player, ...]:
    return (Player(PLAYER, self.loss),)

  @property
  def conditioning(self) -> Conditioning:
    return self.prior.conditioning

  def codes(self, tokenizer_variables: Variables, images: Array) -> Array:
    """The codes of images in the prior's order: [batch, gh * gw * depth] int32."""
    codes = jax.lax.stop_gradient(self.tokenizer.encode(tokenizer_variables, images))
    return codes.reshape(codes.shape[0], -1)

  def init(self, rng: PRNGKey, batch: Batch) -> Variables:
    ar.check_unit_images(batch[self.image_key], self.image_key)
    codes = self.codes(self.tokenizer_variables, jnp.asarray(batch[self.image_key], jnp.float32))
    params = self.prior.network.init(rng, codes, self.conditioning.eval(batch))
    return {"params": {PLAYER: params},
            "model_state": {"frozen": {"tokenizer": self.tokenizer_variables}}}

  def _nll(self, params, model_state, batch: Batch, *, train: bool = False,
           rng: PRNGKey | None = None) -> Array:
    """-log p(codes) in nats per image, [batch]; in training some labels are dropped
    (`conditioning.drop_prob`)."""
    codes = self.codes(model_state["frozen"]["tokenizer"],
                       jnp.asarray(batch[self.image_key], jnp.float32))
    if train:
      label_rng, rng = jax.random.split(rng)
      labels = self.conditioning.train(batch, label_rng)
    else:
      labels = self.conditioning.eval(batch)
    return self.prior.nll(params, self.prior.images(codes), labels, train=train, rng=rng)

  def loss(self, params_all, player_params, batch: Batch, rng: PRNGKey, model_state):
    del params_all
    nll = self._nll(player_params, model_state, batch, train=True, rng=rng)
    loss = jnp.mean(nll) / self.prior.num_dims  # nats per code
    return loss, ({"bits_per_code": loss / math.log(2.0)}, model_state)

  def evaluate(self, variables: Variables, batch: Batch, rng: PRNGKey) -> dict[str, Array]:
    """Per image: `bits_per_code` and `bits_per_image` of its codes under the prior."""
    del rng
    nll = self._nll(variables["params"][PLAYER], variables["model_state"], batch)
    bits = nll / math.log(2.0)
    return {"bits_per_code": bits / self.prior.num_dims, "bits_per_image": bits}

  def sample_codes(self, variables: Variables, rng: PRNGKey, num: int, *,
                   labels: Array | None = None, **kwargs) -> Array:
    """Code grids [num, gh, gw, depth] drawn from the prior; `kwargs` are
    `AutoregressiveImage.sample_levels`' (temperature, cached, guidance_scale)."""
    if labels is None:
      labels = self.conditioning.blocks(num)
    levels = self.prior.sample_levels(variables, rng, labels, num, **kwargs)
    return levels.reshape(num, *self.prior.image_shape)

  def sample(self, variables: Variables, rng: PRNGKey, num: int, *, labels: Array | None = None,
             **kwargs) -> Array:
    """Images [num, h, w, c] in [-1, 1]: codes from the prior, decoded by the tokenizer; a
    class-conditional prior draws them in class blocks unless `labels` are given."""
    codes = self.sample_codes(variables, rng, num, labels=labels, **kwargs)
    return self.tokenizer.decode(variables["model_state"]["frozen"]["tokenizer"], codes)


def from_config(config: ml_collections.ConfigDict, spec: DataSpec,
                frozen: Mapping[str, Any]) -> CodePrior:
  """The prior of `config.model` over the codes of the frozen `tokenizer` (a `vqvae` run)."""
  m = config.model
  part = frozen_run(frozen, "tokenizer", "vqvae")
  image_shape = spec.shape(m.image_key, what="model.image_key")
  trained_on = part.spec.shape(part.config.model.image_key)
  if tuple(image_shape) != tuple(trained_on):
    raise SettingError(f"The tokenizer {part.workdir} was trained on {trained_on} images, these "
                     f"data have {tuple(image_shape)}: use the data it was trained on.")
  code_shape = part.method.code_shape(tuple(image_shape))
  num_codes = part.method.num_codes
  conditioning = ar.class_conditioning(m, spec)
  num_classes = conditioning.num_conditions if m.label_key else 0
  network = ar.image_transformer_network(m, code_shape, num_codes, num_codes, num_classes)
  prior = ar.AutoregressiveImage(
      network=network, likelihood=pixels.Categorical(num_codes), image_shape=code_shape,
      conditioning=conditioning, temperature=m.temperature, top_k=m.top_k, top_p=m.top_p,
      sample_cache=m.sample_cache, guidance_scale=m.guidance_scale)
  return CodePrior(prior=prior, tokenizer=part.method, tokenizer_variables=part.variables,
                   image_key=m.image_key)
