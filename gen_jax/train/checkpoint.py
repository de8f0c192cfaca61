"""Checkpoints: the only file that imports orbax.

Each checkpoint holds three items: the train state (orbax's standard array format), the data
iterator's state (JSON) and a JSON record (`meta`) of its step, the config and a SHA-256 checksum
of the state. Orbax writes atomically (a step appears only when complete) but checks nothing on
read, so a restore checks every part: the record complete, the data state readable, the arrays
readable and equal to the checksum. A newest checkpoint that fails any of these is moved to
`<directory>/../corrupt_checkpoints/` with one warning, and the previous one is tried. A run
never starts again from step 0 while checkpoints lie set aside there.

A checkpoint is continued only by a config that keeps what it was trained as: the keys that
define the parameters (`method`, `data.name` and every `model.*` key except those the method's
module lists in `SAMPLING_KEYS`, which only change how a run samples and evaluates) and the
keys that define the data stream the saved iterator state continues (`DATA_KEYS`). Its train
state must also have the structure this config builds (the optimizer and the EMA shape it too).
Anything else is refused before a step runs, with every difference listed and nothing moved.
Other keys (number of steps, learning rate, cadences, sampling and evaluation settings) may
change between a run and its continuation.

A state is written only once every floating-point value in it was seen finite, so the newest
checkpoint is always one a run can continue from. One run writes to a checkpoint directory at a
time: its first process holds an exclusive `fcntl.flock` on `<directory>/lock` until it closes,
and the OS releases it when the process dies, however it ends.
"""

import asyncio
import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
import weakref
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from gen_jax import names

log = logging.getLogger(__name__)

# The keys that define the parameters. A method module's `SAMPLING_KEYS` (model keys without the
# "model." prefix) are taken out: they change only how a run samples and evaluates.
MODEL_KEYS = ("method", "model", "frozen", "data.name")
# The config keys that `loop.load_data(..., train=True)` turns into arguments of the data
# pipeline's fingerprint (`gen_jax.data.pipeline.load`): the saved iterator state is a position
# in that stream only. `data.data_dir` is only where the prepared files are.
DATA_KEYS = ("seed", "data.name", "data.train_split", "data.batch_size", "data.seq_len",
             "data.fresh", "data.preprocess")
LOCK_FILE = "lock"
CORRUPT_DIR = "corrupt_checkpoints"
_ABSENT = "<absent>"


class CheckpointMismatchError(ValueError):
  """The workdir holds a checkpoint that this config cannot continue (another model, another
  data stream or another state structure)."""


class NoGoodCheckpointError(RuntimeError):
  """No checkpoint of the workdir can be restored, and starting afresh would bury set-aside ones."""


class NonFiniteStateError(FloatingPointError):
  """A state to be saved holds NaN or infinite values; nothing was written."""

  def __init__(self, step: int, leaves: list[str]):
    self.step, self.leaves = step, leaves
    shown = ", ".join(leaves[:3]) + (f" and {len(leaves) - 3} more" if len(leaves) > 3 else "")
    super().__init__(f"the state holds NaN or infinite values in {shown}")


class CheckpointDirInUseError(RuntimeError):
  """Another live process is writing checkpoints to the same directory."""


def state_checksum(state: Any) -> str:
  """SHA-256 over every leaf's path, dtype, shape and bytes (on the host)."""
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]:
    leaf = np.asarray(leaf)
    digest.update(f"{jax.tree_util.keystr(path)}|{leaf.dtype}|{leaf.shape}".encode())
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()


def _key_name(key: Any) -> str:
  """One path entry as a name; orbax stores a dataclass field or a namedtuple's as a dict key."""
  for attribute in ("key", "name", "idx"):
    if hasattr(key, attribute):
      return str(getattr(key, attribute))
  return str(key)


def _leaf_name(path: tuple[Any, ...]) -> str:
  return "/".join(_key_name(k) for k in path)


def non_finite_leaves(state: Any) -> list[str]:
  """Names (`params/classifier/Dense_0/kernel`) of the floating-point leaves of a host-side
  state that hold a NaN or an infinity, in the state's order."""
  bad = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    leaf = np.asarray(leaf)
    if jnp.issubdtype(leaf.dtype, jnp.inexact) and not np.isfinite(leaf).all():  # bf16 too
      bad.append(_leaf_name(path))
  return bad


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in config.items():
    if isinstance(value, dict):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def sampling_keys(method: str) -> frozenset[str]:
  """`model.<key>` for each key that the method's module lists in its `SAMPLING_KEYS`."""
  module = names.submodule("gen_jax.methods", method, what="method", exclude=("base",))
  return frozenset(f"model.{key}" for key in getattr(module, "SAMPLING_KEYS", ()))


