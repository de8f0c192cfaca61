"""A run across processes (`jax.distributed` on localhost, 2 processes x 4 CPU devices) against
one process with 8 devices: the same losses and parameters, and checkpoints that resume under the
other process count.

Oracle: one process holds the whole global batch; two processes each read their half of it
(gen_jax.data.indexing), so every step sees the same examples and the same random draws, and only
the order of the cross-device sums can differ (float32 rounding).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gen_jax.train import setup as setup_lib

ROOT = Path(__file__).resolve().parents[2]
CONFIG = f"{ROOT}/experiments/configs/vae_digits.py:tiny"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def train(workdir: Path, processes: int, steps: int) -> None:
  """experiments/main.py on 8 CPU devices in all, as `processes` processes; waits for them."""
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={8 // processes}"}
  command = [sys.executable, str(ROOT / "experiments/main.py"), f"--config={CONFIG}",
             f"--config.train.num_steps={steps}", f"--workdir={workdir}"]
  if processes > 1:
    command += [f"--coordinator_address=localhost:{_free_port()}",
                f"--num_processes={processes}"]
  runs = [subprocess.Popen(command + ([f"--process_id={i}"] if processes > 1 else []), env=env,
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for i in range(processes)]
  for i, run in enumerate(runs):
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, f"process {i} of {processes} failed:\n{out}\n{err[-3000:]}"


def losses(workdir: Path) -> dict[int, float]:
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  train_rows = [r for r in rows if r["split"] == "train"]
  steps = [r["step"] for r in train_rows]
  assert len(steps) == len(set(steps)), "several processes wrote the metrics"
  return {r["step"]: r["vae/loss"] for r in train_rows}


def params(workdir: Path) -> list[np.ndarray]:
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree.leaves(jax.device_get(setup_lib.load_run(workdir).state.params))


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
  workdir = tmp_path_factory.mktemp("one_process")
  train(workdir, processes=1, steps=8)
  return workdir


def assert_same_run(got: Path, want: Path) -> None:
  got_losses, want_losses = losses(got), losses(want)
  assert sorted(got_losses) == sorted(want_losses) == [2, 4, 6, 8]
  for step, loss in want_losses.items():
    np.testing.assert_allclose(got_losses[step], loss, rtol=1e-5, err_msg=f"step {step}")
  for a, b in zip(params(got), params(want), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_two_processes_train_as_one_and_checkpoints_resume_in_either_count(one_process,
                                                                            tmp_path):
  train(tmp_path, processes=2, steps=2)
  assert sorted(p.name for p in tmp_path.iterdir()) == [
      "checkpoints", "metrics.jsonl", "samples", "tb"]
  train(tmp_path, processes=1, steps=4)  # resumes at step 2 with one process
  train(tmp_path, processes=2, steps=8)  # and at step 4 with two again
  assert_same_run(tmp_path, one_process)


def test_a_named_multi_process_run_needs_all_three_flags(tmp_path):
  out = subprocess.run([sys.executable, str(ROOT / "experiments/main.py"), f"--config={CONFIG}",
                        f"--workdir={tmp_path}", "--num_processes=2"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert out.returncode == 1
  assert out.stderr.strip().splitlines()[-1] == (
      "Error: a named multi-process run needs all three of --coordinator_address, "
      "--num_processes and --process_id (and not --distributed).")


def test_a_coordinator_address_without_a_port_is_refused(tmp_path):
  out = subprocess.run([sys.executable, str(ROOT / "experiments/main.py"), f"--config={CONFIG}",
                        f"--workdir={tmp_path}", "--coordinator_address=localhost",
                        "--num_processes=1", "--process_id=0"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert out.returncode == 1
  assert out.stderr.strip().splitlines()[-1] == (
      "Error: --coordinator_address must be host:port (e.g. localhost:12355), got 'localhost'.")
