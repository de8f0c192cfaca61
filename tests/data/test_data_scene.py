"""The posed-image data for NeRF: the ray tracer against hand-computed hits, the bundled `scene`
dataset, and the reader of the Blender synthetic format on tiny folders written here."""

import json
import math
import struct
import zlib

import numpy as np
import PIL.Image
import pytest

from gen_jax import data
from gen_jax.data import builders
from gen_jax.data import scene


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
  return str(tmp_path_factory.mktemp("tfds"))


def test_a_sphere_seen_head_on_is_hit_at_the_expected_depth_and_shade():
  ball = scene.Sphere((0.0, 0.0, 0.0), 1.0, (0.5, 0.5, 0.5))
  world = scene.Scene((ball,), light=(0.0, 0.0, 1.0), ambient=0.2)
  # A camera on the +z axis looking down: the centre ray meets the top of the sphere at depth 3,
  # where the normal faces the light: full diffuse light.
  rgb, t, hit = scene.shade(world, np.array([[0.0, 0.0, 4.0]]), np.array([[0.0, 0.0, -1.0]]))
  np.testing.assert_allclose(t, [3.0])
  np.testing.assert_allclose(rgb, [[0.5, 0.5, 0.5]])
  # From the side the lit half is brighter; at 60 degrees from the light, n.l = 1/2.
  direction = np.array([[-math.sin(math.pi / 3), 0.0, -math.cos(math.pi / 3)]])
  rgb, t, _ = scene.shade(world, -4 * direction, direction)
  np.testing.assert_allclose(t, [3.0])
  np.testing.assert_allclose(rgb, [[0.5 * (0.2 + 0.8 * 0.5)] * 3])
  # A ray that misses shows the background.
  rgb, t, hit = scene.shade(world, np.array([[2.0, 0.0, 4.0]]), np.array([[0.0, 0.0, -1.0]]))
  assert not hit[0] and t[0] == np.inf
  np.testing.assert_allclose(rgb, [[1.0, 1.0, 1.0]])


def test_boxes_are_hit_on_the_face_a_ray_enters_and_cast_shadows():
  box = scene.Box((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0), (0.2, 0.4, 0.6))
  t, normal, albedo = scene.intersect(
      scene.Scene((box,)), np.array([[5.0, 0.3, 0.2], [0.2, 0.1, 0.0], [5.0, 3.0, 0.0]]),
      np.array([[-2.0, 0.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]]))
  np.testing.assert_allclose(t[:2], [2.0, 1.0])  # the +x face at depth 4 / |d| 2; from inside
  assert t[2] == np.inf
  np.testing.assert_allclose(normal[0], [1.0, 0.0, 0.0])
  np.testing.assert_allclose(albedo[0], box.color)
  # A slab under a floating box: the point below it is in shadow (ambient only), one beside is
  # lit.
  floor = scene.Box((-5.0, -5.0, -1.0), (5.0, 5.0, 0.0), (1.0, 1.0, 1.0))
  world = scene.Scene((floor, scene.Box((-0.5, -0.5, 1.0), (0.5, 0.5, 1.5), (1, 0, 0))),
                      light=(0.0, 0.0, 1.0), ambient=0.3)
  rgb, _, _ = scene.shade(world, np.array([[0.0, 0.0, 0.9], [2.0, 0.0, 0.9]]),
                          np.array([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]]))
  np.testing.assert_allclose(rgb, [[0.3, 0.3, 0.3], [1.0, 1.0, 1.0]])


def test_look_at_is_an_opengl_camera():
  pose = scene.look_at((0.0, -4.0, 0.0))
  np.testing.assert_allclose(pose[:3, :3].T @ pose[:3, :3], np.eye(3), atol=1e-12)
  np.testing.assert_allclose(-pose[:3, 2], [0.0, 1.0, 0.0])  # looks down -z, at the origin
  np.testing.assert_allclose(pose[:3, 1], [0.0, 0.0, 1.0])  # y is the world's up
  np.testing.assert_allclose(pose[:3, 3], [0.0, -4.0, 0.0])


