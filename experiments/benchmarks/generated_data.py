"""Generated digits put to use: the classification accuracy score and a memorisation check.

    python experiments/benchmarks/generated_data.py [--out runs/bench_generated_data]
        [--models cgan,ddpm,pixelcnn,code_prior,memoriser]

For each class-conditional model, trained here through the real loop (a finished run in --out
is restored instead), 1,500 samples are drawn, 150 asked for each digit, and put to two uses:

- Classification accuracy score (Ravuri & Vinyals 2019, "Classification Accuracy Score for
  Conditional Generative Models"): the classifier of `classifier_digits` (its network, optimizer
  and 1,000 steps of 128) is trained on the samples and the labels they were asked for only, then
  tested on the real test split (360 images). The same procedure on the real training split
  (1,437 images) gives the score to compare against.
- Memorisation (`gen_jax.metrics.memorisation`): each sample's Euclidean distance, in pixels in
  [-1, 1], to its nearest training image, against the test images' distances to theirs; the
  copy fraction is the fraction of samples closer to a training image than 99% of the test
  images are (q = 0.01; about q when nothing is copied), flagged above 3q. `pairs_<model>.png`
  shows the 16 closest samples (odd columns) beside their nearest training images.

Models: `cgan` (cgan_digits), `ddpm` (ddpm_digits_cond, DDIM 50 at guidance w = 2), `pixelcnn`
(pixelcnn_digits:conditional), `code_prior` (code_prior_digits:conditional over a vqvae_digits
tokenizer trained here, w = 1) and `memoriser`, the control: pixelcnn_digits:conditional trained
on the first 20 training images only (3,000 steps, no dropout), a model that can only copy.
Prints one JSON line per result and a Markdown table; writes `table.md` under --out.
"""

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.methods import gan
from gen_jax.metrics import memorisation
from gen_jax.train import config as config_lib
from gen_jax.train import setup as setup_lib
from gen_jax.viz import grids

import common  # pylint: disable=wrong-import-order

PER_CLASS = 150
CHUNK = 500
QUIET = {"train.progress_bar": False}


def _labels() -> np.ndarray:
  return np.repeat(np.arange(10), PER_CLASS).astype(np.int32)


def draw(sample_fn, variables) -> np.ndarray:
  """1,500 samples [n, 8, 8, 1] of `sample_fn(variables, rng, labels)`, 150 per class, drawn in
  jitted chunks of 500."""
  labels = _labels()
  fn = jax.jit(sample_fn)
  return np.concatenate([
      np.asarray(fn(variables, jax.random.PRNGKey(i), jnp.asarray(labels[i:i + CHUNK])))
      for i in range(0, len(labels), CHUNK)])


def train_model(name: str, out: Path):
  """(sample_fn(variables, rng, labels), variables) of one model of the module docstring."""
  if name == "cgan":
    method, result, _ = common.train("cgan_digits", out / name, QUIET)
    fn = lambda v, r, y: method.generate(v["params"][gan.GEN],
                                         method.latent_fn(r, (len(y), method.latent_dim)), y)
  elif name == "ddpm":
    method, result, _ = common.train("ddpm_digits_cond", out / name, QUIET)
    fn = lambda v, r, y: method.sample(v, r, len(y), labels=y, guidance_scale=2.0)["samples"]
  elif name in ("pixelcnn", "memoriser"):
    overrides = dict(QUIET)
    if name == "memoriser":
      overrides.update({"data.train_split": "train[:20]", "data.batch_size": 20,
                        "model.dropout_rate": 0.0, "optim.kwargs": {"weight_decay": 0.0},
                        "train.num_steps": 3000, "train.checkpoint_every": 3000})
    method, result, _ = common.train("pixelcnn_digits:conditional", out / name, overrides)
    fn = lambda v, r, y: method.sample(v, r, len(y), labels=y)
  elif name == "code_prior":
    common.train("vqvae_digits", out / "vqvae", QUIET)
    method, result, _ = common.train("code_prior_digits:conditional", out / name,
                                     {**QUIET, "frozen.tokenizer": str((out / "vqvae").resolve())})
    fn = lambda v, r, y: method.sample(v, r, len(y), labels=y, guidance_scale=1.0)
  else:
    raise ValueError(f"Unknown model {name!r}: use cgan, ddpm, pixelcnn, code_prior or "
                     "memoriser.")
  return fn, result.state.variables()


