"""Do gen_jax's host-memory settings (gen_jax/host_memory.py) speed up XLA's CPU steps?

    python experiments/benchmarks/malloc_env.py [--configs classifier_digits,lm_python] [--rounds 5]

Two process-wide settings, in every combination: glibc's malloc keeping freed blocks in the
process (`host_memory.keep_freed_memory()`, which the benchmarks apply;
`GEN_JAX_KEEP_FREED_MEMORY=0` leaves glibc's defaults)
and JAX's CPU dispatch, asynchronous (JAX's default) or synchronous
(`train.cpu_async_dispatch=False`). Each round times the bare jitted train step of each config
in one fresh subprocess per combination, one after the other, so all see the same machine load;
the table gives medians over rounds of the time, the minor page faults and the system CPU time
per step, and the speed-up over glibc's and JAX's defaults.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from gen_jax import host_memory

HERE = Path(__file__).resolve().parent
# (keep freed memory, asynchronous dispatch); the first is the defaults of glibc and JAX.
COMBINATIONS = ((False, True), (True, True), (False, False), (True, False))

CHILD = """
import json, resource, statistics, sys
sys.path.insert(0, {here!r})
from common import BareStep, load_config
config = load_config({config!r})
config.train.cpu_async_dispatch = {dispatch}
step = BareStep(config, steps_per_call=0)
step.seconds_per_step({steps})
before = resource.getrusage(resource.RUSAGE_SELF)
seconds = statistics.median(step.seconds_per_step({steps}) for _ in range(5))
after = resource.getrusage(resource.RUSAGE_SELF)
calls = 5 * {steps}
print(json.dumps({{"seconds": seconds, "faults": (after.ru_minflt - before.ru_minflt) / calls,
                  "system": (after.ru_stime - before.ru_stime) / calls}}))
"""


def child_env(keep: bool) -> dict[str, str]:
  """This process's environment with gen_jax's malloc settings on (`keep`) or off, and none of
  glibc's MALLOC_* variables."""
  env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
  env[host_memory.ENV_VAR] = "1" if keep else "0"
  return env


def step_stats(config: str, steps: int, keep: bool, dispatch: bool) -> dict[str, float]:
  code = CHILD.format(here=str(HERE), config=config, steps=steps, dispatch=dispatch)
  out = subprocess.run([sys.executable, "-c", code], env=child_env(keep), capture_output=True,
                       text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", default="classifier_digits,lm_python")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=20)
  args = parser.parse_args()
  lines = ["| config | freed memory | dispatch | ms/step | speed-up | page faults/step | "
           "system ms/step |", "|---|---|---|---|---|---|---|"]
  for config in args.configs.split(","):
    runs = {combo: [] for combo in COMBINATIONS}
    for _ in range(args.rounds):
      for keep, dispatch in COMBINATIONS:
        runs[(keep, dispatch)].append(step_stats(config, args.steps, keep, dispatch))
    med = {combo: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
           for combo, rs in runs.items()}
    base = med[COMBINATIONS[0]]["seconds"]
    for (keep, dispatch), m in med.items():
      print(json.dumps({"config": config, "keep_freed_memory": keep, "async_dispatch": dispatch,
                        **m, "speedup": base / m["seconds"], "rounds": args.rounds}), flush=True)
      lines.append(f"| {config} | {'kept' if keep else 'glibc default'} | "
                   f"{'async' if dispatch else 'sync'} | {1e3 * m['seconds']:.2f} | "
                   f"{base / m['seconds']:.2f}x | {m['faults']:,.0f} | {1e3 * m['system']:.1f} |")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
