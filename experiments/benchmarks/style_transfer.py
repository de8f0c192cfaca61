"""Neural style transfer: time per iteration and loss against time for Adam and L-BFGS, and the
stylised images.

    python experiments/benchmarks/style_transfer.py [--out runs/bench_style_transfer]
        [--weights /path/to/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5]

For each size (128x128 and 256x256, the bundled `sample_images` photos: content "china", style
"flower") and each optimizer (the `style_transfer` config's Adam, 300 steps of 0.02; `:lbfgs`,
optax's L-BFGS with its zoom line search, 100 steps), the jitted train step of the setup runs
one step per call after a first, compiling call; each step is timed to completion. Reports the
median seconds per step, the final total loss, and the loss each reached within the first 30
seconds (128) or 120 seconds (256) of steps; writes `losses.png` (total loss against seconds,
log scale) and `triptych_<size>_<optimizer>.png` (content, style, result). The features are
VGG-19 with random weights (the config's offline default) unless --weights names the ImageNet
VGG-19 weights (the Keras .h5 or an .npz; gen_jax.nn.vgg), then the runs use them.
Prints one JSON line per run and a Markdown table; writes `table.md` under --out.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np
from matplotlib.figure import Figure

from gen_jax.train import config as config_lib
from gen_jax.train import setup as setup_lib
from gen_jax.viz import grids

import common  # pylint: disable=wrong-import-order

RUNS = (("128", "adam", 300), ("128", "lbfgs", 100), ("256", "adam", 300), ("256", "lbfgs", 100))
BUDGET_S = {"128": 30.0, "256": 120.0}


def run(size: str, optimizer: str, steps: int, weights: str) -> dict:
  """Optimises one image; returns its per-step seconds and losses and the final triptych."""
  args = ",".join(a for a in (size if size != "128" else "", optimizer if optimizer != "adam"
                                                                else "") if a)
  config = common.load_config(f"style_transfer:{args}" if args else "style_transfer")
  config.model.weights = weights
  config.train.num_steps = steps
  config = config_lib.resolve(config)
  setup = setup_lib.make_setup(config)
  batch = setup_lib.first_batch(setup_lib.load_data(config, "train", train=True))
  state = setup.init_state(batch)
  step = setup.train_step()
  tic = time.perf_counter()
  state, metrics = step(state, batch)
  jax.block_until_ready(state)
  first = time.perf_counter() - tic
  seconds, losses = [], [float(metrics["image/loss"])]
  for _ in range(steps - 1):
    tic = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(state)
    seconds.append(time.perf_counter() - tic)
    losses.append(float(metrics["image/loss"]))
  images = np.asarray(setup.method.sample(state.variables(), None, 3))
  return {"first_s": first, "seconds": seconds, "losses": losses, "images": images}


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="runs/bench_style_transfer")
  parser.add_argument("--weights", default="", help="VGG-19 weights; default random weights")
  args = parser.parse_args(argv)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  rows = common.Rows()
  features = "ImageNet VGG-19" if args.weights else "random-weight VGG-19"
  fig = Figure(figsize=(9, 3.5), dpi=100)
  axes = dict(zip(("128", "256"), fig.subplots(1, 2)))
  for size, optimizer, steps in RUNS:
    result = run(size, optimizer, steps, args.weights)
    elapsed = np.cumsum([result["first_s"]] + result["seconds"])
    within = [loss for loss, t in zip(result["losses"], elapsed - result["first_s"])
              if t <= BUDGET_S[size]]
    rows.emit({"size": int(size), "optimizer": optimizer, "steps": steps, "features": features,
               "median_step_s": round(statistics.median(result["seconds"]), 4),
               "first_call_s": round(result["first_s"], 2),
               "initial_loss": float(f"{result['losses'][0]:.4g}"),
               "final_loss": float(f"{result['losses'][-1]:.4g}"),
               "budget_s": BUDGET_S[size], "loss_within_budget": float(f"{within[-1]:.4g}")})
    axes[size].plot(elapsed - result["first_s"], result["losses"], label=optimizer)
    grids.save_image_grid(result["images"], out / f"triptych_{size}_{optimizer}.png", columns=3)
  for size, ax in axes.items():
    ax.set_yscale("log")
    ax.set_title(f"{size}x{size}, {features}", fontsize=9)
    ax.set_xlabel("seconds (after the first call)", fontsize=8)
    ax.set_ylabel("total loss", fontsize=8)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(out / "losses.png")

  wall = time.perf_counter() - start
  rows.emit({"wall_s": round(wall, 1), "backend": jax.default_backend()})
  table = ["| size | optimizer | steps | seconds per step (median) | loss at start | loss after "
           "budget (budget) | final loss |", "|---|---|---|---|---|---|---|"]
  for r in rows:
    if "optimizer" in r:
      table.append(f"| {r['size']}x{r['size']} | {r['optimizer']} | {r['steps']} | "
                   f"{r['median_step_s']:.3f} | {r['initial_loss']:.3g} | "
                   f"{r['loss_within_budget']:.3g} ({r['budget_s']:.0f} s) | "
                   f"{r['final_loss']:.3g} |")
  common.write_table(out, table, f"Features: {features}. Wall time: {wall:.0f} s.")
  return rows


if __name__ == "__main__":
  main(sys.argv[1:])
