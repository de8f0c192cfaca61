"""Two-stage generation on the digits: VQ/RQ-VAE reconstructions and code usage against depth,
then a transformer prior over the codes, scored by Frechet distance, class accuracy and speed.

    python experiments/benchmarks/vq_digits.py [--out runs/bench_vq_digits] [--draws 3]
        [--num_samples 1000]

1. Stage 1: `vqvae_digits` with depth D = 1, 2 and 4 (`:rq2`, `:rq4`: residual quantization
   with one shared codebook of 64), all on the same 4x4 code grid, trained through the real
   loop; on the whole test split, the reconstruction's bits/dim (-log2 p(x | z_q) / 64), the
   mean squared error of the decoded image (in [-1, 1] units) and the codebook's usage and
   perplexity over the split; bits per image = 16 D log2(64).
2. Stage 2: `code_prior_digits` and its `:conditional` variant over the depth-1 tokenizer (its
   workdir passed as `frozen.tokenizer`); Frechet distance of --num_samples samples to the test
   images on the digits classifier's features (mean of --draws draws, each listed), and for the
   conditional prior the classifier's accuracy on samples asked for each class.
3. Sampling speed: images per second of the two-stage model (codes with the KV cache, then the
   decoder) against the pixel-level image transformer of `imagetf_digits` (64 pixel tokens,
   KV cache), 100 images per jitted call, median of 3 calls after compiling, side by side.

Writes reconstruction grids (`reconstructions_D<depth>.png`: test images and their
reconstructions in alternate columns) and samples (`samples.png`, `samples_conditional.png`,
one class per row) under --out; prints one JSON line per result and a Markdown table.
"""

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.train import config as config_lib
from gen_jax.train import setup as setup_lib
from gen_jax.viz import grids

import common  # pylint: disable=wrong-import-order


def code_statistics(codes: np.ndarray, num_codes: int) -> tuple[float, float]:
  """(usage, perplexity) of codes [n, ..., depth] over a whole split, averaged over levels."""
  flat = codes.reshape(-1, codes.shape[-1])
  usage, perplexity = [], []
  for level in range(flat.shape[1]):
    p = np.bincount(flat[:, level], minlength=num_codes) / len(flat)
    usage.append(np.mean(p > 0))
    nonzero = p[p > 0]
    perplexity.append(float(np.exp(-(nonzero * np.log(nonzero)).sum())))
  return float(np.mean(usage)), float(np.mean(perplexity))


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
  emit({"model": "real train images", "fd_to_test": round(reference.floor, 3)})

  tokenizers = {}
  for depth, variant in ((1, ""), (2, "rq2"), (4, "rq4")):
    spec = f"vqvae_digits:{variant}" if variant else "vqvae_digits"
    method, result, seconds = common.train(spec, out / f"vqvae_D{depth}", quiet)
    variables = result.state.variables()
    codes = np.concatenate([np.asarray(method.encode(variables, test_images[i:i + 120]))
                            for i in range(0, len(test_images), 120)])
    recon = np.concatenate([np.asarray(method.reconstruct(variables, test_images[i:i + 120]))
                            for i in range(0, len(test_images), 120)])
    usage, perplexity = code_statistics(codes, method.num_codes)
    grid = codes.shape[1] * codes.shape[2]
    emit({"model": spec, "depth": depth, "code_grid": list(codes.shape[1:3]),
          "train_s": round(seconds, 1),
          "test_recon_bpd": round(float(result.eval_metrics["recon_bpd"]), 4),
          "test_mse": round(float(np.mean((recon - test_images) ** 2)), 4),
          "usage": round(usage, 3), "perplexity": round(perplexity, 1),
          "bits_per_image": round(grid * depth * float(np.log2(method.num_codes)), 1)})
    pairs = np.stack([test_images[:50], recon[:50]], 1).reshape(100, 8, 8, 1)
    grids.save_image_grid(pairs, out / f"reconstructions_D{depth}.png", columns=10)
    tokenizers[depth] = out / f"vqvae_D{depth}"

  rng = jax.random.PRNGKey(2024)
  models = {}
  for variant in ("", "conditional"):
    spec = f"code_prior_digits:{variant}" if variant else "code_prior_digits"
    method, result, seconds = common.train(
        spec, out / f"prior{'_' + variant if variant else ''}",
        {**quiet, "frozen.tokenizer": str(tokenizers[1])})
    variables = result.state.variables()
    sample = jax.jit(lambda v, r, method=method: method.sample(v, r, args.num_samples))
    distances = []
    for draw in range(args.draws):
      drawn = np.asarray(sample(variables, jax.random.fold_in(rng, draw)))
      distances.append(reference.frechet(drawn))
    row = {"model": spec, "train_s": round(seconds, 1),
           "test_bits_per_code": round(float(result.eval_metrics["bits_per_code"]), 4),
           "fd_to_test": round(float(np.mean(distances)), 3),
           "fd_draws": [round(d, 3) for d in distances]}
    if variant:
      labels = np.asarray(method.conditioning.blocks(args.num_samples))
      row["class_accuracy"] = round(reference.accuracy(drawn, labels), 4)
      grid = np.asarray(method.sample(variables, jax.random.PRNGKey(3), 100,
                                      labels=jnp.repeat(jnp.arange(10), 10)))
      grids.save_image_grid(grid, out / "samples_conditional.png", columns=10)
    else:
      grids.save_image_grid(drawn[:100], out / "samples.png", columns=10)
    emit(row)
    models[variant or "unconditional"] = (method, variables)

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
  table = ["| tokenizer | depth | bits per image | test recon bits/dim | test MSE | code usage | "
           "perplexity |", "|---|---|---|---|---|---|---|"]
  for row in rows:
    if "depth" in row:
      table.append(f"| {row['model']} | {row['depth']} | {row['bits_per_image']:.0f} | "
                   f"{row['test_recon_bpd']:.3f} | {row['test_mse']:.4f} | "
                   f"{100 * row['usage']:.0f}% | {row['perplexity']:.1f} |")
  table += ["", "| two-stage model | test bits/code | Frechet distance (draws) | class accuracy |",
            "|---|---|---|---|"]
  for row in rows:
    if "fd_draws" in row:
      draws = ", ".join(f"{d:.2f}" for d in row["fd_draws"])
      table.append(f"| {row['model']} | {row['test_bits_per_code']:.3f} | "
                   f"**{row['fd_to_test']:.2f}** ({draws}) | {row.get('class_accuracy', '')} |")
  speed = next(r for r in rows if r.get("model") == "sampling")
  text = "\n".join(table)
  print("\n" + text + f"\n\nReal train images: Frechet {reference.floor:.2f}. Sampling, 100 "
        f"images: two-stage {speed['two_stage_images_per_s']:.0f}/s, pixel transformer "
        f"{speed['pixel_transformer_images_per_s']:.0f}/s ({speed['speedup']:.1f}x). Wall "
        f"time: {wall:.0f} s.")
  (out / "table.md").write_text(text + "\n")
  return rows


if __name__ == "__main__":
  main(sys.argv[1:])
