"""`train_and_evaluate(config, workdir)`: trains a run with the functions its `Setup` jits.

The loop resolves the config, builds the run's `Setup` (method, optimizers, mesh, shardings:
`gen_jax.train.setup`), restores the newest good checkpoint of the workdir (or initialises),
compiles the train step once (state replicated and donated, batch sharded), and trains. The
host never waits on the device to log: metrics of step s are read after step s+1 has been
dispatched. It checks every step's metrics for non-finite values, saves checkpoints on a
cadence and when it receives SIGTERM (preemption), evaluates on the eval split and writes
samples.
"""

import contextlib
import dataclasses
import logging
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from tqdm.auto import tqdm  # a widget in notebooks, text in a terminal

from gen_jax import host_memory
from gen_jax.train import checkpoint as checkpoint_lib
from gen_jax.train import config as config_lib
from gen_jax.train import logging as logging_lib
from gen_jax.train import parallel
from gen_jax.train import setup as setup_lib
from gen_jax.train.state import TrainState
from gen_jax.viz import gan_plots

# The setup's builders, where the loop's users have always found them.
build_method = setup_lib.build_method
load_data = setup_lib.load_data
load_checkpoint = setup_lib.load_checkpoint

log = logging.getLogger(__name__)


class NonFiniteError(FloatingPointError):
  """A train metric or the state to be saved became NaN or infinite; the run stopped without
  saving that state."""


@dataclasses.dataclass
class TrainResult:
  state: TrainState
  eval_metrics: dict[str, float]
  traces: int  # how many times the train step was traced: 1 unless something recompiled it
  resumed_from: int | None  # the checkpoint step the run continued from, if any
  samples: list[Path]  # files written by the last sampling


class _Preemption:
  """Turns SIGTERM into a flag the loop checks once per step (main thread only)."""

  def __init__(self):
    self.requested = False

  @contextlib.contextmanager
  def installed(self):
    if threading.current_thread() is not threading.main_thread():
      yield self
      return
    previous = signal.signal(signal.SIGTERM, lambda *_: setattr(self, "requested", True))
    try:
      yield self
    finally:
      signal.signal(signal.SIGTERM, previous)


