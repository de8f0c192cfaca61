"""experiments/sample.py: what it refuses (one line, before the state is loaded), where it writes,
and what it prints, on one tiny trained run per kind: a byte language model and 2-D points.

Most calls run its `main` in this process with parsed flags; the two that need a real command
line (bytes that are not UTF-8, and a C locale) run it as a subprocess.
"""

import hashlib
import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags

from gen_jax.methods import classifier, diffusion
from gen_jax.train import config as config_lib
from gen_jax.train.loop import load_checkpoint, train_and_evaluate

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments/sample.py"


def _config(name: str, arg: str = "tiny"):
  path = ROOT / f"experiments/configs/{name}.py"
  spec = importlib.util.spec_from_file_location(f"{name}_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


@pytest.fixture(scope="module")
def sample_module():
  """experiments/sample.py imported once; its flags are removed again afterwards."""
  spec = importlib.util.spec_from_file_location("sample_script", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  yield module
  remove_script_flags(module)


def remove_script_flags(module) -> None:
  """Deletes the flags `module` defined (its `FlagHolder`s), and only those: libraries it
  imported (grain) keep theirs, which their modules, already imported, would not define again.
  (absl's flags_by_module_dict names the defining module "importlib._bootstrap" on Python 3.13
  for a module run by `exec_module`, so it cannot find them.)"""
  for holder in vars(module).values():
    if isinstance(holder, flags.FlagHolder) and holder.name in flags.FLAGS:
      delattr(flags.FLAGS, holder.name)


@pytest.fixture(scope="module")
def lm_workdir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("lm")
  train_and_evaluate(_config("lm_python"), workdir)
  return workdir


@pytest.fixture(scope="module")
def points_workdir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("ring8")
  train_and_evaluate(_config("gan_ring8"), workdir)
  return workdir


def run(module, *args: str) -> str | None:
  """Parses `args` as sample.py's command line and calls its main; returns the exit message of a
  refusal (a string exit code: status 1), or None when it ran to the end."""
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["sample.py", *args])
  try:
    module.main(["sample.py"])
  except SystemExit as e:
    return e.code
  return None


def refuse(module, monkeypatch, *args: str) -> str:
  """The one-line message of a refusal, which must come before the state is loaded."""

  def no_load(workdir):
    raise AssertionError(f"{workdir} was loaded before the inputs were refused")

  monkeypatch.setattr(module.setup_lib, "load_run", no_load)
  message = run(module, *args)
  assert isinstance(message, str), f"not refused: {args}"
  assert message.startswith("sample.py: ") and "\n" not in message, message
  return message


def digest(directory: Path) -> dict[str, str]:
  """SHA-256 of every file under `directory`, by relative path."""
  return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("args,message", [
    (["--beam_size=0"], "--beam_size must be >= 1, got 0."),
    (["--beam_size=-3"], "--beam_size must be >= 1, got -3."),
    (["--top_p=0"], "--top_p must be in (0, 1] (1 keeps every token), got 0.0."),
    (["--top_p=1.5"], "--top_p must be in (0, 1] (1 keeps every token), got 1.5."),
    (["--top_p=nan"], "--top_p must be in (0, 1] (1 keeps every token), got nan."),
    (["--top_k=-1"], "--top_k must be >= 0 (0 keeps every token), got -1."),
    (["--temperature=-0.5"], "--temperature must be a finite number >= 0 (0 is greedy), got -0.5."),
    (["--temperature=nan"], "--temperature must be a finite number >= 0 (0 is greedy), got nan."),
    (["--num=0"], "--num must be >= 1, got 0."),
    (["--num=-2"], "--num must be >= 1, got -2."),
    (["--length=0"], "--length must be >= 1 (tokens to generate), got 0."),
    (["--seed=-1"], "--seed must be in [0, 2**32), got -1."),
    (["--length_penalty=inf"], "--length_penalty must be a finite number, got inf."),
])
def test_invalid_values_are_refused(sample_module, lm_workdir, monkeypatch, args, message):
  got = refuse(sample_module, monkeypatch, f"--workdir={lm_workdir}", *args)
  assert got == f"sample.py: {message}"


def test_missing_workdir_is_refused_and_not_created(sample_module, tmp_path, monkeypatch):
  missing = tmp_path / "no_such_run"
  got = refuse(sample_module, monkeypatch, f"--workdir={missing}")
  assert got.startswith(f"sample.py: --workdir {missing} does not exist")
  assert not missing.exists()


def test_workdir_without_checkpoints_is_refused_and_left_as_it_was(sample_module, tmp_path,
                                                                   monkeypatch):
  empty = tmp_path / "empty"
  empty.mkdir()
  got = refuse(sample_module, monkeypatch, f"--workdir={empty}")
  assert got.startswith(f"sample.py: --workdir {empty} has no checkpoint")
  assert list(empty.iterdir()) == []
  # Only an unfinished save (orbax's temporary folder) is no checkpoint either.
  (empty / "checkpoints" / "4.orbax-checkpoint-tmp-1").mkdir(parents=True)
  got = refuse(sample_module, monkeypatch, f"--workdir={empty}")
  assert got.startswith(f"sample.py: --workdir {empty} has no checkpoint")
  assert [p.name for p in (empty / "checkpoints").iterdir()] == ["4.orbax-checkpoint-tmp-1"]


@pytest.mark.parametrize("args,named", [
    (["--prompt=x"], "--prompt applies"),
    (["--decode=beam", "--beam_size=2", "--length_penalty=0.6"],
     "--decode, --beam_size, --length_penalty apply"),
    (["--length=5"], "--length applies"),
])
def test_token_flags_on_a_points_run_are_refused(sample_module, points_workdir, monkeypatch, args,
                                                 named):
  got = refuse(sample_module, monkeypatch, f"--workdir={points_workdir}", *args)
  drop = "it" if named.endswith("applies") else "them"
  assert got == (f"sample.py: {named} to token models only, and --workdir {points_workdir} "
                 f"holds a gan run: drop {drop}.")


@pytest.mark.parametrize("args,named", [
    (["--top_k=5"], "--top_k applies"),
    (["--top_p=0.9", "--temperature=0.5"], "--temperature, --top_p apply"),
    (["--guidance_scale=2"], "--guidance_scale applies"),
])
def test_sampling_flags_a_gan_does_not_read_are_refused(sample_module, points_workdir,
                                                        monkeypatch, args, named):
  got = refuse(sample_module, monkeypatch, f"--workdir={points_workdir}", *args)
  drop = "it" if named.endswith("applies") else "them"
  assert got == (f"sample.py: {named} to models that read model.<flag> when they sample, and "
                 f"--workdir {points_workdir} holds a gan run, which does not: drop {drop}.")


@pytest.fixture(scope="module")
def pixel_workdir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("pixelcnn")
  train_and_evaluate(_config("pixelcnn_digits", "conditional,tiny"), workdir)
  return workdir


def test_sampling_flags_set_the_image_models_sampling_keys(sample_module, pixel_workdir,
                                                           monkeypatch, capsys):
  # Greedy decoding (temperature 0) draws no random numbers: two seeds give the same images.
  for seed in (1, 2):
    assert run(sample_module, f"--workdir={pixel_workdir}", "--temperature=0", "--top_k=2",
               f"--seed={seed}", "--num=3") is None
  out = capsys.readouterr().out.splitlines()
  assert [Path(p).name for p in out] == ["samples_step4_seed1_num3_temperature0_top_k2.png",
                                         "samples_step4_seed2_num3_temperature0_top_k2.png"]
  assert Path(out[0]).read_bytes() == Path(out[1]).read_bytes()
  # This run was trained without label dropout: guidance is refused before anything loads.
  got = refuse(sample_module, monkeypatch, f"--workdir={pixel_workdir}", "--guidance_scale=2")
  assert got.startswith("sample.py: model.guidance_scale=2.0 needs a class-conditional model "
                        "trained with model.label_dropout > 0")
  got = refuse(sample_module, monkeypatch, f"--workdir={pixel_workdir}", "--guidance_scale=-1")
  assert got.startswith("sample.py: --guidance_scale must be a finite number >= 0")


def test_out_on_a_token_run_is_refused(sample_module, lm_workdir, monkeypatch):
  got = refuse(sample_module, monkeypatch, f"--workdir={lm_workdir}", "--out=/tmp/x")
  assert got.startswith("sample.py: --out applies to image and point models only")


def test_prompt_that_does_not_fit_the_model_is_refused(sample_module, lm_workdir, monkeypatch):
  # lm_python:tiny has max_len 32, and P prompt tokens plus N new ones feed P + N - 1: its
  # prompt "def " (4 bytes) + 30 tokens is one too many.
  got = refuse(sample_module, monkeypatch, f"--workdir={lm_workdir}", "--length=30")
  assert got == ("sample.py: The run's model.sample_prompt (4 tokens) plus --length 30 needs 33 "
                 "positions, which exceeds the model's max_len=32: shorten the prompt or pass "
                 "--length 29 or less.")
  got = refuse(sample_module, monkeypatch, f"--workdir={lm_workdir}", "--prompt=import",
               "--length=28")
  assert got == ("sample.py: --prompt (6 tokens) plus --length 28 needs 33 positions, which "
                 "exceeds the model's max_len=32: shorten the prompt or pass --length 27 or "
                 "less.")
  got = refuse(sample_module, monkeypatch, f"--workdir={lm_workdir}", "--prompt=")
  assert got == "sample.py: --prompt is empty: decoding continues at least one token."


def test_a_run_that_does_not_generate_is_refused(sample_module, lm_workdir):
  config = config_lib.resolve(_config("classifier_digits"))
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["sample.py", f"--workdir={lm_workdir}"])
  with pytest.raises(sample_module.Refusal, match="holds a classifier run, which does not "
                     "generate: pass the workdir of a generative run"):
    sample_module.check_for_model(config, classifier.from_config(config), "def ")


