"""Optax optimizers built from a config: a learning-rate schedule, clipping, the optimizer.

`config.optim` holds the shared settings; a sub-dict named after a player overrides them for
that player only (e.g. `config.optim.disc.learning_rate = 4e-4`).
"""

from typing import Any, Mapping

import ml_collections
import optax

from gen_jax import names

# Shared settings. `kwargs` goes to the optax constructor (e.g. b1=0.5 for a GAN's Adam).
DEFAULTS = dict(
    name="adam",  # any optax optimizer taking `learning_rate`: adam, adamw, sgd, lion, ...
    learning_rate=1e-3,
    schedule="constant",  # constant | cosine | linear (decay to 0 after a linear warm-up)
    warmup_steps=0,
    grad_clip_norm=0.0,  # 0 disables clipping by global norm
    kwargs={},
)


def learning_rate_schedule(cfg: Mapping[str, Any], num_steps: int) -> optax.Schedule:
  """A warm-up of `cfg.warmup_steps` steps followed by the named decay."""
  lr, warmup = cfg["learning_rate"], cfg["warmup_steps"]
  decay_steps = max(num_steps - warmup, 1)
  if cfg["schedule"] == "constant":
    decay = optax.constant_schedule(lr)
  elif cfg["schedule"] == "cosine":
    decay = optax.cosine_decay_schedule(lr, decay_steps)
  elif cfg["schedule"] == "linear":
    decay = optax.linear_schedule(lr, 0.0, decay_steps)
  else:
    raise names.UnknownNameError(
        f"Unknown optim.schedule {cfg['schedule']!r}. Valid choices: constant, cosine, linear.")
  if warmup == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), decay], [warmup])


def player_config(optim: ml_collections.ConfigDict, player: str) -> dict[str, Any]:
  """The shared settings with the player's overrides applied."""
  shared = {key: optim[key] for key in DEFAULTS}
  overrides = optim.get(player)
  if overrides is not None:
    shared.update(overrides.to_dict())
  shared["kwargs"] = dict(shared["kwargs"])
  return shared


def make_optimizer(cfg: Mapping[str, Any], num_steps: int) -> optax.GradientTransformation:
  """Builds the optimizer of one player from its resolved settings."""
  optimizer_fn = names.attribute(optax, cfg["name"], what="optim.name")
  optimizer = optimizer_fn(learning_rate=learning_rate_schedule(cfg, num_steps), **cfg["kwargs"])
  if cfg["grad_clip_norm"] > 0:
    optimizer = optax.chain(optax.clip_by_global_norm(cfg["grad_clip_norm"]), optimizer)
  return optimizer


def make_optimizers(optim: ml_collections.ConfigDict, players: tuple[str, ...],
                    num_steps: int) -> dict[str, optax.GradientTransformation]:
  return {p: make_optimizer(player_config(optim, p), num_steps) for p in players}
