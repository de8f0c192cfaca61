"""What several benchmarks share: loading a config by name, training it through the real loop,
whole bundled splits as arrays, and the digits classifier whose penultimate features give the
Frechet distances of generated digits.

Run the benchmarks from the repository root (`python experiments/benchmarks/NAME.py`); Python
puts this folder on the path, so they `import common`.
"""

import dataclasses
import importlib.util
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import jax
import ml_collections
import numpy as np

from gen_jax import data as data_lib
from gen_jax import host_memory
from gen_jax.metrics.frechet import frechet_distance
from gen_jax.train import config as config_lib
from gen_jax.train import loop
from gen_jax.train import setup as setup_lib

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# The benchmarks are entry points: they keep freed memory like experiments/main.py (each sets its
# config's dispatch mode when it builds a step). GEN_JAX_KEEP_FREED_MEMORY=0 turns it off.
host_memory.keep_freed_memory()


def load_config(spec: str) -> ml_collections.ConfigDict:
  """`name[:arg]` -> experiments/configs/name.py's `get_config(arg)`."""
  name, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location(name, CONFIGS / f"{name}.py")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg)


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[str]
                    ) -> ml_collections.ConfigDict:
  """Sets each `"section.key=value"` of `overrides` in `config`, the value parsed as the type of
  the value it replaces (`True`/`False` for booleans); returns `config`."""
  for override in overrides:
    path, sep, text = override.partition("=")
    section, _, key = path.partition(".")
    if not sep or section not in config or key not in config[section]:
      sections = [k for k, v in config.items() if isinstance(v, ml_collections.ConfigDict)]
      raise ValueError(f"Override {override!r}: expected section.key=value with a key the config "
                       f"has (sections: {', '.join(sections)}).")
    old = config[section][key]
    if isinstance(old, bool):
      if text not in ("True", "False"):
        raise ValueError(f"Override {override!r}: {path} is a boolean, write True or False.")
      value = text == "True"
    else:
      value = text if isinstance(old, str) else type(old)(text)
    config[section][key] = value
  return config


class Rows(list):
  """A benchmark's results: `emit(row)` keeps the row and prints it as one JSON line."""

  def emit(self, row: dict) -> dict:
    self.append(row)
    print(json.dumps(row), flush=True)
    return row


def train(spec: str, workdir: Path, overrides: dict | None = None
          ) -> tuple[object, loop.TrainResult, float]:
  """Trains config `spec` with `{"section.key": value}` overrides (`{"seed": value}` for a
  top-level key) through `train_and_evaluate`; returns (method, result, seconds)."""
  config = load_config(spec)
  for key, value in (overrides or {}).items():
    section, _, name = key.rpartition(".")
    (config[section] if section else config)[name] = value
  tic = time.perf_counter()
  result = loop.train_and_evaluate(config, workdir)
  method = loop.build_method(config_lib.resolve(config))
  return method, result, time.perf_counter() - tic


def write_table(out: Path, lines: list[str], footer: str) -> None:
  """Prints the Markdown table `lines` and then `footer`, and writes the table to
  `out/table.md`."""
  text = "\n".join(lines)
  print("\n" + text + "\n\n" + footer)
  (out / "table.md").write_text(text + "\n")


def load_split(name: str, split: str, preprocess=()) -> dict[str, np.ndarray]:
  """A whole split of a bundled image dataset as arrays, in order, padding removed."""
  batches = list(data_lib.load(name, split, 512, 0, shuffle=False, num_epochs=1,
                               drop_remainder=False, preprocess=preprocess))
  out = {k: np.concatenate([b[k] for b in batches]) for k in ("image", "label")}
  valid = np.concatenate([b["valid"] for b in batches])
  return {k: v[valid] for k, v in out.items()}


@dataclasses.dataclass
class DigitsReference:
  """The classifier of experiments/configs/classifier_digits.py, trained by the benchmark that
  uses it, and the test split's features. `features(images)` takes images in [-1, 1]."""

  features: Callable[[np.ndarray], np.ndarray]
  logits: Callable[[np.ndarray], np.ndarray]
  test_images: np.ndarray
  test_labels: np.ndarray
  test_features: np.ndarray
  test_accuracy: float
  floor: float  # Frechet distance of the real train images' features to the test images'
  train_s: float

  def frechet(self, images: np.ndarray) -> float:
    """Frechet distance of `images`' features to the test split's."""
    return frechet_distance(self.features(images), self.test_features)

  def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
    """How often the classifier reads `images` as `labels`."""
    return float(np.mean(np.argmax(self.logits(images), -1) == np.asarray(labels)))


