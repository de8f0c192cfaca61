"""Stage 2 on CIFAR-10: a transformer prior over a trained RQ-VAE's codes, once CIFAR-10 is
prepared (see experiments/configs/vqvae_cifar10.py).

    python experiments/main.py --config experiments/configs/code_prior_cifar10.py \
        --workdir runs/code_prior_cifar10

The tokenizer's workdir is `config.frozen.tokenizer` (default runs/vqvae_cifar10): 8x8 positions
of 4 residual codes, 256 tokens an image, read position by position and depth within each (the
RQ-Transformer's order, here with one transformer over the flattened sequence). Needs an
accelerator; not run on the development machines, so no result is claimed here. `:conditional`
conditions on the class, dropped for 10% of the images so that samples can use classifier-free
guidance (`model.guidance_scale`); `:tiny` runs a few steps of a smaller model, for tests.
"""

import ml_collections

from gen_jax.train.config import defaults

# The config whose run each frozen part names by default (tests train its `:tiny` variant).
FROZEN_CONFIGS = {"tokenizer": "vqvae_cifar10"}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("code_prior")
  c.frozen.tokenizer = "runs/vqvae_cifar10"
  c.model.update(num_layers=8, num_heads=8, d_model=512, d_ff=2048, dropout_rate=0.1)
  c.data.update(name="cifar10", batch_size=64, eval_batch_size=500,
                preprocess=("scale_to_unit",))
  c.optim.update(name="adamw", learning_rate=3e-4, schedule="cosine", warmup_steps=2000,
                 grad_clip_norm=1.0, kwargs=dict(weight_decay=1e-2))
  c.train.update(num_steps=100_000, log_every=500, eval_every=10_000, checkpoint_every=5000,
                 num_samples=64)
  args = set(filter(None, arg.split(",")))
  if "conditional" in args:
    c.model.update(label_key="label", num_classes=10, label_dropout=0.1)
  if "tiny" in args:
    c.model.update(num_layers=1, num_heads=2, d_model=16, d_ff=32)
    c.data.update(batch_size=8, eval_batch_size=16)
    c.train.update(num_steps=2, log_every=1, eval_every=0, checkpoint_every=2, num_samples=2,
                   progress_bar=False)
  if args - {"tiny", "conditional"}:
    raise ValueError(f"Unknown config argument {arg!r}: use '', 'conditional', 'tiny' or "
                     "'conditional,tiny'.")
  return c
