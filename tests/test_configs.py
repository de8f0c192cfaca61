"""Every experiment config: its documented variants pass the schema's checks, and its tiny
variant trains (here, or in the method's test that `TRAINED_BY` names)."""

import importlib.util
import math
from pathlib import Path

import pytest

from gen_jax.train import config as config_lib
from gen_jax.train.loop import train_and_evaluate

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "experiments/configs").glob("*.py"))
# Configs whose data needs a download; they must still resolve, but cannot train here.
NEEDS_DOWNLOAD = ("mnist", "cifar10", "celeb_a", "shakespeare")
# Configs whose tiny variant a method's test trains through the loop and checks as
# test_tiny_variant_trains would (the steps, one trace, finite evaluation metrics), and more.
_VAE = "methods/test_vae.py::test_tiny_config_trains_evaluates_and_writes_samples"
_GAN = "methods/test_gan.py::test_tiny_config_trains_and_writes_samples_and_gan_lab_frames"
TRAINED_BY = {
    "vae_digits": _VAE, "ae_digits": _VAE, "gan_ring8": _GAN, "gan_grid25": _GAN,
    "frozen_captioner_digits": "methods/test_frozen_captioner.py::test_both_stages_train_"
                               "through_the_loop_and_the_language_model_stays_bitwise",
}


def _load(path: Path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_default_config_resolves_and_documents_its_command(path):
  module = _load(path)
  config = config_lib.resolve(module.get_config())
  assert config.method
  assert f"--config experiments/configs/{path.name}" in module.__doc__, "no command in docstring"
  # Built on the full defaults, so that any key can be overridden on the command line.
  raw = module.get_config()
  assert set(raw.keys()) == set(config_lib.defaults().keys())
  assert set(raw.train.keys()) == set(config_lib.defaults().train.keys())


# Every documented variant of each file (`get_config(arg)`), beyond "" and "tiny".
VARIANTS = {
    "dcgan_digits": ("transpose",), "dcgan_mnist": ("conditional", "transpose", "conditional,tiny"),
    "ddpm_toy2d": ("grid25", "swiss_roll", "grid25,tiny"), "vae_digits": ("iwae", "iwae,tiny"),
    "ddpm_digits_text": ("all", "all,tiny"),
    "gan_ring8": ("collapse", "conditional", "conditional,tiny"),
    "gan_grid25": ("collapse", "conditional", "conditional,tiny"),
    "pixelcnn_digits": ("conditional", "plain", "conditional,tiny", "plain,tiny"),
    "imagetf_digits": ("conditional", "sinusoidal", "conditional,tiny", "sinusoidal,tiny"),
    "pixelcnn_mnist": ("conditional", "conditional,tiny"),
    "imagetf_mnist": ("conditional", "conditional,tiny"),
    "pixelcnn_cifar10": ("categorical", "categorical,tiny"),
    "vqvae_digits": ("rq2", "rq4", "rq2,separate", "rq2,tiny"),
    "code_prior_digits": ("conditional", "conditional,tiny"),
    "vqvae_mnist": ("rq4", "rq4,tiny"),
    "code_prior_mnist": ("conditional", "conditional,tiny"),
    "vqvae_cifar10": ("vq", "vq,tiny"),
    "code_prior_cifar10": ("conditional", "conditional,tiny"),
    "class_ascent_digits": ("data", "data,tiny"),
    "classifier_digits": ("adversarial", "adversarial,tiny"),
    "style_transfer": ("lbfgs", "noise", "256", "vgg", "lbfgs,tiny"),
    "nerf_scene": ("64", "coarse", "coarse,tiny"),
    "prefix_tuning_python": ("all", "all,tiny"),
}
CASES = [(p, arg) for p in CONFIGS for arg in ("", "tiny", *VARIANTS.get(p.stem, ()))]


@pytest.mark.parametrize("path,arg", CASES, ids=[f"{p.stem}:{arg}" for p, arg in CASES])
def test_every_variant_passes_the_schema_checks(path, arg):
  # resolve() checks every value's type and range, and the splits and keys against the dataset.
  raw = _load(path).get_config(arg)
  config = config_lib.resolve(raw)
  assert config_lib.to_dict(config_lib.resolve(config)) == config_lib.to_dict(config)
  assert config.data.name == raw.data.name and config.train.num_steps == raw.train.num_steps


@pytest.mark.parametrize("path", [p for p in CONFIGS if not any(n in p.stem for n in NEEDS_DOWNLOAD)
                                  and p.stem not in TRAINED_BY], ids=lambda p: p.stem)
def test_tiny_variant_trains(path, tmp_path):
  module = _load(path)
  config = module.get_config("tiny")
  # A method with frozen parts trains on runs of the tiny configs that its file names.
  for part, name in getattr(module, "FROZEN_CONFIGS", {}).items():
    train_and_evaluate(_load(path.parent / f"{name}.py").get_config("tiny"), tmp_path / part)
    config.frozen[part] = str(tmp_path / part)
  result = train_and_evaluate(config, tmp_path / "run")
  assert int(result.state.step) == config.train.num_steps
  assert result.traces == 1
  assert all(math.isfinite(v) for v in result.eval_metrics.values())


def test_the_tests_that_train_the_other_tiny_variants_exist():
  root = Path(__file__).resolve().parent
  for name, test in TRAINED_BY.items():
    path, function = test.split("::")
    assert (root / path).is_file() and f"def {function}(" in (root / path).read_text(), name
    assert f'"{name}"' in (root / path).read_text(), f"{path} does not name {name}"