def subprocess_run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, timeout=300,
                        env={**os.environ, **(env or {})})


def test_prompt_bytes_that_are_not_utf8_are_refused(lm_workdir):
  # Python hands such bytes to absl as lone surrogates ('\udcff'); encoding them fails.
  out = subprocess_run(f"--workdir={lm_workdir}".encode(), b"--prompt=ab\xff")
  assert out.returncode == 1
  assert out.stderr.decode() == (
      "sample.py: --prompt is not valid UTF-8: b'\\xff' at byte 2 (invalid start byte). Pass "
      "the prompt as UTF-8.\n")
  assert out.stdout == b""


def test_utf8_prompt_arrives_whole_in_a_c_locale(lm_workdir):
  # In a C locale Python decodes the command line as ASCII, so 'é' arrives as two surrogates;
  # the script must still see its two UTF-8 bytes. A --length too long for the model is refused
  # after the prompt is read, naming its token count, so nothing is loaded.
  out = subprocess_run(f"--workdir={lm_workdir}".encode(), "--prompt=café".encode(),
                       b"--length=40", env={"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0",
                                            "PYTHONCOERCECLOCALE": "0"})
  assert out.returncode == 1
  assert out.stderr.decode() == (
      "sample.py: --prompt (5 tokens) plus --length 40 needs 44 positions, which exceeds the "
      "model's max_len=32: shorten the prompt or pass --length 28 or less.\n")


