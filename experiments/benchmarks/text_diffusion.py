"""Text prompts for diffusion: does a sample match its prompt's class and attributes, against
the guidance weight, for class-attribute combinations seen and held out in training?

    python experiments/benchmarks/text_diffusion.py --out runs/bench_text_diffusion
    python experiments/benchmarks/text_diffusion.py --quick --out runs/bench_text_diffusion_quick

Trains experiments/configs/ddpm_digits_text.py through `train_and_evaluate` (every "thick
seven" and "slanted two" of the training split weighted 0) and the digits classifier of
experiments/benchmarks/common.py, then samples with the EMA parameters (50-step DDIM) for
prompts "a {word} {digit}", each of the six attribute words with each of the ten digits (60
prompts, --per_prompt samples each; the two held-out prompts get --held_out_samples each), at
guidance weights w (0 unconditional, 1 conditional, > 1 guided; Ho & Salimans 2021). Each sample
is scored by

  class       the classifier reads it as the prompt's digit;
  attribute   its measured attribute (`gen_jax.data.captions`, the measurement that wrote the
              training captions, on the sample quantised to 17 grey levels) lies in the third of
              the prompt's digit that the word names;
  both        the two at once.

The reference rate of `attribute` is the share of the test split's images of that digit in the
named third (about 1/3 by construction); `opposite` is the share of samples in the opposite
third (a thick prompt's samples that measure thin). Rows: seen prompts (58), held-out prompts
(2). Prints JSON lines and a Markdown table (also written to --out/table.md), and a grid of the
config's ten sampling prompts (one row each) at each w, labelled with the prompts
(--out/prompts_w{w}.png).
"""

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

from gen_jax.data import captions

import common  # pylint: disable=wrong-import-order

GUIDANCE = (0.0, 1.0, 2.0, 4.0)
WORDS = [w for attribute in captions.ATTRIBUTES for w in captions.WORDS[attribute]]


def held_out_prompts() -> list[str]:
  return [captions.caption(label, [word]) for word, label in captions.HELD_OUT]


def eval_prompts(per_prompt: int, held_out_samples: int) -> list[str]:
  """One prompt per sample [n]: "a {word} {digit}" for every word and digit."""
  held = set(held_out_prompts())
  out = []
  for label in range(captions.NUM_CLASSES):
    for word in WORDS:
      prompt = captions.caption(label, [word])
      out += [prompt] * (held_out_samples if prompt in held else per_prompt)
  return out


def reference_rates(test_images: np.ndarray, test_labels: np.ndarray) -> dict[str, float]:
  """prompt -> share of the test images of its digit in the third its word names."""
  found = captions.attributes_of_samples(test_images, test_labels)
  rates = {}
  for label in range(captions.NUM_CLASSES):
    for word in WORDS:
      prompt = captions.caption(label, [word])
      (attribute, bucket), = captions.parse_caption(prompt)[1].items()
      rates[prompt] = float(np.mean(found[test_labels == label,
                                          captions.ATTRIBUTES.index(attribute)] == bucket))
  return rates


def score(samples: np.ndarray, prompts: list[str], reference) -> dict[str, np.ndarray]:
  """Per-sample class, attribute, both and opposite-third indicators."""
  out = captions.matches(samples, prompts)
  labels = out["labels"]
  predicted = np.argmax(reference.logits(samples), -1)
  opposite = np.zeros(len(prompts), bool)
  for i, prompt in enumerate(prompts):
    (attribute, bucket), = captions.parse_caption(prompt)[1].items()
    opposite[i] = out["buckets"][i, captions.ATTRIBUTES.index(attribute)] == 2 - bucket
  klass = predicted == labels
  attribute = out["attribute_match"] == 1.0
  return {"class": klass, "attribute": attribute, "both": klass & attribute,
          "opposite": opposite}


