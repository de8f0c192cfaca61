"""Sampling by inversion of the cumulative distribution function (CDF).

If U is uniform on (0, 1) and F is a CDF with generalised inverse F^-1(u) = inf {x : F(x) >= u},
then X = F^-1(U) has CDF F (the inversion method; Devroye, "Non-Uniform Random Variate
Generation", 1986, sec. II.2). Every sampler here is that one formula applied to a different F:

  * discrete distributions (`discrete_inverse_cdf`, `sample_discrete`, `sample_logits`): F is the
    cumulative sum of the probabilities and F^-1 a binary search (`jnp.searchsorted`), one uniform
    per sample (Devroye 1986, sec. III.2);
  * a continuous distribution with a known inverse CDF (`sample_inverse_cdf`, with
    `exponential_inverse_cdf`, `logistic_inverse_cdf`, `cauchy_inverse_cdf` or any other);
  * a continuous distribution with a known monotone CDF only (`invert_cdf`, `sample_cdf`): F^-1 by
    bisection with a fixed number of steps (Devroye 1986, sec. II.2.2);
  * a standard normal draw turned into a uniform by the normal CDF, the probability integral
    transform, and from there into any distribution (`normal_to_uniform`, `normal_to_distribution`);
  * a 2-D table by the chain rule p(x, y) = p(x) p(y | x): x's bin from the marginal, then y's bin
    from the conditional of that row (`sample_table_2d`), as an autoregressive model samples, and
    the inverse of Rosenblatt's transform ("Remarks on a multivariate transformation", 1952);
  * a piecewise-constant (histogram) density by a bin from the discrete sampler, then a uniform
    position inside it (`sample_histogram`, `sample_histogram_2d`).

Conventions:
  * Functions are pure and jit-able; keys are passed explicitly and each is split once per
    purpose. Static arguments (`shape`, callables, `num_iters`) must be bound by the caller before
    `jit`, as everywhere in gen_jax; library code never jits.
  * Uniforms come from `open_uniform`: in float32 they lie on the grid (j + 1/2) 2^-23,
    j = 0 .. 2^23 - 1, so they are never 0 or 1 (inverse CDFs with infinite tails stay finite:
    the extreme quantiles drawn are those at 2^-24 and 1 - 2^-24) and the grid is symmetric under
    u -> 1 - u. Probabilities are therefore resolved to about 2^-23: a bin is drawn with its
    probability up to an error of about 2^-23 (plus the float32 rounding of the cumulative sum),
    and a bin of probability below 2^-24 may never be drawn.
  * Weights of discrete distributions need not be normalised (probabilities, counts, or a density
    evaluated on a uniform grid). Concrete inputs (Python numbers, NumPy or unjitted JAX arrays)
    are checked and refused with a ValueError that says what to change; values traced under `jit`
    cannot be checked, and there every entry that is not > 0 (negative, NaN) counts as 0, and a
    distribution with no positive entry gives an unspecified but valid index.
"""

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gen_jax.errors import concrete
from gen_jax.types import Array

InverseCdfFn = Callable[[Array], Array]  # u [...] in (0, 1) -> x [...], elementwise
CdfFn = Callable[[Array], Array]  # x [...] -> F(x) [...], elementwise, nondecreasing



def _first_bad(name: str, value: np.ndarray, bad: np.ndarray, rule: str, fix: str) -> None:
  """Raises a ValueError naming the first entry of `value` where `bad` holds, if any."""
  if not bad.any():
    return
  index = tuple(int(i) for i in np.argwhere(bad)[0])
  at = f" at index {index}" if value.ndim else ""
  more = f" (and {int(bad.sum()) - 1} more entries)" if bad.sum() > 1 else ""
  raise ValueError(f"{name} must be {rule}, got {value[index]}{at}{more}: {fix}.")


