"""Bits per byte of the byte-level language model on the whole held-out `python_source` split,
against xz computed in the same run, and the training step's speed against plain `jnp.dot`.

    python experiments/benchmarks/lm_python.py [--steps 5000] [--workdir runs/bench_lm_python]
        [--set optim.learning_rate=4e-3 --set model.positions=learned ...] [--evals 6]
    python experiments/benchmarks/lm_python.py --score WORKDIR [WORKDIR ...]

Baselines (LZMA preset 9 | EXTREME, i.e. `xz -9e`):
  unconditioned: 8 * |xz(held-out)| / |held-out|
  conditioned:   8 * (|xz(train + held-out)| - |xz(train)|) / |held-out|   (xz has seen the
                 training text, as the model has)
Minutes count from the start of training (compilation included); "training minutes" leave out
the time spent evaluating (each eval row logs its `seconds`), which depends on how often one
evaluates and on `data.eval_stride`, not on the training.
After training (or, with `--score`, for existing workdirs instead of training), the held-out
bits/byte by position in non-overlapping windows, averaged over 8 ranges of 32 positions: how
much each model gains from context.
Speed: the model's training FLOP/s (6 * parameters * tokens for the dense layers plus the
attention products, forward and backward) over the FLOP/s of a float32 `jnp.dot` of the
model's largest matmul shape, both timed in this process.
"""

import argparse
import json
import lzma
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gen_jax.data import corpus
from gen_jax.methods import autoregressive
from gen_jax.nn.transformer import TransformerConfig
from gen_jax.train.loop import load_checkpoint, load_data, train_and_evaluate

from common import apply_overrides, load_config  # pylint: disable=wrong-import-order


def xz_bits_per_byte(train: bytes, held_out: bytes) -> dict[str, float]:
  preset = 9 | lzma.PRESET_EXTREME
  size = lambda b: len(lzma.compress(b, preset=preset))
  held = size(held_out)
  conditioned = size(train + held_out) - size(train)
  return {"xz_unconditioned": 8 * held / len(held_out),
          "xz_conditioned": 8 * conditioned / len(held_out)}


def dot_flops_per_sec(m: int, k: int, n: int, repeats: int = 20) -> float:
  a = jnp.ones((m, k), jnp.float32)
  b = jnp.ones((k, n), jnp.float32)
  f = jax.jit(jnp.dot)
  f(a, b).block_until_ready()
  times = []
  for _ in range(repeats):
    tic = time.perf_counter()
    f(a, b).block_until_ready()
    times.append(time.perf_counter() - tic)
  return 2 * m * k * n / statistics.median(times)


def train_flops_per_token(m: TransformerConfig) -> float:
  """Forward + backward FLOPs per token of the transformer `m`: 6 per weight of the dense layers
  (embedding lookup is free, the tied output projection is not) plus 6 * 2 * length * d_model
  per layer for the attention scores and their weighted sum (causal masking does not skip work
  here)."""
  per_layer = 4 * m.d_model**2 + 2 * m.d_model * m.d_ff
  dense = m.num_layers * per_layer + m.d_model * m.vocab_size
  attention = m.num_layers * 2 * m.max_len * m.d_model
  return 6.0 * (dense + attention)


def bits_by_position(workdir: str, buckets: int = 8) -> dict[str, float]:
  """Held-out bits/byte of the newest checkpoint in `workdir` at each position of non-overlapping
  windows, averaged over `buckets` equal ranges of positions (the first range has the least
  context)."""
  config, method, state = load_checkpoint(workdir)
  config.data.eval_stride = 0
  params = state.variables()["params"][autoregressive.PLAYER]

  @jax.jit
  def sums_and_counts(tokens, weights):
    logits = method.network.apply({"params": params}, tokens[:, :-1])
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:])
    return jnp.sum(nll * weights, axis=0), jnp.sum(weights, axis=0)

  sums = counts = 0.0
  for batch in load_data(config, config.data.eval_split, train=False):
    tokens = jnp.asarray(batch[method.tokens_key])
    mask = batch["mask"][:, 1:] if "mask" in batch else np.ones(tokens[:, 1:].shape)
    batch_sums, batch_counts = sums_and_counts(tokens, jnp.asarray(mask, jnp.float32))
    sums, counts = sums + np.asarray(batch_sums), counts + np.asarray(batch_counts)
  per_position = sums / np.maximum(counts, 1.0) / np.log(2)
  parts = np.array_split(np.arange(len(per_position)), buckets)
  return {f"{p[0]}-{p[-1]}": float(per_position[p].mean()) for p in parts}


