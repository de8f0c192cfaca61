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
ever fed to `tokens_to_logits`); when `tokens_to_logits` has a `max_len` attribute (as
`make_tokens_to_logits` sets it), a call beyond it is refused when the decoder is traced. Library
code never jits: jit the caller.

Prompts of different lengths: `left_pad` puts them in one `[batch, longest]` array and returns
each row's padding, which `init_cache(model, batch, padding)` writes into the transformer's cache;
the model then hides the padding and counts each row's positions from its first token, so every
row of the batch decodes exactly as its prompt alone (greedy, sampling with per-example keys, and
beam search).

Conventions shared by all decoders:
  * `sequences` hold only the generated tokens, `[.., max_new_tokens]`, never the prompt.
  * Once `eos_id` is generated, later positions hold `pad_id` (default 0).
  * Lengths count generated tokens including the EOS token.
  * Ties go to the lower id. Values that compare equal are ties, so -0.0 and +0.0 are one value
    (rankings go through integer keys, `_order_key`, or `_top_k`, which rank like `jnp.argmax`,
    where XLA's sort orders -0.0 below +0.0); a NaN logit counts as the largest value, as in
    `jnp.argmax`. So
    greedy, temperature 0, `top_k = 1`, a tiny `top_p` and the ranks of top-k / top-p agree.
  * Logits tied at +inf share the probability equally (a plain softmax gives NaN). A row whose
    logits are all -inf allows no token: greedy and sampling then take id 0 with log-probability
    -inf, and beam search drops the beam (its continuations score -inf, not NaN).
  * Settings given as concrete values (Python numbers, NumPy or unjitted JAX arrays) are checked
    and refused with a ValueError; values traced under `jit` cannot be checked, and there a
    temperature <= 0 is greedy.
  * Prompt ids must lie in the vocabulary `[0, vocab)` of the logits (the decoders feed their
    own tokens back, so `tokens_to_logits` reads that vocabulary), and a cache's `padding`
    leaves (`init_cache`) must leave each row at least one real prompt token. A concrete prompt
    or padding that breaks this is refused with a ValueError (an embedding reads an id past its
    table as NaN and wraps a negative one to another token; a row of padding alone has no token
    to attend to); traced ones cannot be checked.

References:
  Ackley, Hinton and Sejnowski, "A learning algorithm for Boltzmann machines", 1985 (temperature).
  Fan, Lewis and Dauphin, "Hierarchical neural story generation", 2018 (top-k sampling).
  Holtzman et al., "The curious case of neural text degeneration", 2020 (top-p, nucleus sampling).
  Wu et al., "Google's neural machine translation system", 2016, eq. 14 (length penalty).
  The alive / finished beam bookkeeping follows tensor2tensor's and t5x's beam search.
"""

from typing import Any, Callable, Sequence

import flax
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
# (e.g. 0.77 + 0.14 for top_p = 0.91, which float32 sums to just below 0.91) counts as reaching it.
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


def make_tokens_to_logits(model: nn.Module, params: Any, *, prefix_length: int = 0,
                          **apply_kwargs) -> TokensToLogits:
  """Adapts a Flax module with a decode mode to the `tokens_to_logits` contract.

  Args:
    model: a module called as `model.apply(variables, tokens, decode=True, mutable=["cache"])`
      that returns `[batch, length, vocab]` logits, such as `Transformer`.
    params: its "params" collection.
    prefix_length: cache slots a prefix already holds (`transformer.write_prefix`, or prefix
      embeddings written into the cache): the decoders' overflow check counts them.
    **apply_kwargs: further keyword arguments of `model.apply`.

  Returns:
    `tokens_to_logits(tokens [batch, length], cache) -> (logits [batch, length, vocab], cache)`.
    When `model` has a `max_len` (its cache length), the function carries it as its `max_len`
    attribute, and the decoders refuse a prompt and `max_new_tokens` that would overflow it.
  """

  def tokens_to_logits(tokens, cache):
    logits, variables = model.apply({"params": params, "cache": cache}, tokens, decode=True,
                                    mutable=["cache"], **apply_kwargs)
    return logits, variables["cache"]

  if isinstance(getattr(model, "max_len", None), int):
    tokens_to_logits.max_len = model.max_len - prefix_length
  return tokens_to_logits


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Prompts of different lengths as one left-padded batch.

  Args:
    prompts: `batch` sequences of token ids, each of length >= 1.
    pad_id: the id written into the padding (never seen by the model).

  Returns:
    `(tokens [batch, longest] int32, padding [batch] int32)`: row `b` holds `prompts[b]` at its
    end after `padding[b]` pad ids. Pass `padding` to `init_cache`; every decoder then continues
    each row as it would continue that prompt alone.

  Raises:
    ValueError: no prompts, or an empty one.
  """
  lengths = [len(p) for p in prompts]
  if not lengths or min(lengths) < 1:
    raise ValueError(f"left_pad needs at least one prompt and every prompt non-empty, got "
                     f"lengths {lengths}.")
  tokens = np.full((len(prompts), max(lengths)), pad_id, np.int32)
  for row, prompt in enumerate(prompts):
    tokens[row, tokens.shape[1] - len(prompt):] = prompt
  return tokens, tokens.shape[1] - np.asarray(lengths, np.int32)


def init_cache(model: nn.Module, batch_size: int, padding: Any = None) -> Any:
  """An empty decoding cache of `model` (with a `max_len` field) for `batch_size` sequences.

  It has the structure and shapes that `model.init(rng, zeros([batch, max_len]), decode=True)`
  creates, found with `jax.eval_shape`, so the model never runs.

  Args:
    model: e.g. a `Transformer`.
    batch_size: rows of the batch to decode.
    padding: optional `[batch_size]` ints, each row's left-padding tokens (from `left_pad`),
      written into the cache's `padding` leaves (`gen_jax.nn.transformer`); None means none.

  Raises:
    ValueError: `padding` of another shape, negative, `model.max_len` or more (the cache holds
      the padding and at least one token; checked before the int32 cast, which would wrap
      2**32 to 0), of a non-integer dtype (e.g. 1.5, or 1.0: it counts token slots), or given
      for a model whose cache has no `padding` leaf. (A padding as wide as the prompt is
      refused by the decoders, which see the prompt.)
  """
  dummy = jnp.zeros((batch_size, model.max_len), jnp.int32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), dummy, decode=True)["cache"])
  cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
  if padding is None:
    return cache
  padding = np.asarray(padding)
  integer = np.issubdtype(padding.dtype, np.integer)
  if (not integer or padding.shape != (batch_size,) or padding.min() < 0
      or padding.max() >= model.max_len):
    dtype = "" if integer else f" of dtype {padding.dtype}"
    raise ValueError(f"padding must be {batch_size} non-negative ints below the model's max_len="
                     f"{model.max_len} (one per row: the count of left-padding tokens that "
                     f"decoding.left_pad returns, which leaves each row a token within the "
                     f"cache), got {padding.tolist()}{dtype}.")
  flat = flax.traverse_util.flatten_dict(cache)
  leaves = [path for path in flat if path[-1] == "padding"]
  if not leaves:
    raise ValueError(f"{type(model).__name__}'s cache has no 'padding' leaf, so it cannot decode "
                     "left-padded prompts of different lengths: decode them one length at a time.")
  for path in leaves:
    flat[path] = jnp.asarray(padding, jnp.int32)
  return flax.traverse_util.unflatten_dict(flat)


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
  """Refuses a prompt that is not token ids: of a non-integer dtype (a float even when whole, a
  bool, text), or not `[batch, prompt_len >= 1]`. The dtype is known also when traced."""
  dtype = np.dtype(prompt.dtype)
  if not np.issubdtype(dtype, np.integer):
    raise ValueError(f"prompt must be integer token ids, got dtype {dtype}: pass ints (e.g. "
                     f"jnp.asarray(ids, jnp.int32); encode text with the model's codec, and round "
                     f"or cast float ids yourself).")
  if prompt.ndim != 2 or prompt.shape[1] < 1:
    raise ValueError(f"prompt must be token ids [batch, prompt_len] with prompt_len >= 1, got "
                     f"shape {prompt.shape}: decoding continues at least one token (start an "
                     "unconditioned sequence with a start or newline token).")


