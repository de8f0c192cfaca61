"""The losses of neural style transfer, per example: content, style (Gram matrices) and total
variation.

Every function is pure. The losses are keyword-only and return one value per example, shape
[batch]; the caller reduces (usually with a mean) and adds the terms with its own weights
(Gatys et al.'s alpha and beta, eq. 7; a total-variation weight). Features are activations of a
fixed network (VGG-19 in the paper), channels last: [batch, h, w, c]. The network and the choice
of layers are the caller's.

  gram_matrix(features)                             [batch, c, c], normalised by h * w
  content_loss(*, features, target)                 mean squared error of the activations
  style_loss(*, features, target_grams, weights)    sum_l w_l * mean squared error of the Grams
  total_variation(*, images)                        mean squared neighbour differences, v + h

Normalisation, against the paper's (N_l = c channels, M_l = h * w positions of layer l):

  gram_matrix   = G_l / M_l            G_l of eq. 3, which is not normalised
  content_loss  = 2 / (N_l M_l) * L_content of eq. 1  (1/2 sum of squared differences)
  style_loss    = 4 * L_style of eq. 5, with the same layer weights w_l, since the mean squared
                  error of the normalised Grams is 1 / (N_l^2 M_l^2) sum_ij (G - A)_ij^2
                  = 4 E_l of eq. 4

so every term is a mean, independent of the image's size for statistics that are; only the
relative weights of the terms change, by factors the caller folds into its own weights.

The targets (`target`, `target_grams`) are used as given and not stop-gradiented: pass constants
(the style image's Grams computed once, the content image's activations) or wrap them in
`jax.lax.stop_gradient` when they depend on what is being trained.

References:
  Gatys, Ecker and Bethge, "Image Style Transfer Using Convolutional Neural Networks", CVPR 2016
    (content loss eq. 1, Gram matrix eq. 3, style loss eq. 4-5, total loss eq. 7).
  Mahendran and Vedaldi, "Understanding Deep Image Representations by Inverting Them", CVPR 2015
    (the total-variation regulariser R_{V^beta}).
  Johnson, Alahi and Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and
    Super-Resolution", ECCV 2016 (Section 3.3: total-variation regularisation of the output).
"""

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.errors import concrete
from gen_jax.types import Array


def _as_float(x: Array) -> Array:
  """`x` as an array of at least float32 (bfloat16 activations would round the Grams)."""
  x = jnp.asarray(x)
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _check_nhwc(name: str, x: Array) -> None:
  if jnp.ndim(x) != 4:
    raise ValueError(f"{name} must have shape [batch, h, w, c] (channels last), got "
                     f"{jnp.shape(x)}; add the missing batch or channel axis (x[None] or "
                     "x[..., None]).")


def _mean_per_example(x: Array) -> Array:
  return jnp.mean(jnp.reshape(x, (x.shape[0], -1)), axis=-1)


def gram_matrix(features: Array) -> Array:
  """Gram matrix of one layer's activations, normalised by the number of positions.

    G_ij = (1 / (h w)) sum_{y, x} F_{y, x, i} F_{y, x, j},

  the uncentred second moment of the channels over the spatial positions: Gatys et al.'s G^l of
  eq. 3 divided by M_l = h w. It sees no positions: permuting the h * w feature vectors leaves it
  unchanged. A transform of one array rather than a loss, it also takes `features` positionally.
  The product is taken in at least float32 at the highest matmul precision (a Gram is a sum of
  h * w products, and the style loss takes differences of Grams).

  Reference: Gatys et al. 2016, "Image Style Transfer Using Convolutional Neural Networks",
  eq. 3.

  Args:
    features: [batch, h, w, c] activations F.

  Returns:
    [batch, c, c], symmetric, at least float32.

  Raises:
    ValueError: if `features` is not of rank 4.
  """
  _check_nhwc("features", features)
  features = _as_float(features)
  _, h, w, _ = features.shape
  gram = jnp.einsum("byxi,byxj->bij", features, features, precision=jax.lax.Precision.HIGHEST)
  return gram / (h * w)


