"""Memorisation check: how much closer generated samples come to the training set than new data.

A model that memorises emits training examples, or small variations of them. Distance to the
training set alone cannot show this (a good model's samples are close to it too), so the samples'
distances are compared with those of a held-out test set, which is genuinely new data from the
same distribution: the three-sample design of Meehan, Chaudhuri and Dasgupta 2020, "A
Non-Parametric Test to Detect Data-Copying in Generative Models" (AISTATS; their statistic is a
Mann-Whitney U test on the same two sets of distances). For samples s_1..s_m, training examples
t_1..t_N and test examples x_1..x_n, all flattened to vectors (pixels, or features if the caller
passes features):

  d(s_i)         = min_j ||s_i - t_j||_2, and likewise d(x_i)      (ties go to the lower index j)
  threshold      = the q-quantile of d(x_1)..d(x_n)               (np.quantile, linear)
  copy_fraction  = #{i : d(s_i) < threshold} / m
  median_ratio   = median_i d(s_i) / median_i d(x_i)

The copy fraction counts the samples that are "closer to a training example than all but a
fraction q of the test examples are". Its distribution under no memorisation is known exactly,
whatever the data: if the samples are independent of the training set and distributed like the
test set, the m + n distances d(.) are exchangeable given the training set, so (without ties, as
for continuous data) a sample falls below the k-th smallest of the n test distances with
probability k / (n + 1), and the number of samples below it is beta-binomial(m, k, n + 1 - k)
(not binomial: the threshold is itself random and shared by all samples). The linear quantile
lies between the k-th and (k+1)-th smallest with k = floor(q (n - 1)) + 1, so the copy
fraction's expectation lies between k / (n + 1) and (k + 1) / (n + 1), about q, and its standard
deviation is about sqrt(q (1 - q) (1/n + 1/m)). A model that emits (near-)copies of training
examples, closer than the threshold, for a fraction c of its samples scores about
c + (1 - c) q. The rule for flagging (`MemorisationReport.flagged`) is

  flagged        = copy_fraction > flag_factor * q                 (flag_factor = 3 by default)

which, for q = 0.01, lies 4.5 null standard deviations above q with 1,000 samples and 1,000 test
examples, and 14 with 10,000 of each; keep q n well above 1 (at least 10), else the threshold is
the noise of a few order statistics. It catches models that copy more than about
(flag_factor - 1) q of their samples; rarer copies still head the nearest pairs, for a person to
look at. The median ratio is a second summary of the whole distribution rather than its tail:
about 1 without memorisation, near 0 when most samples are copies; it is also below 1 for a model
that puts its samples on the dense parts of the data, so it does not decide the flag.

A test set that shares more than a fraction q of its examples with the training set makes the
threshold 0 and the copy fraction 0, and fewer shared examples still lower the threshold: check
for overlap before trusting a clean report.

Distances are in the units of the inputs (pixels in [-1, 1] or [0, 1], or features); the copy
fraction and the median ratio do not depend on the units. The nearest-neighbour search is jnp on
the default device, in float32, in blocks (see `nearest_neighbours`); everything else is
host-side numpy, nothing is jitted.
"""

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class NearestNeighbours(NamedTuple):
  """The nearest reference of each query."""

  distances: np.ndarray  # [n_queries] float32, Euclidean, in the units of the inputs
  indices: np.ndarray  # [n_queries] int64, rows of the references


