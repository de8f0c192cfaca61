"""Checkpointer on small hand-made states: what is saved, restored, refused and set aside."""

import importlib
import json
import logging
import os
import pkgutil
import re
import signal
import subprocess
import sys
from pathlib import Path

import jax
import ml_dtypes
import numpy as np
import pytest

from gen_jax import methods
from gen_jax.train import checkpoint as checkpoint_lib
from gen_jax.train import config as config_lib

ROOT = Path(__file__).resolve().parents[2]
METHODS = sorted(m.name for m in pkgutil.iter_modules(methods.__path__) if m.name != "base")


def make_state(scale: float = 1.0) -> dict:
  return {"params": {"w": np.full((2, 3), scale, np.float32), "b": np.zeros(3, np.float32)},
          "opt_state": {"count": np.array(3, np.int32), "mu": np.ones(3, np.float32)},
          "step": np.array(7, np.int32)}


def abstract(state: dict):
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state)


def config(method: str = "classifier", **model) -> dict:
  c = config_lib.defaults(method)
  c.data.name = "digits"
  c.model.update(model)
  return config_lib.to_dict(c)


DATA_STATE = {"step": 7, "name": "digits", "batch_size": 32, "process_count": 1}


def saved(directory: Path, steps=(1, 2), cfg=None) -> None:
  """Writes a checkpoint of `make_state(step)` at each step, then closes the directory."""
  checkpointer = checkpoint_lib.Checkpointer(directory, max_to_keep=10)
  for step in steps:
    checkpointer.save(step, make_state(step), DATA_STATE, cfg or config())
  checkpointer.close()


def restore(directory: Path, cfg=None, **data_state):
  checkpointer = checkpoint_lib.Checkpointer(directory, max_to_keep=10)
  try:
    return checkpointer.restore(abstract(make_state()), cfg or config(), **data_state)
  finally:
    checkpointer.close()


# --- A state is written only when finite --------------------------------------------------------


@pytest.mark.parametrize("leaf, value", [("params/w", np.nan), ("opt_state/mu", np.inf),
                                         ("params/b", -np.inf)])
def test_a_non_finite_state_is_refused_and_nothing_is_written(tmp_path, leaf, value):
  checkpointer = checkpoint_lib.Checkpointer(tmp_path, max_to_keep=10)
  checkpointer.save(1, make_state(), DATA_STATE, config())
  bad = make_state()
  section, name = leaf.split("/")
  bad[section][name] = bad[section][name].copy()
  bad[section][name].flat[-1] = value
  with pytest.raises(checkpoint_lib.NonFiniteStateError, match=f"values in {leaf}$") as error:
    checkpointer.save(2, bad, DATA_STATE, config())
  assert error.value.step == 2 and error.value.leaves == [leaf]
  checkpointer.close()
  assert checkpoint_lib.Checkpointer(tmp_path, max_to_keep=10, read_only=True).steps() == [1]


def test_non_finite_leaves_checks_every_float_type_and_names_them_in_order():
  state = {"a": np.array([1.0, np.nan], ml_dtypes.bfloat16), "b": np.array([2**31 - 1], np.int32),
           "c": np.array([np.inf], np.float16), "d": np.ones(2, np.float64),
           "e": [np.array(np.nan + 1j, np.complex64)]}
  assert checkpoint_lib.non_finite_leaves(state) == ["a", "c", "e/0"]


# --- One writer per directory --------------------------------------------------------------------


def test_a_second_writer_is_refused_until_the_first_closes(tmp_path):
  first = checkpoint_lib.Checkpointer(tmp_path, max_to_keep=10)
  with pytest.raises(checkpoint_lib.CheckpointDirInUseError,
                     match=f"process {os.getpid()} on .* holds {re.escape(str(tmp_path))}/lock"):
    checkpoint_lib.Checkpointer(tmp_path, max_to_keep=10)
  reader = checkpoint_lib.Checkpointer(tmp_path, max_to_keep=10, read_only=True)  # not a writer
  assert reader.steps() == []
  reader.close()
  first.close()
  checkpoint_lib.Checkpointer(tmp_path, max_to_keep=10).close()


