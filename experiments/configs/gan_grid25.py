"""A GAN on the grid of 25 Gaussians (toy2d/grid25: {-4, -2, 0, 2, 4}^2, std 0.05), collapsing.

    python experiments/main.py --config experiments/configs/gan_grid25.py \
        --workdir runs/gan_grid25
    python experiments/main.py --config experiments/configs/gan_grid25.py:collapse \
        --workdir runs/gan_grid25_collapse

The default setting (non-saturating loss, R1 penalty on the discriminator, Adam with b1 = 0,
a generator learning rate twice the discriminator's, cosine decay, EMA of the parameters) covers
all 25 modes; "collapse" differs by one value, no penalty (`model.penalty = ""`), and drops
about two thirds of them. Scored by `experiments/benchmarks/gan_toy2d.py --problems grid25`
(2,500 EMA samples per seed; 30,000 steps, 82-138 s per seed on a 2-core CPU):

    default    25.0 modes in 10/10 seeds (0-9), high quality 97.7 ± 0.3 % (min 97.3),
               reverse KL 0.010 (max 0.020), within-mode spread 0.47 / 0.76 (exact 0.97)
    collapse   9.2 modes (8-13) over seeds 0-4, high quality 98.2 %, reverse KL 1.27

At 20,000 steps the default reached only 96.9 ± 0.8 % high quality (min 95.8).

`:conditional` feeds each point's mixture component to both players (a class-conditional
GAN). Add `,tiny` to any of these (`:tiny`, `:collapse,tiny`) to run a few steps for tests.
"""

import ml_collections

from gen_jax.data import toy2d
from gen_jax.train.config import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  options = set(filter(None, arg.split(",")))
  unknown = options - {"collapse", "conditional", "tiny"}
  if unknown:
    raise ValueError(f"Unknown config argument(s) {sorted(unknown)}: use a comma-separated "
                     "subset of 'collapse', 'conditional', 'tiny'.")
  c = defaults("gan")
  c.model.update(latent_dim=2, gen_features=(256, 256, 256), disc_features=(128, 128, 128),
                 activation="relu", d_loss="non_saturating", g_loss="non_saturating",
                 penalty="r1_penalty", penalty_weight=0.05, n_critic=1, data_key="point")
  c.data.update(name="toy2d/grid25", batch_size=256, fresh=True, eval_batch_size=2000)
  # Adam without momentum (b1 = 0) and a generator that learns twice as fast as the
  # discriminator; both decay to 0 by the last step.
  c.optim.update(name="adam", learning_rate=2e-3, schedule="cosine", kwargs=dict(b1=0.0, b2=0.99),
                 gen=dict(learning_rate=4e-3))
  # A GAN-Lab frame every 1,500 steps: samples/frames/*.png and samples/training.gif.
  c.train.update(num_steps=30_000, log_every=500, checkpoint_every=5_000, num_samples=2_500,
                 sample_every=1_500, ema_decay=0.999)
  if "collapse" in options:
    c.model.penalty = ""
  if "conditional" in options:  # both players see the mixture component of each point
    c.model.label_key = "mode"
    c.model.num_classes = toy2d.distribution("grid25").num_modes
  if "tiny" in options:
    c.model.gen_features = (16, 16)
    c.model.disc_features = (16, 16)
    c.data.batch_size = 32
    c.train.update(num_steps=6, log_every=2, checkpoint_every=3, num_samples=64,
                   ema_decay=0.999, progress_bar=False)
  return c
