"""train_and_evaluate end to end: determinism, exact resume, sharding, safety, bad input."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest

from gen_jax import names
from gen_jax.train import checkpoint as checkpoint_lib
from gen_jax.train import config as config_lib
from gen_jax.train import loop as loop_lib
from gen_jax.train.loop import NonFiniteError, train_and_evaluate

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "experiments/configs/classifier_digits.py"


def tiny_config(**train) -> ml_collections.ConfigDict:
  sys.path.insert(0, str(CONFIG.parent))
  try:
    import classifier_digits  # pylint: disable=import-outside-toplevel
  finally:
    sys.path.pop(0)
  config = classifier_digits.get_config("tiny")
  config.train.update(train)
  return config


def final_checksum(workdir: Path) -> str:
  """The checksum the loop wrote with the newest checkpoint: a digest of the whole state."""
  checkpoints = workdir / "checkpoints"
  step = max(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
  return json.loads((checkpoints / str(step) / "meta" / "metadata").read_text())["checksum"]


def run_main(workdir: Path, *overrides: str, devices: int = 1, wait: bool = True):
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  cmd = [sys.executable, str(ROOT / "experiments/main.py"), f"--config={CONFIG}:tiny",
         f"--workdir={workdir}", "--config.train.progress_bar=False", *overrides]
  if not wait:
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
  out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  return out


def train_losses(workdir: Path) -> list[float]:
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [r["classifier/loss"] for r in rows if r["split"] == "train"]


def test_same_seed_gives_bitwise_identical_state(tmp_path):
  a = train_and_evaluate(tiny_config(), tmp_path / "a")
  b = train_and_evaluate(tiny_config(), tmp_path / "b")
  assert a.traces == 1 and b.traces == 1
  leaves_a, leaves_b = jax.tree.leaves(a.state), jax.tree.leaves(b.state)
  assert len(leaves_a) == len(leaves_b) > 0
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert 0.0 <= a.eval_metrics["accuracy"] <= 1.0
  assert (tmp_path / "a" / "metrics.jsonl").exists()
  assert list((tmp_path / "a" / "tb").iterdir()), "no TensorBoard event file"


def test_synchronous_cpu_dispatch_trains_the_same_state(tmp_path):
  # Dispatch decides which thread runs each compiled call, not what it computes: fresh
  # processes (the setting is read when JAX's CPU client starts) end on the same checksum.
  default = run_main(tmp_path / "async")
  sync = run_main(tmp_path / "sync", "--config.train.cpu_async_dispatch=False")
  assert "on the calling thread" in sync.stdout + sync.stderr
  assert "on the calling thread" not in default.stdout + default.stderr
  assert final_checksum(tmp_path / "sync") == final_checksum(tmp_path / "async")


def test_steps_per_call_trains_the_same_steps(tmp_path):
  # 4 steps per call over 10 steps with a checkpoint every 3: calls of 3, 3, 3, 1 steps (each
  # ends on a checkpoint), so the two call lengths compile once each. The same batches, the same
  # per-step rng and the same update rule give the state of one step per call, bitwise on this
  # CPU.
  one = train_and_evaluate(tiny_config(num_steps=10, checkpoint_every=3, log_every=1),
                           tmp_path / "one")
  four = train_and_evaluate(tiny_config(num_steps=10, checkpoint_every=3, log_every=1,
                                        steps_per_call=4), tmp_path / "four")
  assert one.traces == 1 and four.traces == 2
  assert int(four.state.step) == 10
  for x, y in zip(jax.tree.leaves(one.state), jax.tree.leaves(four.state)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  saved = sorted(int(p.name) for p in (tmp_path / "four" / "checkpoints").iterdir()
                 if p.name.isdigit())
  assert saved[-1] == 10 and all(s % 3 == 0 for s in saved[:-1])
  assert train_losses(tmp_path / "four") == train_losses(tmp_path / "one")
  assert len(train_losses(tmp_path / "four")) == 10  # one log row per step, as with 1 per call


def test_resume_continues_exactly(tmp_path):
  train_and_evaluate(tiny_config(num_steps=4), tmp_path / "split")
  resumed = train_and_evaluate(tiny_config(num_steps=8), tmp_path / "split")
  straight = train_and_evaluate(tiny_config(num_steps=8), tmp_path / "straight")
  assert resumed.resumed_from == 4
  assert final_checksum(tmp_path / "split") == final_checksum(tmp_path / "straight")
  for x, y in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(straight.state)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_sigkill_then_rerun_matches_uninterrupted_run(tmp_path):
  steps = ["--config.train.num_steps=1000", "--config.train.checkpoint_every=20",
           "--config.train.log_every=20"]
  run_main(tmp_path / "straight", *steps)
  proc = run_main(tmp_path / "killed", *steps, wait=False)
  first = tmp_path / "killed" / "checkpoints" / "20"
  deadline = time.time() + 120
  while not (first / "commit_success.txt").exists() and proc.poll() is None:
    assert time.time() < deadline, "no checkpoint appeared"
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  steps_left = [int(p.name) for p in (tmp_path / "killed/checkpoints").iterdir()
                if p.name.isdigit()]
  assert max(steps_left) < 1000, "the run finished before it was killed; make it longer"
  out = run_main(tmp_path / "killed", *steps)
  assert "Done at step 1000" in out.stdout
  assert final_checksum(tmp_path / "killed") == final_checksum(tmp_path / "straight")


def test_sigterm_saves_and_exits_cleanly(tmp_path):
  proc = run_main(tmp_path, "--config.train.num_steps=5000", "--config.train.checkpoint_every=50",
                  wait=False)
  deadline = time.time() + 120
  while not (tmp_path / "checkpoints" / "50" / "commit_success.txt").exists():
    assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-2000:]
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out[-2000:]
  saved = max(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert 50 <= saved < 5000
  assert f"Stopped at step {saved} of 5000; rerun the same command to resume." in out
  assert "Done at step" not in out


def test_sigterm_late_in_a_step_is_saved_by_the_next_step(tmp_path, monkeypatch):
  # A SIGTERM arriving after the step's checkpoint decision (here: during the progress bar's
  # update of step 3) must not be reported as saved at step 3; the next step saves and stops.
  class SignalAtStep3(loop_lib.tqdm):
    def update(self, n=1):
      super().update(n)
      if self.n == 3:
        os.kill(os.getpid(), signal.SIGTERM)

  monkeypatch.setattr(loop_lib, "tqdm", SignalAtStep3)
  result = train_and_evaluate(
      tiny_config(num_steps=20, checkpoint_every=10, progress_bar=True), tmp_path)
  assert int(result.state.step) == 4
  assert checkpoint_lib.Checkpointer(tmp_path / "checkpoints", max_to_keep=1).steps() == [4]


def test_a_failed_background_save_raises_at_the_next_wait(tmp_path):
  checkpointer = checkpoint_lib.Checkpointer(tmp_path, max_to_keep=2)

  def disk_full(*args, **kwargs):
    raise OSError("No space left on device")

  checkpointer._manager.save = disk_full  # pylint: disable=protected-access
  checkpointer.save(1, {"w": np.ones(3, np.float32)}, {}, {})  # returns: written in background
  with pytest.raises(OSError, match="No space left"):
    checkpointer.wait()
  checkpointer.close()


def test_eight_devices_match_one_device(tmp_path):
  flags = ["--config.train.num_steps=20", "--config.train.log_every=1",
           "--config.data.eval_split="]
  run_main(tmp_path / "one", *flags, devices=1)
  run_main(tmp_path / "eight", *flags, devices=8)
  one, eight = train_losses(tmp_path / "one"), train_losses(tmp_path / "eight")
  assert len(one) == len(eight) == 20
  np.testing.assert_allclose(eight, one, atol=1e-5, rtol=0)
  # A checkpoint written on 8 devices restores on this 1-device process and continues.
  result = train_and_evaluate(
      _with(tiny_config(num_steps=24), data=dict(eval_split="")), tmp_path / "eight")
  assert result.resumed_from == 20 and int(result.state.step) == 24


def _with(config, **sections):
  for key, values in sections.items():
    config[key].update(values)
  return config


def _state_data_files(step_dir: Path) -> list[Path]:
  """The files holding the state's array bytes (orbax/tensorstore chunk files under d/)."""
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
  assert files, "no array data files found: has orbax's layout changed?"
  return files