def test_points_are_written_apart_from_the_run_samples(sample_module, points_workdir, capsys):
  run_files = {d: digest(points_workdir / d) for d in ("samples", "tb", "checkpoints")}
  metrics = (points_workdir / "metrics.jsonl").read_bytes()
  assert run_files["samples"], "the run wrote no samples"
  assert run(sample_module, f"--workdir={points_workdir}", "--num=5", "--seed=3") is None
  written = points_workdir / "generated" / "samples_step6_seed3_num5.png"
  assert capsys.readouterr().out.splitlines() == [str(written)]
  assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  for directory, files in run_files.items():
    assert digest(points_workdir / directory) == files, f"{directory}/ changed"
  assert (points_workdir / "metrics.jsonl").read_bytes() == metrics


def test_out_names_the_folder(sample_module, points_workdir, tmp_path, capsys):
  out = tmp_path / "figures"
  assert run(sample_module, f"--workdir={points_workdir}", f"--out={out}") is None
  assert capsys.readouterr().out.splitlines() == [str(out / "samples_step6_seed0_num4.png")]
  assert [p.name for p in out.iterdir()] == ["samples_step6_seed0_num4.png"]


def test_sampling_flags_with_decimals_keep_their_decimals_in_the_file_name(sample_module,
                                                                          tmp_path):
  # Path.with_suffix took ".5" of "_guidance_scale2.5" for a suffix: 2.5 overwrote 2's file.
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["sample.py", "--workdir=unused", "--num=4", "--guidance_scale=2.5",
               "--temperature=0.75"])
  written = sample_module.write_samples({"samples": np.zeros((4, 8, 8, 1), np.float32)},
                                        tmp_path, 3)
  assert [p.name for p in written] == [
      "samples_step3_seed0_num4_temperature0.75_guidance_scale2.5.png"]


