"""Prefix tuning of the frozen `lm_python` LM towards the standard library's test files, against
no prefix and against fine-tuning every weight for the same steps.

    python experiments/benchmarks/prefix_tuning.py [--out runs/bench_prefix_tuning]
        [--lm_steps 1500] [--steps 400] [--ft_lrs 1e-3] [--samples 64]

1. Trains `lm_python` for --lm_steps steps (its cosine schedule over that length) through the
   real loop; that LM never saw a test file (`python_source` leaves test folders out).
2. Prefix-tunes it (`prefix_tuning_python`: 10 key/value pairs per layer through the MLP
   reparameterisation, learning rate 3e-3) for --steps steps on `python_source/tests`, and
   fine-tunes every weight of the same LM (`prefix_tuning_python:all` with no prefix) for the
   same steps, data and optimizer, at each learning rate of --ft_lrs.
3. Held-out bits/byte, in the same non-overlapping windows of 246 bytes after one byte of
   context: on the 49 held-out test files (the target), and on the 33 held-out files of
   `python_source` (what the LM was trained for: the prefix leaves the LM as it was, fine-tuning
   moves it).
4. --samples samples of 192 bytes after "def " (temperature 0.8, top-p 0.95) from each model,
   and how many write tests: `def test` (the first function's name starts with "test") and
   `self.assert` anywhere; written to --out/samples_<model>.txt.
Prints one JSON line per result and a Markdown table.
"""

import argparse
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax import host_memory
from gen_jax.train import config as config_lib
from gen_jax.train import setup as setup_lib

import common  # pylint: disable=wrong-import-order


def held_out_bits(run, code: int, data_name: str) -> float:
  """Bits/byte of the test split of `data_name` under `run`'s method with prefix `code` (-1:
  none), in the run's windows (seq_len, eval_stride)."""
  config = config_lib.resolve(run.config.copy_and_resolve_references())
  config.data.name = data_name
  method, variables = run.setup.method, run.state.variables()
  fn = jax.jit(lambda v, b: method.token_losses(v, b, code))
  total = count = 0.0
  for batch in setup_lib.load_data(config, "test", train=False):
    sums, counts = fn(variables, {"tokens": batch["tokens"], "mask": batch["mask"]})
    total, count = total + float(jnp.sum(sums)), count + float(jnp.sum(counts))
  return total / count / math.log(2.0)


def test_statistics(texts: list[str]) -> dict[str, float]:
  return {"def_test": float(np.mean([t.startswith("def test") for t in texts])),
          "self_assert": float(np.mean(["self.assert" in t for t in texts]))}


def samples(run, code: int, num: int, rng) -> list[str]:
  method = run.setup.method
  prompt = jnp.tile(jnp.asarray(method.sample_prompt, jnp.int32)[None], (num, 1))
  fn = jax.jit(lambda v, r: method.generate(v, r, prompt, max_new_tokens=method.sample_length,
                                            code=code))
  out = np.asarray(fn(run.state.variables(), rng))
  return [method.lm.codec.decode(list(method.sample_prompt) + list(row)) for row in out]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default="runs/bench_prefix_tuning")
  parser.add_argument("--lm_steps", type=int, default=1500)
  parser.add_argument("--steps", type=int, default=400)
  parser.add_argument("--ft_lrs", default="1e-3")
  parser.add_argument("--samples", type=int, default=64)
  args = parser.parse_args()
  # Both configs dispatch synchronously (gen_jax/host_memory.py); set before JAX starts.
  host_memory.set_cpu_async_dispatch(False)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  rows = common.Rows()

  lm_dir = out / "lm_python"
  _, lm_result, lm_s = common.train("lm_python", lm_dir, {
      "train.num_steps": args.lm_steps, "train.eval_every": 0,
      "train.checkpoint_every": args.lm_steps, "train.progress_bar": False})
  rows.emit({"model": "lm_python", "steps": args.lm_steps, "seconds": round(lm_s, 1),
             "eval_bits_per_byte_stride128": lm_result.eval_metrics["bits_per_token"]})

  base = {"frozen.lm": str(lm_dir), "train.num_steps": args.steps,
          "train.checkpoint_every": args.steps, "train.progress_bar": False}
  runs = {}
  _, _, seconds = common.train("prefix_tuning_python", out / "prefix", base)
  runs["prefix"] = (setup_lib.load_run(out / "prefix"), 0, seconds, "prefix (10 per layer)")
  for lr in args.ft_lrs.split(","):
    name = f"fine_tune_lr{lr}"
    _, _, seconds = common.train("prefix_tuning_python:all", out / name, {
        **base, "model.prefix_length": 0, "optim.learning_rate": float(lr)})
    runs[name] = (setup_lib.load_run(out / name), -1, seconds, f"all weights, lr {lr}")

  prefix_run = runs["prefix"][0]
  table = ["| model | trained | tests held-out bits/byte | stdlib held-out bits/byte | "
           "`def test` | `self.assert` | seconds |", "|---|---|---|---|---|---|---|"]
  entries = [("frozen LM, no prefix", prefix_run, -1, 0.0)]
  entries += [(label, run, code, seconds) for run, code, seconds, label in runs.values()]
  for i, (label, run, code, seconds) in enumerate(entries):
    # Trained parameters (the prefix's include its reparameterisation MLP).
    trained = 0 if i == 0 else sum(x.size for x in jax.tree.leaves(run.state.params["tuned"]))
    tic = time.perf_counter()
    tests = held_out_bits(run, code, "python_source/tests")
    stdlib = held_out_bits(run, code, "python_source")
    texts = samples(run, code, args.samples, jax.random.key(0))
    stats = test_statistics(texts)
    slug = label.split(",")[0].replace(" ", "_").replace("(", "").replace(")", "")
    (out / f"samples_{i}_{slug}.txt").write_text("\n\n=====\n\n".join(texts))
    rows.emit({"model": label, "trained_params": int(trained), "tests_bits_per_byte": tests,
               "stdlib_bits_per_byte": stdlib, **stats, "train_seconds": round(seconds, 1),
               "eval_seconds": round(time.perf_counter() - tic, 1)})
    table.append(f"| {label} | {trained:,} | {tests:.3f} | {stdlib:.3f} | "
                 f"{stats['def_test']:.2f} | {stats['self_assert']:.2f} | {seconds:.0f} |")
  common.write_table(out, table, f"LM: lm_python, {args.lm_steps} steps ({lm_s:.0f} s); tuning: "
                     f"{args.steps} steps of 8 x 246 bytes of python_source/tests; "
                     f"{args.samples} samples after 'def '.")


if __name__ == "__main__":
  main()
