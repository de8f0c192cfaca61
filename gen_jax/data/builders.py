"""tfds builders for the bundled datasets: prepared offline, stored as ArrayRecord, no TensorFlow.

Each builder writes its examples in generation order (`disable_shuffling=True`, integer keys), so
record `i` of a split is the `i`-th generated example. They are not registered in tfds' global
registry: `gen_jax.data` constructs them by class, which keeps the names free for other code.

- `digits`: scikit-learn's 8x8 handwritten digits, grey levels 0..16.
- `toy2d/<config>`: 100,000 training and 10,000 test points of each `toy2d` distribution.
- `python_source[/tiny|/tests|/tests_tiny]`: the standard library's `.py` files, one record per
  file (`tests`: its test files only, which the others leave out).
- `sample_images[/128|/64|/256]`: scikit-learn's two sample photographs (china, flower),
  centre-cropped to a square and resized; content and style images for style transfer.
- `scene[/primitives_32|/primitives_64|/sphere_32]`: posed images of a procedural 3-D scene
  rendered by an exact ray tracer (`gen_jax.data.scene`), for NeRF; train and test views from
  different cameras.

`BlenderScene` (not bundled: its data are the user's) stores a Blender synthetic scene folder
(the NeRF paper's format) the same way; `prepare_blender` builds it, after which
`load("nerf_synthetic/<scene>_<size>", ...)` reads it like any prepared dataset.

Building one logs "Building gen_jax dataset NAME locally into DIR (nothing is downloaded)" at
INFO (logger `gen_jax.data.builders`) instead of tfds' "Downloading and preparing dataset ...".
"""

import dataclasses
import logging
import pathlib
import platform

import numpy as np
import tensorflow_datasets as tfds

from gen_jax.data import corpus
from gen_jax.data import scene as scene_lib
from gen_jax.data import toy2d

_TENSOR = tfds.features.Tensor

log = logging.getLogger(__name__)


def digits_split_indices() -> dict[str, np.ndarray]:
  """Indices into `load_digits()` of the train (1,437) and test (360) examples, in stored order."""
  # Imported here: sklearn is slow to import and only needed to prepare digits.
  import sklearn.model_selection  # pylint: disable=g-import-not-at-top
  train, test = sklearn.model_selection.train_test_split(
      np.arange(1797), test_size=0.2, random_state=0)
  return {"train": train, "test": test}


class LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder whose data is made on this machine: its build says so, not "Downloading".

  tfds announces every build with `termcolor.cprint` to stdout ("Downloading and preparing
  dataset Unknown size (download: Unknown size, ...)", then "Dataset NAME downloaded and
  prepared to DIR") from the two `DatasetBuilder` methods overridden here; they print nothing
  else and are called only for those lines.
  """

  def _full_name(self) -> str:
    return self.name + (f"/{self.builder_config.name}" if self.builder_config else "")

  def _log_download_bytes(self) -> None:
    log.info("Building gen_jax dataset %s locally into %s (nothing is downloaded).",
             self._full_name(), self.data_dir)

  def _log_download_done(self) -> None:
    log.info("Built gen_jax dataset %s in %s.", self._full_name(), self.data_dir)


class Digits(LocalBuilder, skip_registration=True):
  """scikit-learn's bundled 8x8 handwritten digits: `image` uint8 [8, 8, 1] in 0..16, `label`."""

  name = "digits"
  VERSION = tfds.core.Version("1.0.0")
  NUM_LEVELS = 17
  NUM_CLASSES = 10

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            "sklearn.datasets.load_digits, split by train_test_split(np.arange(1797), "
            "test_size=0.2, random_state=0); records follow the split's index order."),
        features=tfds.features.FeaturesDict({
            "image": _TENSOR(shape=(8, 8, 1), dtype=np.uint8),
            "label": _TENSOR(shape=(), dtype=np.int32),
        }),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(num_levels=self.NUM_LEVELS, num_classes=self.NUM_CLASSES),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    import sklearn.datasets  # pylint: disable=g-import-not-at-top
    digits = sklearn.datasets.load_digits()
    return {
        split: self._generate_examples(digits.images[index], digits.target[index])
        for split, index in digits_split_indices().items()
    }

  def _generate_examples(self, images: np.ndarray, labels: np.ndarray):
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {"image": image.astype(np.uint8)[..., None], "label": np.int32(label)}


