"""Stage 2 of a frozen captioner: an image encoder trained through a frozen byte language model
so that it continues with the digit's name (Frozen, Tsimpoukelli et al. 2021).

Train the language model first (experiments/configs/caption_lm_digits.py into
runs/caption_lm_digits, the default of config.frozen.lm; another workdir with
--config.frozen.lm=PATH), then

    python experiments/main.py --config experiments/configs/frozen_captioner_digits.py \
        --workdir runs/frozen_captioner_digits

The encoder (the digits classifier's convolutional trunk, a linear head to 4 vectors of the
model's width 64) is the only thing trained; the language model's parameters stay as stage 1
saved them. The eval rows of metrics.jsonl give the test captions' bits per byte and the caption
accuracy of greedy decoding (`accuracy`) and of a beam search of 4 (`beam_accuracy`);
`samples/` holds training digits as a PNG grid and their greedy captions as text.
experiments/benchmarks/frozen_captioning.py trains both stages and compares with a classifier
(docs/results.md). `:tiny` runs a few steps, for tests.
"""

import ml_collections

from gen_jax.train.config import defaults

# The config whose run each frozen part names by default (tests train its `:tiny` variant).
FROZEN_CONFIGS = {"lm": "caption_lm_digits"}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("frozen_captioner")
  c.frozen.lm = "runs/caption_lm_digits"
  c.model.update(prefix_length=4, widths=(32, 64), feature_dim=128, beam_size=4, num_shown=16)
  c.data.update(name="digits", batch_size=128, preprocess=("scale_to_unit",
                                                           "digit_name_captions"))
  c.optim.update(name="adamw", learning_rate=3e-3, schedule="cosine", warmup_steps=50,
                 kwargs=dict(weight_decay=1e-4))
  c.train.update(num_steps=1000, log_every=100, eval_every=500, checkpoint_every=500,
                 num_samples=16)
  if arg == "tiny":
    c.model.update(prefix_length=2, widths=(8, 16), feature_dim=16, beam_size=2, num_shown=4)
    c.data.update(batch_size=32)
    c.train.update(num_steps=3, log_every=1, eval_every=0, checkpoint_every=3, num_samples=4,
                   progress_bar=False)
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}: use '' or 'tiny'.")
  return c
