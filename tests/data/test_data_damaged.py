"""Damaged prepared datasets: one message naming the file and the fix, or a rebuild.

Each test copies a dataset prepared once per module into its own folder and damages the copy.
The oracle for a rebuilt bundled dataset is the undamaged copy: the same batches, bit for bit.
"""

import logging
import pathlib
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from gen_jax import data

DIGITS_DIR = pathlib.Path("digits", "1.0.0")
DIGITS_TRAIN = "digits-train.array_record-00000-of-00001"
JSON_FILES = ("dataset_info.json", "features.json", "metadata.json")
KINDS = ("truncated", "flipped", "empty", "deleted")


class DamageExamples(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A stand-in for a downloaded dataset: example i has id i; prepared, never built by gen_jax.

  Like mnist loaded with its version, it is read back from its folder alone (a ReadOnlyBuilder).
  """

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({"id": tfds.features.Tensor(shape=(),
                                                                         dtype=np.int64)}),
        metadata=tfds.core.MetadataDict(note="stand-in"),
        disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(0, 3000), "test": self._generate_examples(0, 10)}

  def _generate_examples(self, start, stop):
    for i in range(start, stop):
      yield i, {"id": i}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> pathlib.Path:
  """A data dir holding digits, python_source/tiny and the stand-in, prepared once."""
  root = tmp_path_factory.mktemp("pristine")
  data.info("digits", str(root))
  data.info("python_source/tiny", str(root))
  DamageExamples(data_dir=str(root), file_format="array_record").download_and_prepare()
  return root


@pytest.fixture
def root(pristine, tmp_path) -> pathlib.Path:
  copy = tmp_path / "data"
  shutil.copytree(pristine, copy)
  return copy


def _damage(path: pathlib.Path, kind: str) -> None:
  content = path.read_bytes()
  if kind == "truncated":
    path.write_bytes(content[:len(content) // 2])
  elif kind == "flipped":  # one byte inverted: invalid UTF-8 in JSON, a bad hash in records
    flipped = bytearray(content)
    flipped[len(content) // 3] ^= 0xFF
    path.write_bytes(bytes(flipped))
  elif kind == "empty":
    path.write_bytes(b"")
  else:
    path.unlink()


def _all(name, split, root, **kw):
  it = data.load(name, split, 100, 0, data_dir=str(root), shuffle=False, num_epochs=1,
                 drop_remainder=False, process_index=0, process_count=1, **kw)
  return list(it)


def _assert_same(got, want):
  assert len(got) == len(want)
  for g, w in zip(got, want):
    assert g.keys() == w.keys()
    for k in g:
      np.testing.assert_array_equal(g[k], w[k], err_msg=k)


def _rebuild_logs(caplog):
  return [r.getMessage() for r in caplog.records
          if r.name == "gen_jax.data.integrity" and r.levelno == logging.WARNING]


# --- Bundled datasets are built again --------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("file", (DIGITS_TRAIN,) + JSON_FILES)
def test_a_damaged_bundled_dataset_is_rebuilt(pristine, root, caplog, file, kind):
  path = root / DIGITS_DIR / file
  _damage(path, kind)
  with caplog.at_level(logging.WARNING):
    got = _all("digits", "train", root)
  _assert_same(got, _all("digits", "train", pristine))
  logs = _rebuild_logs(caplog)
  assert len(logs) == 1 and str(path) in logs[0]
  assert f"gen_jax deletes {root / DIGITS_DIR} and builds it again" in logs[0]
  assert path.stat().st_size > 0
  if path.suffix != ".json":  # the JSON files record where and when they were written
    assert path.read_bytes() == (pristine / DIGITS_DIR / file).read_bytes()


@pytest.mark.parametrize("file, content", [
    ("dataset_info.json", "null"), ("dataset_info.json", "{}"), ("features.json", "{}"),
    ("features.json", "[]"), ("metadata.json", "[1, 2]")])
def test_json_of_the_wrong_shape_is_damage(pristine, root, caplog, file, content):
  path = root / DIGITS_DIR / file
  path.write_text(content)
  with caplog.at_level(logging.WARNING):
    got = _all("digits", "test", root)
  _assert_same(got, _all("digits", "test", pristine))
  assert str(path) in _rebuild_logs(caplog)[0]


def test_a_record_file_of_another_split_is_damage(pristine, root, caplog):
  folder = root / DIGITS_DIR
  shutil.copy(folder / "digits-test.array_record-00000-of-00001", folder / DIGITS_TRAIN)
  with caplog.at_level(logging.WARNING):
    got = _all("digits", "train", root)
  _assert_same(got, _all("digits", "train", pristine))
  assert (f"{folder / DIGITS_TRAIN} holds 360 records where dataset_info.json says 1437"
          in _rebuild_logs(caplog)[0])


def test_a_bundled_folder_without_files_is_rebuilt_by_info(root, caplog):
  for path in (root / DIGITS_DIR).iterdir():
    path.unlink()
  with caplog.at_level(logging.WARNING):
    info = data.info("digits", str(root))
  assert info.splits == {"train": 1437, "test": 360} and info.num_levels == 17
  assert "dataset_info.json is missing" in _rebuild_logs(caplog)[0]


def test_a_damaged_byte_stream_is_rebuilt(pristine, root, caplog):
  folder = root / "python_source" / "tiny" / "1.0.0"
  path = folder / "python_source-train.array_record-00000-of-00001"
  _damage(path, "flipped")
  kw = dict(seq_len=64)
  with caplog.at_level(logging.WARNING):
    got = _all("python_source/tiny", "train", root, **kw)
  _assert_same(got, _all("python_source/tiny", "train", pristine, **kw))
  assert str(path) in _rebuild_logs(caplog)[0]


def test_a_corrupt_record_read_mid_run_names_the_file(root):
  path = root / DIGITS_DIR / DIGITS_TRAIN
  _damage(path, "flipped")  # inside the data: found only when its records are read
  it = data.load("digits", "train", 100, 0, data_dir=str(root), shuffle=False, num_epochs=1,
                 process_index=0, process_count=1, in_memory=False)
  with pytest.raises(data.DatasetDamagedError) as error:
    for _ in it:
      pass
  message = str(error.value)
  assert message.startswith(f"Dataset 'digits' is damaged: {path} is corrupt")
  assert f"Delete the folder {root / DIGITS_DIR}: gen_jax builds it again locally" in message
  assert error.value.path == path and path.exists()  # nothing is deleted mid-run


# --- Downloaded datasets: the message says what to delete and how to prepare ------------------


def _stand_in_file(root: pathlib.Path, file: str) -> pathlib.Path:
  folder = root / "damage_examples" / "1.0.0"
  return folder / (file if file != "records" else
                   "damage_examples-train.array_record-00000-of-00001")


@pytest.mark.parametrize("file, kind", [
    (file, kind) for file in ("records",) + JSON_FILES for kind in KINDS
    # Read back from its folder alone, nothing tells that a metadata.json was ever written.
    if (file, kind) != ("metadata.json", "deleted")])
def test_a_damaged_downloaded_dataset_names_the_file_and_the_fix(root, file, kind):
  path = _stand_in_file(root, file)
  _damage(path, kind)
  with pytest.raises(data.DatasetDamagedError) as error:
    _all("damage_examples", "train", root)
  message = str(error.value)
  assert message.startswith(f"Dataset 'damage_examples' is damaged: {path} ")
  assert f"Delete the folder {path.parent} and prepare the dataset again" in message
  assert "tfds build damage_examples --file_format=array_record --data_dir DIR" in message
  assert error.value.path == path and path.parent.exists()
  assert isinstance(error.value, data.DatasetNotPreparedError)  # callers handle both alike


def test_a_downloaded_record_file_of_another_split_is_damage(root):
  path = _stand_in_file(root, "records")
  shutil.copy(path.parent / "damage_examples-test.array_record-00000-of-00001", path)
  with pytest.raises(data.DatasetDamagedError,
                     match=f"{path} holds 10 records where dataset_info.json says 3000"):
    _all("damage_examples", "train", root)


def test_a_downloaded_record_read_mid_run_names_the_file(root):
  path = _stand_in_file(root, "records")
  _damage(path, "flipped")
  it = data.load("damage_examples", "train", 100, 0, data_dir=str(root), shuffle=False,
                 num_epochs=1, process_index=0, process_count=1, in_memory=False)
  with pytest.raises(data.DatasetDamagedError, match="Delete the folder") as error:
    for _ in it:
      pass
  assert error.value.path == path


def test_the_stand_in_loads_when_undamaged(root):
  ids = np.concatenate([b["id"][b["valid"]] for b in _all("damage_examples", "train", root)])
  np.testing.assert_array_equal(ids, np.arange(3000))
  assert data.info("damage_examples", str(root)).metadata == {"note": "stand-in"}


# --- What a build prints ----------------------------------------------------------------------


def test_a_bundled_build_says_it_is_local(tmp_path, capfd, caplog):
  with caplog.at_level(logging.INFO, logger="gen_jax.data.builders"):
    data.info("digits", str(tmp_path))
  out, err = capfd.readouterr()
  assert "Downloading" not in out + err and "downloaded" not in out + err
  messages = [r.getMessage() for r in caplog.records if r.name == "gen_jax.data.builders"]
  assert (f"Building gen_jax dataset digits locally into {tmp_path / DIGITS_DIR} (nothing is "
          "downloaded).") in messages
