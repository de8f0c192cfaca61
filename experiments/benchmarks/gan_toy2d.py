"""Mode coverage of GANs on the ring of 8 and the grid of 25 Gaussians, over seeds.

For each problem (experiments/configs/gan_ring8.py, gan_grid25.py), each setting (the default,
which should cover every mode, and `collapse`, one value different) and each seed, trains the
config through `train_and_evaluate`, draws 2,500 samples from the trained generator (its EMA
parameters) and scores them with `gen_jax.metrics.mixture.mixture_metrics` against the exact
mixture of `gen_jax.data.toy2d` (modes, high-quality fraction, reverse KL; the definitions of
VEEGAN and PacGAN). Prints one JSON line per run, then a Markdown table of means and spreads.

    python experiments/benchmarks/gan_toy2d.py --seeds 10            # the full benchmark
    python experiments/benchmarks/gan_toy2d.py --quick --seeds 2     # a fast look

The wall-clock time per seed is that of the whole `train_and_evaluate` call (compilation,
data pipeline, the final checkpoint, sample plot and GAN-Lab frame included); the benchmark
samples only at the end (`train.sample_every = 0`), so the configs' training frames are not
drawn.
"""

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from gen_jax.data import toy2d
from gen_jax.metrics.mixture import EXACT_SPREAD, mixture_metrics
from gen_jax.train import config as config_lib
from gen_jax.train.loop import build_method, train_and_evaluate

import common  # pylint: disable=wrong-import-order

NUM_EVAL_SAMPLES = 2_500
QUICK_FRACTION = 4  # --quick trains a quarter of the config's steps


def get_config(problem: str, setting: str, seed: int, quick: bool, steps: int = 0,
               latent_dim: int = 0):
  config = common.load_config(f"gan_{problem}" + ("" if setting == "default" else f":{setting}"))
  config.seed = seed
  if steps:
    config.train.num_steps = steps
  if latent_dim:
    config.model.latent_dim = latent_dim
  if quick:
    config.train.num_steps //= QUICK_FRACTION
  steps = config.train.num_steps
  config.train.update(progress_bar=False, checkpoint_every=steps, log_every=min(500, steps),
                      async_checkpoints=False, sample_every=0)
  config.data.eval_split = ""  # the benchmark scores samples, not the per-example losses
  return config


def score(method, variables, problem: str, rng) -> dict[str, float]:
  mixture = toy2d.distribution(problem)
  samples = jax.jit(lambda v, r: method.sample(v, r, NUM_EVAL_SAMPLES))(variables, rng)
  m = mixture_metrics(samples=np.asarray(samples), means=mixture.means, std=mixture.std)
  return {"modes": m.modes, "high_quality": m.high_quality_fraction,
          "reverse_kl": m.reverse_kl, "spread_minor": m.spread_minor,
          "spread_major": m.spread_major}


def run_one(problem: str, setting: str, seed: int, quick: bool, steps: int = 0,
            latent_dim: int = 0) -> dict:
  config = get_config(problem, setting, seed, quick, steps, latent_dim)
  with tempfile.TemporaryDirectory() as workdir:
    tic = time.perf_counter()
    result = train_and_evaluate(config, workdir)
    seconds = time.perf_counter() - tic
  method = build_method(config_lib.resolve(config))
  metrics = score(method, result.state.variables(), problem,
                  jax.random.fold_in(jax.random.PRNGKey(seed), 2_500))
  return {"problem": problem, "setting": setting, "seed": seed,
          "latent_dim": config.model.latent_dim, "steps": config.train.num_steps, **metrics,
          "train_seconds": seconds}


def summarise(rows: list[dict]) -> str:
  lines = ["| problem | setting | latent | seeds | steps | modes mean (min-max) | all modes | "
           "high quality % mean ± std (min) | reverse KL mean ± std (max) | "
           f"spread minor / major (exact {EXACT_SPREAD:.2f}) | train s/seed mean (max) |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
  groups = {}
  for row in rows:
    groups.setdefault((row["problem"], row["setting"], row.get("latent_dim")), []).append(row)
  for (problem, setting, latent_dim), group in groups.items():
    k = toy2d.distribution(problem).num_modes
    col = lambda key: np.array([r[key] for r in group], np.float64)
    modes, hq, kl, secs = col("modes"), 100 * col("high_quality"), col("reverse_kl"), col(
        "train_seconds")
    spread = (f"{np.nanmean(col('spread_minor')):.2f} / {np.nanmean(col('spread_major')):.2f}"
              if "spread_minor" in group[0] else "")
    lines.append(
        f"| {problem} | {setting} | {latent_dim} | {len(group)} | {group[0]['steps']} | "
        f"{modes.mean():.2f} ({modes.min():.0f}-{modes.max():.0f}) | "
        f"{int(np.sum(modes == k))}/{len(group)} | "
        f"{hq.mean():.1f} ± {hq.std():.1f} ({hq.min():.1f}) | "
        f"{np.nanmean(kl):.3f} ± {np.nanstd(kl):.3f} ({np.nanmax(kl):.3f}) | {spread} | "
        f"{secs.mean():.0f} ({secs.max():.0f}) |")
  return "\n".join(lines)


def rows_from_log(path: Path) -> list[dict]:
  """The per-run JSON lines of an earlier invocation's output (other lines are skipped)."""
  rows = []
  for line in Path(path).read_text(encoding="utf-8").splitlines():
    if line.startswith("{") and '"train_seconds"' in line:
      rows.append(json.loads(line))
  return rows


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--seeds", type=int, default=10, help="seeds 0 .. N-1 per setting")
  parser.add_argument("--quick", action="store_true", help=f"1/{QUICK_FRACTION} of the steps")
  parser.add_argument("--steps", type=int, default=0, help="override the configs' num_steps")
  parser.add_argument("--latent_dim", type=int, default=0,
                      help="override the configs' model.latent_dim")
  parser.add_argument("--problems", default="ring8,grid25")
  parser.add_argument("--settings", default="default,collapse")
  parser.add_argument("--table", type=Path, default=None, help="also write the table here")
  parser.add_argument("--summarise", type=Path, nargs="*", default=None,
                      help="only tabulate the JSON lines of earlier runs' saved output")
  args = parser.parse_args(argv)
  logging.getLogger().setLevel(logging.WARNING)

  if args.summarise is not None:
    table = summarise([row for path in args.summarise for row in rows_from_log(path)])
    print(table)
    return
  rows = []
  for problem in args.problems.split(","):
    for setting in args.settings.split(","):
      for seed in range(args.seeds):
        row = run_one(problem, setting, seed, args.quick, args.steps, args.latent_dim)
        rows.append(row)
        print(json.dumps(row), flush=True)
  table = summarise(rows)
  print(table)
  if args.table is not None:
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text(
        f"`python {' '.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}`\n\n{table}\n")


if __name__ == "__main__":
  main()
