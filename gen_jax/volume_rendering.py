"""Volume rendering of a radiance field along camera rays, as NeRF renders (Mildenhall et al.
2020, "NeRF: Representing Scenes as Neural Radiance Fields for View Synthesis", sec. 4).

A radiance field gives each point x a density sigma(x) >= 0 (per unit length) and a colour c(x).
Along a ray r(t) = o + t d the expected colour is (Max 1995, "Optical models for direct volume
rendering")

    C(r) = int_near^far T(t) sigma(r(t)) c(r(t)) dt,   T(t) = exp(-int_near^t sigma(r(s)) ds),

T the transmittance (the probability that light travels from near to t unabsorbed). With sigma
and c constant on each interval [t_i, t_{i+1}) of a partition, the integral is exactly the
quadrature of Mildenhall et al. eq. 3, alpha compositing:

    delta_i = (t_{i+1} - t_i) |d|,   alpha_i = 1 - exp(-sigma_i delta_i),
    T_i = exp(-sum_{j<i} sigma_j delta_j),   w_i = T_i alpha_i,   C = sum_i w_i c_i.

Here the last interval ends at `far` (NeRF's code uses 1e10 instead, which makes the last sample
opaque); the light that passes the whole ray, 1 - sum_i w_i, shows the background colour.

Conventions (those of the Blender scenes of the NeRF paper, i.e. OpenGL's): a camera pose is the
camera-to-world matrix [4, 4] (or its top [3, 4]); the camera looks down its -z axis with y up
and x to the right; pixel (row, col) has its centre at (col + 0.5, row + 0.5) in pixel units
with row 0 at the top; the principal point is the image centre and the focal length `focal` is
in pixels (square pixels). Ray directions are not normalised: their camera-frame z component is
-1, so a ray parameter t is the depth along the optical axis, and `near`, `far` and depths are
such depths (in scene units).

All functions are pure and jit-able; keys are passed explicitly. Concrete inputs are checked and
refused with a ValueError that says what to change.
"""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.errors import concrete
from gen_jax.sampling import distributions
from gen_jax.types import Array


@flax.struct.dataclass
class Rays:
  origins: Array  # [..., 3] float32 camera centres, world coordinates
  directions: Array  # [..., 3] float32, camera-frame z = -1 (not unit vectors)


@flax.struct.dataclass
class Rendered:
  rgb: Array  # [..., 3] expected colour, background included
  depth: Array  # [...] expected depth, rays that pass everything counted at `far`
  opacity: Array  # [...] accumulated opacity sum_i w_i, in [0, 1]
  weights: Array  # [..., n] w_i = T_i alpha_i, the termination probability of each interval


def check_pose(pose: Any, name: str = "pose") -> None:
  """Refuses a pose whose last two axes are not [4, 4] or [3, 4] (camera-to-world matrices).

  Raises:
    ValueError: naming the shape received and what to pass.
  """
  shape = np.shape(pose)
  if len(shape) < 2 or shape[-1] != 4 or shape[-2] not in (3, 4):
    raise ValueError(f"{name} must be camera-to-world matrices [..., 4, 4] (or [..., 3, 4]), got "
                     f"shape {shape}: pass transform_matrix as the Blender scenes store it "
                     f"(OpenGL convention: the camera looks down -z, y up).")


def _check_size(height: Any, width: Any) -> None:
  """Refuses an image size that is not two positive integers."""
  for name, value in (("height", height), ("width", width)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{name} must be a positive number of pixels (a Python int), got "
                       f"{value!r}: pass the image's size, e.g. image.shape[:2].")


def _check_broadcast(name: str, value: Any, shape: tuple[int, ...], what: str, *,
                     grow: bool = False) -> None:
  """Refuses `value` whose shape does not broadcast to `shape` (static shapes: always); with
  `grow`, a shape that broadcasts against `shape` to a larger one is allowed."""
  try:
    ok = np.broadcast_shapes(np.shape(value), shape) == tuple(shape) or grow
  except ValueError:
    ok = False
  if not ok:
    raise ValueError(f"{name} has shape {np.shape(value)}, which does not broadcast to "
                     f"{tuple(shape)}: pass {what}.")


