"""Captions of the 8x8 digits built from the label and attributes measured on the image itself.

A caption names the digit and each attribute that lies in an outer third of the digit's class:

    "a seven"                         every attribute in its class's middle third
    "a thick seven"                   thicker strokes than two thirds of the training sevens
    "a thin, wide, slanted two"       three attributes named
    "an upright eight"

Three attributes are measured on the ink of an image, ink = level / (K - 1) in [0, 1] (K = 17
grey levels for digits), with pixel rows r (downwards) and columns c:

  thickness  mean ink over the inked pixels (ink >= INK_THRESHOLD = 0.25): strokes drawn
             thick reach full ink across their width, thin ones are mostly the grey of
             anti-aliasing. Words: "thin" (lower third), "thick" (upper third).
  width      the ink-weighted standard deviation of the column c. Words: "narrow", "wide".
  slant      -cov(c, r) / var(r) under the ink weights: the shear that the least-squares line
             c = a + b r has, negated so that a stroke leaning right ("/", italic) is positive.
             Words: "upright" (lower third: leaning least to the right), "slanted" (upper).

(Every digit is scaled to the full 8-pixel height by scikit-learn's preprocessing, so height
and bounding-box size do not vary; width does.) Attributes are relative to the digit's class:
the thresholds are the terciles of each attribute over the training split's examples of each
class (`THRESHOLDS`, computed by `class_terciles` from the 1,437 training digits and kept as
constants so that a batch is captioned without reading the data; a test recomputes them), so
that every word splits every class into thirds and every class-attribute combination is
common. A value below the lower tercile is bucket 0 (the first word), above the upper tercile
bucket 2 (the second word), else bucket 1 (no word).

The same measurements check generated samples (`attributes_of_samples`), after quantising them
to the data's grey levels: a sample drawn for "a thick seven" matches when it measures as
bucket 2 of thickness under the sevens' thresholds. An image without ink measures thickness 0
and width 0 (bucket 0) and slant 0.

`HELD_OUT` lists class-attribute combinations whose training examples the pipeline can weight
to 0 (`gen_jax.data.preprocess.hold_out_combinations`), so that prompts for them test
combinations the model never saw. Pure NumPy.
"""

from collections.abc import Mapping, Sequence

import numpy as np

from gen_jax.conditioning import encode_text

NUM_LEVELS = 17  # grey levels of the digits
NUM_CLASSES = 10
INK_THRESHOLD = 0.25  # ink from which a pixel counts as inked, for thickness
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ATTRIBUTES = ("thickness", "width", "slant")
WORDS = {"thickness": ("thin", "thick"), "width": ("narrow", "wide"),
         "slant": ("upright", "slanted")}  # (bucket 0, bucket 2) of each attribute
AN_WORDS = frozenset({"eight", "upright"})  # words said with a leading vowel sound
CAPTION_LEN = 32  # bytes; the longest captions ("a thick, narrow, upright three") have 30
HELD_OUT = (("thick", 7), ("slanted", 2))  # (word, class) combinations held out of training

# Terciles [class, attribute, (lower, upper)] of each attribute over the training split's
# examples of each class (`class_terciles` on the 1,437 `digits` training images; the test
# recomputes them).
THRESHOLDS = np.array([
    [[0.625000, 0.680000], [1.426318, 1.492933], [-0.053504, -0.000635]],
    [[0.744931, 0.787240], [0.912447, 1.081115], [-0.045925, 0.025113]],
    [[0.696886, 0.727665], [1.184241, 1.272355], [-0.171145, -0.089226]],
    [[0.675595, 0.714286], [1.171844, 1.268391], [-0.104496, -0.038450]],
    [[0.700893, 0.725000], [1.235937, 1.340365], [-0.020555, 0.033317]],
    [[0.669355, 0.721154], [1.206703, 1.315107], [-0.048102, 0.026052]],
    [[0.691692, 0.719907], [1.286473, 1.381555], [-0.232600, -0.165955]],
    [[0.693438, 0.725362], [1.153248, 1.235920], [0.105243, 0.160585]],
    [[0.672234, 0.715900], [1.145444, 1.221817], [-0.041744, 0.038388]],
    [[0.657407, 0.692500], [1.283780, 1.359874], [-0.114205, -0.049118]],
])


def ink_of(images: np.ndarray, num_levels: int = NUM_LEVELS) -> np.ndarray:
  """Ink [n, h, w] float64 in [0, 1] of images [n, h, w] or [n, h, w, 1]: integer grey levels
  0 .. K-1 (ink = level / (K - 1)), or floats in [-1, 1] (`scale_to_unit`'s convention, or
  samples), which are first rounded to the nearest of the K levels (clipped to [-1, 1])."""
  images = np.asarray(images)
  if images.ndim == 4:
    if images.shape[-1] != 1:
      raise ValueError(f"Attributes are measured on grey images [n, h, w, 1], got shape "
                       f"{images.shape}.")
    images = images[..., 0]
  if images.ndim != 3:
    raise ValueError(f"Attributes are measured on images [n, h, w] or [n, h, w, 1], got shape "
                     f"{images.shape}.")
  if np.issubdtype(images.dtype, np.integer):
    levels = images.astype(np.float64)
  else:
    unit = (np.clip(images.astype(np.float64), -1.0, 1.0) + 1.0) / 2.0
    levels = np.round(unit * (num_levels - 1))
  return levels / (num_levels - 1)


