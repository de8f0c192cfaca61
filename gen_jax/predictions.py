"""Parameterisations of a denoiser: eps, x0 and v, and the exact conversions between them.

For x_t = alpha x0 + sigma eps with alpha^2 + sigma^2 = 1 (`gen_jax.schedules`), a network may
predict any of three quantities, each an affine function of the others given x_t:

    eps   the noise                     (Ho et al. 2020)
    x0    the clean data                (the denoiser D(x_t) = E[x0 | x_t] at the optimum)
    v     alpha eps - sigma x0          (Salimans & Ho 2022, "Progressive Distillation", sec. 4)

    x0 = (x_t - sigma eps) / alpha      eps = (x_t - alpha x0) / sigma
    x0 = alpha x_t - sigma v            eps = sigma x_t + alpha v       v = (alpha x_t - x0) / sigma

These are identities, not losses: the denoising losses (`gen_jax.losses.denoising`) and the
samplers (`gen_jax.sampling.diffusion`) both use them.

`{name}_prediction(*, prediction, x_t, alpha, sigma) -> (x0_hat, eps_hat)` reads a network's
output in parameterisation `name`; a method resolves it by name (`model.prediction`).

Shapes: x0, eps, v, x_t, prediction [batch, ...]; alpha, sigma broadcastable to them
([batch, 1, ...]) or scalars.
"""

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
