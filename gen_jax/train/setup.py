"""`make_setup(config)`: everything built before a run's first step, in one place.

The loop, the benchmarks, `experiments/sample.py` and notebooks build their method, optimizers,
mesh, shardings, abstract train state and jitted functions here, so that a benchmark times the
function the loop runs and a notebook samples with the function the loop samples with:

    setup = make_setup(config_lib.resolve(config))
    state = setup.init_state()
    train = setup.train_steps()
    state, metrics = train(state, batches)  # batches [n, batch, ...]: n steps in one call

A run's data are described twice: `spec` (a `DataSpec`: the dataset's features, levels, classes,
vocabulary) tells the method what it models, and `example` (one training batch, or its shapes)
fixes the shapes of the parameters. Both are saved with every checkpoint (`describe`), so that
`loop.load_checkpoint` rebuilds a trained run without its training data.

Frozen parts: a method module that lists `FROZEN_PARTS` (names) receives, in
`from_config(config, spec, frozen)`, one `FrozenPart` per name: the newest good checkpoint of the
workdir that `config.frozen.<name>` names, restored and verified like any checkpoint. The method
never reads the disk or calls the trainer; it keeps the part's variables in its model state
(`model_state["frozen"][name]`), so jitted functions take them as arguments and the new run's
checkpoints hold them too.
"""

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding

from gen_jax import data as data_lib
from gen_jax import names
from gen_jax.methods.base import DataSpec, Method
from gen_jax.train import checkpoint as checkpoint_lib
from gen_jax.train import config as config_lib
from gen_jax.train import optimizers as optimizers_lib
from gen_jax.train import parallel
from gen_jax.train import step as step_lib
from gen_jax.train.state import TrainState
from gen_jax.types import Batch, PRNGKey, Variables


@dataclasses.dataclass(frozen=True)
class FrozenPart:
  """A trained run handed to another method, which does not train it.

  Attributes:
    workdir: the run's directory (`config.frozen.<name>`).
    step: the step of the checkpoint restored.
    config: the run's resolved config.
    method: the run's method, built from that config.
    variables: `{"params": ..., "model_state": ...}` of that checkpoint (EMA parameters when the
      run kept them), as `method.sample` / `method.evaluate` take them.
    spec: the run's `DataSpec`.
    description: the run's `Setup.describe()`, saved with the checkpoints of the run that uses
      it, so that loading that run needs neither this workdir nor its data.
  """

  workdir: str
  step: int
  config: ml_collections.ConfigDict
  method: Any
  variables: Variables
  spec: DataSpec
  description: dict[str, Any] = dataclasses.field(default_factory=dict)


def abstract_batch(batch: Mapping[str, Any]) -> dict[str, Any]:
  """`jax.ShapeDtypeStruct`s of a batch's arrays (structs pass through)."""
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.dtype(a.dtype)), dict(batch))


def example_to_dict(example: Mapping[str, Any]) -> dict[str, Any]:
  """One batch's shapes (batch axis included) and dtypes as JSON, e.g.
  {"image": {"shape": [128, 8, 8, 1], "dtype": "float32"}}; nested keys are joined by "/"."""
  flat = jax.tree_util.tree_flatten_with_path(abstract_batch(example))[0]
  return {"/".join(str(k.key) for k in path): {"shape": list(a.shape), "dtype": a.dtype.name}
          for path, a in flat}


def example_from_dict(values: Mapping[str, Any]) -> dict[str, Any]:
  """The inverse of `example_to_dict`: a batch of `jax.ShapeDtypeStruct`s."""
  out: dict[str, Any] = {}
  for key, entry in values.items():
    *outer, last = key.split("/")
    node = out
    for part in outer:
      node = node.setdefault(part, {})
    node[last] = jax.ShapeDtypeStruct(tuple(int(n) for n in entry["shape"]),
                                      np.dtype(entry["dtype"]))
  return out


def zeros_like_batch(example: Mapping[str, Any]) -> dict[str, Any]:
  """Host zeros of an example's shapes and dtypes."""
  return jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), abstract_batch(example))


def data_spec(config: ml_collections.ConfigDict) -> DataSpec:
  """The `DataSpec` of `config.data` (read from the dataset's info: prepared files)."""
  d = config.data
  return DataSpec.from_info(data_lib.info(d.name, d.data_dir or None, seq_len=d.seq_len or None))


