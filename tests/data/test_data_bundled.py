"""Bundled datasets, prepared offline into a temporary directory, and the pipeline over them."""

import hashlib
import json
import pathlib
import sys
import sysconfig

import numpy as np
import pytest
import sklearn.datasets
import sklearn.model_selection

from gen_jax import data
from gen_jax.data import builders
from gen_jax.data import pipeline
from gen_jax.data import toy2d

SKIPPED = {"test", "tests", "idlelib", "site-packages"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
  return str(tmp_path_factory.mktemp("tfds"))


def _load(name, split, batch_size, data_dir, **kw):
  return data.load(name, split, batch_size, kw.pop("seed", 0), data_dir=data_dir,
                   process_index=kw.pop("process_index", 0),
                   process_count=kw.pop("process_count", 1), **kw)


def _eval(name, split, batch_size, data_dir, **kw):
  return _load(name, split, batch_size, data_dir, shuffle=False, num_epochs=1,
               drop_remainder=False, **kw)


def _assert_batches_equal(got, want):
  assert len(got) == len(want)
  for g, w in zip(got, want):
    assert g.keys() == w.keys()
    for k in g:
      np.testing.assert_array_equal(g[k], w[k], err_msg=k)


def _digits_oracle(split):
  digits = sklearn.datasets.load_digits()
  train, test = sklearn.model_selection.train_test_split(
      np.arange(1797), test_size=0.2, random_state=0)
  index = {"train": train, "test": test}[split]
  return digits.images[index], digits.target[index]


# --- digits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("split, size", [("train", 1437), ("test", 360)])
def test_digits_equal_sklearn_at_the_split_indices(data_dir, split, size):
  batches = list(_eval("digits", split, 100, data_dir))
  valid = np.concatenate([b["valid"] for b in batches])
  images = np.concatenate([b["image"] for b in batches])[valid]
  labels = np.concatenate([b["label"] for b in batches])[valid]
  want_images, want_labels = _digits_oracle(split)
  assert valid.sum() == size and not valid[size:].any()
  assert images.dtype == np.uint8 and images.shape == (size, 8, 8, 1)
  assert labels.dtype == np.int32
  assert images.min() == 0 and images.max() == 16
  np.testing.assert_array_equal(images[..., 0], want_images)
  np.testing.assert_array_equal(labels, want_labels)


def test_digits_info(data_dir):
  info = data.info("digits", data_dir)
  assert info.splits == {"train": 1437, "test": 360}
  assert info.num_levels == 17 and info.num_classes == 10 and info.vocab_size is None
  assert info.element_spec["image"].shape == (8, 8, 1)
  assert info.element_spec["image"].dtype == np.uint8


def test_digits_shards_are_disjoint_and_complete(data_dir):
  want_images, _ = _digits_oracle("train")
  rows = []
  for p in range(2):
    it = _load("digits", "train", 64, data_dir, num_epochs=1, drop_remainder=False, seed=7,
               process_index=p, process_count=2)
    batches = list(it)
    assert all(b["image"].shape[0] == 32 for b in batches)
    rows.append(np.concatenate([b["image"][b["valid"]] for b in batches]))
  # 1,437 examples in global batches of 64: 22 whole ones and 29 rows, all in process 0's half.
  assert len(rows[0]) == 22 * 32 + 29 and len(rows[1]) == 22 * 32
  together = np.concatenate(rows)[..., 0].reshape(1437, -1)
  # Same multiset of examples as the split: sort rows of both lexicographically.
  np.testing.assert_array_equal(_sorted_rows(together),
                                _sorted_rows(want_images.reshape(1437, -1)))
  # Without shuffling, process p of 2 holds rows 32p .. 32p + 31 of each global batch of 64.
  first = next(_load("digits", "train", 64, data_dir, shuffle=False, process_index=1,
                     process_count=2))
  np.testing.assert_array_equal(first["image"][..., 0], want_images[32:64])


def _sorted_rows(a: np.ndarray) -> np.ndarray:
  return a[np.lexsort(a.T[::-1])]


def test_digits_state_restores_the_following_batches(data_dir):
  it = _load("digits", "train", 128, data_dir, seed=11)
  for _ in range(9):
    next(it)
  state = json.loads(json.dumps(it.get_state()))
  following = [next(it) for _ in range(4)]  # crosses the end of the first epoch (11 batches)
  restored = _load("digits", "train", 128, data_dir, seed=11)
  restored.set_state(state)
  _assert_batches_equal([next(restored) for _ in range(4)], following)
  other = _load("digits", "train", 128, data_dir, seed=12)
  with pytest.raises(ValueError, match="seed"):
    other.set_state(state)


@pytest.mark.parametrize("kw", [
    dict(preprocess=("scale_to_unit", "one_hot_labels")),  # deterministic: one vectorised read
    dict(preprocess=("scale_to_unit", "dequantize")),  # random: preprocessed step by step
    dict(num_epochs=2, shuffle=False, drop_remainder=False),  # padding and `valid`
])
def test_next_batches_equals_that_many_nexts(data_dir, kw):
  # Batches 9..13 of 128 cross the end of the first epoch (1,437 examples: 11 batches).
  one, many = (_load("digits", "train", 128, data_dir, seed=5, **kw) for _ in range(2))
  for _ in range(9):
    next(one)
  many.set_state({**many.get_state(), "step": 9})
  want = [next(one) for _ in range(5)]
  got = many.next_batches(5)
  assert many.get_state() == one.get_state()
  assert set(got) == set(want[0])
  for key in got:
    np.testing.assert_array_equal(got[key], np.stack([w[key] for w in want]))


def test_next_batches_stops_at_the_end(data_dir):
  it = _load("digits", "test", 100, data_dir, num_epochs=1, shuffle=False)
  it.next_batches(it.num_batches - 1)
  with pytest.raises(StopIteration):
    it.next_batches(2)
  assert it.next_batches(1)["image"].shape[:2] == (1, 100)


def test_digits_seed_fixes_the_order(data_dir):
  a = next(_load("digits", "train", 32, data_dir, seed=1))["label"]
  b = next(_load("digits", "train", 32, data_dir, seed=1))["label"]
  c = next(_load("digits", "train", 32, data_dir, seed=2))["label"]
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_in_memory_and_file_reads_agree(data_dir):
  kw = dict(seed=5, num_epochs=2, drop_remainder=False)
  from_memory = list(_load("digits", "test", 128, data_dir, in_memory=True, **kw))
  from_files = list(_load("digits", "test", 128, data_dir, in_memory=False, **kw))
  assert len(from_memory) == 6  # ceil(720 / 128)
  _assert_batches_equal(from_files, from_memory)


def test_preprocess_scales_dequantizes_and_one_hots(data_dir):
  raw = next(_load("digits", "train", 64, data_dir))
  steps = ("scale_to_unit", "dequantize", "one_hot_labels")
  scaled = next(_load("digits", "train", 64, data_dir, preprocess=steps[:1]))
  np.testing.assert_array_equal(scaled["image"], raw["image"] / np.float32(8) - 1)
  assert scaled["image"].dtype == np.float32
  it = _load("digits", "train", 64, data_dir, preprocess=steps)
  first, second = next(it), next(it)
  np.testing.assert_array_less(np.abs(first["image"] - scaled["image"]), 1 / 16 + 1e-6)
  assert np.abs(first["image"] - scaled["image"]).max() > 0.9 / 16
  np.testing.assert_array_equal(first["label"].argmax(1), raw["label"])
  assert first["label"].shape == (64, 10) and first["label"].sum() == 64
  again = next(_load("digits", "train", 64, data_dir, preprocess=steps))
  np.testing.assert_array_equal(again["image"], first["image"])
  assert not np.allclose(_digits_noise(first)[:8], _digits_noise(second)[:8])


def _digits_noise(batch):
  """Dequantization noise: the distance to the nearest of the 17 scaled levels."""
  return batch["image"] - (np.round((batch["image"] + 1) * 8) / 8 - 1)


def test_unknown_preprocess_lists_the_valid_names(data_dir):
  with pytest.raises(ValueError, match="scale_to_unit, dequantize, one_hot_labels"):
    _load("digits", "train", 8, data_dir, preprocess=("scale_to_unit", "normalise"))
  with pytest.raises(ValueError, match=r"write \('scale_to_unit',\)"):
    _load("digits", "train", 8, data_dir, preprocess="scale_to_unit")
  with pytest.raises(ValueError, match="list 'scale_to_unit' before 'dequantize'"):
    next(_load("digits", "train", 8, data_dir, preprocess=("dequantize",)))


def test_bad_arguments_are_refused(data_dir):
  with pytest.raises(ValueError, match="multiple of process_count"):
    _load("digits", "train", 10, data_dir, process_count=4)
  with pytest.raises(ValueError, match="seq_len is only for byte-stream"):
    _load("digits", "train", 8, data_dir, seq_len=16)
  with pytest.raises(ValueError, match="eval_stride is only for byte-stream"):
    _eval("digits", "test", 8, data_dir, eval_stride=16)
  with pytest.raises(ValueError, match="eval_stride 3 must be in 1..seq_len-1"):
    _eval("python_source/tiny", "test", 8, data_dir, seq_len=3, eval_stride=3)
  with pytest.raises(ValueError, match="for evaluation windows only"):
    _load("python_source/tiny", "train", 8, data_dir, seq_len=9, eval_stride=4)
  with pytest.raises(ValueError, match="Unknown split"):
    _load("digits", "validation", 8, data_dir)
  with pytest.raises(ValueError, match="ring8, grid25, swiss_roll, two_moons"):
    _load("toy2d/ring9", "train", 8, data_dir)


def test_processes_default_to_jax(data_dir):
  batch = next(data.load("digits", "train", 8, 0, data_dir=data_dir))
  assert batch["image"].shape == (8, 8, 8, 1)  # jax.process_count() == 1 here


def test_bundled_names_match_the_builders():
  assert set(data.BUNDLED) == set(builders.BUILDERS)


# --- toy2d (prepared) -----------------------------------------------------------------------


def test_toy2d_prepared_split_is_the_documented_sample(data_dir):
  batches = list(_eval("toy2d/ring8", "test", 4096, data_dir))
  valid = np.concatenate([b["valid"] for b in batches])
  points = np.concatenate([b["point"] for b in batches])[valid]
  mode = np.concatenate([b["mode"] for b in batches])[valid]
  rng = np.random.default_rng([builders.Toy2d.PREPARED_SEED, toy2d.NAMES.index("ring8"), 1])
  want_points, want_mode = toy2d.sample("ring8", rng, 10_000)
  np.testing.assert_array_equal(points, want_points)
  np.testing.assert_array_equal(mode, want_mode)
  info = data.info("toy2d/ring8", data_dir)
  assert info.splits == {"train": 100_000, "test": 10_000} and info.num_classes == 8
  np.testing.assert_array_equal(info.mixture.means, toy2d.distribution("ring8").means)


# --- python_source --------------------------------------------------------------------------


def _stdlib_split(max_files: int | None = None) -> dict[str, list[pathlib.Path]]:
  """Oracle written from the issue's rule, independently of gen_jax.data.corpus."""
  root = pathlib.Path(sysconfig.get_paths()["stdlib"])
  files = sorted((p for p in root.rglob("*.py")
                  if not SKIPPED & set(p.relative_to(root).parts[:-1])),
                 key=lambda p: p.relative_to(root).as_posix())[:max_files]
  return {"train": [f for i, f in enumerate(files) if i % 20 != 19],
          "test": [f for i, f in enumerate(files) if i % 20 == 19]}


def _split_bytes(split: str, max_files: int | None = None) -> bytes:
  return b"".join(f.read_bytes() for f in _stdlib_split(max_files)[split])


def test_python_source_counts_and_hashes(data_dir):
  meta = data.info("python_source", data_dir).metadata
  split = _stdlib_split()
  num_bytes = {s: sum(f.stat().st_size for f in fs) for s, fs in split.items()}
  assert meta["num_files"] == {s: len(fs) for s, fs in split.items()}
  assert meta["num_bytes"] == num_bytes
  assert meta["sha256"]["test"] == hashlib.sha256(_split_bytes("test")).hexdigest()
  assert meta["python_version"] == ".".join(map(str, sys.version_info[:3]))
  if sys.version_info[:3] == (3, 11, 7) and sys.platform == "linux":
    assert len(split["train"]) + len(split["test"]) == 674
    assert num_bytes == {"train": 10_844_301, "test": 509_861}


def test_python_source_is_identical_across_builds(data_dir, tmp_path):
  first = data.info("python_source", data_dir).metadata
  second = data.info("python_source", str(tmp_path)).metadata
  assert first["sha256"] == second["sha256"] and first["num_bytes"] == second["num_bytes"]
  kw = dict(seq_len=64, seed=3)
  _assert_batches_equal([next(_load("python_source", "train", 8, str(tmp_path), **kw))],
                        [next(_load("python_source", "train", 8, data_dir, **kw))])


@pytest.mark.parametrize("config, max_files, seq_len, batch_size, stride",
                         [("full", None, 256, 16, 0), ("tiny", 60, 2, 5, 0),
                          ("tiny", 60, 100, 3, 0), ("full", None, 256, 16, 128),
                          ("tiny", 60, 100, 3, 37), ("tiny", 60, 7, 4, 1)])
def test_eval_windows_score_every_held_out_byte_once(data_dir, config, max_files, seq_len,
                                                     batch_size, stride):
  held_out = _split_bytes("test", max_files)
  name = f"python_source/{config}"
  batches = list(_eval(name, "test", batch_size, data_dir, seq_len=seq_len, eval_stride=stride))
  tokens = np.concatenate([b["tokens"] for b in batches])
  mask = np.concatenate([b["mask"] for b in batches])
  valid = np.concatenate([b["valid"] for b in batches])
  assert tokens.shape[1] == seq_len and tokens.dtype == np.int32 and mask.dtype == np.float32
  assert not mask[:, 0].any() and not mask[~valid].any()
  assert mask.sum() == len(held_out)
  # Read in order, the masked targets are the held-out bytes: each exactly once.
  assert tokens[mask > 0].astype(np.uint8).tobytes() == held_out
  # Each target's context is the bytes before it: window j + 1 starts `stride` bytes after
  # window j (one shared byte by default), and after window 0 the first seq_len - stride
  # positions are context only.
  s = stride or seq_len - 1
  both = valid[1:] & valid[:-1]
  np.testing.assert_array_equal(tokens[1:, :seq_len - s][both], tokens[:-1, s:][both])
  assert not mask[1:, :seq_len - s].any()
  assert tokens[0, 0] == ord("\n")


def _rows(batches, key):
  return np.concatenate([b[key] for b in batches])


def test_eval_windows_split_between_processes(data_dir):
  single = list(_eval("python_source/tiny", "test", 8, data_dir, seq_len=32))
  shards = [list(_eval("python_source/tiny", "test", 8, data_dir, seq_len=32,
                       process_index=p, process_count=2)) for p in range(2)]
  # Each global batch of 8 windows is process 0's 4 rows, then process 1's.
  assert len(shards[0]) == len(shards[1]) == len(single)
  for key in ("tokens", "mask", "valid"):
    together = [np.concatenate([a[key], b[key]]) for a, b in zip(*shards)]
    np.testing.assert_array_equal(np.concatenate(together), _rows(single, key))


def test_training_windows_are_whole_substrings(data_dir):
  stream = b"\n" + _split_bytes("train", 60)
  it = _load("python_source/tiny", "train", 16, data_dir, seq_len=128, seed=9)
  batch = next(it)
  assert batch.keys() == {"tokens", "mask"}
  np.testing.assert_array_equal(batch["mask"][:, 0], 0)
  np.testing.assert_array_equal(batch["mask"][:, 1:], 1)
  starts = {stream.find(row.astype(np.uint8).tobytes()) for row in batch["tokens"]}
  assert -1 not in starts and len(starts) == 16
  assert len({s % 127 for s in starts}) == 1  # one offset per epoch, stride seq_len - 1
  state = it.get_state()
  following = [next(it) for _ in range(3)]
  restored = _load("python_source/tiny", "train", 16, data_dir, seq_len=128, seed=9)
  restored.set_state(state)
  _assert_batches_equal([next(restored) for _ in range(3)], following)


def test_python_source_element_spec(data_dir):
  info = data.info("python_source/tiny", data_dir, seq_len=64)
  assert info.vocab_size == 256
  assert info.element_spec["tokens"].shape == (64,)
  assert info.element_spec["mask"].dtype == np.float32
  assert pipeline.DEFAULT_SEQ_LEN == data.info("python_source/tiny", data_dir).element_spec[
      "tokens"].shape[0]
