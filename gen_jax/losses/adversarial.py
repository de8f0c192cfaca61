"""Adversarial losses and discriminator penalties, per example.

Every function is pure and keyword-only and returns one value per example, shape [batch]; the
caller reduces (usually with a mean) and adds the penalties with its own weights.

Discriminator outputs (`real_logits`, `fake_logits`) are pre-sigmoid logits for the minimax and
non-saturating losses and unbounded scores (critic values) for the hinge and Wasserstein losses.
Each may have shape [batch] or [batch, 1] (a Dense(1) head); any other shape is refused.
Discriminator losses pair `real_logits[i]` with `fake_logits[i]`, so both need the same batch.

Losses, named `{name}_d` (minimised by the discriminator) and `{name}_g` (minimised by the
generator), for `name` in `minimax`, `non_saturating`, `hinge`, `wasserstein`. A method resolves
a config's names by this convention::

  d_loss_fn = getattr(adversarial, f"{config.d_loss}_d")  # config.d_loss = "non_saturating"
  g_loss_fn = getattr(adversarial, f"{config.g_loss}_g")  # config.g_loss = "non_saturating"

  minimax_d(*, real_logits, fake_logits)         softplus(-real) + softplus(fake)
  non_saturating_d                               the same function as `minimax_d`
  minimax_g(*, fake_logits)                      -softplus(fake)   (= log(1 - D(G(z))))
  non_saturating_g(*, fake_logits)               softplus(-fake)   (= -log D(G(z)))
  hinge_d(*, real_logits, fake_logits)           relu(1 - real) + relu(1 + fake)
  hinge_g(*, fake_logits)                        -fake
  wasserstein_d(*, real_logits, fake_logits)     fake - real
  wasserstein_g(*, fake_logits)                  -fake

Penalties, separate terms the method weights and adds to a discriminator loss:

  gradient_penalty(*, critic_fn, real, fake, rng, target=1.0)   WGAN-GP, Gulrajani et al. 2017
  r1_penalty(*, critic_fn, real)                                R1, Mescheder et al. 2018

`critic_fn` maps inputs [batch, ...] to outputs [batch] (or [batch, 1]) and must treat examples
independently: the penalties differentiate it one example at a time (see `_per_example_grads`).
"""

from typing import Callable

import jax
import jax.numpy as jnp

from gen_jax.types import Array, PRNGKey

CriticFn = Callable[[Array], Array]  # inputs [batch, ...] -> critic values [batch] or [batch, 1]


def _per_example_outputs(logits: Array, name: str) -> Array:
  """Returns `logits` as [batch], accepting [batch] or [batch, 1]."""
  logits = jnp.asarray(logits)
  if logits.ndim == 2 and logits.shape[1] == 1:
    return logits[:, 0]
  if logits.ndim != 1:
    raise ValueError(f"{name} must have shape [batch] or [batch, 1], got {logits.shape}; "
                     "give the discriminator a single output unit.")
  return logits


def _real_and_fake(real_logits: Array, fake_logits: Array) -> tuple[Array, Array]:
  real = _per_example_outputs(real_logits, "real_logits")
  fake = _per_example_outputs(fake_logits, "fake_logits")
  if real.shape != fake.shape:
    raise ValueError(f"real_logits {real.shape} and fake_logits {fake.shape} must have the same "
                     "batch size: discriminator losses pair real example i with fake example i.")
  return real, fake


# ----------------------------------------------------------------------------------------------
# Minimax and non-saturating (Goodfellow et al. 2014).
# ----------------------------------------------------------------------------------------------


def minimax_d(*, real_logits: Array, fake_logits: Array) -> Array:
  """Discriminator loss of the original GAN: binary cross-entropy, real = 1 and fake = 0.

  With D(x) = sigmoid(l(x)) the discriminator minimises

    -log D(x) - log(1 - D(G(z))) = softplus(-l(x)) + softplus(l(G(z))),

  written with softplus so that logits of any size give finite, exact values (log(sigmoid(l))
  underflows to -inf for l below about -88 in float32).

  The discriminator's objective is the same in the minimax and the non-saturating game (they
  differ only in the generator's loss), so `non_saturating_d` is this function.

  Reference: Goodfellow et al. 2014, "Generative Adversarial Nets", Eq. 1.

  Args:
    real_logits: [batch] or [batch, 1] logits l(x) on data.
    fake_logits: [batch] or [batch, 1] logits l(G(z)) on generated samples, same batch.

  Returns:
    [batch] per-example losses.
  """
  real, fake = _real_and_fake(real_logits, fake_logits)
  return jax.nn.softplus(-real) + jax.nn.softplus(fake)


