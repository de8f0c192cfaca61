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
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags

from gen_jax.methods import classifier
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
                 "positions, which exceeds the model's max_len=32: shorten one.")
  got = refuse(sample_module, monkeypatch, f"--workdir={lm_workdir}", "--prompt=import",
               "--length=28")
  assert got == ("sample.py: --prompt (6 tokens) plus --length 28 needs 33 positions, which "
                 "exceeds the model's max_len=32: shorten one.")
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
      "model's max_len=32: shorten one.\n")


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
