"""The setup factory: a saved run rebuilt without its data, frozen parts handed to a method
that is added as one new module, and checkpoints from before a schema key existed."""

import json
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

import gen_jax.methods
from gen_jax import data as data_lib
from gen_jax.train import checkpoint as checkpoint_lib
from gen_jax.train import config as config_lib
from gen_jax.train import setup as setup_lib
from gen_jax.train.loop import load_checkpoint, train_and_evaluate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_loop import tiny_config  # pylint: disable=wrong-import-position


def assert_trees_equal(a, b):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert jax.tree.structure(a) == jax.tree.structure(b) and leaves_a
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def no_data(*args, **kwargs):
  raise AssertionError(f"the training data were read: load{args}")


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("classifier")
  result = train_and_evaluate(tiny_config(), workdir)
  return workdir, result


def test_a_saved_run_is_rebuilt_without_reading_its_data(classifier_run, monkeypatch):
  workdir, result = classifier_run
  monkeypatch.setattr(data_lib, "load", no_data)
  config, method, state = load_checkpoint(workdir)
  assert_trees_equal(state, result.state)
  assert config.method == "classifier" and int(state.step) == 6
  saved = setup_lib.saved_setup(workdir)
  assert saved.example["image"].shape == (32, 8, 8, 1)
  assert saved.example["image"].dtype == np.float32  # after scale_to_unit, as the step sees it
  assert saved.spec.num_levels == 17 and saved.spec.features["image"].dtype == "uint8"


def test_checkpoints_saved_without_a_description_still_load(tmp_path, monkeypatch):
  # Checkpoints written before the data description was saved with them: rebuilt from the
  # training data's first batch.
  monkeypatch.setattr(setup_lib.Setup, "describe", lambda self: None)
  result = train_and_evaluate(tiny_config(num_steps=3), tmp_path)
  meta = json.loads((tmp_path / "checkpoints/3/meta/metadata").read_text())
  assert "setup" not in meta
  _, _, state = load_checkpoint(tmp_path)
  assert_trees_equal(state, result.state)


def test_a_run_saved_before_a_schema_key_existed_resumes(tmp_path):
  # The saved config lacks a key added to the schema since (here label_smoothing): it held
  # the default then, so the run continues; a value other than the default would be a change.
  config = tiny_config(num_steps=3)
  train_and_evaluate(config, tmp_path)
  meta_file = tmp_path / "checkpoints/3/meta/metadata"
  meta = json.loads(meta_file.read_text())
  del meta["config"]["model"]["label_smoothing"]
  meta_file.write_text(json.dumps(meta))
  resumed = train_and_evaluate(tiny_config(num_steps=6), tmp_path)
  assert resumed.resumed_from == 3
  changed = tiny_config(num_steps=9)
  changed.model.label_smoothing = 0.1
  with pytest.raises(checkpoint_lib.CheckpointMismatchError,
                     match=r"model\.label_smoothing: 0\.0 -> 0\.1"):
    train_and_evaluate(changed, tmp_path)


def test_config_differences_fill_absent_keys_with_the_defaults():
  saved = {"method": "classifier", "model": {"widths": [8, 16]}}
  current = {"method": "classifier", "model": {"widths": [8, 16], "feature_dim": 16}}
  assert checkpoint_lib.config_differences(saved, current) == [
      "model.feature_dim: '<absent>' -> 16"]
  assert checkpoint_lib.config_differences(saved, current, {"model": {"feature_dim": 16}}) == []
  assert checkpoint_lib.config_differences(saved, current, {"model": {"feature_dim": 128}}) == [
      "model.feature_dim: 128 -> 16"]


