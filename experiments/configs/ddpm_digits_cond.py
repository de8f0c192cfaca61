"""A class-conditional diffusion model on the bundled 8x8 `digits`, with classifier-free
guidance.

    python experiments/main.py --config experiments/configs/ddpm_digits_cond.py \
        --workdir runs/ddpm_digits_cond

experiments/configs/ddpm_digits.py's U-Net and schedule, plus a label embedding added to the
time embedding; each training label is replaced by the null label (10) with probability 0.1,
so the one network is also unconditional (Ho & Salimans 2021). Samples (64, in class blocks)
come from 50-step DDIM with guidance scale w = 2 (w = 0 unconditional, 1 conditional, > 1
guided). experiments/benchmarks/diffusion.py (500 samples, 50 per class): the digits
classifier reads 81.8 % of the samples as their class at w = 1, 97.8 % at w = 2 and 99.8 % at
w = 3, while the Frechet distance goes 2.19, 2.51, 5.35 and the per-class feature spread falls
from 1.49 to 0.94 and 0.77 times the test images' (guidance trades diversity for fidelity).
`:tiny` runs a few steps of a small model.
"""

import ml_collections

from gen_jax.train.config import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("diffusion")
  c.model.update(network="unet", widths=(16, 32), blocks_per_level=1, emb_features=64,
                 dropout=0.0, schedule="cosine", num_timesteps=1000, prediction="eps",
                 loss="eps", data_key="image", label_key="label", num_classes=10,
                 label_dropout=0.1, sampler="ddim", eta=0.0, sample_steps=50,
                 guidance_scale=2.0, clip_x0=1.0)
  c.data.update(name="digits", batch_size=128, eval_batch_size=360,
                preprocess=("scale_to_unit",))
  c.optim.update(name="adam", learning_rate=2e-3, schedule="cosine", warmup_steps=200)
  c.train.update(num_steps=3000, log_every=500, checkpoint_every=3000, num_samples=100,
                 ema_decay=0.999)
  if arg == "tiny":
    c.model.update(widths=(4, 8), emb_features=8, num_timesteps=50, sample_steps=5)
    c.data.update(batch_size=16, eval_batch_size=64)
    c.optim.update(warmup_steps=0)
    c.train.update(num_steps=3, log_every=1, checkpoint_every=3, num_samples=20,
                   progress_bar=False)
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}: use '' or 'tiny'.")
  return c
