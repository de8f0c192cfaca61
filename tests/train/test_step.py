"""The generic players step against updates computed by hand."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gen_jax.methods.base import Player
from gen_jax.train import step as step_lib

LR = 0.1


@dataclasses.dataclass(frozen=True)
class TwoPlayerToy:
  """Players a and b with scalar parameters and coupled quadratic losses:

    loss_a(a, b) = (a - 2b)^2 * x,   loss_b(a, b) = (b + a)^2 * x,   x = mean(batch["x"]).
  """

  repeats_a: int = 1

  @property
  def players(self):
    return (Player("a", self.loss_a, repeats=self.repeats_a), Player("b", self.loss_b))

  def init(self, rng, batch):
    del rng, batch
    return {"params": {"a": jnp.array(1.0), "b": jnp.array(0.5)}, "model_state": {}}

  def loss_a(self, params_all, a, batch, rng, model_state):
    return (a - 2 * params_all["b"]) ** 2 * jnp.mean(batch["x"]), ({}, model_state)

  def loss_b(self, params_all, b, batch, rng, model_state):
    return (b + params_all["a"]) ** 2 * jnp.mean(batch["x"]), ({}, model_state)


def _setup(method, ema_decay=0.0):
  optimizers = {"a": optax.sgd(LR), "b": optax.sgd(LR)}
  batch = {"x": jnp.ones([4])}
  state = step_lib.init_state(method, optimizers, jax.random.PRNGKey(0), batch,
                              ema_decay=ema_decay)
  return state, step_lib.make_train_step(method, optimizers, ema_decay=ema_decay), batch


def test_players_update_in_order_each_on_its_own_loss():
  state, train_step, batch = _setup(TwoPlayerToy())
  new_state, metrics = train_step(state, batch)
  a0, b0 = 1.0, 0.5
  a1 = a0 - LR * 2 * (a0 - 2 * b0)  # d loss_a / d a at (a0, b0); b is untouched by this update
  b1 = b0 - LR * 2 * (b0 + a1)  # b's update sees the updated a; a is untouched by it
  np.testing.assert_allclose(new_state.params["a"], a1, rtol=1e-6)
  np.testing.assert_allclose(new_state.params["b"], b1, rtol=1e-6)
  np.testing.assert_allclose(metrics["a/loss"], (a0 - 2 * b0) ** 2, rtol=1e-6)
  np.testing.assert_allclose(metrics["b/loss"], (b0 + a1) ** 2, rtol=1e-6)
  assert int(new_state.step) == 1


def test_repeats_apply_that_many_updates():
  state, train_step, batch = _setup(TwoPlayerToy(repeats_a=3))
  new_state, _ = train_step(state, batch)
  a, b = 1.0, 0.5
  for _ in range(3):
    a = a - LR * 2 * (a - 2 * b)
  np.testing.assert_allclose(new_state.params["a"], a, rtol=1e-6)
  np.testing.assert_allclose(new_state.params["b"], b - LR * 2 * (b + a), rtol=1e-6)


def test_ema_is_updated_inside_the_step():
  decay = 0.9
  state, train_step, batch = _setup(TwoPlayerToy(), ema_decay=decay)
  new_state, _ = train_step(state, batch)
  for name, p0 in (("a", 1.0), ("b", 0.5)):
    expected = decay * p0 + (1 - decay) * float(new_state.params[name])
    np.testing.assert_allclose(new_state.ema_params[name], expected, rtol=1e-6)


def test_step_traces_once_over_many_steps():
  state, train_step, _ = _setup(TwoPlayerToy())
  jitted = jax.jit(chex.assert_max_traces(train_step, n=1), donate_argnums=0)
  for i in range(5):
    state, metrics = jitted(state, {"x": jnp.full([4], 1.0 + i)})
  assert int(state.step) == 5
  assert np.isfinite(float(metrics["a/loss"]))


def test_init_refuses_params_that_do_not_match_players():
  class Broken(TwoPlayerToy):
    def init(self, rng, batch):
      return {"params": {"a": jnp.array(1.0)}, "model_state": {}}

  with pytest.raises(ValueError, match="players are"):
    _setup(Broken())