def test_the_lock_of_another_process_holds_until_it_is_killed(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, "-c",
       "import sys, time\n"
       "from gen_jax.train import checkpoint\n"
       f"held = checkpoint.Checkpointer({str(tmp_path)!r}, max_to_keep=1)\n"
       "print('locked', flush=True)\n"
       "time.sleep(600)\n"],
      cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(checkpoint_lib.CheckpointDirInUseError, match=f"process {holder.pid} "):
      checkpoint_lib.Checkpointer(tmp_path, max_to_keep=1)
  finally:
    holder.send_signal(signal.SIGKILL)  # no cleanup runs: the OS alone releases the lock
    holder.wait()
  checkpoint_lib.Checkpointer(tmp_path, max_to_keep=1).close()


# --- What a continuation may change --------------------------------------------------------------


def test_every_sampling_key_is_a_model_key_of_its_method():
  for name in METHODS:
    module = importlib.import_module(f"gen_jax.methods.{name}")
    keys = getattr(module, "SAMPLING_KEYS")
    assert isinstance(keys, frozenset) and keys <= set(module.default_model_config()), name


@pytest.mark.parametrize("method, sampling, architecture", [
    ("diffusion", dict(sample_steps=7, sampler="ddim", eta=0.5, guidance_scale=3.0,
                       clip_x0=0.0, posterior_variance=False), dict(widths=(8, 16))),
    ("gan", dict(interpolation="linear"), dict(latent_dim=3)),
    ("vae", dict(eval_samples=10, eval_chunk=5, image="mean"), dict(latent_dim=3)),
    ("autoregressive", dict(sample_prompt="x", sample_length=3, temperature=0.5, top_k=2,
                            top_p=0.5), dict(d_model=64)),
])
def test_sampling_keys_may_change_architecture_keys_may_not(method, sampling, architecture):
  assert checkpoint_lib.config_differences(config(method), config(method, **sampling)) == []
  key, value = next(iter(architecture.items()))
  before = config(method)["model"][key]
  assert checkpoint_lib.config_differences(config(method), config(method, **architecture)) == [
      f"model.{key}: {before!r} -> {list(value) if isinstance(value, tuple) else value!r}"]


def test_every_key_of_the_data_stream_is_listed():
  current = config()
  current["seed"] = 1
  current["data"].update(batch_size=16, train_split="train[:90%]", seq_len=8, fresh=True,
                         preprocess=["scale_to_unit"], eval_batch_size=7, data_dir="/elsewhere")
  assert checkpoint_lib.config_differences(config(), current) == [
      "data.batch_size: 128 -> 16", "data.fresh: False -> True",
      "data.preprocess: [] -> ['scale_to_unit']", "data.seq_len: 0 -> 8",
      "data.train_split: 'train' -> 'train[:90%]'", "seed: 0 -> 1"]


def test_a_data_stream_read_differently_is_refused_and_kept(tmp_path):
  directory = tmp_path / "checkpoints"
  saved(directory)
  with pytest.raises(checkpoint_lib.CheckpointMismatchError,
                     match=r"process_count: 1 -> 2\. Run it as the saved run"):
    restore(directory, data_state={**DATA_STATE, "process_count": 2})
  assert restore(directory, data_state=DATA_STATE)[0] == 2  # nothing was moved


def test_a_state_of_another_structure_is_refused_not_set_aside(tmp_path):
  directory = tmp_path / "checkpoints"
  saved(directory)
  checkpointer = checkpoint_lib.Checkpointer(directory, max_to_keep=10)
  other = make_state()
  other["opt_state"] = {"inner": other["opt_state"]}  # as optax.chain nests a state
  current = config()
  current["optim"]["grad_clip_norm"] = 1.0
  with pytest.raises(checkpoint_lib.CheckpointMismatchError,
                     match=r"opt_state/count only in the checkpoint.*opt_state/inner/count only "
                     r"in this config's state.*optim.grad_clip_norm: 0.0 -> 1.0"):
    checkpointer.restore(abstract(other), current, DATA_STATE)
  checkpointer.close()
  assert not (tmp_path / "corrupt_checkpoints").exists()
  assert restore(directory)[0] == 2


