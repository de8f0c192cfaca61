"""Oracle tests of greedy decoding, sampling and beam search.

The stub model's logits at every position are a fixed pseudo-random function of the whole prefix
(its "cache" is the prefix itself), so every path has its own score and a brute-force enumeration
of all sequences is the oracle for beam search and for the sampling distribution.
"""

import functools
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gen_jax.nn.transformer import Transformer
from gen_jax.sampling import decoding

MAX_LEN = 8


def make_stub(vocab, seed, scale=2.0):
  """A `tokens_to_logits` whose logits depend on the whole prefix; `seed` may be traced."""
  key = jax.random.fold_in(jax.random.key(1234), seed)
  powers = jnp.asarray((vocab + 1) ** np.arange(MAX_LEN), jnp.int32)  # injective prefix codes

  def tokens_to_logits(tokens, cache):
    length = tokens.shape[1]
    buffer = jax.lax.dynamic_update_slice(cache["tokens"], tokens.astype(jnp.int32),
                                          (0, cache["index"]))
    codes = jnp.cumsum((buffer + 1) * powers, axis=1)  # [batch, MAX_LEN]
    codes = jax.lax.dynamic_slice_in_dim(codes, cache["index"], length, axis=1)
    draw = lambda code: jax.random.normal(jax.random.fold_in(key, code), (vocab,))
    logits = scale * jax.vmap(jax.vmap(draw))(codes)
    return logits, {"tokens": buffer, "index": cache["index"] + length}

  return tokens_to_logits


def empty_cache(batch):
  return {"tokens": jnp.zeros((batch, MAX_LEN), jnp.int32), "index": jnp.zeros((), jnp.int32)}


@functools.partial(jax.jit, static_argnums=0)
def stub_full_logits(vocab, seed, tokens):
  """The stub's logits for whole sequences `[batch, length]`, in one uncached call."""
  return make_stub(vocab, seed)(tokens, empty_cache(tokens.shape[0]))[0]


def all_log_probs(logits_fn, prompt, vocab, steps):
  """Every continuation of length `steps` and its per-step log-probabilities (float64).

  Args:
    logits_fn: `tokens [batch, length] -> logits [batch, length, vocab]`, uncached.

  Returns `(continuations [vocab ** steps, steps], log_probs [vocab ** steps, steps, vocab])`.
  """
  conts = np.array(list(itertools.product(range(vocab), repeat=steps)), np.int32)
  tokens = np.concatenate([np.repeat(prompt[None], len(conts), 0), conts], axis=1)
  logits = np.asarray(logits_fn(jnp.asarray(tokens)), np.float64)
  logits = logits[:, len(prompt) - 1:-1]  # the positions that predict the continuation
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  return conts, log_probs


def brute_force_beams(logits_fn, prompt, vocab, steps, eos_id, alpha, n):
  """The n best complete sequences (ended by EOS or by the length limit), by enumeration."""
  conts, log_probs = all_log_probs(logits_fn, prompt, vocab, steps)
  best = {}
  for cont, lp in zip(conts, log_probs):
    length = steps
    if eos_id is not None and eos_id in cont:
      length = int(np.argmax(cont == eos_id)) + 1
    total = sum(lp[t, cont[t]] for t in range(length))
    padded = tuple(cont[:length]) + (0,) * (steps - length)
    best[padded] = (total / ((5.0 + length) / 6.0) ** alpha, length)
  ranked = sorted(best.items(), key=lambda item: -item[1][0])[:n]
  return (np.array([seq for seq, _ in ranked]), np.array([s for _, (s, _) in ranked]),
          np.array([length for _, (_, length) in ranked]))


def reference_beam_search(logits_fn, prompt, vocab, steps, eos_id, alpha, beam):
  """A plain-Python beam search with the documented semantics (for beams that prune)."""
  conts, log_probs = all_log_probs(logits_fn, prompt, vocab, steps)
  table = {tuple(cont[:t]): lp[t] for cont, lp in zip(conts, log_probs) for t in range(steps)}
  penalty = lambda length: ((5.0 + length) / 6.0) ** alpha
  alive, finished = [(0.0, ())], []
  for t in range(steps):
    continuations = []
    for total, prefix in alive:
      for token in range(vocab):
        extended = (total + table[prefix][token], prefix + (token,))
        if token == eos_id:
          finished.append((extended[0] / penalty(t + 1), extended[1]))
        else:
          continuations.append(extended)
    alive = sorted(continuations, key=lambda c: -c[0])[:beam]
    if t == steps - 1:
      finished += [(total / penalty(steps), prefix) for total, prefix in alive]
  finished = sorted(finished, key=lambda f: -f[0])[:beam]
  seqs = np.array([list(s) + [0] * (steps - len(s)) for _, s in finished])
  return seqs, np.array([score for score, _ in finished])


@functools.lru_cache(maxsize=None)
def jitted_beam_search(vocab, steps, beam, eos_id, num_return):

  def run(seed, prompt, alpha):
    return decoding.beam_search(make_stub(vocab, seed), prompt, empty_cache(prompt.shape[0]),
                                beam_size=beam, max_new_tokens=steps, eos_id=eos_id,
                                length_penalty=alpha, num_return=num_return)

  return jax.jit(run)


@pytest.mark.parametrize("vocab,steps,eos_id,prompt_len",
                         [(4, 3, 0, 1), (5, 3, 2, 2), (4, 4, 3, 3), (3, 3, None, 2)])
def test_beam_search_matches_brute_force(vocab, steps, eos_id, prompt_len):
  # The alive set holds every non-EOS prefix, so beam search must find the exact n best.
  beam = (vocab - (eos_id is not None)) ** (steps - 1)
  n = min(beam, 6)
  search = jitted_beam_search(vocab, steps, beam, eos_id, n)
  for seed in range(20):
    rng = np.random.default_rng(seed)
    prompts = rng.integers(0, vocab, (2, prompt_len)).astype(np.int32)
    alpha = 0.0 if seed % 2 else 0.8
    out = search(seed, prompts, alpha)
    logits_fn = functools.partial(stub_full_logits, vocab, seed)
    for b in range(2):
      seqs, scores, lengths = brute_force_beams(logits_fn, prompts[b], vocab, steps, eos_id,
                                                alpha, n)
      np.testing.assert_array_equal(out.sequences[b], seqs, err_msg=f"seed {seed}")
      np.testing.assert_allclose(out.scores[b], scores, atol=1e-5, err_msg=f"seed {seed}")
      np.testing.assert_array_equal(out.lengths[b], lengths)
      assert np.all(out.finished[b])
      if alpha == 0.0:
        np.testing.assert_allclose(out.log_probs[b], scores, atol=1e-5)


