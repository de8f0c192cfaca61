"""Test-wide settings, applied before JAX starts.

Most of XLA's optimisations are switched off: the tests' models are tiny, so compile time
dominates. Subprocesses started by tests inherit this through the environment, so runs compared
bitwise are compiled the same way.
"""

import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the session (both xdist workers and the runs tests start
# as subprocesses inherit it): a program compiled by one test is read back by the next.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="gen_jax_tests_xla_")
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _data_dir(tmp_path_factory):
  """One offline tfds data directory for the session; subprocesses inherit it."""
  if "GEN_JAX_DATA_DIR" not in os.environ:
    os.environ["GEN_JAX_DATA_DIR"] = str(tmp_path_factory.mktemp("tensorflow_datasets"))
  yield os.environ["GEN_JAX_DATA_DIR"]

