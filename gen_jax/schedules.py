"""Variance-preserving noise schedules for diffusion models, discrete and continuous.

A diffusion model corrupts data x_0 into

    x_t = alpha_t x_0 + sigma_t eps,     eps ~ N(0, I),

and every schedule here is *variance preserving* (Ho et al. 2020; Song et al. 2021):

    alpha_t^2 + sigma_t^2 = 1                       (so Var[x_t] = 1 when Var[x_0] = 1)
    SNR(t) = alpha_t^2 / sigma_t^2,  log SNR(t) = log alpha_t^2 - log sigma_t^2
    SNR is strictly decreasing in t                 (later timesteps are noisier)
    alpha_t -> 1, sigma_t -> 0 at the clean end; alpha_t -> 0, sigma_t -> 1 at the noisy end.

DDPM's notation writes alpha_bar_t = alpha_t^2 = prod_{s <= t} (1 - beta_s).

Discrete schedules (`Schedule`) have T training timesteps, indexed t = 0 .. T-1 here: index t is
DDPM's timestep t + 1, so `alpha_bar[0] = 1 - beta_1` is the least noisy level and
`alpha_bar[T - 1]` the noisiest. Samplers step through a decreasing subsequence of these
indices (`Schedule.sampling_timesteps`); "index -1" stands for the clean data, alpha = 1.

Continuous-time schedules are functions `t in [0, 1] -> (alpha_t, sigma_t)`
(`cosine_alpha_sigma`, `linear_alpha_sigma`); `discretize(fn, T)` samples one at
t = (i + 1) / T, i = 0 .. T-1, which is how `cosine` and `linear` relate to their continuous
forms.

References:
  Ho, Jain and Abbeel, "Denoising Diffusion Probabilistic Models", 2020 (linear betas).
  Nichol and Dhariwal, "Improved Denoising Diffusion Probabilistic Models", 2021, eq. 17
    (cosine schedule, betas clipped at 0.999).
  Song et al., "Score-Based Generative Modeling through SDEs", 2021, eq. 33 (the VP SDE, whose
    continuous linear-beta schedule is `linear_alpha_sigma`).
  Kingma et al., "Variational Diffusion Models", 2021 (SNR and log-SNR parameterisation).
"""

import dataclasses
from typing import Callable

import jax.numpy as jnp
import numpy as np

from gen_jax.types import Array

AlphaSigmaFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass(frozen=True, eq=False)
class Schedule:
  """A discrete variance-preserving schedule of T timesteps.

  Attributes:
    alpha_bar: [T] float64, alpha_t^2 = prod_{s <= t} (1 - beta_s), strictly decreasing, in
      (0, 1). Index 0 is the least noisy level.
  """

  alpha_bar: np.ndarray  # [T] float64

  def __post_init__(self):
    a = np.asarray(self.alpha_bar, np.float64)
    if a.ndim != 1 or a.size < 1:
      raise ValueError(f"alpha_bar must be a non-empty vector, got shape {a.shape}.")
    if not (np.all(a > 0) and np.all(a < 1) and np.all(np.diff(a) < 0)):
      raise ValueError("alpha_bar must be strictly decreasing within (0, 1).")
    object.__setattr__(self, "alpha_bar", a)

  @property
  def num_timesteps(self) -> int:
    return int(self.alpha_bar.shape[0])

  @property
  def betas(self) -> np.ndarray:
    """[T] beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}, with alpha_bar_{-1} = 1."""
    return 1.0 - self.alpha_bar / np.concatenate([[1.0], self.alpha_bar[:-1]])

  def alpha(self, t: Array) -> Array:
    """alpha_t = sqrt(alpha_bar_t) for int timesteps t (any shape); 1 at t = -1."""
    return _with_clean(np.sqrt(self.alpha_bar), 1.0)[jnp.asarray(t, jnp.int32)]

  def sigma(self, t: Array) -> Array:
    """sigma_t = sqrt(1 - alpha_bar_t) for int timesteps t (any shape); 0 at t = -1."""
    return _with_clean(np.sqrt(1.0 - self.alpha_bar), 0.0)[jnp.asarray(t, jnp.int32)]

  def log_snr(self, t: Array) -> Array:
    """log(alpha_t^2 / sigma_t^2) for int timesteps t in [0, T)."""
    values = np.log(self.alpha_bar) - np.log1p(-self.alpha_bar)
    return jnp.asarray(values, jnp.float32)[jnp.asarray(t, jnp.int32)]

  def snr(self, t: Array) -> Array:
    """alpha_t^2 / sigma_t^2 for int timesteps t in [0, T)."""
    values = self.alpha_bar / (1.0 - self.alpha_bar)
    return jnp.asarray(values, jnp.float32)[jnp.asarray(t, jnp.int32)]

  def sampling_timesteps(self, num_steps: int) -> np.ndarray:
    """A decreasing subsequence of `num_steps` training timesteps, from T-1 down to 0.

    Evenly spaced and rounded (`linspace(T - 1, 0, num_steps)`), so `num_steps = T` is every
    timestep and `num_steps = 1` is the noisiest one only. Static (NumPy): samplers take their
    trip count from it.
    """
    if not 1 <= num_steps <= self.num_timesteps:
      raise ValueError(f"num_steps must be in [1, {self.num_timesteps}], got {num_steps}.")
    return np.round(np.linspace(self.num_timesteps - 1, 0, num_steps)).astype(np.int32)

  def add_noise(self, x0: Array, t: Array, eps: Array) -> Array:
    """x_t = alpha_t x0 + sigma_t eps for x0, eps [batch, ...] and t [batch]."""
    shape = (-1,) + (1,) * (x0.ndim - 1)
    return self.alpha(t).reshape(shape) * x0 + self.sigma(t).reshape(shape) * eps


