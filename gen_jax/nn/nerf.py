"""The radiance field of NeRF (Mildenhall et al. 2020): an MLP from a positionally encoded point
and viewing direction to a density and a colour.

The field is two `gen_jax.nn.mlp.MLP`s. The trunk reads the encoded point gamma(x) and outputs
a raw density and a feature vector (a linear layer, as in the paper's fig. 7); the head reads
that feature and the encoded unit direction gamma(d) and outputs the colour. So the density
depends on the point only and the colour on the point and the direction, which is what keeps a
NeRF's geometry consistent across views. Smaller than the paper's (8 layers of 256, a skip
connection at the fifth): the scenes here are 32x32 or 64x64 images, and a 2-core CPU trains it.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax.nn.mlp import MLP
from gen_jax.types import Array


def positional_encoding(x: Array, num_freqs: int, *, include_input: bool = True) -> Array:
  """gamma(p) = (p, sin(2^0 pi p), cos(2^0 pi p), ..., sin(2^(L-1) pi p), cos(2^(L-1) pi p)),
  applied to each coordinate (Mildenhall et al. 2020, eq. 4; the input itself is kept, as in
  their code).

  Args:
    x: [..., d] coordinates.
    num_freqs: L, the number of octaves (0 gives x alone).
    include_input: start with x itself.

  Returns:
    [..., d * (2 L + include_input)], ordered input, then for each octave sin then cos of
    every coordinate.
  """
  if num_freqs < 0:
    raise ValueError(f"num_freqs must be >= 0, got {num_freqs}.")
  scaled = [x * (jnp.pi * 2.0**k) for k in range(num_freqs)]
  parts = [x] if include_input else []
  for s in scaled:
    parts += [jnp.sin(s), jnp.cos(s)]
  return jnp.concatenate(parts, axis=-1)


class RadianceField(nn.Module):
  """(point, direction) -> (density, colour).

  Attributes:
    point_freqs: octaves of the point's positional encoding (the paper's L = 10).
    direction_freqs: octaves of the direction's encoding (L = 4).
    width: units of each trunk layer.
    depth: trunk hidden layers.
    head_width: units of the colour head's hidden layer.
    activation: the nonlinearity, a function of `jax.nn` or `flax.linen`.
  """

  point_freqs: int = 10
  direction_freqs: int = 4
  width: int = 128
  depth: int = 4
  head_width: int = 64
  activation: str = "relu"

  @nn.compact
  def __call__(self, points: Array, directions: Array) -> tuple[Array, Array]:
    """The field at `points`.

    Args:
      points: [..., 3] world coordinates.
      directions: [..., 3] viewing directions (any length; normalised here), broadcast against
        `points`.

    Returns:
      sigma [...] >= 0 per unit length (softplus of the raw output, as in mip-NeRF, Barron et
      al. 2021: the paper's ReLU can leave a field with zero gradient everywhere), and rgb
      [..., 3] in (0, 1) (sigmoid).
    """
    batch = points.shape[:-1]
    directions = jnp.broadcast_to(directions, points.shape)
    unit = directions / jnp.maximum(jnp.linalg.norm(directions, axis=-1, keepdims=True), 1e-9)
    encoded = positional_encoding(points, self.point_freqs)
    encoded = encoded.reshape(-1, encoded.shape[-1])  # [rays * samples, features]
    trunk = MLP(features=(self.width,) * self.depth, out_features=self.width + 1,
                activation=self.activation, name="trunk")(encoded)
    sigma = jax.nn.softplus(trunk[:, 0])
    view = positional_encoding(unit, self.direction_freqs).reshape(encoded.shape[0], -1)
    rgb = jax.nn.sigmoid(MLP(features=(self.head_width,), out_features=3,
                             activation=self.activation, name="head")(
                                 jnp.concatenate([trunk[:, 1:], view], axis=-1)))
    return sigma.reshape(batch), rgb.reshape(batch + (3,))
