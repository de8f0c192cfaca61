"""Input pipeline throughput of the bundled datasets at their default batch sizes.

Command:
  python experiments/benchmarks/input_pipeline.py [--data_dir DIR] [--passes 5] [--num_batches 200]
      [--configs classifier_digits,gan_ring8,lm_python]

For every case: warm-up batches, then `--passes` timed passes of `--num_batches` batches; the
median pass gives batches/s and examples/s (and tokens/s for byte streams). Prints one JSON line
per case, then a Markdown table. Bundled datasets are prepared on first use (offline), which
`load_s` includes; JAX's backend is started before the first case, which `load_s` excludes.

Then, for each of `--configs`, the pipeline exactly as that experiment builds it against the
jitted train step's consumption (the bare step, called back to back on one batch already on the
device; see step_overhead.py), both measured in one fresh process per config (so that JAX
starts in the config's CPU dispatch mode): the pipeline must deliver at least 10x what the step
consumes.
"""

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from absl import app
from absl import flags
import jax

from gen_jax import data

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Where datasets are prepared; default "
                                "$GEN_JAX_DATA_DIR, else tfds' default.")
_PASSES = flags.DEFINE_integer("passes", 5, "Timed passes per case; the median is reported.",
                               lower_bound=1)
_NUM_BATCHES = flags.DEFINE_integer("num_batches", 200, "Batches per timed pass.", lower_bound=1)
_CONFIGS = flags.DEFINE_list("configs", ["classifier_digits", "gan_ring8", "lm_python"],
                             "Experiment configs whose step consumption is compared.")
_CONSUMPTION_ONLY = flags.DEFINE_bool("consumption_only", False, "Only the step consumption "
                                      "comparison of the first of --configs (used internally).")
_WARMUP = flags.DEFINE_integer("warmup", 5, "Untimed batches before the timed passes.",
                               lower_bound=0)

# (label, name, global batch size, load options)
CASES = (
    ("digits", "digits", 128, {}),
    ("digits, scale_to_unit + dequantize", "digits", 128,
     {"preprocess": ("scale_to_unit", "dequantize")}),
    ("digits, read from files", "digits", 128, {"in_memory": False}),
    ("toy2d/ring8 fresh", "toy2d/ring8", 512, {"fresh": True}),
    ("toy2d/ring8 prepared", "toy2d/ring8", 512, {}),
    ("python_source 16x256", "python_source", 16, {"seq_len": 256}),
)


def measure(name: str, batch_size: int, *, passes: int = 5, num_batches: int = 200,
            warmup: int = 5, split: str = "train", seed: int = 0, **load_kw: Any) -> dict:
  """Throughput of `data.load(name, split, batch_size, seed, **load_kw)`.

  Args:
    name: dataset name, as for `data.load`.
    batch_size: global batch size.
    passes: timed passes; the median is reported.
    num_batches: batches per timed pass.
    warmup: untimed batches first.
    split: the split to read.
    seed: the pipeline's seed.
    **load_kw: further `data.load` options (fresh, seq_len, preprocess, data_dir, ...).

  Returns:
    A JSON-serialisable dict: name, batch_size, options, load_s (building the iterator,
    preparing the data if needed), batches_per_s, examples_per_s, tokens_per_s (byte streams,
    else None) and the per-pass seconds.
  """
  start = time.perf_counter()
  it = data.load(name, split, batch_size, seed, **load_kw)
  load_s = time.perf_counter() - start
  for _ in range(warmup):
    next(it)
  seconds = []
  for _ in range(passes):
    start = time.perf_counter()
    for _ in range(num_batches):
      batch = next(it)
    seconds.append(time.perf_counter() - start)
  median = statistics.median(seconds)
  examples = num_batches * batch_size
  tokens = examples * batch["tokens"].shape[1] if "tokens" in batch else None
  return {
      "name": name,
      "batch_size": batch_size,
      "options": {k: v for k, v in load_kw.items() if k != "data_dir"},
      "load_s": round(load_s, 4),
      "batches_per_s": round(num_batches / median, 1),
      "examples_per_s": round(examples / median, 1),
      "tokens_per_s": None if tokens is None else round(tokens / median, 1),
      "pass_s": [round(s, 5) for s in seconds],
  }


