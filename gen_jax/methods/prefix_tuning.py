"""Prefix tuning of a frozen language model (Li & Liang 2021, "Prefix-Tuning: Optimizing
Continuous Prompts for Generation").

The language model is a trained `autoregressive` run, named by `config.frozen.lm`, restored and
never trained here. A prefix is P key/value pairs for every layer, `[num_layers, 2, 1, P, heads,
head_dim]`, which every position attends to before the sequence, as if a P-token prompt had
written them (Sec. 4.2: h_i = P_theta[i, :] for the prefix positions, computed by the LM for the
others). The LM reads them through `Transformer(tokens, prefix_kv=...)` in training and
evaluation, and through its decoding cache (`gen_jax.nn.transformer.write_prefix`) when it
samples, so the decoders (greedy, sampling, beam search) are unchanged; the tokens' positions
start at P, as after a prompt.

Reparameterisation (Sec. 4.3): training P_theta directly was unstable in the paper, so
P_theta[i, :] = MLP_theta(P'_theta[i, :]) with a smaller table P' `[P, prefix_dim]` and an MLP
(Linear, tanh, Linear) to `num_layers * 2 * d_model`; after training only P_theta matters, and
`prefixes` computes it. `model.prefix_hidden = 0` trains P_theta directly.

Control codes. The method keeps `num_prefixes` prefixes, one per control code; sampling picks
one with `model.sample_code` (-1: no prefix). A run trains one code, `model.train_code`, on its
dataset (one dataset per code: the byte-stream pipeline cuts windows across files, so a batch
cannot say which kind of file a window came from). The other codes' prefixes come from the frozen
part: `config.frozen.lm` may name a `prefix_tuning` run instead of an `autoregressive` one, and
then this run uses that run's LM and keeps its prefixes (computed once, the MLP dropped, in
`model_state["prefixes"]`, never trained), training one more code on top. Codes are trained one
run after another, each on its own data, and the last run samples all of them.

`model.tune = "all"` is the full fine-tuning baseline: the player's parameters are then the
prefix and every weight of the LM, starting from the frozen run's, so a comparison uses the same
steps, data and optimizer; with `prefix_length = 0` it is plain fine-tuning. The frozen copy in
`model_state["frozen"]["lm"]` never changes, in either mode.

Evaluation reports bits per token (bits per byte for byte-level text) of the split under the LM
with the trained code's prefix.
"""

import dataclasses
import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict

from gen_jax.errors import SettingError
from gen_jax.losses import sequence
from gen_jax.methods import autoregressive as ar
from gen_jax.methods.base import DataSpec, Player
from gen_jax.nn import transformer
from gen_jax.sampling import decoding
from gen_jax.types import Array, Batch, PRNGKey, Variables

PLAYER = "tuned"
FROZEN_PARTS = ("lm",)
TUNES = ("prefix", "all")
# Model keys that only change how a run samples (gen_jax.train.checkpoint).
SAMPLING_KEYS = frozenset({"sample_code", "sample_prompt", "sample_length", "decoder",
                           "temperature", "top_k", "top_p", "beam_size", "length_penalty",
                           "eos_id"})
MODEL_RULES = dict(
    prefix_length=dict(low=0, note="P, the key/value pairs per layer; 0: no prefix"),
    num_prefixes=dict(low=1, note="control codes, one prefix each"),
    train_code=dict(low=0, note="the code this run trains, below model.num_prefixes"),
    sample_code=dict(low=-1, note="the code sampled, or -1 for no prefix"),
    prefix_dim=dict(low=1, note="the width of the reparameterisation's table P'"),
    prefix_hidden=dict(low=0, note="the MLP's hidden width; 0 trains the prefix directly"),
    tune=dict(choices=lambda: TUNES, note="what trains: the prefix, or the prefix and the LM"),
)


def default_model_config() -> dict[str, Any]:
  return dict(
      prefix_length=10,  # P: key/value pairs per layer (Li & Liang use 5-200)
      num_prefixes=1,  # control codes; the table of prefixes has one row per code
      train_code=0,  # the code this run trains (the others come from config.frozen.lm)
      sample_code=0,  # the code the loop's samples use; -1: the LM without a prefix
      prefix_dim=64,  # k: the width of P' in the MLP reparameterisation (Sec. 4.3)
      prefix_hidden=256,  # the MLP's hidden width; 0: no MLP, P_theta is the parameter
      tune="prefix",  # prefix | all (the prefix and every LM weight: full fine-tuning)
      # Samples, as `autoregressive`'s (the codec is the LM's).
      sample_prompt="def ", sample_length=192, decoder="sampling", temperature=0.8, top_k=0,
      top_p=0.95, beam_size=4, length_penalty=0.0, eos_id=config_dict.placeholder(int),
  )


