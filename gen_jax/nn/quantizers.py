"""Vector quantization (VQ-VAE) and residual quantization (RQ-VAE) of encoder outputs.

Both modules share one contract:

    z_q, codes, aux = quantizer.apply(variables, z, train=train, ...)
    z_q2 = quantizer.apply(variables, codes, method=quantizer.decode)

* `z [..., code_dim]` float: encoder outputs, e.g. `[batch, gh, gw, code_dim]`.
* `z_q [..., code_dim]` (z's dtype): the quantized vectors with the straight-through estimator,
  `z + sg(q - z)`: its value is q (up to one float rounding), its derivative with respect to z is
  the identity.
* `codes [..., depth]` int32: the code chosen at each level (depth 1 for `VectorQuantizer`).
* `aux`: float32 scalars
    "codebook_loss"   mean over vectors of sum_l ||sg(r_l) - q_l||^2; 0 with an EMA codebook,
    "commitment_loss" mean over vectors of sum_l ||z - sg(q_0 + ... + q_l)||^2 (before beta),
    "perplexity"      exp(entropy) of each level's code histogram in this batch, mean over levels,
    "usage"           fraction of the codebook each level used in this batch, mean over levels.
  The caller forms the VQ-VAE loss: recon + codebook_loss + beta * commitment_loss (beta = 0.25
  in both papers).
* `decode(codes [..., depth]) -> [..., code_dim]`: sum over levels of the looked-up codes, equal to
  z_q's forward value (to float rounding) for the codebook the forward pass used.

Levels. Level 0 quantizes r_0 = z; level l quantizes the residual r_l = r_{l-1} - q_{l-1} to its
nearest code q_l (squared Euclidean distance, ties to the lowest index). The quantized vector is
q_0 + ... + q_{depth-1}. A greedy level never increases ||r_{l+1}|| above ||r_l|| when its
codebook contains the zero vector (then min_e ||r - e|| <= ||r - 0||); without a zero code it
can (a residual already at 0 is moved to the nearest non-zero code).

Codebooks. With `ema_decay == 0` each codebook is the parameter "params"/"codebook", trained by
the codebook loss. With `ema_decay > 0` it lives in the mutable collection "quantizer"
(`codebook`, `cluster_size`, `embed_sum`, see `gen_jax.losses.quantization.CodebookStats`),
initialised with cluster_size = 1 and embed_sum = codebook, and `train=True` replaces it by
`ema_codebook_update` of the vectors each codebook quantized (apply with
`mutable=["quantizer"]`); the codebook loss is then 0 and has no gradient. The forward pass
always uses the codebook it was given: the update only takes effect in the next call. Nothing
is updated while `init` runs.

Dead-code restarts (Dhariwal et al. 2020, "Jukebox", Sec. 3.1; Zeghidour et al. 2021,
"SoundStream", Sec. III-C): with `dead_code_threshold > 0`, after the EMA update of a training
step, every code whose EMA cluster size is below the threshold is replaced by a random vector
that its codebook quantized in this batch (level 0: an encoder output; deeper levels: a
residual; a shared codebook: any level's input), drawn without replacement while the batch is at
least as large as the codebook, from the rng `self.make_rng("quantizer")` (pass
`rngs={"quantizer": key}` to apply). Its stats restart as at initialisation: cluster_size = 1,
embed_sum = the new code. Cluster sizes are EMAs of vectors assigned per batch, so a threshold of
0.5 restarts codes assigned fewer than about one vector every two batches. A restarted code that
gets no vector in the next batch falls to cluster size `ema_decay` and, if that is below the
threshold, is restarted again. Restarts need the EMA statistics: a parameter codebook with
`dead_code_threshold > 0` is refused with a SettingError (an optimiser owns parameters; the
module could not replace them).

Variables hold one codebook per level (`ResidualQuantizer`, `shared_codebook=False`) or one for
all levels (`shared_codebook=True`, the RQ-VAE paper's choice), stacked: codebook
`[num_codebooks, num_codes, code_dim]`, cluster_size `[num_codebooks, num_codes]`. A
`VectorQuantizer` stores `[num_codes, code_dim]` and `[num_codes]`, and behaves exactly as a
`ResidualQuantizer(depth=1)` given the same arrays with a leading axis of 1.

References:
  van den Oord, Vinyals and Kavukcuoglu, "Neural Discrete Representation Learning", 2017
    (eq. 3; EMA codebook, Appendix A.1, eq. 6-8).
  Lee, Kim, Kim, Cho and Han, "Autoregressive Image Generation using Residual Quantization",
    2022 (residual quantization, Sec. 3.1, eq. 2-3; its loss, eq. 5; shared codebook).
"""

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax.errors import SettingError
from gen_jax.losses import quantization
from gen_jax.losses.quantization import CodebookStats
from gen_jax.types import Array, PRNGKey