def _check_prompt_ids(prompt: Array, vocab: int) -> None:
  """Refuses a concrete prompt holding an id outside `[0, vocab)`, the vocabulary of the logits.

  A Flax embedding reads such an id silently wrong (`jnp.take` gives NaN past the table, so
  NaN log-probabilities, and wraps a negative id to another token). A traced prompt cannot be
  checked.
  """
  ids = concrete(prompt)
  if ids is None:
    return
  bad = np.argwhere((ids < 0) | (ids >= vocab))
  if bad.size:
    row, position = bad[0]
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    raise ValueError(
        f"The prompt holds the token id {ids[row, position]} at row {row}, position {position}"
        f"{more}, outside the vocabulary [0, {vocab}) of the logits: pass ids below {vocab} "
        f"(left_pad's pad_id included).")


def _check_padding(cache: Any, prompt: Array) -> None:
  """Refuses a cache whose concrete `padding` leaves (`init_cache`) leave a row of the prompt
  without a real token: each row's padding must lie in `[0, prompt_len)`."""
  prompt_len = prompt.shape[1]
  for path, leaf in jax.tree_util.tree_flatten_with_path(cache)[0]:
    if not path or getattr(path[-1], "key", None) != "padding":
      continue
    padding = concrete(leaf)
    if padding is None:
      continue
    padding = padding.reshape(-1)
    bad = np.flatnonzero((padding < 0) | (padding >= prompt_len))
    if bad.size:
      row = bad[0]
      raise ValueError(
          f"The cache pads row {row} with {padding[row]} tokens, but the prompt is {prompt_len} "
          f"tokens wide: each row's padding must lie in [0, {prompt_len}) so that at least one "
          f"real token follows it. Build the prompt and its padding together with "
          f"decoding.left_pad(prompts), then pass that padding to init_cache.")