def markdown_table(rows: Sequence[tuple[str, dict]]) -> str:
  """The measurements as a Markdown table, one row per case."""
  lines = ["| case | batch | batches/s | examples/s | tokens/s | load s |",
           "|---|---:|---:|---:|---:|---:|"]
  for label, r in rows:
    tokens = "" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:,.0f}"
    lines.append(f"| {label} | {r['batch_size']} | {r['batches_per_s']:,.1f} | "
                 f"{r['examples_per_s']:,.0f} | {tokens} | {r['load_s']:.2f} |")
  return "\n".join(lines)


def consumption(config_name: str) -> dict:
  """The config's own pipeline throughput against its train step's consumption, in examples/s."""
  import common  # pylint: disable=import-outside-toplevel
  from gen_jax.train import config as config_lib  # pylint: disable=import-outside-toplevel
  from gen_jax.train import loop  # pylint: disable=import-outside-toplevel

  config = config_lib.resolve(common.load_config(config_name))
  # The step first: building it sets the config's dispatch mode before anything starts JAX.
  step = common.BareStep(config, steps_per_call=0)
  step_s = statistics.median(step.seconds_per_step(20) for _ in range(_PASSES.value))
  it = loop.load_data(config, config.data.train_split, train=True)
  for _ in range(_WARMUP.value):
    next(it)
  seconds = []
  for _ in range(_PASSES.value):
    start = time.perf_counter()
    for _ in range(_NUM_BATCHES.value):
      next(it)
    seconds.append((time.perf_counter() - start) / _NUM_BATCHES.value)
  batch = config.data.batch_size
  pipeline = batch / statistics.median(seconds)
  return {"config": config_name, "batch_size": batch, "pipeline_examples_per_s": round(pipeline),
          "step_examples_per_s": round(batch / step_s), "ratio": round(pipeline * step_s / batch, 1)}


def consumption_in_subprocess(config_name: str) -> dict:
  """`consumption(config_name)` in a fresh process, whose JAX starts in the config's CPU
  dispatch mode (`train.cpu_async_dispatch`; this process's JAX has started already)."""
  cmd = [sys.executable, __file__, f"--configs={config_name}", "--consumption_only",
         f"--passes={_PASSES.value}", f"--num_batches={_NUM_BATCHES.value}",
         f"--warmup={_WARMUP.value}"]
  out = subprocess.run(cmd, capture_output=True, text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str]) -> None:
  del argv  # Unused.
  if _CONSUMPTION_ONLY.value:
    print(json.dumps(consumption(_CONFIGS.value[0])), flush=True)
    return
  jax.process_count()  # Starts the backend, which `load` would otherwise time.
  rows = []
  for label, name, batch_size, options in CASES:
    result = measure(name, batch_size, passes=_PASSES.value, num_batches=_NUM_BATCHES.value,
                     warmup=_WARMUP.value, data_dir=_DATA_DIR.value, **options)
    print(json.dumps({"case": label, **result}), flush=True)
    rows.append((label, result))
  print(markdown_table(rows))
  lines = ["", "| config | batch | pipeline examples/s | train step examples/s | ratio |",
           "|---|---:|---:|---:|---:|"]
  for name in _CONFIGS.value:
    r = consumption_in_subprocess(name)
    print(json.dumps(r), flush=True)
    lines.append(f"| {name} | {r['batch_size']} | {r['pipeline_examples_per_s']:,} | "
                 f"{r['step_examples_per_s']:,} | {r['ratio']:,}x |")
  print("\n".join(lines))


if __name__ == "__main__":
  app.run(main)