Initializer = Callable[..., Array]  # (rng, shape, dtype=float32) -> array


def default_codebook_init(rng: PRNGKey, shape: tuple[int, ...], dtype: Any = jnp.float32
                          ) -> Array:
  """Uniform on +-sqrt(3 / code_dim) (`shape[-1]` is code_dim): entries of variance 1 / code_dim,
  codes of expected squared norm 1, like Sonnet's variance-scaling default."""
  limit = math.sqrt(3.0 / shape[-1])
  return jax.random.uniform(rng, shape, dtype, -limit, limit)


def nearest_code(z: Array, codebook: Array) -> Array:
  """argmin_k ||z_n - e_k||^2 for each row: `z [n, d]`, `codebook [k, d]` -> `[n]` int32.

  The distances are ||z||^2 - 2 z e^T + ||e||^2, one `[n, k]` matrix product, at HIGHEST
  precision so that accelerators that multiply float32 in reduced precision by default still
  pick the nearest code. Ties go to the lowest index (`jnp.argmin`).
  """
  distances = (jnp.sum(jnp.square(z), axis=-1, keepdims=True)
               - 2.0 * jnp.matmul(z, codebook.T, precision=jax.lax.Precision.HIGHEST)
               + jnp.sum(jnp.square(codebook), axis=-1))
  return jnp.argmin(distances, axis=-1).astype(jnp.int32)


def restart_dead_codes(*, stats: CodebookStats, z: Array, threshold: float, rng: PRNGKey
                       ) -> CodebookStats:
  """Replaces every code whose EMA cluster size is below `threshold` by a random row of `z`.

  Dhariwal et al. 2020, "Jukebox" (Sec. 3.1, random restarts for embeddings); Zeghidour et al. 2021,
  "SoundStream" (Sec. III-C). The candidates are drawn uniformly from the rows of `z`, without
  replacement when `z` has at least as many rows as there are codes (so no two restarted codes
  coincide), else with replacement. A restarted code k gets codebook[k] = embed_sum[k] = its new
  vector and cluster_size[k] = 1 (the state of a freshly initialised code); live codes are
  unchanged.

  Args:
    stats: `CodebookStats` with codebook [K, d], cluster_size [K], embed_sum [K, d].
    z: [..., d] float, the vectors this codebook quantized in the batch (stop-gradient applied).
    threshold: codes with cluster_size < threshold are dead.
    rng: key for the candidates.

  Returns:
    The new `CodebookStats`.
  """
  num_codes, code_dim = stats.codebook.shape
  z = jax.lax.stop_gradient(jnp.asarray(z)).reshape(-1, code_dim).astype(stats.codebook.dtype)
  rows = jax.random.choice(rng, z.shape[0], (num_codes,), replace=z.shape[0] < num_codes)
  candidates = z[rows]  # [K, d]
  dead = stats.cluster_size < threshold  # [K]
  return CodebookStats(
      codebook=jnp.where(dead[:, None], candidates, stats.codebook),
      cluster_size=jnp.where(dead, jnp.ones_like(stats.cluster_size), stats.cluster_size),
      embed_sum=jnp.where(dead[:, None], candidates, stats.embed_sum))


