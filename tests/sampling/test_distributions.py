"""Goodness-of-fit tests of the inverse-CDF samplers, each shown to reject a deliberately wrong one.

The oracles are the exact distributions: scipy.stats' for the continuous samplers
(Kolmogorov-Smirnov), the normalised weights for the discrete ones (chi-square), and NumPy float64
searches and quantiles for the deterministic maps.

Thresholds. Every sample comes from a fixed key, so each test is deterministic. A correct sampler
must give p > 1e-3, which a random key misses one time in a thousand (the keys here are plain
small integers, not searched for). Each test also runs the same statistic on a mutant, a sampler
with one plausible bug, and requires p < 1e-6: at these sample sizes the mutants give p below
1e-100, so this threshold holds with a wide margin, and a bug of that size cannot pass. A discrete
sample in a bin of probability 0 is impossible under the oracle: `chi_square_pvalue` gives it
p = 0.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gen_jax.sampling import distributions as d

PASS, REJECT = 1e-3, 1e-6  # see the module docstring
N = 40000  # samples per test; one size throughout, so that eager JAX compiles each op once


def chi_square_pvalue(samples, probs):
  """Pearson's chi-square p-value of integer samples against the weights `probs` [k]."""
  probs = np.asarray(probs, np.float64)
  counts = np.bincount(np.asarray(samples).ravel(), minlength=probs.size)
  if counts[probs == 0].sum() > 0:
    return 0.0
  expected = counts.sum() * probs / probs.sum()
  positive = probs > 0
  assert expected[positive].min() >= 5  # the chi-square approximation holds
  return stats.chisquare(counts[positive], expected[positive]).pvalue


def ks_pvalue(samples, cdf):
  return stats.kstest(np.asarray(samples, np.float64).ravel(), cdf).pvalue


def test_open_uniform_is_the_symmetric_midpoint_grid():
  u = np.asarray(d.open_uniform(jax.random.key(0), (N,)))
  assert u.dtype == np.float32
  j = u.astype(np.float64) * 2**23 - 0.5
  np.testing.assert_array_equal(j, np.round(j))  # on the grid (j + 1/2) 2^-23
  assert 2**-24 <= u.min() and u.max() <= 1 - 2**-24
  assert ks_pvalue(u, stats.uniform.cdf) > PASS


def test_discrete_inverse_cdf_matches_a_float64_search_and_never_returns_a_zero_bin():
  probs = np.array([0.0, 0.2, 0.0, 0.5, 0.3, 0.0, 0.0], np.float32)
  # Literal cases: a leading zero bin is skipped, u on an edge goes to the next positive bin
  # (skipping the zero bin 2), and u = 1 gives the last positive bin, not the trailing zeros.
  u = jnp.array([0.0, 0.1, 0.2, 0.69, 0.7, 0.99, 1.0], jnp.float32)
  np.testing.assert_array_equal(d.discrete_inverse_cdf(u, probs), [1, 1, 3, 3, 4, 4, 4])
  # The largest uniform below 1 stays in the last positive bin too.
  assert d.discrete_inverse_cdf(jnp.float32(1 - 2**-24), jnp.array([1.0, 2.0, 0.0])) == 1
  # Oracle: the first bin whose float64 normalised cumsum exceeds u, for u away from the edges,
  # batched: u [n, 2] against two distributions [2, k].
  table = np.stack([probs, probs[::-1]])
  cdfs = np.cumsum(table.astype(np.float64), axis=1) / table.sum(1, keepdims=True)
  u = np.random.default_rng(0).random(2000).astype(np.float32)
  u = u[np.min(np.abs(u[:, None] - cdfs.ravel()[None]), axis=1) > 1e-5]
  np.testing.assert_array_equal(d.discrete_inverse_cdf(u, probs),
                                np.searchsorted(cdfs[0], u, side="right"))
  both = d.discrete_inverse_cdf(np.stack([u, u], axis=1), table)
  for row in range(2):
    np.testing.assert_array_equal(both[:, row], np.searchsorted(cdfs[row], u, side="right"))


