"""A gated PixelCNN on the bundled 8x8 `digits` (1,437 train / 360 test images, 17 grey levels).

    python experiments/main.py --config experiments/configs/pixelcnn_digits.py \
        --workdir runs/pixelcnn_digits

Each pixel's 17-way categorical is predicted from the pixels before it in raster order by the
gated PixelCNN of van den Oord et al. (2016b): a 7x7 first layer and 4 gated 3x3 layers in
vertical and horizontal stacks, 64 channels (no blind spot: they see every earlier pixel of an
8x8 image). With 1,437 training images overfitting is the enemy: dropout 0.5, AdamW's weight
decay 0.1 and a learning rate that decays to zero by step 1,000 (run for 3,000 steps with weight
decay 0.01, the same model went from 1.74 test bits/dim at step 750 to 2.50). The eval rows of
metrics.jsonl hold the exact test negative log-likelihood in bits per dimension;
docs/results.md has the measured figure, against the baselines, from
experiments/benchmarks/pixel_ar_digits.py. Samples are drawn one pixel at a time
(`samples/samples_*.png`).

`:conditional` conditions on the digit's label (samples in class blocks); `:plain` swaps in the
plain masked-convolution stack, whose blind spot costs likelihood; `:tiny` runs a few steps of a
smaller model, for tests (combine as `:conditional,tiny`).
"""

import ml_collections

from gen_jax.train.config import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("autoregressive_image")
  c.model.update(network="gated_pixel_cnn", likelihood="categorical", channels=64,
                 num_layers=4, kernel_size=3, first_kernel_size=7, dropout_rate=0.5)
  c.data.update(name="digits", batch_size=64, eval_batch_size=360,
                preprocess=("scale_to_unit",))
  c.optim.update(name="adamw", learning_rate=2e-3, schedule="cosine", warmup_steps=200,
                 grad_clip_norm=1.0, kwargs=dict(weight_decay=0.1))
  c.train.update(num_steps=1000, log_every=100, eval_every=500, checkpoint_every=1000,
                 num_samples=64, ema_decay=0.999)
  args = set(filter(None, arg.split(",")))
  if "conditional" in args:
    c.model.update(label_key="label", num_classes=10)
  if "plain" in args:
    c.model.update(network="pixel_cnn")
  if "tiny" in args:
    c.model.update(channels=8, num_layers=2, first_kernel_size=3)
    c.data.update(batch_size=32, eval_batch_size=64)
    c.train.update(num_steps=4, log_every=2, eval_every=0, checkpoint_every=4, num_samples=4,
                   progress_bar=False)
  if args - {"tiny", "conditional", "plain"}:
    raise ValueError(f"Unknown config argument {arg!r}: use '', 'conditional', 'plain', 'tiny' "
                     "or a comma-separated combination.")
  return c