@pytest.mark.parametrize("damage", ["truncate", "overwrite", "missing_metadata",
                                    "values_differ_from_checksum"])
def test_corrupt_newest_checkpoint_falls_back_to_previous(tmp_path, damage, caplog):
  workdir = tmp_path / "w"
  train_and_evaluate(tiny_config(num_steps=6, checkpoint_every=3), workdir)
  good = final_checksum(workdir)
  newest = workdir / "checkpoints" / "6"
  if damage == "truncate":
    for path in _state_data_files(newest):
      path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
  elif damage == "overwrite":  # a few bytes in every data file, file sizes unchanged
    for path in _state_data_files(newest):
      data = bytearray(path.read_bytes())
      middle = len(data) // 2
      data[middle:middle + 8] = bytes(255 - b for b in data[middle:middle + 8])
      path.write_bytes(bytes(data))
  elif damage == "missing_metadata":
    (newest / "state" / "_METADATA").unlink()
  else:
    # Arrays that read back fine but are not what was saved (orbax's compressed chunks detect
    # the byte flips above; this is the case they would not): the checksum must catch it.
    meta_file = newest / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    meta["checksum"] = "0" * 64
    meta_file.write_text(json.dumps(meta))
  with caplog.at_level("WARNING"):
    result = train_and_evaluate(tiny_config(num_steps=6, checkpoint_every=3), workdir)
  assert result.resumed_from == 3
  reasons = [r.getMessage() for r in caplog.records if "step 6 is unusable" in r.getMessage()]
  assert len(reasons) == 1
  if damage == "values_differ_from_checksum":
    assert "do not match the checksum" in reasons[0]
  assert list((tmp_path / "w" / "corrupt_checkpoints").iterdir()), "the bad one was not kept"
  assert final_checksum(workdir) == good  # steps 4..6 were recomputed exactly


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  config = tiny_config(num_steps=6, checkpoint_every=1)
  config.optim = dict(name="sgd", learning_rate=1e30, schedule="constant")
  with pytest.raises(NonFiniteError, match=r"Step \d+: classifier/") as error:
    train_and_evaluate(config, tmp_path)
  saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert saved and f"last good checkpoint is step {saved[-1]}" in str(error.value)
  failed_step = int(str(error.value).split(":")[0].split()[1])
  assert saved[-1] == failed_step  # step s's update was never saved; the state before it was