def _check_weights(name: str, weights: Any, *, per_row: bool = True) -> None:
  """Refuses concrete weights that are empty, non-finite, negative, all zero or overflow.

  With `per_row`, every distribution along the last axis needs a positive entry; otherwise only
  the whole table does (a 2-D table may have empty rows, which are never drawn).
  """
  value = concrete(weights)
  if value is None:
    return
  if value.ndim == 0 or value.size == 0:
    raise ValueError(f"{name} must have at least one bin along its last axis, got shape "
                     f"{value.shape}: pass weights [..., num_bins] with num_bins >= 1.")
  _first_bad(name, value, ~np.isfinite(value), "finite",
             "replace NaN and infinite weights (a point mass is a one-hot vector)")
  _first_bad(name, value, value < 0, ">= 0",
             "pass probabilities, counts or density values (use sample_logits for logits)")
  positive = (value > 0).any(axis=-1) if per_row else (value > 0).any(keepdims=True)
  if not positive.all():
    row = tuple(int(i) for i in np.argwhere(~positive)[0])
    which = f"{name}[{', '.join(map(str, row))}]" if per_row and value.ndim > 1 else name
    raise ValueError(f"{which} is all zeros: every distribution needs a positive weight.")
  # The dtype JAX computes in: a Python list arrives here as float64, but is float32 in JAX
  # unless x64 is enabled.
  dtype = jax.dtypes.canonicalize_dtype(jnp.promote_types(value.dtype, jnp.float32))
  total = value.astype(np.float64).sum(axis=-1 if per_row else None)
  if (total > float(jnp.finfo(dtype).max)).any():
    raise ValueError(f"{name} sums to more than the largest {jnp.dtype(dtype).name} "
                     f"({float(jnp.finfo(dtype).max):.3g}): divide the weights by a constant.")


def _check_values(name: str, value: Any, valid: Callable[[np.ndarray], np.ndarray],
                  rule: str) -> None:
  """Raises a ValueError naming `name` when a concrete `value` has an invalid entry."""
  value = concrete(value)
  if value is None:
    return
  with np.errstate(invalid="ignore"):
    bad = ~np.asarray(valid(value), bool)
  if bad.any():
    more = f" (and {int(bad.sum()) - 1} more entries)" if bad.sum() > 1 else ""
    raise ValueError(f"{name} must be {rule}, got {value[bad].flat[0]}{more}.")


def _check_edges(name: str, edges: Any, num_bins: int) -> None:
  """Refuses edges that are not 1-D with `num_bins + 1` finite, strictly increasing values."""
  if np.ndim(edges) != 1 or np.shape(edges)[0] != num_bins + 1:
    raise ValueError(f"{name} must be 1-D with num_bins + 1 = {num_bins + 1} values for "
                     f"{num_bins} bins, got shape {np.shape(edges)}: pass the bin boundaries, "
                     f"as np.histogram returns them.")
  value = concrete(edges)
  if value is None:
    return
  _first_bad(name, value, ~np.isfinite(value), "finite", "bins must have finite boundaries")
  decreasing = np.concatenate([[False], ~(np.diff(value) > 0)])  # marks edge i+1
  _first_bad(name, value, decreasing, "strictly increasing (edge i+1 > edge i)",
             "sort the edges and drop repeated ones (an empty bin is a zero weight)")


def open_uniform(rng: Array, shape: Sequence[int] = (), dtype: Any = jnp.float32) -> Array:
  """Uniforms on the open interval (0, 1): the midpoints (j + 1/2) 2^-m, j = 0 .. 2^m - 1.

  `m` is the number of mantissa bits of `dtype` (23 for float32), so every value is exact, the
  smallest is 2^-(m+1) and the largest 1 - 2^-(m+1), and the grid is symmetric under u -> 1 - u.
  Unlike `jax.random.uniform` (whose grid is j 2^-m, 0 included), an inverse CDF with an infinite
  tail never sees 0 and `1 - u` is never 0.

  Args:
    rng: a PRNG key.
    shape: the shape of the result.
    dtype: a floating dtype.

  Returns:
    `[*shape]` uniforms of `dtype`.
  """
  finfo = jnp.finfo(dtype)
  bits = jax.random.bits(rng, tuple(shape), jnp.dtype(f"uint{finfo.bits}"))
  j = bits >> (finfo.bits - finfo.nmant)  # the top m bits, j < 2^m: exact in `dtype`
  return (j.astype(dtype) + 0.5) * jnp.asarray(2.0**-finfo.nmant, dtype)


