"""Generates from a trained workdir: text for token models, image grids or 2-D points.

    python experiments/sample.py --workdir runs/lm_python --prompt "def " --decode beam \
        --beam_size 4 --length 120
    python experiments/sample.py --workdir runs/lm_python --decode sample --temperature 0.8 \
        --top_p 0.95 --num 4
    python experiments/sample.py --workdir runs/lm_python --decode greedy --prompt "def " \
        --prompt "import "
    python experiments/sample.py --workdir runs/dcgan_digits --num 16 --seed 3
    python experiments/sample.py --workdir runs/code_prior_digits --guidance_scale 0.8 \
        --temperature 0.9
    python experiments/sample.py --workdir runs/ddpm_digits_text --text "a thick seven" \
        --text "a thin two" --num 8

Token models print their continuations, of --length tokens (default: the run's
model.sample_length); --decode picks the flags that apply (sample: --num, --seed, --temperature,
--top_k, --top_p; beam: --beam_size, --length_penalty; greedy: none), and a flag that the chosen
strategy would ignore is refused. Other samples are written to WORKDIR/generated/ (or --out) as
`<name>_step<step>_seed<seed>_num<num>[_<flag><value>...].png` (the sampling flags given), never
over the run's own `samples/` files, and their paths are printed; token ids of other models (a
prefix-tuned LM's continuations, a frozen captioner's captions) are written as UTF-8 text, one
sample after another as in the run's `samples/`. Every input is checked before the state is
loaded or anything is compiled; a bad one is refused with one line that says what to change.
Uses the EMA parameters when the run kept them. For other models, --temperature, --top_k, --top_p
and --guidance_scale set the run's `model.<flag>` for these samples, where its method reads that
key (its module's `SAMPLING_KEYS`: the autoregressive image models and the code prior read all
four, diffusion reads guidance_scale), and --text sets a text-conditional model's
`model.prompts`.
"""

import hashlib
import math
import os
import sys
import urllib.parse
from pathlib import Path

import jax
import numpy as np
from absl import app, flags
from absl import logging as absl_logging

from gen_jax import conditioning, names
from gen_jax.methods import autoregressive
from gen_jax.train import checkpoint as checkpoint_lib
from gen_jax.train import config as config_lib
from gen_jax.train import setup as setup_lib
from gen_jax.viz import grids

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir written by experiments/main.py.")
_NUM = flags.DEFINE_integer("num", 4, "Number of samples (token models: --decode sample).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed, in [0, 2**32).")
_PROMPT = flags.DEFINE_multi_string(
    "prompt", None, "Token models: the prompt, UTF-8 text that the model's codec reads (default: "
    "the run's model.sample_prompt). Repeat the flag to continue several prompts, of any "
    "lengths, in one batch.")
_LENGTH = flags.DEFINE_integer(
    "length", None, "Token models: tokens to generate (default: the run's model.sample_length).")
_DECODE = flags.DEFINE_enum("decode", "sample", ["greedy", "sample", "beam"],
                            "Token models: decoding strategy.")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Sampling temperature (0: greedy).")
_TOP_K = flags.DEFINE_integer("top_k", 0, "Keep the k most likely tokens (0: all).")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Keep the smallest set with probability >= p.")
_BEAM_SIZE = flags.DEFINE_integer("beam_size", 4, "Beam search: beams (all are printed).")
_LENGTH_PENALTY = flags.DEFINE_float("length_penalty", 0.0, "Beam search: alpha.")
_GUIDANCE = flags.DEFINE_float(
    "guidance_scale", 1.0, "Class-conditional image models trained with label dropout: "
    "classifier-free guidance w (0 unconditional, 1 conditional, > 1 guided).")
_TEXT = flags.DEFINE_multi_string(
    "text", None, "Text-conditional image models: a prompt to sample for, instead of the run's "
    "model.prompts (ASCII, at most model.max_text_len bytes; \"\" is the unconditional model). "
    "Repeat the flag for several; the samples come in blocks of each.")
_OUT = flags.DEFINE_string("out", "", "Other models: output folder (default WORKDIR/generated).")
flags.mark_flag_as_required("workdir")