@pytest.mark.parametrize("beam", [1, 2, 3])
def test_beam_search_matches_reference_when_pruning(beam):
  vocab, steps, eos_id = 5, 4, 1
  search = jitted_beam_search(vocab, steps, beam, eos_id, beam)
  for seed in range(8):
    prompts = np.random.default_rng(seed).integers(0, vocab, (2, 2)).astype(np.int32)
    alpha = 0.6 * (seed % 2)
    out = search(seed, prompts, alpha)
    for b in range(2):
      seqs, scores = reference_beam_search(functools.partial(stub_full_logits, vocab, seed),
                                           prompts[b], vocab, steps, eos_id, alpha, beam)
      np.testing.assert_array_equal(out.sequences[b], seqs, err_msg=f"seed {seed}")
      np.testing.assert_allclose(out.scores[b], scores, atol=1e-5)


def fixed_logits_stub(step_probs):
  """`tokens_to_logits` whose next-token distribution depends only on the position."""
  table = jnp.log(jnp.asarray(step_probs, jnp.float32))  # [positions, vocab]

  def tokens_to_logits(tokens, cache):
    positions = cache["index"] + jnp.arange(tokens.shape[1])
    logits = jnp.broadcast_to(table[positions], tokens.shape + table.shape[-1:])
    return logits, {"tokens": cache["tokens"], "index": cache["index"] + tokens.shape[1]}

  return tokens_to_logits


def test_beam_search_scores_eos_outside_top_2k():
  # EOS (p=0.2) ranks last at the first step, below the 2 * beam best continuations, yet [EOS] is
  # the best sequence: every longer one has probability at most 0.4 * 0.4 < 0.2.
  stub = fixed_logits_stub([[0.2, 0.4, 0.4], [0.2, 0.4, 0.4]])
  out = decoding.beam_search(stub, jnp.array([[1]]), empty_cache(1), beam_size=1,
                             max_new_tokens=2, eos_id=0)
  np.testing.assert_array_equal(out.sequences, [[[0, 0]]])
  np.testing.assert_allclose(out.scores, [[np.log(0.2)]], atol=1e-6)
  np.testing.assert_array_equal(out.lengths, [[1]])


def test_beam_search_placeholders_only_when_too_few_sequences():
  # Vocab {EOS=0, 1} and 2 steps: exactly three sequences exist, [0], [1, 0], [1, 1].
  stub = fixed_logits_stub([[0.5, 0.5], [0.3, 0.7]])
  out = decoding.beam_search(stub, jnp.array([[1]]), empty_cache(1), beam_size=4,
                             max_new_tokens=2, eos_id=0, pad_id=0)
  np.testing.assert_array_equal(out.finished, [[True, True, True, False]])
  np.testing.assert_array_equal(out.sequences, [[[0, 0], [1, 1], [1, 0], [0, 0]]])
  np.testing.assert_allclose(out.scores[0, :3], np.log([0.5, 0.5 * 0.7, 0.5 * 0.3]), atol=1e-6)
  assert out.scores[0, 3] == -np.inf
  np.testing.assert_array_equal(out.lengths, [[1, 2, 2, 0]])


def test_greedy_literal_with_eos_padding():
  probs = [[0.1, 0.2, 0.7], [0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.1, 0.1, 0.8], [0.1, 0.1, 0.8]]
  stub = fixed_logits_stub(probs)
  prompt = jnp.array([[2], [1]])
  out = jax.jit(lambda p: decoding.greedy(stub, p, empty_cache(2), max_new_tokens=4,
                                          eos_id=0, pad_id=0))(prompt)
  # Row t of the table follows t + 1 tokens: 2 (p=.7), 1 (p=.6), 0 = EOS (p=.5), then padding.
  np.testing.assert_array_equal(out.sequences, [[2, 1, 0, 0], [2, 1, 0, 0]])
  np.testing.assert_array_equal(out.lengths, [3, 3])
  np.testing.assert_array_equal(out.finished, [True, True])
  np.testing.assert_allclose(out.log_probs, np.log([0.21, 0.21]), atol=1e-6)
  no_eos = decoding.greedy(stub, prompt, empty_cache(2), max_new_tokens=4)
  np.testing.assert_array_equal(no_eos.sequences, [[2, 1, 0, 2]] * 2)
  np.testing.assert_array_equal(no_eos.lengths, [4, 4])
  np.testing.assert_array_equal(no_eos.finished, [False, False])


PROBS = np.array([[0.5, 0.3, 0.15, 0.05]])


@pytest.mark.parametrize("kwargs,kept", [
    (dict(top_p=0.8), [1, 1, 0, 0]),
    (dict(top_p=0.5), [1, 0, 0, 0]),
    (dict(top_p=0.81), [1, 1, 1, 0]),
    (dict(top_p=0.96), [1, 1, 1, 1]),
    (dict(top_p=1e-3), [1, 0, 0, 0]),
    (dict(top_k=2), [1, 1, 0, 0]),
    (dict(top_k=1), [1, 0, 0, 0]),
    (dict(top_k=3, top_p=0.8), [1, 1, 0, 0]),  # 0.5 / 0.95 < 0.8 <= 0.8 / 0.95
    (dict(top_k=3, top_p=0.85), [1, 1, 1, 0]),  # 0.8 / 0.95 = 0.842 < 0.85
    (dict(temperature=0.0), [1, 0, 0, 0]),
    (dict(temperature=0.5, top_p=0.9), [1, 1, 0, 0]),  # tempered: .70, .25, .06, .007
])
def test_filter_logits_boundaries(kwargs, kept):
  logits = jnp.log(jnp.asarray(PROBS[:, [2, 0, 3, 1]], jnp.float32))  # shuffled vocab order
  filtered = np.asarray(decoding.filter_logits(logits, **kwargs))[0][[1, 3, 0, 2]]
  np.testing.assert_array_equal(np.isfinite(filtered), np.array(kept, bool))
  temperature = kwargs.get("temperature", 1.0)
  if temperature > 0:
    np.testing.assert_allclose(filtered[np.array(kept, bool)],
                               np.log(PROBS[0])[np.array(kept, bool)] / temperature, rtol=1e-6)


