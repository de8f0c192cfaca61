"""A diffusion model on MNIST (28x28, 256 grey levels), once MNIST is prepared.

MNIST needs a download, which gen_jax never does itself: prepare it once where the network is
reachable (`tfds build mnist --file_format=array_record --data_dir=$GEN_JAX_DATA_DIR`), then

    python experiments/main.py --config experiments/configs/ddpm_mnist.py \
        --workdir runs/ddpm_mnist

A U-Net (widths 32, 64, 128 at 28, 14 and 7 pixels, two residual blocks per level) predicting
eps under the cosine schedule (T = 1000), class-conditional with label dropout 0.1 so that
samples can be guided (w = 1.5, 100-step DDIM). Not run on the development machines (no
network, no MNIST), so no result is claimed here. `:tiny` resolves a smaller model.
"""

import ml_collections

from gen_jax.train.config import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("diffusion")
  c.model.update(network="unet", widths=(32, 64, 128), blocks_per_level=2, emb_features=128,
                 dropout=0.1, schedule="cosine", num_timesteps=1000, prediction="eps",
                 loss="eps", data_key="image", label_key="label", num_classes=10,
                 label_dropout=0.1, sampler="ddim", eta=0.0, sample_steps=100,
                 guidance_scale=1.5, clip_x0=1.0, image_shape=(28, 28, 1))
  c.data.update(name="mnist", batch_size=128, eval_batch_size=500,
                preprocess=("scale_to_unit",))
  c.optim.update(name="adam", learning_rate=2e-4, schedule="cosine", warmup_steps=1000,
                 grad_clip_norm=1.0)
  c.train.update(num_steps=50_000, log_every=500, eval_every=10_000, checkpoint_every=5000,
                 num_samples=100, ema_decay=0.9999)
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