class Toy2d(LocalBuilder, skip_registration=True):
  """Fixed samples of the `toy2d` distributions: `point` float32 [2], `mode` int32.

  Split `s` of config `c` is `toy2d.sample(c, np.random.default_rng([PREPARED_SEED, i, j]), n)`
  with `i` the index of `c` in `toy2d.NAMES` and `j` the index of `s` in `SPLIT_SIZES`.
  """

  name = "toy2d"
  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name=n, description=f"Samples of toy2d.DISTRIBUTIONS[{n!r}].")
      for n in toy2d.NAMES
  ]
  SPLIT_SIZES = {"train": 100_000, "test": 10_000}
  PREPARED_SEED = 20_240_601

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="Exact samples of a 2-D toy distribution; see gen_jax.data.toy2d.",
        features=tfds.features.FeaturesDict({
            "point": _TENSOR(shape=(2,), dtype=np.float32),
            "mode": _TENSOR(shape=(), dtype=np.int32),
        }),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(
            num_modes=toy2d.distribution(self.builder_config.name).num_modes,
            prepared_seed=self.PREPARED_SEED),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    config_index = toy2d.NAMES.index(self.builder_config.name)
    generators = {}
    for split_index, (split, size) in enumerate(self.SPLIT_SIZES.items()):
      rng = np.random.default_rng([self.PREPARED_SEED, config_index, split_index])
      points, mode = toy2d.sample(self.builder_config.name, rng, size)
      generators[split] = self._generate_examples(points, mode)
    return generators

  def _generate_examples(self, points: np.ndarray, mode: np.ndarray):
    for i, (point, m) in enumerate(zip(points, mode)):
      yield i, {"point": point, "mode": m}


@dataclasses.dataclass(eq=False)
class PythonSourceConfig(tfds.core.BuilderConfig):
  """A `python_source` config; `max_files` keeps only the first files of the sorted list;
  `tests` lists the test files (`corpus.list_test_files`) instead of the others."""

  max_files: int | None = None
  tests: bool = False


class PythonSource(LocalBuilder, skip_registration=True):
  """The standard library's `.py` files as bytes: one record per file, in sorted path order.

  Features: `bytes` uint8 [file_size] (the file's raw bytes), `path` (relative POSIX path).
  A split's byte stream is the plain concatenation of its records. The metadata records the
  Python version and, per split, the number of files and bytes and the sha256 of the stream.
  The `tiny` config (first 60 files: 57 train, 3 test) exists for fast tests. `tests` holds
  the test files instead (`corpus.list_test_files`: under test/ or tests/ folders, or named
  test_*.py), split by the same rule; `tests_tiny` its first 60.
  """

  name = "python_source"
  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [
      PythonSourceConfig(name="full", description="Every file of the standard library."),
      PythonSourceConfig(name="tiny", description="The first 60 files, for tests.",
                         max_files=60),
      # The test files, which the other configs leave out: a kind of code that a language
      # model trained on `full` has never seen (prefix tuning's target, gen_jax.methods.
      # prefix_tuning).
      PythonSourceConfig(name="tests", description="The test files (test folders, test_*.py).",
                         tests=True),
      PythonSourceConfig(name="tests_tiny", description="The first 60 test files, for tests.",
                         tests=True, max_files=60),
  ]
  VOCAB_SIZE = 256

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            "Byte-level corpus of the running Python's standard library (gen_jax.data.corpus); "
            "every 20th file of the sorted list is held out as the test split."),
        features=tfds.features.FeaturesDict({
            "bytes": _TENSOR(shape=(None,), dtype=np.uint8, encoding=tfds.features.Encoding.BYTES),
            "path": tfds.features.Text(),
        }),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(vocab_size=self.VOCAB_SIZE),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    root = corpus.stdlib_root()
    list_files = corpus.list_test_files if self.builder_config.tests else corpus.list_files
    paths = list_files(root)[:self.builder_config.max_files]
    files = corpus.split_files(paths)
    contents = {split: [corpus.read_bytes(root, p) for p in ps] for split, ps in files.items()}
    self.info.metadata.update(
        python_version=platform.python_version(),
        python_implementation=platform.python_implementation(),
        num_files={split: len(ps) for split, ps in files.items()},
        num_bytes={split: sum(map(len, cs)) for split, cs in contents.items()},
        sha256={split: corpus.sha256(cs) for split, cs in contents.items()},
    )
    return {split: self._generate_examples(files[split], contents[split]) for split in files}

  def _generate_examples(self, paths: list[str], contents: list[bytes]):
    for i, (path, content) in enumerate(zip(paths, contents)):
      yield i, {"bytes": np.frombuffer(content, np.uint8), "path": path}