def test_top_k_keeps_exactly_k_among_ties():
  filtered = decoding.filter_logits(jnp.zeros((1, 5)), top_k=2)
  np.testing.assert_array_equal(np.isfinite(filtered), [[True, True, False, False, False]])


def numpy_filtered_probs(logits, temperature, top_k, top_p):
  """Independent float64 oracle of the sampling distribution of one step."""
  order = np.argsort(-logits, kind="stable")
  z = logits[order] / temperature
  if top_k > 0:
    z[top_k:] = -np.inf
  p = np.exp(z - z.max())
  p /= p.sum()
  if top_p < 1:
    keep = np.cumsum(p) - p < top_p
    keep[0] = True
    p = np.where(keep, p, 0.0)
    p /= p.sum()
  out = np.zeros_like(p)
  out[order] = p
  return out


@functools.lru_cache(maxsize=None)
def jitted_sampler(vocab, steps):

  @jax.jit
  def run(seed, prompt, rng, temperature, top_k, top_p):
    return decoding.sample(make_stub(vocab, seed), prompt, empty_cache(prompt.shape[0]), rng,
                           max_new_tokens=steps, temperature=temperature, top_k=top_k,
                           top_p=top_p)

  return run


@pytest.mark.parametrize("seed,temperature,top_k,top_p", [
    (0, 1.0, 0, 1.0), (1, 0.7, 3, 0.9), (2, 1.5, 0, 0.7), (3, 1.0, 2, 1.0)])
def test_sample_sequence_distribution_chi_square(seed, temperature, top_k, top_p):
  vocab, steps, num = 4, 3, 40000
  sampler = jitted_sampler(vocab, steps)
  prompt = np.full((num, 2), seed % vocab, np.int32)
  out = sampler(seed, prompt, jax.random.key(seed), temperature, top_k, top_p)
  conts, log_probs = all_log_probs(functools.partial(stub_full_logits, vocab, seed), prompt[0],
                                   vocab, steps)
  expected = np.ones(len(conts))
  for i, (cont, lp) in enumerate(zip(conts, log_probs)):
    for t in range(steps):
      expected[i] *= numpy_filtered_probs(lp[t], temperature, top_k, top_p)[cont[t]]
  index = np.asarray(out.sequences) @ (vocab ** np.arange(steps)[::-1])
  observed = np.bincount(index, minlength=len(conts))
  assert observed[expected == 0].sum() == 0  # filtered sequences never appear
  expected_counts = expected * num
  big = expected_counts >= 5  # pool small cells so the chi-square approximation holds
  f_obs = np.append(observed[big], observed[~big].sum())
  f_exp = np.append(expected_counts[big], expected_counts[~big].sum())
  if f_exp[-1] == 0:
    f_obs, f_exp = f_obs[:-1], f_exp[:-1]
  assert stats.chisquare(f_obs, f_exp).pvalue > 1e-3


def test_sample_runtime_settings_do_not_retrace_and_temperature_zero_is_greedy():
  vocab, steps, batch = 5, 4, 6
  stub = make_stub(vocab, 7)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def sampler(prompt, rng, temperature, top_k, top_p):
    return decoding.sample(stub, prompt, empty_cache(batch), rng, max_new_tokens=steps,
                           temperature=temperature, top_k=top_k, top_p=top_p)

  chex.clear_trace_counter()
  prompt = np.random.default_rng(0).integers(0, vocab, (batch, 2)).astype(np.int32)
  rng = jax.random.key(0)
  greedy = jax.jit(lambda p: decoding.greedy(stub, p, empty_cache(batch), max_new_tokens=steps))(
      prompt)
  settings = [(0.0, 0, 1.0), (1.3, 2, 0.9), (0.0, 3, 0.5), (2.0, 0, 1.0), (2.0, 1, 1.0)]
  for temperature, top_k, top_p in settings:
    out = sampler(prompt, rng, temperature, top_k, top_p)
    if temperature == 0.0 or top_k == 1:
      np.testing.assert_array_equal(out.sequences, greedy.sequences)
      np.testing.assert_allclose(out.log_probs, greedy.log_probs, atol=1e-6)
    else:
      assert np.any(out.sequences != greedy.sequences)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def per_example_sampler(rng, temperature, top_k, top_p):
    return decoding.sample(stub, prompt, empty_cache(batch), rng, max_new_tokens=steps,
                           temperature=temperature, top_k=top_k, top_p=top_p)

  # One setting per example: rows 0-2 are greedy in three ways; rows 3-5 sample freely.
  temperature = jnp.array([0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
  top_k = jnp.array([0, 1, 0, 0, 0, 0])
  top_p = jnp.array([1.0, 1.0, 1e-3, 1.0, 1.0, 1.0])
  mixed = [per_example_sampler(jax.random.key(i), temperature, top_k, top_p) for i in range(8)]
  for out in mixed:
    np.testing.assert_array_equal(out.sequences[:3], greedy.sequences[:3])
  assert len({tuple(np.asarray(out.sequences[3:]).ravel()) for out in mixed}) > 1


def test_sample_keys_are_independent_per_example():
  # 64 identical nearly-uniform rows over 64 possible sequences: shared keys would give one
  # sequence; independent draws give about 64 * (1 - (63/64) ** 64) = 40 distinct ones.
  stub = make_stub(4, 0, scale=0.05)
  sampler = jax.jit(lambda rng: decoding.sample(stub, jnp.zeros((64, 1), jnp.int32),
                                                empty_cache(64), rng, max_new_tokens=3))
  out = sampler(jax.random.key(3))
  assert len({tuple(row) for row in np.asarray(out.sequences)}) > 30
  np.testing.assert_array_equal(out.sequences, sampler(jax.random.key(3)).sequences)
  assert np.any(out.sequences != sampler(jax.random.key(4)).sequences)


def test_transformer_decoders_match_uncached_oracles():
  vocab, max_len, steps = 4, 8, 3
  model = Transformer(vocab_size=vocab, num_layers=2, num_heads=4, d_model=32, d_ff=64,
                      max_len=max_len, positions="rope", tie_embeddings=False)
  params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, max_len), jnp.int32))["params"]
  prompt = np.array([[1, 3, 2], [0, 0, 1]], np.int32)
  tokens_to_logits = decoding.make_tokens_to_logits(model, params)

  @jax.jit
  def decode(prompt):
    cache = decoding.init_cache(model, prompt.shape[0])
    return (decoding.greedy(tokens_to_logits, prompt, cache, max_new_tokens=steps),
            decoding.beam_search(tokens_to_logits, prompt, cache, beam_size=9,
                                 max_new_tokens=steps, eos_id=0, num_return=3))

  greedy, beams = decode(prompt)
  # Greedy oracle: argmax of repeated full forward passes over the growing prefix.
  full_pass = jax.jit(lambda tokens: model.apply({"params": params}, tokens))
  tokens = prompt
  for _ in range(steps):
    logits = full_pass(jnp.asarray(tokens))
    tokens = np.concatenate([tokens, np.argmax(logits[:, -1:], -1)], axis=1)
  np.testing.assert_array_equal(greedy.sequences, tokens[:, prompt.shape[1]:])
  for b in range(2):
    seqs, scores, _ = brute_force_beams(full_pass, prompt[b], vocab, steps, 0, 0.0, 3)
    np.testing.assert_array_equal(beams.sequences[b], seqs)
    np.testing.assert_allclose(beams.scores[b], scores, atol=1e-5)


