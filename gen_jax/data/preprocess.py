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

A step may add batch entries: `ADDED_KEYS` lists them, so that the config's check of the model's
`*_key` entries (`gen_jax.train.config`) accepts them. `digit_captions` adds `caption`, the
byte tokens of a caption built from the label and attributes measured on the image
(`gen_jax.data.captions`); `hold_out_combinations` adds `weight`, 0 for the training examples
of `captions.HELD_OUT` (a loss that reads it, `model.weight_key`, ignores them).
`digit_name_captions` adds `name_caption` and `name_caption_mask`: the digit's name between
newlines, text for a byte language model (a frozen LM that captions images).
"""

from collections.abc import Mapping
from typing import Any

import numpy as np

from gen_jax.data import captions

__all__ = ["scale_to_unit", "dequantize", "one_hot_labels", "digit_captions",
           "hold_out_combinations", "digit_name_captions"]
DETERMINISTIC = frozenset({"scale_to_unit", "one_hot_labels", "digit_captions",
                           "hold_out_combinations", "digit_name_captions"})
ADDED_KEYS = {"digit_captions": ("caption",), "hold_out_combinations": ("weight",),
              "digit_name_captions": ("name_caption", "name_caption_mask")}

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


def _digits(batch: Mapping[str, np.ndarray], info: Any, name: str) -> tuple[np.ndarray, Any]:
  """The batch's images and labels, refused unless they are the digits' (the captions'
  thresholds are the digits')."""
  if not str(info.name).startswith("digits") or info.num_classes != captions.NUM_CLASSES:
    raise ValueError(f"Preprocess {name!r} captions the bundled 'digits' (its attribute "
                     f"thresholds are theirs), not {info.name!r}: remove it from "
                     "data.preprocess.")
  if "label" not in batch:
    raise ValueError(f"Preprocess {name!r} needs a 'label' key; the batch has {sorted(batch)}.")
  return _image(batch, name), batch["label"]


def digit_captions(batch: Batch, *, rng: None, info: Any) -> Batch:
  """Adds `caption` int32 [batch, captions.CAPTION_LEN]: the byte tokens of each digit's caption
  ("a thick, slanted seven") from its `label` and the attributes measured on its `image`
  (integer levels, or [-1, 1] after `scale_to_unit`: either order works)."""
  del rng  # Deterministic.
  images, labels = _digits(batch, info, "digit_captions")
  tokens = captions.caption_tokens(images, labels, _num_levels(info, "digit_captions"))
  return {**batch, "caption": tokens}


def hold_out_combinations(batch: Batch, *, rng: None, info: Any) -> Batch:
  """Adds `weight` float32 [batch]: 0 for examples of the class-attribute combinations
  `captions.HELD_OUT` (every "thick seven" and "slanted two"), 1 otherwise (multiplied into an
  existing `weight`). The data pipeline applies it to every split; a loss reading `weight` skips
  the held-out examples in training, while evaluation still scores every example."""
  del rng  # Deterministic.
  images, labels = _digits(batch, info, "hold_out_combinations")
  keep = ~captions.held_out(images, labels, _num_levels(info, "hold_out_combinations"))
  weight = keep.astype(np.float32)
  if "weight" in batch:
    weight = weight * np.asarray(batch["weight"], np.float32)
  return {**batch, "weight": weight}


NAME_CAPTION_LEN = 12  # bytes: "\n" + the longest name caption ("an eight", 8) + "\n", padded


def digit_name_captions(batch: Batch, *, rng: None, info: Any) -> Batch:
  """Adds `name_caption` int32 [batch, NAME_CAPTION_LEN], the bytes of "\\n" + the digit's name
  (`captions.caption(label)`: "a seven", "an eight") + "\\n", right-padded with 0, and
  `name_caption_mask` float32 [batch, NAME_CAPTION_LEN], 1 over the caption's bytes (both
  newlines included), 0 over the padding. Text for a byte language model: the first byte starts
  the caption, the last ends it (the `eos_id` a decoder stops at), and a loss scores the bytes
  after the first where the mask is 1. Reads only `label` (0 .. 9), so any digits dataset works.
  (`digit_captions` is the attribute captions of text-guided diffusion.)"""
  del rng  # Deterministic.
  if "label" not in batch:
    raise ValueError(f"Preprocess 'digit_name_captions' needs a 'label' key; the batch has "
                     f"{sorted(batch)}.")
  if info.num_classes != captions.NUM_CLASSES:
    raise ValueError(f"Preprocess 'digit_name_captions' names digits 0 .. 9, but {info.name} has "
                     f"{info.num_classes} classes: remove it from data.preprocess.")
  labels = np.asarray(batch["label"]).reshape(-1)
  if labels.size and (labels.min() < 0 or labels.max() >= captions.NUM_CLASSES):
    raise ValueError(f"Preprocess 'digit_name_captions' names labels 0 .. 9, got {labels.min()} "
                     f".. {labels.max()}.")
  texts = {c: b"\n" + captions.caption(c).encode() + b"\n" for c in range(captions.NUM_CLASSES)}
  tokens = np.zeros((len(labels), NAME_CAPTION_LEN), np.int32)
  mask = np.zeros((len(labels), NAME_CAPTION_LEN), np.float32)
  for c, text in texts.items():
    rows = labels == c
    tokens[rows, :len(text)] = np.frombuffer(text, np.uint8)
    mask[rows, :len(text)] = 1.0
  return {**batch, "name_caption": tokens, "name_caption_mask": mask}
