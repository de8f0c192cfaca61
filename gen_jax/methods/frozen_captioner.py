"""A frozen language model that captions images: an image encoder trained through it.

Frozen (Tsimpoukelli et al. 2021, "Multimodal Few-Shot Learning with Frozen Language Models",
Sec. 3; MAGMA, Eichenberg et al. 2022, takes the same route with adapters) trains only a vision
encoder: it maps an image to P vectors that the text language model reads as if they were the
embeddings of P tokens before the caption, and the loss is the language model's own negative
log-likelihood of the caption given them (teacher forcing). The language model's weights never
change; the gradient flows through it into the encoder.

Here the language model is a trained `autoregressive` run, named by `config.frozen.lm`, kept in
the model state (`model_state["frozen"]["lm"]`) so that jitted functions take its variables as
arguments. Its inputs are

    [e_1 .. e_P, start, c_1 .. c_n]      (e = the encoder's output, c = the caption's bytes)

and position P + i predicts c_{i+1}: `Transformer(tokens, prefix_embeddings=e)`. The encoder is
`gen_jax.nn.convnets.PrefixEncoder`, the digits classifier's trunk with a linear head to
[P, d_model]. A caption is `caption_key` [batch, L] int32 whose first byte starts it and whose
last scored byte is the language model's `eos_id`, with `caption_mask_key` [batch, L] marking its
bytes (1) against padding (0): the `digit_name_captions` preprocess step of `config.data` makes
them.

Captioning writes the prefix into the language model's KV cache (a decode-mode call with no
tokens) and continues from the start byte with the decoders of `gen_jax.sampling.decoding`
(greedy, beam search) unchanged; the P cached slots count against the model's `max_len`.

Evaluation, per test image: `bits_per_byte` (the caption's NLL per scored byte, the start byte
excluded and the end byte included), `accuracy` (the greedy caption equals the true one, byte
for byte up to and including the end byte) and `beam_accuracy` (the best of a beam search of
`model.beam_size`). Samples caption the first images of the first training batch (kept in the
model state at init: a method never reads the data, so the test digits are captioned by
experiments/benchmarks/frozen_captioning.py).
"""

import dataclasses
import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections

from gen_jax.errors import SettingError
from gen_jax.losses import sequence
from gen_jax.methods import autoregressive
from gen_jax.methods.autoregressive_image import check_unit_images
from gen_jax.methods.base import DataSpec, Player, frozen_run
from gen_jax.nn.convnets import PrefixEncoder
from gen_jax.sampling import decoding
from gen_jax.types import Array, Batch, PRNGKey, Variables

PLAYER = "encoder"
FROZEN_PARTS = ("lm",)
# beam_size only changes evaluation: a resumed run may change it (gen_jax.train.checkpoint).
SAMPLING_KEYS = frozenset({"beam_size"})
MODEL_RULES = dict(
    prefix_length=dict(low=1, note="P, the image embeddings the language model reads before "
                                   "the caption"),
    beam_size=dict(low=1, note="beams of the evaluation's beam search"),
    num_shown=dict(low=1, note="training images kept for the loop's samples"),
)
_SPACE = 32  # what the samples show after the end byte


def default_model_config() -> dict[str, Any]:
  return dict(
      prefix_length=4,  # P: image embeddings before the caption (Frozen used 2)
      widths=(32, 64), feature_dim=128,  # the encoder's trunk (the digits classifier's)
      image_key="image",  # the batch entry of the images, in [-1, 1]
      caption_key="name_caption",  # the caption's bytes [batch, L]: start byte first
      caption_mask_key="name_caption_mask",  # 1 over the caption's bytes, 0 over padding
      beam_size=4,  # the evaluation's beam search
      num_shown=16,  # training images kept at init for the loop's samples
  )


