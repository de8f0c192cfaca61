"""Adversarial examples against a classifier: FGSM and PGD in an L-inf or an L2 ball.

Every attack sees the classifier only through

    logits_fn(images [batch, ...]) -> logits [batch, num_classes]

and returns adversarial images of the shape and dtype of `images`. The loss an attack climbs (or,
when targeted, descends) is the softmax cross-entropy of each example's label,
`optax.softmax_cross_entropy_with_integer_labels`, summed over the batch: the gradient of the sum
with respect to example i is the gradient of example i's own loss, as long as `logits_fn` treats
examples independently (no batch norm in training mode, no cross-example attention). Such a
classifier would let every example's perturbation depend on the whole batch.

  fgsm(logits_fn, images, labels, *, epsilon, targeted, clip)      one signed-gradient step
  pgd(logits_fn, images, labels, rng, *, epsilon, step_size, num_steps, norm, targeted,
      random_start, clip)                                           projected gradient steps
  project(delta, *, epsilon, norm)                                  onto the ball of radius epsilon

Conventions:
  * Images lie in the pixel range `clip = (low, high)`, by default [-1, 1], the codebase's range
    (`gen_jax.data.preprocess.scale_to_unit`); adversarial images are clipped back into it.
    `clip=None` leaves the range unbounded (features rather than pixels).
  * `labels` are [batch] integer class ids: the true labels for an untargeted attack, which
    raises their loss, and the target labels for a targeted one, which lowers theirs.
  * Norms are per example, over all of an example's dimensions: `epsilon` bounds
    max_j |x_adv[i, j] - x[i, j]| ("linf") or sqrt(sum_j (x_adv[i, j] - x[i, j])^2) ("l2"), up to
    float rounding, for every example i.
  * Settings given as concrete values (Python numbers, NumPy or unjitted JAX arrays) are checked
    and refused with a ValueError that says what to change; values traced under `jit` cannot be
    checked. `norm`, `targeted`, `random_start` and `num_steps` are static (Python values): under
    `jit`, bind them in a closure or mark them with `static_argnames`. Library code never jits:
    jit the caller.

References:
  Goodfellow, Shlens and Szegedy, "Explaining and harnessing adversarial examples", ICLR 2015
    (FGSM, Section 4).
  Kurakin, Goodfellow and Bengio, "Adversarial examples in the physical world", ICLR workshop 2017
    (targeted steps down the loss of a target class, Section 2.3).
  Madry et al., "Towards deep learning models resistant to adversarial attacks", ICLR 2018 (PGD,
    Eq. 2 and Section 3 on random starts).
"""

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from gen_jax.errors import concrete
from gen_jax.types import Array, PRNGKey

LogitsFn = Callable[[Array], Array]  # images [batch, ...] -> logits [batch, num_classes]
Clip = tuple[float, float] | None  # (low, high) pixel range, or None for no bound

NORMS = ("linf", "l2")


# ----------------------------------------------------------------------------------------------
# Checks.
# ----------------------------------------------------------------------------------------------



def _check_scalar(name: str, value: Any, rule: str) -> None:
  """Refuses a non-scalar `value`, or a concrete one that is negative, infinite or NaN."""
  if jnp.ndim(value) != 0:
    raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(value)}; pass one number "
                     "for the whole batch.")
  known = concrete(value)
  if known is not None and not (np.isfinite(known) and known >= 0):
    raise ValueError(f"{name} must be a finite number >= 0 ({rule}), got {known}.")


def _check_norm(norm: str) -> None:
  if norm not in NORMS:
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}: pass norm='linf' for a box of "
                     "half-width epsilon or norm='l2' for a Euclidean ball of radius epsilon.")


