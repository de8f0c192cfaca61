"""Denoising losses: NumPy values, the weightings' identities, and the optimal denoiser of Gaussian
data as the oracle."""

import jax
import numpy as np
import pytest

from gen_jax import predictions as pr
from gen_jax import schedules
from gen_jax.losses import denoising as dn

LOSSES = ("eps_mse", "x0_mse", "v_mse", "min_snr_mse")


def _noisy(rng, shape=(64, 3)):
  """x0, eps, alpha, sigma (float64, alpha^2 + sigma^2 = 1) and x_t."""
  x0, eps = rng.normal(size=shape), rng.normal(size=shape)
  alpha = rng.uniform(0.05, 0.999, size=(shape[0],) + (1,) * (len(shape) - 1))
  sigma = np.sqrt(1 - alpha**2)
  return x0, eps, alpha, sigma, alpha * x0 + sigma * eps


def test_losses_against_numpy():
  rng = np.random.default_rng(1)
  x0, eps, alpha, sigma, _ = _noisy(rng, (5, 2, 2, 1))
  x0_hat, eps_hat = rng.normal(size=x0.shape), rng.normal(size=x0.shape)
  kw = dict(x0_hat=x0_hat, eps_hat=eps_hat, x0=x0, eps=eps, alpha=alpha, sigma=sigma)
  per = lambda a: np.mean(a.reshape(5, -1), axis=1)
  v_hat, v = alpha * eps_hat - sigma * x0_hat, alpha * eps - sigma * x0
  snr = (alpha**2 / sigma**2).reshape(5)
  want = {"eps_mse": per((eps_hat - eps)**2), "x0_mse": per((x0_hat - x0)**2),
          "v_mse": per((v_hat - v)**2),
          "min_snr_mse": np.minimum(1, 5.0 / snr) * per((eps_hat - eps)**2)}
  for name in LOSSES:
    got = getattr(dn, name)(**kw)
    assert got.shape == (5,)
    np.testing.assert_allclose(got, want[name], rtol=1e-5, err_msg=name)


def test_weightings_of_the_x0_error():
  """For consistent estimates (one prediction read at x_t), each loss is the x0 error times its
  weighting: eps SNR, x0 1, v 1 + SNR, min-SNR min(SNR, 5) (Kingma & Gao 2023, table 1)."""
  rng = np.random.default_rng(2)
  x0, eps, alpha, sigma, x_t = _noisy(rng, (256, 4))
  snr = (alpha**2 / sigma**2)[:, 0]
  x0_hat, eps_hat = pr.eps_prediction(prediction=eps + 0.3 * rng.normal(size=eps.shape),
                                      x_t=x_t, alpha=alpha, sigma=sigma)
  kw = dict(x0_hat=x0_hat, eps_hat=eps_hat, x0=x0, eps=eps, alpha=alpha, sigma=sigma)
  x0_err = np.asarray(dn.x0_mse(**kw), np.float64)
  for name, weight in (("eps_mse", snr), ("v_mse", 1 + snr),
                       ("min_snr_mse", np.minimum(snr, 5.0))):
    np.testing.assert_allclose(getattr(dn, name)(**kw), weight * x0_err, rtol=2e-4,
                               err_msg=name)


class GaussianData:
  """x0 ~ N(mu, S): E[x0 | x_t] = mu + alpha S (alpha^2 S + sigma^2 I)^-1 (x_t - alpha mu)."""

  def __init__(self):
    self.mu = np.array([0.5, -1.0, 0.2])
    a = np.array([[1.0, 0.3, 0.0], [0.3, 0.5, -0.2], [0.0, -0.2, 0.8]])
    self.cov = a @ a.T

  def denoise(self, x_t, alpha, sigma, shift=0.0, gain=1.0):
    """The optimal x0_hat for x_t [n, d], alpha, sigma [n, 1]; `shift` and `gain` perturb it."""
    d = len(self.mu)
    out = np.empty_like(x_t)
    for i, (a, s) in enumerate(zip(alpha[:, 0], sigma[:, 0])):
      k = a * self.cov @ np.linalg.inv(a * a * self.cov + s * s * np.eye(d))
      out[i] = self.mu + gain * k @ (x_t[i] - a * self.mu)
    return out + shift

  def min_eps_mse(self, alpha, sigma):
    """E|eps - E[eps | x_t]|^2 / d = tr(I - s^2 (a^2 S + s^2 I)^-1) / d, per example."""
    d = len(self.mu)
    return np.array([np.trace(np.eye(d) - s * s * np.linalg.inv(a * a * self.cov + s * s *
                                                                  np.eye(d))) / d
                     for a, s in zip(alpha[:, 0], sigma[:, 0])])


@pytest.mark.parametrize("loss", LOSSES)
def test_optimal_denoiser_beats_perturbed_ones(loss):
  data = GaussianData()
  rng = np.random.default_rng(3)
  n = 20_000
  x0 = rng.multivariate_normal(data.mu, data.cov, size=n)
  eps = rng.normal(size=x0.shape)
  schedule = schedules.cosine(1000)
  t = rng.integers(0, 1000, size=n)
  alpha = np.sqrt(schedule.alpha_bar[t])[:, None]
  sigma = np.sqrt(1 - schedule.alpha_bar[t])[:, None]
  x_t = alpha * x0 + sigma * eps

  def mean_loss(**perturbation):
    x0_hat = data.denoise(x_t, alpha, sigma, **perturbation)
    eps_hat = pr.eps_from_x0(x_t=x_t, x0=x0_hat, alpha=alpha, sigma=sigma)
    return float(np.mean(getattr(dn, loss)(x0_hat=x0_hat, eps_hat=eps_hat, x0=x0, eps=eps,
                                           alpha=alpha, sigma=sigma)))

  best = mean_loss()
  for perturbation in (dict(shift=0.05), dict(shift=-0.05), dict(gain=1.1), dict(gain=0.9)):
    assert mean_loss(**perturbation) > best, perturbation
  if loss == "eps_mse":  # the minimum itself is known in closed form
    expected = data.min_eps_mse(alpha, sigma)
    per_example = dn.eps_mse(x0_hat=None, eps_hat=pr.eps_from_x0(
        x_t=x_t, x0=data.denoise(x_t, alpha, sigma), alpha=alpha, sigma=sigma), x0=None,
        eps=eps, alpha=alpha, sigma=sigma)
    err = np.std(np.asarray(per_example)) / np.sqrt(n)
    assert abs(best - expected.mean()) < 4 * err


def test_losses_are_jittable_and_per_example():
  x0, eps, alpha, sigma, x_t = _noisy(np.random.default_rng(4), (7, 2))
  for name in LOSSES:
    fn = jax.jit(lambda a, b, c, d, fn=getattr(dn, name): fn(
        x0_hat=a, eps_hat=b, x0=c, eps=d, alpha=alpha, sigma=sigma))
    out = fn(x0, eps, x0, eps)
    assert out.shape == (7,) and np.all(np.asarray(out) == 0.0)
