"""Tests for gen_jax.viz.grids: image grids, and 2-D scatter plots on fixed axes."""

import numpy as np
import pytest
from PIL import Image

from gen_jax.viz import grids


def png_limits(path) -> tuple[float, ...]:
  with Image.open(path) as image:
    return tuple(float(v) for v in image.text["Limits"].split())


def test_image_grid_tiles_row_by_row():
  images = np.stack([np.full((2, 3, 1), v) for v in (-1.0, 0.0, 1.0)])
  grid = grids.image_grid(images, columns=2, padding=1)
  assert grid.shape == (2 * 3 + 1, 2 * 4 + 1, 3) and grid.dtype == np.uint8
  # (v + 1) * 127.5 rounded: -1 -> 0, 0 -> 128, 1 -> 255; white padding and empty cells.
  np.testing.assert_array_equal(grid[1:3, 1:4], 0)
  np.testing.assert_array_equal(grid[1:3, 5:8], 128)
  np.testing.assert_array_equal(grid[4:6, 1:4], 255)
  np.testing.assert_array_equal(grid[0], 255)
  np.testing.assert_array_equal(grid[4:6, 5:8], 255)


@pytest.mark.parametrize("points,limits", [
    # Centre (1, 0.5); half the widest span (2 / 2 = 1), 25 % wider on each side: 1.5.
    ([[0.0, 0.0], [2.0, 1.0]], (-0.5, 2.5, -1.0, 2.0)),
    # Non-finite points are ignored.
    ([[0.0, 0.0], [np.nan, 5.0], [2.0, 1.0], [np.inf, 0.0]], (-0.5, 2.5, -1.0, 2.0)),
    # One point: a window 0.1 across around it.
    ([[3.0, -4.0]], (2.95, 3.05, -4.05, -3.95)),
    # No finite point: the unit window.
    ([[np.nan, np.nan]], (-1.0, 1.0, -1.0, 1.0)),
])
def test_scatter_limits_are_a_square_window_around_the_finite_points(points, limits):
  np.testing.assert_allclose(grids.scatter_limits(np.array(points)), limits, rtol=1e-12)


def test_scatter_figure_draws_samples_over_the_reference_on_the_given_window():
  reference = np.array([[0.0, 0.0], [1.0, 1.0], [-1.0, 0.5]])
  points = np.array([[0.5, 0.5], [3.0, 0.0], [0.0, -3.0], [np.nan, 0.0], [-0.5, 0.25]])
  fig = grids.scatter_figure(points, reference=reference, limits=(-2.0, 2.0, -1.5, 2.5),
                             title="samples, step 7")
  ax = fig.axes[0]
  assert ax.get_xlim() == (-2.0, 2.0) and ax.get_ylim() == (-1.5, 2.5)
  # The reference first (underneath), then the samples.
  data, samples = ax.collections
  np.testing.assert_array_equal(data.get_offsets(), reference)
  np.testing.assert_array_equal(samples.get_offsets(), points)
  # Two points lie outside the window and one is not finite.
  assert ax.get_title() == "samples, step 7 (3 of 5 outside)"
  # Without a window: the reference's.
  ax = grids.scatter_figure(points, reference=reference).axes[0]
  np.testing.assert_allclose((*ax.get_xlim(), *ax.get_ylim()), grids.scatter_limits(reference))


def test_save_scatter_keeps_the_window_whatever_the_spread(tmp_path):
  rng = np.random.default_rng(0)
  limits = (-1.5, 1.5, -1.5, 1.5)
  narrow = grids.save_scatter(0.01 * rng.normal(size=(200, 2)), tmp_path / "a.png",
                              limits=limits)
  wide = grids.save_scatter(10.0 * rng.normal(size=(200, 2)), tmp_path / "b.png", limits=limits)
  assert png_limits(narrow) == png_limits(wide) == limits


def test_byte_tokens_are_written_as_utf8_text_and_other_ids_are_refused(tmp_path):
  text = "é\n"  # two UTF-8 bytes and a newline
  ids = np.array([list(text.encode("utf-8")) + [0x61], [0xFF, 0x62, 0x63, 0x64]], np.int32)
  path = grids.save_byte_text(ids, tmp_path / "s.txt")
  # The lone byte 0xFF is no UTF-8: it reads as U+FFFD; the samples are split by "----".
  assert path.read_text(encoding="utf-8") == "é\na\n\n----\n\n\ufffdbcd"
  assert grids.is_byte_tokens(ids) and not grids.is_byte_tokens(ids + 1)  # 256 is no byte
  assert not grids.is_byte_tokens(ids.astype(np.float32))
  with pytest.raises(ValueError, match="0 .. 255"):
    grids.save_byte_text(np.array([[256]]), tmp_path / "t.txt")