def _check_inputs(logits_fn: LogitsFn, images: Array, labels: Array, clip: Clip) -> None:
  """Refuses images, labels, logits and a pixel range that do not fit together."""
  if images.ndim < 2 or not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(f"images must be a floating array [batch, ...] with at least one value per "
                     f"example, got shape {images.shape} and dtype {images.dtype}; scale integer "
                     "pixels to floats first (gen_jax.data.preprocess.scale_to_unit).")
  batch = images.shape[0]
  if labels.shape != (batch,) or not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"labels must be integer class ids of shape [batch] = ({batch},), got shape "
                     f"{labels.shape} and dtype {labels.dtype}; pass one class id per image (not "
                     "one-hot vectors).")
  # The logits' shape, found without running the classifier.
  logits = jax.eval_shape(logits_fn, jax.ShapeDtypeStruct(images.shape, images.dtype))
  if not isinstance(logits, jax.ShapeDtypeStruct) or logits.ndim != 2 or logits.shape[0] != batch:
    shape = getattr(logits, "shape", type(logits).__name__)
    raise ValueError(f"logits_fn must map images [batch, ...] to one array of logits [batch, "
                     f"num_classes] = ({batch}, num_classes), got {shape}.")
  num_classes = logits.shape[1]
  concrete_labels = concrete(labels)
  if concrete_labels is not None and concrete_labels.size:
    bad = concrete_labels[(concrete_labels < 0) | (concrete_labels >= num_classes)]
    if bad.size:
      raise ValueError(f"labels must be class ids in [0, {num_classes}) of the logits, got "
                       f"{bad.flat[0]}.")
  if clip is None:
    return
  if len(clip) != 2:
    raise ValueError(f"clip must be a pair (low, high) or None, got {clip!r}.")
  low, high = (concrete(c) for c in clip)
  if low is None or high is None:
    return
  if not low < high:
    raise ValueError(f"clip must be a pixel range (low, high) with low < high, got {clip!r}.")
  if not images.size:
    return
  # The max and min are reduced on the device, so only two scalars travel to the host.
  images_low, images_high = (concrete(jnp.min(images)), concrete(jnp.max(images)))
  if images_low is not None and not low <= images_low <= images_high <= high:
    raise ValueError(f"images must lie in the pixel range clip = ({low}, {high}), got values in "
                     f"[{images_low}, {images_high}]; scale them into that range, or pass the "
                     "range they use as clip (None for no bound).")


def _clip(x: Array, clip: Clip) -> Array:
  return x if clip is None else jnp.clip(x, clip[0], clip[1])


# ----------------------------------------------------------------------------------------------
# The loss and its gradient.
# ----------------------------------------------------------------------------------------------


def _loss_grad(logits_fn: LogitsFn, images: Array, labels: Array) -> Array:
  """grad_x of each example's softmax cross-entropy, [batch, ...] like `images`.

  The per-example losses are summed, so example i's gradient is that of its own loss alone
  (provided `logits_fn` treats examples independently, see the module docstring). The
  cross-entropy is taken in float32, so low-precision logits do not round the gradient to 0.
  """

  def total_loss(x: Array) -> Array:
    logits = logits_fn(x).astype(jnp.float32)
    return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, labels))

  return jax.grad(total_loss)(images)


# ----------------------------------------------------------------------------------------------
# Balls: the steepest step, the projection and the random start of each norm.
# ----------------------------------------------------------------------------------------------


def _per_example_max_abs(x: Array) -> Array:
  """max_j |x[i, j]| over all axes but the first, as [batch, 1, ..., 1] for broadcasting."""
  return jnp.max(jnp.abs(x), axis=tuple(range(1, x.ndim)), keepdims=True)


def _unit_l2(x: Array) -> Array:
  """x / ||x||_2 per example, [batch, ...]; 0 for an example that is all zeros.

  Dividing by the largest |x_j| first keeps the squares in range, so gradients of 1e-30 or 1e30
  still give unit vectors in float32 (squaring them would underflow to 0 or overflow to inf).
  The double `where` avoids dividing by 0 where an example is all zeros.
  """
  scale = _per_example_max_abs(x)
  nonzero = scale > 0
  scaled = x / jnp.where(nonzero, scale, 1)
  norm = jnp.sqrt(jnp.sum(jnp.square(scaled), axis=tuple(range(1, x.ndim)), keepdims=True))
  return jnp.where(nonzero, scaled / jnp.where(nonzero, norm, 1), 0)


def _l2_norm(x: Array) -> Array:
  """||x||_2 per example as [batch, 1, ..., 1], overflow-safe like `_unit_l2`."""
  scale = _per_example_max_abs(x)
  scaled = x / jnp.where(scale > 0, scale, 1)
  return scale * jnp.sqrt(jnp.sum(jnp.square(scaled), axis=tuple(range(1, x.ndim)), keepdims=True))


@dataclasses.dataclass(frozen=True)
class _Ball:
  """What PGD needs of a norm ball, one function per part."""

  # grad [batch, ...] -> the unit-norm direction of steepest ascent of a linear function.
  steepest: Callable[[Array], Array]
  # (delta [batch, ...], epsilon) -> the nearest point of the ball of radius epsilon.
  project: Callable[[Array, Array], Array]
  # (rng, shape, dtype, epsilon) -> a point drawn uniformly from the ball, [batch, ...].
  sample: Callable[[PRNGKey, tuple[int, ...], Any, Array], Array]


def _linf_project(delta: Array, epsilon: Array) -> Array:
  return jnp.clip(delta, -epsilon, epsilon)


def _l2_project(delta: Array, epsilon: Array) -> Array:
  # Rescale onto the sphere only the examples outside the ball; the rest are already nearest.
  norm = _l2_norm(delta)
  outside = norm > epsilon
  return jnp.where(outside, delta * (epsilon / jnp.where(outside, norm, 1)), delta)


