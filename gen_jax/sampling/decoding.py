"""Autoregressive decoding: greedy, temperature / top-k / top-p sampling, and beam search.

Every decoder is model-agnostic: it sees the model only through

    tokens_to_logits(tokens [batch, length] int32, cache) -> (logits [batch, length, vocab], cache)

called once with the whole prompt (`length` = prompt length, the prefill) and then once per new
token with `length` 1. The cache is any pytree whose leaves either have the batch as their leading
axis or are scalars (such as a shared cache index); beam search repeats the former `beam_size`
times along a flattened `[batch * beam]` axis and gathers them by beam each step.
`make_tokens_to_logits` and `init_cache` adapt a Flax module with a "cache" collection, such as
`gen_jax.nn.transformer.Transformer`.

Each decoder is one `lax.scan` with a static trip count of `max_new_tokens - 1` (the first token
comes from the prefill logits and the last token is never fed back), so it jits, and the prompt
may have any length `P >= 1` with `P + max_new_tokens - 1 <= max_len` of the cache (the tokens
ever fed to `tokens_to_logits`). Library code never jits:
jit the caller.

Conventions shared by all decoders:
  * `sequences` hold only the generated tokens, `[.., max_new_tokens]`, never the prompt.
  * Once `eos_id` is generated, later positions hold `pad_id` (default 0).
  * Lengths count generated tokens including the EOS token.
  * Ties go to the lower id. Values that compare equal are ties, so -0.0 and +0.0 are one value
    (XLA's sort orders -0.0 below +0.0, so every ranking here goes through `_top_k`, which
    ranks like `jnp.argmax`); a NaN logit counts as the largest value, as in `jnp.argmax`. So
    greedy, temperature 0, `top_k = 1`, a tiny `top_p` and the ranks of top-k / top-p agree.
  * Logits tied at +inf share the probability equally (a plain softmax gives NaN). A row whose
    logits are all -inf allows no token: greedy and sampling then take id 0 with log-probability
    -inf, and beam search drops the beam (its continuations score -inf, not NaN).
  * Settings given as concrete values (Python numbers, NumPy or unjitted JAX arrays) are checked
    and refused with a ValueError; values traced under `jit` cannot be checked, and there a
    temperature <= 0 is greedy.

References:
  Ackley, Hinton and Sejnowski, "A learning algorithm for Boltzmann machines", 1985 (temperature).
  Fan, Lewis and Dauphin, "Hierarchical neural story generation", 2018 (top-k sampling).
  Holtzman et al., "The curious case of neural text degeneration", 2020 (top-p, nucleus sampling).
  Wu et al., "Google's neural machine translation system", 2016, eq. 14 (length penalty).
  The alive / finished beam bookkeeping follows tensor2tensor's and t5x's beam search.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

from gen_jax.errors import concrete

Array = jax.Array
TokensToLogits = Callable[[Array, Any], tuple[Array, Any]]

# Top-p keeps a token while the probability of the tokens ranked above it is below
# `top_p - _TOP_P_TOLERANCE`, so that a set whose mass equals `top_p` up to float32 rounding
# (e.g. 0.5 + 0.3 for top_p = 0.8) counts as reaching it.
_TOP_P_TOLERANCE = 1e-6


@struct.dataclass
class DecodeOutput:
  """What `greedy` and `sample` return."""

  sequences: Array  # [batch, max_new_tokens] int32, pad_id after the first eos_id
  log_probs: Array  # [batch] float32, model log-probability of the generated tokens (incl. EOS)
  lengths: Array  # [batch] int32, generated tokens including the EOS
  finished: Array  # [batch] bool, whether EOS was generated


@struct.dataclass
class BeamSearchOutput:
  """What `beam_search` returns, best first along axis 1."""

  sequences: Array  # [batch, num_return, max_new_tokens] int32, pad_id after the EOS
  scores: Array  # [batch, num_return] float32, log_probs / length penalty; -inf if not finished
  log_probs: Array  # [batch, num_return] float32, summed log-probabilities of the tokens
  lengths: Array  # [batch, num_return] int32, generated tokens including the EOS; 0 if unfinished
  finished: Array  # [batch, num_return] bool, False only when fewer sequences exist at all


@struct.dataclass
class _DecodeState:
  sequences: Array  # [batch, max_new_tokens] int32
  log_probs: Array  # [batch] float32
  lengths: Array  # [batch] int32
  finished: Array  # [batch] bool
  tokens: Array  # [batch] int32, the token chosen last


@struct.dataclass
class _BeamState:
  alive_sequences: Array  # [batch, beam, max_new_tokens] int32, no EOS inside
  alive_log_probs: Array  # [batch, beam] float32, -inf for placeholder beams
  finished_sequences: Array  # [batch, beam, max_new_tokens] int32
  finished_scores: Array  # [batch, beam] float32, sorted descending, -inf for empty slots
  finished_log_probs: Array  # [batch, beam] float32
  finished_lengths: Array  # [batch, beam] int32


def make_tokens_to_logits(model: nn.Module, params: Any, **apply_kwargs) -> TokensToLogits:
  """Adapts a Flax module with a decode mode to the `tokens_to_logits` contract.

  Args:
    model: a module called as `model.apply(variables, tokens, decode=True, mutable=["cache"])`
      that returns `[batch, length, vocab]` logits, such as `Transformer`.
    params: its "params" collection.
    **apply_kwargs: further keyword arguments of `model.apply`.

  Returns:
    `tokens_to_logits(tokens [batch, length], cache) -> (logits [batch, length, vocab], cache)`.
  """

  def tokens_to_logits(tokens, cache):
    logits, variables = model.apply({"params": params, "cache": cache}, tokens, decode=True,
                                    mutable=["cache"], **apply_kwargs)
    return logits, variables["cache"]

  return tokens_to_logits


def init_cache(model: nn.Module, batch_size: int) -> Any:
  """An empty decoding cache of `model` (with a `max_len` field) for `batch_size` sequences.

  It has the structure and shapes that `model.init(rng, zeros([batch, max_len]), decode=True)`
  creates, found with `jax.eval_shape`, so the model never runs.
  """
  dummy = jnp.zeros((batch_size, model.max_len), jnp.int32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), dummy, decode=True)["cache"])
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)



def _check(name: str, value: Any, valid: Callable[[np.ndarray], np.ndarray], rule: str) -> None:
  """Raises a ValueError naming `name` when a concrete `value` has an entry that is not valid."""
  value = concrete(value)
  if value is None:
    return
  with np.errstate(invalid="ignore"):
    bad = value[~np.asarray(valid(value), bool)]
  if bad.size:
    more = f" (and {bad.size - 1} more entries)" if bad.size > 1 else ""
    raise ValueError(f"{name} must be {rule}, got {bad.flat[0]}{more}.")


def _check_sampling(temperature: Any, top_k: Any, top_p: Any) -> None:
  _check("temperature", temperature, lambda t: (t >= 0) & (t < np.inf),
         "a finite number >= 0 (0 is greedy)")
  _check("top_k", top_k, lambda k: (k >= 0) & (np.floor(k) == k),
         "a whole number >= 0 (0 keeps every token)")
  _check("top_p", top_p, lambda p: (p > 0) & (p <= 1), "in (0, 1] (1 keeps every token)")


def _check_prompt(prompt: Array) -> None:
  if prompt.ndim != 2 or prompt.shape[1] < 1:
    raise ValueError(f"prompt must be token ids [batch, prompt_len] with prompt_len >= 1, got "
                     f"shape {prompt.shape}: decoding continues at least one token (start an "
                     "unconditioned sequence with a start or newline token).")


def _check_eos(eos_id: int | None, vocab: int) -> None:
  if eos_id is not None and not 0 <= eos_id < vocab:
    raise ValueError(f"eos_id={eos_id} is outside the vocabulary [0, {vocab}) of the logits: "
                     f"pass a token id below {vocab}, or None for fixed-length generation.")


def _top_k(x: Array, k: int) -> tuple[Array, Array]:
  """`lax.top_k` over the last axis with the ties of `jnp.argmax`: equal values by index.

  `lax.top_k` keeps index order among identical bits, but sorts -0.0 below +0.0 and a NaN by
  its sign bit. Mapping -0.0 to +0.0 and every NaN to one positive NaN (which it ranks first,
  where `jnp.argmax` puts any NaN) leaves only ties that it breaks by index.
  """
  x = jnp.where(x == 0, jnp.zeros_like(x), x)
  x = jnp.where(jnp.isnan(x), jnp.full_like(x, jnp.nan), x)
  return lax.top_k(x, k)


def _log_softmax(logits: Array) -> Array:
  """`log_softmax` over the last axis in float32, defined where `jax.nn.log_softmax` gives NaN.

  Relative to the row's largest logit, its ties get exactly 0, so logits tied at +inf share the
  probability (`inf - inf` would be NaN), and a row of -inf, where no token is possible, is -inf
  throughout. A row with a NaN stays NaN.
  """
  logits = logits.astype(jnp.float32)
  top = jnp.max(logits, axis=-1, keepdims=True)
  log_probs = jax.nn.log_softmax(jnp.where(logits == top, 0.0, logits - top), axis=-1)
  return jnp.where(top == -jnp.inf, -jnp.inf, log_probs)


def _filter_sorted(logits: Array, temperature: Array, top_k: Array,
                   top_p: Array) -> tuple[Array, Array, Array, Array]:
  """Temperature, top-k and top-p in descending order of the raw logits.

  Returns:
    tempered: `[batch, vocab]` float32 tempered logits, sorted descending.
    order: `[batch, vocab]` token id of each rank; ties rank the lower id first (`_top_k`).
    keep: `[batch, vocab]` bool, the kept ranks, always a prefix `0 .. num_kept - 1`: the ranks
      that top-k and top-p keep and that have a positive probability, and always rank 0.
    cdf: `[batch, vocab]` cumulative probabilities of the tempered top-k distribution; on the
      kept prefix they are proportional to the cumulative sampling distribution.
  """
  vocab = logits.shape[-1]
  col = lambda x: jnp.broadcast_to(jnp.asarray(x), logits.shape[:1])[:, None]  # [batch, 1]
  temperature, top_k, top_p = col(temperature), col(top_k), col(top_p)
  sorted_logits, order = _top_k(logits.astype(jnp.float32), vocab)
  rank = jnp.arange(vocab)[None, :]
  greedy = temperature <= 0
  scale = jnp.where(greedy, 1.0, temperature)
  tempered = sorted_logits / scale
  # The probabilities are computed relative to the largest logit, whose ties get exactly 0, so
  # that tokens tied at +inf share the mass (`inf - inf` is NaN) and a tiny temperature cannot
  # overflow them. A row of -inf keeps only rank 0; with a NaN, nothing has a positive
  # probability and rank 0 (the first NaN) alone is kept.
  top = sorted_logits[:, :1]
  shifted = jnp.where(sorted_logits == top, 0.0, sorted_logits - top) / scale
  keep = (rank < top_k) | (top_k <= 0)
  probs = jax.nn.softmax(jnp.where(keep, shifted, -jnp.inf), axis=-1)
  cdf = jnp.cumsum(probs, axis=-1)
  keep &= (cdf - probs < top_p - _TOP_P_TOLERANCE) | (top_p >= 1)
  keep &= (probs > 0) & (top > -jnp.inf)
  keep &= ~greedy
  keep |= rank == 0
  return tempered, order, keep, cdf


def filter_logits(logits: Array, *, temperature: Array | float = 1.0, top_k: Array | int = 0,
                  top_p: Array | float = 1.0) -> Array:
  """The logits that `sample` draws from, in vocabulary order.

  In order: divide by `temperature` (0 means greedy: only the argmax survives); keep the `top_k`
  highest-ranked tokens (0 keeps all); on the renormalised tempered top-k distribution keep the
  smallest set of highest-ranked tokens whose probability is at least `top_p` (the token that
  crosses `top_p` is kept; `top_p = 1` keeps all). Tokens whose probability is 0 (a -inf logit,
  or one that underflows) are removed too. The most likely token always survives. Ranks come
  from a sort with ties to the lower id (the module's conventions, signed zeros included), so
  `top_k` keeps exactly `top_k` tokens even among ties.

  Args:
    logits: `[batch, vocab]`.
    temperature: scalar or `[batch]`, >= 0.
    top_k: scalar or `[batch]` int, >= 0.
    top_p: scalar or `[batch]` in (0, 1].

  Returns:
    `[batch, vocab]` float32 tempered logits, `-inf` where removed.

  Raises:
    ValueError: a concrete setting outside its range (NaN included).
  """
  _check_sampling(temperature, top_k, top_p)
  tempered, order, keep, _ = _filter_sorted(logits, temperature, top_k, top_p)
  rows = jnp.arange(logits.shape[0])[:, None]
  filtered = jnp.where(keep, tempered, -jnp.inf)
  return jnp.full(logits.shape, -jnp.inf, jnp.float32).at[rows, order].set(filtered)


def _decode(tokens_to_logits: TokensToLogits, prompt: Array, cache: Any,
            choose_fn: Callable[[Array, Array], Array], max_new_tokens: int, eos_id: int | None,
            pad_id: int) -> DecodeOutput:
  """The loop shared by greedy and sampling; `choose_fn(logits [batch, vocab], step) -> [batch]`."""
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
  _check_prompt(prompt)
  batch = prompt.shape[0]
  logits, cache = tokens_to_logits(prompt, cache)  # [batch, prompt_len, vocab]
  _check_eos(eos_id, logits.shape[-1])

  def choose(state, logits, step):
    tokens = jnp.where(state.finished, pad_id, choose_fn(logits, step)).astype(jnp.int32)
    log_probs = jnp.take_along_axis(_log_softmax(logits), tokens[:, None], axis=-1)[:, 0]
    at_step = jnp.arange(max_new_tokens) == step
    finished = state.finished
    if eos_id is not None:
      finished = finished | (tokens == eos_id)
    return _DecodeState(
        sequences=jnp.where(at_step, tokens[:, None], state.sequences),
        log_probs=state.log_probs + jnp.where(state.finished, 0.0, log_probs),
        lengths=state.lengths + (~state.finished).astype(jnp.int32),
        finished=finished,
        tokens=tokens)

  def body(carry, step):
    state, logits, cache = carry
    state = choose(state, logits, step)
    logits, cache = tokens_to_logits(state.tokens[:, None], cache)
    return (state, logits[:, -1], cache), None

  state = _DecodeState(
      sequences=jnp.full((batch, max_new_tokens), pad_id, jnp.int32),
      log_probs=jnp.zeros((batch,), jnp.float32),
      lengths=jnp.zeros((batch,), jnp.int32),
      finished=jnp.zeros((batch,), bool),
      tokens=jnp.zeros((batch,), jnp.int32))
  (state, logits, _), _ = lax.scan(body, (state, logits[:, -1], cache),
                                   jnp.arange(max_new_tokens - 1))
  state = choose(state, logits, max_new_tokens - 1)
  return DecodeOutput(sequences=state.sequences, log_probs=state.log_probs, lengths=state.lengths,
                      finished=state.finished)


def greedy(tokens_to_logits: TokensToLogits, prompt: Array, cache: Any, *, max_new_tokens: int,
           eos_id: int | None = None, pad_id: int = 0) -> DecodeOutput:
  """Greedy decoding: the argmax token at every step (ties: the lower id; -0.0 == +0.0).

  Args:
    tokens_to_logits: see the module docstring.
    prompt: `[batch, prompt_len]` int32, `prompt_len >= 1`; prefilled in one call.
    cache: the empty cache for `batch` sequences.
    max_new_tokens: static number of generated tokens.
    eos_id: the end token in [0, vocab), or None for fixed-length generation.
    pad_id: written after the EOS.

  Returns:
    `DecodeOutput` with `sequences [batch, max_new_tokens]`.

  Raises:
    ValueError: `eos_id` outside the vocabulary of the logits, or an empty prompt.
  """
  choose_fn = lambda logits, step: jnp.argmax(logits, axis=-1)
  return _decode(tokens_to_logits, prompt, cache, choose_fn, max_new_tokens, eos_id, pad_id)


def sample(tokens_to_logits: TokensToLogits, prompt: Array, cache: Any, rng: Array, *,
           max_new_tokens: int, temperature: Array | float = 1.0, top_k: Array | int = 0,
           top_p: Array | float = 1.0, eos_id: int | None = None,
           pad_id: int = 0) -> DecodeOutput:
  """Ancestral sampling from the tempered, top-k and top-p filtered model distribution.

  Each step draws from `softmax(filter_logits(logits, temperature, top_k, top_p))` (see
  `filter_logits` for the exact rules; temperature 0 is greedy). `temperature`, `top_k` and
  `top_p` are ordinary array arguments, scalars or one value per example, so changing them under
  `jit` does not recompile. Each step sorts the vocabulary once and draws one uniform per example
  (inverse-CDF sampling over the kept ranks); step `t` uses `fold_in(rng, t)`, split into one key
  per example.

  Args:
    tokens_to_logits: see the module docstring.
    prompt: `[batch, prompt_len]` int32, `prompt_len >= 1`; prefilled in one call.
    cache: the empty cache for `batch` sequences.
    rng: a PRNG key.
    max_new_tokens: static number of generated tokens.
    temperature: scalar or `[batch]` float, >= 0.
    top_k: scalar or `[batch]` int, >= 0; 0 disables it.
    top_p: scalar or `[batch]` float in (0, 1]; 1 disables it.
    eos_id: the end token in [0, vocab), or None for fixed-length generation.
    pad_id: written after the EOS.

  Returns:
    `DecodeOutput`; `log_probs` are under the unfiltered model distribution.

  Raises:
    ValueError: a concrete setting outside its range (NaN included), `eos_id` outside the
      vocabulary of the logits, or an empty prompt.
  """
  _check_sampling(temperature, top_k, top_p)
  batch = prompt.shape[0]

  def choose_fn(logits, step):
    _, order, keep, cdf = _filter_sorted(logits, temperature, top_k, top_p)
    # Inverse-CDF sampling over the kept ranks: one uniform per example instead of one Gumbel
    # per token. `u` is uniform on [0, kept mass); the rank is the first whose cdf exceeds it.
    keys = jax.random.split(jax.random.fold_in(rng, step), batch)
    uniform = jax.vmap(jax.random.uniform)(keys)  # [batch]
    num_kept = jnp.sum(keep, axis=-1)
    kept_mass = jnp.take_along_axis(cdf, num_kept[:, None] - 1, axis=-1)[:, 0]
    ranks = jnp.sum(cdf <= (uniform * kept_mass)[:, None], axis=-1)
    ranks = jnp.minimum(ranks, num_kept - 1)  # guards u rounding up to the kept mass
    return jnp.take_along_axis(order, ranks[:, None], axis=-1)[:, 0]

  return _decode(tokens_to_logits, prompt, cache, choose_fn, max_new_tokens, eos_id, pad_id)


def gnmt_length_penalty(length: Array, alpha: Array | float) -> Array:
  """GNMT length penalty `((5 + length) / 6) ** alpha` (Wu et al., 2016, eq. 14).

  `length` counts generated tokens including the EOS and never the prompt. `alpha = 0` gives 1,
  so scores are plain summed log-probabilities.
  """
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def _beam_step(state: _BeamState, logits: Array, step: Array, *, eos_id: int | None,
               alpha: Array, is_last: bool) -> tuple[_BeamState, Array]:
  """Extends every alive beam by one token; returns the new state and the parent beams.

  Finished candidates are the EOS continuation of every alive beam and, at the last step, the
  best non-EOS continuations (they reach the length limit). They are merged with the finished
  set, which keeps the best `beam` by score. The alive set becomes the best `beam` non-EOS
  continuations by summed log-probability.
  """
  batch, beam, vocab = logits.shape
  max_new_tokens = state.alive_sequences.shape[-1]
  log_probs = state.alive_log_probs[:, :, None] + _log_softmax(logits)  # [batch, beam, vocab]
  at_step = jnp.arange(max_new_tokens) == step
  penalty = gnmt_length_penalty(step + 1, alpha)
  length = jnp.full((batch, beam), step + 1, jnp.int32)

  candidates = [(state.finished_sequences, state.finished_scores, state.finished_log_probs,
                 state.finished_lengths)]
  if eos_id is not None:
    eos_log_probs = log_probs[:, :, eos_id]
    eos_sequences = jnp.where(at_step, eos_id, state.alive_sequences)
    candidates.append((eos_sequences, eos_log_probs / penalty, eos_log_probs, length))
    log_probs = log_probs.at[:, :, eos_id].set(-jnp.inf)

  # Ties: the lower parent beam, then the lower token (flat index order).
  alive_log_probs, flat = _top_k(log_probs.reshape(batch, beam * vocab), beam)
  parents, tokens = flat // vocab, (flat % vocab).astype(jnp.int32)  # [batch, beam]
  alive_sequences = jnp.take_along_axis(state.alive_sequences, parents[:, :, None], axis=1)
  alive_sequences = jnp.where(at_step, tokens[:, :, None], alive_sequences)
  if is_last:
    candidates.append((alive_sequences, alive_log_probs / penalty, alive_log_probs, length))

  sequences, scores, sums, lengths = (jnp.concatenate(parts, axis=1) for parts in zip(*candidates))
  # Ties keep the earlier candidate: an older finished sequence before a new one.
  scores, best = _top_k(scores, beam)
  take = lambda x: jnp.take_along_axis(x, best.reshape(best.shape + (1,) * (x.ndim - 2)), axis=1)
  state = _BeamState(
      alive_sequences=alive_sequences,
      alive_log_probs=alive_log_probs,
      finished_sequences=take(sequences),
      finished_scores=scores,
      finished_log_probs=take(sums),
      finished_lengths=take(lengths))
  return state, parents


def beam_search(tokens_to_logits: TokensToLogits, prompt: Array, cache: Any, *, beam_size: int,
                max_new_tokens: int, eos_id: int | None, length_penalty: Array | float = 0.0,
                num_return: int | None = None, pad_id: int = 0) -> BeamSearchOutput:
  """Beam search as one fixed-length `lax.scan`, returning the best finished sequences.

  A sequence is finished when it ends with `eos_id` or has `max_new_tokens` tokens. Its score is

      score = sum of the log-probabilities of its generated tokens (EOS included)
              / ((5 + length) / 6) ** length_penalty

  with `length` = number of generated tokens including the EOS, never the prompt (GNMT, Wu et
  al., 2016). `length_penalty = 0` leaves the summed log-probability. Ties go to the lower ids:
  among equal summed log-probabilities the lower parent beam, then the lower token; among equal
  scores the earlier candidate (finished before, then EOS continuations by beam, then the
  length-limited ones); -0.0 and +0.0 are equal.

  At every step each of the `beam_size` alive beams contributes its EOS continuation as a
  finished candidate whatever its rank, and the finished set keeps the best `beam_size`
  candidates seen so far; the alive set is the best `beam_size` non-EOS continuations by summed
  log-probability, and at the last step these count as finished. So the result is exact whenever
  the alive set holds every prefix (e.g. `beam_size >= (vocab - 1) ** (max_new_tokens - 1)`), and
  it returns placeholders (`finished = False`, score -inf) only when fewer than `num_return`
  sequences exist at all.

  Args:
    tokens_to_logits: see the module docstring. The prompt is prefilled with batch `batch`;
      then the cache leaves with a batch axis are repeated to `[batch * beam_size, ...]`.
    prompt: `[batch, prompt_len]` int32, `prompt_len >= 1`.
    cache: the empty cache for `batch` sequences.
    beam_size: static number of alive beams (and of finished slots), >= 1.
    max_new_tokens: static most generated tokens.
    eos_id: the end token in [0, vocab), or None (then every sequence has `max_new_tokens`
      tokens).
    length_penalty: the exponent `alpha` above, a float or a scalar array (a runtime value).
    num_return: how many sequences to return per example, <= beam_size (default beam_size).
    pad_id: written after the EOS.

  Returns:
    `BeamSearchOutput` with `sequences [batch, num_return, max_new_tokens]`, best first.

  Raises:
    ValueError: `beam_size`, `num_return` or `max_new_tokens` below 1, a concrete non-finite
      `length_penalty`, `eos_id` outside the vocabulary of the logits, or an empty prompt.
  """
  if beam_size < 1:
    raise ValueError(f"beam_size must be >= 1, got {beam_size}.")
  _check("length_penalty", length_penalty, np.isfinite, "a finite number")
  num_return = beam_size if num_return is None else num_return
  if not 1 <= num_return <= beam_size:
    raise ValueError(f"num_return must be in [1, beam_size={beam_size}], got {num_return}.")
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
  _check_prompt(prompt)
  batch = prompt.shape[0]
  alpha = jnp.asarray(length_penalty, jnp.float32)

  logits, cache = tokens_to_logits(prompt, cache)  # [batch, prompt_len, vocab]
  _check_eos(eos_id, logits.shape[-1])
  logits = jnp.repeat(logits[:, -1:], beam_size, axis=1)  # [batch, beam, vocab]
  cache = jax.tree.map(lambda x: jnp.repeat(x, beam_size, axis=0) if x.ndim else x, cache)

  def body(carry, step):
    state, logits, cache = carry
    state, parents = _beam_step(state, logits, step, eos_id=eos_id, alpha=alpha, is_last=False)
    flat_parents = (jnp.arange(batch)[:, None] * beam_size + parents).reshape(-1)
    cache = jax.tree.map(lambda x: jnp.take(x, flat_parents, axis=0) if x.ndim else x, cache)
    tokens = lax.dynamic_index_in_dim(state.alive_sequences, step, axis=2, keepdims=False)
    logits, cache = tokens_to_logits(tokens.reshape(batch * beam_size, 1), cache)
    return (state, logits.reshape(batch, beam_size, -1), cache), None

  # Only beam 0 is real at first: the others start at -inf so the first step expands one beam.
  alive_log_probs = jnp.where(jnp.arange(beam_size) == 0, 0.0, -jnp.inf)
  empty = jnp.full((batch, beam_size, max_new_tokens), pad_id, jnp.int32)
  state = _BeamState(
      alive_sequences=empty,
      alive_log_probs=jnp.broadcast_to(alive_log_probs, (batch, beam_size)).astype(jnp.float32),
      finished_sequences=empty,
      finished_scores=jnp.full((batch, beam_size), -jnp.inf, jnp.float32),
      finished_log_probs=jnp.full((batch, beam_size), -jnp.inf, jnp.float32),
      finished_lengths=jnp.zeros((batch, beam_size), jnp.int32))
  (state, logits, _), _ = lax.scan(body, (state, logits, cache), jnp.arange(max_new_tokens - 1))
  state, _ = _beam_step(state, logits, jnp.asarray(max_new_tokens - 1), eos_id=eos_id,
                        alpha=alpha, is_last=True)

  finished = state.finished_scores[:, :num_return] > -jnp.inf
  return BeamSearchOutput(
      sequences=jnp.where(finished[:, :, None], state.finished_sequences[:, :num_return], pad_id),
      scores=state.finished_scores[:, :num_return],
      log_probs=state.finished_log_probs[:, :num_return],
      lengths=jnp.where(finished, state.finished_lengths[:, :num_return], 0),
      finished=finished)