FLAGS = flags.FLAGS
# The flags only a token model reads: set for another model, they would be silently ignored.
TOKEN_FLAGS = ("prompt", "length", "decode", "beam_size", "length_penalty")
# The flags that set a sampling key of the same name (`model.<flag>`) of other models, where their
# method module lists it in SAMPLING_KEYS; token models read the first three as decoder settings.
SAMPLING_FLAGS = ("temperature", "top_k", "top_p", "guidance_scale")
# The flags that only some token decoding strategies read, by strategy (greedy reads none).
DECODE_FLAGS = {"sample": ("num", "seed", "temperature", "top_k", "top_p"),
                "beam": ("beam_size", "length_penalty")}


class Refusal(ValueError):
  """An input that sample.py refuses; the message is one line that says what to change."""


def _given(name: str) -> bool:
  return FLAGS[name].present > 0


def check_values() -> list[str] | None:
  """Checks each flag's value on its own; returns the prompts as text, if any were given."""
  if _NUM.value < 1:
    raise Refusal(f"--num must be >= 1, got {_NUM.value}.")
  if _LENGTH.value is not None and _LENGTH.value < 1:
    raise Refusal(f"--length must be >= 1 (tokens to generate), got {_LENGTH.value}.")
  if not 0 <= _SEED.value < 2**32:
    raise Refusal(f"--seed must be in [0, 2**32), got {_SEED.value}.")
  if not 0 <= _TEMPERATURE.value < math.inf:  # NaN fails too
    raise Refusal(f"--temperature must be a finite number >= 0 (0 is greedy), got "
                  f"{_TEMPERATURE.value}.")
  if _TOP_K.value < 0:
    raise Refusal(f"--top_k must be >= 0 (0 keeps every token), got {_TOP_K.value}.")
  if not 0 < _TOP_P.value <= 1:  # NaN fails too
    raise Refusal(f"--top_p must be in (0, 1] (1 keeps every token), got {_TOP_P.value}.")
  if _BEAM_SIZE.value < 1:
    raise Refusal(f"--beam_size must be >= 1, got {_BEAM_SIZE.value}.")
  if not 0 <= _GUIDANCE.value < math.inf:
    raise Refusal(f"--guidance_scale must be a finite number >= 0 (0 unconditional, 1 "
                  f"conditional), got {_GUIDANCE.value}.")
  if not math.isfinite(_LENGTH_PENALTY.value):
    raise Refusal(f"--length_penalty must be a finite number, got {_LENGTH_PENALTY.value}.")
  text_prompts()  # each --text must be UTF-8
  return None if not _PROMPT.value else [prompt_text(prompt) for prompt in _PROMPT.value]


def prompt_text(prompt: str, flag: str = "--prompt") -> str:
  """The prompt as given on the command line (as `flag`), which must be UTF-8.

  Python decodes the command line with the file system encoding and keeps each byte it cannot
  decode as a lone surrogate (PEP 383), which absl passes on: `os.fsencode` recovers the exact
  bytes, whatever the locale, and they are decoded strictly.
  """
  try:
    raw = os.fsencode(prompt)
  except UnicodeEncodeError as e:
    raise Refusal(f"{flag} is not valid UTF-8: {prompt[e.start:e.end]!r} at character "
                  f"{e.start} is not text. Pass the prompt as UTF-8.") from None
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise Refusal(f"{flag} is not valid UTF-8: {raw[e.start:e.end]!r} at byte {e.start} "
                  f"({e.reason}). Pass the prompt as UTF-8.") from None


def text_prompts() -> list[str] | None:
  """The --text prompts as text, or None when none was given."""
  return None if not _TEXT.value else [prompt_text(text, "--text") for text in _TEXT.value]


def new_tokens(method) -> int:
  """Tokens a token model generates: --length, else the run's model.sample_length."""
  return method.sample_length if _LENGTH.value is None else _LENGTH.value


def read_setup(workdir: str) -> setup_lib.Setup:
  """The setup saved with `workdir`'s newest checkpoint. Creates, locks and moves nothing."""
  path = Path(workdir)
  if not path.is_dir():
    raise Refusal(f"--workdir {workdir} does not exist or is not a folder: pass the --workdir "
                  f"of a run of experiments/main.py.")
  checkpoints = path / "checkpoints"
  steps = [p for p in checkpoints.iterdir() if p.name.isdigit()] if checkpoints.is_dir() else []
  if not steps:
    raise Refusal(f"--workdir {workdir} has no checkpoint (no {checkpoints}/<step>/): train it "
                  f"first with experiments/main.py --workdir {workdir}, or pass another.")
  try:
    return setup_lib.saved_setup(workdir)
  except (checkpoint_lib.NoGoodCheckpointError, config_lib.ConfigError) as e:
    raise Refusal(str(e)) from None


