"""Mode coverage metrics for samples of a Gaussian mixture (the 2-D ring and grid benchmarks).

The metrics of VEEGAN (Srivastava et al. 2017, synthetic experiments) and PacGAN (Lin et al.
2018, Table 1), computed the way PacGAN's released code computes them
(`MetricLogger` in github.com/fjxmlzn/PacGAN, synthetic_data_experiments/PacGAN/pacgan/
extensions.py). For samples x_1..x_n, mixture means mu_1..mu_k and a shared isotropic standard
deviation sigma:

  nearest(x)        = argmin_j ||x - mu_j||_2                     (ties go to the lower index)
  high quality      : ||x - mu_nearest(x)||_2 <= threshold * sigma (threshold = 3)
  counts_j          = #{high-quality x with nearest(x) = j}
  modes             = #{j : counts_j > 0}
  high_quality_fraction = sum_j counts_j / n
  p_j               = counts_j / sum_i counts_i
  reverse_kl        = KL(p || uniform_k) = sum_{j : p_j > 0} p_j log(p_j k)  (nats)

The reverse KL compares the distribution over modes of the high-quality samples with the target's
uniform weights; it is 0 for perfectly balanced modes and log(k) when every high-quality sample
sits in one mode. PacGAN's code logs the entropy H(p) of the same histogram, and
KL(p || uniform) = log(k) - H(p). PacGAN measures the distance in units of sigma per coordinate
(sqrt(sum_d (x_d - mu_d)^2 / sigma^2) < 3); for an isotropic sigma that is the Euclidean rule
above (a strict or non-strict inequality differs on a set of probability zero).

For exact samples of a 2-D mixture with well separated modes, the distance of a sample to its own
mean is sigma times a chi variable with 2 degrees of freedom, so the expected high-quality fraction
is P(chi_2 <= 3) = 1 - exp(-9/2) = 0.98889.

These metrics cannot see a sampler that puts each mode's samples on a curve or a point near its
mean: it scores as well as, or better than, exact samples. So one more, not in VEEGAN or PacGAN:

  spread            = for each mode with at least 3 high-quality samples, the square roots of
                      the smallest and largest eigenvalues of their covariance, in units of
                      sigma; averaged over those modes (spread_minor, spread_major)

For exact samples both are the standard deviation of one coordinate of a 2-D Gaussian truncated
to radius 3 sigma: sqrt(E[r^2; r <= 3] / (2 P(r <= 3))) with r ~ chi_2, i.e.
sqrt((1 - 5.5 exp(-4.5)) / (1 - exp(-4.5))) = 0.9744 (the 2-D value of `EXACT_SPREAD`).

These are host-side numpy computations on evaluation samples; nothing here is traced or jitted.
"""

import dataclasses
import math

import numpy as np

# The spread of exact samples of a 2-D mixture (see the module docstring).
EXACT_SPREAD = math.sqrt((1 - 5.5 * math.exp(-4.5)) / (1 - math.exp(-4.5)))


@dataclasses.dataclass(frozen=True)
class MixtureMetrics:
  """Mode coverage of a set of samples.

  Attributes:
    modes: number of mixture components that are the nearest mean of at least one high-quality
      sample, in [0, k].
    high_quality_fraction: fraction of all samples within `threshold * std` of their nearest
      mean, in [0, 1].
    reverse_kl: KL(p || uniform) in nats between the normalised per-mode counts p of the
      high-quality samples and the uniform distribution over the k modes, in [0, log k]; NaN when
      no sample is of high quality (p is then undefined).
    counts: [k] int64, the number of high-quality samples assigned to each mode.
    spread_minor, spread_major: the within-mode spread of the high-quality samples along their
      narrowest and widest direction, in units of `std` (`EXACT_SPREAD` = 0.974 for exact 2-D
      samples, near 0 along a direction the sampler does not fill); NaN when no mode has 3
      high-quality samples.
  """

  modes: int
  high_quality_fraction: float
  reverse_kl: float
  counts: np.ndarray  # [k] int64
  spread_minor: float = float("nan")
  spread_major: float = float("nan")

  def scalars(self) -> dict[str, float]:
    """The scalar metrics, for logging."""
    return {"modes": float(self.modes), "high_quality_fraction": self.high_quality_fraction,
            "reverse_kl": self.reverse_kl, "spread_minor": self.spread_minor,
            "spread_major": self.spread_major}


def mixture_metrics(*, samples, means, std: float, threshold: float = 3.0) -> MixtureMetrics:
  """Counts modes, high-quality samples and the reverse KL of mode frequencies to uniform.

  The definitions are in the module docstring (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al.
  2018, whose released code they follow). Non-finite samples (a diverged generator) are counted
  as low quality.

  Args:
    samples: [n, d] generated points (d = 2 for the ring and grid benchmarks); numpy or jax.
    means: [k, d] the mixture's component means.
    std: the components' shared isotropic standard deviation, > 0.
    threshold: the high-quality radius in units of `std` (3 in VEEGAN and PacGAN).

  Returns:
    A `MixtureMetrics`.
  """
  samples = np.asarray(samples, dtype=np.float64)
  means = np.asarray(means, dtype=np.float64)
  if samples.ndim != 2 or means.ndim != 2 or samples.shape[1] != means.shape[1]:
    raise ValueError(f"samples must be [n, d] and means [k, d] with the same d; got samples "
                     f"{samples.shape} and means {means.shape}.")
  if samples.shape[0] == 0 or means.shape[0] == 0:
    raise ValueError(f"need at least one sample and one mean; got samples {samples.shape} and "
                     f"means {means.shape}.")
  if not (np.isscalar(std) or np.ndim(std) == 0) or not std > 0:
    raise ValueError(f"std must be a positive scalar (the shared isotropic std), got {std!r}.")
  num_modes = means.shape[0]

  sq_dist = np.sum(np.square(samples[:, None, :] - means[None, :, :]), axis=-1)  # [n, k]
  nearest = np.argmin(sq_dist, axis=-1)  # [n]
  nearest_sq_dist = np.take_along_axis(sq_dist, nearest[:, None], axis=-1)[:, 0]  # [n]
  # NaN compares False, so non-finite samples are never of high quality.
  high_quality = nearest_sq_dist <= (threshold * float(std))**2  # [n]

  counts = np.bincount(nearest[high_quality], minlength=num_modes).astype(np.int64)  # [k]
  total = int(counts.sum())
  if total == 0:
    reverse_kl = float("nan")
  else:
    p = counts[counts > 0] / total
    reverse_kl = float(np.sum(p * np.log(p * num_modes)))
  spreads = []  # [modes with >= 3 high-quality samples, d]
  for mode in np.flatnonzero(counts >= 3):
    offsets = samples[high_quality & (nearest == mode)] - means[mode]
    eigenvalues = np.linalg.eigvalsh(np.atleast_2d(np.cov(offsets, rowvar=False)))
    spreads.append(np.sqrt(np.maximum(eigenvalues, 0.0)) / float(std))
  minor, major = (float(np.mean([s[0] for s in spreads])), float(np.mean([s[-1] for s in spreads]))
                  ) if spreads else (float("nan"), float("nan"))
  return MixtureMetrics(
      modes=int(np.count_nonzero(counts)),
      high_quality_fraction=total / samples.shape[0],
      reverse_kl=reverse_kl,
      counts=counts,
      spread_minor=minor,
      spread_major=major,
  )
