"""The one train step shared by every method, and the evaluation step. Pure and untransformed:
`gen_jax.train.setup` is the only place that jits them."""

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from gen_jax.methods.base import Method
from gen_jax.train.state import TrainState
from gen_jax.types import Batch, Metrics, PRNGKey, Variables


def init_state(method: Method, optimizers: Mapping[str, optax.GradientTransformation],
               rng: PRNGKey, batch: Batch, *, ema_decay: float) -> TrainState:
  """Initialises variables and optimizer states; usable under `jax.eval_shape`."""
  init_rng, run_rng = jax.random.split(rng)
  variables = method.init(init_rng, batch)
  # Strongly typed leaves: a weakly typed initial value would make the second step retrace.
  strong = lambda tree: jax.tree.map(lambda x: x.astype(x.dtype), tree)
  params = strong(variables["params"])
  names = [p.name for p in method.players]
  if set(names) != set(params):
    raise ValueError(f"{type(method).__name__}.init returned parameter groups {sorted(params)}, "
                     f"but its players are {names}: they must match one to one.")
  return TrainState(
      step=jnp.zeros([], jnp.int32),
      rng=run_rng,
      params=params,
      opt_state={name: optimizers[name].init(params[name]) for name in names},
      # A copy: called outside jit, `params` itself would be two leaves of one buffer, which a
      # step that donates the state refuses ("donate the same buffer twice").
      ema_params=jax.tree.map(jnp.copy, params) if ema_decay > 0 else None,
      model_state=strong(variables.get("model_state", {})))


def ema_decay_at(step: jnp.ndarray, decay: float) -> jnp.ndarray:
  """The decay of the EMA update made by train step `step` (0-based): [] float32,

      decay_s = min(decay, (1 + s) / (10 + s)),

  the warm-up of TensorFlow's `tf.train.ExponentialMovingAverage(decay, num_updates=s)` (s: the
  train steps taken before this one), which many diffusion codebases use (e.g. CompVis
  latent-diffusion's `LitEma`). A constant decay from the initial weights keeps a weight of
  decay^s on them (0.999^600 = 0.55: after 600 steps the average is still half initialisation);
  with the warm-up, after s updates that weight is prod_{t<s} decay_t = 1 / C(s + 9, 9) while
  the cap is not reached (5e-4 after 5 steps), and the average lags about s / 10 steps behind
  the parameters until (1 + s) / (10 + s) reaches `decay`.
  Chosen over a bias-corrected average (Adam-style division by 1 - decay^s), which removes the
  initial weights but still averages over every step since the start, bad early ones included.
  """
  s = jnp.asarray(step, jnp.float32)
  return jnp.minimum(jnp.float32(decay), (1.0 + s) / (10.0 + s))


def ema_update(ema_params, params, step: jnp.ndarray, decay: float):
  """`decay_s * ema_params + (1 - decay_s) * params` leaf by leaf, with `decay_s` of
  `ema_decay_at(step, decay)`; leaves keep their dtypes."""
  decay_s = ema_decay_at(step, decay)
  new = optax.incremental_update(params, ema_params, step_size=1.0 - decay_s)
  return jax.tree.map(lambda x, old: x.astype(old.dtype), new, ema_params)


