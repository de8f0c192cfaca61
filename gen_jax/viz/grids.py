"""Sample grids and 2-D scatter plots, written as PNG files a person can open, and byte token
samples written as text.

2-D scatter plots are drawn on a fixed axes window (`limits`), over reference points (the data)
when there are some: plots of one run, or of two runs, then compare by eye. Left to autoscale,
every plot would zoom onto its own samples, and a collapsed generator would look like a spread
one.
"""

import math
from pathlib import Path

import numpy as np
from PIL import Image


def image_grid(images: np.ndarray, *, columns: int | None = None, padding: int = 1,
               scale: int = 1) -> np.ndarray:
  """Tiles images [n, h, w, c] with values in [-1, 1] into one uint8 image [H, W, 3]."""
  images = np.asarray(images, np.float32)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"image_grid expects [n, h, w, 1 or 3] images, got shape {images.shape}.")
  n, h, w, c = images.shape
  columns = columns or math.ceil(math.sqrt(n))
  rows = math.ceil(n / columns)
  pixels = np.clip((images + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
  if c == 1:
    pixels = np.repeat(pixels, 3, axis=-1)
  grid = np.full((rows * (h + padding) + padding, columns * (w + padding) + padding, 3), 255,
                 np.uint8)
  for i in range(n):
    r, col = divmod(i, columns)
    top, left = padding + r * (h + padding), padding + col * (w + padding)
    grid[top:top + h, left:left + w] = pixels[i]
  if scale > 1:
    grid = np.kron(grid, np.ones((scale, scale, 1), np.uint8))
  return grid


def save_image_grid(images: np.ndarray, path: str | Path, **kwargs) -> Path:
  """Writes `image_grid(images)` as a PNG; small images are upscaled to stay visible."""
  height = np.asarray(images).shape[1]
  kwargs.setdefault("scale", max(1, 64 // height))
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(image_grid(images, **kwargs)).save(path)
  return path


def scatter_limits(points: np.ndarray, *, margin: float = 0.25
                   ) -> tuple[float, float, float, float]:
  """A square window (x0, x1, y0, y1) around the finite points [n, 2], `margin` of their span
  wider on each side (at least 0.1 across); (-1, 1, -1, 1) when no point is finite."""
  points = np.asarray(points, np.float64).reshape(-1, 2)
  points = points[np.isfinite(points).all(axis=1)]
  if not len(points):
    return (-1.0, 1.0, -1.0, 1.0)
  lo, hi = points.min(axis=0), points.max(axis=0)
  center, half = (lo + hi) / 2, max((hi - lo).max() / 2 * (1 + 2 * margin), 0.05)
  return (float(center[0] - half), float(center[0] + half), float(center[1] - half),
          float(center[1] + half))


def scatter_figure(points: np.ndarray, *, reference: np.ndarray | None = None,
                   limits: tuple[float, float, float, float] | None = None, title: str = ""):
  """A matplotlib figure of 2-D points [n, 2] (orange) over reference points [m, 2] (blue, e.g.
  the data), on the axes window `limits` (x0, x1, y0, y1), by default `scatter_limits` of the
  reference or else of the points. Points outside the window (or not finite) are counted in the
  title.

  A `matplotlib.figure.Figure` made without pyplot: no backend is switched (a notebook's inline
  plots keep working) and nothing needs closing.
  """
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  points = np.asarray(points, np.float64).reshape(-1, 2)
  if limits is None:
    limits = scatter_limits(points if reference is None else reference)
  x0, x1, y0, y1 = limits
  fig = Figure(figsize=(4, 4), dpi=100)
  ax = fig.subplots()
  if reference is not None:
    reference = np.asarray(reference, np.float64).reshape(-1, 2)
    ax.scatter(reference[:, 0], reference[:, 1], s=2, c="tab:blue", alpha=0.3, label="data")
  ax.scatter(points[:, 0], points[:, 1], s=2, c="tab:orange", alpha=0.6, label="samples")
  ax.set_xlim(x0, x1)
  ax.set_ylim(y0, y1)
  ax.set_aspect("equal")
  inside = (points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (
      points[:, 1] <= y1)
  outside = len(points) - int(inside.sum())
  if outside:
    title = f"{title} ({outside} of {len(points)} outside)".strip()
  ax.set_title(title, fontsize=9)
  if reference is not None:
    ax.legend(loc="upper right", fontsize=7, markerscale=4)
  fig.tight_layout()
  return fig


def save_scatter(points: np.ndarray, path: str | Path, *, reference: np.ndarray | None = None,
                 limits: tuple[float, float, float, float] | None = None,
                 title: str = "") -> Path:
  """Writes `scatter_figure(points, reference=..., limits=..., title=...)` as a PNG whose text
  chunk "Limits" records the window drawn, "x0 x1 y0 y1". Pass the same `limits` to every plot
  of a run, so that plots of different steps (and runs) compare by eye."""
  fig = scatter_figure(points, reference=reference, limits=limits, title=title)
  x0, x1 = fig.axes[0].get_xlim()
  y0, y1 = fig.axes[0].get_ylim()
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, metadata={"Limits": " ".join(repr(float(v)) for v in (x0, x1, y0, y1))})
  return path


def save_gif(frames: np.ndarray, path: str | Path, *, duration_ms: int = 100, **kwargs) -> Path:
  """Writes an animation as a looping GIF (Pillow): frames [n, frames, h, w, c] in [-1, 1],
  frame t showing the `image_grid` of the n animations' frame t (one animation: that frame
  alone, upscaled like `save_image_grid`). A turntable of rendered views is one animation."""
  frames = np.asarray(frames)
  if frames.ndim != 5:
    raise ValueError(f"save_gif expects [n, frames, h, w, 1 or 3] animations, got shape "
                     f"{frames.shape}.")
  kwargs.setdefault("scale", max(1, 64 // frames.shape[2]))
  kwargs.setdefault("padding", 1 if frames.shape[0] > 1 else 0)
  images = [Image.fromarray(image_grid(frames[:, t], **kwargs)) for t in range(frames.shape[1])]
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
  return path


def is_byte_tokens(samples: np.ndarray) -> bool:
  """Whether `samples` are byte token ids [n, length]: integers in 0 .. 255."""
  samples = np.asarray(samples)
  return (samples.ndim == 2 and samples.dtype.kind in "iu" and samples.size > 0
          and 0 <= samples.min() and samples.max() < 256)


def save_byte_text(tokens: np.ndarray, path: str | Path) -> Path:
  """Writes byte token ids [n, length] as UTF-8 text (invalid bytes as U+FFFD), the n samples
  separated by a "----" line.

  Raises:
    ValueError: `tokens` are not byte ids (`is_byte_tokens`).
  """
  tokens = np.asarray(tokens)
  if not is_byte_tokens(tokens):
    raise ValueError(f"save_byte_text writes byte ids [n, length] in 0 .. 255, got shape "
                     f"{tokens.shape} of {tokens.dtype}: save other ids with np.save.")
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("\n\n----\n\n".join(bytes(row.astype(np.uint8)).decode("utf-8", errors="replace")
                                       for row in tokens), encoding="utf-8")
  return path