class _MetricAverager:
  """Sums host-side metrics over a logging interval, checking each step for non-finite values."""

  def __init__(self):
    self.sums, self.count = {}, 0

  def add(self, step: int, metrics: dict[str, Any], last_checkpoint: str) -> None:
    values = {k: float(v) for k, v in metrics.items()}
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
      raise NonFiniteError(
          f"Step {step}: {', '.join(f'{k} = {values[k]}' for k in bad)}. The run stopped without "
          f"saving this state; {last_checkpoint}. Lower the learning rate "
          f"(optim.learning_rate), then rerun the same command to resume from there.")
    for k, v in values.items():
      self.sums[k] = self.sums.get(k, 0.0) + v
    self.count += 1

  def pop(self) -> dict[str, float]:
    means = {k: v / self.count for k, v in self.sums.items()}
    self.sums, self.count = {}, 0
    return means


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path) -> TrainResult:
  """Trains `config` in `workdir`, continuing from its newest good checkpoint if it has one."""
  config = config_lib.resolve(config)
  host_memory.check_cpu_async_dispatch(config.train.cpu_async_dispatch)
  workdir = Path(workdir)
  cfg_train = config.train
  train_data = load_data(config, config.data.train_split, train=True)
  example = setup_lib.first_batch(train_data)
  setup = setup_lib.make_setup(config, spec=setup_lib.DataSpec.from_info(train_data.info),
                               example=example)
  method, mesh = setup.method, setup.mesh
  config_json = config_lib.to_dict(config)
  description = setup.describe()

  checkpointer = checkpoint_lib.Checkpointer(
      workdir / "checkpoints", max_to_keep=cfg_train.max_to_keep,
      async_save=cfg_train.async_checkpoints)
  try:  # refused before anything compiles: another model, data stream or state structure
    restored = checkpointer.restore(
        setup.abstract_state(), config_json, train_data.get_state(),
        defaults=config_lib.to_dict(config_lib.defaults(config.method)))
    if restored is None:
      state = setup.init_state(example)
      resumed_from = None
    else:
      resumed_from, state, data_state = restored
      train_data.set_state(data_state)
      log.info("Resumed from the checkpoint at step %d.", resumed_from)
  except BaseException:
    checkpointer.close()  # releases the workdir's lock for the corrected rerun
    raise

  # The metrics leave the device as one float32 [steps, metrics] array per call.
  p_train_steps = setup.train_steps()
  p_eval_step = setup.eval_step()
  p_sample = setup.sample_fn(cfg_train.num_samples)

  writer = logging_lib.MetricWriter(
      workdir, reference_points=logging_lib.reference_points(train_data.info, example),
      primary=jax.process_index() == 0)
  averager = _MetricAverager()
  eval_rng, sample_rng = jax.random.split(jax.random.fold_in(setup.rng, 1))
  last_saved = resumed_from
  eval_metrics: dict[str, float] = {}
  samples: list[Path] = []
  preemption = _Preemption()
  num_steps = cfg_train.num_steps

  def last_checkpoint() -> str:
    return (f"the last good checkpoint is step {last_saved} in {checkpointer.directory}"
            if last_saved is not None else "no checkpoint was written yet")

  def evaluate(state: TrainState, step: int) -> dict[str, float]:
    """Means of the eval metrics over the eval split; its log row adds the `seconds` taken."""
    sums = None
    variables = jax.block_until_ready(state.variables())  # time the evaluation alone
    eval_tic = time.perf_counter()
    for index, batch in enumerate(load_data(config, config.data.eval_split, train=False)):
      out = p_eval_step(variables, parallel.put_batch(batch, mesh),
                        jax.random.fold_in(jax.random.fold_in(eval_rng, step), index))
      sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
    sums = jax.device_get(sums)
    means = {k: float(total) / max(float(count), 1e-12) for k, (total, count) in sums.items()}
    writer.write(step, "eval", {**means, "seconds": time.perf_counter() - eval_tic})
    return means

  # Figures beyond the samples, drawn by viz from the method's arrays: GAN-Lab frames of 2-D GANs.
  plot_fn = gan_plots.make_plot_fn(method, train_data.info)

  def sample(state: TrainState, step: int) -> list[Path]:
    rng = jax.random.fold_in(sample_rng, step)
    written = writer.write_samples(step, jax.device_get(p_sample(state.variables(), rng)))
    if plot_fn is not None and writer.primary:
      written += plot_fn(state.variables(use_ema=False), rng, step=step,
                         directory=writer.workdir / "samples")
    return written

  # Calls dispatched but whose metrics the host has not read yet. They are read in one transfer
  # per logging interval, one call behind the newest (so the host never waits for the device),
  # and all of them before a checkpoint is written.
  pending: list[tuple[int, Any]] = []  # (first step of the call, metrics [steps, metrics])
  start = int(jax.device_get(state.step))
  tic, tic_step = time.perf_counter(), start

  def drain(keep_newest: bool) -> None:
    nonlocal tic, tic_step
    ready = pending[:-1] if keep_newest else pending[:]
    del pending[:len(ready)]
    for (first, _), rows in zip(ready, jax.device_get([m for _, m in ready])):
      for step, values in enumerate(rows, first):
        averager.add(step, dict(zip(p_train_steps.metric_names, values)), last_checkpoint())
        done = step + 1
        if done % cfg_train.log_every == 0 or done == num_steps:
          means = averager.pop()
          now = time.perf_counter()
          means["steps_per_sec"] = (done - tic_step) / max(now - tic, 1e-9)
          tic, tic_step = now, done
          writer.write(done, "train", means)
          bar.set_postfix(logging_lib.progress_postfix(means), refresh=False)

  # A call runs `steps_per_call` steps, fewer when a checkpoint, evaluation, sample or the end
  # comes sooner, so that each happens on its exact step (a shorter call compiles once more).
  cadences = [cfg_train.checkpoint_every]
  if config.data.eval_split and cfg_train.eval_every:
    cadences.append(cfg_train.eval_every)
  if p_sample is not None and cfg_train.sample_every:
    cadences.append(cfg_train.sample_every)

  def steps_in_call(step: int) -> int:
    return min([cfg_train.steps_per_call, num_steps - step]
               + [c - step % c for c in cadences])

  try:
    with preemption.installed(), tqdm(total=num_steps, initial=start, unit="step",
                                      disable=not cfg_train.progress_bar, smoothing=0.1) as bar:
      step = start
      while step < num_steps:
        # The batches are read here, while the device still runs the previous call: the read
        # overlaps the step without a reader thread.
        n = steps_in_call(step)
        batches = parallel.put_batch(train_data.next_batches(n), mesh, setup.stacked_sharding)
        # The first call compiles the step, often a run's longest silence: it is named.
        with (logging_lib.status(bar, "Compiling the train step...") if not p_train_steps.traces
              else contextlib.nullcontext()):
          state, metrics = p_train_steps(state, batches)
        pending.append((step, metrics))
        step = done = step + n
        final = done == num_steps
        # Read the flag once: a SIGTERM arriving later in this iteration is handled by the next.
        stop = preemption.requested
        if (len(pending) - 1) * cfg_train.steps_per_call >= cfg_train.log_every:
          drain(keep_newest=True)
        if final or stop or done % cfg_train.checkpoint_every == 0:
          # A state is saved only once its metrics were seen finite, and `save` checks the
          # state itself: step s's metrics come from the state before its update.
          drain(keep_newest=False)
          try:
            checkpointer.save(done, state, train_data.get_state(), config_json, description)
          except checkpoint_lib.NonFiniteStateError as e:
            raise NonFiniteError(
                f"Step {done}: {e}. The run stopped without saving this state; "
                f"{last_checkpoint()}. Lower the learning rate (optim.learning_rate), then "
                f"rerun the same command to resume from there.") from None
          last_saved = done
        if config.data.eval_split and (
            final or (cfg_train.eval_every and done % cfg_train.eval_every == 0)):
          with logging_lib.status(bar, f"Evaluating on {config.data.eval_split}..."):
            eval_metrics = evaluate(state, done)
        if p_sample is not None and (
            final or (cfg_train.sample_every and done % cfg_train.sample_every == 0)):
          with logging_lib.status(bar, f"Sampling {cfg_train.num_samples} examples..."):
            samples = sample(state, done)
        bar.update(n)
        if stop:
          log.warning("SIGTERM received: saved the checkpoint at step %d and stopped.", done)
          break
    if start >= num_steps:  # already trained: report on the final state again
      log.info("The checkpoint at step %d ends this run; evaluating and sampling it.", start)
      eval_metrics = evaluate(state, start) if config.data.eval_split else {}
      samples = sample(state, start) if p_sample is not None else []
  finally:
    try:
      checkpointer.close()  # waits for the last save; raises if it failed
    finally:
      writer.close()
  return TrainResult(state=state, eval_metrics=eval_metrics, traces=p_train_steps.traces,
                     resumed_from=resumed_from, samples=samples)