def _check_room(tokens_to_logits: TokensToLogits, prompt: Array, max_new_tokens: int) -> None:
  """Refuses a prompt and `max_new_tokens` that overflow the cache (`max_len` of the function)."""
  max_len = getattr(tokens_to_logits, "max_len", None)
  fed = prompt.shape[1] + max_new_tokens - 1  # the last token is never fed back
  if max_len is not None and fed > max_len:
    most = max_len - prompt.shape[1] + 1
    fix = f"lower max_new_tokens to {most}" if most >= 1 else "shorten the prompt"
    raise ValueError(
        f"A prompt of {prompt.shape[1]} tokens and max_new_tokens={max_new_tokens} feed {fed} "
        f"tokens to a cache of max_len={max_len}: {fix}, or use a model with a larger max_len.")


def _row_keys(rng: Array, batch: int) -> Array:
  """One key per example: `rng` itself when it holds `batch` keys, else `split(rng, batch)`."""
  typed = jnp.issubdtype(rng.dtype, jax.dtypes.prng_key)
  single = rng.ndim == (0 if typed else 1)
  if single:
    return jax.random.split(rng, batch)
  if rng.shape[0] != batch:
    raise ValueError(f"rng holds {rng.shape[0]} keys for a batch of {batch}: pass one key, or one "
                     "per example.")
  return rng


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


def _order_key(x: Array) -> Array:
  """An int32 key per value whose integer order is the float order of the module's conventions.

  -0.0 and +0.0 get one key and every NaN the largest, so the keys rank like `jnp.argmax`
  (comparing equal keys by index breaks the remaining ties). Ranking integers keeps the
  searches below exact.
  """
  x = x.astype(jnp.float32)
  x = jnp.where(x == 0, jnp.zeros_like(x), x)
  x = jnp.where(jnp.isnan(x), jnp.full_like(x, jnp.nan), x)  # one positive NaN
  bits = lax.bitcast_convert_type(x, jnp.int32)
  # Negative floats order backwards as integers: flipping their magnitude bits fixes that.
  return jnp.where(bits < 0, bits ^ jnp.int32(0x7FFFFFFF), bits)


def _argmax(keys: Array) -> Array:
  """`jnp.argmax` from `_order_key` keys `[batch, vocab]`: the first index of the largest key.

  A max and a min over the vocabulary, two plain reductions where `jnp.argmax` is one variadic
  reduction over (value, index) pairs, which XLA's CPU backend runs much more slowly.
  """
  largest = jnp.max(keys, axis=-1, keepdims=True)
  index = jnp.arange(keys.shape[-1], dtype=jnp.int32)
  return jnp.min(jnp.where(keys == largest, index, keys.shape[-1]), axis=-1)


