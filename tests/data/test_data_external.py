"""Datasets that need a download: prepared ones load, unprepared ones fail fast, offline."""

import json
import pathlib
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from gen_jax import data
from gen_jax.data import pipeline


class CountingExamples(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A throwaway dataset: example i has id i, a constant image and a string."""

  VERSION = tfds.core.Version("1.2.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Tensor(shape=(), dtype=np.int64),
            "image": tfds.features.Tensor(shape=(4, 4, 3), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=5),
            "name": tfds.features.Text(),
        }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(0, 50), "test": self._generate_examples(50, 57)}

  def _generate_examples(self, start, stop):
    for i in range(start, stop):
      image = np.full((4, 4, 3), i % 256, np.uint8)
      yield f"key{i}", {"id": i, "image": image, "label": i % 5, "name": f"example {i}"}


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory) -> str:
  root = str(tmp_path_factory.mktemp("prepared"))
  CountingExamples(data_dir=root, file_format="array_record").download_and_prepare()
  return root


def _ids(it) -> list[int]:
  return [int(i) for b in it for i in b["id"][b.get("valid", np.ones(len(b["id"]), bool))]]


def test_a_prepared_dataset_loads_by_name(prepared_dir):
  it = data.load("counting_examples", "train", 8, 0, data_dir=prepared_dir, num_epochs=1,
                 drop_remainder=False, process_index=0, process_count=1)
  batches = list(it)
  assert set(batches[0]) == {"id", "image", "label", "valid"}  # the string is left out
  assert batches[0]["id"].dtype == np.int32 and batches[0]["image"].dtype == np.uint8
  assert sorted(_ids(batches)) == list(range(50))
  for b in batches:
    np.testing.assert_array_equal(b["image"][b["valid"]][:, 0, 0, 0], b["id"][b["valid"]])
    np.testing.assert_array_equal(b["label"][b["valid"]], b["id"][b["valid"]] % 5)
  info = data.info("counting_examples", prepared_dir)
  assert info.splits == {"train": 50, "test": 7}
  assert info.num_classes == 5 and info.num_levels == 256
  assert set(info.element_spec) == {"id", "image", "label"}


@pytest.mark.parametrize("drop_remainder", [True, False])
def test_processes_of_a_prepared_dataset_read_blocks_of_the_global_batches(prepared_dir,
                                                                           drop_remainder):
  # Oracle: one process reading the global batches of 6; process p of 3 reads rows 2p, 2p + 1.
  load = lambda p, count, batch: list(data.load(
      "counting_examples", "train", batch, 3, data_dir=prepared_dir, num_epochs=1,
      drop_remainder=drop_remainder, process_index=p, process_count=count, in_memory=False))
  whole = load(0, 1, 6)
  shares = [load(p, 3, 6) for p in range(3)]
  assert len(whole) == (8 if drop_remainder else 9)  # 50 examples: 50 // 6 or ceil(50 / 6)
  for step, batch in enumerate(whole):
    np.testing.assert_array_equal(
        np.concatenate([share[step]["id"] for share in shares]), batch["id"])
  ids = np.concatenate([b["id"][b["valid"]] if "valid" in b else b["id"] for b in whole])
  assert sorted(ids) == list(range(50)) if not drop_remainder else len(set(ids)) == 48


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "celeb_a",
                                  "tiny_shakespeare", "mnist:3.0.1"])
def test_unprepared_datasets_fail_fast_with_instructions(tmp_path, name):
  start = time.perf_counter()
  with pytest.raises(data.DatasetNotPreparedError) as error:
    data.load(name, "train", 8, 0, data_dir=str(tmp_path), process_count=1, process_index=0)
  assert time.perf_counter() - start < 3
  message = str(error.value)
  assert "pip install '.[tf]'" in message
  assert f"tfds build {name} --file_format=array_record --data_dir DIR" in message
  assert "GEN_JAX_DATA_DIR" in message and str(tmp_path) in message
  assert not any(tmp_path.iterdir())  # nothing was written


def test_the_data_dir_comes_from_the_environment(tmp_path, monkeypatch):
  monkeypatch.setenv("GEN_JAX_DATA_DIR", str(tmp_path / "from_env"))
  with pytest.raises(data.DatasetNotPreparedError, match="from_env"):
    data.info("mnist")
  assert pipeline.resolve_data_dir() == str(tmp_path / "from_env")
  assert pipeline.resolve_data_dir("/elsewhere") == "/elsewhere"


def test_a_tfrecord_preparation_is_refused(tmp_path):
  version_dir = tmp_path / "mnist" / "3.0.1"
  version_dir.mkdir(parents=True)
  (version_dir / "dataset_info.json").write_text(json.dumps({"name": "mnist"}))
  with pytest.raises(data.DatasetNotPreparedError, match="without ArrayRecord"):
    data.load("mnist", "train", 8, 0, data_dir=str(tmp_path), process_count=1)


def test_unknown_names_list_the_bundled_datasets(tmp_path):
  with pytest.raises(ValueError, match=r"digits, toy2d/\{ring8,grid25,swiss_roll,two_moons\}, "
                                       r"python_source"):
    data.load("no_such_dataset", "train", 8, 0, data_dir=str(tmp_path), process_count=1)


def _fake_prepared(root: pathlib.Path, name: str, version: str) -> None:
  """What `tfds build --file_format=array_record` leaves, as far as `load` checks it."""
  version_dir = root / name / version
  version_dir.mkdir(parents=True)
  (version_dir / "dataset_info.json").write_text(json.dumps({"fileFormat": "array_record"}))


def test_mnist_through_tfds_mock_data(tmp_path):
  _fake_prepared(tmp_path, "mnist", "3.0.1")
  rng = np.random.default_rng(0)
  examples = [{"image": rng.integers(0, 256, (28, 28, 1), dtype=np.uint8),
               "label": np.int64(i % 10)} for i in range(20)]
  # mock_data's default source breaks `__getitems__` in tfds 4.9.10 (a MagicMock attribute
  # called without `self`), so the examples come from `as_data_source_fn`.
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                              as_data_source_fn=lambda *args, **kwargs: examples):
    it = data.load("mnist", "train", 8, 0, data_dir=str(tmp_path), shuffle=False,
                   num_epochs=1, drop_remainder=False, process_count=1, process_index=0,
                   preprocess=("scale_to_unit",))
    batches = list(it)
    info = data.info("mnist", str(tmp_path))
  assert len(batches) == 3 and [b["valid"].sum() for b in batches] == [8, 8, 4]
  assert batches[0]["image"].shape == (8, 28, 28, 1)
  want = np.stack([e["image"] for e in examples[:8]]) / np.float32(127.5) - 1
  np.testing.assert_allclose(batches[0]["image"], want, atol=1e-6)
  assert batches[2]["label"].dtype == np.int32
  np.testing.assert_array_equal(batches[2]["label"], [6, 7, 8, 9, 0, 0, 0, 0])
  assert info.num_classes == 10 and info.num_levels == 256


def test_tiny_shakespeare_is_a_byte_stream(tmp_path):
  _fake_prepared(tmp_path, "tiny_shakespeare", "1.0.0")
  text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 3
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                              as_data_source_fn=lambda *a, **k: [{"text": text.encode()}]):
    batches = list(data.load("tiny_shakespeare", "test", 4, 0, data_dir=str(tmp_path),
                             seq_len=16, shuffle=False, num_epochs=1, drop_remainder=False,
                             process_count=1))
    info = data.info("tiny_shakespeare", str(tmp_path), seq_len=16)
  tokens = np.concatenate([b["tokens"] for b in batches])
  mask = np.concatenate([b["mask"] for b in batches])
  assert tokens[mask > 0].astype(np.uint8).tobytes() == text.encode()
  assert info.vocab_size == 256 and info.element_spec["tokens"].shape == (16,)