def _edges(probs: Array) -> tuple[Array, Array]:
  """The right bin edges of the unnormalised CDF and the last bin with positive weight.

  Returns:
    edges: `[..., k]` nondecreasing. Bin i is `[edges[i-1], edges[i])`; bins up to the first
      positive one have edge -inf and a zero-weight bin repeats the previous edge exactly, so a
      search never lands in a bin whose weight is not > 0 (a float cumsum computed in parallel
      need not be monotone; the running maximum makes it so). `edges[..., -1]` is the total.
    last: `[...]` int32, the last bin whose weight is > 0 (k - 1 if there is none).
  """
  positive = probs > 0
  cdf = jnp.cumsum(jnp.where(positive, probs, 0.0), axis=-1)
  edges = lax.cummax(jnp.where(positive, cdf, -jnp.inf), axis=probs.ndim - 1)
  k = probs.shape[-1]
  last = k - 1 - jnp.argmax(positive[..., ::-1], axis=-1)
  return edges, last.astype(jnp.int32)


def _discrete_inverse_cdf(u: Array, probs: Array) -> Array:
  """`discrete_inverse_cdf` without the checks."""
  probs = jnp.asarray(probs)
  probs = probs.astype(jnp.promote_types(probs.dtype, jnp.float32))
  u = jnp.asarray(u, probs.dtype)
  batch, k = probs.shape[:-1], probs.shape[-1]
  edges, last = _edges(probs)
  shape = jnp.broadcast_shapes(u.shape, batch)
  batch = shape[len(shape) - len(batch):]  # `probs`' batch axes, broadcast against `u`
  edges = jnp.broadcast_to(edges, batch + (k,))
  target = u * edges[..., -1]  # [*sample, *batch], uniform on [0, total)
  if not batch:
    index = jnp.searchsorted(edges, target, side="right")
  else:
    # One search per distribution: [num_dists, k] edges against [num_dists, num_samples] targets.
    num_dists = math.prod(batch)
    targets = target.reshape(-1, num_dists).T
    index = jax.vmap(lambda e, t: jnp.searchsorted(e, t, side="right"))(
        edges.reshape(num_dists, k), targets)
    index = index.T.reshape(shape)
  # `side="right"` counts the edges <= target, the first bin whose right edge exceeds it. When
  # `u * total` rounds up to the total (or u = 1) every edge counts: the last positive bin is the
  # answer. Below that the count is always a positive bin (see `_edges`).
  return jnp.minimum(index, jnp.broadcast_to(last, batch)).astype(jnp.int32)


def discrete_inverse_cdf(u: Array, probs: Array) -> Array:
  """The discrete quantile function: the first bin i with F(i) > u, F the normalised cumsum.

  For `u` uniform on [0, 1) the result has probability `probs[i] / sum(probs)` of being i
  (Devroye 1986, sec. III.2). Bins whose weight is 0 are never returned, whatever the rounding:
  `u = 1` (or a target `u * sum(probs)` that rounds up to the sum, which for u < 1 happens only
  with a subnormal sum) gives the last bin with positive weight.

  Args:
    u: `[*sample, *batch]` (or broadcastable to it) in [0, 1].
    probs: `[*batch, k]` non-negative weights, not necessarily normalised.

  Returns:
    `[*sample, *batch]` int32 indices in [0, k).

  Raises:
    ValueError: concrete `probs` that are empty, non-finite, negative, all zero in some
      distribution, or whose sum overflows; concrete `u` outside [0, 1].
  """
  _check_weights("probs", probs)
  _check_values("u", u, lambda v: (v >= 0) & (v <= 1), "in [0, 1]")
  return _discrete_inverse_cdf(u, probs)


