"""Autoregressive image models on the digits: exact test bits/dim against baselines fit in the
same run, sampling speed, and the figure of why pixels must be modelled jointly.

    python experiments/benchmarks/pixel_ar_digits.py [--out runs/bench_pixel_ar_digits]
        [--configs pixelcnn_digits imagetf_digits] [--iwae_samples 1000] [--steps N]

1. Baselines on the train split, scored on the whole test split in bits per dimension:
   independent per-pixel categoricals and a mixture of 10 of them (EM), as in vae_digits.py,
   and the VAE of vae_digits.py trained here, scored by its IWAE bound (k = --iwae_samples).
2. Each autoregressive config trained through the real loop (`train_and_evaluate`), timed from
   the call to its return (compilation, evaluation and checkpoints included); its exact test
   negative log-likelihood in bits/dim over the whole test split, with the EMA parameters.
3. Sampling: seconds per image of `method.sample` (100 images in one jitted call, median of 3
   calls after compiling), with the transformer's KV cache and by recomputing the whole pass
   at every sub-pixel.
4. Figures under --out: `contrast.png`, one row each of per-class mean images, independent-pixel
   samples (each pixel drawn from its own marginal) and each model's samples; and
   `completions_<config>.png`, test images whose top 4 rows are kept, each followed by 4
   completions.

Prints one JSON line per result and a Markdown table, written to --out/table.md.
"""

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax import data as data_lib
from gen_jax.viz import grids

import common  # pylint: disable=wrong-import-order
# pylint: disable-next=wrong-import-order
from vae_digits import evaluate_split, independent_categorical_bpd, mixture_of_categoricals_bpd


def independent_samples(train_levels: np.ndarray, num: int, levels: int, seed: int = 0
                        ) -> np.ndarray:
  """Each pixel drawn from its own marginal over the train split: [num, 64] levels."""
  rng = np.random.default_rng(seed)
  counts = np.stack([np.bincount(train_levels[:, d], minlength=levels)
                     for d in range(train_levels.shape[1])])
  probs = counts / counts.sum(1, keepdims=True)
  return np.stack([rng.choice(levels, size=num, p=p) for p in probs], axis=1)


def to_unit(levels: np.ndarray, num_levels: int) -> np.ndarray:
  return (levels.reshape(-1, 8, 8, 1) * (2.0 / (num_levels - 1)) - 1.0).astype(np.float32)


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="runs/bench_pixel_ar_digits")
  parser.add_argument("--configs", nargs="+", default=["pixelcnn_digits", "imagetf_digits"])
  parser.add_argument("--vae_config", default="vae_digits")
  parser.add_argument("--iwae_samples", type=int, default=1000)
  parser.add_argument("--steps", type=int, default=0, help="override every num_steps")
  args = parser.parse_args(argv)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  rows = common.Rows()
  emit = rows.emit
  overrides = {"train.progress_bar": False}
  if args.steps:
    overrides["train.num_steps"] = args.steps

  levels = data_lib.info("digits").num_levels
  train = common.load_split("digits", "train")
  test = common.load_split("digits", "test")
  train_int = train["image"].reshape(-1, 64).astype(np.int64)
  test_int = test["image"].reshape(-1, 64).astype(np.int64)
  test_images = to_unit(test_int, levels)
  independent = emit({"model": "independent per-pixel categorical", "test_bpd": round(
      independent_categorical_bpd(train_int, test_int, levels), 4)})
  mixture = emit({"model": "mixture of 10 categoricals (EM)", "test_bpd": round(
      mixture_of_categoricals_bpd(train_int, test_int, levels), 4)})

  rng = jax.random.PRNGKey(1234)
  vae_method, vae_result, vae_s = common.train(args.vae_config, out / "vae", overrides)
  scorer = dataclasses.replace(vae_method, eval_samples=args.iwae_samples,
                               eval_chunk=min(vae_method.eval_chunk, args.iwae_samples))
  vae_metrics = evaluate_split(scorer, vae_result.state.variables(), test_images, rng)
  vae = emit({"model": f"VAE ({args.vae_config}), IWAE k={args.iwae_samples}",
              "test_bpd": round(vae_metrics["iwae_bpd"], 4), "train_s": round(vae_s, 1)})

  models = []
  for spec in args.configs:
    method, result, seconds = common.train(spec, out / spec, overrides)
    variables = result.state.variables()
    metrics = evaluate_split(method, variables, test_images, rng)
    row = {"model": spec, "network": type(method.network.net).__name__,
           "steps": int(result.state.step), "train_s": round(seconds, 1),
           "test_bpd": round(metrics["bits_per_dim"], 4)}
    num = 100
    if method.network.cached:
      for cached in (True, False):
        fn = jax.jit(lambda v, r, cached=cached, method=method: method.sample(
            v, r, num, cached=cached))
        row[f"sample_ms_per_image_{'cached' if cached else 'recomputed'}"] = round(
            1e3 * common.median_seconds(fn, variables) / num, 3)
    else:
      fn = jax.jit(lambda v, r, method=method: method.sample(v, r, num))
      row["sample_ms_per_image_recomputed"] = round(
          1e3 * common.median_seconds(fn, variables) / num, 3)
    emit(row)
    models.append((spec, method, variables))
    given = np.repeat(test_images[:8], 4, axis=0)
    completed = np.asarray(method.complete(variables, jax.random.PRNGKey(5), jnp.asarray(given),
                                           rows=4))
    panel = np.concatenate([test_images[:8, None], completed.reshape(8, 4, 8, 8, 1)], axis=1)
    grids.save_image_grid(panel.reshape(-1, 8, 8, 1), out / f"completions_{spec}.png",
                          columns=5)

  means = np.stack([to_unit(train_int[train["label"] == c].mean(0, keepdims=True), levels)[0]
                    for c in range(10)])
  figure_rows = [means, to_unit(independent_samples(train_int, 10, levels), levels)]
  for _, method, variables in models:
    figure_rows.append(np.asarray(method.sample(variables, jax.random.PRNGKey(9), 10)))
  grids.save_image_grid(np.concatenate(figure_rows), out / "contrast.png", columns=10)

  wall = time.perf_counter() - start
  table = ["| model | test bits/dim | training (s) | sampling (ms/image) |",
           "|---|---|---|---|",
           f"| independent per-pixel categorical | {independent['test_bpd']:.3f} | | |",
           f"| mixture of 10 categoricals (EM) | {mixture['test_bpd']:.3f} | | |",
           f"| {vae['model']} | {vae['test_bpd']:.3f} | {vae['train_s']:.0f} | |"]
  for row in rows:
    if row.get("network"):
      speed = ", ".join(f"{row[k]:.2f} {k.rsplit('_', 1)[1]}" for k in sorted(row)
                        if k.startswith("sample_ms"))
      table.append(f"| {row['model']} ({row['network']}, {row['steps']} steps) | "
                   f"**{row['test_bpd']:.3f}** | {row['train_s']:.0f} | {speed} |")
  emit({"wall_s": round(wall, 1), "backend": jax.default_backend()})
  text = "\n".join(table)
  print("\n" + text + f"\n\nRows of contrast.png: per-class means, independent pixels, "
        f"{', '.join(s for s, _, _ in models)}. Wall time: {wall:.0f} s.")
  (out / "table.md").write_text(text + "\n")
  return rows


if __name__ == "__main__":
  main(sys.argv[1:])
