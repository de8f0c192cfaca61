"""A DCGAN on MNIST (28x28, 256 grey levels scaled to [-1, 1]), once MNIST is prepared.

MNIST needs a download, which gen_jax never does itself: prepare it once where the network is
reachable (`tfds build mnist --file_format=array_record --data_dir=$GEN_JAX_DATA_DIR`), then

    python experiments/main.py --config experiments/configs/dcgan_mnist.py \
        --workdir runs/dcgan_mnist

The generator goes 7x7 -> 14x14 -> 28x28 (nearest-neighbour upsampling + 3x3 convolutions,
layer norm, tanh), the discriminator 28x28 -> 14x14 -> 7x7 (leaky ReLU); non-saturating loss,
R1 penalty, Adam, EMA. Not run on the development machines (no network, no MNIST), so no result
is claimed here. `:conditional` feeds the digit labels to both players (one class per row of
the sample grid); `:transpose` upsamples with transposed convolutions; `:tiny` runs a few steps
of a smaller model, for tests (combine with commas).
"""

import ml_collections

from gen_jax.train.config import defaults

OPTIONS = ("conditional", "transpose", "tiny")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  options = set(filter(None, arg.split(",")))
  if options - set(OPTIONS):
    raise ValueError(f"Unknown config argument(s) {sorted(options - set(OPTIONS))}: use a "
                     f"comma-separated subset of {', '.join(map(repr, OPTIONS))}.")
  c = defaults("gan")
  c.model.update(networks="dcgan", latent_dim=64, image_shape=(28, 28, 1), data_key="image",
                 gen_widths=(128, 64, 32), disc_widths=(32, 64, 128), upsample="resize",
                 d_loss="non_saturating", g_loss="non_saturating", penalty="r1_penalty",
                 penalty_weight=0.1, interpolation="spherical")
  c.data.update(name="mnist", batch_size=128, eval_batch_size=500,
                preprocess=("scale_to_unit",))
  c.optim.update(name="adam", learning_rate=2e-4, schedule="cosine",
                 kwargs=dict(b1=0.5, b2=0.999))
  c.train.update(num_steps=20_000, log_every=500, checkpoint_every=5000, num_samples=100,
                 ema_decay=0.999)
  if "conditional" in options:
    c.model.update(label_key="label", num_classes=10)
  if "transpose" in options:
    c.model.upsample = "transpose"
  if "tiny" in options:
    c.model.update(latent_dim=4, gen_widths=(8, 4, 4), disc_widths=(4, 4, 8))
    c.data.update(batch_size=8, eval_batch_size=16)
    c.train.update(num_steps=2, log_every=1, checkpoint_every=2, num_samples=4,
                   progress_bar=False)
  return c
