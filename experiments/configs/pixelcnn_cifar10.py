"""A gated PixelCNN on CIFAR-10 (32x32x3, 8-bit), once CIFAR-10 is prepared.

CIFAR-10 needs a download, which gen_jax never does itself: prepare it once where the network
is reachable (`tfds build cifar10 --file_format=array_record --data_dir=$GEN_JAX_DATA_DIR`),
then

    python experiments/main.py --config experiments/configs/pixelcnn_cifar10.py \
        --workdir runs/pixelcnn_cifar10

The gated PixelCNN with each pixel's red, green and blue values in order (a pixel's channels are
laid side by side, so each colour is predicted from the earlier pixels and the colours before
it), and a discretised logistic mixture of 10 components per sub-pixel (PixelCNN++'s
likelihood, Salimans et al., 2017). Needs an accelerator; not run on the development machines,
so no result is claimed here. `:categorical` uses a 256-way categorical instead; `:tiny` runs a
few steps of a smaller model, for tests.
"""

import ml_collections

from gen_jax.train.config import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("autoregressive_image")
  c.model.update(network="gated_pixel_cnn", likelihood="logistic_mixture", num_mixtures=10,
                 channels=128, num_layers=15, kernel_size=3, first_kernel_size=7)
  c.data.update(name="cifar10", batch_size=64, eval_batch_size=500,
                preprocess=("scale_to_unit",))
  c.optim.update(name="adam", learning_rate=1e-3, schedule="cosine", warmup_steps=1000,
                 grad_clip_norm=1.0)
  c.train.update(num_steps=200_000, log_every=1000, eval_every=20_000, checkpoint_every=5000,
                 num_samples=16, ema_decay=0.9995)
  args = set(filter(None, arg.split(",")))
  if "categorical" in args:
    c.model.update(likelihood="categorical")
  if "tiny" in args:
    c.model.update(channels=8, num_layers=2, first_kernel_size=3, num_mixtures=2)
    c.data.update(batch_size=8, eval_batch_size=16)
    c.train.update(num_steps=2, log_every=1, eval_every=0, checkpoint_every=2, num_samples=2,
                   progress_bar=False)
  if args - {"tiny", "categorical"}:
    raise ValueError(f"Unknown config argument {arg!r}: use '', 'categorical', 'tiny' or "
                     "'categorical,tiny'.")
  return c
