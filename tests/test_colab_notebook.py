"""The Colab notebook runs end to end: its code cells, as one script, train a tiny config in a
temporary workdir, plot the metrics and sample the trained run.

Like papermill, the script runs the cell tagged `parameters`, then the test's own values, then
the other cells. Shell and magic lines (`!pip install ...`, `%...`) are left out: gen_jax is
installed here, as the install cell would install it on Colab.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

NOTEBOOK = Path(__file__).resolve().parents[1] / "experiments/colab/train_and_sample.ipynb"

# After the notebook's cells: what it produced, for the assertions.
EPILOGUE = """
np.savez(Path(OUT) / "outputs.npz", grid=shown["samples"], samples=np.asarray(samples["samples"]))
(Path(OUT) / "outputs.json").write_text(json.dumps(dict(
    eval_metrics=eval_metrics, step=int(result.state.step), traces=result.traces,
    loss_keys=loss_keys, sample_names=sorted(samples), figures=len(plt.get_fignums()))))
"""


def code_cells(notebook: dict) -> list[dict]:
  return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


def notebook_script(notebook: dict, parameters: str) -> str:
  """The code cells as one script, `parameters` after the cell tagged `parameters`."""
  parts = []
  for cell in code_cells(notebook):
    source = "".join(cell["source"]).splitlines()
    parts.append("\n".join(line for line in source if not line.lstrip().startswith(("!", "%"))))
    if "parameters" in cell["metadata"].get("tags", ()):
      parts.append(parameters)
  return "\n\n".join(parts)


def test_notebook_is_nbformat_4_with_the_parameters_first():
  notebook = json.loads(NOTEBOOK.read_text())
  assert notebook["nbformat"] == 4
  first = code_cells(notebook)[0]
  assert first["metadata"]["tags"] == ["parameters"]
  names = [line.split("=")[0].strip() for line in first["source"] if "=" in line]
  assert names == ["REPO_URL", "CONFIG", "CONFIG_ARG", "WORKDIR", "NUM_SAMPLES", "SEED"]
  install = "".join(code_cells(notebook)[1]["source"])
  assert '!pip install -q "git+{REPO_URL}"' in install


def test_notebook_trains_plots_metrics_and_samples_a_tiny_config(tmp_path):
  notebook = json.loads(NOTEBOOK.read_text())
  parameters = (f'CONFIG, CONFIG_ARG = "vae_digits", "tiny"\nWORKDIR = {str(tmp_path / "run")!r}\n'
                f'NUM_SAMPLES = 9\nOUT = {str(tmp_path)!r}')
  script = tmp_path / "notebook.py"
  script.write_text(notebook_script(notebook, parameters) + "\n" + EPILOGUE)
  env = dict(os.environ, MPLBACKEND="Agg")  # plt.show() draws nowhere
  proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "vae_digits:tiny on 1 cpu device(s); batch size 32, 4 steps" in proc.stdout

  out = json.loads((tmp_path / "outputs.json").read_text())
  assert out["step"] == 4 and out["traces"] == 1
  assert set(out["eval_metrics"]) == {"elbo_bpd", "iwae_bpd", "kl_bpd", "recon_bpd"}
  assert all(math.isfinite(v) for v in out["eval_metrics"].values())
  assert out["loss_keys"] == ["vae/loss"]
  # One figure of losses, one per sample entry (prior samples and interpolations).
  assert out["sample_names"] == ["interpolation", "samples"]
  assert out["figures"] == 1 + len(out["sample_names"])

  arrays = np.load(tmp_path / "outputs.npz")
  assert arrays["samples"].shape == (9, 8, 8, 1)
  assert np.all(np.abs(arrays["samples"]) <= 1)
  # The grid drawn: 9 digits of 8x8 in 3 rows of 3 with 1-pixel borders, as RGB.
  assert arrays["grid"].dtype == np.uint8 and arrays["grid"].shape == (28, 28, 3)
  rows = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
  assert {row["split"] for row in rows} == {"train", "eval"}
