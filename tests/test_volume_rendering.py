"""gen_jax.volume_rendering against closed forms and hand-built oracles: the quadrature on a
constant-density slab and on empty space, hierarchical samples against the coarse weights (a
Kolmogorov-Smirnov test), rays that hit the pixels a pinhole projection gives, and the NeRF
renderer against the exact ray tracer on a scene given as densities."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from gen_jax import volume_rendering as vr
from gen_jax.data import scene as scene_lib
from gen_jax.nn.nerf import positional_encoding


def test_a_constant_slab_has_the_closed_form_transmittance_and_depth():
  # sigma on [a, b) along a ray with |d| = 2 (depth t, length 2 t): the light passing the slab
  # is exp(-sigma * 2 (b - a)) exactly when the slab's ends are interval boundaries.
  sigma, a, b, far, norm = 0.7, 3.0, 4.5, 6.0, 2.0
  t = np.linspace(2.0, far, 401)[:-1]  # spacing 0.01: a and b are boundaries
  inside = (t >= a - 1e-9) & (t < b - 1e-9)
  colour = np.array([0.2, 0.5, 0.9])
  out = vr.composite(jnp.asarray(np.where(inside, sigma, 0.0), jnp.float32),
                     jnp.broadcast_to(jnp.asarray(colour, jnp.float32), (400, 3)),
                     jnp.asarray(t, jnp.float32), far=far, direction_norm=norm,
                     background=1.0)
  passed = math.exp(-sigma * norm * (b - a))
  np.testing.assert_allclose(float(out.opacity), 1.0 - passed, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(out.rgb), (1 - passed) * colour + passed, rtol=1e-5)
  # Expected depth: int_a^b t k e^{-k(t-a)} dt + passed * far with k = sigma |d| per unit depth;
  # the quadrature puts each interval's mass at its start, so it is low by at most one spacing.
  k = sigma * norm
  exact = (a + 1 / k) - (b + 1 / k) * passed + passed * far
  assert exact - 0.01 <= float(out.depth) <= exact + 1e-5
  np.testing.assert_allclose(float(out.depth), exact, atol=0.01)
  np.testing.assert_allclose(float(jnp.sum(out.weights)), float(out.opacity), rtol=1e-6)


def test_empty_space_is_transparent():
  t = vr.stratified_samples(jax.random.PRNGKey(0), 2.0, 6.0, 64, (5,))
  out = vr.composite(jnp.zeros((5, 64)), jnp.full((5, 64, 3), 0.3), t, far=6.0,
                     background=jnp.array([1.0, 0.5, 0.0]))
  np.testing.assert_array_equal(np.asarray(out.opacity), 0.0)
  np.testing.assert_array_equal(np.asarray(out.weights), 0.0)
  np.testing.assert_array_equal(np.asarray(out.rgb), np.tile([1.0, 0.5, 0.0], (5, 1)))
  np.testing.assert_allclose(np.asarray(out.depth), 6.0)


def test_stratified_samples_fill_each_stratum_once():
  t = np.asarray(vr.stratified_samples(jax.random.PRNGKey(1), 2.0, 6.0, 8, (1000,)))
  stratum = np.floor((t - 2.0) / 0.5)
  np.testing.assert_array_equal(stratum, np.tile(np.arange(8), (1000, 1)))
  # Uniform within each stratum: the position in stratum 3 passes a KS test.
  assert scipy.stats.kstest((t[:, 3] - 3.5) / 0.5, "uniform").pvalue > 1e-3
  mid = np.asarray(vr.stratified_samples(None, 2.0, 6.0, 4, (), perturb=False))
  np.testing.assert_allclose(mid, [2.5, 3.5, 4.5, 5.5])


def _piecewise_linear_cdf(edges: np.ndarray, masses: np.ndarray):
  cdf = np.concatenate([[0.0], np.cumsum(masses) / masses.sum()])
  return lambda x: np.interp(x, edges, cdf)


def test_hierarchical_samples_follow_the_coarse_weights():
  t = np.array([2.0, 2.5, 3.1, 3.3, 4.0, 4.8, 5.2, 5.9])
  weights = np.array([0.0, 0.05, 0.4, 0.1, 0.0, 0.3, 0.05, 0.02])
  draws = vr.hierarchical_samples(jax.random.PRNGKey(2), jnp.tile(jnp.asarray(t), (40, 1)),
                                  jnp.tile(jnp.asarray(weights), (40, 1)), 6.0, 1000, floor=0.0)
  draws = np.asarray(draws)
  assert draws.shape == (40, 1000)
  assert np.all(np.diff(draws, axis=-1) >= 0)
  edges = np.append(t, 6.0)
  cdf = _piecewise_linear_cdf(edges, weights)
  assert scipy.stats.kstest(draws.ravel(), cdf).pvalue > 1e-3
  # The same statistic rejects the draws against the interval midpoints' weights (NeRF code's
  # bins), which shifts every bin: the test has power.
  shifted = _piecewise_linear_cdf(np.concatenate([[2.0], (t[1:] + t[:-1]) / 2, [6.0]]),
                                  weights)
  assert scipy.stats.kstest(draws.ravel(), shifted).pvalue < 1e-6
  # The floor makes a ray with no weight draw each interval equally often.
  flat = vr.hierarchical_samples(jax.random.PRNGKey(3), jnp.asarray(t), jnp.zeros(8), 6.0,
                                 20_000)
  assert scipy.stats.kstest(np.asarray(flat), _piecewise_linear_cdf(edges, np.ones(8))
                            ).pvalue > 1e-3


def _project(point: np.ndarray, pose: np.ndarray, focal: float, size: int) -> tuple[float, float]:
  """A world point's (row, col) in pixel units, by hand: into the camera frame with the inverse
  pose, then the pinhole x / -z, y / -z (y up, rows down)."""
  camera = np.linalg.inv(pose) @ np.append(point, 1.0)
  x, y, z = camera[:3]
  return size / 2 - focal * y / -z, size / 2 + focal * x / -z


def test_rays_from_a_known_pose_hit_the_pixels_a_projection_gives():
  pose = scene_lib.orbit_pose(azimuth=40.0, elevation=25.0)
  focal, size = 30.0, 32
  rays = vr.camera_rays(jnp.asarray(pose, jnp.float32), focal, size, size)
  rng = np.random.default_rng(0)
  for point in rng.uniform(-0.8, 0.8, (20, 3)):
    row, col = _project(point, pose, focal, size)
    i, j = int(row), int(col)  # the pixel containing the projection
    assert 0 <= i < size and 0 <= j < size
    o, d = np.asarray(rays.origins[i, j], np.float64), np.asarray(rays.directions[i, j])
    # The ray through pixel (i, j)'s centre passes within half a pixel (at that depth) of it.
    depth = -(np.linalg.inv(pose) @ np.append(point, 1.0))[2]
    closest = o + depth * d
    assert np.linalg.norm(closest - point) <= depth / focal * math.sqrt(0.5) + 1e-5
  # The centre ray of an even image passes between the four centre pixels, along -z.
  centre = np.asarray(rays.directions[size // 2 - 1:size // 2 + 1, size // 2 - 1:size // 2 + 1])
  np.testing.assert_allclose(centre.mean(axis=(0, 1)), -pose[:3, 2], atol=1e-6)
  # The NumPy rays of the data builder are the same rays.
  o, d = scene_lib.camera_rays(pose, focal, size, size)
  np.testing.assert_allclose(np.asarray(rays.directions), d, atol=1e-5)
  np.testing.assert_allclose(np.asarray(rays.origins), o, atol=1e-5)


def test_orbit_poses_match_the_data_builders_cameras():
  poses = vr.orbit_poses(jnp.array([0.0, 75.0, 200.0]), 30.0, 4.0)
  for pose, azimuth in zip(np.asarray(poses), (0.0, 75.0, 200.0)):
    np.testing.assert_allclose(pose, scene_lib.orbit_pose(azimuth, 30.0, 4.0), atol=1e-5)


def test_bad_inputs_are_refused_with_what_to_change():
  with pytest.raises(ValueError, match=r"pose must be camera-to-world matrices \[\.\.\., 4, 4\]"
                     r".*got shape \(4, 3\)"):
    vr.camera_rays(jnp.zeros((4, 3)), 30.0, 8, 8)
  with pytest.raises(ValueError, match="0 <= near < far, got near=6.0, far=2.0: set near below"):
    vr.stratified_samples(jax.random.PRNGKey(0), 6.0, 2.0, 8)
  # A focal must be finite and > 0: 0, NaN (which fails every comparison, so a check written
  # as "any(focal <= 0)" would let it through) and inf are refused.
  for focal in (0.0, np.nan, np.inf, np.array([30.0, np.nan])):
    with pytest.raises(ValueError, match="focal must be a finite positive length in pixels"):
      vr.pixel_rays(jnp.eye(4), focal, jnp.zeros(2), jnp.zeros(2), 8, 8)
  with pytest.raises(ValueError, match="focal must be a finite positive length in pixels"):
    vr.camera_rays(jnp.eye(4), np.nan, 8, 8)
  with pytest.raises(ValueError, match=r"t \(3, 4\) and weights \(3, 5\) must have one shape"):
    vr.hierarchical_samples(jax.random.PRNGKey(0), jnp.zeros((3, 4)), jnp.zeros((3, 5)), 6.0, 2)


def _composite_args(**change):
  """Valid inputs of `composite` for 2 rays of 4 samples, with `change` applied."""
  args = dict(sigma=np.ones((2, 4), np.float32), rgb=np.full((2, 4, 3), 0.5, np.float32),
              t=np.tile(np.array([2.0, 3.0, 4.0, 5.0], np.float32), (2, 1)), far=6.0,
              direction_norm=1.0, background=1.0)
  args.update(change)
  return args


@pytest.mark.parametrize("change,message", [
    ({"sigma": np.float32(1.0), "rgb": np.zeros(3), "t": np.float32(2.0)},
     r"sigma must be densities \[\.\.\., n\].*got shape \(\): add the samples axis"),
    ({"rgb": np.zeros((2, 4))}, r"rgb \(2, 4\) must be colours \[\.\.\., n, 3\] with sigma's "
     r"shape \(2, 4\) then 3"),
    ({"rgb": np.zeros((2, 5, 3))}, r"rgb \(2, 5, 3\) must be colours"),
    ({"t": np.zeros((2, 5))}, r"t \(2, 5\) must be depths of sigma's shape \(2, 4\)"),
    ({"far": np.full(3, 6.0)}, r"far has shape \(3,\), which does not broadcast to \(2,\): pass "
     r"a scalar or one depth per ray"),
    ({"direction_norm": np.ones((2, 4))}, r"direction_norm has shape \(2, 4\), which does not "
     r"broadcast to \(2,\)"),
    ({"background": np.ones(2)}, r"background has shape \(2,\): pass a grey level \(a scalar\) "
     r"or colours \[\.\.\., 3\]"),
    ({"background": np.ones((5, 3))}, r"background has shape \(5, 3\), which does not "
     r"broadcast to \(2, 3\)"),
    ({"sigma": np.array([[1.0, -0.5, 1.0, 1.0]] * 2)}, r"sigma \(2, 4\) must be densities >= 0, "
     r"got min -0.5 \(0 NaN\): pass a non-negative density"),
    ({"sigma": np.array([[1.0, np.nan, 1.0, 1.0]] * 2)}, r"sigma \(2, 4\) must be densities >= 0, "
     r"got min 1.0 \(2 NaN\)"),
    ({"t": np.array([[2.0, 3.0, 4.0, 5.0], [2.0, 4.0, 3.0, 5.0]])}, r"t \(2, 4\) must be depths "
     r"that increase along the last axis and end at or below far, got \[2.0, 4.0, 3.0, 5.0\] "
     r"with far=6.0 on ray \(1,\): sort the samples"),
    # A NaN depth makes steps that are not >= 0 (NaN compares false), so it is refused as an
    # unsorted ray, and the ray named is the one with the NaN.
    ({"t": np.array([[2.0, 3.0, 4.0, 5.0], [2.0, np.nan, 4.0, 5.0]])}, r"t \(2, 4\) must be "
     r"depths that increase along the last axis.*got \[2.0, nan, 4.0, 5.0\].*on ray \(1,\)"),
    ({"t": np.array([[2.0, 3.0, 4.0, 5.0], [-np.inf, 3.0, 4.0, 5.0]])}, r"t \(2, 4\) and far "
     r"must be finite depths, got 1 infinite depths and 0 infinite far: bound the scene"),
    ({"far": np.inf}, r"t \(2, 4\) and far must be finite depths, got 0 infinite depths and 1 "
     r"infinite far"),
    ({"far": 4.5}, r"t \(2, 4\) must be depths that increase.*far=4.5"),
    ({"direction_norm": np.array([1.0, 0.0])}, r"direction_norm \(2,\) must be finite lengths "
     r"\|d\| > 0, got min 0.0, max 1.0: pass jnp.linalg.norm"),
    ({"direction_norm": np.array([1.0, np.nan])}, r"direction_norm \(2,\) must be finite lengths"),
    ({"direction_norm": np.array([1.0, np.inf])}, r"direction_norm \(2,\) must be finite lengths"
     r" \|d\| > 0, got min 1.0, max inf"),
])
def test_composite_refuses_bad_inputs_with_what_to_change(change, message):
  with pytest.raises(ValueError, match=message):
    vr.composite(**_composite_args(**change))


def test_composite_checks_values_only_when_they_are_concrete():
  # Under jit the values are unknown: a decreasing t is not refused there (it cannot be read),
  # but its shapes still are.
  bad = _composite_args(t=np.array([[5.0, 4.0, 3.0, 2.0]] * 2, np.float32))
  render = jax.jit(lambda s, c, t: vr.composite(s, c, t, far=6.0))
  render(bad["sigma"], bad["rgb"], bad["t"])
  with pytest.raises(ValueError, match=r"rgb \(2, 4\) must be colours"):
    render(bad["sigma"], bad["rgb"][..., 0], bad["t"])
  vr.composite(**_composite_args())  # and valid inputs pass


@pytest.mark.parametrize("change,message", [
    ({"t": np.float32(2.0), "weights": np.float32(1.0)}, r"t \(\) and weights \(\) must have one "
     r"shape \[\.\.\., n\]"),
    ({"num": 0}, r"num must be at least 1 depth per ray \(a Python int\), got 0"),
    ({"num": True}, r"num must be at least 1 depth per ray \(a Python int\), got True"),
    ({"floor": -1e-5}, r"floor must be finite and >= 0, got -1e-05"),
    ({"floor": np.nan}, r"floor must be finite and >= 0, got nan"),
    ({"floor": np.inf}, r"floor must be finite and >= 0, got inf"),
    ({"t": np.array([[2.0, 3.0, 4.0, 5.0], [2.0, 3.0, np.nan, 5.0]])}, r"t \(2, 4\) must be "
     r"depths that increase along the last axis.*nan.*on ray \(1,\)"),
    ({"far": np.full(3, 6.0)}, r"far has shape \(3,\), which does not broadcast to \(2,\)"),
    ({"t": np.array([[2.0, 3.0, 4.0, 5.0], [2.0, 3.0, 3.5, 3.4]])}, r"t \(2, 4\) must be depths "
     r"that increase along the last axis.*on ray \(1,\): sort the samples"),
    ({"far": 5.0 - 1e-3}, r"t \(2, 4\) must be depths that increase"),
    ({"weights": np.array([[0.1, -0.2, 0.3, 0.0]] * 2)}, r"weights \(2, 4\) must be termination "
     r"probabilities >= 0, got min -0.2 \(0 NaN\): pass Rendered.weights"),
    ({"weights": np.array([[0.1, np.nan, 0.3, 0.0]] * 2)}, r"weights \(2, 4\) must be "
     r"termination probabilities >= 0, got min 0.0 \(2 NaN\): pass Rendered.weights"),
    ({"weights": np.array([[0.1, np.inf, 0.3, 0.0]] * 2)}, r"weights \(2, 4\) must be finite "
     r"termination probabilities, got 2 infinite"),
    ({"weights": np.array([[0.1, 0.2, 0.3, 0.0], [0.0] * 4]), "floor": 0.0},
     r"weights \(2, 4\) has rays whose weights are all 0 and floor is 0.*pass floor > 0"),
])
def test_hierarchical_samples_refuse_bad_inputs_with_what_to_change(change, message):
  args = dict(t=np.tile(np.array([2.0, 3.0, 4.0, 5.0], np.float32), (2, 1)),
              weights=np.full((2, 4), 0.25, np.float32), far=6.0, num=3, floor=1e-5)
  args.update(change)
  with pytest.raises(ValueError, match=message):
    vr.hierarchical_samples(jax.random.PRNGKey(0), args.pop("t"), args.pop("weights"),
                            args.pop("far"), args.pop("num"), **args)


def test_hierarchical_samples_take_a_traced_floor():
  # The floor is checked only when concrete: traced under jit it passes, and the draws are
  # those of the eager call with the same key and floor (one function, traced or not).
  t = np.tile(np.array([2.0, 3.0, 4.0, 5.0], np.float32), (2, 1))
  weights = np.array([[0.1, 0.2, 0.3, 0.0], [0.0] * 4], np.float32)
  key = jax.random.PRNGKey(4)
  draw = lambda floor: vr.hierarchical_samples(key, t, weights, 6.0, 5, floor=floor)
  np.testing.assert_allclose(np.asarray(jax.jit(draw)(1e-5)), np.asarray(draw(1e-5)),
                             rtol=1e-6)


def test_rays_samples_poses_and_psnr_refuse_bad_inputs_with_what_to_change():
  with pytest.raises(ValueError, match=r"rows \(4,\) and cols \(5,\) must have one shape"):
    vr.pixel_rays(jnp.eye(4), 10.0, jnp.zeros(4), jnp.zeros(5), 8, 8)
  with pytest.raises(ValueError, match=r"pose has shape \(3,\), which does not broadcast to "
                     r"\(4,\): pass one camera per ray"):
    vr.pixel_rays(jnp.tile(jnp.eye(4), (3, 1, 1)), 10.0, jnp.zeros(4), jnp.zeros(4), 8, 8)
  with pytest.raises(ValueError, match=r"focal has shape \(3,\), which does not broadcast to "
                     r"\(4,\)"):
    vr.pixel_rays(jnp.eye(4), jnp.ones(3), jnp.zeros(4), jnp.zeros(4), 8, 8)
  with pytest.raises(ValueError, match=r"width must be a positive number of pixels \(a Python "
                     r"int\), got 0"):
    vr.camera_rays(jnp.eye(4), 10.0, 8, 0)
  with pytest.raises(ValueError, match=r"height must be a positive number of pixels \(a Python "
                     r"int\), got 8.0"):
    vr.pixel_rays(jnp.eye(4), 10.0, jnp.zeros(4), jnp.zeros(4), 8.0, 8)
  with pytest.raises(ValueError, match=r"focal has shape \(3,\), which does not broadcast to "
                     r"\(2,\): pass a scalar or one focal length per camera"):
    vr.camera_rays(jnp.tile(jnp.eye(4), (2, 1, 1)), jnp.ones(3), 8, 8)
  with pytest.raises(ValueError, match=r"near has shape \(3,\), which does not broadcast to "
                     r"\(5,\)"):
    vr.stratified_samples(None, jnp.full(3, 2.0), 6.0, 4, (5,), perturb=False)
  for num in (0, True):  # a bool is an int to Python, but not a number of samples
    with pytest.raises(ValueError, match=r"num must be at least 1 sample per ray"):
      vr.stratified_samples(None, 2.0, 6.0, num, perturb=False)
  with pytest.raises(ValueError, match=r"elevation must be degrees in \(-90, 90\), got 90.0"):
    vr.orbit_poses(jnp.zeros(2), 90.0, 4.0)
  with pytest.raises(ValueError, match=r"elevation must be degrees in \(-90, 90\), got nan"):
    vr.orbit_poses(jnp.zeros(2), np.nan, 4.0)
  for radius in (0.0, np.nan, np.inf):
    with pytest.raises(ValueError, match=r"radius must be a finite distance > 0 from the origin, "
                       rf"got {radius}"):
      vr.orbit_poses(jnp.zeros(2), 30.0, radius)
  for azimuth in (np.inf, np.nan):
    with pytest.raises(ValueError, match=rf"azimuth must be finite degrees, got \[ 0\. +{azimuth}\]"
                       r" \(shape \(2,\)\): pass angles"):
      vr.orbit_poses(np.array([0.0, azimuth]), 30.0, 4.0)
  with pytest.raises(ValueError, match=r"azimuth \(2,\), elevation \(3,\) and radius \(\) must "
                     r"broadcast to one shape"):
    vr.orbit_poses(jnp.zeros(2), jnp.zeros(3), 4.0)
  with pytest.raises(ValueError, match=r"mse \(2,\) must be mean squared errors >= 0, got min "
                     r"-1.0 \(0 NaN\)"):
    vr.psnr(jnp.array([0.1, -1.0]))
  assert np.isnan(float(vr.psnr(jnp.nan)))  # a diverged model's error is reported, not refused
  for peak in (0, np.nan, np.inf, np.array([1.0, -1.0])):
    with pytest.raises(ValueError, match=r"max_value must be the largest pixel value, finite and "
                       r"> 0, got"):
      vr.psnr(0.1, max_value=peak)


def test_psnr_of_known_errors():
  np.testing.assert_allclose(np.asarray(vr.psnr(jnp.array([1.0, 0.01, 1e-4]))), [0, 20, 40],
                             atol=1e-5)
  np.testing.assert_allclose(float(vr.psnr(255.0**2 / 100, max_value=255.0)), 20.0, rtol=1e-6)


def test_psnr_takes_a_traced_or_array_max_value():
  # Oracle: the closed form 10 log10(max^2 / mse). max_value is checked only when concrete, so
  # a traced one (jit, vmap) passes, and an array one is checked elementwise and broadcast.
  oracle = lambda mse, peak: 10 * np.log10(np.square(peak) / mse)
  np.testing.assert_allclose(float(jax.jit(lambda m: vr.psnr(0.1, m))(1.0)), oracle(0.1, 1.0),
                             rtol=1e-6)
  peaks = np.array([1.0, 2.0, 255.0])
  np.testing.assert_allclose(np.asarray(jax.vmap(lambda m: vr.psnr(0.1, m))(peaks)),
                             oracle(0.1, peaks), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(vr.psnr(0.1, np.array([1.0, 2.0]))),
                             oracle(0.1, np.array([1.0, 2.0])), rtol=1e-6)
  mse = np.array([[0.1], [0.01]])
  np.testing.assert_allclose(np.asarray(vr.psnr(mse, peaks)), oracle(mse, peaks), rtol=1e-6)


def test_positional_encoding_layout():
  x = jnp.array([[0.25, -0.5, 1.0]])
  out = np.asarray(positional_encoding(x, 2))
  assert out.shape == (1, 15)
  np.testing.assert_allclose(out[0, :3], x[0])
  np.testing.assert_allclose(out[0, 3:6], np.sin(np.pi * np.asarray(x[0])), atol=1e-6)
  np.testing.assert_allclose(out[0, 12:15], np.cos(2 * np.pi * np.asarray(x[0])), atol=1e-6)


def test_the_nerf_quadrature_renders_a_sphere_as_the_ray_tracer_does():
  # One sphere, no ground, given as densities: S inside, 0 outside, coloured by the ray tracer's
  # shading of the radial normal (the surface normal where the ray enters, up to the sample
  # spacing). 128 samples in [2, 6] (spacing 0.03) and S = 1000 (mean free path 0.001).
  sphere = scene_lib.Sphere((0.1, -0.2, 0.3), 0.7, (0.9, 0.4, 0.2))
  scene = scene_lib.Scene((sphere,))
  pose = scene_lib.orbit_pose(azimuth=30.0, elevation=35.0)
  size, focal, near, far, n = 32, scene_lib.focal_length(32), 2.0, 6.0, 128
  rgb_exact, depth_exact, mask = scene_lib.render_view(scene, pose, focal, size, size)

  rays = vr.camera_rays(jnp.asarray(pose, jnp.float32), focal, size, size)
  t = vr.stratified_samples(None, near, far, n, (size, size), perturb=False)
  points = np.asarray(rays.origins[..., None, :] + t[..., None] * rays.directions[..., None, :],
                      np.float64)
  offset = points - np.asarray(sphere.center)
  inside = np.linalg.norm(offset, axis=-1) < sphere.radius
  normal = offset / np.linalg.norm(offset, axis=-1, keepdims=True)
  light = np.asarray(scene.light) / np.linalg.norm(scene.light)
  shading = scene.ambient + (1 - scene.ambient) * np.maximum(normal @ light, 0.0)
  colour = np.asarray(sphere.color) * shading[..., None]
  out = vr.composite(jnp.asarray(np.where(inside, 1000.0, 0.0), jnp.float32),
                     jnp.asarray(colour, jnp.float32), t, far=far,
                     direction_norm=jnp.linalg.norm(rays.directions, axis=-1),
                     background=scene.background)
  opacity, rendered = np.asarray(out.opacity), np.asarray(out.rgb)
  # Coverage: pixels may disagree only where the ray grazes the rim, its chord inside the
  # sphere shorter than the spacing (it may fall between two samples); at most 2% of them.
  disagree = (opacity > 0.5) != mask
  assert disagree.sum() <= 0.02 * mask.sum(), disagree.sum()
  solid = mask & (opacity > 0.999)
  assert solid.sum() >= 0.9 * mask.sum()
  # Depth where both see the sphere: the first sample inside lies within one spacing past the
  # surface (0.03 in depth), and the colour is the shading of a normal within that distance.
  spacing = (far - near) / n
  gap = np.asarray(out.depth)[solid] - depth_exact[solid]
  assert np.all((gap > -1e-3) & (gap < spacing + 1e-3)), (gap.min(), gap.max())
  np.testing.assert_allclose(rendered[solid], rgb_exact[solid], atol=0.05)
  assert np.abs(rendered[solid] - rgb_exact[solid]).mean() < 0.01
  # Background pixels are the background for both.
  clear = ~mask & (opacity < 1e-6)
  assert clear.sum() >= 0.95 * (~mask).sum()
  np.testing.assert_allclose(rendered[clear], 1.0, atol=1e-6)
