"""NeRF on the bundled 32x32 scene: held-out PSNR against training time, hierarchical sampling
against stratified sampling alone.

    python experiments/benchmarks/nerf_scene.py [--out runs/bench_nerf_scene] [--steps 800]

Two runs of experiments/configs/nerf_scene.py, each `--steps` steps with the cosine schedule
ending there: the config itself (coarse 32 + fine 32 depths per ray, the fine ones drawn from the
coarse weights) and `:coarse` (96 stratified depths, no fine field: as many field evaluations
per ray). The setup's jitted train step runs one step per call, each timed to completion (the
first call, which compiles, is reported apart); every `--eval_every` steps, outside the timed
steps, the 16 held-out views are rendered whole and their mean PSNR (dB, colours in [0, 1])
recorded. The table gives the PSNR at each evaluation and the training seconds to reach
TARGET_PSNR, a target set from a calibration run (the config's first version, 4 x 64 fields,
reached 22.0 dB after 600 steps, about 200 s on this 2-core CPU under load), and two
references: a constant image of the training views' mean colour, and the background alone.
Writes `heldout_<run>.png` (rows: held-out views, their renderings, rendered depth) and
`turntable_<run>.gif`; prints JSON lines and a Markdown table, written to `table.md` under --out.
"""

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax import volume_rendering as vr
from gen_jax.train import config as config_lib
from gen_jax.train import parallel
from gen_jax.train import setup as setup_lib
from gen_jax.viz import grids

import common  # pylint: disable=wrong-import-order

TARGET_PSNR = 22.0
RUNS = (("hierarchical", "nerf_scene"), ("stratified only", "nerf_scene:coarse"))


def _split(config, split: str) -> dict[str, np.ndarray]:
  """A whole split in order, padding removed."""
  batches = list(setup_lib.load_data(config, split, train=False))
  valid = np.concatenate([b["valid"] for b in batches])
  return {k: np.concatenate([b[k] for b in batches])[valid] for k in ("image", "pose", "focal")}


def run(spec: str, steps: int, eval_every: int, out: Path, label: str) -> dict:
  """Trains one config; returns its evaluations [(step, train seconds, psnr)] and timings."""
  config = common.load_config(spec)
  config.train.num_steps = steps
  config = config_lib.resolve(config)
  setup = setup_lib.make_setup(config)
  method, mesh = setup.method, setup.mesh
  train_data = setup_lib.load_data(config, config.data.train_split, train=True)
  state = setup.init_state(setup_lib.first_batch(train_data))
  step, eval_step = setup.train_step(), setup.eval_step()
  eval_rng = jax.random.PRNGKey(1)

  def evaluate(state) -> float:
    sums = None
    for index, batch in enumerate(setup_lib.load_data(config, "test", train=False)):
      out = eval_step(state.variables(), parallel.put_batch(batch, mesh),
                      jax.random.fold_in(eval_rng, index))
      sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
    total, count = jax.device_get(sums["psnr"])
    return float(total) / float(count)

  evaluations, train_s, first_s = [], 0.0, 0.0
  for s in range(steps):
    batch = parallel.put_batch(next(train_data), mesh)
    tic = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(state)
    if s == 0:
      first_s = time.perf_counter() - tic
    else:
      train_s += time.perf_counter() - tic
    if (s + 1) % eval_every == 0 or s + 1 == steps:
      evaluations.append((s + 1, train_s, evaluate(state)))
      print(f"  {label}: step {s + 1}, {train_s:.0f} s, held-out PSNR {evaluations[-1][2]:.2f} "
            f"dB (train {float(metrics['field/psnr']):.2f})", file=sys.stderr, flush=True)

  test = _split(config, "test")
  variables = state.variables()
  views = jax.jit(lambda v: method.render_views(v, jax.random.PRNGKey(2), test["pose"][:8],
                                                test["focal"][:8]))(variables)
  depth = 1.0 - (np.asarray(views["depth"]) - method.near) / (method.far - method.near)
  rows = np.concatenate([test["image"][:8] / 127.5 - 1.0, 2.0 * np.asarray(views["rgb"]) - 1.0,
                         np.repeat(2.0 * np.clip(depth, 0, 1)[..., None] - 1.0, 3, axis=-1)])
  name = label.replace(" ", "_")
  grids.save_image_grid(rows, out / f"heldout_{name}.png", columns=8)
  frames = jax.jit(lambda v: method.sample(v, jax.random.PRNGKey(3), 36))(variables)
  grids.save_gif(np.asarray(frames["turntable"]), out / f"turntable_{name}.gif")
  return {"evaluations": evaluations, "first_s": first_s, "config": config}


