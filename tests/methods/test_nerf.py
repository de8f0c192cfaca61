"""The NeRF method: a train step lowers the loss, evaluation's PSNR against a known error, the
turntable samples, non-square views whose pixels see their own rays, the turntable's depth
shading against a ray-plane oracle, and bad settings refused with what to change."""

import dataclasses
import importlib.util
import math
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.data import scene as scene_lib
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


class _Ground(nn.Module):
  """A stub field: density `density` where z < `plane` (0 above), and as colour the unit viewing
  direction mapped to [0, 1], (d / |d| + 1) / 2, so a pixel's colour says which ray it rendered.

  Attributes:
    plane: the height below which space is filled.
    density: the density there, per unit length (1e4: opaque within one sample).
  """

  plane: float = 0.0
  density: float = 1e4

  @nn.compact
  def __call__(self, points, directions):
    self.param("unused", nn.initializers.zeros, ())  # the method reads params["coarse"]
    unit = directions / jnp.linalg.norm(directions, axis=-1, keepdims=True)
    sigma = jnp.where(points[..., 2] < self.plane, self.density, 0.0)
    return sigma, jnp.broadcast_to((unit + 1.0) / 2.0, points.shape)


def _directions(pose: np.ndarray, focal: float, height: int, width: int) -> np.ndarray:
  """[h, w, 3] float64 ray directions by hand: pixel (row, col) at camera-frame ((col + 0.5 -
  w / 2) / f, -(row + 0.5 - h / 2) / f, -1), rotated into the world by the pose."""
  out = np.zeros((height, width, 3))
  for row in range(height):
    for col in range(width):
      camera = np.array([(col + 0.5 - width / 2) / focal, -(row + 0.5 - height / 2) / focal, -1])
      out[row, col] = pose[:3, :3] @ camera
  return out


def test_a_non_square_view_renders_each_pixel_through_its_own_ray():
  # 6 x 10 views of a field that fills all space and colours each ray by its direction: every
  # pixel of the rendering, and every pixel the loss draws, must show the direction of the ray
  # through that pixel's centre, computed here by hand.
  height, width = 6, 10
  method = nerf.from_config(_config(eval_chunk=16), _spec(image=(height, width, 3)))
  method = dataclasses.replace(method, coarse=_Ground(plane=1e3), fine=_Ground(plane=1e3))
  variables = method.init(jax.random.PRNGKey(0), None)
  poses = np.stack([scene_lib.orbit_pose(20.0, 35.0), scene_lib.orbit_pose(250.0, 15.0)])
  focal = np.array([7.0, 11.0], np.float32)
  views = method.render_views(variables, jax.random.PRNGKey(1), poses.astype(np.float32), focal)
  assert views["rgb"].shape == (2, height, width, 3) == views["rgb_coarse"].shape
  assert views["depth"].shape == views["opacity"].shape == (2, height, width)
  want = np.stack([_directions(p, float(f), height, width) for p, f in zip(poses, focal)])
  want = (want / np.linalg.norm(want, axis=-1, keepdims=True) + 1.0) / 2.0
  np.testing.assert_allclose(np.asarray(views["opacity"]), 1.0, atol=1e-6)
  np.testing.assert_allclose(np.asarray(views["rgb"]), want, atol=1e-5)
  # Evaluation and the training loss read the same pixels of images [n, h, w, 3] (here the
  # expected colours as [-1, 1] floats): no error, while the images flipped left-right (the
  # same shape, other rays) give a large one.
  batch = {"image": (2.0 * want - 1.0).astype(np.float32), "pose": poses.astype(np.float32),
           "focal": focal}
  assert np.all(np.asarray(method.evaluate(variables, batch, jax.random.PRNGKey(2))["mse"])
                < 1e-10)
  params = variables["params"][nerf.PLAYER]
  loss_fn = jax.jit(method.loss)  # as the train step runs it (one compilation, not op by op)
  _, (metrics, _) = loss_fn(variables["params"], params, batch, jax.random.PRNGKey(3), {})
  assert float(metrics["mse"]) < 1e-10
  flipped = {**batch, "image": batch["image"][:, :, ::-1]}
  _, (metrics, _) = loss_fn(variables["params"], params, flipped, jax.random.PRNGKey(3), {})
  assert float(metrics["mse"]) > 1e-3


def test_the_turntable_shades_depth_near_white_far_black():
  # The stub fills the half-space below the ground plane z = 0, so a ray's rendered depth is
  # its first stratum midpoint t_i = near + (i + 1/2) (far - near) / n below the plane (or far
  # where it stays above it within [near, far]); the shading is 2 (1 - (depth - near) / (far -
  # near)) - 1: 1 at near, -1 at far. 6 x 10 frames: the turntable's focal comes from the width.
  height, width, n, near, far = 6, 10, 16, 2.0, 6.0
  method = nerf.from_config(_config(num_coarse=n, num_fine=0, near=near, far=far,
                                    turntable_radius=4.0, turntable_elevation=15.0),
                            _spec(image=(height, width, 3)))
  method = dataclasses.replace(method, coarse=_Ground())
  variables = method.init(jax.random.PRNGKey(0), None)
  out = jax.jit(lambda v, r: method.sample(v, r, 3))(variables, jax.random.PRNGKey(1))
  shading = np.asarray(out["turntable_depth"])[0, ..., 0]  # [3, h, w]
  assert shading.shape == (3, height, width)
  focal = 0.5 * width / math.tan(0.5 * method.camera_angle_x)
  t = near + (np.arange(n) + 0.5) * (far - near) / n
  checked = 0
  for frame, azimuth in enumerate((0.0, 120.0, 240.0)):
    pose = scene_lib.orbit_pose(azimuth, 15.0, 4.0)
    d = _directions(pose, focal, height, width)
    z = pose[2, 3] + t * d[..., 2:]  # [h, w, n] heights of the samples
    below = z < 0
    depth = np.where(below.any(-1), t[np.argmax(below, axis=-1)], far)
    want = 2.0 * (1.0 - (depth - near) / (far - near)) - 1.0
    clear = np.abs(z).min(-1) > 1e-4  # no sample within float32 rounding of the plane
    np.testing.assert_allclose(shading[frame][clear], want[clear], atol=1e-5)
    checked += clear.sum()
    # Ground where the depth shading is above -1, the background (white) elsewhere.
    rgb = np.asarray(out["turntable"])[0, frame]
    unit = d / np.linalg.norm(d, axis=-1, keepdims=True)
    np.testing.assert_allclose(rgb[clear], np.where(below.any(-1, keepdims=True), unit, 1.0)[clear],
                               atol=1e-5)
  assert checked >= 0.9 * 3 * height * width
  # Low cameras (15 degrees up): the top rows see past `far` (-1), the bottom ones the ground
  # near the camera.
  assert np.all(shading[:, 0] == -1.0) and shading.max() > 0.0
  assert len(np.unique(np.round(shading, 4))) >= 4