@dataclasses.dataclass(frozen=True)
class MemorisationReport:
  """Nearest-training distances of samples and of test examples, and their summaries.

  The definitions are in the module docstring.

  Attributes:
    sample_distances: [m] float32, each sample's distance to its nearest training example.
    sample_indices: [m] int64, the index of that training example.
    test_distances: [n] float32, each test example's distance to its nearest training example.
    test_indices: [n] int64, the index of that training example.
    q: the quantile of `test_distances` used as the threshold, in (0, 1).
    threshold: the q-quantile of `test_distances`, in the units of the inputs.
    copy_fraction: fraction of samples with a distance strictly below `threshold`, in [0, 1];
      about q under no memorisation.
    median_ratio: median(sample_distances) / median(test_distances); about 1 under no
      memorisation; inf when only the test median is 0, NaN when both are.
    pair_samples: [k] int64, the samples with the k smallest distances, nearest first (ties in
      sample order); k = min(num_pairs, m).
    pair_train: [k] int64, their nearest training examples (`sample_indices[pair_samples]`).
    pair_distances: [k] float32, their distances, ascending.
    flag_factor: the samples are flagged when `copy_fraction > flag_factor * q`.
  """

  sample_distances: np.ndarray  # [m] float32
  sample_indices: np.ndarray  # [m] int64
  test_distances: np.ndarray  # [n] float32
  test_indices: np.ndarray  # [n] int64
  q: float
  threshold: float
  copy_fraction: float
  median_ratio: float
  pair_samples: np.ndarray  # [k] int64
  pair_train: np.ndarray  # [k] int64
  pair_distances: np.ndarray  # [k] float32
  flag_factor: float = 3.0

  @property
  def flagged(self) -> bool:
    """Whether the copy fraction exceeds `flag_factor` times its no-memorisation value q."""
    return self.copy_fraction > self.flag_factor * self.q

  def scalars(self) -> dict[str, float]:
    """The scalar summaries, for logging."""
    return {"copy_fraction": self.copy_fraction, "threshold": self.threshold,
            "median_ratio": self.median_ratio, "flagged": float(self.flagged)}


def _rows(name: str, x) -> jax.Array:
  """`x [n, ...]` as finite float32 rows `[n, d]`, or a ValueError naming `name`."""
  shape = np.shape(x)
  if len(shape) < 2:
    raise ValueError(f"{name} must be [n, ...] (one row per example, at least one feature axis); "
                     f"got shape {shape}.")
  if shape[0] == 0 or math.prod(shape[1:]) == 0:
    raise ValueError(f"{name} is empty: shape {shape}.")
  # Values too large for float32 become inf here, and are refused below with the other ones.
  with np.errstate(over="ignore", invalid="ignore"):
    rows = jnp.asarray(x, jnp.float32).reshape(shape[0], -1)
  bad = int(jnp.sum(~jnp.isfinite(rows)))
  if bad:
    raise ValueError(f"{name} has {bad} non-finite values (NaN or inf, after casting to float32).")
  return rows


def _check_chunk_size(chunk_size) -> None:
  if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
    raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")


