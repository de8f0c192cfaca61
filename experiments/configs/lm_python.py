"""A byte-level GPT-style language model on the bundled `python_source` corpus (the standard
library's .py files; every 20th file held out).

    python experiments/main.py --config experiments/configs/lm_python.py --workdir runs/lm_python
    python experiments/sample.py --workdir runs/lm_python --prompt "def " --decode sample

Expected: see the README's language-model table (bits per byte on the whole held-out split,
measured by experiments/benchmarks/lm_python.py against xz). `:tiny` is a few steps of a tiny
model, for tests.
"""

import ml_collections

from gen_jax.train.config import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("autoregressive")
  # Rotary positions (with RMSNorm) were far ahead at 1,000 steps (1.71 bits/byte against 1.98)
  # but behind at step 2,668 of 4,000 (1.480 against 1.374): see the README.
  c.model.update(num_layers=4, num_heads=4, d_model=128, d_ff=512, max_len=256,
                 positions="learned")
  # Windows of max_len + 1 bytes: the model reads 256 and predicts the next byte at each.
  # Evaluation windows start every 128 bytes, so every held-out byte after the first window
  # is predicted from at least 128 bytes of context.
  c.data.update(name="python_source", batch_size=16, seq_len=257, eval_batch_size=64,
                eval_stride=128)
  c.optim.update(name="adamw", learning_rate=2e-3, schedule="cosine", warmup_steps=200,
                 grad_clip_norm=1.0, kwargs=dict(b2=0.95, weight_decay=0.01))
  # 4,000 steps: 13.3 minutes of training on the 2-core CPU, 14.7 with six evaluations.
  c.train.update(num_steps=4000, log_every=100, eval_every=2000, checkpoint_every=1000,
                 num_samples=4)
  if arg == "tiny":
    c.model.update(num_layers=1, num_heads=2, d_model=16, d_ff=32, max_len=32,
                   sample_length=8)
    c.data.update(name="python_source/tiny", batch_size=4, seq_len=33, eval_batch_size=256,
                  eval_stride=16)
    c.train.update(num_steps=4, log_every=2, eval_every=0, checkpoint_every=2, num_samples=2,
                   progress_bar=False)
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}: use '' or 'tiny'.")
  return c
