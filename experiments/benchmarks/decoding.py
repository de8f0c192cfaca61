"""Decoding speed: cached vs uncached sampling, beam search scaling, compile times.

    python experiments/benchmarks/decoding.py            # full run (about 10 minutes on 2 CPUs)
    python experiments/benchmarks/decoding.py --quick    # about a minute

Sampling generates `length - 1` tokens after a 1-token prompt with temperature 1, top-k 40 and
top-p 0.95 on a randomly initialised LM (4 layers, d_model 128, 4 heads, vocab 256, batch 8).
"Cached" is `gen_jax.sampling.decoding.sample` with the transformer's KV cache. "Uncached" is the
same sampler without a cache: a `lax.scan` over a fixed `[batch, length]` buffer that runs the
full forward pass over the whole buffer every step (causality makes the unwritten tail harmless)
and reads the logits at the current position. Beam search varies the batch, the beam size and the
number of new tokens around a base setting, one at a time.

Every number is the median wall time of `--repeats` runs (one for uncached sampling above 256
tokens) after one warm-up run, with `jax.block_until_ready`; compile time is
`jit(...).lower(...).compile()`. Each measurement is printed as a JSON line, then all of them as a
Markdown table (also written to `--table` if given).
"""

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
from jax import lax

from gen_jax.nn.transformer import Transformer
from gen_jax.sampling import decoding

VOCAB, TOP_K, TOP_P, TEMPERATURE = 256, 40, 0.95, 1.0


def make_model(max_len: int) -> Transformer:
  return Transformer(vocab_size=VOCAB, num_layers=4, num_heads=4, d_model=128, d_ff=512,
                     max_len=max_len, positions="rope")


def init_params(model: Transformer):
  dummy = jnp.zeros((1, model.max_len), jnp.int32)
  return jax.jit(model.init)(jax.random.key(0), dummy)["params"]


def make_cached_sampler(model: Transformer, batch: int):
  steps = model.max_len - 1

  def run(params, prompt, rng, temperature, top_k, top_p):
    cache = decoding.init_cache(model, batch)
    return decoding.sample(decoding.make_tokens_to_logits(model, params), prompt, cache, rng,
                           max_new_tokens=steps, temperature=temperature, top_k=top_k,
                           top_p=top_p).sequences

  return run


def make_uncached_sampler(model: Transformer, batch: int):
  length = model.max_len

  def run(params, prompt, rng, temperature, top_k, top_p):
    buffer = jnp.zeros((batch, length), jnp.int32).at[:, :1].set(prompt)

    def body(buffer, step):
      logits = model.apply({"params": params}, buffer)  # the whole buffer, every step
      logits = lax.dynamic_index_in_dim(logits, step, axis=1, keepdims=False)
      filtered = decoding.filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p)
      keys = jax.random.split(jax.random.fold_in(rng, step), batch)
      tokens = jax.vmap(jax.random.categorical)(keys, filtered).astype(jnp.int32)
      return lax.dynamic_update_slice(buffer, tokens[:, None], (0, step + 1)), None

    buffer, _ = lax.scan(body, buffer, jnp.arange(length - 1))
    return buffer[:, 1:]

  return run


def make_beam_search(model: Transformer, beam_size: int, max_new_tokens: int):

  def run(params, prompt):
    cache = decoding.init_cache(model, prompt.shape[0])
    return decoding.beam_search(decoding.make_tokens_to_logits(model, params), prompt, cache,
                                beam_size=beam_size, max_new_tokens=max_new_tokens, eos_id=1,
                                length_penalty=0.6).sequences

  return run


def measure(fn, args, repeats: int) -> dict:
  """Compile time, then the median of `repeats` timed runs after one warm-up run."""
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  compile_s = time.perf_counter() - start
  jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return {"compile_s": compile_s, "median_s": statistics.median(times), "repeats": repeats}