def _with_clean(values: np.ndarray, clean: float) -> Array:
  """[T + 1] float32 table whose last entry, reached by index -1, is the clean-data value."""
  return jnp.asarray(np.concatenate([values, [clean]]), jnp.float32)


def from_betas(betas: np.ndarray) -> Schedule:
  """The schedule of per-step variances beta_1..beta_T: alpha_bar_t = prod_{s<=t}(1 - beta_s)."""
  return Schedule(np.cumprod(1.0 - np.asarray(betas, np.float64)))


def linear(num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
           ) -> Schedule:
  """DDPM's schedule (Ho et al. 2020): betas linear from beta_start to beta_end.

  The default (T = 1000) ends at alpha_bar_T = 4.0e-5; fewer timesteps should scale the betas
  by 1000 / T to keep the same endpoints (as `linear_alpha_sigma` does in continuous time).
  """
  return from_betas(np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64))


def cosine_alpha_sigma(t: np.ndarray, s: float = 0.008) -> tuple[np.ndarray, np.ndarray]:
  """The continuous cosine schedule (Nichol & Dhariwal 2021, eq. 17) for t in [0, 1]:

      alpha_t = cos(pi/2 (t + s)/(1 + s)) / cos(pi/2 s/(1 + s)),  sigma_t = sqrt(1 - alpha_t^2).

  alpha_0 = 1 and alpha_1 = 0 exactly (up to rounding); `cosine` clips its betas at 0.999.
  """
  t = np.asarray(t, np.float64)
  f = lambda u: np.cos(0.5 * np.pi * (u + s) / (1.0 + s))
  alpha = np.clip(f(t) / f(0.0), 0.0, 1.0)
  return alpha, np.sqrt(1.0 - alpha**2)


def linear_alpha_sigma(t: np.ndarray, beta_min: float = 0.1, beta_max: float = 20.0
                       ) -> tuple[np.ndarray, np.ndarray]:
  """The VP SDE's linear beta(t) = beta_min + t (beta_max - beta_min), t in [0, 1] (Song et al.
  2021, eq. 33): alpha_t^2 = exp(-(beta_min t + (beta_max - beta_min) t^2 / 2)).

  DDPM's linear schedule with T steps is its discretisation with beta_i ~ beta(i / T) / T.
  """
  t = np.asarray(t, np.float64)
  alpha = np.exp(-0.5 * (beta_min * t + 0.5 * (beta_max - beta_min) * t**2))
  return alpha, np.sqrt(-np.expm1(-(beta_min * t + 0.5 * (beta_max - beta_min) * t**2)))


def discretize(alpha_sigma_fn: AlphaSigmaFn, num_timesteps: int, max_beta: float = 0.999
               ) -> Schedule:
  """T timesteps of a continuous schedule, at t = (i + 1) / T for i = 0 .. T-1.

  Each beta_i = 1 - alpha_bar_i / alpha_bar_{i-1} is clipped at `max_beta` (Nichol & Dhariwal
  2021), which keeps the noisiest level's alpha_bar above 0.
  """
  t = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps
  alpha, _ = alpha_sigma_fn(t)
  alpha_bar = alpha**2
  betas = np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], max_beta)
  return from_betas(betas)


def cosine(num_timesteps: int = 1000, s: float = 0.008) -> Schedule:
  """Nichol & Dhariwal's cosine schedule with T steps (betas clipped at 0.999)."""
  return discretize(lambda t: cosine_alpha_sigma(t, s), num_timesteps)
