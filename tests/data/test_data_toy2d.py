"""The exact toy2d distributions and their fresh-sampling pipeline (no files involved)."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from gen_jax.data import toy2d

N = 200_000


def test_ring8_has_8_distinct_modes_on_the_unit_circle():
  # Oracle written independently of the module: angle 2*pi*i/8, radius 1.
  expected = np.array([[np.cos(np.pi * i / 4), np.sin(np.pi * i / 4)] for i in range(8)])
  mixture = toy2d.distribution("ring8")
  np.testing.assert_allclose(mixture.means, expected, atol=1e-12)
  distances = np.linalg.norm(mixture.means[:, None] - mixture.means[None], axis=-1)
  np.testing.assert_allclose(distances[~np.eye(8, dtype=bool)].min(), 2 * np.sin(np.pi / 8))
  assert mixture.std == 0.01
  np.testing.assert_array_equal(mixture.weights, np.full(8, 1 / 8))


def test_grid25_means_are_the_grid():
  mixture = toy2d.distribution("grid25")
  expected = {(x, y) for x, y in itertools.product([-4, -2, 0, 2, 4], repeat=2)}
  assert {tuple(m) for m in mixture.means} == expected
  assert len(mixture.means) == 25
  assert mixture.std == 0.05
  np.testing.assert_array_equal(mixture.means[5 * 1 + 3], [-2, 2])


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_mixture_samples_match_declared_parameters(name):
  mixture = toy2d.distribution(name)
  points, mode = toy2d.sample(name, np.random.default_rng(0), N)
  assert points.shape == (N, 2) and points.dtype == np.float32
  assert mode.shape == (N,) and mode.dtype == np.int32
  counts = np.bincount(mode, minlength=mixture.num_modes)
  assert stats.chisquare(counts, N * mixture.weights).pvalue > 1e-4
  for k in range(mixture.num_modes):
    p = points[mode == k].astype(np.float64)
    standard_error = mixture.std / np.sqrt(len(p))
    np.testing.assert_array_less(np.abs(p.mean(0) - mixture.means[k]), 5 * standard_error)
    # The sample std of n Gaussians has relative standard error about 1/sqrt(2n).
    np.testing.assert_allclose(p.std(0), mixture.std, rtol=5 / np.sqrt(2 * len(p)))


def test_two_moons_geometry():
  exact = toy2d.TwoMoons(noise=0.0)
  points, mode = exact.sample(np.random.default_rng(1), 10_000)
  upper, lower = points[mode == 0], points[mode == 1]
  np.testing.assert_allclose(np.linalg.norm(upper - exact.UPPER_CENTRE, axis=1), 1, atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(lower - exact.LOWER_CENTRE, axis=1), 1, atol=1e-6)
  assert upper[:, 1].min() >= -1e-6 and lower[:, 1].max() <= 0.5 + 1e-6
  assert abs(len(upper) / 10_000 - 0.5) < 0.02
  noisy = toy2d.distribution("two_moons")
  points, mode = noisy.sample(np.random.default_rng(1), N)
  radial = np.linalg.norm(points[mode == 0].astype(np.float64), axis=1) - 1
  # Radial residual of isotropic noise: mean ~ noise^2 / 2 (curvature), std ~ noise.
  assert abs(radial.std() - noisy.noise) < 0.005


def test_swiss_roll_geometry():
  exact = toy2d.SwissRoll(noise=0.0)
  points, mode = exact.sample(np.random.default_rng(2), 10_000)
  t = np.linalg.norm(points.astype(np.float64), axis=1) / exact.scale
  assert t.min() >= exact.t_min - 1e-4 and t.max() <= exact.t_max + 1e-4
  on_roll = exact.scale * np.stack([t * np.cos(t), t * np.sin(t)], axis=1)
  np.testing.assert_allclose(points, on_roll, atol=1e-5)
  np.testing.assert_array_equal(mode, 0)


def test_sample_is_a_function_of_the_generator():
  a = toy2d.sample("two_moons", np.random.default_rng(5), 100)
  b = toy2d.sample("two_moons", np.random.default_rng(5), 100)
  c = toy2d.sample("two_moons", np.random.default_rng(6), 100)
  np.testing.assert_array_equal(a[0], b[0])
  assert not np.array_equal(a[0], c[0])


def test_unknown_distribution_lists_the_names():
  with pytest.raises(ValueError, match="ring8, grid25, swiss_roll, two_moons"):
    toy2d.sample("ring9", np.random.default_rng(0), 1)


def test_toy2d_imports_without_tfds_or_grain():
  code = ("import sys, gen_jax.data.toy2d, gen_jax.data; "
          "print(sorted(m for m in ('tensorflow_datasets', 'grain', 'jax') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]"


def test_fresh_batches_are_exact_deterministic_and_resumable():
  from gen_jax import data  # pylint: disable=g-import-not-at-top
  it = data.load("toy2d/ring8", "train", 64, seed=3, fresh=True, process_count=1,
                 process_index=0)
  assert it.num_batches is None
  first = [next(it) for _ in range(3)]
  state = json.loads(json.dumps(it.get_state()))
  following = [next(it) for _ in range(2)]
  assert state["step"] == 3
  # The batch of step k is the documented draw: seed, stream, split, process, step.
  expected = toy2d.sample("ring8", np.random.default_rng([3, 3, 0, 0, 1]), 64)
  np.testing.assert_array_equal(first[1]["point"], expected[0])
  np.testing.assert_array_equal(first[1]["mode"], expected[1])
  assert not np.array_equal(first[0]["point"], first[1]["point"])

  resumed = data.load("toy2d/ring8", "train", 64, seed=3, fresh=True, process_count=1,
                      process_index=0)
  resumed.set_state(state)
  stacked = resumed.next_batches(2)  # the same two batches, stacked
  for key in ("point", "mode"):
    np.testing.assert_array_equal(stacked[key], np.stack([w[key] for w in following]))
  resumed.set_state(state)
  for want in following:
    got = next(resumed)
    assert set(got) == {"point", "mode"}
    np.testing.assert_array_equal(got["point"], want["point"])
    np.testing.assert_array_equal(got["mode"], want["mode"])


def test_fresh_streams_differ_by_split_and_process():
  from gen_jax import data  # pylint: disable=g-import-not-at-top

  def batch(split, p):
    return next(data.load("toy2d/grid25", split, 64, seed=0, fresh=True, process_index=p,
                          process_count=2))["point"]

  assert batch("train", 0).shape == (32, 2)
  assert not np.array_equal(batch("train", 0), batch("train", 1))
  assert not np.array_equal(batch("train", 0), batch("test", 0))
  with pytest.raises(ValueError, match="num_epochs=None"):
    data.load("toy2d/ring8", "train", 8, 0, fresh=True, num_epochs=1, process_count=1)
  with pytest.raises(ValueError, match="toy2d"):
    data.load("digits", "train", 8, 0, fresh=True, process_count=1)
