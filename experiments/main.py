"""Trains one experiment: `python experiments/main.py --config CONFIG.py[:ARG] --workdir DIR`.

Running the same command again on the same workdir resumes from its newest good checkpoint. A bad
config file, key or value stops it before anything compiles, with one line that names it.

Several processes (a TPU slice, several GPU hosts, or processes on one machine) run the same
command, each joining the run through `jax.distributed.initialize`: `--distributed` lets JAX find
the cluster (TPU, SLURM), or `--coordinator_address host:port --num_processes N --process_id I`
names it. They train on the same global batches as one process would (docs/architecture.md,
"Several processes").
"""

import logging
import re
import sys

import jax
from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from gen_jax import data, host_memory, names
from gen_jax.errors import SettingError
from gen_jax.train import config as config_lib
from gen_jax.train import checkpoint as checkpoint_lib
from gen_jax.train.loop import NonFiniteError, train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, samples.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Join a multi-process run whose settings JAX finds itself (TPU slices, "
    "SLURM): jax.distributed.initialize() without arguments.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Join a multi-process run: host:port of process 0's "
    "coordinator (with --num_processes and --process_id).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes of the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process, in [0, num_processes).")
flags.mark_flags_as_required(["config", "workdir"])


def _join_processes() -> None:
  """Calls `jax.distributed.initialize` when the flags ask for a multi-process run."""
  named = [_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value]
  if all(v is None for v in named):
    if _DISTRIBUTED.value:
      jax.distributed.initialize()
    return
  if any(v is None for v in named) or _DISTRIBUTED.value:
    sys.exit("Error: a named multi-process run needs all three of --coordinator_address, "
             "--num_processes and --process_id (and not --distributed).")
  if not re.fullmatch(r"[^:\s]+:\d+", _COORDINATOR.value):
    sys.exit(f"Error: --coordinator_address must be host:port (e.g. localhost:12355), got "
             f"{_COORDINATOR.value!r}.")
  if _NUM_PROCESSES.value < 1:
    sys.exit(f"Error: --num_processes must be at least 1, got {_NUM_PROCESSES.value}.")
  if not 0 <= _PROCESS_ID.value < _NUM_PROCESSES.value:
    sys.exit(f"Error: --process_id must be in [0, --num_processes={_NUM_PROCESSES.value}), got "
             f"{_PROCESS_ID.value}.")
  jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                             num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, but a bad config file or `--config.*` override ends the program with
  one line: config_flags raises them from deep inside ml_collections, as a long traceback."""
  try:
    rest = flags.FLAGS(argv)
    _CONFIG.value.keys()  # config_flags defers a file's load error to the config's first use
    return rest
  except Exception as error:  # whatever config_flags raised, name what is wrong in one line
    sys.exit(f"Error: {_config_problem(argv) or str(error).splitlines()[0]}")


def _config_problem(argv: list[str]) -> str | None:
  """What is wrong with the --config file or the keys its overrides name, or None."""
  spec, paths = None, []
  for i, arg in enumerate(argv[1:], 1):
    if match := re.fullmatch(r"--?config(=(.*))?", arg):
      spec = match[2] if match[1] else next(iter(argv[i + 1:]), None)
    elif match := re.match(r"--?(no)?config\.([^=]+)", arg):
      paths.append(match[2])
  try:
    config = config_lib.load_file(spec) if spec else None
    for path in paths if config else ():
      config_lib.check_override(config, path)
  except config_lib.ConfigError as error:
    return str(error)
  return None


def main(argv):
  del argv
  absl_logging.set_verbosity(absl_logging.WARNING)  # orbax reports every save at INFO
  logging.getLogger("gen_jax").setLevel(logging.INFO)
  workdir = _WORKDIR.value
  # Process-wide CPU settings (gen_jax/host_memory.py): the entry point's choice, before JAX runs.
  host_memory.configure_process(_CONFIG.value)
  _join_processes()
  try:
    result = train_and_evaluate(_CONFIG.value, workdir)
  except (config_lib.ConfigError, names.UnknownNameError, data.DatasetNotPreparedError,
          SettingError,
          checkpoint_lib.CheckpointDirInUseError, checkpoint_lib.CheckpointMismatchError,
          checkpoint_lib.NoGoodCheckpointError, NonFiniteError) as error:
    sys.exit(f"Error: {error}")  # the message names what is wrong and what to change
  if jax.process_index() != 0:
    return  # process 0 writes the outputs and reports them
  step, num_steps = int(result.state.step), config_lib.resolve(_CONFIG.value).train.num_steps
  if step < num_steps:  # stopped early (SIGTERM): not done
    print(f"\nStopped at step {step} of {num_steps}; rerun the same command to resume. "
          f"Outputs so far in {workdir}/:")
  else:
    print(f"\nDone at step {step}. Outputs in {workdir}/:")
  print(f"  metrics:      {workdir}/metrics.jsonl")
  print(f"  TensorBoard:  tensorboard --logdir {workdir}/tb")
  print(f"  checkpoints:  {workdir}/checkpoints/")
  for path in result.samples:
    print(f"  samples:      {path}")
  if result.eval_metrics:
    print("  eval:         " + ", ".join(f"{k}={v:.4g}" for k, v in result.eval_metrics.items()))


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