# A method added as one module, with no other edit: a linear probe that trains on the features
# of a frozen, trained classifier. It keeps the classifier's variables in its model state.
PROBE = textwrap.dedent('''
    import dataclasses
    from typing import Any
    import jax.numpy as jnp
    import optax
    from gen_jax.methods.base import Player

    FROZEN_PARTS = ("backbone",)
    SAMPLING_KEYS = frozenset()

    def default_model_config():
      return dict(num_classes=10)

    @dataclasses.dataclass(frozen=True)
    class Probe:
      backbone: Any
      backbone_variables: Any
      num_classes: int

      @property
      def players(self):
        return (Player("probe", self.loss),)

      def init(self, rng, batch):
        dim = self.backbone.network.feature_dim
        return {"params": {"probe": {"w": jnp.zeros((dim, self.num_classes))}},
                "model_state": {"frozen": {"backbone": self.backbone_variables}}}

      def _logits(self, w, frozen, images):
        return self.backbone.features(frozen["backbone"], images) @ w["w"]

      def loss(self, params_all, w, batch, rng, model_state):
        logits = self._logits(w, model_state["frozen"], batch["image"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return loss, ({}, model_state)

      def evaluate(self, variables, batch, rng):
        logits = self._logits(variables["params"]["probe"], variables["model_state"]["frozen"],
                              batch["image"])
        return {"accuracy": (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)}

    def from_config(config, spec, frozen):
      part = frozen["backbone"]
      return Probe(part.method, part.variables, config.model.num_classes)
''')


@pytest.fixture
def probe_method(tmp_path, monkeypatch):
  package = tmp_path / "extra_methods"
  package.mkdir()
  (package / "probe.py").write_text(PROBE)
  monkeypatch.setattr(gen_jax.methods, "__path__", [*gen_jax.methods.__path__, str(package)])
  yield
  sys.modules.pop("gen_jax.methods.probe", None)


def probe_config(backbone: Path | None, num_steps: int = 4):
  config = tiny_config(num_steps=num_steps)
  config.method = "probe"
  config.model = {"num_classes": 10}
  if backbone is not None:
    config.frozen = {"backbone": str(backbone)}
  return config


def test_a_frozen_run_is_handed_to_a_new_method(classifier_run, probe_method, tmp_path):
  backbone, _ = classifier_run
  _, _, backbone_state = load_checkpoint(backbone)
  result = train_and_evaluate(probe_config(backbone), tmp_path / "probe")
  # The classifier's restored variables (EMA when kept), untouched by the probe's training.
  assert_trees_equal(result.state.model_state["frozen"]["backbone"],
                     backbone_state.variables())
  assert float(np.abs(result.state.params["probe"]["w"]).sum()) > 0  # the probe trained
  assert result.eval_metrics["accuracy"] > 0.1
  _, _, state = load_checkpoint(tmp_path / "probe")
  assert_trees_equal(state, result.state)
  # The probe's checkpoints hold the backbone: loading it needs neither the backbone's workdir
  # nor the data.
  moved = tmp_path / "moved_backbone"
  backbone.rename(moved)
  try:
    _, method, state = load_checkpoint(tmp_path / "probe")
  finally:
    moved.rename(backbone)
  assert_trees_equal(state, result.state)
  assert method.backbone.network.feature_dim == 16


def test_frozen_parts_are_required_and_checked(classifier_run, probe_method, tmp_path):
  backbone, _ = classifier_run
  with pytest.raises(config_lib.ConfigError, match=r"config\.frozen\.backbone must be a "
                     r"non-empty string .*: name the workdir of a trained run"):
    config_lib.resolve(probe_config(None))
  with pytest.raises(config_lib.ConfigError, match=r"Unknown config key\(s\): frozen\.classifier"):
    config = probe_config(backbone)
    config.frozen = {"backbone": str(backbone), "classifier": str(backbone)}
    config_lib.resolve(config)
  with pytest.raises(checkpoint_lib.NoGoodCheckpointError,
                     match=r"config\.frozen\.backbone = .* names no trained run: .*holds no "
                           r"checkpoints/ folder"):
    train_and_evaluate(probe_config(tmp_path / "nowhere"), tmp_path / "probe")
  # A resumed run keeps its frozen part: another workdir there is another model.
  train_and_evaluate(probe_config(backbone, num_steps=2), tmp_path / "probe")
  other = tmp_path / "other_classifier"
  train_and_evaluate(tiny_config(num_steps=3), other)
  with pytest.raises(checkpoint_lib.CheckpointMismatchError,
                     match=rf"frozen\.backbone: '{backbone}' -> '{other}'"):
    train_and_evaluate(probe_config(other, num_steps=4), tmp_path / "probe")