def _differences(saved: dict[str, Any], current: dict[str, Any], prefixes,
                 skip=frozenset(), defaults: dict[str, Any] | None = None) -> list[str]:
  # A key the saved config lacks was added to the schema since: it held its default then.
  saved, current = {**_flat(defaults or {}), **_flat(saved)}, _flat(current)
  diffs = []
  for key in sorted(set(saved) | set(current)):
    if key in skip or not any(key == k or key.startswith(k + ".") for k in prefixes):
      continue
    if saved.get(key, _ABSENT) != current.get(key, _ABSENT):
      diffs.append(f"{key}: {saved.get(key, _ABSENT)!r} -> {current.get(key, _ABSENT)!r}")
  return diffs


def config_differences(saved: dict[str, Any], current: dict[str, Any],
                       defaults: dict[str, Any] | None = None) -> list[str]:
  """`key: saved -> current` for each key that defines the parameters (`MODEL_KEYS`, less the
  current method's `SAMPLING_KEYS`) or the data stream (`DATA_KEYS`) and differs. A key that
  `saved` lacks is compared by its value in `defaults` (the current schema's defaults, as a
  dict), so a key added to the schema since the save does not count as changed."""
  skip = sampling_keys(current["method"]) if current.get("method") else frozenset()
  return _differences(saved, current, MODEL_KEYS + DATA_KEYS, skip, defaults)


def _brief(error: BaseException) -> str:
  """An exception on one line, at most 300 characters of its message."""
  return f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"


def _meta_problem(meta: Any, step: int) -> str | None:
  """Why a checkpoint's metadata record is incomplete, or None when it is complete."""
  if not isinstance(meta, dict):
    return f"its metadata is a {type(meta).__name__}, not a JSON object"
  for key, kind in (("step", int), ("checksum", str), ("config", dict)):
    if key not in meta:
      return f"its metadata has no {key!r}"
    if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
      return f"its metadata's {key!r} is a {type(meta[key]).__name__}, not a {kind.__name__}"
  if meta["step"] != step:
    return f"its metadata is that of step {meta['step']}"
  if not re.fullmatch(r"[0-9a-f]{64}", meta["checksum"]):
    return "its metadata's checksum is not a SHA-256 digest"
  if not isinstance(meta.get("setup", {}), dict):
    return f"its metadata's 'setup' is a {type(meta['setup']).__name__}, not a JSON object"
  for key, kind in (("method", str), ("model", dict), ("data", dict)):
    if not isinstance(meta["config"].get(key), kind):
      return f"its metadata's config has no {key!r} {kind.__name__}"
  return None