def _largest_threshold(keys: Array, holds: Callable[[Array, Array | None], Array],
                       values: Array | None = None, *, vocab_first: bool = False) -> Array:
  """Per row, the largest int32 `t` for which `holds(keys >= t, values)` is True, by bisection.

  Args:
    keys: `[batch, vocab]` int32 (from `_order_key`).
    holds: maps the bool mask `keys >= t` and `values` to a `[batch]` bool, reducing over the
      vocabulary axis; it must be True at `t = int32 min` (every token) and monotone (once
      False, False for larger `t`).
    values: optional `[batch, vocab]` array handed to `holds`.
    vocab_first: hand `holds` the mask and `values` as `[vocab, batch]` (reduce axis 0), which
      keeps the batch in the vector lanes; on CPU this speeds up an integer count and slows
      down a masked float sum, so each caller picks its layout.

  Returns:
    `[batch]` int32. One reduction over the vocabulary per bit (32 in all), never a sort.
  """
  # Bisect on the unsigned offset `keys + 2**31`, whose bits order like the signed keys.
  unsigned = lax.bitcast_convert_type(keys, jnp.uint32) ^ jnp.uint32(0x80000000)
  if vocab_first:
    unsigned, values = unsigned.T, None if values is None else values.T

  def body(i, t):
    candidate = t | (jnp.uint32(1) << (jnp.uint32(31) - i.astype(jnp.uint32)))
    column = candidate[None, :] if vocab_first else candidate[:, None]
    return jnp.where(holds(unsigned >= column, values), candidate, t)

  t = lax.fori_loop(0, 32, body, jnp.zeros(keys.shape[:1], jnp.uint32))
  return lax.bitcast_convert_type(t ^ jnp.uint32(0x80000000), jnp.int32)


def _keep_ties_in_order(above: Array, at: Array, allowed: Callable[[Array], Array]) -> Array:
  """`above`, plus the tokens of `at` (ties at a threshold) that `allowed` admits by rank.

  `allowed(rank)` takes each tie's 0-based rank among the ties (lower id first) and says
  whether it is kept; it must hold for a prefix of ranks. The cumulative count is skipped
  when no row has a tie to drop.
  """
  def ranked(_):
    rank = jnp.cumsum(at, axis=-1, dtype=jnp.int32) - 1
    return above | (at & allowed(rank))

  all_allowed = allowed(jnp.sum(at, axis=-1, dtype=jnp.int32)[:, None] - 1)
  return lax.cond(jnp.all(all_allowed | ~jnp.any(at, axis=-1, keepdims=True)),
                  lambda _: above | at, ranked, None)


def _token_log_prob(logits: Array, tokens: Array) -> Array:
  """`_log_softmax(logits)` at `tokens [batch]` only: one log-sum-exp, no `[batch, vocab]` output."""
  logits = logits.astype(jnp.float32)
  top = jnp.max(logits, axis=-1)
  shifted = jnp.where(logits == top[:, None], 0.0, logits - top[:, None])
  log_norm = jnp.log(jnp.sum(jnp.exp(shifted), axis=-1))
  chosen = jnp.take_along_axis(shifted, tokens[:, None], axis=-1)[:, 0]
  return jnp.where(top == -jnp.inf, -jnp.inf, chosen - log_norm)


