"""A convolutional VAE on MNIST (28x28, 256 grey levels), once MNIST is prepared.

MNIST needs a download, which gen_jax never does itself: prepare it once where the network is
reachable (`tfds build mnist --file_format=array_record --data_dir=$GEN_JAX_DATA_DIR`), then

    python experiments/main.py --config experiments/configs/vae_mnist.py \
        --workdir runs/vae_mnist

Not run on the development machines (no network, no MNIST), so no result is claimed here; the
discretized logistic likelihood makes `iwae_bpd` a bound on the bits per dim of the 8-bit
images, comparable with published MNIST NLLs after the conversion nats = bpd * 784 * ln 2.
`--config ...vae_mnist.py:tiny` runs a few steps of a smaller model, for tests.
"""

import ml_collections

from gen_jax.train.config import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("vae")
  c.model.update(networks="conv", encoder_widths=(32, 64, 64), decoder_widths=(64, 64, 32),
                 latent_dim=32, posterior="gaussian", likelihood="discretized_logistic",
                 objective="elbo", image_shape=(28, 28, 1), num_levels=256,
                 eval_samples=100, eval_chunk=25)
  c.data.update(name="mnist", batch_size=128, eval_batch_size=500,
                preprocess=("scale_to_unit",))
  c.optim.update(name="adamw", learning_rate=1e-3, schedule="cosine", warmup_steps=500,
                 grad_clip_norm=10.0, kwargs=dict(weight_decay=1e-4))
  c.train.update(num_steps=30_000, log_every=500, eval_every=10_000, checkpoint_every=5000)
  if arg == "tiny":
    c.model.update(encoder_widths=(4, 8), decoder_widths=(8, 4), latent_dim=2,
                   eval_samples=4, eval_chunk=2)
    c.data.update(batch_size=8, eval_batch_size=16)
    c.optim.update(warmup_steps=0)
    c.train.update(num_steps=2, log_every=1, eval_every=0, checkpoint_every=2,
                   num_samples=4, progress_bar=False)
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}: use '' or 'tiny'.")
  return c