def off_by_one_sampler(rng, probs, num):
  """Mutant: searches the left bin edges (the exclusive cumsum), so bin i comes out as i + 1."""
  cdf = jnp.cumsum(probs)
  u = d.open_uniform(rng, (num,)) * cdf[-1]
  return jnp.minimum(jnp.searchsorted(cdf - probs, u, side="right"), probs.size - 1)


def test_sample_discrete_chi_square_and_rejects_an_off_by_one_index():
  probs = np.array([[0.1, 0.0, 0.25, 0.05, 0.6, 0.0], [3.0, 2.0, 1.5, 1.5, 1.0, 1.0]], np.float32)
  num = N
  samples = np.asarray(d.sample_discrete(jax.random.key(1), probs, (num,)))
  assert samples.shape == (num, 2) and samples.dtype == np.int32
  for row in range(2):
    assert chi_square_pvalue(samples[:, row], probs[row]) > PASS  # zero bins never drawn
    mutant = off_by_one_sampler(jax.random.key(1), jnp.asarray(probs[row]), num)
    assert chi_square_pvalue(mutant, probs[row]) < REJECT
  # The rows are drawn with independent uniforms: the joint counts factorise.
  joint = samples[:, 0] * 6 + samples[:, 1]
  assert chi_square_pvalue(joint, np.outer(probs[0], probs[1]).ravel()) > PASS


def test_sample_logits_chi_square_with_minus_infinity_and_a_large_shift():
  probs = np.array([0.1, 0.0, 0.25, 0.05, 0.6, 0.0])
  with np.errstate(divide="ignore"):
    logits = np.log(probs).astype(np.float32) + 100.0  # exp(100) would overflow float32
  samples = d.sample_logits(jax.random.key(2), logits, (N,))
  assert chi_square_pvalue(samples, probs) > PASS
  # Mutant: the logits taken as weights. Every weight is near 100, so it is almost uniform.
  mutant = d.sample_discrete(jax.random.key(2), np.where(np.isfinite(logits), logits, 0), (N,))
  assert chi_square_pvalue(mutant, probs) < REJECT


def one_tailed_cauchy(u, loc, scale):
  """Mutant: the sign of u - 1/2 dropped, so both tails land on the right of loc."""
  t = jnp.minimum(u, 1 - u)
  return loc + scale * jnp.cos(jnp.pi * t) / jnp.sin(jnp.pi * t)


INVERSE_CDFS = {
    # name: (inverse CDF, scipy distribution, mutant inverse CDF)
    "exponential": (functools.partial(d.exponential_inverse_cdf, rate=2.0),
                    stats.expon(scale=0.5),
                    lambda u: -jnp.log1p(u) / 2.0),  # log(1 + u) typed for log(1 - u)
    "logistic": (functools.partial(d.logistic_inverse_cdf, loc=1.0, scale=0.5),
                 stats.logistic(loc=1.0, scale=0.5),
                 lambda u: 1.0 + 0.5 * jnp.log(u)),  # the log(1 - u) term dropped
    "cauchy": (functools.partial(d.cauchy_inverse_cdf, loc=-1.0, scale=2.0),
               stats.cauchy(loc=-1.0, scale=2.0),
               functools.partial(one_tailed_cauchy, loc=-1.0, scale=2.0)),
    "normal": (jax.scipy.special.ndtri, stats.norm(),
               lambda u: jax.scipy.special.erfinv(2 * u - 1)),  # sqrt(2) erfinv(2u - 1), no sqrt 2
}


@pytest.mark.parametrize("name", sorted(INVERSE_CDFS))
def test_sample_inverse_cdf_kolmogorov_smirnov_and_rejects_a_wrong_tail(name):
  inverse_cdf_fn, dist, mutant_fn = INVERSE_CDFS[name]
  rng = jax.random.key(3)
  assert ks_pvalue(d.sample_inverse_cdf(rng, inverse_cdf_fn, (N,)), dist.cdf) > PASS
  assert ks_pvalue(d.sample_inverse_cdf(rng, mutant_fn, (N,)), dist.cdf) < REJECT


