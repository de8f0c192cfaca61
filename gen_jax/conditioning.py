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
payload implements the same three: `TextConditional` reads byte token ids [batch, length] from
the batch, looks sampling prompts up in a table [num_prompts, length] it holds, and gives the
empty prompt (all padding) as its null condition, so that classifier-free guidance's
unconditional model is exactly the model's reading of the empty prompt (GLIDE, Nichol et al.
2022, sec. 3.2); embeddings of a frozen encoder would hold the encoder's restored parameters as
a field. Trainable parameters of a condition (a label embedding, a learned null embedding, a
text encoder) belong to the network that takes `cond`, so that the players step trains them
with it.

Text is encoded by `encode_text` (pure NumPy, shared with the data pipeline that builds
captions): each character's byte is its token id, ids 1 .. vocab_size - 1, right-padded with
the padding id 0 to a fixed length. The padding id is also the mask: a network reads token
`tokens != PAD_ID` as text.
"""

import dataclasses
import numbers
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.errors import SettingError
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
      raise SettingError(f"ClassConditional needs num_classes >= 1, got {self.num_classes!r}: "
                         "set model.num_classes to the number of labels (10 for digits).")
    if not 0.0 <= self.drop_prob < 1.0:
      raise SettingError(f"The label dropout probability must be in [0, 1), got "
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


# ----------------------------------------------------------------------------------------------
# Text: byte tokens, a table of sampling prompts, the empty prompt as the null condition.
# ----------------------------------------------------------------------------------------------

PAD_ID = 0  # the padding token; the empty prompt is all padding


def encode_text(texts: Sequence[str], max_len: int, vocab_size: int = 128, *,
                what: str = "text") -> np.ndarray:
  """Byte token ids [len(texts), max_len] int32 of `texts`, right-padded with `PAD_ID`.

  Each character's UTF-8 byte is its id, so the default vocabulary of 128 is ASCII. Pure NumPy:
  the data pipeline (captions) and `TextConditional` (prompts) share it.

  Args:
    texts: strings; "" is the empty prompt (all padding).
    max_len: the token length L; a text of more bytes is refused.
    vocab_size: ids are 1 .. vocab_size - 1 (id 0 is padding); 2 .. 256.
    what: how the messages name the texts (e.g. "model.prompts").

  Raises:
    ValueError: a text that is not a string, longer than `max_len` bytes, or holding a byte
      outside the vocabulary (a NUL byte, or a byte >= vocab_size such as a non-ASCII letter);
      the message names the text and what to change.
    SettingError: a `vocab_size` outside 2 .. 256 (model.text_vocab_size).
  """
  if not 2 <= vocab_size <= 256:
    raise SettingError(f"The text vocabulary must hold 2 .. 256 byte ids, got {vocab_size}: set "
                       "model.text_vocab_size (128 for ASCII).")
  if isinstance(texts, (str, bytes)):
    raise ValueError(f"{what} must be a sequence of strings; write ({texts!r},).")
  out = np.full((len(texts), max_len), PAD_ID, np.int32)
  for i, text in enumerate(texts):
    if not isinstance(text, str):
      raise ValueError(f"{what}[{i}] must be a string, got {text!r}.")
    data = np.frombuffer(text.encode("utf-8"), np.uint8)
    if len(data) > max_len:
      raise ValueError(f"{what}[{i}] = {text!r} is {len(data)} bytes, more than the maximum "
                       f"text length {max_len}: shorten it or raise model.max_text_len.")
    bad = sorted({int(b) for b in data if b == PAD_ID or b >= vocab_size})
    if bad:
      chars = ", ".join(repr(bytes([b])) for b in bad)
      raise ValueError(f"{what}[{i}] = {text!r} has bytes outside the text vocabulary "
                       f"(ids 1 .. {vocab_size - 1}; 0 is padding): {chars}. Remove them "
                       f"(e.g. non-ASCII letters) or raise model.text_vocab_size (at most 256).")
    out[i, :len(data)] = data
  return out


def decode_text(tokens: np.ndarray) -> list[str]:
  """The strings of byte token ids [n, length] (padding dropped): `encode_text`'s inverse."""
  tokens = np.asarray(tokens)
  return [bytes(int(t) for t in row if t != PAD_ID).decode("utf-8", errors="replace")
          for row in tokens.reshape(-1, tokens.shape[-1])]


