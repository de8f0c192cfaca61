"""Noise schedules: the variance-preserving invariants, endpoints, and continuous forms."""

import numpy as np
import pytest

from gen_jax import schedules

DISCRETE = {"linear": schedules.linear, "cosine": schedules.cosine}


@pytest.mark.parametrize("name", sorted(DISCRETE))
@pytest.mark.parametrize("num_timesteps", [10, 1000])
def test_variance_preserving_and_monotone(name, num_timesteps):
  s = DISCRETE[name](num_timesteps)
  t = np.arange(num_timesteps)
  alpha, sigma = np.asarray(s.alpha(t), np.float64), np.asarray(s.sigma(t), np.float64)
  np.testing.assert_allclose(alpha**2 + sigma**2, 1.0, atol=1e-6)
  snr = np.asarray(s.snr(t), np.float64)
  assert np.all(np.diff(snr) < 0), "SNR must strictly decrease with t"
  assert np.all(np.diff(np.asarray(s.log_snr(t))) < 0)
  np.testing.assert_allclose(np.log(snr), np.asarray(s.log_snr(t)), rtol=1e-5, atol=1e-4)
  # The clean-data index -1: alpha = 1, sigma = 0.
  assert float(s.alpha(-1)) == 1.0 and float(s.sigma(-1)) == 0.0
  # beta_t in (0, 1) and alpha_bar their cumulative product.
  assert np.all((s.betas > 0) & (s.betas < 1))
  np.testing.assert_allclose(np.cumprod(1 - s.betas), s.alpha_bar, rtol=1e-12)


def test_linear_endpoints_are_ddpm():
  s = schedules.linear(1000)
  assert s.alpha_bar[0] == pytest.approx(1 - 1e-4, abs=1e-15)
  np.testing.assert_allclose(s.betas, np.linspace(1e-4, 0.02, 1000), rtol=1e-9, atol=1e-15)
  # Ho et al. 2020: alpha_bar_T = prod(1 - beta) is about 4.0e-5 (L_T ~ 1e-5 bits/dim).
  assert s.alpha_bar[-1] == pytest.approx(np.prod(1 - np.linspace(1e-4, 0.02, 1000)))
  assert 3.9e-5 < s.alpha_bar[-1] < 4.1e-5


def test_cosine_endpoints_and_clipping():
  s = schedules.cosine(1000)
  # alpha_bar_1 = f(1/T) / f(0) with f(u) = cos^2(pi/2 (u + s)/(1 + s)).
  f = lambda u: np.cos(0.5 * np.pi * (u + 0.008) / 1.008) ** 2
  assert s.alpha_bar[0] == pytest.approx(f(1e-3) / f(0.0), rel=1e-12)
  # The last beta is clipped at 0.999 (alpha_T would be exactly 0 otherwise).
  assert s.betas[-1] == pytest.approx(0.999)
  assert s.alpha_bar[-1] == pytest.approx(1e-3 * s.alpha_bar[-2])


@pytest.mark.parametrize("fn", [schedules.cosine_alpha_sigma, schedules.linear_alpha_sigma])
def test_continuous_forms(fn):
  t = np.linspace(0, 1, 101)
  alpha, sigma = fn(t)
  np.testing.assert_allclose(alpha**2 + sigma**2, 1.0, atol=1e-12)
  assert alpha[0] == 1.0 and sigma[0] == 0.0
  assert np.all(np.diff(alpha) < 0) and np.all(np.diff(sigma) > 0)
  assert alpha[-1] < 0.01


def test_cosine_continuous_reaches_pure_noise():
  alpha, sigma = schedules.cosine_alpha_sigma(np.array([1.0]))
  assert alpha[0] == pytest.approx(0.0, abs=1e-15) and sigma[0] == pytest.approx(1.0)


def test_discretize_integrates_the_vp_sde():
  """discretize(linear_alpha_sigma) has beta_i = 1 - exp(-int_{i/T}^{(i+1)/T} beta(t) dt) with
  beta(t) = 0.1 + 19.9 t, the exact per-step variance of the VP SDE (Song et al. 2021)."""
  T = 1000
  s = schedules.discretize(schedules.linear_alpha_sigma, T, max_beta=1.0)
  lo, hi = np.arange(T) / T, np.arange(1, T + 1) / T
  integral = 0.1 * (hi - lo) + 0.5 * 19.9 * (hi**2 - lo**2)
  np.testing.assert_allclose(s.betas, -np.expm1(-integral), rtol=1e-9)
  # The whole integral: alpha_1^2 = exp(-(0.1 + 19.9 / 2)).
  assert s.alpha_bar[-1] == pytest.approx(np.exp(-10.05), rel=1e-9)


def test_sampling_timesteps():
  s = schedules.linear(1000)
  full = s.sampling_timesteps(1000)
  np.testing.assert_array_equal(full, np.arange(999, -1, -1))
  np.testing.assert_array_equal(s.sampling_timesteps(1), [999])
  for n in (2, 10, 50, 999):
    ts = s.sampling_timesteps(n)
    assert len(ts) == n and ts[0] == 999 and ts[-1] == 0 and np.all(np.diff(ts) < 0)
  np.testing.assert_array_equal(s.sampling_timesteps(4), [999, 666, 333, 0])
  for bad in (0, 1001):
    with pytest.raises(ValueError, match="num_steps"):
      s.sampling_timesteps(bad)


def test_add_noise_and_refusals():
  s = schedules.cosine(100)
  rng = np.random.default_rng(0)
  x0, eps = rng.normal(size=(3, 4, 4, 1)), rng.normal(size=(3, 4, 4, 1))
  t = np.array([0, 50, 99])
  alpha = np.sqrt(s.alpha_bar[t])[:, None, None, None]
  sigma = np.sqrt(1 - s.alpha_bar[t])[:, None, None, None]
  np.testing.assert_allclose(s.add_noise(x0, t, eps), alpha * x0 + sigma * eps, rtol=1e-5,
                             atol=1e-6)
  with pytest.raises(ValueError, match="strictly decreasing"):
    schedules.Schedule(np.array([0.5, 0.7]))
  with pytest.raises(ValueError, match="within"):
    schedules.Schedule(np.array([1.0, 0.5]))