def test_image_grids_are_named_by_step_seed_and_num(sample_module, tmp_path):
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["sample.py", "--workdir=unused", "--seed=7", "--num=4"])
  images = np.zeros((4, 8, 8, 1), np.float32)
  written = sample_module.write_samples({"samples": images, "interpolation": images},
                                        tmp_path / "generated", 1200)
  assert written == [tmp_path / "generated" / "samples_step1200_seed7_num4.png",
                     tmp_path / "generated" / "interpolation_step1200_seed7_num4.png"]
  assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)


def test_greedy_text_matches_repeated_full_forward_passes(sample_module, lm_workdir, capsys):
  # Oracle: the argmax of an uncached forward pass over the growing prefix, 3 times.
  assert run(sample_module, f"--workdir={lm_workdir}", "--decode=greedy", "--prompt=é",
             "--length=3") is None
  _, method, state = load_checkpoint(lm_workdir)
  params = state.variables()["params"]["model"]
  tokens = list("é".encode())
  for _ in range(3):
    logits = method.network.apply({"params": params}, jnp.asarray([tokens], jnp.int32))
    tokens.append(int(jnp.argmax(logits[0, -1])))
  expected = bytes(tokens).decode("utf-8", errors="replace")
  assert capsys.readouterr().out == f"=== sample 0\n{expected}\n"


def test_several_prompts_are_decoded_in_one_batch_each_as_alone(sample_module, lm_workdir,
                                                                capsys, monkeypatch):
  # Oracle: each prompt decoded by its own run of the script.
  alone = []
  for prompt in ("é", "def x"):
    assert run(sample_module, f"--workdir={lm_workdir}", "--decode=greedy", f"--prompt={prompt}",
               "--length=4") is None
    alone.append(capsys.readouterr().out.split("\n")[1])
  assert run(sample_module, f"--workdir={lm_workdir}", "--decode=greedy", "--prompt=é",
             "--prompt=def x", "--length=4") is None
  assert capsys.readouterr().out == (f"=== prompt 0, sample 0\n{alone[0]}\n"
                                     f"=== prompt 1, sample 0\n{alone[1]}\n")
  got = refuse(sample_module, monkeypatch, f"--workdir={lm_workdir}", "--prompt=é", "--prompt=",
               "--length=4")
  assert got == "sample.py: --prompt '' is empty: decoding continues at least one token."


