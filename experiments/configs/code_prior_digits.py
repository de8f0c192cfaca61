"""Stage 2 on the digits: a transformer prior over the codes of a trained VQ-VAE.

Train stage 1 first (experiments/configs/vqvae_digits.py into runs/vqvae_digits), then

    python experiments/main.py --config experiments/configs/code_prior_digits.py \
        --workdir runs/code_prior_digits

The tokenizer's workdir is `config.frozen.tokenizer` (default runs/vqvae_digits); it is restored
and used frozen, and its variables are saved in this run's checkpoints. Samples
(`samples/samples_*.png`) are code grids drawn from the prior with its KV cache, decoded by the
tokenizer; `python experiments/sample.py --workdir runs/code_prior_digits` draws more.
docs/results.md has the measured figures from experiments/benchmarks/vq_digits.py.

`:conditional` conditions on the digit's label (a class start token; samples in class blocks),
dropping it for 10% of the training images so that samples can use classifier-free guidance
(`model.guidance_scale`: 0 unconditional, 1 conditional); `:tiny` runs a few steps of a smaller
model, for tests.
"""

import ml_collections

from gen_jax.train.config import defaults

# The config whose run each frozen part names by default (tests train its `:tiny` variant).
FROZEN_CONFIGS = {"tokenizer": "vqvae_digits"}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("code_prior")
  c.frozen.tokenizer = "runs/vqvae_digits"
  c.model.update(num_layers=4, num_heads=4, d_model=128, d_ff=512, dropout_rate=0.3,
                 positions_2d="learned")
  c.data.update(name="digits", batch_size=64, eval_batch_size=360,
                preprocess=("scale_to_unit",))
  c.optim.update(name="adamw", learning_rate=1e-3, schedule="cosine", warmup_steps=200,
                 grad_clip_norm=1.0, kwargs=dict(weight_decay=1e-2))
  c.train.update(num_steps=1500, log_every=250, eval_every=500, checkpoint_every=1500,
                 num_samples=64)
  args = set(filter(None, arg.split(",")))
  if "conditional" in args:
    c.model.update(label_key="label", num_classes=10, label_dropout=0.1)
  if "tiny" in args:
    c.model.update(num_layers=1, num_heads=2, d_model=16, d_ff=32)
    c.data.update(batch_size=32, eval_batch_size=64)
    c.train.update(num_steps=4, log_every=2, eval_every=0, checkpoint_every=4, num_samples=4,
                   progress_bar=False)
  if args - {"tiny", "conditional"}:
    raise ValueError(f"Unknown config argument {arg!r}: use '', 'conditional', 'tiny' or "
                     "'conditional,tiny'.")
  return c
