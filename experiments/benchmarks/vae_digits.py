"""Quality of the digits VAE: IWAE-1000 bits/dim against baselines fit in the same run, and
Frechet distances of VAE and plain-autoencoder samples.

    python experiments/benchmarks/vae_digits.py --out runs/bench_vae_digits

On the bundled digits (1,437 train / 360 test images, 17 grey levels) it

1. fits two baselines on the train split and scores the test split in bits per dim: independent
   per-pixel categoricals (add-one smoothing) and a mixture of 10 of them fit by EM (add-one
   smoothing of each component's counts, the best of 3 random starts by training likelihood);
2. trains the classifier of experiments/configs/classifier_digits.py through
   `train_and_evaluate`, whose penultimate features give the Frechet distances;
3. trains the VAE of experiments/configs/vae_digits.py and the plain autoencoder of
   ae_digits.py through `train_and_evaluate`, then scores the VAE's test ELBO and IWAE bound
   with k = --iwae_samples importance samples (in chunks, by the method's own `evaluate`);
4. draws --num_samples decoded N(0, I) vectors from each model (the method's `sample`, which
   shows each pixel's most probable level) and reports the Frechet distance of their features
   to the test images' (the mean over --draws independent sample sets, each listed), with
   train-vs-test as the floor.

It prints one JSON line per result and a Markdown table, and writes the sample grids
(vae_samples.png, vae_interpolation.png, ae_samples.png) and the table under --out.
"""

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from gen_jax import data as data_lib
from gen_jax.viz import grids

import common  # pylint: disable=wrong-import-order

LN2 = np.log(2.0)


# ----------------------------------------------------------------------------------------------
# Baselines.
# ----------------------------------------------------------------------------------------------


def independent_categorical_bpd(train: np.ndarray, test: np.ndarray, levels: int) -> float:
  """Per-pixel categorical with add-one smoothing; train/test [n, dims] int levels."""
  counts = np.stack([np.bincount(train[:, d], minlength=levels) for d in range(train.shape[1])])
  log_p = np.log((counts + 1.0) / (counts.sum(1, keepdims=True) + levels))  # [dims, K]
  nll = -log_p[np.arange(test.shape[1]), test].sum(1)
  return float(nll.mean() / (test.shape[1] * LN2))


def mixture_log_probs(log_p: np.ndarray, log_w: np.ndarray, x: np.ndarray) -> np.ndarray:
  """[n, M] log w_m + log p_m(x) for log_p [M, dims, K] and x [n, dims]."""
  dims = np.arange(x.shape[1])
  return log_w[None] + log_p[:, dims, x].sum(-1).T


def mixture_of_categoricals_bpd(train: np.ndarray, test: np.ndarray, levels: int,
                                components: int = 10, iterations: int = 200, starts: int = 3,
                                seed: int = 0) -> float:
  """EM for a mixture of independent per-pixel categoricals (add-one smoothed M-step)."""
  rng = np.random.default_rng(seed)
  one_hot = np.eye(levels)[train]  # [n, dims, K]
  best = None
  for _ in range(starts):
    resp = rng.dirichlet(np.ones(components), size=train.shape[0])  # [n, M]
    for _ in range(iterations):
      counts = np.einsum("nm,ndk->mdk", resp, one_hot)
      log_p = np.log((counts + 1.0) / (counts.sum(-1, keepdims=True) + levels))
      log_w = np.log((resp.sum(0) + 1.0) / (train.shape[0] + components))
      joint = mixture_log_probs(log_p, log_w, train)
      train_ll = special.logsumexp(joint, axis=1)
      resp = np.exp(joint - train_ll[:, None])
    if best is None or train_ll.sum() > best[0]:
      best = (train_ll.sum(), log_p, log_w)
  _, log_p, log_w = best
  test_ll = special.logsumexp(mixture_log_probs(log_p, log_w, test), axis=1)
  return float(-test_ll.mean() / (test.shape[1] * LN2))


# ----------------------------------------------------------------------------------------------
# Main.
# ----------------------------------------------------------------------------------------------


