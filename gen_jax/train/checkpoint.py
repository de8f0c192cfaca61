"""Checkpoints: the only file that imports orbax.

Each checkpoint holds three items: the train state (orbax's standard array format), the data
iterator's state (JSON) and a JSON record of the config and a SHA-256 checksum of the state.
Orbax writes atomically (a step appears only when complete) but checks nothing on read, so the
checksum is verified on every restore; a newest checkpoint that cannot be read, or whose
checksum fails, is moved to `<directory>/../corrupt_checkpoints/` with a warning, and the
previous one is tried. A checkpoint of a different model is refused with the differences named.
"""

import concurrent.futures
import hashlib
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)

# The parts of a config that change what the state's arrays mean; others (steps, logging
# cadence, batch size) may change between a run and its continuation.
MODEL_KEYS = ("method", "model", "data.name")


class CheckpointMismatchError(ValueError):
  """The workdir holds a checkpoint of another model than the config describes."""


class NoGoodCheckpointError(RuntimeError):
  """Every checkpoint in the workdir failed to restore."""


def state_checksum(state: Any) -> str:
  """SHA-256 over every leaf's path, dtype, shape and bytes (on the host)."""
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]:
    leaf = np.asarray(leaf)
    digest.update(f"{jax.tree_util.keystr(path)}|{leaf.dtype}|{leaf.shape}".encode())
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in config.items():
    if isinstance(value, dict):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
  """`key: saved -> current` for the model-defining keys that differ."""
  saved, current = _flat(saved), _flat(current)
  diffs = []
  for key in sorted(set(saved) | set(current)):
    if any(key == k or key.startswith(k + ".") for k in MODEL_KEYS):
      if saved.get(key, "<absent>") != current.get(key, "<absent>"):
        diffs.append(f"{key}: {saved.get(key, '<absent>')!r} -> {current.get(key, '<absent>')!r}")
  return diffs


class Checkpointer:
  """Periodic saves with `max_to_keep`, written on a background thread, and a verified restore.

  `save` copies the state to the host (the next train step may donate its device buffers) and
  returns; one writer thread computes the checksum and has orbax write the step, one save at a
  time. Orbax's own asynchronous save blocked the caller for 10-14 ms of Python per save (a new
  event loop and several threads each time) and took ~70 ms in all for a 20 kB state; this way
  the caller waits ~0.4 ms and the write takes ~30 ms (`step_overhead.py`). A failed save
  raises at the next `save` or `wait`.
  """

  def __init__(self, directory: str | Path, *, max_to_keep: int, async_save: bool = True):
    self.directory = Path(directory).absolute()
    # Several processes keep orbax's asynchronous save: its barriers belong on the main thread.
    writer_thread = async_save and jax.process_count() == 1
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True,
            enable_async_checkpointing=async_save and not writer_thread),
        item_names=("state", "data", "meta"))
    self._writer = (concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="checkpoint")
                    if writer_thread else None)
    self._pending: concurrent.futures.Future | None = None

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, data_state: dict[str, Any],
           config: dict[str, Any]) -> None:
    if self._writer is None:
      self._write(step, state, data_state, config)
      return
    host_state = jax.device_get(state)
    self.wait()
    self._pending = self._writer.submit(self._write, step, host_state, data_state, config)

  def _write(self, step: int, state: Any, data_state: dict[str, Any],
             config: dict[str, Any]) -> None:
    meta = {"step": step, "checksum": state_checksum(state), "config": config,
            "time": time.time()}
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state),
        meta=ocp.args.JsonSave(meta)))

  def read_config(self) -> dict[str, Any]:
    """The config saved with the newest checkpoint whose metadata can be read."""
    for step in reversed(self.steps()):
      try:
        return self._manager.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore()))["meta"]["config"]
      except Exception:  # pylint: disable=broad-except
        log.warning("The metadata of the checkpoint at step %d cannot be read.", step)
    raise NoGoodCheckpointError(f"No readable checkpoint in {self.directory}.")

  def restore(self, abstract_state: Any, config: dict[str, Any]
              ) -> tuple[int, Any, dict[str, Any]] | None:
    """Restores the newest good checkpoint into `abstract_state`'s shapes and shardings.

    Returns (step, state, data_state), or None when the directory holds no checkpoint.
    """
    steps = self.steps()
    if not steps:
      return None
    for step in reversed(steps):
      try:
        meta = self._manager.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore()))["meta"]
      except Exception as e:  # pylint: disable=broad-except
        self._set_aside(step, f"its metadata cannot be read ({type(e).__name__}: {e})")
        continue
      diffs = config_differences(meta.get("config", {}), config)
      if diffs:
        raise CheckpointMismatchError(
            f"The checkpoint at step {step} in {self.directory} was written by another model "
            f"than this config describes: {'; '.join(diffs)}. Use a new workdir, or restore the "
            f"config values shown on the left.")
      try:
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
      except Exception as e:  # pylint: disable=broad-except
        self._set_aside(step, f"it cannot be read ({type(e).__name__}: {str(e)[:300]})")
        continue
      if state_checksum(restored["state"]) != meta["checksum"]:
        self._set_aside(step, "its arrays do not match the checksum written with them")
        continue
      return step, restored["state"], restored["data"]
    raise NoGoodCheckpointError(
        f"No checkpoint in {self.directory} could be restored (each was moved to "
        f"{self._corrupt_dir()}). Start again in a new workdir, or move one back after repair.")

  def _corrupt_dir(self) -> Path:
    return self.directory.parent / "corrupt_checkpoints"

  def _set_aside(self, step: int, reason: str) -> None:
    """Moves a bad checkpoint out of the way (nothing is deleted) so the run can go on."""
    target = self._corrupt_dir() / f"{step}-{int(time.time())}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(self.directory / str(step)), str(target))
    log.warning("Checkpoint at step %d is unusable: %s. Moved it to %s and trying the previous "
                "one.", step, reason, target)
    self._manager.reload()

  def wait(self) -> None:
    """Blocks until the last save is written; raises its error if it failed."""
    pending, self._pending = self._pending, None
    if pending is not None:
      pending.result()
    self._manager.wait_until_finished()

  def close(self) -> None:
    try:
      self.wait()
    finally:
      if self._writer is not None:
        self._writer.shutdown()
      self._manager.close()