def test_unknown_scene_names_are_refused_with_the_valid_ones(data_dir):
  with pytest.raises(ValueError, match="Unknown scene 'cubes': choose one of primitives, sphere"):
    scene.make_scene("cubes")
  with pytest.raises(ValueError, match="Unknown config 'cubes_32' of scene; valid: "
                     "primitives_32, primitives_64, sphere_32"):
    data.info("scene/cubes_32", data_dir)


def test_the_bundled_scene_holds_the_documented_views(data_dir):
  batch = next(data.load("scene/sphere_32", "test", 16, 0, shuffle=False, num_epochs=1,
                         data_dir=data_dir))
  want = scene.views("sphere", "test", 32)
  assert batch.keys() == want.keys() == {"image", "pose", "focal"}
  for key in want:
    np.testing.assert_array_equal(batch[key], want[key])
  assert batch["image"].dtype == np.uint8 and batch["image"].shape == (16, 32, 32, 3)
  np.testing.assert_allclose(batch["focal"], 0.5 * 32 / math.tan(0.5 * 0.6911112), rtol=1e-6)
  info = data.info("scene", data_dir)
  assert info.name == "scene/primitives_32" and info.splits == {"train": 64, "test": 16}
  assert info.num_levels == 256 and info.metadata["near"] == 2.0 and info.metadata["far"] == 6.0
  # Cameras on the sphere of radius 4, looking at the origin, never a training camera.
  train = scene.split_poses("sphere", "train")
  np.testing.assert_allclose(np.linalg.norm(batch["pose"][:, :3, 3], axis=-1), 4.0, rtol=1e-6)
  centres = batch["pose"][:, :3, 3] / 4.0
  np.testing.assert_allclose(-batch["pose"][:, :3, 2], -centres, atol=1e-6)
  gaps = np.linalg.norm(centres[:, None] - train[None, :, :3, 3] / 4.0, axis=-1)
  assert gaps.min() > 1e-3
  elevation = np.degrees(np.arcsin(centres[:, 2]))
  assert np.all((elevation >= 15.0) & (elevation <= 55.0))
  # Every view sees the scene, inside [near, far].
  for pose in batch["pose"][:4]:
    _, depth, hit = scene.render_view(scene.make_scene("sphere"), pose.astype(np.float64),
                                      float(batch["focal"][0]), 32, 32)
    assert hit.mean() > 0.2 and depth[hit].min() > 2.0 and depth[hit].max() < 6.0