def _listed(given: list[str]) -> tuple[str, str, str]:
  """(the flags, "applies" or "apply", "it" or "them")."""
  flags_ = ", ".join(f"--{name}" for name in given)
  return (flags_, "applies", "it") if len(given) == 1 else (flags_, "apply", "them")


def check_for_model(config, method, prompts: list[str] | None) -> list[tuple[int, ...]] | None:
  """Checks the flags against the run's model; returns a token model's prompts as ids.

  Every flag given must be one that the model reads, and each prompt (by default the run's own)
  must encode, by the model's codec, to ids of its vocabulary that with --length fit its context.
  """
  article = "an" if config.method[:1] in "aeiou" else "a"
  run = f"--workdir {_WORKDIR.value} holds {article} {config.method} run"
  if not hasattr(method, "sample"):
    raise Refusal(f"{run}, which does not generate: pass the workdir of a generative run.")
  if not isinstance(method, autoregressive.Autoregressive):
    given = [name for name in TOKEN_FLAGS if _given(name)]
    if given:
      flags_, verb, pronoun = _listed(given)
      raise Refusal(f"{flags_} {verb} to token models only, and {run}: drop {pronoun}.")
    module = names.submodule("gen_jax.methods", config.method, what="method")
    keys = getattr(module, "SAMPLING_KEYS", ())
    unread = [name for name in SAMPLING_FLAGS if _given(name) and name not in keys]
    if unread:
      flags_, verb, pronoun = _listed(unread)
      raise Refusal(f"{flags_} {verb} to models that read model.<flag> when they sample, and "
                    f"{run}, which does not: drop {pronoun}.")
    _check_texts(method, run)
    return None
  if _given("guidance_scale"):
    raise Refusal(f"--guidance_scale applies to class-conditional image models, and {run}: "
                  "drop it.")
  if _given("text"):
    raise Refusal(f"--text applies to text-conditional image models, and {run}: drop it.")
  if _given("out"):
    raise Refusal(f"--out applies to image and point models only, and {run}, whose "
                  f"continuations are printed: drop it.")
  _check_decode_flags()
  if prompts is None:
    return [_check_prompt(method, None, "The run's model.sample_prompt")]
  name = (lambda p: "--prompt") if len(prompts) == 1 else (lambda p: f"--prompt {p!r}")
  return [_check_prompt(method, prompt, name(prompt)) for prompt in prompts]


def _check_decode_flags() -> None:
  """Refuses the flags given that the chosen --decode does not read (DECODE_FLAGS)."""
  mode = _DECODE.value
  groups = [(other, [name for name in names_ if _given(name)])
            for other, names_ in DECODE_FLAGS.items() if other != mode]
  groups = [(other, given) for other, given in groups if given]
  if groups:
    listed = " and ".join(f"{', '.join(f'--{name}' for name in given)} (read by --decode "
                          f"{other})" for other, given in groups)
    many = len(groups) > 1 or len(groups[0][1]) > 1
    raise Refusal(f"--decode {mode} ignores {listed}: drop {'them' if many else 'it'}.")


def _check_texts(method, run: str) -> None:
  """Refuses --text unless the model is text-conditional and each prompt fits its encoder:
  at most model.max_text_len bytes, each a byte id of its vocabulary (ASCII for 128)."""
  texts = text_prompts()
  if texts is None:
    return
  condition = getattr(method, "conditioning", None)
  if not isinstance(condition, conditioning.TextConditional):
    raise Refusal(f"--text applies to text-conditional models (model.text_key), and {run}, "
                  f"which is not one: drop it.")
  vocab, max_len = condition.vocab_size, condition.max_len
  for text in texts:
    source = "--text" if len(texts) == 1 else f"--text {text!r}"
    size = len(text.encode("utf-8"))
    if size > max_len:
      raise Refusal(f"{source} is {size} bytes, more than the model's maximum text length of "
                    f"{max_len} (model.max_text_len): shorten it.")
    bad = sorted({c for c in text if any(b == conditioning.PAD_ID or b >= vocab
                                         for b in c.encode("utf-8"))})
    if bad:
      allowed = "ASCII" if vocab == 128 else f"the byte ids 1 .. {vocab - 1}"
      raise Refusal(f"{source} has characters outside the model's text vocabulary ({allowed}): "
                    f"{', '.join(map(repr, bad))}; remove them.")