def _check_config(num_codes: int, code_dim: int, depth: int, ema_decay: float, epsilon: float,
                  dead_code_threshold: float) -> None:
  """Refuses fields no quantizer can use. The fields are the `model.*` keys of the same names
  (`QUANTIZERS.build` in gen_jax/methods/vqvae.py), so the messages name those keys; `epsilon`
  is no config key.

  Raises:
    SettingError: naming the field and what to set it to.
  """
  if num_codes < 1:
    raise SettingError(f"model.num_codes={num_codes}: the codebook needs at least one code; "
                       "set model.num_codes >= 1 (512 in the VQ-VAE paper).")
  if code_dim < 1:
    raise SettingError(f"model.code_dim={code_dim}: set model.code_dim >= 1, the size of z's "
                       "last axis.")
  if depth < 1:
    raise SettingError(f"model.depth={depth}: a residual quantizer needs at least one level; "
                       "set model.depth >= 1 (depth=1 is plain vector quantization).")
  if not 0.0 <= ema_decay < 1.0:
    raise SettingError(f"model.ema_decay={ema_decay}: use 0 for a parameter codebook or a decay "
                       "in (0, 1), e.g. 0.99, for an EMA codebook.")
  if epsilon <= 0.0:
    raise SettingError(f"epsilon={epsilon}: the Laplace smoothing pseudo-count must be > 0, "
                       "e.g. 1e-5.")
  if dead_code_threshold < 0.0:
    raise SettingError(f"model.dead_code_threshold={dead_code_threshold}: use 0 (no restarts) "
                       "or a positive EMA cluster size.")
  if dead_code_threshold > 0.0 and ema_decay == 0.0:
    raise SettingError(f"model.dead_code_threshold={dead_code_threshold} needs the EMA codebook "
                       "statistics, but model.ema_decay=0 makes the codebook a parameter: set "
                       "model.ema_decay > 0 (e.g. 0.99) or model.dead_code_threshold=0.")