def center_square(image: np.ndarray) -> np.ndarray:
  """The largest centred square of `image` [h, w, c]; odd margins leave the extra pixel at the
  bottom or right (offset `(h - side) // 2`, `(w - side) // 2`)."""
  h, w = image.shape[:2]
  side = min(h, w)
  top, left = (h - side) // 2, (w - side) // 2
  return image[top:top + side, left:left + side]


@dataclasses.dataclass(eq=False)
class SampleImagesConfig(tfds.core.BuilderConfig):
  """A `sample_images` config: the side in pixels of the square images."""

  size: int = 128


class SampleImages(LocalBuilder, skip_registration=True):
  """scikit-learn's two sample photographs as square RGB images, for neural style transfer.

  Features: `image` uint8 [size, size, 3] and `label` int32: 0 = "china" (a Chinese temple,
  `load_sample_image("china.jpg")`), 1 = "flower" (`"flower.jpg"`). One split, "train", holds the
  two images in that order. Each 427x640 photograph is centre-cropped to 427x427 (`center_square`)
  and resized to `size` x `size` with Pillow's LANCZOS filter. Configs "128" (the default, listed
  first), "64" and "256". The metadata records `class_names` ("china", "flower").
  """

  name = "sample_images"
  VERSION = tfds.core.Version("1.0.0")
  # The first config is the default (tfds' rule, and gen_jax's `_bundled_builder`).
  BUILDER_CONFIGS = [
      SampleImagesConfig(name=str(size), description=f"{size}x{size} RGB.", size=size)
      for size in (128, 64, 256)
  ]
  FILES = ("china.jpg", "flower.jpg")
  CLASS_NAMES = ("china", "flower")
  NUM_LEVELS = 256
  NUM_CLASSES = 2

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.size
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            "sklearn.datasets.load_sample_image('china.jpg') and ('flower.jpg'), each "
            f"centre-cropped to 427x427 and resized to {size}x{size} with PIL LANCZOS."),
        features=tfds.features.FeaturesDict({
            "image": _TENSOR(shape=(size, size, 3), dtype=np.uint8),
            "label": _TENSOR(shape=(), dtype=np.int32),
        }),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(num_levels=self.NUM_LEVELS, num_classes=self.NUM_CLASSES,
                                        class_names=list(self.CLASS_NAMES)),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    # Imported here, as for digits: only needed to prepare the dataset. (scikit-learn decodes
    # its sample JPEGs with Pillow, a gen_jax dependency.)
    import PIL.Image  # pylint: disable=g-import-not-at-top
    import sklearn.datasets  # pylint: disable=g-import-not-at-top
    size = self.builder_config.size
    for label, file in enumerate(self.FILES):
      square = PIL.Image.fromarray(center_square(sklearn.datasets.load_sample_image(file)))
      image = np.asarray(square.resize((size, size), PIL.Image.Resampling.LANCZOS), np.uint8)
      yield label, {"image": image, "label": np.int32(label)}


def _posed_features(size: int | None) -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({
      "image": _TENSOR(shape=(size, size, 3), dtype=np.uint8),
      "pose": _TENSOR(shape=(4, 4), dtype=np.float32),
      "focal": _TENSOR(shape=(), dtype=np.float32),
  })


@dataclasses.dataclass(eq=False)
class PosedSceneConfig(tfds.core.BuilderConfig):
  """A `scene` config: which procedural scene (`gen_jax.data.scene.SCENES`), at what size."""

  scene: str = "primitives"
  size: int = 32


