"""Denoising score matching: the per-example losses of a denoiser.

The network's output is read as (x0_hat, eps_hat) by a parameterisation of
`gen_jax.predictions` (eps, x0 or v, with the exact conversions between them). The losses are
mean squared errors of one target, per example (mean over the non-batch axes), resolved by name
(`model.loss`, as `{name}_mse`). For consistent estimates (x0_hat, eps_hat of the same x_t) they
are the same x0 error under different weightings of the noise level (Kingma & Gao 2023,
"Understanding Diffusion Objectives", table 1); with SNR = alpha^2 / sigma^2:

    eps_mse      |eps_hat - eps|^2 = SNR       |x0_hat - x0|^2     (DDPM's L_simple)
    x0_mse       |x0_hat - x0|^2   = 1         |x0_hat - x0|^2
    v_mse        |v_hat - v|^2     = (1 + SNR) |x0_hat - x0|^2
    min_snr_mse  min(SNR, gamma)   |x0_hat - x0|^2, computed as min(1, gamma / SNR) |eps err|^2
                 (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting")

Each is minimised by the same denoiser, E[x0 | x_t] (and E[eps | x_t]); the weighting decides
which noise levels the finite network spends its capacity on. Every loss is computed in its own
target's space, never by multiplying an x0 error by a large SNR.

A loss's keyword settings (min_snr_mse's gamma) are set from the config by the strategy's name
(`model.min_snr_gamma`; see `gen_jax.names.Kind.build`).

Shapes: x0, eps, x0_hat, eps_hat [batch, ...]; alpha, sigma broadcastable to them
([batch, 1, ...]) or scalars; every loss returns [batch].
"""

import jax.numpy as jnp

from gen_jax import predictions
from gen_jax.types import Array

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
  v_hat = predictions.v_from_x0_eps(x0=x0_hat, eps=eps_hat, alpha=alpha, sigma=sigma)
  v = predictions.v_from_x0_eps(x0=x0, eps=eps, alpha=alpha, sigma=sigma)
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