def test_init_cache_matches_model_init():
  model = Transformer(vocab_size=7, num_layers=2, num_heads=2, d_model=16, d_ff=32, max_len=8)
  cache = decoding.init_cache(model, 3)
  init = jax.jit(lambda tokens: model.init(jax.random.key(0), tokens, decode=True)["cache"])
  reference = init(jnp.zeros((3, 8), jnp.int32))
  chex.assert_trees_all_equal(cache, reference)


def constant_logits_stub(rows):
  """`tokens_to_logits` whose logits are `rows[b]` at every position of example b.

  `rows` is `[batch, vocab]` (or `[vocab]` for every example), and may be traced.
  """
  rows = jnp.asarray(rows, jnp.float32)

  def tokens_to_logits(tokens, cache):
    table = rows if rows.ndim == 2 else jnp.broadcast_to(rows, (tokens.shape[0],) + rows.shape)
    logits = jnp.broadcast_to(table[:, None, :], tokens.shape + table.shape[-1:])
    return logits, {"tokens": cache["tokens"], "index": cache["index"] + tokens.shape[1]}

  return tokens_to_logits


NEG_NAN = -np.float32(np.nan)  # a NaN with its sign bit set, as a model can produce
NEG_INF = -np.inf
# Rows of logits and the token every greedy path must pick. The documented rule is greedy's
# argmax: the largest logit, ties to the lower id. -0.0 == +0.0; a NaN counts as the largest
# value, as in jnp.argmax; the fourth column pads shorter rows with -inf, which never wins a tie.
TIE_ROWS = np.array([
    [-0.0, 0.0, -1.0, NEG_INF],
    [0.0, -0.0, -1.0, NEG_INF],
    [-1.0, 0.0, -0.0, NEG_INF],
    [-0.0, -1.0, 0.0, -0.0],
    [2.0, 5.0, 5.0, 5.0],
    [NEG_INF, NEG_INF, NEG_INF, NEG_INF],  # no token is possible: id 0, as argmax
    [NEG_INF, -3.0, NEG_INF, -3.0],
    [np.inf, np.inf, 0.0, NEG_INF],
    [1.0, np.nan, 2.0, NEG_INF],
    [1.0, NEG_NAN, 2.0, NEG_INF],
], np.float32)
TIE_EXPECTED = np.array([0, 0, 1, 0, 1, 0, 1, 0, 1, 1])
GREEDY_SETTINGS = [dict(temperature=0.0), dict(top_k=1), dict(top_p=1e-3),
                   dict(temperature=0.0, top_k=3, top_p=0.5)]


@jax.jit
def every_greedy_path(rows):
  """Greedy, the four greedy sampling settings, their filters and a beam of 1, on `rows`."""
  stub, batch = constant_logits_stub(rows), rows.shape[0]
  prompt = jnp.zeros((batch, 1), jnp.int32)
  greedy = decoding.greedy(stub, prompt, empty_cache(batch), max_new_tokens=2).sequences
  samples = [decoding.sample(stub, prompt, empty_cache(batch), jax.random.key(0),
                             max_new_tokens=2, **settings).sequences
             for settings in GREEDY_SETTINGS]
  filtered = [decoding.filter_logits(rows, **settings) for settings in GREEDY_SETTINGS]
  beams = decoding.beam_search(stub, prompt, empty_cache(batch), beam_size=1, max_new_tokens=2,
                               eos_id=None).sequences[:, 0]
  return greedy, samples, filtered, beams


