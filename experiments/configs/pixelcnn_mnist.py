"""A gated PixelCNN on MNIST (28x28, 256 grey levels), once MNIST is prepared.

MNIST needs a download, which gen_jax never does itself: prepare it once where the network is
reachable (`tfds build mnist --file_format=array_record --data_dir=$GEN_JAX_DATA_DIR`), then

    python experiments/main.py --config experiments/configs/pixelcnn_mnist.py \
        --workdir runs/pixelcnn_mnist

The gated PixelCNN of pixelcnn_digits.py, wider and deeper (128 channels, 12 gated layers), with
a 256-way categorical per pixel. Not run on the development machines (no network, no MNIST),
so no result is claimed here. `:conditional` conditions on the label; `:tiny` runs a few steps
of a smaller model, for tests.
"""

import ml_collections

from gen_jax.train.config import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("autoregressive_image")
  c.model.update(network="gated_pixel_cnn", likelihood="categorical", channels=128,
                 num_layers=12, kernel_size=3, first_kernel_size=7)
  c.data.update(name="mnist", batch_size=64, eval_batch_size=500,
                preprocess=("scale_to_unit",))
  c.optim.update(name="adam", learning_rate=1e-3, schedule="cosine", warmup_steps=1000,
                 grad_clip_norm=1.0)
  c.train.update(num_steps=100_000, log_every=1000, eval_every=10_000, checkpoint_every=5000,
                 num_samples=16, ema_decay=0.9995)
  args = set(filter(None, arg.split(",")))
  if "conditional" in args:
    c.model.update(label_key="label", num_classes=10)
  if "tiny" in args:
    c.model.update(channels=8, num_layers=2, first_kernel_size=3)
    c.data.update(batch_size=8, eval_batch_size=16)
    c.train.update(num_steps=2, log_every=1, eval_every=0, checkpoint_every=2, num_samples=2,
                   progress_bar=False)
  if args - {"tiny", "conditional"}:
    raise ValueError(f"Unknown config argument {arg!r}: use '', 'conditional', 'tiny' or "
                     "'conditional,tiny'.")
  return c
