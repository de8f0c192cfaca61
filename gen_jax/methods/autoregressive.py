"""Autoregressive models of token sequences: a causal transformer trained by teacher forcing.

Generic over token data. Batches hold token ids `[batch, length]` under `tokens_key` ("tokens"
for text; e.g. "codes" for a prior over VQ codes, or flattened pixel levels), and, for
evaluation windows, `mask` `[batch, length]` (the key `mask_key` names) marking the targets that
count: position i is predicted from positions < i, so the model reads ids[:, :-1] and is scored
on ids[:, 1:].
Evaluation reports bits per token (bits per byte for byte-level corpora) over every scored token
of the split.

Two strategies, each a field, make the rest swappable:

* the codec: how the config's prompt string becomes token ids and ids become text for display:
  `BytesCodec` (UTF-8 bytes, byte-level text) or `IdentityCodec` (the ids written as integers,
  for codes and pixels). Nothing else in the method knows what a token means.
* the decoder: `Greedy`, `Sampling` or `BeamSearch`, each called as
  `decoder(tokens_to_logits, prompt, cache, rng, max_new_tokens) -> [batch, max_new_tokens]` ids
  through `gen_jax.sampling.decoding`, with a KV cache. `sample` (the loop's samples) uses the
  method's decoder, named by `model.decoder`; `generate` takes any.

Samples and generations are token ids. A conditioning prefix (e.g. a class token) belongs at the
front of the prompt ids, where the decoders already accept any prompt length.
"""

import abc
import dataclasses
import math
import re
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from ml_collections import config_dict

from gen_jax import names
from gen_jax.errors import SettingError, concrete
from gen_jax.losses import sequence
from gen_jax.methods.base import Player
from gen_jax.nn.transformer import Transformer, TransformerConfig
from gen_jax.sampling import decoding
from gen_jax.types import Batch, PRNGKey, Variables

PLAYER = "model"
# Model keys that only change how a run samples, never the parameters: a resumed run may change
# them (gen_jax.train.checkpoint).
SAMPLING_KEYS = frozenset({"codec", "sample_prompt", "sample_length", "decoder", "temperature",
                           "top_k", "top_p", "beam_size", "length_penalty", "eos_id"})


def default_model_config() -> dict[str, Any]:
  return dict(
      # The transformer: the fields of gen_jax.nn.transformer.TransformerConfig.
      **dataclasses.asdict(TransformerConfig(vocab_size=256, num_layers=4)),
      # Mixed precision: "bfloat16" computes in bfloat16 (softmax and logits in float32) with
      # float32 parameters, for GPUs and TPUs.
      compute_dtype="float32",
      label_smoothing=0.0,
      tokens_key="tokens",  # the batch key of the token ids [batch, length]
      # The batch key of the target weights [batch, length] (a caption's bytes:
      # "name_caption_mask"); "" uses "mask" when the batch has it (a byte stream's windows).
      mask_key="",
      codec="bytes",  # `CODECS`: how sample_prompt becomes ids: bytes | identity
      # What the loop's periodic samples look like (experiments/sample.py takes its own flags).
      sample_prompt="def ",  # encoded by the codec (identity: ids such as "0" or "3 1 4")
      sample_length=192,  # tokens generated after the prompt
      decoder="sampling",  # `DECODERS`: greedy | sampling | beam_search
      temperature=0.8, top_k=0, top_p=0.95,  # Sampling's fields (see decoding.filter_logits)
      beam_size=4, length_penalty=0.0,  # BeamSearch's fields (GNMT's alpha)
      # Every decoder: the end token, or None for fixed-length samples (an int-typed None, so
      # that --config.model.eos_id=N can set it).
      eos_id=config_dict.placeholder(int),
  )


# ----------------------------------------------------------------------------------------------
# Codecs: the config's prompt string <-> token ids.
# ----------------------------------------------------------------------------------------------


class Codec(abc.ABC):
  """A codec, chosen by `model.codec` among the subclasses here (`BytesCodec` is "bytes")."""

  @abc.abstractmethod
  def encode(self, text: str) -> tuple[int, ...]:
    """Token ids of `text`."""

  @abc.abstractmethod
  def decode(self, ids: Sequence[int]) -> str:
    """Text that shows `ids`."""


@dataclasses.dataclass(frozen=True)
class BytesCodec(Codec):
  """Byte-level text: a string is its UTF-8 bytes (ids 0..255)."""

  def encode(self, text: str) -> tuple[int, ...]:
    return tuple(text.encode("utf-8"))

  def decode(self, ids: Sequence[int]) -> str:
    """Invalid UTF-8, and ids outside 0..255 (as the byte 0xFF, never valid), show as U+FFFD."""
    return bytes(i if 0 <= i < 256 else 0xFF for i in map(int, ids)).decode(
        "utf-8", errors="replace")


