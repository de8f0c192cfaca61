"""Autoregressive image models: p(x) = prod_n p(x_n | x_<n) over sub-pixels in raster order.

An image [h, w, c] of K grey levels is N = h * w * c sub-pixels, read row by row, left to right,
and the channels of a pixel in order. A causal network gives the parameters of each sub-pixel's
distribution (a `gen_jax.pixels` distribution over the K levels: `model.likelihood`) from the
sub-pixels before it, so the exact log-likelihood of an image is the sum of its N conditional
log-probabilities, all computed in one pass (teacher forcing). Two networks, one framework:

  gated_pixel_cnn    the gated PixelCNN (van den Oord et al., 2016b: vertical and horizontal
                     stacks, no blind spot), `gen_jax.nn.pixelcnn`
  pixel_cnn          the plain masked-convolution stack (van den Oord et al., 2016a), which has
                     a blind spot; kept for the contrast
  image_transformer  a causal transformer over sub-pixel tokens with 2-D positions
                     (`gen_jax.nn.image_transformer`; Parmar et al., 2018; Chen et al., 2020)

The convolutional networks see the image with each pixel's channels laid side by side as
columns ([h, w * c, 1]): raster order over that grid is the sub-pixel order, so the masks of one
channel order colours within a pixel too.

Sampling is a `lax.scan` over the N sub-pixels with a static trip count: the transformer
appends one token per step to its KV cache (`model.sample_cache`), the convolutional networks
recompute the whole pass each step (any network can, which is what the cached sampler is tested
against). `complete` keeps the top rows of given images and samples the rest. With
`model.label_key` set the model is class-conditional (a label embedding in the PixelCNN's gates;
a class start token for the transformer) and its samples come in class blocks. Trained with
`model.label_dropout` > 0 (the label replaced by a null label), one network is also the
unconditional model, and samples can use classifier-free guidance (Ho & Salimans 2021) at each
step: log p_w(x_n | x_<n, y) = log p(x_n | x_<n) + w (log p(x_n | x_<n, y) - log p(x_n | x_<n)),
renormalised, with w = `model.guidance_scale` (0 unconditional, 1 conditional, > 1 guided); the
conditional and unconditional passes run as one batch of 2 num sequences.

Evaluation reports the exact test negative log-likelihood in bits per dimension,
-log2 p(x) / N.
"""

import dataclasses
import inspect
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from gen_jax import names, pixels
from gen_jax.conditioning import ClassConditional, Conditioning, Unconditional
from gen_jax.errors import SettingError
from gen_jax.losses import likelihood as lik
from gen_jax.methods.base import DataSpec, Player
from gen_jax.nn import image_transformer, pixelcnn
from gen_jax.nn.transformer import TransformerConfig
from gen_jax.sampling import decoding
from gen_jax.types import Array, Batch, PRNGKey, Variables

PLAYER = "model"
# Model keys that only change how a run samples, never the parameters.
SAMPLING_KEYS = frozenset({"temperature", "top_k", "top_p", "sample_cache", "guidance_scale"})
# Ranges of the keys no other method has (`gen_jax.train.config.MODEL_RULES` holds the shared
# ones): the arguments of a config `Rule`.
MODEL_RULES = dict(
    channels=dict(low=1, note="channels of each PixelCNN stack"),
    kernel_size=dict(low=1, note="an odd kernel size of the PixelCNN's layers after the first"),
    first_kernel_size=dict(low=1, note="an odd kernel size of the PixelCNN's first layer"),
)


def default_model_config() -> dict[str, Any]:
  return dict(
      network="gated_pixel_cnn",  # `NETWORKS`: gated_pixel_cnn | pixel_cnn | image_transformer
      likelihood="categorical",  # a distribution of gen_jax.pixels over the grey levels:
      # categorical | discretized_logistic | logistic_mixture
      num_levels=0,  # grey levels; 0 reads them from the data
      num_mixtures=5,  # logistic_mixture's components
      dropout_rate=0.0,  # dropout in every residual branch, during training
      # Mixed precision for GPUs and TPUs: "bfloat16" activations, float32 parameters and
      # likelihood.
      compute_dtype="float32",
      # PixelCNNs.
      channels=64, num_layers=6, kernel_size=3, first_kernel_size=7,
      # The image transformer (num_layers is shared): fields of TransformerConfig.
      num_heads=4, d_model=128, d_ff=512, norm="layer", norm_params=True,
      activation="gelu",
      positions_2d="learned",  # learned | sinusoidal
      image_key="image",  # the batch entry of the images, [batch, h, w, c] in [-1, 1]
      label_key="",  # "" unconditional; else the batch entry of int labels ("label")
      num_classes=0,  # number of labels when label_key is set
      label_dropout=0.0,  # probability of training on the null label (for guidance)
      guidance_scale=1.0,  # w: 0 unconditional, 1 conditional, > 1 guided (needs label_dropout)
      # Samples: the temperature divides each level's log-probability (0 is greedy); top_k and
      # top_p then keep the most probable levels (gen_jax.sampling.decoding.filter_logits).
      temperature=1.0, top_k=0, top_p=1.0,
      sample_cache=True,  # the transformer samples with its KV cache (else recomputes)
  )


