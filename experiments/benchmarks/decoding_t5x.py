"""Sampling speed against t5x's decoder, side by side on one model: greedy, temperature, top-k, top-p.

    git clone https://github.com/google-research/t5x /tmp/t5x     # only two of its files are used
    python experiments/benchmarks/decoding_t5x.py --t5x_dir /tmp/t5x
    python experiments/benchmarks/decoding_t5x.py --t5x_dir /tmp/t5x --quick   # about 2 minutes

Both decoders drive the same randomly initialised transformer (4 layers, d_model 128, 4 heads,
rotary positions) through its KV cache and generate `--length` tokens after one start token, for
each vocabulary size and batch size. gen_jax's `greedy` / `sample` take temperature, top-k and
top-p as runtime arrays (one compiled program for every setting); t5x's `temperature_sample`
(imported from `t5x/decoding.py` and `t5x/binary_search.py` of the clone) gets top-k and top-p as
Python numbers, so it compiles one program per setting, and its EOS is an id that never occurs,
so both run every step. t5x's top-k keeps every token tied with the k-th; gen_jax keeps exactly k.

Each row is the median wall time of `--repeats` calls of each decoder, the two calls alternating so
that both see the same machine load, after one warm-up call each; `ratio` is gen_jax's median over
t5x's. Rows print as JSON lines, then as a Markdown table (also written to `--out/table.md`).
"""

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import common
from gen_jax.nn.transformer import Transformer
from gen_jax.sampling import decoding

# name -> (temperature, top_k, top_p) for gen_jax; t5x takes top_p = 0 for "off".
SETTINGS = {"greedy": (0.0, 0, 1.0), "temperature 1": (1.0, 0, 1.0),
            "top-k 40": (1.0, 40, 1.0), "top-p 0.9": (1.0, 0, 0.9)}


def import_t5x(t5x_dir: str):
  if not (Path(t5x_dir) / "t5x" / "decoding.py").is_file():
    sys.exit(f"--t5x_dir {t5x_dir!r} has no t5x/decoding.py: clone "
             "https://github.com/google-research/t5x and pass the clone's folder.")
  sys.path.insert(0, str(Path(t5x_dir).resolve()))
  return importlib.import_module("t5x.decoding")


def make_decoders(t5x_decoding, model: Transformer, batch: int, length: int, setting: str):
  """`(ours, theirs)`, each `f(params, rng) -> [batch, length]` tokens, unjitted."""
  temperature, top_k, top_p = SETTINGS[setting]
  runtime = (jnp.float32(temperature), jnp.int32(top_k), jnp.float32(top_p))

  def ours(params, rng):
    cache = decoding.init_cache(model, batch)
    tokens_to_logits = decoding.make_tokens_to_logits(model, params)
    prompt = jnp.zeros((batch, 1), jnp.int32)
    if setting == "greedy":
      return decoding.greedy(tokens_to_logits, prompt, cache, max_new_tokens=length).sequences
    return decoding.sample(tokens_to_logits, prompt, cache, rng, max_new_tokens=length,
                           temperature=runtime[0], top_k=runtime[1], top_p=runtime[2]).sequences

  def theirs(params, rng):
    def tokens_to_logits(state):
      logits, variables = model.apply({"params": params, "cache": state.cache}, state.cur_token,
                                      decode=True, mutable=["cache"])
      return logits[:, -1], variables["cache"]

    sequences, _ = t5x_decoding.temperature_sample(
        jnp.zeros((batch, length), jnp.int32), decoding.init_cache(model, batch), tokens_to_logits,
        eos_id=-1, decode_rng=rng, temperature=temperature, topk=top_k,
        topp=0.0 if top_p >= 1 else top_p)
    return sequences

  return ours, theirs


def time_side_by_side(fns: dict, args: tuple, repeats: int) -> dict:
  compiled = {name: jax.jit(fn).lower(*args).compile() for name, fn in fns.items()}
  for fn in compiled.values():
    jax.block_until_ready(fn(*args))
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in compiled.items():
      start = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--t5x_dir", required=True, help="a clone of google-research/t5x")
  parser.add_argument("--quick", action="store_true", help="vocabularies 256 and 32,768 only")
  parser.add_argument("--vocabs", type=int, nargs="+", default=None)
  parser.add_argument("--batches", type=int, nargs="+", default=[8, 32])
  parser.add_argument("--length", type=int, default=64, help="generated tokens")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", default="/tmp/gen_jax_bench/decoding_t5x")
  args = parser.parse_args()
  vocabs = args.vocabs or ([256, 32768] if args.quick else [256, 2048, 8192, 32768])
  t5x_decoding = import_t5x(args.t5x_dir)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  rows = common.Rows()

  for vocab in vocabs:
    model = Transformer(vocab_size=vocab, num_layers=4, num_heads=4, d_model=128, d_ff=512,
                        max_len=args.length, positions="rope")
    params = jax.jit(model.init)(jax.random.key(0),
                                 jnp.zeros((1, args.length), jnp.int32))["params"]
    for batch in args.batches:
      for setting in SETTINGS:
        ours, theirs = make_decoders(t5x_decoding, model, batch, args.length, setting)
        median = time_side_by_side({"gen_jax": ours, "t5x": theirs},
                                   (params, jax.random.key(1)), args.repeats)
        rows.emit({"vocab": vocab, "batch": batch, "setting": setting,
                   "gen_jax_ms": round(1e3 * median["gen_jax"], 2),
                   "t5x_ms": round(1e3 * median["t5x"], 2),
                   "ratio": round(median["gen_jax"] / median["t5x"], 3)})

  device = jax.devices()[0]
  lines = ["| vocab | batch | setting | gen_jax ms | t5x ms | gen_jax / t5x |",
           "|---|---|---|---|---|---|"]
  lines += [f"| {r['vocab']:,} | {r['batch']} | {r['setting']} | {r['gen_jax_ms']:.1f} | "
            f"{r['t5x_ms']:.1f} | {r['ratio']:.2f} |" for r in rows]
  common.write_table(out, lines, f"{args.length} tokens per row; medians of {args.repeats} "
                     f"alternating calls; {device.platform} ({device.device_kind}), "
                     f"jax {jax.__version__}.")


if __name__ == "__main__":
  main()