def test_inverse_cdfs_match_scipy_quantiles_in_both_tails():
  # The extreme uniforms of open_uniform, the quartiles, and the median.
  u = np.array([2**-24, 1e-6, 0.25, 0.5, 0.75, 1 - 1e-6, 1 - 2**-24], np.float32)
  for name in ("exponential", "logistic", "cauchy"):
    inverse_cdf_fn, dist, _ = INVERSE_CDFS[name]
    np.testing.assert_allclose(inverse_cdf_fn(u), dist.ppf(u.astype(np.float64)), rtol=2e-6,
                               atol=1e-6, err_msg=name)


def test_invert_cdf_meets_its_documented_accuracy():
  # A linear CDF on [-3, 5]: the exact quantile is -3 + 8 u; the bound is 8 * 2^-(n + 1), plus
  # the float32 rounding of F (a few 1e-7 here).
  u = np.concatenate([[0.0, 1.0], np.random.default_rng(1).random(2000)]).astype(np.float32)
  exact = -3.0 + 8.0 * u.astype(np.float64)
  linear_cdf = lambda x: (x + 3.0) / 8.0
  for num_iters in (5, 12):
    x = d.invert_cdf(linear_cdf, u, lower=-3.0, upper=5.0, num_iters=num_iters)
    error = np.abs(np.asarray(x, np.float64) - exact)
    bound = 8.0 * 2.0**-(num_iters + 1)
    assert error.max() <= bound + 2e-6
    assert error.max() > 0.9 * bound  # the bound is attained: the steps are really that coarse
  # With the default 40 steps on the normal CDF, F(x) equals u to float32 precision.
  u = np.linspace(1e-3, 1 - 1e-3, 999).astype(np.float32)
  x = d.invert_cdf(jax.scipy.stats.norm.cdf, u, lower=-10.0, upper=10.0)
  assert np.abs(stats.norm.cdf(np.asarray(x, np.float64)) - u).max() < 3e-7
  np.testing.assert_allclose(x, stats.norm.ppf(u), atol=2e-5)


def gumbel_cdf(x):
  return jnp.exp(-jnp.exp(-x))


def test_sample_cdf_kolmogorov_smirnov_and_rejects_too_few_bisection_steps():
  rng = jax.random.key(4)
  # F(-5) = exp(-e^5) ~ 3e-65 and 1 - F(40) ~ 4e-18: the interval holds the whole float mass.
  samples = d.sample_cdf(rng, gumbel_cdf, (N,), lower=-5.0, upper=40.0)
  assert ks_pvalue(samples, stats.gumbel_r.cdf) > PASS
  # Mutant: 4 steps leave a bracket of 45 / 16 = 2.8, so the samples sit on a coarse grid.
  coarse = d.sample_cdf(rng, gumbel_cdf, (N,), lower=-5.0, upper=40.0, num_iters=4)
  assert ks_pvalue(coarse, stats.gumbel_r.cdf) < REJECT


def test_sample_cdf_on_a_short_interval_is_the_truncated_distribution():
  rng = jax.random.key(5)
  truncated = stats.truncnorm(-1.0, 2.0)
  samples = d.sample_cdf(rng, jax.scipy.stats.norm.cdf, (N,), lower=-1.0, upper=2.0)
  assert ks_pvalue(samples, truncated.cdf) > PASS
  # Mutant: a bisection for F(x) = u instead of the rescaled target piles the 18% of the mass
  # outside [-1, 2] onto its ends, which is what clipping normal quantiles gives.
  u = d.open_uniform(rng, (N,))
  assert ks_pvalue(jnp.clip(jax.scipy.special.ndtri(u), -1.0, 2.0), truncated.cdf) < REJECT


def test_normal_to_uniform_matches_scipy_and_saturates_symmetrically():
  z = np.array([-40.0, -6.0, -5.0, -1.5, 0.0, 1.5, 5.0, 6.0, 40.0], np.float32)
  expected = np.clip(stats.norm.cdf(z.astype(np.float64)), 2**-24, 1 - 2**-24)
  np.testing.assert_allclose(d.normal_to_uniform(z), expected, rtol=1e-5)
  u = np.asarray(d.normal_to_uniform(z))
  assert u[0] == 2**-24 and u[-1] == np.float32(1 - 2**-24)  # ends of open_uniform's grid
  np.testing.assert_allclose(u[::-1], 1.0 - u, atol=1e-7)  # Phi(-z) = 1 - Phi(z)


