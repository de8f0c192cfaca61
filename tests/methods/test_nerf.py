"""The NeRF method: a train step lowers the loss, evaluation's PSNR against a known error, the
turntable samples, and bad settings refused with what to change."""

import importlib.util
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.errors import SettingError
from gen_jax.methods import nerf
from gen_jax.methods.base import DataSpec, Feature
from gen_jax.train import config as config_lib
from gen_jax.train import setup as setup_lib

ROOT = Path(__file__).resolve().parents[2]
SIZE = 8


def _config(**model):
  spec = importlib.util.spec_from_file_location("nerf_scene",
                                                ROOT / "experiments/configs/nerf_scene.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("tiny")
  config.model.update(model)
  return config_lib.resolve(config)


def _spec(image=(SIZE, SIZE, 3), pose=(4, 4), focal=()):
  return DataSpec(features={"image": Feature(image, "uint8"), "pose": Feature(pose, "float32"),
                            "focal": Feature(focal, "float32")}, name="scene/test")


def _batch(num: int = 2, colour: float = 0.4) -> dict:
  poses = np.stack([np.asarray(p) for p in nerf.vr.orbit_poses(
      jnp.linspace(0.0, 180.0, num), 30.0, 4.0)])
  return {"image": np.full((num, SIZE, SIZE, 3), round(colour * 255), np.uint8),
          "pose": poses.astype(np.float32), "focal": np.full(num, 10.0, np.float32)}


def test_a_train_step_lowers_the_loss_on_a_tiny_batch():
  config = _config(rays_per_batch=256)
  config.optim.update(learning_rate=1e-2, warmup_steps=0, schedule="constant")
  batch = _batch(colour=0.2)
  setup = setup_lib.make_setup(config, spec=_spec(), example=batch)
  state = setup.init_state(batch)
  step = setup.train_step()
  losses = []
  for _ in range(8):
    state, metrics = step(state, batch)
    losses.append(float(metrics["field/loss"]))
  assert losses[-1] < 0.5 * losses[0], losses
  assert set(metrics) >= {"field/loss", "field/mse", "field/psnr", "field/psnr_coarse"}


def _transparent(method, rng):
  """Variables whose densities are softplus(-60), about 1e-26: every ray shows the background."""
  variables = method.init(rng, None)
  for level in variables["params"][nerf.PLAYER].values():
    level["trunk"]["out"]["bias"] = level["trunk"]["out"]["bias"].at[0].set(-60.0)
    level["trunk"]["out"]["kernel"] = jnp.zeros_like(level["trunk"]["out"]["kernel"])
  return variables


@pytest.mark.parametrize("background", [1.0, 0.0])
def test_evaluate_returns_the_psnr_of_a_known_error(background):
  method = nerf.from_config(_config(background=background, eval_chunk=48), _spec())
  variables = _transparent(method, jax.random.PRNGKey(0))
  batch = _batch(num=3, colour=0.4)
  out = method.evaluate(variables, batch, jax.random.PRNGKey(1))
  grey = round(0.4 * 255) / 255
  mse = (background - grey) ** 2
  np.testing.assert_allclose(np.asarray(out["mse"]), mse, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(out["psnr"]), -10 * math.log10(mse), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(out["psnr_coarse"]), -10 * math.log10(mse), rtol=1e-5)
  assert out["psnr"].shape == (3,)
  # The same images as [-1, 1] floats (`scale_to_unit`) give the same numbers.
  scaled = {**batch, "image": batch["image"].astype(np.float32) * (2 / 255) - 1}
  np.testing.assert_allclose(np.asarray(method.evaluate(variables, scaled,
                                                        jax.random.PRNGKey(1))["psnr"]),
                             np.asarray(out["psnr"]), rtol=1e-5)


def test_sample_renders_a_turntable():
  method = nerf.from_config(_config(num_fine=0), _spec())
  variables = method.init(jax.random.PRNGKey(0), None)
  out = jax.jit(lambda v, r: method.sample(v, r, 5))(variables, jax.random.PRNGKey(1))
  assert out["turntable"].shape == (1, 5, SIZE, SIZE, 3)
  assert out["turntable_depth"].shape == (1, 5, SIZE, SIZE, 1)
  for value in out.values():
    assert np.all(np.abs(np.asarray(value)) <= 1.0)
  poses = np.asarray(method.turntable_poses(4))
  np.testing.assert_allclose(poses[:, :3, 3], [[3.4641, 0, 2], [0, 3.4641, 2], [-3.4641, 0, 2],
                                               [0, -3.4641, 2]], atol=1e-3)


def test_render_views_chunks_give_the_same_image():
  method = nerf.from_config(_config(eval_chunk=7), _spec())
  variables = method.init(jax.random.PRNGKey(0), None)
  batch = _batch()
  a = method.render_views(variables, jax.random.PRNGKey(2), batch["pose"], batch["focal"])
  whole = nerf.NeRF(**{**method.__dict__, "eval_chunk": 2 * SIZE * SIZE})
  rays = nerf.vr.camera_rays(batch["pose"], batch["focal"], SIZE, SIZE)
  direct = whole.render_rays(variables["params"][nerf.PLAYER], rays, jax.random.PRNGKey(0),
                             perturb=False)
  np.testing.assert_allclose(np.asarray(a["rgb_coarse"]), np.asarray(direct["coarse"].rgb),
                             atol=1e-6)
  assert a["rgb"].shape == (2, SIZE, SIZE, 3) and a["depth"].shape == (2, SIZE, SIZE)


def test_bad_settings_are_refused_with_what_to_change():
  with pytest.raises(SettingError, match=r"poses \[4, 4\].*are \(4, 3\): set model.pose_key"):
    nerf.from_config(_config(), _spec(pose=(4, 3)))
  with pytest.raises(SettingError, match=r"model.near = 6.0 must be below model.far = 2.0"):
    nerf.from_config(_config(near=6.0, far=2.0), _spec())
  with pytest.raises(SettingError, match=r"RGB images \[h, w, 3\]"):
    nerf.from_config(_config(), _spec(image=(SIZE, SIZE, 1)))
  with pytest.raises(SettingError, match="one focal length"):
    nerf.from_config(_config(), _spec(focal=(2,)))
  method = nerf.from_config(_config(), _spec())
  with pytest.raises(ValueError, match=r"got shape \(2, 16\)"):
    method.render_views(method.init(jax.random.PRNGKey(0), None), jax.random.PRNGKey(0),
                        np.zeros((2, 16)), 10.0)
  with pytest.raises(config_lib.ConfigError, match="config.model.num_coarse must be an integer "
                     "of at least 1"):
    _config(num_coarse=0)


def test_the_fine_field_renders_the_views_and_both_fields_are_trained():
  # The fine field made transparent (every ray shows the background) and the coarse field
  # opaque: evaluation scores the fine rendering, the loss is the sum of both fields' MSEs.
  method = nerf.from_config(_config(background=1.0, eval_chunk=48), _spec())
  variables = method.init(jax.random.PRNGKey(0), None)
  fine = variables["params"][nerf.PLAYER]["fine"]["trunk"]["out"]
  fine["bias"] = fine["bias"].at[0].set(-60.0)
  fine["kernel"] = jnp.zeros_like(fine["kernel"])
  coarse = variables["params"][nerf.PLAYER]["coarse"]["trunk"]["out"]
  coarse["bias"] = coarse["bias"].at[0].set(30.0)  # softplus(30): opaque at once
  batch = _batch(num=2, colour=1.0)  # white images: the background
  out = method.evaluate(variables, batch, jax.random.PRNGKey(1))
  np.testing.assert_allclose(np.asarray(out["mse"]), 0.0, atol=1e-10)
  assert np.all(np.asarray(out["psnr_coarse"]) < 40.0)  # the opaque coarse field is not white
  params = variables["params"][nerf.PLAYER]
  loss, (metrics, _) = method.loss(variables["params"], params, batch, jax.random.PRNGKey(2), {})
  psnr_to_mse = lambda p: 10.0 ** (-float(p) / 10.0)
  np.testing.assert_allclose(float(loss), psnr_to_mse(metrics["psnr"])
                             + psnr_to_mse(metrics["psnr_coarse"]), rtol=1e-4, atol=1e-9)
  assert float(loss) > 1e-3  # the coarse field's error counts