class PrefixNetwork(nn.Module):
  """One code's prefix: keys and values `[num_layers, 2, 1, length, num_heads, head_dim]`.

  With `hidden` > 0 the parameters are the table P' `[length, dim]` and the MLP (Dense(hidden),
  tanh, Dense(num_layers * 2 * num_heads * head_dim)), Li & Liang's Sec. 4.3; with 0 the table
  `[length, num_layers * 2 * num_heads * head_dim]` is the prefix itself.
  """

  num_layers: int
  num_heads: int
  head_dim: int
  length: int
  dim: int = 64
  hidden: int = 256

  @nn.compact
  def __call__(self) -> Array:
    width = self.num_layers * 2 * self.num_heads * self.head_dim
    if not self.length:  # no parameters (checkpoints hold no empty arrays)
      return jnp.zeros((self.num_layers, 2, 1, 0, self.num_heads, self.head_dim))
    init = nn.initializers.normal(stddev=1.0)
    if self.hidden:
      table = self.param("table", init, (self.length, self.dim))
      flat = nn.Dense(width, name="mlp_out")(nn.tanh(nn.Dense(self.hidden, name="mlp_in")(table)))
    else:
      flat = self.param("table", init, (self.length, width))
    flat = flat.reshape(self.length, self.num_layers, 2, self.num_heads, self.head_dim)
    return flat.transpose(1, 2, 0, 3, 4)[:, :, None]