def _linf_sample(rng: PRNGKey, shape: tuple[int, ...], dtype: Any, epsilon: Array) -> Array:
  return jax.random.uniform(rng, shape, dtype, minval=-1.0, maxval=1.0) * epsilon


def _l2_sample(rng: PRNGKey, shape: tuple[int, ...], dtype: Any, epsilon: Array) -> Array:
  # A uniform point of the d-dimensional ball: a uniform direction (a normalised Gaussian) at
  # radius epsilon * U^(1/d), since the volume within radius r grows as r^d.
  direction_rng, radius_rng = jax.random.split(rng)
  dim = math.prod(shape[1:])
  direction = _unit_l2(jax.random.normal(direction_rng, shape, dtype))
  u = jax.random.uniform(radius_rng, (shape[0],) + (1,) * (len(shape) - 1), dtype)
  return direction * (epsilon * u ** (1.0 / dim))


_BALLS = {
    # The steepest L-inf step of a linear function g . delta is sign(g) (Goodfellow et al.).
    "linf": _Ball(steepest=jnp.sign, project=_linf_project, sample=_linf_sample),
    # The steepest L2 step is g / ||g||_2.
    "l2": _Ball(steepest=_unit_l2, project=_l2_project, sample=_l2_sample),
}


def project(delta: Array, *, epsilon: float | Array, norm: str = "linf") -> Array:
  """The nearest point of the ball ||delta_i|| <= epsilon to each example's perturbation.

  For "linf" every value is clipped to [-epsilon, epsilon]; for "l2" an example with
  ||delta_i||_2 > epsilon is rescaled to delta_i * epsilon / ||delta_i||_2 and the others are kept.
  Both are Euclidean projections onto the ball (Madry et al. 2018, Eq. 2, the operator Pi).

  Args:
    delta: [batch, ...] perturbations; the norm is over all axes but the first.
    epsilon: radius of the ball, a scalar >= 0 (in pixel units, e.g. 8 / 255 * 2 for 8 grey
      levels in the [-1, 1] range).
    norm: "linf" or "l2".

  Returns:
    [batch, ...] projected perturbations, shape and dtype of `delta`.

  Raises:
    ValueError: for an unknown norm, a negative or non-finite epsilon, or `delta` without a batch
      axis.
  """
  _check_norm(norm)
  _check_scalar("epsilon", epsilon, "the radius of the ball")
  delta = jnp.asarray(delta)
  if delta.ndim < 2:
    raise ValueError(f"delta must be [batch, ...] with at least one value per example, got shape "
                     f"{delta.shape}.")
  return _BALLS[norm].project(delta, jnp.asarray(epsilon, delta.dtype))


# ----------------------------------------------------------------------------------------------
# Attacks.
# ----------------------------------------------------------------------------------------------


def fgsm(logits_fn: LogitsFn, images: Array, labels: Array, *, epsilon: float | Array,
         targeted: bool = False, clip: Clip = (-1.0, 1.0)) -> Array:
  """Fast gradient sign method: one step of size epsilon along the sign of the loss gradient.

    untargeted:  x_adv = clip(x + epsilon * sign(grad_x J(x, y)))          (Goodfellow et al.)
    targeted:    x_adv = clip(x - epsilon * sign(grad_x J(x, y_target)))   (Kurakin et al.)

  with J the softmax cross-entropy of the logits. A value whose gradient is exactly 0 is left
  unchanged (sign(0) = 0). The step maximises the linearised loss over the L-inf ball of radius
  epsilon, so every |x_adv - x| <= epsilon; clipping to the pixel range only shrinks the step.

  References: Goodfellow et al. 2015, "Explaining and harnessing adversarial examples", Section
  4, eta = epsilon sign(grad_x J(theta, x, y)); Kurakin et al. 2017, "Adversarial examples in the
  physical world", Section 2.3 (stepping down the loss of a target class).

  Args:
    logits_fn: images [batch, ...] -> logits [batch, num_classes]; must treat examples
      independently (module docstring).
    images: [batch, ...] floating images in the pixel range `clip`.
    labels: [batch] integer class ids: the true classes, or the targets when `targeted`.
    epsilon: the L-inf budget, a scalar >= 0 in pixel units.
    targeted: if True, lower the loss of `labels` (push towards them) instead of raising it.
    clip: the pixel range (low, high) of the images and the result; None for no bound.

  Returns:
    [batch, ...] adversarial images, shape and dtype of `images`.

  Raises:
    ValueError: for a negative or non-finite epsilon, labels that are not [batch] class ids of the
      logits, logits_fn not returning [batch, num_classes], or images outside `clip`.
  """
  images = jnp.asarray(images)
  labels = jnp.asarray(labels)
  _check_scalar("epsilon", epsilon, "the L-inf budget")
  _check_inputs(logits_fn, images, labels, clip)
  epsilon = jnp.asarray(epsilon, images.dtype)
  sign = -1.0 if targeted else 1.0
  grad = _loss_grad(logits_fn, images, labels)
  return _clip(images + sign * epsilon * jnp.sign(grad), clip)


