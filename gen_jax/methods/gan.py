"""Generative adversarial networks: the discriminator and the generator as two players.

The min-max game of Goodfellow et al. 2014 through the generic players step: the discriminator
(`disc`, updated `n_critic` times per step) and then the generator (`gen`), each with its own
optimizer (`config.optim.disc`, `config.optim.gen`). The method is a frozen dataclass of
strategies, and every variant is a different strategy passed in, never a branch:

  networks        `generator(z, cond) -> x` and `discriminator(x, cond) -> logits [batch]`,
                  Flax modules built by `{model.networks}_networks(model)` in this module
                  (`mlp_networks` for 2-D points, `dcgan_networks` for images).
  losses          `d_loss_fn(*, real_logits, fake_logits)` and `g_loss_fn(*, fake_logits)`,
                  per example, resolved by name from `gen_jax.losses.adversarial`
                  (`model.d_loss = "hinge"` is `hinge_d`, `model.g_loss` likewise `{name}_g`).
  penalties       zero or more weighted discriminator regularisers (`gradient_penalty`,
                  `r1_penalty`), each a `Penalty`; their settings come from the config
                  (`model.gradient_penalty_target`, see `gen_jax.names.Kind.build`).
  conditioning    a strategy of `gen_jax.conditioning` (`Unconditional()` or
                  `ClassConditional(num_classes, key)`): the conditions that both players see
                  (the batch's for training, uniform draws for sampling, one class per grid
                  row for image grids).
  latent_fn       the prior of the latent noise, `latent_fn(rng, shape) -> z`.
  path_fn         None, or a latent path of `gen_jax.sampling.latent` (`spherical_path`,
                  `linear_path`): then `sample` returns a dict of image grids, `samples` and
                  `interpolation` (paths between pairs of latent draws, one per grid row), as
                  the VAE's does.

For the GAN-Lab pictures of 2-D runs, `gan_lab` returns the arrays of one frame (the
discriminator on a grid, generated points, the generator's image of a latent grid);
`viz/gan_plots.py` draws them.
"""

import dataclasses
import inspect
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import struct

from gen_jax import names
from gen_jax.conditioning import ClassConditional, Conditioning, Unconditional
from gen_jax.errors import SettingError
from gen_jax.losses import adversarial
from gen_jax.methods.base import DataSpec, Player
from gen_jax.nn import convnets
from gen_jax.nn.mlp import MLP
from gen_jax.sampling import latent
from gen_jax.types import Array, Batch, Params, PRNGKey, Variables

DISC = "disc"
GEN = "gen"
# Model keys that only change how a run samples, never the parameters: a resumed run may change
# them (gen_jax.train.checkpoint).
SAMPLING_KEYS = frozenset({"interpolation"})


def default_model_config() -> dict[str, Any]:
  return dict(
      networks="mlp",  # `{networks}_networks(model)` in this module builds both players
      latent_dim=2,
      data_dim=2,  # width of a generated point (mlp networks)
      gen_features=(128, 128, 128),
      disc_features=(128, 128, 128),
      activation="relu",
      layer_norm=False,  # layer-normalise the hidden layers of both MLPs
      d_loss="non_saturating",  # adversarial.{d_loss}_d: minimax | non_saturating | hinge | ...
      g_loss="non_saturating",  # adversarial.{g_loss}_g
      penalty="",  # "" | a penalty of adversarial: gradient_penalty | r1_penalty
      penalty_weight=0.0,  # multiplies the batch mean of the penalty (R1: gamma / 2)
      gradient_penalty_target=1.0,  # gradient_penalty: the norm it pulls the gradient to
      n_critic=1,  # discriminator updates per generator update
      data_key="point",  # the batch entry holding real examples
      label_key="",  # "" unconditional; else the batch entry of int labels fed to both players
      num_classes=0,  # number of labels when label_key is set
      # dcgan networks (gen_jax.nn.convnets.DCGANGenerator / DCGANDiscriminator):
      image_shape=(),  # (h, w, c) of the images; h, w divisible by 2^(len(gen_widths) - 1)
      gen_widths=(128, 64, 32),  # generator channels per resolution, lowest first
      disc_widths=(32, 64, 128),  # discriminator channels per resolution, highest first
      upsample="resize",  # convnets.{upsample}_upsample: resize (nearest + conv) | transpose
      label_features=16,  # width of the generator's label embedding (conditional)
      interpolation="",  # "" | spherical | linear: `sample` adds latent.{interpolation}_path
      # grids between latent draws (image GANs)
  )