@dataclasses.dataclass(frozen=True)
class PrefixTuning:
  """Prefixes of a frozen LM (module docstring).

  Attributes:
    lm: the frozen `Autoregressive` method (its network, codec, tokens key).
    lm_variables: its restored variables, kept as `model_state["frozen"]["lm"]`.
    prefix: the trained code's `PrefixNetwork`.
    stored: `[num_prefixes, num_layers, 2, 1, P, heads, head_dim]` prefixes of the codes trained
      before (zeros elsewhere), kept as `model_state["prefixes"]`.
    trained_codes: the codes that have a prefix: those of `stored` and `train_code`.
    train_code: the code this run trains.
    sample_code: the code `sample` uses; -1 for none.
    tune: "prefix" or "all".
    decoder: the samples' decoder (`autoregressive.DECODERS`).
    sample_prompt: token ids the samples start from.
    sample_length: tokens the samples generate.
  """

  lm: Any
  lm_variables: Any
  prefix: PrefixNetwork
  stored: Any
  trained_codes: tuple[int, ...]
  train_code: int = 0
  sample_code: int = 0
  tune: str = "prefix"
  decoder: ar.Decoder = ar.Sampling()
  sample_prompt: tuple[int, ...] = (0,)
  sample_length: int = 128

  @property
  def players(self) -> tuple[Player, ...]:
    return (Player(PLAYER, self.loss),)

  @property
  def network(self) -> transformer.Transformer:
    return self.lm.network

  @property
  def prefix_length(self) -> int:
    return self.prefix.length

  def init(self, rng: PRNGKey, batch: Batch) -> Variables:
    params = {"prefix": self.prefix.init(rng).get("params", {})}
    if self.tune == "all":  # fine-tuning starts from the frozen weights
      params["lm"] = jax.tree.map(jnp.array, self.lm_variables["params"][ar.PLAYER])
    model_state = {"frozen": {"lm": self.lm_variables}}
    if self.prefix_length:  # (checkpoints hold no empty arrays)
      model_state["prefixes"] = self.stored
    return {"params": {PLAYER: params}, "model_state": model_state}

  def lm_params(self, variables: Variables) -> Any:
    """The LM's weights: the tuned ones with `tune="all"`, else the frozen ones."""
    if self.tune == "all":
      return variables["params"][PLAYER]["lm"]
    return variables["model_state"]["frozen"]["lm"]["params"][ar.PLAYER]

  def prefix_kv(self, variables: Variables, code: int) -> Array | None:
    """Code `code`'s prefix `[num_layers, 2, 1, P, heads, head_dim]`, or None for `code` -1 or
    P = 0 (the LM alone).

    Raises:
      ValueError: a code that has no prefix (neither trained here nor stored).
    """
    if code == -1 or not self.prefix_length:
      return None
    if code not in self.trained_codes:
      raise ValueError(f"Code {code} has no prefix: the trained codes are "
                       f"{list(self.trained_codes)} (or -1 for no prefix).")
    if code == self.train_code:
      return self.prefix.apply({"params": variables["params"][PLAYER]["prefix"]})
    return variables["model_state"]["prefixes"][code]

  def prefixes(self, variables: Variables) -> Array:
    """Every code's prefix, `[num_prefixes, num_layers, 2, 1, P, heads, head_dim]`: the stored
    ones with this run's code computed (the MLP dropped); zeros for untrained codes.

    Raises:
      ValueError: for P = 0, where there are none.
    """
    if not self.prefix_length:
      raise ValueError("model.prefix_length = 0: this run has no prefixes.")
    own = self.prefix.apply({"params": variables["params"][PLAYER]["prefix"]})
    # A restored run's stored prefixes may be host (NumPy) arrays.
    return jnp.asarray(variables["model_state"]["prefixes"]).at[self.train_code].set(own)

  def token_losses(self, variables: Variables, batch: Batch, code: int
                   ) -> tuple[Array, Array]:
    """Summed cross-entropy in nats and token counts, each `[batch]`, of the batch's windows
    under the LM after code `code`'s prefix (-1: none)."""
    tokens = jnp.asarray(self.lm._tokens(batch))  # pylint: disable=protected-access
    weights = self.lm.target_weights(batch)
    logits = self.network.apply({"params": self.lm_params(variables)}, tokens[:, :-1],
                                prefix_kv=self.prefix_kv(variables, code))
    return sequence.cross_entropy(logits=logits, targets=tokens[:, 1:], weights=weights)

  def loss(self, params_all, player_params, batch: Batch, rng: PRNGKey, model_state):
    del params_all, rng
    variables = {"params": {PLAYER: player_params}, "model_state": model_state}
    sums, counts = self.token_losses(variables, batch, self.train_code)
    loss = jnp.sum(sums) / jnp.maximum(jnp.sum(counts), 1.0)
    return loss, ({"bits_per_token": loss / math.log(2.0)}, model_state)

  def evaluate(self, variables: Variables, batch: Batch, rng: PRNGKey) -> dict[str, Any]:
    """`bits_per_token`: (sums [batch], counts [batch]) under the trained code's prefix."""
    del rng
    sums, counts = self.token_losses(variables, batch, self.train_code)
    return {"bits_per_token": (sums / math.log(2.0), counts)}

  def generate(self, variables: Variables, rng: PRNGKey, prompt, *, max_new_tokens: int,
               code: int | None = None, decoder: ar.Decoder | None = None) -> Array:
    """Continuations of `prompt` `[batch, prompt_len]` int32 after code `code`'s prefix
    (default `sample_code`; -1: none) by `decoder` (default the method's): the prefix is
    written into the empty cache, then the unchanged decoder runs.

    Returns:
      `[batch, max_new_tokens]` int32 token ids, the prompt excluded.

    Raises:
      ValueError: a code without a prefix; a prompt plus new tokens beyond the LM's `max_len`
        less the prefix's P slots.
    """
    code = self.sample_code if code is None else code
    prompt = jnp.asarray(prompt, jnp.int32)
    kv = self.prefix_kv(variables, code)
    cache = decoding.init_cache(self.network, prompt.shape[0])
    if kv is not None:
      cache = transformer.write_prefix(cache, kv)
    tokens_to_logits = decoding.make_tokens_to_logits(
        self.network, self.lm_params(variables), prefix_length=0 if kv is None else kv.shape[3])
    decoder = self.decoder if decoder is None else decoder
    return decoder(tokens_to_logits, prompt, cache, rng, max_new_tokens=max_new_tokens)

  def sample(self, variables: Variables, rng: PRNGKey, num: int) -> Array:
    """`num` continuations of the configured prompt after the `sample_code` prefix, prompt
    included: `[num, prompt_len + sample_length]` token ids."""
    prompt = jnp.tile(jnp.asarray(self.sample_prompt, jnp.int32)[None], (num, 1))
    out = self.generate(variables, rng, prompt, max_new_tokens=self.sample_length)
    return jnp.concatenate([prompt, out], axis=1)