def sample_discrete(rng: Array, probs: Array, shape: Sequence[int] = ()) -> Array:
  """Draws bins of discrete distributions by inversion: one uniform and one binary search each.

  Args:
    rng: a PRNG key.
    probs: `[*batch, k]` non-negative weights (probabilities or counts; normalised here).
    shape: the sample shape, in front of the batch axes.

  Returns:
    `[*shape, *batch]` int32 indices in [0, k); bin i has probability
    `probs[..., i] / sum(probs[..., :])` up to the 2^-23 resolution of the uniforms, and bins
    with weight 0 never occur.

  Raises:
    ValueError: concrete `probs` that are empty, non-finite, negative, all zero in some
      distribution, or whose sum overflows.
  """
  _check_weights("probs", probs)
  u = open_uniform(rng, tuple(shape) + np.shape(probs)[:-1])
  return _discrete_inverse_cdf(u, probs)


def sample_logits(rng: Array, logits: Array, shape: Sequence[int] = ()) -> Array:
  """Draws bins of `softmax(logits)` by inversion (see `sample_discrete`).

  The probabilities are `exp(logits - max(logits))`, so a largest logit gets weight 1 and nothing
  overflows; -inf logits have probability 0 and are never drawn.

  Args:
    rng: a PRNG key.
    logits: `[*batch, k]`, each distribution with at least one finite entry.
    shape: the sample shape, in front of the batch axes.

  Returns:
    `[*shape, *batch]` int32 indices in [0, k).

  Raises:
    ValueError: concrete `logits` that are empty, NaN, +inf, or all -inf in some distribution.
  """
  value = concrete(logits)
  if value is not None:
    if value.ndim == 0 or value.shape[-1] == 0:
      raise ValueError(f"logits must have at least one bin along its last axis, got shape "
                       f"{value.shape}: pass logits [..., num_bins] with num_bins >= 1.")
    _first_bad("logits", value, np.isnan(value), "a number, not NaN", "replace NaN logits")
    _first_bad("logits", value, value == np.inf, "< +inf",
               "a +inf logit is a point mass: pass one-hot probabilities to sample_discrete")
    empty = ~np.isfinite(value).any(axis=-1)
    if empty.any():
      row = ", ".join(str(int(i)) for i in np.argwhere(empty)[0])
      raise ValueError(f"logits[{row}] is all -inf: every distribution needs a finite logit "
                       f"(a bin with positive probability).")
  logits = jnp.asarray(logits)
  logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
  probs = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
  u = open_uniform(rng, tuple(shape) + logits.shape[:-1])
  return _discrete_inverse_cdf(u, probs)


def sample_inverse_cdf(rng: Array, inverse_cdf_fn: InverseCdfFn, shape: Sequence[int] = (),
                       dtype: Any = jnp.float32) -> Array:
  """Draws `inverse_cdf_fn(U)` for U uniform on (0, 1) (Devroye 1986, sec. II.2).

  For example `sample_inverse_cdf(rng, jax.scipy.special.ndtri, (n,))` draws standard normals
  and `sample_inverse_cdf(rng, functools.partial(exponential_inverse_cdf, rate=2.0), (n,))`
  exponentials of mean 1/2. The uniforms come from `open_uniform`, so `inverse_cdf_fn` never sees
  0 or 1 and the most extreme quantiles drawn are those at 2^-24 and 1 - 2^-24 in float32.

  Args:
    rng: a PRNG key.
    inverse_cdf_fn: the quantile function, elementwise, `u [...] -> x [...]`.
    shape: the sample shape.
    dtype: the floating dtype of the uniforms.

  Returns:
    `[*shape]` samples (in the dtype `inverse_cdf_fn` returns).
  """
  return inverse_cdf_fn(open_uniform(rng, shape, dtype))