# ----------------------------------------------------------------------------------------------
# Token ids of other models as text, token models' default length, flags the decoding strategy
# ignores, and text prompts.
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prefix_workdir(lm_workdir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("prefix")
  config = _config("prefix_tuning_python")
  config.frozen.lm = str(lm_workdir)
  train_and_evaluate(config, workdir)
  return workdir


@pytest.fixture(scope="module")
def caption_lm_workdir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("caption_lm")
  train_and_evaluate(_config("caption_lm_digits"), workdir)
  return workdir


def test_a_prefix_tuned_lms_samples_are_written_as_text(sample_module, prefix_workdir, capsys):
  # Oracle: the method's own samples for the same seed, each row's bytes decoded by hand.
  assert run(sample_module, f"--workdir={prefix_workdir}", "--num=3", "--seed=1") is None
  written = prefix_workdir / "generated" / "samples_step4_seed1_num3.txt"
  assert capsys.readouterr().out.splitlines() == [str(written)]
  _, method, state = load_checkpoint(prefix_workdir)
  rows = np.asarray(jax.jit(method.sample, static_argnums=2)(state.variables(),
                                                             jax.random.PRNGKey(1), 3))
  texts = [bytes(int(t) for t in row).decode("utf-8", errors="replace") for row in rows]
  assert all(text.startswith("def ") for text in texts)  # the prompt, then the continuation
  assert written.read_text(encoding="utf-8") == "\n\n----\n\n".join(texts)


def test_captions_are_written_as_text_beside_the_images(sample_module, tmp_path):
  # A frozen captioner's samples: images and byte captions (spaces after the end byte); byte
  # 0xff is no UTF-8 and becomes U+FFFD. Ids beyond a byte (a VQ-VAE's codes) stay .npy.
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["sample.py", "--workdir=unused", "--num=2"])
  captions = np.array([list(b"a two\n  "), list("€ ".encode()) + [0xFF, 10, 32, 32]],
                      np.int32)
  written = sample_module.write_samples(
      {"images": np.zeros((2, 8, 8, 1), np.float32), "captions": captions,
       "codes": np.array([[3, 511]], np.int32)}, tmp_path, 3)
  assert [p.name for p in written] == ["images_step3_seed0_num2.png",
                                       "captions_step3_seed0_num2.txt",
                                       "codes_step3_seed0_num2.npy"]
  assert written[1].read_text(encoding="utf-8") == "a two\n  \n\n----\n\n€ \ufffd\n  "


def test_a_token_model_generates_its_runs_sample_length_by_default(sample_module,
                                                                   caption_lm_workdir,
                                                                   monkeypatch, capsys):
  # caption_lm_digits:tiny has max_len 32 and model.sample_length 16 (a caption); the old
  # default of 128 tokens did not fit, so the plain command was refused.
  assert run(sample_module, f"--workdir={caption_lm_workdir}") is None
  assert [line for line in capsys.readouterr().out.splitlines() if line.startswith("===")] == [
      f"=== sample {i}" for i in range(4)]
  # Oracle: the same decoding with --length 16 given.
  assert run(sample_module, f"--workdir={caption_lm_workdir}", "--decode=greedy") is None
  default = capsys.readouterr().out
  assert run(sample_module, f"--workdir={caption_lm_workdir}", "--decode=greedy",
             "--length=16") is None
  assert capsys.readouterr().out == default
  got = refuse(sample_module, monkeypatch, f"--workdir={caption_lm_workdir}",
               "--prompt=" + "x" * 18)
  assert got == ("sample.py: --prompt (18 tokens) plus the run's model.sample_length 16 needs "
                 "33 positions, which exceeds the model's max_len=32: shorten the prompt or pass "
                 "--length 15 or less.")


@pytest.mark.parametrize("args,message", [
    (["--decode=greedy", "--num=2"], "--decode greedy ignores --num (read by --decode sample): "
     "drop it."),
    (["--decode=greedy", "--seed=3", "--length_penalty=0.5"],
     "--decode greedy ignores --seed (read by --decode sample) and --length_penalty (read by "
     "--decode beam): drop them."),
    (["--decode=beam", "--top_k=5", "--temperature=0.5"],
     "--decode beam ignores --temperature, --top_k (read by --decode sample): drop them."),
    (["--beam_size=2"], "--decode sample ignores --beam_size (read by --decode beam): drop it."),
])
def test_flags_the_decoding_strategy_ignores_are_refused(sample_module, lm_workdir, monkeypatch,
                                                         args, message):
  got = refuse(sample_module, monkeypatch, f"--workdir={lm_workdir}", *args)
  assert got == f"sample.py: {message}"


