"""A classifier's gradient on the digits: accuracy under FGSM and PGD for a plainly and an
adversarially trained classifier, and images made by gradient ascent on a class score.

    python experiments/benchmarks/adversarial_digits.py [--out runs/bench_adversarial_digits]

1. Trains `classifier_digits` and `classifier_digits:adversarial` (PGD-7 examples, L-inf radius
   0.3; Madry et al. 2018) through the real loop, then measures on the whole test split
   (360 images, in [-1, 1]) the clean accuracy and the accuracy under FGSM and under untargeted
   PGD with a random start (--pgd_steps steps of 2.5 epsilon / steps) in L-inf balls of radius
   0.1, 0.2, 0.3 and 0.5 (one grey level of the digits is 0.125 in these units) and in L2 balls
   of radius 0.5, 1 and 2 (per 8x8 image).
2. Runs `class_ascent_digits` (ten images from faint noise, image i ascending the logit of digit
   i) against each classifier, and `class_ascent_digits:data` (each image from a real training
   digit of another class, ascending the log-probability) against the plain one; reports the
   classifier's mean probability of the target class, the fraction classified as the target and
   the root mean square change, and draws `class_ascent.png`: the start and end images of each
   run with the classifier's probability of the target class under each image.

Prints one JSON line per result and a Markdown table; writes `table.md` under --out.
"""

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from gen_jax import attacks

import common  # pylint: disable=wrong-import-order

LINF = (0.1, 0.2, 0.3, 0.5)
L2 = (0.5, 1.0, 2.0)


def accuracy_under(attack, logits_fn, images, labels, chunk=120) -> float:
  """The accuracy of `logits_fn` on `attack(images, labels, rng)`, in chunks."""
  attack = jax.jit(attack)
  correct = []
  for i in range(0, len(images), chunk):
    x, y = jnp.asarray(images[i:i + chunk]), jnp.asarray(labels[i:i + chunk])
    adv = attack(x, y, jax.random.PRNGKey(i))
    correct.append(np.asarray(jnp.argmax(logits_fn(adv), -1) == y))
  return float(np.mean(np.concatenate(correct)))


def robustness(name, method, variables, images, labels, pgd_steps, emit) -> None:
  params = variables["params"]["classifier"]
  logits_fn = jax.jit(lambda x: method.logits(params, x))
  clean = accuracy_under(lambda x, y, r: x, logits_fn, images, labels)
  emit({"classifier": name, "attack": "none", "accuracy": round(clean, 4)})
  for norm, radii in (("linf", LINF), ("l2", L2)):
    for eps in radii:
      if norm == "linf":
        fgsm = accuracy_under(lambda x, y, r, e=eps: attacks.fgsm(logits_fn, x, y, epsilon=e),
                              logits_fn, images, labels)
        emit({"classifier": name, "attack": "fgsm", "norm": norm, "epsilon": eps,
              "accuracy": round(fgsm, 4)})
      pgd = accuracy_under(
          lambda x, y, r, e=eps, n=norm: attacks.pgd(logits_fn, x, y, r, epsilon=e,
                                                     step_size=2.5 * e / pgd_steps,
                                                     num_steps=pgd_steps, norm=n),
          logits_fn, images, labels)
      emit({"classifier": name, "attack": "pgd", "norm": norm, "epsilon": eps,
            "steps": pgd_steps, "accuracy": round(pgd, 4)})


def ascent(spec: str, workdir: Path, classifier: Path, emit) -> dict:
  method, result, seconds = common.train(
      spec, workdir, {"train.progress_bar": False, "frozen.classifier": str(classifier.resolve())})
  variables = result.state.variables()
  start = {"params": {"image": variables["model_state"]["start"]},
           "model_state": variables["model_state"]}
  before, after = method.image_metrics(start), method.image_metrics(variables)
  row = {"run": spec, "classifier": classifier.name, "train_s": round(seconds, 1),
         "start_target_prob": round(float(before["target_prob"].mean()), 4),
         "target_prob": round(float(after["target_prob"].mean()), 4),
         "target_rate": round(float(after["target_classified"].mean()), 4),
         "rms_change": round(float(np.sqrt(np.mean(np.asarray(after["change"]) ** 2))), 4)}
  emit(row)
  rng = jax.random.PRNGKey(0)
  return {"title": f"{spec} against {classifier.name}",
          "start": np.asarray(method.sample(start, rng, method.num_images)),
          "end": np.asarray(method.sample(variables, rng, method.num_images)),
          "start_prob": np.asarray(before["target_prob"]),
          "end_prob": np.asarray(after["target_prob"]),
          "targets": np.asarray(method.targets)}


