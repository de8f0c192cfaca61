"""Token-level losses. They return (sum, count) per example so that means over tokens stay exact
when examples (and devices) hold different numbers of tokens."""

import jax
import jax.numpy as jnp

from gen_jax.types import Array


def cross_entropy(*, logits: Array, targets: Array, weights: Array | None = None,
                  label_smoothing: float = 0.0) -> tuple[Array, Array]:
  """Summed (label-smoothed) token cross-entropy per example, in nats, and the token count.

  With smoothing eps, the target distribution is (1 - eps) on the target token plus eps spread
  uniformly over the vocabulary (Szegedy et al. 2016, "Rethinking the Inception Architecture"):

    loss_t = -(1 - eps) log p(y_t) - eps * mean_v log p(v).

  Args:
    logits: [batch, length, vocab] unnormalised scores.
    targets: [batch, length] int token ids.
    weights: [batch, length] float, 1 for tokens that count and 0 for padding; None counts all.
    label_smoothing: eps in [0, 1).

  Returns:
    (sums [batch], counts [batch]): the weighted sum of token losses and of weights.
  """
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  if label_smoothing:
    nll = (1.0 - label_smoothing) * nll - label_smoothing * jnp.mean(log_probs, axis=-1)
  if weights is None:
    weights = jnp.ones(targets.shape, jnp.float32)
  return jnp.sum(nll * weights, axis=-1), jnp.sum(weights, axis=-1)