class _Quantizer(nn.Module):
  """What `VectorQuantizer` and `ResidualQuantizer` share. Subclasses define the fields
  num_codes, code_dim, ema_decay, epsilon, dead_code_threshold, codebook_init and the properties
  `_depth`, `_shared` and `_stacked` (whether variables carry the leading codebook axis)."""

  def __post_init__(self):
    _check_config(self.num_codes, self.code_dim, self._depth, self.ema_decay, self.epsilon,
                  self.dead_code_threshold)
    super().__post_init__()

  @property
  def _num_codebooks(self) -> int:
    return 1 if self._shared else self._depth

  def _codebook_index(self, level: int) -> int:
    return 0 if self._shared else level

  def setup(self):
    shape = (self.num_codes, self.code_dim)
    if self._stacked:
      shape = (self._num_codebooks, *shape)
    if self.ema_decay > 0.0:
      self.codebook_var = self.variable(
          "quantizer", "codebook", lambda: self.codebook_init(self.make_rng("params"), shape))
      self.cluster_size_var = self.variable("quantizer", "cluster_size",
                                            lambda: jnp.ones(shape[:-1], jnp.float32))
      self.embed_sum_var = self.variable("quantizer", "embed_sum",
                                         lambda: self.codebook_var.value)
    else:
      self.codebook = self.param("codebook", self.codebook_init, shape)

  def _codebooks(self) -> Array:
    """[num_codebooks, num_codes, code_dim]."""
    codebook = self.codebook_var.value if self.ema_decay > 0.0 else self.codebook
    return codebook if self._stacked else codebook[None]

  def __call__(self, z: Array, train: bool = False) -> tuple[Array, Array, dict[str, Array]]:
    """z `[..., code_dim]` float -> (z_q `[..., code_dim]`, codes `[..., depth]` int32, aux).

    See the module docstring for aux and for what `train=True` updates (EMA codebooks only;
    needs `mutable=["quantizer"]`, and the "quantizer" rng when `dead_code_threshold > 0`).

    Raises:
      ValueError: if z's last axis is not code_dim.
    """
    z = jnp.asarray(z)
    if z.ndim < 1 or z.shape[-1] != self.code_dim:
      raise ValueError(f"z must have shape [..., code_dim={self.code_dim}], got {z.shape}; "
                       f"project the encoder output to {self.code_dim} channels or set "
                       f"code_dim={z.shape[-1] if z.ndim else 1}.")
    codebooks = self._codebooks()
    flat_z = z.reshape(-1, self.code_dim).astype(codebooks.dtype)  # [n, d]

    residual = flat_z
    total = jnp.zeros_like(flat_z)
    inputs, codes, codebook_terms, commitment_terms = [], [], [], []
    for level in range(self._depth):
      codebook = codebooks[self._codebook_index(level)]
      level_codes = nearest_code(residual, codebook)  # [n]
      q = jnp.take(codebook, level_codes, axis=0)  # [n, d]
      total = total + q  # q_0 + ... + q_level
      # Codebook loss per level, ||sg(r_l) - q_l||^2: only the code chosen at this level moves,
      # towards the vectors it quantized (the k-means step that the EMA update also takes).
      codebook_terms.append(quantization.codebook_loss(z=residual, q=q))
      # Commitment over partial sums (Lee et al. 2022, eq. 5): ||z - sg(q_0 + ... + q_l)||^2.
      commitment_terms.append(quantization.commitment_loss(z=flat_z, q=total))
      inputs.append(residual)
      codes.append(level_codes)
      residual = residual - q
    codes = jnp.stack(codes, axis=-1)  # [n, depth]

    # Straight-through estimator (van den Oord et al. 2017, Sec. 3.2): the forward value is the
    # quantized vector, but sg() hides the non-differentiable nearest-code lookup from the
    # gradient, so d z_q / d z is the identity and the decoder's gradient reaches the encoder
    # unchanged.
    quantized = total.reshape(z.shape).astype(z.dtype)
    z_q = z + jax.lax.stop_gradient(quantized - z)

    if self.ema_decay > 0.0:
      codebook_loss = jnp.zeros((), jnp.float32)
    else:
      codebook_loss = jnp.mean(sum(codebook_terms)).astype(jnp.float32)
    aux = {
        "codebook_loss": codebook_loss,
        "commitment_loss": jnp.mean(sum(commitment_terms)).astype(jnp.float32),
        "perplexity": jnp.mean(jnp.stack([
            quantization.perplexity(codes=codes[:, level], num_codes=self.num_codes)
            for level in range(self._depth)])),
        "usage": jnp.mean(jnp.stack([
            quantization.usage(codes=codes[:, level], num_codes=self.num_codes)
            for level in range(self._depth)])),
    }
    if train and self.ema_decay > 0.0 and not self.is_initializing():
      self._update_codebooks(inputs, codes)
    return z_q, codes.reshape(*z.shape[:-1], self._depth), aux

  def _update_codebooks(self, inputs: list[Array], codes: Array) -> None:
    """EMA update (and restarts) of each codebook from the vectors it quantized: `inputs[l]`
    `[n, d]` are level l's inputs, `codes [n, depth]` its choices."""
    rngs = None
    if self.dead_code_threshold > 0.0:
      rngs = jax.random.split(self.make_rng("quantizer"), self._num_codebooks)
    stacked = [self.codebook_var.value, self.cluster_size_var.value, self.embed_sum_var.value]
    if not self._stacked:
      stacked = [a[None] for a in stacked]
    new_stats = []
    for index in range(self._num_codebooks):
      levels = [l for l in range(self._depth) if self._codebook_index(l) == index]
      z = jnp.concatenate([inputs[l] for l in levels], axis=0)
      z_codes = jnp.concatenate([codes[:, l] for l in levels], axis=0)
      stats = CodebookStats(codebook=stacked[0][index], cluster_size=stacked[1][index],
                            embed_sum=stacked[2][index])
      stats = quantization.ema_codebook_update(stats=stats, z=z, codes=z_codes,
                                               decay=self.ema_decay, epsilon=self.epsilon)
      if rngs is not None:
        stats = restart_dead_codes(stats=stats, z=z, threshold=self.dead_code_threshold,
                                   rng=rngs[index])
      new_stats.append(stats)
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *new_stats)
    if not self._stacked:
      stacked = jax.tree_util.tree_map(lambda a: a[0], stacked)
    self.codebook_var.value = stacked.codebook
    self.cluster_size_var.value = stacked.cluster_size
    self.embed_sum_var.value = stacked.embed_sum

  def decode(self, codes: Array) -> Array:
    """codes `[..., depth]` int -> `[..., code_dim]` float: sum over levels of the looked-up
    codes. Codes >= num_codes decode to NaN (`jnp.take`'s fill mode); negative ones count from
    the end, as in NumPy.

    Raises:
      ValueError: if codes are not integers or their last axis is not depth.
    """
    codes = jnp.asarray(codes)
    if codes.ndim < 1 or codes.shape[-1] != self._depth:
      raise ValueError(f"decode takes codes [..., depth={self._depth}] (one code per level), got "
                       f"shape {codes.shape}; pass the codes this quantizer returned "
                       "(VectorQuantizer codes keep a last axis of size 1).")
    if not jnp.issubdtype(codes.dtype, jnp.integer):
      raise ValueError(f"decode takes integer codes, got {codes.dtype}; cast them to int32.")
    codebooks = self._codebooks()
    total = jnp.zeros((*codes.shape[:-1], self.code_dim), codebooks.dtype)
    for level in range(self._depth):
      total = total + jnp.take(codebooks[self._codebook_index(level)], codes[..., level], axis=0)
    return total


