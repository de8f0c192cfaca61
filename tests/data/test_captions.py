"""Digit captions: the attribute measurements on hand-made 8x8 images with known answers, the
caption language and its inverse, the byte encoding's refusals, the stored terciles against the
training split, and the preprocessing steps that add `caption` and `weight`."""

import itertools
import types

import numpy as np
import pytest
import sklearn.datasets

from gen_jax.conditioning import decode_text, encode_text
from gen_jax.data import captions, preprocess
from gen_jax.data.builders import digits_split_indices

DIGITS_INFO = types.SimpleNamespace(name="digits", num_levels=17, num_classes=10)


def blank() -> np.ndarray:
  return np.zeros((8, 8), np.int64)


def test_thickness_is_the_mean_ink_of_the_inked_pixels():
  thick = blank()
  thick[:, 3:5] = 16  # a full-ink bar two pixels wide
  thin = blank()
  thin[:, 4] = 16
  thin[:, 3] = thin[:, 5] = 6  # anti-aliased edges: ink 6/16 >= 0.25, counted
  faint = blank()
  faint[:, 4] = 16
  faint[:, 3] = 3  # ink 3/16 < 0.25: not counted as inked
  ink = captions.ink_of(np.stack([thick, thin, faint, blank()]))
  np.testing.assert_allclose(captions.thickness(ink), [1.0, (1 + 2 * 6 / 16) / 3, 1.0, 0.0])


def test_width_is_the_ink_weighted_spread_of_the_columns():
  bar, pair, lopsided = blank(), blank(), blank()
  bar[:, 4] = 16
  pair[:, 2] = pair[:, 5] = 16  # columns 2 and 5, equal ink: standard deviation 1.5
  lopsided[:, 2] = 16
  lopsided[:, 5] = 8  # weights 2:1 -> mean 3, variance (2 * 1 + 1 * 4) / 3 = 2
  ink = captions.ink_of(np.stack([bar, pair, lopsided, blank()]))
  np.testing.assert_allclose(captions.width(ink), [0.0, 1.5, np.sqrt(2.0), 0.0])


