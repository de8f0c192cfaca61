"""The language-model method end to end on the tiny corpus."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from gen_jax.train.loop import load_checkpoint, train_and_evaluate

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "experiments/configs/lm_python.py"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  sys.path.insert(0, str(CONFIG.parent))
  import lm_python  # pylint: disable=import-outside-toplevel
  sys.path.pop(0)
  workdir = tmp_path_factory.mktemp("lm")
  return workdir, train_and_evaluate(lm_python.get_config("tiny"), workdir)


def test_tiny_run_evaluates_and_writes_text_samples(trained):
  workdir, result = trained
  # An untrained byte model is near uniform: about 8 bits per byte, never far below.
  assert 6.0 < result.eval_metrics["bits_per_token"] < 9.0
  text = result.samples[0].read_text()
  assert text.startswith("def ") and result.samples[0].suffix == ".txt"


def test_load_checkpoint_restores_the_final_state(trained):
  workdir, result = trained
  config, method, state = load_checkpoint(workdir)
  assert config.method == "autoregressive"
  for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(result.state)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  tokens = method.sample(state.variables(), jax.random.PRNGKey(0), 3)
  assert tokens.shape == (3, len("def ") + method.sample_length)


def test_prompt_longer_than_the_context_is_refused(trained):
  workdir, _ = trained
  _, method, state = load_checkpoint(workdir)
  prompt = np.zeros((1, method.network.max_len), np.int32)
  with pytest.raises(ValueError, match="exceeds the model's max_len"):
    method.generate(state.variables(), jax.random.PRNGKey(0), prompt, max_new_tokens=1)


@pytest.mark.parametrize("decode", ["beam", "sample"])
def test_sample_script_prints_continuations_of_the_prompt(trained, decode):
  workdir, _ = trained
  out = subprocess.run(
      [sys.executable, str(ROOT / "experiments/sample.py"), f"--workdir={workdir}",
       "--prompt=import ", "--length=5", f"--decode={decode}", "--beam_size=3", "--num=2"],
      capture_output=True, text=True, timeout=300, env=dict(os.environ))
  assert out.returncode == 0, out.stderr[-2000:]
  blocks = [b for b in out.stdout.split("=== ") if b.strip()]
  assert len(blocks) == (3 if decode == "beam" else 2)
  assert all(b.split("\n", 1)[1].startswith("import ") for b in blocks)