# The key a player's conditions are drawn from (label dropout), folded into its loss's key: the
# latent and penalty keys stay those of an unconditional GAN.
_COND_STREAM = 1

# ----------------------------------------------------------------------------------------------
# Strategies.
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Penalty:
  """A discriminator regulariser of `gen_jax.losses.adversarial`, weighted.

  `fn` is called with the keyword arguments among `critic_fn`, `real`, `fake` and `rng` that
  it accepts, so the gradient penalty (which interpolates real and fake) and R1 (real only)
  plug in the same way.

  Attributes:
    fn: `fn(*, critic_fn, real, ...) -> [batch]`, e.g. `adversarial.gradient_penalty`, with
      its settings bound.
    weight: multiplies the per-example penalty (R1's gamma / 2; WGAN-GP's lambda).
    name: the name of its metric, e.g. "r1_penalty" (default: the function's).
  """

  fn: Callable[..., Array]
  weight: float
  name: str = ""

  def __post_init__(self):
    if not self.name:
      object.__setattr__(self, "name", self.fn.__name__)

  def __call__(self, *, critic_fn, real: Array, fake: Array, rng: PRNGKey) -> Array:
    accepted = inspect.signature(self.fn).parameters
    kwargs = dict(critic_fn=critic_fn, real=real, fake=fake, rng=rng)
    return self.fn(**{k: v for k, v in kwargs.items() if k in accepted})  # [batch]


def standard_normal(rng: PRNGKey, shape: tuple[int, ...]) -> Array:
  """The usual latent prior, N(0, I)."""
  return jax.random.normal(rng, shape)