def _lowest(values: np.ndarray) -> str:
  """'min <value> (<count> NaN)' of an array, for messages about values below a bound."""
  nan = int(np.isnan(values).sum())
  return f"min {np.nanmin(values) if nan < values.size else 'nan'} ({nan} NaN)"


def _check_depths(name: str, t: Any, far: Any, far_shape: tuple[int, ...]) -> None:
  """Refuses concrete depths t [..., n] that decrease along the last axis, pass `far`, or are
  not finite (NaN or infinite, in t or in far)."""
  values, end = concrete(t), concrete(far)
  if values is None or end is None or values.size == 0:
    return
  edges = np.concatenate([values, np.broadcast_to(end, far_shape)[..., None]], axis=-1)
  if np.any(np.isinf(edges)):  # NaN is refused below, as a step that is not >= 0
    raise ValueError(f"{name} {np.shape(t)} and far must be finite depths, got "
                     f"{int(np.isinf(values).sum())} infinite depths and "
                     f"{int(np.isinf(end).sum())} infinite far: bound the scene with a finite "
                     f"far (NeRF's code uses 1e10 to make the last sample opaque).")
  steps = np.diff(edges, axis=-1)
  if not np.all(steps >= 0):  # NaN fails too
    ray = np.unravel_index(np.argmin(np.where(np.isnan(steps), -np.inf, steps)), steps.shape)[:-1]
    raise ValueError(f"{name} {np.shape(t)} must be depths that increase along the last axis "
                     f"and end at or below far, got {np.asarray(values[ray]).tolist()} with "
                     f"far={np.asarray(np.broadcast_to(end, far_shape)[ray]).tolist()} on ray "
                     f"{tuple(int(i) for i in ray)}: sort the samples (jnp.sort(t, axis=-1)) "
                     f"and keep them in [near, far].")


def pixel_rays(pose: Array, focal: Array | float, rows: Array, cols: Array, height: int,
               width: int) -> Rays:
  """The rays through the centres of pixels (rows, cols) of a pinhole camera.

  Args:
    pose: [..., 4, 4] (or [..., 3, 4]) camera-to-world matrices, broadcast against `rows`.
    focal: focal length in pixels, scalar or broadcastable to `rows`' shape.
    rows, cols: pixel indices (integers or floats; row 0 is the top), of one shape [...].
    height, width: the image size in pixels.

  Returns:
    `Rays` [..., 3], directions with camera-frame z = -1.

  Raises:
    ValueError: a pose of another shape (`check_pose`), rows and cols of different shapes, a
      pose or focal that does not broadcast to them, a height or width that is not a positive
      int, or a concrete focal that is not finite and > 0.
  """
  check_pose(pose)
  _check_size(height, width)
  if np.shape(rows) != np.shape(cols):
    raise ValueError(f"rows {np.shape(rows)} and cols {np.shape(cols)} must have one shape: "
                     f"pass one (row, col) index pair per ray, e.g. from jnp.meshgrid(..., "
                     f"indexing='ij') or jnp.divmod(pixel, width).")
  _check_broadcast("pose", np.broadcast_to(0.0, np.shape(pose)[:-2]), np.shape(rows),
                   "one camera per ray ([..., 4, 4] with the rows' shape [...]) or one for all",
                   grow=True)
  _check_broadcast("focal", focal, np.shape(rows), "a scalar or one focal length per ray",
                   grow=True)
  value = concrete(focal)
  if value is not None and not np.all((value > 0) & np.isfinite(value)):  # NaN fails too
    raise ValueError(f"focal must be a finite positive length in pixels, got {value}: for a "
                     f"horizontal field of view a, focal = 0.5 * width / tan(0.5 * a).")
  pose = jnp.asarray(pose, jnp.float32)
  x = (jnp.asarray(cols, jnp.float32) + 0.5 - 0.5 * width) / focal
  y = -(jnp.asarray(rows, jnp.float32) + 0.5 - 0.5 * height) / focal
  camera = jnp.stack([x, y, -jnp.ones_like(x)], axis=-1)  # [..., 3]
  directions = jnp.sum(pose[..., :3, :3] * camera[..., None, :], axis=-1)
  origins = jnp.broadcast_to(pose[..., :3, 3], directions.shape)
  return Rays(origins=origins, directions=directions)