# ----------------------------------------------------------------------------------------------
# Networks: each sees the levels [batch, N] of the sub-pixels in raster order and gives the
# parameters [batch, N, P] of each sub-pixel's distribution from the ones before it.
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ConvNetwork:
  """A PixelCNN over the image with each pixel's channels laid out as columns, [h, w * c, 1]."""

  net: nn.Module
  image_shape: tuple[int, int, int]
  num_levels: int
  cached = False

  def _image(self, levels: Array) -> Array:
    h, w, c = self.image_shape
    x = pixels.levels_to_unit(levels.astype(jnp.float32), self.num_levels)
    return x.reshape(-1, h, w * c, 1)

  def init(self, rng: PRNGKey, levels: Array, labels: Array | None) -> Any:
    return self.net.init(rng, self._image(levels), labels)["params"]

  def __call__(self, params: Any, levels: Array, labels: Array | None, *,
               train: bool = False, rng: PRNGKey | None = None) -> Array:
    deterministic = not train or rng is None
    out = self.net.apply({"params": params}, self._image(levels), labels,
                         deterministic=deterministic,
                         rngs=None if deterministic else {"dropout": rng})  # [b, h, w*c, P]
    return out.reshape(out.shape[0], -1, out.shape[-1])


@dataclasses.dataclass(frozen=True)
class TokenNetwork:
  """The image transformer: input n is the token before sub-pixel n (position 0 the start
  token), so the sequence is the start token and the levels shifted right by one."""

  net: image_transformer.ImageTransformer
  cached = True

  def _tokens(self, levels: Array, labels: Array | None) -> Array:
    start = self.net.start_tokens(labels, levels.shape[0])
    return jnp.concatenate([start[:, None], levels[:, :-1].astype(jnp.int32)], axis=1)

  def init(self, rng: PRNGKey, levels: Array, labels: Array | None) -> Any:
    return self.net.init(rng, self._tokens(levels, labels))["params"]

  def __call__(self, params: Any, levels: Array, labels: Array | None, *,
               train: bool = False, rng: PRNGKey | None = None) -> Array:
    deterministic = not train or rng is None
    return self.net.apply({"params": params}, self._tokens(levels, labels),
                          deterministic=deterministic,
                          rngs=None if deterministic else {"dropout": rng})

  def decode_step(self, params: Any, cache: Any, token: Array, index: Array
                  ) -> tuple[Array, Any]:
    """The parameters [batch, P] of sub-pixel `index` after feeding `token` [batch] (the start
    token or sub-pixel index - 1's level), and the updated cache."""
    out, mutated = self.net.apply({"params": params, "cache": cache}, token[:, None],
                                  start=index, decode=True, mutable=["cache"])
    return out[:, 0], mutated["cache"]


def _conv_network(cls, m: ml_collections.ConfigDict, image_shape, num_levels: int,
                  out_features: int, num_classes: int) -> ConvNetwork:
  net = cls(out_features=out_features, features=m.channels, num_layers=m.num_layers,
            kernel_size=m.kernel_size, first_kernel_size=m.first_kernel_size,
            num_classes=num_classes, dropout_rate=m.dropout_rate,
            dtype=jnp.dtype(m.compute_dtype))
  return ConvNetwork(net, image_shape, num_levels)


def gated_pixel_cnn_network(m: ml_collections.ConfigDict, image_shape, num_levels: int,
                            out_features: int, num_classes: int) -> ConvNetwork:
  return _conv_network(pixelcnn.GatedPixelCNN, m, image_shape, num_levels, out_features,
                       num_classes)