def _leaf_specs(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  """Leaf name -> (shape, dtype name) of arrays, abstract arrays or orbax's array metadata."""
  return {_leaf_name(path): (tuple(leaf.shape), np.dtype(leaf.dtype).name)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _structure_differences(saved: Any, current: Any) -> list[str]:
  saved, current = _leaf_specs(saved), _leaf_specs(current)
  diffs = [f"{k} only in the checkpoint" for k in saved if k not in current]
  diffs += [f"{k} only in this config's state" for k in current if k not in saved]
  diffs += [f"{k}: {'{} {}'.format(*saved[k])} saved, {'{} {}'.format(*current[k])} here"
            for k in saved if k in current and saved[k] != current[k]]
  return diffs


class _DrainingEventLoop(asyncio.SelectorEventLoop):
  """An event loop that, when closed, first lets every task it ran finish and takes its error.

  Orbax runs each restore on a fresh event loop and closes it as soon as one array fails to
  read, while the reads of the other arrays are still in flight. Each of those then reported
  itself after the checkpoint's one warning, as an 'Event loop is closed' traceback (tensorstore
  completing into the closed loop) or 'Task exception was never retrieved': dozens of them for
  one truncated file. The caller already has the error that matters.
  """

  def __init__(self):
    super().__init__()
    self._tasks: list[asyncio.Task] = []
    self.set_task_factory(self._tracked_task)

  def _tracked_task(self, loop, coro, **kwargs):
    task = asyncio.Task(coro, loop=loop, **kwargs)
    self._tasks.append(task)
    return task

  def close(self) -> None:
    if not self.is_closed() and not self.is_running():
      # Waiting makes one task more (done when the wait returns); a task may start others.
      while pending := [task for task in self._tasks if not task.done()]:
        self.run_until_complete(asyncio.wait(pending))
      for task in self._tasks:
        if not task.cancelled():
          task.exception()  # marks it retrieved
      self._tasks = []
    super().close()


class _DrainingPolicy(asyncio.DefaultEventLoopPolicy):

  def new_event_loop(self) -> asyncio.AbstractEventLoop:
    return _DrainingEventLoop()


@contextlib.contextmanager
def _reads_drained():
  """Orbax's fresh event loops (see `_DrainingEventLoop`) drain their reads while this is on.

  Under a running event loop (a notebook's) with uvloop installed, orbax makes a uvloop loop
  instead, and a failed read may still print its stray tracebacks there."""
  previous = asyncio.get_event_loop_policy()
  asyncio.set_event_loop_policy(_DrainingPolicy())
  try:
    yield
  finally:
    asyncio.set_event_loop_policy(previous)


def _lock(directory: Path) -> int | None:
  """An exclusive lock on `directory/LOCK_FILE`: its open file descriptor.

  `flock` belongs to the open file, so the OS releases it when the process dies (kill -9
  included): a crashed run never leaves the directory locked.
  """
  directory.mkdir(parents=True, exist_ok=True)
  path = directory / LOCK_FILE
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    holder = os.pread(fd, 1000, 0).decode(errors="replace").strip() or "another process"
    os.close(fd)
    raise CheckpointDirInUseError(
        f"Another run is writing to {directory}: {holder} holds {path}. Two runs in one workdir "
        f"would overwrite each other's checkpoints and mix their metrics. Wait for that run to "
        f"end (or stop it), or give this one another workdir.") from None
  except OSError as e:  # a file system without flock: run, but unguarded
    os.close(fd)
    log.warning("Cannot lock %s (%s): a second run in this workdir would not be refused.",
                path, _brief(e))
    return None
  os.ftruncate(fd, 0)
  os.write(fd, f"process {os.getpid()} on {socket.gethostname()}, since "
               f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
  return fd


class _Unusable(Exception):
  """A part of a checkpoint is unreadable or incomplete; the message says which and why."""


class Checkpointer:
  """Periodic saves with `max_to_keep`, written on a background thread, and a verified restore.

  `save` checks the state finite on its host copy (the next train step may donate the device
  buffers) and returns; one writer thread computes the checksum and has orbax write the step,
  one save at a time. Orbax's own asynchronous save blocked the caller for 10-14 ms of Python
  per save (a new event loop and several threads each time) and took ~70 ms in all for a 20 kB
  state; this way the caller waits for the host copy and its finiteness check only, and the
  write takes ~30 ms (`step_overhead.py`). A failed save raises at the next `save` or `wait`.

  A writing Checkpointer (the default) locks its directory until `close`; with several
  processes, process 0 holds the lock. `read_only=True` is for reading a directory that a run
  may be writing to (sampling, notebooks): no lock, no saves, and an unusable checkpoint is
  skipped with a warning instead of being moved.
  """

  def __init__(self, directory: str | Path, *, max_to_keep: int, async_save: bool = True,
               read_only: bool = False):
    self.directory = Path(directory).absolute()
    self.read_only = read_only
    fd = None if read_only or jax.process_index() != 0 else _lock(self.directory)
    # Released by `close`, or when this object is collected without one.
    self._unlock = weakref.finalize(self, os.close, fd) if fd is not None else lambda: None
    try:
      # Several processes keep orbax's asynchronous save: its barriers belong on the main thread.
      writer_thread = async_save and jax.process_count() == 1 and not read_only
      self._manager = ocp.CheckpointManager(
          self.directory,
          options=ocp.CheckpointManagerOptions(
              max_to_keep=max_to_keep, create=not read_only,
              enable_async_checkpointing=async_save and not writer_thread and not read_only),
          item_handlers=dict(state=ocp.StandardCheckpointHandler(),
                             data=ocp.JsonCheckpointHandler(), meta=ocp.JsonCheckpointHandler()))
    except BaseException:
      self._unlock()
      raise
    self._writer = (concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="checkpoint")
                    if writer_thread else None)
    self._pending: concurrent.futures.Future | None = None

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, data_state: dict[str, Any],
           config: dict[str, Any], setup: dict[str, Any] | None = None) -> None:
    """Writes `state` as checkpoint `step`, with `config` and `setup` (JSON: what rebuilds the
    run besides its config, `Setup.describe()`) in its metadata; raises NonFiniteStateError,
    writing nothing, when any floating-point value of it is NaN or infinite."""
    if self.read_only:
      raise RuntimeError(f"This Checkpointer of {self.directory} was opened read-only.")
    host_state = jax.device_get(state)
    bad = non_finite_leaves(host_state)
    if bad:
      raise NonFiniteStateError(step, bad)
    if self._writer is None:
      self._write(step, state, host_state, data_state, config, setup)
      return
    self.wait()
    self._pending = self._writer.submit(self._write, step, host_state, host_state, data_state,
                                        config, setup)

  def _write(self, step: int, state: Any, host_state: Any, data_state: dict[str, Any],
             config: dict[str, Any], setup: dict[str, Any] | None) -> None:
    meta = {"step": step, "checksum": state_checksum(host_state), "config": config,
            "time": time.time(), **({"setup": setup} if setup is not None else {})}
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state),
        meta=ocp.args.JsonSave(meta)))

  def _item(self, step: int, name: str, args: Any, what: str) -> Any:
    """One item of checkpoint `step`; `_Unusable` naming `what` when it cannot be read."""
    try:
      with _reads_drained():
        return self._manager.restore(step, args=ocp.args.Composite(**{name: args}))[name]
    except Exception as e:  # pylint: disable=broad-except
      raise _Unusable(f"{what} cannot be read ({_brief(e)})") from None

  def _meta(self, step: int) -> dict[str, Any]:
    meta = self._item(step, "meta", ocp.args.JsonRestore(), "its metadata")
    problem = _meta_problem(meta, step)
    if problem:
      raise _Unusable(problem)
    return meta

  def read_config(self) -> dict[str, Any]:
    """The config saved with the newest checkpoint whose metadata is complete."""
    return self.read_meta()["config"]

  def read_meta(self) -> dict[str, Any]:
    """The metadata of the newest checkpoint whose metadata is complete: its "step",
    "checksum", "config" and, when saved with one, "setup"."""
    for step in reversed(self.steps()):
      try:
        return self._meta(step)
      except _Unusable as e:
        log.warning("Checkpoint at step %d is unusable: %s. Trying the previous one.", step, e)
    self._refuse_fresh_start()
    raise NoGoodCheckpointError(f"No readable checkpoint in {self.directory}.")

  def restore(self, abstract_state: Any, config: dict[str, Any],
              data_state: dict[str, Any] | None = None, *,
              defaults: dict[str, Any] | None = None
              ) -> tuple[int, Any, dict[str, Any]] | None:
    """Restores the newest good checkpoint into `abstract_state`'s shapes and shardings.

    Args:
      abstract_state: the state this config builds (`jax.ShapeDtypeStruct`s with shardings).
      config: this run's config as a dict; see `config_differences`.
      defaults: the schema's defaults for this config's method, as a dict; see
        `config_differences`.
      data_state: this run's data iterator state: a saved one must differ only in its `step`.

    Returns (step, state, data_state), or None when the directory holds no checkpoint.

    Raises:
      CheckpointMismatchError: the newest readable checkpoint is of another model, data stream
        or state structure than this run's.
      NoGoodCheckpointError: no checkpoint can be restored, or none is left but some lie set
        aside in `corrupt_checkpoints/`.
    """
    steps = self.steps()
    if not steps:
      self._refuse_fresh_start()
      return None
    for step in reversed(steps):
      try:
        return self._restore_step(step, abstract_state, config, data_state, defaults)
      except _Unusable as e:
        self._set_aside(step, str(e))
    raise NoGoodCheckpointError(
        f"No checkpoint in {self.directory} could be restored"
        + (f" (each was moved to {self._corrupt_dir()})" if not self.read_only else "")
        + f". {self._fresh_start_advice()}")

  def _restore_step(self, step: int, abstract_state: Any, config: dict[str, Any],
                    data_state: dict[str, Any] | None, defaults: dict[str, Any] | None
                    ) -> tuple[int, Any, dict[str, Any]]:
    meta = self._meta(step)
    diffs = config_differences(meta["config"], config, defaults)
    if diffs:
      raise CheckpointMismatchError(
          f"The checkpoint at step {step} in {self.directory} cannot be continued by this "
          f"config; these keys, which define the parameters or the data stream the checkpoint "
          f"continues, differ (saved -> current): {'; '.join(diffs)}. Set them back to the "
          f"saved values to resume, or use a new workdir to start another run.")
    saved_data = self._item(step, "data", ocp.args.JsonRestore(), "its data iterator state")
    count = saved_data.get("step") if isinstance(saved_data, dict) else None
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
      raise _Unusable("its data iterator state has no non-negative integer 'step'")
    if data_state is not None:
      current = json.loads(json.dumps(data_state))  # tuples compare as the saved JSON lists
      fields = sorted(k for k in set(saved_data) | set(current) if k != "step"
                      and saved_data.get(k, _ABSENT) != current.get(k, _ABSENT))
      if fields:
        raise CheckpointMismatchError(
            f"The checkpoint at step {step} in {self.directory} continues a data stream that "
            f"this run would read differently (saved -> current): "
            + "; ".join(f"{k}: {saved_data.get(k, _ABSENT)!r} -> {current.get(k, _ABSENT)!r}"
                        for k in fields)
            + ". Run it as the saved run was run (the same data pipeline and number of "
            "processes), or use a new workdir.")
    try:
      with _reads_drained():
        saved_arrays = self._manager.item_metadata(step)["state"]
      if saved_arrays is None:
        raise ValueError("no metadata")
      structure = _structure_differences(saved_arrays, abstract_state)
    except Exception as e:  # pylint: disable=broad-except
      raise _Unusable(f"its arrays' metadata cannot be read ({_brief(e)})") from None
    if structure:
      hints = _differences(meta["config"], config, ("optim", "train.ema_decay"))
      raise CheckpointMismatchError(
          f"The checkpoint at step {step} in {self.directory} holds a train state of another "
          f"structure than this config builds: {'; '.join(structure[:6])}"
          + (f" and {len(structure) - 6} more" if len(structure) > 6 else "") + ". "
          + (f"Keys that shape the state and differ (saved -> current): {'; '.join(hints)}. "
             if hints else "")
          + "The optimizer (optim.name, optim.grad_clip_norm, optim.kwargs, per-player "
          "overrides) and whether train.ema_decay is 0 must stay as saved: set them back to "
          "resume, or use a new workdir.")
    state = self._item(step, "state", ocp.args.StandardRestore(abstract_state), "its arrays")
    if state_checksum(state) != meta["checksum"]:
      raise _Unusable("its arrays do not match the checksum written with them")
    return step, state, saved_data

  def _corrupt_dir(self) -> Path:
    return self.directory.parent / CORRUPT_DIR

  def _fresh_start_advice(self) -> str:
    corrupt = self._corrupt_dir()
    return (f"To continue, move one of the checkpoints in {corrupt} back into {self.directory} "
            f"(renamed to its step) after repairing it; to start again from step 0, delete "
            f"{corrupt}; or use a new workdir.")

  def _refuse_fresh_start(self) -> None:
    """Refuses to start from step 0 while set-aside checkpoints would be silently buried."""
    corrupt = self._corrupt_dir()
    held = sorted(p.name for p in corrupt.iterdir()) if corrupt.is_dir() else []
    if held:
      raise NoGoodCheckpointError(
          f"{self.directory} holds no usable checkpoint, but {corrupt} holds {len(held)} set "
          f"aside as unusable ({', '.join(held)}). {self._fresh_start_advice()}")

  def _set_aside(self, step: int, reason: str) -> None:
    """Moves a bad checkpoint out of the way (nothing is deleted) so the run can go on; a
    read-only Checkpointer only skips it."""
    if self.read_only:
      log.warning("Checkpoint at step %d is unusable: %s. Trying the previous one.", step, reason)
      return
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
      try:
        if self._writer is not None:
          self._writer.shutdown()
        self._manager.close()
      finally:
        self._unlock()