def test_every_greedy_path_breaks_ties_to_the_lower_id():
  # Temperature 0, top_k = 1 and a tiny top_p are greedy too, and a beam of 1 keeps the most
  # likely token: each must pick the id that greedy picks, whatever the ties.
  greedy, samples, filtered, beams = jax.device_get(every_greedy_path(jnp.asarray(TIE_ROWS)))
  expected = np.repeat(TIE_EXPECTED[:, None], 2, axis=1)
  np.testing.assert_array_equal(greedy, expected)
  one_hot = np.arange(4)[None, :] == TIE_EXPECTED[:, None]
  readable = ~np.all(np.isneginf(TIE_ROWS), axis=1)  # in the all -inf row, every entry is -inf
  for settings, sampled, kept in zip(GREEDY_SETTINGS, samples, filtered):
    np.testing.assert_array_equal(sampled, expected, err_msg=str(settings))
    # The kept token reads finite, +inf or NaN; the others -inf.
    np.testing.assert_array_equal(~np.isneginf(kept[readable]), one_hot[readable],
                                  err_msg=str(settings))
  # A NaN logit makes every log-probability of its row NaN, so only the rows without one.
  np.testing.assert_array_equal(beams[:8], expected[:8])


def test_top_k_and_top_p_keep_the_lower_ids_among_signed_zero_ties():
  logits = jnp.asarray([[-0.0, 0.0, -0.0, 0.0, -1.0]])
  # Probabilities .2437 for each zero: top_p = 0.4 needs two of them, the two lowest ids.
  top_k, top_p = jax.jit(lambda x: (decoding.filter_logits(x, top_k=3),
                                    decoding.filter_logits(x, top_p=0.4)))(logits)
  np.testing.assert_array_equal(np.isfinite(top_k), [[True, True, True, False, False]])
  np.testing.assert_array_equal(np.isfinite(top_p), [[True, True, False, False, False]])


def test_beam_search_ties_go_to_the_lower_ids():
  # Uniform logits: every sequence of a length has the same score. Alive ties keep the lower
  # parent beam, then the lower token; finished ties keep the earlier candidate.
  search = jax.jit(lambda row, beam_size, eos_id: decoding.beam_search(
      constant_logits_stub(row), jnp.zeros((1, 1), jnp.int32), empty_cache(1),
      beam_size=beam_size, max_new_tokens=2, eos_id=eos_id), static_argnums=(1, 2))
  out = search(np.zeros(3, np.float32), 3, None)
  np.testing.assert_array_equal(out.sequences, [[[0, 0], [0, 1], [0, 2]]])
  out = search(np.array([-0.0, 0.0, -0.0], np.float32), 2, 2)
  # [EOS] (p = 1/3) first; then, of the equal length-2 sequences (p = 1/9), the EOS
  # continuation of the lower beam, which is a candidate before the length-limited ones.
  np.testing.assert_array_equal(out.sequences, [[[2, 0], [0, 2]]])
  np.testing.assert_array_equal(out.lengths, [[1, 2]])


def test_beam_search_drops_a_beam_whose_logits_are_all_minus_infinity():
  # After token 1 the model allows no token (every logit -inf): those continuations have
  # probability 0 and must rank below the possible ones. jax.nn.log_softmax makes them NaN,
  # which lax.top_k ranks first or last by the NaN's sign bit (and `_top_k` first).
  row = jnp.array([0.0, 0.1])

  def stub(tokens, cache):
    logits = jnp.where(tokens[:, :, None] == 1, -jnp.inf, row)  # [batch, length, 2]
    return logits, {"tokens": cache["tokens"], "index": cache["index"] + tokens.shape[1]}

  out = jax.jit(lambda p: decoding.beam_search(stub, p, empty_cache(1), beam_size=2,
                                               max_new_tokens=2, eos_id=None))(
                                                   jnp.zeros((1, 1), jnp.int32))
  log_p = np.log(np.exp([0.0, 0.1]) / np.exp([0.0, 0.1]).sum())  # [-0.744, -0.644]
  np.testing.assert_array_equal(out.sequences, [[[0, 1], [0, 0]]])
  np.testing.assert_allclose(out.scores, [[log_p[0] + log_p[1], 2 * log_p[0]]], atol=1e-6)
  np.testing.assert_array_equal(out.finished, [[True, True]])


def test_tokens_tied_at_positive_infinity_share_the_probability():
  # softmax([inf, inf, 0]) is (1/2, 1/2, 0) in the limit; a plain softmax gives NaN.
  stub = constant_logits_stub(np.array([np.inf, np.inf, 0.0], np.float32))
  num = 4000
  out = jax.jit(lambda rng: decoding.sample(stub, jnp.zeros((num, 1), jnp.int32),
                                            empty_cache(num), rng, max_new_tokens=1))(
                                                jax.random.key(0))
  counts = np.bincount(np.asarray(out.sequences[:, 0]), minlength=3)
  assert counts[2] == 0
  assert stats.binomtest(int(counts[0]), num, 0.5).pvalue > 1e-3
  np.testing.assert_allclose(out.log_probs, np.log(0.5), atol=1e-6)


def test_beams_and_greedy_continue_the_tokens_tied_at_positive_infinity():
  # The first new token has logit +inf at ids 1 and 3, the second at ids 0 and 2 (the others
  # finite or -inf). In the limit each step gives probability 1/2 to each of its two +inf ids
  # and 0 to the rest, so exactly four sequences are possible, each with log-probability
  # 2 log(1/2); a plain log-softmax gives NaN (inf - inf) and ranks them arbitrarily.
  table = jnp.array([[0.0, np.inf, 5.0, np.inf, -np.inf],
                     [np.inf, -1.0, np.inf, 3.0, 0.0]], jnp.float32)

  def stub(tokens, cache):
    # Row t at the one-token prompt's position t: the logits of new token t.
    positions = cache["index"] + jnp.arange(tokens.shape[1])
    logits = jnp.broadcast_to(table[positions], tokens.shape + (5,))
    return logits, {"tokens": cache["tokens"], "index": cache["index"] + tokens.shape[1]}

  prompt = jnp.zeros((1, 1), jnp.int32)
  beams, greedy = jax.jit(lambda p: (
      decoding.beam_search(stub, p, empty_cache(1), beam_size=5, max_new_tokens=2, eos_id=None,
                           length_penalty=0.6),
      decoding.greedy(stub, p, empty_cache(1), max_new_tokens=2)))(prompt)
  # Equal scores: the lower parent beam, then the lower token, first; a fifth sequence has
  # probability 0 (score -inf), so its slot is a placeholder.
  np.testing.assert_array_equal(beams.sequences[0, :4], [[1, 0], [1, 2], [3, 0], [3, 2]])
  np.testing.assert_allclose(beams.log_probs[0, :4], [2 * np.log(0.5)] * 4, atol=1e-6)
  penalty = ((5.0 + 2) / 6.0) ** 0.6  # GNMT, two generated tokens
  np.testing.assert_allclose(beams.scores[0, :4], [2 * np.log(0.5) / penalty] * 4, atol=1e-6)
  np.testing.assert_array_equal(beams.finished, [[True] * 4 + [False]])
  assert beams.scores[0, 4] == -np.inf
  # Greedy takes the lower of the tied ids at each step.
  np.testing.assert_array_equal(greedy.sequences, [[1, 0]])
  np.testing.assert_allclose(greedy.log_probs, [2 * np.log(0.5)], atol=1e-6)