def print_bits_by_position(workdirs: list[str]) -> None:
  rows = {workdir: bits_by_position(workdir) for workdir in workdirs}
  for workdir, bits in rows.items():
    print(json.dumps({"workdir": workdir, "bits_by_position": bits}))
  labels = next(iter(rows.values())).keys()
  print("\n| workdir \\ positions | " + " | ".join(labels) + " |\n|---|" + "---|" * len(labels))
  for workdir, bits in rows.items():
    print(f"| {workdir} | " + " | ".join(f"{b:.3f}" for b in bits.values()) + " |")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=0, help="0: the config's num_steps")
  parser.add_argument("--config", default="lm_python")
  parser.add_argument("--workdir", default="runs/bench_lm_python")
  parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                      help="a config override (repeatable), e.g. optim.learning_rate=4e-3")
  parser.add_argument("--evals", type=int, default=0,
                      help="evaluations, evenly spaced, the last at the end (0: every "
                      "train.eval_every steps and at the end, as the config trains)")
  parser.add_argument("--score", nargs="+", default=[], metavar="WORKDIR",
                      help="only print the bits by position of these trained workdirs")
  args = parser.parse_args(argv)
  if args.score:
    print_bits_by_position(args.score)
    return

  root = corpus.stdlib_root()
  files = corpus.split_files(corpus.list_files(root))
  train_bytes, held_bytes = (b"".join(corpus.read_bytes(root, p) for p in files[split])
                             for split in ("train", "test"))
  tic = time.perf_counter()
  baselines = xz_bits_per_byte(train_bytes, held_bytes)
  baselines["xz_seconds"] = time.perf_counter() - tic
  print(json.dumps({"held_out_bytes": len(held_bytes), "train_bytes": len(train_bytes),
                    **baselines}), flush=True)

  config = apply_overrides(load_config(args.config), args.set)
  if args.steps:
    config.train.num_steps = args.steps
  if args.evals:
    config.train.eval_every = -(-config.train.num_steps // args.evals)
  start = time.time()
  train_and_evaluate(config, args.workdir)
  rows = [json.loads(l) for l in (Path(args.workdir) / "metrics.jsonl").read_text().splitlines()]
  evals = [r for r in rows if r["split"] == "eval" and r["time"] >= start]
  # (step, minutes since start, of which not evaluating, bits/byte); minutes include compiling.
  curve = [(r["step"], (r["time"] - start) / 60,
            (r["time"] - start - sum(e["seconds"] for e in evals[:i + 1])) / 60,
            r["bits_per_token"]) for i, r in enumerate(evals)]
  rates = [r["steps_per_sec"] for r in rows if r["split"] == "train" and r["time"] >= start][1:]
  m = TransformerConfig.from_config(config.model)
  tokens_per_step = config.data.batch_size * (config.data.seq_len - 1)
  step_sec = 1.0 / statistics.median(rates)
  model_flops = train_flops_per_token(m) * tokens_per_step / step_sec
  dot = dot_flops_per_sec(tokens_per_step, m.d_model, m.d_ff)
  result = {**baselines, "final_bits_per_byte": curve[-1][3], "minutes": curve[-1][1],
            "training_minutes": curve[-1][2], "eval_stride": config.data.eval_stride,
            "tokens_per_sec": tokens_per_step / step_sec, "model_gflops": model_flops / 1e9,
            "dot_gflops": dot / 1e9, "fraction_of_dot": model_flops / dot,
            "curve": curve}
  print(json.dumps(result))
  print("\n| step | training minutes | minutes with evaluations | bits/byte (held-out) |\n"
        "|---|---|---|---|")
  for step, minutes, training, bits in curve:
    print(f"| {step} | {training:.1f} | {minutes:.1f} | {bits:.3f} |")
  print(f"| xz -9e, unconditioned | | | {baselines['xz_unconditioned']:.3f} |")
  print(f"| xz -9e, conditioned on the training text | | | {baselines['xz_conditioned']:.3f} |")
  print(f"\ntraining: {result['tokens_per_sec']:.0f} tokens/s, {result['model_gflops']:.1f} "
        f"GFLOP/s = {100 * result['fraction_of_dot']:.0f}% of jnp.dot's {result['dot_gflops']:.1f}")
  print_bits_by_position([args.workdir])


if __name__ == "__main__":
  main()