# ----------------------------------------------------------------------------------------------
# The method.
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GAN:
  """A two-player GAN on `batch[data_key]`.

  Attributes:
    generator: module with `apply(variables, z [batch, latent_dim], labels) -> x [batch, ...]`.
    discriminator: module with `apply(variables, x, labels) -> [batch]` logits (or critic
      values for the hinge and Wasserstein losses). Under a penalty it must treat examples
      independently (no batch norm in training mode).
    d_loss_fn: `(*, real_logits, fake_logits) -> [batch]`, minimised by the discriminator.
    g_loss_fn: `(*, fake_logits) -> [batch]`, minimised by the generator.
    latent_dim: width of the latent noise.
    penalties: weighted regularisers added to the discriminator's loss; () for none.
    n_critic: discriminator updates per generator update.
    data_key: the batch entry holding real examples.
    conditioning: a `gen_jax.conditioning` strategy: `Unconditional()` or
      `ClassConditional(...)`.
    latent_fn: `latent_fn(rng, shape) -> z`, the latent prior.
    path_fn: None (`sample` returns an array), or `path_fn(z0, z1, t) -> z` of
      `gen_jax.sampling.latent` (`sample` returns a dict with an interpolation grid).
  """

  generator: nn.Module
  discriminator: nn.Module
  d_loss_fn: Callable[..., Array]
  g_loss_fn: Callable[..., Array]
  latent_dim: int
  penalties: tuple[Penalty, ...] = ()
  n_critic: int = 1
  data_key: str = "point"
  conditioning: Conditioning = Unconditional()
  latent_fn: Callable[[PRNGKey, tuple[int, ...]], Array] = standard_normal
  path_fn: latent.PathFn | None = None

  @property
  def players(self) -> tuple[Player, ...]:
    return (Player(DISC, self.disc_loss, repeats=self.n_critic), Player(GEN, self.gen_loss))

  def init(self, rng: PRNGKey, batch: Batch) -> Variables:
    g_rng, d_rng, z_rng = jax.random.split(rng, 3)
    real = jnp.asarray(batch[self.data_key], jnp.float32)
    labels = self.conditioning.eval(batch)
    z = self.latent_fn(z_rng, (real.shape[0], self.latent_dim))
    return {"params": {GEN: self.generator.init(g_rng, z, labels)["params"],
                       DISC: self.discriminator.init(d_rng, real, labels)["params"]},
            "model_state": {}}

  # The two networks as functions of their parameters.

  def generate(self, gen_params: Params, z: Array, labels: Array | None = None) -> Array:
    """Generated examples [batch, ...] from latents z [batch, latent_dim]."""
    return self.generator.apply({"params": gen_params}, z, labels)

  def critic(self, disc_params: Params, x: Array, labels: Array | None = None) -> Array:
    """Discriminator outputs [batch] for examples x [batch, ...]."""
    out = self.discriminator.apply({"params": disc_params}, x, labels)
    return out.reshape(out.shape[0])

  # The players' losses.

  def _penalty_terms(self, disc_params: Params, real: Array, fake: Array,
                     labels: Array | None, rng: PRNGKey) -> dict[str, Array]:
    """Each penalty's per-example values [batch], unweighted.

    The penalties differentiate the critic one example at a time. A conditional critic needs
    each example's own label, so the penalty is vmapped over examples here with the label
    bound inside `critic_fn` (a batch of one per call); an unconditional critic gets None.
    """
    out = {}
    for index, penalty in enumerate(self.penalties):
      rngs = jax.random.split(jax.random.fold_in(rng, index), real.shape[0])

      def one(real_i, fake_i, labels_i, rng_i, penalty=penalty):
        lab = None if labels_i is None else labels_i[None]
        critic_fn = lambda x: self.critic(disc_params, x, lab)
        return penalty(critic_fn=critic_fn, real=real_i[None], fake=fake_i[None], rng=rng_i)[0]

      out[penalty.name] = jax.vmap(one)(real, fake, labels, rngs)
    return out

  def disc_loss(self, params_all, disc_params, batch, rng, model_state):
    """The discriminator's loss on a real batch and as many fresh generated examples."""
    z_rng, penalty_rng = jax.random.split(rng)
    real = jnp.asarray(batch[self.data_key], jnp.float32)
    labels = self.conditioning.train(batch, jax.random.fold_in(rng, _COND_STREAM))
    z = self.latent_fn(z_rng, (real.shape[0], self.latent_dim))
    # The generator is a constant for this update; stop_gradient also keeps the penalties
    # (whose inputs include `fake`) from differentiating through it.
    fake = jax.lax.stop_gradient(self.generate(params_all[GEN], z, labels))
    real_logits = self.critic(disc_params, real, labels)
    fake_logits = self.critic(disc_params, fake, labels)
    adv = jnp.mean(self.d_loss_fn(real_logits=real_logits, fake_logits=fake_logits))
    terms = self._penalty_terms(disc_params, real, fake, labels, penalty_rng)
    loss = adv + sum(p.weight * jnp.mean(terms[p.name]) for p in self.penalties)
    metrics = {"adversarial": adv, "real_logit": jnp.mean(real_logits),
               "fake_logit": jnp.mean(fake_logits)}
    metrics.update({name: jnp.mean(value) for name, value in terms.items()})
    return loss, (metrics, model_state)

  def gen_loss(self, params_all, gen_params, batch, rng, model_state):
    """The generator's loss through the discriminator, whose parameters are constants here."""
    real = batch[self.data_key]
    labels = self.conditioning.train(batch, jax.random.fold_in(rng, _COND_STREAM))
    z = self.latent_fn(rng, (real.shape[0], self.latent_dim))
    fake_logits = self.critic(params_all[DISC], self.generate(gen_params, z, labels), labels)
    loss = jnp.mean(self.g_loss_fn(fake_logits=fake_logits))
    return loss, ({}, model_state)

  # Evaluation and sampling.

  def evaluate(self, variables: Variables, batch: Batch, rng: PRNGKey) -> dict[str, Array]:
    """Per-example losses of both players on a real batch and as many generated examples."""
    params = variables["params"]
    real = jnp.asarray(batch[self.data_key], jnp.float32)
    labels = self.conditioning.eval(batch)
    z = self.latent_fn(rng, (real.shape[0], self.latent_dim))
    fake = self.generate(params[GEN], z, labels)
    real_logits = self.critic(params[DISC], real, labels)
    fake_logits = self.critic(params[DISC], fake, labels)
    return {"d_loss": self.d_loss_fn(real_logits=real_logits, fake_logits=fake_logits),
            "g_loss": self.g_loss_fn(fake_logits=fake_logits),
            "real_logit": real_logits, "fake_logit": fake_logits}

  def interpolate_images(self, variables: Variables, z0: Array, z1: Array, steps: int,
                         path_fn: latent.PathFn = latent.spherical_path,
                         labels: Array | None = None) -> Array:
    """Generated paths from latents z0 to z1 [n, latent_dim], endpoints included:
    [n * steps, ...], row by row (path i is examples i * steps ... (i + 1) * steps - 1).
    `labels` [n] (class-conditional) holds each path's label."""
    path = latent.interpolate(z0, z1, steps, path_fn).reshape(-1, self.latent_dim)
    if labels is not None:
      labels = jnp.repeat(labels, steps)
    return self.generate(variables["params"][GEN], path, labels)

  def sample(self, variables: Variables, rng: PRNGKey, num: int) -> Array | dict[str, Array]:
    """`num` generated examples, [num, ...] (points [num, 2] for the 2-D problems), labels
    drawn uniformly. With a `path_fn`, a dict for the loop's square image grids instead:
    `samples` [num, ...], one class per row when conditional, and `interpolation`: s =
    isqrt(num) paths of s steps between pairs of latent draws, [s * s, ...], one per row."""
    z_rng, label_rng = jax.random.split(rng)
    z = self.latent_fn(z_rng, (num, self.latent_dim))
    gen_params = variables["params"][GEN]
    if self.path_fn is None:
      return self.generate(gen_params, z, self.conditioning.draw(label_rng, num))
    columns = math.ceil(math.sqrt(num))  # the loop's grid (viz/grids.py, image_grid)
    steps = max(math.isqrt(num), 2)
    ends = self.latent_fn(label_rng, (2, steps, self.latent_dim))
    return {"samples": self.generate(gen_params, z, self.conditioning.rows(num, columns)),
            "interpolation": self.interpolate_images(variables, ends[0], ends[1], steps,
                                                     self.path_fn,
                                                     self.conditioning.rows(steps, 1))}

  # The arrays of a GAN-Lab frame (2-D data), drawn by `viz/gan_plots.py`.

  def discriminator_map(self, variables: Variables, extent: Sequence[float], *,
                        resolution: int = 100, label: int = 0) -> Array:
    """sigmoid(D(x)) on a [resolution, resolution] grid over `extent` (x0, x1, y0, y1): entry
    [i, j] is at (x_j, y_i), x and y evenly spaced from x0 to x1 and y0 to y1. A conditional
    discriminator sees sampling condition `label` (class `label`)."""
    x0, x1, y0, y1 = (float(e) for e in extent)
    xs, ys = np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2).astype(np.float32)
    logits = self.critic(variables["params"][DISC], jnp.asarray(grid),
                         self.conditioning.constant(label, grid.shape[0]))
    return jax.nn.sigmoid(logits).reshape(resolution, resolution)

  def warped_grid(self, variables: Variables, *, lines: int = 21, points_per_line: int = 100,
                  span: float = 3.0, label: int = 0) -> Array:
    """The generator's image of a latent grid: [2 * lines, points_per_line, ...] polylines.

    Row i < lines is the horizontal latent line z_1 = t_i, the rest the vertical lines
    z_0 = t_i, with t on [-span, span]; latent coordinates beyond the first two are 0.
    """
    t = np.linspace(-span, span, lines)
    s = np.linspace(-span, span, points_per_line)
    horizontal = np.stack(np.broadcast_arrays(s[None, :], t[:, None]), axis=-1)
    vertical = np.stack(np.broadcast_arrays(t[:, None], s[None, :]), axis=-1)
    z2 = np.concatenate([horizontal, vertical]).reshape(-1, 2)  # [2 * lines * points, 2]
    z = np.zeros((z2.shape[0], self.latent_dim), np.float32)
    z[:, :min(2, self.latent_dim)] = z2[:, :min(2, self.latent_dim)]
    x = self.generate(variables["params"][GEN], jnp.asarray(z),
                      self.conditioning.constant(label, z.shape[0]))
    return x.reshape(2 * lines, points_per_line, *x.shape[1:])

  def gan_lab(self, variables: Variables, rng: PRNGKey, *, extent: Sequence[float],
              num_fake: int = 500, resolution: int = 100, lines: int = 21,
              points_per_line: int = 100, span: float = 3.0, label: int = 0) -> "GanLabFrame":
    """What a GAN-Lab frame shows (Kahng et al. 2019): the discriminator over `extent`
    (`discriminator_map`), `num_fake` samples drawn with `rng`, and the generator's image of a
    latent grid (`warped_grid`)."""
    return GanLabFrame(
        heat=self.discriminator_map(variables, extent, resolution=resolution, label=label),
        fake=self.sample(variables, rng, num_fake),
        lines=self.warped_grid(variables, lines=lines, points_per_line=points_per_line,
                               span=span, label=label),
        extent=tuple(float(e) for e in extent))