def test_normal_to_distribution_kolmogorov_smirnov_and_rejects_a_wrong_transform():
  z = jax.random.normal(jax.random.key(6), (N,))
  assert ks_pvalue(d.normal_to_uniform(z), stats.uniform.cdf) > PASS
  # Mutant: Phi(|z|), the lower tail folded onto the upper.
  assert ks_pvalue(jax.scipy.stats.norm.cdf(jnp.abs(z)), stats.uniform.cdf) < REJECT
  x = d.normal_to_distribution(z, d.exponential_inverse_cdf)
  assert ks_pvalue(x, stats.expon.cdf) > PASS
  order = np.argsort(np.asarray(z))
  assert np.all(np.diff(np.asarray(x)[order]) >= 0)  # a monotone map of z
  # Mutant: the logistic sigmoid standing in for Phi.
  assert ks_pvalue(d.exponential_inverse_cdf(jax.nn.sigmoid(z)), stats.expon.cdf) < REJECT
  # A discrete target through its quantile function.
  probs = np.array([0.2, 0.0, 0.5, 0.3], np.float32)
  bins = d.normal_to_distribution(z, functools.partial(d.discrete_inverse_cdf, probs=probs))
  assert chi_square_pvalue(bins, probs) > PASS


# An asymmetric table with a zero row and zero cells, and no zero column (so the swapped
# mutant below has a distribution to draw from in every column).
TABLE = np.array([[4.0, 1.0, 0.0, 2.0, 1.0],
                  [0.0, 0.0, 0.0, 0.0, 0.0],
                  [1.0, 3.0, 2.0, 0.0, 0.5],
                  [0.5, 0.0, 5.0, 1.0, 3.0],
                  [2.0, 2.0, 0.0, 4.0, 0.5]], np.float32)


def y_from_the_marginal(rng, probs, num):
  """Mutant: y drawn from p(y), forgetting to condition on x."""
  rng_x, rng_y = jax.random.split(rng)
  return (d.sample_discrete(rng_x, probs.sum(1), (num,)),
          d.sample_discrete(rng_y, probs.sum(0), (num,)))


def swapped_conditional(rng, probs, num):
  """Mutant: y drawn from column x, the conditional read along the wrong axis."""
  rng_x, rng_y = jax.random.split(rng)
  ix = d.sample_discrete(rng_x, probs.sum(1), (num,))
  return ix, d.sample_discrete(rng_y, probs.T[ix])


def test_sample_table_2d_chi_square_on_the_joint_cells_and_rejects_wrong_conditionals():
  num = N
  ix, iy = d.sample_table_2d(jax.random.key(7), TABLE, (num,))
  assert ix.shape == iy.shape == (num,)
  assert chi_square_pvalue(np.asarray(ix) * 5 + np.asarray(iy), TABLE.ravel()) > PASS
  for mutant in (y_from_the_marginal, swapped_conditional):
    mx, my = mutant(jax.random.key(7), jnp.asarray(TABLE), num)
    # Only the valid cells, so that the rejection comes from the statistic, not the zero rule.
    cells = np.asarray(mx) * 5 + np.asarray(my)
    cells = cells[TABLE.ravel()[cells] > 0]
    assert chi_square_pvalue(cells, TABLE.ravel()) < REJECT, mutant.__name__


def histogram_cdf(masses, edges):
  """The piecewise-linear CDF of a histogram density, in float64."""
  cum = np.concatenate([[0.0], np.cumsum(masses, dtype=np.float64)]) / np.sum(masses)
  return lambda x: np.interp(x, np.asarray(edges, np.float64), cum)