def camera_rays(pose: Array, focal: Array | float, height: int, width: int) -> Rays:
  """The rays through every pixel centre of cameras `pose`.

  Args:
    pose: [..., 4, 4] (or [..., 3, 4]) camera-to-world matrices.
    focal: focal length in pixels, scalar or [...].
    height, width: the image size in pixels.

  Returns:
    `Rays` [..., height, width, 3].

  Raises:
    ValueError: as `pixel_rays`: a pose of another shape, a focal that is not one number per
      camera, a height or width that is not a positive int, or a concrete focal that is not
      finite and > 0.
  """
  check_pose(pose)
  _check_size(height, width)
  _check_broadcast("focal", focal, np.shape(pose)[:-2], "a scalar or one focal length per camera")
  rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
  pose = jnp.asarray(pose)[..., None, None, :, :]
  focal = jnp.asarray(focal, jnp.float32)[..., None, None]
  return pixel_rays(pose, focal, rows, cols, height, width)


def orbit_poses(azimuth: Array, elevation: Array | float, radius: Array | float) -> Array:
  """Cameras on a sphere around the origin, looking at it, with the world's z axis up in the
  image (a turntable when the azimuths run round at one elevation).

  Args:
    azimuth: [...] degrees, 0 on the +x axis, counter-clockwise seen from above.
    elevation: degrees above the xy-plane, in (-90, 90); scalar or [...].
    radius: the distance from the origin, scalar or [...].

  Returns:
    [..., 4, 4] float32 camera-to-world matrices (module docstring's convention).

  Raises:
    ValueError: azimuth, elevation and radius that do not broadcast to one shape, or concrete
      azimuths that are not finite, elevations outside (-90, 90) (or NaN) or radii that are not
      finite and > 0.
  """
  try:
    np.broadcast_shapes(np.shape(azimuth), np.shape(elevation), np.shape(radius))
  except ValueError:
    raise ValueError(f"azimuth {np.shape(azimuth)}, elevation {np.shape(elevation)} and radius "
                     f"{np.shape(radius)} must broadcast to one shape [...]: pass scalars or "
                     f"one value per camera.") from None
  value = concrete(azimuth)
  if value is not None and not np.all(np.isfinite(value)):
    raise ValueError(f"azimuth must be finite degrees, got {value} (shape {np.shape(azimuth)}): "
                     f"pass angles round the z axis, e.g. jnp.linspace(0, 360, n, "
                     f"endpoint=False).")
  value = concrete(elevation)
  if value is not None and not np.all((value > -90) & (value < 90)):  # NaN fails too
    raise ValueError(f"elevation must be degrees in (-90, 90), got {value} (shape "
                     f"{np.shape(elevation)}): at +-90 the camera looks along the z axis, which "
                     f"then cannot be up in its image; use e.g. 89.")
  value = concrete(radius)
  if value is not None and not np.all((value > 0) & np.isfinite(value)):  # NaN fails too
    raise ValueError(f"radius must be a finite distance > 0 from the origin, got {value} (shape "
                     f"{np.shape(radius)}): pass a radius outside the scene, e.g. 4.")
  a, e = jnp.deg2rad(jnp.asarray(azimuth, jnp.float32)), jnp.deg2rad(elevation)
  a, e = jnp.broadcast_arrays(a, jnp.asarray(e, jnp.float32))
  back = jnp.stack([jnp.cos(e) * jnp.cos(a), jnp.cos(e) * jnp.sin(a), jnp.sin(e)], axis=-1)
  right = jnp.stack([-jnp.sin(a), jnp.cos(a), jnp.zeros_like(a)], axis=-1)  # up x back, unit
  up = jnp.cross(back, right)
  eye = jnp.asarray(radius, jnp.float32)[..., None] * back
  top = jnp.stack([right, up, back, eye], axis=-1)  # [..., 3, 4]: the columns
  bottom = jnp.broadcast_to(jnp.array([0.0, 0.0, 0.0, 1.0]), top.shape[:-2] + (1, 4))
  return jnp.concatenate([top, bottom], axis=-2)