def _frozen_lm(frozen: Mapping[str, Any], m: ml_collections.ConfigDict):
  """(LM method, LM variables, stored prefixes or None, codes they hold) of `config.frozen.lm`:
  an `autoregressive` run, or a `prefix_tuning` run whose LM and prefixes this run builds on."""
  part = frozen["lm"]
  kind = part.config.method
  # Only the LM's parameters are kept: an empty collection beside them (its model state) has no
  # leaves, so a run rebuilt from its description (load_run) would lose it from a chained run.
  if kind == "autoregressive":
    return part.method, {"params": part.variables["params"]}, None, ()
  if kind != "prefix_tuning":
    raise SettingError(f"config.frozen.lm = {part.workdir!r} is a {kind!r} run: name the "
                       f"workdir of a trained autoregressive run (or of a prefix_tuning run "
                       f"whose prefixes this run keeps).")
  earlier = part.method
  if earlier.tune != "prefix":
    raise SettingError(f"config.frozen.lm = {part.workdir!r} fine-tuned its LM (model.tune = "
                       f"{earlier.tune!r}): its prefixes belong to that LM; build on a run with "
                       f"model.tune = 'prefix'.")
  pm = part.config.model
  if (pm.num_prefixes, pm.prefix_length) != (m.num_prefixes, m.prefix_length):
    raise SettingError(f"config.frozen.lm = {part.workdir!r} has model.num_prefixes = "
                       f"{pm.num_prefixes} and model.prefix_length = {pm.prefix_length}: use the "
                       f"same (got {m.num_prefixes} and {m.prefix_length}).")
  stored = earlier.prefixes(part.variables) if m.prefix_length else None
  lm_variables = {"params": part.variables["model_state"]["frozen"]["lm"]["params"]}
  return earlier.lm, lm_variables, stored, earlier.trained_codes


def from_config(config: ml_collections.ConfigDict, spec: DataSpec,
                frozen: Mapping[str, Any]) -> PrefixTuning:
  """Prefix tuning of `config.model` on the frozen `lm` (an autoregressive or prefix_tuning
  run)."""
  m = config.model
  lm, lm_variables, stored, earlier_codes = _frozen_lm(frozen, m)
  net = lm.network
  if not isinstance(net, transformer.Transformer):
    raise SettingError(f"config.frozen.lm = {frozen['lm'].workdir!r} is not a Transformer LM.")
  for key, code, low in (("train_code", m.train_code, 0), ("sample_code", m.sample_code, -1)):
    if not low <= code < m.num_prefixes:
      raise SettingError(f"config.model.{key} = {code} must be from {low} to model.num_prefixes"
                         f" - 1 = {m.num_prefixes - 1}.")
  trained = tuple(sorted(set(earlier_codes) | {m.train_code}))
  if m.sample_code != -1 and m.sample_code not in trained:
    raise SettingError(f"config.model.sample_code = {m.sample_code} has no prefix: the trained "
                       f"codes are {list(trained)}; use one of them or -1 (no prefix).")
  window = spec.shape(lm.tokens_key, what="the LM's model.tokens_key")[0]
  if window - 1 + m.prefix_length > net.max_len:
    room = net.max_len - m.prefix_length
    raise SettingError(f"The LM reads at most max_len = {net.max_len} positions: a prefix of "
                       f"model.prefix_length = {m.prefix_length} leaves {room}, so "
                       f"config.data.seq_len must be at most {room + 1} (got {window}).")
  if spec.vocab_size and spec.vocab_size > net.vocab_size:
    raise SettingError(f"The data have {spec.vocab_size} token ids, the LM {net.vocab_size}.")
  head_dim = net.d_model // net.num_heads
  prefix = PrefixNetwork(net.num_layers, net.num_heads, head_dim, m.prefix_length,
                         m.prefix_dim, m.prefix_hidden)
  if stored is None:
    stored = jnp.zeros((m.num_prefixes, net.num_layers, 2, 1, m.prefix_length, net.num_heads,
                        head_dim), jnp.float32)
  prompt = lm.codec.encode(m.sample_prompt)
  if not prompt or len(prompt) + m.sample_length - 1 > net.max_len - m.prefix_length:
    raise SettingError(f"config.model.sample_prompt ({len(prompt)} tokens) plus "
                       f"model.sample_length = {m.sample_length} must fit in the LM's max_len "
                       f"= {net.max_len} after the prefix of {m.prefix_length}, and the prompt "
                       f"must not be empty.")
  return PrefixTuning(
      lm=lm, lm_variables=lm_variables, prefix=prefix, stored=stored, trained_codes=trained,
      train_code=m.train_code, sample_code=m.sample_code, tune=m.tune,
      decoder=ar.DECODERS.build(m.decoder, m), sample_prompt=prompt,
      sample_length=m.sample_length)
