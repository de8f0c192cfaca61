"""A DCGAN on the bundled 8x8 `digits` (1,437 train images, 17 grey levels, scaled to [-1, 1]).

    python experiments/main.py --config experiments/configs/dcgan_digits.py \
        --workdir runs/dcgan_digits

Convolutional players (`gen_jax.nn.convnets`): a generator from a 32-d N(0, I) latent through
2x2 -> 4x4 -> 8x8 (nearest-neighbour upsampling + 3x3 convolutions, layer norm, tanh output)
and a discriminator 8x8 -> 4x4 -> 2x2 (leaky ReLU, no normalisation), trained on the
non-saturating loss with an R1 penalty on real digits, Adam and an EMA of the parameters.
Samples (`samples/samples_*.png`) and spherical interpolations between latent draws, one path
per row (`samples/interpolation_*.png`), are written at the end. Measured by
experiments/benchmarks/gan_digits.py (3,000 steps, about 5 minutes on a shared 2-core CPU):
Frechet distance to the test digits (classifier features, 3 draws of 1,000 samples) 2.13
(1.95-2.35), against 1.08 for the real train images; docs/images/dcgan_digits_samples.png.

`:transpose` upsamples with 4x4 transposed convolutions instead (slower on CPU, see
experiments/benchmarks/gan_step.py). `:tiny` runs a few steps of a smaller model, for tests
(combine as `:transpose,tiny`).
"""

import ml_collections

from gen_jax.train.config import defaults

OPTIONS = ("transpose", "tiny")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  options = set(filter(None, arg.split(",")))
  if options - set(OPTIONS):
    raise ValueError(f"Unknown config argument(s) {sorted(options - set(OPTIONS))}: use a "
                     f"comma-separated subset of {', '.join(map(repr, OPTIONS))}.")
  c = defaults("gan")
  c.model.update(networks="dcgan", latent_dim=32, image_shape=(8, 8, 1), data_key="image",
                 gen_widths=(64, 32, 16), disc_widths=(16, 32, 64), upsample="resize",
                 d_loss="non_saturating", g_loss="non_saturating", penalty="r1_penalty",
                 penalty_weight=0.1, interpolation="spherical")
  c.data.update(name="digits", batch_size=128, eval_batch_size=360,
                preprocess=("scale_to_unit",))
  c.optim.update(name="adam", learning_rate=5e-4, schedule="cosine",
                 kwargs=dict(b1=0.5, b2=0.999))
  c.train.update(num_steps=3000, log_every=500, checkpoint_every=3000, num_samples=100,
                 ema_decay=0.999)
  if "transpose" in options:
    c.model.upsample = "transpose"
  if "tiny" in options:
    c.model.update(latent_dim=4, gen_widths=(8, 4, 4), disc_widths=(4, 4, 8))
    c.data.update(batch_size=16, eval_batch_size=64)
    c.train.update(num_steps=4, log_every=2, checkpoint_every=4, num_samples=16,
                   progress_bar=False)
  return c
