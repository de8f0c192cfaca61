"""The `python_source` corpus: the `.py` files of the running Python's standard library.

The file list is a pure function of the standard library's folder, so two builds on the same
installation give the same bytes. On CPython 3.11.7 (Linux) the full corpus is 674 files: 641
training files of 10,844,301 bytes and 33 held-out files of 509,861 bytes. The standard library
includes the generated `_sysconfigdata_*.py` (build paths and flags), so the content hashes
identify an installation, not only a Python version.
"""

import hashlib
import os
import posixpath
import sysconfig
from collections.abc import Sequence

SKIPPED_FOLDERS = frozenset({"test", "tests", "idlelib", "site-packages"})
TEST_FOLDERS = frozenset({"test", "tests"})
HELD_OUT_EVERY = 20  # file `i` of the sorted list is held out when i % 20 == 19


def stdlib_root() -> str:
  """The folder of the running Python's standard library."""
  return sysconfig.get_paths()["stdlib"]


def list_files(root: str, skipped: frozenset[str] = SKIPPED_FOLDERS) -> list[str]:
  """Relative POSIX paths of the `.py` files under `root`, sorted as strings.

  Files under any folder named in `skipped` (at any depth) are left out.
  """
  paths = []
  for folder, subfolders, files in os.walk(root):
    subfolders[:] = [d for d in subfolders if d not in skipped]
    rel = os.path.relpath(folder, root)
    parts = () if rel == os.curdir else tuple(rel.split(os.sep))
    paths.extend(posixpath.join(*parts, f) for f in files if f.endswith(".py"))
  return sorted(paths)


def is_test_file(path: str) -> bool:
  """Whether a relative POSIX path is a test file: under a folder named in `TEST_FOLDERS` (at
  any depth; the standard library's own test suite, `lib2to3/tests`, ...) or named
  `test_*.py`."""
  parts = path.split("/")
  return bool(TEST_FOLDERS & set(parts[:-1])) or parts[-1].startswith("test_")


def list_test_files(root: str) -> list[str]:
  """The test files (`is_test_file`) of `root`, sorted: the files `list_files` leaves out for
  being under a test folder, and any `test_*.py` it keeps. `idlelib` and `site-packages` stay
  out, as for `list_files`."""
  return [p for p in list_files(root, SKIPPED_FOLDERS - TEST_FOLDERS) if is_test_file(p)]


def split_files(paths: Sequence[str]) -> dict[str, list[str]]:
  """Splits a sorted file list: every 20th file (index % 20 == 19) is held out as `test`."""
  return {
      "train": [p for i, p in enumerate(paths) if i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1],
      "test": [p for i, p in enumerate(paths) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1],
  }


def read_bytes(root: str, path: str) -> bytes:
  """The raw bytes of one corpus file."""
  with open(os.path.join(root, *path.split("/")), "rb") as f:
    return f.read()


def sha256(chunks: Sequence[bytes]) -> str:
  """Hex sha256 of the concatenation of `chunks`."""
  digest = hashlib.sha256()
  for chunk in chunks:
    digest.update(chunk)
  return digest.hexdigest()