def exponential_inverse_cdf(u: Array, rate: Array | float = 1.0) -> Array:
  """The exponential quantile `-log(1 - u) / rate` (mean 1 / rate), accurate as u -> 1.

  `log1p(-u)` keeps the upper tail exact: for u >= 1/2, 1 - u is exact in floating point.

  Raises:
    ValueError: a concrete `rate` that is not finite and > 0.
  """
  _check_values("rate", rate, lambda r: (r > 0) & (r < np.inf), "finite and > 0 (1 / mean)")
  return -jnp.log1p(-u) / rate


def logistic_inverse_cdf(u: Array, loc: Array | float = 0.0,
                         scale: Array | float = 1.0) -> Array:
  """The logistic quantile `loc + scale * log(u / (1 - u))`, accurate in both tails.

  Raises:
    ValueError: a concrete `scale` that is not finite and > 0.
  """
  _check_values("scale", scale, lambda s: (s > 0) & (s < np.inf), "finite and > 0")
  return loc + scale * (jnp.log(u) - jnp.log1p(-u))


def cauchy_inverse_cdf(u: Array, loc: Array | float = 0.0, scale: Array | float = 1.0) -> Array:
  """The Cauchy quantile `loc + scale * tan(pi (u - 1/2))`, accurate in both tails.

  It is evaluated as `sign(u - 1/2) cos(pi t) / sin(pi t)` with `t = min(u, 1 - u)` (exact in
  floating point): `tan(pi (u - 1/2))` loses the distance of its argument to pi / 2 (in float32
  it is 19% off at u = 1 - 2^-23), and `u - 1/2` rounds away the lower tail.

  Raises:
    ValueError: a concrete `scale` that is not finite and > 0.
  """
  _check_values("scale", scale, lambda s: (s > 0) & (s < np.inf), "finite and > 0")
  u = jnp.asarray(u)
  t = jnp.where(u < 0.5, u, 1.0 - u)
  return loc + scale * jnp.sign(u - 0.5) * jnp.cos(jnp.pi * t) / jnp.sin(jnp.pi * t)


def _check_interval(lower: Any, upper: Any, num_iters: int) -> None:
  if not isinstance(num_iters, (int, np.integer)) or num_iters < 1:
    raise ValueError(f"num_iters must be a whole number >= 1, got {num_iters!r}: each halves "
                     f"the bracket (40 reaches float32 precision on intervals up to ~1e5 wide).")
  _check_values("lower", lower, np.isfinite, "finite (truncate an infinite support)")
  _check_values("upper", upper, np.isfinite, "finite (truncate an infinite support)")
  lo, hi = concrete(lower), concrete(upper)
  if lo is not None and hi is not None and not np.all(lo < hi):
    raise ValueError(f"lower must be < upper, got lower={lo} and upper={hi}: give the interval "
                     f"that holds the support.")


