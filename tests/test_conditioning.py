"""gen_jax.conditioning: one interface for the GAN's and the diffusion model's conditions, exact
values of each derived condition, and a conditioning whose payload is not an int label."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax import conditioning
from gen_jax.methods import diffusion, gan


def test_the_gan_and_diffusion_share_one_conditioning_module():
  assert gan.ClassConditional is diffusion.ClassConditional is conditioning.ClassConditional
  assert gan.Unconditional is diffusion.Unconditional is conditioning.Unconditional


def test_class_labels_for_training_evaluation_and_sampling():
  cond = conditioning.ClassConditional(num_classes=3, key="mode", drop_prob=0.5)
  batch = {"mode": np.array([0, 1, 2, 2, 1, 0, 1, 2], np.int64)}
  np.testing.assert_array_equal(cond.eval(batch), batch["mode"])
  assert cond.eval(batch).dtype == jnp.int32
  rng = jax.random.PRNGKey(7)
  drop = np.asarray(jax.random.bernoulli(rng, 0.5, (8,)))  # one draw per example, from rng
  assert 0 < drop.sum() < 8
  np.testing.assert_array_equal(cond.train(batch, rng), np.where(drop, 3, batch["mode"]))
  no_dropout = dataclasses.replace(cond, drop_prob=0.0)
  np.testing.assert_array_equal(no_dropout.train(batch, None), batch["mode"])
  np.testing.assert_array_equal(cond.null(4), [3, 3, 3, 3])
  np.testing.assert_array_equal(cond.constant(2, 3), [2, 2, 2])
  np.testing.assert_array_equal(cond.blocks(7), [0, 0, 0, 1, 1, 2, 2])  # (i * 3) // 7
  np.testing.assert_array_equal(cond.rows(7, 2), [0, 0, 1, 1, 2, 2, 0])
  np.testing.assert_array_equal(cond.draw(jax.random.PRNGKey(1), 5),
                                jax.random.randint(jax.random.PRNGKey(1), (5,), 0, 3))


def test_unconditional_gives_none_everywhere():
  cond = conditioning.Unconditional()
  batch = {"point": np.zeros((4, 2))}
  assert cond.eval(batch) is None and cond.train(batch, jax.random.PRNGKey(0)) is None
  assert all(c is None for c in (cond.null(3), cond.constant(0, 3), cond.blocks(3),
                                 cond.rows(3, 1), cond.draw(jax.random.PRNGKey(0), 3)))


@dataclasses.dataclass(frozen=True)
class Prompts(conditioning.Conditioning):
  """A conditioning whose condition is a pytree: token ids [n, 3] and a mask [n, 3], from the
  batch or a table of sampling prompts; the null condition is the empty prompt."""

  table: tuple[tuple[int, ...], ...] = ((5, 6, 0), (7, 0, 0))
  drop_prob: float = 0.0

  @property
  def num_conditions(self) -> int:
    return len(self.table)

  def eval(self, batch):
    return {"tokens": jnp.asarray(batch["tokens"]), "mask": jnp.asarray(batch["mask"])}

  def lookup(self, index):
    tokens = jnp.asarray(self.table, jnp.int32)[index]
    return {"tokens": tokens, "mask": (tokens > 0).astype(jnp.float32)}

  def null(self, num):
    return {"tokens": jnp.zeros((num, 3), jnp.int32), "mask": jnp.zeros((num, 3), jnp.float32)}


def test_a_conditioning_with_a_pytree_payload_gets_dropout_blocks_and_rows():
  cond = Prompts(drop_prob=0.5)
  tokens = np.arange(1, 19, dtype=np.int32).reshape(6, 3)
  batch = {"tokens": tokens, "mask": np.ones((6, 3), np.float32)}
  rng = jax.random.PRNGKey(3)
  drop = np.asarray(jax.random.bernoulli(rng, 0.5, (6,)))
  assert 0 < drop.sum() < 6
  out = cond.train(batch, rng)
  # A dropped example's whole condition is the null one; the others are untouched.
  np.testing.assert_array_equal(out["tokens"], np.where(drop[:, None], 0, tokens))
  np.testing.assert_array_equal(out["mask"], np.where(drop[:, None], 0.0, np.ones((6, 3))))
  np.testing.assert_array_equal(cond.blocks(4)["tokens"], [[5, 6, 0], [5, 6, 0], [7, 0, 0],
                                                           [7, 0, 0]])
  np.testing.assert_array_equal(cond.rows(3, 1)["mask"], [[1, 1, 0], [1, 0, 0], [1, 1, 0]])
  np.testing.assert_array_equal(cond.constant(1, 2)["tokens"], [[7, 0, 0], [7, 0, 0]])
