"""Diffusion models (Ho et al. 2020) trained by denoising score matching, one player.

One player, `denoiser`, holds the network's parameters. For a data batch x0, the loss draws a
training timestep t ~ U{0 .. T-1} and eps ~ N(0, I) per example, forms
x_t = alpha_t x0 + sigma_t eps, and regresses the network's output on its target. The method is
a frozen dataclass of strategies; every variant is a strategy passed in, never a branch:

  network         `apply(variables, x_t, t, cond, train=...) -> prediction`, a module of
                  `gen_jax.nn.unet` built by `{model.network}_network` in this module
                  (`unet_network` for images, `mlp_network` for points, `text_unet_network`
                  for GLIDE's text-conditional U-Net).
  schedule        a `gen_jax.schedules.Schedule`, `gen_jax.schedules.{model.schedule}`
                  (`linear`, `cosine`) with `model.num_timesteps` steps.
  prediction_fn   how the output is read: `gen_jax.predictions.{model.prediction}_prediction`
                  (eps, x0, v) -> (x0_hat, eps_hat).
  loss_fn         the per-example loss `gen_jax.losses.denoising.{model.loss}_mse` (eps, x0, v,
                  min_snr, with `model.min_snr_gamma`): each a weighting of the noise levels.
  conditioning    a strategy of `gen_jax.conditioning`: `Unconditional()`,
                  `ClassConditional(num_classes, key, drop_prob)`, whose label is replaced by
                  the null label `num_classes` with probability `drop_prob` in training, so one
                  network is both conditional and unconditional, as classifier-free guidance
                  needs (Ho & Salimans 2021); or `TextConditional(prompts, max_len, ...)`, byte
                  tokens of a caption (`model.text_key`) replaced by the empty prompt with that
                  probability, sampled for the prompts `model.prompts` (GLIDE, Nichol et al.
                  2022).
  sampler         a `Sampler`: `DDPM(posterior_variance)` or `DDIM(eta)`, wrapping
                  `gen_jax.sampling.diffusion`, with `sample_steps` steps, `guidance_scale` w
                  (0 unconditional, 1 conditional, > 1 guided) and `clip_x0` (1 for images in
                  [-1, 1], 0 for points).

A config names each strategy (`model.sampler = "ddim"`); each is a member of a
`gen_jax.names.Kind` below, configured from the model config by its parameters' names.

Data are `batch[data_key]`: images [batch, h, w, c] in [-1, 1] (`scale_to_unit`) or points
[batch, d], divided by `data_scale` to bring them near unit scale (grid25's means lie at
+-4: data_scale 2); samples are multiplied back. The EMA of the parameters, which diffusion
models sample from, is the backbone's (`config.train.ema_decay`): `sample` and `evaluate` use
whatever parameters they are given.

With `weight_key` set, the training loss is the mean of the per-example losses weighted by
`batch[weight_key]` [batch] (sum of w * loss over the sum of w): an example of weight 0 gives no
gradient, which is how a config holds examples out of training in the data pipeline
(the `hold_out_combinations` preprocess step of `config.data`). Evaluation scores every example.
"""

import dataclasses
import inspect
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gen_jax import names, predictions, schedules
from gen_jax.conditioning import ClassConditional, Conditioning, TextConditional, Unconditional
from gen_jax.errors import SettingError
from gen_jax.losses import denoising
from gen_jax.methods.base import DataSpec, Player
from gen_jax.nn import text, unet
from gen_jax.sampling import diffusion as sampling
from gen_jax.types import Array, Batch, Params, PRNGKey, Variables

PLAYER = "denoiser"
# Model keys that only change how a run samples, never the parameters: a resumed run may change
# them (gen_jax.train.checkpoint).
SAMPLING_KEYS = frozenset({"sampler", "sample_steps", "eta", "posterior_variance",
                           "guidance_scale", "clip_x0", "prompts"})
