"""gen_jax.nn.quantizers and gen_jax.losses.quantization: decoding equals the forward value, the
straight-through gradient, nearest codes against brute force, the EMA update against its closed
form worked by hand, dead-code restarts, the non-increasing error of residual levels with a zero
code (and its failure without one), the losses' values and gradients, code statistics worked by
hand, VectorQuantizer == ResidualQuantizer(depth=1), and argument checks.

Codebooks are set by hand (`_variables`), never trained, so every oracle below is computed from
arrays the test chose."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.errors import SettingError
from gen_jax.losses import quantization
from gen_jax.nn import quantizers

RNG = {"quantizer": jax.random.PRNGKey(7)}


def _variables(module, codebook):
  """The variables of `module` with its codebook set to `codebook` (float32 numpy, the
  variable's shape): a parameter, or the "quantizer" collection in its initial state
  (cluster_size 1, embed_sum = codebook)."""
  codebook = jnp.asarray(codebook, jnp.float32)
  if module.ema_decay > 0:
    return {"quantizer": {"codebook": codebook, "cluster_size": jnp.ones(codebook.shape[:-1]),
                          "embed_sum": codebook}}
  return {"params": {"codebook": codebook}}


def _apply(module, variables, z, train=False):
  """(z_q, codes, aux), new "quantizer" collection ({} for a parameter codebook)."""
  return module.apply(variables, z, train=train, mutable=["quantizer"], rngs=RNG)


def _lookup_sum(codebooks, codes, shared):
  """NumPy oracle of decode: codebooks [L, K, d], codes [..., D] -> [..., d] float32, summed
  level by level in the same order as the quantizer (so float32 rounding is identical)."""
  total = np.zeros((*codes.shape[:-1], codebooks.shape[-1]), np.float32)
  for level in range(codes.shape[-1]):
    total = total + codebooks[0 if shared else level][codes[..., level]]
  return total


def _random(seed, shape, scale=1.0):
  return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# decode == forward value; straight-through gradient.
# ----------------------------------------------------------------------------------------------

CONFIGS = [  # (depth, shared)
    (1, False), (2, False), (2, True), (4, False), (4, True)]


@pytest.mark.parametrize("depth, shared", CONFIGS)
def test_decode_equals_forward_value(depth, shared):
  k, d = 16, 4
  module = quantizers.ResidualQuantizer(k, d, depth, shared_codebook=shared)
  num_codebooks = 1 if shared else depth
  codebooks = _random(0, (num_codebooks, k, d), scale=1.0 / (np.arange(num_codebooks) + 1)[
      :, None, None])  # deeper codebooks smaller, as trained ones are
  variables = _variables(module, codebooks)
  z = _random(1, (2, 3, 5, d))
  (z_q, codes, _), _ = _apply(module, variables, z)
  assert codes.shape == (2, 3, 5, depth) and codes.dtype == jnp.int32
  if depth > 1:  # deeper levels are used, so decoding level 0 alone would be caught
    assert np.any(np.asarray(codes[..., 1:]) != 0)
  decoded = module.apply(variables, codes, method=module.decode)
  np.testing.assert_array_equal(decoded, _lookup_sum(codebooks, np.asarray(codes), shared))
  # z_q = z + (q - z) in float32: equal to q up to the rounding of one subtraction and one sum.
  np.testing.assert_allclose(z_q, decoded, rtol=0, atol=1e-6)


def test_vector_quantizer_decode_equals_forward_value_after_ema_train_step():
  """With an EMA codebook, the forward pass (train=True) quantizes with the codebook it was
  given; decoding with those variables reproduces z_q, decoding with the updated ones does not."""
  module = quantizers.VectorQuantizer(8, 3, ema_decay=0.5)
  variables = _variables(module, _random(2, (8, 3)))
  z = _random(3, (4, 6, 3))
  (z_q, codes, _), state = _apply(module, variables, z, train=True)
  np.testing.assert_allclose(z_q, module.apply(variables, codes, method=module.decode), atol=1e-6)
  assert not np.allclose(z_q, module.apply(state, codes, method=module.decode), atol=1e-3)


@pytest.mark.parametrize("module", [
    quantizers.VectorQuantizer(8, 4),
    quantizers.ResidualQuantizer(8, 4, 3),
    quantizers.ResidualQuantizer(8, 4, 3, shared_codebook=True, ema_decay=0.9,
                                 dead_code_threshold=0.5)], ids=["vq", "rq", "rq_ema"])
def test_straight_through_gradient_is_identity(module):
  z = _random(4, (2, 5, 4))
  w = _random(5, (2, 5, 4))
  variables = module.init(jax.random.PRNGKey(0), z)

  def objective(z):
    (z_q, _, _), _ = module.apply(variables, z, train=True, mutable=["quantizer"], rngs=RNG)
    return jnp.sum(z_q * w)

  np.testing.assert_array_equal(jax.jit(jax.grad(objective))(z), w)


# ----------------------------------------------------------------------------------------------
# Nearest codes.
# ----------------------------------------------------------------------------------------------


def test_codes_are_the_brute_force_nearest_codes():
  k, d = 32, 6
  codebook = _random(6, (k, d))
  z = _random(7, (4, 5, 7, d))
  # Oracle: every distance in float64, argmin over codes.
  distances = np.sum((z.astype(np.float64)[..., None, :] - codebook[:, :]) ** 2, axis=-1)
  expected = np.argmin(distances, axis=-1)
  # The data must leave no near-tie that float32 rounding of the expanded distance could flip:
  # otherwise a failure would say nothing about the code.
  two_smallest = np.sort(distances, axis=-1)[..., :2]
  assert np.min(two_smallest[..., 1] - two_smallest[..., 0]) > 1e-3

  module = quantizers.VectorQuantizer(k, d)
  (_, codes, _), _ = _apply(module, _variables(module, codebook), z)
  np.testing.assert_array_equal(codes[..., 0], expected)
  np.testing.assert_array_equal(quantizers.nearest_code(z.reshape(-1, d), codebook),
                                expected.reshape(-1))
  # Level 1 of a residual quantizer is the nearest code to the level-0 residual.
  rq = quantizers.ResidualQuantizer(k, d, 2)
  codebooks = np.stack([codebook, _random(8, (k, d), scale=0.5)])
  (_, rq_codes, _), _ = _apply(rq, _variables(rq, codebooks), z)
  residual = z.astype(np.float64) - codebook[expected]
  level1 = np.argmin(np.sum((residual[..., None, :] - codebooks[1]) ** 2, axis=-1), axis=-1)
  np.testing.assert_array_equal(rq_codes, np.stack([expected, level1], axis=-1))


# ----------------------------------------------------------------------------------------------
# EMA update and dead-code restarts.
# ----------------------------------------------------------------------------------------------


def test_ema_update_equals_closed_form_by_hand():
  stats = quantization.CodebookStats(
      codebook=jnp.zeros((3, 2)),  # not read
      cluster_size=jnp.array([1.0, 2.0, 0.5]),
      embed_sum=jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
  z = jnp.array([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0], [2.0, -2.0], [5.0, 1.0]])
  codes = jnp.array([0, 0, 1, 1, 0])  # code 2 unused
  # decay 0.75, not 0.5, so that swapping decay and 1 - decay changes the result.
  new = quantization.ema_codebook_update(stats=stats, z=z, codes=codes, decay=0.75, epsilon=0.25)
  # Counts n = [3, 2, 0]; sums s_0 = [9, 7], s_1 = [2, -2], s_2 = [0, 0].
  # N = 0.75 [1, 2, 0.5] + 0.25 [3, 2, 0] = [1.5, 2, 0.375]                  (eq. 6)
  # m = 0.75 [[1, 0], [0, 2], [1, 1]] + 0.25 [[9, 7], [2, -2], [0, 0]]       (eq. 7)
  #   = [[3, 1.75], [0.5, 1], [0.75, 0.75]]
  # Laplace: sum N = 3.875, N~ = (N + 0.25) / (3.875 + 3 * 0.25) * 3.875
  #   = [1.75, 2.25, 0.625] * 31 / 37; e = m / N~                           (eq. 8)
  np.testing.assert_allclose(new.cluster_size, [1.5, 2.0, 0.375], rtol=1e-6)
  np.testing.assert_allclose(new.embed_sum, [[3.0, 1.75], [0.5, 1.0], [0.75, 0.75]], rtol=1e-6)
  smoothed = np.array([1.75, 2.25, 0.625]) * 31 / 37
  np.testing.assert_allclose(
      new.codebook,
      [[3.0 / smoothed[0], 1.75 / smoothed[0]], [0.5 / smoothed[1], 1.0 / smoothed[1]],
       [0.75 / smoothed[2], 0.75 / smoothed[2]]], rtol=1e-6)


@pytest.mark.parametrize("module", [
    quantizers.VectorQuantizer(5, 3, ema_decay=0.9),
    quantizers.ResidualQuantizer(5, 3, 2, ema_decay=0.9)], ids=["vq", "rq"])
def test_ema_codebook_is_not_a_parameter_and_starts_consistent(module):
  """The EMA codebook lives in "quantizer", starts with cluster_size 1 and embed_sum = codebook
  (so that the smoothed codebook embed_sum / N~ is the initial codebook), and `init`, even with
  train=True, does not update it."""
  variables = module.init(jax.random.PRNGKey(0), _random(20, (7, 3)), train=True)
  assert set(variables) == {"quantizer"}
  state = variables["quantizer"]
  leading = (2,) if isinstance(module, quantizers.ResidualQuantizer) else ()
  assert state["codebook"].shape == (*leading, 5, 3)
  np.testing.assert_array_equal(state["cluster_size"], np.ones((*leading, 5)))
  np.testing.assert_array_equal(state["embed_sum"], state["codebook"])
  assert np.all(np.abs(np.asarray(state["codebook"])) <= np.sqrt(3.0 / 3) + 1e-6)
  assert np.std(np.asarray(state["codebook"])) > 0.3
  params_only = quantizers.VectorQuantizer(5, 3).init(jax.random.PRNGKey(0), jnp.zeros((7, 3)))
  assert set(params_only) == {"params"}


@pytest.mark.parametrize("depth, shared", [(1, False), (2, False), (2, True)])
def test_module_ema_step_updates_each_codebook_from_the_vectors_it_quantized(depth, shared):
  """The "quantizer" collection after one train step equals `ema_codebook_update` of each
  level's inputs (z, then the residual), pooled over levels for a shared codebook."""
  k, d, decay, eps = 6, 3, 0.8, 1e-3
  module = quantizers.ResidualQuantizer(k, d, depth, shared_codebook=shared, ema_decay=decay,
                                        epsilon=eps)
  num_codebooks = 1 if shared else depth
  codebooks = _random(9, (num_codebooks, k, d))
  z = _random(10, (3, 7, d))
  (_, codes, aux), state = jax.jit(lambda z: _apply(module, _variables(module, codebooks), z,
                                                    train=True))(z)
  assert float(aux["codebook_loss"]) == 0.0
  codes = np.asarray(codes).reshape(-1, depth)
  inputs, residual = [], z.reshape(-1, d)
  for level in range(depth):
    inputs.append(residual)
    residual = residual - codebooks[0 if shared else level][codes[:, level]]
  for index in range(num_codebooks):
    levels = range(depth) if shared else [index]
    expected = quantization.ema_codebook_update(
        stats=quantization.CodebookStats(codebook=codebooks[index],
                                         cluster_size=jnp.ones(k), embed_sum=codebooks[index]),
        z=np.concatenate([inputs[l] for l in levels]),
        codes=np.concatenate([codes[:, l] for l in levels]), decay=decay, epsilon=eps)
    for name in ("codebook", "cluster_size", "embed_sum"):
      np.testing.assert_allclose(state["quantizer"][name][index], getattr(expected, name),
                                 rtol=1e-5, atol=1e-6)
  # Eval mode leaves the collection alone.
  _, unchanged = _apply(module, _variables(module, codebooks), z, train=False)
  np.testing.assert_array_equal(unchanged["quantizer"]["codebook"], codebooks)


def _far_code_batch():
  """A codebook whose code 2 is far from every vector of the batch: z [16, 2] near codes 0 and 1
  (both are used), and no vector anywhere near (100, 100)."""
  codebook = np.array([[0.0, 0.0], [1.0, 1.0], [100.0, 100.0]], np.float32)
  z = _random(11, (16, 2), scale=0.2) + np.repeat([[0.0, 0.0], [1.0, 1.0]], 8, axis=0)
  return codebook, z.astype(np.float32)


def test_dead_code_is_restarted_to_an_encoder_output():
  codebook, z = _far_code_batch()
  # decay 0.5: an unused code's cluster size falls 1 -> 0.5 < 0.6; a used one stays >= 1.
  module = quantizers.VectorQuantizer(3, 2, ema_decay=0.5, dead_code_threshold=0.6)
  (_, codes, _), state = _apply(module, _variables(module, codebook), z, train=True)
  assert set(np.asarray(codes).ravel()) == {0, 1}
  new = state["quantizer"]
  matches = np.all(np.asarray(new["codebook"][2]) == z, axis=-1)
  assert np.any(matches), f"code 2 is {new['codebook'][2]}, not a row of z"
  assert float(new["cluster_size"][2]) == 1.0
  np.testing.assert_array_equal(new["embed_sum"][2], new["codebook"][2])
  # Live codes take the plain EMA update.
  expected = quantization.ema_codebook_update(
      stats=quantization.CodebookStats(codebook=codebook, cluster_size=jnp.ones(3),
                                       embed_sum=codebook),
      z=z, codes=np.asarray(codes)[..., 0], decay=0.5, epsilon=module.epsilon)
  np.testing.assert_allclose(new["codebook"][:2], expected.codebook[:2], rtol=1e-6)
  np.testing.assert_allclose(new["cluster_size"][:2], expected.cluster_size[:2], rtol=1e-6)
  # Without the threshold the code stays where the EMA puts it, far from the data.
  plain = quantizers.VectorQuantizer(3, 2, ema_decay=0.5)
  _, plain_state = _apply(plain, _variables(plain, codebook), z, train=True)
  assert float(np.min(plain_state["quantizer"]["codebook"][2])) > 40.0


def test_dead_code_restart_in_a_deeper_level_uses_a_residual():
  """Level 1 of a residual quantizer quantizes residuals, so its restarted code is one."""
  codebook, z = _far_code_batch()
  module = quantizers.ResidualQuantizer(3, 2, 2, ema_decay=0.5, dead_code_threshold=0.6)
  level1 = np.array([[0.05, 0.05], [-0.05, 0.0], [100.0, -100.0]], np.float32)
  variables = _variables(module, np.stack([codebook, level1]))
  (_, codes, _), state = _apply(module, variables, z, train=True)
  codes = np.asarray(codes)
  assert 2 not in codes[:, 1]
  residuals = z - codebook[codes[:, 0]]
  assert np.any(np.all(np.asarray(state["quantizer"]["codebook"][1, 2]) == residuals, axis=-1))


def test_restarts_draw_distinct_vectors_when_the_batch_is_large_enough():
  """All four codes dead, four vectors: the new codebook is a permutation of the vectors."""
  z = _random(12, (4, 3))
  stats = quantization.CodebookStats(codebook=jnp.full((4, 3), 50.0),
                                     cluster_size=jnp.zeros(4), embed_sum=jnp.zeros((4, 3)))
  new = quantizers.restart_dead_codes(stats=stats, z=z, threshold=0.1,
                                      rng=jax.random.PRNGKey(3))
  order = np.argsort(np.asarray(new.codebook)[:, 0])
  np.testing.assert_array_equal(np.asarray(new.codebook)[order], z[np.argsort(z[:, 0])])
  np.testing.assert_array_equal(new.cluster_size, np.ones(4))


# ----------------------------------------------------------------------------------------------
# Residual levels never increase the error, when each codebook contains the zero vector.
# ----------------------------------------------------------------------------------------------


def _errors_by_depth(codebooks, z, codes, shared):
  """[D + 1, n]: ||z - sum_{l < L} q_l||^2 for L = 0..D, in exact integer arithmetic."""
  total = np.zeros_like(z)
  errors = [np.sum(z ** 2, axis=-1)]
  for level in range(codes.shape[-1]):
    total = total + codebooks[0 if shared else level][codes[:, level]]
    errors.append(np.sum((z - total) ** 2, axis=-1))
  return np.stack(errors)


@pytest.mark.parametrize("shared", [False, True])
def test_residual_error_is_non_increasing_with_a_zero_code(shared):
  """Level l picks q_l = argmin_e ||r_l - e||^2, so ||r_{l+1}||^2 = min_e ||r_l - e||^2. This is
  <= ||r_l||^2 = ||r_l - 0||^2 only when some code is at least as close to r_l as the zero
  vector, guaranteed for every r_l when the codebook contains 0; greedy nearest codes alone
  guarantee nothing (below). So every codebook here has a zero row. The data are small integers:
  every distance, residual and error is then exact in float32 (all far below 2^24), so the
  inequality holds exactly, not up to rounding, and ties (a code as good as 0) give equality."""
  rng = np.random.default_rng(13)
  depth, k, d = 4, 8, 3
  codebooks = rng.integers(-3, 4, (1 if shared else depth, k, d)).astype(np.float32)
  codebooks[:, 5] = 0.0  # the zero code, not at index 0 so that ties to 0 are not the default
  z = rng.integers(-9, 10, (300, d)).astype(np.float32)
  module = quantizers.ResidualQuantizer(k, d, depth, shared_codebook=shared)
  (_, codes, _), _ = _apply(module, _variables(module, codebooks), z)
  errors = _errors_by_depth(codebooks, z, np.asarray(codes), shared)
  assert np.all(np.diff(errors, axis=0) <= 0)
  assert np.sum(np.diff(errors, axis=0) < 0) > 300  # and the levels do reduce it


def test_residual_error_can_increase_without_a_zero_code():
  """The counterexample to the greedy argument without 0: z equal to a code has error 0 after
  level 0, and level 1, with no zero code, must move it away."""
  k, d = 4, 2
  codebooks = np.array([[[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0], [3.0, 3.0]]], np.float32)
  z = codebooks[0, [1, 3]]
  module = quantizers.ResidualQuantizer(k, d, 2, shared_codebook=True)
  (_, codes, _), _ = _apply(module, _variables(module, codebooks), z)
  errors = _errors_by_depth(codebooks, z, np.asarray(codes), True)
  np.testing.assert_array_equal(errors[1], [0.0, 0.0])
  np.testing.assert_array_equal(errors[2], [1.0, 1.0])  # the smallest code, [1, 0], has norm 1


# ----------------------------------------------------------------------------------------------
# Losses: values and gradients, per function and through the module.
# ----------------------------------------------------------------------------------------------


def test_loss_functions_values_and_gradients():
  z = _random(14, (2, 3, 4))
  q = _random(15, (2, 3, 4))
  expected = np.sum((z - q) ** 2, axis=-1)  # [2, 3]
  for loss_fn in (quantization.codebook_loss, quantization.commitment_loss):
    np.testing.assert_allclose(loss_fn(z=z, q=q), expected, rtol=1e-6)
  dz, dq = jax.grad(lambda z, q: jnp.sum(quantization.codebook_loss(z=z, q=q)), (0, 1))(z, q)
  np.testing.assert_array_equal(dz, 0.0)
  np.testing.assert_allclose(dq, 2 * (q - z), rtol=1e-6)
  dz, dq = jax.grad(lambda z, q: jnp.sum(quantization.commitment_loss(z=z, q=q)), (0, 1))(z, q)
  np.testing.assert_allclose(dz, 2 * (z - q), rtol=1e-6)
  np.testing.assert_array_equal(dq, 0.0)
  with pytest.raises(ValueError, match="same shape"):
    quantization.codebook_loss(z=z, q=q[..., :3])


def test_residual_losses_match_the_paper_forms():
  """commitment = mean_n sum_l ||z - sg(q_<=l)||^2 (RQ-VAE eq. 5): its gradient is 2/n
  sum_l (z - q_<=l) for z and 0 for the codebooks. codebook = mean_n sum_l ||sg(r_l) - q_l||^2:
  its gradient is 0 for z and, for code c of level l, 2/n sum over the vectors that chose it of
  (q_l - r_l)."""
  depth, k, d = 3, 5, 2
  module = quantizers.ResidualQuantizer(k, d, depth)
  codebooks = _random(16, (depth, k, d))
  z = _random(17, (12, d))
  (_, codes, aux), _ = _apply(module, _variables(module, codebooks), z)
  codes = np.asarray(codes)
  n = z.shape[0]
  partial, residual = np.zeros_like(z), z
  commitment, grad_z, grad_codebooks = 0.0, np.zeros_like(z), np.zeros_like(codebooks)
  for level in range(depth):
    q = codebooks[level][codes[:, level]]
    np.add.at(grad_codebooks[level], codes[:, level], 2.0 / n * (q - residual))
    partial = partial + q
    residual = residual - q
    commitment += np.sum((z - partial) ** 2) / n
    grad_z += 2.0 / n * (z - partial)
  np.testing.assert_allclose(aux["commitment_loss"], commitment, rtol=1e-5)
  np.testing.assert_allclose(aux["codebook_loss"], commitment, rtol=1e-5)  # same value

  def loss(params, z, name):
    (_, _, aux), _ = _apply(module, {"params": params}, z)
    return aux[name]

  params = {"codebook": jnp.asarray(codebooks)}
  g_params, g_z = jax.grad(loss, (0, 1))(params, z, "commitment_loss")
  np.testing.assert_array_equal(g_params["codebook"], 0.0)
  np.testing.assert_allclose(g_z, grad_z, rtol=1e-5, atol=1e-6)
  g_params, g_z = jax.grad(loss, (0, 1))(params, z, "codebook_loss")
  np.testing.assert_array_equal(g_z, 0.0)
  np.testing.assert_allclose(g_params["codebook"], grad_codebooks, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Code statistics.
# ----------------------------------------------------------------------------------------------


def test_perplexity_and_usage_by_hand():
  # p = [1/2, 1/4, 1/4, 0]: H = 1/2 ln 2 + 2 * 1/4 ln 4 = 3/2 ln 2, perplexity 2^(3/2).
  codes = jnp.array([[0, 0], [1, 2]])
  np.testing.assert_allclose(quantization.perplexity(codes=codes, num_codes=4), 2 ** 1.5,
                             rtol=1e-6)
  np.testing.assert_allclose(quantization.usage(codes=codes, num_codes=4), 0.75)
  np.testing.assert_allclose(quantization.perplexity(codes=jnp.full(9, 3), num_codes=5), 1.0)
  np.testing.assert_allclose(quantization.usage(codes=jnp.full(9, 3), num_codes=5), 0.2)
  np.testing.assert_allclose(quantization.perplexity(codes=jnp.arange(6) % 3, num_codes=3), 3.0,
                             rtol=1e-6)


def test_module_statistics_are_per_level_means():
  """Shared codebook [0, 1, 2, 3] (d = 1), z = [0, 0, 1, 2]: level 0 codes [0, 0, 1, 2]
  (perplexity 2^1.5, usage 3/4); the residuals are 0, so level 1 codes [0, 0, 0, 0]
  (perplexity 1, usage 1/4)."""
  module = quantizers.ResidualQuantizer(4, 1, 2, shared_codebook=True)
  codebook = np.arange(4, dtype=np.float32).reshape(1, 4, 1)
  (_, codes, aux), _ = _apply(module, _variables(module, codebook), np.array([[0.0], [0.0], [1.0],
                                                                             [2.0]], np.float32))
  np.testing.assert_array_equal(codes, [[0, 0], [0, 0], [1, 0], [2, 0]])
  np.testing.assert_allclose(aux["perplexity"], (2 ** 1.5 + 1) / 2, rtol=1e-6)
  np.testing.assert_allclose(aux["usage"], (0.75 + 0.25) / 2, rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# VectorQuantizer == ResidualQuantizer(depth=1).
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ema_kwargs", [{}, {"ema_decay": 0.9, "dead_code_threshold": 0.95}],
                         ids=["params", "ema_restarts"])
def test_vector_quantizer_equals_depth_one_residual_quantizer(ema_kwargs):
  k, d = 6, 3
  vq = quantizers.VectorQuantizer(k, d, **ema_kwargs)
  rq = quantizers.ResidualQuantizer(k, d, 1, **ema_kwargs)
  codebook = _random(18, (k, d))
  codebook[4] += 30.0  # unused, so restarts (when on) change the state
  z = _random(19, (2, 4, d))
  vq_vars, rq_vars = _variables(vq, codebook), _variables(rq, codebook[None])
  (vq_zq, vq_codes, vq_aux), vq_state = _apply(vq, vq_vars, z, train=True)
  (rq_zq, rq_codes, rq_aux), rq_state = _apply(rq, rq_vars, z, train=True)
  np.testing.assert_array_equal(vq_zq, rq_zq)
  np.testing.assert_array_equal(vq_codes, rq_codes)
  assert vq_aux.keys() == rq_aux.keys() == {"codebook_loss", "commitment_loss", "perplexity",
                                            "usage"}
  for key in vq_aux:
    np.testing.assert_array_equal(vq_aux[key], rq_aux[key])
  for name in vq_state.get("quantizer", {}):
    np.testing.assert_array_equal(vq_state["quantizer"][name], rq_state["quantizer"][name][0])
  if ema_kwargs:
    assert np.abs(vq_state["quantizer"]["codebook"][4]).max() < 10.0  # restarted
  else:
    g_vq = jax.grad(lambda v: _apply(vq, v, z)[0][2]["codebook_loss"])(vq_vars)
    g_rq = jax.grad(lambda v: _apply(rq, v, z)[0][2]["codebook_loss"])(rq_vars)
    np.testing.assert_array_equal(g_vq["params"]["codebook"], g_rq["params"]["codebook"][0])
  np.testing.assert_array_equal(vq.apply(vq_vars, vq_codes, method=vq.decode),
                                rq.apply(rq_vars, rq_codes, method=rq.decode))


# ----------------------------------------------------------------------------------------------
# Argument checks.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    ({"depth": 0}, "set model.depth >= 1"),
    ({"num_codes": 0}, "set model.num_codes >= 1"),
    ({"code_dim": 0}, "set model.code_dim >= 1"),
    ({"ema_decay": 1.0}, "decay in"),
    ({"ema_decay": -0.5}, "decay in"),
    ({"epsilon": 0.0}, "must be > 0"),
    ({"dead_code_threshold": -1.0}, "use 0"),
    ({"dead_code_threshold": 0.5}, "set model.ema_decay > 0"),
])
def test_bad_arguments_are_refused(kwargs, message):
  args = {"num_codes": 4, "code_dim": 2, "depth": 2, **kwargs}
  with pytest.raises(SettingError, match=message):
    quantizers.ResidualQuantizer(**args)
  if "depth" not in kwargs:
    del args["depth"]
    with pytest.raises(SettingError, match=message):
      quantizers.VectorQuantizer(**args)


def test_bad_inputs_are_refused():
  module = quantizers.ResidualQuantizer(4, 2, 3)
  with pytest.raises(ValueError, match=r"code_dim=2\], got \(5, 3\)"):
    module.init(jax.random.PRNGKey(0), jnp.zeros((5, 3)))
  variables = module.init(jax.random.PRNGKey(0), jnp.zeros((5, 2)))
  with pytest.raises(ValueError, match=r"codes \[\.\.\., depth=3\]"):
    module.apply(variables, jnp.zeros((5, 2), jnp.int32), method=module.decode)
  with pytest.raises(ValueError, match="cast them to int32"):
    module.apply(variables, jnp.zeros((5, 3)), method=module.decode)
  vq = quantizers.VectorQuantizer(4, 2)
  vq_vars = vq.init(jax.random.PRNGKey(0), jnp.zeros((5, 2)))
  with pytest.raises(ValueError, match="last axis of size 1"):
    vq.apply(vq_vars, jnp.zeros((5,), jnp.int32), method=vq.decode)