def test_sample_histogram_kolmogorov_smirnov_against_the_piecewise_linear_cdf():
  masses = np.array([2.0, 0.0, 5.0, 1.0, 3.0], np.float32)
  edges = np.array([-1.0, 0.0, 0.5, 2.0, 2.25, 4.0], np.float32)
  cdf = histogram_cdf(masses, edges)
  rng = jax.random.key(8)
  x = np.asarray(d.sample_histogram(rng, masses, edges, (N,)))
  assert ks_pvalue(x, cdf) > PASS
  assert edges[0] <= x.min() and x.max() <= edges[-1]
  assert not np.any((x > 0.0) & (x < 0.5))  # the empty bin
  # Mutant: the right bin, but the position spread over the mean width, as if the bins were
  # equally wide.
  rng_bin, rng_in = jax.random.split(rng)
  index = d.sample_discrete(rng_bin, masses, (N,))
  mutant = edges[0] + (index + d.open_uniform(rng_in, (N,))) * (edges[-1] - edges[0]) / 5
  assert ks_pvalue(mutant, cdf) < REJECT


def test_sample_histogram_2d_cells_by_chi_square_and_uniform_positions_inside():
  masses = TABLE[:3, :4]
  x_edges = np.array([0.0, 1.0, 1.5, 4.0], np.float32)
  y_edges = np.array([-2.0, -1.0, 0.0, 0.25, 3.0], np.float32)
  points = np.asarray(d.sample_histogram_2d(jax.random.key(9), masses, x_edges, y_edges,
                                            (N,)), np.float64)
  assert points.shape == (N, 2)
  ix = np.clip(np.searchsorted(x_edges, points[:, 0], side="right") - 1, 0, 2)
  iy = np.clip(np.searchsorted(y_edges, points[:, 1], side="right") - 1, 0, 3)
  assert chi_square_pvalue(ix * 4 + iy, masses.ravel()) > PASS
  # Within its cell a point is uniform: its fractional position along each axis is U(0, 1).
  fx = (points[:, 0] - x_edges[ix]) / np.diff(x_edges)[ix]
  fy = (points[:, 1] - y_edges[iy]) / np.diff(y_edges)[iy]
  assert ks_pvalue(fx, stats.uniform.cdf) > PASS
  assert ks_pvalue(fy, stats.uniform.cdf) > PASS


def test_samplers_jit_and_agree_with_eager_calls():
  # The shapes of the tests above, so that the eager calls reuse their compiled ops.
  rng = jax.random.key(10)
  probs = jnp.array([[0.2, 0.0, 0.8, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0, 0.0, 1.0]])
  run = jax.jit(lambda rng, p: d.sample_discrete(rng, p, (N,)))
  np.testing.assert_array_equal(run(rng, probs), d.sample_discrete(rng, probs, (N,)))
  # Traced weights cannot be checked: entries that are not > 0 count as 0, and a distribution
  # with no positive entry still gives an index in range.
  bad = jnp.array([[-1.0, jnp.nan, 2.0, 0.0, -3.0, 0.0], [-1.0, jnp.nan, 0.0, 0.0, 0.0, 0.0]])
  samples = np.asarray(run(rng, bad))
  np.testing.assert_array_equal(samples[:, 0], 2)
  assert np.all((0 <= samples[:, 1]) & (samples[:, 1] < 6))
  run = jax.jit(lambda rng, p: d.sample_table_2d(rng, p, (N,)))
  for jitted, eager in zip(run(rng, TABLE), d.sample_table_2d(rng, TABLE, (N,))):
    np.testing.assert_array_equal(jitted, eager)
  run = jax.jit(lambda rng, lo, hi: d.sample_cdf(rng, gumbel_cdf, (N,), lower=lo, upper=hi))
  np.testing.assert_allclose(run(rng, -5.0, 40.0),
                             d.sample_cdf(rng, gumbel_cdf, (N,), lower=-5.0, upper=40.0),
                             rtol=1e-6)


RNG = jax.random.key(0)
E3 = np.array([0.0, 1.0, 2.0, 3.0])


