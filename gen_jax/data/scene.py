"""Posed images of 3-D scenes: a procedural scene rendered by an exact ray tracer (NumPy), and a
reader of the Blender synthetic scenes' format (the NeRF paper's `nerf_synthetic`).

Cameras follow the Blender scenes' (OpenGL) convention, the one `gen_jax.volume_rendering`
renders with: a pose is the camera-to-world matrix [4, 4], the camera looks down its -z axis,
y is up in the image, x to the right; the world's z axis is up. Pixel (row, col) is seen
through its centre, the principal point is the image centre, and the focal length is in pixels:
focal = 0.5 * width / tan(0.5 * camera_angle_x). A ray's parameter t is depth along the optical
axis (its direction has camera-frame z = -1), so depths here are such depths.

The procedural scenes (`SCENES`) are a few coloured primitives (spheres, axis-aligned boxes) on
a square slab, lit by one directional light: Lambertian shading albedo * (ambient + (1 -
ambient) max(0, n . l)), the diffuse term zero in shadow (a shadow ray towards the light hits a
primitive), and a white background where a ray hits nothing. Each pixel is the colour at the
first hit of the ray through its centre (no anti-aliasing), so a radiance field that renders
the same rays can match the images exactly. Cameras sit on a sphere of radius `RADIUS` around
the origin, looking at it, at random azimuths and elevations in `ELEVATIONS` (degrees), drawn
from `np.random.default_rng([SEED, scene index, split index])`: the test views are poses the
training views never had.
"""

import dataclasses
import json
import math
import pathlib
from typing import Any, Callable

import numpy as np

CAMERA_ANGLE_X = 0.6911112  # radians: the field of view of the Blender scenes' cameras
RADIUS = 4.0  # the cameras' distance from the origin
ELEVATIONS = (15.0, 55.0)  # degrees above the ground plane
NEAR, FAR = 2.0, 6.0  # depths that bracket every scene seen from those cameras
SPLIT_SIZES = {"train": 64, "test": 16}
SEED = 20_261_130
BACKGROUND = 1.0  # white, as the Blender scenes composited on white
_EPS = 1e-6


@dataclasses.dataclass(frozen=True)
class Sphere:
  center: tuple[float, float, float]
  radius: float
  color: tuple[float, float, float]  # albedo in [0, 1]


@dataclasses.dataclass(frozen=True)
class Box:
  lower: tuple[float, float, float]  # the corner with the smallest coordinates
  upper: tuple[float, float, float]
  color: tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class Scene:
  """Primitives lit by one directional light.

  Attributes:
    primitives: spheres and boxes.
    light: a vector towards the light (normalised when used).
    ambient: the fraction of the albedo seen in shadow.
    background: the grey level of rays that hit nothing.
  """

  primitives: tuple[Sphere | Box, ...]
  light: tuple[float, float, float] = (-0.4, -0.5, 1.0)
  ambient: float = 0.25
  background: float = BACKGROUND


_GROUND = Box((-1.2, -1.2, -0.1), (1.2, 1.2, 0.0), (0.75, 0.75, 0.7))


def _primitives() -> Scene:
  return Scene((
      _GROUND,
      Sphere((0.45, 0.35, 0.45), 0.45, (0.85, 0.25, 0.2)),
      Sphere((-0.5, 0.55, 0.3), 0.3, (0.2, 0.7, 0.3)),
      Box((-0.75, -0.85, 0.0), (-0.15, -0.25, 0.6), (0.2, 0.35, 0.85)),
      Box((0.3, -0.8, 0.0), (0.8, -0.3, 0.25), (0.9, 0.75, 0.2)),
  ))


def _sphere() -> Scene:
  return Scene((_GROUND, Sphere((0.0, 0.0, 0.5), 0.5, (0.85, 0.25, 0.2))))