def classification_accuracy(images: np.ndarray, labels: np.ndarray, test: dict,
                            seed: int = 0) -> float:
  """Trains `classifier_digits`' classifier on (images, labels) only, with its optimizer and
  steps, and returns its accuracy on the real test images."""
  config = config_lib.resolve(common.load_config("classifier_digits"))
  batch_size = config.data.batch_size
  setup = setup_lib.make_setup(config, example={"image": images[:batch_size],
                                                "label": labels[:batch_size]})
  state = setup.init_state({"image": images[:batch_size], "label": labels[:batch_size]})
  step = setup.train_step()
  order = np.random.default_rng(seed)
  batches = []
  while len(batches) * batch_size < config.train.num_steps * batch_size:
    perm = order.permutation(len(images))
    batches += [perm[i:i + batch_size] for i in range(0, len(perm) - batch_size + 1, batch_size)]
  for index in batches[:config.train.num_steps]:
    state, _ = step(state, {"image": images[index], "label": labels[index]})
  params = state.variables()["params"]["classifier"]
  logits = jax.jit(lambda x: setup.method.logits(params, x))(test["image"])
  return float(np.mean(np.argmax(np.asarray(logits), -1) == test["label"]))


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="runs/bench_generated_data")
  parser.add_argument("--models", default="cgan,ddpm,pixelcnn,code_prior,memoriser")
  args = parser.parse_args(argv)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  rows = common.Rows()
  train = common.load_split("digits", "train", ("scale_to_unit",))
  test = common.load_split("digits", "test", ("scale_to_unit",))

  def report(name, images, labels, seconds, check_copies=True):
    tic = time.perf_counter()
    row = {"model": name, "num_images": len(images), "train_s": round(seconds, 1),
           "cas": round(classification_accuracy(images, labels, test), 4)}
    if check_copies:
      check = memorisation.memorisation_report(samples=images, train=train["image"],
                                               test=test["image"])
      pairs = np.stack([images[check.pair_samples], train["image"][check.pair_train]], 1)
      grids.save_image_grid(pairs.reshape(-1, *images.shape[1:]), out / f"pairs_{name}.png",
                            columns=8)
      row.update(copy_fraction=round(check.copy_fraction, 4),
                 median_ratio=round(check.median_ratio, 3), flagged=bool(check.flagged),
                 threshold=round(float(check.threshold), 3))
    rows.emit({**row, "seconds": round(time.perf_counter() - tic, 1)})

  report("real train images", train["image"], train["label"], 0.0, check_copies=False)
  for name in filter(None, args.models.split(",")):
    tic = time.perf_counter()
    fn, variables = train_model(name, out)
    report(name, draw(fn, variables), _labels(), time.perf_counter() - tic)

  wall = time.perf_counter() - start
  rows.emit({"wall_s": round(wall, 1), "backend": jax.default_backend()})
  table = ["| trained on | classification accuracy score (real test) | copy fraction | "
           "median NN distance ratio | flagged |", "|---|---|---|---|---|"]
  for r in rows:
    if "copy_fraction" in r:
      table.append(f"| {r['model']} | {100 * r['cas']:.1f}% | {100 * r['copy_fraction']:.1f}% | "
                   f"{r['median_ratio']:.2f} | {'yes' if r['flagged'] else 'no'} |")
    elif "cas" in r:
      table.append(f"| {r['model']} | {100 * r['cas']:.1f}% | | | |")
  common.write_table(out, table, f"Wall time: {wall:.0f} s.")
  return rows


if __name__ == "__main__":
  main(sys.argv[1:])
