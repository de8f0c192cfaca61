"""A convnet classifier on the bundled 8x8 `digits` (1,437 train / 360 test images).

It proves the training backbone and provides the feature extractor for Frechet distances.

    python experiments/main.py --config experiments/configs/classifier_digits.py \
        --workdir runs/classifier_digits

Expected: test accuracy about 0.975 after 1,000 steps (about 10 s on a 2-core CPU).
`:adversarial` trains on PGD examples instead (L-inf radius 0.3 in [-1, 1] units, about 2.4 of
the 16 grey-level steps; 7 steps; Madry et al. 2018) and also reports the test accuracy under
that attack; experiments/benchmarks/adversarial_digits.py measures both classifiers under FGSM
and PGD. `:tiny` runs a few steps of a smaller model, for tests (`:adversarial,tiny`).
"""

import ml_collections

from gen_jax.train.config import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("classifier")
  c.model.update(num_classes=10, widths=(32, 64), feature_dim=128)
  c.data.update(name="digits", batch_size=128, preprocess=("scale_to_unit",))
  c.optim.update(name="adamw", learning_rate=3e-3, schedule="cosine", warmup_steps=50,
                 kwargs=dict(weight_decay=1e-4))
  # Ten steps per device call: the step is short enough (2 ms) for the per-call host work to
  # show (docs/performance.md). It trains the same steps as one per call.
  c.train.update(num_steps=1000, log_every=100, eval_every=500, checkpoint_every=500,
                 steps_per_call=10)
  args = set(filter(None, arg.split(",")))
  if "adversarial" in args:
    c.model.update(adversarial_epsilon=0.3, adversarial_norm="linf", adversarial_steps=7)
  if "tiny" in args:
    c.model.update(widths=(8, 16), feature_dim=16, adversarial_steps=2)
    c.data.batch_size = 32
    c.train.update(num_steps=6, log_every=2, eval_every=0, checkpoint_every=3,
                   steps_per_call=1, progress_bar=False)
  if args - {"adversarial", "tiny"}:
    raise ValueError(f"Unknown config argument {arg!r}: use '', 'adversarial', 'tiny' or "
                     "'adversarial,tiny'.")
  return c
