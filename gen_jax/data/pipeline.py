"""`load` and `info`: resumable batch iterators over tfds ArrayRecord data, without TensorFlow.

Every dataset is read through `tfds` data sources (random access to ArrayRecord files) and cut
into batches by a `grain.MapDataset` whose element `step` is batch `step`, computed from the
pipeline's fixed arithmetic (`indexing.Plan`) alone. A `DataIterator` walks that dataset; its
state is the step count, so restoring it reproduces the following batches exactly.

Example order comes from one NumPy permutation per epoch rather than grain's per-element
`shuffle`: grain's index shuffle runs Python per example, while the permutation is one
vectorised call per epoch and keeps toy problems from waiting on their input.

Three kinds of dataset go through the same call:

- examples (digits, toy2d prepared splits, mnist, cifar10, ...): batches of the fixed-shape
  numeric features; int64 and float64 become int32 and float32 (JAX's default precision);
  strings and variable-shaped features are left out. Splits of up to `IN_MEMORY_MAX_BYTES`
  stored bytes are read once into memory, larger ones are read batch by batch.
- byte streams (python_source, tiny_shakespeare): windows of `seq_len` bytes, see `load`.
- fresh toy2d samples (`fresh=True`): a new exact sample every step.

A prepared dataset's folder is checked when it is opened and its records as they are read
(`integrity`): a missing or corrupt file raises `DatasetDamagedError` naming the file and the
folder to delete. A bundled dataset damaged on opening is deleted and built again instead, which
gives the same data; its records are all read on opening unless `in_memory=False`.
"""

import contextlib
import dataclasses
import functools
import json
import os
import pathlib
import platform
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from absl import logging
import grain
import jax
import numpy as np
import tensorflow_datasets as tfds

from gen_jax.data import builders
from gen_jax.data import indexing
from gen_jax.data import integrity
from gen_jax.data import preprocess as preprocess_lib
from gen_jax.data import toy2d

DATA_DIR_ENV = "GEN_JAX_DATA_DIR"
DEFAULT_SEQ_LEN = 256
IN_MEMORY_MAX_BYTES = 256 * 2**20
STREAM_CONTEXT = b"\n"  # the context byte before a stream's first byte
BYTE_VOCAB_SIZE = 256
_READ_CHUNK = 4096
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")

Batch = dict[str, Any]  # nested dict of numpy arrays, leading axis the batch


DatasetNotPreparedError = integrity.DatasetNotPreparedError
DatasetDamagedError = integrity.DatasetDamagedError


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model needs to know about a dataset before reading it.

  Attributes:
    name: the canonical name, with its config: "digits", "toy2d/ring8", "python_source/full".
    element_spec: per-example shapes and dtypes of the batch keys, batch axis excluded (a batch
      of `load` has shapes `[batch_size // process_count, *shape]`); `valid` [] bool is added
      when `drop_remainder=False`. python_source's shapes are for the `seq_len` passed to `info`.
    splits: number of examples of each split (python_source: files).
    num_classes: label classes; for toy2d, the number of modes; None if unlabelled.
    num_levels: grey levels of the stored images (17 for digits, 256 for 8-bit images).
    vocab_size: tokens of a byte stream (256), else None.
    mixture: toy2d only, the exact distribution sampled (`toy2d.GaussianMixture` with `means`,
      `std`, `weights`; `toy2d.SwissRoll` / `toy2d.TwoMoons` with their geometry and noise).
    metadata: what the builder recorded, e.g. python_source's Python version, byte counts and
      sha256 of each split's byte stream.
  """

  name: str
  element_spec: Mapping[str, Any]  # key -> jax.ShapeDtypeStruct, or a nested dict of them
  splits: Mapping[str, int]
  num_classes: int | None = None
  num_levels: int | None = None
  vocab_size: int | None = None
  mixture: toy2d.Distribution | None = None
  metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class DataIterator:
  """An iterator of batches (dicts of numpy arrays) whose state is the number of batches read.

  `get_state()` is a small JSON-serialisable dict: the step and the pipeline's arguments; it is
  the same on every process. `set_state(state)` restores it (refusing a state of a different
  pipeline), after which `next` returns exactly the batches that followed when it was saved.

  Attributes:
    dataset: the `grain.MapDataset` of batches; element `step` is batch `step`.
    info: the dataset's `DatasetInfo`.
  """

  def __init__(self, dataset: grain.MapDataset, info: DatasetInfo, num_batches: int | None,
               fingerprint: Mapping[str, Any], read_batches: Callable[[int, int], Batch]):
    self.dataset = dataset
    self.info = info
    self._num_batches = num_batches
    self._fingerprint = dict(fingerprint)
    self._read_batches = read_batches  # (start, n) -> batches start..start+n-1, [n, batch, ...]
    self._step = 0

  @property
  def num_batches(self) -> int | None:
    """Batches from the start to the end of the iterator; None when it never ends."""
    return self._num_batches

  def __iter__(self) -> "DataIterator":
    return self

  def __next__(self) -> Batch:
    if self._num_batches is not None and self._step >= self._num_batches:
      raise StopIteration
    batch = self.dataset[self._step]
    self._step += 1
    return batch

  def next_batches(self, n: int) -> Batch:
    """The next `n` batches stacked on a new leading axis ([n, batch, ...]): the same arrays as
    `n` calls of `next`, read in one vectorised pass where the pipeline allows it."""
    if n < 1:
      raise ValueError(f"next_batches reads at least one batch (got n={n}).")
    if self._num_batches is not None and self._step + n > self._num_batches:
      raise StopIteration
    batches = self._read_batches(self._step, n)
    self._step += n
    return batches

  def get_state(self) -> dict[str, Any]:
    return {"step": self._step, **self._fingerprint}

  def set_state(self, state: Mapping[str, Any]) -> None:
    different = sorted(k for k, v in self._fingerprint.items() if state.get(k) != v)
    if different or "step" not in state:
      raise ValueError(
          "This iterator state belongs to a different pipeline; differing fields: "
          + ", ".join(f"{k}: saved {state.get(k)!r}, here {self._fingerprint[k]!r}"
                      for k in different) + ("" if "step" in state else " (no 'step')"))
    self._step = int(state["step"])


def resolve_data_dir(data_dir: str | None = None) -> str:
  """The data directory: `data_dir`, else $GEN_JAX_DATA_DIR, else tfds' default."""
  chosen = data_dir or os.environ.get(DATA_DIR_ENV) or tfds.core.constants.DATA_DIR
  return os.path.expanduser(os.fspath(chosen))


