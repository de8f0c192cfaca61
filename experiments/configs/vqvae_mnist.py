"""A VQ-VAE on MNIST (28x28, 256 grey levels), once MNIST is prepared: stage 1 of two-stage
generation.

MNIST needs a download, which gen_jax never does itself: prepare it once where the network is
reachable (`tfds build mnist --file_format=array_record --data_dir=$GEN_JAX_DATA_DIR`), then

    python experiments/main.py --config experiments/configs/vqvae_mnist.py \
        --workdir runs/vqvae_mnist

Each image becomes a 7x7 grid of codes (two halvings) from a codebook of 256 (EMA updates,
dead-code restarts), decoded to a 256-way categorical per pixel. Not run on the development
machines (no network, no MNIST), so no result is claimed here. Stage 2 is
experiments/configs/code_prior_mnist.py. `:rq4` quantizes residually with 4 levels; `:tiny` runs
a few steps of a smaller model, for tests.
"""

import ml_collections

from gen_jax.train.config import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("vqvae")
  c.model.update(quantizer="vector_quantizer", num_codes=256, code_dim=32, ema_decay=0.99,
                 dead_code_threshold=1.0, encoder_widths=(64, 128, 128),
                 decoder_widths=(128, 128, 64), downsample=2, likelihood="categorical")
  c.data.update(name="mnist", batch_size=128, eval_batch_size=500,
                preprocess=("scale_to_unit",))
  c.optim.update(name="adam", learning_rate=1e-3, schedule="cosine", warmup_steps=500)
  c.train.update(num_steps=20_000, log_every=500, eval_every=5000, checkpoint_every=5000)
  args = set(filter(None, arg.split(",")))
  if "rq4" in args:
    c.model.update(quantizer="residual_quantizer", depth=4, shared_codebook=True)
  if "tiny" in args:
    c.model.update(num_codes=8, code_dim=4, encoder_widths=(8, 8), decoder_widths=(8, 8))
    c.data.update(batch_size=8, eval_batch_size=16)
    c.train.update(num_steps=2, log_every=1, eval_every=0, checkpoint_every=2,
                   progress_bar=False)
  if args - {"tiny", "rq4"}:
    raise ValueError(f"Unknown config argument {arg!r}: use '', 'rq4', 'tiny' or 'rq4,tiny'.")
  return c
