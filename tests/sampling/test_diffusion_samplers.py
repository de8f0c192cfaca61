"""Diffusion samplers driven by the exact denoiser of Gaussian data, whose output law is known.

For x0 ~ N(mu, S), E[x0 | x_t] = mu + K_t (x_t - alpha_t mu) with
K_t = alpha_t S (alpha_t^2 S + sigma_t^2 I)^-1. Every DDPM/DDIM step with this denoiser is then
affine in x_t plus Gaussian noise, so the sampler's output is exactly Gaussian, with moments
propagated here in float64 by `propagated_moments`. With many steps those moments are the
data's (up to the discretisation, far below sampling error); with few steps they are not (DDIM
shrinks the covariance), and the samples must match the propagated law instead.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax import predictions as pr
from gen_jax import schedules
from gen_jax.sampling import diffusion as sd

MU = np.array([0.5, -0.3])
COV = np.array([[0.8, 0.3], [0.3, 0.4]])
N = 20_000
SCHEDULE = schedules.linear(1000)


def gaussian_denoise_fn(mu=MU, cov=COV, schedule=SCHEDULE):
  """The exact eps prediction E[eps | x_t] for data N(mu, cov), as a `denoise_fn`."""
  abar = jnp.asarray(schedule.alpha_bar, jnp.float32)
  mu, cov = jnp.asarray(mu, jnp.float32), jnp.asarray(cov, jnp.float32)

  def denoise(x, t):
    a, s = jnp.sqrt(abar[t[0]]), jnp.sqrt(1 - abar[t[0]])
    k = a * cov @ jnp.linalg.inv(a * a * cov + s * s * jnp.eye(2))
    x0 = mu + (x - a * mu) @ k.T
    return (x - a * x0) / s

  return denoise


def propagated_moments(kind: str, num_steps: int, eta: float = 0.0):
  """The exact mean and covariance of the sampler's output (x_T ~ N(0, I)), in float64."""
  ab = SCHEDULE.alpha_bar
  ts = SCHEDULE.sampling_timesteps(num_steps)
  m, c, eye = np.zeros(2), np.eye(2), np.eye(2)
  for t, s in zip(ts, list(ts[1:]) + [-1]):
    a, sg, abt, abs_ = np.sqrt(ab[t]), np.sqrt(1 - ab[t]), ab[t], (1.0 if s < 0 else ab[s])
    k = a * COV @ np.linalg.inv(a * a * COV + sg * sg * eye)
    a0, b0 = k, (eye - a * k) @ MU  # x0_hat = a0 x + b0
    ae, be = (eye - a * a0) / sg, -a * b0 / sg  # eps_hat = ae x + be
    beta = 1 - abt / abs_
    if kind == "ddim":
      var = eta**2 * (1 - abs_) / (1 - abt) * beta
      d = np.sqrt(max(1 - abs_ - var, 0.0))
      a_step, b_step = np.sqrt(abs_) * a0 + d * ae, np.sqrt(abs_) * b0 + d * be
    else:
      a_step = np.sqrt(abs_) * beta / (1 - abt) * a0 + np.sqrt(1 - beta) * (1 - abs_) / (
          1 - abt) * eye
      b_step = np.sqrt(abs_) * beta / (1 - abt) * b0
      var = beta * (1 - abs_) / (1 - abt)
    m, c = a_step @ m + b_step, a_step @ c @ a_step.T + var * eye
  return m, c


def assert_moments_match(samples, mean, cov, num_se=5.0):
  """Sample mean and covariance within `num_se` standard errors of (mean, cov)."""
  samples = np.asarray(samples, np.float64)
  n = len(samples)
  se_mean = np.sqrt(np.diag(cov) / n)
  np.testing.assert_array_less(np.abs(samples.mean(0) - mean), num_se * se_mean)
  d = np.diag(cov)
  se_cov = np.sqrt((np.outer(d, d) + cov**2) / n)  # Var of a Gaussian sample covariance
  np.testing.assert_array_less(np.abs(np.cov(samples, rowvar=False) - cov), num_se * se_cov)


def run(kind, num_steps, seed=0, **kw):
  x_T = jax.random.normal(jax.random.PRNGKey(seed), (N, 2))
  fn = sd.ddim if kind == "ddim" else sd.ddpm
  sample = jax.jit(lambda x, r: fn(gaussian_denoise_fn(), SCHEDULE, x, r, num_steps=num_steps,
                                   **kw))
  return sample(x_T, jax.random.PRNGKey(seed + 1))


@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
def test_many_steps_reproduce_the_data(kind):
  out = run(kind, 1000)
  assert out.samples.shape == (N, 2) and out.trajectory is None
  assert_moments_match(out.samples, MU, COV)
  m, c = propagated_moments(kind, 1000)  # the discretisation bias is far below sampling error
  assert np.max(np.abs(c - COV)) < 0.01 and np.max(np.abs(m - MU)) < 0.003


@pytest.mark.parametrize("kind,num_steps,eta", [("ddim", 10, 0.0), ("ddim", 50, 0.0),
                                                ("ddim", 10, 0.5), ("ddpm", 10, 0.0)])