class PosedScene(LocalBuilder, skip_registration=True):
  """Posed images of a procedural 3-D scene, for NeRF (`gen_jax.data.scene`).

  Features: `image` uint8 [size, size, 3], `pose` float32 [4, 4] (camera-to-world, OpenGL
  convention: the camera looks down -z, y up) and `focal` float32 (pixels). Splits "train" (64
  views) and "test" (16 views from other cameras), each `scene.views(scene, split, size)`. The
  metadata records the cameras' geometry (`near`, `far`, `radius`, `camera_angle_x`,
  `elevations`) and the `background` grey level. Configs "primitives_32" (the default),
  "primitives_64" and "sphere_32".
  """

  name = "scene"
  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [
      PosedSceneConfig(name=f"{scene}_{size}", description=f"{scene!r} at {size}x{size}.",
                       scene=scene, size=size)
      for scene, size in (("primitives", 32), ("primitives", 64), ("sphere", 32))
  ]
  NUM_LEVELS = 256

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        description=(f"The procedural scene {config.scene!r} of gen_jax.data.scene, ray traced "
                     f"at {config.size}x{config.size} from cameras on a sphere of radius "
                     f"{scene_lib.RADIUS} looking at the origin."),
        features=_posed_features(config.size),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(
            num_levels=self.NUM_LEVELS, scene=config.scene, near=scene_lib.NEAR,
            far=scene_lib.FAR, radius=scene_lib.RADIUS,
            camera_angle_x=scene_lib.CAMERA_ANGLE_X, elevations=list(scene_lib.ELEVATIONS),
            background=scene_lib.BACKGROUND, seed=scene_lib.SEED),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    config = self.builder_config
    return {split: self._generate_examples(scene_lib.views(config.scene, split, config.size))
            for split in scene_lib.SPLIT_SIZES}

  def _generate_examples(self, views: dict[str, np.ndarray]):
    for i in range(len(views["pose"])):
      yield i, {k: v[i] for k, v in views.items()}


@dataclasses.dataclass(eq=False)
class BlenderSceneConfig(tfds.core.BuilderConfig):
  """A Blender synthetic scene folder read at `size` x `size` pixels."""

  directory: str = ""
  size: int = 100


class BlenderScene(LocalBuilder, skip_registration=True):
  """A Blender synthetic scene of the NeRF paper (`scene.load_blender`), stored like `scene`:
  `image` uint8 [size, size, 3] composited on white, `pose`, `focal`; one split per
  `transforms_<split>.json` of the folder. Built by `prepare_blender`, never bundled."""

  name = "nerf_synthetic"
  VERSION = tfds.core.Version("1.0.0")
  NUM_LEVELS = 256

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        description=f"{config.directory} read by gen_jax.data.scene.load_blender.",
        features=_posed_features(config.size),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(num_levels=self.NUM_LEVELS, near=2.0, far=6.0,
                                        background=scene_lib.BACKGROUND),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # The user's folder.
    config = self.builder_config
    splits = [s for s in ("train", "val", "test")
              if (pathlib.Path(config.directory) / f"transforms_{s}.json").is_file()]
    if "train" not in splits:  # load_blender's message says what is missing
      scene_lib.load_blender(config.directory, "train", size=config.size)
    return {s: self._generate_examples(scene_lib.load_blender(config.directory, s,
                                                              size=config.size))
            for s in splits}

  def _generate_examples(self, views: dict[str, np.ndarray]):
    for i in range(len(views["pose"])):
      yield i, {k: v[i] for k, v in views.items()}


def prepare_blender(directory: str, data_dir: str, *, size: int = 100,
                    name: str | None = None) -> str:
  """Stores the Blender synthetic scene in `directory` (e.g. nerf_synthetic/lego) in
  `data_dir` as the dataset "nerf_synthetic/<name>_<size>" (name: the folder's name), which
  `gen_jax.data.load` then reads like the bundled `scene`; returns that dataset name.

  Raises:
    FileNotFoundError, ValueError: a missing or ill-formed folder (`scene.load_blender`).
  """
  name = name or pathlib.Path(directory).resolve().name
  config = BlenderSceneConfig(name=f"{name}_{size}", directory=str(directory), size=size,
                              description=f"{directory} at {size}x{size}.")
  builder = BlenderScene(data_dir=data_dir, config=config, file_format="array_record")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return f"{BlenderScene.name}/{config.name}"


BUILDERS = {cls.name: cls for cls in (Digits, Toy2d, PythonSource, SampleImages, PosedScene)}