def ascent_figure(runs: list[dict], path: Path) -> None:
  """Each run's start and end images, one row each, with the target's probability above each."""
  columns = len(runs[0]["targets"])
  fig = Figure(figsize=(columns * 0.9, 2.4 * len(runs)), dpi=100, layout="constrained")
  for run, sub in zip(runs, fig.subfigures(len(runs), 1)):
    sub.suptitle(run["title"], fontsize=8)
    axes = sub.subplots(2, columns)
    for row, (key, prob) in enumerate((("start", "start_prob"), ("end", "end_prob"))):
      for i in range(columns):
        ax = axes[row, i]
        ax.imshow(run[key][i, :, :, 0], cmap="gray", vmin=-1, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"p({run['targets'][i]})={run[prob][i]:.2f}", fontsize=6)
      axes[row, 0].set_ylabel(key, fontsize=7)
  fig.savefig(path)


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="runs/bench_adversarial_digits")
  parser.add_argument("--pgd_steps", type=int, default=20)
  args = parser.parse_args(argv)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  rows = common.Rows()
  test = common.load_split("digits", "test", ("scale_to_unit",))

  workdirs = {}
  for spec, name in (("classifier_digits", "classifier"),
                     ("classifier_digits:adversarial", "classifier_adversarial")):
    method, result, seconds = common.train(spec, out / name, {"train.progress_bar": False})
    rows.emit({"classifier": spec, "train_s": round(seconds, 1), "steps": int(result.state.step)})
    robustness(spec, method, result.state.variables(), test["image"], test["label"],
               args.pgd_steps, rows.emit)
    workdirs[name] = out / name

  runs = [ascent("class_ascent_digits", out / "ascent_noise", workdirs["classifier"], rows.emit),
          ascent("class_ascent_digits", out / "ascent_noise_adversarial",
                 workdirs["classifier_adversarial"], rows.emit),
          ascent("class_ascent_digits:data", out / "ascent_data", workdirs["classifier"],
                 rows.emit)]
  ascent_figure(runs, out / "class_ascent.png")

  wall = time.perf_counter() - start
  rows.emit({"wall_s": round(wall, 1), "backend": jax.default_backend()})
  attacks_ = [("none", None, None)] + [("fgsm", "linf", e) for e in LINF] + [
      ("pgd", "linf", e) for e in LINF] + [("pgd", "l2", e) for e in L2]
  table = ["| attack | ball | radius | " + " | ".join(
      s for s in ("classifier_digits", "classifier_digits:adversarial")) + " |",
           "|---|---|---|---|---|"]
  for attack, norm, eps in attacks_:
    cells = [next(f"{100 * r['accuracy']:.1f}%" for r in rows
                  if r.get("classifier") == c and r.get("attack") == attack
                  and r.get("norm") == norm and r.get("epsilon") == eps)
             for c in ("classifier_digits", "classifier_digits:adversarial")]
    table.append(f"| {attack} | {norm or ''} | {eps if eps is not None else ''} | "
                 f"{' | '.join(cells)} |")
  table += ["", "| ascent | classifier | p(target) at start | p(target) at end | classified "
            "as target | RMS change |", "|---|---|---|---|---|---|"]
  for r in rows:
    if "run" in r:
      table.append(f"| {r['run']} | {r['classifier']} | {r['start_target_prob']:.3f} | "
                   f"{r['target_prob']:.3f} | {100 * r['target_rate']:.0f}% | "
                   f"{r['rms_change']:.3f} |")
  common.write_table(out, table, f"Wall time: {wall:.0f} s.")
  return rows


if __name__ == "__main__":
  main(sys.argv[1:])