def test_few_steps_follow_their_exact_law(kind, num_steps, eta):
  kw = {"eta": eta} if kind == "ddim" else {}
  out = run(kind, num_steps, **kw)
  mean, cov = propagated_moments(kind, num_steps, eta)
  assert_moments_match(out.samples, mean, cov)
  # Few steps shrink the covariance even with the exact denoiser: a discretisation error,
  # not a bug (the samples follow the discrete sampler's own law above).
  assert np.trace(cov) < 0.95 * np.trace(COV)


def test_ddim_eta_one_is_ddpm():
  """DDIM with eta = 1 takes exactly DDPM's posterior step: the same keys give the same
  samples (Song et al. 2021, sec. 4.1)."""
  a = run("ddim", 20, eta=1.0).samples
  b = run("ddpm", 20).samples
  np.testing.assert_allclose(a, b, atol=2e-5)
  assert float(jnp.std(a - run("ddim", 20, eta=0.0).samples)) > 0.05  # eta matters


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_parameterisation_does_not_change_the_sampler(prediction):
  """The same exact denoiser expressed as x0 or v gives the same DDIM samples as eps."""
  eps_fn = gaussian_denoise_fn()

  def other_fn(x, t):
    a, s = SCHEDULE.alpha(t[0]), SCHEDULE.sigma(t[0])
    eps = eps_fn(x, t)
    x0 = pr.x0_from_eps(x_t=x, eps=eps, alpha=a, sigma=s)
    return x0 if prediction == "x0" else pr.v_from_x0_eps(x0=x0, eps=eps, alpha=a, sigma=s)

  x_T = jax.random.normal(jax.random.PRNGKey(0), (256, 2))
  rng = jax.random.PRNGKey(1)
  want = sd.ddim(eps_fn, SCHEDULE, x_T, rng, num_steps=25).samples
  got = sd.ddim(other_fn, SCHEDULE, x_T, rng, num_steps=25,
                prediction_fn=getattr(pr, f"{prediction}_prediction")).samples
  np.testing.assert_allclose(got, want, atol=1e-4)


def test_guidance_endpoints_are_exact():
  """w = 0 is the unconditional model and w = 1 the conditional one, bit for bit, through a
  whole sampler run; w = 2 extrapolates: 2 cond - uncond."""
  cond_fn = gaussian_denoise_fn(mu=np.array([2.0, 2.0]))
  uncond_fn = gaussian_denoise_fn()
  x_T = jax.random.normal(jax.random.PRNGKey(0), (512, 2))
  rng = jax.random.PRNGKey(1)
  sample = lambda fn: sd.ddpm(fn, SCHEDULE, x_T, rng, num_steps=30).samples
  np.testing.assert_array_equal(sample(sd.guided_denoise_fn(cond_fn, uncond_fn, 0.0)),
                                sample(uncond_fn))
  np.testing.assert_array_equal(sample(sd.guided_denoise_fn(cond_fn, uncond_fn, 1.0)),
                                sample(cond_fn))
  t = jnp.full((512,), 500, jnp.int32)
  np.testing.assert_allclose(sd.guided_denoise_fn(cond_fn, uncond_fn, 2.0)(x_T, t),
                             2 * cond_fn(x_T, t) - uncond_fn(x_T, t), atol=1e-5)
  guided = np.asarray(sample(sd.guided_denoise_fn(cond_fn, uncond_fn, 2.0)))
  # Guidance past the conditional mean: (2 mu_c - mu_u) for these two Gaussians' eps.
  assert np.all(guided.mean(0) > 2.0)


def test_trajectory_and_clipping():
  x_T = jax.random.normal(jax.random.PRNGKey(0), (16, 2))
  out = sd.ddim(gaussian_denoise_fn(), SCHEDULE, x_T, jax.random.PRNGKey(1), num_steps=7,
                return_trajectory=True)
  assert out.trajectory.shape == (8, 16, 2) and out.x0_trajectory.shape == (7, 16, 2)
  np.testing.assert_array_equal(out.trajectory[0], x_T)
  np.testing.assert_array_equal(out.trajectory[-1], out.samples)
  np.testing.assert_array_equal(out.x0_trajectory[-1], out.samples)
  np.testing.assert_array_equal(out.timesteps, SCHEDULE.sampling_timesteps(7))
  far_fn = gaussian_denoise_fn(mu=np.array([3.0, -3.0]))
  clipped = sd.ddpm(far_fn, SCHEDULE, x_T, jax.random.PRNGKey(1), num_steps=10, clip_x0=1.0,
                    return_trajectory=True)
  free = sd.ddpm(far_fn, SCHEDULE, x_T, jax.random.PRNGKey(1), num_steps=10)
  assert float(jnp.max(jnp.abs(clipped.x0_trajectory))) <= 1.0
  assert float(jnp.min(jnp.abs(free.samples))) > 1.0  # without clipping, all outside [-1, 1]


def test_one_step_returns_the_first_x0_estimate():
  """One step visits t = T-1 only and returns the denoiser's x0 estimate there."""
  x_T = jax.random.normal(jax.random.PRNGKey(0), (8, 2))
  x0_fn = lambda x, t: x * 0.5 + t[:, None].astype(jnp.float32)  # reveals the t it was given
  for sampler in (sd.ddpm, sd.ddim):
    out = sampler(x0_fn, SCHEDULE, x_T, jax.random.PRNGKey(1), num_steps=1,
                  prediction_fn=pr.x0_prediction)
    np.testing.assert_allclose(out.samples, x0_fn(x_T, jnp.full((8,), 999)), rtol=1e-6)
