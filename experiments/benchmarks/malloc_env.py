"""Does keeping glibc from returning freed memory to the OS speed up XLA's CPU steps?

    python experiments/benchmarks/malloc_env.py [--configs classifier_digits,lm_python] [--rounds 5]

XLA:CPU allocates and frees large temporary buffers every step; by default glibc returns big
blocks to the OS (munmap / trim) and maps them again next step. With MALLOC_MMAP_MAX_=0,
MALLOC_TRIM_THRESHOLD_ and MALLOC_TOP_PAD_ large, freed memory stays in the process. Each round
times the bare jitted train step of each config in two fresh subprocesses, one per environment,
one after the other, so both see the same machine load; the table gives medians over rounds.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**31),
              "MALLOC_TOP_PAD_": str(2**28)}
HERE = Path(__file__).resolve().parent

CHILD = """
import json, statistics, sys
sys.path.insert(0, {here!r})
from common import BareStep, load_config
step = BareStep(load_config({config!r}), steps_per_call=0)
print(json.dumps(statistics.median(step.seconds_per_step({steps}) for _ in range(5))))
"""


def step_time(config: str, steps: int, malloc: bool) -> float:
  env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
  if malloc:
    env.update(MALLOC_ENV)
  out = subprocess.run([sys.executable, "-c", CHILD.format(here=str(HERE), config=config,
                                                          steps=steps)],
                       env=env, capture_output=True, text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", default="classifier_digits,lm_python")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=20)
  args = parser.parse_args()
  lines = ["| config | default ms/step | malloc env ms/step | speed-up |", "|---|---|---|---|"]
  for config in args.configs.split(","):
    plain, tuned = [], []
    for _ in range(args.rounds):
      plain.append(step_time(config, args.steps, malloc=False))
      tuned.append(step_time(config, args.steps, malloc=True))
    p, t = statistics.median(plain) * 1e3, statistics.median(tuned) * 1e3
    print(json.dumps({"config": config, "default_ms": p, "malloc_env_ms": t, "speedup": p / t,
                      "rounds": args.rounds}), flush=True)
    lines.append(f"| {config} | {p:.2f} | {t:.2f} | {p / t:.2f}x |")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