def _blender_folder(path, num_frames=2, size=6, **overrides):
  """A tiny Blender-format scene: RGBA PNGs, half of each transparent."""
  (path / "train").mkdir(parents=True)
  rng = np.random.default_rng(0)
  meta = {"camera_angle_x": 0.8, "frames": []}
  for i in range(num_frames):
    rgba = rng.integers(0, 256, (size, size, 4), dtype=np.uint8)
    rgba[:, : size // 2, 3] = 0  # transparent: the background shows
    rgba[:, size // 2:, 3] = 255
    PIL.Image.fromarray(rgba, "RGBA").save(path / "train" / f"r_{i}.png")
    pose = scene.orbit_pose(90.0 * i, 30.0)
    meta["frames"].append({"file_path": f"./train/r_{i}", "rotation": 0.0,
                           "transform_matrix": pose.tolist()})
  meta.update(overrides)
  (path / "transforms_train.json").write_text(json.dumps(meta))
  return meta


def test_the_blender_format_is_read_composited_on_white(tmp_path):
  meta = _blender_folder(tmp_path)
  views = scene.load_blender(tmp_path, "train")
  assert views["image"].shape == (2, 6, 6, 3) and views["image"].dtype == np.uint8
  raw = np.asarray(PIL.Image.open(tmp_path / "train" / "r_1.png"))
  np.testing.assert_array_equal(views["image"][1][:, :3], 255)
  np.testing.assert_array_equal(views["image"][1][:, 3:], raw[:, 3:, :3])
  np.testing.assert_allclose(views["pose"][1], meta["frames"][1]["transform_matrix"], rtol=1e-6)
  np.testing.assert_allclose(views["focal"], 0.5 * 6 / math.tan(0.4), rtol=1e-6)
  half = scene.load_blender(tmp_path, "train", size=3)
  assert half["image"].shape == (2, 3, 3, 3)
  np.testing.assert_allclose(half["focal"], 0.5 * 3 / math.tan(0.4), rtol=1e-6)


def _write_png16(path, samples: np.ndarray, transparent: tuple[int, ...] | None = None) -> None:
  """A 16-bit PNG written by hand (PNG spec: signature, IHDR, one zlib IDAT, IEND) from
  samples [h, w, c] uint16, c = 1, 2, 3, 4 for grey, grey + alpha, RGB, RGBA, and a tRNS chunk
  naming the `transparent` grey level or colour. The rows cycle through filters None, Sub and
  Up, so the reader's unfiltering is exercised."""
  height, width, channels = samples.shape
  raw = samples.astype(">u2").view(np.uint8).reshape(height, width * channels * 2).astype(int)
  step = channels * 2  # bytes per pixel: Sub subtracts the byte one pixel to the left
  rows = []
  for r in range(height):
    kind = r % 3
    if kind == 1:
      row = raw[r] - np.concatenate([np.zeros(step, int), raw[r, :-step]])
    elif kind == 2:
      row = raw[r] - (raw[r - 1] if r else 0)
    else:
      row = raw[r]
    rows.append(bytes([kind]) + (row % 256).astype(np.uint8).tobytes())

  def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

  colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
  header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
  trns = b"" if transparent is None else chunk(b"tRNS", struct.pack(
      f">{len(transparent)}H", *transparent))
  path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + trns
                   + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


def _two_depth_scene(path, samples: np.ndarray) -> None:
  """One scene, the same image saved twice: 8-bit (Pillow, levels round(v / 257)) for split
  "train", 16-bit (`_write_png16`) for split "test"."""
  (path / "img").mkdir(parents=True)
  mode = {1: "L", 3: "RGB", 4: "RGBA"}[samples.shape[-1]]
  eight = np.round(samples / 257.0).astype(np.uint8)
  PIL.Image.fromarray(eight[..., 0] if mode == "L" else eight, mode).save(path / "img" / "e.png")
  _write_png16(path / "img" / "s.png", samples)
  for split, name in (("train", "e"), ("test", "s")):
    meta = {"camera_angle_x": 0.8, "frames": [{"file_path": f"./img/{name}",
                                               "transform_matrix": np.eye(4).tolist()}]}
    (path / f"transforms_{split}.json").write_text(json.dumps(meta))


def _composited(rgba: np.ndarray, background: float) -> np.ndarray:
  """The documented compositing, by hand: rgb * alpha + background * (1 - alpha), rounded to
  8-bit levels."""
  rgb = rgba[..., :3] * rgba[..., 3:] + background * (1.0 - rgba[..., 3:])
  return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("channels", [4, 3, 1])
@pytest.mark.parametrize("background", [1.0, 0.25])
def test_8_and_16_bit_pngs_read_to_the_same_colours(tmp_path, channels, background):
  rng = np.random.default_rng(channels)
  samples = rng.integers(0, 65536, (5, 7, channels)).astype(np.uint16)
  if channels == 4:  # transparent, opaque and partial alphas
    samples[0, :, 3], samples[1, :, 3] = 0, 65535
  _two_depth_scene(tmp_path, samples)
  eight = scene.load_blender(tmp_path, "train", background=background)["image"][0]
  sixteen = scene.load_blender(tmp_path, "test", background=background)["image"][0]
  # Each depth reads to its samples / (2^bits - 1), grey copied to R, G, B, no alpha opaque.
  def rgba(values: np.ndarray, top: float) -> np.ndarray:
    values = values / top
    if channels == 1:
      values = np.repeat(values, 3, axis=-1)
    return values if channels == 4 else np.concatenate([values, np.ones((5, 7, 1))], -1)
  np.testing.assert_array_equal(sixteen, _composited(rgba(samples, 65535.0), background))
  np.testing.assert_array_equal(
      eight, _composited(rgba(np.round(samples / 257.0), 255.0), background))
  # The two files hold the same image to within 8-bit rounding: they read within 1/255.
  assert np.abs(eight.astype(int) - sixteen.astype(int)).max() <= 1


@pytest.mark.parametrize("channels", [3, 1])
def test_a_16_bit_png_s_transparent_colour_reads_as_transparent(tmp_path, channels):
  samples = np.array([[[1000, 2000, 3000], [5, 6, 7], [5, 6, 8]]], np.uint16)[..., :channels]
  _write_png16(tmp_path / "t.png", samples, transparent=(5, 6, 7)[:channels])
  rgba = scene.read_png(tmp_path / "t.png")
  np.testing.assert_array_equal(rgba[0, :, 3], [1.0, 0.0, 1.0 if channels == 3 else 0.0])
  grey_or_rgb = [1000, 2000, 3000] if channels == 3 else [1000] * 3  # grey copied to R, G, B
  np.testing.assert_allclose(rgba[0, 0, :3] * 65535, grey_or_rgb, rtol=1e-12)


def test_unreadable_images_are_refused_naming_the_file(tmp_path):
  samples = np.zeros((2, 3, 2), np.uint16)
  _two_depth_scene(tmp_path, np.random.default_rng(0).integers(0, 65536, (8, 8, 4)
                                                               ).astype(np.uint16))
  save = "save it as an 8-bit or 16-bit RGB or RGBA PNG"
  _write_png16(tmp_path / "img" / "s.png", samples)  # 16-bit grey + alpha: Pillow has 8 bits
  with pytest.raises(ValueError, match=r"img/s.png cannot be read as an image \(16-bit greyscale "
                     r"with alpha.*\): " + save):
    scene.load_blender(tmp_path, "test")
  (tmp_path / "img" / "s.png").write_bytes(b"not an image at all")
  with pytest.raises(ValueError, match=r"img/s.png cannot be read as an image "
                     r"\(UnidentifiedImageError.*\): " + save):
    scene.load_blender(tmp_path, "test")
  good = (tmp_path / "img" / "e.png").read_bytes()
  assert len(good) > 200
  (tmp_path / "img" / "e.png").write_bytes(good[:100])  # truncated inside the image data
  with pytest.raises(ValueError, match=r"img/e.png cannot be read as an image \(OSError.*\): "
                     + save):
    scene.load_blender(tmp_path, "train")
  with pytest.raises(ValueError, match=r"background must be a grey level in \[0, 1\], got 255"):
    scene.load_blender(tmp_path, "train", background=255)
  # A 16-bit greyscale TIFF named .png: Pillow reads it, in a mode this reader does not take.
  PIL.Image.fromarray(np.zeros((2, 3), np.uint16)).save(tmp_path / "img" / "e.png",
                                                         format="TIFF")
  with pytest.raises(ValueError, match=r"img/e.png cannot be read as an image \(Pillow's mode "
                     r"'I;16', 8-bit samples\): " + save):
    scene.load_blender(tmp_path, "train")


def test_blender_images_of_other_sizes_and_bad_resizes_are_refused(tmp_path):
  _blender_folder(tmp_path)
  PIL.Image.new("RGBA", (4, 6)).save(tmp_path / "train" / "r_1.png")
  with pytest.raises(ValueError, match=r"frame 1's image .*r_1.png is 4x6, frame 0's 6x6: all "
                     r"images of a scene must have one size"):
    scene.load_blender(tmp_path, "train")
  PIL.Image.new("RGBA", (4, 6)).save(tmp_path / "train" / "r_0.png")
  with pytest.raises(ValueError, match=r"the images are 4x6; size=3 resizes square images only"):
    scene.load_blender(tmp_path, "train", size=3)
  assert scene.load_blender(tmp_path, "train")["image"].shape == (2, 6, 4, 3)
  with pytest.raises(ValueError, match="size must be a positive number of pixels, got 0"):
    scene.load_blender(tmp_path, "train", size=0)
  with pytest.raises(ValueError, match="Unknown split 'val': choose one of train, test"):
    scene.split_poses("sphere", "val")
  with pytest.raises(ValueError, match="size must be a positive number of pixels, got 0"):
    scene.views("sphere", "test", 0)


def test_a_pillow_that_decodes_16_bit_colour_otherwise_is_refused_not_truncated(tmp_path,
                                                                                monkeypatch):
  # The exact 16-bit read relies on Pillow's raw mode "RGBA;16B" for such PNGs; a Pillow that
  # names it otherwise must give the error, never the 8-bit truncation.
  _two_depth_scene(tmp_path, np.full((2, 3, 4), 1000, np.uint16))
  # pylint: disable-next=protected-access
  # The low-byte raw mode itself: unchecked, both reads would decode the low bytes.
  monkeypatch.setitem(scene._SIXTEEN_BIT_RAWMODES, 6, "RGBA;16L")
  with pytest.raises(ValueError, match=r"img/s.png cannot be read as an image \(a 16-bit RGBA PNG, "
                     r"which this Pillow .* decodes only to 8 bits\)"):
    scene.load_blender(tmp_path, "test")


@pytest.mark.parametrize("change,error,message", [
    ({"camera_angle_x": None}, ValueError, "needs \"camera_angle_x\""),
    ({"frames": []}, ValueError, "needs a non-empty list \"frames\""),
    ({"frames": [{"file_path": "./train/r_0", "transform_matrix": [[1, 0, 0]]}]}, ValueError,
     "frame 0's transform_matrix must be 4x4"),
    ({"frames": [{"file_path": "./train/r_0"}]}, ValueError,
     "frame 0 needs \"file_path\" and \"transform_matrix\""),
    ({"frames": [{"file_path": "./train/r_9", "transform_matrix": np.eye(4).tolist()}]},
     FileNotFoundError, "frame 0's image .*r_9.png does not exist"),
])
def test_ill_formed_blender_folders_are_refused_clearly(tmp_path, change, error, message):
  _blender_folder(tmp_path, **change)
  with pytest.raises(error, match=message):
    scene.load_blender(tmp_path, "train")


def test_missing_blender_folders_and_files_are_refused_clearly(tmp_path):
  with pytest.raises(FileNotFoundError, match="is not a folder: a Blender synthetic scene "
                     "folder holds transforms_train.json"):
    scene.load_blender(tmp_path / "lego")
  _blender_folder(tmp_path)
  with pytest.raises(FileNotFoundError, match="transforms_test.json does not exist"):
    scene.load_blender(tmp_path, "test")
  (tmp_path / "transforms_train.json").write_text("{not json")
  with pytest.raises(ValueError, match="is not valid JSON"):
    scene.load_blender(tmp_path, "train")


def test_a_prepared_blender_scene_loads_like_the_bundled_one(tmp_path, data_dir):
  _blender_folder(tmp_path / "fake")
  name = builders.prepare_blender(str(tmp_path / "fake"), data_dir, size=4)
  assert name == "nerf_synthetic/fake_4"
  batch = next(data.load(name, "train", 2, 0, shuffle=False, num_epochs=1, data_dir=data_dir))
  want = scene.load_blender(tmp_path / "fake", "train", size=4)
  for key in want:
    np.testing.assert_array_equal(batch[key], want[key])
  info = data.info(name, data_dir)
  assert info.element_spec["pose"].shape == (4, 4) and info.splits == {"train": 2}
