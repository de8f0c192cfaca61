"""Token cross-entropy against a NumPy reference."""

import numpy as np
import pytest

from gen_jax.losses import sequence


def _reference(logits, targets, weights, eps):
  log_probs = logits - np.log(np.sum(np.exp(logits), axis=-1, keepdims=True))
  nll = -np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  nll = (1 - eps) * nll - eps * log_probs.mean(-1)
  return (nll * weights).sum(-1), weights.sum(-1)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_matches_numpy(eps):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5, 7)).astype(np.float32) * 3
  targets = rng.integers(0, 7, size=(3, 5))
  weights = (rng.random((3, 5)) > 0.3).astype(np.float32)
  sums, counts = sequence.cross_entropy(logits=logits, targets=targets, weights=weights,
                                        label_smoothing=eps)
  ref_sums, ref_counts = _reference(logits.astype(np.float64), targets, weights, eps)
  np.testing.assert_allclose(sums, ref_sums, rtol=1e-5)
  np.testing.assert_array_equal(counts, ref_counts)


def test_uniform_logits_cost_log_vocab_per_token():
  sums, counts = sequence.cross_entropy(logits=np.zeros((2, 4, 256), np.float32),
                                        targets=np.ones((2, 4), np.int32))
  np.testing.assert_allclose(sums / counts, np.log(256), rtol=1e-6)