@dataclasses.dataclass(frozen=True)
class IdentityCodec(Codec):
  """Codes and pixels: a string is the ids themselves, integers separated by spaces or commas."""

  def encode(self, text: str) -> tuple[int, ...]:
    parts = [p for p in re.split(r"[\s,]+", text.strip()) if p]
    if not all(re.fullmatch(r"\d+", p) for p in parts):
      raise ValueError(f"The identity codec reads token ids as non-negative integers separated "
                       f"by spaces or commas (e.g. '0' or '3 1 4'), got {text!r}.")
    return tuple(int(p) for p in parts)

  def decode(self, ids: Sequence[int]) -> str:
    return " ".join(str(int(i)) for i in ids)


# ----------------------------------------------------------------------------------------------
# Decoders: (tokens_to_logits, prompt, cache, rng, max_new_tokens) -> [batch, max_new_tokens].
# ----------------------------------------------------------------------------------------------


class Decoder(abc.ABC):
  """A decoding strategy, chosen by `model.decoder` among the subclasses here (`BeamSearch` is
  "beam_search"); its fields are set from the model keys of the same names."""

  @abc.abstractmethod
  def __call__(self, tokens_to_logits: decoding.TokensToLogits, prompt: jax.Array, cache: Any,
               rng: PRNGKey, max_new_tokens: int) -> jax.Array:
    """Continuations of `prompt` [batch, prompt_len] int32 (prefilled into the empty `cache`):
    [batch, max_new_tokens] int32 token ids, the prompt excluded, 0 after an EOS."""


@dataclasses.dataclass(frozen=True)
class Greedy(Decoder):
  """The most likely token at every step (`decoding.greedy`); ignores `rng`."""

  eos_id: int | None = None

  def __call__(self, tokens_to_logits, prompt, cache, rng, max_new_tokens):
    del rng
    return decoding.greedy(tokens_to_logits, prompt, cache, max_new_tokens=max_new_tokens,
                           eos_id=self.eos_id).sequences


@dataclasses.dataclass(frozen=True)
class Sampling(Decoder):
  """Ancestral sampling from the tempered, top-k and top-p filtered model (`decoding.sample`)."""

  temperature: float = 1.0  # 0 is greedy
  top_k: int = 0  # 0 keeps every token
  top_p: float = 1.0  # 1 keeps every token
  eos_id: int | None = None

  def __call__(self, tokens_to_logits, prompt, cache, rng, max_new_tokens):
    return decoding.sample(tokens_to_logits, prompt, cache, rng, max_new_tokens=max_new_tokens,
                           temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                           eos_id=self.eos_id).sequences


@dataclasses.dataclass(frozen=True)
class BeamSearch(Decoder):
  """The best beam of `decoding.beam_search`; ignores `rng`. (`Autoregressive.beam_search`
  returns every beam with its score.)"""

  beam_size: int = 4
  length_penalty: float = 0.0  # GNMT's alpha; 0 ranks by summed log-probability
  eos_id: int | None = None

  def __call__(self, tokens_to_logits, prompt, cache, rng, max_new_tokens):
    del rng
    out = decoding.beam_search(tokens_to_logits, prompt, cache, beam_size=self.beam_size,
                               max_new_tokens=max_new_tokens, eos_id=self.eos_id,
                               length_penalty=self.length_penalty, num_return=1)
    return out.sequences[:, 0]