def content_loss(*, features: Array, target: Array) -> Array:
  """Mean squared error between two activations of one layer, per example.

    loss_b = (1 / (h w c)) sum_{y, x, i} (F_{b, y, x, i} - P_{b, y, x, i})^2,

  which is 2 / (N_l M_l) times Gatys et al.'s L_content = 1/2 sum (F - P)^2 (eq. 1), with
  N_l = c and M_l = h w.

  Reference: Gatys et al. 2016, "Image Style Transfer Using Convolutional Neural Networks",
  eq. 1.

  Args:
    features: [batch, h, w, c] activations F of the generated images.
    target: [batch, h, w, c] activations P of the content images, same shape (example b is
      compared with target b).

  Returns:
    [batch] per-example losses, >= 0.

  Raises:
    ValueError: if either is not of rank 4 or the shapes differ.
  """
  _check_nhwc("features", features)
  _check_nhwc("target", target)
  if jnp.shape(features) != jnp.shape(target):
    raise ValueError(f"features {jnp.shape(features)} and target {jnp.shape(target)} must have "
                     "the same shape: take both from the same layer, one target per example.")
  return _mean_per_example(jnp.square(_as_float(features) - _as_float(target)))


def _check_style_arguments(features: Mapping[str, Array], target_grams: Mapping[str, Array],
                           weights: Mapping[str, float]) -> None:
  layers = set(features)
  if not layers:
    raise ValueError("style_loss needs at least one layer: features is empty.")
  for other_name, other in (("target_grams", target_grams), ("weights", weights)):
    missing, extra = sorted(layers - set(other)), sorted(set(other) - layers)
    if missing or extra:
      raise ValueError(
          f"features and {other_name} must name the same layers: "
          + (f"{missing} are in features but not in {other_name}" if missing else "")
          + ("; " if missing and extra else "")
          + (f"{extra} are in {other_name} but not in features" if extra else "")
          + ". Give every layer features, a target Gram matrix and a weight (a weight of 0 "
          "switches a layer off).")
  for name in sorted(layers):
    value = concrete(weights[name])
    if value is None:  # traced under jit: cannot be checked
      continue
    if value.ndim != 0 or not np.issubdtype(value.dtype, np.number):
      raise ValueError(f"weights[{name!r}] must be a number, got {weights[name]!r}.")
    if not np.isfinite(value) or value < 0:
      raise ValueError(f"weights[{name!r}] must be finite and >= 0, got {value}: style weights "
                       "are non-negative layer weights (Gatys et al. use 1 / number of layers).")
  batch = None
  for name in sorted(layers):
    f, a = features[name], target_grams[name]
    _check_nhwc(f"features[{name!r}]", f)
    f_shape, a_shape = jnp.shape(f), jnp.shape(a)
    if batch is None:
      batch = (f_shape[0], name)
    elif f_shape[0] != batch[0]:
      raise ValueError(f"features[{name!r}] has batch {f_shape[0]} but features[{batch[1]!r}] "
                       f"has batch {batch[0]}: pass every layer's activations of the same "
                       "images.")
    if len(a_shape) != 3 or a_shape[1] != a_shape[2]:
      raise ValueError(f"target_grams[{name!r}] must have shape [batch or 1, c, c], got "
                       f"{a_shape}; compute it with gram_matrix(features=...) of the style "
                       "image's activations.")
    if a_shape[1] != f_shape[3]:
      raise ValueError(f"target_grams[{name!r}] is a Gram matrix of {a_shape[1]} channels but "
                       f"features[{name!r}] has {f_shape[3]} channels: take the target Gram from "
                       "the same layer of the same network.")
    if a_shape[0] not in (1, f_shape[0]):
      raise ValueError(f"target_grams[{name!r}] has batch {a_shape[0]} but the features have "
                       f"batch {f_shape[0]}: pass one Gram per example, or a batch of 1 (one "
                       "style image for all).")