def references(config) -> dict[str, float]:
  """Held-out PSNR of two images that need no model: the training views' mean colour
  everywhere, and the background everywhere."""
  train, test = _split(config, "train"), _split(config, "test")
  images = test["image"].astype(np.float64) / 255.0
  mean = (train["image"].astype(np.float64) / 255.0).mean(axis=(0, 1, 2))
  psnr = lambda guess: float(np.mean(vr.psnr(np.mean((images - guess) ** 2, axis=(1, 2, 3)))))
  return {"mean colour": psnr(mean), "background": psnr(config.model.background)}


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="runs/bench_nerf_scene")
  parser.add_argument("--steps", type=int, default=800)
  parser.add_argument("--eval_every", type=int, default=200)
  args = parser.parse_args(argv)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  rows = common.Rows()
  results = {}
  for label, spec in RUNS:
    result = results[label] = run(spec, args.steps, args.eval_every, out, label)
    reached = [s for s, t, p in result["evaluations"] if p >= TARGET_PSNR]
    reached_s = [t for s, t, p in result["evaluations"] if p >= TARGET_PSNR]
    last_step, last_s, last_psnr = result["evaluations"][-1]
    rows.emit({"run": label, "config": spec, "steps": last_step, "train_s": round(last_s, 1),
               "s_per_step": round(last_s / max(last_step - 1, 1), 4),
               "first_call_s": round(result["first_s"], 2),
               "heldout_psnr": round(last_psnr, 2),
               "psnr_by_step": {s: round(p, 2) for s, _, p in result["evaluations"]},
               "target_psnr": TARGET_PSNR,
               "steps_to_target": reached[0] if reached else None,
               "s_to_target": round(reached_s[0], 1) if reached_s else None})
  refs = references(results[RUNS[0][0]]["config"])
  wall = time.perf_counter() - start
  rows.emit({"references": {k: round(v, 2) for k, v in refs.items()}, "wall_s": round(wall, 1),
             "backend": jax.default_backend()})
  steps = [s for s, _, _ in results[RUNS[0][0]]["evaluations"]]
  table = ["| run | depths per ray | s per step | " + " | ".join(f"PSNR @ {s}" for s in steps)
           + f" | steps (s) to {TARGET_PSNR:g} dB |",
           "|---|---|---|" + "---|" * len(steps) + "---|"]
  for r in rows:
    if "run" in r:
      depths = "32 + 32 fine" if r["run"] == "hierarchical" else "96"
      to_target = (f"{r['steps_to_target']} ({r['s_to_target']:.0f} s)"
                   if r["steps_to_target"] else "not reached")
      table.append(f"| {r['run']} | {depths} | {r['s_per_step']:.3f} | "
                   + " | ".join(f"{r['psnr_by_step'][s]:.2f}" for s in steps)
                   + f" | {to_target} |")
  common.write_table(out, table, f"Held-out PSNR in dB, mean over the 16 test views of "
                     f"scene/primitives_32. References: mean colour {refs['mean colour']:.2f} "
                     f"dB, background only {refs['background']:.2f} dB. Wall time: "
                     f"{wall:.0f} s.")
  return rows


if __name__ == "__main__":
  main(sys.argv[1:])