# Ranges of the keys no other method has (`gen_jax.train.config.MODEL_RULES` holds the shared
# ones): the arguments of a config `Rule`.
MODEL_RULES = dict(
    max_text_len=dict(low=1, note="the byte length of every caption and prompt"),
    text_vocab_size=dict(low=2, high=256, note="byte ids 1 .. text_vocab_size - 1; 128 is ASCII"),
    text_features=dict(low=1, note="width of the text encoder's token features"),
    text_layers=dict(low=0, note="transformer blocks of the text encoder"),
    text_heads=dict(low=1, note="attention heads of the text encoder"),
    attention_levels=dict(low=0, items=int, note="U-Net levels (0 the finest) that attend to "
                                                 "the text"),
    attention_heads=dict(low=1, note="heads of the U-Net's text attention blocks"),
    prompts=dict(items=str, note="the sampling prompts of a text-conditional model"),
)


def default_model_config() -> dict[str, Any]:
  return dict(
      network="unet",  # `{network}_network(model, ...)` in this module: unet | mlp
      widths=(32, 64),  # unet: channels per resolution, finest first
      blocks_per_level=1,  # unet: residual blocks per resolution
      features=(256, 256, 256),  # mlp: hidden widths
      activation="silu",  # mlp
      emb_features=128,  # width of the time (and label) embedding
      dropout=0.0,  # unet: dropout in the residual blocks, in training only
      schedule="linear",  # gen_jax.schedules.{schedule}: linear | cosine
      num_timesteps=1000,  # T training timesteps
      prediction="eps",  # gen_jax.predictions.{prediction}_prediction: eps | x0 | v
      loss="eps",  # losses.denoising.{loss}_mse: eps | x0 | v | min_snr
      min_snr_gamma=5.0,  # min_snr: the SNR at which the weighting min(SNR, gamma) saturates
      data_key="image",  # the batch entry holding examples ("point" for toy2d)
      data_scale=1.0,  # examples are divided by this for the model, samples multiplied
      label_key="",  # "" unconditional; else the batch entry of int labels ("label", "mode")
      num_classes=0,  # number of labels when label_key is set (the null label is num_classes)
      label_dropout=0.1,  # probability of training on the null label (or the empty prompt)
      text_key="",  # "" no text; else the batch entry of byte tokens ("caption")
      max_text_len=32,  # text: token length L of captions and prompts
      text_vocab_size=128,  # text: byte ids 1 .. text_vocab_size - 1 (0 is padding)
      text_features=64,  # text: width of the text encoder
      text_layers=2,  # text: transformer blocks of the text encoder
      text_heads=4,  # text: attention heads of the text encoder
      attention_levels=(1,),  # text_unet: levels (0 the finest) attending to the text
      attention_heads=4,  # text_unet: heads of those attention blocks
      prompts=(),  # text: the sampling prompts, e.g. ("a thick seven", "a thin, slanted two")
      weight_key="",  # "" every example counts; else the batch entry of per-example weights
      sampler="ddpm",  # a Sampler of this module: ddpm | ddim
      sample_steps=1000,  # sampler steps, 1 .. num_timesteps
      eta=0.0,  # ddim: 0 deterministic, 1 DDPM's posterior variance
      posterior_variance=True,  # ddpm: posterior variance (True) or beta (False)
      guidance_scale=1.0,  # w: 0 unconditional, 1 conditional, > 1 guided (conditional only)
      clip_x0=1.0,  # clip x0 estimates to [-c, c] while sampling; 0 for none (points)
      image_shape=(),  # () reads the example shape from the data's spec
  )


# ----------------------------------------------------------------------------------------------
# Strategies.
# ----------------------------------------------------------------------------------------------


class Sampler:
  """A sampler strategy: `sampler(denoise_fn, schedule, x_T, rng, *, num_steps, prediction_fn,
  clip_x0, return_trajectory) -> SamplerOutput` (`gen_jax.sampling.diffusion`)."""

  def __call__(self, denoise_fn, schedule, x_T, rng, **kw) -> sampling.SamplerOutput:
    raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class DDPM(Sampler):
  """The ancestral sampler, `gen_jax.sampling.diffusion.ddpm`."""

  posterior_variance: bool = True

  def __call__(self, denoise_fn, schedule, x_T, rng, **kw) -> sampling.SamplerOutput:
    return sampling.ddpm(denoise_fn, schedule, x_T, rng,
                         posterior_variance=self.posterior_variance, **kw)