def check_bounds(near: Any, far: Any) -> None:
  """Refuses concrete bounds unless 0 <= near < far (finite).

  Raises:
    ValueError: naming the values and what to change.
  """
  lo, hi = concrete(near), concrete(far)
  if lo is None or hi is None:
    return
  if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo >= 0)
          and np.all(lo < hi)):
    raise ValueError(f"near and far must satisfy 0 <= near < far, got near={lo}, far={hi}: "
                     f"set near below far (depths along the optical axis that bracket the "
                     f"scene, e.g. near=2, far=6 for the Blender scenes).")


def stratified_samples(rng: Array, near: Array | float, far: Array | float, num: int,
                       shape: tuple[int, ...] = (), *, perturb: bool = True) -> Array:
  """Stratified sampling of depths: one uniform depth in each of `num` equal strata of [near,
  far) (Mildenhall et al. 2020, eq. 2); `perturb=False` takes the strata's midpoints.

  Args:
    rng: a PRNG key (unused when `perturb` is False).
    near, far: depths, scalars or broadcastable to `shape`.
    num: samples per ray.
    shape: the rays' shape.
    perturb: draw uniformly within each stratum, or take its midpoint.

  Returns:
    [*shape, num] float32 depths, increasing along the last axis.

  Raises:
    ValueError: near or far that do not broadcast to `shape`, a num that is not an int >= 1
      (a bool is refused), or concrete bounds that are not 0 <= near < far (finite).
  """
  check_bounds(near, far)
  if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
    raise ValueError(f"num must be at least 1 sample per ray (a Python int), got {num!r}.")
  for name, value in (("near", near), ("far", far)):
    _check_broadcast(name, value, tuple(shape), "a scalar or one depth per ray, of `shape`")
  near = jnp.asarray(near, jnp.float32)[..., None]
  far = jnp.asarray(far, jnp.float32)[..., None]
  shape = tuple(shape)
  u = (distributions.open_uniform(rng, shape + (num,)) if perturb
       else jnp.full(shape + (num,), 0.5, jnp.float32))
  fraction = (jnp.arange(num, dtype=jnp.float32) + u) / num
  return near + (far - near) * fraction


