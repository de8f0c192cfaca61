"""Optimizers built from a config: schedules, per-player overrides, clipping, repeated players.

The learning rate an optimizer applies is read off plain SGD on a linear loss: its update is
exactly -lr * grad, so with a gradient of ones the update of every parameter is -lr.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from gen_jax import names
from gen_jax.methods.base import Player
from gen_jax.train import config as config_lib
from gen_jax.train import optimizers as optimizers_lib
from gen_jax.train import setup as setup_lib
from gen_jax.train import step as step_lib

LR = 0.1


def settings(**overrides) -> dict:
  return {**optimizers_lib.DEFAULTS, "name": "sgd", "learning_rate": LR, **overrides}


def applied_rates(optimizer: optax.GradientTransformation, num_updates: int) -> np.ndarray:
  """The learning rate of each of `num_updates` SGD updates: -update / grad with grad = 1."""
  params = jnp.zeros([3])
  opt_state = optimizer.init(params)
  rates = []
  for _ in range(num_updates):
    updates, opt_state = optimizer.update(jnp.ones([3]), opt_state, params)
    np.testing.assert_array_equal(updates, jnp.full([3], updates[0]))
    rates.append(-float(updates[0]))
  return np.array(rates)


def cosine(step: int, lr: float, steps: int) -> float:
  return lr * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))


@pytest.mark.parametrize("schedule, warmup, expected", [
    # Constant: lr throughout; with a warm-up, lr * s / warmup before it.
    ("constant", 0, lambda s: LR),
    ("constant", 4, lambda s: LR * s / 4 if s < 4 else LR),
    # Cosine from lr at step 0 to 0 at step N = 10 (Loshchilov & Hutter 2017, one cycle).
    ("cosine", 0, lambda s: cosine(s, LR, 10)),
    ("cosine", 4, lambda s: LR * s / 4 if s < 4 else cosine(s - 4, LR, 6)),
    # Linear from lr at the end of the warm-up to 0 at step N.
    ("linear", 0, lambda s: LR * max(1 - s / 10, 0)),
    ("linear", 4, lambda s: LR * s / 4 if s < 4 else LR * max(1 - (s - 4) / 6, 0)),
])
def test_schedule_values_in_closed_form(schedule, warmup, expected):
  fn = optimizers_lib.learning_rate_schedule(settings(schedule=schedule, warmup_steps=warmup), 10)
  steps = np.arange(12)  # past the end: decaying schedules stay at 0
  np.testing.assert_allclose([fn(s) for s in steps], [expected(s) for s in steps],
                             rtol=1e-6, atol=1e-9)


def test_cosine_with_warmup_is_optax_warmup_cosine():
  fn = optimizers_lib.learning_rate_schedule(settings(schedule="cosine", warmup_steps=3), 20)
  reference = optax.warmup_cosine_decay_schedule(0.0, LR, warmup_steps=3, decay_steps=20)
  steps = np.arange(22)
  np.testing.assert_allclose([fn(s) for s in steps], [reference(s) for s in steps], rtol=1e-6,
                             atol=1e-9)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
@pytest.mark.parametrize("warmup", [0, 3])
def test_decay_is_nonzero_until_the_last_step_and_zero_after(schedule, warmup):
  num_steps = 8
  fn = optimizers_lib.learning_rate_schedule(
      settings(schedule=schedule, warmup_steps=warmup), num_steps)
  rates = np.array([fn(s) for s in range(num_steps + 1)])
  assert np.all(rates[1:num_steps] > 0), rates
  assert rates[num_steps] == 0.0


def test_unknown_schedule_is_refused_with_the_choices():
  with pytest.raises(names.UnknownNameError, match="'cosin'.*constant, cosine, linear"):
    optimizers_lib.learning_rate_schedule(settings(schedule="cosin"), 10)


@pytest.mark.parametrize("repeats", [1, 2, 4])
@pytest.mark.parametrize("schedule, warmup", [("cosine", 0), ("linear", 3), ("constant", 2)])
def test_every_update_of_a_train_step_uses_that_steps_rate(repeats, schedule, warmup):
  num_steps = 8
  cfg = settings(schedule=schedule, warmup_steps=warmup)
  per_step = optimizers_lib.learning_rate_schedule(cfg, num_steps)
  rates = applied_rates(optimizers_lib.make_optimizer(cfg, num_steps, repeats),
                        num_steps * repeats)
  expected = [float(per_step(s)) for s in range(num_steps) for _ in range(repeats)]
  np.testing.assert_allclose(rates, expected, rtol=1e-6, atol=1e-9)
  if schedule != "constant":
    assert np.all(rates[repeats:] > 0), rates  # still learning in the last train step


def test_make_optimizers_paces_each_player_by_its_repeats():
  optim = ml_collections.ConfigDict(settings(schedule="cosine"))
  players = (Player("disc", loss_fn=None, repeats=4), Player("gen", loss_fn=None))
  optimizers = optimizers_lib.make_optimizers(optim, players, 8)
  expected = [cosine(s, LR, 8) for s in range(8)]
  np.testing.assert_allclose(applied_rates(optimizers["disc"], 32), np.repeat(expected, 4),
                             rtol=1e-6, atol=1e-9)
  np.testing.assert_allclose(applied_rates(optimizers["gen"], 8), expected, rtol=1e-6,
                             atol=1e-9)
  # A bare name is a player updated once per train step.
  by_name = optimizers_lib.make_optimizers(optim, ("gen",), 8)
  np.testing.assert_allclose(applied_rates(by_name["gen"], 8), expected, rtol=1e-6, atol=1e-9)


def test_repeats_below_one_are_refused():
  with pytest.raises(ValueError, match="repeats .* integer >= 1, got 0"):
    optimizers_lib.make_optimizer(settings(), 8, repeats=0)


def gan_config(**optim) -> ml_collections.ConfigDict:
  c = config_lib.defaults("gan")
  c.model.update(networks="mlp", gen_features=(8,), disc_features=(8,), latent_dim=2,
                 data_key="point", n_critic=4)
  c.data.update(name="toy2d/ring8", batch_size=8)
  c.optim.update({"name": "sgd", "learning_rate": LR, "schedule": "cosine", **optim})
  c.train.num_steps = 8
  return config_lib.resolve(c)


def test_loop_builds_a_critic_optimizer_counted_in_train_steps():
  # The reported case: n_critic = 4, SGD at 0.1, cosine over 8 steps. Counted in updates, the
  # discriminator's rate was 0 from train step 2 on.
  optimizers = setup_lib.make_setup(gan_config()).optimizers
  expected = [cosine(s, LR, 8) for s in range(8)]
  np.testing.assert_allclose(applied_rates(optimizers["disc"], 32), np.repeat(expected, 4),
                             rtol=1e-6, atol=1e-9)
  np.testing.assert_allclose(applied_rates(optimizers["gen"], 8), expected, rtol=1e-6,
                             atol=1e-9)


def test_gan_critic_keeps_learning_in_every_train_step():
  setup = setup_lib.make_setup(gan_config())
  method, optimizers, init_fn = setup.method, setup.optimizers, setup.init_fn
  angles = jnp.arange(8) * (2 * math.pi / 8)
  batch = {"point": jnp.stack([jnp.cos(angles), jnp.sin(angles)], -1)}
  state = init_fn(jax.random.PRNGKey(0), batch)
  step = jax.jit(step_lib.make_train_step(method, optimizers))
  for s in range(8):
    new_state, _ = step(state, batch)
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                                         new_state.params["disc"], state.params["disc"]))
    assert max(moved) > 0, f"the discriminator did not change in train step {s}"
    state = new_state


def test_player_overrides_change_only_that_player():
  config = gan_config(kwargs=dict(momentum=0.5), disc=dict(learning_rate=0.3, warmup_steps=2))
  disc = optimizers_lib.player_config(config.optim, "disc")
  gen = optimizers_lib.player_config(config.optim, "gen")
  shared = dict(name="sgd", learning_rate=LR, schedule="cosine", warmup_steps=0,
                grad_clip_norm=0.0, kwargs={"momentum": 0.5})
  assert gen == shared
  assert disc == {**shared, "learning_rate": 0.3, "warmup_steps": 2}
  assert config.optim.learning_rate == LR  # the shared settings are left as they were


def test_kwargs_reach_the_optax_constructor():
  # Adam with b1 = 0 (no momentum) against optax's own: the first update is -lr * sign(g) for
  # any b1, so three updates with changing gradients tell b1 = 0 from the default 0.9.
  config = gan_config(name="adam", schedule="constant", kwargs=dict(b1=0.0, b2=0.99),
                      gen=dict(learning_rate=2e-3))
  optimizers = setup_lib.make_setup(config).optimizers
  grads = [jnp.array([1.0, -2.0]), jnp.array([-3.0, 0.5]), jnp.array([2.0, 2.0])]

  def updates(optimizer):
    params, state, out = jnp.zeros([2]), optimizer.init(jnp.zeros([2])), []
    for g in grads:
      u, state = optimizer.update(g, state, params)
      out.append(u)
    return np.stack(out)

  np.testing.assert_allclose(updates(optimizers["disc"]),
                             updates(optax.adam(LR, b1=0.0, b2=0.99)), rtol=1e-6)
  np.testing.assert_allclose(updates(optimizers["gen"]),
                             updates(optax.adam(2e-3, b1=0.0, b2=0.99)), rtol=1e-6)
  assert not np.allclose(updates(optimizers["disc"]), updates(optax.adam(LR, b2=0.99)))


@pytest.mark.parametrize("grad, expected", [
    # Global norm sqrt(3^2 + 4^2 + 12^2) = 13 > 1: scaled to norm 1.
    ({"a": [3.0, 4.0], "b": [12.0]}, {"a": [3 / 13, 4 / 13], "b": [12 / 13]}),
    # Norm 0.5 <= 1: unchanged.
    ({"a": [0.3, 0.4], "b": [0.0]}, {"a": [0.3, 0.4], "b": [0.0]}),
])
def test_gradients_are_clipped_to_the_global_norm(grad, expected):
  optimizer = optimizers_lib.make_optimizer(settings(learning_rate=1.0, grad_clip_norm=1.0), 8)
  grad = jax.tree.map(jnp.array, grad)
  params = jax.tree.map(jnp.zeros_like, grad)
  updates, _ = optimizer.update(grad, optimizer.init(params), params)
  jax.tree.map(lambda u, e: np.testing.assert_allclose(-u, e, rtol=1e-6), updates,
               jax.tree.map(np.array, expected))


def test_no_clipping_when_the_norm_is_zero():
  optimizer = optimizers_lib.make_optimizer(settings(learning_rate=1.0), 8)
  grad = jnp.array([300.0, 400.0])
  updates, _ = optimizer.update(grad, optimizer.init(jnp.zeros([2])), jnp.zeros([2]))
  np.testing.assert_allclose(updates, -grad, rtol=1e-6)