def make_train_step(method: Method, optimizers: Mapping[str, optax.GradientTransformation],
                    *, ema_decay: float = 0.0
                    ) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
  """Builds `train_step(state, batch) -> (state, metrics)` for any number of players.

  For each player in order (and `player.repeats` times), the step differentiates that player's
  loss with respect to its own parameters only, applies its own optimizer, and hands the updated
  parameters to the players after it. Model state (e.g. batch statistics) is threaded through
  the players in the same order. Metrics are prefixed with the player's name; each player also
  reports the global norm of its gradient, so a non-finite update is caught even when the loss
  that produced it was finite. With `ema_decay > 0` the EMA of every player's parameters is
  updated once per train step with the warm-up of `ema_decay_at`.
  """
  players = tuple(method.players)

  def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    step_rng = jax.random.fold_in(state.rng, state.step)
    params = dict(state.params)
    opt_state = dict(state.opt_state)
    model_state = state.model_state
    metrics = {}
    for index, player in enumerate(players):
      player_rng = jax.random.fold_in(step_rng, index)

      def loss_fn(player_params, rng, model_state, name=player.name, loss=player.loss_fn):
        params_all = {**params, name: player_params}
        return loss(params_all, player_params, batch, rng, model_state)

      for repeat in range(player.repeats):
        rng, state_before = jax.random.fold_in(player_rng, repeat), model_state
        (loss, (aux, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params[player.name], rng, model_state)
        optimizer = optimizers[player.name]
        extra = {}
        if isinstance(optimizer, optax.GradientTransformationExtraArgs):
          # An optimizer that reads the loss itself (L-BFGS's line search) gets it, as a
          # function of this player's parameters with the same key, batch and state.
          extra = dict(value=loss, grad=grads, value_fn=lambda p, r=rng, m=state_before,
                       f=loss_fn: f(p, r, m)[0])
        updates, opt_state[player.name] = optimizer.update(
            grads, opt_state[player.name], params[player.name], **extra)
        params[player.name] = optax.apply_updates(params[player.name], updates)
      metrics[f"{player.name}/loss"] = loss
      metrics[f"{player.name}/grad_norm"] = optax.tree_utils.tree_norm(grads)
      metrics.update({f"{player.name}/{key}": value for key, value in aux.items()})

    ema_params = state.ema_params
    if ema_params is not None:
      ema_params = ema_update(ema_params, params, state.step, ema_decay)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              ema_params=ema_params, model_state=model_state)
    return new_state, metrics

  return train_step


def unrolled_steps(train_step: Callable[[TrainState, Batch], tuple[TrainState, Metrics]]
                   ) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
  """`steps(state, batches) -> (state, metrics)`: `train_step` over batches stacked on a leading
  axis of length n, unrolled into one program; every metric gains the leading axis [n].

  Jitted, n steps cost one dispatch and one transfer instead of n (see `train.steps_per_call`).
  Unrolled rather than a `lax.scan`: on XLA's CPU backend a convolution's weight gradient
  takes a slow path inside a scan's loop body (docs/performance.md). Compilation grows with n,
  which is meant to be small (about 10) and for models whose step takes well under a
  millisecond."""

  def steps(state: TrainState, batches: Batch) -> tuple[TrainState, Metrics]:
    per_step = []
    for i in range(jax.tree.leaves(batches)[0].shape[0]):
      state, metrics = train_step(state, jax.tree.map(lambda a, i=i: a[i], batches))
      per_step.append(metrics)
    return state, jax.tree.map(lambda *xs: jnp.stack(xs), *per_step)

  return steps


def make_eval_step(method: Method) -> Callable[[Variables, Batch, PRNGKey], Metrics]:
  """Builds `eval_step(variables, batch, rng) -> {name: (sum, count)}` over one batch.

  `method.evaluate` returns, per metric, either per-example values [batch] (averaged over
  examples) or a pair (sums [batch], counts [batch]) such as a sequence's summed token loss and
  its number of tokens (averaged over tokens). Padded examples (`batch["valid"]` False) get
  weight 0. Adding the returned sums and counts over a split and dividing gives exact means.
  """

  def eval_step(variables: Variables, batch: Batch, rng: PRNGKey) -> Metrics:
    per_example = method.evaluate(variables, batch, rng)
    out = {}
    for name, value in per_example.items():
      total, count = value if isinstance(value, tuple) else (value, jnp.ones_like(value))
      valid = batch.get("valid")
      valid = jnp.ones(total.shape, bool) if valid is None else valid
      out[name] = (jnp.sum(jnp.where(valid, total, 0.0)), jnp.sum(jnp.where(valid, count, 0.0)))
    return out

  return eval_step
