"""A GAN on the ring of 8 Gaussians (toy2d/ring8: radius 1, std 0.01), and how it collapses.

    python experiments/main.py --config experiments/configs/gan_ring8.py \
        --workdir runs/gan_ring8
    python experiments/main.py --config experiments/configs/gan_ring8.py:collapse \
        --workdir runs/gan_ring8_collapse

The default setting (non-saturating loss, R1 penalty on the discriminator, Adam with b1 = 0,
a generator learning rate twice the discriminator's, cosine decay, EMA of the parameters) covers
all 8 modes; "collapse" differs by one value, no penalty (`model.penalty = ""`), and drops
modes or unbalances them. The latent is 1-D: the generator then draws a curve through the 8
modes, with fewer samples stranded in the gaps between modes than a 2-D latent leaves (about
half as many more than 0.1 away from every mean), which a 3-std high-quality radius needs:
with a 2-D latent some seeds scored 96.8 %, and an 8-D latent was worse. Each mode is then a
short arc, not a 2-D blob: high quality can exceed a perfect sampler's 98.9 %, and the
within-mode spread (the benchmark's last metric; 0.97 for exact samples) is low along the arc's
width. Over seeds 0-9 (2,500 EMA samples each, scored by
`experiments/benchmarks/gan_toy2d.py --problems ring8`; 10,000 steps, 24-32 s per seed on a
2-core CPU):

    default    8.0 modes in 10/10 seeds, high quality 98.9 ± 0.3 % (min 98.4), reverse KL 0.001,
               spread 0.17 / 0.38 (minor / major axis)
    collapse   5.8 modes (4-7), all 8 in 0/10 seeds, high quality 98.9 %, reverse KL 0.39

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
  c.model.update(latent_dim=1, gen_features=(256, 256, 256), disc_features=(128, 128, 128),
                 activation="relu", d_loss="non_saturating", g_loss="non_saturating",
                 penalty="r1_penalty", penalty_weight=0.05, n_critic=1, data_key="point")
  c.data.update(name="toy2d/ring8", batch_size=256, fresh=True, eval_batch_size=2000)
  # Adam without momentum (b1 = 0) and a generator that learns twice as fast as the
  # discriminator; both decay to 0 by the last step.
  c.optim.update(name="adam", learning_rate=1e-3, schedule="cosine", kwargs=dict(b1=0.0, b2=0.99),
                 gen=dict(learning_rate=2e-3))
  # A GAN-Lab frame every 500 steps: samples/frames/*.png and samples/training.gif.
  c.train.update(num_steps=10_000, log_every=500, checkpoint_every=5_000, num_samples=2_500,
                 sample_every=500, ema_decay=0.999)
  if "collapse" in options:
    c.model.penalty = ""
  if "conditional" in options:  # both players see the mixture component of each point
    c.model.label_key = "mode"
    c.model.num_classes = toy2d.distribution("ring8").num_modes
  if "tiny" in options:
    c.model.gen_features = (16, 16)
    c.model.disc_features = (16, 16)
    c.data.batch_size = 32
    c.train.update(num_steps=6, log_every=2, checkpoint_every=3, num_samples=64,
                   ema_decay=0.999, progress_bar=False)
  return c