def evaluate_split(method, variables, images: np.ndarray, rng, batch_size: int = 120
                   ) -> dict[str, float]:
  """Means of `method.evaluate` over all images (batch_size divides the split)."""
  fn = jax.jit(method.evaluate)
  sums, count = {}, 0
  for index in range(0, len(images), batch_size):
    chunk = jnp.asarray(images[index:index + batch_size])
    out = jax.device_get(fn(variables, {"image": chunk}, jax.random.fold_in(rng, index)))
    for k, v in out.items():
      sums[k] = sums.get(k, 0.0) + float(np.sum(v))
    count += len(chunk)
  return {k: v / count for k, v in sums.items()}


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="runs/bench_vae_digits")
  parser.add_argument("--vae_config", default="vae_digits")
  parser.add_argument("--ae_config", default="ae_digits")
  parser.add_argument("--iwae_samples", type=int, default=1000)
  parser.add_argument("--num_samples", type=int, default=1000)
  parser.add_argument("--draws", type=int, default=3, help="sample sets per Frechet distance")
  parser.add_argument("--steps", type=int, default=0, help="override the VAE/AE num_steps")
  args = parser.parse_args(argv)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  rows = common.Rows()
  emit = rows.emit

  info = data_lib.info("digits")
  levels = info.num_levels
  train_int = common.load_split("digits", "train")["image"].reshape(-1, 64).astype(np.int64)
  test_int = common.load_split("digits", "test")["image"].reshape(-1, 64).astype(np.int64)
  emit({"model": "independent categorical", "test_bpd": round(
      independent_categorical_bpd(train_int, test_int, levels), 4)})
  emit({"model": "mixture of 10 categoricals (EM)", "test_bpd": round(
      mixture_of_categoricals_bpd(train_int, test_int, levels), 4)})

  reference = common.digits_reference(out / "classifier")
  test_images = reference.test_images
  emit({"model": "classifier", "test_accuracy": round(reference.test_accuracy, 4),
        "train_s": round(reference.train_s, 1)})
  emit({"model": "real train images", "fd_to_test": round(reference.floor, 3)})

  overrides = {"train.progress_bar": False}
  if args.steps:
    overrides["train.num_steps"] = args.steps
  rng = jax.random.PRNGKey(1234)
  for name, spec in (("vae", args.vae_config), ("ae", args.ae_config)):
    method, result, seconds = common.train(spec, out / name, overrides)
    variables = result.state.variables()
    row = {"model": name, "config": spec, "steps": int(result.state.step),
           "train_s": round(seconds, 1)}
    if method.posterior.has_density:
      chunk = min(method.eval_chunk, args.iwae_samples)
      scorer = dataclasses.replace(method, eval_samples=args.iwae_samples, eval_chunk=chunk)
      tic = time.perf_counter()
      metrics = evaluate_split(scorer, variables, test_images, jax.random.fold_in(rng, 0))
      row.update({"iwae_k": args.iwae_samples, "eval_s": round(time.perf_counter() - tic, 1)})
    else:
      metrics = evaluate_split(method, variables, test_images, jax.random.fold_in(rng, 0))
    row.update({f"test_{k}": round(v, 4) for k, v in metrics.items()})
    sample = jax.jit(lambda v, r, method=method: method.sample(v, r, args.num_samples))
    distances = []
    for draw in range(args.draws):
      drawn = jax.device_get(sample(variables, jax.random.fold_in(rng, 100 + draw)))
      distances.append(reference.frechet(drawn["samples"]))
    row["fd_to_test"] = round(float(np.mean(distances)), 3)
    row["fd_to_test_draws"] = [round(d, 3) for d in distances]
    grids.save_image_grid(drawn["samples"][:100], out / f"{name}_samples.png")
    grids.save_image_grid(jax.device_get(method.sample(variables, jax.random.fold_in(rng, 2),
                                                       64))["interpolation"],
                          out / f"{name}_interpolation.png")
    recon = method.reconstruct(variables, jnp.asarray(test_images[:50]))
    pairs = np.stack([test_images[:50], np.asarray(recon)], 1).reshape(100, 8, 8, 1)
    grids.save_image_grid(pairs, out / f"{name}_reconstructions.png", columns=10)
    emit(row)

  wall = time.perf_counter() - start
  base, mix = rows[0]["test_bpd"], rows[1]["test_bpd"]
  vae, ae, real = rows[4], rows[5], rows[3]
  spread = lambda row: ", ".join(f"{d:.2f}" for d in row["fd_to_test_draws"])
  table = [
      "| model | test bits/dim | Frechet distance to test (classifier features) |",
      "|---|---|---|",
      f"| independent per-pixel categorical | {base:.3f} | |",
      f"| mixture of 10 categoricals (EM) | {mix:.3f} | |",
      f"| VAE ({vae['config']}), negative ELBO | {vae['test_elbo_bpd']:.3f} | |",
      f"| VAE ({vae['config']}), IWAE k={vae['iwae_k']} | **{vae['test_iwae_bpd']:.3f}** | "
      f"{vae['fd_to_test']:.2f} (prior samples; draws {spread(vae)}) |",
      f"| plain autoencoder ({ae['config']}) | (no bound; reconstruction "
      f"{ae['test_recon_bpd']:.3f}) | {ae['fd_to_test']:.2f} (decoded N(0, I); draws "
      f"{spread(ae)}) |",
      f"| real train images (floor) | | {real['fd_to_test']:.2f} |",
  ]
  summary = {"vae_iwae_bpd": vae["test_iwae_bpd"], "target_bpd": 1.90,
             "target_met": vae["test_iwae_bpd"] <= 1.90,
             "iwae_tighter_than_elbo": vae["test_iwae_bpd"] < vae["test_elbo_bpd"],
             "ae_samples_worse": min(ae["fd_to_test_draws"]) > max(vae["fd_to_test_draws"]),
             "below_mixture": round(1 - vae["test_iwae_bpd"] / mix, 4),
             "wall_s": round(wall, 1), "backend": jax.default_backend()}
  emit(summary)
  text = "\n".join(table)
  print("\n" + text + f"\n\nWall time: {wall:.0f} s.")
  (out / "table.md").write_text(text + "\n")
  return rows


if __name__ == "__main__":
  main(sys.argv[1:])