@pytest.mark.parametrize("kwargs,message", [
    (dict(temperature=-0.5), "temperature must be a finite number >= 0 .*, got -0.5"),
    (dict(temperature=float("nan")), "temperature must be a finite number >= 0 .*, got nan"),
    (dict(temperature=float("inf")), "temperature must be a finite number >= 0 .*, got inf"),
    (dict(temperature=np.array([1.0, -1.0, -2.0])), r"temperature .*, got -1.0 \(and 1 more"),
    (dict(top_k=-1), "top_k must be"),
    (dict(top_k=1.5), "top_k must be"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(top_p=float("nan")), r"top_p must be in \(0, 1\]"),
    (dict(eos_id=3), r"eos_id=3 is outside the vocabulary \[0, 3\)"),
    (dict(eos_id=-1), r"eos_id=-1 is outside the vocabulary \[0, 3\)"),
])
def test_sample_refuses_invalid_concrete_settings(kwargs, message):
  stub = constant_logits_stub(np.zeros(3, np.float32))
  prompt = jnp.zeros((3, 1), jnp.int32)
  with pytest.raises(ValueError, match=message):
    decoding.sample(stub, prompt, empty_cache(3), jax.random.key(0), max_new_tokens=2, **kwargs)
  if "eos_id" in kwargs:
    with pytest.raises(ValueError, match=message):
      decoding.greedy(stub, prompt, empty_cache(3), max_new_tokens=2, **kwargs)
    with pytest.raises(ValueError, match=message):
      decoding.beam_search(stub, prompt, empty_cache(3), beam_size=2, max_new_tokens=2,
                           **kwargs)
  else:
    with pytest.raises(ValueError, match=message):
      decoding.filter_logits(jnp.zeros((3, 3)), **kwargs)


def test_beam_search_refuses_invalid_beam_size_and_length_penalty():
  stub = constant_logits_stub(np.zeros(3, np.float32))
  prompt = jnp.zeros((1, 1), jnp.int32)
  with pytest.raises(ValueError, match="beam_size must be >= 1, got 0"):
    decoding.beam_search(stub, prompt, empty_cache(1), beam_size=0, max_new_tokens=2, eos_id=0)
  with pytest.raises(ValueError, match="length_penalty must be a finite number, got nan"):
    decoding.beam_search(stub, prompt, empty_cache(1), beam_size=2, max_new_tokens=2, eos_id=0,
                         length_penalty=float("nan"))


def test_an_empty_prompt_is_refused_by_every_decoder():
  stub = constant_logits_stub(np.zeros(3, np.float32))
  empty = jnp.zeros((2, 0), jnp.int32)
  message = r"prompt must be token ids \[batch, prompt_len\] with prompt_len >= 1, got shape"
  with pytest.raises(ValueError, match=message):
    decoding.greedy(stub, empty, empty_cache(2), max_new_tokens=2)
  with pytest.raises(ValueError, match=message):
    decoding.sample(stub, empty, empty_cache(2), jax.random.key(0), max_new_tokens=2)
  with pytest.raises(ValueError, match=message):
    decoding.beam_search(stub, empty, empty_cache(2), beam_size=2, max_new_tokens=2, eos_id=0)


@pytest.mark.parametrize("decoder", ["greedy", "sample", "beam_search"])
@pytest.mark.parametrize("prompt", [jnp.array([[1.0, 2.0]]), np.array([[1.5, 0.0]]),
                                    jnp.array([[True, False]])])
def test_a_prompt_of_a_non_integer_dtype_is_refused_by_every_decoder(decoder, prompt):
  # The oracle: token ids are integers, so a float prompt (even whole: 1.0) or a bool one is
  # no prompt; a Flax embedding would say only "Input type must be an integer". The dtype is
  # known also when the prompt is traced, so jit refuses it too.
  model, tokens_to_logits = tiny_transformer("learned")
  run = {
      "greedy": lambda p: decoding.greedy(tokens_to_logits, p, decoding.init_cache(model, 1),
                                          max_new_tokens=2),
      "sample": lambda p: decoding.sample(tokens_to_logits, p, decoding.init_cache(model, 1),
                                          jax.random.key(0), max_new_tokens=2),
      "beam_search": lambda p: decoding.beam_search(tokens_to_logits, p,
                                                    decoding.init_cache(model, 1), beam_size=2,
                                                    max_new_tokens=2, eos_id=None),
  }[decoder]
  message = (r"prompt must be integer token ids, got dtype {}: pass ints "
             r"\(e.g. jnp.asarray\(ids, jnp.int32\); encode text with the model's codec")
  with pytest.raises(ValueError, match=message.format(prompt.dtype)):
    run(prompt)
  with pytest.raises(ValueError, match=message.format(jnp.asarray(prompt).dtype)):
    jax.jit(run)(prompt)  # (jit reads NumPy's float64 as float32 without jax_enable_x64)
  assert run(jnp.array([[1, 0]], jnp.uint8)).sequences.shape[-1] == 2  # any integer dtype


