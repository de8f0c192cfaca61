"""NeRF (Mildenhall et al. 2020): a radiance field fitted to posed images, which renders the scene
from new viewpoints.

One player, "field", holds the parameters of a coarse and a fine `gen_jax.nn.nerf.RadianceField`
({"coarse": ..., "fine": ...}; no fine network when `model.num_fine` = 0). A training batch is
`batch_size` posed images (`model.image_key` [b, h, w, 3], `model.pose_key` [b, 4, 4]
camera-to-world, `model.focal_key` [b] in pixels: the bundled `scene` data or a Blender scene);
the loss draws `model.rays_per_batch` pixels uniformly from all of them with the step's key,
renders the rays through their centres (`gen_jax.volume_rendering`: stratified sampling of
`num_coarse` depths in [near, far], the coarse field composited by eq. 3; then `num_fine` depths
by hierarchical sampling of the coarse weights, and the fine field composited at the sorted union
of both) and returns the sum of the coarse and fine mean squared errors of the colours in [0, 1]
(the paper's loss, eq. 6). Storing images rather than rays keeps evaluation per view and the
data small, and the rays of a step come from the step's key like every other random draw.

`evaluate` renders every pixel of each held-out view (stratified midpoints, random fine depths)
and returns the view's `psnr` (dB, of the fine rendering), `mse` and `psnr_coarse`; the loop
averages them over views (the mean PSNR of views, as the paper reports). `sample(variables, rng,
num)` renders a turntable of `num` frames (cameras at `turntable_radius` and
`turntable_elevation` degrees, field of view `camera_angle_x`, at the data's image size):
{"turntable": [1, num, h, w, 3], "turntable_depth": [1, num, h, w, 1]} in [-1, 1] (depth: near
white, far black), which the loop writes as a GIF and a grid of frames. `render_views` renders
any poses, e.g. the held-out ones beside their photographs.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from gen_jax import volume_rendering as vr
from gen_jax.errors import SettingError
from gen_jax.methods.base import DataSpec, Player
from gen_jax.nn.nerf import RadianceField
from gen_jax.types import Array, Batch, Params, PRNGKey, Variables

PLAYER = "field"
# Keys that change only how a run evaluates and samples, never the parameters.
SAMPLING_KEYS = frozenset({"eval_chunk", "turntable_radius", "turntable_elevation",
                           "camera_angle_x"})
MODEL_RULES = dict(
    near=dict(low=0.0, note="the depth where rays start; below model.far"),
    far=dict(low=0.0, low_open=True, note="the depth where rays end; above model.near"),
    num_coarse=dict(low=1, note="stratified depths per ray"),
    num_fine=dict(low=0, note="hierarchical depths per ray; 0: no fine network"),
    rays_per_batch=dict(low=1, note="pixels drawn per train step"),
    point_freqs=dict(low=0, note="octaves of the points' positional encoding"),
    direction_freqs=dict(low=0, note="octaves of the directions' positional encoding"),
    width=dict(low=1, note="units of the field's trunk layers"),
    depth=dict(low=1, note="hidden layers of the field's trunk"),
    head_width=dict(low=1, note="units of the colour head's hidden layer"),
    background=dict(low=0.0, high=1.0, note="grey level of rays that hit nothing"),
    eval_chunk=dict(low=1, note="rays rendered at once when evaluating and sampling"),
    turntable_radius=dict(low=0.0, low_open=True, note="the turntable cameras' distance"),
    turntable_elevation=dict(low=-89.0, high=89.0, note="degrees above the ground plane"),
    camera_angle_x=dict(low=0.0, high=math.pi, low_open=True, high_open=True,
                        note="the turntable's horizontal field of view in radians"),
)


def default_model_config() -> dict[str, Any]:
  return dict(
      image_key="image", pose_key="pose", focal_key="focal",
      near=2.0, far=6.0,  # depths along the optical axis bracketing the scene
      num_coarse=32, num_fine=64,
      rays_per_batch=1024,
      point_freqs=10, direction_freqs=4,
      width=128, depth=4, head_width=64, activation="relu",
      background=1.0,  # white, as the bundled scene and the Blender scenes
      eval_chunk=4096,
      # The turntable of the samples; the defaults frame the bundled scene (its cameras).
      turntable_radius=4.0, turntable_elevation=30.0, camera_angle_x=0.6911112,
  )


@dataclasses.dataclass(frozen=True)
class NeRF:
  """A coarse-to-fine radiance field (module docstring).

  Attributes:
    coarse: the coarse field.
    fine: the fine field, or None (coarse only).
    image_shape: (h, w, 3) of the data's images, the size of rendered views.
    near, far: depths where rays start and end.
    num_coarse, num_fine: depths per ray of the two passes.
    rays_per_batch: pixels drawn per train step.
    background: grey level of rays that hit nothing.
    eval_chunk: rays rendered at once by `render_views`.
    turntable_radius, turntable_elevation, camera_angle_x: the sampling turntable's cameras.
    image_key, pose_key, focal_key: the batch entries.
  """

  coarse: RadianceField
  fine: RadianceField | None
  image_shape: tuple[int, int, int]
  near: float = 2.0
  far: float = 6.0
  num_coarse: int = 32
  num_fine: int = 64
  rays_per_batch: int = 1024
  background: float = 1.0
  eval_chunk: int = 4096
  turntable_radius: float = 4.0
  turntable_elevation: float = 30.0
  camera_angle_x: float = 0.6911112
  image_key: str = "image"
  pose_key: str = "pose"
  focal_key: str = "focal"

  @property
  def players(self) -> tuple[Player, ...]:
    return (Player(PLAYER, self.loss),)

  def init(self, rng: PRNGKey, batch: Batch) -> Variables:
    del batch  # the field's shapes do not depend on the data
    rng_coarse, rng_fine = jax.random.split(rng)
    x = jnp.zeros((1, 3), jnp.float32)
    params = {"coarse": self.coarse.init(rng_coarse, x, x)["params"]}
    if self.fine is not None:
      params["fine"] = self.fine.init(rng_fine, x, x)["params"]
    return {"params": {PLAYER: params}, "model_state": {}}

  def colours(self, batch: Batch) -> Array:
    """The batch's images as colours in [0, 1]: 8-bit levels / 255, or [-1, 1] floats (after
    `scale_to_unit`) mapped back."""
    images = batch[self.image_key]
    if jnp.issubdtype(images.dtype, jnp.integer):
      return images.astype(jnp.float32) / 255.0
    return (images.astype(jnp.float32) + 1.0) / 2.0

  def render_rays(self, params: Params, rays: vr.Rays, rng: PRNGKey, *, perturb: bool
                  ) -> dict[str, vr.Rendered]:
    """Renders rays [..., 3] with both fields: {"coarse": Rendered, "fine": Rendered} (no
    "fine" without a fine field). `perturb` jitters the stratified depths (training)."""
    shape = rays.origins.shape[:-1]
    rng_coarse, rng_fine = jax.random.split(rng)
    norm = jnp.linalg.norm(rays.directions, axis=-1)

    def render(field: RadianceField, field_params: Params, t: Array) -> vr.Rendered:
      points = rays.origins[..., None, :] + t[..., None] * rays.directions[..., None, :]
      sigma, rgb = field.apply({"params": field_params}, points, rays.directions[..., None, :])
      return vr.composite(sigma, rgb, t, far=self.far, direction_norm=norm,
                          background=self.background)

    t = vr.stratified_samples(rng_coarse, self.near, self.far, self.num_coarse, shape,
                              perturb=perturb)
    out = {"coarse": render(self.coarse, params["coarse"], t)}
    if self.fine is not None:
      t_fine = vr.hierarchical_samples(rng_fine, t, out["coarse"].weights, self.far,
                                       self.num_fine)
      out["fine"] = render(self.fine, params["fine"],
                           jnp.sort(jnp.concatenate([t, t_fine], axis=-1), axis=-1))
    return out

  @property
  def final(self) -> str:
    return "coarse" if self.fine is None else "fine"

  def loss(self, params_all, player_params, batch: Batch, rng: PRNGKey, model_state):
    del params_all
    rng_pixels, rng_render = jax.random.split(rng)
    images = self.colours(batch)
    num, height, width = images.shape[:3]
    index = jax.random.randint(rng_pixels, (self.rays_per_batch,), 0, num * height * width)
    view, pixel = jnp.divmod(index, height * width)
    rows, cols = jnp.divmod(pixel, width)
    rays = vr.pixel_rays(batch[self.pose_key][view], batch[self.focal_key][view], rows, cols,
                         height, width)
    target = images[view, rows, cols]  # [rays, 3]
    out = self.render_rays(player_params, rays, rng_render, perturb=True)
    mse = {level: jnp.mean(jnp.square(r.rgb - target)) for level, r in out.items()}
    metrics = {"mse": mse[self.final], "psnr": vr.psnr(mse[self.final])}
    if self.fine is not None:
      metrics["psnr_coarse"] = vr.psnr(mse["coarse"])
    return sum(mse.values()), (metrics, model_state)

  def render_views(self, variables: Variables, rng: PRNGKey, pose: Array, focal: Array | float
                   ) -> dict[str, Array]:
    """Renders whole views, `eval_chunk` rays at a time.

    Args:
      variables: {"params": {"field": ...}, ...}.
      rng: a PRNG key (the fine pass's depths).
      pose: [n, 4, 4] camera-to-world matrices.
      focal: [n] (or scalar) focal lengths in pixels.

    Returns:
      {"rgb": [n, h, w, 3] in [0, 1], "depth": [n, h, w], "opacity": [n, h, w] of the final
      pass, and "rgb_coarse" [n, h, w, 3] when there is a fine pass}, at the data's size.

    Raises:
      ValueError: a pose that is not [n, 4, 4] or [n, 3, 4].
    """
    vr.check_pose(pose)
    params = variables["params"][PLAYER]
    height, width = self.image_shape[:2]
    rays = vr.camera_rays(pose, jnp.broadcast_to(focal, pose.shape[:-2]), height, width)
    flat = jax.tree.map(lambda a: a.reshape(-1, 3), rays)
    total = flat.origins.shape[0]
    chunks = -(-total // self.eval_chunk)
    padded = jax.tree.map(lambda a: jnp.pad(a, ((0, chunks * self.eval_chunk - total), (0, 0)))
                          .reshape(chunks, self.eval_chunk, 3), flat)

    def render_chunk(args):
      chunk, index = args
      out = self.render_rays(params, chunk, jax.random.fold_in(rng, index), perturb=False)
      final = out[self.final]
      values = {"rgb": final.rgb, "depth": final.depth, "opacity": final.opacity}
      if self.fine is not None:
        values["rgb_coarse"] = out["coarse"].rgb
      return values

    values = jax.lax.map(render_chunk, (padded, jnp.arange(chunks)))
    # [chunks, chunk, ...] -> [n, h, w, ...], the padding dropped
    return {k: v.reshape((-1,) + v.shape[2:])[:total].reshape(
        pose.shape[:-2] + (height, width) + v.shape[2:]) for k, v in values.items()}

  def evaluate(self, variables: Variables, batch: Batch, rng: PRNGKey) -> dict[str, Array]:
    """Per view [batch]: `psnr` (dB) and `mse` of the rendering against the image (colours in
    [0, 1]), and `psnr_coarse` of the coarse pass when there is a fine one."""
    images = self.colours(batch)
    views = self.render_views(variables, rng, batch[self.pose_key], batch[self.focal_key])
    mse = jnp.mean(jnp.square(views["rgb"] - images), axis=(1, 2, 3))
    metrics = {"psnr": vr.psnr(mse), "mse": mse}
    if self.fine is not None:
      metrics["psnr_coarse"] = vr.psnr(
          jnp.mean(jnp.square(views["rgb_coarse"] - images), axis=(1, 2, 3)))
    return metrics

  def turntable_poses(self, num: int) -> Array:
    """[num, 4, 4]: `num` cameras evenly round the turntable, the first on the +x axis."""
    azimuths = 360.0 * jnp.arange(num, dtype=jnp.float32) / num
    return vr.orbit_poses(azimuths, self.turntable_elevation, self.turntable_radius)

  def sample(self, variables: Variables, rng: PRNGKey, num: int) -> dict[str, Array]:
    """A turntable of `num` frames: {"turntable": [1, num, h, w, 3], "turntable_depth": [1,
    num, h, w, 1]}, both in [-1, 1] (module docstring)."""
    focal = 0.5 * self.image_shape[1] / math.tan(0.5 * self.camera_angle_x)
    views = self.render_views(variables, rng, self.turntable_poses(num), focal)
    closeness = 1.0 - (views["depth"] - self.near) / (self.far - self.near)
    return {"turntable": (2.0 * views["rgb"] - 1.0)[None],
            "turntable_depth": (2.0 * jnp.clip(closeness, 0.0, 1.0) - 1.0)[None, ..., None]}


def from_config(config: ml_collections.ConfigDict, spec: DataSpec) -> NeRF:
  """The NeRF of `config.model` for the posed images `spec` describes.

  Raises:
    SettingError: images that are not [h, w, 3], poses that are not [4, 4] or [3, 4], focal
      lengths that are not one number per view, or near >= far.
  """
  m = config.model
  shape = tuple(spec.shape(m.image_key, what="model.image_key"))
  pose = tuple(spec.shape(m.pose_key, what="model.pose_key"))
  focal = tuple(spec.shape(m.focal_key, what="model.focal_key"))
  if len(shape) != 3 or shape[-1] != 3:
    raise SettingError(f"NeRF reads RGB images [h, w, 3]; the data's {m.image_key!r} entries "
                       f"are {shape}: set model.image_key to the images of posed views.")
  if pose not in ((4, 4), (3, 4)):
    raise SettingError(f"NeRF reads camera-to-world poses [4, 4] (or [3, 4]); the data's "
                       f"{m.pose_key!r} entries are {pose}: set model.pose_key to the poses.")
  if focal != ():
    raise SettingError(f"NeRF reads one focal length (pixels) per view; the data's "
                       f"{m.focal_key!r} entries are {focal}: set model.focal_key to it.")
  if not m.near < m.far:
    raise SettingError(f"model.near = {m.near} must be below model.far = {m.far}: rays run "
                       f"from near to far (depths along the optical axis that bracket the "
                       f"scene; 2 and 6 for the bundled scene and the Blender scenes).")
  field = dict(point_freqs=m.point_freqs, direction_freqs=m.direction_freqs, width=m.width,
               depth=m.depth, head_width=m.head_width, activation=m.activation)
  return NeRF(
      coarse=RadianceField(**field), fine=RadianceField(**field) if m.num_fine else None,
      image_shape=shape, near=m.near, far=m.far, num_coarse=m.num_coarse, num_fine=m.num_fine,
      rays_per_batch=m.rays_per_batch, background=m.background, eval_chunk=m.eval_chunk,
      turntable_radius=m.turntable_radius, turntable_elevation=m.turntable_elevation,
      camera_angle_x=m.camera_angle_x, image_key=m.image_key, pose_key=m.pose_key,
      focal_key=m.focal_key)