def pixel_cnn_network(m: ml_collections.ConfigDict, image_shape, num_levels: int,
                      out_features: int, num_classes: int) -> ConvNetwork:
  return _conv_network(pixelcnn.PixelCNN, m, image_shape, num_levels, out_features,
                       num_classes)


def image_transformer_network(m: ml_collections.ConfigDict, image_shape, num_levels: int,
                              out_features: int, num_classes: int) -> TokenNetwork:
  stack = TransformerConfig(
      vocab_size=num_levels, num_layers=m.num_layers, num_heads=m.num_heads, d_model=m.d_model,
      d_ff=m.d_ff, max_len=math.prod(image_shape), dropout_rate=m.dropout_rate,
      positions="none", norm=m.norm, norm_params=m.norm_params, activation=m.activation)
  return TokenNetwork(image_transformer.ImageTransformer(
      stack=stack, image_shape=tuple(image_shape), num_levels=num_levels,
      out_features=out_features, num_classes=num_classes, positions_2d=m.positions_2d,
      dtype=jnp.dtype(m.compute_dtype)))


# ----------------------------------------------------------------------------------------------
# The method.
# ----------------------------------------------------------------------------------------------


def check_unit_images(images: Any, key: str) -> None:
  """Refuses integer images: the models read grey levels scaled to [-1, 1].

  Raises:
    ValueError: `images` are not floating point (data.preprocess lacks "scale_to_unit").
  """
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise SettingError(f"The batch's {key!r} entries are {images.dtype} grey levels, but the model "
                     f"reads images scaled to [-1, 1]: add 'scale_to_unit' to data.preprocess.")


