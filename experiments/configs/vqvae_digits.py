"""A VQ-VAE on the bundled 8x8 `digits`: stage 1 of two-stage generation.

    python experiments/main.py --config experiments/configs/vqvae_digits.py \
        --workdir runs/vqvae_digits

Each image becomes a 4x4 grid of codes from a codebook of 64 (an EMA-updated codebook with
restarts of dead codes), decoded to a 17-way categorical per pixel. The eval rows of
metrics.jsonl hold the reconstruction's bits/dim and the codebook's perplexity and usage;
docs/results.md has the measured figures from experiments/benchmarks/vq_digits.py. Stage 2 is
experiments/configs/code_prior_digits.py, which reads this workdir.

`:rq2` and `:rq4` quantize residually with 2 or 4 levels of one shared codebook (an RQ-VAE,
Lee et al. 2022); `:separate` gives each level a codebook of its own (`:rq2,separate`); `:tiny`
runs a few steps of a smaller model, for tests (combine as `:rq2,tiny`).
"""

import ml_collections

from gen_jax.train.config import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("vqvae")
  c.model.update(quantizer="vector_quantizer", num_codes=64, code_dim=16, depth=1,
                 ema_decay=0.99, dead_code_threshold=1.0, commitment_weight=0.25,
                 encoder_widths=(64, 64), decoder_widths=(64, 64), downsample=1,
                 likelihood="categorical")
  c.data.update(name="digits", batch_size=64, eval_batch_size=360,
                preprocess=("scale_to_unit",))
  c.optim.update(name="adam", learning_rate=1e-3, schedule="cosine", warmup_steps=100)
  c.train.update(num_steps=3000, log_every=250, eval_every=1000, checkpoint_every=3000)
  args = set(filter(None, arg.split(",")))
  for depth in (2, 4):
    if f"rq{depth}" in args:
      c.model.update(quantizer="residual_quantizer", depth=depth,
                     shared_codebook="separate" not in args)
  if "separate" in args and c.model.depth == 1:
    raise ValueError(f"Config argument {arg!r}: 'separate' codebooks need levels, add 'rq2' or "
                     "'rq4'.")
  if "tiny" in args:
    c.model.update(num_codes=8, code_dim=4, encoder_widths=(8,), decoder_widths=(8,))
    c.data.update(batch_size=32, eval_batch_size=64)
    c.train.update(num_steps=4, log_every=2, eval_every=0, checkpoint_every=4,
                   progress_bar=False)
  if args - {"tiny", "rq2", "rq4", "separate"}:
    raise ValueError(f"Unknown config argument {arg!r}: use '', 'rq2', 'rq4', 'separate', 'tiny' "
                     "or a comma-separated combination.")
  return c
