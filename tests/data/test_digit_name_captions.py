"""`digit_name_captions`: the digit's name between newlines as bytes, with its mask."""

import types

import numpy as np
import pytest

from gen_jax import data
from gen_jax.data import preprocess

DIGITS = types.SimpleNamespace(name="digits", num_classes=10, num_levels=17)


def test_captions_are_the_names_between_newlines_padded_with_a_mask():
  batch = {"label": np.array([7, 8, 1], np.int32), "image": np.zeros((3, 8, 8, 1), np.uint8)}
  out = preprocess.digit_name_captions(batch, rng=None, info=DIGITS)
  assert out["name_caption"].dtype == np.int32 and out["name_caption_mask"].dtype == np.float32
  assert out["name_caption"].shape == out["name_caption_mask"].shape == (3, 12)
  want = [b"\na seven\n", b"\nan eight\n", b"\na one\n"]
  for row, mask, text in zip(out["name_caption"], out["name_caption_mask"], want):
    np.testing.assert_array_equal(row, list(text) + [0] * (12 - len(text)))
    np.testing.assert_array_equal(mask, [1] * len(text) + [0] * (12 - len(text)))
  np.testing.assert_array_equal(out["image"], batch["image"])  # the rest passes through
  assert {"name_caption", "name_caption_mask"} == set(
      preprocess.ADDED_KEYS["digit_name_captions"])
  assert "digit_name_captions" in preprocess.DETERMINISTIC


def test_data_without_digit_labels_are_refused():
  with pytest.raises(ValueError, match="needs a 'label' key"):
    preprocess.digit_name_captions({"image": np.zeros((1, 8, 8, 1))}, rng=None, info=DIGITS)
  ring = types.SimpleNamespace(name="toy2d/ring8", num_classes=8)
  with pytest.raises(ValueError, match="toy2d/ring8 has 8 classes: remove it"):
    preprocess.digit_name_captions({"label": np.zeros(2, np.int32)}, rng=None, info=ring)
  with pytest.raises(ValueError, match="labels 0 .. 9, got 0 .. 12"):
    preprocess.digit_name_captions({"label": np.array([0, 12])}, rng=None, info=DIGITS)


def test_the_pipeline_adds_them_to_every_digits_batch():
  batch = next(data.load("digits", "test", 16, 0, shuffle=False,
                         preprocess=("scale_to_unit", "digit_name_captions")))
  texts = [bytes(row[row > 0].astype(np.uint8)) for row in batch["name_caption"]]
  names = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
  for text, label in zip(texts, batch["label"]):
    assert text.decode().strip().split()[-1] == names[label]