@dataclasses.dataclass(frozen=True)
class DDIM(Sampler):
  """The DDIM sampler, `gen_jax.sampling.diffusion.ddim`."""

  eta: float = 0.0

  def __call__(self, denoise_fn, schedule, x_T, rng, **kw) -> sampling.SamplerOutput:
    return sampling.ddim(denoise_fn, schedule, x_T, rng, eta=self.eta, **kw)


# ----------------------------------------------------------------------------------------------
# The method.
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Diffusion:
  """A diffusion model on `batch[data_key]`.

  Attributes:
    network: `apply(variables, x_t, t [batch], labels, train=...) -> [batch, ...]` like x_t.
    schedule: the noise schedule of training (and sampling).
    prediction_fn: `(*, prediction, x_t, alpha, sigma) -> (x0_hat, eps_hat)`.
    loss_fn: `(*, x0_hat, eps_hat, x0, eps, alpha, sigma) -> [batch]`.
    example_shape: the shape of one example, (h, w, c) or (d,).
    conditioning: a `gen_jax.conditioning` strategy: `Unconditional()` or
      `ClassConditional(...)`.
    sampler: a `Sampler`, `DDPM(...)` or `DDIM(...)`: the default of `sample`.
    sample_steps: the default number of sampler steps.
    guidance_scale: the default guidance w of a conditional model's samples.
    clip_x0: clip x0 estimates to [-clip_x0, clip_x0] while sampling (0: none).
    data_key: the batch entry holding examples.
    data_scale: examples are divided by it; samples multiplied.
    weight_key: "" or the batch entry of per-example training weights [batch].
  """

  network: nn.Module
  schedule: schedules.Schedule
  prediction_fn: Callable[..., tuple[Array, Array]]
  loss_fn: Callable[..., Array]
  example_shape: tuple[int, ...]
  conditioning: Conditioning = Unconditional()
  sampler: Sampler = DDPM()
  sample_steps: int = 1000
  guidance_scale: float = 1.0
  clip_x0: float = 0.0
  data_key: str = "image"
  data_scale: float = 1.0
  weight_key: str = ""

  def __post_init__(self):
    if not 1 <= self.sample_steps <= self.schedule.num_timesteps:
      raise SettingError(f"model.sample_steps must be in [1, num_timesteps = "
                         f"{self.schedule.num_timesteps}], got {self.sample_steps}.")

  @property
  def players(self) -> tuple[Player, ...]:
    return (Player(PLAYER, self.loss),)

  def init(self, rng: PRNGKey, batch: Batch) -> Variables:
    x = self.data(batch)
    t = jnp.zeros((x.shape[0],), jnp.int32)
    labels = self.conditioning.eval(batch)
    return {"params": {PLAYER: self.network.init(rng, x, t, labels)["params"]},
            "model_state": {}}

  def data(self, batch: Batch) -> Array:
    """The batch's examples in the model's scale: [batch, ...] float32."""
    return jnp.asarray(batch[self.data_key], jnp.float32) / self.data_scale

  def denoise(self, params: Params, x_t: Array, t: Array, labels: Array | None, *,
              train: bool = False, rng: PRNGKey | None = None) -> Array:
    """The network's prediction [batch, ...] at int timesteps t [batch]."""
    rngs = {"dropout": rng} if train else {}
    return self.network.apply({"params": params}, x_t, t, labels, train=train, rngs=rngs)

  def per_example_loss(self, params: Params, x0: Array, labels: Array | None, rng: PRNGKey, *,
                       train: bool = False) -> tuple[Array, Array]:
    """(loss_fn [batch], eps_mse [batch]) at random timesteps and noise."""
    t_rng, eps_rng, dropout_rng = jax.random.split(rng, 3)
    t = jax.random.randint(t_rng, (x0.shape[0],), 0, self.schedule.num_timesteps)
    eps = jax.random.normal(eps_rng, x0.shape, x0.dtype)
    shape = (-1,) + (1,) * (x0.ndim - 1)
    alpha = self.schedule.alpha(t).reshape(shape)
    sigma = self.schedule.sigma(t).reshape(shape)
    x_t = alpha * x0 + sigma * eps
    prediction = self.denoise(params, x_t, t, labels, train=train, rng=dropout_rng)
    x0_hat, eps_hat = self.prediction_fn(prediction=prediction, x_t=x_t, alpha=alpha,
                                         sigma=sigma)
    args = dict(x0_hat=x0_hat, eps_hat=eps_hat, x0=x0, eps=eps, alpha=alpha, sigma=sigma)
    return self.loss_fn(**args), denoising.eps_mse(**args)

  def loss(self, params_all, player_params, batch, rng, model_state):
    del params_all
    label_rng, loss_rng = jax.random.split(rng)
    labels = self.conditioning.train(batch, label_rng)
    loss, eps_mse = self.per_example_loss(player_params, self.data(batch), labels, loss_rng,
                                          train=True)
    if not self.weight_key:
      return jnp.mean(loss), ({"eps_mse": jnp.mean(eps_mse)}, model_state)
    weight = jnp.asarray(batch[self.weight_key], jnp.float32)  # [batch]
    total = jnp.maximum(jnp.sum(weight), 1e-12)  # a batch of held-out examples only: loss 0
    return (jnp.sum(weight * loss) / total,
            ({"eps_mse": jnp.sum(weight * eps_mse) / total, "weight": jnp.mean(weight)},
             model_state))

  def evaluate(self, variables: Variables, batch: Batch, rng: PRNGKey) -> dict[str, Array]:
    """Per-example denoising losses [batch] at random timesteps: `loss` (the training loss)
    and `eps_mse`; a conditional model also reports `uncond_loss` with the null label."""
    params = variables["params"][PLAYER]
    x0 = self.data(batch)
    labels = self.conditioning.eval(batch)
    loss, eps_mse = self.per_example_loss(params, x0, labels, rng)
    out = {"loss": loss, "eps_mse": eps_mse}
    if labels is not None:
      out["uncond_loss"] = self.per_example_loss(
          params, x0, self.conditioning.null(x0.shape[0]), rng)[0]
    return out

  def denoise_fn(self, variables: Variables, labels: Array | None,
                 guidance_scale: float | None = None) -> sampling.DenoiseFn:
    """The sampler's `denoise_fn(x_t, t)`: the model with the conditions `labels` bound (labels
    [n], or prompts' tokens [n, L]), guided with scale w (0 unconditional, 1 conditional) when
    the model is conditional; the unconditional branch feeds `conditioning.null(n)`, the null
    label or the empty prompt."""
    params = variables["params"][PLAYER]
    if labels is None:
      return lambda x, t: self.denoise(params, x, t, None)
    null = self.conditioning.null(labels.shape[0])
    return sampling.guided_denoise_fn(
        lambda x, t: self.denoise(params, x, t, labels),
        lambda x, t: self.denoise(params, x, t, null),
        self.guidance_scale if guidance_scale is None else guidance_scale)

  def generate(self, variables: Variables, rng: PRNGKey, num: int, *,
               labels: Array | None = None, guidance_scale: float | None = None,
               num_steps: int | None = None, sampler: Sampler | None = None,
               return_trajectory: bool = False) -> sampling.SamplerOutput:
    """Runs the sampler for `num` examples; all in the model's scale (see `sample`).

    Args:
      labels: the conditions of a conditional model: classes [num], or prompts' token ids
        [num, L] (`conditioning.encode(texts)`); default equal blocks of each class or
        sampling prompt (`conditioning.blocks`).
      guidance_scale: w; default the method's.
      num_steps: sampler steps; default the method's `sample_steps`.
      sampler: a `Sampler`, `DDPM(...)` or `DDIM(...)`; default the method's.
      return_trajectory: keep the states and x0 estimates of every step.
    """
    if labels is None:
      labels = self.conditioning.blocks(num)
    noise_rng, sampler_rng = jax.random.split(rng)
    x_T = jax.random.normal(noise_rng, (num, *self.example_shape), jnp.float32)
    return (sampler or self.sampler)(
        self.denoise_fn(variables, labels, guidance_scale), self.schedule, x_T, sampler_rng,
        num_steps=num_steps or self.sample_steps, prediction_fn=self.prediction_fn,
        clip_x0=self.clip_x0, return_trajectory=return_trajectory)

  def sample(self, variables: Variables, rng: PRNGKey, num: int, **kw) -> dict[str, Array]:
    """`samples`: [num, h, w, c] images in [-1, 1] or points [num, d], from the default
    sampler; keywords as `generate`. A conditional model's samples come in blocks of each
    class or sampling prompt: with num = k * num_conditions, row r of a k-column grid shows
    condition r."""
    out = self.generate(variables, rng, num, **kw)
    return {"samples": out.samples * self.data_scale}


