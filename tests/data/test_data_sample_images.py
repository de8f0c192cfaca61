"""The bundled `sample_images`: scikit-learn's two photographs, built offline into a temp dir."""

import numpy as np
import PIL.Image
import pytest
import sklearn.datasets

from gen_jax import data

SIZES = (64, 128, 256)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
  return str(tmp_path_factory.mktemp("tfds"))


def _all(name, data_dir, **kw):
  """The whole train split in stored order, as one batch of 2."""
  return next(data.load(name, "train", 2, 0, shuffle=False, num_epochs=1, data_dir=data_dir,
                        process_index=0, process_count=1, **kw))


def _oracle(file: str, size: int) -> np.ndarray:
  """The photograph's centred 427x427 square (columns 106..532), LANCZOS-resized to `size`."""
  photo = sklearn.datasets.load_sample_image(file)
  assert photo.shape == (427, 640, 3) and photo.dtype == np.uint8
  square = photo[:, 106:106 + 427]
  return np.asarray(PIL.Image.fromarray(square).resize((size, size), PIL.Image.LANCZOS))


@pytest.mark.parametrize("size", SIZES)
def test_each_config_holds_the_two_photographs(data_dir, size):
  batch = _all(f"sample_images/{size}", data_dir)
  assert batch.keys() == {"image", "label"}
  assert batch["image"].shape == (2, size, size, 3) and batch["image"].dtype == np.uint8
  assert batch["label"].dtype == np.int32
  np.testing.assert_array_equal(batch["label"], [0, 1])
  assert not np.array_equal(batch["image"][0], batch["image"][1])
  info = data.info(f"sample_images/{size}", data_dir)
  assert info.name == f"sample_images/{size}" and info.splits == {"train": 2}
  assert info.num_levels == 256 and info.num_classes == 2 and info.vocab_size is None
  assert info.metadata["class_names"] == ["china", "flower"]
  assert info.element_spec["image"].shape == (size, size, 3)
  assert info.element_spec["image"].dtype == np.uint8


def test_images_are_the_centre_crops_resized_with_lanczos(data_dir):
  batch = _all("sample_images/128", data_dir)
  np.testing.assert_array_equal(batch["image"][0], _oracle("china.jpg", 128))
  np.testing.assert_array_equal(batch["image"][1], _oracle("flower.jpg", 128))


def test_the_default_config_is_128(data_dir):
  assert data.info("sample_images", data_dir).name == "sample_images/128"
  np.testing.assert_array_equal(_all("sample_images", data_dir)["image"],
                                _all("sample_images/128", data_dir)["image"])


def test_scale_to_unit_maps_levels_to_minus_one_one(data_dir):
  raw = _all("sample_images/64", data_dir)["image"]
  scaled = _all("sample_images/64", data_dir, preprocess=("scale_to_unit",))["image"]
  assert scaled.dtype == np.float32 and scaled.shape == (2, 64, 64, 3)
  assert scaled.min() >= -1 and scaled.max() <= 1
  np.testing.assert_allclose(scaled, raw / np.float32(127.5) - 1, rtol=0, atol=1e-6)


def test_unknown_config_lists_the_valid_ones(data_dir):
  with pytest.raises(ValueError, match=r"Unknown config '100' of sample_images; "
                                       r"valid: 128, 64, 256\."):
    data.load("sample_images/100", "train", 2, 0, data_dir=data_dir, process_index=0,
              process_count=1)