def invert_cdf(cdf_fn: CdfFn, u: Array, *, lower: Array | float, upper: Array | float,
               num_iters: int = 40) -> Array:
  """Solves F(x) = F(lower) + u (F(upper) - F(lower)) for x in [lower, upper] by bisection.

  The target rescales u to the interval, so X = `invert_cdf(F, U)` follows F conditioned on
  [lower, upper] (the truncated distribution, or F itself when the interval holds the support)
  and `cdf_fn` may be any nondecreasing function, normalised or not (Devroye 1986, sec. II.2.2).
  Each step keeps the bracket [lo, hi] with F(lo) < target <= F(hi) (or lo = lower), so it always
  holds the generalised inverse q = inf {x : F(x) >= target}, and halves it.

  Accuracy: after `num_iters` steps the returned midpoint is within
  `(upper - lower) * 2^-(num_iters + 1)` of q, until the bracket is two adjacent floats, after
  which it stays within one float spacing of q (float32 gets there in about
  `24 + log2((upper - lower) / |q|)` steps; the default 40 on [-10, 10] gives 1e-11). Here q is
  the quantile of F as `cdf_fn` computes it: an error e in F(x) moves x by about e / density(x),
  so flat regions of a float32 CDF (tails where F rounds to 0 or 1) are resolved only to where F
  changes. `cdf_fn` is called `num_iters + 2` times on arrays shaped like `u`.

  Args:
    cdf_fn: the CDF, elementwise and nondecreasing on [lower, upper].
    u: `[...]` in [0, 1].
    lower: the left end, finite; a scalar or broadcastable to `u`.
    upper: the right end, finite, > lower.
    num_iters: static number of bisection steps, >= 1.

  Returns:
    `[...]` the quantiles, in `u`'s floating dtype, in [lower, upper].

  Raises:
    ValueError: `num_iters` below 1, or concrete bounds that are not finite or not ordered.
  """
  _check_interval(lower, upper, num_iters)
  u = jnp.asarray(u)
  u = u.astype(jnp.promote_types(u.dtype, jnp.float32))
  lo = jnp.broadcast_to(jnp.asarray(lower, u.dtype), u.shape)
  hi = jnp.broadcast_to(jnp.asarray(upper, u.dtype), u.shape)
  f_lo, f_hi = cdf_fn(lo), cdf_fn(hi)
  target = f_lo + u * (f_hi - f_lo)

  def body(_, bracket):
    lo, hi = bracket
    mid = 0.5 * lo + 0.5 * hi  # never overflows, and rounds into [lo, hi]
    below = cdf_fn(mid) < target
    return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

  lo, hi = lax.fori_loop(0, num_iters, body, (lo, hi))
  return 0.5 * lo + 0.5 * hi


def sample_cdf(rng: Array, cdf_fn: CdfFn, shape: Sequence[int] = (), *, lower: Array | float,
               upper: Array | float, num_iters: int = 40) -> Array:
  """Draws from the distribution of a monotone CDF on [lower, upper] by numerical inversion.

  `invert_cdf(cdf_fn, U, lower=lower, upper=upper, num_iters=num_iters)` for U from
  `open_uniform`; see `invert_cdf` for the accuracy, and for the truncation to [lower, upper].

  Args:
    rng: a PRNG key.
    cdf_fn: the CDF, elementwise and nondecreasing on [lower, upper].
    shape: the sample shape.
    lower: the left end, finite.
    upper: the right end, finite, > lower.
    num_iters: static number of bisection steps, >= 1.

  Returns:
    `[*shape]` float32 samples in [lower, upper].

  Raises:
    ValueError: `num_iters` below 1, or concrete bounds that are not finite or not ordered.
  """
  return invert_cdf(cdf_fn, open_uniform(rng, shape), lower=lower, upper=upper,
                    num_iters=num_iters)


def normal_to_uniform(z: Array) -> Array:
  """The probability integral transform of a standard normal: Phi(z), uniform on (0, 1).

  `jax.scipy.stats.norm.cdf(z)`, clipped to [2^-(m+1), 1 - 2^-(m+1)] (m mantissa bits; in float32
  [2^-24, 1 - 2^-24], the extremes of `open_uniform`). In float32 Phi(z) rounds to 1 for
  z > 5.4, where an inverse CDF with an infinite upper tail would return inf; clipping both ends
  alike keeps the transform symmetric. So |z| > 5.29 (probability 1.2e-7) saturates.

  Args:
    z: `[...]` floating, standard normal.

  Returns:
    `[...]` in (0, 1), same dtype.
  """
  z = jnp.asarray(z)
  z = z.astype(jnp.promote_types(z.dtype, jnp.float32))
  eps = 2.0**-(jnp.finfo(z.dtype).nmant + 1)
  return jnp.clip(jax.scipy.stats.norm.cdf(z), eps, 1.0 - eps)