# ----------------------------------------------------------------------------------------------
# Figures' arrays: a per-class grid and a denoising trajectory.
# ----------------------------------------------------------------------------------------------


def class_grid(method: Diffusion, variables: Variables, rng: PRNGKey, per_class: int, **kw
               ) -> Array:
  """`per_class` samples of each class, [num_classes * per_class, ...], class c in row c of a
  grid with `per_class` columns (a conditional model only)."""
  num = method.conditioning.num_conditions * per_class
  return method.generate(variables, rng, num, labels=method.conditioning.blocks(num),
                         **kw).samples * method.data_scale


def trajectory(method: Diffusion, variables: Variables, rng: PRNGKey, num: int, frames: int,
               **kw) -> tuple[Array, np.ndarray]:
  """The states x_t of `num` samples at `frames` evenly spaced steps, noise first and the final
  samples last: ([frames, num, ...] in the data's scale, [frames] the timesteps shown, -1 for
  the final samples)."""
  out = method.generate(variables, rng, num, return_trajectory=True, **kw)
  states = jnp.concatenate([out.trajectory[:-1], out.samples[None]], axis=0)  # [steps + 1, ...]
  steps = states.shape[0] - 1
  index = np.round(np.linspace(0, steps, frames)).astype(np.int32)
  timesteps = np.concatenate([np.asarray(out.timesteps), [-1]])[index]
  return states[index] * method.data_scale, timesteps