def _bundled_names() -> str:
  configs = {"toy2d": toy2d.NAMES}
  return ", ".join(
      f"{n}/{{{','.join(configs[n])}}}" if n in configs else n for n in builders.BUILDERS)


def _parse_name(name: str) -> tuple[str, str | None, str | None]:
  """'toy2d/ring8' -> ('toy2d', 'ring8', None); 'mnist:3.0.1' -> ('mnist', None, '3.0.1')."""
  name, _, version = name.partition(":")
  base, _, config = name.partition("/")
  return base, config or None, version or None


# --- Bundled datasets -----------------------------------------------------------------------


def _bundled_builder(base: str, config: str | None, root: str
                     ) -> tuple[tfds.core.DatasetBuilder, integrity.Prepared | None]:
  """The bundled builder, prepared offline into `root` when its folder is missing.

  A damaged folder raises `DatasetDamagedError`; `_rebuilt_if_damaged` deletes it and calls
  this again.
  """
  cls = builders.BUILDERS[base]
  valid_configs = [c.name for c in cls.BUILDER_CONFIGS]
  if config is not None and config not in valid_configs:
    raise ValueError(f"Unknown config {config!r} of {base}; valid: {', '.join(valid_configs)}.")
  config = config or (valid_configs[0] if valid_configs else None)  # tfds' default config
  version_dir = pathlib.Path(root).absolute() / base / (config or "") / str(cls.VERSION)
  prepared = integrity.Prepared(
      name=base + (f"/{config}" if config else ""), version_dir=version_dir,
      fix=f"Delete the folder {version_dir}: gen_jax builds it again locally the next time it "
          "is loaded (nothing is downloaded).")
  if version_dir.exists():
    integrity.check_folder(prepared)  # before the builder reads it
  try:
    builder = cls(data_dir=root, config=config, file_format="array_record")
  except Exception as error:  # pylint: disable=broad-except
    if not version_dir.exists():
      raise
    # The code defines the rest: what the builder reads of an existing folder is this file.
    raise prepared.damaged(version_dir / integrity.INFO_FILE,
                           f"cannot be read by tfds ({type(error).__name__}: {error})"
                           ) from error
  if not version_dir.exists():
    # Whatever tfds prints goes to stderr: stdout is the caller's (e.g. JSON lines).
    with contextlib.redirect_stdout(sys.stderr):
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return builder, integrity.check_builder(prepared, builder)


def _rebuilt_if_damaged(name: str, open_fn: Callable[[], Any]) -> Any:
  """`open_fn()`; a bundled dataset found damaged is deleted and built again (once)."""
  if _parse_name(name)[0] in builders.BUILDERS:
    return integrity.rebuilt_if_damaged(open_fn)
  return open_fn()