def _batched(fn, chunk: int = 500):
  fn = jax.jit(fn)
  return lambda x: np.concatenate([np.asarray(fn(x[i:i + chunk]))
                                   for i in range(0, len(x), chunk)])


def digits_reference(workdir: Path) -> DigitsReference:
  """Trains (or, when `workdir` holds the finished run, restores) the digits classifier."""
  method, result, seconds = train("classifier_digits", workdir, {"train.progress_bar": False})
  variables = result.state.variables()
  params = variables["params"]["classifier"]
  features = _batched(lambda images: method.features(variables, images))
  logits = _batched(lambda images: method.network.apply({"params": params}, images))
  train_images = load_split("digits", "train", ("scale_to_unit",))["image"]
  test = load_split("digits", "test", ("scale_to_unit",))
  test_features = features(test["image"])
  return DigitsReference(
      features=features, logits=logits, test_images=test["image"], test_labels=test["label"],
      test_features=test_features, test_accuracy=float(result.eval_metrics["accuracy"]),
      floor=frechet_distance(features(train_images), test_features), train_s=seconds)


def compiled_train_step(config: ml_collections.ConfigDict, steps_per_call: int = 0):
  """The train step of `config` as the loop builds it (`gen_jax.train.setup`: sharded, state
  donated), compiled by one call on the config's first training batch, already on the devices.
  Returns `(step_fn, state, batch)`: `state, metrics = step_fn(state, batch)` is one step; with
  `steps_per_call=k`, `batch` is the first k batches stacked and one call runs k steps (the
  loop's own jitted function)."""
  config = config_lib.resolve(config)
  host_memory.set_cpu_async_dispatch(config.train.cpu_async_dispatch)
  data = loop.load_data(config, config.data.train_split, train=True)
  batch = setup_lib.first_batch(data)
  setup = setup_lib.make_setup(config, example=batch)
  state = setup.init_state(batch)
  if steps_per_call:
    fn = setup.train_steps()
    device_batch = jax.device_put(data.next_batches(steps_per_call), setup.stacked_sharding)
  else:
    fn = setup.train_step()
    device_batch = jax.device_put(batch, setup.batch_sharding)
  state, metrics = fn(state, device_batch)  # compiles; the donated state is replaced
  jax.block_until_ready(metrics)
  return fn, state, device_batch


def jax_stepper(config: ml_collections.ConfigDict):
  """`run(steps) -> seconds per step` of `compiled_train_step(config)`, called back to back on
  its first batch, and the train state on the host as it was before the first timed step (the
  step donates the device copy)."""
  fn, state, device_batch = compiled_train_step(config)
  initial = jax.device_get(state)
  holder = {"state": state}

  def run(steps: int) -> float:
    tic = time.perf_counter()
    state, metrics = holder["state"], None
    for _ in range(steps):
      state, metrics = fn(state, device_batch)
    jax.block_until_ready((state, metrics))
    holder["state"] = state
    return (time.perf_counter() - tic) / steps

  return run, initial


def median_seconds(fn: Callable, *args, calls: int = 3) -> float:
  """Median seconds of `calls` calls of `fn(*args, key)` with keys PRNGKey(1), (2), ..., after
  one call with PRNGKey(0) that compiles it."""
  jax.block_until_ready(fn(*args, jax.random.PRNGKey(0)))
  times = []
  for i in range(calls):
    tic = time.perf_counter()
    jax.block_until_ready(fn(*args, jax.random.PRNGKey(i + 1)))
    times.append(time.perf_counter() - tic)
  return statistics.median(times)


def torch_runner(torch, step: Callable[[], object], threads: int) -> Callable[[int], float]:
  """`run(steps) -> seconds per step` of an eager PyTorch `step()` on `threads` intra-op threads
  (set before every timed round: the setting is global to the process), after 3 warm-up
  steps."""
  torch.set_num_threads(threads)
  for _ in range(3):
    step()

  def run(steps: int) -> float:
    torch.set_num_threads(threads)
    tic = time.perf_counter()
    for _ in range(steps):
      step()
    return (time.perf_counter() - tic) / steps

  return run


class BareStep:
  """The loop's jitted function (`steps_per_call` steps per call; 0: the lone step), compiled
  once and called back to back on batches already on the device."""

  def __init__(self, config, steps_per_call: int):
    self.fn, self.state, self.batch = compiled_train_step(config, steps_per_call)
    self.per_call = max(steps_per_call, 1)

  def seconds_per_step(self, steps: int) -> float:
    calls = max(1, steps // self.per_call)
    tic = time.perf_counter()
    for _ in range(calls):
      self.state, metrics = self.fn(self.state, self.batch)
    jax.block_until_ready((self.state, metrics))
    return (time.perf_counter() - tic) / (calls * self.per_call)
