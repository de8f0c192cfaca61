"""Paths through a latent space, for interpolation grids of VAEs and GANs.

Every path is `path_fn(z0, z1, t) -> z` with z0, z1 [..., d] and t broadcastable to [..., 1];
t = 0 gives z0 and t = 1 gives z1. `interpolate` lays a path out as [n, steps, d], one path per
row of a sample grid.
"""

from typing import Callable

import jax.numpy as jnp

from gen_jax.types import Array

PathFn = Callable[[Array, Array, Array], Array]


def linear_path(z0: Array, z1: Array, t: Array) -> Array:
  """(1 - t) z0 + t z1 for z0, z1 [..., d] and t broadcastable to [..., 1]."""
  return (1.0 - t) * z0 + t * z1


def spherical_path(z0: Array, z1: Array, t: Array) -> Array:
  """Spherical linear interpolation (Shoemake 1985), as White 2016 ("Sampling Generative
  Networks") recommends for Gaussian latents: it keeps the norms of high-dimensional draws of
  N(0, I), which a straight line between them would shrink.

    slerp(z0, z1; t) = sin((1 - t) w) / sin(w) z0 + sin(t w) / sin(w) z1,  cos w = <z0, z1>/|z0||z1|

  Falls back to the straight line when z0 and z1 are (nearly) parallel.
  """
  dot = jnp.sum(z0 * z1, -1, keepdims=True)
  norms = jnp.linalg.norm(z0, axis=-1, keepdims=True) * jnp.linalg.norm(z1, axis=-1,
                                                                         keepdims=True)
  omega = jnp.arccos(jnp.clip(dot / jnp.maximum(norms, 1e-12), -1.0, 1.0))
  sin_omega = jnp.sin(omega)
  parallel = sin_omega < 1e-6
  safe = jnp.where(parallel, 1.0, sin_omega)
  slerp = (jnp.sin((1.0 - t) * omega) * z0 + jnp.sin(t * omega) * z1) / safe
  return jnp.where(parallel, linear_path(z0, z1, t), slerp)


def interpolate(z0: Array, z1: Array, steps: int, path_fn: PathFn = spherical_path) -> Array:
  """Latents along paths from z0 [n, d] to z1 [n, d], endpoints included: [n, steps, d]."""
  t = jnp.linspace(0.0, 1.0, steps, dtype=z0.dtype)[None, :, None]  # [1, steps, 1]
  return path_fn(z0[:, None, :], z1[:, None, :], t)