def _toy2d_info(config: str | None) -> DatasetInfo:
  """toy2d's info, known without reading anything (fresh sampling never touches the disk)."""
  config = config or toy2d.NAMES[0]
  mixture = toy2d.distribution(config)
  return DatasetInfo(
      name=f"toy2d/{config}",
      element_spec={"point": jax.ShapeDtypeStruct((2,), np.float32),
                    "mode": jax.ShapeDtypeStruct((), np.int32)},
      splits=dict(builders.Toy2d.SPLIT_SIZES),
      num_classes=mixture.num_modes,
      mixture=mixture,
      metadata={"prepared_seed": builders.Toy2d.PREPARED_SEED},
  )


# --- Datasets that need a download ----------------------------------------------------------


def _prepare_instructions(name: str, root: str) -> str:
  return (
      "on a machine with network access run:\n"
      "  pip install '.[tf]'\n"
      f"  tfds build {name} --file_format=array_record --data_dir DIR\n"
      f"then copy DIR here and pass data_dir=DIR or set {DATA_DIR_ENV}=DIR (searched: {root}).")


def _not_prepared_message(name: str, root: str, why: str) -> str:
  return (f"Dataset {name!r} {why}. gen_jax never downloads data. To prepare it, "
          + _prepare_instructions(name, root))


def _version_dirs(folder: pathlib.Path) -> list[pathlib.Path]:
  """Subfolders of `folder` named like a version that hold any file, oldest first.

  A folder that lost its dataset_info.json still counts, so that its damage is reported.
  """
  if not folder.is_dir():
    return []
  found = [d for d in folder.iterdir()
           if _VERSION.match(d.name) and d.is_dir() and any(d.iterdir())]
  return sorted(found, key=lambda d: tuple(int(x) for x in d.name.split(".")))


def _default_config(base: str) -> str | None:
  """The default config of a registered tfds dataset, None when it has none or is unknown."""
  try:
    cls = tfds.builder_cls(base)
  except tfds.core.registered.DatasetNotFoundError:
    return None
  configs = getattr(cls, "BUILDER_CONFIGS", None) or []
  default = getattr(cls, "DEFAULT_BUILDER_CONFIG_NAME", None)
  return default or (configs[0].name if configs else None)


def _find_prepared(root: str, base: str, config: str | None,
                   version: str | None) -> pathlib.Path | None:
  """The prepared version folder of a dataset, from files alone (no builder, no network)."""
  folder = pathlib.Path(root) / base
  if config is not None:
    folder = folder / config
  elif not _version_dirs(folder) and (default := _default_config(base)):
    folder = folder / default
  candidates = _version_dirs(folder)
  if version is not None:
    candidates = [d for d in candidates if d.name == version]
  return candidates[-1] if candidates else None


def _file_formats(version_dir: pathlib.Path) -> set[str]:
  info = json.loads((version_dir / "dataset_info.json").read_text())
  return {info.get("fileFormat", "tfrecord"), *info.get("alternativeFileFormats", [])}


def _is_known(base: str) -> bool:
  return base in tfds.list_builders(with_community_datasets=False)


def _prepared_builder(name: str, root: str
                      ) -> tuple[tfds.core.DatasetBuilder, integrity.Prepared | None]:
  """The tfds builder of a prepared dataset; fails before tfds could try to download."""
  base, config, version = _parse_name(name)
  version_dir = _find_prepared(root, base, config, version)
  if version_dir is None:
    if not _is_known(base):
      raise ValueError(
          f"Unknown dataset {name!r}. Bundled datasets: {_bundled_names()}. Any other tfds "
          f"dataset (mnist, fashion_mnist, cifar10, celeb_a, tiny_shakespeare, ...) loads once "
          f"prepared in {root}.")
    raise DatasetNotPreparedError(_not_prepared_message(name, root, "is not prepared"))
  version_dir = version_dir.absolute()
  prepared = integrity.Prepared(
      name=name, version_dir=version_dir,
      fix=f"Delete the folder {version_dir} and prepare the dataset again: "
          + _prepare_instructions(name, root))
  integrity.check_folder(prepared)
  if "array_record" not in _file_formats(version_dir):
    raise DatasetNotPreparedError(_not_prepared_message(
        name, root, f"is prepared in {version_dir} without ArrayRecord files (needed for random "
        "access)"))
  config_dir = version_dir.parent
  config = None if config_dir == pathlib.Path(root).absolute() / base else config_dir.name
  full_name = base + (f"/{config}" if config else "") + f":{version_dir.name}"
  try:
    builder = tfds.builder(full_name, data_dir=root)
  except Exception as error:  # pylint: disable=broad-except
    # A dataset without registered code is restored from features.json, and without it tfds
    # blames "an old TFDS version". It is not required before this point: the stand-in folders
    # used with `tfds.testing.mock_data` hold only a dataset_info.json.
    features = version_dir / integrity.FEATURES_FILE
    if features.exists():
      raise
    raise prepared.damaged(features, "is missing") from error
  return builder, integrity.check_builder(prepared, builder)


