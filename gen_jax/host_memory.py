"""Process-wide host settings for XLA's CPU steps, chosen by an entry point, never on import.

A jitted step on XLA's CPU backend allocates its temporary buffers as one block and frees it
when the step ends. glibc serves a block that large with `mmap` and unmaps it on `free`, so every
step the kernel maps and zeroes those pages again (docs/performance.md has the measurements).
Two settings together stop it:

- `keep_freed_memory()`: the main malloc arena takes large blocks from its heap instead of
  `mmap`, and never returns the heap's free top to the kernel, so a freed block is reused by the
  next step. The process keeps its peak host memory until it exits, as XLA already does with GPU
  memory.
- `set_cpu_async_dispatch(False)` (`config.train.cpu_async_dispatch`): JAX's CPU client runs
  each call on the calling thread instead of a worker thread. glibc gives other threads their
  own arenas, whose heaps are at most 64 MiB: those map a larger block with `mmap` whatever the
  settings say. Synchronous dispatch gives up overlapping the host's per-call work with the
  step, which costs small convolutional steps, so configs choose.

Both change the whole process, so the library applies neither: `configure_process(config)` is
called by the entry points (experiments/main.py, the benchmarks) before JAX starts, and a
notebook may call it in its first cell. `train_and_evaluate` only warns when the running
process's dispatch mode differs from the config's. Only glibc (Linux) has the malloc settings;
elsewhere `keep_freed_memory` does nothing. `GEN_JAX_KEEP_FREED_MEMORY=0` leaves glibc's
defaults. Neither setting changes anything on a GPU or TPU backend.
"""

import ctypes
import logging
import os
import sys

ENV_VAR = "GEN_JAX_KEEP_FREED_MEMORY"
_ASYNC_FLAG = "jax_cpu_enable_async_dispatch"

# mallopt(3) parameters, from glibc's <malloc.h>, and the values set.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
SETTINGS = (
    (_M_MMAP_MAX, 0),  # large blocks come from the heap, not from mmap
    (_M_TRIM_THRESHOLD, 2**31 - 1),  # the heap's free top is never returned to the kernel
    (_M_TOP_PAD, 2**28),  # and grows 256 MiB at a time (address space; pages map on first use)
)


def keep_freed_memory() -> bool:
  """Applies `SETTINGS` with glibc's `mallopt`. Returns whether they were applied: False off
  glibc or when `GEN_JAX_KEEP_FREED_MEMORY=0`."""
  if os.environ.get(ENV_VAR, "1") == "0" or not sys.platform.startswith("linux"):
    return False
  try:
    libc = ctypes.CDLL("libc.so.6")
    libc.gnu_get_libc_version  # pylint: disable=pointless-statement  (glibc only)
  except (OSError, AttributeError):
    return False
  return all(libc.mallopt(param, value) == 1 for param, value in SETTINGS)


def configure_process(config) -> None:
  """What an entry point applies before the first JAX computation: `keep_freed_memory()` and
  `set_cpu_async_dispatch(config.train.cpu_async_dispatch)` (`config` a resolved config, or
  one whose `train` section has that key)."""
  keep_freed_memory()
  train = config.get("train") or {}
  set_cpu_async_dispatch(bool(train.get("cpu_async_dispatch", True)))


def check_cpu_async_dispatch(enabled: bool) -> None:
  """Logs a warning when the CPU backend runs with another dispatch mode than `enabled` (the
  config's), saying how to choose it; says nothing on other backends."""
  import jax  # pylint: disable=import-outside-toplevel
  current = getattr(jax.config, "values", {}).get(_ASYNC_FLAG)
  if current is None or bool(current) == enabled or jax.default_backend() != "cpu":
    return
  logging.getLogger(__name__).warning(
      "The config sets train.cpu_async_dispatch=%s, but this process runs JAX's CPU calls with "
      "%s=%s (results are the same; only speed differs). experiments/main.py applies the "
      "config's setting; elsewhere call gen_jax.host_memory.configure_process(config) before "
      "the first JAX computation.", enabled, _ASYNC_FLAG, bool(current))


def set_cpu_async_dispatch(enabled: bool) -> None:
  """Sets JAX's `jax_cpu_enable_async_dispatch`, which JAX reads once, when its CPU client
  starts (at the process's first computation). If the client has started with the other
  setting, leaves it and logs a warning that says what to do instead."""
  import jax  # pylint: disable=import-outside-toplevel  (`import gen_jax` does not load JAX)
  current = getattr(jax.config, "values", {}).get(_ASYNC_FLAG)
  if current is None or bool(current) == enabled:  # None: a JAX without the flag (or `values`)
    return
  try:  # a private function: if a JAX version moves it, the check is skipped
    from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
    started = xla_bridge.backends_are_initialized()
  except (ImportError, AttributeError):
    started = False
  if started:
    logging.getLogger(__name__).warning(
        "cpu_async_dispatch=%s is ignored: JAX's backends already started in this process "
        "with %s=%s. Call gen_jax.host_memory.set_cpu_async_dispatch(%s) before the first JAX "
        "computation (at the top of a notebook).", enabled, _ASYNC_FLAG, not enabled, enabled)
    return
  jax.config.update(_ASYNC_FLAG, enabled)
  logging.getLogger(__name__).info("JAX's CPU client will run each call %s.",
                                   "on a worker thread" if enabled else "on the calling thread")
