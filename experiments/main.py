"""Trains one experiment: `python experiments/main.py --config CONFIG.py[:ARG] --workdir DIR`.

Running the same command again on the same workdir resumes from its newest good checkpoint.
"""

import logging

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from gen_jax.train.loop import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, samples.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  absl_logging.set_verbosity(absl_logging.WARNING)  # orbax reports every save at INFO
  logging.getLogger("gen_jax").setLevel(logging.INFO)
  result = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  workdir = _WORKDIR.value
  print(f"\nDone at step {int(result.state.step)}. Outputs in {workdir}/:")
  print(f"  metrics:      {workdir}/metrics.jsonl")
  print(f"  TensorBoard:  tensorboard --logdir {workdir}/tb")
  print(f"  checkpoints:  {workdir}/checkpoints/")
  for path in result.samples:
    print(f"  samples:      {path}")
  if result.eval_metrics:
    print("  eval:         " + ", ".join(f"{k}={v:.4g}" for k, v in result.eval_metrics.items()))


if __name__ == "__main__":
  app.run(main)