def _check_prompt(method, prompt: str | None, source: str) -> tuple[int, ...]:
  """`prompt`'s ids (the run's own for None), refused unless they fit the model."""
  try:
    ids = method.sample_prompt if prompt is None else method.codec.encode(prompt)
  except ValueError as e:
    raise Refusal(f"{source}: {e}") from None
  if not ids:
    raise Refusal(f"{source} is empty: decoding continues at least one token.")
  vocab, max_len = method.network.vocab_size, method.network.max_len
  outside = sorted({i for i in ids if not 0 <= i < vocab})
  if outside:
    raise Refusal(f"{source} gives the token ids {outside}, outside the model's vocabulary of "
                  f"{vocab}: change the prompt.")
  length = new_tokens(method)
  if len(ids) + length - 1 > max_len:  # the last new token is not fed back
    named = "--length" if _LENGTH.value is not None else "the run's model.sample_length"
    most = max_len - len(ids) + 1
    fix = f"shorten the prompt or pass --length {most} or less" if most >= 1 else (
        "shorten the prompt")
    raise Refusal(f"{source} ({len(ids)} tokens) plus {named} {length} needs "
                  f"{len(ids) + length - 1} positions, which exceeds the model's "
                  f"max_len={max_len}: {fix}.")
  return ids


def generate_tokens(config, method, variables, rng, prompts: list[tuple[int, ...]]) -> None:
  """Prints `method`'s continuations of each prompt (ids), shown by its codec. Several prompts
  are decoded as one batch; each row continues as its prompt alone."""
  eos_id = config.model.get("eos_id")
  length = new_tokens(method)
  show = lambda ids, tokens: method.codec.decode(list(ids) + [int(t) for t in tokens])
  label = (lambda p: "") if len(prompts) == 1 else (lambda p: f"prompt {p}, ")
  if _DECODE.value == "beam":
    out = jax.jit(lambda v: method.beam_search(
        v, [list(ids) for ids in prompts], max_new_tokens=length,
        beam_size=_BEAM_SIZE.value, eos_id=eos_id,
        length_penalty=_LENGTH_PENALTY.value))(variables)
    for p, ids in enumerate(prompts):
      for rank in range(_BEAM_SIZE.value):
        if out.finished[p, rank]:  # else fewer sequences exist than beams
          print(f"=== {label(p)}beam {rank}: score {float(out.scores[p, rank]):.3f}")
          print(show(ids, out.sequences[p, rank, :int(out.lengths[p, rank])]))
    return
  if _DECODE.value == "greedy":  # deterministic: one sequence per prompt
    rows = list(prompts)
    decoder = autoregressive.Greedy(eos_id=eos_id)
  else:
    rows = [ids for ids in prompts for _ in range(_NUM.value)]
    decoder = autoregressive.Sampling(temperature=_TEMPERATURE.value, top_k=_TOP_K.value,
                                      top_p=_TOP_P.value, eos_id=eos_id)
  out = jax.jit(lambda v, r: method.generate(v, r, [list(ids) for ids in rows],
                                             max_new_tokens=length,
                                             decoder=decoder))(variables, rng)
  per_prompt = len(rows) // len(prompts)
  for i, (ids, row) in enumerate(zip(rows, np.asarray(out))):
    if eos_id is not None and eos_id in row:
      row = row[:list(row).index(eos_id) + 1]
    print(f"=== {label(i // per_prompt)}sample {i % per_prompt}")
    print(show(ids, row))


