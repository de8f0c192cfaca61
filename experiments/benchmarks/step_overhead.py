"""The training loop's overhead per step, as a fraction of the bare jitted step's time.

    python experiments/benchmarks/step_overhead.py [--config classifier_digits:tiny] [--steps 1200]
        [--checkpoint_every 500] [--rounds 3]

The loop's time per step includes everything a real run does each step (fetching the next batch
from the data pipeline, putting it on the devices, reading the previous step's metrics and
checking them, the progress bar, JSON/TensorBoard logging and checkpointing at their cadence).
It is read from the loop's own `steps_per_sec` log rows: the mean over a run after its first
interval (which includes compilation), then the median over rounds. The bare step is the same
jitted function called back to back on one batch already on the device, measured in the same
process after the loop runs.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax

from gen_jax.train import loop

from common import compiled_train_step, load_config  # pylint: disable=wrong-import-order


def loop_step_time(config, workdir: str) -> float:
  """Seconds per step of a whole run after its first logging interval (which compiles),
  checkpoint saves included: the mean, not a median that would skip the saving intervals."""
  loop.train_and_evaluate(config, workdir)
  rows = [json.loads(l) for l in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]
  rates = [r["steps_per_sec"] for r in rows if r["split"] == "train"][1:]
  return statistics.mean(1.0 / r for r in rates)


def bare_step_times(config, repeats: int, steps: int) -> list[float]:
  # Jitted as the loop jits it, so that the comparison is like for like.
  fn, state, device_batch = compiled_train_step(config)
  times = []
  for _ in range(repeats):
    tic = time.perf_counter()
    for _ in range(steps):
      state, metrics = fn(state, device_batch)
    jax.block_until_ready((state, metrics))
    times.append((time.perf_counter() - tic) / steps)
  return times


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="classifier_digits:tiny")
  parser.add_argument("--steps", type=int, default=1200)
  parser.add_argument("--log_every", type=int, default=100)
  parser.add_argument("--checkpoint_every", type=int, default=500)
  parser.add_argument("--rounds", type=int, default=3, help="loop runs; the median is reported")
  args = parser.parse_args(argv)

  times = []
  for _ in range(args.rounds):
    config = load_config(args.config)
    config.train.update(num_steps=args.steps, log_every=args.log_every,
                        checkpoint_every=args.checkpoint_every, eval_every=0, sample_every=0,
                        progress_bar=True)
    config.data.eval_split = ""
    with tempfile.TemporaryDirectory() as workdir:
      times.append(loop_step_time(config, workdir))
  bare_ms = statistics.median(bare_step_times(load_config(args.config), repeats=7,
                                              steps=args.log_every)) * 1e3
  loop_ms = statistics.median(times) * 1e3
  result = {"config": args.config, "devices": jax.device_count(),
            "backend": jax.default_backend(), "loop_ms_per_step": round(loop_ms, 4),
            "bare_ms_per_step": round(bare_ms, 4),
            "overhead_fraction": round(loop_ms / bare_ms - 1.0, 4),
            "log_every": args.log_every, "checkpoint_every": args.checkpoint_every,
            "rounds": args.rounds}
  print(json.dumps(result))
  print("\n| config | bare step (ms) | loop step (ms) | overhead | checkpoint every |")
  print("|---|---|---|---|---|")
  print(f"| {args.config} | {bare_ms:.3f} | {loop_ms:.3f} | "
        f"{100 * result['overhead_fraction']:.1f}% | {args.checkpoint_every} |")
  return result


if __name__ == "__main__":
  main(sys.argv[1:])
