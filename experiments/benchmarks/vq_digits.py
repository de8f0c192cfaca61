"""Two-stage generation on the digits: VQ/RQ-VAE reconstructions and code usage against depth,
then a transformer prior over the codes, scored by Frechet distance, class accuracy and speed.

    python experiments/benchmarks/vq_digits.py [--out runs/bench_vq_digits] [--draws 3]
        [--num_samples 1000]

1. Stage 1: `vqvae_digits` with depth D = 1, 2 and 4 (`:rq2`, `:rq4`: residual quantization
   with one shared codebook of 64; `:rq2,separate`: a codebook of 64 per level), all on the same
   4x4 code grid, trained through the real loop; on the whole test split, the reconstruction's
   bits/dim (-log2 p(x | z_q) / 64), the mean squared error of the decoded image (in [-1, 1]
   units), the codebook usage (the fraction of codebook entries that code at least one test
   vector at any level; separate codebooks: the mean over levels), the usage and perplexity of
   each level averaged over levels, and the Frechet distance of the decoded reconstructions of
   the train images (what a perfect prior over the codes would reach); bits per image =
   16 D log2(64). `code_usage.png` plots each level's code frequencies, most used first.
2. Stage 2: `code_prior_digits` and its `:conditional` variant (trained with 10% of the labels
   dropped) over the depth-1 tokenizer, and `:conditional` over the `:rq2` tokenizer (32 codes
   an image, read position by position, depth within each); Frechet distance of --num_samples
   samples to the test images on the digits classifier's features (mean of --draws draws, each
   listed), and for conditional priors the classifier's accuracy on samples asked for each
   class, at classifier-free guidance scales w (0 unconditional, 1 conditional, > 1 guided), with
   the tokenizer decoding each pixel at its most probable level (`mode`, its default) or at its
   expected level (`mean`).
3. Sampling speed: images per second of the two-stage model (codes with the KV cache, then the
   decoder) against the pixel-level image transformer of `imagetf_digits` (64 pixel tokens,
   KV cache), 100 images per jitted call, median of 3 calls after compiling, side by side.

Writes reconstruction grids (`reconstructions_D<depth>.png`: test images and their
reconstructions in alternate columns) and samples (`samples.png`, `samples_conditional.png`,
one class per row) under --out; prints one JSON line per result and a Markdown table.
"""

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from gen_jax.methods import vqvae
from gen_jax.train import config as config_lib
from gen_jax.train import setup as setup_lib
from gen_jax.viz import grids

import common  # pylint: disable=wrong-import-order

TOKENIZERS = (("vqvae_digits", 1), ("vqvae_digits:rq2", 2), ("vqvae_digits:rq2,separate", 2),
              ("vqvae_digits:rq4", 4))
# (prior config, tokenizer config, [(guidance scale, decoded image)]); None: unconditional.
PRIORS = (("code_prior_digits", "vqvae_digits", [(None, "mode")]),
          ("code_prior_digits:conditional", "vqvae_digits",
           [(0.0, "mode"), (0.8, "mode"), (1.0, "mode"), (1.5, "mode"), (3.0, "mode"),
            (0.8, "mean"), (1.0, "mean")]),
          ("code_prior_digits:conditional", "vqvae_digits:rq2", [(0.8, "mode"), (1.0, "mode")]))
IMAGE_FNS = {"mode": vqvae.mode_image, "mean": vqvae.mean_image}


def code_statistics(codes: np.ndarray, num_codes: int, shared: bool) -> dict[str, float]:
  """Usage and perplexity of codes [n, ..., depth] over a whole split: `usage`, the fraction of
  the codebook coding at least one vector at any level (separate codebooks: mean over levels);
  `level_usage` and `perplexity`, each level's, averaged over levels."""
  flat = codes.reshape(-1, codes.shape[-1])
  counts = np.stack([np.bincount(flat[:, level], minlength=num_codes)
                     for level in range(flat.shape[1])])  # [depth, num_codes]
  p = counts / len(flat)
  level_usage = np.mean(p > 0, axis=1)
  entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)
  usage = np.mean(counts.sum(0) > 0) if shared else np.mean(level_usage)
  return {"usage": float(usage), "level_usage": float(np.mean(level_usage)),
          "perplexity": float(np.mean(np.exp(entropy))), "counts": counts}


