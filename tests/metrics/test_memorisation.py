"""Tests for gen_jax.metrics.memorisation against brute force and data whose answer is known."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gen_jax.metrics.memorisation import (MemorisationReport, memorisation_report,
                                          nearest_neighbours)


def _brute_force(queries, references):
  """Every distance in float64 numpy: (min over references, argmin, ties to the lower index)."""
  queries = np.asarray(queries, np.float64).reshape(len(queries), -1)
  references = np.asarray(references, np.float64).reshape(len(references), -1)
  distances = np.sqrt(np.sum((queries[:, None, :] - references[None, :, :])**2, axis=-1))
  return distances.min(axis=1), distances.argmin(axis=1)


def test_chunked_search_equals_brute_force_on_ragged_shapes():
  rng = np.random.default_rng(0)
  # 53 queries and 37 references in blocks of 8: both end in a partial block.
  queries, references = rng.normal(size=(53, 2, 3)), rng.normal(size=(37, 2, 3))
  # An exact duplicate in another block, at the same position in it: the tie goes to row 3.
  references[11] = references[3]
  queries[0] = references[3] + 0.01
  expected_distances, expected_indices = _brute_force(queries, references)
  assert expected_indices[0] == 3
  for chunk_size in (8, 1000):
    distances, indices = nearest_neighbours(queries, jnp.asarray(references),
                                            chunk_size=chunk_size)
    assert distances.dtype == np.float32 and indices.dtype == np.int64
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-5)


def test_report_summaries_follow_their_definitions():
  rng = np.random.default_rng(1)
  train, test, samples = (rng.normal(size=(n, 6)) for n in (41, 29, 23))
  # More pairs asked for than there are samples: all of them, sorted.
  report = memorisation_report(samples=samples, train=train, test=test, q=0.3, num_pairs=30,
                               chunk_size=7)
  assert isinstance(report, MemorisationReport)
  sample_distances, sample_indices = _brute_force(samples, train)
  test_distances, test_indices = _brute_force(test, train)
  np.testing.assert_array_equal(report.sample_indices, sample_indices)
  np.testing.assert_array_equal(report.test_indices, test_indices)
  np.testing.assert_allclose(report.sample_distances, sample_distances, rtol=1e-5)
  np.testing.assert_allclose(report.test_distances, test_distances, rtol=1e-5)
  np.testing.assert_allclose(report.threshold, np.quantile(test_distances, 0.3), rtol=1e-5)
  assert report.copy_fraction == np.mean(sample_distances < report.threshold)
  np.testing.assert_allclose(report.median_ratio,
                             np.median(sample_distances) / np.median(test_distances), rtol=1e-5)
  np.testing.assert_array_equal(report.pair_samples, np.argsort(sample_distances))
  assert report.scalars() == {"copy_fraction": report.copy_fraction, "threshold": report.threshold,
                              "median_ratio": report.median_ratio,
                              "flagged": float(report.flagged)}


def test_noisy_copies_of_training_images_are_flagged():
  rng = np.random.default_rng(2)
  train = rng.uniform(size=(400, 8, 8, 1))  # images in [0, 1], 64 pixels
  test = rng.uniform(size=(300, 8, 8, 1))
  source = rng.integers(400, size=250)
  noise = 1e-3 * rng.normal(size=(250, 8, 8, 1))
  report = memorisation_report(samples=jnp.asarray(train[source] + noise), train=train, test=test,
                               chunk_size=96)
  # A copy's distance is ||noise|| (about 8e-3, 64 pixels of std 1e-3); a fresh image's nearest
  # training image is about 2.5 away (d(x) of uniform images in 64 dimensions, by brute force).
  noise_norms = np.linalg.norm(noise.reshape(250, -1), axis=-1)
  test_distances, _ = _brute_force(test, train)
  assert noise_norms.max() < 0.02 < 1.0 < test_distances.min()
  np.testing.assert_array_equal(report.sample_indices, source)
  # 1e-4 relative: the float32 rounding of direct differences. ||a||^2 - 2ab + ||b||^2 alone,
  # in float32, is off by up to 1% on these pairs (6% without centring), by cancellation.
  np.testing.assert_allclose(report.sample_distances, noise_norms, rtol=1e-4)
  assert report.copy_fraction == 1.0 and report.flagged
  np.testing.assert_allclose(report.median_ratio,
                             np.median(noise_norms) / np.median(test_distances), rtol=1e-4)


def test_fresh_draws_are_not_flagged_and_copy_fraction_is_near_q():
  rng = np.random.default_rng(3)
  m = n = 2000
  q = 0.01
  train, test, samples = (rng.normal(size=(k, 8)) for k in (2000, n, m))
  report = memorisation_report(samples=samples, train=train, test=test, q=q)
  # Samples and test examples are i.i.d. and independent of the training set, so their m + n
  # distances to it are exchangeable: the number of samples below the k-th smallest test distance
  # is beta-binomial(m, k, n + 1 - k), not binomial(m, q), since the threshold is random and
  # shared. The linear q-quantile lies between the k-th and (k+1)-th smallest test distances,
  # k = floor(q (n - 1)) + 1 = 20, so the count lies between those two laws' 1e-6 tails
  # (0.0005 and 0.031 as fractions; binomial(2000, 0.01) alone would give 0.0015 to 0.022).
  k = math.floor(q * (n - 1)) + 1
  low = stats.betabinom(m, k, n + 1 - k).ppf(1e-6) / m
  high = stats.betabinom(m, k + 1, n - k).ppf(1 - 1e-6) / m
  assert low <= report.copy_fraction <= high
  assert not report.flagged
  assert report.copy_fraction <= report.flag_factor * q


def test_a_test_set_that_overlaps_training_makes_the_threshold_zero_as_documented():
  # Half the test examples are training examples: the 1% quantile of their distances is 0, and
  # no distance is strictly below 0, so even exact copies are not counted (the docstring's
  # warning); a strict "<" is the definition.
  rng = np.random.default_rng(5)
  train = rng.normal(size=(200, 4))
  test = np.concatenate([train[:100], rng.normal(size=(100, 4))])
  report = memorisation_report(samples=train[:50], train=train, test=test)
  assert report.threshold == 0.0
  assert report.copy_fraction == 0.0 and not report.flagged
  np.testing.assert_array_equal(report.sample_distances, 0.0)


def test_nearest_pairs_are_the_closest_samples_in_order():
  rng = np.random.default_rng(4)
  train, samples = rng.normal(size=(60, 5)), rng.normal(size=(40, 5))
  # Three samples made copies of training rows, at three known, well separated distances.
  for sample, row, scale in ((17, 9, 1e-3), (5, 50, 1e-2), (31, 0, 1e-1)):
    samples[sample] = train[row] + scale * rng.normal(size=5)
  report = memorisation_report(samples=samples, train=train, test=rng.normal(size=(30, 5)),
                               num_pairs=6, chunk_size=16)
  # The oracle's premise: every other sample is farther from the training set than these three.
  distances, _ = _brute_force(samples, train)
  assert distances[17] < distances[5] < distances[31] < np.delete(distances, [17, 5, 31]).min()
  np.testing.assert_array_equal(report.pair_samples[:3], [17, 5, 31])
  np.testing.assert_array_equal(report.pair_train[:3], [9, 50, 0])
  np.testing.assert_array_equal(report.pair_train, report.sample_indices[report.pair_samples])
  assert np.all(np.diff(report.pair_distances) >= 0)
  np.testing.assert_array_equal(report.pair_distances, np.sort(report.sample_distances)[:6])


GOOD = np.zeros((4, 3))


@pytest.mark.parametrize("kwargs,match", [
    ({"samples": np.zeros((4, 2))}, "same per-row shape"),
    ({"test": np.zeros((4, 3, 1))}, "same per-row shape"),
    ({"samples": np.zeros((0, 3))}, "samples is empty"),
    ({"train": np.zeros((0, 3))}, "train is empty"),
    ({"samples": np.zeros((4, 0)), "train": np.zeros((4, 0)), "test": np.zeros((4, 0))},
     "samples is empty"),
    ({"samples": np.zeros(4), "train": np.zeros(4), "test": np.zeros(4)}, "one row per example"),
    ({"q": 0.0}, "q must be"),
    ({"q": 1.0}, "q must be"),
    ({"q": float("nan")}, "q must be"),
    ({"test": np.array([[0.0, np.nan, 0.0]] * 4)}, "test has 4 non-finite"),
    ({"samples": np.full((4, 3), np.inf)}, "samples has 12 non-finite"),
    ({"train": np.full((4, 3), 1e39)}, "train has 12 non-finite"),  # inf in float32
    ({"num_pairs": -1}, "num_pairs"),
    ({"flag_factor": 1.0}, "flag_factor"),
    ({"chunk_size": 0}, "chunk_size"),
])
def test_bad_inputs_are_refused(kwargs, match):
  with pytest.raises(ValueError, match=match):
    memorisation_report(**{"samples": GOOD, "train": GOOD, "test": GOOD, **kwargs})


def test_nearest_neighbours_refuses_mismatched_rows():
  with pytest.raises(ValueError, match="same per-row shape"):
    nearest_neighbours(np.zeros((3, 4)), np.zeros((3, 5)))
  with pytest.raises(ValueError, match="references is empty"):
    nearest_neighbours(np.zeros((3, 4)), np.zeros((0, 4)))
