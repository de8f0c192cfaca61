"""gen_jax/host_memory.py: freed blocks stay mapped when an entry point asks, never on import;
the dispatch setting and its warnings."""

import json
import logging
import os
import subprocess
import sys

import jax
import pytest

from gen_jax import host_memory

# A 128 MiB block, allocated, written, freed, three times, on the main thread. glibc maps a
# block that large with mmap (its largest dynamic mmap threshold is 32 MiB) and unmaps it on
# free, so each cycle faults in every one of its 32,768 pages; with gen_jax's settings the
# block comes from the heap, which keeps it, and the cycles fault in nothing. `{apply}` says
# whether the child calls keep_freed_memory() (as experiments/main.py does) or only imports.
CYCLES = """
import ctypes, json, resource
import gen_jax
from gen_jax import host_memory
from gen_jax.train import loop
applied = host_memory.keep_freed_memory() if {apply} else False
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 128 << 20
def cycle():
  block = libc.malloc(size)
  ctypes.memset(block, 1, size)
  libc.free(block)
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
  cycle()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3
print(json.dumps({{"faults": faults, "applied": applied}}))
"""
PAGES = (128 << 20) // os.sysconf("SC_PAGE_SIZE")


def faults_per_cycle(keep: bool, apply: bool = True) -> dict:
  env = dict(os.environ, **{host_memory.ENV_VAR: "1" if keep else "0"})
  out = subprocess.run([sys.executable, "-c", CYCLES.format(apply=apply)], env=env, capture_output=True, text=True,
                       timeout=120, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not host_memory.keep_freed_memory(), reason="needs glibc's mallopt")
def test_freed_large_block_is_reused_without_page_faults():
  default, kept = faults_per_cycle(keep=False), faults_per_cycle(keep=True)
  assert not default["applied"] and kept["applied"]
  assert default["faults"] >= 0.9 * PAGES  # mapped afresh every time
  assert kept["faults"] < 0.01 * PAGES  # the same pages, reused


@pytest.mark.skipif(not host_memory.keep_freed_memory(), reason="needs glibc's mallopt")
def test_importing_the_library_leaves_malloc_alone():
  imported = faults_per_cycle(keep=True, apply=False)  # import gen_jax and the loop, nothing else
  assert imported["faults"] >= 0.9 * PAGES  # glibc's defaults: mapped afresh every time


def test_loop_warns_when_the_process_runs_another_dispatch_mode(caplog):
  jax.numpy.zeros(1).block_until_ready()
  current = jax.config.values["jax_cpu_enable_async_dispatch"]
  with caplog.at_level(logging.WARNING, logger="gen_jax.host_memory"):
    host_memory.check_cpu_async_dispatch(not current)
  assert "configure_process" in caplog.text and "train.cpu_async_dispatch" in caplog.text
  caplog.clear()
  with caplog.at_level(logging.WARNING, logger="gen_jax.host_memory"):
    host_memory.check_cpu_async_dispatch(current)
  assert not caplog.text


def test_dispatch_setting_after_jax_started_is_refused_with_a_warning(caplog):
  jax.numpy.zeros(1).block_until_ready()  # the CPU client is running (as in every test)
  before = jax.config.values["jax_cpu_enable_async_dispatch"]
  with caplog.at_level(logging.WARNING, logger="gen_jax.host_memory"):
    host_memory.set_cpu_async_dispatch(not before)
  assert jax.config.values["jax_cpu_enable_async_dispatch"] == before  # left as JAX runs it
  assert "before the first JAX computation" in caplog.text
  caplog.clear()
  with caplog.at_level(logging.WARNING, logger="gen_jax.host_memory"):
    host_memory.set_cpu_async_dispatch(before)  # what it already is: nothing to say
  assert not caplog.text
