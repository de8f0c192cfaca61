"""Tests for gen_jax.metrics.mixture on exact mixture samples and hand-placed points."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gen_jax.metrics.mixture import EXACT_SPREAD, MixtureMetrics, mixture_metrics

N = 2500
# The distance of an exact sample to its own mean, in units of std, is chi with 2 degrees of
# freedom: P(r <= 3) = 1 - exp(-9/2).
P_HIGH_QUALITY = 1.0 - math.exp(-4.5)


def _ring_means(num_modes=8, radius=1.0):
  angles = 2 * np.pi * np.arange(num_modes) / num_modes
  return radius * np.stack([np.cos(angles), np.sin(angles)], axis=-1)


def _grid_means():
  ticks = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
  return np.stack(np.meshgrid(ticks, ticks, indexing="ij"), axis=-1).reshape(-1, 2)


def _sample_mixture(seed, means, std, n):
  """Exact samples of the equal-weight isotropic mixture."""
  rng = np.random.default_rng(seed)
  components = rng.integers(len(means), size=n)
  return means[components] + std * rng.normal(size=(n, 2))


@pytest.mark.parametrize("means,std,seed", [(_ring_means(), 0.01, 0), (_grid_means(), 0.05, 1)],
                         ids=["ring8", "grid25"])
def test_exact_samples_cover_every_mode(means, std, seed):
  k = len(means)
  metrics = mixture_metrics(samples=_sample_mixture(seed, means, std, N), means=means, std=std)

  assert isinstance(metrics, MixtureMetrics)
  assert metrics.modes == k
  assert metrics.counts.shape == (k,) and metrics.counts.dtype == np.int64
  assert metrics.counts.sum() == round(metrics.high_quality_fraction * N)
  # Binomial(N, 0.98889): within 4 standard errors (+-0.0084).
  standard_error = math.sqrt(P_HIGH_QUALITY * (1 - P_HIGH_QUALITY) / N)
  assert abs(metrics.high_quality_fraction - P_HIGH_QUALITY) < 4 * standard_error

  # The high-quality counts are multinomial(n_hq, uniform), so Pearson's statistic
  # X2 = n_hq * chi2(p || u) is chi-square with k - 1 degrees of freedom, and to second order
  # KL(p || u) = X2 / (2 n_hq), with mean (k - 1) / (2 n_hq) (0.0014 for 8 modes, 0.0049 for
  # 25). Bound: the 1 - 1e-6 quantile of X2 over 2 n_hq (about 0.008 and 0.015).
  n_hq = metrics.counts.sum()
  bound = stats.chi2.ppf(1 - 1e-6, df=k - 1) / (2 * n_hq)
  assert 0 < metrics.reverse_kl < bound < 0.02
  # Always true, whatever the counts: KL(p || u) <= log(1 + chi2(p || u)).
  p = metrics.counts / n_hq
  chi2_divergence = np.sum((p - 1 / k)**2 * k)
  assert metrics.reverse_kl <= math.log1p(chi2_divergence)
  # PacGAN's code logs the entropy H(p) of this histogram; KL(p || u) = log k - H(p).
  np.testing.assert_allclose(metrics.reverse_kl, math.log(k) - stats.entropy(p), atol=1e-12)


def test_spread_of_exact_samples_and_of_a_curve_sampler():
  # The truncated chi_2 moments of the docstring, by numerical integration: the radial density
  # of r ~ chi_2 is r exp(-r^2 / 2); each coordinate carries half of E[r^2 | r <= 3].
  r = np.linspace(0, 3, 200_001)
  density = r * np.exp(-r**2 / 2)
  second_moment = np.trapezoid(r**2 * density, r) / np.trapezoid(density, r)
  np.testing.assert_allclose(EXACT_SPREAD, math.sqrt(second_moment / 2), rtol=1e-6)
  means, std = _ring_means(), 0.01
  exact = mixture_metrics(samples=_sample_mixture(4, means, std, 40_000), means=means, std=std)
  # 5,000 points per mode: each eigenvalue's standard error is about 2% of it, 1% in sqrt;
  # averaged over 8 modes, 0.4%; the minor and major axes sit below and above by sampling noise.
  assert EXACT_SPREAD - 0.04 < exact.spread_minor < EXACT_SPREAD < exact.spread_major < (
      EXACT_SPREAD + 0.04)
  # Each mode's samples on a radial segment through its mean: as high quality as exact samples,
  # but no spread across the segment.
  rng = np.random.default_rng(5)
  component = rng.integers(8, size=N)
  along = std * rng.normal(size=N)[:, None] * means[component]  # radial offsets
  curve = mixture_metrics(samples=means[component] + along, means=means, std=std)
  assert curve.modes == 8 and curve.high_quality_fraction > 0.99
  assert curve.spread_minor < 1e-6 and abs(curve.spread_major - 1.0) < 0.1


def test_a_single_mode_sampler():
  means = _grid_means()
  samples = means[7] + 0.05 * np.random.default_rng(2).normal(size=(N, 2))
  metrics = mixture_metrics(samples=samples, means=means, std=0.05)
  assert metrics.modes == 1
  assert metrics.counts[7] == metrics.counts.sum() > 0
  # p = (0, ..., 1, ..., 0): KL(p || uniform_25) = 1 * log(1 * 25).
  np.testing.assert_allclose(metrics.reverse_kl, math.log(25), rtol=1e-12)


def test_samples_far_from_every_mean():
  samples = 100.0 + np.random.default_rng(3).normal(size=(N, 2))
  metrics = mixture_metrics(samples=samples, means=_ring_means(), std=0.01)
  assert metrics.modes == 0
  assert metrics.high_quality_fraction == 0.0
  assert math.isnan(metrics.reverse_kl)
  np.testing.assert_array_equal(metrics.counts, np.zeros(8))


def test_hand_placed_points():
  means = _ring_means()
  std = 0.01
  outward = means / np.linalg.norm(means, axis=-1, keepdims=True)  # radial unit vectors
  samples = np.stack([
      means[0], means[0] + [0.0, 0.02], means[0] - [0.02, 0.0],  # 3 in mode 0
      means[1],  # 1 in mode 1
      means[2] + 2.9 * std * outward[2],  # inside 3 std of mode 2
      means[3] + 3.1 * std * outward[3],  # just outside 3 std of mode 3
      [0.0, 0.0],  # the centre: nearest to mode 0 (a tie), but 1 / std = 100 std away
      [np.nan, 0.0],  # non-finite: never of high quality
  ])
  metrics = mixture_metrics(samples=jnp.asarray(samples), means=means, std=std)
  np.testing.assert_array_equal(metrics.counts, [3, 1, 1, 0, 0, 0, 0, 0])
  assert metrics.modes == 3
  assert metrics.high_quality_fraction == 5 / 8
  p = np.array([3, 1, 1]) / 5
  np.testing.assert_allclose(metrics.reverse_kl, np.sum(p * np.log(8 * p)), rtol=1e-12)
  # Only mode 0 has 3 high-quality points: offsets (0, 0), (0, 2), (-2, 0) in units of std,
  # whose covariance (n - 1 = 2) is [[4/3, 2/3], [2/3, 4/3]], eigenvalues 2/3 and 2. (The
  # samples went in as float32, jax's default: the offsets 0.02 from 1.0 carry ~3e-6 rounding.)
  assert metrics.scalars() == pytest.approx(
      {"modes": 3.0, "high_quality_fraction": 5 / 8, "reverse_kl": metrics.reverse_kl,
       "spread_minor": math.sqrt(2 / 3), "spread_major": math.sqrt(2)}, rel=1e-5)

  # A wider threshold admits the point at 3.1 std.
  wider = mixture_metrics(samples=samples, means=means, std=std, threshold=3.2)
  np.testing.assert_array_equal(wider.counts, [3, 1, 1, 1, 0, 0, 0, 0])


def test_bad_inputs_are_refused():
  with pytest.raises(ValueError, match=r"\[n, d\]"):
    mixture_metrics(samples=np.zeros((4, 3)), means=_ring_means(), std=0.1)
  with pytest.raises(ValueError, match="std must be"):
    mixture_metrics(samples=np.zeros((4, 2)), means=_ring_means(), std=0.0)
  with pytest.raises(ValueError, match="at least one"):
    mixture_metrics(samples=np.zeros((0, 2)), means=_ring_means(), std=0.1)