def hierarchical_samples(rng: Array, t: Array, weights: Array, far: Array | float, num: int,
                         *, floor: float = 1e-5) -> Array:
  """Hierarchical sampling: `num` depths per ray drawn from the coarse pass's weights
  (Mildenhall et al. 2020, sec. 5.2), sorted.

  Interval i of the coarse quadrature, [t_i, t_{i+1}) (the last ends at `far`), holds the
  termination probability w_i, so the density is piecewise constant: mass w_i + `floor` on
  that interval (the floor keeps a ray with no weight sampleable: each interval then equally
  likely, as with the 1e-5 NeRF's code adds). The depths are
  drawn exactly from it by `distributions.sample_histogram` (a bin by inversion of the discrete
  CDF, then a uniform position), one ray at a time. They are constants for the gradient.

  Args:
    rng: a PRNG key.
    t: [..., n] increasing coarse depths, below `far`.
    weights: [..., n] their weights (`Rendered.weights`).
    far: the end of the last interval, scalar or [...].
    num: depths to draw per ray.
    floor: mass added to every interval.

  Returns:
    [..., num] float32 depths in [t_0, far], sorted along the last axis.

  Raises:
    ValueError: `t` and `weights` of different shapes (or scalars), a `far` that does not
      broadcast to [...], a num that is not an int >= 1 (a bool is refused); when concrete: a
      floor that is negative or not finite, depths that decrease along the last axis, pass
      `far` or are not finite, negative, NaN or infinite weights, or, with floor 0, a ray
      whose weights are all zero (nothing to sample from).
  """
  if np.ndim(t) < 1 or np.shape(t) != np.shape(weights):
    raise ValueError(f"t {np.shape(t)} and weights {np.shape(weights)} must have one shape "
                     f"[..., n]: pass the coarse depths and the weights rendered at them.")
  if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
    raise ValueError(f"num must be at least 1 depth per ray (a Python int), got {num!r}.")
  low = concrete(floor)
  if low is not None and not np.all((low >= 0) & np.isfinite(low)):  # NaN fails too
    raise ValueError(f"floor must be finite and >= 0, got {floor}: it is the mass added to "
                     f"every interval (NeRF's code uses 1e-5).")
  batch = tuple(np.shape(t)[:-1])
  _check_broadcast("far", far, batch, "a scalar or one depth per ray [...]")
  _check_depths("t", t, far, batch)
  values = concrete(weights)
  if values is not None and values.size:
    if not np.all(values >= 0):  # NaN fails too
      raise ValueError(f"weights {np.shape(weights)} must be termination probabilities >= 0, "
                       f"got {_lowest(values)}: pass Rendered.weights of the coarse pass.")
    if np.any(np.isinf(values)):
      raise ValueError(f"weights {np.shape(weights)} must be finite termination probabilities, "
                       f"got {int(np.isinf(values).sum())} infinite: pass Rendered.weights of "
                       f"the coarse pass (each in [0, 1]).")
    # With weights and floor >= 0, a ray's masses sum to 0 only where both are 0 on it.
    if low is not None and np.any(np.sum(values + low, axis=-1) == 0):
      raise ValueError(f"weights {np.shape(weights)} has rays whose weights are all 0 and floor "
                       f"is 0, so there is nothing to sample from on them: pass floor > 0 "
                       f"(e.g. the default 1e-5).")
  batch, n = tuple(np.shape(t)[:-1]), np.shape(t)[-1]
  t = jax.lax.stop_gradient(jnp.asarray(t, jnp.float32))
  weights = jax.lax.stop_gradient(jnp.asarray(weights, jnp.float32))
  far = jnp.broadcast_to(jnp.asarray(far, jnp.float32), batch)[..., None]
  edges = jnp.concatenate([t, far], axis=-1).reshape(-1, n + 1)
  masses = (weights + floor).reshape(-1, n)
  keys = jax.random.split(rng, edges.shape[0])
  draw = jax.vmap(lambda key, m, e: distributions.sample_histogram(key, m, e, (num,)))
  return jnp.sort(draw(keys, masses, edges), axis=-1).reshape(batch + (num,))


