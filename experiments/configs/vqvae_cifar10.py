"""An RQ-VAE on CIFAR-10 (32x32 RGB, 256 levels), once CIFAR-10 is prepared: stage 1 of
two-stage generation.

CIFAR-10 needs a download, which gen_jax never does itself: prepare it once where the network is
reachable (`tfds build cifar10 --file_format=array_record --data_dir=$GEN_JAX_DATA_DIR`), then

    python experiments/main.py --config experiments/configs/vqvae_cifar10.py \
        --workdir runs/vqvae_cifar10

Each image becomes an 8x8 grid of codes (two halvings) with 4 residual levels of one shared
codebook of 512 entries (Lee et al. 2022's RQ-VAE at a small scale: 256 codes an image), EMA
updates and dead-code restarts, decoded to a mixture of 5 discretized logistics per sub-pixel.
Needs an accelerator; not run on the development machines (no network, no CIFAR-10), so no
result is claimed here. Stage 2 is experiments/configs/code_prior_cifar10.py. `:vq` quantizes
with one level instead; `:tiny` runs a few steps of a smaller model, for tests.
"""

import ml_collections

from gen_jax.train.config import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("vqvae")
  c.model.update(quantizer="residual_quantizer", depth=4, shared_codebook=True, num_codes=512,
                 code_dim=64, ema_decay=0.99, dead_code_threshold=1.0,
                 encoder_widths=(128, 256, 256), decoder_widths=(256, 256, 128), downsample=2,
                 likelihood="logistic_mixture", num_mixtures=5)
  c.data.update(name="cifar10", batch_size=128, eval_batch_size=500,
                preprocess=("scale_to_unit",))
  c.optim.update(name="adam", learning_rate=4e-4, schedule="cosine", warmup_steps=1000)
  c.train.update(num_steps=100_000, log_every=500, eval_every=10_000, checkpoint_every=5000)
  args = set(filter(None, arg.split(",")))
  if "vq" in args:
    c.model.update(quantizer="vector_quantizer", depth=1)
  if "tiny" in args:
    c.model.update(num_codes=8, code_dim=4, encoder_widths=(8, 8), decoder_widths=(8, 8),
                   num_mixtures=2)
    c.data.update(batch_size=8, eval_batch_size=16)
    c.train.update(num_steps=2, log_every=1, eval_every=0, checkpoint_every=2,
                   progress_bar=False)
  if args - {"tiny", "vq"}:
    raise ValueError(f"Unknown config argument {arg!r}: use '', 'vq', 'tiny' or 'vq,tiny'.")
  return c
