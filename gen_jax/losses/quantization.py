"""Vector-quantization losses, code-usage statistics and the EMA codebook update.

Every function is pure and keyword-only. The two losses return one value per quantized vector,
shape `z.shape[:-1]` (e.g. [batch, gh, gw]); the caller reduces (the quantizers in
`gen_jax.nn.quantizers` take the mean over vectors) and weights them (van den Oord et al. use
beta = 0.25 on the commitment loss). Distances are squared Euclidean, summed over the code axis.

  codebook_loss(*, z, q)                  ||sg(z) - q||^2      trains the codebook
  commitment_loss(*, z, q)                ||z - sg(q)||^2      trains the encoder
  perplexity(*, codes, num_codes)         exp(entropy of the batch's code histogram)
  usage(*, codes, num_codes)              fraction of the codebook used at least once
  ema_codebook_update(*, stats, z, codes, decay, epsilon)   the EMA codebook of Appendix A.1

(sg is `jax.lax.stop_gradient`.)

References:
  van den Oord, Vinyals and Kavukcuoglu, "Neural Discrete Representation Learning", 2017
    (VQ-VAE: the loss, eq. 3; the EMA codebook, Appendix A.1, eq. 6-8).
  Lee, Kim, Kim, Cho and Han, "Autoregressive Image Generation using Residual Quantization",
    2022 (RQ-VAE: the commitment loss over partial sums, eq. 5).
"""

import flax
import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy

from gen_jax.types import Array


def _check_same_shape(z: Array, q: Array) -> None:
  if jnp.shape(z) != jnp.shape(q):
    raise ValueError(f"z and q must have the same shape [..., code_dim], got {jnp.shape(z)} and "
                     f"{jnp.shape(q)}; pass the quantized vectors q aligned with z.")


def codebook_loss(*, z: Array, q: Array) -> Array:
  """||sg(z) - q||^2 per vector: the codebook (second) term of the VQ-VAE loss.

  van den Oord et al. 2017, eq. 3. The gradient reaches only the codes: d/dq = 2 (q - z), and
  d/dz = 0, so it moves each selected code towards the encoder outputs assigned to it.

  Args:
    z: [..., d] float encoder outputs (or residuals, for a level of a residual quantizer).
    q: [..., d] the selected codes, same shape.

  Returns:
    [...] float, summed over the last axis.

  Raises:
    ValueError: if the shapes differ.
  """
  _check_same_shape(z, q)
  return jnp.sum(jnp.square(jax.lax.stop_gradient(z) - q), axis=-1)


def commitment_loss(*, z: Array, q: Array) -> Array:
  """||z - sg(q)||^2 per vector: the commitment (third) term of the VQ-VAE loss, before beta.

  van den Oord et al. 2017, eq. 3. The gradient reaches only the encoder: d/dz = 2 (z - q),
  d/dq = 0. In a residual quantizer `q` is a partial sum of the levels' codes (Lee et al. 2022,
  eq. 5).

  Args:
    z: [..., d] float encoder outputs.
    q: [..., d] their quantized values, same shape.

  Returns:
    [...] float, summed over the last axis.

  Raises:
    ValueError: if the shapes differ.
  """
  _check_same_shape(z, q)
  return jnp.sum(jnp.square(z - jax.lax.stop_gradient(q)), axis=-1)


def code_counts(*, codes: Array, num_codes: int) -> Array:
  """[num_codes] float32: how many entries of `codes` (int, any shape, values in
  [0, num_codes)) equal each code. Out-of-range values are dropped."""
  codes = jnp.asarray(codes).reshape(-1)
  return jax.ops.segment_sum(jnp.ones(codes.shape, jnp.float32), codes, num_segments=num_codes)


def perplexity(*, codes: Array, num_codes: int) -> Array:
  """exp(H(p)), p the empirical distribution of the codes in this batch (all entries pooled).

    p_k = #{codes == k} / #codes,   H(p) = -sum_k p_k log p_k   (0 log 0 = 0),

  the code-usage perplexity reported for VQ-VAEs (e.g. the Sonnet VectorQuantizer): 1 when one
  code is used for everything, `num_codes` when all codes are used equally often.

  Args:
    codes: int, any shape, values in [0, num_codes).
    num_codes: K, the codebook size.

  Returns:
    float32 scalar in [1, min(K, #codes)].
  """
  counts = code_counts(codes=codes, num_codes=num_codes)
  p = counts / jnp.sum(counts)
  return jnp.exp(-jnp.sum(xlogy(p, p)))