def _nearest(queries: jax.Array, references: jax.Array, chunk_size: int) -> NearestNeighbours:
  """`nearest_neighbours` on validated rows."""
  num_queries, num_references = queries.shape[0], references.shape[0]
  # Every block has the same shape (the last ones padded), and blocks are cut by
  # `dynamic_slice_in_dim`, whose start is an operand, not a constant: each eager op compiles
  # for one shape only, rather than once per block.
  query_chunk, reference_chunk = min(chunk_size, num_queries), min(chunk_size, num_references)
  queries = _pad_rows(queries, query_chunk)  # [ceil(n / query_chunk) query_chunk, d]
  # Distances are translation invariant; centring on the references' mean shrinks the norms
  # whose float32 cancellation bounds the expansion's accuracy.
  centre = jnp.mean(references, axis=0)  # [d]
  centred_references = _pad_rows(references - centre, reference_chunk)  # [N', d]
  # Padding rows are infinitely far, so never chosen.
  reference_sq = jnp.where(jnp.arange(centred_references.shape[0]) < num_references,
                           jnp.sum(jnp.square(centred_references), axis=-1), jnp.inf)  # [N']
  distances, indices = [], []
  for start in range(0, num_queries, query_chunk):
    chunk = jax.lax.dynamic_slice_in_dim(queries, start, query_chunk)  # [c, d]
    centred = chunk - centre
    chunk_sq = jnp.sum(jnp.square(centred), axis=-1, keepdims=True)  # [c, 1]
    best_sq = jnp.full((query_chunk,), jnp.inf, jnp.float32)  # [c]
    best_index = jnp.zeros((query_chunk,), jnp.int32)  # [c]
    for ref_start in range(0, num_references, reference_chunk):
      block = jax.lax.dynamic_slice_in_dim(centred_references, ref_start, reference_chunk)
      # HIGHEST: accelerators multiply float32 in reduced precision by default.
      cross = jnp.matmul(centred, block.T, precision=jax.lax.Precision.HIGHEST)  # [c, r]
      block_sq = jax.lax.dynamic_slice_in_dim(reference_sq, ref_start, reference_chunk)  # [r]
      sq = jnp.maximum(chunk_sq - 2.0 * cross + block_sq, 0.0)  # [c, r]
      block_index = jnp.argmin(sq, axis=-1).astype(jnp.int32)  # [c], the lower index on ties
      block_min = jnp.min(sq, axis=-1)  # [c]
      # Strictly closer only, so ties across blocks also go to the lower index.
      closer = block_min < best_sq
      best_sq = jnp.where(closer, block_min, best_sq)
      best_index = jnp.where(closer, block_index + ref_start, best_index)
    # The expansion loses every digit for near-copies (||a||^2 and ||b||^2 agree to float32
    # rounding); direct differences to the chosen neighbour keep them.
    distances.append(jnp.sqrt(jnp.sum(jnp.square(chunk - references[best_index]), axis=-1)))
    indices.append(best_index)
  return NearestNeighbours(
      distances=np.asarray(jnp.concatenate(distances))[:num_queries],
      indices=np.asarray(jnp.concatenate(indices))[:num_queries].astype(np.int64))


def _pad_rows(x: jax.Array, multiple: int) -> jax.Array:
  """`x [n, d]` with zero rows appended up to a multiple of `multiple` rows."""
  return jnp.pad(x, ((0, -x.shape[0] % multiple), (0, 0)))


def nearest_neighbours(queries, references, *, chunk_size: int = 2048) -> NearestNeighbours:
  """The Euclidean nearest reference of each query, on flattened rows, in blocks.

  The search takes ||a - b||^2 = ||a||^2 - 2 a.b + ||b||^2, clamped at 0, one
  `[chunk_size, chunk_size]` block of queries against references at a time (a matrix product at
  HIGHEST precision; a running minimum over the reference blocks), on data centred on the
  references' mean. Memory is two float32 copies of each input and one block (16 MB at 2048):
  about 0.5 GB for 10,000 queries against 10,000 references of 32 x 32 x 3. The returned
  distance is then recomputed by direct differences ||a - b|| between each query and its chosen
  reference, so it is exact to float32 rounding even for near-copies, where the expansion's
  cancellation would swamp it. The one approximation:
  when two references' squared distances to a query differ by less than the expansion's rounding
  error, about 1e-7 (||a - m||^2 + ||b - m||^2) with m the references' mean, either may be
  returned (its distance then exceeds the minimum by at most that much). Exact ties go to the
  lower reference index.

  Args:
    queries: [n_queries, ...] numpy or jax array; each row is flattened.
    references: [n_references, ...] with the same per-row shape.
    chunk_size: rows per block, on both axes; need not divide either size.

  Returns:
    `NearestNeighbours(distances [n_queries] float32, indices [n_queries] int64)`, host numpy.

  Raises:
    ValueError: for an input without a feature axis, an empty input, different per-row shapes,
      NaN or inf values, or a chunk_size that is not a positive integer.
  """
  _check_chunk_size(chunk_size)
  if np.shape(queries)[1:] != np.shape(references)[1:]:
    raise ValueError(f"queries and references must have the same per-row shape; got "
                     f"{np.shape(queries)} and {np.shape(references)}.")
  return _nearest(_rows("queries", queries), _rows("references", references), int(chunk_size))


