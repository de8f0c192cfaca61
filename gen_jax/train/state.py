"""The train state: arrays only. Functions that use it live in closures built by factories."""

from typing import Any

import flax


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to continue exactly; saved whole in every checkpoint.

  Attributes:
    step: [] int32, the number of train steps taken.
    rng: [2] uint32, the run's base key; step `s` uses `fold_in(rng, s)`.
    params: {player_name: params}.
    opt_state: {player_name: optax state of that player's optimizer}.
    ema_params: {player_name: params}, the exponential moving average of `params` (decay
      min(train.ema_decay, (1 + s) / (10 + s)) at step s: `gen_jax.train.step.ema_decay_at`), or
      None when the config's `train.ema_decay` is 0.
    model_state: non-trainable collections (e.g. {"batch_stats": ...}); {} when unused.
  """

  step: Any
  rng: Any
  params: Any
  opt_state: Any
  ema_params: Any
  model_state: Any

  def variables(self, use_ema: bool = True) -> dict[str, Any]:
    """The variables a method's `sample` / `evaluate` take: EMA parameters when there are any."""
    params = self.ema_params if (use_ema and self.ema_params is not None) else self.params
    return {"params": params, "model_state": self.model_state}
