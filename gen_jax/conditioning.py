"""Conditioning: what a conditional model is told about each example, through one interface.

A conditioning strategy makes the *condition* that a model's networks take beside their input
(`cond`: a pytree of arrays with a leading [batch] axis, or None for an unconditional model). The
GAN and the diffusion model use the same strategies:

  train(batch, rng)      the conditions of a training batch; with `drop_prob` > 0 each example's
                         condition is replaced by the null condition with that probability, so
                         one network learns the conditional and the unconditional model, as
                         classifier-free guidance needs (Ho & Salimans 2021)
  eval(batch)            the batch's own conditions (evaluation, initialisation)
  null(num)              `num` null conditions: the unconditional model of `train`'s dropout
  constant(index, num)   `num` copies of sampling condition `index` (e.g. one class)
  blocks(num)            the sampling conditions in equal blocks, in order: a square grid of
                         `num` reads condition by condition
  rows(num, columns)     one sampling condition per row of a grid of `columns` columns, cycling
  draw(rng, num)         uniform draws of the sampling conditions
  num_conditions         how many sampling conditions there are (classes; sampling prompts)

The sampling conditions are indexed 0 .. num_conditions - 1 and `lookup(index)` turns indices
[num] into conditions. Everything above is written once, in `Conditioning`, on top of `eval`,
`lookup` and `null`, which is all a new conditioning defines. `ClassConditional`'s conditions are
the int32 labels themselves and its null label is `num_classes`. A conditioning with another
payload implements the same three: text would read token ids [batch, length] from the batch,
look sampling prompts up in a table [num_prompts, length] it holds, and give the empty prompt as
its null condition; embeddings of a frozen encoder would hold the encoder's restored parameters
as a field. Trainable parameters of a condition (a label embedding, a learned null embedding)
belong to the network that takes `cond`, so that the players step trains them with it.
"""

import dataclasses
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.types import Array, Batch, PRNGKey

Cond = Any  # a pytree of arrays with a leading [batch] axis, or None


class Conditioning:
  """The interface, and everything derived from `eval`, `lookup` and `null` (module docstring).

  Subclasses are frozen dataclasses with the fields `num_conditions` (or a property of that
  name) and `drop_prob`.
  """

  num_conditions: int = 1
  drop_prob: float = 0.0

  def eval(self, batch: Batch) -> Cond:
    """The batch's own conditions, [batch, ...]."""
    raise NotImplementedError

  def lookup(self, index: Array) -> Cond:
    """The sampling conditions of indices [num] int32 in [0, num_conditions): [num, ...]."""
    raise NotImplementedError

  def null(self, num: int) -> Cond:
    """`num` null conditions, [num, ...]."""
    raise NotImplementedError

  def train(self, batch: Batch, rng: PRNGKey | None) -> Cond:
    """The batch's conditions, each replaced by the null condition with probability
    `drop_prob` (one Bernoulli draw per example from `rng`; `rng` is unused when it is 0)."""
    cond = self.eval(batch)
    if cond is None or self.drop_prob == 0:
      return cond
    num = jax.tree.leaves(cond)[0].shape[0]
    drop = jax.random.bernoulli(rng, self.drop_prob, (num,))  # [batch]
    return jax.tree.map(lambda c, n: jnp.where(drop.reshape((num,) + (1,) * (c.ndim - 1)), n, c),
                        cond, self.null(num))

  def constant(self, index: int, num: int) -> Cond:
    """`num` copies of sampling condition `index`, e.g. to plot what a model does for one
    class."""
    return self.lookup(jnp.full((num,), index, jnp.int32))

  def blocks(self, num: int) -> Cond:
    """Conditions in equal blocks, in order: index (i * num_conditions) // num for i < num."""
    return self.lookup(jnp.asarray((np.arange(num) * self.num_conditions) // num, jnp.int32))

  def rows(self, num: int, columns: int) -> Cond:
    """One condition per row of a grid of `columns` columns: row r shows r % num_conditions."""
    return self.lookup((jnp.arange(num, dtype=jnp.int32) // columns) % self.num_conditions)

  def draw(self, rng: PRNGKey, num: int) -> Cond:
    """`num` uniform draws of the sampling conditions."""
    return self.lookup(jax.random.randint(rng, (num,), 0, self.num_conditions))

  def sample_labels(self, num: int) -> Cond:
    """`blocks(num)`, under the name that experiments/benchmarks/diffusion.py calls."""
    return self.blocks(num)


@dataclasses.dataclass(frozen=True)
class Unconditional(Conditioning):
  """No condition: every condition is None."""

  def eval(self, batch: Batch) -> None:
    del batch

  def lookup(self, index: Array) -> None:
    del index

  def null(self, num: int) -> None:
    del num

  def draw(self, rng: PRNGKey, num: int) -> None:
    del rng, num  # nothing to draw


@dataclasses.dataclass(frozen=True)
class ClassConditional(Conditioning):
  """Int labels [batch] from `batch[key]` in [0, num_classes); the null label is `num_classes`.

  Attributes:
    num_classes: number of real labels (the sampling conditions are the labels themselves).
    key: the batch entry holding the labels (`"mode"` for toy2d: the mixture component).
    drop_prob: probability that a training example's label is replaced by the null label.
  """

  num_classes: int
  key: str = "label"
  drop_prob: float = 0.0

  def __post_init__(self):
    if not isinstance(self.num_classes, numbers.Integral) or self.num_classes < 1:
      raise ValueError(f"ClassConditional needs num_classes >= 1, got {self.num_classes!r}: "
                       "set model.num_classes to the number of labels (10 for digits).")
    if not 0.0 <= self.drop_prob < 1.0:
      raise ValueError(f"The label dropout probability must be in [0, 1), got "
                       f"{self.drop_prob}: set model.label_dropout.")

  @property
  def num_conditions(self) -> int:
    return self.num_classes

  def eval(self, batch: Batch) -> Array:
    if self.key not in batch:
      raise KeyError(f"The batch has no {self.key!r} entry of labels (its keys: "
                     f"{sorted(batch)}): set model.label_key.")
    return jnp.asarray(batch[self.key], jnp.int32)  # [batch]

  def lookup(self, index: Array) -> Array:
    return jnp.asarray(index, jnp.int32)  # [num]

  def null(self, num: int) -> Array:
    return jnp.full((num,), self.num_classes, jnp.int32)  # [num]
