"""A raster-scan image transformer on MNIST (28x28 = 784 tokens, 256 levels), once MNIST is
prepared.

MNIST needs a download, which gen_jax never does itself: prepare it once where the network is
reachable (`tfds build mnist --file_format=array_record --data_dir=$GEN_JAX_DATA_DIR`), then

    python experiments/main.py --config experiments/configs/imagetf_mnist.py \
        --workdir runs/imagetf_mnist

The transformer of imagetf_digits.py over 784 pixel tokens, with 2-D learned positions and
6 blocks of width 256. Not run on the development machines (no network, no MNIST), so no result
is claimed here. `:conditional` starts each sequence with its class token; `:tiny` runs a few
steps of a smaller model, for tests.
"""

import ml_collections

from gen_jax.train.config import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("autoregressive_image")
  c.model.update(network="image_transformer", likelihood="categorical", num_layers=6,
                 num_heads=8, d_model=256, d_ff=1024, dropout_rate=0.1,
                 positions_2d="learned")
  c.data.update(name="mnist", batch_size=32, eval_batch_size=500,
                preprocess=("scale_to_unit",))
  c.optim.update(name="adamw", learning_rate=5e-4, schedule="cosine", warmup_steps=1000,
                 grad_clip_norm=1.0, kwargs=dict(weight_decay=1e-2))
  c.train.update(num_steps=100_000, log_every=1000, eval_every=10_000, checkpoint_every=5000,
                 num_samples=16, ema_decay=0.9995)
  args = set(filter(None, arg.split(",")))
  if "conditional" in args:
    c.model.update(label_key="label", num_classes=10)
  if "tiny" in args:
    c.model.update(num_layers=1, num_heads=2, d_model=16, d_ff=32)
    c.data.update(batch_size=8, eval_batch_size=16)
    c.train.update(num_steps=2, log_every=1, eval_every=0, checkpoint_every=2, num_samples=2,
                   progress_bar=False)
  if args - {"tiny", "conditional"}:
    raise ValueError(f"Unknown config argument {arg!r}: use '', 'conditional', 'tiny' or "
                     "'conditional,tiny'.")
  return c