@pytest.mark.parametrize("decoder", ["greedy", "sample", "beam_search"])
@pytest.mark.parametrize("bad_id", [3, -1])
def test_prompt_ids_outside_the_vocabulary_are_refused(decoder, bad_id):
  # The logits have vocabulary 3, so only ids 0, 1, 2 exist; a model would embed another id
  # as NaN and decode garbage. The first bad id is named with its row and position.
  stub = constant_logits_stub(np.zeros(3, np.float32))
  run = {
      "greedy": lambda p: decoding.greedy(stub, p, empty_cache(2), max_new_tokens=2),
      "sample": lambda p: decoding.sample(stub, p, empty_cache(2), jax.random.key(0),
                                          max_new_tokens=2),
      "beam_search": lambda p: decoding.beam_search(stub, p, empty_cache(2), beam_size=2,
                                                    max_new_tokens=2, eos_id=None),
  }[decoder]
  assert run(jnp.array([[0, 2], [1, 2]])).sequences.shape[-1] == 2  # the edges are in
  prompt = jnp.array([[0, 2], [bad_id, 4]])
  message = (rf"token id {bad_id} at row 1, position 0 \(and 1 more\), outside the vocabulary "
             r"\[0, 3\) of the logits: pass ids below 3")
  with pytest.raises(ValueError, match=message):
    run(prompt)
  with pytest.raises(ValueError, match=message):  # a concrete prompt closed over by jit too
    jax.jit(lambda: run(prompt))()
  jax.jit(run)(prompt)  # traced: cannot be checked


@pytest.mark.parametrize("decoder", ["greedy", "sample", "beam_search"])
def test_a_cache_padding_as_wide_as_the_prompt_is_refused(decoder):
  # left_pad never pads a row to the full width; a padding of 2 on a 2-token prompt leaves row
  # 1 no real token to attend to. A negative padding (a hand-made cache) is refused as well.
  model, tokens_to_logits = tiny_transformer("learned")
  prompt = jnp.array([[1, 2], [3, 4]])
  run = {
      "greedy": lambda cache: decoding.greedy(tokens_to_logits, prompt, cache, max_new_tokens=2),
      "sample": lambda cache: decoding.sample(tokens_to_logits, prompt, cache, jax.random.key(0),
                                              max_new_tokens=2),
      "beam_search": lambda cache: decoding.beam_search(tokens_to_logits, prompt, cache,
                                                        beam_size=2, max_new_tokens=2,
                                                        eos_id=None),
  }[decoder]
  with pytest.raises(ValueError, match=r"The cache pads row 1 with 2 tokens, but the prompt is 2 "
                                       r"tokens wide: .* \[0, 2\) .* decoding.left_pad"):
    run(decoding.init_cache(model, 2, [0, 2]))
  cache = decoding.init_cache(model, 2)
  cache["decoder"]["padding"] = jnp.array([-1, 0], jnp.int32)
  with pytest.raises(ValueError, match="The cache pads row 0 with -1 tokens"):
    run(cache)


def test_settings_traced_under_jit_are_not_checked():
  # Traced values cannot be checked: a negative temperature is greedy, as temperature 0.
  stub = constant_logits_stub(np.array([[0.5, 2.0, 1.0], [3.0, 0.0, 1.0]], np.float32))
  prompt = jnp.zeros((2, 1), jnp.int32)
  run = jax.jit(lambda t, k, p: decoding.sample(stub, prompt, empty_cache(2), jax.random.key(0),
                                                max_new_tokens=3, temperature=t, top_k=k,
                                                top_p=p))
  np.testing.assert_array_equal(run(-1.0, 0, 1.0).sequences, [[1, 1, 1], [0, 0, 0]])
  np.testing.assert_array_equal(run(1.0, -2, 1.0).sequences.shape, (2, 3))


def test_filter_keeps_the_tokens_of_a_sorting_oracle_on_tied_logits():
  # The cut-offs are found by bisection over integer keys, never by a sort: a float64 oracle
  # that sorts (stably, so ties go to the lower id) must keep the same tokens, row by row, for
  # per-row settings, on logits with many ties.
  rng = np.random.default_rng(0)
  rows, vocab = 96, 50
  logits = rng.integers(-3, 4, size=(rows, vocab)).astype(np.float32)
  temperature = rng.choice([0.5, 1.0, 2.0], rows).astype(np.float32)
  top_k = rng.choice([0, 1, 3, 7, 50, 60], rows).astype(np.int32)
  top_p = np.where(rng.random(rows) < 0.3, 1.0, rng.uniform(0.05, 1.0, rows)).astype(np.float32)
  kept = np.isfinite(np.asarray(decoding.filter_logits(
      jnp.asarray(logits), temperature=temperature, top_k=top_k, top_p=top_p)))
  for row in range(rows):
    oracle = numpy_filtered_probs(logits[row].astype(np.float64), float(temperature[row]),
                                  int(top_k[row]), float(top_p[row])) > 0
    np.testing.assert_array_equal(kept[row], oracle, err_msg=f"row {row}")
  assert 0 < kept.sum() < kept.size  # the settings do cut


RAGGED_PROMPTS = [[5, 6], [1, 2, 3, 4, 7], [9]]


@functools.lru_cache(maxsize=None)
def tiny_transformer(positions):
  """(model, tokens_to_logits) of a small random transformer, shared by the tests."""
  model = Transformer(vocab_size=11, num_layers=2, num_heads=2, d_model=16, d_ff=32, max_len=10,
                      positions=positions)
  params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 10), jnp.int32))["params"]
  return model, decoding.make_tokens_to_logits(model, params)