def load_data(config: ml_collections.ConfigDict, split: str, *, train: bool):
  """The data iterator of `split` as the loop reads it: shuffled and endless for training, in
  order, once, with padding marked `valid` for evaluation."""
  d = config.data
  kwargs = dict(preprocess=tuple(d.preprocess))
  if d.seq_len:
    kwargs["seq_len"] = d.seq_len
  if d.data_dir:
    kwargs["data_dir"] = d.data_dir
  if train:
    return data_lib.load(d.name, split, d.batch_size, config.seed, fresh=d.fresh, **kwargs)
  if d.eval_stride:
    kwargs["eval_stride"] = d.eval_stride
  return data_lib.load(d.name, split, d.eval_batch_size or d.batch_size, config.seed,
                       shuffle=False, num_epochs=1, drop_remainder=False, **kwargs)


def first_batch(data) -> Batch:
  """The iterator's next batch, without consuming it."""
  state = data.get_state()
  batch = next(data)
  data.set_state(state)
  return batch


def method_module(config: ml_collections.ConfigDict):
  return names.submodule("gen_jax.methods", config.method, what="method", exclude=("base",))


def restore_frozen(config: ml_collections.ConfigDict) -> dict[str, FrozenPart]:
  """The frozen parts `config.frozen` names (see the module docstring), restored read-only."""
  parts = {}
  for name, workdir in config.get("frozen", {}).items():
    try:
      run = load_run(workdir)
    except checkpoint_lib.NoGoodCheckpointError as e:
      raise checkpoint_lib.NoGoodCheckpointError(
          f"config.frozen.{name} = {workdir!r} names no trained run: {e} Train that run first, "
          f"or set config.frozen.{name} to its workdir.") from None
    parts[name] = FrozenPart(workdir=str(workdir), step=run.step, config=run.config,
                             method=run.setup.method, variables=run.state.variables(),
                             spec=run.setup.spec, description=run.setup.describe())
  return parts


def _frozen_from_description(described: Mapping[str, Any]) -> dict[str, FrozenPart]:
  """The frozen parts a saved run was built with, rebuilt from its checkpoint's description,
  without their workdirs: their variables are zeros of the saved shapes, which the checkpoint's
  own copy (in its model state) replaces on restore."""
  parts = {}
  for name, part in described.items():
    config = config_lib.from_dict(part["config"])
    description = part["description"]
    spec = DataSpec.from_dict(description["data_spec"])
    nested = _frozen_from_description(description.get("frozen", {}))
    # {"params": ..., "model_state": ...}; an empty collection has no leaves to describe it.
    variables = {"params": {}, "model_state": {},
                 **zeros_like_batch(example_from_dict(part["variables"]))}
    parts[name] = FrozenPart(workdir=part["workdir"], step=part["step"], config=config,
                             method=build_method(config, spec, nested), variables=variables,
                             spec=spec, description=description)
  return parts


def build_method(config: ml_collections.ConfigDict, spec: DataSpec | None = None,
                 frozen: Mapping[str, FrozenPart] | None = None) -> Method:
  """The method `config` names, told about its data by `spec` (by default the training data's
  info, read here: methods never read the data themselves) and, for a module that lists
  `FROZEN_PARTS`, given its frozen parts (restored from `config.frozen` unless given)."""
  module = method_module(config)
  spec = data_spec(config) if spec is None else spec
  if not getattr(module, "FROZEN_PARTS", ()):
    return module.from_config(config, spec)
  frozen = restore_frozen(config) if frozen is None else frozen
  return module.from_config(config, spec, frozen)