def exact_match(decoded: Array, captions: Array, mask: Array, pad_id: int = 0) -> Array:
  """Whether each decoded caption is the true one, byte for byte.

  Args:
    decoded: [batch, L - 1] int, a decoder's output after the start byte (`pad_id` after its
      end byte, as `gen_jax.sampling.decoding` writes).
    captions: [batch, L] int, the true captions, start byte first.
    mask: [batch, L], nonzero over the true caption's bytes.
    pad_id: the id decoders write after the end byte.

  Returns:
    [batch] float32: 1 where `decoded` equals `captions[:, 1:]` over the caption's bytes and
    is `pad_id` after them, else 0.

  Raises:
    ValueError: `decoded` is not [batch, L - 1].
  """
  want = (captions.shape[0], captions.shape[1] - 1)
  if decoded.shape != want:
    raise ValueError(f"decoded must be [batch, L - 1] = {want} for captions [batch, L] = "
                     f"{captions.shape}, got {decoded.shape}.")
  target = jnp.where(mask[:, 1:] != 0, captions[:, 1:], pad_id)
  return jnp.all(decoded == target, axis=1).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class FrozenCaptioner:
  """An image encoder trained through a frozen language model (module docstring).

  Attributes:
    encoder: images [batch, h, w, c] -> prefix embeddings [batch, P, d_model].
    lm: the frozen language model's `Transformer`.
    lm_variables: its run's restored variables ({"params": {"model": ...}, ...}), kept in the
      model state as `model_state["frozen"]["lm"]`.
    start: the language model's start bytes (its `sample_prompt`), which the samples' captions
      continue.
    eos_id: the language model's end byte, where decoding stops.
    image_key, caption_key, caption_mask_key: the batch entries read.
    beam_size: beams of the evaluation's beam search.
    num_shown: training images kept at init for `sample`.
  """

  encoder: PrefixEncoder
  lm: Any
  lm_variables: Any
  start: tuple[int, ...]
  eos_id: int
  image_key: str = "image"
  caption_key: str = "name_caption"
  caption_mask_key: str = "name_caption_mask"
  beam_size: int = 4
  num_shown: int = 16

  @property
  def players(self) -> tuple[Player, ...]:
    return (Player(PLAYER, self.loss),)

  @property
  def prefix_length(self) -> int:
    return self.encoder.prefix_length

  def _entry(self, batch: Batch, key: str, what: str) -> Array:
    if key not in batch:
      raise KeyError(f"The batch has no {key!r} (its keys: {sorted(batch)}): set "
                     f"config.model.{what} to its key, or add 'digit_name_captions' to "
                     f"data.preprocess.")
    return batch[key]

  def _check_length(self, caption_length: int) -> None:
    fed = self.prefix_length + caption_length - 1  # the last byte is never fed
    if fed > self.lm.max_len:
      raise SettingError(
          f"model.prefix_length={self.prefix_length} image embeddings and captions of "
          f"{caption_length} bytes feed {fed} inputs to a language model of max_len="
          f"{self.lm.max_len}: lower model.prefix_length to at most "
          f"{self.lm.max_len - caption_length + 1}, shorten the captions, or train the language "
          f"model with a larger model.max_len.")

  def lm_params(self, model_state) -> Any:
    """The frozen language model's parameters (no gradient flows into them)."""
    return jax.lax.stop_gradient(model_state["frozen"]["lm"]["params"][autoregressive.PLAYER])

  def prefix(self, params, images: Array) -> Array:
    """The encoder's embeddings [batch, P, d_model] of images [batch, h, w, c] in [-1, 1]."""
    return self.encoder.apply({"params": params}, images)

  def init(self, rng: PRNGKey, batch: Batch) -> Variables:
    images = self._entry(batch, self.image_key, "image_key")
    check_unit_images(images, self.image_key)
    self._check_length(self._entry(batch, self.caption_key, "caption_key").shape[1])
    self._entry(batch, self.caption_mask_key, "caption_mask_key")
    params = self.encoder.init(rng, jnp.asarray(images, jnp.float32))["params"]
    return {"params": {PLAYER: params},
            "model_state": {"frozen": {"lm": self.lm_variables},
                            "shown": jnp.asarray(images[:self.num_shown], jnp.float32)}}

  def token_losses(self, params, model_state, batch: Batch) -> tuple[Array, Array]:
    """The caption's NLL given the image: (sums [batch] in nats, counts [batch] of scored
    bytes), teacher-forced through the frozen language model."""
    captions = self._entry(batch, self.caption_key, "caption_key")
    mask = self._entry(batch, self.caption_mask_key, "caption_mask_key")
    self._check_length(captions.shape[1])
    prefix = self.prefix(params, batch[self.image_key])
    logits = self.lm.apply({"params": self.lm_params(model_state)}, captions[:, :-1],
                           prefix_embeddings=prefix)  # [batch, P + L - 1, vocab]
    return sequence.cross_entropy(logits=logits[:, self.prefix_length:], targets=captions[:, 1:],
                                  weights=jnp.asarray(mask[:, 1:], jnp.float32))

  def loss(self, params_all, player_params, batch: Batch, rng: PRNGKey, model_state):
    del params_all, rng
    sums, counts = self.token_losses(player_params, model_state, batch)
    loss = jnp.sum(sums) / jnp.maximum(jnp.sum(counts), 1.0)  # nats per caption byte
    return loss, ({"bits_per_byte": loss / math.log(2.0)}, model_state)

  def _decoding_inputs(self, variables: Variables, images: Array, batch_size: int):
    """`tokens_to_logits` of the language model and its cache holding the images' prefix."""
    lm_params = self.lm_params(variables["model_state"])
    prefix = self.prefix(variables["params"][PLAYER], images)
    cache = decoding.init_cache(self.lm, batch_size)
    _, written = self.lm.apply({"params": lm_params, "cache": cache},
                               jnp.zeros((batch_size, 0), jnp.int32), prefix_embeddings=prefix,
                               decode=True, mutable=["cache"])
    tokens_to_logits = decoding.make_tokens_to_logits(self.lm, lm_params,
                                                      prefix_length=self.prefix_length)
    return tokens_to_logits, written["cache"]

  def caption(self, variables: Variables, images: Array, prompt: Array, *, max_new_tokens: int,
              beam_size: int = 0) -> Array:
    """Captions of images [batch, h, w, c] in [-1, 1], continuing `prompt` [batch, n] int32 (the
    start byte) after the images' prefix: greedy when `beam_size` is 0, else the best beam.

    Returns:
      [batch, max_new_tokens] int32 bytes after the prompt, 0 after the end byte.

    Raises:
      ValueError: P + n + max_new_tokens - 1 beyond the language model's max_len.
    """
    prompt = jnp.asarray(prompt, jnp.int32)
    tokens_to_logits, cache = self._decoding_inputs(variables, images, prompt.shape[0])
    if beam_size:
      return decoding.beam_search(tokens_to_logits, prompt, cache, beam_size=beam_size,
                                  max_new_tokens=max_new_tokens, eos_id=self.eos_id,
                                  num_return=1).sequences[:, 0]
    return decoding.greedy(tokens_to_logits, prompt, cache, max_new_tokens=max_new_tokens,
                           eos_id=self.eos_id).sequences

  def evaluate(self, variables: Variables, batch: Batch, rng: PRNGKey) -> dict[str, Any]:
    """Per image: `bits_per_byte` (sums, counts), `accuracy` and `beam_accuracy` (module
    docstring). Decoding starts from each caption's own first byte."""
    del rng
    sums, counts = self.token_losses(variables["params"][PLAYER], variables["model_state"],
                                     batch)
    captions, mask = batch[self.caption_key], batch[self.caption_mask_key]
    images, prompt, length = batch[self.image_key], captions[:, :1], captions.shape[1] - 1
    greedy = self.caption(variables, images, prompt, max_new_tokens=length)
    beam = self.caption(variables, images, prompt, max_new_tokens=length,
                        beam_size=self.beam_size)
    return {"bits_per_byte": (sums / math.log(2.0), counts),
            "accuracy": exact_match(greedy, captions, mask),
            "beam_accuracy": exact_match(beam, captions, mask)}

  def sample(self, variables: Variables, rng: PRNGKey, num: int) -> dict[str, Array]:
    """Greedy captions of the images kept at init (cycled to `num`): {"images": [num, h, w, c],
    "captions": [num, length] int32 bytes, spaces from the end byte on}."""
    del rng
    shown = variables["model_state"]["shown"]
    images = jnp.tile(shown, (math.ceil(num / shown.shape[0]), 1, 1, 1))[:num]
    prompt = jnp.tile(jnp.asarray(self.start, jnp.int32)[None], (num, 1))
    room = self.lm.max_len - self.prefix_length - len(self.start) + 1
    out = self.caption(variables, images, prompt, max_new_tokens=room)
    ended = jnp.cumsum(out == self.eos_id, axis=1) > 0
    return {"images": images, "captions": jnp.where(ended, _SPACE, out)}


