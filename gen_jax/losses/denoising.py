"""Denoising score matching: parameterisations of the denoiser and their per-example losses.

For x_t = alpha x0 + sigma eps with alpha^2 + sigma^2 = 1 (`gen_jax.schedules`), a network may
predict any of three quantities, each an affine function of the others given x_t:

    eps   the noise                     (Ho et al. 2020)
    x0    the clean data                (the denoiser D(x_t) = E[x0 | x_t] at the optimum)
    v     alpha eps - sigma x0          (Salimans & Ho 2022, "Progressive Distillation", sec. 4)

    x0 = (x_t - sigma eps) / alpha      eps = (x_t - alpha x0) / sigma
    x0 = alpha x_t - sigma v            eps = sigma x_t + alpha v       v = (alpha x_t - x0) / sigma

`{name}_prediction(*, prediction, x_t, alpha, sigma) -> (x0_hat, eps_hat)` reads a network's
output in parameterisation `name`; a method resolves it by name (`model.prediction`).

The losses are mean squared errors of one target, per example (mean over the non-batch axes),
resolved by name (`model.loss`). For consistent estimates (x0_hat, eps_hat of the same x_t)
they are the same x0 error under different weightings of the noise level (Kingma & Gao 2023,
"Understanding Diffusion Objectives", table 1); with SNR = alpha^2 / sigma^2:

    eps_mse      |eps_hat - eps|^2 = SNR       |x0_hat - x0|^2     (DDPM's L_simple)
    x0_mse       |x0_hat - x0|^2   = 1         |x0_hat - x0|^2
    v_mse        |v_hat - v|^2     = (1 + SNR) |x0_hat - x0|^2
    min_snr_mse  min(SNR, gamma)   |x0_hat - x0|^2, computed as min(1, gamma / SNR) |eps err|^2
                 (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting")

Each is minimised by the same denoiser, E[x0 | x_t] (and E[eps | x_t]); the weighting decides
which noise levels the finite network spends its capacity on. Every loss is computed in its own
target's space, never by multiplying an x0 error by a large SNR.

Shapes: x0, eps, x0_hat, eps_hat, x_t, prediction [batch, ...]; alpha, sigma broadcastable to
them ([batch, 1, ...]) or scalars; every loss returns [batch].
"""

import jax.numpy as jnp

from gen_jax.types import Array

# ----------------------------------------------------------------------------------------------
# Conversions between parameterisations (exact identities given x_t; alpha^2 + sigma^2 = 1).
# ----------------------------------------------------------------------------------------------


def x0_from_eps(*, x_t: Array, eps: Array, alpha: Array, sigma: Array) -> Array:
  """x0 = (x_t - sigma eps) / alpha."""
  return (x_t - sigma * eps) / alpha


def eps_from_x0(*, x_t: Array, x0: Array, alpha: Array, sigma: Array) -> Array:
  """eps = (x_t - alpha x0) / sigma."""
  return (x_t - alpha * x0) / sigma


def v_from_x0_eps(*, x0: Array, eps: Array, alpha: Array, sigma: Array) -> Array:
  """v = alpha eps - sigma x0."""
  return alpha * eps - sigma * x0


def v_from_x0(*, x_t: Array, x0: Array, alpha: Array, sigma: Array) -> Array:
  """v = (alpha x_t - x0) / sigma, the v of x_t whose data estimate is x0."""
  return (alpha * x_t - x0) / sigma


def x0_from_v(*, x_t: Array, v: Array, alpha: Array, sigma: Array) -> Array:
  """x0 = alpha x_t - sigma v."""
  return alpha * x_t - sigma * v


def eps_from_v(*, x_t: Array, v: Array, alpha: Array, sigma: Array) -> Array:
  """eps = sigma x_t + alpha v."""
  return sigma * x_t + alpha * v


# ----------------------------------------------------------------------------------------------
# Parameterisations: a network's output -> (x0_hat, eps_hat). Resolved as `{name}_prediction`.
# ----------------------------------------------------------------------------------------------


def eps_prediction(*, prediction: Array, x_t: Array, alpha: Array, sigma: Array
                   ) -> tuple[Array, Array]:
  """The network predicts eps: (x0_from_eps, prediction)."""
  return x0_from_eps(x_t=x_t, eps=prediction, alpha=alpha, sigma=sigma), prediction


def x0_prediction(*, prediction: Array, x_t: Array, alpha: Array, sigma: Array
                  ) -> tuple[Array, Array]:
  """The network predicts x0: (prediction, eps_from_x0)."""
  return prediction, eps_from_x0(x_t=x_t, x0=prediction, alpha=alpha, sigma=sigma)


def v_prediction(*, prediction: Array, x_t: Array, alpha: Array, sigma: Array
                 ) -> tuple[Array, Array]:
  """The network predicts v = alpha eps - sigma x0: (x0_from_v, eps_from_v)."""
  return (x0_from_v(x_t=x_t, v=prediction, alpha=alpha, sigma=sigma),
          eps_from_v(x_t=x_t, v=prediction, alpha=alpha, sigma=sigma))


# ----------------------------------------------------------------------------------------------
# Per-example losses. Resolved by name (`model.loss`).
# ----------------------------------------------------------------------------------------------


def _mean_per_example(x: Array) -> Array:
  return jnp.mean(jnp.reshape(x, (x.shape[0], -1)), axis=-1)


def eps_mse(*, x0_hat: Array, eps_hat: Array, x0: Array, eps: Array, alpha: Array,
            sigma: Array) -> Array:
  """mean |eps_hat - eps|^2 per example [batch]: DDPM's L_simple (Ho et al. 2020, eq. 14)."""
  del x0_hat, x0, alpha, sigma
  return _mean_per_example(jnp.square(eps_hat - eps))


def x0_mse(*, x0_hat: Array, eps_hat: Array, x0: Array, eps: Array, alpha: Array,
           sigma: Array) -> Array:
  """mean |x0_hat - x0|^2 per example [batch]: SNR^-1 times eps_mse."""
  del eps_hat, eps, alpha, sigma
  return _mean_per_example(jnp.square(x0_hat - x0))


def v_mse(*, x0_hat: Array, eps_hat: Array, x0: Array, eps: Array, alpha: Array,
          sigma: Array) -> Array:
  """mean |v_hat - v|^2 per example [batch], v = alpha eps - sigma x0 (Salimans & Ho 2022)."""
  v_hat = v_from_x0_eps(x0=x0_hat, eps=eps_hat, alpha=alpha, sigma=sigma)
  v = v_from_x0_eps(x0=x0, eps=eps, alpha=alpha, sigma=sigma)
  return _mean_per_example(jnp.square(v_hat - v))


def min_snr_mse(*, x0_hat: Array, eps_hat: Array, x0: Array, eps: Array, alpha: Array,
                sigma: Array, gamma: float = 5.0) -> Array:
  """min(SNR, gamma) mean |x0_hat - x0|^2 per example [batch] (Hang et al. 2023), computed as
  min(1, gamma / SNR) eps_mse, which stays finite at every noise level."""
  snr = jnp.square(alpha) / jnp.square(sigma)
  weight = jnp.minimum(1.0, gamma / snr)
  weight = jnp.reshape(jnp.broadcast_to(weight, eps.shape), (eps.shape[0], -1))[:, 0]
  return weight * eps_mse(x0_hat=x0_hat, eps_hat=eps_hat, x0=x0, eps=eps, alpha=alpha,
                          sigma=sigma)