def usage(*, codes: Array, num_codes: int) -> Array:
  """Fraction of the `num_codes` codes that occur at least once in `codes`.

  Args:
    codes: int, any shape, values in [0, num_codes).
    num_codes: K, the codebook size.

  Returns:
    float32 scalar in [0, 1], a multiple of 1 / K.
  """
  counts = code_counts(codes=codes, num_codes=num_codes)
  return jnp.mean((counts > 0).astype(jnp.float32))


@flax.struct.dataclass
class CodebookStats:
  """An EMA codebook and the moving averages it is computed from (`ema_codebook_update`)."""

  codebook: Array  # [num_codes, code_dim] float: embed_sum / Laplace-smoothed cluster_size
  cluster_size: Array  # [num_codes] float: EMA of the number of vectors assigned to each code
  embed_sum: Array  # [num_codes, code_dim] float: EMA of the sum of the vectors assigned


def ema_codebook_update(*, stats: CodebookStats, z: Array, codes: Array, decay: float,
                        epsilon: float) -> CodebookStats:
  """One exponential-moving-average codebook update (van den Oord et al. 2017, App. A.1, eq. 6-8).

  With n_k the number of vectors of `z` assigned to code k and s_k their sum,

    N_k <- decay N_k + (1 - decay) n_k                                  (eq. 6)
    m_k <- decay m_k + (1 - decay) s_k                                  (eq. 7)
    e_k  = m_k / N~_k,   N~_k = (N_k + epsilon) / (N + K epsilon) N,    (eq. 8)

  where N = sum_k N_k and N~ is the Laplace smoothing of the Sonnet implementation
  (`VectorQuantizerEMA`), which keeps e_k finite for a code that is never used (N~ sums to N as
  N does). No zero-debiasing is applied: the quantizers start from N_k = 1 and m_k = e_k, for
  which N~_k = 1 and the initial codebook is reproduced exactly. e_k is the EMA estimate of the
  mean of the vectors assigned to k, the k-means step that minimises the codebook loss.

  Args:
    stats: the current statistics; `stats.codebook` is not read.
    z: [..., d] float vectors that were quantized (stop-gradient is applied).
    codes: [...] int in [0, K), the code each vector of `z` was assigned.
    decay: in [0, 1); 0.99 in the paper.
    epsilon: > 0, the Laplace smoothing pseudo-count (1e-5 in Sonnet).

  Returns:
    The new `CodebookStats` (codebook [K, d], cluster_size [K], embed_sum [K, d]).

  Raises:
    ValueError: if `codes` does not have the shape `z.shape[:-1]`, or `z`'s last axis is not d.
  """
  num_codes, code_dim = stats.embed_sum.shape
  z = jax.lax.stop_gradient(jnp.asarray(z))
  if z.shape[-1:] != (code_dim,) or jnp.shape(codes) != z.shape[:-1]:
    raise ValueError(f"ema_codebook_update takes z [..., {code_dim}] and codes of shape "
                     f"z.shape[:-1]; got z {z.shape} and codes {jnp.shape(codes)}.")
  flat_codes = jnp.asarray(codes).reshape(-1)
  flat_z = z.reshape(-1, code_dim).astype(stats.embed_sum.dtype)
  counts = code_counts(codes=flat_codes, num_codes=num_codes).astype(stats.cluster_size.dtype)
  sums = jax.ops.segment_sum(flat_z, flat_codes, num_segments=num_codes)
  cluster_size = decay * stats.cluster_size + (1.0 - decay) * counts
  embed_sum = decay * stats.embed_sum + (1.0 - decay) * sums
  total = jnp.sum(cluster_size)
  smoothed = (cluster_size + epsilon) / (total + num_codes * epsilon) * total
  return CodebookStats(codebook=embed_sum / smoothed[:, None], cluster_size=cluster_size,
                       embed_sum=embed_sum)
