"""Prefix tuning (Li & Liang 2021) of the frozen byte-level LM of `lm_python` towards the
standard library's test files, which that LM never saw (`python_source` leaves test folders out;
`python_source/tests` holds them, held out by the same every-20th-file rule).

Train the LM first (experiments/configs/lm_python.py into runs/lm_python), then

    python experiments/main.py --config experiments/configs/prefix_tuning_python.py \
        --workdir runs/prefix_tuning_python
    python experiments/sample.py --workdir runs/prefix_tuning_python

The LM's workdir is `config.frozen.lm` (default runs/lm_python); it is restored and used frozen,
and only the prefix (10 key/value pairs per layer, through the MLP reparameterisation) trains.
Held-out bits/byte on the test files are logged against the step; docs/results.md has the
measured figures (experiments/benchmarks/prefix_tuning.py: no prefix, the prefix and full
fine-tuning for the same steps, and how often samples write tests).

`:all` fine-tunes every LM weight as well (the baseline); `:tiny` runs a few steps over a tiny
LM, for tests. Several control codes: train the first run with `model.num_prefixes = 2` already
(the table's size is fixed), then a second run with `model.num_prefixes = 2`,
`model.train_code = 1`, a dataset for that code, and `frozen.lm` set to the first run's workdir,
which then lends its LM and code 0; `model.sample_code` picks the code its samples use.
"""

import ml_collections

from gen_jax.train.config import defaults

# The config whose run each frozen part names by default (tests train its `:tiny` variant).
FROZEN_CONFIGS = {"lm": "lm_python"}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("prefix_tuning")
  c.frozen.lm = "runs/lm_python"
  c.model.update(prefix_length=10, num_prefixes=1, train_code=0, sample_code=0, prefix_dim=64,
                 prefix_hidden=256, tune="prefix", sample_prompt="def ", sample_length=192,
                 decoder="sampling", temperature=0.8, top_k=0, top_p=0.95)
  # The LM reads 256 positions: the prefix takes 10, the windows 246 + the next byte.
  c.data.update(name="python_source/tests", batch_size=8, seq_len=247, eval_batch_size=64,
                eval_stride=0)
  c.optim.update(name="adamw", learning_rate=3e-3, schedule="cosine", warmup_steps=50,
                 grad_clip_norm=1.0, kwargs=dict(b2=0.95, weight_decay=0.0))
  c.train.update(num_steps=600, log_every=50, eval_every=0, checkpoint_every=600,
                 num_samples=8, cpu_async_dispatch=False)
  args = set(filter(None, arg.split(",")))
  if "all" in args:
    # Full fine-tuning: every weight, at a tenth of the prefix's learning rate.
    c.model.update(tune="all")
    c.optim.update(learning_rate=3e-4)
  if "tiny" in args:
    c.model.update(prefix_length=4, prefix_dim=8, prefix_hidden=16, sample_length=8)
    c.data.update(name="python_source/tests_tiny", batch_size=4, seq_len=29,
                  eval_batch_size=256, eval_stride=16)
    c.train.update(num_steps=4, log_every=2, eval_every=0, checkpoint_every=2, num_samples=2,
                   progress_bar=False, cpu_async_dispatch=True)
  if args - {"tiny", "all"}:
    raise ValueError(f"Unknown config argument {arg!r}: use '', 'all', 'tiny' or 'all,tiny'.")
  return c
