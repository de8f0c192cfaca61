"""Diffusion models: sample quality against sampler steps, guidance, and sampler throughput.

    python experiments/benchmarks/diffusion.py --out runs/bench_diffusion          # full
    python experiments/benchmarks/diffusion.py --quick --out runs/bench_diffusion_quick

Every model is trained through `train_and_evaluate` from its config and sampled with its EMA
parameters.

(a) 2-D (experiments/configs/ddpm_toy2d.py, ring8 and grid25): 2,500 samples per sampler
    setting, scored by `gen_jax.metrics.mixture.mixture_metrics` against the exact mixture
    (modes, high-quality %, reverse KL; targets: all modes, >= 97 % high quality, reverse KL
    <= 0.02) and by the squared MMD (unbiased; an RBF kernel summed over bandwidths
    0.01, 0.03, 0.1, 0.3, 1 times data_scale) to 2,500 fresh exact samples, with the MMD of two
    fresh exact sets as the floor.
(b) digits (ddpm_digits.py): the Frechet distance of --digits_samples samples to the test
    images in the features of the digits classifier (experiments/benchmarks/common.py), for
    DDPM 1000 and DDIM 50 / 20 / 10 steps; the floors are real train images against the test
    images, all 1,437 and a random --digits_samples of them (the distance is biased upwards at
    small sample sizes, so compare like with like).
    Guidance (ddpm_digits_cond.py): for each scale w (0 unconditional, 1 conditional, > 1
    guided), --digits_samples samples in equal class blocks from 50-step DDIM, scored by the
    classifier's accuracy on the requested labels (target > 95 % at a moderate w), the Frechet
    distance, and the diversity cost: the mean over classes of the trace of the samples'
    per-class feature covariance, relative to the test images' (1 = as diverse as real digits).
(c) Throughput: samples per second of the digits U-Net's sampler against steps (--digits_samples
    at once, compiled ahead of time, so compilation is excluded; DDIM 1000 is skipped: it makes
    the same one network call per step as DDPM 1000).

Prints one JSON line per measurement and a Markdown table; writes sample grids and figures
under --out: {ring8,grid25}_samples.png and _trajectory.png (2-D scatters), digits_samples.png
(DDPM 1000), digits_ddim10_samples.png, digits_trajectory.png (rows: samples; columns: the
state x_t from noise to the sample), digits_cond_w{w}.png (row c: class c), table.md.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from gen_jax.data import toy2d
from gen_jax.methods import diffusion
from gen_jax.metrics.mixture import mixture_metrics
from gen_jax.viz import grids

import common  # pylint: disable=wrong-import-order

NUM_2D = 2_500
BANDWIDTHS = (0.01, 0.03, 0.1, 0.3, 1.0)
TOY_SETTINGS = (("ddpm", 1000), ("ddpm", 100), ("ddim", 100), ("ddim", 20), ("ddim", 10))
DIGITS_SETTINGS = (("ddpm", 1000), ("ddim", 50), ("ddim", 20), ("ddim", 10))
GUIDANCE = (0.0, 1.0, 2.0, 3.0, 5.0)
THROUGHPUT_STEPS = (10, 20, 50, 200, 1000)


def mmd2(x: np.ndarray, y: np.ndarray, scale: float) -> float:
  """Unbiased squared MMD (Gretton et al. 2012, eq. 3) of point sets [n, d] and [m, d] under
  the kernel sum_b exp(-|u - v|^2 / (2 (b scale)^2)) over BANDWIDTHS."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)

  def kernel(a, b):
    d2 = np.sum(a**2, 1)[:, None] + np.sum(b**2, 1)[None, :] - 2 * a @ b.T
    d2 = np.maximum(d2, 0.0)
    return sum(np.exp(-d2 / (2 * (bw * scale)**2)) for bw in BANDWIDTHS)

  n, m = len(x), len(y)
  kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
  return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1))
               + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())


def sampler_of(kind: str):
  return diffusion.DDPM() if kind == "ddpm" else diffusion.DDIM(eta=0.0)


def compiled_sampler(method, variables, num: int, kind: str, steps: int, **kw):
  """The jitted sampler, compiled ahead of time, and its compile seconds."""
  fn = jax.jit(lambda v, r: method.sample(v, r, num, sampler=sampler_of(kind), num_steps=steps,
                                          **kw)["samples"])
  tic = time.perf_counter()
  compiled = fn.lower(variables, jax.random.PRNGKey(0)).compile()
  return compiled, time.perf_counter() - tic