@struct.dataclass
class GanLabFrame:
  """The arrays of one GAN-Lab frame of a 2-D GAN."""

  heat: Array  # [resolution, resolution] sigmoid(D(x)), row i at y_i, column j at x_j
  fake: Array  # [num_fake, 2] generated points
  lines: Array  # [2 * lines, points_per_line, 2] the generator's image of a latent grid
  extent: tuple[float, float, float, float] = struct.field(pytree_node=False)  # (x0, x1, y0, y1)


# ----------------------------------------------------------------------------------------------
# Building from a config: each strategy a config names is a member of a `names.Kind`.
# ----------------------------------------------------------------------------------------------

NETWORKS = names.Kind("model.networks", __name__, suffix="_networks")
D_LOSSES = names.Kind("model.d_loss", adversarial, suffix="_d")
G_LOSSES = names.Kind("model.g_loss", adversarial, suffix="_g")
PENALTIES = names.Kind("model.penalty", adversarial, suffix="_penalty", keep_suffix=True)
UPSAMPLES = names.Kind("model.upsample", convnets, suffix="_upsample")
PATHS = names.Kind("model.interpolation", latent, suffix="_path")


def mlp_networks(m: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
  """MLP players for 2-D points: latent -> [batch, data_dim] and points -> logits [batch]."""
  num_classes = m.num_classes if m.label_key else None
  generator = MLP(features=tuple(m.gen_features), out_features=m.data_dim,
                  activation=m.activation, layer_norm=m.layer_norm, num_classes=num_classes)
  discriminator = MLP(features=tuple(m.disc_features), activation=m.activation,
                      layer_norm=m.layer_norm, num_classes=num_classes)
  return generator, discriminator


def dcgan_networks(m: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
  """DCGAN players for images [batch, h, w, c] in [-1, 1] (`gen_jax.nn.convnets`)."""
  if len(m.image_shape) != 3:
    raise SettingError(f"dcgan networks need model.image_shape = (h, w, c), got "
                       f"{tuple(m.image_shape)!r}: (8, 8, 1) for digits, (28, 28, 1) for mnist.")
  num_classes = m.num_classes if m.label_key else None
  generator = convnets.DCGANGenerator(
      image_shape=tuple(m.image_shape), widths=tuple(m.gen_widths),
      upsample_fn=UPSAMPLES.get(m.upsample), num_classes=num_classes,
      label_features=m.label_features)
  discriminator = convnets.DCGANDiscriminator(widths=tuple(m.disc_widths),
                                              num_classes=num_classes)
  return generator, discriminator


def _conditioning(m: ml_collections.ConfigDict) -> Conditioning:
  if not m.label_key:
    return Unconditional()
  if m.num_classes < 1:
    raise SettingError(f"model.label_key={m.label_key!r} makes the GAN class-conditional: set "
                       "model.num_classes to the number of labels (8 for toy2d/ring8's modes).")
  return ClassConditional(num_classes=m.num_classes, key=m.label_key)


def from_config(config: ml_collections.ConfigDict, spec: DataSpec | None = None) -> GAN:
  """The GAN of `config.model`. `spec`, when given, is checked to hold the examples
  (`model.data_key`, of `model.data_dim` for mlp networks) and labels (`model.label_key`) the
  players read.

  Raises:
    SettingError: a setting the GAN cannot use (the message names the key and what to set).
    KeyError: `spec` has no entry the settings name.
  """
  m = config.model
  if spec is not None:
    shape = spec.shape(m.data_key, what="model.data_key")
    if m.networks == "mlp" and shape != (m.data_dim,):
      fix = (f"set model.data_dim={shape[0]}" if len(shape) == 1 else
             "mlp networks generate points [data_dim]: set model.networks='dcgan' for images")
      raise SettingError(f"model.data_dim={m.data_dim}, but the examples (model.data_key="
                         f"{m.data_key!r}) have shape {tuple(shape)}: {fix}.")
    if m.label_key:
      spec.feature(m.label_key, what="model.label_key")
  if m.interpolation and m.networks == "mlp":
    raise SettingError(f"model.interpolation={m.interpolation!r} draws latent paths as image "
                       "grids, which mlp networks (points) do not make: leave it '' for points.")
  generator, discriminator = NETWORKS.get(m.networks)(m)
  if m.n_critic < 1:
    raise SettingError(f"model.n_critic must be >= 1, got {m.n_critic}.")
  penalties = ()
  if m.penalty:
    penalties = (Penalty(PENALTIES.build(m.penalty, m), m.penalty_weight, name=m.penalty),)
  return GAN(
      generator=generator,
      discriminator=discriminator,
      d_loss_fn=D_LOSSES.build(m.d_loss, m),
      g_loss_fn=G_LOSSES.build(m.g_loss, m),
      latent_dim=m.latent_dim,
      penalties=penalties,
      n_critic=m.n_critic,
      data_key=m.data_key,
      conditioning=_conditioning(m),
      path_fn=PATHS.get(m.interpolation) if m.interpolation else None)