def _batched(fn, x, chunk=120):
  return np.concatenate([np.asarray(fn(x[i:i + chunk])) for i in range(0, len(x), chunk)])


def usage_figure(counts: dict[str, np.ndarray], path: Path) -> None:
  """Each tokenizer's code frequencies per level, most used first (a rank-frequency plot)."""
  fig = Figure(figsize=(4 * len(counts), 3), dpi=100)
  for ax, (name, levels) in zip(fig.subplots(1, len(counts)), counts.items()):
    for level, c in enumerate(levels):
      ax.bar(np.arange(len(c)) + 0.8 * level / len(levels), np.sort(c)[::-1] / c.sum(),
             width=0.8 / len(levels), label=f"level {level + 1}")
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("code, by rank", fontsize=8)
    ax.set_ylabel("fraction of test vectors", fontsize=8)
    if len(levels) > 1:
      ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path)


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="runs/bench_vq_digits")
  parser.add_argument("--draws", type=int, default=3)
  parser.add_argument("--num_samples", type=int, default=1000)
  args = parser.parse_args(argv)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  rows = common.Rows()
  emit = rows.emit
  quiet = {"train.progress_bar": False}

  reference = common.digits_reference(out / "classifier")
  test_images = reference.test_images
  train_images = common.load_split("digits", "train", ("scale_to_unit",))["image"]
  emit({"model": "real train images", "fd_to_test": round(reference.floor, 3)})

  workdirs, counts = {}, {}
  for spec, depth in TOKENIZERS:
    workdir = out / (f"vqvae_D{depth}" + ("_separate" if "separate" in spec else ""))
    method, result, seconds = common.train(spec, workdir, quiet)
    variables = result.state.variables()
    codes = _batched(lambda x: method.encode(variables, x), test_images)
    recon = _batched(lambda x: method.reconstruct(variables, x), test_images)
    stats = code_statistics(codes, method.num_codes, 
                             getattr(method.network.quantizer, "shared_codebook", True))
    grid = codes.shape[1] * codes.shape[2]
    emit({"model": spec, "depth": depth, "code_grid": list(codes.shape[1:3]),
          "train_s": round(seconds, 1),
          "test_recon_bpd": round(float(result.eval_metrics["recon_bpd"]), 4),
          "test_mse": round(float(np.mean((recon - test_images) ** 2)), 4),
          "usage": round(stats["usage"], 3), "level_usage": round(stats["level_usage"], 3),
          "perplexity": round(stats["perplexity"], 1),
          "recon_fd": round(reference.frechet(
              _batched(lambda x: method.reconstruct(variables, x), train_images)), 3),
          "bits_per_image": round(grid * depth * float(np.log2(method.num_codes)), 1)})
    counts[spec.removeprefix("vqvae_digits").lstrip(":") or "vq"] = stats["counts"]
    if "separate" not in spec:
      pairs = np.stack([test_images[:50], recon[:50]], 1).reshape(100, 8, 8, 1)
      grids.save_image_grid(pairs, out / f"reconstructions_D{depth}.png", columns=10)
    workdirs[spec] = workdir
  usage_figure(counts, out / "code_usage.png")

  rng = jax.random.PRNGKey(2024)
  models = {}
  for spec, tokenizer, settings in PRIORS:
    variant = spec.partition(":")[2]
    name = f"prior{'_' + variant if variant else ''}" + (
        "" if tokenizer == "vqvae_digits" else "_" + tokenizer.partition(":")[2])
    method, result, seconds = common.train(
        spec, out / name, {**quiet, "frozen.tokenizer": str(workdirs[tokenizer].resolve())})
    variables = result.state.variables()
    labels = np.asarray(method.conditioning.blocks(args.num_samples))
    for scale, image in settings:
      decoding = dataclasses.replace(
          method, tokenizer=dataclasses.replace(method.tokenizer, image_fn=IMAGE_FNS[image]))
      kwargs = {} if scale is None else {"guidance_scale": scale}
      sample = jax.jit(lambda v, r, m=decoding, kw=kwargs: m.sample(v, r, args.num_samples, **kw))
      distances, accuracies = [], []
      for draw in range(args.draws):
        drawn = np.asarray(sample(variables, jax.random.fold_in(rng, draw)))
        distances.append(reference.frechet(drawn))
        if variant:
          accuracies.append(reference.accuracy(drawn, labels))
      row = {"model": spec, "tokenizer": tokenizer, "guidance_scale": scale, "image": image,
             "train_s": round(seconds, 1),
             "test_bits_per_code": round(float(result.eval_metrics["bits_per_code"]), 4),
             "fd_to_test": round(float(np.mean(distances)), 3),
             "fd_draws": [round(d, 3) for d in distances]}
      if variant:
        row["class_accuracy"] = round(float(np.mean(accuracies)), 4)
      emit(row)
    if tokenizer == "vqvae_digits":
      models[variant or "unconditional"] = (method, variables)
  method, variables = models["unconditional"]
  grids.save_image_grid(np.asarray(method.sample(variables, rng, 100)), out / "samples.png",
                        columns=10)
  method, variables = models["conditional"]
  grid = np.asarray(method.sample(variables, jax.random.PRNGKey(3), 100,
                                  labels=jnp.repeat(jnp.arange(10), 10), guidance_scale=0.8))
  grids.save_image_grid(grid, out / "samples_conditional.png", columns=10)

  num = 100
  method, variables = models["unconditional"]
  two_stage = num / common.median_seconds(jax.jit(lambda v, r: method.sample(v, r, num)),
                                          variables)
  pixel_config = config_lib.resolve(common.load_config("imagetf_digits"))
  pixel_setup = setup_lib.make_setup(pixel_config)
  pixel_method = pixel_setup.method
  pixel = num / common.median_seconds(jax.jit(lambda v, r: pixel_method.sample(v, r, num)),
                                      pixel_setup.init_state().variables())
  emit({"model": "sampling", "two_stage_images_per_s": round(two_stage, 1),
        "pixel_transformer_images_per_s": round(pixel, 1),
        "speedup": round(two_stage / pixel, 2), "batch": num})

  wall = time.perf_counter() - start
  emit({"wall_s": round(wall, 1), "backend": jax.default_backend()})
  table = ["| tokenizer | depth | bits per image | test recon bits/dim | test MSE | codebook "
           "usage | usage per level | perplexity | Frechet of train reconstructions |",
           "|---|---|---|---|---|---|---|---|---|"]
  for row in rows:
    if "depth" in row:
      table.append(f"| {row['model']} | {row['depth']} | {row['bits_per_image']:.0f} | "
                   f"{row['test_recon_bpd']:.3f} | {row['test_mse']:.4f} | "
                   f"{100 * row['usage']:.0f}% | {100 * row['level_usage']:.0f}% | "
                   f"{row['perplexity']:.1f} | {row['recon_fd']:.2f} |")
  table += ["", "| prior | tokenizer | guidance w | decoded pixel | test bits/code | "
            "Frechet distance (draws) | class accuracy |", "|---|---|---|---|---|---|---|"]
  for row in rows:
    if "fd_draws" in row:
      draws = ", ".join(f"{d:.2f}" for d in row["fd_draws"])
      scale = "" if row["guidance_scale"] is None else f"{row['guidance_scale']:g}"
      accuracy = f"{100 * row['class_accuracy']:.1f}%" if "class_accuracy" in row else ""
      table.append(f"| {row['model']} | {row['tokenizer']} | {scale} | {row['image']} | "
                   f"{row['test_bits_per_code']:.3f} | **{row['fd_to_test']:.2f}** ({draws}) | "
                   f"{accuracy} |")
  speed = next(r for r in rows if r.get("model") == "sampling")
  common.write_table(
      out, table, f"Real train images: Frechet {reference.floor:.2f}. Sampling, 100 images: "
      f"two-stage {speed['two_stage_images_per_s']:.0f}/s, pixel transformer "
      f"{speed['pixel_transformer_images_per_s']:.0f}/s ({speed['speedup']:.1f}x). Wall time: "
      f"{wall:.0f} s.")
  return rows


if __name__ == "__main__":
  main(sys.argv[1:])
