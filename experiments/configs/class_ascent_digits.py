"""Gradient ascent on the digits classifier's class scores: images made by its gradient.

Train the classifier first (experiments/configs/classifier_digits.py into
runs/classifier_digits), then

    python experiments/main.py --config experiments/configs/class_ascent_digits.py \
        --workdir runs/class_ascent_digits

Ten images start from faint noise and image i ascends the logit of digit i by plain gradient
steps (x <- x + eta grad_x logit_i(x), eta = optim.learning_rate). The eval rows of
metrics.jsonl give the classifier's mean probability of each image's target class
(`target_prob`), the fraction it classifies as their target (`target_rate`) and how far the
images moved (`rms_change`); `samples/` shows them: confidently classified, still noise.
`:data` starts each image from a real digit of another class instead and ascends the
log-probability (whose gradient fades once the classifier is sure): the digit changes little
while the classifier's decision flips. docs/results.md has the measured figures from
experiments/benchmarks/adversarial_digits.py. `:tiny` runs a few steps, for tests.
"""

import ml_collections

from gen_jax.train.config import defaults

# The config whose run each frozen part names by default (tests train its `:tiny` variant).
FROZEN_CONFIGS = {"classifier": "classifier_digits"}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("class_ascent")
  c.frozen.classifier = "runs/classifier_digits"
  c.model.update(num_images=10, target_class=-1, score="logit", start="noise", noise_std=0.1)
  c.data.update(name="digits", batch_size=64, eval_batch_size=64, preprocess=("scale_to_unit",))
  c.optim.update(name="sgd", learning_rate=0.01, schedule="constant", warmup_steps=0,
                 grad_clip_norm=0.0)
  c.train.update(num_steps=100, log_every=25, eval_every=50, checkpoint_every=100,
                 num_samples=10)
  args = set(filter(None, arg.split(",")))
  if "data" in args:
    c.model.update(start="data", score="log_prob")
  if "tiny" in args:
    c.model.num_images = 4
    c.data.update(batch_size=32, eval_batch_size=32)
    c.train.update(num_steps=3, log_every=1, eval_every=0, checkpoint_every=3, num_samples=4,
                   progress_bar=False)
  if args - {"data", "tiny"}:
    raise ValueError(f"Unknown config argument {arg!r}: use '', 'data', 'tiny' or 'data,tiny'.")
  return c