# ----------------------------------------------------------------------------------------------
# The method.
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Autoregressive:
  """Teacher-forced next-token prediction.

  Attributes:
    network: the causal transformer; its `max_len` bounds prompt + generated tokens.
    decoder: the loop's decoding strategy, and `generate`'s default.
    codec: turns prompt strings into ids and ids into text (for callers that show samples).
    tokens_key: the batch key of the token ids.
    mask_key: the batch key of the target weights [batch, length]; "" reads "mask" when the
      batch has it; without weights every target counts.
    label_smoothing: eps of the training loss (evaluation is always unsmoothed).
    sample_prompt: token ids the loop's samples start from (at least one).
    sample_length: tokens the loop's samples generate.
  """

  network: Transformer
  decoder: Decoder = Sampling()
  codec: Codec = IdentityCodec()
  tokens_key: str = "tokens"
  mask_key: str = ""
  label_smoothing: float = 0.0
  sample_prompt: tuple[int, ...] = (0,)
  sample_length: int = 128

  @property
  def players(self) -> tuple[Player, ...]:
    return (Player(PLAYER, self.loss),)

  def init(self, rng: PRNGKey, batch: Batch) -> Variables:
    params = self.network.init(rng, jnp.asarray(self._tokens(batch))[:, :-1])["params"]
    return {"params": {PLAYER: params}, "model_state": {}}

  def _tokens(self, batch: Batch):
    if self.tokens_key not in batch:
      raise KeyError(f"The batch has no {self.tokens_key!r} (its keys: {sorted(batch)}): set "
                     f"config.model.tokens_key to the key of the token ids.")
    return batch[self.tokens_key]

  def target_weights(self, batch: Batch):
    """`[batch, length - 1]` weights of the targets `tokens[:, 1:]` from the batch's mask
    (`mask_key`, or "mask" when that is ""), or None (every target counts) without one."""
    key = self.mask_key or "mask"
    return batch[key][:, 1:] if key in batch else None

  def _token_losses(self, params, batch: Batch, *, rng: PRNGKey | None, smoothing: float):
    tokens = self._tokens(batch)
    weights = self.target_weights(batch)
    train = rng is not None and self.network.dropout_rate > 0
    logits = self.network.apply({"params": params}, tokens[:, :-1], deterministic=not train,
                                rngs={"dropout": rng} if train else None)
    return sequence.cross_entropy(logits=logits, targets=tokens[:, 1:], weights=weights,
                                  label_smoothing=smoothing)

  def loss(self, params_all, player_params, batch, rng, model_state):
    del params_all
    sums, counts = self._token_losses(player_params, batch, rng=rng,
                                      smoothing=self.label_smoothing)
    loss = jnp.sum(sums) / jnp.maximum(jnp.sum(counts), 1.0)
    return loss, ({"bits_per_token": loss / math.log(2)}, model_state)

  def evaluate(self, variables: Variables, batch: Batch, rng: PRNGKey):
    del rng
    sums, counts = self._token_losses(variables["params"][PLAYER], batch, rng=None, smoothing=0.0)
    return {"bits_per_token": (sums / math.log(2), counts)}

  def generate(self, variables: Variables, rng: PRNGKey, prompt, *, max_new_tokens: int,
               decoder: Decoder | None = None) -> jax.Array:
    """Continuations of `prompt` by `decoder` (default: the method's).

    Args:
      prompt: `[batch, prompt_len]` int32 token ids, or a list of `batch` prompts of different
        lengths (each row then continues as its prompt alone: `decoding.left_pad`).

    Returns:
      `[batch, max_new_tokens]` int32 token ids, the prompt excluded.

    Raises:
      ValueError: a prompt (or a row of one) that is not integer token ids: floats (even whole
        ones such as 2.0), bools, or text (encode it with `method.codec.encode(text)`); a
        concrete prompt with an id outside the model's vocabulary (both named before anything
        is traced); or as the decoders, e.g. a prompt plus new tokens beyond the model's
        `max_len`.
    """
    tokens_to_logits, prompt, cache = self._decoding_inputs(variables, prompt)
    decoder = self.decoder if decoder is None else decoder
    return decoder(tokens_to_logits, prompt, cache, rng, max_new_tokens=max_new_tokens)

  def beam_search(self, variables: Variables, prompt, *, max_new_tokens: int,
                  beam_size: int, eos_id: int | None = None, length_penalty=0.0):
    """Every beam with its score (experiments/sample.py prints them all): the whole
    `decoding.BeamSearchOutput`, where the `BeamSearch` decoder keeps the best sequence.
    `prompt` as in `generate`, and refused as there (a ValueError)."""
    tokens_to_logits, prompt, cache = self._decoding_inputs(variables, prompt)
    return decoding.beam_search(tokens_to_logits, prompt, cache, beam_size=beam_size,
                                max_new_tokens=max_new_tokens, eos_id=eos_id,
                                length_penalty=length_penalty)

  def sample(self, variables: Variables, rng: PRNGKey, num: int) -> jax.Array:
    """`num` continuations of the configured prompt by the method's decoder, prompt included:
    [num, prompt_len + sample_length] token ids."""
    prompt = jnp.tile(jnp.asarray(self.sample_prompt, jnp.int32)[None], (num, 1))
    out = self.generate(variables, rng, prompt, max_new_tokens=self.sample_length)
    return jnp.concatenate([prompt, out], axis=1)

  def _decoding_inputs(self, variables: Variables, prompt):
    """`tokens_to_logits` of the network (which carries its `max_len`, so the decoders refuse an
    overflow), the prompt as one array, and the empty cache for it. A concrete prompt is
    checked against the vocabulary here, with the model's setting named, before the decoders
    trace the model (whose embedding reads an id past its table as NaN, and wraps a negative
    one to another token)."""
    padding = None
    if isinstance(prompt, (list, tuple)):
      for row, ids in enumerate(prompt):
        self._check_prompt_ids(ids, f"prompt {row}")
      prompt, padding = decoding.left_pad(prompt)
    else:
      self._check_prompt_ids(prompt, "the prompt")
    prompt = jnp.asarray(prompt, jnp.int32)
    tokens_to_logits = decoding.make_tokens_to_logits(self.network, variables["params"][PLAYER])
    return tokens_to_logits, prompt, decoding.init_cache(self.network, prompt.shape[0], padding)

  def _check_prompt_ids(self, prompt, name: str) -> None:
    """Refuses (ValueError: a caller's argument) a `prompt` that is not integer ids (floats,
    even whole ones, which the int32 cast would truncate; bools; text, which the codec encodes)
    and a concrete one holding an id outside `[0, vocab_size)`; the values of a traced one
    cannot be checked (the decoders then see it), its dtype can."""
    ids = concrete(prompt)
    dtype = np.dtype(prompt.dtype) if ids is None else ids.dtype
    if not np.issubdtype(dtype, np.integer) and (ids is None or ids.size):  # empty: left_pad's
      shown = "" if ids is None else f" ({_preview(ids)})"
      raise ValueError(f"{name.capitalize()} is not token ids: got dtype {dtype}{shown}. Pass "
                       f"token ids (ints); encode text with the model's codec, e.g. "
                       f"method.codec.encode(text), and round or cast float ids yourself.")
    if ids is None:
      return
    vocab = self.network.vocab_size
    outside = np.unique(ids[(ids < 0) | (ids >= vocab)]).tolist()
    if outside:
      raise ValueError(f"{name.capitalize()} holds the token ids {outside}, outside the model's "
                       f"vocabulary [0, {vocab}) (model.vocab_size={vocab}): pass ids below "
                       f"{vocab}.")


