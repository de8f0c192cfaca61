"""Frechet distance between two sets of features (FID when the features are Inception's).

gen_jax has no downloadable Inception weights, so its benchmarks use the penultimate features
of a small classifier they train themselves (`gen_jax.methods.classifier`), and report the
distance between real training and real test images as the floor.
"""

import numpy as np
from scipy import linalg


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
  """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of features [n, f] (Heusel et al.
  2017, "GANs Trained by a Two Time-Scale Update Rule"), with unbiased sample covariances."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
    raise ValueError(f"features must be [n, f] with the same f; got {a.shape} and {b.shape}.")
  mu_a, mu_b = a.mean(0), b.mean(0)
  cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
  root = np.real(linalg.sqrtm(cov_a @ cov_b))
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * root))