@pytest.mark.parametrize("positions", ["learned", "rope"])
@pytest.mark.parametrize("decoder", ["greedy", "sample", "beam_search"])
def test_each_row_of_a_ragged_batch_decodes_as_its_prompt_alone(positions, decoder):
  # Left padding is hidden from every query and positions count from each row's first token,
  # so a row of the batch sees exactly what its prompt alone sees: the same tokens and scores.
  # Jitted: one compilation per prompt shape (the padded and unpadded batches share one, the
  # padding being an array of the cache), where each eager call compiles its scan anew.
  model, tokens_to_logits = tiny_transformer(positions)
  keys = jax.random.split(jax.random.key(3), len(RAGGED_PROMPTS))
  run = jax.jit({
      "greedy": lambda prompt, cache, keys: decoding.greedy(
          tokens_to_logits, prompt, cache, max_new_tokens=5, eos_id=1),
      "sample": lambda prompt, cache, keys: decoding.sample(
          tokens_to_logits, prompt, cache, keys, max_new_tokens=5, temperature=1.5, top_k=6,
          top_p=0.95, eos_id=1),
      "beam_search": lambda prompt, cache, keys: decoding.beam_search(
          tokens_to_logits, prompt, cache, beam_size=3, max_new_tokens=5, eos_id=1,
          length_penalty=0.6),
  }[decoder])
  prompt, padding = decoding.left_pad(RAGGED_PROMPTS)
  np.testing.assert_array_equal(padding, [3, 0, 4])
  batch = run(jnp.asarray(prompt), decoding.init_cache(model, 3, padding), keys)
  for row, alone_prompt in enumerate(RAGGED_PROMPTS):
    alone = run(jnp.asarray([alone_prompt]), decoding.init_cache(model, 1), keys[row:row + 1])
    np.testing.assert_array_equal(batch.sequences[row], alone.sequences[0])
    scores = batch.scores if decoder == "beam_search" else batch.log_probs
    alone_scores = alone.scores if decoder == "beam_search" else alone.log_probs
    np.testing.assert_allclose(scores[row], alone_scores[0], rtol=1e-5, atol=1e-6)
  # Without the padding in the cache, the padded rows see the pad tokens and change.
  unpadded = run(jnp.asarray(prompt), decoding.init_cache(model, 3), keys)
  assert not np.allclose(unpadded.log_probs if decoder != "beam_search" else unpadded.scores,
                         batch.log_probs if decoder != "beam_search" else batch.scores)


def test_sampling_with_one_key_uses_its_split_into_per_example_keys():
  stub = make_stub(5, 0)
  prompt = jnp.zeros((4, 1), jnp.int32)
  sample = lambda rng: decoding.sample(stub, prompt, empty_cache(4), rng, max_new_tokens=4)
  rng = jax.random.key(11)
  np.testing.assert_array_equal(sample(rng).sequences,
                                sample(jax.random.split(rng, 4)).sequences)
  with pytest.raises(ValueError, match="rng holds 3 keys for a batch of 4"):
    sample(jax.random.split(rng, 3))


@pytest.mark.parametrize("decoder", ["greedy", "sample", "beam_search"])
def test_raw_decoders_refuse_a_prompt_and_new_tokens_beyond_the_cache(decoder):
  # max_len 10: a 4-token prompt takes 7 new tokens (4 + 7 - 1 = 10 tokens fed), not 8.
  model, tokens_to_logits = tiny_transformer("rope")
  run = {
      "greedy": lambda n: decoding.greedy(tokens_to_logits, prompt, cache, max_new_tokens=n),
      "sample": lambda n: decoding.sample(tokens_to_logits, prompt, cache, jax.random.key(0),
                                          max_new_tokens=n),
      "beam_search": lambda n: decoding.beam_search(tokens_to_logits, prompt, cache,
                                                    beam_size=2, max_new_tokens=n, eos_id=1),
  }[decoder]
  prompt, cache = jnp.ones((2, 4), jnp.int32), decoding.init_cache(model, 2)
  assert run(7).sequences.shape[-1] == 7
  message = ("A prompt of 4 tokens and max_new_tokens=8 feed 11 tokens to a cache of max_len=10: "
             "lower max_new_tokens to 7")
  with pytest.raises(ValueError, match=message):
    run(8)
  with pytest.raises(ValueError, match=message):  # also when traced: shapes are static
    jax.jit(lambda: run(8))()


def test_left_pad_and_init_cache_refuse_what_they_cannot_pad():
  model, _ = tiny_transformer("learned")
  with pytest.raises(ValueError, match="every prompt non-empty, got lengths \\[2, 0\\]"):
    decoding.left_pad([[1, 2], []])
  with pytest.raises(ValueError, match="padding must be 3 non-negative ints"):
    decoding.init_cache(model, 3, [0, 1])
  with pytest.raises(ValueError, match="padding must be 2 non-negative ints"):
    decoding.init_cache(model, 2, [0, -1])
  # Padding counts token slots: a fraction, or a float even when whole, is no count.
  with pytest.raises(ValueError, match=r"got \[0.0, 1.5\] of dtype float64"):
    decoding.init_cache(model, 2, [0, 1.5])
  with pytest.raises(ValueError, match=r"got \[0.0, 1.0\] of dtype float32"):
    decoding.init_cache(model, 2, np.array([0, 1], np.float32))
  # max_len 10: the cache holds at most 9 padding slots and one token. Larger paddings are
  # refused before the int32 cast, which would wrap 2**32 + 1 to 1 (and uint64 2**63 to 0).
  for padding in ([0, 10], [0, 2**32 + 1], np.array([0, 2**63], np.uint64)):
    with pytest.raises(ValueError, match=r"padding must be 2 non-negative ints below the "
                                         r"model's max_len=10 .*, got \[0, \d+\]\.$"):
      decoding.init_cache(model, 2, padding)
  cache = decoding.init_cache(model, 2, [0, 9])
  np.testing.assert_array_equal(cache["decoder"]["padding"], [0, 9])
  cache = decoding.init_cache(model, 2, [0, 3])
  np.testing.assert_array_equal(cache["decoder"]["padding"], [0, 3])


def test_top_p_counts_a_mass_equal_to_it_up_to_rounding_as_reaching_it():
  # 0.77 + 0.14 is 0.91 exactly, but float32 sums it to just below 0.91: without the tolerance
  # the third token (0.09) would be kept too.
  probs = np.array([[0.09, 0.77, 0.14]], np.float32)
  assert np.float32(0.77) + np.float32(0.14) < np.float32(0.91)
  filtered = decoding.filter_logits(jnp.log(probs), top_p=0.91)
  np.testing.assert_array_equal(np.isfinite(filtered), [[False, True, True]])