def _filter(logits: Array, temperature: Array, top_k: Array,
            top_p: Array) -> tuple[Array, Array, Array]:
  """Temperature, top-k and top-p in vocabulary order, without sorting the vocabulary.

  Returns:
    shifted: `[batch, vocab]` float32 tempered logits minus the row's largest (its ties get
      exactly 0, so tokens tied at +inf share the mass and a tiny temperature cannot overflow).
    keep: `[batch, vocab]` bool, the tokens that top-k and top-p keep and that have a positive
      probability; always the argmax (ranked as in the module docstring).
    argmax: `[batch]` int32, the most likely token.
  """
  batch, vocab = logits.shape
  col = lambda x: jnp.broadcast_to(jnp.asarray(x), (batch,))[:, None]  # [batch, 1]
  temperature, top_k, top_p = col(temperature), col(top_k), col(top_p)
  logits = logits.astype(jnp.float32)
  keys = _order_key(logits)
  argmax = _argmax(keys)
  is_argmax = jnp.arange(vocab)[None, :] == argmax[:, None]
  greedy = temperature <= 0
  top = jnp.max(logits, axis=-1, keepdims=True)
  shifted = jnp.where(logits == top, 0.0, logits - top) / jnp.where(greedy, 1.0, temperature)

  # Top-k: the k-th largest key, then the ties at it by lower id, so exactly k tokens stay.
  k = jnp.where(top_k <= 0, vocab, jnp.minimum(top_k, vocab)).astype(jnp.int32)

  def top_k_mask(_):
    kth = _largest_threshold(keys, lambda m, _: jnp.sum(m, axis=0, dtype=jnp.int32) >= k[:, 0],
                             vocab_first=True)
    above = keys > kth[:, None]
    room = k - jnp.sum(above, axis=-1, keepdims=True, dtype=jnp.int32)
    return _keep_ties_in_order(above, keys == kth[:, None], lambda rank: rank < room)

  keep = lax.cond(jnp.any(k < vocab), top_k_mask, lambda _: jnp.ones_like(keys, bool), None)
  probs = jax.nn.softmax(jnp.where(keep, shifted, -jnp.inf), axis=-1)

  # Top-p on the renormalised top-k distribution: a token stays while the mass ranked above it
  # is below top_p. The last kept key is the largest whose tokens at or above it hold top_p.
  target = top_p - _TOP_P_TOLERANCE

  def top_p_mask(_):
    mass = lambda m, p: jnp.sum(jnp.where(m, p, 0.0), axis=-1)
    last = _largest_threshold(
        keys, lambda m, p: (mass(m, p) >= target[:, 0]) | (top_p[:, 0] >= 1), probs)
    above = keys > last[:, None]
    at = keys == last[:, None]
    mass_above = mass(above, probs)[:, None]
    tie_prob = jnp.max(jnp.where(at, probs, 0.0), axis=-1, keepdims=True)
    kept = _keep_ties_in_order(above, at, lambda rank: mass_above + rank * tie_prob < target)
    return kept | (top_p >= 1)

  keep &= lax.cond(jnp.any(top_p < 1), top_p_mask, lambda _: jnp.ones_like(keep), None)
  keep &= (probs > 0) & (top > -jnp.inf) & ~greedy
  return shifted, keep | is_argmax, argmax


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
  shifted, keep, _ = _filter(logits, temperature, top_k, top_p)
  col = lambda x: jnp.broadcast_to(jnp.asarray(x), logits.shape[:1])[:, None]
  scale = jnp.where(col(temperature) <= 0, 1.0, col(temperature))
  return jnp.where(keep, logits.astype(jnp.float32) / scale, -jnp.inf)


