"""Diffusion samplers: DDPM's ancestral sampler, DDIM (with eta), classifier-free guidance.

Every sampler is model-agnostic: it sees the model only through

    denoise_fn(x_t [n, ...], t [n] int32) -> prediction [n, ...]

(conditioning, if any, is bound inside the closure) together with `prediction_fn`, which reads
the prediction as (x0_hat, eps_hat) (`gen_jax.predictions.{eps,x0,v}_prediction`), and a
`gen_jax.schedules.Schedule`. Each sampler is one `lax.scan` over a decreasing subsequence
tau_S > ... > tau_1 of the schedule's training timesteps (`Schedule.sampling_timesteps`): any
number of steps from 1 to T, with a static trip count. Step i goes from t = tau_i to
s = tau_{i-1}, and from tau_1 to the clean data (s = -1: alpha_s = 1, sigma_s = 0), whose
value is the denoiser's x0_hat.

With abar = alpha^2 (DDPM's alpha-bar) and the respaced beta' = 1 - abar_t / abar_s:

  DDIM (Song, Meng and Ermon 2021, eq. 12), for eta in [0, 1]:
      c     = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(beta')
      x_s   = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - c^2) eps_hat + c z
    eta = 0 is deterministic (the probability-flow discretisation); eta = 1 is DDPM's ancestral
    sampler with the posterior variance.

  DDPM (Ho et al. 2020, eqs. 6-7; respaced as in Nichol & Dhariwal 2021, sec. 4):
      x_s = sqrt(abar_s) beta' / (1 - abar_t) x0_hat
            + sqrt(1 - beta') (1 - abar_s) / (1 - abar_t) x_t
            + sqrt(var) z,  var = beta' (1 - abar_s) / (1 - abar_t)   (the posterior variance)
                            or var = beta'                            (`posterior_variance=False`)
    On the last step (s = -1) the variance is 0 and x_s = x0_hat.

`clip_x0 = c > 0` clips x0_hat to [-c, c] (images in [-1, 1]) and recomputes eps_hat from the
clipped x0_hat, as DDPM's and DDIM's reference samplers do.

Classifier-free guidance (Ho & Salimans 2021) combines a conditional and an unconditional
prediction of the same network: `guided_denoise_fn` returns

    (1 - w) pred_uncond + w pred_cond  =  pred_uncond + w (pred_cond - pred_uncond).

Convention: w = 0 is the unconditional model, w = 1 the conditional model, w > 1 guided
(Ho & Salimans's scale is w - 1). The (1 - w, w) form gives both endpoints exactly in floating
point. Since each parameterisation is affine in the prediction with coefficients that do not
depend on it, mixing eps-, x0- or v-predictions with weights summing to 1 is the same mixture
of their eps (and x0) estimates: guidance does not depend on the parameterisation.

Library code never jits: jit the caller.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

from gen_jax import predictions
from gen_jax.schedules import Schedule
from gen_jax.types import Array, PRNGKey

DenoiseFn = Callable[[Array, Array], Array]  # (x_t [n, ...], t [n] int32) -> prediction
PredictionFn = Callable[..., tuple[Array, Array]]  # (*, prediction, x_t, alpha, sigma)


@struct.dataclass
class SamplerOutput:
  """What the samplers return."""

  samples: Array  # [n, ...] the final x0 estimates
  trajectory: Array | None  # [steps + 1, n, ...] x_T then the state after each step, or None
  x0_trajectory: Array | None  # [steps, n, ...] the denoiser's x0_hat at each step, or None
  timesteps: Array  # [steps] int32, the training timesteps visited, decreasing


def guided_denoise_fn(cond_fn: DenoiseFn, uncond_fn: DenoiseFn, scale: float | Array
                      ) -> DenoiseFn:
  """Classifier-free guidance: (1 - w) uncond_fn + w cond_fn, w = `scale`.

  w = 0 gives the unconditional model exactly, w = 1 the conditional one, w > 1 extrapolates
  away from the unconditional prediction (Ho & Salimans 2021, eq. 6 with their w = scale - 1).
  The two predictions are separate calls, so each is exactly what the model alone returns.
  """

  def denoise(x_t: Array, t: Array) -> Array:
    return (1.0 - scale) * uncond_fn(x_t, t) + scale * cond_fn(x_t, t)

  return denoise


def _bcast(value: Array, like: Array) -> Array:
  """A per-step scalar broadcast against a batch [n, ...]."""
  return jnp.reshape(value, (1,) * like.ndim)


def _estimates(denoise_fn: DenoiseFn, prediction_fn: PredictionFn, schedule: Schedule,
               x: Array, t: Array, clip_x0: float) -> tuple[Array, Array]:
  """(x0_hat, eps_hat) at integer timestep t (a scalar) for the batch x."""
  alpha, sigma = _bcast(schedule.alpha(t), x), _bcast(schedule.sigma(t), x)
  prediction = denoise_fn(x, jnp.full((x.shape[0],), t, jnp.int32))
  x0_hat, eps_hat = prediction_fn(prediction=prediction, x_t=x, alpha=alpha, sigma=sigma)
  if clip_x0 > 0:
    x0_hat = jnp.clip(x0_hat, -clip_x0, clip_x0)
    eps_hat = predictions.eps_from_x0(x_t=x, x0=x0_hat, alpha=alpha, sigma=sigma)
  return x0_hat, eps_hat


def _run(step_fn, schedule: Schedule, x_T: Array, rng: PRNGKey, num_steps: int,
         return_trajectory: bool) -> SamplerOutput:
  """Scans `step_fn(x, t, s, rng) -> (x_s, x0_hat)` over the respaced timesteps."""
  timesteps = schedule.sampling_timesteps(num_steps)
  previous = np.concatenate([timesteps[1:], [-1]]).astype(np.int32)

  def body(x, inputs):
    index, t, s = inputs
    x_s, x0_hat = step_fn(x, t, s, jax.random.fold_in(rng, index))
    return x_s, ((x_s, x0_hat) if return_trajectory else None)

  xs = (jnp.arange(num_steps), jnp.asarray(timesteps), jnp.asarray(previous))
  x, stacked = lax.scan(body, x_T, xs)
  trajectory = x0_trajectory = None
  if return_trajectory:
    trajectory = jnp.concatenate([x_T[None], stacked[0]], axis=0)
    x0_trajectory = stacked[1]
  return SamplerOutput(samples=x, trajectory=trajectory, x0_trajectory=x0_trajectory,
                       timesteps=jnp.asarray(timesteps))


def ddim(denoise_fn: DenoiseFn, schedule: Schedule, x_T: Array, rng: PRNGKey, *,
         num_steps: int, eta: float = 0.0,
         prediction_fn: PredictionFn = predictions.eps_prediction, clip_x0: float = 0.0,
         return_trajectory: bool = False) -> SamplerOutput:
  """DDIM (Song et al. 2021) from x_T [n, ...] (usually N(0, I) draws) in `num_steps` steps.

  Args:
    denoise_fn: `(x_t [n, ...], t [n] int32) -> prediction [n, ...]`.
    schedule: the schedule the model was trained with.
    x_T: the starting noise [n, ...].
    rng: drives the noise of eta > 0; step i uses `fold_in(rng, i)`.
    num_steps: 1 .. T, steps over `schedule.sampling_timesteps(num_steps)`.
    eta: 0 deterministic, 1 DDPM's posterior variance.
    prediction_fn: reads the prediction as (x0_hat, eps_hat).
    clip_x0: when > 0, x0_hat is clipped to [-clip_x0, clip_x0].
    return_trajectory: also return the states and x0 estimates of every step.

  Returns:
    A `SamplerOutput`; `samples` [n, ...] are the last step's x0_hat.
  """

  def step(x, t, s, rng):
    x0_hat, eps_hat = _estimates(denoise_fn, prediction_fn, schedule, x, t, clip_x0)
    abar_t = jnp.square(schedule.alpha(t))
    abar_s = jnp.square(schedule.alpha(s))
    c = eta * jnp.sqrt((1.0 - abar_s) / (1.0 - abar_t) * (1.0 - abar_t / abar_s))
    direction = jnp.sqrt(jnp.maximum(1.0 - abar_s - c**2, 0.0))
    z = jax.random.normal(rng, x.shape, x.dtype)
    x_s = jnp.sqrt(abar_s) * x0_hat + direction * eps_hat + c * z
    return x_s, x0_hat

  return _run(step, schedule, x_T, rng, num_steps, return_trajectory)


def ddpm(denoise_fn: DenoiseFn, schedule: Schedule, x_T: Array, rng: PRNGKey, *,
         num_steps: int, posterior_variance: bool = True,
         prediction_fn: PredictionFn = predictions.eps_prediction, clip_x0: float = 0.0,
         return_trajectory: bool = False) -> SamplerOutput:
  """DDPM's ancestral sampler (Ho et al. 2020, algorithm 2) over `num_steps` respaced steps.

  Args: as `ddim`, and
    posterior_variance: the variance of each step: True the posterior's
      beta' (1 - abar_s) / (1 - abar_t) (Ho et al.'s sigma^2 = beta-tilde), False beta'.

  Returns:
    A `SamplerOutput`; `samples` [n, ...] are the last step's x0_hat (no noise is added on the
    last step).
  """

  def step(x, t, s, rng):
    x0_hat, _ = _estimates(denoise_fn, prediction_fn, schedule, x, t, clip_x0)
    abar_t = jnp.square(schedule.alpha(t))
    abar_s = jnp.square(schedule.alpha(s))
    beta = 1.0 - abar_t / abar_s
    mean = (jnp.sqrt(abar_s) * beta / (1.0 - abar_t) * x0_hat
            + jnp.sqrt(1.0 - beta) * (1.0 - abar_s) / (1.0 - abar_t) * x)
    var = beta * (1.0 - abar_s) / (1.0 - abar_t) if posterior_variance else beta
    var = jnp.where(s < 0, 0.0, var)
    z = jax.random.normal(rng, x.shape, x.dtype)
    return mean + jnp.sqrt(var) * z, x0_hat

  return _run(step, schedule, x_T, rng, num_steps, return_trajectory)