@dataclasses.dataclass(frozen=True)
class Setup:
  """A run's method, optimizers, mesh and shardings, and factories of its jitted functions.

  Attributes:
    config: the resolved config.
    spec: what the method was told of its data.
    example: one global training batch as `jax.ShapeDtypeStruct`s (batch axis included).
    method: the method `config` names.
    optimizers: {player name: optax transformation}.
    frozen: the frozen parts handed to the method ({} for most methods).
    mesh: the 1-D `data` mesh over every device.
    state_sharding: replicated, for the train state, variables, keys and metrics.
    batch_sharding: a batch split along its leading axis.
    stacked_sharding: batches stacked on a leading step axis, split along the second.
  """

  config: ml_collections.ConfigDict
  spec: DataSpec
  example: dict[str, Any]
  method: Method
  optimizers: dict[str, optax.GradientTransformation]
  frozen: dict[str, FrozenPart]
  mesh: Mesh
  state_sharding: NamedSharding
  batch_sharding: NamedSharding
  stacked_sharding: NamedSharding

  @property
  def rng(self) -> PRNGKey:
    """The run's key: `PRNGKey(config.seed)`."""
    return jax.random.PRNGKey(self.config.seed)

  def init_fn(self, rng: PRNGKey, batch: Batch) -> TrainState:
    """`step.init_state` of this method and optimizers (pure; not jitted)."""
    return step_lib.init_state(self.method, self.optimizers, rng, batch,
                               ema_decay=self.config.train.ema_decay)

  def abstract_state(self) -> TrainState:
    """The train state's shapes and dtypes with their (replicated) shardings; nothing runs."""
    abstract = jax.eval_shape(self.init_fn, self.rng, self.example)
    return parallel.with_shardings(abstract, self.state_sharding)

  def init_state(self, batch: Batch | None = None) -> TrainState:
    """A fresh train state from the run's key, initialised on `batch` (default: zeros of the
    example's shapes), placed on the devices."""
    batch = zeros_like_batch(self.example) if batch is None else batch
    return jax.jit(self.init_fn, out_shardings=self.state_sharding)(self.rng, batch)

  def train_step(self) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, Any]]]:
    """`state, metrics = fn(state, batch)`: one train step, jitted as the loop jits its
    steps (batch sharded, state replicated and donated)."""
    step = step_lib.make_train_step(self.method, self.optimizers,
                                    ema_decay=self.config.train.ema_decay)
    return jax.jit(step, in_shardings=(self.state_sharding, self.batch_sharding),
                   out_shardings=(self.state_sharding, self.state_sharding), donate_argnums=0)

  def train_steps(self) -> "TrainSteps":
    """The loop's jitted function: n train steps per call over batches stacked [n, batch, ...];
    see `TrainSteps`."""
    return TrainSteps(self)

  def eval_step(self) -> Callable[[Variables, Batch, PRNGKey], dict[str, Any]]:
    """`step.make_eval_step`, jitted: (variables, batch, rng) -> {name: (sum, count)}."""
    return jax.jit(step_lib.make_eval_step(self.method),
                   in_shardings=(self.state_sharding, self.batch_sharding, self.state_sharding),
                   out_shardings=self.state_sharding)

  def sample_fn(self, num: int) -> Callable[[Variables, PRNGKey], Any] | None:
    """`method.sample(variables, rng, num)` jitted, or None for a method that does not sample."""
    sample = getattr(self.method, "sample", None)
    if sample is None:
      return None
    return jax.jit(lambda variables, rng: sample(variables, rng, num),
                   out_shardings=self.state_sharding)

  def describe(self) -> dict[str, Any]:
    """What `from_description` needs besides the config, as JSON (saved with checkpoints): the
    data spec, the example's shapes and, for each frozen part, its config, description and
    variables' shapes."""
    out = {"data_spec": self.spec.to_dict(), "example": example_to_dict(self.example)}
    if self.frozen:
      out["frozen"] = {name: {"workdir": part.workdir, "step": part.step,
                              "config": config_lib.to_dict(part.config),
                              "description": part.description,
                              "variables": example_to_dict(part.variables)}
                       for name, part in self.frozen.items()}
    return out


class TrainSteps:
  """`state, metrics = steps(state, batches)`: `step.unrolled_steps` of the train step, jitted
  with the state replicated and donated and the batches [n, batch, ...] split along their
  second axis. `metrics` is one float32 array [n, len(metric_names)] (one transfer, not one per
  metric and step). `traces` counts how often it was traced: once per distinct n."""

  def __init__(self, setup: Setup):
    self.traces = 0
    self.metric_names: tuple[str, ...] = ()
    steps = step_lib.unrolled_steps(step_lib.make_train_step(
        setup.method, setup.optimizers, ema_decay=setup.config.train.ema_decay))

    def counted(state, batches):
      self.traces += 1  # at trace time only
      state, metrics = steps(state, batches)
      self.metric_names = tuple(metrics)
      return state, jnp.stack([jnp.asarray(v, jnp.float32) for v in metrics.values()], axis=1)

    self._fn = jax.jit(counted, in_shardings=(setup.state_sharding, setup.stacked_sharding),
                       out_shardings=(setup.state_sharding, setup.state_sharding),
                       donate_argnums=0)

  def __call__(self, state: TrainState, batches: Batch) -> tuple[TrainState, jax.Array]:
    return self._fn(state, batches)


