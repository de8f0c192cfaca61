"""Oracle tests of gen_jax.attacks: closed forms on linear classifiers and the ball invariants.

On a linear classifier z = x W + b the cross-entropy gradient is (softmax(z) - onehot(y)) W^T,
computed here by hand in float64, so FGSM and one L2 step have closed forms. With W = I (logits
are the features) the gradient's sign pattern is the same at every x (negative on the label,
positive elsewhere), so every L-inf attack ends at one known corner of the box, and a margin below
a bound derived in each test guarantees the flip.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gen_jax import attacks

SHAPE = (5, 2, 3, 1)  # [batch, h, w, c] images, 6 values per example
NUM_CLASSES = 4


def _images(shape, seed, low=-1.0, high=1.0):
  return np.random.default_rng(seed).uniform(low, high, size=shape).astype(np.float32)


def _linear(seed, dim, num_classes):
  """A linear classifier on flattened images and its weights, float32."""
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(dim, num_classes)).astype(np.float32)
  b = rng.normal(size=num_classes).astype(np.float32)
  return (lambda x: x.reshape(x.shape[0], -1) @ w + b), w, b


def _mlp(seed, dim, num_classes, hidden=8):
  """A small tanh network on flattened images: nonlinear, with non-zero input gradients."""
  rng = np.random.default_rng(seed)
  w1 = rng.normal(size=(dim, hidden)).astype(np.float32)
  w2 = rng.normal(size=(hidden, num_classes)).astype(np.float32)
  return lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w1) @ w2


def _softmax(z):
  z = z - z.max(axis=-1, keepdims=True)
  return np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)


def _ce_grad_linear(x, y, w, b):
  """d/dx of the cross-entropy of z = x W + b at label y, per example, float64, shape of x."""
  flat = np.float64(x).reshape(x.shape[0], -1)
  p = _softmax(flat @ np.float64(w) + np.float64(b))
  return ((p - np.eye(w.shape[1])[y]) @ np.float64(w).T).reshape(x.shape)


def _per_example_norms(d):
  d = np.float64(d).reshape(d.shape[0], -1)
  return np.abs(d).max(axis=1), np.linalg.norm(d, axis=1)


# ----------------------------------------------------------------------------------------------
# FGSM against its closed form.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_on_a_linear_classifier_is_its_closed_form(targeted):
  logits_fn, w, b = _linear(seed=0, dim=6, num_classes=NUM_CLASSES)
  x = _images(SHAPE, seed=1)
  x[0, 0, :, 0] = [1.0, 0.97, -0.96]  # so that clipping to [-1, 1] binds on some values
  x[1, 1, :, 0] = [-1.0, -0.99, 0.95]
  y = np.array([0, 1, 2, 3, 1])
  eps = 0.1

  grad = _ce_grad_linear(x, y, w, b)
  # The sign is exact in float32 too when no gradient value is near 0.
  assert np.abs(grad).min() > 1e-3
  sign = -1.0 if targeted else 1.0
  expected = np.clip(x + np.float32(sign * eps) * np.sign(grad).astype(np.float32), -1.0, 1.0)

  out = attacks.fgsm(logits_fn, x, y, epsilon=eps, targeted=targeted)
  assert out.shape == x.shape and out.dtype == jnp.float32
  np.testing.assert_array_equal(out, expected)
  assert np.any(np.abs(expected - x) < eps - 1e-3)  # the clipped values are part of the check


# ----------------------------------------------------------------------------------------------
# PGD: the ball, the pixel range and the random start.
# ----------------------------------------------------------------------------------------------

EPSILON = {"linf": 0.1, "l2": 0.5}


@pytest.mark.parametrize("random_start", [False, True])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_stays_in_the_ball_and_the_pixel_range(norm, random_start):
  logits_fn = _mlp(seed=2, dim=6, num_classes=NUM_CLASSES)
  x = _images(SHAPE, seed=3)
  x[0, 0, :, 0] = [1.0, -1.0, 0.99]
  y = np.array([0, 1, 2, 3, 0])
  eps = EPSILON[norm]
  out = np.asarray(attacks.pgd(logits_fn, x, y, jax.random.key(0), epsilon=eps,
                               step_size=eps / 2, num_steps=5, norm=norm,
                               random_start=random_start))
  linf, l2 = _per_example_norms(out - x)
  assert np.all((linf if norm == "linf" else l2) <= eps * (1 + 1e-5))
  assert np.all(out >= -1.0) and np.all(out <= 1.0)
  assert np.all(linf > 0)  # every example moved


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_with_long_steps_ends_on_the_boundary_of_the_ball(norm):
  # From any delta in the ball, delta + step * u with ||u|| = 1 (for linf: every |u_j| = 1 where
  # the gradient is non-zero) and step = 2 eps has norm >= eps, so the projection puts the
  # iterate on the boundary: every |delta_j| = eps (linf) or ||delta|| = eps (l2). Images away
  # from the pixel bounds keep clipping out of the way.
  logits_fn = _mlp(seed=4, dim=6, num_classes=NUM_CLASSES)
  x = _images(SHAPE, seed=5, low=-0.5, high=0.5)
  y = np.array([3, 2, 1, 0, 3])
  eps = EPSILON[norm]
  out = attacks.pgd(logits_fn, x, y, jax.random.key(1), epsilon=eps, step_size=2 * eps,
                    num_steps=3, norm=norm)
  delta = np.float64(out) - x
  if norm == "linf":
    np.testing.assert_allclose(np.abs(delta), eps, rtol=1e-5)
  else:
    np.testing.assert_allclose(_per_example_norms(delta)[1], eps, rtol=1e-5)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_start_is_uniform_in_the_ball(norm):
  # With num_steps = 0 PGD returns its start point. In the box each value is U(-eps, eps); in
  # the 2-d disc of radius eps, (r / eps)^2 is U(0, 1) (area grows as r^2) and the angle is
  # U(-pi, pi). Kolmogorov-Smirnov tests against those laws (a fixed key, so deterministic).
  n, eps = 4000, 0.3
  x = np.zeros((n, 2), np.float32)
  logits_fn, _, _ = _linear(seed=6, dim=2, num_classes=3)
  start = np.float64(attacks.pgd(logits_fn, x, np.zeros(n, np.int32), jax.random.key(7),
                                 epsilon=eps, step_size=0.1, num_steps=0, norm=norm))
  if norm == "linf":
    assert np.abs(start).max() <= eps
    assert stats.kstest(start.ravel(), stats.uniform(-eps, 2 * eps).cdf).pvalue > 1e-3
  else:
    r = np.linalg.norm(start, axis=1)
    assert r.max() <= eps * (1 + 1e-6)
    assert stats.kstest((r / eps)**2, stats.uniform(0, 1).cdf).pvalue > 1e-3
    angle = np.arctan2(start[:, 1], start[:, 0])
    assert stats.kstest(angle, stats.uniform(-np.pi, 2 * np.pi).cdf).pvalue > 1e-3


# ----------------------------------------------------------------------------------------------
# Targeted and untargeted attacks on logits = features.
# ----------------------------------------------------------------------------------------------


def _identity_logits(x):
  return x


# Features = logits, 4 classes. The target is never the argmax, and max_j x_j - x_target <= 0.15.
FEATURES = np.array([[0.30, 0.20, 0.15, 0.25],
                     [0.00, 0.10, -0.05, 0.05],
                     [-0.20, -0.30, -0.10, -0.25],
                     [0.40, 0.45, 0.35, 0.30]], np.float32)
TARGETS = np.array([2, 0, 3, 2])
TRUE = np.argmax(FEATURES, axis=1)  # [0, 1, 2, 1]; margins over the runner-up <= 0.1


def test_targeted_linf_attacks_reach_the_corner_of_their_target():
  # Lowering the target's loss moves its logit up and every other logit down, wherever x is, so
  # the L-inf attacks end at x + eps * (2 onehot(t) - 1), where the target leads by at least
  # 2 eps - 0.15 > 0. PGD from a random start needs 2 eps / step = 4 steps to get there.
  eps = 0.1
  corner = FEATURES + eps * (2 * np.eye(4, dtype=np.float32)[TARGETS] - 1)
  fgsm = attacks.fgsm(_identity_logits, FEATURES, TARGETS, epsilon=eps, targeted=True)
  pgd = attacks.pgd(_identity_logits, FEATURES, TARGETS, jax.random.key(2), epsilon=eps,
                    step_size=eps / 2, num_steps=5, targeted=True)
  for out in (fgsm, pgd):
    np.testing.assert_allclose(out, corner, atol=1e-6)
    np.testing.assert_array_equal(np.argmax(out, axis=1), TARGETS)


def test_one_targeted_l2_step_is_its_closed_form_and_reaches_the_target():
  # One step of length eps down the target's loss is x + eps * (e_t - p) / ||e_t - p||, p the
  # softmax. It raises z_t - z_j by eps (1 - p_t + p_j) / ||e_t - p|| >= eps / sqrt(2), as
  # ||e_t - p||^2 = (1 - p_t)^2 + sum_{j != t} p_j^2 <= 2 (1 - p_t)^2; eps = 0.25 gives
  # 0.177 > 0.15, the largest gap to close.
  eps = 0.25
  g = np.eye(4)[TARGETS] - _softmax(np.float64(FEATURES))
  expected = FEATURES + eps * g / np.linalg.norm(g, axis=1, keepdims=True)
  out = attacks.pgd(_identity_logits, FEATURES, TARGETS, None, epsilon=eps, step_size=eps,
                    num_steps=1, norm="l2", targeted=True, random_start=False)
  np.testing.assert_allclose(out, expected, atol=1e-6)
  np.testing.assert_array_equal(np.argmax(out, axis=1), TARGETS)


def test_untargeted_attacks_misclassify_everything_when_the_margin_is_below_epsilon():
  # Raising the true label's loss moves its logit down and the others up. L-inf: the margin
  # shrinks by 2 eps, and the attacks end at x + eps * (1 - 2 onehot(y)). L2, one step of eps:
  # it shrinks by at least eps / sqrt(2) (the bound of the targeted test). Margins <= 0.1.
  assert np.all(np.argmax(FEATURES, axis=1) == TRUE)
  eps = 0.1
  corner = FEATURES + eps * (1 - 2 * np.eye(4, dtype=np.float32)[TRUE])
  outs = [
      attacks.fgsm(_identity_logits, FEATURES, TRUE, epsilon=eps),
      attacks.pgd(_identity_logits, FEATURES, TRUE, jax.random.key(3), epsilon=eps,
                  step_size=eps / 2, num_steps=5),
  ]
  for out in outs:
    np.testing.assert_allclose(out, corner, atol=1e-6)
  eps_l2 = 0.15  # 0.106 > 0.1
  outs.append(attacks.pgd(_identity_logits, FEATURES, TRUE, None, epsilon=eps_l2,
                          step_size=eps_l2, num_steps=1, norm="l2", random_start=False))
  for out in outs:
    assert np.mean(np.argmax(out, axis=1) == TRUE) == 0.0


# ----------------------------------------------------------------------------------------------
# PGD and FGSM agree; PGD under jit.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("targeted", [False, True])
def test_one_linf_pgd_step_from_the_images_is_fgsm(targeted):
  logits_fn = _mlp(seed=8, dim=6, num_classes=NUM_CLASSES)
  x = _images(SHAPE, seed=9)
  y = np.array([1, 0, 3, 2, 2])
  fgsm = attacks.fgsm(logits_fn, x, y, epsilon=0.2, targeted=targeted)
  pgd = attacks.pgd(logits_fn, x, y, None, epsilon=0.2, step_size=0.2, num_steps=1,
                    targeted=targeted, random_start=False)
  np.testing.assert_array_equal(pgd, fgsm)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_under_jit_matches_eager_and_traces_once(norm):
  logits_fn = _mlp(seed=10, dim=6, num_classes=NUM_CLASSES)
  x = _images(SHAPE, seed=11)
  y = np.array([0, 0, 1, 1, 2])

  traces = []

  def attack(images, labels, rng, epsilon):
    traces.append(epsilon)
    return attacks.pgd(logits_fn, images, labels, rng, epsilon=epsilon, step_size=epsilon / 2,
                       num_steps=3, norm=norm)

  jitted = jax.jit(attack)
  for eps in (0.1, 0.3):  # a new epsilon is a new value, not a new trace
    eager = attacks.pgd(logits_fn, x, y, jax.random.key(4), epsilon=eps, step_size=eps / 2,
                        num_steps=3, norm=norm)
    np.testing.assert_allclose(jitted(x, y, jax.random.key(4), eps), eager, atol=1e-6)
  assert len(traces) == 1


# ----------------------------------------------------------------------------------------------
# project.
# ----------------------------------------------------------------------------------------------


def test_project_onto_the_balls():
  delta = np.array([[0.3, -0.4], [0.03, -0.04], [0.0, 0.0]], np.float32)  # norms 0.5, 0.05, 0
  np.testing.assert_array_equal(attacks.project(delta, epsilon=0.1, norm="linf"),
                                np.array([[0.1, -0.1], [0.03, -0.04], [0.0, 0.0]], np.float32))
  # Only the row outside the L2 ball is rescaled, to radius 0.1.
  np.testing.assert_allclose(attacks.project(delta, epsilon=0.1, norm="l2"),
                             [[0.06, -0.08], [0.03, -0.04], [0.0, 0.0]], rtol=1e-6)
  np.testing.assert_array_equal(attacks.project(delta, epsilon=0.0, norm="l2"), np.zeros((3, 2)))


# ----------------------------------------------------------------------------------------------
# Refused inputs.
# ----------------------------------------------------------------------------------------------

_X = np.zeros((3, 4), np.float32)
_Y = np.array([0, 1, 2])


def _pgd(**changes):
  kwargs = dict(logits_fn=_identity_logits, images=_X, labels=_Y, rng=jax.random.key(0),
                epsilon=0.1, step_size=0.05, num_steps=2)
  kwargs.update(changes)
  return attacks.pgd(kwargs.pop("logits_fn"), kwargs.pop("images"), kwargs.pop("labels"),
                     kwargs.pop("rng"), **kwargs)


@pytest.mark.parametrize("changes, message", [
    (dict(norm="l1"), r"norm must be one of \('linf', 'l2'\), got 'l1'"),
    (dict(epsilon=-0.1), r"epsilon must be a finite number >= 0"),
    (dict(epsilon=np.inf), r"epsilon must be a finite number >= 0"),
    (dict(epsilon=np.array([0.1, 0.2, 0.3])), r"epsilon must be a scalar"),
    (dict(step_size=-1.0), r"step_size must be a finite number >= 0"),
    (dict(num_steps=-1), r"num_steps must be >= 0"),
    (dict(rng=None), r"random_start=True needs an rng"),
    (dict(labels=_Y[:, None]), r"labels must be integer class ids of shape \[batch\] = \(3,\)"),
    (dict(labels=_Y[:2]), r"labels must be integer class ids of shape \[batch\] = \(3,\)"),
    (dict(labels=np.eye(4, dtype=np.float32)[_Y]), r"not one-hot"),
    (dict(labels=np.array([0, 1, 4])), r"labels must be class ids in \[0, 4\)"),
    (dict(images=_X + 2.0), r"images must lie in the pixel range"),
    (dict(images=_X.astype(np.int32)), r"images must be a floating array"),
    (dict(clip=(1.0, -1.0)), r"low < high"),
    (dict(logits_fn=lambda x: x[:, 0]), r"logits_fn must map images"),
])
def test_bad_inputs_are_refused_with_what_to_change(changes, message):
  with pytest.raises(ValueError, match=message):
    _pgd(**changes)


def test_fgsm_and_project_refuse_bad_settings():
  with pytest.raises(ValueError, match=r"epsilon must be a finite number >= 0"):
    attacks.fgsm(_identity_logits, _X, _Y, epsilon=-1.0)
  with pytest.raises(ValueError, match=r"labels must be integer class ids"):
    attacks.fgsm(_identity_logits, _X, _Y[:, None], epsilon=0.1)
  with pytest.raises(ValueError, match=r"norm must be one of"):
    attacks.project(_X, epsilon=0.1, norm="L2")
  with pytest.raises(TypeError, match=r"num_steps must be a Python int"):
    _pgd(num_steps=2.0)
  # Images outside [-1, 1] are fine once clip names their range (or None).
  out = attacks.fgsm(_identity_logits, _X + 2.0, _Y, epsilon=0.1, clip=None)
  np.testing.assert_allclose(out, _X + 2.0 + 0.1 * (1 - 2 * np.eye(4, dtype=np.float32)[_Y]))
