"""The generic players step, its EMA and the eval step, against values computed by hand."""

import dataclasses
import functools
import math

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from gen_jax.methods.base import Player
from gen_jax.train import optimizers as optimizers_lib
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


GRAD = (1.0, -2.0)


@dataclasses.dataclass(frozen=True)
class LinearToy:
  """Players with linear losses sum(GRAD * p): plain SGD moves p by exactly -lr * GRAD in each
  update, so the learning rate of every update can be read off the parameters it saw. Each loss
  call writes its player's parameters into row `calls[name]` of model_state["seen"][name]."""

  INIT = (1.0, 1.0)
  players_repeats: tuple[tuple[str, int], ...] = (("critic", 3), ("gen", 1))
  max_calls: int = 64

  @property
  def players(self):
    return tuple(Player(name, functools.partial(self.loss, name=name), repeats=repeats)
                 for name, repeats in self.players_repeats)

  def init(self, rng, batch):
    del rng, batch
    names = [name for name, _ in self.players_repeats]
    return {"params": {name: jnp.array(self.INIT) for name in names},
            "model_state": {"seen": {name: jnp.zeros([self.max_calls, 2]) for name in names},
                            "calls": {name: jnp.zeros([], jnp.int32) for name in names}}}

  def loss(self, params_all, p, batch, rng, model_state, *, name):
    del params_all, batch, rng
    calls = model_state["calls"][name]
    model_state = {"seen": {**model_state["seen"],
                            name: model_state["seen"][name].at[calls].set(p)},
                   "calls": {**model_state["calls"], name: calls + 1}}
    return jnp.sum(jnp.array(GRAD) * p), ({}, model_state)


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
  state, train_step, batch = _setup(TwoPlayerToy(), ema_decay=0.9)
  new_state, _ = train_step(state, batch)
  decay_0 = min(0.9, (1 + 0) / (10 + 0))  # the warm-up's first decay: 0.1
  for name, p0 in (("a", 1.0), ("b", 0.5)):
    expected = decay_0 * p0 + (1 - decay_0) * float(new_state.params[name])
    np.testing.assert_allclose(new_state.ema_params[name], expected, rtol=1e-6)


@pytest.mark.parametrize("step, decay, expected", [
    (0, 0.999, 1 / 10), (1, 0.999, 2 / 11), (90, 0.999, 91 / 100),
    (79, 0.9, 80 / 89), (80, 0.9, 0.9), (1000, 0.9, 0.9),  # (1 + s) / (10 + s) >= 0.9 from s = 80
])
def test_ema_decay_warms_up_to_the_configured_decay(step, decay, expected):
  np.testing.assert_allclose(step_lib.ema_decay_at(jnp.int32(step), decay), expected, rtol=1e-6)


@pytest.mark.parametrize("num_steps, decay", [(5, 0.999), (30, 0.999), (100, 0.9)])
def test_ema_weight_on_the_initial_value_in_closed_form(num_steps, decay):
  # EMA from 1 of a parameter that is 0 after every update: what is left is the initial value's
  # weight, prod_{s < S} min(decay, (1 + s) / (10 + s)). Uncapped, the product telescopes to
  # 9! S! / (S + 9)! = 1 / C(S + 9, 9); capped from step c on, 0.9^(S - c) / C(c + 9, 9).
  ema = {"w": jnp.ones([2]), "b": jnp.ones([], jnp.float32)}
  zeros = jax.tree.map(jnp.zeros_like, ema)
  for s in range(num_steps):
    ema = step_lib.ema_update(ema, zeros, jnp.int32(s), decay)
  cap = next(s for s in range(10**6) if (1 + s) / (10 + s) >= decay)
  uncapped = min(num_steps, cap)
  expected = decay ** (num_steps - uncapped) / math.comb(uncapped + 9, 9)
  for leaf in jax.tree.leaves(ema):
    np.testing.assert_allclose(leaf, expected, rtol=1e-5)


def test_ema_keeps_each_leaf_dtype():
  ema = {"w": jnp.ones([2], jnp.bfloat16), "v": jnp.ones([2], jnp.float32)}
  new = step_lib.ema_update(ema, jax.tree.map(jnp.zeros_like, ema), jnp.int32(3), 0.999)
  assert jax.tree.map(lambda x: x.dtype, new) == jax.tree.map(lambda x: x.dtype, ema)