def _preview(values: np.ndarray, limit: int = 60) -> str:
  text = repr(values.tolist())
  return text if len(text) <= limit else text[:limit - 3] + "..."


# ----------------------------------------------------------------------------------------------
# Building from a config: the codec and the decoder are members of `names.Kind`s, configured from
# the model config (`names.Kind.build`: e.g. `Sampling`'s fields from model.temperature, ...).
# ----------------------------------------------------------------------------------------------

CODECS = names.Kind("model.codec", __name__, suffix="_codec", where=names.subclass_of(Codec))
DECODERS = names.Kind("model.decoder", __name__, where=names.subclass_of(Decoder))


def _sample_prompt(m: ml_collections.ConfigDict, codec: Codec) -> tuple[int, ...]:
  """The loop's prompt ids, checked against the vocabulary and the context before any run.

  Raises:
    SettingError: `model.sample_prompt` that the codec cannot read, that gives no ids or ids
      outside `model.vocab_size`, or that with `model.sample_length` overflows `model.max_len`.
  """
  try:
    prompt = codec.encode(m.sample_prompt)
  except ValueError as error:  # the codec's own reading, e.g. the identity codec's non-integer
    raise SettingError(f"model.sample_prompt: {error}") from None
  if not prompt:
    raise SettingError(f"model.sample_prompt={m.sample_prompt!r} gives no token ids under the "
                       f"{m.codec!r} codec: decoding starts from at least one token.")
  outside = sorted({i for i in prompt if not 0 <= i < m.vocab_size})
  if outside:
    raise SettingError(f"model.sample_prompt={m.sample_prompt!r} gives the ids {outside} under "
                       f"the {m.codec!r} codec, outside the vocabulary of model.vocab_size="
                       f"{m.vocab_size}: change the prompt or the codec.")
  if len(prompt) + m.sample_length - 1 > m.max_len:  # the last token is not fed back
    raise SettingError(f"model.sample_prompt ({len(prompt)} tokens) plus model.sample_length="
                       f"{m.sample_length} needs {len(prompt) + m.sample_length - 1} positions, "
                       f"which exceeds model.max_len={m.max_len}: shorten one.")
  return prompt


def from_config(config: ml_collections.ConfigDict, spec: Any = None) -> Autoregressive:
  m = config.model
  codec = CODECS.build(m.codec, m)
  return Autoregressive(
      network=TransformerConfig.from_config(m).make(dtype=jnp.dtype(m.compute_dtype)),
      decoder=DECODERS.build(m.decoder, m),
      codec=codec, tokens_key=m.tokens_key, mask_key=m.mask_key,
      label_smoothing=m.label_smoothing,
      sample_prompt=_sample_prompt(m, codec), sample_length=m.sample_length)
