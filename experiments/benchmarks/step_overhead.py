"""The training loop's overhead per step, as a fraction of the bare jitted step's time.

    python experiments/benchmarks/step_overhead.py [--config classifier_digits:tiny] [--steps 1200]
        [--checkpoint_every 500] [--rounds 3] [--steps_per_call 1 10]

The loop's time per step includes everything a real run does each step (fetching the next batch
from the data pipeline, putting it on the devices, reading the previous step's metrics and
checking them, the progress bar, JSON/TensorBoard logging and checkpointing at their cadence).
It is read from the loop's own `steps_per_sec` log rows: the mean over a run after its first
interval (which includes compilation), then the median over rounds. The bare step is the same
jitted function called back to back on batches already on the device, for as many steps, in
the same process, alternating with the loop runs: with `train.steps_per_call = k`, the loop's
program of k unrolled steps over k stacked batches, per step. Each row compares the loop with
its own bare function (the loop's overhead) and with the bare single step, the plain jitted
step alone (what steps per call gain a user).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax

from gen_jax.train import checkpoint as checkpoint_lib
from gen_jax.train import config as config_lib
from gen_jax.train import loop

from common import BareStep, load_config  # pylint: disable=wrong-import-order


def loop_step_time(config, workdir: str) -> float:
  """Seconds per step of a whole run after its first logging interval (which compiles),
  checkpoint saves included: the mean, not a median that would skip the saving intervals."""
  loop.train_and_evaluate(config, workdir)
  rows = [json.loads(l) for l in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]
  rates = [r["steps_per_sec"] for r in rows if r["split"] == "train"][1:]
  return statistics.mean(1.0 / r for r in rates)


def save_cost_ms(config, state, saves: int = 20) -> dict[str, float]:
  """Median ms per checkpoint save of `state` as the loop saves it (arrays, data state, and
  metadata with checksum and config): blocking (the loop waits) and until written."""
  blocking, total = [], []
  config_json = config_lib.to_dict(config)
  with tempfile.TemporaryDirectory() as directory:
    checkpointer = checkpoint_lib.Checkpointer(directory, max_to_keep=3)
    for step in range(1, saves + 1):
      tic = time.perf_counter()
      checkpointer.save(step, state, {"step": step}, config_json)
      blocking.append(time.perf_counter() - tic)
      checkpointer.wait()
      total.append(time.perf_counter() - tic)
    checkpointer.close()
  return {"save_blocking_ms": round(statistics.median(blocking) * 1e3, 2),
          "save_total_ms": round(statistics.median(total) * 1e3, 2)}


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="classifier_digits:tiny")
  parser.add_argument("--steps", type=int, default=1200)
  parser.add_argument("--log_every", type=int, default=100)
  parser.add_argument("--checkpoint_every", type=int, default=500)
  parser.add_argument("--rounds", type=int, default=3, help="loop runs; the median is reported")
  parser.add_argument("--steps_per_call", type=int, nargs="+", default=[1, 10],
                      help="train.steps_per_call values")
  args = parser.parse_args(argv)

  # Every round runs each loop and each bare function once, alternating, so that all of them
  # see the same machine load; the bare functions run as many steps as a loop.
  bare = {k: BareStep(load_config(args.config), k) for k in [0, *args.steps_per_call]}
  loop_times = {k: [] for k in args.steps_per_call}
  bare_times = {k: [] for k in bare}
  for _ in range(args.rounds):
    for k in args.steps_per_call:
      config = load_config(args.config)
      config.train.update(num_steps=args.steps, log_every=args.log_every,
                          checkpoint_every=args.checkpoint_every, eval_every=0, sample_every=0,
                          progress_bar=True, steps_per_call=k)
      config.data.eval_split = ""
      with tempfile.TemporaryDirectory() as workdir:
        loop_times[k].append(loop_step_time(config, workdir))
    for k, fn in bare.items():
      bare_times[k].append(fn.seconds_per_step(args.steps))

  saves = save_cost_ms(load_config(args.config), bare[0].state)
  results = []
  bare_one = statistics.median(bare_times[0]) * 1e3
  for k in args.steps_per_call:
    loop_ms = statistics.median(loop_times[k]) * 1e3
    bare_ms = statistics.median(bare_times[k]) * 1e3
    result = {"config": args.config, "devices": jax.device_count(),
              "backend": jax.default_backend(), "steps_per_call": k,
              "loop_ms_per_step": round(loop_ms, 4), "bare_ms_per_step": round(bare_ms, 4),
              "overhead_fraction": round(loop_ms / bare_ms - 1.0, 4),
              "bare_single_step_ms": round(bare_one, 4),
              "vs_single_step": round(loop_ms / bare_one - 1.0, 4),
              "log_every": args.log_every, "checkpoint_every": args.checkpoint_every,
              "rounds": args.rounds, **saves}
    print(json.dumps(result), flush=True)
    results.append(result)
  print("\n| config | steps per call | bare (ms/step) | loop (ms/step) | overhead | "
        "vs bare single step |")
  print("|---|---|---|---|---|---|")
  for r in results:
    print(f"| {r['config']} | {r['steps_per_call']} | {r['bare_ms_per_step']:.3f} | "
          f"{r['loop_ms_per_step']:.3f} | {100 * r['overhead_fraction']:.1f}% | "
          f"{100 * r['vs_single_step']:+.1f}% |")
  print(f"\nOne checkpoint save: {saves['save_blocking_ms']:.1f} ms blocking, "
        f"{saves['save_total_ms']:.1f} ms until written (on a writer thread): "
        f"{saves['save_total_ms'] / (args.checkpoint_every * bare_one):.1%} of the time of the "
        f"{args.checkpoint_every} bare single steps between two checkpoints")
  return results


if __name__ == "__main__":
  main(sys.argv[1:])
