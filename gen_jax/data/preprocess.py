"""Batch preprocessing named in `load(..., preprocess=(...))`, applied in order.

Each function is pure NumPy: `fn(batch, *, rng, info) -> batch`, where `batch` maps keys to
arrays with a leading batch axis, `rng` is a `np.random.Generator` fixed by (seed, process, step,
position in the list) and `info` is the dataset's `DatasetInfo` (`num_levels`, `num_classes`).
A new preprocessing step is one function here, listed in `__all__`; one that draws no random
numbers is also listed in `DETERMINISTIC` and gets `rng=None` (making a generator per batch is
not free next to a tiny model's train step).

Images are stored as integer grey levels `0..K-1` (`K = info.num_levels`: 17 for digits, 256
for 8-bit images). `scale_to_unit` maps level `k` to `2k / (K - 1) - 1`, the convention of DDPM,
DCGAN and PixelCNN++; level `k` then owns the bin of width `2 / (K - 1)` centred on it, and
`dequantize` draws uniformly within that bin (the support becomes
`[-1 - 1/(K-1), 1 + 1/(K-1))`).
"""

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["scale_to_unit", "dequantize", "one_hot_labels"]
DETERMINISTIC = frozenset({"scale_to_unit", "one_hot_labels"})

Batch = dict[str, np.ndarray]


def _image(batch: Mapping[str, np.ndarray], name: str) -> np.ndarray:
  if "image" not in batch:
    raise ValueError(f"Preprocess {name!r} needs an 'image' key; the batch has {sorted(batch)}.")
  return batch["image"]


def _num_levels(info: Any, name: str) -> int:
  if not info.num_levels:
    raise ValueError(f"Preprocess {name!r} needs the number of grey levels; "
                     f"{info.name} does not declare one.")
  return info.num_levels


def scale_to_unit(batch: Batch, *, rng: None, info: Any) -> Batch:
  """Integer images [batch, h, w, c] to float32 in [-1, 1]: level `k` of `K` to `2k/(K-1) - 1`."""
  del rng  # Deterministic.
  image = _image(batch, "scale_to_unit")
  if not np.issubdtype(image.dtype, np.integer):
    raise ValueError("scale_to_unit expects integer grey levels; list it once, before "
                     f"float-valued steps (got {image.dtype}).")
  levels = _num_levels(info, "scale_to_unit")
  scaled = image.astype(np.float32) * np.float32(2.0 / (levels - 1)) - np.float32(1.0)
  return {**batch, "image": scaled}


def dequantize(batch: Batch, *, rng: np.random.Generator, info: Any) -> Batch:
  """Adds `U[-1/(K-1), 1/(K-1))` noise to images scaled by `scale_to_unit` (float32)."""
  image = _image(batch, "dequantize")
  if not np.issubdtype(image.dtype, np.floating):
    raise ValueError("dequantize works on images scaled to [-1, 1]: list 'scale_to_unit' "
                     "before 'dequantize'.")
  width = np.float32(2.0 / (_num_levels(info, "dequantize") - 1))
  noise = (rng.random(image.shape, dtype=np.float32) - np.float32(0.5)) * width
  return {**batch, "image": image + noise}


def one_hot_labels(batch: Batch, *, rng: None, info: Any) -> Batch:
  """Integer `label` [batch] to float32 one-hot [batch, num_classes]."""
  del rng  # Deterministic.
  if "label" not in batch:
    raise ValueError(f"one_hot_labels needs a 'label' key; the batch has {sorted(batch)}.")
  if not info.num_classes:
    raise ValueError(f"one_hot_labels needs the number of classes; {info.name} declares none.")
  eye = np.eye(info.num_classes, dtype=np.float32)
  return {**batch, "label": eye[batch["label"]]}