# name -> a function building the scene. "primitives": two spheres and two boxes on the slab;
# "sphere": one sphere on it.
SCENES: dict[str, Callable[[], Scene]] = {"primitives": _primitives, "sphere": _sphere}


def make_scene(name: str) -> Scene:
  """The procedural scene `name`.

  Raises:
    ValueError: an unknown name, with the valid ones.
  """
  if name not in SCENES:
    raise ValueError(f"Unknown scene {name!r}: choose one of {', '.join(SCENES)} (or add a "
                     f"function building it to gen_jax.data.scene.SCENES).")
  return SCENES[name]()


# --- Cameras --------------------------------------------------------------------------------


def focal_length(width: int, camera_angle_x: float = CAMERA_ANGLE_X) -> float:
  """The focal length in pixels of a horizontal field of view `camera_angle_x` (radians)."""
  return 0.5 * width / math.tan(0.5 * camera_angle_x)


def look_at(eye: Any, target: Any = (0.0, 0.0, 0.0), up: Any = (0.0, 0.0, 1.0)) -> np.ndarray:
  """The camera-to-world matrix [4, 4] float64 of a camera at `eye` looking at `target`, with
  `up` up in its image (OpenGL: columns are the camera's x, y, z axes, z pointing backwards)."""
  eye, target, up = (np.asarray(v, np.float64) for v in (eye, target, up))
  back = eye - target
  back /= np.linalg.norm(back)
  right = np.cross(up, back)
  right /= np.linalg.norm(right)
  pose = np.eye(4)
  pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, np.cross(back, right), back, eye
  return pose


def orbit_pose(azimuth: float, elevation: float, radius: float = RADIUS) -> np.ndarray:
  """The pose [4, 4] of a camera at `radius` from the origin, looking at it, at `azimuth` and
  `elevation` (degrees; azimuth 0 on the +x axis, counter-clockwise seen from above)."""
  a, e = math.radians(azimuth), math.radians(elevation)
  eye = radius * np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])
  return look_at(eye)


def camera_rays(pose: np.ndarray, focal: float, height: int, width: int
                ) -> tuple[np.ndarray, np.ndarray]:
  """Origins and directions [height, width, 3] float64 of the rays through the pixel centres
  (module docstring), the same rays as `gen_jax.volume_rendering.camera_rays`."""
  rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
  camera = np.stack([(cols + 0.5 - 0.5 * width) / focal, -(rows + 0.5 - 0.5 * height) / focal,
                     -np.ones(rows.shape)], axis=-1)
  directions = camera @ np.asarray(pose, np.float64)[:3, :3].T
  return np.broadcast_to(pose[:3, 3], directions.shape).copy(), directions


# --- The ray tracer -------------------------------------------------------------------------


