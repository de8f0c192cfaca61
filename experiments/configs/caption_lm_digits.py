"""Stage 1 of a frozen captioner: a small byte language model of the digits' name captions.

    python experiments/main.py --config experiments/configs/caption_lm_digits.py \
        --workdir runs/caption_lm_digits

The text is "\\n" + the digit's name ("a seven", "an eight") + "\\n" for every training label
(`digit_name_captions`), so the model learns the ten captions and their frequencies: it is the
language model that experiments/configs/frozen_captioner_digits.py keeps frozen and conditions
on an image. (The Python-source model `lm_python` never writes English digit names, so it cannot
be the frozen part.) Rotary positions: the captioner puts P image embeddings before the caption,
which moves every byte P positions later than in this training; rotary attention depends only on
the offsets between bytes, so the shift changes nothing for the caption's own bytes.

Expected: about 0.37 bits per byte on the test captions (log2 10 bits for the name, spread over
the 8.9 scored bytes of a caption), reached within the 300 steps; the loop's samples are sampled
captions. `:tiny` is a few steps of a tiny model, for tests.
"""

import ml_collections

from gen_jax.train.config import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("autoregressive")
  c.model.update(num_layers=2, num_heads=4, d_model=64, d_ff=256, max_len=32, positions="rope",
                 norm="rms", dropout_rate=0.0)
  # Byte captions under "name_caption", scored where "name_caption_mask" is 1; samples start at
  # the newline and end at the next one.
  c.model.update(vocab_size=256, tokens_key="name_caption", mask_key="name_caption_mask",
                 codec="bytes", sample_prompt="\n", sample_length=16, decoder="sampling",
                 temperature=1.0, top_k=0, top_p=1.0, eos_id=10)
  c.data.update(name="digits", batch_size=128, preprocess=("digit_name_captions",))
  c.optim.update(name="adamw", learning_rate=3e-3, schedule="cosine", warmup_steps=30,
                 kwargs=dict(weight_decay=0.01))
  c.train.update(num_steps=300, log_every=50, eval_every=150, checkpoint_every=300,
                 num_samples=16)
  if arg == "tiny":
    c.model.update(num_layers=1, num_heads=2, d_model=16, d_ff=32)
    c.data.update(batch_size=32)
    c.train.update(num_steps=4, log_every=2, eval_every=0, checkpoint_every=4, num_samples=2,
                   progress_bar=False)
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}: use '' or 'tiny'.")
  return c