def from_config(config: ml_collections.ConfigDict, spec: DataSpec,
                frozen: Mapping[str, Any]) -> FrozenCaptioner:
  """The encoder of `config.model` over the frozen `lm` (an `autoregressive` run with an
  `eos_id`)."""
  m = config.model
  part = frozen_run(frozen, "lm", "autoregressive")
  if m.prefix_length < 1:
    raise SettingError(f"model.prefix_length={m.prefix_length}: the language model reads the "
                       f"image through at least 1 embedding; set it to 1 or more.")
  if part.config.model.eos_id is None:
    raise SettingError(f"The language model {part.workdir} has no model.eos_id, so its captions "
                       f"never end: train it with model.eos_id set to the captions' end byte "
                       f"(10, a newline).")
  spec.feature(m.image_key, what="model.image_key")
  lm = part.method.network
  if m.prefix_length + len(part.method.sample_prompt) > lm.max_len:
    raise SettingError(f"model.prefix_length={m.prefix_length} leaves no room in the language "
                       f"model's max_len={lm.max_len}: lower it.")
  encoder = PrefixEncoder(prefix_length=m.prefix_length, d_model=lm.d_model,
                          widths=tuple(m.widths), feature_dim=m.feature_dim)
  return FrozenCaptioner(
      encoder=encoder, lm=lm, lm_variables=part.variables, start=part.method.sample_prompt,
      eos_id=part.config.model.eos_id, image_key=m.image_key, caption_key=m.caption_key,
      caption_mask_key=m.caption_mask_key, beam_size=m.beam_size, num_shown=m.num_shown)
