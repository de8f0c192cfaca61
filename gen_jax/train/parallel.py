"""The one parallelism path: a 1-D `data` mesh over every device, the batch sharded along it and
the train state replicated. Works unchanged on 1 CPU, 8 fake CPU devices, a GPU or a TPU slice
(multi-host after `jax.distributed.initialize()`)."""

import queue
import threading
from typing import Any, Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gen_jax.types import Batch

DATA_AXIS = "data"


def make_mesh() -> Mesh:
  # Auto axes: XLA propagates the batch sharding through every op. (jax >= 0.10 makes new
  # meshes Explicit by default, where a contraction over the sharded batch axis, as in a
  # convolution's weight gradient, must name its output sharding.)
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the `data` axis, the rest whole."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def check_batch_size(batch_size: int, what: str = "data.batch_size") -> None:
  if batch_size % jax.device_count():
    raise ValueError(f"{what}={batch_size} is not divisible by the {jax.device_count()} devices: "
                     f"choose a multiple of {jax.device_count()}.")


def put_batch(batch: Batch, mesh: Mesh) -> dict[str, Any]:
  """This process's share of a global batch, ready for a jitted function sharded over `mesh`:
  global arrays across processes; host arrays in a single process."""
  if jax.process_count() == 1:
    # A jitted function with `in_shardings` transfers host arrays itself, in C++: faster than
    # `device_put` here (measured in experiments/benchmarks/step_overhead.py).
    return dict(batch)
  sharding = batch_sharding(mesh)
  return {key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
          for key, value in batch.items()}


class Prefetcher:
  """Reads batches and puts them on the devices, `size` batches ahead in a background thread
  (or, with `size` 0, when asked for, in the caller's thread).

  Yields (device_batch, data_state), where `data_state` is the iterator's state right after that
  batch was read: saved with a checkpoint, it resumes after the batches the train step consumed,
  not after those prefetched.
  """

  _END = object()

  def __init__(self, iterator: Any, mesh: Mesh, size: int = 2):
    self._iterator, self._mesh = iterator, mesh
    self._thread = None
    if size > 0:
      self._queue = queue.Queue(maxsize=size)
      self._stop = threading.Event()
      self._thread = threading.Thread(target=self._run, daemon=True)
      self._thread.start()

  def _read(self) -> tuple[dict[str, jax.Array], Any]:
    batch = next(self._iterator)
    return put_batch(batch, self._mesh), self._iterator.get_state()

  def _run(self) -> None:
    try:
      while not self._stop.is_set():
        try:
          item = self._read()
        except StopIteration:
          item = self._END
        while not self._stop.is_set():
          try:
            self._queue.put(item, timeout=0.1)
            break
          except queue.Full:
            continue
        if item is self._END:
          return
    except BaseException as e:  # pylint: disable=broad-except
      self._queue.put(e)  # re-raised in the consumer's thread

  def __iter__(self) -> Iterator[tuple[dict[str, jax.Array], Any]]:
    return self

  def __next__(self) -> tuple[dict[str, jax.Array], Any]:
    if self._thread is None:
      return self._read()
    item = self._queue.get()
    if item is self._END:
      raise StopIteration
    if isinstance(item, BaseException):
      raise item
    return item

  def close(self) -> None:
    if self._thread is not None:
      self._stop.set()
      self._thread.join()


def with_shardings(abstract_tree: Any, sharding: NamedSharding) -> Any:
  """Attaches `sharding` to every leaf of a tree of `jax.ShapeDtypeStruct`s."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                      abstract_tree)