def _moments(ink: np.ndarray):
  """Ink mass [n], and the ink-weighted mean row, mean column [n] (0 where there is no ink)."""
  h, w = ink.shape[1:]
  rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                           indexing="ij")
  mass = ink.sum(axis=(1, 2))
  safe = np.where(mass > 0, mass, 1.0)
  mean_r = (ink * rows).sum(axis=(1, 2)) / safe
  mean_c = (ink * cols).sum(axis=(1, 2)) / safe
  dr = rows[None] - mean_r[:, None, None]  # [n, h, w]
  dc = cols[None] - mean_c[:, None, None]
  return safe, dr, dc


def thickness(ink: np.ndarray) -> np.ndarray:
  """Mean ink [n] over the pixels with ink >= INK_THRESHOLD (0 for an image with none)."""
  inked = ink >= INK_THRESHOLD
  count = inked.sum(axis=(1, 2))
  return np.where(count > 0, (ink * inked).sum(axis=(1, 2)) / np.maximum(count, 1), 0.0)


def width(ink: np.ndarray) -> np.ndarray:
  """Ink-weighted standard deviation [n] of the column coordinate, in pixels."""
  mass, _, dc = _moments(ink)
  return np.sqrt((ink * dc**2).sum(axis=(1, 2)) / mass)


def slant(ink: np.ndarray) -> np.ndarray:
  """-cov(column, row) / var(row) [n] under the ink weights (rows counted downwards): the
  negated slope dc/dr of the least-squares line through the ink, positive for a stroke leaning
  right ("/"), negative for one leaning left ("\\"); 0 where the ink has no vertical extent."""
  mass, dr, dc = _moments(ink)
  var_r = (ink * dr**2).sum(axis=(1, 2)) / mass
  cov = (ink * dr * dc).sum(axis=(1, 2)) / mass
  return np.where(var_r > 0, -cov / np.where(var_r > 0, var_r, 1.0), 0.0)


def measure(ink: np.ndarray) -> np.ndarray:
  """The attributes [n, 3] (thickness, width, slant; the order of `ATTRIBUTES`) of ink
  [n, h, w]."""
  return np.stack([thickness(ink), width(ink), slant(ink)], axis=-1)


def class_terciles(values: np.ndarray, labels: np.ndarray,
                   num_classes: int = NUM_CLASSES) -> np.ndarray:
  """Terciles [num_classes, attributes, 2] of `values` [n, attributes] over each class's
  examples (NumPy's linear quantiles at 1/3 and 2/3): how `THRESHOLDS` was computed."""
  labels = np.asarray(labels)
  out = np.zeros((num_classes, values.shape[1], 2))
  for c in range(num_classes):
    if not np.any(labels == c):
      raise ValueError(f"No example of class {c}: terciles need every class.")
    out[c] = np.quantile(values[labels == c], [1 / 3, 2 / 3], axis=0).T
  return out


def buckets(values: np.ndarray, labels: np.ndarray,
            thresholds: np.ndarray = THRESHOLDS) -> np.ndarray:
  """Buckets [n, attributes] int32 of `values` [n, attributes] under their class's
  `thresholds` [classes, attributes, 2]: 0 below the lower, 2 above the upper, else 1."""
  labels = np.asarray(labels).astype(np.int64)
  if labels.size and (labels.min() < 0 or labels.max() >= len(thresholds)):
    raise ValueError(f"Labels must lie in [0, {len(thresholds)}), got {labels.min()} .. "
                     f"{labels.max()}.")
  t = thresholds[labels]  # [n, attributes, 2]
  return (np.where(values < t[..., 0], 0, np.where(values > t[..., 1], 2, 1))).astype(np.int32)


def _word_index() -> dict[str, tuple[int, int]]:
  """word -> (attribute index, bucket)."""
  return {word: (a, 2 * i) for a, name in enumerate(ATTRIBUTES)
          for i, word in enumerate(WORDS[name])}


def caption(label: int, words: Sequence[str] = ()) -> str:
  """The caption of a digit with the given attribute words, in the order of `ATTRIBUTES`:
  caption(7, ["slanted", "thick"]) == "a thick, slanted seven".

  Raises:
    ValueError: a label outside 0..9, an unknown word (the message lists the known ones), or two
      words of one attribute ("thin" and "thick").
  """
  if not 0 <= int(label) < NUM_CLASSES:
    raise ValueError(f"A digit's label must be in 0 .. 9, got {label!r}.")
  if isinstance(words, str):
    raise ValueError(f"words must be a sequence of attribute words; write ({words!r},).")
  index = _word_index()
  chosen: dict[int, str] = {}
  for word in words:
    if word not in index:
      raise ValueError(f"Unknown attribute word {word!r}: use one of "
                       f"{', '.join(sorted(index))}.")
    attribute = index[word][0]
    if attribute in chosen:
      raise ValueError(f"Two words for the {ATTRIBUTES[attribute]}: {chosen[attribute]!r} and "
                       f"{word!r}; keep one.")
    chosen[attribute] = word
  adjectives = ", ".join(chosen[a] for a in sorted(chosen))
  phrase = f"{adjectives} {DIGIT_NAMES[int(label)]}" if adjectives else DIGIT_NAMES[int(label)]
  return ("an " if phrase.split()[0].rstrip(",") in AN_WORDS else "a ") + phrase