def test_checkpoint_of_another_model_is_refused(tmp_path):
  train_and_evaluate(tiny_config(num_steps=3), tmp_path)
  config = tiny_config(num_steps=6)
  config.model.feature_dim = 24
  with pytest.raises(checkpoint_lib.CheckpointMismatchError, match="model.feature_dim: 16 -> 24"):
    train_and_evaluate(config, tmp_path)


@pytest.mark.parametrize("change, error, message", [
    (lambda c: c.train.update(num_stpes=3), config_lib.ConfigError, "did you mean train.num_steps"),
    (lambda c: c.update(methd="x"), config_lib.ConfigError, "Valid keys under the top level"),
    (lambda c: c.model.update(width=3), config_lib.ConfigError, "model.width"),
    (lambda c: setattr(c, "method", "clasifier"), names.UnknownNameError,
     "Did you mean 'classifier'"),
    (lambda c: c.optim.update(name="adamm"), names.UnknownNameError, "Did you mean 'adam'"),
    (lambda c: c.optim.update(generator=dict(learning_rate=1.0)), config_lib.ConfigError,
     "players"),
    (lambda c: c.optim.update(schedule="cosin"), names.UnknownNameError, "constant, cosine"),
    (lambda c: c.train.update(steps_per_call=0), config_lib.ConfigError,
     "train.steps_per_call must be an integer of at least 1"),
    (lambda c: c.data.update(seq_len=33, eval_stride=33), config_lib.ConfigError,
     "data.eval_stride must be 0 .* or an integer from 1 to seq_len - 1"),
])
def test_bad_config_is_refused_before_anything_runs(tmp_path, change, error, message):
  config = tiny_config()
  change(config)
  with pytest.raises(error, match=message):
    train_and_evaluate(config, tmp_path)
  assert not (tmp_path / "checkpoints").exists()