# --- Info -----------------------------------------------------------------------------------


def _shape_dtype(shape: Any, dtype: Any) -> Any:
  """Per-example specs of the numeric fixed-shape features, 64-bit types made 32-bit."""
  if isinstance(shape, Mapping):
    specs = {k: _shape_dtype(shape[k], dtype[k]) for k in shape}
    return {k: v for k, v in specs.items() if v is not None and v != {}}
  dtype = np.dtype(dtype)
  if dtype.kind not in "biuf" or any(d is None or d < 0 for d in shape):
    return None
  dtype = {np.dtype(np.int64): np.dtype(np.int32),
           np.dtype(np.float64): np.dtype(np.float32)}.get(dtype, dtype)
  return jax.ShapeDtypeStruct(tuple(shape), dtype)


def _stream_key(base: str, features: Any) -> str | None:
  """The feature holding a byte stream: python_source's bytes, or a dataset's only Text."""
  if base == builders.PythonSource.name:
    return "bytes"
  text = [k for k, f in features.items() if isinstance(f, tfds.features.Text)]
  return text[0] if len(text) == 1 and len(features) == 1 else None


def _stream_spec(seq_len: int) -> dict[str, Any]:
  return {"tokens": jax.ShapeDtypeStruct((seq_len,), np.int32),
          "mask": jax.ShapeDtypeStruct((seq_len,), np.float32)}


def _builder_info(name: str, builder: tfds.core.DatasetBuilder, seq_len: int) -> DatasetInfo:
  base, _, _ = _parse_name(name)
  features = builder.info.features
  metadata = dict(builder.info.metadata or {})
  is_stream = _stream_key(base, features) is not None
  spec = _stream_spec(seq_len) if is_stream else _shape_dtype(features.shape, features.np_dtype)
  label = features["label"] if "label" in features else None
  num_classes = metadata.get("num_classes", getattr(label, "num_classes", None))
  image = spec.get("image")
  num_levels = metadata.get("num_levels", 256 if image is not None and image.dtype == np.uint8
                            else None)
  config = builder.builder_config.name if builder.builder_config else None
  return DatasetInfo(
      name=base + (f"/{config}" if config else ""),
      element_spec=spec,
      splits={s: v.num_examples for s, v in builder.info.splits.items()},
      num_classes=num_classes,
      num_levels=num_levels,
      vocab_size=BYTE_VOCAB_SIZE if is_stream else None,
      metadata=metadata,
  )


def _builder(name: str, root: str
             ) -> tuple[tfds.core.DatasetBuilder, integrity.Prepared | None]:
  """The builder and, when it reads files of `root`, the folder checked (None under mocks)."""
  base, config, _ = _parse_name(name)
  if base in builders.BUILDERS:
    return _bundled_builder(base, config, root)
  return _prepared_builder(name, root)


def info(name: str, data_dir: str | None = None, *, seq_len: int | None = None) -> DatasetInfo:
  """Metadata of a dataset, read from its prepared files (bundled ones are prepared first).

  Args:
    name: as for `load`.
    data_dir: as for `load`.
    seq_len: window length of byte streams, for their `element_spec` (default 256).

  Returns:
    The dataset's `DatasetInfo`; toy2d's needs no files at all.

  Raises:
    DatasetNotPreparedError: a dataset that needs a download is not prepared.
    DatasetDamagedError: a file of its folder is missing or corrupt, as for `load`.
    ValueError: the name is unknown.
  """
  base, config, _ = _parse_name(name)
  if base == builders.Toy2d.name:
    return _toy2d_info(config)
  root = resolve_data_dir(data_dir)
  return _rebuilt_if_damaged(
      name, lambda: _builder_info(name, _builder(name, root)[0], seq_len or DEFAULT_SEQ_LEN))


# --- Reading --------------------------------------------------------------------------------


def _read(source: Sequence[Any], indices: Sequence[int]) -> list[Any]:
  """Examples `indices` of a tfds data source, in one batched read when it supports one."""
  if not indices:
    return []
  read_many = getattr(source, "__getitems__", None)
  if read_many is None:
    return [source[i] for i in indices]
  return list(read_many(list(indices)))


