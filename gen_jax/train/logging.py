"""Run outputs under the workdir: JSON lines, TensorBoard event files, sample files."""

import json
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from tensorboardX import SummaryWriter

from gen_jax.viz import grids


class MetricWriter:
  """Writes scalar metrics to `metrics.jsonl` and to TensorBoard (`tb/`) under the workdir."""

  def __init__(self, workdir: str | Path):
    self.workdir = Path(workdir)
    self.workdir.mkdir(parents=True, exist_ok=True)
    self._jsonl = open(self.workdir / "metrics.jsonl", "a", encoding="utf-8")
    self._tb = SummaryWriter(str(self.workdir / "tb"))

  def write(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
    row = {"step": step, "split": split, "time": round(time.time(), 3)}
    row.update({k: float(v) for k, v in metrics.items()})
    self._jsonl.write(json.dumps(row) + "\n")
    self._jsonl.flush()
    for key, value in metrics.items():
      self._tb.add_scalar(f"{split}/{key}", float(value), step)

  def write_samples(self, step: int, samples: Any) -> list[Path]:
    """Saves samples by their kind: images [n, h, w, c] as a PNG grid (and to TensorBoard),
    2-D points [n, 2] as a scatter PNG, tokens [n, length] as a text file."""
    out_dir = self.workdir / "samples"
    written = []
    items = samples.items() if isinstance(samples, Mapping) else [("samples", samples)]
    for name, value in items:
      value = np.asarray(value)
      stem = out_dir / f"{name}_{step:07d}"
      if value.ndim == 4:
        written.append(grids.save_image_grid(value, stem.with_suffix(".png")))
        self._tb.add_image(f"samples/{name}", grids.image_grid(value), step, dataformats="HWC")
      elif value.ndim == 2 and value.shape[1] == 2 and value.dtype.kind == "f":
        written.append(grids.save_scatter(value, stem.with_suffix(".png"),
                                          title=f"{name}, step {step}"))
      elif value.ndim == 2 and value.dtype.kind in "iu":
        path = stem.with_suffix(".txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "\n\n----\n\n".join(bytes(np.clip(row, 0, 255).astype(np.uint8)).decode(
            "utf-8", errors="replace") for row in value)
        path.write_text(text, encoding="utf-8")
        written.append(path)
      else:
        path = stem.with_suffix(".npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, value)
        written.append(path)
    self._tb.flush()
    return written

  def close(self) -> None:
    self._jsonl.close()
    self._tb.close()