def emit(rows: list, row: dict):
  rows.append(row)
  print(json.dumps(row), flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="lengths 64 and 128 only, 2 repeats, a smaller beam grid")
  parser.add_argument("--lengths", type=int, nargs="+", default=None)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=None,
                      help="timed runs per measurement (default 3, 2 with --quick)")
  parser.add_argument("--uncached_max_length", type=int, default=512,
                      help="skip uncached sampling above this length (it is quadratic)")
  parser.add_argument("--skip_beam", action="store_true")
  parser.add_argument("--table", default=None, help="also write the Markdown table here")
  args = parser.parse_args()
  lengths = args.lengths or ([64, 128] if args.quick else [64, 128, 256, 512])
  repeats = args.repeats or (2 if args.quick else 3)
  rows, sampling = [], {}
  runtime = (jnp.float32(TEMPERATURE), jnp.int32(TOP_K), jnp.float32(TOP_P))

  for length in lengths:
    model = make_model(length)
    params = init_params(model)
    prompt = jnp.zeros((args.batch, 1), jnp.int32)
    sample_args = (params, prompt, jax.random.key(1)) + runtime
    kinds = [("cached", make_cached_sampler)]
    if length <= args.uncached_max_length:
      kinds.append(("uncached", make_uncached_sampler))
    for kind, make in kinds:
      # Uncached sampling is quadratic in the length: one timed run above 256 tokens.
      runs = 1 if kind == "uncached" and length > 256 else repeats
      result = measure(make(model, args.batch), sample_args, runs)
      tokens_per_s = args.batch * (length - 1) / result["median_s"]
      sampling[(length, kind)] = tokens_per_s
      emit(rows, {"bench": "sample", "kind": kind, "length": length, "batch": args.batch,
                  "tokens_per_s": round(tokens_per_s, 1), **_rounded(result)})

  if not args.skip_beam:
    base = dict(batch=4, beam=4, new_tokens=32 if args.quick else 64)
    grid = {"batch": [1, 4, 16], "beam": [1, 4, 8], "new_tokens": [16, 32, 64]}
    if not args.quick:
      grid = {"batch": [1, 4, 16], "beam": [1, 4, 8, 16], "new_tokens": [32, 64, 128]}
    settings = [dict(base)]
    for name, values in grid.items():
      settings += [dict(base, **{name: value}) for value in values if value != base[name]]
    for setting in settings:
      prompt_len = 8
      model = make_model(prompt_len + setting["new_tokens"])
      params = init_params(model)
      prompt = jax.random.randint(jax.random.key(2), (setting["batch"], prompt_len), 2, VOCAB)
      result = measure(make_beam_search(model, setting["beam"], setting["new_tokens"]),
                       (params, prompt), repeats)
      emit(rows, {"bench": "beam_search", **setting, "prompt_len": prompt_len,
                  "tokens_per_s": round(setting["batch"] * setting["new_tokens"]
                                        / result["median_s"], 1), **_rounded(result)})

  table = markdown(rows, sampling)
  print(table)
  if args.table:
    with open(args.table, "w") as f:
      f.write(table + "\n")


def _rounded(result: dict) -> dict:
  return {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}


def markdown(rows: list, sampling: dict) -> str:
  device = jax.devices()[0]
  lines = [f"Device: {device.platform} ({device.device_kind}), jax {jax.__version__}", "",
           "| sampling length | cached tok/s | uncached tok/s | speed-up | cached compile s |"
           " uncached compile s |", "|---|---|---|---|---|---|"]
  compile_s = {(r["length"], r["kind"]): r["compile_s"] for r in rows if r["bench"] == "sample"}
  for length in sorted({length for length, _ in sampling}):
    cached, uncached = sampling.get((length, "cached")), sampling.get((length, "uncached"))
    ratio = f"{cached / uncached:.1f}x" if cached and uncached else "-"
    lines.append(f"| {length} | {cached:.0f} | " + (f"{uncached:.0f}" if uncached else "-")
                 + f" | {ratio} | {compile_s[(length, 'cached')]:.2f} | "
                 + (f"{compile_s[(length, 'uncached')]:.2f}" if uncached else "-") + " |")
  beams = [r for r in rows if r["bench"] == "beam_search"]
  if beams:
    lines += ["", "| beam search: batch | beam | new tokens | time s | tok/s (batch x new) |"
              " compile s |", "|---|---|---|---|---|---|"]
    for r in beams:
      lines.append(f"| {r['batch']} | {r['beam']} | {r['new_tokens']} | {r['median_s']:.3f} | "
                   f"{r['tokens_per_s']:.0f} | {r['compile_s']:.2f} |")
  return "\n".join(lines)


if __name__ == "__main__":
  main()