def save_prompt_grid(images: np.ndarray, prompts: list[str], columns: int, path: Path,
                     title: str) -> Path:
  """Rows of `columns` images [rows * columns, h, w, 1] in [-1, 1], each row labelled with its
  prompt."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  rows = len(prompts)
  fig, axes = plt.subplots(rows, 1, figsize=(0.55 * columns + 2.6, 0.62 * rows + 0.4), dpi=100)
  for r, (ax, prompt) in enumerate(zip(np.atleast_1d(axes), prompts)):
    row = np.clip(images[r * columns:(r + 1) * columns, ..., 0], -1, 1)
    strip = np.concatenate([np.pad(im, 1, constant_values=-1) for im in row], axis=1)
    ax.imshow(strip, cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_ylabel(prompt, rotation=0, ha="right", va="center", fontsize=8)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path)
  plt.close(fig)
  return path


def table(rows: list[dict]) -> list[str]:
  lines = ["| w | prompts | samples | class % | attribute % (test images) | both % | "
           "opposite third % |", "|---|---|---|---|---|---|---|"]
  for r in rows:
    if r.get("part") != "match":
      continue
    lines.append(f"| {r['w']:g} | {r['group']} | {r['num']} | {100 * r['class']:.1f} | "
                 f"{100 * r['attribute']:.1f} ({100 * r['reference']:.1f}) | "
                 f"{100 * r['both']:.1f} | {100 * r['opposite']:.1f} |")
  return lines


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", type=Path, default=Path("runs/bench_text_diffusion"))
  parser.add_argument("--quick", action="store_true",
                      help="a quarter of the training steps and 8 samples per prompt")
  parser.add_argument("--steps", type=int, default=0, help="override train.num_steps")
  parser.add_argument("--per_prompt", type=int, default=20)
  parser.add_argument("--held_out_samples", type=int, default=100)
  parser.add_argument("--guidance", default=",".join(f"{w:g}" for w in GUIDANCE))
  args = parser.parse_args(argv)
  if args.quick:
    args.steps = args.steps or 3000 // 4
    args.per_prompt, args.held_out_samples = 8, 24
  out = args.out
  out.mkdir(parents=True, exist_ok=True)
  rows = common.Rows()
  start = time.perf_counter()

  reference = common.digits_reference(out / "classifier")
  rows.emit({"part": "classifier", "test_accuracy": reference.test_accuracy,
             "train_s": round(reference.train_s, 1)})
  overrides = {"train.progress_bar": False, "train.async_checkpoints": False}
  if args.steps:
    overrides["train.num_steps"] = args.steps
  method, result, seconds = common.train("ddpm_digits_text", out / "text", overrides)
  variables = result.state.variables()
  rows.emit({"part": "train", "train_steps": int(result.state.step), "train_s": round(seconds, 1),
             "test_loss": result.eval_metrics.get("loss"),
             "test_uncond_loss": result.eval_metrics.get("uncond_loss")})

  prompts = eval_prompts(args.per_prompt, args.held_out_samples)
  tokens = method.conditioning.encode(prompts)
  reference_rate = reference_rates(reference.test_images, reference.test_labels)
  held = set(held_out_prompts())
  groups = {"seen": np.array([p not in held for p in prompts]),
            "held out": np.array([p in held for p in prompts])}
  groups.update({f"held out: {p}": np.array([q == p for q in prompts]) for p in sorted(held)})
  sample_fn = jax.jit(lambda v, r, c, w: method.sample(v, r, len(prompts), labels=c,
                                                       guidance_scale=w)["samples"])
  grid_prompts = list(method.conditioning.prompts)
  grid_fn = jax.jit(lambda v, r, w: method.sample(v, r, 10 * len(grid_prompts),
                                                  guidance_scale=w)["samples"])
  for w in [float(v) for v in args.guidance.split(",")]:
    tic = time.perf_counter()
    samples = np.asarray(sample_fn(variables, jax.random.PRNGKey(11), tokens, w))
    sample_s = time.perf_counter() - tic
    scores = score(samples, prompts, reference)
    for name, mask in groups.items():
      rows.emit({"part": "match", "w": w, "group": name, "num": int(mask.sum()),
                 **{k: float(np.mean(v[mask])) for k, v in scores.items()},
                 "reference": float(np.mean([reference_rate[p] for p, m in zip(prompts, mask)
                                             if m])),
                 "sample_s": round(sample_s, 1)})
    grid = np.asarray(grid_fn(variables, jax.random.PRNGKey(12), w))
    save_prompt_grid(grid, grid_prompts, 10, out / f"prompts_w{w:g}.png",
                     f"ddpm_digits_text, DDIM {method.sample_steps}, w = {w:g}")

  wall = time.perf_counter() - start
  rows.emit({"part": "summary", "wall_s": round(wall, 1), "backend": jax.default_backend()})
  command = " ".join(["python", Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
  common.write_table(out, [f"`{command}`", "", *table(rows)], f"Wall time: {wall:.0f} s.")
  return rows


if __name__ == "__main__":
  main(sys.argv[1:])
