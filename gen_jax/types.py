"""Type aliases and the protocols that connect methods, steps and samplers."""

from typing import Any, Callable, Mapping, Protocol

import jax
import numpy as np

PRNGKey = jax.Array  # [2] uint32 or a typed key array
Array = jax.Array
Params = Any  # a pytree of arrays (Flax's nested dict of parameters)
Batch = Mapping[str, np.ndarray | jax.Array]  # e.g. {"image": [batch, h, w, c], "label": [batch]}
Metrics = dict[str, jax.Array]  # scalar metrics of one step
ModelState = Any  # non-trainable collections, e.g. {"batch_stats": ...}; {} when unused
Variables = dict[str, Any]  # {"params": {player: params}, "model_state": ModelState}


class LossFn(Protocol):
  """A player's loss, the only thing the generic train step differentiates.

  `params_all` maps every player's name to its parameters, with this player's entry already
  replaced by `player_params`, the argument the step differentiates; the other entries are
  constants for this update.
  """

  def __call__(self, params_all: Mapping[str, Params], player_params: Params, batch: Batch,
               rng: PRNGKey, model_state: ModelState) -> tuple[Array, tuple[Metrics, ModelState]]:
    ...


TokensToLogits = Callable[[Array, Any], tuple[Array, Any]]  # (tokens, cache) -> (logits, cache)
DenoiseFn = Callable[[Array, Array, Any], Array]  # (x_t, t, cond) -> prediction
