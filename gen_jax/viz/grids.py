"""Sample grids and 2-D scatter plots, written as PNG files a person can open."""

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


def save_scatter(points: np.ndarray, path: str | Path, *, reference: np.ndarray | None = None,
                 title: str = "") -> Path:
  """Writes a scatter plot of 2-D points [n, 2] (and optional reference points) as a PNG."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
  if reference is not None:
    ax.scatter(reference[:, 0], reference[:, 1], s=2, c="tab:blue", alpha=0.3, label="data")
  ax.scatter(points[:, 0], points[:, 1], s=2, c="tab:orange", alpha=0.6, label="samples")
  ax.set_aspect("equal")
  ax.set_title(title)
  if reference is not None:
    ax.legend(loc="upper right", fontsize=7, markerscale=4)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
  return path
