"""The config schema: every malformed value is refused by `resolve` in one line that names the key
and what it allows; good values come back as the defaults' types; bad config files and
command-line overrides end `experiments/main.py` with one line, not a traceback."""

import importlib.util
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import ml_collections
import numpy as np
import pytest

import gen_jax.methods
from gen_jax.train import config as config_lib
from gen_jax.train import optimizers

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "experiments/configs"


def tiny(name: str) -> ml_collections.ConfigDict:
  spec = importlib.util.spec_from_file_location(name, CONFIGS / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config("tiny")


def with_value(config: ml_collections.ConfigDict, path: str, value) -> ml_collections.ConfigDict:
  *sections, key = path.split(".")
  node = config
  for section in sections:
    node = node[section]
  node[key] = value
  return config


# (config, key, bad value, what the message must say is allowed). Each message must also name
# the key as `config.<key>`.
BAD_VALUES = [
    # Numbers out of range, NaN and infinity.
    ("classifier_digits", "optim.learning_rate", 0.0, "a finite number greater than 0"),
    ("classifier_digits", "optim.learning_rate", -1e-3, "a finite number greater than 0"),
    ("classifier_digits", "optim.learning_rate", float("nan"), "a finite number greater than 0"),
    ("classifier_digits", "optim.learning_rate", float("inf"), "a finite number greater than 0"),
    ("classifier_digits", "optim.warmup_steps", -5, "an integer of at least 0"),
    ("classifier_digits", "optim.grad_clip_norm", -1.0, "a finite number of at least 0"),
    ("classifier_digits", "train.max_to_keep", 0, "an integer of at least 1"),
    ("classifier_digits", "train.ema_decay", 2, r"a finite number in \[0, 1\)"),
    ("classifier_digits", "train.ema_decay", 1.0, r"a finite number in \[0, 1\)"),
    ("classifier_digits", "train.num_samples", 0, "an integer of at least 1"),
    ("classifier_digits", "train.num_steps", 0, "an integer of at least 1"),
    ("classifier_digits", "train.log_every", -1, "an integer of at least 1"),
    ("classifier_digits", "train.eval_every", -1, "an integer of at least 0"),
    ("classifier_digits", "data.batch_size", 0, "an integer of at least 1"),
    ("classifier_digits", "data.eval_batch_size", -64, "an integer of at least 0"),
    ("classifier_digits", "seed", -1, r"an integer in \[0, 4294967295\]"),
    ("classifier_digits", "seed", 2**32, r"an integer in \[0, 4294967295\]"),
    ("classifier_digits", "model.feature_dim", 0, "an integer of at least 1"),
    ("classifier_digits", "model.label_smoothing", 1.0, r"a finite number in \[0, 1\)"),
    ("vae_digits", "model.dropout", 1.5, r"a finite number in \[0, 1\)"),
    ("vae_digits", "model.latent_dim", -2, "an integer of at least 1"),
    ("vae_digits", "model.beta", -1.0, "a finite number of at least 0"),
    ("vae_digits", "model.num_levels", 1, "0 or an integer of at least 2"),
    ("gan_ring8", "model.n_critic", 0, "an integer of at least 1"),
    ("gan_ring8", "model.penalty_weight", float("nan"), "a finite number of at least 0"),
    ("ddpm_toy2d", "model.num_timesteps", 0, "an integer of at least 1"),
    ("ddpm_toy2d", "model.eta", 2.0, r"a finite number in \[0, 1\]"),
    ("ddpm_toy2d", "model.label_dropout", -0.1, r"a finite number in \[0, 1\)"),
    ("lm_python", "model.dropout_rate", 1.0, r"a finite number in \[0, 1\)"),
    ("lm_python", "model.top_p", 0.0, r"a finite number in \(0, 1\]"),
    ("lm_python", "model.temperature", -1.0, "a finite number of at least 0"),
    ("lm_python", "data.seq_len", 1, "0 or an integer of at least 2"),
    ("lm_python", "data.eval_stride", -1, "an integer of at least 0"),
    # Wrong types: a bool is no number, a float no int, a string no bool, a number no tuple.
    ("classifier_digits", "train.progress_bar", "False", "True or False"),
    ("classifier_digits", "train.async_checkpoints", 1, "True or False"),
    ("classifier_digits", "data.fresh", "yes", "True or False"),
    ("classifier_digits", "train.num_steps", 10.0, "an integer of at least 1"),
    ("classifier_digits", "train.num_steps", True, "an integer of at least 1"),
    ("classifier_digits", "optim.learning_rate", "1e-3", "a finite number greater than 0"),
    ("classifier_digits", "data.name", 5, "a non-empty string"),
    ("classifier_digits", "method", "", "a non-empty string"),
    ("classifier_digits", "model.widths", 5, "a non-empty tuple of integers of at least 1"),
    ("classifier_digits", "model.widths", (8, 0), "a non-empty tuple of integers of at least 1"),
    ("classifier_digits", "model.widths", (), "a non-empty tuple of integers of at least 1"),
    ("classifier_digits", "model.widths", (8.0, 16), "a non-empty tuple of integers"),
    ("ddpm_digits", "model.image_shape", (8, 8), r"\(\) or a tuple of 3 integers of at least 1"),
    ("classifier_digits", "data.preprocess", "scale_to_unit", r"write \('scale_to_unit',\)"),
    ("classifier_digits", "data.preprocess", ("scale",), "a tuple of strings from: scale_to_unit"),
    ("classifier_digits", "optim.kwargs", 3, "a dict of settings"),
    ("classifier_digits", "train", 5, "a dict of settings"),
    ("lm_python", "model.eos_id", "x", "None or an integer of at least 0"),
    # Optimizer arguments and per-player overrides.
    ("classifier_digits", "optim.kwargs", {"weight_decay": -1.0}, "a finite number of at least 0"),
    ("classifier_digits", "optim.kwargs", {"beta1": 0.5}, "not an argument of optax.adamw"),
    ("classifier_digits", "optim.kwargs", {"learning_rate": 0.1}, "must not be set"),
    ("gan_ring8", "optim.kwargs", {"b1": 1.0}, r"a finite number in \[0, 1\)"),
    ("gan_ring8", "optim.gen", {"learning_rate": -1.0}, "a finite number greater than 0"),
    ("gan_ring8", "optim.gen", {"warmup_steps": 1.5}, "an integer of at least 0"),
    ("gan_ring8", "optim.gen", {"kwargs": {"b2": -0.5}}, r"a finite number in \[0, 1\)"),
    # Two keys that disagree.
    ("ddpm_toy2d", "model.sample_steps", 51, "from 1 to model.num_timesteps = 50"),
    ("vae_digits", "model.eval_chunk", 3, "must divide model.eval_samples"),
    ("lm_python", "model.num_heads", 3, "must divide model.d_model = 16"),
    ("lm_python", "model.eos_id", 256, "below model.vocab_size = 256"),
    ("lm_python", "data.seq_len", 34, "at most model.max_len \\+ 1 = 33"),
    ("gan_ring8", "model.label_key", "mode", "at least 1 when config.model.label_key is set"),
    ("classifier_digits", "model.num_classes", 0, "at least 1"),
    # What the dataset says, known before training starts.
    ("classifier_digits", "data.eval_split", "valid", "a split of digits: test, train"),
    ("classifier_digits", "data.train_split", "trian", "did you mean 'train'"),
    ("classifier_digits", "data.eval_split", "test[:50%]+valid", "a split of digits"),
    ("gan_ring8", "data.eval_split", "validation", "a split of toy2d/ring8: test, train"),
    ("classifier_digits", "data.name", "digitz", "Unknown dataset 'digitz'"),
    ("classifier_digits", "data.batch_size", 2000, "at most the 1437 examples"),
    ("classifier_digits", "data.seq_len", 5, "0 for digits"),
    ("classifier_digits", "data.fresh", True, "False for digits"),
    ("classifier_digits", "model.num_classes", 5, "at least the 10 classes of digits"),
    ("vae_digits", "model.num_levels", 16, "at least the 17 grey levels of digits"),
    ("lm_python", "model.vocab_size", 100, "at least the 256 token ids"),
    ("lm_python", "data.eval_stride", 40, "an integer from 1 to seq_len - 1"),
    ("gan_ring8", "model.data_key", "points", "a key of the examples of toy2d/ring8: mode, point"),
    ("ddpm_digits", "model.image_shape", (9, 9, 1), r"the shape of the examples of digits"),
]


@pytest.mark.parametrize("name,key,value,allowed", BAD_VALUES,
                         ids=[f"{n}:{k}={v!r}" for n, k, v, _ in BAD_VALUES])
def test_a_bad_value_is_refused_in_one_line_naming_key_and_range(name, key, value, allowed):
  config = with_value(tiny(name), key, value)
  with pytest.raises(config_lib.ConfigError, match=allowed) as error:
    config_lib.resolve(config)
  message = str(error.value)
  assert f"config.{key}" in message and "\n" not in message


def test_unknown_keys_are_refused_with_the_close_match():
  config = tiny("gan_ring8")
  config.optim.gen.lr = 1.0
  with pytest.raises(config_lib.ConfigError, match=r"optim\.gen\.lr\. Valid keys under "
                                                   r"optim\.gen\.: grad_clip_norm, kwargs"):
    config_lib.resolve(config)
  config = tiny("classifier_digits")
  config.train.num_stepz = 5
  with pytest.raises(config_lib.ConfigError, match="did you mean train.num_steps"):
    config_lib.resolve(config)


def test_good_values_come_back_as_the_defaults_types():
  config = tiny("classifier_digits")
  config.optim.learning_rate = 1  # an int for a float key
  config.train.ema_decay = np.float32(0.5)
  config.train.num_steps = np.int64(7)
  config.model.widths = [8, 16]  # a list for a tuple key
  config.data.preprocess = ["scale_to_unit"]
  resolved = config_lib.resolve(config)
  assert type(resolved.optim.learning_rate) is float and resolved.optim.learning_rate == 1.0
  assert type(resolved.train.ema_decay) is float and resolved.train.ema_decay == 0.5
  assert type(resolved.train.num_steps) is int and resolved.train.num_steps == 7
  assert resolved.model.widths == (8, 16) and resolved.data.preprocess == ("scale_to_unit",)
  # Resolving is idempotent: a saved config (checkpoint metadata) resolves to itself.
  again = config_lib.from_dict(config_lib.to_dict(resolved))
  assert config_lib.to_dict(again) == config_lib.to_dict(resolved)


def test_a_placeholder_key_takes_none_or_its_type():
  config = tiny("lm_python")
  assert config_lib.resolve(config).model.eos_id is None
  config.model.eos_id = 10
  assert config_lib.resolve(config).model.eos_id == 10


def _methods() -> list[str]:
  return [m.name for m in pkgutil.iter_modules(gen_jax.methods.__path__)
          if not m.name.startswith("_") and m.name != "base"]


@pytest.mark.parametrize("method", _methods())
def test_every_numeric_model_key_has_a_range_its_default_satisfies(method):
  model = config_lib.defaults(method).model
  numeric = [k for k, v in config_lib._model_specs(method).items()
             if v.kind in (int, float) or (v.kind is tuple and v.items in (int, float))]
  assert sorted(k for k in numeric if k not in config_lib.model_rules(method)) == [], (
      "add the range of these keys to config.MODEL_RULES, or to the method module's own "
      "MODEL_RULES for a key no other method has")
  for key, spec in config_lib._model_specs(method).items():
    assert config_lib._checked(f"model.{key}", model[key], spec) == model[key]


def test_the_schema_covers_every_default_and_its_defaults_satisfy_it():
  assert set(config_lib.OPTIM_RULES) == set(optimizers.DEFAULTS)
  sections = {"": config_lib.TOP, "data.": config_lib.DATA, "train.": config_lib.TRAIN}
  for where, section in sections.items():
    for key, (default, rule) in section.items():
      if (where, key) not in (("", "method"), ("data.", "name")):  # no default: must be set
        spec = config_lib._spec(default, rule)
        assert config_lib._checked(where + key, default, spec) == default


def test_config_files_that_do_not_load_are_refused_in_one_line(tmp_path):
  with pytest.raises(config_lib.ConfigError, match="'nothere.py' does not exist"):
    config_lib.load_file("nothere.py")
  (tmp_path / "empty.py").write_text("X = 1\n")
  with pytest.raises(config_lib.ConfigError, match="defines no get_config"):
    config_lib.load_file(str(tmp_path / "empty.py"))
  (tmp_path / "broken.py").write_text("import ml_collections\n\ndef get_config(:\n")
  with pytest.raises(config_lib.ConfigError, match=r"does not load: SyntaxError.*\(line 3\)"):
    config_lib.load_file(str(tmp_path / "broken.py"))
  with pytest.raises(config_lib.ConfigError,
                     match=r"get_config\('bogus'\) failed: ValueError: Unknown config argument"):
    config_lib.load_file(f"{CONFIGS}/classifier_digits.py:bogus")


def test_overrides_of_missing_keys_are_refused_with_the_close_match():
  config = tiny("classifier_digits")
  config_lib.check_override(config, "train.num_steps")
  with pytest.raises(config_lib.ConfigError, match=r"train\.num_stepz \(did you mean "
                                                   r"train\.num_steps\?\)"):
    config_lib.check_override(config, "train.num_stepz")
  with pytest.raises(config_lib.ConfigError, match="give the whole dict"):
    config_lib.check_override(config, "optim.kwargs.b1")
  with pytest.raises(config_lib.ConfigError, match="train.num_steps is a value, not a section"):
    config_lib.check_override(config, "train.num_steps.x")


def run_main(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, str(ROOT / "experiments/main.py"), *args],
                        capture_output=True, text=True, timeout=120, env=dict(os.environ))