class VectorQuantizer(_Quantizer):
  """The VQ-VAE bottleneck (van den Oord et al. 2017): each vector to its nearest code.

  Behaves exactly as `ResidualQuantizer(depth=1)` with the same codebook (module docstring).
  Variables: "params"/"codebook" [num_codes, code_dim] when `ema_decay == 0`; otherwise
  "quantizer"/{"codebook" [num_codes, code_dim], "cluster_size" [num_codes],
  "embed_sum" [num_codes, code_dim]}.

  Attributes:
    num_codes: K, the codebook size (>= 1).
    code_dim: d, the size of z's last axis (>= 1).
    ema_decay: 0 for a parameter codebook trained by the codebook loss; in (0, 1) for an EMA
      codebook updated when `train=True` (0.99 in the paper).
    epsilon: Laplace smoothing pseudo-count of the EMA cluster sizes.
    dead_code_threshold: > 0 restarts codes whose EMA cluster size falls below it (needs
      ema_decay > 0 and the "quantizer" rng).
    codebook_init: (rng, shape, dtype) -> initial codebook.
  """

  num_codes: int
  code_dim: int
  ema_decay: float = 0.0
  epsilon: float = 1e-5
  dead_code_threshold: float = 0.0
  codebook_init: Initializer = default_codebook_init

  @property
  def _depth(self) -> int:
    return 1

  @property
  def _shared(self) -> bool:
    return True

  @property
  def _stacked(self) -> bool:
    return False


class ResidualQuantizer(_Quantizer):
  """Residual quantization (Lee et al. 2022, Sec. 3.1): `depth` greedy levels, each quantizing
  what the levels before it left over; codes `[..., depth]`.

  Variables: "params"/"codebook" [num_codebooks, num_codes, code_dim] when `ema_decay == 0`,
  otherwise the "quantizer" collection with the same leading axis (module docstring);
  num_codebooks is 1 with `shared_codebook`, else depth.

  Attributes:
    num_codes: K, the size of each codebook (>= 1).
    code_dim: d, the size of z's last axis (>= 1).
    depth: D, the number of levels (>= 1).
    shared_codebook: one codebook for all levels (the paper's choice) instead of one per level.
    ema_decay, epsilon, dead_code_threshold, codebook_init: as in `VectorQuantizer`; a shared
      EMA codebook is updated from all levels' inputs together.
  """

  num_codes: int
  code_dim: int
  depth: int
  shared_codebook: bool = False
  ema_decay: float = 0.0
  epsilon: float = 1e-5
  dead_code_threshold: float = 0.0
  codebook_init: Initializer = default_codebook_init

  @property
  def _depth(self) -> int:
    return self.depth

  @property
  def _shared(self) -> bool:
    return self.shared_codebook or self.depth == 1

  @property
  def _stacked(self) -> bool:
    return True
