"""Quality of the digits DCGANs: Frechet distances of their samples against the real floor, and
how often a classifier reads the class-conditional GAN's samples as the class asked for.

    python experiments/benchmarks/gan_digits.py --out runs/bench_gan_digits --docs docs/images

On the bundled digits (1,437 train / 360 test 8x8 images) it

1. trains the classifier of experiments/configs/classifier_digits.py through
   `train_and_evaluate` (`common.digits_reference`); its penultimate features give the Frechet
   distances, and the Frechet distance of the real train images to the test images is the
   floor;
2. trains experiments/configs/dcgan_digits.py and cgan_digits.py through `train_and_evaluate`;
3. draws --draws independent sets of --num_samples images from each trained generator (its EMA
   parameters; the conditional one with the labels 0..9 in equal numbers) and reports the
   Frechet distance of each set to the test images, and their mean; for the conditional GAN
   also the classifier's accuracy on its samples against the labels asked for (the classifier's
   accuracy on the real test images is the reference).

It prints one JSON line per result and a Markdown table, and writes under --out (and copies to
--docs, when given, as `{config}_samples.png` / `{config}_interpolation.png`) a 10x10 sample
grid per model (one class per row for the conditional GAN) and spherical and linear latent
interpolation grids (one path per row).
"""

import argparse
import shutil
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.sampling import latent
from gen_jax.viz import grids

import common  # pylint: disable=wrong-import-order


def draw_images(method, variables, rng, num: int, num_classes: int) -> tuple[np.ndarray, ...]:
  """`num` generated images [num, h, w, c] and their labels (0..K-1 in turn, or None)."""
  labels = jnp.arange(num) % num_classes if num_classes else None
  z = method.latent_fn(rng, (num, method.latent_dim))
  images = jax.jit(method.generate)(variables["params"]["gen"], z, labels)
  return np.asarray(images), None if labels is None else np.asarray(labels)


def write_grids(method, variables, rng, name: str, out: Path) -> dict[str, Path]:
  paths = {}
  sample = jax.device_get(jax.jit(lambda v, r: method.sample(v, r, 100))(variables, rng))
  paths["samples"] = grids.save_image_grid(sample["samples"], out / f"{name}_samples.png")
  ends = method.latent_fn(jax.random.fold_in(rng, 1), (2, 10, method.latent_dim))
  labels = method.conditioning.rows(10, 1)
  for path_name in ("spherical", "linear"):
    path_fn = getattr(latent, f"{path_name}_path")
    images = method.interpolate_images(variables, ends[0], ends[1], 10, path_fn, labels)
    paths[f"interpolation_{path_name}"] = grids.save_image_grid(
        np.asarray(images), out / f"{name}_interpolation_{path_name}.png", columns=10)
  return paths


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="runs/bench_gan_digits")
  parser.add_argument("--configs", default="dcgan_digits,cgan_digits")
  parser.add_argument("--num_samples", type=int, default=1000)
  parser.add_argument("--draws", type=int, default=3, help="sample sets per Frechet distance")
  parser.add_argument("--steps", type=int, default=0, help="override the GANs' num_steps")
  parser.add_argument("--docs", default="", help="also copy the grids to this folder")
  args = parser.parse_args(argv)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  rows = common.Rows()
  emit = rows.emit

  reference = common.digits_reference(out / "classifier")
  emit({"model": "classifier", "test_accuracy": round(reference.test_accuracy, 4),
        "train_s": round(reference.train_s, 1)})
  emit({"model": "real train images", "fd_to_test": round(reference.floor, 3)})

  overrides = {"train.progress_bar": False}
  if args.steps:
    overrides["train.num_steps"] = args.steps
  rng = jax.random.PRNGKey(4321)
  for spec in args.configs.split(","):
    name = spec.replace(":", "_")
    method, result, seconds = common.train(spec, out / name, overrides)
    variables = result.state.variables()
    num_classes = getattr(method.conditioning, "num_classes", 0)
    row = {"model": name, "config": spec, "steps": int(result.state.step),
           "train_s": round(seconds, 1), "conditional": bool(num_classes)}
    distances, accuracies = [], []
    for draw in range(args.draws):
      images, labels = draw_images(method, variables, jax.random.fold_in(rng, 100 + draw),
                                   args.num_samples, num_classes)
      distances.append(reference.frechet(images))
      if num_classes:
        accuracies.append(reference.accuracy(images, labels))
    row["fd_to_test"] = round(float(np.mean(distances)), 3)
    row["fd_to_test_draws"] = [round(d, 3) for d in distances]
    if num_classes:
      row["class_accuracy"] = round(float(np.mean(accuracies)), 4)
      row["class_accuracy_draws"] = [round(a, 4) for a in accuracies]
    paths = write_grids(method, variables, jax.random.fold_in(rng, 7), name, out)
    if args.docs:
      docs = Path(args.docs)
      docs.mkdir(parents=True, exist_ok=True)
      shutil.copy(paths["samples"], docs / f"{name}_samples.png")
      shutil.copy(paths["interpolation_spherical"], docs / f"{name}_interpolation.png")
    emit(row)

  wall = time.perf_counter() - start
  floor = rows[1]["fd_to_test"]
  table = ["| model | steps | train s | Frechet distance to test, mean (draws) | "
           "classifier accuracy on samples, mean (draws) |", "|---|---|---|---|---|"]
  for row in rows[2:]:
    draws = ", ".join(f"{d:.2f}" for d in row["fd_to_test_draws"])
    accuracy = ""
    if row["conditional"]:
      accuracy = (f"{100 * row['class_accuracy']:.1f}% ("
                  + ", ".join(f"{100 * a:.1f}" for a in row["class_accuracy_draws"]) + ")")
    table.append(f"| {row['config']} | {row['steps']} | {row['train_s']:.0f} | "
                 f"{row['fd_to_test']:.2f} ({draws}) | {accuracy} |")
  table.append(f"| real train images (floor) | | | {floor:.2f} | "
               f"{100 * reference.test_accuracy:.1f}% (real test images) |")
  emit({"wall_s": round(wall, 1), "backend": jax.default_backend(),
        "num_samples": args.num_samples, "draws": args.draws})
  common.write_table(out, table, f"Wall time: {wall:.0f} s.")
  return rows


if __name__ == "__main__":
  main(sys.argv[1:])
