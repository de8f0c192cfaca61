"""Animations [n, frames, h, w, c] (a NeRF's turntable) are written as GIFs whose frames are the
image grids of the animations' frames, beside a PNG grid of all frames."""

import importlib.util
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from absl import flags

from gen_jax.train import logging as logging_lib
from gen_jax.viz import grids

SCRIPT = Path(__file__).resolve().parents[2] / "experiments/sample.py"


def _frames(path):
  with PIL.Image.open(path) as gif:
    out = []
    for i in range(gif.n_frames):
      gif.seek(i)
      out.append(np.asarray(gif.convert("RGB")))
  return out


def test_save_gif_writes_one_grid_per_frame(tmp_path):
  rng = np.random.default_rng(0)
  # Few distinct colours, so that the GIF palette keeps them exactly.
  levels = np.array([-1.0, 0.0, 1.0])
  animation = levels[rng.integers(0, 3, (2, 4, 6, 5, 3))]
  path = grids.save_gif(animation, tmp_path / "a.gif", scale=1)
  frames = _frames(path)
  assert len(frames) == 4
  for t, frame in enumerate(frames):
    np.testing.assert_array_equal(frame, grids.image_grid(animation[:, t]))
  with pytest.raises(ValueError, match=r"\[n, frames, h, w, 1 or 3\]"):
    grids.save_gif(animation[0], tmp_path / "b.gif")


def _turntable(frames: int = 3) -> np.ndarray:
  """[1, frames, 8, 8, 3], frame t a flat grey (distinct frames: a GIF merges equal ones)."""
  return np.broadcast_to(np.linspace(-1, 1, frames)[None, :, None, None, None],
                         (1, frames, 8, 8, 3)).astype(np.float32)


def test_the_loop_writes_animations_as_a_gif_and_a_grid(tmp_path):
  writer = logging_lib.MetricWriter(tmp_path)
  try:
    written = writer.write_samples(7, {"turntable": _turntable()})
  finally:
    writer.close()
  assert [p.name for p in written] == ["turntable_0000007.gif", "turntable_0000007.png"]
  assert len(_frames(written[0])) == 3
  with PIL.Image.open(written[1]) as grid:  # the 3 frames on a 2x2 grid, upscaled 8x
    assert grid.size == (8 * (2 * (8 + 1) + 1),) * 2


def test_sample_script_writes_animations_as_a_gif_and_a_grid(tmp_path):
  spec = importlib.util.spec_from_file_location("sample_script_animation", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  try:
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["sample.py", "--workdir=unused", "--num=3"])
    written = module.write_samples({"turntable": _turntable()}, tmp_path, 12)
  finally:
    for holder in vars(module).values():  # the script's own flags (tests/test_sample_script.py)
      if isinstance(holder, flags.FlagHolder) and holder.name in flags.FLAGS:
        delattr(flags.FLAGS, holder.name)
  assert [p.name for p in written] == ["turntable_step12_seed0_num3.gif",
                                       "turntable_step12_seed0_num3.png"]
  assert len(_frames(written[0])) == 3