@dataclasses.dataclass(frozen=True)
class AutoregressiveImage:
  """An autoregressive model of images (module docstring).

  Attributes:
    network: a `ConvNetwork` or `TokenNetwork`.
    likelihood: each sub-pixel's distribution over the grey levels (`gen_jax.pixels`).
    image_shape: (h, w, c).
    conditioning: `Unconditional()` or `ClassConditional(...)` (`gen_jax.conditioning`).
    image_key: the batch entry of the images, [batch, h, w, c] in [-1, 1].
    temperature: the samples' temperature (0: the most probable level).
    top_k, top_p: the samples keep the top_k most probable levels (0: all), then the smallest
      set of them holding probability top_p (1: all); `decoding.filter_logits`.
    sample_cache: sample the transformer with its KV cache.
    guidance_scale: w of the samples' classifier-free guidance (module docstring).
  """

  network: ConvNetwork | TokenNetwork
  likelihood: pixels.LevelDistribution
  image_shape: tuple[int, int, int]
  conditioning: Conditioning = Unconditional()
  image_key: str = "image"
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  sample_cache: bool = True
  guidance_scale: float = 1.0

  @property
  def players(self) -> tuple[Player, ...]:
    return (Player(PLAYER, self.loss),)

  @property
  def num_dims(self) -> int:
    """N = h * w * c, the sub-pixels of an image."""
    return math.prod(self.image_shape)

  def levels(self, images: Array) -> Array:
    """Images [batch, h, w, c] in [-1, 1] -> their levels [batch, N] int32 in raster order."""
    levels = lik.levels_from_unit(images, self.likelihood.num_levels)
    return levels.reshape(levels.shape[0], -1).astype(jnp.int32)

  def images(self, levels: Array) -> Array:
    """Levels [batch, N] -> images [batch, h, w, c] in [-1, 1]."""
    x = pixels.levels_to_unit(levels.astype(jnp.float32), self.likelihood.num_levels)
    return x.reshape(-1, *self.image_shape)

  def init(self, rng: PRNGKey, batch: Batch) -> Variables:
    check_unit_images(batch[self.image_key], self.image_key)
    levels = self.levels(jnp.asarray(batch[self.image_key], jnp.float32))
    params = self.network.init(rng, levels, self.conditioning.eval(batch))
    return {"params": {PLAYER: params}, "model_state": {}}

  def nll(self, params: Any, images: Array, labels: Array | None, *, train: bool = False,
          rng: PRNGKey | None = None) -> Array:
    """-log p(x) in nats per image, [batch]: the sum over the N sub-pixels of
    -log p(x_n | x_<n), all from one pass of the network."""
    out = self.network(params, self.levels(images), labels, train=train, rng=rng)
    out = out.reshape(images.shape[0], *self.image_shape, out.shape[-1])
    return self.likelihood.nll(out, images)

  def loss(self, params_all, player_params, batch: Batch, rng: PRNGKey, model_state):
    del params_all
    images = jnp.asarray(batch[self.image_key], jnp.float32)
    label_rng, rng = jax.random.split(rng)
    labels = self.conditioning.train(batch, label_rng)
    nll = self.nll(player_params, images, labels, train=True, rng=rng)
    loss = jnp.mean(nll) / self.num_dims  # nats per dimension
    return loss, ({"bits_per_dim": loss / math.log(2.0)}, model_state)

  def evaluate(self, variables: Variables, batch: Batch, rng: PRNGKey) -> dict[str, Array]:
    """The exact test NLL in bits per dimension, per image [batch]."""
    del rng
    images = jnp.asarray(batch[self.image_key], jnp.float32)
    nll = self.nll(variables["params"][PLAYER], images, self.conditioning.eval(batch))
    return {"bits_per_dim": nll / (self.num_dims * math.log(2.0))}

  def _draw_level(self, log_probs: Array, rng: PRNGKey, temperature: float) -> Array:
    """A level [batch] from the log-probabilities [batch, K] of one sub-pixel's levels."""
    if temperature == 0:
      return jnp.argmax(log_probs, axis=-1).astype(jnp.int32)
    logits = decoding.filter_logits(log_probs, temperature=temperature, top_k=self.top_k,
                                    top_p=self.top_p)
    return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)

  def sample_levels(self, variables: Variables, rng: PRNGKey, labels: Array | None, num: int,
                    *, given: Array | None = None, num_given: int = 0,
                    temperature: float | None = None, cached: bool | None = None,
                    guidance_scale: float | None = None) -> Array:
    """Draws sub-pixel levels one at a time in raster order: [num, N] int32.

    Args:
      variables: {"params": {"model": ...}, ...}.
      rng: sub-pixel n is drawn with `fold_in(rng, n)` whichever sampler runs.
      labels: [num] int labels of a class-conditional model, else None.
      num: images to draw.
      given: [num, N] levels whose first `num_given` are kept instead of drawn (completion).
      temperature: default `self.temperature`; 0 takes the most probable level.
      cached: the transformer's KV cache (default `self.sample_cache`); other networks always
        recompute the whole pass at every step.
      guidance_scale: w of classifier-free guidance (default `self.guidance_scale`); used
        when `labels` are given and w != 1.
    """
    params = variables["params"][PLAYER]
    temperature = self.temperature if temperature is None else temperature
    cached = (self.sample_cache if cached is None else cached) and self.network.cached
    scale = self.guidance_scale if guidance_scale is None else guidance_scale
    guided = labels is not None and scale != 1.0
    n_dims = self.num_dims
    given = jnp.zeros((num, n_dims), jnp.int32) if given is None else given.astype(jnp.int32)
    if guided:  # rows num.. are the unconditional model's passes over the same levels
      labels = jnp.concatenate([labels, self.conditioning.null(num)])
      given = jnp.concatenate([given, given])
    rows = given.shape[0]

    def choose(out_n, index):
      """The level [rows] of sub-pixel `index` from the network's output [rows, P]."""
      log_probs = self.likelihood.level_log_probs(out_n[:, None, None, None, :])[:, 0, 0, 0]
      if guided:
        cond, uncond = log_probs[:num], log_probs[num:]
        log_probs = uncond + scale * (cond - uncond)
      drawn = self._draw_level(log_probs, jax.random.fold_in(rng, index), temperature)
      drawn = jnp.concatenate([drawn, drawn]) if guided else drawn
      return jnp.where(index < num_given, given[:, index], drawn)

    if cached:
      cache = decoding.init_cache(self.network.net, rows)

      def cached_step(carry, index):
        cache, token = carry
        out_n, cache = self.network.decode_step(params, cache, token, index)
        level = choose(out_n, index)
        return (cache, level), level

      start = self.network.net.start_tokens(labels, rows)
      _, levels = jax.lax.scan(cached_step, (cache, start), jnp.arange(n_dims))
      return levels.T[:num]

    def recompute_step(levels, index):
      out = self.network(params, levels, labels)  # [rows, N, P]
      level = choose(jax.lax.dynamic_index_in_dim(out, index, axis=1, keepdims=False), index)
      return levels.at[:, index].set(level), None

    levels, _ = jax.lax.scan(recompute_step, given, jnp.arange(n_dims))
    return levels[:num]

  def sample(self, variables: Variables, rng: PRNGKey, num: int, *, labels: Array | None = None,
             **kwargs) -> Array:
    """`num` images [num, h, w, c] in [-1, 1]; a class-conditional model draws them in class
    blocks unless `labels` [num] are given; `kwargs` are `sample_levels`' (temperature, cached,
    guidance_scale)."""
    if labels is None:
      labels = self.conditioning.blocks(num)
    return self.images(self.sample_levels(variables, rng, labels, num, **kwargs))

  def complete(self, variables: Variables, rng: PRNGKey, images: Array, rows: int, *,
               labels: Array | None = None, temperature: float | None = None) -> Array:
    """Keeps the top `rows` rows of `images` [num, h, w, c] (in [-1, 1]) and samples the rest:
    [num, h, w, c]. Repeat an image in `images` for several completions of it.

    Raises:
      ValueError: `rows` outside 0 .. h, or images of another shape than the model's.
    """
    h, w, c = self.image_shape
    if tuple(images.shape[1:]) != self.image_shape:
      raise ValueError(f"complete takes images [num, {h}, {w}, {c}], got {images.shape}.")
    if not 0 <= rows <= h:
      raise ValueError(f"rows must be in 0 .. {h} (the rows kept), got {rows}.")
    levels = self.sample_levels(variables, rng, labels, images.shape[0],
                                given=self.levels(images), num_given=rows * w * c,
                                temperature=temperature)
    return self.images(levels)