# --- Unusable checkpoints: fall back, never start over silently ----------------------------------


def _edit_json(path: Path, edit) -> None:
  path.write_text(json.dumps(edit(json.loads(path.read_text()))))


DAMAGES = {
    "meta without checksum": ("meta", lambda m: {k: v for k, v in m.items() if k != "checksum"}),
    "meta without config": ("meta", lambda m: {k: v for k, v in m.items() if k != "config"}),
    "meta without step": ("meta", lambda m: {k: v for k, v in m.items() if k != "step"}),
    "checksum not a string": ("meta", lambda m: {**m, "checksum": 12}),
    "checksum truncated": ("meta", lambda m: {**m, "checksum": m["checksum"][:10]}),
    "config not a dict": ("meta", lambda m: {**m, "config": "classifier"}),
    "config without method": ("meta", lambda m: {**m, "config": {"model": {}, "data": {}}}),
    "meta of another step": ("meta", lambda m: {**m, "step": 1}),
    "meta a list": ("meta", lambda m: [m]),
    "data state without step": ("data", lambda d: {k: v for k, v in d.items() if k != "step"}),
    "data state step negative": ("data", lambda d: {**d, "step": -1}),
    "data state a string": ("data", lambda d: "7"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES) + ["data state unreadable", "meta missing"])
def test_an_incomplete_newest_checkpoint_falls_back_with_one_warning(tmp_path, damage, caplog):
  directory = tmp_path / "checkpoints"
  saved(directory)
  if damage == "data state unreadable":
    (directory / "2" / "data" / "metadata").write_text("{not json")
  elif damage == "meta missing":
    (directory / "2" / "meta" / "metadata").unlink()
  else:
    item, edit = DAMAGES[damage]
    _edit_json(directory / "2" / item / "metadata", edit)
  with caplog.at_level(logging.WARNING):
    step, state, data_state = restore(directory)
  assert step == 1 and data_state == DATA_STATE
  np.testing.assert_array_equal(state["params"]["w"], make_state(1)["params"]["w"])
  warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
  assert len(warnings) == 1 and warnings[0].startswith("Checkpoint at step 2 is unusable")
  assert [p.name.split("-")[0] for p in (tmp_path / "corrupt_checkpoints").iterdir()] == ["2"]


def test_no_fresh_start_while_checkpoints_lie_set_aside(tmp_path):
  directory = tmp_path / "checkpoints"
  saved(directory, steps=(1,))
  _edit_json(directory / "1" / "meta" / "metadata", DAMAGES["meta without checksum"][1])
  with pytest.raises(checkpoint_lib.NoGoodCheckpointError, match="could be restored"):
    restore(directory)
  # The rerun finds no checkpoint at all: it must not start again from step 0 over the one set
  # aside, and says how to choose.
  for _ in range(2):
    with pytest.raises(checkpoint_lib.NoGoodCheckpointError,
                       match=r"holds 1 set aside as unusable \(1-\d+\).*move one of the "
                       r"checkpoints in .*corrupt_checkpoints back.*delete .*new workdir"):
      restore(directory)
  (next((tmp_path / "corrupt_checkpoints").iterdir())).rename(tmp_path / "elsewhere")
  assert restore(directory) is None  # an empty corrupt_checkpoints/ is an explicit choice


def test_a_reader_skips_an_unusable_checkpoint_without_moving_it(tmp_path):
  directory = tmp_path / "checkpoints"
  saved(directory)
  _edit_json(directory / "2" / "meta" / "metadata", DAMAGES["meta without checksum"][1])
  reader = checkpoint_lib.Checkpointer(directory, max_to_keep=10, read_only=True)
  assert reader.read_config()["method"] == "classifier"
  assert reader.restore(abstract(make_state()), config())[0] == 1
  with pytest.raises(RuntimeError, match="read-only"):
    reader.save(3, make_state(), DATA_STATE, config())
  reader.close()
  assert sorted(p.name for p in directory.iterdir() if p.name.isdigit()) == ["1", "2"]
  assert not (tmp_path / "corrupt_checkpoints").exists()