# The non-saturating game changes only the generator's loss; the discriminator's is unchanged.
non_saturating_d = minimax_d


def minimax_g(*, fake_logits: Array) -> Array:
  """Saturating generator loss of the minimax game: log(1 - D(G(z))) = -softplus(l(G(z))).

  The generator minimises the negative of the discriminator's fake term. Its gradient vanishes
  when the discriminator confidently rejects the samples (l -> -inf), the reason Goodfellow et
  al. propose the non-saturating loss; it is kept for comparison.

  Reference: Goodfellow et al. 2014, "Generative Adversarial Nets", Eq. 1.

  Args:
    fake_logits: [batch] or [batch, 1] logits l(G(z)).

  Returns:
    [batch] per-example losses, all <= 0.
  """
  fake = _per_example_outputs(fake_logits, "fake_logits")
  return -jax.nn.softplus(fake)


def non_saturating_g(*, fake_logits: Array) -> Array:
  """Non-saturating generator loss: -log D(G(z)) = softplus(-l(G(z))).

  Reference: Goodfellow et al. 2014, "Generative Adversarial Nets", Section 3 (the heuristic
  "maximise log D(G(z))").

  Args:
    fake_logits: [batch] or [batch, 1] logits l(G(z)).

  Returns:
    [batch] per-example losses, all >= 0.
  """
  fake = _per_example_outputs(fake_logits, "fake_logits")
  return jax.nn.softplus(-fake)


# ----------------------------------------------------------------------------------------------
# Hinge (Lim & Ye 2017; Miyato et al. 2018).
# ----------------------------------------------------------------------------------------------


def hinge_d(*, real_logits: Array, fake_logits: Array) -> Array:
  """Hinge discriminator loss: relu(1 - D(x)) + relu(1 + D(G(z))).

  References: Lim & Ye 2017, "Geometric GAN"; Miyato et al. 2018, "Spectral Normalization for
  Generative Adversarial Networks", Eq. 16.

  Args:
    real_logits: [batch] or [batch, 1] scores D(x) on data.
    fake_logits: [batch] or [batch, 1] scores D(G(z)), same batch.

  Returns:
    [batch] per-example losses, all >= 0.
  """
  real, fake = _real_and_fake(real_logits, fake_logits)
  return jax.nn.relu(1.0 - real) + jax.nn.relu(1.0 + fake)


def hinge_g(*, fake_logits: Array) -> Array:
  """Hinge generator loss: -D(G(z)).

  Reference: Miyato et al. 2018, "Spectral Normalization for GANs", Eq. 17.

  Args:
    fake_logits: [batch] or [batch, 1] scores D(G(z)).

  Returns:
    [batch] per-example losses.
  """
  return -_per_example_outputs(fake_logits, "fake_logits")


# ----------------------------------------------------------------------------------------------
# Wasserstein (Arjovsky et al. 2017).
# ----------------------------------------------------------------------------------------------


def wasserstein_d(*, real_logits: Array, fake_logits: Array) -> Array:
  """Wasserstein critic loss: D(G(z)) - D(x).

  Its negative mean estimates the Kantorovich-Rubinstein dual of the Wasserstein-1 distance
  when D is 1-Lipschitz; enforce that with weight clipping or `gradient_penalty`.

  Reference: Arjovsky et al. 2017, "Wasserstein GAN", Eq. 3 and Algorithm 1.

  Args:
    real_logits: [batch] or [batch, 1] critic values D(x).
    fake_logits: [batch] or [batch, 1] critic values D(G(z)), same batch.

  Returns:
    [batch] per-example losses.
  """
  real, fake = _real_and_fake(real_logits, fake_logits)
  return fake - real


def wasserstein_g(*, fake_logits: Array) -> Array:
  """Wasserstein generator loss: -D(G(z)).

  Reference: Arjovsky et al. 2017, "Wasserstein GAN", Algorithm 1.

  Args:
    fake_logits: [batch] or [batch, 1] critic values D(G(z)).

  Returns:
    [batch] per-example losses.
  """
  return -_per_example_outputs(fake_logits, "fake_logits")


# ----------------------------------------------------------------------------------------------
# Penalties.
# ----------------------------------------------------------------------------------------------