# ----------------------------------------------------------------------------------------------
# Building from a config: each strategy a config names is a member of a `names.Kind`, configured
# from the model config (`names.Kind.build`).
# ----------------------------------------------------------------------------------------------


def _is_schedule_factory(value: Any) -> bool:
  """The functions of `gen_jax.schedules` that make a `Schedule` from settings alone
  (`linear`, `cosine`: `num_timesteps` and their shapes' parameters)."""
  if not inspect.isfunction(value):
    return False
  signature = inspect.signature(value)
  return (signature.return_annotation is schedules.Schedule
          and all(p.default is not p.empty for p in signature.parameters.values()))


NETWORKS = names.Kind("model.network", __name__, suffix="_network")
SCHEDULES = names.Kind("model.schedule", schedules, where=_is_schedule_factory)
PREDICTIONS = names.Kind("model.prediction", predictions, suffix="_prediction")
LOSSES = names.Kind("model.loss", denoising, suffix="_mse")
SAMPLERS = names.Kind("model.sampler", __name__, where=names.subclass_of(Sampler))


def unet_network(m: ml_collections.ConfigDict, num_classes: int | None) -> nn.Module:
  return unet.UNet(widths=tuple(m.widths), blocks_per_level=m.blocks_per_level,
                   emb_features=m.emb_features, num_classes=num_classes, dropout=m.dropout)


def text_unet_network(m: ml_collections.ConfigDict, num_classes: int | None) -> nn.Module:
  """GLIDE's text-conditional U-Net (`gen_jax.nn.unet.TextUNet`), for `model.text_key`."""
  if num_classes is not None or not m.text_key:
    raise SettingError("model.network='text_unet' reads captions: set model.text_key (e.g. "
                       "'caption') and leave model.label_key ''.")
  return unet.TextUNet(
      unet=unet.UNet(widths=tuple(m.widths), blocks_per_level=m.blocks_per_level,
                     emb_features=m.emb_features, dropout=m.dropout,
                     attention_levels=tuple(m.attention_levels),
                     attention_heads=m.attention_heads),
      encoder=text.TextEncoder(vocab_size=m.text_vocab_size, max_len=m.max_text_len,
                               features=m.text_features, num_layers=m.text_layers,
                               num_heads=m.text_heads))