def test_slant_sign_and_size_on_diagonal_strokes():
  right, left, upright, steep = blank(), blank(), blank(), blank()
  for r in range(8):
    right[r, 7 - r] = 16  # "/": one column right per row up
    left[r, r] = 16  # "\"
    upright[r, 3] = 16
    steep[r, 2 + r // 2] = 16  # "\" at half the shear
  ink = captions.ink_of(np.stack([right, left, upright, steep, blank()]))
  got = captions.slant(ink)
  np.testing.assert_allclose(got[:3], [1.0, -1.0, 0.0], atol=1e-12)
  # Least-squares slope of column c = 2 + r // 2 on r over r = 0..7: sum (r - 3.5)(c - 3.5) = 20
  # over sum (r - 3.5)^2 = 42, so the slant is -10 / 21.
  np.testing.assert_allclose(got[3], -10 / 21, atol=1e-12)
  assert got[4] == 0.0  # no ink: no slant


def test_integer_levels_and_unit_floats_measure_alike():
  rng = np.random.default_rng(0)
  levels = rng.integers(0, 17, (20, 8, 8, 1))
  unit = (levels * (2.0 / 16) - 1.0).astype(np.float32)  # scale_to_unit
  np.testing.assert_array_equal(captions.ink_of(levels), captions.ink_of(unit))
  # A sample is quantised to the levels and clipped: 0.99 -> level 16, 1.7 -> 1, -3 -> 0.
  np.testing.assert_allclose(captions.ink_of(np.array([[[0.99, 1.7, -3.0]]]))[0, 0],
                             [1.0, 1.0, 0.0])
  with pytest.raises(ValueError, match=r"\[n, h, w, 1\]"):
    captions.ink_of(np.zeros((2, 8, 8, 3)))


def test_buckets_against_the_class_thresholds():
  thresholds = np.array([[[1.0, 2.0]], [[10.0, 20.0]]])  # 2 classes, 1 attribute
  values = np.array([[0.5], [1.0], [1.5], [2.0], [2.5], [15.0], [25.0], [5.0]])
  labels = np.array([0, 0, 0, 0, 0, 1, 1, 1])
  np.testing.assert_array_equal(captions.buckets(values, labels, thresholds)[:, 0],
                                [0, 1, 1, 1, 2, 1, 2, 0])
  with pytest.raises(ValueError, match=r"Labels must lie in \[0, 2\)"):
    captions.buckets(values, labels + 1, thresholds)


def test_captions_read_as_english():
  assert captions.caption(7, ["thick"]) == "a thick seven"
  assert captions.caption(2, ["slanted", "narrow"]) == "a narrow, slanted two"
  assert captions.caption(8) == "an eight"
  assert captions.caption(1) == "a one"
  assert captions.caption(3, ["upright"]) == "an upright three"
  assert captions.caption(8, ["thin"]) == "a thin eight"
  assert captions.caption(0, ["wide", "upright", "thin"]) == "a thin, wide, upright zero"
  assert captions.caption_of_buckets(7, [2, 1, 0]) == "a thick, upright seven"


def test_bad_captions_are_refused_with_the_valid_words():
  with pytest.raises(ValueError, match=r"Unknown attribute word 'fat': use one of .*thick"):
    captions.caption(7, ["fat"])
  with pytest.raises(ValueError, match=r"Two words for the thickness: 'thin' and 'thick'"):
    captions.caption(7, ["thin", "thick"])
  with pytest.raises(ValueError, match="label must be in 0 .. 9"):
    captions.caption(10)
  with pytest.raises(ValueError, match=r"write \('thick',\)"):
    captions.caption(7, "thick")
  with pytest.raises(ValueError, match="Unknown attribute word 'small'"):
    captions.parse_caption("a small, slanted two")
  with pytest.raises(ValueError, match="then a digit's name"):
    captions.parse_caption("the thick seven")
  with pytest.raises(ValueError, match="Unknown attribute word 'fat'"):
    captions.held_out(np.zeros((1, 8, 8), np.int64), np.array([7]), combinations=[("fat", 7)])


def test_every_caption_parses_back_and_fits_the_caption_length():
  for label in range(10):
    for combo in itertools.product(*[(1, 0, 2)] * 3):
      text = captions.caption_of_buckets(label, combo)
      assert len(text.encode()) <= captions.CAPTION_LEN
      got_label, named = captions.parse_caption(text)
      assert got_label == label
      assert named == {a: b for a, b in zip(captions.ATTRIBUTES, combo) if b != 1}


def test_text_encoding_round_trip_and_refusals():
  tokens = encode_text(["a thick seven", ""], 16)
  assert tokens.shape == (2, 16) and tokens.dtype == np.int32
  np.testing.assert_array_equal(tokens[1], 0)  # the empty prompt is all padding
  np.testing.assert_array_equal(tokens[0, :13], list(b"a thick seven"))
  assert decode_text(tokens) == ["a thick seven", ""]
  with pytest.raises(ValueError, match=r"17 bytes, more than the maximum text length 16: "
                                       r"shorten it or raise model.max_text_len"):
    encode_text(["a thick, wide one"], 16)
  with pytest.raises(ValueError, match=r"bytes outside the text vocabulary \(ids 1 .. 127.*"
                                       r"raise model.text_vocab_size"):
    encode_text(["a thick séven"], 32)
  with pytest.raises(ValueError, match=r"outside the text vocabulary.*b'\\x00'"):
    encode_text(["a\x00seven"], 32)
  with pytest.raises(ValueError, match=r"write \('a seven',\)"):
    encode_text("a seven", 32)
  with pytest.raises(ValueError, match=r"must be a string"):
    encode_text([7], 32)


def train_digits():
  digits = sklearn.datasets.load_digits()
  index = digits_split_indices()["train"]
  return digits.images[index].astype(np.uint8), digits.target[index]


def test_stored_thresholds_are_the_training_terciles_of_each_class():
  images, labels = train_digits()
  values = captions.measure(captions.ink_of(images))
  np.testing.assert_allclose(captions.THRESHOLDS, captions.class_terciles(values, labels),
                             atol=1e-6)
  # Each word splits each class of the training split into thirds (ties at a threshold aside).
  found = captions.attributes_of_samples(images, labels)
  for c in range(10):
    for a in range(3):
      share = np.bincount(found[labels == c, a], minlength=3) / np.sum(labels == c)
      np.testing.assert_allclose(share, 1 / 3, atol=0.04)


def test_held_out_examples_are_those_of_the_combinations():
  images, labels = train_digits()
  found = captions.attributes_of_samples(images, labels)
  want = ((labels == 7) & (found[:, 0] == 2)) | ((labels == 2) & (found[:, 2] == 2))
  got = captions.held_out(images, labels)
  np.testing.assert_array_equal(got, want)
  assert 80 < got.sum() < 110  # about a third of the sevens and of the twos


def test_preprocessing_adds_captions_and_weights():
  images, labels = train_digits()
  batch = {"image": images[:40, ..., None], "label": labels[:40].astype(np.int32)}
  out = preprocess.digit_captions(batch, rng=None, info=DIGITS_INFO)
  assert out["caption"].shape == (40, captions.CAPTION_LEN) and out["caption"].dtype == np.int32
  assert decode_text(out["caption"]) == captions.captions_of(batch["image"], batch["label"])
  scaled = preprocess.scale_to_unit(batch, rng=None, info=DIGITS_INFO)
  np.testing.assert_array_equal(  # either order of the steps gives the same captions
      preprocess.digit_captions(scaled, rng=None, info=DIGITS_INFO)["caption"], out["caption"])
  weights = preprocess.hold_out_combinations(out, rng=None, info=DIGITS_INFO)["weight"]
  np.testing.assert_array_equal(weights, ~captions.held_out(batch["image"], batch["label"]))
  assert weights.dtype == np.float32 and 0 < weights.sum() < 40
  halves = preprocess.hold_out_combinations({**batch, "weight": np.full(40, 0.5, np.float32)},
                                            rng=None, info=DIGITS_INFO)["weight"]
  np.testing.assert_array_equal(halves, 0.5 * weights)
  other = types.SimpleNamespace(name="mnist", num_levels=256, num_classes=10)
  with pytest.raises(ValueError, match="captions the bundled 'digits'.*remove it"):
    preprocess.digit_captions(batch, rng=None, info=other)


def test_matches_scores_the_named_attributes_of_samples():
  thick, thin = blank(), blank()
  thick[:, 2:6] = 16  # full ink: thick for any class
  thin[:, 4] = 5  # faint: thin for any class
  images = np.stack([thick, thin, thick])
  out = captions.matches(images, ["a thick seven", "a thick, upright seven", "a seven"])
  np.testing.assert_array_equal(out["labels"], [7, 7, 7])
  assert out["attribute_match"][0] == 1.0
  # The thin bar is not thick; a vertical stroke is upright for sevens (their lower tercile of
  # slant is 0.105 > 0): one of two named attributes matches.
  assert out["attribute_match"][1] == 0.5
  assert np.isnan(out["attribute_match"][2])  # a prompt that names no attribute