def ema_of_linear_path(p0: np.ndarray, velocity: np.ndarray, num_steps: int) -> np.ndarray:
  """The warm-up EMA (uncapped) after S steps of params p_t = p0 + t * velocity, in closed form.

  With F(s) = (s + 1) ... (s + 9), the recursion (10 + s) e_{s+1} = (1 + s) e_s + 9 p_{s+1}
  multiplied by (s + 2) ... (s + 9) reads F(s + 1) e_{s+1} = F(s) e_s + 9 (s + 2) ... (s + 9)
  p_{s+1}, so e_S = (9! p_0 + 9 sum_{t=1..S} (t + 1) ... (t + 8) p_t) / F(S).
  """
  weights = [math.factorial(9)] + [9 * math.prod(range(t + 1, t + 9))
                                   for t in range(1, num_steps + 1)]
  path = [p0 + t * velocity for t in range(num_steps + 1)]
  return sum(w * p for w, p in zip(weights, path)) / math.prod(range(num_steps + 1,
                                                                     num_steps + 10))


def test_ema_of_the_train_step_in_closed_form_and_near_recent_params():
  num_steps, decay = 20, 0.999
  method = LinearToy(players_repeats=(("w", 1),))
  optimizers = {"w": optax.sgd(LR)}
  batch = {"x": jnp.ones([4])}
  state = step_lib.init_state(method, optimizers, jax.random.PRNGKey(0), batch,
                              ema_decay=decay)
  train_step = jax.jit(step_lib.make_train_step(method, optimizers, ema_decay=decay))
  for _ in range(num_steps):
    state, _ = train_step(state, batch)
  p0, velocity = np.asarray(LinearToy.INIT, np.float64), -LR * np.asarray(GRAD, np.float64)
  np.testing.assert_allclose(state.params["w"], p0 + num_steps * velocity, rtol=1e-5)
  np.testing.assert_allclose(state.ema_params["w"],
                             ema_of_linear_path(p0, velocity, num_steps), rtol=1e-5)
  # The average lags about S / 10 steps behind the parameters and keeps 1 / C(29, 9) = 1e-7 of
  # the initial value; a constant decay of 0.999 would still be 98 % initialisation.
  distance = np.abs(np.asarray(state.ema_params["w"]) - np.asarray(state.params["w"]))
  assert np.all(distance < 0.15 * np.abs(num_steps * velocity)), distance


@pytest.mark.parametrize("schedule, warmup", [("cosine", 0), ("linear", 2)])
def test_each_update_of_a_repeated_player_uses_its_train_steps_rate(schedule, warmup):
  num_steps, repeats = 6, 3
  method = LinearToy(players_repeats=(("critic", repeats), ("gen", 1)))
  optim = ml_collections.ConfigDict({**optimizers_lib.DEFAULTS, "name": "sgd",
                                     "learning_rate": LR, "schedule": schedule,
                                     "warmup_steps": warmup})
  optimizers = optimizers_lib.make_optimizers(optim, method.players, num_steps)
  schedule_fn = optimizers_lib.learning_rate_schedule(optim, num_steps)
  batch = {"x": jnp.ones([4])}
  state = step_lib.init_state(method, optimizers, jax.random.PRNGKey(0), batch, ema_decay=0.0)
  train_step = jax.jit(step_lib.make_train_step(method, optimizers))
  for _ in range(num_steps):
    state, _ = train_step(state, batch)
  for name, updates in (("critic", repeats), ("gen", 1)):
    count = num_steps * updates
    assert int(state.model_state["calls"][name]) == count
    path = np.concatenate([state.model_state["seen"][name][:count], state.params[name][None]])
    # Update k moves the parameters by -lr_k * GRAD: lr_k = -(p_{k+1} - p_k) / GRAD.
    rates = -np.diff(path, axis=0) / np.array(GRAD)
    expected = np.repeat([float(schedule_fn(s)) for s in range(num_steps)], updates)
    np.testing.assert_allclose(rates, np.stack([expected, expected], 1), rtol=1e-5, atol=1e-7)
    assert np.all(rates[updates * max(warmup, 1):] > 0), (name, rates)  # nonzero to the end


@pytest.mark.parametrize("ema_decay", [0.0, 0.999])
def test_step_traces_once_over_many_steps(ema_decay):
  chex.clear_trace_counter()  # chex counts per function name, across parametrized cases
  state, train_step, _ = _setup(TwoPlayerToy(), ema_decay=ema_decay)
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


@dataclasses.dataclass(frozen=True)
class EvalToy:
  """`evaluate` returns a per-example metric and a (sums, counts) pair straight from the batch."""

  def evaluate(self, variables, batch, rng):
    del variables, rng
    return {"value": batch["value"], "tokens": (batch["token_sum"], batch["token_count"])}


EVAL_BATCH = {
    "value": jnp.array([1.0, 2.0, 30.0, 4.0, jnp.nan]),
    "token_sum": jnp.array([10.0, 20.0, 300.0, 40.0, jnp.inf]),
    "token_count": jnp.array([2, 3, 7, 5, 11], jnp.int32),
}