def _stack(examples: Sequence[Mapping[str, Any]], spec: Mapping[str, Any]) -> Batch:
  """Stacks examples along a new leading axis, keeping (and casting to) the keys of `spec`."""
  return {
      k: (_stack([e[k] for e in examples], s) if isinstance(s, Mapping)
          else np.asarray([e[k] for e in examples], dtype=s.dtype).reshape(
              (len(examples), *s.shape)))
      for k, s in spec.items()
  }


def _scatter(rows: Batch, valid: np.ndarray, spec: Mapping[str, Any]) -> Batch:
  """A batch of `len(valid)` rows: `rows` where valid, zeros elsewhere."""
  if valid.all():
    return rows
  out = {}
  for k, s in spec.items():
    if isinstance(s, Mapping):
      out[k] = _scatter(rows[k], valid, s)
    else:
      out[k] = np.zeros((len(valid), *s.shape), s.dtype)
      out[k][valid] = rows[k]
  return out


def _read_all(source: Sequence[Any], spec: Mapping[str, Any]) -> Batch:
  """A whole split as stacked read-only arrays."""
  chunks = [_stack(_read(source, range(i, min(i + _READ_CHUNK, len(source)))), spec)
            for i in range(0, len(source), _READ_CHUNK)]
  arrays = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *chunks)
  jax.tree_util.tree_map(lambda a: a.setflags(write=False), arrays)
  return arrays


@functools.lru_cache(maxsize=4)
def _read_prepared(prepared: integrity.Prepared, split: str) -> Batch:
  """A prepared split held in memory, read once per process."""
  builder = tfds.builder_from_directory(os.fspath(prepared.version_dir))
  features = builder.info.features
  source = integrity.checked_source(prepared, builder, split, builder.as_data_source(split=split))
  return _read_all(source, _shape_dtype(features.shape, features.np_dtype))


def _split_bytes(builder: tfds.core.DatasetBuilder, split: str) -> int | None:
  """Stored bytes of a split, None when unknown (e.g. under `tfds.testing.mock_data`)."""
  try:
    num_bytes = builder.info.splits[split].num_bytes
  except (KeyError, ValueError, TypeError):
    return None
  return num_bytes if isinstance(num_bytes, int) and num_bytes > 0 else None


def _example_reader(builder: tfds.core.DatasetBuilder, prepared: integrity.Prepared | None,
                    split: str, source: Sequence[Any], spec: Mapping[str, Any],
                    in_memory: bool | None) -> Callable[[np.ndarray, np.ndarray], Batch]:
  """`read(index, valid) -> batch` over a split, from memory or from the files."""
  size = _split_bytes(builder, split)
  if in_memory is None:
    in_memory = size is not None and size <= IN_MEMORY_MAX_BYTES
  if not in_memory:
    def read_files(index: np.ndarray, valid: np.ndarray) -> Batch:
      return _scatter(_stack(_read(source, index[valid].tolist()), spec), valid, spec)
    return read_files
  # Splits with files on disk are cached per process; mocked ones have only `source`.
  arrays = (_read_prepared(prepared, split) if size is not None and prepared is not None
            else _read_all(source, spec))

  def read_memory(index: np.ndarray, valid: np.ndarray) -> Batch:
    rows = jax.tree_util.tree_map(lambda a: a[index[valid]], arrays)
    return _scatter(rows, valid, spec)
  return read_memory


def _read_stream(source: Sequence[Any], key: str) -> np.ndarray:
  """A split's byte stream: `STREAM_CONTEXT` then its records' bytes in record order."""
  chunks = [STREAM_CONTEXT]
  for i in range(0, len(source), _READ_CHUNK):
    for record in _read(source, range(i, min(i + _READ_CHUNK, len(source)))):
      value = record[key]
      chunks.append(value.encode() if isinstance(value, str) else bytes(value))
  return np.frombuffer(b"".join(chunks), np.uint8)


# --- Batches --------------------------------------------------------------------------------


def _preprocess_fns(names: Sequence[str]) -> list[Callable[..., Batch]]:
  if isinstance(names, str):
    raise ValueError(f"preprocess is a sequence of names: write ({names!r},).")
  unknown = [n for n in names if n not in preprocess_lib.__all__]
  if unknown:
    raise ValueError(f"Unknown preprocess {', '.join(map(repr, unknown))}; valid: "
                     f"{', '.join(preprocess_lib.__all__)}.")
  return [getattr(preprocess_lib, n) for n in names]