# ----------------------------------------------------------------------------------------------
# Building from a config.
# ----------------------------------------------------------------------------------------------

NETWORKS = names.Kind("model.network", __name__, suffix="_network", where=inspect.isfunction)
LIKELIHOODS = names.Kind("model.likelihood", pixels,
                         where=names.subclass_of(pixels.LevelDistribution))


def class_conditioning(m: ml_collections.ConfigDict, spec: DataSpec) -> Conditioning:
  """`ClassConditional` on `m.label_key` (with `m.label_dropout`), or `Unconditional()` when
  it is "".

  Raises:
    SettingError: guidance (`m.guidance_scale` != 1) asked of an unconditional model, or of one
      trained without label dropout (its null label was never trained).
  """
  if m.guidance_scale != 1.0 and (not m.label_key or m.label_dropout == 0):
    raise SettingError(
        f"model.guidance_scale={m.guidance_scale} needs a class-conditional model trained with "
        f"model.label_dropout > 0 (this one has label_key={m.label_key!r}, label_dropout="
        f"{m.label_dropout}): sample with guidance_scale 1, or train a model with label_key, "
        f"num_classes and label_dropout=0.1.")
  if not m.label_key:
    if m.label_dropout:
      raise SettingError(f"model.label_dropout={m.label_dropout} drops labels of an "
                         "unconditional model: set model.label_key (and num_classes) or 0.")
    return Unconditional()
  spec.feature(m.label_key, what="model.label_key")
  return ClassConditional(num_classes=m.num_classes, key=m.label_key, drop_prob=m.label_dropout)


def from_config(config: ml_collections.ConfigDict, spec: DataSpec) -> AutoregressiveImage:
  """The model of `config.model` for the images `spec` describes (their shape, and their grey
  levels when `model.num_levels` is 0)."""
  m = ml_collections.ConfigDict(config.model.to_dict())
  image_shape = spec.shape(m.image_key, what="model.image_key")
  if len(image_shape) != 3:
    raise SettingError(f"The data's {m.image_key!r} entries have shape {image_shape}, not "
                     f"(height, width, channels): set model.image_key to an image entry.")
  if not m.num_levels:
    if not spec.num_levels:
      raise SettingError(f"The data {spec.name} declare no grey levels: set model.num_levels.")
    m.num_levels = spec.num_levels
  conditioning = class_conditioning(m, spec)
  num_classes = conditioning.num_conditions if m.label_key else 0
  likelihood = LIKELIHOODS.build(m.likelihood, m)
  network = NETWORKS.get(m.network)(m, tuple(image_shape), m.num_levels,
                                    likelihood.params_per_pixel, num_classes)
  return AutoregressiveImage(network=network, likelihood=likelihood,
                             image_shape=tuple(image_shape), conditioning=conditioning,
                             image_key=m.image_key, temperature=m.temperature, top_k=m.top_k,
                             top_p=m.top_p, sample_cache=m.sample_cache,
                             guidance_scale=m.guidance_scale)
