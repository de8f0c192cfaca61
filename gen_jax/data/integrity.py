"""Checks of a prepared dataset's files: damage is reported naming the file and the fix.

A prepared tfds dataset is one version folder, `<data_dir>/<name>[/<config>]/<version>`, holding
`dataset_info.json` (splits and shard lengths), `features.json`, `metadata.json` (when the builder
records metadata) and the ArrayRecord files of every split. Left to themselves, tfds and
ArrayRecord report a damaged file without naming it: a truncated or altered record file gives
"Corrupted Riegeli/records file", a truncated `dataset_info.json` a protobuf parse error, a
deleted one "`splits` is empty", a deleted `features.json` "generated with an old TFDS version".
Here every such fault is one `DatasetDamagedError` that names the file and what to do.

Checks run when a dataset is opened, before tfds reads the folder: the JSON files must parse,
and the record files of the split being read must open (ArrayRecord's footer and index are read)
with as many records as `dataset_info.json` says. A record file altered inside its data is only
found when that record is read, which `checked_source` reports the same way, mid-run included.
"""

import dataclasses
import json
import logging
import os
import pathlib
import shutil
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from array_record.python import array_record_data_source
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import dataset_info as tfds_dataset_info

log = logging.getLogger(__name__)

INFO_FILE = "dataset_info.json"
FEATURES_FILE = "features.json"
METADATA_FILE = "metadata.json"

# What reading a damaged ArrayRecord file raises: Riegeli's errors are RuntimeErrors, a file
# that vanished or lost its permissions an OSError (or a RuntimeError from `open()`).
READ_ERRORS = (RuntimeError, OSError)

T = TypeVar("T")


class DatasetNotPreparedError(FileNotFoundError):
  """A dataset that needs a download is not prepared (as ArrayRecord) in the data directory."""


class DatasetDamagedError(DatasetNotPreparedError):
  """A file of a prepared dataset is missing, unreadable or corrupt.

  It must be prepared again, so this is a `DatasetNotPreparedError`: code that reports an
  unprepared dataset (e.g. `experiments/main.py`, which prints the message) reports this too.

  Attributes:
    name: the dataset, as the caller named it.
    path: the damaged file.
    version_dir: the dataset's version folder; deleting it is the first step of every fix.
    damage: what is wrong, e.g. "/data/digits/1.0.0/features.json is missing".
  """

  def __init__(self, message: str, name: str = "", path: pathlib.Path | None = None,
               version_dir: pathlib.Path | None = None, damage: str = ""):
    super().__init__(message)
    self.name = name
    self.path = path
    self.version_dir = version_dir
    self.damage = damage


@dataclasses.dataclass(frozen=True)
class Prepared:
  """A prepared dataset's version folder and the fix for its damage.

  Attributes:
    name: the dataset as the caller named it, e.g. "digits" or "mnist:3.0.1".
    version_dir: the folder tfds reads.
    fix: what the user should do, starting with deleting `version_dir`.
  """

  name: str
  version_dir: pathlib.Path
  fix: str

  def damaged(self, path: os.PathLike | str, problem: str) -> DatasetDamagedError:
    damage = f"{path} {problem}"
    return DatasetDamagedError(f"Dataset {self.name!r} is damaged: {damage}. {self.fix}",
                               name=self.name, path=pathlib.Path(path),
                               version_dir=self.version_dir, damage=damage)


def _existing_file(prepared: Prepared, path: pathlib.Path) -> None:
  if not path.is_file():
    raise prepared.damaged(path, "is missing")
  if path.stat().st_size == 0:
    raise prepared.damaged(path, "is empty")
  if not os.access(path, os.R_OK):
    raise prepared.damaged(path, "cannot be read (permission denied)")


def _parse(prepared: Prepared, path: pathlib.Path, parse_fn: Callable[[pathlib.Path], Any]
           ) -> None:
  _existing_file(prepared, path)
  try:
    parse_fn(path)
  except Exception as error:  # pylint: disable=broad-except
    # Only this file was read: whatever failed (decoding, JSON, protobuf), the file is bad.
    raise prepared.damaged(path, f"cannot be parsed ({type(error).__name__}: {error})"
                           ) from error


def _json_object(path: pathlib.Path) -> dict[str, Any]:
  value = json.loads(path.read_text(encoding="utf-8"))
  if not isinstance(value, dict):
    raise ValueError(f"holds {json.dumps(value)[:40]}, not a JSON object")
  return value


def _dataset_info(path: pathlib.Path) -> None:
  _json_object(path)  # a plainer message than protobuf's for what is not even an object
  tfds_dataset_info.read_from_json(path)


def _features(path: pathlib.Path) -> None:
  tfds.features.FeatureConnector.from_json(_json_object(path))


def check_folder(prepared: Prepared) -> None:
  """Checks the files tfds reads when a builder is made: call before making it.

  `dataset_info.json` must parse as tfds' DatasetInfo proto; `features.json` (as tfds' features)
  and `metadata.json` must parse when present (whether they must be present is only known once
  the builder exists, see `check_builder`).

  Raises:
    DatasetDamagedError: naming the first damaged file.
  """
  _parse(prepared, prepared.version_dir / INFO_FILE, _dataset_info)
  for name, parse_fn in ((FEATURES_FILE, _features), (METADATA_FILE, _json_object)):
    if (prepared.version_dir / name).exists():
      _parse(prepared, prepared.version_dir / name, parse_fn)


