"""The method contract: `from_config(config, spec)` with a JSON data spec, and methods that never
touch the data or the figures (no import of gen_jax.data or gen_jax.viz)."""

import ast
import importlib.util
import inspect
import json
import pkgutil
from pathlib import Path

import jax
import numpy as np
import pytest

from gen_jax import methods
from gen_jax.methods.base import DataSpec, Feature
from gen_jax.train import config as config_lib
from gen_jax.train.loop import build_method

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(m.name for m in pkgutil.iter_modules(methods.__path__) if m.name != "base")


def load_config(name: str, arg: str):
  spec = importlib.util.spec_from_file_location(name, ROOT / "experiments/configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


class Info:
  """A stand-in for gen_jax.data.DatasetInfo: what `DataSpec.from_info` reads."""

  name = "toy/nested"
  element_spec = {"image": jax.ShapeDtypeStruct((8, 8, 1), np.uint8),
                  "label": jax.ShapeDtypeStruct((), np.int32),
                  "extra": {"mask": jax.ShapeDtypeStruct((3,), np.bool_)}}
  num_levels = 17
  num_classes = 10
  vocab_size = None
  mixture = object()  # not JSON: never part of the spec


def test_data_spec_is_plain_json_and_round_trips():
  spec = DataSpec.from_info(Info())
  assert spec.features == {"image": Feature((8, 8, 1), "uint8"), "label": Feature((), "int32"),
                           "extra/mask": Feature((3,), "bool")}
  assert (spec.num_levels, spec.num_classes, spec.vocab_size, spec.name) == (17, 10, None,
                                                                             "toy/nested")
  assert DataSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
  batch = {"image": np.zeros((4, 8, 8, 1), np.uint8), "label": np.zeros(4, np.int32),
           "extra": {"mask": np.zeros((4, 3), bool)}}
  assert DataSpec.from_batch(batch, num_levels=17, num_classes=10, name="toy/nested") == spec
  assert spec.shape("image") == (8, 8, 1)
  with pytest.raises(KeyError, match=r"no entry 'point' \(model.data_key = 'point'\); their "
                     r"entries are extra/mask, image, label: set model.data_key"):
    spec.shape("point", what="model.data_key")


def _imports(path: Path) -> set[str]:
  out = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      out.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      out.add(node.module)
      out.update(f"{node.module}.{alias.name}" for alias in node.names)
  return out


@pytest.mark.parametrize("name", MODULES + ["base"])
def test_methods_never_import_the_data_or_the_figures(name):
  imports = _imports(Path(methods.__path__[0]) / f"{name}.py")
  assert not [i for i in imports if i.startswith(("gen_jax.data", "gen_jax.viz"))], imports


@pytest.mark.parametrize("name", MODULES)
def test_every_method_is_built_from_a_config_and_a_data_spec(name):
  module = importlib.import_module(f"gen_jax.methods.{name}")
  parameters = list(inspect.signature(module.from_config).parameters)
  assert parameters[:2] == ["config", "spec"], parameters


def test_build_method_hands_the_spec_to_the_method():
  config = config_lib.resolve(load_config("ddpm_toy2d", "tiny"))
  spec = DataSpec(features={"point": Feature((3,), "float32"), "mode": Feature((), "int32")})
  assert build_method(config, spec).example_shape == (3,)
  # Without a spec, the loop reads the training data's info (toy2d's needs no files).
  assert build_method(config).example_shape == (2,)