def test_rerunning_a_finished_run_reevaluates_without_training(tmp_path):
  first = train_and_evaluate(tiny_config(), tmp_path)
  again = train_and_evaluate(tiny_config(), tmp_path)
  assert again.resumed_from == int(first.state.step) and again.traces == 0
  assert again.eval_metrics == pytest.approx(first.eval_metrics, rel=1e-6)


def _saved_steps(workdir: Path) -> list[int]:
  return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


# 1e39 overflows float32 on purpose: an infinite learning rate.
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_a_non_finite_state_is_never_saved(tmp_path):
  # Step 9's metrics come from step 9's finite state, so only the state after its update shows
  # the blow-up: it must not become checkpoint 10, the one every later resume would start from.
  train_and_evaluate(tiny_config(num_steps=9, checkpoint_every=10), tmp_path)
  config = tiny_config(num_steps=30, checkpoint_every=10)
  config.optim.learning_rate = 1e39  # inf in float32
  with pytest.raises(NonFiniteError, match=r"^Step 10: the state holds NaN or infinite values "
                     r"in params/classifier/.*the last good checkpoint is step 9 in"):
    train_and_evaluate(config, tmp_path)
  assert _saved_steps(tmp_path) == [9]
  result = train_and_evaluate(tiny_config(num_steps=12, checkpoint_every=10), tmp_path)
  assert result.resumed_from == 9 and int(result.state.step) == 12


def test_another_data_stream_is_refused_up_front_with_every_key(tmp_path):
  train_and_evaluate(tiny_config(num_steps=3), tmp_path)
  metrics = (tmp_path / "metrics.jsonl").read_text()
  config = tiny_config(num_steps=6)
  config.seed = 1
  config.data.update(batch_size=16, train_split="train[:90%]",
                     preprocess=("scale_to_unit", "dequantize"))
  with pytest.raises(checkpoint_lib.CheckpointMismatchError) as error:
    train_and_evaluate(config, tmp_path)
  for diff in ["data.batch_size: 32 -> 16", "data.preprocess: ['scale_to_unit'] -> "
               "['scale_to_unit', 'dequantize']", "data.train_split: 'train' -> 'train[:90%]'",
               "seed: 0 -> 1"]:
    assert diff in str(error.value)
  assert "Set them back to the saved values" in str(error.value)
  assert "new workdir" in str(error.value)
  assert _saved_steps(tmp_path) == [3] and not (tmp_path / "corrupt_checkpoints").exists()
  assert (tmp_path / "metrics.jsonl").read_text() == metrics
  # The refusal released the workdir: the corrected command resumes.
  assert train_and_evaluate(tiny_config(num_steps=6), tmp_path).resumed_from == 3


def _ddpm_toy2d(**model) -> ml_collections.ConfigDict:
  sys.path.insert(0, str(CONFIG.parent))
  try:
    import ddpm_toy2d  # pylint: disable=import-outside-toplevel
  finally:
    sys.path.pop(0)
  config = ddpm_toy2d.get_config("tiny")
  config.data.eval_split = ""
  config.train.update(num_samples=4)
  config.model.update(model)
  return config


def test_a_resume_may_change_how_it_samples_but_not_the_model(tmp_path):
  train_and_evaluate(_with(_ddpm_toy2d(), train=dict(num_steps=2, checkpoint_every=2)), tmp_path)
  resumed = train_and_evaluate(
      _with(_ddpm_toy2d(sample_steps=5, sampler="ddim", eta=0.5, clip_x0=1.0),
            train=dict(num_steps=4, checkpoint_every=2)), tmp_path)
  assert resumed.resumed_from == 2 and int(resumed.state.step) == 4
  with pytest.raises(checkpoint_lib.CheckpointMismatchError,
                     match=r"model.features: \[16, 16\] -> \[8, 8\]"):
    train_and_evaluate(_with(_ddpm_toy2d(features=(8, 8)), train=dict(num_steps=6)), tmp_path)
  assert _saved_steps(tmp_path) == [2, 4]