def _declares_metadata(builder: tfds.core.DatasetBuilder) -> bool:
  """Whether the builder's code records metadata, which tfds writes as metadata.json.

  `builder.info.metadata` cannot tell: once a folder is read it is never None (tfds reads a
  missing metadata.json as empty). A builder restored from its folder alone declares none.
  """
  return builder._info().metadata is not None  # pylint: disable=protected-access


def check_builder(prepared: Prepared, builder: tfds.core.DatasetBuilder) -> Prepared | None:
  """Checks what the builder read from the folder; returns `prepared`, or None when the builder
  reads no files there (`tfds.testing.mock_data` points builders elsewhere).

  Raises:
    DatasetDamagedError: `features.json` is missing, `metadata.json` is missing although the
      builder's code records metadata, or `dataset_info.json` lists no splits.
  """
  if os.path.abspath(os.fspath(builder.data_path)) != os.path.abspath(prepared.version_dir):
    return None
  required = [FEATURES_FILE] + ([METADATA_FILE] if _declares_metadata(builder) else [])
  for name in required:
    _existing_file(prepared, prepared.version_dir / name)
  if not builder.info.splits:
    raise prepared.damaged(prepared.version_dir / INFO_FILE, "lists no splits")
  return prepared


def _instructions(builder: tfds.core.DatasetBuilder, split: str) -> list[Any]:
  """tfds' file instructions of a split: (filename, skip, take, examples_in_shard) each."""
  return list(builder.info.splits[split].file_instructions)


def check_split(prepared: Prepared, builder: tfds.core.DatasetBuilder, split: str) -> None:
  """Opens every record file of `split` (reading its footer and index) and counts its records.

  Raises:
    DatasetDamagedError: a file is missing, empty, cannot be opened, or holds a number of records
      other than `dataset_info.json` says.
  """
  for instruction in _instructions(builder, split):
    path = pathlib.Path(instruction.filename)
    _existing_file(prepared, path)
    try:
      with array_record_data_source.ArrayRecordDataSource(os.fspath(path)) as records:
        num_records = len(records)
    except READ_ERRORS as error:
      raise prepared.damaged(path, f"is corrupt: opening it failed with {error}") from error
    if num_records != instruction.examples_in_shard:
      raise prepared.damaged(path, f"holds {num_records} records where {INFO_FILE} says "
                             f"{instruction.examples_in_shard}")


class CheckedSource(Sequence):
  """A tfds data source whose read errors name the damaged file and the fix.

  ArrayRecord checks every chunk it reads against the hash stored with it, so a record file
  altered inside its data fails only when a record of that chunk is read.
  """

  def __init__(self, prepared: Prepared, source: Sequence[Any], instructions: Sequence[Any]):
    self._prepared = prepared
    self._source = source
    self._files = [pathlib.Path(i.filename) for i in instructions]
    self._ends = np.cumsum([i.take for i in instructions])  # source indices end per file

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> Any:
    return self.__getitems__([index])[0]

  def __getitems__(self, indices: Sequence[int]) -> list[Any]:
    indices = [int(i) for i in indices]
    try:
      return self._read(indices)
    except READ_ERRORS as error:
      raise self._prepared.damaged(self._failing_file(indices),
                                   f"is corrupt: reading it failed with {error}") from error

  def _read(self, indices: list[int]) -> list[Any]:
    read_many = getattr(self._source, "__getitems__", None)
    return list(read_many(indices)) if read_many else [self._source[i] for i in indices]

  def _failing_file(self, indices: list[int]) -> pathlib.Path:
    """The file whose records fail to read; the first file read when none fails again."""
    file_of = np.searchsorted(self._ends, indices, side="right")
    files = list(dict.fromkeys(file_of.tolist()))
    if len(files) > 1:
      for f in files:
        try:
          self._read([i for i, g in zip(indices, file_of) if g == f])
        except READ_ERRORS:
          return self._files[f]
    return self._files[files[0]]


def checked_source(prepared: Prepared, builder: tfds.core.DatasetBuilder, split: str,
                   source: Sequence[Any]) -> CheckedSource:
  """`source` (a split of `builder`'s folder), with read errors naming the damaged file."""
  return CheckedSource(prepared, source, _instructions(builder, split))


def rebuilt_if_damaged(open_fn: Callable[[], T]) -> T:
  """`open_fn()`; when it finds a bundled dataset damaged, deletes its folder and calls it again.

  Only for datasets that `open_fn` builds locally when their folder is missing: a bundled dataset
  is a pure function of the code and of files of this installation, so building it again gives
  what deleting the folder by hand would, and a damaged folder holds nothing to keep.
  """
  try:
    return open_fn()
  except DatasetDamagedError as error:
    log.warning("Dataset %r is damaged: %s. It is built locally, so gen_jax deletes %s and "
                "builds it again (nothing is downloaded).", error.name, error.damage,
                error.version_dir)
    try:
      shutil.rmtree(error.version_dir)
    except OSError as rmtree_error:
      raise error from rmtree_error
  return open_fn()