def with_sampling_flags(setup: setup_lib.Setup):
  """The run's method, rebuilt with `model.<flag>` set from each sampling flag given, and
  `model.prompts` from --text (checked against the model by its `from_config`); the parameters
  do not change."""
  given = {name: FLAGS[name].value for name in SAMPLING_FLAGS if _given(name)}
  if _given("text"):
    given["prompts"] = tuple(text_prompts())
  if not given:
    return setup.method
  config = config_lib.from_dict(config_lib.to_dict(setup.config))
  config.model.update(given)
  try:
    return setup_lib.build_method(config, setup.spec, setup.frozen)
  except ValueError as e:
    raise Refusal(str(e)) from None


def _named(stem: Path, suffix: str) -> Path:
  """`stem` + `suffix`: `with_suffix` would take a flag's decimals (`_temperature0.5`) for a
  suffix and replace them, so that other settings' files overwrite each other."""
  return stem.with_name(stem.name + suffix)


def _text_settings() -> str:
  """The --text prompts for a file name: each URL-quoted (exact and file-name safe), or their
  count and a hash where that would make the name too long."""
  texts = text_prompts() or []
  named = "".join(f"_text{urllib.parse.quote_plus(text, safe='')}" for text in texts)
  if len(named) <= 120:
    return named
  digest = hashlib.sha256("\0".join(texts).encode("utf-8")).hexdigest()[:12]
  return f"_texts{len(texts)}-{digest}"


def write_samples(samples, out_dir: Path, step: int) -> list[Path]:
  """Images [n, h, w, c] as a PNG grid, animations [n, frames, h, w, c] (a NeRF's turntable)
  as a GIF and a PNG grid of their frames, 2-D points [n, 2] as a scatter PNG, byte token ids
  [n, length] (integers in 0 .. 255) as UTF-8 text (`grids.save_byte_text`), others as .npy,
  named by step, seed, number and the sampling flags given, so that no run's own sample file,
  and no file of other settings, is overwritten."""
  items = samples.items() if isinstance(samples, dict) else [("samples", samples)]
  written = []
  for name, value in items:
    value = np.asarray(value)
    settings = "".join(f"_{flag}{FLAGS[flag].value:g}" for flag in SAMPLING_FLAGS
                       if _given(flag)) + _text_settings()
    stem = out_dir / f"{name}_step{step}_seed{_SEED.value}_num{_NUM.value}{settings}"
    if value.ndim == 5 and value.shape[-1] in (1, 3):
      written.append(grids.save_gif(value, _named(stem, ".gif")))
      value = value.reshape((-1,) + value.shape[2:])
    if value.ndim == 4:
      written.append(grids.save_image_grid(value, _named(stem, ".png")))
    elif value.ndim == 2 and value.shape[1] == 2 and value.dtype.kind == "f":
      written.append(grids.save_scatter(value, _named(stem, ".png"),
                                        title=f"{name}, step {step}, seed {_SEED.value}"))
    elif grids.is_byte_tokens(value):
      written.append(grids.save_byte_text(value, _named(stem, ".txt")))
    else:
      out_dir.mkdir(parents=True, exist_ok=True)
      np.save(_named(stem, ".npy"), value)
      written.append(_named(stem, ".npy"))
  return written


def main(argv):
  absl_logging.set_verbosity(absl_logging.WARNING)  # orbax reports every restore at INFO
  try:
    if len(argv) > 1:
      raise Refusal(f"unexpected arguments {argv[1:]}: every input is a --flag.")
    prompts = check_values()
    setup = read_setup(_WORKDIR.value)
    ids = check_for_model(setup.config, setup.method, prompts)
    method = setup.method if ids is not None else with_sampling_flags(setup)
    out_dir = Path(_OUT.value) if _OUT.value else Path(_WORKDIR.value) / "generated"
    if ids is None and out_dir.exists() and not out_dir.is_dir():
      raise Refusal(f"--out {out_dir} exists and is not a folder: pass a folder.")
  except Refusal as e:
    sys.exit(f"sample.py: {e}")
  run = setup_lib.load_run(_WORKDIR.value)
  config, state = run.config, run.state
  variables = state.variables()
  rng = jax.random.PRNGKey(_SEED.value)
  if ids is not None:
    generate_tokens(config, method, variables, rng, ids)
    return
  for path in write_samples(method.sample(variables, rng, _NUM.value), out_dir, int(state.step)):
    print(path)


if __name__ == "__main__":
  app.run(main)