def _postprocess(batch: Batch, step: int, *, valid: np.ndarray | None,
                 fns: Sequence[Callable], seed: int, process_index: int,
                 dataset_info: DatasetInfo) -> Batch:
  """Applies the preprocessing (one generator per step and function) and adds `valid`."""
  for i, fn in enumerate(fns):
    rng = (None if fn.__name__ in preprocess_lib.DETERMINISTIC else
           np.random.default_rng([seed, indexing.PREPROCESS_STREAM, process_index, step, i]))
    batch = fn(batch, rng=rng, info=dataset_info)
  if valid is not None:
    batch["valid"] = valid
  return batch


def _window_batch(positions: indexing.Positions, windows: indexing.Windows,
                  stream: np.ndarray) -> Batch:
  """Token windows [batch, seq_len] and their target mask, zero past the stream's end."""
  starts = indexing.window_starts(windows, positions.epoch, positions.index)
  offsets = np.arange(windows.seq_len)
  at = starts[:, None] + offsets
  inside = (at < len(stream)) & positions.valid[:, None]
  tokens = np.where(inside, stream[np.minimum(at, len(stream) - 1)], 0).astype(np.int32)
  scored = offsets >= windows.first_target(positions.index)[:, None]
  return {"tokens": tokens, "mask": (inside & scored).astype(np.float32)}


def _read_positions(positions: indexing.Positions,
                    reader: Callable[[np.ndarray, np.ndarray], Batch]) -> Batch:
  return reader(positions.index, positions.valid)


def _fresh_batch(step: int, *, config: str, seed: int, split_index: int, process_index: int,
                 batch_size: int) -> Batch:
  rng = np.random.default_rng(
      [seed, indexing.FRESH_STREAM, split_index, process_index, step])
  points, mode = toy2d.sample(config, rng, batch_size)
  return {"point": points, "mode": mode}


def _batches(make_batch: Callable[[int], Batch], num_batches: int | None) -> grain.MapDataset:
  return grain.MapDataset.range(sys.maxsize if num_batches is None else num_batches).map(
      make_batch)