# Each decoding strategy's own flags, written out (greedy reads none of them).
_READS = {"sample": ("num", "seed", "temperature", "top_k", "top_p"),
          "beam": ("beam_size", "length_penalty")}
_VALUES = {"num": 2, "seed": 3, "temperature": 0.5, "top_k": 5, "top_p": 0.9, "beam_size": 2,
           "length_penalty": 0.5}


@pytest.mark.parametrize("decode,flag", [
    (decode, flag) for decode in ("greedy", "sample", "beam")
    for reader, flags_ in _READS.items() if reader != decode for flag in flags_])
def test_every_flag_of_another_strategy_is_refused(sample_module, lm_workdir, monkeypatch,
                                                   decode, flag):
  reader = next(r for r, flags_ in _READS.items() if flag in flags_)
  got = refuse(sample_module, monkeypatch, f"--workdir={lm_workdir}", f"--decode={decode}",
               f"--{flag}={_VALUES[flag]}")
  assert got == (f"sample.py: --decode {decode} ignores --{flag} (read by --decode {reader}): "
                 f"drop it.")


def _text_model():
  config = _config("ddpm_digits_text")
  config.model.image_shape = (8, 8, 1)
  return config, diffusion.from_config(config)


@pytest.mark.parametrize("texts,message", [
    (["x" * 33], "--text is 33 bytes, more than the model's maximum text length of 32 "
     "(model.max_text_len): shorten it."),
    (["a seven", "ein Sieben-Zähler"],
     "--text 'ein Sieben-Zähler' has characters outside the model's text vocabulary (ASCII): "
     "'ä'; remove them."),
])
def test_text_prompts_that_do_not_fit_the_encoder_are_refused(sample_module, texts, message):
  config, method = _text_model()
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["sample.py", "--workdir=unused", *(f"--text={text}" for text in texts)])
  with pytest.raises(sample_module.Refusal) as refusal:
    sample_module.check_for_model(config, method, None)
  assert str(refusal.value) == message


def test_text_on_a_model_without_text_is_refused(sample_module, points_workdir, lm_workdir,
                                                 monkeypatch):
  got = refuse(sample_module, monkeypatch, f"--workdir={points_workdir}", "--text=a two")
  assert got == (f"sample.py: --text applies to text-conditional models (model.text_key), and "
                 f"--workdir {points_workdir} holds a gan run, which is not one: drop it.")
  got = refuse(sample_module, monkeypatch, f"--workdir={lm_workdir}", "--text=a two")
  assert got == (f"sample.py: --text applies to text-conditional image models, and --workdir "
                 f"{lm_workdir} holds an autoregressive run: drop it.")


def test_text_sets_the_prompts_that_the_samples_are_drawn_for(sample_module, tmp_path):
  config, method = _text_model()
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["sample.py", "--workdir=unused", "--text=a thick seven", "--text=a/b, 2"])
  setup = types.SimpleNamespace(config=config, spec=None, frozen={}, method=method)
  rebuilt = sample_module.with_sampling_flags(setup)
  assert rebuilt.conditioning.prompts == ("a thick seven", "a/b, 2")
  assert method.conditioning.prompts == tuple(config.model.prompts)  # the run's are kept
  # Row r of the grid is prompt r: its token ids, as the network reads them.
  expected = np.zeros((2, 32), np.int32)
  expected[0, :13], expected[1, :6] = list(b"a thick seven"), list(b"a/b, 2")
  np.testing.assert_array_equal(rebuilt.conditioning.table, expected)
  written = sample_module.write_samples({"samples": np.zeros((2, 8, 8, 1), np.float32)},
                                        tmp_path, 3)
  assert [p.name for p in written] == [
      "samples_step3_seed0_num4_texta+thick+seven_texta%2Fb%2C+2.png"]
