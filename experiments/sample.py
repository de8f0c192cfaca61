"""Generates from a trained workdir: text for language models, image grids or 2-D points.

    python experiments/sample.py --workdir runs/lm_python --prompt "def " --decode beam \
        --beam_size 4 --length 120
    python experiments/sample.py --workdir runs/lm_python --decode sample --temperature 0.8 \
        --top_p 0.95 --num 4
    python experiments/sample.py --workdir runs/classifier_digits   # non-text: writes files

Uses the EMA parameters when the run kept them.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from absl import logging as absl_logging

from gen_jax.train.logging import MetricWriter
from gen_jax.train.loop import load_checkpoint

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir written by experiments/main.py.")
_NUM = flags.DEFINE_integer("num", 4, "Number of samples.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_PROMPT = flags.DEFINE_string("prompt", "def ", "Text models: the prompt (UTF-8 bytes).")
_LENGTH = flags.DEFINE_integer("length", 128, "Text models: tokens to generate.")
_DECODE = flags.DEFINE_enum("decode", "sample", ["greedy", "sample", "beam"],
                            "Text models: decoding strategy.")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Sampling temperature (0: greedy).")
_TOP_K = flags.DEFINE_integer("top_k", 0, "Keep the k most likely tokens (0: all).")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Keep the smallest set with probability >= p.")
_BEAM_SIZE = flags.DEFINE_integer("beam_size", 4, "Beam search: beams (all are printed).")
_LENGTH_PENALTY = flags.DEFINE_float("length_penalty", 0.0, "Beam search: alpha.")
_OUT = flags.DEFINE_string("out", "", "Non-text models: output folder (default WORKDIR/samples).")
flags.mark_flag_as_required("workdir")


def _text(tokens) -> str:
  return bytes(np.clip(np.asarray(tokens), 0, 255).astype(np.uint8)).decode("utf-8", "replace")


def main(argv):
  del argv
  absl_logging.set_verbosity(absl_logging.WARNING)  # orbax reports every restore at INFO
  config, method, state = load_checkpoint(_WORKDIR.value)
  variables = state.variables()
  rng = jax.random.PRNGKey(_SEED.value)
  if config.method != "autoregressive":
    writer = MetricWriter(_OUT.value or Path(_WORKDIR.value))
    for path in writer.write_samples(int(state.step), method.sample(variables, rng, _NUM.value)):
      print(path)
    writer.close()
    return
  prompt_bytes = list(_PROMPT.value.encode("utf-8"))
  prompt = jnp.tile(jnp.asarray(prompt_bytes, jnp.int32)[None], (_NUM.value, 1))
  if _DECODE.value == "beam":
    out = jax.jit(lambda v: method.beam_search(
        v, prompt[:1], max_new_tokens=_LENGTH.value, beam_size=_BEAM_SIZE.value,
        length_penalty=_LENGTH_PENALTY.value))(variables)
    for rank in range(_BEAM_SIZE.value):
      print(f"=== beam {rank}: score {float(out.scores[0, rank]):.3f}")
      print(_PROMPT.value + _text(out.sequences[0, rank, :int(out.lengths[0, rank])]))
    return
  if _DECODE.value == "greedy":
    out = jax.jit(lambda v: method.greedy(v, prompt[:1], max_new_tokens=_LENGTH.value))(variables)
  else:
    out = jax.jit(lambda v, r: method.generate(
        v, r, prompt, max_new_tokens=_LENGTH.value, temperature=_TEMPERATURE.value,
        top_k=_TOP_K.value, top_p=_TOP_P.value))(variables, rng)
  for i, row in enumerate(np.asarray(out.sequences)):
    print(f"=== sample {i}")
    print(_PROMPT.value + _text(row))


if __name__ == "__main__":
  app.run(main)