def timed(compiled, variables, rng) -> tuple[np.ndarray, float]:
  tic = time.perf_counter()
  out = np.asarray(jax.block_until_ready(compiled(variables, rng)))
  return out, time.perf_counter() - tic


def save_scatter_panels(frames: np.ndarray, timesteps, reference: np.ndarray, path: Path,
                        title: str) -> Path:
  """A row of 2-D scatter plots, one per trajectory frame [frames, n, 2]."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, axes = plt.subplots(1, len(frames), figsize=(2.2 * len(frames), 2.4), dpi=100)
  lim = 1.3 * float(np.max(np.abs(reference)))
  for ax, pts, t in zip(axes, frames, timesteps):
    ax.scatter(reference[:, 0], reference[:, 1], s=1, c="tab:blue", alpha=0.2)
    ax.scatter(pts[:, 0], pts[:, 1], s=1, c="tab:orange", alpha=0.6)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("samples" if t < 0 else f"t = {t}", fontsize=8)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path)
  plt.close(fig)
  return path


def run_toy(problem: str, args, out: Path, emit) -> None:
  overrides = {"train.progress_bar": False, "train.async_checkpoints": False,
               "data.eval_split": ""}
  if args.toy_steps:
    overrides["train.num_steps"] = args.toy_steps
  method, result, seconds = common.train(f"ddpm_toy2d:{problem}", out / f"toy_{problem}",
                                         overrides)
  variables = result.state.variables()
  dist = toy2d.distribution(problem)
  rng = np.random.default_rng(0)
  data_a, _ = dist.sample(rng, NUM_2D)
  data_b, _ = dist.sample(rng, NUM_2D)
  scale = method.data_scale
  emit({"part": "toy2d", "problem": problem, "setting": "data (floor)", "modes": dist.num_modes,
        "high_quality": mixture_metrics(samples=data_a, means=dist.means,
                                        std=dist.std).high_quality_fraction,
        "mmd2": mmd2(data_a, data_b, scale), "train_steps": int(result.state.step),
        "train_s": round(seconds, 1)})
  for kind, steps in TOY_SETTINGS:
    compiled, _ = compiled_sampler(method, variables, NUM_2D, kind, steps)
    samples, secs = timed(compiled, variables, jax.random.PRNGKey(steps))
    m = mixture_metrics(samples=samples, means=dist.means, std=dist.std)
    emit({"part": "toy2d", "problem": problem, "setting": f"{kind} {steps}", "modes": m.modes,
          "high_quality": m.high_quality_fraction, "reverse_kl": m.reverse_kl,
          "mmd2": mmd2(samples, data_a, scale), "sample_s": round(secs, 2)})
    if (kind, steps) == ("ddpm", 1000):
      grids.save_scatter(samples, out / f"{problem}_samples.png", reference=data_a,
                         title=f"{problem}: DDPM 1000 steps")
  frames, timesteps = diffusion.trajectory(method, variables, jax.random.PRNGKey(7), 1000, 6,
                                           sampler=diffusion.DDPM(), num_steps=1000)
  save_scatter_panels(np.asarray(frames), timesteps, data_a, out / f"{problem}_trajectory.png",
                      f"{problem}: DDPM 1000 steps, x_t from noise to samples")


def class_feature_spread(reference, images: np.ndarray, labels: np.ndarray) -> float:
  """Mean over classes of the trace of the per-class feature covariance."""
  feats = reference.features(images)
  return float(np.mean([np.trace(np.cov(feats[labels == c], rowvar=False))
                        for c in np.unique(labels)]))


def train_digits(spec: str, args, workdir: Path):
  overrides = {"train.progress_bar": False, "train.async_checkpoints": False}
  if args.digits_steps:
    overrides["train.num_steps"] = args.digits_steps
  return common.train(spec, workdir, overrides)


def run_digits(args, out: Path, emit, reference) -> dict:
  n = args.digits_samples
  method, result, seconds = train_digits("ddpm_digits", args, out / "digits")
  variables = result.state.variables()
  emit({"part": "digits", "setting": "train", "train_steps": int(result.state.step),
        "train_s": round(seconds, 1), "test_loss": result.eval_metrics.get("loss")})
  train = common.load_split("digits", "train", ("scale_to_unit",))["image"]
  subset = train[np.random.default_rng(0).choice(len(train), min(n, len(train)), replace=False)]
  emit({"part": "digits", "setting": "real train (floor)", "num": len(train),
        "fd": reference.floor})
  emit({"part": "digits", "setting": "real train subset (floor)", "num": len(subset),
        "fd": reference.frechet(subset)})
  timing = {}
  for kind, steps in DIGITS_SETTINGS:
    compiled, compile_s = compiled_sampler(method, variables, n, kind, steps)
    samples, secs = timed(compiled, variables, jax.random.PRNGKey(steps))
    timing[(kind, steps)] = secs
    emit({"part": "digits", "setting": f"{kind} {steps}", "num": n,
          "fd": reference.frechet(samples), "sample_s": round(secs, 2),
          "samples_per_s": round(n / secs, 1), "compile_s": round(compile_s, 1)})
    if (kind, steps) == ("ddpm", 1000):
      grids.save_image_grid(samples[:100], out / "digits_samples.png")
    if (kind, steps) == ("ddim", 10):
      grids.save_image_grid(samples[:100], out / "digits_ddim10_samples.png")
  frames, timesteps = diffusion.trajectory(method, variables, jax.random.PRNGKey(5), 10, 11,
                                           sampler=diffusion.DDPM(), num_steps=1000)
  frames = np.clip(np.asarray(frames), -1, 1).transpose(1, 0, 2, 3, 4)  # [samples, frames, ...]
  grids.save_image_grid(frames.reshape(-1, *frames.shape[2:]), out / "digits_trajectory.png",
                        columns=frames.shape[1])
  emit({"part": "digits", "setting": "trajectory", "timesteps": [int(t) for t in timesteps]})
  return {"method": method, "variables": variables, "timing": timing}


def run_guidance(args, out: Path, emit, reference) -> None:
  n = args.digits_samples
  method, result, seconds = train_digits("ddpm_digits_cond", args, out / "digits_cond")
  variables = result.state.variables()
  emit({"part": "guidance", "setting": "train", "train_steps": int(result.state.step),
        "train_s": round(seconds, 1), "test_loss": result.eval_metrics.get("loss"),
        "test_uncond_loss": result.eval_metrics.get("uncond_loss")})
  test_spread = class_feature_spread(reference, reference.test_images, reference.test_labels)
  labels = np.asarray(method.conditioning.sample_labels(n))
  fn = jax.jit(lambda v, r, w: method.sample(v, r, n, guidance_scale=w)["samples"])
  grid_fn = jax.jit(lambda v, r, w: diffusion.class_grid(method, v, r, 10, guidance_scale=w))
  for w in GUIDANCE:
    samples = np.asarray(fn(variables, jax.random.PRNGKey(11), w))
    emit({"part": "guidance", "w": w, "num": n, "sampler": f"ddim {method.sample_steps}",
          "accuracy": reference.accuracy(samples, labels), "fd": reference.frechet(samples),
          "class_spread": class_feature_spread(reference, samples, labels) / test_spread})
    grid = grid_fn(variables, jax.random.PRNGKey(12), w)
    grids.save_image_grid(np.asarray(grid), out / f"digits_cond_w{w:g}.png", columns=10)


def run_throughput(digits, args, emit) -> None:
  method, variables, n = digits["method"], digits["variables"], args.digits_samples
  for steps in THROUGHPUT_STEPS:
    for kind in ("ddpm", "ddim"):
      if (kind, steps) == ("ddim", 1000):
        continue  # one network call per step, like DDPM 1000: not worth another minute
      secs = digits["timing"].get((kind, steps))
      if secs is None:
        compiled, _ = compiled_sampler(method, variables, n, kind, steps)
        _, secs = timed(compiled, variables, jax.random.PRNGKey(1))
      emit({"part": "throughput", "sampler": kind, "steps": steps, "num": n,
            "seconds": round(secs, 2), "samples_per_s": round(n / secs, 1)})


def table(rows: list[dict]) -> str:
  out = []
  toy = [r for r in rows if r["part"] == "toy2d"]
  if toy:
    out += ["**(a) 2-D: 2,500 samples (MLP denoiser, cosine schedule, v prediction)**", "",
            "| problem | sampler | modes | high quality % | reverse KL | MMD^2 x 1e3 | "
            "sample s |", "|---|---|---|---|---|---|---|"]
    for r in toy:
      kl = "" if "reverse_kl" not in r else f"{r['reverse_kl']:.4f}"
      out.append(f"| {r['problem']} | {r['setting']} | {r['modes']} | "
                 f"{100 * r['high_quality']:.1f} | {kl} | {1e3 * r['mmd2']:.3f} | "
                 f"{r.get('sample_s', '')} |")
    out.append("")
  dig = [r for r in rows if r["part"] == "digits" and "fd" in r]
  if dig:
    out += ["**(b) digits: Frechet distance to the 360 test images (classifier features)**", "",
            "| samples | n | Frechet distance | sample s |", "|---|---|---|---|"]
    for r in dig:
      out.append(f"| {r['setting']} | {r['num']} | {r['fd']:.2f} | {r.get('sample_s', '')} |")
    out.append("")
  gui = [r for r in rows if r["part"] == "guidance" and "w" in r]
  if gui:
    out += ["**(b) digits, classifier-free guidance (w = 0 unconditional, 1 conditional)**", "",
            "| w | sampler | accuracy % | Frechet distance | per-class feature spread "
            "(test = 1) |", "|---|---|---|---|---|"]
    for r in gui:
      out.append(f"| {r['w']:g} | {r['sampler']} | {100 * r['accuracy']:.1f} | {r['fd']:.2f} | "
                 f"{r['class_spread']:.2f} |")
    out.append("")
  thr = [r for r in rows if r["part"] == "throughput"]
  if thr:
    out += ["**(c) sampler throughput, digits U-Net (samples/s, compilation excluded)**", "",
            "| steps | DDPM samples/s | DDIM samples/s |", "|---|---|---|"]
    by = {(r["sampler"], r["steps"]): r["samples_per_s"] for r in thr}
    for steps in sorted({r["steps"] for r in thr}):
      out.append(f"| {steps} | {by.get(('ddpm', steps), '')} | {by.get(('ddim', steps), '')} |")
  return "\n".join(out)


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", type=Path, default=Path("runs/bench_diffusion"))
  parser.add_argument("--parts", default="toy2d,digits,guidance,throughput")
  parser.add_argument("--problems", default="ring8,grid25")
  parser.add_argument("--quick", action="store_true",
                      help="a quarter of the training steps and 200 digit samples")
  parser.add_argument("--toy_steps", type=int, default=0, help="override the 2-D num_steps")
  parser.add_argument("--digits_steps", type=int, default=0, help="override digits num_steps")
  parser.add_argument("--digits_samples", type=int, default=500)
  args = parser.parse_args(argv)
  if args.quick:
    args.toy_steps = args.toy_steps or 15_000 // 4
    args.digits_steps = args.digits_steps or 3000 // 4
    args.digits_samples = min(args.digits_samples, 200)
  parts = set(args.parts.split(","))
  out = args.out
  out.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  rows = []

  def emit(row):
    row = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}
    rows.append(row)
    print(json.dumps(row), flush=True)

  if "toy2d" in parts:
    for problem in args.problems.split(","):
      run_toy(problem, args, out, emit)
  digits = None
  if parts & {"digits", "guidance", "throughput"}:
    reference = common.digits_reference(out / "classifier")
    emit({"part": "classifier", "test_accuracy": reference.test_accuracy,
          "train_s": round(reference.train_s, 1)})
    if parts & {"digits", "throughput"}:
      digits = run_digits(args, out, emit, reference)
    if "guidance" in parts:
      run_guidance(args, out, emit, reference)
    if "throughput" in parts:
      run_throughput(digits, args, emit)
  wall = time.perf_counter() - start
  emit({"part": "summary", "wall_s": round(wall, 1), "backend": jax.default_backend(),
        "devices": jax.device_count()})
  text = table(rows)
  print("\n" + text + f"\n\nWall time: {wall:.0f} s.")
  command = " ".join(["python", Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
  (out / "table.md").write_text(f"`{command}`\n\n{text}\n\nWall time: {wall:.0f} s.\n")
  return rows


if __name__ == "__main__":
  main(sys.argv[1:])