def load(name: str, split: str, batch_size: int, seed: int, *, shuffle: bool = True,
         num_epochs: int | None = None, drop_remainder: bool = True, seq_len: int | None = None,
         fresh: bool = False, preprocess: Sequence[str] = (), data_dir: str | None = None,
         process_index: int | None = None, process_count: int | None = None,
         in_memory: bool | None = None, eval_stride: int = 0) -> DataIterator:
  """A resumable iterator of batches of a dataset split.

  Bundled datasets (digits, toy2d/<config>, python_source) are prepared offline into the data
  directory on first use, and built again (with a warning) when a file of theirs is found
  missing or damaged on opening. Any other tfds name loads when prepared there as ArrayRecord,
  and otherwise fails at once with `DatasetNotPreparedError`; nothing is ever downloaded.

  Each process reads its `batch_size // process_count` rows of every global batch (see
  `indexing`); the order is fixed by `seed`, and the global batches do not depend on the number
  of processes, except for random preprocessing and fresh toy2d samples, which each process
  draws for its own rows.

  Byte streams (python_source, tiny_shakespeare) yield `tokens` int32 [b, seq_len] and `mask`
  float32 [b, seq_len]. The stream is the split's bytes preceded by one context byte "\\n" (what
  precedes a file in the concatenated training stream). Window `j` holds stream positions
  `o + j * (seq_len - 1)` onwards, consecutive windows sharing one token. A causal model predicts
  `tokens[:, 1:]` from `logits[:, :-1]`, weighted by `mask[:, 1:]`; `mask[:, 0]` is always 0
  and `mask[:, t]` is 1 when token t is a real byte of the split. With `shuffle=False,
  drop_remainder=False, num_epochs=1` (evaluation) the windows tile the stream from offset 0,
  the last one zero-padded, so the masked targets are every byte of the split exactly once, in
  order, each predicted from all preceding bytes of its window (on average half a window; with
  `eval_stride` s, window j starts at j * s and scores only its last s targets, so each byte
  after the first window is predicted from at least seq_len - s bytes, at (seq_len - 1) / s
  times the compute). Otherwise windows are whole, at an offset drawn per epoch from the seed
  (0 without shuffling), in a shuffled order.

  Args:
    name: "digits", "toy2d/ring8" (also grid25, swiss_roll, two_moons), "python_source" (or
      "python_source/tiny", 60 files, for tests), or any tfds name such as "mnist" or
      "celeb_a", optionally with "/config" and ":version".
    split: a tfds split, e.g. "train", "test", "train[:90%]".
    batch_size: the global batch size, divisible by `process_count`.
    seed: non-negative; fixes the order, window offsets, fresh samples and preprocessing noise.
    shuffle: shuffle the examples (windows) of every epoch.
    num_epochs: passes over the split; None repeats forever.
    drop_remainder: drop the last short batch; when False, the last batch is padded with zero
      rows and every batch has `valid` bool [b], False on padding.
    seq_len: window length of byte streams (default 256); only for byte streams.
    fresh: toy2d only: a new exact sample every step, from (seed, split, process, step);
      endless, so `num_epochs` must be None.
    preprocess: names of functions of `gen_jax.data.preprocess`, applied in order.
    data_dir: where datasets are prepared; default $GEN_JAX_DATA_DIR, else tfds' default.
    process_index: this process's shard; default `jax.process_index()`.
    process_count: number of shards; default `jax.process_count()`.
    in_memory: read the whole split into memory first; default when it is stored in at most
      `IN_MEMORY_MAX_BYTES`. Batches are the same either way.
    eval_stride: byte streams read for evaluation only: tokens between the starts of
      consecutive windows, 1..seq_len-1; 0 means seq_len - 1 (windows share one token).

  Returns:
    A `DataIterator` of dicts of numpy arrays with a leading batch axis.

  Raises:
    DatasetNotPreparedError: a dataset that needs a download is not prepared in `data_dir`.
    DatasetDamagedError: a file of a prepared dataset is missing, unreadable or corrupt (a
      bundled one that stays so after being built again); also raised by `next` when a record
      read mid-run is corrupt. The message names the file and the folder to delete.
    ValueError: an unknown name, config or preprocess name, or inconsistent arguments.
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  _check_arguments(batch_size, seed, num_epochs, process_index, process_count)
  fns = _preprocess_fns(preprocess)
  plan_args = dict(batch_size=batch_size // process_count, seed=seed, shuffle=shuffle,
                   num_epochs=num_epochs, drop_remainder=drop_remainder,
                   process_index=process_index, process_count=process_count)
  if fresh:
    if eval_stride:
      raise ValueError("eval_stride is for byte streams read for evaluation, not fresh data.")
    dataset_info, read_steps, num_batches = _fresh_reader(name, split, num_epochs, seq_len,
                                                         plan_args)
  else:
    root = resolve_data_dir(data_dir)
    # Bundled datasets are read whole here (small), so damage found now is rebuilt.
    dataset_info, read_steps, num_batches = _rebuilt_if_damaged(name, lambda: _file_reader(
        name, split, root, seq_len, in_memory, plan_args, eval_stride))

  postprocess = functools.partial(_postprocess, fns=fns, seed=seed, process_index=process_index,
                                  dataset_info=dataset_info)

  def make_batch(step: int) -> Batch:
    batch, valid = read_steps(step, 1)
    return postprocess(batch, step, valid=None if drop_remainder else valid)

  def make_batches(start: int, n: int) -> Batch:
    """Batches start..start+n-1 as [n, b, ...], read as one [n * b] batch."""
    batch, valid = read_steps(start, n)
    split = lambda tree: jax.tree_util.tree_map(
        lambda a: a.reshape((n, a.shape[0] // n, *a.shape[1:])), tree)
    if all(fn.__name__ in preprocess_lib.DETERMINISTIC for fn in fns):  # row by row: one call
      return split(postprocess(batch, start, valid=None if drop_remainder else valid))
    rows, valid = split(batch), valid.reshape(n, -1)
    return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *[
        postprocess(jax.tree_util.tree_map(lambda a, i=i: a[i], rows), start + i,
                    valid=None if drop_remainder else valid[i]) for i in range(n)])

  fingerprint = dict(
      name=name, split=split, batch_size=batch_size, seed=seed, shuffle=shuffle,
      num_epochs=num_epochs, drop_remainder=drop_remainder, seq_len=seq_len, fresh=fresh,
      preprocess=list(preprocess),
      **({"eval_stride": eval_stride} if eval_stride else {}))
  if fresh or not all(fn.__name__ in preprocess_lib.DETERMINISTIC for fn in fns):
    fingerprint["process_count"] = process_count  # each process draws for its own rows
  return DataIterator(_batches(make_batch, num_batches), dataset_info, num_batches, fingerprint,
                      make_batches)


# (start, n) -> the rows of batches start..start+n-1 before preprocessing, concatenated
# ([n * batch]), and whether each row is real (valid [n * batch] bool).
StepReader = Callable[[int, int], tuple[Batch, np.ndarray]]


def _fresh_reader(name: str, split: str, num_epochs: int | None, seq_len: int | None,
                  plan_args: Mapping[str, Any]) -> tuple[DatasetInfo, StepReader, None]:
  """Endless exact toy2d samples, batch `step` drawn from (seed, split, process, step)."""
  base, config, _ = _parse_name(name)
  if base != builders.Toy2d.name or num_epochs is not None or seq_len is not None:
    raise ValueError("fresh=True draws endless new samples of a toy2d distribution: use it "
                     "with name 'toy2d/<config>', num_epochs=None and no seq_len.")
  dataset_info = _toy2d_info(config)
  splits = list(builders.Toy2d.SPLIT_SIZES)
  if split not in splits:
    raise ValueError(f"Unknown toy2d split {split!r}; valid: {', '.join(splits)}.")
  batch_size = plan_args["batch_size"]
  sample = functools.partial(
      _fresh_batch, config=dataset_info.name.split("/")[1], seed=plan_args["seed"],
      split_index=splits.index(split), process_index=plan_args["process_index"],
      batch_size=batch_size)

  def read_steps(start: int, n: int) -> tuple[Batch, np.ndarray]:
    batches = [sample(step) for step in range(start, start + n)]
    return ({k: np.concatenate([b[k] for b in batches]) for k in batches[0]},
            np.ones(n * batch_size, bool))
  return dataset_info, read_steps, None


def _file_reader(name: str, split: str, root: str, seq_len: int | None,
                 in_memory: bool | None, plan_args: Mapping[str, Any], eval_stride: int
                 ) -> tuple[DatasetInfo, StepReader, int | None]:
  """Batches of a prepared split: its examples, or windows of its byte stream."""
  base, config, _ = _parse_name(name)
  builder, prepared = _builder(name, root)
  source = builder.as_data_source(split=split)
  if prepared is not None:
    integrity.check_split(prepared, builder, split)
    source = integrity.checked_source(prepared, builder, split, source)
  stream_key = _stream_key(base, builder.info.features)
  for arg, value in (("seq_len", seq_len), ("eval_stride", eval_stride or None)):
    if stream_key is None and value is not None:
      raise ValueError(f"{arg} is only for byte-stream datasets; {name!r} has examples.")
  dataset_info = (_toy2d_info(config) if base == builders.Toy2d.name
                  else _builder_info(name, builder, seq_len or DEFAULT_SEQ_LEN))

  if stream_key is not None:
    _warn_if_other_python(dataset_info)
    stream = _read_stream(source, stream_key)
    windows = indexing.Windows(
        stream_length=len(stream), seq_len=seq_len or DEFAULT_SEQ_LEN, seed=plan_args["seed"],
        shuffle=plan_args["shuffle"],
        tile=not plan_args["shuffle"] and not plan_args["drop_remainder"],
        eval_stride=eval_stride)
    if windows.seq_len < 2 or windows.num_windows < 1:
      raise ValueError(f"seq_len {windows.seq_len} must be at least 2 and fit the "
                       f"{len(stream) - 1} bytes of {name!r} {split!r}.")
    plan = indexing.Plan(num_examples=windows.num_windows, **plan_args)
    read = functools.partial(_window_batch, windows=windows, stream=stream)
  else:
    plan = indexing.Plan(num_examples=len(source), **plan_args)
    read = functools.partial(
        _read_positions,
        reader=_example_reader(builder, prepared, split, source, dataset_info.element_spec,
                               in_memory))

  if plan.num_examples < 1 or plan.num_batches == 0:
    raise ValueError(f"{name!r} {split!r} has {plan.num_examples} examples: too few for one "
                     f"batch of {plan.batch_size * plan.process_count}; pass "
                     "drop_remainder=False or a smaller batch.")

  def read_steps(start: int, n: int) -> tuple[Batch, np.ndarray]:
    positions = indexing.batch_positions(plan, start, n)
    return read(positions), positions.valid
  return dataset_info, read_steps, plan.num_batches


def _warn_if_other_python(dataset_info: DatasetInfo) -> None:
  recorded = dataset_info.metadata.get("python_version")
  if recorded and recorded != platform.python_version():
    logging.warning("%s was built from Python %s's standard library, this is Python %s: compare "
                    "results by the sha256 in info(...).metadata.", dataset_info.name, recorded,
                    platform.python_version())


def _check_arguments(batch_size: int, seed: int, num_epochs: int | None, process_index: int,
                     process_count: int) -> None:
  if batch_size < 1 or process_count < 1 or batch_size % process_count:
    raise ValueError(f"batch_size {batch_size} is the global batch: it must be a positive "
                     f"multiple of process_count {process_count}.")
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} must be in [0, {process_count}).")
  if seed < 0:
    raise ValueError(f"seed must be non-negative (got {seed}).")
  if num_epochs is not None and num_epochs < 1:
    raise ValueError(f"num_epochs must be None (forever) or positive (got {num_epochs}).")