def _hit_sphere(s: Sphere, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Nearest t > eps of each ray [n] on the sphere (inf if none) and the normal there."""
  oc = o - np.asarray(s.center)
  a = np.sum(d * d, -1)
  b = np.sum(oc * d, -1)
  c = np.sum(oc * oc, -1) - s.radius**2
  disc = b * b - a * c
  root = np.sqrt(np.maximum(disc, 0.0))
  t = np.full(a.shape, np.inf)
  for candidate in ((-b + root) / a, (-b - root) / a):  # the nearer one last wins
    t = np.where((disc >= 0) & (candidate > _EPS), candidate, t)
  normal = (o + np.where(np.isfinite(t), t, 0.0)[:, None] * d - np.asarray(s.center)) / s.radius
  return t, normal


def _hit_box(box: Box, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Nearest t > eps of each ray [n] on the box (inf if none) and the normal there (slabs)."""
  lower, upper = np.asarray(box.lower), np.asarray(box.upper)
  with np.errstate(divide="ignore", invalid="ignore"):
    inv = 1.0 / d
    t1, t2 = (lower - o) * inv, (upper - o) * inv
  t1 = np.where(np.isnan(t1), -np.inf, t1)  # a ray parallel to a slab, on its plane
  t2 = np.where(np.isnan(t2), np.inf, t2)
  near, far = np.minimum(t1, t2), np.maximum(t1, t2)
  t_in, t_out = near.max(-1), far.min(-1)
  entering = t_in > _EPS
  t = np.where(t_in <= t_out, np.where(entering, t_in, t_out), np.inf)
  t = np.where(t > _EPS, t, np.inf)
  axis = np.where(entering, near.argmax(-1), far.argmin(-1))
  normal = np.zeros(o.shape)
  rows = np.arange(len(o))
  # The normal points against the ray where it enters (and along it where it leaves).
  normal[rows, axis] = -np.sign(d[rows, axis]) * np.where(entering, 1.0, -1.0)
  return t, normal


def intersect(scene: Scene, origins: np.ndarray, directions: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The first hit of each ray.

  Args:
    scene: the scene.
    origins, directions: [n, 3] rays (directions need not be unit vectors).

  Returns:
    t [n] (inf where the ray hits nothing), the unit normal [n, 3] and the albedo [n, 3] there
    (zeros where nothing is hit).
  """
  o, d = np.asarray(origins, np.float64), np.asarray(directions, np.float64)
  t = np.full(len(o), np.inf)
  normal, albedo = np.zeros(o.shape), np.zeros(o.shape)
  for p in scene.primitives:
    tp, np_ = (_hit_sphere if isinstance(p, Sphere) else _hit_box)(p, o, d)
    closer = tp < t
    t = np.where(closer, tp, t)
    normal = np.where(closer[:, None], np_, normal)
    albedo = np.where(closer[:, None], np.asarray(p.color, np.float64), albedo)
  return t, normal, albedo


def shade(scene: Scene, origins: np.ndarray, directions: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The colour seen along each ray (module docstring).

  Args:
    scene: the scene.
    origins, directions: [n, 3] rays.

  Returns:
    rgb [n, 3] in [0, 1], t [n] of the first hit (inf where none) and the hit mask [n] bool.
  """
  t, normal, albedo = intersect(scene, origins, directions)
  hit = np.isfinite(t)
  light = np.asarray(scene.light, np.float64)
  light = light / np.linalg.norm(light)
  points = np.asarray(origins) + np.where(hit, t, 0.0)[:, None] * np.asarray(directions)
  lit = np.maximum(normal @ light, 0.0)
  shadow_t, _, _ = intersect(scene, points + 1e-4 * normal, np.broadcast_to(light, points.shape))
  lit = np.where(np.isfinite(shadow_t), 0.0, lit)
  rgb = albedo * (scene.ambient + (1.0 - scene.ambient) * lit)[:, None]
  rgb = np.where(hit[:, None], rgb, scene.background)
  return rgb, t, hit


def render_view(scene: Scene, pose: np.ndarray, focal: float, height: int, width: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The image of `scene` from camera `pose`: rgb [h, w, 3] float64 in [0, 1], depth [h, w]
  (inf where nothing is hit) and the hit mask [h, w]."""
  origins, directions = camera_rays(pose, focal, height, width)
  rgb, t, hit = shade(scene, origins.reshape(-1, 3), directions.reshape(-1, 3))
  return rgb.reshape(height, width, 3), t.reshape(height, width), hit.reshape(height, width)


def split_poses(name: str, split: str) -> np.ndarray:
  """The camera poses [n, 4, 4] float32 of a split of procedural scene `name` (module
  docstring).

  Raises:
    ValueError: an unknown scene or split.
  """
  make_scene(name)
  if split not in SPLIT_SIZES:
    raise ValueError(f"Unknown split {split!r}: choose one of {', '.join(SPLIT_SIZES)}.")
  rng = np.random.default_rng([SEED, list(SCENES).index(name), list(SPLIT_SIZES).index(split)])
  n = SPLIT_SIZES[split]
  azimuths = rng.uniform(0.0, 360.0, n)
  elevations = rng.uniform(*ELEVATIONS, n)
  return np.stack([orbit_pose(a, e) for a, e in zip(azimuths, elevations)]).astype(np.float32)


def views(name: str, split: str, size: int) -> dict[str, np.ndarray]:
  """The posed images of a split of procedural scene `name` at `size` x `size` pixels.

  Returns:
    {"image": [n, size, size, 3] uint8, "pose": [n, 4, 4] float32, "focal": [n] float32}.

  Raises:
    ValueError: an unknown scene or split, or a size below 1.
  """
  if size < 1:
    raise ValueError(f"size must be a positive number of pixels, got {size}.")
  scene, poses = make_scene(name), split_poses(name, split)
  focal = np.float32(focal_length(size))
  images = [render_view(scene, pose.astype(np.float64), float(focal), size, size)[0]
            for pose in poses]
  return {"image": to_uint8(np.stack(images)), "pose": poses,
          "focal": np.full(len(poses), focal, np.float32)}


def to_uint8(rgb: np.ndarray) -> np.ndarray:
  """Colours in [0, 1] to 8-bit levels (rounded)."""
  return np.clip(np.round(np.asarray(rgb) * 255.0), 0, 255).astype(np.uint8)


# --- The Blender synthetic scenes -----------------------------------------------------------


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# 16-bit colour PNGs: Pillow has no 16-bit RGB(A) mode and keeps only the high byte of each
# sample (its raw modes "RGB;16B", "RGBA;16B"). Decoding the same data again with the
# little-endian raw mode ";16L" keeps the other byte (after PNG's unfiltering, which works on
# bytes), so the two reads give the 16-bit samples exactly.
_SIXTEEN_BIT_RAWMODES = {2: "RGB;16B", 6: "RGBA;16B"}  # PNG colour type -> Pillow's raw mode


def _unreadable(path: pathlib.Path, why: str) -> ValueError:
  return ValueError(f"{path} cannot be read as an image ({why}): save it as an 8-bit or "
                    f"16-bit RGB or RGBA PNG (e.g. Blender's PNG output, or "
                    f"PIL.Image.open(f).convert(\"RGBA\").save(f)).")


def read_png(path: str | pathlib.Path) -> np.ndarray:
  """An image file as RGBA values in [0, 1]: each sample divided by the largest its bit depth
  holds (255 for 8-bit samples, 65535 for 16-bit ones), so an image saved at either depth
  reads the same to within the 8-bit rounding. Greyscale is copied to the three colours and an
  image without alpha is opaque (alpha 1); palette and tRNS transparency are applied.

  Args:
    path: a PNG file (8-bit images of other formats Pillow reads are read the same way).

  Returns:
    [h, w, 4] float64 RGBA in [0, 1].

  Raises:
    ValueError: a file Pillow cannot read (not an image, truncated), or a 16-bit greyscale
      image with alpha, which Pillow cannot decode exactly; the message names the file and says
      to save it as an 8-bit or 16-bit RGB(A) PNG.
  """
  # Imported here: only needed when a user reads such a folder.
  import PIL.Image  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  with open(path, "rb") as file:
    head = file.read(26)
  # The IHDR chunk (PNG spec, sec. 11.2.2): bit depth at byte 24, colour type at byte 25.
  depth, colour = (head[24], head[25]) if head[:8] == _PNG_SIGNATURE and len(head) == 26 else (
      8, None)
  try:
    if depth == 16 and colour in _SIXTEEN_BIT_RAWMODES:
      return _read_png16(path, _SIXTEEN_BIT_RAWMODES[colour])
    with PIL.Image.open(path) as image:
      if depth == 16 and colour == 4:
        raise _unreadable(path, "16-bit greyscale with alpha, which Pillow reads only to 8 bits")
      if image.mode in ("I;16", "I;16B", "I;16L", "I") and depth == 16:
        grey = np.asarray(image, np.float64)
        alpha = np.ones_like(grey)
        if "transparency" in image.info:  # tRNS: one grey level that is transparent
          alpha = (grey != image.info["transparency"]).astype(np.float64)
        return np.stack([grey / 65535.0] * 3 + [alpha], axis=-1)
      if image.mode not in ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "La", "RGBa"):
        raise _unreadable(path, f"Pillow's mode {image.mode!r}, {depth}-bit samples")
      return np.asarray(image.convert("RGBA"), np.float64) / 255.0
  except (OSError, SyntaxError, PIL.Image.DecompressionBombError) as error:
    raise _unreadable(path, f"{type(error).__name__}: {error}") from None


def _read_png16(path: pathlib.Path, rawmode: str) -> np.ndarray:
  """A 16-bit RGB(A) PNG as RGBA in [0, 1], exactly (`_SIXTEEN_BIT_RAWMODES`); an RGB one's
  tRNS colour, if any, is transparent."""
  import PIL.Image  # pylint: disable=g-import-not-at-top
  refusal = _unreadable(path, f"a 16-bit {rawmode[:-4]} PNG, which this Pillow "
                        f"({PIL.__version__}) decodes only to 8 bits")
  halves = []
  for byte_order in ("16B", "16L"):  # the high bytes, then the low ones
    with PIL.Image.open(path) as image:
      tile = getattr(image, "tile", None)
      if (not isinstance(tile, list) or len(tile) != 1 or getattr(tile[0], "args", None)
          != rawmode or not hasattr(tile[0], "_replace")):
        raise refusal
      transparent = image.info.get("transparency")
      image.tile = [tile[0]._replace(args=rawmode.replace("16B", byte_order))]
      try:
        halves.append(np.asarray(image, np.float64))
      except ValueError:  # a Pillow without the raw mode
        raise refusal from None
  samples = 256.0 * halves[0] + halves[1]
  if samples.shape[-1] == 3:
    alpha = np.ones_like(samples[..., :1])
    if transparent is not None:
      alpha = np.any(samples != np.asarray(transparent), axis=-1, keepdims=True).astype(float)
    samples = np.concatenate([samples, 65535.0 * alpha], axis=-1)
  return samples / 65535.0


def load_blender(directory: str | pathlib.Path, split: str = "train", *, size: int | None = None,
                 background: float = BACKGROUND) -> dict[str, np.ndarray]:
  """Reads a split of a scene in the Blender synthetic format of the NeRF paper.

  The folder holds `transforms_<split>.json`:
  `{"camera_angle_x": <radians>, "frames": [{"file_path": "./train/r_0",
  "transform_matrix": [[4 numbers] x 4]}, ...]}`, each `file_path` relative to the folder, with
  or without its ".png". Poses are OpenGL camera-to-world matrices (the convention of this
  module). Images are PNGs of 8 or 16 bits per sample, RGB, RGBA, greyscale or palette
  (`read_png`: both depths read to the same values in [0, 1]); RGBA images are composited on
  `background` (white, as in the paper): rgb * alpha + background * (1 - alpha), then rounded
  to 8-bit levels. All images must share one size; `size` resizes them to `size` x `size`
  (Pillow's area filter, focal scaled).

  Args:
    directory: the scene's folder, e.g. nerf_synthetic/lego.
    split: "train", "val" or "test": reads `transforms_<split>.json`.
    size: the side of the resized square images; None keeps them as stored (square or not).
    background: the grey level in [0, 1] under transparent pixels.

  Returns:
    {"image": [n, h, w, 3] uint8, "pose": [n, 4, 4] float32, "focal": [n] float32 (pixels)}.

  Raises:
    FileNotFoundError: the folder, its transforms file or an image is missing (the message
      names it and the layout expected).
    ValueError: an ill-formed transforms file (not JSON, no camera_angle_x or frames, a
      transform_matrix that is not 4x4 numbers), an image that cannot be read (`read_png`:
      the message names the file and how to save it), images of different sizes, a
      `background` outside [0, 1], or a `size` for images that are not square.
  """
  # Imported here: only needed when a user reads such a folder.
  import PIL.Image  # pylint: disable=g-import-not-at-top
  if not 0.0 <= background <= 1.0:
    raise ValueError(f"background must be a grey level in [0, 1], got {background}: 1 for "
                     f"white (the Blender scenes' convention), 0 for black.")
  folder = pathlib.Path(directory)
  layout = ("a Blender synthetic scene folder holds transforms_train.json, transforms_val.json "
            "and transforms_test.json and the PNG images they name (e.g. nerf_synthetic/lego)")
  if not folder.is_dir():
    raise FileNotFoundError(f"{folder} is not a folder: {layout}.")
  file = folder / f"transforms_{split}.json"
  if not file.is_file():
    raise FileNotFoundError(f"{file} does not exist: {layout}.")
  try:
    meta = json.loads(file.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise ValueError(f"{file} is not valid JSON ({error}): {layout}.") from None
  angle = meta.get("camera_angle_x") if isinstance(meta, dict) else None
  frames = meta.get("frames") if isinstance(meta, dict) else None
  if not isinstance(angle, (int, float)) or not 0 < angle < math.pi:
    raise ValueError(f"{file} needs \"camera_angle_x\", the horizontal field of view in "
                     f"radians in (0, pi), got {angle!r}.")
  if not isinstance(frames, list) or not frames:
    raise ValueError(f"{file} needs a non-empty list \"frames\" of {{\"file_path\", "
                     f"\"transform_matrix\"}}, got {type(frames).__name__}.")
  images, poses = [], []
  for i, frame in enumerate(frames):
    try:
      pose = np.asarray(frame["transform_matrix"], np.float64)
      path = folder / str(frame["file_path"])
    except (KeyError, TypeError, ValueError):
      raise ValueError(f"{file}: frame {i} needs \"file_path\" and \"transform_matrix\" (4x4 "
                       f"numbers), got {frame!r:.200}.") from None
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
      raise ValueError(f"{file}: frame {i}'s transform_matrix must be 4x4 finite numbers, got "
                       f"shape {pose.shape}.")
    if path.suffix.lower() != ".png":
      path = path.with_name(path.name + ".png")
    if not path.is_file():
      raise FileNotFoundError(f"{file}: frame {i}'s image {path} does not exist.")
    rgba = read_png(path)
    rgb = rgba[..., :3] * rgba[..., 3:] + background * (1.0 - rgba[..., 3:])
    if images and rgb.shape != images[0].shape:
      raise ValueError(f"{file}: frame {i}'s image {path} is {rgb.shape[1]}x{rgb.shape[0]}, "
                       f"frame 0's {images[0].shape[1]}x{images[0].shape[0]}: all images of a "
                       f"scene must have one size.")
    images.append(rgb)
    poses.append(pose)
  height, width = images[0].shape[:2]
  focal = focal_length(width, angle)
  if size is not None:
    if size < 1:
      raise ValueError(f"size must be a positive number of pixels, got {size}.")
    if height != width:
      raise ValueError(f"{file}: the images are {width}x{height}; size={size} resizes square "
                       f"images only: pass size=None to keep them as stored.")
    resized = []
    for rgb in images:
      image = PIL.Image.fromarray(to_uint8(rgb))
      resized.append(np.asarray(image.resize((size, size), PIL.Image.Resampling.BOX)))
    focal *= size / width
    image_array = np.stack(resized)
  else:
    image_array = to_uint8(np.stack(images))
  return {"image": image_array, "pose": np.stack(poses).astype(np.float32),
          "focal": np.full(len(poses), focal, np.float32)}
