"""Stage 2 on MNIST: a transformer prior over the 7x7 codes of a trained vqvae_mnist run, once
MNIST is prepared (see experiments/configs/vqvae_mnist.py).

    python experiments/main.py --config experiments/configs/code_prior_mnist.py \
        --workdir runs/code_prior_mnist

The tokenizer's workdir is `config.frozen.tokenizer` (default runs/vqvae_mnist). Not run on the
development machines (no network, no MNIST), so no result is claimed here. `:conditional`
conditions on the label, dropped for 10% of the images so that samples can use classifier-free
guidance (`model.guidance_scale`); `:tiny` runs a few steps of a smaller model, for tests.
"""

import ml_collections

from gen_jax.train.config import defaults

# The config whose run each frozen part names by default (tests train its `:tiny` variant).
FROZEN_CONFIGS = {"tokenizer": "vqvae_mnist"}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("code_prior")
  c.frozen.tokenizer = "runs/vqvae_mnist"
  c.model.update(num_layers=6, num_heads=8, d_model=256, d_ff=1024, dropout_rate=0.1)
  c.data.update(name="mnist", batch_size=128, eval_batch_size=500,
                preprocess=("scale_to_unit",))
  c.optim.update(name="adamw", learning_rate=5e-4, schedule="cosine", warmup_steps=1000,
                 grad_clip_norm=1.0, kwargs=dict(weight_decay=1e-2))
  c.train.update(num_steps=50_000, log_every=500, eval_every=5000, checkpoint_every=5000,
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