def normal_to_distribution(z: Array, inverse_cdf_fn: InverseCdfFn) -> Array:
  """Maps standard normals to another distribution: `inverse_cdf_fn(Phi(z))`.

  A monotone map (a Gaussian copula): the order of the z is kept, so e.g. a latent Gaussian can
  be given exponential or Cauchy marginals. Phi is `normal_to_uniform`, with its clipping.

  Args:
    z: `[...]` floating, standard normal.
    inverse_cdf_fn: the target's quantile function, elementwise on (0, 1); for a discrete
      target, `functools.partial(discrete_inverse_cdf, probs=probs)`.

  Returns:
    `[...]` samples of the target distribution.
  """
  return inverse_cdf_fn(normal_to_uniform(z))


def _check_table(name: str, probs: Any) -> None:
  if np.ndim(probs) != 2:
    raise ValueError(f"{name} must be a 2-D table [nx, ny], got shape {np.shape(probs)}: "
                     f"reshape the grid to one row per x bin and one column per y bin.")
  _check_weights(name, probs, per_row=False)


def _sample_table_2d(rng: Array, probs: Array, shape: tuple[int, ...]) -> tuple[Array, Array]:
  rng_x, rng_y = jax.random.split(rng)
  probs = jnp.asarray(probs)
  probs = probs.astype(jnp.promote_types(probs.dtype, jnp.float32))
  marginal = jnp.sum(jnp.where(probs > 0, probs, 0.0), axis=1)  # [nx]
  ix = _discrete_inverse_cdf(open_uniform(rng_x, shape), marginal)
  # The row of each drawn x is its conditional p(y | x), up to the factor 1 / p(x), which the
  # inversion's normalisation removes. A row is drawn only if its marginal is positive.
  iy = _discrete_inverse_cdf(open_uniform(rng_y, shape), probs[ix])  # rows: [*shape, ny]
  return ix, iy


def sample_table_2d(rng: Array, probs: Array,
                    shape: Sequence[int] = ()) -> tuple[Array, Array]:
  """Draws cells (ix, iy) of a 2-D table by the chain rule p(x, y) = p(x) p(y | x).

  x's bin comes from the marginal `sum_y probs[x, y]` and y's bin from the row `probs[ix]`,
  the conditional given that x, each by `discrete_inverse_cdf` with its own uniform: the inverse
  Rosenblatt transform (Rosenblatt 1952), and the order in which an autoregressive model samples
  its dimensions. Each sample gathers its row, `[*shape, ny]` floats in all.

  Args:
    rng: a PRNG key.
    probs: `[nx, ny]` non-negative weights: probabilities, counts, or a density evaluated at the
      cell centres of a uniform grid (the cell area is a constant factor). Rows or columns may be
      all zero; the table may not.
    shape: the sample shape.

  Returns:
    `(ix, iy)`, each `[*shape]` int32; cell (i, j) has probability `probs[i, j] / sum(probs)`
    up to the resolution of the uniforms, and zero cells never occur.

  Raises:
    ValueError: `probs` that is not 2-D, or concrete `probs` that is non-finite, negative, all
      zero, or whose sum overflows.
  """
  _check_table("probs", probs)
  return _sample_table_2d(rng, probs, tuple(shape))


def _in_bins(edges: Array, index: Array, v: Array) -> Array:
  """The point at fraction v in (0, 1) of bin `index`: `edges[i] + v (edges[i+1] - edges[i])`."""
  edges = jnp.asarray(edges, v.dtype)
  left, right = edges[index], edges[index + 1]
  return left + v * (right - left)


