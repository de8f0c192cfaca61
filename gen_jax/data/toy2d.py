"""Exact 2-D toy distributions: the ring of 8 and grid of 25 Gaussians, swiss roll, two moons.

Pure NumPy, importable without tfds, so that metrics (mode coverage, high-quality fraction,
reverse KL) use the very parameters the `toy2d` dataset was sampled from:

```python
from gen_jax.data import toy2d
mixture = toy2d.DISTRIBUTIONS["ring8"]  # means [8, 2], std, weights [8]
points, mode = toy2d.sample("ring8", np.random.default_rng(0), 512)
```

Every distribution is a mixture of `num_modes` components; `sample` returns each point with the
index of the component that drew it.

- `ring8`: 8 isotropic Gaussians, std 0.01, means on the circle of radius 1 at the angles
  `2 * pi * i / 8` for `i = 0..7` (mode `i` at angle `2 * pi * i / 8`), equal weights.
- `grid25`: 25 isotropic Gaussians, std 0.05, means `(x, y)` with `x, y` in `{-4, -2, 0, 2, 4}`;
  mode `5 * a + b` has mean `(VALUES[a], VALUES[b])`, equal weights.
- `swiss_roll`: one component. `t = 1.5 * pi * (1 + 2 * u)` with `u ~ U[0, 1)`, then
  `0.1 * (t cos t, t sin t) + N(0, 0.05^2 I)`; the 2-D projection `[:, [0, 2]] / 10` of
  `sklearn.datasets.make_swiss_roll(noise=0.5)` (which adds the noise before the division).
- `two_moons`: two components of weight 1/2, `theta ~ U[0, pi]`: mode 0 is the upper moon
  `(cos theta, sin theta)`, mode 1 the lower moon `(1 - cos theta, 0.5 - sin theta)`, each plus
  `N(0, 0.1^2 I)`; the geometry of `sklearn.datasets.make_moons(noise=0.1)`, with `theta`
  drawn uniformly instead of on a grid.
"""

import dataclasses
import itertools

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianMixture:
  """A mixture of isotropic 2-D Gaussians with a shared standard deviation."""

  means: np.ndarray  # [modes, 2] float64
  std: float  # per-coordinate standard deviation of every component
  weights: np.ndarray  # [modes] float64, sums to 1

  @property
  def num_modes(self) -> int:
    return len(self.weights)

  def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Draws `n` points: a component from `weights`, then its Gaussian.

    Returns:
      points [n, 2] float32 and mode [n] int32.
    """
    mode = rng.choice(self.num_modes, size=n, p=self.weights)
    points = self.means[mode] + self.std * rng.standard_normal((n, 2))
    return points.astype(np.float32), mode.astype(np.int32)


@dataclasses.dataclass(frozen=True)
class SwissRoll:
  """The 2-D swiss roll: `scale * (t cos t, t sin t) + N(0, noise^2 I)`, `t ~ U[t_min, t_max)`."""

  t_min: float = 1.5 * np.pi
  t_max: float = 4.5 * np.pi
  scale: float = 0.1
  noise: float = 0.05  # std of the Gaussian noise added after scaling

  @property
  def num_modes(self) -> int:
    return 1

  @property
  def weights(self) -> np.ndarray:
    return np.ones(1)

  def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Draws `n` points along the roll; every point has mode 0.

    Returns:
      points [n, 2] float32 and mode [n] int32 (zeros).
    """
    t = self.t_min + (self.t_max - self.t_min) * rng.random(n)
    points = self.scale * np.stack([t * np.cos(t), t * np.sin(t)], axis=-1)
    points = points + self.noise * rng.standard_normal((n, 2))
    return points.astype(np.float32), np.zeros(n, np.int32)


@dataclasses.dataclass(frozen=True)
class TwoMoons:
  """Two interleaved half circles of radius 1 (sklearn's `make_moons` geometry).

  Mode 0: `(cos theta, sin theta)`; mode 1: `(1 - cos theta, 0.5 - sin theta)`; `theta ~ U[0, pi]`,
  each point plus `N(0, noise^2 I)`. Mode 1's circle is centred at `LOWER_CENTRE`.
  """

  noise: float = 0.1
  UPPER_CENTRE = (0.0, 0.0)
  LOWER_CENTRE = (1.0, 0.5)

  @property
  def num_modes(self) -> int:
    return 2

  @property
  def weights(self) -> np.ndarray:
    return np.full(2, 0.5)

  def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Draws `n` points, each moon with probability 1/2.

    Returns:
      points [n, 2] float32 and mode [n] int32 (0 upper moon, 1 lower moon).
    """
    mode = rng.integers(0, 2, size=n)
    theta = np.pi * rng.random(n)
    upper = np.stack([np.cos(theta), np.sin(theta)], axis=-1)
    lower = np.stack([1.0 - np.cos(theta), 0.5 - np.sin(theta)], axis=-1)
    points = np.where(mode[:, None] == 0, upper, lower)
    points = points + self.noise * rng.standard_normal((n, 2))
    return points.astype(np.float32), mode.astype(np.int32)


Distribution = GaussianMixture | SwissRoll | TwoMoons


def ring(num_modes: int, radius: float, std: float) -> GaussianMixture:
  """Equal-weight Gaussians at the angles `2 * pi * i / num_modes` on a circle."""
  angles = 2.0 * np.pi * np.arange(num_modes) / num_modes
  means = radius * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
  return GaussianMixture(means=means, std=std, weights=np.full(num_modes, 1.0 / num_modes))


def grid(values: tuple[float, ...], std: float) -> GaussianMixture:
  """Equal-weight Gaussians at every `(x, y)` in `values x values`, `x` varying slowest."""
  means = np.array(list(itertools.product(values, values)), dtype=np.float64)
  return GaussianMixture(means=means, std=std, weights=np.full(len(means), 1.0 / len(means)))


GRID_VALUES = (-4.0, -2.0, 0.0, 2.0, 4.0)

DISTRIBUTIONS: dict[str, Distribution] = {
    "ring8": ring(8, radius=1.0, std=0.01),
    "grid25": grid(GRID_VALUES, std=0.05),
    "swiss_roll": SwissRoll(),
    "two_moons": TwoMoons(),
}
NAMES = tuple(DISTRIBUTIONS)


def distribution(name: str) -> Distribution:
  """The exact distribution of a toy2d config, e.g. `distribution("ring8").means`."""
  if name not in DISTRIBUTIONS:
    raise ValueError(f"Unknown toy2d distribution {name!r}; valid names: {', '.join(NAMES)}.")
  return DISTRIBUTIONS[name]


def sample(name: str, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
  """Draws `n` exact samples of a toy2d distribution.

  Args:
    name: one of `NAMES`.
    rng: the NumPy generator to draw from.
    n: number of points.

  Returns:
    points [n, 2] float32 and mode [n] int32, the component that drew each point.
  """
  return distribution(name).sample(rng, n)
