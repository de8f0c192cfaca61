"""Multi-layer perceptrons for the 2-D toy problems.

One module serves every role: a GAN generator (latent [batch, z] -> points [batch, 2]), a
discriminator or critic (points [batch, 2] -> logits [batch]), a class-conditional variant of
either (a learned label embedding concatenated to the input), and a 2-D diffusion denoiser (the
caller concatenates its time embedding to x_t before the call).
"""

import inspect
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax.errors import SettingError
from gen_jax.types import Array


def activation_fn(name: str) -> Callable[[Array], Array]:
  """Looks an activation up by name on `jax.nn`, then on `flax.linen`.

  Raises:
    SettingError: no function of that name (a `model.activation` setting), in one line.
  """
  for namespace in (jax.nn, nn):
    fn = getattr(namespace, name, None)
    if fn is not None and callable(fn) and not inspect.isclass(fn):
      return fn
  raise SettingError(f"unknown activation {name!r}: use the name of a function in jax.nn or "
                     "flax.linen, e.g. 'relu', 'leaky_relu', 'gelu', 'silu', 'tanh'.")


class MLP(nn.Module):
  """Dense layers with a nonlinearity between them and a linear output layer.

  Each hidden layer is Dense -> (LayerNorm) -> activation; the output layer is Dense with no
  activation. Inputs with more than two axes are flattened to [batch, features].

  Attributes:
    features: widths of the hidden layers, e.g. (128, 128, 128); () gives a linear map.
    out_features: width of the output layer; None gives one output unit with its last axis
      dropped, [batch], as a discriminator's logit or a critic's value.
    activation: name of the nonlinearity, a function of `jax.nn` or `flax.linen`.
    layer_norm: whether to layer-normalise every hidden layer before its activation (a
      per-example normalisation, safe under gradient penalties, unlike batch norm).
    num_classes: when set, `__call__` takes integer `labels` [batch] in [0, num_classes) and
      concatenates a learned embedding of them to the input.
    label_features: width of that label embedding.
  """

  features: Sequence[int]
  out_features: int | None = None
  activation: str = "relu"
  layer_norm: bool = False
  num_classes: int | None = None
  label_features: int = 16

  @nn.compact
  def __call__(self, x: Array, labels: Array | None = None) -> Array:
    """Applies the MLP.

    Args:
      x: [batch, ...] inputs (latents, points, or points with a time embedding).
      labels: [batch] int class labels; required exactly when `num_classes` is set.

    Returns:
      [batch, out_features], or [batch] when `out_features` is None.
    """
    act = activation_fn(self.activation)
    x = jnp.reshape(x, (x.shape[0], -1))
    if self.num_classes is None:
      if labels is not None:
        raise ValueError("labels were given to an unconditional MLP; set num_classes.")
    else:
      if labels is None:
        raise ValueError(f"this MLP is class-conditional (num_classes={self.num_classes}); "
                         "pass labels [batch].")
      if labels.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape [batch] = ({x.shape[0]},), got {labels.shape}.")
      embedding = nn.Embed(self.num_classes, self.label_features, name="label_embed")(labels)
      x = jnp.concatenate([x, embedding.astype(x.dtype)], axis=-1)
    for i, width in enumerate(self.features):
      x = nn.Dense(width, name=f"hidden_{i}")(x)
      if self.layer_norm:
        x = nn.LayerNorm(name=f"norm_{i}")(x)
      x = act(x)
    if self.out_features is None:
      return nn.Dense(1, name="out")(x)[:, 0]
    return nn.Dense(self.out_features, name="out")(x)
