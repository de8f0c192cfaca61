"""The one parallelism path: a 1-D `data` mesh over every device, the batch sharded along it and
the train state replicated. Works unchanged on 1 CPU, 8 fake CPU devices, a GPU or a TPU slice
(multi-host after `jax.distributed.initialize()`)."""

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gen_jax.errors import SettingError
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


def stacked_batch_sharding(mesh: Mesh) -> NamedSharding:
  """Batches stacked on a leading (step) axis: the second axis split over `data`."""
  return NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def check_batch_size(batch_size: int, what: str = "data.batch_size") -> None:
  if batch_size % jax.device_count():
    raise SettingError(f"{what}={batch_size} is not divisible by the {jax.device_count()} devices: "
                     f"choose a multiple of {jax.device_count()}.")


def put_batch(batch: Batch, mesh: Mesh, sharding: NamedSharding | None = None
              ) -> dict[str, Any]:
  """This process's share of a global batch, ready for a jitted function sharded over `mesh`
  with `sharding` (default `batch_sharding`): global arrays across processes; host arrays in a
  single process."""
  if jax.process_count() == 1:
    # A jitted function with `in_shardings` transfers host arrays itself, in C++, with less
    # Python per call than `device_put` here.
    return dict(batch)
  sharding = sharding or batch_sharding(mesh)
  return {key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
          for key, value in batch.items()}


def with_shardings(abstract_tree: Any, sharding: NamedSharding) -> Any:
  """Attaches `sharding` to every leaf of a tree of `jax.ShapeDtypeStruct`s."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                      abstract_tree)
