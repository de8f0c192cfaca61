"""Autoregressive sequence models: a causal transformer trained by teacher forcing.

Batches hold `tokens` [batch, length] (and, for evaluation windows, `mask` [batch, length]
marking the targets that count): position i is predicted from positions < i, so the model reads
tokens[:, :-1] and is scored on tokens[:, 1:]. Evaluation reports bits per token (bits per
byte for byte-level corpora) over every scored token of the split. Sampling decodes with a KV
cache through `gen_jax.sampling.decoding`.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from gen_jax.losses import sequence
from gen_jax.methods.base import Player
from gen_jax.nn.transformer import Transformer
from gen_jax.sampling import decoding
from gen_jax.types import Batch, PRNGKey, Variables

PLAYER = "model"


def default_model_config() -> dict[str, Any]:
  return dict(
      vocab_size=256, num_layers=4, num_heads=4, d_model=128, d_ff=512, max_len=256,
      dropout_rate=0.0, positions="learned", norm="layer", tie_embeddings=True,
      rope_fraction=1.0, norm_params=True, activation="gelu",
      label_smoothing=0.0,
      # What the loop's periodic samples look like (experiments/sample.py takes its own flags).
      sample_prompt="def ", sample_length=192, temperature=0.8, top_k=0, top_p=0.95)


@dataclasses.dataclass(frozen=True)
class Autoregressive:
  """Teacher-forced next-token prediction.

  Attributes:
    network: the causal transformer; its `max_len` bounds prompt + generated tokens.
    label_smoothing: eps of the training loss (evaluation is always unsmoothed).
    sample_prompt: token ids the loop's samples start from.
    sample_length: tokens the loop's samples generate.
    temperature, top_k, top_p: the loop's sampling settings (see `decoding.sample`).
  """

  network: Transformer
  label_smoothing: float = 0.0
  sample_prompt: tuple[int, ...] = (10,)
  sample_length: int = 128
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0

  @property
  def players(self) -> tuple[Player, ...]:
    return (Player(PLAYER, self.loss),)

  def init(self, rng: PRNGKey, batch: Batch) -> Variables:
    params = self.network.init(rng, jnp.asarray(batch["tokens"])[:, :-1])["params"]
    return {"params": {PLAYER: params}, "model_state": {}}

  def _token_losses(self, params, batch: Batch, *, rng: PRNGKey | None, smoothing: float):
    tokens = batch["tokens"]
    weights = batch["mask"][:, 1:] if "mask" in batch else None
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

  def generate(self, variables: Variables, rng: PRNGKey, prompt: jax.Array, *,
               max_new_tokens: int, temperature=1.0, top_k=0, top_p=1.0):
    """Samples continuations of `prompt` [batch, prompt_len]; returns `decoding.DecodeOutput`."""
    self._check_length(prompt.shape[1], max_new_tokens)
    tokens_to_logits = decoding.make_tokens_to_logits(self.network, variables["params"][PLAYER])
    cache = decoding.init_cache(self.network, prompt.shape[0])
    return decoding.sample(tokens_to_logits, prompt, cache, rng, max_new_tokens=max_new_tokens,
                           temperature=temperature, top_k=top_k, top_p=top_p)

  def beam_search(self, variables: Variables, prompt: jax.Array, *, max_new_tokens: int,
                  beam_size: int, eos_id: int | None = None, length_penalty=0.0):
    """Beam search continuations of `prompt`; returns `decoding.BeamSearchOutput`."""
    self._check_length(prompt.shape[1], max_new_tokens)
    tokens_to_logits = decoding.make_tokens_to_logits(self.network, variables["params"][PLAYER])
    cache = decoding.init_cache(self.network, prompt.shape[0])
    return decoding.beam_search(tokens_to_logits, prompt, cache, beam_size=beam_size,
                                max_new_tokens=max_new_tokens, eos_id=eos_id,
                                length_penalty=length_penalty)

  def greedy(self, variables: Variables, prompt: jax.Array, *, max_new_tokens: int):
    self._check_length(prompt.shape[1], max_new_tokens)
    tokens_to_logits = decoding.make_tokens_to_logits(self.network, variables["params"][PLAYER])
    cache = decoding.init_cache(self.network, prompt.shape[0])
    return decoding.greedy(tokens_to_logits, prompt, cache, max_new_tokens=max_new_tokens)

  def sample(self, variables: Variables, rng: PRNGKey, num: int) -> jax.Array:
    """`num` continuations of the configured prompt, prompt included: [num, length] tokens."""
    prompt = jnp.tile(jnp.asarray(self.sample_prompt, jnp.int32)[None], (num, 1))
    out = self.generate(variables, rng, prompt, max_new_tokens=self.sample_length,
                        temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)
    return jnp.concatenate([prompt, out.sequences], axis=1)

  def _check_length(self, prompt_len: int, max_new_tokens: int) -> None:
    if prompt_len + max_new_tokens > self.network.max_len:
      raise ValueError(f"A prompt of {prompt_len} tokens plus {max_new_tokens} new tokens "
                       f"exceeds the model's max_len={self.network.max_len}: shorten one.")


def from_config(config: ml_collections.ConfigDict) -> Autoregressive:
  m = config.model
  network = Transformer(
      vocab_size=m.vocab_size, num_layers=m.num_layers, num_heads=m.num_heads,
      d_model=m.d_model, d_ff=m.d_ff, max_len=m.max_len, dropout_rate=m.dropout_rate,
      positions=m.positions, norm=m.norm, tie_embeddings=m.tie_embeddings,
      rope_fraction=m.rope_fraction, norm_params=m.norm_params, activation=m.activation)
  return Autoregressive(
      network=network, label_smoothing=m.label_smoothing,
      sample_prompt=tuple(m.sample_prompt.encode("utf-8")), sample_length=m.sample_length,
      temperature=m.temperature, top_k=m.top_k, top_p=m.top_p)
