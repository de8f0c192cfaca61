"""GAN-Lab-style pictures of a 2-D GAN (Kahng et al. 2019, "GAN Lab").

A frame has two panels:

  left   the discriminator's output sigmoid(D(x)) as a heat map over the plane, with real points
         (blue) and generated points (orange) on top: where the generator's samples sit on
         ground the discriminator calls fake, the generator's gradient pushes them uphill;
  right  the generator's mapping of a regular grid of latent points (the first two latent
         coordinates on [-3, 3]^2, the others 0): a warped grid that shows how the latent plane
         is stretched over the modes and folded between them.

The arrays come from the method (`GAN.gan_lab`, pure functions of its parameters); this module
only draws them: `draw_frame` draws one frame's arrays, `frame` computes and draws them, and
`save_gif` assembles frames (arrays or PNG files) into an animated GIF. `make_plot_fn` is the
loop's hook: for a method that offers `gan_lab` on 2-D data it returns the function that writes
`frames/frame_<step>.png` and re-assembles `training.gif` whenever the loop samples. Frames are
drawn with matplotlib's Agg backend and work on any machine without a display. Nothing here is
jitted: the networks are applied op by op to a few thousand points.
"""

from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import numpy as np
from PIL import Image


def _pyplot():
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def extent_around(real: np.ndarray, margin: float = 0.25) -> tuple[float, float, float, float]:
  """A square window (x0, x1, y0, y1) around points [n, 2], `margin` of their span wider on
  each side; pass the same one to every frame of an animation."""
  real = np.asarray(real)
  lo, hi = real.min(axis=0), real.max(axis=0)
  center, half = (lo + hi) / 2, (hi - lo).max() / 2 * (1 + 2 * margin) + 1e-3
  return (center[0] - half, center[0] + half, center[1] - half, center[1] + half)


def discriminator_map(method, variables, extent: Sequence[float], *, resolution: int = 100,
                      label: int = 0) -> np.ndarray:
  """sigmoid(D(x)) on a [resolution, resolution] grid over `extent` (x0, x1, y0, y1), row y
  (`GAN.discriminator_map`, as a NumPy array)."""
  return np.asarray(method.discriminator_map(variables, extent, resolution=resolution,
                                             label=label))


def warped_grid(method, variables, *, lines: int = 21, points_per_line: int = 100,
                span: float = 3.0, label: int = 0) -> np.ndarray:
  """The generator's image of a latent grid: [2 * lines, points_per_line, 2] polylines
  (`GAN.warped_grid`, as a NumPy array)."""
  return np.asarray(method.warped_grid(variables, lines=lines, points_per_line=points_per_line,
                                       span=span, label=label))


def draw_frame(arrays: Any, real, *, path: str | Path | None = None, title: str = ""
               ) -> np.ndarray:
  """Draws one frame and returns it as an RGB image [h, w, 3] uint8 (also a PNG at `path`).

  Args:
    arrays: a `gen_jax.methods.gan.GanLabFrame`: `heat` [r, r], `fake` [n, 2], `lines`
      [2 * lines, points, 2] and the `extent` (x0, x1, y0, y1) they were computed over.
    real: [n, 2] real points to draw.
    path: where to write the PNG, or None.
    title: the figure's title, e.g. the step.
  """
  plt = _pyplot()
  real = np.asarray(real, np.float32)
  extent = tuple(arrays.extent)
  heat, fake, lines = (np.asarray(a) for a in (arrays.heat, arrays.fake, arrays.lines))

  fig, (left, right) = plt.subplots(1, 2, figsize=(8.4, 4.2), dpi=100)
  image = left.imshow(heat, origin="lower", extent=extent, cmap="RdYlGn", vmin=0.0, vmax=1.0,
                      interpolation="bilinear", alpha=0.8)
  left.scatter(real[:, 0], real[:, 1], s=3, c="tab:blue", label="real")
  left.scatter(fake[:, 0], fake[:, 1], s=3, c="tab:orange", label="generated")
  left.set_title("sigmoid(D(x)), real and generated", fontsize=9)
  left.legend(loc="upper right", fontsize=7, markerscale=3)
  fig.colorbar(image, ax=left, fraction=0.046, pad=0.04)
  for line in lines:
    right.plot(line[:, 0], line[:, 1], lw=0.5, c="tab:purple", alpha=0.7)
  right.scatter(real[:, 0], real[:, 1], s=3, c="tab:blue")
  right.set_title("generator: image of a latent grid", fontsize=9)
  for ax in (left, right):
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.tick_params(labelsize=7)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.canvas.draw()
  pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
  plt.close(fig)
  if path is not None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
  return pixels


def frame(method, variables, real, *, rng: jax.Array, path: str | Path | None = None,
          title: str = "", extent: Sequence[float] | None = None, num_fake: int = 500,
          label: int = 0) -> np.ndarray:
  """Computes (`method.gan_lab`) and draws (`draw_frame`) one frame: an RGB image [h, w, 3].

  Args:
    method: a `gen_jax.methods.gan.GAN` whose examples are 2-D points.
    variables: its variables, {"params": {"disc": ..., "gen": ...}, ...}.
    real: [n, 2] real points to draw.
    rng: key for the generated points.
    path: where to write the PNG, or None.
    title: the figure's title, e.g. the step.
    extent: the plotted window (x0, x1, y0, y1); default, around `real`. Keep it fixed across
      the frames of an animation.
    num_fake: number of generated points drawn.
    label: the class shown in the heat map and the warped grid of a class-conditional GAN.
  """
  real = np.asarray(real, np.float32)
  extent = tuple(extent) if extent is not None else extent_around(real)
  arrays = method.gan_lab(variables, rng, extent=extent, num_fake=num_fake, label=label)
  return draw_frame(arrays, real, path=path, title=title)


def make_plot_fn(method, info: Any, *, num_real: int = 500
                 ) -> Callable[..., list[Path]] | None:
  """The loop's figure hook: for a method with `gan_lab` trained on a 2-D mixture
  (`info.mixture`, the data's `DatasetInfo`), the function

    plot_fn(variables, rng, *, step, directory) -> [frame path, gif path]

  that draws `directory/frames/frame_{step:07d}.png` (the same `num_real` real points and
  window every frame) and re-assembles `directory/training.gif` from every frame so far; None
  for any other method or data (image GANs' sample grids are the loop's)."""
  mixture = getattr(info, "mixture", None)
  if mixture is None or not hasattr(method, "gan_lab"):
    return None
  real, _ = mixture.sample(np.random.default_rng(0), num_real)  # the same points every frame

  def plot_fn(variables, rng, *, step: int, directory: str | Path) -> list[Path]:
    frames = Path(directory) / "frames"
    path = frames / f"frame_{step:07d}.png"
    frame(method, variables, real, rng=rng, path=path, title=f"step {step}")
    gif = save_gif(sorted(frames.glob("frame_*.png")), Path(directory) / "training.gif")
    return [path, gif]

  return plot_fn


def save_gif(frames: Sequence[np.ndarray | str | Path], path: str | Path, *,
             duration_ms: int = 200, loop: int = 0) -> Path:
  """Writes frames (RGB arrays [h, w, 3] or image files) as an animated GIF; returns its path."""
  if not frames:
    raise ValueError("save_gif needs at least one frame.")
  images = [Image.open(f).convert("RGB") if isinstance(f, (str, Path))
            else Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=loop,
                 optimize=False)
  return path