def style_loss(*, features: Mapping[str, Array], target_grams: Mapping[str, Array],
               weights: Mapping[str, float]) -> Array:
  """Weighted sum over layers of the mean squared error between Gram matrices, per example.

    loss_b = sum_l w_l (1 / c_l^2) sum_ij (G^l_{b, ij} - A^l_{b, ij})^2,   G^l = gram_matrix(F^l),

  with `gram_matrix` normalised by h_l w_l. Each layer's term is 4 E_l of Gatys et al.'s eq. 4
  (E_l = 1 / (4 N_l^2 M_l^2) sum_ij (G - A)_ij^2 with unnormalised Grams), so the loss is
  4 L_style of eq. 5 with the same weights. The layers are summed in sorted name order.

  Reference: Gatys et al. 2016, "Image Style Transfer Using Convolutional Neural Networks",
  eq. 4-5.

  Args:
    features: layer name -> [batch, h_l, w_l, c_l] activations of the generated images (the
      spatial sizes may differ between layers; the batch may not).
    target_grams: layer name -> [batch, c_l, c_l] or [1, c_l, c_l] target Grams A^l, computed
      with `gram_matrix`; a batch of 1 (one style image) is broadcast to every example.
    weights: layer name -> w_l, a finite number >= 0. Python numbers are checked; weights traced
      under jit cannot be and are used as given.

  Returns:
    [batch] per-example losses, >= 0, at least float32.

  Raises:
    ValueError: if the three mappings do not name the same non-empty set of layers, a weight is
      negative, non-finite or not a scalar, a feature is not of rank 4, the layers' batch sizes
      differ, a target Gram is not [batch or 1, c, c], or its channels differ from the layer's.
  """
  _check_style_arguments(features, target_grams, weights)
  total = None
  for name in sorted(features):
    diff = gram_matrix(features[name]) - _as_float(target_grams[name])
    term = weights[name] * jnp.mean(jnp.square(diff), axis=(-2, -1))
    total = term if total is None else total + term
  return total


def total_variation(*, images: Array) -> Array:
  """Squared total variation: mean squared difference of vertical neighbours plus that of
  horizontal neighbours, per example.

    tv_b = (1 / ((h - 1) w c)) sum_{y, x, k} (I_{b, y+1, x, k} - I_{b, y, x, k})^2
         + (1 / (h (w - 1) c)) sum_{y, x, k} (I_{b, y, x+1, k} - I_{b, y, x, k})^2.

  This is Mahendran and Vedaldi's R_{V^beta} with beta = 2 (for which their isotropic form,
  ((dI/dx)^2 + (dI/dy)^2)^(beta / 2), is the sum of the squares and has no square root), with
  each direction's sum divided by its number of neighbour pairs; Johnson et al. 2016 (Section
  3.3) use the same regulariser on a generated image. The squared form is smooth at zero
  differences (the anisotropic L1 form, |dI/dx| + |dI/dy| as in `tf.image.total_variation`,
  favours piecewise-constant images and has a kink there). A constant image has tv = 0, and
  adding a constant leaves tv unchanged. The value depends on the image's units: images in
  [0, 255] give 255^2 times the value of the same images in [0, 1].

  References: Mahendran & Vedaldi 2015, "Understanding Deep Image Representations by Inverting
  Them" (R_{V^beta}); Johnson et al. 2016, "Perceptual Losses for Real-Time Style Transfer and
  Super-Resolution", Section 3.3.

  Args:
    images: [batch, h, w, c], h >= 2 and w >= 2.

  Returns:
    [batch] per-example values, >= 0, at least float32.

  Raises:
    ValueError: if `images` is not of rank 4 or h or w is below 2.
  """
  _check_nhwc("images", images)
  _, h, w, _ = jnp.shape(images)
  if h < 2 or w < 2:
    raise ValueError(f"total_variation needs images of at least 2 x 2 pixels, got h = {h}, "
                     f"w = {w} (shape {jnp.shape(images)}): a direction with a single pixel "
                     "has no neighbours.")
  images = _as_float(images)
  vertical = images[:, 1:] - images[:, :-1]  # [batch, h - 1, w, c]
  horizontal = images[:, :, 1:] - images[:, :, :-1]  # [batch, h, w - 1, c]
  return _mean_per_example(jnp.square(vertical)) + _mean_per_example(jnp.square(horizontal))