@pytest.mark.parametrize("call,message", [
    (lambda: d.sample_discrete(RNG, [0.5, -0.1, 0.6]),
     r"probs must be >= 0, got -0.1 at index \(1,\): pass probabilities"),
    (lambda: d.sample_discrete(RNG, [[0.5, 0.5], [0.0, 0.0]]), r"probs\[1\] is all zeros"),
    (lambda: d.sample_discrete(RNG, [0.0, 0.0]), r"probs is all zeros"),
    (lambda: d.sample_discrete(RNG, [0.5, np.nan, np.nan]),
     r"probs must be finite, got nan at index \(1,\) \(and 1 more entries\): replace NaN"),
    (lambda: d.sample_discrete(RNG, [np.inf, 1.0]), r"probs must be finite, got inf"),
    (lambda: d.sample_discrete(RNG, np.zeros((2, 0))), r"at least one bin"),
    (lambda: d.sample_discrete(RNG, np.float32([3e38, 3e38])),
     r"probs sums to more than the largest float32 .*: divide the weights"),
    (lambda: d.sample_discrete(RNG, [1e38] * 4),  # a list: float64 here, float32 in JAX
     r"probs sums to more than the largest float32 .*: divide the weights"),
    (lambda: d.discrete_inverse_cdf(1.5, [0.5, 0.5]), r"u must be in \[0, 1\], got 1.5"),
    (lambda: d.sample_logits(RNG, [np.nan, 0.0]), r"logits must be a number, not NaN"),
    (lambda: d.sample_logits(RNG, [np.inf, 0.0]), r"logits must be < \+inf, .*one-hot"),
    (lambda: d.sample_logits(RNG, [[0.0, 1.0], [-np.inf, -np.inf]]),
     r"logits\[1\] is all -inf"),
    (lambda: d.exponential_inverse_cdf(0.5, rate=0.0),
     r"rate must be finite and > 0 \(1 / mean\), got 0.0"),
    (lambda: d.logistic_inverse_cdf(0.5, scale=-1.0), r"scale must be finite and > 0, got -1.0"),
    (lambda: d.cauchy_inverse_cdf(0.5, scale=np.inf), r"scale must be finite and > 0, got inf"),
    (lambda: d.invert_cdf(gumbel_cdf, 0.5, lower=1.0, upper=0.0), r"lower must be < upper"),
    (lambda: d.sample_cdf(RNG, gumbel_cdf, lower=0.0, upper=np.inf),
     r"upper must be finite \(truncate an infinite support\), got inf"),
    (lambda: d.sample_cdf(RNG, gumbel_cdf, lower=0.0, upper=1.0, num_iters=0),
     r"num_iters must be a whole number >= 1, got 0"),
    (lambda: d.sample_table_2d(RNG, [0.5, 0.5]), r"probs must be a 2-D table \[nx, ny\]"),
    (lambda: d.sample_table_2d(RNG, np.zeros((2, 3))), r"probs is all zeros"),
    (lambda: d.sample_histogram(RNG, [1.0, 2.0], E3),
     r"edges must be 1-D with num_bins \+ 1 = 3 values for 2 bins, got shape \(4,\)"),
    (lambda: d.sample_histogram(RNG, [1.0, 2.0, 3.0], [0.0, 2.0, 1.0, 3.0]),
     r"edges must be strictly increasing .*, got 1.0 at index \(2,\): sort the edges"),
    (lambda: d.sample_histogram(RNG, [1.0, 2.0, 3.0], [0.0, 1.0, np.nan, 3.0]),
     r"edges must be finite, got nan at index \(2,\)"),
    (lambda: d.sample_histogram(RNG, np.ones((2, 2)), E3), r"masses must be 1-D"),
    (lambda: d.sample_histogram_2d(RNG, np.ones((2, 3)), E3[:3], E3[:3]),
     r"masses has shape \(2, 3\) but x_edges \(3,\) and y_edges \(3,\) give \(2, 2\) cells"),
    (lambda: d.sample_histogram_2d(RNG, np.zeros((3, 3)), E3, E3), r"masses is all zeros"),
    (lambda: d.sample_histogram_2d(RNG, np.ones((3, 3)), E3, E3[::-1]),
     r"y_edges must be strictly increasing"),
])
def test_bad_inputs_are_refused_with_what_to_change(call, message):
  with pytest.raises(ValueError, match=message):
    call()