def mlp_network(m: ml_collections.ConfigDict, num_classes: int | None) -> nn.Module:
  return unet.MLPDenoiser(features=tuple(m.features), emb_features=m.emb_features,
                          num_classes=num_classes, activation=m.activation)


def _conditioning(m: ml_collections.ConfigDict) -> Conditioning:
  if m.text_key:
    if m.label_key:
      raise SettingError(f"model.label_key={m.label_key!r} and model.text_key={m.text_key!r} are "
                         "both set: a model is conditioned on labels or on text; clear one.")
    if m.network != "text_unet":
      raise SettingError(f"model.text_key={m.text_key!r} makes the model text-conditional: set "
                         f"model.network='text_unet' (got {m.network!r}).")
    return TextConditional(prompts=tuple(m.prompts), max_len=m.max_text_len,
                           vocab_size=m.text_vocab_size, key=m.text_key,
                           drop_prob=m.label_dropout)
  if not m.label_key:
    return Unconditional()
  if m.num_classes < 1:
    raise SettingError(f"model.label_key={m.label_key!r} makes the model class-conditional: set "
                       "model.num_classes to the number of labels (10 for digits).")
  if not 0.0 <= m.label_dropout < 1.0:
    raise SettingError(f"model.label_dropout must be in [0, 1), got {m.label_dropout}.")
  return ClassConditional(num_classes=m.num_classes, key=m.label_key, drop_prob=m.label_dropout)


def _check_example_shape(m: ml_collections.ConfigDict, example_shape: tuple[int, ...]) -> None:
  """Refuses a U-Net for examples that are not images [h, w, c], or with more halvings than the
  image sides allow, before the network sees an example (whose check could only name its shape).

  Raises:
    SettingError: naming the keys to change.
  """
  if m.network in ("unet", "text_unet") and len(example_shape) != 3:
    raise SettingError(f"model.network={m.network!r} denoises images [h, w, c], but the examples "
                       f"(model.data_key={m.data_key!r}) have shape {tuple(example_shape)}: use "
                       f"model.network='mlp' for points.")
  if m.network in ("unet", "text_unet"):
    factor = 2 ** (len(m.widths) - 1)
    if example_shape[0] % factor or example_shape[1] % factor:
      raise SettingError(f"model.widths={tuple(m.widths)} halves the {example_shape[0]}x"
                         f"{example_shape[1]} images {len(m.widths) - 1} times, but their sides "
                         f"are not divisible by {factor}: use fewer widths.")


def from_config(config: ml_collections.ConfigDict, spec: DataSpec | None = None) -> Diffusion:
  """The diffusion model of `config.model`; the example shape, unless the config sets it
  (`model.image_shape`), is the data's (`spec`'s `model.data_key` entry)."""
  m = config.model
  if m.image_shape:
    example_shape = tuple(m.image_shape)
  elif spec is not None:
    example_shape = spec.shape(m.data_key, what="model.data_key")
  else:
    raise SettingError("model.image_shape is () and no data spec was given: pass "
                       "from_config(config, spec) or set model.image_shape, e.g. (8, 8, 1).")
  _check_example_shape(m, example_shape)
  conditioning = _conditioning(m)
  num_classes = conditioning.num_classes if m.label_key else None
  network = NETWORKS.get(m.network)(m, num_classes)
  if not math.isfinite(m.data_scale) or m.data_scale <= 0:
    raise SettingError(f"model.data_scale must be positive, got {m.data_scale}.")
  return Diffusion(
      network=network,
      schedule=SCHEDULES.build(m.schedule, m)(),
      prediction_fn=PREDICTIONS.build(m.prediction, m),
      loss_fn=LOSSES.build(m.loss, m),
      example_shape=example_shape,
      conditioning=conditioning,
      sampler=SAMPLERS.build(m.sampler, m),
      sample_steps=m.sample_steps,
      guidance_scale=m.guidance_scale,
      clip_x0=m.clip_x0,
      data_key=m.data_key,
      data_scale=m.data_scale,
      weight_key=m.weight_key)
