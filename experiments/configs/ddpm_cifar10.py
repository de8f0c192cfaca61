"""A diffusion model on CIFAR-10 (32x32x3), once CIFAR-10 is prepared.

CIFAR-10 needs a download, which gen_jax never does itself: prepare it once where the network
is reachable (`tfds build cifar10 --file_format=array_record --data_dir=$GEN_JAX_DATA_DIR`),
then

    python experiments/main.py --config experiments/configs/ddpm_cifar10.py \
        --workdir runs/ddpm_cifar10

A U-Net without attention (widths 64, 128, 128, 128 at 32, 16, 8 and 4 pixels, two residual
blocks per level, dropout 0.1), eps prediction, DDPM's linear schedule (T = 1000), EMA 0.9999,
samples from 100-step DDIM; a reduced version of Ho et al.'s CIFAR-10 model (which has attention
at 16x16 and 35.7M parameters). Needs an accelerator; not run on the development machines, so
no result is claimed here. `:tiny` resolves a smaller model.
"""

import ml_collections

from gen_jax.train.config import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("diffusion")
  c.model.update(network="unet", widths=(64, 128, 128, 128), blocks_per_level=2,
                 emb_features=256, dropout=0.1, schedule="linear", num_timesteps=1000,
                 prediction="eps", loss="eps", data_key="image", sampler="ddim", eta=0.0,
                 sample_steps=100, clip_x0=1.0, image_shape=(32, 32, 3))
  c.data.update(name="cifar10", batch_size=128, eval_batch_size=500,
                preprocess=("scale_to_unit",))
  c.optim.update(name="adam", learning_rate=2e-4, schedule="constant", warmup_steps=5000,
                 grad_clip_norm=1.0)
  c.train.update(num_steps=800_000, log_every=1000, eval_every=50_000, checkpoint_every=10_000,
                 num_samples=64, ema_decay=0.9999)
  if arg == "tiny":
    c.model.update(widths=(4, 8), blocks_per_level=1, emb_features=8, num_timesteps=50,
                   sample_steps=5)
    c.data.update(batch_size=8, eval_batch_size=16)
    c.optim.update(warmup_steps=0)
    c.train.update(num_steps=2, log_every=1, eval_every=0, checkpoint_every=2, num_samples=4,
                   progress_bar=False)
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}: use '' or 'tiny'.")
  return c
