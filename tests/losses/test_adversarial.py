"""Tests for gen_jax.losses.adversarial against NumPy references and closed-form gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.losses import adversarial

# Logits from deep saturation to deep saturation: in float32 sigmoid(50) rounds to 1, so a naive
# log(1 - sigmoid(50)) is log(0) = -inf; softplus stays finite and exact.
REAL = np.array([-50.0, -3.0, -0.5, 0.0, 0.7, 4.0, 50.0, 50.0], np.float32)
FAKE = np.array([50.0, 2.0, 0.0, -1.5, 0.7, -4.0, -50.0, 50.0], np.float32)

NAMES = ("minimax", "non_saturating", "hinge", "wasserstein")


def _np_softplus(x):
  # log(1 + exp(x)) in float64, stable for both signs.
  return np.logaddexp(0.0, np.asarray(x, np.float64))


def _np_relu(x):
  return np.maximum(np.asarray(x, np.float64), 0.0)


D_REFERENCES = {
    "minimax_d": lambda r, f: _np_softplus(-r) + _np_softplus(f),
    "non_saturating_d": lambda r, f: _np_softplus(-r) + _np_softplus(f),
    "hinge_d": lambda r, f: _np_relu(1.0 - r) + _np_relu(1.0 + f),
    "wasserstein_d": lambda r, f: np.float64(f) - np.float64(r),
}
G_REFERENCES = {
    "minimax_g": lambda f: -_np_softplus(f),
    "non_saturating_g": lambda f: _np_softplus(-f),
    "hinge_g": lambda f: -np.float64(f),
    "wasserstein_g": lambda f: -np.float64(f),
}


def test_every_name_has_a_d_and_a_g_loss():
  for name in NAMES:
    assert callable(getattr(adversarial, f"{name}_d"))
    assert callable(getattr(adversarial, f"{name}_g"))
  # The discriminator's side of the non-saturating game is the minimax one, written once.
  assert adversarial.non_saturating_d is adversarial.minimax_d


@pytest.mark.parametrize("fn_name", sorted(D_REFERENCES))
def test_discriminator_losses_match_numpy(fn_name):
  fn = getattr(adversarial, fn_name)
  out = fn(real_logits=jnp.asarray(REAL), fake_logits=jnp.asarray(FAKE))
  expected = D_REFERENCES[fn_name](REAL, FAKE)
  assert out.shape == (REAL.shape[0],)
  assert np.all(np.isfinite(out))
  # Relative accuracy even for values like softplus(-50) = 2e-22.
  np.testing.assert_allclose(out, expected, rtol=2e-6, atol=0)


@pytest.mark.parametrize("fn_name", sorted(G_REFERENCES))
def test_generator_losses_match_numpy(fn_name):
  fn = getattr(adversarial, fn_name)
  out = fn(fake_logits=jnp.asarray(FAKE))
  assert out.shape == (FAKE.shape[0],)
  assert np.all(np.isfinite(out))
  np.testing.assert_allclose(out, G_REFERENCES[fn_name](FAKE), rtol=2e-6, atol=0)


def test_extreme_logits_values_and_gradients():
  # A perfect discriminator: loss 2 * softplus(-50) = 2 exp(-50) (to 1e-22 relative).
  perfect = adversarial.minimax_d(real_logits=jnp.array([50.0]), fake_logits=jnp.array([-50.0]))
  np.testing.assert_allclose(perfect, [2 * np.exp(-50.0)], rtol=1e-6)
  # The worst one: 2 * softplus(50) = 100 + 2 log(1 + e^-50) = 100.
  worst = adversarial.minimax_d(real_logits=jnp.array([-50.0]), fake_logits=jnp.array([50.0]))
  np.testing.assert_allclose(worst, [100.0], rtol=1e-7)

  # At a rejected sample (fake logit -50) the saturating loss has gradient -sigmoid(-50) ~ -2e-22
  # while the non-saturating one has gradient -sigmoid(50) = -1: the reason for the latter.
  fake = jnp.array([-50.0, 0.0, 50.0])
  g_sat = jax.grad(lambda f: adversarial.minimax_g(fake_logits=f).sum())(fake)
  g_ns = jax.grad(lambda f: adversarial.non_saturating_g(fake_logits=f).sum())(fake)
  sigmoid = lambda x: 1.0 / (1.0 + np.exp(-np.float64(x)))
  np.testing.assert_allclose(g_sat, -sigmoid(np.array([-50.0, 0.0, 50.0])), rtol=1e-6)
  np.testing.assert_allclose(g_ns, -sigmoid(np.array([50.0, 0.0, -50.0])), rtol=1e-6)
  for name in NAMES:
    grads = jax.grad(lambda r, f, n=name: getattr(adversarial, f"{n}_d")(
        real_logits=r, fake_logits=f).sum(), argnums=(0, 1))(jnp.asarray(REAL), jnp.asarray(FAKE))
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_trailing_unit_axis_is_accepted():
  for name in NAMES:
    d_fn = getattr(adversarial, f"{name}_d")
    g_fn = getattr(adversarial, f"{name}_g")
    np.testing.assert_array_equal(
        d_fn(real_logits=REAL[:, None], fake_logits=FAKE[:, None]),
        d_fn(real_logits=REAL, fake_logits=FAKE))
    np.testing.assert_array_equal(g_fn(fake_logits=FAKE[:, None]), g_fn(fake_logits=FAKE))


def test_bad_shapes_are_refused():
  with pytest.raises(ValueError, match="same batch size"):
    adversarial.hinge_d(real_logits=REAL, fake_logits=FAKE[:3])
  with pytest.raises(ValueError, match=r"\[batch\] or \[batch, 1\]"):
    adversarial.hinge_g(fake_logits=np.zeros((4, 2), np.float32))
  with pytest.raises(TypeError):
    adversarial.minimax_d(REAL, FAKE)  # keyword-only


# ----------------------------------------------------------------------------------------------
# Penalties.
# ----------------------------------------------------------------------------------------------


def _data(shape, seed):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=shape).astype(np.float32), rng.normal(size=shape).astype(np.float32))


@pytest.mark.parametrize("shape", [(6, 3), (5, 4, 4, 2)])
def test_penalties_of_a_linear_critic(shape):
  # D(x) = <w, x> + b has gradient w at every x, so GP = (||w|| - 1)^2 and R1 = ||w||^2 exactly,
  # whatever the interpolates are.
  real, fake = _data(shape, seed=0)
  w = np.random.default_rng(1).normal(size=shape[1:]).astype(np.float32)
  axes = tuple(range(1, len(shape)))
  critic_fn = lambda x: jnp.sum(x * w, axis=axes) + 0.3
  norm = np.linalg.norm(np.float64(w))

  gp = adversarial.gradient_penalty(critic_fn=critic_fn, real=real, fake=fake,
                                    rng=jax.random.key(0))
  r1 = adversarial.r1_penalty(critic_fn=critic_fn, real=real)
  assert gp.shape == r1.shape == (shape[0],)
  np.testing.assert_allclose(gp, np.full(shape[0], (norm - 1.0)**2), rtol=1e-5)
  np.testing.assert_allclose(r1, np.full(shape[0], norm**2), rtol=1e-5)

  # A [batch, 1] critic output gives the same values.
  critic_2d = lambda x: critic_fn(x)[:, None]
  np.testing.assert_array_equal(
      adversarial.gradient_penalty(critic_fn=critic_2d, real=real, fake=fake,
                                   rng=jax.random.key(0)), gp)
  np.testing.assert_array_equal(adversarial.r1_penalty(critic_fn=critic_2d, real=real), r1)


@pytest.mark.parametrize("target", [1.0, 2.5])
def test_gradient_penalty_of_a_quadratic_critic_at_the_interpolates(target):
  # D(x) = x^T A x / 2 + <c, x> with A symmetric has gradient A x + c, so the penalty at the
  # interpolate x_hat_i is (||A x_hat_i + c|| - target)^2. The interpolates are rebuilt from the
  # same key as documented: eps = uniform(rng, (batch, 1)).
  batch, dim = 7, 3
  real, fake = _data((batch, dim), seed=2)
  rng_np = np.random.default_rng(3)
  m = rng_np.normal(size=(dim, dim))
  a = (m + m.T).astype(np.float32)
  c = rng_np.normal(size=dim).astype(np.float32)
  critic_fn = lambda x: 0.5 * jnp.einsum("bi,ij,bj->b", x, a, x) + x @ c
  rng = jax.random.key(42)

  gp = adversarial.gradient_penalty(critic_fn=critic_fn, real=real, fake=fake, rng=rng,
                                    target=target)

  eps = np.asarray(jax.random.uniform(rng, (batch, 1), dtype=jnp.float32), np.float64)
  x_hat = eps * real + (1.0 - eps) * fake
  grad = x_hat @ np.float64(a) + np.float64(c)  # A symmetric: (A x)^T = x^T A
  expected = (np.linalg.norm(grad, axis=-1) - target)**2
  assert np.all(eps > 0) and np.all(eps < 1) and len(np.unique(eps)) == batch
  np.testing.assert_allclose(gp, expected, rtol=1e-4, atol=1e-5)

  # R1 of the same critic at the data: ||A x + c||^2.
  r1 = adversarial.r1_penalty(critic_fn=critic_fn, real=real)
  expected_r1 = np.sum((np.float64(real) @ np.float64(a) + np.float64(c))**2, axis=-1)
  np.testing.assert_allclose(r1, expected_r1, rtol=1e-5)


def test_gradient_penalty_is_differentiable_in_the_critic_parameters():
  # For D(x) = <w, x>, GP = (||w|| - 1)^2, whose gradient is 2 (||w|| - 1) w / ||w||.
  real, fake = _data((4, 3), seed=4)
  w0 = jnp.array([0.3, -2.0, 1.2])

  def mean_gp(w):
    return adversarial.gradient_penalty(critic_fn=lambda x: x @ w, real=real, fake=fake,
                                        rng=jax.random.key(1)).mean()

  grad = jax.grad(mean_gp)(w0)
  norm = np.linalg.norm(np.float64(w0))
  np.testing.assert_allclose(grad, 2 * (norm - 1) * np.float64(w0) / norm, rtol=1e-5)
  # A flat critic (zero input gradient) has penalty target^2 and a finite (zero) gradient.
  np.testing.assert_allclose(mean_gp(jnp.zeros(3)), 1.0)
  np.testing.assert_array_equal(jax.grad(mean_gp)(jnp.zeros(3)), np.zeros(3))
  # The same numbers under jit, as the train step will run it.
  np.testing.assert_allclose(jax.jit(jax.grad(mean_gp))(w0), grad, rtol=1e-6)


def test_penalty_gradients_are_per_example():
  # D(x)_i = tanh(<w, x_i>) is per-example; its input gradient at x_i is (1 - tanh^2) w.
  real, _ = _data((5, 2), seed=5)
  w = np.array([0.7, -1.1], np.float32)
  r1 = adversarial.r1_penalty(critic_fn=lambda x: jnp.tanh(x @ w), real=real)
  s = 1.0 - np.tanh(np.float64(real) @ np.float64(w))**2
  np.testing.assert_allclose(r1, s**2 * np.sum(np.float64(w)**2), rtol=1e-5)


def test_penalty_inputs_are_checked():
  real, fake = _data((4, 3), seed=6)
  with pytest.raises(ValueError, match="same shape"):
    adversarial.gradient_penalty(critic_fn=lambda x: x.sum(-1), real=real, fake=fake[:2],
                                 rng=jax.random.key(0))
  with pytest.raises(ValueError, match="critic_fn must map"):
    adversarial.r1_penalty(critic_fn=lambda x: x, real=real)