def composite(sigma: Array, rgb: Array, t: Array, *, far: Array | float,
              direction_norm: Array | float = 1.0, background: Array | float = 0.0
              ) -> Rendered:
  """Alpha compositing of densities and colours at depths t (Mildenhall et al. 2020, eq. 3;
  Max 1995): exact for a field constant on each interval [t_i, t_{i+1}), the last ending at
  `far` (module docstring).

  Args:
    sigma: [..., n] densities >= 0 per unit length.
    rgb: [..., n, 3] colours in [0, 1].
    t: [..., n] increasing depths below `far`.
    far: where the last interval ends, scalar or [...].
    direction_norm: |d| of each ray, scalar or [...]: an interval's length is (t_{i+1} - t_i)|d|.
    background: the colour of light that passes the whole ray, scalar or [..., 3].

  Returns:
    `Rendered`: rgb [..., 3] = sum_i w_i c_i + (1 - opacity) background, depth [...] =
    sum_i w_i t_i + (1 - opacity) far (expected depth), opacity [...] = sum_i w_i, weights.

  Raises:
    ValueError: always (static shapes): sigma that is a scalar, rgb that is not [..., n, 3]
      with sigma's [..., n], t not of sigma's shape, far or direction_norm that do not
      broadcast to [...], a background that is not a scalar or [..., 3]. When concrete:
      negative (or NaN) densities, depths that decrease along the last axis, pass `far` or are
      not finite, direction norms that are not finite and > 0.
  """
  shape = np.shape(sigma)
  if len(shape) < 1:
    raise ValueError(f"sigma must be densities [..., n] (n samples per ray), got shape {shape}: "
                     f"add the samples axis.")
  if np.shape(rgb) != shape + (3,):
    raise ValueError(f"rgb {np.shape(rgb)} must be colours [..., n, 3] with sigma's shape "
                     f"{shape} then 3: pass one RGB colour per density sample.")
  if np.shape(t) != shape:
    raise ValueError(f"t {np.shape(t)} must be depths of sigma's shape {shape} [..., n]: pass "
                     f"the depths at which the densities were evaluated.")
  rays = shape[:-1]
  _check_broadcast("far", far, rays, "a scalar or one depth per ray [...]")
  _check_broadcast("direction_norm", direction_norm, rays, "a scalar or |d| per ray [...]")
  if np.ndim(background) > 0 and np.shape(background)[-1] != 3:
    raise ValueError(f"background has shape {np.shape(background)}: pass a grey level (a "
                     f"scalar) or colours [..., 3].")
  _check_broadcast("background", background, rays + (3,), "a scalar or colours [..., 3]")
  values = concrete(sigma)
  if values is not None and not np.all(values >= 0):
    raise ValueError(f"sigma {shape} must be densities >= 0, got {_lowest(values)}: pass a "
                     f"non-negative density, e.g. the softplus or ReLU of the field's raw "
                     f"output.")
  _check_depths("t", t, far, rays)
  values = concrete(direction_norm)
  if values is not None and not np.all((values > 0) & np.isfinite(values)):  # NaN fails too
    raise ValueError(f"direction_norm {np.shape(direction_norm)} must be finite lengths |d| > 0, "
                     f"got min {np.min(values)}, max {np.max(values)}: pass "
                     f"jnp.linalg.norm(rays.directions, axis=-1).")
  far = jnp.broadcast_to(jnp.asarray(far, sigma.dtype), sigma.shape[:-1])
  edges = jnp.concatenate([t, far[..., None]], axis=-1)
  delta = jnp.diff(edges, axis=-1) * jnp.asarray(direction_norm, sigma.dtype)[..., None]
  optical = sigma * delta  # [..., n] optical depth of each interval
  before = jnp.concatenate([jnp.zeros_like(optical[..., :1]),
                            jnp.cumsum(optical[..., :-1], axis=-1)], axis=-1)
  transmittance = jnp.exp(-before)
  weights = transmittance * -jnp.expm1(-optical)  # T_i alpha_i
  opacity = jnp.sum(weights, axis=-1)
  colour = jnp.sum(weights[..., None] * rgb, axis=-2)
  colour = colour + (1.0 - opacity)[..., None] * jnp.asarray(background, colour.dtype)
  depth = jnp.sum(weights * t, axis=-1) + (1.0 - opacity) * far
  return Rendered(rgb=colour, depth=depth, opacity=opacity, weights=weights)


def psnr(mse: Array, max_value: float = 1.0) -> Array:
  """Peak signal-to-noise ratio in dB of a mean squared error: 10 log10(max_value^2 / mse).

  Args:
    mse: [...] mean squared errors of images whose values span [0, max_value]; an MSE below
      1e-10 counts as 1e-10 (100 dB for max_value 1), so a perfect image stays finite.
    max_value: the largest pixel value (1 for colours in [0, 1]), scalar or broadcastable
      against `mse`; it may be traced.

  Returns:
    [...] PSNR in dB.

  Raises:
    ValueError: when concrete, a max_value that is not finite and > 0, or negative errors (a
      NaN error, e.g. of a diverged model, gives a NaN PSNR).
  """
  peak = concrete(max_value)
  if peak is not None and not np.all((peak > 0) & np.isfinite(peak)):  # NaN fails too
    raise ValueError(f"max_value must be the largest pixel value, finite and > 0, got "
                     f"{max_value}: 1 for colours in [0, 1], 255 for 8-bit levels.")
  values = concrete(mse)
  if values is not None and np.any(values < 0):
    raise ValueError(f"mse {np.shape(mse)} must be mean squared errors >= 0, got "
                     f"{_lowest(values)}: pass mean(square(a - b)).")
  mse = jnp.maximum(jnp.asarray(mse, jnp.float32), 1e-10)
  return 10.0 * jnp.log10(jnp.asarray(max_value, jnp.float32)**2 / mse)