def memorisation_report(*, samples, train, test, q: float = 0.01, num_pairs: int = 16,
                        flag_factor: float = 3.0, chunk_size: int = 2048) -> MemorisationReport:
  """Compares the samples' distances to the training set with held-out test examples'.

  The definitions and the no-memorisation distribution of the copy fraction are in the module
  docstring (the design of Meehan et al. 2020, "A Non-Parametric Test to Detect Data-Copying in
  Generative Models"); the distances are those of `nearest_neighbours`.

  Args:
    samples: [m, ...] generated examples (images, or features); numpy or jax.
    train: [N, ...] the model's training examples, same per-row shape and units.
    test: [n, ...] held-out examples of the same distribution, never trained on.
    q: the quantile of the test distances that sets the threshold, in (0, 1); q n should be at
      least about 10.
    num_pairs: how many of the nearest (sample, training example) pairs to return, >= 0.
    flag_factor: flag when the copy fraction exceeds this multiple of q; > 1, since the copy
      fraction of a model that does not memorise is q give or take noise.
    chunk_size: rows per block of the nearest-neighbour search.

  Returns:
    A `MemorisationReport`.

  Raises:
    ValueError: for q outside (0, 1), a negative or non-integer num_pairs, a flag_factor that
      is not a finite number > 1, a bad chunk_size, inputs without a feature axis, empty inputs,
      per-row shapes that differ, or NaN or inf values.
  """
  if not (np.ndim(q) == 0 and 0 < q < 1):
    raise ValueError(f"q must be a scalar in (0, 1) (the test quantile used as threshold), got "
                     f"{q!r}.")
  if not isinstance(num_pairs, (int, np.integer)) or num_pairs < 0:
    raise ValueError(f"num_pairs must be a non-negative integer, got {num_pairs!r}.")
  if not (np.ndim(flag_factor) == 0 and 1 < flag_factor < math.inf):
    raise ValueError(f"flag_factor must be a finite number > 1 (the copy fraction is about q "
                     f"without memorisation), got {flag_factor!r}.")
  _check_chunk_size(chunk_size)
  shapes = {"samples": np.shape(samples), "train": np.shape(train), "test": np.shape(test)}
  if len({shape[1:] for shape in shapes.values()}) != 1:
    raise ValueError("samples, train and test must have the same per-row shape; got "
                     + ", ".join(f"{name} {shape}" for name, shape in shapes.items()) + ".")
  samples_rows, test_rows = _rows("samples", samples), _rows("test", test)
  train_rows = _rows("train", train)

  # One search for both: one pass over the training blocks, one set of block shapes.
  both = _nearest(jnp.concatenate([samples_rows, test_rows]), train_rows, int(chunk_size))
  num_samples = samples_rows.shape[0]
  sample_nn = NearestNeighbours(both.distances[:num_samples], both.indices[:num_samples])
  test_nn = NearestNeighbours(both.distances[num_samples:], both.indices[num_samples:])
  threshold = float(np.quantile(test_nn.distances.astype(np.float64), q))
  copy_fraction = float(np.mean(sample_nn.distances < threshold))
  with np.errstate(divide="ignore", invalid="ignore"):
    median_ratio = float(np.float64(np.median(sample_nn.distances))
                         / np.float64(np.median(test_nn.distances)))
  pairs = np.argsort(sample_nn.distances, kind="stable")[:num_pairs].astype(np.int64)  # [k]
  return MemorisationReport(
      sample_distances=sample_nn.distances,
      sample_indices=sample_nn.indices,
      test_distances=test_nn.distances,
      test_indices=test_nn.indices,
      q=float(q),
      threshold=threshold,
      copy_fraction=copy_fraction,
      median_ratio=median_ratio,
      pair_samples=pairs,
      pair_train=sample_nn.indices[pairs],
      pair_distances=sample_nn.distances[pairs],
      flag_factor=float(flag_factor),
  )