def pgd(logits_fn: LogitsFn, images: Array, labels: Array, rng: PRNGKey | None, *,
        epsilon: float | Array, step_size: float | Array, num_steps: int, norm: str = "linf",
        targeted: bool = False, random_start: bool = True,
        clip: Clip = (-1.0, 1.0)) -> Array:
  """Projected gradient descent on the negative loss, within a norm ball around the images.

    x_0     = clip(x + delta_0),  delta_0 uniform in the ball (random_start) or 0,
    x_{t+1} = clip(x + Pi(x_t - x + s * step_size * steepest(grad_x J(x_t, y)))),

  for t = 0 .. num_steps - 1, with s = +1 (untargeted: raise the loss of the true class) or -1
  (targeted: lower the loss of the target class), J the softmax cross-entropy of the logits,
  steepest(g) = sign(g) for "linf" and g / ||g||_2 per example for "l2" (0 where g = 0), and Pi
  the projection onto the ball of radius epsilon (`project`). Clipping to the pixel range after the
  projection keeps x_t in both sets: it moves each value towards x's, which lies in the range, so
  it never leaves the ball. The random start is uniform in the box for "linf" and uniform in the
  Euclidean ball (uniform direction, radius epsilon * U^(1/d) for d values per example) for "l2".

  With num_steps = 1, step_size = epsilon, no random start and norm "linf" this is `fgsm`.

  References: Madry et al. 2018, "Towards deep learning models resistant to adversarial attacks",
  Eq. 2 (the projected signed-gradient step) and Section 3 (random starts in the ball); Kurakin et
  al. 2017, "Adversarial examples in the physical world", Section 2.3 (targeted steps).

  Args:
    logits_fn: images [batch, ...] -> logits [batch, num_classes]; must treat examples
      independently (module docstring).
    images: [batch, ...] floating images in the pixel range `clip`.
    labels: [batch] integer class ids: the true classes, or the targets when `targeted`.
    rng: key for the random start; unused, and may be None, when `random_start` is False.
    epsilon: radius of the ball, a scalar >= 0 in pixel units.
    step_size: length of each step (its L-inf norm for "linf", its L2 norm for "l2"), a scalar
      >= 0 in pixel units; Madry et al. use about 2.5 * epsilon / num_steps.
    num_steps: number of gradient steps, a Python int >= 0 (the loop's static trip count).
    norm: "linf" or "l2".
    targeted: if True, lower the loss of `labels` (push towards them) instead of raising it.
    random_start: start from a uniform point of the ball instead of the images themselves.
    clip: the pixel range (low, high) of the images and the result; None for no bound.

  Returns:
    [batch, ...] adversarial images, shape and dtype of `images`.

  Raises:
    ValueError: for an unknown norm, a negative or non-finite epsilon or step_size, num_steps < 0,
      random_start without an rng, labels that are not [batch] class ids of the logits, logits_fn
      not returning [batch, num_classes], or images outside `clip`.
    TypeError: for a num_steps that is not a Python int (e.g. traced under jit).
  """
  _check_norm(norm)
  _check_scalar("epsilon", epsilon, "the radius of the ball")
  _check_scalar("step_size", step_size, "the length of each step")
  if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)):
    raise TypeError(f"num_steps must be a Python int, the loop's static trip count, got "
                    f"{type(num_steps).__name__}; under jit bind it in a closure or list it in "
                    "static_argnames.")
  if num_steps < 0:
    raise ValueError(f"num_steps must be >= 0 (0 returns the start point), got {num_steps}.")
  if random_start and rng is None:
    raise ValueError("random_start=True needs an rng for the start point; pass a key, or "
                     "random_start=False to start from the images.")
  images = jnp.asarray(images)
  labels = jnp.asarray(labels)
  _check_inputs(logits_fn, images, labels, clip)

  ball = _BALLS[norm]
  epsilon = jnp.asarray(epsilon, images.dtype)
  step = (-1.0 if targeted else 1.0) * jnp.asarray(step_size, images.dtype)
  if random_start:
    start = _clip(images + ball.sample(rng, images.shape, images.dtype, epsilon), clip)
  else:
    start = images

  # The iterate is x_t itself, not delta_t: from x_0 = x the first step is x + Pi(0 + step) with
  # no rounding in x_t - x, which is what makes one linf step equal `fgsm` bit for bit.
  def body(_, x_adv: Array) -> Array:
    direction = ball.steepest(_loss_grad(logits_fn, x_adv, labels))
    delta = ball.project(x_adv - images + step * direction, epsilon)
    return _clip(images + delta, clip)

  return lax.fori_loop(0, num_steps, body, start)
