"""A raster-scan image transformer on the bundled 8x8 `digits` (17 grey levels).

    python experiments/main.py --config experiments/configs/imagetf_digits.py \
        --workdir runs/imagetf_digits

The 64 pixels are 64 tokens in raster order; a causal transformer with learned row and column
embeddings (2-D positions) predicts each pixel's 17-way categorical from the ones before it,
after a start token: 4 blocks of width 128, dropout 0.3 against overfitting the 1,437
training images, 2,000 steps. The eval rows of metrics.jsonl hold the exact test negative
log-likelihood in bits per dimension; docs/results.md has the measured figure, against the
baselines, from experiments/benchmarks/pixel_ar_digits.py. Samples are drawn one token at a
time with the KV cache.

`:conditional` starts each sequence with its digit's class token; `:sinusoidal` uses 2-D
sinusoidal positions; `:tiny` runs a few steps of a smaller model, for tests (combine as
`:conditional,tiny`).
"""

import ml_collections

from gen_jax.train.config import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("autoregressive_image")
  c.model.update(network="image_transformer", likelihood="categorical", num_layers=4,
                 num_heads=4, d_model=128, d_ff=512, dropout_rate=0.3,
                 positions_2d="learned")
  c.data.update(name="digits", batch_size=64, eval_batch_size=360,
                preprocess=("scale_to_unit",))
  c.optim.update(name="adamw", learning_rate=1e-3, schedule="cosine", warmup_steps=200,
                 grad_clip_norm=1.0, kwargs=dict(weight_decay=1e-2))
  c.train.update(num_steps=2000, log_every=100, eval_every=1000, checkpoint_every=2000,
                 num_samples=64, ema_decay=0.999)
  args = set(filter(None, arg.split(",")))
  if "conditional" in args:
    c.model.update(label_key="label", num_classes=10)
  if "sinusoidal" in args:
    c.model.update(positions_2d="sinusoidal")
  if "tiny" in args:
    c.model.update(num_layers=1, num_heads=2, d_model=16, d_ff=32)
    c.data.update(batch_size=32, eval_batch_size=64)
    c.train.update(num_steps=4, log_every=2, eval_every=0, checkpoint_every=4, num_samples=4,
                   progress_bar=False)
  if args - {"tiny", "conditional", "sinusoidal"}:
    raise ValueError(f"Unknown config argument {arg!r}: use '', 'conditional', 'sinusoidal', "
                     "'tiny' or a comma-separated combination.")
  return c
