"""Keeps freed host memory in the process, so that XLA's CPU steps stop paying for fresh pages.

A jitted step on XLA's CPU backend allocates its temporary buffers as one block (119 MB for
`lm_python`'s train step) and frees it when the step ends. glibc serves a block that large with
`mmap` and unmaps it on `free`, so every step the kernel maps and zeroes those pages again: for
`lm_python`, 31,000 page faults and about 50 ms of system time per 85 ms step
(experiments/benchmarks/malloc_env.py). Two settings together stop it:

- `keep_freed_memory()` (applied by `import gen_jax`): the main malloc arena takes large blocks
  from its heap instead of `mmap`, and never returns the heap's free top to the kernel, so a
  freed block is reused by the next step. The process keeps its peak host memory until it
  exits, as XLA already does with GPU memory.
- `set_cpu_async_dispatch(False)` (`config.train.cpu_async_dispatch`): JAX's CPU client runs
  each call on the calling thread instead of a worker thread. glibc gives other threads their
  own arenas, whose heaps are at most 64 MiB: those map a larger block with `mmap` whatever the
  settings say (one arena for all threads would avoid that, but made small convolutional steps
  10% slower through contention). Synchronous dispatch gives up overlapping the host's
  per-call work with the step, which made the 17 ms DCGAN step 13% slower, so configs choose.

Only glibc (Linux) has these settings; elsewhere `keep_freed_memory` does nothing. Set
`GEN_JAX_KEEP_FREED_MEMORY=0` to leave glibc's defaults.
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