def _decode(tokens_to_logits: TokensToLogits, prompt: Array, cache: Any,
            choose_fn: Callable[[Array, Array], Array], max_new_tokens: int, eos_id: int | None,
            pad_id: int) -> DecodeOutput:
  """The loop shared by greedy and sampling; `choose_fn(logits [batch, vocab], step) -> [batch]`."""
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
  _check_prompt(prompt)
  _check_room(tokens_to_logits, prompt, max_new_tokens)
  _check_padding(cache, prompt)
  batch = prompt.shape[0]
  logits, cache = tokens_to_logits(prompt, cache)  # [batch, prompt_len, vocab]
  _check_eos(eos_id, logits.shape[-1])
  _check_prompt_ids(prompt, logits.shape[-1])

  def choose(state, logits, step):
    tokens = jnp.where(state.finished, pad_id, choose_fn(logits, step)).astype(jnp.int32)
    log_probs = _token_log_prob(logits, tokens)
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
    prompt: `[batch, prompt_len]` int32 ids in `[0, vocab)`, `prompt_len >= 1`; prefilled in one
      call.
    cache: the empty cache for `batch` sequences (`init_cache`; its padding, if any, below
      `prompt_len`).
    max_new_tokens: static number of generated tokens.
    eos_id: the end token in [0, vocab), or None for fixed-length generation.
    pad_id: written after the EOS.

  Returns:
    `DecodeOutput` with `sequences [batch, max_new_tokens]`; `log_probs` are the model's
    log-probabilities of the generated tokens. (t5x's greedy returns 0 there by default: its
    log-probabilities are under the rescaled distribution, one-hot at temperature 0.)

  Raises:
    ValueError: `eos_id` outside the vocabulary of the logits, a prompt of a non-integer dtype
      (floats, bools, text: pass token ids) or empty, a concrete prompt with an id outside that
      vocabulary, a concrete cache padding that leaves a row no prompt token, or a prompt and
      `max_new_tokens` beyond the cache (see the module docstring).
  """
  choose_fn = lambda logits, step: _argmax(_order_key(logits))
  return _decode(tokens_to_logits, prompt, cache, choose_fn, max_new_tokens, eos_id, pad_id)


def sample(tokens_to_logits: TokensToLogits, prompt: Array, cache: Any, rng: Array, *,
           max_new_tokens: int, temperature: Array | float = 1.0, top_k: Array | int = 0,
           top_p: Array | float = 1.0, eos_id: int | None = None,
           pad_id: int = 0) -> DecodeOutput:
  """Ancestral sampling from the tempered, top-k and top-p filtered model distribution.

  Each step draws from `softmax(filter_logits(logits, temperature, top_k, top_p))` (see
  `filter_logits` for the exact rules; temperature 0 is greedy). `temperature`, `top_k` and
  `top_p` are ordinary array arguments, scalars or one value per example, so changing them under
  `jit` does not recompile. No step sorts the vocabulary: top-k and top-p find their cut-off by
  bisection (32 passes over the vocabulary each, run only when some row sets them; a batch that
  is all temperature 0 only takes the argmax), then one uniform per example picks the token
  (inverse-CDF sampling over the kept tokens in vocabulary order). Example `b` draws step `t`
  with `fold_in(keys[b], t)`, where `keys` is `rng` when it holds one key per example and
  `split(rng, batch)` otherwise: with per-example keys, each row's draws do not depend on the
  other rows, so a row of a batch equals that prompt sampled alone with its key.

  Args:
    tokens_to_logits: see the module docstring.
    prompt: `[batch, prompt_len]` int32 ids in `[0, vocab)`, `prompt_len >= 1`; prefilled in one
      call.
    cache: the empty cache for `batch` sequences (`init_cache`; its padding, if any, below
      `prompt_len`).
    rng: a PRNG key, or `[batch]` keys (one per example).
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
      vocabulary of the logits, a prompt of a non-integer dtype (floats, bools, text: pass
      token ids) or empty, a concrete prompt with an id outside that vocabulary, a concrete
      cache padding that leaves a row no prompt token, a prompt and `max_new_tokens` beyond the
      cache (see the module docstring), or `rng` with a number of keys other than 1 or `batch`.
  """
  _check_sampling(temperature, top_k, top_p)
  row_keys = _row_keys(rng, prompt.shape[0])

  def draw(logits, step):
    shifted, keep, argmax = _filter(logits, temperature, top_k, top_p)
    # Inverse-CDF sampling over the kept tokens in vocabulary order: one uniform per example
    # instead of one Gumbel per token. `u` is uniform on [0, kept mass); the token is the first
    # whose cumulative weight exceeds it.
    is_argmax = jnp.arange(logits.shape[-1])[None, :] == argmax[:, None]
    weights = jnp.where(keep, jnp.where(is_argmax, 1.0, jnp.exp(shifted)), 0.0)
    cdf = jnp.cumsum(weights, axis=-1)
    uniform = jax.vmap(lambda key: jax.random.uniform(jax.random.fold_in(key, step)))(row_keys)
    tokens = jnp.sum(cdf <= (uniform * cdf[:, -1])[:, None], axis=-1, dtype=jnp.int32)
    last_kept = jnp.max(jnp.where(keep, jnp.arange(logits.shape[-1]), 0), axis=-1)
    return jnp.minimum(tokens, last_kept)  # guards u * mass rounding up to the mass

  def choose_fn(logits, step):
    all_greedy = jnp.all(jnp.asarray(temperature) <= 0)
    return lax.cond(all_greedy, lambda: _argmax(_order_key(logits)),
                    lambda: draw(logits, step))

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

  How this differs from t5x's `beam_search`: there, beams cut at the length limit are returned
  only when no beam finished with EOS, and then unpenalised; here they are finished candidates
  like the EOS ones, scored with the same length penalty, so the result is the best sequences
  by the one score above.

  Args:
    tokens_to_logits: see the module docstring. The prompt is prefilled with batch `batch`;
      then the cache leaves with a batch axis are repeated to `[batch * beam_size, ...]`.
    prompt: `[batch, prompt_len]` int32 ids in `[0, vocab)`, `prompt_len >= 1`.
    cache: the empty cache for `batch` sequences (`init_cache`; its padding, if any, below
      `prompt_len`).
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
      `length_penalty`, `eos_id` outside the vocabulary of the logits, a prompt of a
      non-integer dtype (floats, bools, text: pass token ids) or empty, a concrete prompt with
      an id outside that vocabulary, a concrete cache padding that leaves a row no prompt
      token, or a prompt and `max_new_tokens` beyond the cache (see the module docstring).
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
  _check_room(tokens_to_logits, prompt, max_new_tokens)
  _check_padding(cache, prompt)
  batch = prompt.shape[0]
  alpha = jnp.asarray(length_penalty, jnp.float32)

  logits, cache = tokens_to_logits(prompt, cache)  # [batch, prompt_len, vocab]
  _check_eos(eos_id, logits.shape[-1])
  _check_prompt_ids(prompt, logits.shape[-1])
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