def test_an_optimizer_of_another_state_structure_is_refused_not_set_aside(tmp_path):
  train_and_evaluate(tiny_config(num_steps=3), tmp_path)
  config = tiny_config(num_steps=6)
  config.optim.grad_clip_norm = 1.0  # optax.chain(clip, adamw): the optimizer state nests
  with pytest.raises(checkpoint_lib.CheckpointMismatchError,
                     match=r"another structure .*optim.grad_clip_norm: 0.0 -> 1.0"):
    train_and_evaluate(config, tmp_path)
  assert _saved_steps(tmp_path) == [3] and not (tmp_path / "corrupt_checkpoints").exists()


def test_when_every_checkpoint_is_unusable_no_rerun_starts_over(tmp_path):
  train_and_evaluate(tiny_config(num_steps=3), tmp_path)
  meta_file = tmp_path / "checkpoints" / "3" / "meta" / "metadata"
  meta = json.loads(meta_file.read_text())
  del meta["checksum"]  # an incomplete record, not a KeyError
  meta_file.write_text(json.dumps(meta))
  with pytest.raises(checkpoint_lib.NoGoodCheckpointError, match="could be restored"):
    train_and_evaluate(tiny_config(num_steps=3), tmp_path)
  with pytest.raises(checkpoint_lib.NoGoodCheckpointError,
                     match=r"holds 1 set aside as unusable.*delete .*corrupt_checkpoints"):
    train_and_evaluate(tiny_config(num_steps=3), tmp_path)
  assert _saved_steps(tmp_path) == []


def test_fallback_after_a_truncated_file_prints_one_warning_and_no_traceback(tmp_path):
  train_and_evaluate(tiny_config(num_steps=6, checkpoint_every=3), tmp_path)
  for path in _state_data_files(tmp_path / "checkpoints" / "6"):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
  out = run_main(tmp_path)
  text = out.stdout + out.stderr
  assert "Done at step 6" in out.stdout
  for noise in ("Traceback", "Event loop is closed", "never retrieved", "destroyed but"):
    assert noise not in text, text[-3000:]
  warnings = [l for l in text.splitlines() if re.match(r"W\d{4} |WARNING", l)]
  assert len(warnings) == 1 and "Checkpoint at step 6 is unusable" in warnings[0], warnings


def test_a_second_run_in_the_same_workdir_is_refused(tmp_path):
  steps = ["--config.train.num_steps=100000", "--config.train.checkpoint_every=20",
           "--config.train.log_every=20"]
  first = run_main(tmp_path, *steps, wait=False)
  try:
    deadline = time.time() + 120
    while not (tmp_path / "checkpoints" / "20" / "commit_success.txt").exists():
      assert first.poll() is None and time.time() < deadline, first.stdout.read()[-2000:]
      time.sleep(0.05)
    second = run_main(tmp_path, "--config.train.num_steps=40", *steps[1:],
                      "--config.optim.learning_rate=0.1", wait=False)
    out, _ = second.communicate(timeout=300)
    assert second.returncode != 0 and "Done at step" not in out
    held = f"Error: Another run is writing to {tmp_path / 'checkpoints'}: process {first.pid} "
    assert held in out
    assert "Traceback" not in out  # one line, not a stack
    assert first.poll() is None  # the first run trains on, untouched
  finally:
    first.send_signal(signal.SIGKILL)  # as a crash: no cleanup, the OS releases the lock
    first.wait()
  last = _saved_steps(tmp_path)[-1]
  out = run_main(tmp_path, *steps[1:], f"--config.train.num_steps={last + 2}")
  assert f"Done at step {last + 2}" in out.stdout