def sample_histogram(rng: Array, masses: Array, edges: Array,
                     shape: Sequence[int] = ()) -> Array:
  """Draws from a piecewise-constant density: a bin by its mass, then a uniform point inside it.

  The density is `masses[i] / (sum(masses) * (edges[i+1] - edges[i]))` on bin i, so its CDF is
  piecewise linear through `(edges[i], sum(masses[:i]) / sum(masses))`. Drawing the bin from the
  discrete distribution of the masses and then the position uniformly within it samples that
  mixture of uniforms exactly (composition; Devroye 1986, sec. II.4), with two uniforms per
  sample. A histogram from `counts, edges = np.histogram(data, bins)` is sampled as is; for a
  density evaluated at the bin centres pass `density * np.diff(edges)`.

  Args:
    rng: a PRNG key.
    masses: `[k]` non-negative mass of each bin (not necessarily normalised).
    edges: `[k + 1]` finite, strictly increasing bin boundaries.
    shape: the sample shape.

  Returns:
    `[*shape]` float32 samples in [edges[0], edges[-1]]; bins of mass 0 hold none (up to an
    endpoint by rounding).

  Raises:
    ValueError: `masses` not 1-D or `edges` not of length k + 1; concrete masses that are
      non-finite, negative, all zero or overflow, or concrete edges that are non-finite or not
      strictly increasing.
  """
  if np.ndim(masses) != 1:
    raise ValueError(f"masses must be 1-D [num_bins], got shape {np.shape(masses)}: use "
                     f"sample_histogram_2d for a 2-D histogram.")
  _check_weights("masses", masses)
  _check_edges("edges", edges, np.shape(masses)[0])
  rng_bin, rng_in = jax.random.split(rng)
  index = _discrete_inverse_cdf(open_uniform(rng_bin, shape), masses)
  return _in_bins(edges, index, open_uniform(rng_in, shape))


def sample_histogram_2d(rng: Array, masses: Array, x_edges: Array, y_edges: Array,
                        shape: Sequence[int] = ()) -> Array:
  """Draws points from a 2-D piecewise-constant density: a cell by the chain rule, then a point.

  The cell comes from `sample_table_2d` (the marginal of x, then the conditional of y given the
  row), the point uniformly inside the cell, so the density is
  `masses[i, j] / (sum(masses) * area[i, j])` on cell (i, j). A histogram from
  `np.histogram2d(x, y, bins)` is sampled as is; for a density evaluated at the cell centres pass
  `density * np.outer(np.diff(x_edges), np.diff(y_edges))`.

  Args:
    rng: a PRNG key.
    masses: `[nx, ny]` non-negative mass of each cell.
    x_edges: `[nx + 1]` finite, strictly increasing boundaries along x (the rows).
    y_edges: `[ny + 1]` finite, strictly increasing boundaries along y (the columns).
    shape: the sample shape.

  Returns:
    `[*shape, 2]` float32 points (x, y).

  Raises:
    ValueError: `masses` not 2-D or its shape not `(len(x_edges) - 1, len(y_edges) - 1)`;
      concrete masses that are non-finite, negative, all zero or overflow, or concrete edges
      that are non-finite or not strictly increasing.
  """
  cells = tuple(np.shape(e)[0] - 1 if np.ndim(e) == 1 else None for e in (x_edges, y_edges))
  if np.ndim(masses) != 2 or np.shape(masses) != cells:
    raise ValueError(f"masses has shape {np.shape(masses)} but x_edges {np.shape(x_edges)} "
                     f"and y_edges {np.shape(y_edges)} give {cells} cells: masses [nx, ny] "
                     f"needs 1-D x_edges [nx + 1] and y_edges [ny + 1].")
  _check_table("masses", masses)
  _check_edges("x_edges", x_edges, cells[0])
  _check_edges("y_edges", y_edges, cells[1])
  rng_cell, rng_x, rng_y = jax.random.split(rng, 3)
  shape = tuple(shape)
  ix, iy = _sample_table_2d(rng_cell, masses, shape)
  x = _in_bins(x_edges, ix, open_uniform(rng_x, shape))
  y = _in_bins(y_edges, iy, open_uniform(rng_y, shape))
  return jnp.stack([x, y], axis=-1)