@pytest.mark.parametrize("valid, value, tokens", [
    # Rows 2 and 4 are padding (garbage values, NaN and inf included): weight 0, not counted.
    ([True, True, False, True, False], (1 + 2 + 4, 3), (10 + 20 + 40, 2 + 3 + 5)),
    ([False, False, False, False, False], (0, 0), (0, 0)),  # an all-padding batch adds nothing
    ([False, True, False, False, False], (2, 1), (20, 3)),
])
def test_eval_step_sums_and_counts_only_valid_rows(valid, value, tokens):
  batch = {**EVAL_BATCH, "valid": jnp.array(valid)}
  out = jax.jit(step_lib.make_eval_step(EvalToy()))({}, batch, jax.random.PRNGKey(0))
  assert set(out) == {"value", "tokens"}
  for name, expected in (("value", value), ("tokens", tokens)):
    total, count = out[name]
    assert (float(total), float(count)) == expected, name


def test_eval_step_without_a_valid_mask_counts_every_row():
  batch = {**EVAL_BATCH, "value": EVAL_BATCH["value"].at[4].set(5.0),
           "token_sum": EVAL_BATCH["token_sum"].at[4].set(50.0)}
  out = step_lib.make_eval_step(EvalToy())({}, batch, jax.random.PRNGKey(0))
  assert (float(out["value"][0]), float(out["value"][1])) == (1 + 2 + 30 + 4 + 5, 5)
  assert (float(out["tokens"][0]), float(out["tokens"][1])) == (10 + 20 + 300 + 40 + 50,
                                                                2 + 3 + 7 + 5 + 11)


def test_eval_means_over_batches_are_exact_split_means():
  # Two batches of one split, the second padded: summing (sum, count) pairs and dividing gives
  # the mean over the split's real examples, as the loop computes it.
  eval_step = step_lib.make_eval_step(EvalToy())
  first = {**EVAL_BATCH, "valid": jnp.array([True] * 4 + [False])}
  second = {**EVAL_BATCH, "valid": jnp.array([True, False, False, False, False])}
  sums = jax.tree.map(jnp.add, eval_step({}, first, None), eval_step({}, second, None))
  values = [1.0, 2.0, 30.0, 4.0] + [1.0]
  np.testing.assert_allclose(sums["value"][0] / sums["value"][1], np.mean(values), rtol=1e-6)
  np.testing.assert_allclose(sums["tokens"][0] / sums["tokens"][1],
                             (10 + 20 + 300 + 40 + 10) / (2 + 3 + 7 + 5 + 2), rtol=1e-6)


@dataclasses.dataclass(frozen=True)
class QuadraticToy:
  """One player p [3] with loss s * (1 + u) * 1/2 (p - c)^T A (p - c), A positive definite, where
  s = model_state["scale"] doubles at every loss call and u ~ U(0, 1) comes from the key: the
  line search must see the loss with the key and the state that gave the gradient."""

  A = np.array([[3.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 1.0]], np.float32)
  C = np.array([1.0, -2.0, 0.5], np.float32)

  @property
  def players(self):
    return (Player("p", self.loss),)

  def init(self, rng, batch):
    del rng, batch
    return {"params": {"p": jnp.zeros([3])}, "model_state": {"scale": jnp.ones([])}}

  def value(self, p, scale, rng):
    d = p - self.C
    return scale * (1 + jax.random.uniform(rng)) * 0.5 * d @ self.A @ d

  def loss(self, params_all, p, batch, rng, model_state):
    del params_all, batch
    scale = model_state["scale"]
    return self.value(p, scale, rng), ({}, {"scale": 2 * scale})


def test_an_optimizer_with_a_line_search_gets_the_players_loss():
  # Oracle: optax's documented L-BFGS loop, which hands the loss function to the update.
  method, opt = QuadraticToy(), optax.lbfgs()
  batch = {"x": jnp.ones([4])}
  state = step_lib.init_state(method, {"p": opt}, jax.random.PRNGKey(0), batch, ema_decay=0.0)
  step = jax.jit(step_lib.make_train_step(method, {"p": opt}, ema_decay=0.0))
  p, opt_state = jnp.zeros([3]), opt.init(jnp.zeros([3]))

  @jax.jit
  def oracle(p, opt_state, scale, rng):
    value_fn = lambda p: method.value(p, scale, rng)
    value, grad = jax.value_and_grad(value_fn)(p)
    updates, opt_state = opt.update(grad, opt_state, p, value=value, grad=grad,
                                    value_fn=value_fn)
    return optax.apply_updates(p, updates), opt_state

  for t in range(8):
    # The step's key for player 0, update 0 (gen_jax.train.step), and the state before it.
    rng = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(state.rng, t), 0), 0)
    state, _ = step(state, batch)
    p, opt_state = oracle(p, opt_state, 2.0 ** t, rng)
    np.testing.assert_allclose(state.params["p"], p, rtol=1e-5, atol=1e-6)
  # The minimum is the same for every scale and key: the steps close in on it.
  assert np.linalg.norm(state.params["p"] - QuadraticToy.C) < 0.6 * np.linalg.norm(QuadraticToy.C)