@pytest.mark.parametrize("args,message", [
    (("--config.train.num_stepz=5",), "train.num_stepz (did you mean train.num_steps?)"),
    (("--config.optim.learning_rate=-1",),
     "config.optim.learning_rate must be a finite number greater than 0 (got -1.0)"),
])
def test_main_reports_a_bad_override_in_one_line(tmp_path, args, message):
  out = run_main(f"--config={CONFIGS}/classifier_digits.py:tiny", f"--workdir={tmp_path}", *args)
  lines = [line for line in out.stderr.splitlines() if line.strip()]
  assert out.returncode != 0 and "Traceback" not in out.stderr
  assert len(lines) <= 5 and message in lines[-1], out.stderr
  assert not (tmp_path / "checkpoints").exists()


def test_main_reports_a_setting_a_network_refuses_in_one_line(tmp_path):
  # Refused by the network when the state is shaped (gen_jax.errors.SettingError), not by the
  # schema: one line all the same.
  out = run_main(f"--config={CONFIGS}/pixelcnn_digits.py:tiny", f"--workdir={tmp_path}",
                 "--config.model.kernel_size=4")
  lines = [line for line in out.stderr.splitlines() if line.strip()]
  assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
  assert lines[-1].startswith("Error: kernel_size=4: must be odd and at least 1"), out.stderr


def test_main_reports_a_missing_config_file_in_one_line(tmp_path):
  out = run_main(f"--config={tmp_path}/nothere.py", f"--workdir={tmp_path}")
  lines = [line for line in out.stderr.splitlines() if line.strip()]
  assert out.returncode != 0 and "Traceback" not in out.stderr and len(lines) <= 5, out.stderr
  assert lines[-1] == (
      f"Error: The config file '{tmp_path}/nothere.py' does not exist: pass an experiment file, "
      f"e.g. --config experiments/configs/classifier_digits.py[:tiny].")