def _per_example_grads(critic_fn: CriticFn, x: Array) -> Array:
  """Returns grad_x critic_fn at every example of `x`, shape [batch, ...] like `x`.

  The maths is written for one example, critic_fn(x_i[None]) as a scalar, and vmapped. The
  cheaper grad of sum_i critic_fn(x)_i gives the same answer only when the critic's outputs do
  not mix examples (no batch norm in training mode, no minibatch discrimination); the vmapped
  form needs that too, but makes it the contract (each example is evaluated alone) instead of a
  silent error. A batch-normalised critic is not a function of single inputs and has no
  well-defined input gradient here (Gulrajani et al. 2017, Section 4, use layer norm instead).
  """

  def one_example(x_i: Array) -> Array:
    out = critic_fn(x_i[None])
    if out.size != 1:
      raise ValueError(f"critic_fn must map [batch, ...] to [batch] or [batch, 1]; on one example "
                       f"it returned shape {out.shape}.")
    return out.reshape(())

  return jax.vmap(jax.grad(one_example))(x)


def _safe_norm(g: Array) -> Array:
  """Euclidean norm over all axes but the first, [batch, ...] -> [batch], with finite gradients.

  d||g||/dg = g / ||g|| is 0/0 at g = 0 (a flat critic), and jnp.linalg.norm would put NaN into
  the parameters. The double `where` evaluates sqrt only at a positive argument (1 where the
  squared norm is 0) and then selects 0 there, so the value is exact and the gradient at g = 0
  is 0, a subgradient of the norm.
  """
  sq = jnp.sum(jnp.square(g).reshape(g.shape[0], -1), axis=-1)
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def gradient_penalty(*, critic_fn: CriticFn, real: Array, fake: Array, rng: PRNGKey,
                     target: float = 1.0) -> Array:
  """WGAN-GP gradient penalty at random interpolates between real and fake examples.

    eps_i ~ U[0, 1],  x_hat_i = eps_i * real_i + (1 - eps_i) * fake_i,
    penalty_i = (||grad_x D(x_hat_i)||_2 - target)^2,

  the norm taken over all of an example's input dimensions. The interpolation weights are drawn
  as `jax.random.uniform(rng, (batch,) + (1,) * (real.ndim - 1), real.dtype)`, one per example.
  The penalty is differentiable in the critic's parameters (closed over by `critic_fn`): the
  caller takes the gradient of `loss + lambda * mean(penalty)` (Gulrajani et al. use
  lambda = 10). `target` other than 1 gives the (||grad|| - target)^2 variant that Karras et al.
  2018 (Progressive GAN) use on CIFAR-10, divided there by target^2; that scale is the caller's.

  Pass `real` and `fake` without a stop-gradient only if the generator should feel the
  penalty; the usual critic update treats both as constants.

  Reference: Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", Algorithm 1.

  Args:
    critic_fn: maps [batch, ...] to [batch] (or [batch, 1]); must treat examples independently
      (see `_per_example_grads`).
    real: [batch, ...] data examples.
    fake: [batch, ...] generated examples, same shape as `real`.
    rng: key for the interpolation weights.
    target: the gradient norm the penalty pulls towards.

  Returns:
    [batch] per-example penalties.
  """
  real = jnp.asarray(real)
  fake = jnp.asarray(fake)
  if real.shape != fake.shape:
    raise ValueError(f"real {real.shape} and fake {fake.shape} must have the same shape to be "
                     "interpolated pairwise.")
  eps = jax.random.uniform(rng, (real.shape[0],) + (1,) * (real.ndim - 1), dtype=real.dtype)
  x_hat = eps * real + (1.0 - eps) * fake
  grads = _per_example_grads(critic_fn, x_hat)
  return jnp.square(_safe_norm(grads) - target)


def r1_penalty(*, critic_fn: CriticFn, real: Array) -> Array:
  """R1 regulariser: the squared gradient norm of the discriminator on data.

    penalty_i = ||grad_x D(x_i)||_2^2,   x_i a data example,

  with D the discriminator's logit (pre-sigmoid) output. Mescheder et al. write the regulariser
  as (gamma / 2) * E[||grad_x D(x)||^2]; this function returns the expectation's per-example
  term without the gamma / 2 factor, so the caller adds `0.5 * gamma * mean(penalty)` to the
  discriminator's loss (StyleGAN2, for instance, uses gamma = 10 on FFHQ).

  Reference: Mescheder et al. 2018, "Which Training Methods for GANs do actually Converge?",
  Eq. 9.

  Args:
    critic_fn: maps [batch, ...] to [batch] (or [batch, 1]); must treat examples independently
      (see `_per_example_grads`).
    real: [batch, ...] data examples.

  Returns:
    [batch] per-example penalties.
  """
  grads = _per_example_grads(critic_fn, jnp.asarray(real))
  return jnp.sum(jnp.square(grads).reshape(grads.shape[0], -1), axis=-1)
