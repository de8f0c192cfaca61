"""Frechet distance against closed forms."""

import numpy as np
import pytest

from gen_jax.metrics.frechet import frechet_distance


def test_one_dimensional_case_is_mean_and_std_difference():
  rng = np.random.default_rng(0)
  a, b = rng.normal(1.0, 2.0, (500, 1)), rng.normal(-0.5, 0.5, (400, 1))
  expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
  np.testing.assert_allclose(frechet_distance(a, b), expected, rtol=1e-9)


def test_identical_sets_have_zero_distance_and_shift_adds_its_square():
  rng = np.random.default_rng(1)
  a = rng.normal(size=(300, 5))
  np.testing.assert_allclose(frechet_distance(a, a), 0.0, atol=1e-7)
  shift = np.array([1.0, -2.0, 0.0, 0.5, 3.0])
  np.testing.assert_allclose(frechet_distance(a, a + shift), np.sum(shift ** 2), rtol=1e-6)


def test_mismatched_feature_widths_are_refused():
  with pytest.raises(ValueError, match="same f"):
    frechet_distance(np.zeros((4, 3)), np.zeros((4, 2)))