@dataclasses.dataclass(frozen=True)
class TextConditional(Conditioning):
  """Byte token ids [batch, max_len] int32 from `batch[key]`; the sampling conditions are
  `prompts`, and the null condition is the empty prompt, `encode_text([""])`: all padding.

  Classifier-free guidance thus needs no null token of its own: dropping a caption in training
  (`drop_prob`) and the unconditional branch of guided sampling both feed the network the empty
  prompt's encoding, and the network reads it like any prompt (GLIDE, Nichol et al. 2022:
  captions replaced by the empty sequence 20% of the time; Ho & Salimans 2021).

  Attributes:
    prompts: the sampling prompts, e.g. ("a thick seven", "a thin, slanted two"), checked by
      `encode_text` when the strategy is made.
    max_len: the token length L of every condition.
    vocab_size: byte ids 1 .. vocab_size - 1 (0 is padding).
    key: the batch entry holding the token ids (e.g. "caption", made by the data pipeline).
    drop_prob: probability that a training example's text is replaced by the empty prompt.
  """

  prompts: tuple[str, ...]
  max_len: int
  vocab_size: int = 128
  key: str = "caption"
  drop_prob: float = 0.0

  def __post_init__(self):
    if isinstance(self.prompts, str) or not self.prompts:
      raise SettingError(f"TextConditional needs a non-empty tuple of sampling prompts, got "
                         f"{self.prompts!r}: set model.prompts, e.g. ('a thick seven',).")
    if not isinstance(self.max_len, numbers.Integral) or self.max_len < 1:
      raise SettingError(f"The maximum text length must be a positive integer, got "
                         f"{self.max_len!r}: set model.max_text_len.")
    if not 0.0 <= self.drop_prob < 1.0:
      raise SettingError(f"The prompt dropout probability must be in [0, 1), got "
                         f"{self.drop_prob}: set model.label_dropout.")
    try:
      encode_text(self.prompts, self.max_len, self.vocab_size, what="model.prompts")  # checks
    except ValueError as error:  # the prompts are a setting: main.py names them in one line
      raise SettingError(str(error)) from None

  @property
  def num_conditions(self) -> int:
    return len(self.prompts)

  @property
  def table(self) -> np.ndarray:
    """The sampling prompts' token ids [num_prompts, max_len] int32."""
    return encode_text(self.prompts, self.max_len, self.vocab_size, what="model.prompts")

  def encode(self, texts: Sequence[str]) -> Array:
    """Token ids [len(texts), max_len] of any texts, e.g. prompts not in the table."""
    return jnp.asarray(encode_text(texts, self.max_len, self.vocab_size, what="prompts"))

  def eval(self, batch: Batch) -> Array:
    if self.key not in batch:
      raise KeyError(f"The batch has no {self.key!r} entry of text tokens (its keys: "
                     f"{sorted(batch)}): set model.text_key, or add the captions in the data "
                     "pipeline (data.preprocess, e.g. 'digit_captions').")
    tokens = jnp.asarray(batch[self.key], jnp.int32)
    if tokens.ndim != 2 or tokens.shape[1] != self.max_len:
      raise SettingError(f"The batch's {self.key!r} entry must be token ids [batch, "
                         f"{self.max_len}] (model.max_text_len), got shape {tokens.shape}: make "
                         "model.max_text_len the data's text length.")
    return tokens  # [batch, max_len]

  def lookup(self, index: Array) -> Array:
    return jnp.asarray(self.table)[jnp.asarray(index, jnp.int32)]  # [num, max_len]

  def null(self, num: int) -> Array:
    return jnp.full((num, self.max_len), PAD_ID, jnp.int32)  # the empty prompt, [num, max_len]
