"""Optax optimizers built from a config: a learning-rate schedule, clipping, the optimizer.

`config.optim` holds the shared settings; a sub-dict named after a player overrides them for
that player only (e.g. `config.optim.disc.learning_rate = 4e-4`).
"""

from typing import Any, Mapping, Sequence

import ml_collections
import optax

from gen_jax import names
from gen_jax.methods.base import Player

# Shared settings. `kwargs` goes to the optax constructor (e.g. b1=0.5 for a GAN's Adam).
DEFAULTS = dict(
    name="adam",  # any optax optimizer taking `learning_rate`: adam, adamw, sgd, lion, ...
    learning_rate=1e-3,
    schedule="constant",  # constant | cosine | linear (decay to 0 after a linear warm-up)
    warmup_steps=0,
    grad_clip_norm=0.0,  # 0 disables clipping by global norm
    kwargs={},
)


def learning_rate_schedule(cfg: Mapping[str, Any], num_steps: int,
                           repeats: int = 1) -> optax.Schedule:
  """The learning rate of a player's update number `count`, counted in train steps.

  A warm-up of `cfg.warmup_steps` train steps (linear from 0) followed by the named decay to
  `num_steps` (optax's `warmup_cosine_decay_schedule` with `init_value=0`, for a cosine). optax
  calls a schedule with the optimizer's update count; a player with `repeats` updates per train
  step (a GAN's `n_critic`) makes `repeats` of them per train step, so update `count` belongs to
  train step `count // repeats`, and every update of train step s gets the rate of step s.
  Without that, its schedule and warm-up would run `repeats` times too fast (a cosine would reach
  0 after `num_steps / repeats` train steps).
  """
  if not isinstance(repeats, int) or repeats < 1:
    raise ValueError(f"A player's repeats (its updates per train step) must be an integer >= 1, "
                     f"got {repeats!r}.")
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
  if warmup > 0:
    decay = optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), decay], [warmup])
  if repeats == 1:
    return decay
  return lambda count: decay(count // repeats)


def player_config(optim: ml_collections.ConfigDict, player: str) -> dict[str, Any]:
  """The shared settings with the player's overrides applied."""
  shared = {key: optim[key] for key in DEFAULTS}
  overrides = optim.get(player)
  if overrides is not None:
    shared.update(overrides.to_dict())
  shared["kwargs"] = dict(shared["kwargs"])
  return shared


def make_optimizer(cfg: Mapping[str, Any], num_steps: int,
                   repeats: int = 1) -> optax.GradientTransformation:
  """Builds the optimizer of one player from its resolved settings; `repeats` is the number of
  updates the player makes per train step (see `learning_rate_schedule`)."""
  optimizer_fn = names.attribute(optax, cfg["name"], what="optim.name")
  optimizer = optimizer_fn(learning_rate=learning_rate_schedule(cfg, num_steps, repeats),
                           **cfg["kwargs"])
  if cfg["grad_clip_norm"] > 0:
    optimizer = optax.chain(optax.clip_by_global_norm(cfg["grad_clip_norm"]), optimizer)
  return optimizer


def make_optimizers(optim: ml_collections.ConfigDict, players: Sequence[Player | str],
                    num_steps: int) -> dict[str, optax.GradientTransformation]:
  """One optimizer per player, keyed by name, with schedules counted in train steps.

  Args:
    optim: `config.optim`, the shared settings and the players' overrides.
    players: the method's `players`; each one's `repeats` sets how many of its optimizer's
      updates make one train step. A bare name stands for a player updated once per step.
    num_steps: the run's number of train steps, over which the schedules decay.
  """
  optimizers = {}
  for player in players:
    name, repeats = (player.name, player.repeats) if isinstance(player, Player) else (player, 1)
    optimizers[name] = make_optimizer(player_config(optim, name), num_steps, repeats)
  return optimizers
