"""Test-wide settings, applied before JAX starts.

Most of XLA's optimisations are switched off: the tests' models are tiny, so compile time
dominates. Subprocesses started by tests inherit this through the environment, so runs compared
bitwise are compiled the same way.
"""

import os

import pytest

os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


@pytest.fixture(scope="session", autouse=True)
def _data_dir(tmp_path_factory):
  """One offline tfds data directory for the session; subprocesses inherit it."""
  if "GEN_JAX_DATA_DIR" not in os.environ:
    os.environ["GEN_JAX_DATA_DIR"] = str(tmp_path_factory.mktemp("tensorflow_datasets"))
  yield os.environ["GEN_JAX_DATA_DIR"]