def caption_of_buckets(label: int, bucket_row: Sequence[int]) -> str:
  """The caption of a digit whose attributes fall in `bucket_row` [attributes] (0, 1, 2)."""
  words = [WORDS[name][b // 2] for name, b in zip(ATTRIBUTES, bucket_row) if b != 1]
  return caption(label, words)


def parse_caption(text: str) -> tuple[int, dict[str, int]]:
  """(label, {attribute: bucket} of the named attributes) of a caption such as
  "a thick, slanted seven" (commas optional): the inverse of `caption`. Unnamed attributes are
  absent from the dict (in a training caption they are bucket 1).

  Raises:
    ValueError: a text that is not "a"/"an", attribute words, then a digit's name; an unknown
      word (the message lists the known ones); or two words of one attribute.
  """
  parts = text.replace(",", " ").split()
  if len(parts) < 2 or parts[0] not in ("a", "an") or parts[-1] not in DIGIT_NAMES:
    raise ValueError(f"A digit caption is 'a' or 'an', attribute words, then a digit's name "
                     f"({', '.join(DIGIT_NAMES)}), e.g. 'a thick, slanted seven'; got {text!r}.")
  label = DIGIT_NAMES.index(parts[-1])
  caption(label, parts[1:-1])  # refuses unknown and repeated words
  index = _word_index()
  return label, {ATTRIBUTES[index[w][0]]: index[w][1] for w in parts[1:-1]}


def attributes_of_samples(images: np.ndarray, labels: np.ndarray,
                          num_levels: int = NUM_LEVELS) -> np.ndarray:
  """Buckets [n, attributes] of images (grey levels, or floats in [-1, 1] such as samples)
  under the thresholds of `labels` [n] (the classes they were drawn for)."""
  return buckets(measure(ink_of(images, num_levels)), labels)


def captions_of(images: np.ndarray, labels: np.ndarray,
                num_levels: int = NUM_LEVELS) -> list[str]:
  """The caption of each image [n, h, w(, 1)] with its label [n]."""
  return [caption_of_buckets(int(y), row)
          for y, row in zip(np.asarray(labels), attributes_of_samples(images, labels,
                                                                       num_levels))]


def caption_tokens(images: np.ndarray, labels: np.ndarray, num_levels: int = NUM_LEVELS,
                   max_len: int = CAPTION_LEN) -> np.ndarray:
  """Byte token ids [n, max_len] int32 of the captions (`gen_jax.conditioning.encode_text`)."""
  return encode_text(captions_of(images, labels, num_levels), max_len, what="captions")


def held_out(images: np.ndarray, labels: np.ndarray, num_levels: int = NUM_LEVELS,
             combinations: Sequence[tuple[str, int]] = HELD_OUT) -> np.ndarray:
  """Whether each image [n] is an example of one of `combinations` ((word, class) pairs, e.g.
  ("thick", 7): every seven in the upper third of thickness, whatever its other attributes)."""
  labels = np.asarray(labels)
  found = attributes_of_samples(images, labels, num_levels)
  index = _word_index()
  out = np.zeros(len(labels), bool)
  for word, label in combinations:
    if word not in index:
      raise ValueError(f"Unknown attribute word {word!r} in a held-out combination: use one of "
                       f"{', '.join(sorted(index))}.")
    attribute, bucket = index[word]
    out |= (labels == label) & (found[:, attribute] == bucket)
  return out


def matches(images: np.ndarray, prompts: Sequence[str], num_levels: int = NUM_LEVELS
            ) -> Mapping[str, np.ndarray]:
  """How samples [n, ...] drawn for `prompts` [n] match each prompt's named attributes:
  `attribute_match` float [n] (the fraction of the prompt's named attributes whose bucket the
  sample has, under the prompt's class's thresholds; NaN for a prompt that names none),
  `labels` [n] (the prompt's class) and `buckets` [n, attributes] (the sample's)."""
  parsed = [parse_caption(p) for p in prompts]
  labels = np.array([label for label, _ in parsed])
  found = attributes_of_samples(images, labels, num_levels)
  rates = np.full(len(parsed), np.nan)
  for i, (_, named) in enumerate(parsed):
    if named:
      rates[i] = np.mean([found[i, ATTRIBUTES.index(a)] == b for a, b in named.items()])
  return {"attribute_match": rates, "labels": labels, "buckets": found}
