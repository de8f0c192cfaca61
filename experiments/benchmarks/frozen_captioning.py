"""A frozen language model that captions digits (Frozen, Tsimpoukelli et al. 2021) against a
plain classifier of the same encoder trained on the labels for the same steps.

    python experiments/benchmarks/frozen_captioning.py [--out runs/bench_frozen_captioning] \
        [--seeds 3]

1. Stage 1: trains `caption_lm_digits`, a byte language model of the training digits' name
   captions ("\\na seven\\n"), through the real loop.
2. Stage 2, once per seed: trains `frozen_captioner_digits` on that frozen model (only the image
   encoder learns: the classifier's convolutional trunk with a linear head to 4 embeddings), and
   checks that the language model's parameters are bitwise those stage 1 saved.
3. Once per seed: trains `classifier_digits` with the same trunk (widths 32, 64, features 128),
   batch, optimizer and number of steps, with a linear head to the 10 classes.

Reports, on the whole test split (360 digits): the caption accuracy of greedy decoding and of a
beam search of 4 (the decoded caption equals the true one byte for byte), the share of greedy
captions that are one of the ten captions (well formed, right or wrong), the captions' bits per
byte, the classifier's accuracy, and the training times. Writes `test_captions.png` (the first
40 test digits) and `test_captions.txt` (their greedy captions, row by row) for seed 0, and
`table.md`, under --out. A rerun into the same --out restores the finished runs instead of
training them (use a fresh folder to time them).
"""

import argparse
import time
from pathlib import Path

import jax
import numpy as np

from gen_jax import data as data_lib
from gen_jax.viz import grids

import common  # pylint: disable=wrong-import-order

PREPROCESS = ("scale_to_unit", "digit_name_captions")


def test_split() -> dict[str, np.ndarray]:
  """The whole test split with name captions, in order, padding removed."""
  batches = list(data_lib.load("digits", "test", 512, 0, shuffle=False, num_epochs=1,
                               drop_remainder=False, preprocess=PREPROCESS))
  valid = np.concatenate([b["valid"] for b in batches])
  return {k: np.concatenate([b[k] for b in batches])[valid]
          for k in ("image", "label", "name_caption", "name_caption_mask")}


def text_of(row: np.ndarray, eos_id: int) -> str:
  """The bytes of a decoded caption up to its end byte, as text."""
  row = list(np.asarray(row))
  end = row.index(eos_id) if eos_id in row else len(row)
  return bytes(int(b) for b in row[:end]).decode("utf-8", errors="replace")


def same_bits(a, b) -> bool:
  return all(np.array_equal(np.asarray(x), np.asarray(y)) and np.asarray(x).dtype ==
             np.asarray(y).dtype for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", type=Path, default=Path("runs/bench_frozen_captioning"))
  parser.add_argument("--seeds", type=int, default=3)
  args = parser.parse_args()
  args.out.mkdir(parents=True, exist_ok=True)
  rows = common.Rows()
  quiet = {"train.progress_bar": False}

  _, lm_result, lm_s = common.train("caption_lm_digits", args.out / "caption_lm", quiet)
  saved_lm = lm_result.state.variables()["params"]
  rows.emit({"run": "caption_lm_digits", "test_bits_per_byte":
             round(lm_result.eval_metrics["bits_per_token"], 4), "train_s": round(lm_s, 1)})

  test = test_split()
  truths = [text_of(row[1:], 10) for row in test["name_caption"]]
  names = set(truths)
  results = []
  for seed in range(args.seeds):
    method, result, cap_s = common.train(
        "frozen_captioner_digits", args.out / f"captioner_{seed}",
        {**quiet, "seed": seed, "frozen.lm": str((args.out / "caption_lm").resolve())})
    variables = result.state.variables()
    unchanged = same_bits(variables["model_state"]["frozen"]["lm"]["params"], saved_lm)
    caption_fn = jax.jit(lambda v, x, c: method.caption(v, x, c[:, :1], max_new_tokens=11))
    tic = time.perf_counter()
    greedy = np.asarray(caption_fn(variables, test["image"], test["name_caption"]))
    caption_s = time.perf_counter() - tic
    texts = [text_of(row, method.eos_id) for row in greedy]
    well_formed = float(np.mean([t in names for t in texts]))
    _, clf_result, clf_s = common.train(
        "classifier_digits", args.out / f"classifier_{seed}",
        {**quiet, "seed": seed, "train.num_steps": 1000, "data.batch_size": 128})
    row = rows.emit({
        "seed": seed,
        "greedy_accuracy": round(result.eval_metrics["accuracy"], 4),
        "beam4_accuracy": round(result.eval_metrics["beam_accuracy"], 4),
        "well_formed": round(well_formed, 4),
        "bits_per_byte": round(result.eval_metrics["bits_per_byte"], 4),
        "classifier_accuracy": round(clf_result.eval_metrics["accuracy"], 4),
        "lm_unchanged": unchanged, "captioner_train_s": round(cap_s, 1),
        "greedy_captions_of_360_s": round(caption_s, 2), "classifier_train_s": round(clf_s, 1)})
    results.append(row)
    if seed == 0:
      grids.save_image_grid(test["image"][:40], args.out / "test_captions.png", columns=8)
      lines = [f"{i:2d} true {truth!r:12} greedy {text!r}"
               for i, (truth, text) in enumerate(zip(truths[:40], texts[:40]))]
      (args.out / "test_captions.txt").write_text("\n".join(lines) + "\n")
      wrong = [(t, g) for t, g in zip(truths, texts) if t != g]
      rows.emit({"seed": 0, "wrong_greedy_captions": wrong[:12]})

  mean = lambda key: float(np.mean([r[key] for r in results]))
  span = lambda key: (f"{mean(key):.4f} ({min(r[key] for r in results):.4f} - "
                      f"{max(r[key] for r in results):.4f})")
  lines = [
      "| model (1,000 steps, batch 128, same conv trunk) | test accuracy, mean (min - max) "
      f"over {args.seeds} seeds | train s (mean) |",
      "|---|---|---|",
      f"| frozen LM captioner, greedy caption | {span('greedy_accuracy')} | "
      f"{mean('captioner_train_s'):.1f} |",
      f"| frozen LM captioner, beam 4 caption | {span('beam4_accuracy')} | |",
      f"| plain classifier (linear head on the labels) | {span('classifier_accuracy')} | "
      f"{mean('classifier_train_s'):.1f} |",
  ]
  footer = (f"Stage 1 (caption LM, 300 steps): {lm_result.eval_metrics['bits_per_token']:.4f} "
            f"bits/byte on the test captions, {lm_s:.1f} s. Captioner: "
            f"{mean('bits_per_byte'):.4f} bits/byte on the test captions, well-formed greedy "
            f"captions {span('well_formed')}; language model bitwise unchanged in every run: "
            f"{all(r['lm_unchanged'] for r in results)}.")
  common.write_table(args.out, lines, footer)


if __name__ == "__main__":
  main()
