"""experiments/main.py ends with one line, "Error: <message>", when a network or method refuses a
setting that the config schema lets through (gen_jax.errors.SettingError), and before any
training step: no checkpoint is written and no traceback is printed.

The schema (gen_jax.train.config) already refuses single values out of range, such as
`model.num_codes=0` or `model.label_dropout=1.5`; these cases are refused later, by the code that
reads the setting. One runs main.py as a subprocess (a refusal while the network is set up, inside
the loop); the rest build the method from the config directly (or trace its init) and expect a
SettingError that names the key.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from gen_jax.conditioning import TextConditional
from gen_jax.errors import SettingError
from gen_jax.methods import diffusion, gan, vae
from gen_jax.methods.base import DataSpec, Feature

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "experiments/configs"


def tiny(name: str, **model) -> ml_collections.ConfigDict:
  """`name`'s ":tiny" config with `model` set, unchecked by the schema."""
  spec = importlib.util.spec_from_file_location(name, CONFIGS / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("tiny")
  config.model.update(model)
  return config


@pytest.mark.parametrize("config,overrides,message", [
    # Each field is in range; the quantizer refuses the pair.
    ("vqvae_digits", ["--config.model.dead_code_threshold=1", "--config.model.ema_decay=0"],
     "model.dead_code_threshold=1.0 needs the EMA codebook statistics, but model.ema_decay=0 "),
])
def test_a_setting_the_method_refuses_ends_main_in_one_line(tmp_path, config, overrides,
                                                            message):
  out = subprocess.run([sys.executable, str(ROOT / "experiments/main.py"),
                        f"--config={CONFIGS}/{config}.py:tiny", f"--workdir={tmp_path}",
                        *overrides], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ))
  assert out.returncode == 1, out.stderr
  assert "Traceback" not in out.stderr, out.stderr
  # Before it, only the data set's first build may log (tests build it in a fresh folder).
  lines = out.stderr.rstrip("\n").splitlines()
  assert lines[-1].startswith(f"Error: {message}"), out.stderr
  assert [line for line in lines if "Error" in line] == lines[-1:], out.stderr
  steps = [p for p in (tmp_path / "checkpoints").glob("*") if p.name.isdigit()]
  assert steps == [], "a checkpoint was written"


POINTS = DataSpec(features={"point": Feature((2,), "float32"), "mode": Feature((), "int32")},
                  num_classes=8, name="ring8")


def _init_shapes(method):
  """Traces the method's init on an 8x8 batch (a network refuses its settings when it is set up)."""
  batch = {"image": jnp.zeros((2, 8, 8, 1))}
  return jax.eval_shape(lambda: method.init(jax.random.key(0), batch))


@pytest.mark.parametrize("build,message", [
    (lambda: diffusion.from_config(tiny("ddpm_digits_cond", label_dropout=1.5,
                                        image_shape=(8, 8, 1))),
     "model.label_dropout must be in [0, 1), got 1.5."),
    (lambda: diffusion.from_config(tiny("ddpm_digits", widths=(4, 4, 4, 4, 4),
                                        image_shape=(8, 8, 1))),
     "model.widths=(4, 4, 4, 4, 4) halves the 8x8 images 4 times, but their sides are not "
     "divisible by 16: use fewer widths."),
    (lambda: diffusion.from_config(tiny("ddpm_digits", sample_steps=51,
                                        image_shape=(8, 8, 1))),
     "model.sample_steps must be in [1, num_timesteps = 50], got 51."),
    (lambda: diffusion.from_config(tiny("ddpm_digits_text", prompts=("caf\u00e9",),
                                        image_shape=(8, 8, 1))),
     "model.prompts[0] = 'caf\u00e9' has bytes outside the text vocabulary"),
    (lambda: gan.from_config(tiny("gan_ring8", n_critic=0)), "model.n_critic must be >= 1"),
    (lambda: gan.from_config(tiny("cgan_digits", num_classes=0)),
     "model.label_key='label' makes the GAN class-conditional: set model.num_classes"),
    (lambda: vae.from_config(tiny("vae_digits", eval_chunk=3, image_shape=(8, 8, 1),
                                  num_levels=17)),
     "model.eval_chunk (3) must divide model.eval_samples (4)"),
    (lambda: vae.from_config(tiny("vae_digits", objective="iwae", posterior="deterministic",
                                  image_shape=(8, 8, 1), num_levels=17)),
     "the IWAE objective (model.objective='iwae') needs a posterior with a density"),
    (lambda: diffusion.from_config(tiny("ddpm_digits_text", network="unet",
                                        image_shape=(8, 8, 1))),
     "model.text_key='caption' makes the model text-conditional: set model.network='text_unet' "),
    (lambda: _init_shapes(diffusion.from_config(tiny("ddpm_digits", emb_features=7,
                                                     image_shape=(8, 8, 1)))),
     "model.emb_features=7: the time embedding's width must be even; "),
    (lambda: gan.from_config(tiny("gan_ring8", data_dim=3), POINTS),
     "model.data_dim=3, but the examples (model.data_key='point') have shape (2,): set "
     "model.data_dim=2."),
    (lambda: gan.from_config(tiny("gan_ring8", interpolation="spherical"), POINTS),
     "model.interpolation='spherical' draws latent paths as image grids, which mlp networks "
     "(points) do not make"),
    (lambda: diffusion.from_config(tiny("ddpm_toy2d", network="unet"), POINTS),
     "model.network='unet' denoises images [h, w, c], but the examples (model.data_key='point') "
     "have shape (2,): use model.network='mlp' for points."),
    (lambda: TextConditional(prompts=("a two",), max_len=8, drop_prob=1.0),
     "The prompt dropout probability must be in [0, 1), got 1.0: set model.label_dropout."),
])
def test_a_method_built_from_a_bad_setting_raises_a_setting_error(build, message):
  with pytest.raises(SettingError) as error:
    build()
  assert str(error.value).startswith(message), str(error.value)
