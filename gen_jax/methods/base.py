"""The Method protocol: what the generic trainer needs from a generative method.

A method is a frozen dataclass of strategies (networks, loss functions, schedules) built by its
module's `from_config(config)`. It declares its trainable parameter groups as an ordered tuple of
players; the one train step in `gen_jax.train.step` updates them in that order.
"""

import dataclasses
from typing import Mapping, Protocol

from gen_jax.types import Array, Batch, LossFn, PRNGKey, Variables


@dataclasses.dataclass(frozen=True)
class Player:
  """A named parameter group with its own loss and its own optimizer.

  Attributes:
    name: key of this player's parameters in `variables["params"]` and of its optimizer config
      in `config.optim` (an optional sub-dict overriding the shared optimizer settings).
    loss_fn: see `gen_jax.types.LossFn`.
    repeats: how many updates this player makes per train step (a GAN's `n_critic`); each
      update sees the same batch and a fresh key.
  """

  name: str
  loss_fn: LossFn
  repeats: int = 1


class Method(Protocol):
  """What `train_and_evaluate` calls. All functions are pure and never jit themselves."""

  players: tuple[Player, ...]

  def init(self, rng: PRNGKey, batch: Batch) -> Variables:
    """Returns {"params": {player.name: params}, "model_state": {...}} for one example batch."""

  def sample(self, variables: Variables, rng: PRNGKey, num: int) -> Array | Mapping[str, Array]:
    """Draws `num` samples: images [num, h, w, c] in [-1, 1], points [num, 2], or tokens."""

  def evaluate(self, variables: Variables, batch: Batch, rng: PRNGKey
               ) -> dict[str, Array | tuple[Array, Array]]:
    """Per-example evaluation metrics: values [batch] (averaged over examples), or pairs
    (sums [batch], counts [batch]) averaged as sum(sums) / sum(counts), e.g. over tokens."""

  # Optional: `plot(variables, rng, *, step, directory, info) -> list[Path]`, called by the loop
  # whenever it samples, with the training (not EMA) parameters and the training data's
  # `DatasetInfo`, for figures beyond the samples (the GAN's GAN-Lab frames of 2-D runs).