def make_setup(config: ml_collections.ConfigDict, *, spec: DataSpec | None = None,
               example: Mapping[str, Any] | None = None,
               frozen: Mapping[str, FrozenPart] | None = None) -> Setup:
  """Builds a run's `Setup`. Nothing is compiled or initialised yet.

  Args:
    config: a resolved config (`gen_jax.train.config.resolve`).
    spec: the data's description; default: read from the training dataset's info.
    example: one training batch (arrays or `jax.ShapeDtypeStruct`s, batch axis included);
      default: the training iterator's first batch (which reads the data).
    frozen: the method's frozen parts; default: restored from the workdirs `config.frozen` names.

  Raises:
    ConfigError: optimizer overrides for players the method does not have.
    ValueError: a batch size the number of devices does not divide.
  """
  parallel.check_batch_size(config.data.batch_size)
  if config.data.eval_split:
    parallel.check_batch_size(config.data.eval_batch_size or config.data.batch_size,
                              "data.eval_batch_size")
  spec = data_spec(config) if spec is None else spec
  if example is None:
    example = first_batch(load_data(config, config.data.train_split, train=True))
  method_frozen = restore_frozen(config) if frozen is None else dict(frozen)
  method = build_method(config, spec, method_frozen)
  config_lib.check_players(config, [p.name for p in method.players])
  # The players themselves, not their names: a player's `repeats` sets its schedule's pace.
  optimizers = optimizers_lib.make_optimizers(config.optim, method.players,
                                              config.train.num_steps)
  mesh = parallel.make_mesh()
  return Setup(config=config, spec=spec, example=abstract_batch(example), method=method,
               optimizers=optimizers, frozen=method_frozen, mesh=mesh,
               state_sharding=parallel.replicated(mesh),
               batch_sharding=parallel.batch_sharding(mesh),
               stacked_sharding=parallel.stacked_batch_sharding(mesh))


def from_description(config: ml_collections.ConfigDict, description: Mapping[str, Any]
                     ) -> Setup:
  """The `Setup` of a saved run from its config and `Setup.describe()`: reads no training data
  and no frozen part's workdir (their variables come with the run's checkpoint)."""
  frozen = None
  if "frozen" in description:
    frozen = _frozen_from_description(description["frozen"])
  return make_setup(config, spec=DataSpec.from_dict(description["data_spec"]),
                    example=example_from_dict(description["example"]), frozen=frozen)


@dataclasses.dataclass(frozen=True)
class Run:
  """A trained run restored from its workdir: `load_run`."""

  config: ml_collections.ConfigDict
  setup: Setup
  state: TrainState
  step: int


def _checkpointer(workdir: str | Path) -> checkpoint_lib.Checkpointer:
  directory = Path(workdir) / "checkpoints"
  if not directory.is_dir():
    raise checkpoint_lib.NoGoodCheckpointError(
        f"{workdir} holds no checkpoints/ folder: name the workdir of a run that has saved a "
        f"checkpoint.")
  return checkpoint_lib.Checkpointer(directory, max_to_keep=1000, read_only=True)


def saved_setup(workdir: str | Path) -> Setup:
  """The `Setup` of the config and data description saved with `workdir`'s newest checkpoint
  whose metadata is complete; restores no arrays and reads no training data (checkpoints
  written before the description was saved with them read the first training batch).

  Raises:
    NoGoodCheckpointError: the workdir holds no readable checkpoint.
    ConfigError: the saved config is not valid any more (a key was renamed or removed).
  """
  checkpointer = _checkpointer(workdir)
  try:
    meta = checkpointer.read_meta()
  finally:
    checkpointer.close()
  config = config_lib.from_dict(meta["config"])
  if "setup" in meta:
    return from_description(config, meta["setup"])
  return make_setup(config)


def load_run(workdir: str | Path) -> Run:
  """The newest good checkpoint of `workdir` with its config and `Setup` (`saved_setup`).

  Read-only (no lock taken and nothing moved), so a run can be loaded while it trains.

  Raises:
    NoGoodCheckpointError: the workdir holds no checkpoint that can be restored (or none).
    CheckpointMismatchError: the saved arrays do not fit the state the saved config builds.
    ConfigError: the saved config is not valid any more (a key was renamed or removed).
  """
  setup = saved_setup(workdir)
  checkpointer = _checkpointer(workdir)
  try:
    step, state, _ = checkpointer.restore(
        setup.abstract_state(), config_lib.to_dict(setup.config),
        defaults=config_lib.to_dict(config_lib.defaults(setup.config.method)))
  finally:
    checkpointer.close()
  return Run(config=setup.config, setup=setup, state=state, step=step)


def load_checkpoint(workdir: str | Path) -> tuple[ml_collections.ConfigDict, Method, TrainState]:
  """The config, the method and the newest good train state of a workdir (see `load_run`).

  For sampling and notebooks: `config, method, state = load_checkpoint("runs/lm_python")`,
  then `method.sample(state.variables(), rng, 8)`.
  """
  run = load_run(workdir)
  return run.config, run.setup.method, run.state
