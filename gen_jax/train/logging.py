"""What a run shows and writes: the progress bar's contents and status lines, and the outputs
under the workdir (JSON lines, TensorBoard event files, sample files)."""

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
from tensorboardX import SummaryWriter

from gen_jax.viz import grids

log = logging.getLogger(__name__)


def progress_postfix(means: Mapping[str, float]) -> dict[str, str]:
  """What the progress bar shows after a logging interval: each player's loss, the metrics named
  `<player>/loss` (a GAN's `disc/loss` and `gen/loss`), to 4 significant digits. The bar shows
  the steps per second itself."""
  return {name: f"{float(value):.4g}" for name, value in means.items()
          if name.endswith("/loss")}


@contextlib.contextmanager
def status(bar, message: str) -> Iterator[None]:
  """Names a long silent phase of a run (compiling, evaluating, sampling) while it lasts: as the
  description of the tqdm progress `bar`, or, when the bar is disabled or closed, as an INFO line
  of this module's logger (which `experiments/main.py` shows and tests keep quiet)."""
  if bar.disable:
    log.info(message)
    yield
    return
  bar.set_description_str(message)  # drawn now: the phase may block the bar's next update
  try:
    yield
  finally:
    bar.set_description_str("")


def reference_points(info: Any, batch: Mapping[str, Any], *, num: int = 1000
                     ) -> np.ndarray | None:
  """Real points [m, 2] to draw under 2-D samples: `num` exact draws (seed 0) from the data's
  distribution when its `DatasetInfo` knows it (toy2d's `mixture`), else the batch's float
  [batch, 2] entry, else None (the data are no 2-D points)."""
  mixture = getattr(info, "mixture", None)
  if mixture is not None:
    return mixture.sample(np.random.default_rng(0), num)[0]
  for key in sorted(batch):
    value = np.asarray(batch[key])
    if value.ndim == 2 and value.shape[1] == 2 and value.dtype.kind == "f":
      return value
  return None


class MetricWriter:
  """Writes scalar metrics to `metrics.jsonl` and to TensorBoard (`tb/`) under the workdir, and
  samples under `samples/`.

  Attributes:
    workdir: the run's directory.
    reference_points: real points [m, 2] drawn under 2-D samples, or None.
    scatter_limits: the axes window (x0, x1, y0, y1) of each sample name's 2-D plots: around the
      reference points when given, else around that name's first samples, then kept, so that
      every plot of the run has the same axes.
  """

  def __init__(self, workdir: str | Path, *, reference_points: np.ndarray | None = None,
               primary: bool = True):
    """`primary=False` (every process of a multi-process run but the first) writes nothing."""
    self.workdir = Path(workdir)
    self.primary = primary
    self.reference_points = (None if reference_points is None
                             else np.asarray(reference_points, np.float32).reshape(-1, 2))
    self.scatter_limits: dict[str, tuple[float, float, float, float]] = {}
    if not primary:
      return
    self.workdir.mkdir(parents=True, exist_ok=True)
    self._jsonl = open(self.workdir / "metrics.jsonl", "a", encoding="utf-8")
    self._tb = SummaryWriter(str(self.workdir / "tb"))

  def write(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
    if not self.primary:
      return
    row = {"step": step, "split": split, "time": round(time.time(), 3)}
    row.update({k: float(v) for k, v in metrics.items()})
    self._jsonl.write(json.dumps(row) + "\n")
    self._jsonl.flush()
    for key, value in metrics.items():
      self._tb.add_scalar(f"{split}/{key}", float(value), step)

  def write_samples(self, step: int, samples: Any) -> list[Path]:
    """Saves samples by their kind: images [n, h, w, c] as a PNG grid (and to TensorBoard),
    animations [n, frames, h, w, c] as a GIF and a PNG grid of their frames, 2-D points [n, 2]
    as a scatter PNG, byte tokens [n, length] as a text file (`grids.save_byte_text`), others
    as .npy."""
    if not self.primary:
      return []
    out_dir = self.workdir / "samples"
    written = []
    items = samples.items() if isinstance(samples, Mapping) else [("samples", samples)]
    for name, value in items:
      value = np.asarray(value)
      stem = out_dir / f"{name}_{step:07d}"
      if value.ndim == 5 and value.shape[-1] in (1, 3):
        written.append(grids.save_gif(value, stem.with_suffix(".gif")))
        value = value.reshape((-1,) + value.shape[2:])  # and the frames as images, below
      if value.ndim == 4:
        written.append(grids.save_image_grid(value, stem.with_suffix(".png")))
        self._tb.add_image(f"samples/{name}", grids.image_grid(value), step, dataformats="HWC")
      elif value.ndim == 2 and value.shape[1] == 2 and value.dtype.kind == "f":
        written.append(grids.save_scatter(
            value, stem.with_suffix(".png"), reference=self.reference_points,
            limits=self._limits(name, value), title=f"{name}, step {step}"))
      elif grids.is_byte_tokens(value):
        written.append(grids.save_byte_text(value, stem.with_suffix(".txt")))
      else:
        path = stem.with_suffix(".npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, value)
        written.append(path)
    self._tb.flush()
    return written

  def _limits(self, name: str, points: np.ndarray) -> tuple[float, float, float, float]:
    if name not in self.scatter_limits:
      basis = points if self.reference_points is None else self.reference_points
      limits = grids.scatter_limits(basis)
      if not np.isfinite(basis).all(axis=1).any():
        return limits  # no finite point to frame yet: decided by a later call
      self.scatter_limits[name] = limits
    return self.scatter_limits[name]

  def close(self) -> None:
    if not self.primary:
      return
    self._jsonl.close()
    self._tb.close()
