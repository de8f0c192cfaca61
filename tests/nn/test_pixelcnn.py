"""gen_jax.nn.pixelcnn: causality in raster order, the receptive fields of both networks (the
plain stack's blind spot, the gated stacks' full field), class conditioning and input checks.

The receptive field of output (i, j) is read off the exact Jacobian: input position (i', j')
is in it when some output feature at (i, j) has a non-zero derivative with respect to some
input channel at (i', j'). Parameters are randomised (the zero-initialised head and all biases
included), so that no derivative vanishes for want of a non-zero weight."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.nn import pixelcnn

NETS = {"plain": pixelcnn.PixelCNN, "gated": pixelcnn.GatedPixelCNN}


def _random_params(net, x, labels, seed=0):
  """`net`'s parameters with every leaf moved by N(0, 0.3^2) noise (the zero head included)."""
  params = net.init(jax.random.PRNGKey(seed), x, labels)
  leaves, treedef = jax.tree_util.tree_flatten(params)
  rngs = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
  leaves = [p + 0.3 * jax.random.normal(rng, p.shape, p.dtype) for p, rng in zip(leaves, rngs)]
  return jax.tree_util.tree_unflatten(treedef, leaves)


def _dependence(net, shape, num_classes=0, batch=1, seed=0):
  """bool `[h, w, h, w]`: [i, j, i', j'] is True where some output feature at (i, j) of some
  example has a non-zero derivative with respect to some input channel at (i', j')."""
  x = jax.random.normal(jax.random.PRNGKey(seed + 2), (batch, *shape))
  labels = jnp.arange(batch) % num_classes if num_classes else None
  params = _random_params(net, x, labels, seed)
  # Example b's outputs depend on x[b] only, so the Jacobian of the sum over the batch holds
  # every example's Jacobian in its own slice: [h, w, out, batch, h, w, c].
  summed = lambda x: net.apply(params, x, labels).sum(axis=0)
  jacobian = np.asarray(jax.jit(jax.jacrev(summed))(x))
  return np.any(jacobian != 0.0, axis=(2, 3, 6))


def _before(h, w):
  """bool `[h, w, h, w]`: [i, j, i', j'] is True where (i', j') comes before (i, j) in raster
  order: the positions an autoregressive output may read."""
  order = np.arange(h * w).reshape(h, w)
  return order[None, None, :, :] < order[:, :, None, None]


def _plain_field(h, w, first_kernel_size, kernel_size, num_layers):
  """The plain PixelCNN's receptive fields, bool `[h, w, h, w]`, built from its masks alone: the
  offsets a path can take are the taps of the type A kernel plus one tap of the type B kernel
  per block (the residual path is the B centre tap); 1x1 layers add no offset."""
  def taps(size, include_centre):
    mask = pixelcnn.causal_mask(size, include_centre)
    return {(a - size // 2, b - size // 2) for a, b in zip(*np.nonzero(mask))}

  offsets = taps(first_kernel_size, False)
  for _ in range(num_layers):
    offsets = {(a + c, b + d) for a, b in offsets for c, d in taps(kernel_size, True)}
  field = np.zeros((h, w, h, w), bool)
  for i in range(h):
    for j in range(w):
      for a, b in offsets:
        if 0 <= i + a < h and 0 <= j + b < w:
          field[i, j, i + a, j + b] = True
  return field


def _gated_field(h, w, reach):
  """The gated PixelCNN's receptive fields, bool `[h, w, h, w]`, from its class docstring: rows
  i - 1 - reach..i - 1 over columns j - reach..j + reach, and columns j - reach..j - 1 of row i."""
  i, j, k, l = np.meshgrid(*map(np.arange, (h, w, h, w)), indexing="ij")
  above = (k < i) & (k >= i - 1 - reach) & (abs(l - j) <= reach)
  left = (k == i) & (l < j) & (l >= j - reach)
  return above | left


def test_causal_masks_are_the_papers_type_a_and_b():
  np.testing.assert_array_equal(pixelcnn.causal_mask(3, False),
                                [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
  np.testing.assert_array_equal(pixelcnn.causal_mask(3, True),
                                [[1, 1, 1], [1, 1, 0], [0, 0, 0]])
  mask = pixelcnn.causal_mask(5, False)
  assert mask[:2].all() and mask[2, :2].all() and not mask[2, 2:].any() and not mask[3:].any()


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("shape, num_classes",
                         [((8, 8, 1), 0), ((6, 9, 1), 0), ((8, 8, 3), 0), ((6, 9, 3), 5)],
                         ids=["8x8x1", "6x9x1", "8x8x3", "6x9x3-conditional"])
def test_outputs_depend_only_on_earlier_pixels(name, shape, num_classes):
  net = NETS[name](out_features=3, features=8, num_layers=2, first_kernel_size=5,
                   num_classes=num_classes)
  h, w, _ = shape
  dependence = _dependence(net, shape, num_classes)
  # Exactly zero at (i, j) itself and everything after it, for every (i, j) ...
  leaks = np.argwhere(dependence & ~_before(h, w))
  assert leaks.size == 0, f"outputs read later inputs, [i, j, i', j']: {leaks[:4].tolist()}"
  # ... and not vacuously: every output but the first reads some input.
  reads = dependence.reshape(h * w, h * w).any(axis=1)
  assert not reads[0] and reads[1:].all()


def test_gated_field_is_the_rectangle_of_its_depth():
  # One 3x3 gated layer after a 3x3 first layer: reach 1 + 1 = 2.
  net = pixelcnn.GatedPixelCNN(out_features=2, features=8, num_layers=1, first_kernel_size=3)
  np.testing.assert_array_equal(_dependence(net, (6, 9, 1), batch=2), _gated_field(6, 9, 2))


def test_gated_net_sees_all_the_past_where_the_plain_net_is_blind():
  h = w = 8
  first, kernel = 7, 3
  # Each gated layer widens the field by kernel // 2 on every side of the first layer's
  # first // 2; it covers an 8x8 image's past once that reach is max(h, w) - 1 = 7: 4 layers.
  depth = math.ceil((max(h, w) - 1 - first // 2) / (kernel // 2))
  assert depth == 4
  kwargs = dict(out_features=2, features=8, num_layers=depth, kernel_size=kernel,
                first_kernel_size=first)
  gated = _dependence(pixelcnn.GatedPixelCNN(**kwargs), (h, w, 1))
  np.testing.assert_array_equal(gated, _before(h, w))
  # The plain stack of the same depth reads exactly what its masks allow (a union over 4
  # examples, so that no field position is missed because a ReLU happened to be off) ...
  plain = _dependence(pixelcnn.PixelCNN(**kwargs), (h, w, 1), batch=4)
  np.testing.assert_array_equal(plain, _plain_field(h, w, first, kernel, depth))
  # ... which is not all the past. A type B 3x3 tap moves at most one column right per row up,
  # and the 7x7 type A tap at most 3 columns right of one row up, so (i - p, j + q) is read
  # only when q <= p + 2. For (4, 1): row 3 ends at column 4, row 2 at column 5, row 1 at 6.
  blind = [(3, 5), (3, 6), (3, 7), (2, 6), (2, 7), (1, 7)]
  seen = [(3, 4), (2, 5), (1, 6), (0, 7)]
  for i2, j2 in blind:
    assert not plain[4, 1, i2, j2] and gated[4, 1, i2, j2], (i2, j2)
  for i2, j2 in seen:
    assert plain[4, 1, i2, j2], (i2, j2)
  # So every pixel below the first row and in the first four columns misses some past pixel,
  # (i - 1, j + 4) at least, and every other pixel sees all its past.
  has_blind_spot = (_before(h, w) & ~plain).any(axis=(2, 3))
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  np.testing.assert_array_equal(has_blind_spot, (rows >= 1) & (cols <= 3))


@pytest.mark.parametrize("name", list(NETS))
def test_new_networks_output_zeros_of_float32(name):
  # The zero-initialised head: whatever the input, a new network predicts all zeros.
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 9, 3))
  net = NETS[name](out_features=5, features=8, num_layers=1, dtype=jnp.bfloat16)
  out = net.apply(net.init(jax.random.PRNGKey(1), x), x)
  assert out.shape == (2, 6, 9, 5) and out.dtype == jnp.float32
  np.testing.assert_array_equal(out, 0.0)


@pytest.mark.parametrize("name", list(NETS))
def test_labels_change_every_output(name):
  # The same image under labels 0, 1 and 2: each label moves every output position.
  net = NETS[name](out_features=2, features=8, num_layers=1, num_classes=3)
  x = jnp.broadcast_to(jax.random.normal(jax.random.PRNGKey(0), (1, 6, 9, 1)), (3, 6, 9, 1))
  labels = jnp.arange(3)
  out = np.asarray(net.apply(_random_params(net, x, labels), x, labels))
  for a, b in [(0, 1), (0, 2), (1, 2)]:
    assert np.all(np.any(out[a] != out[b], axis=-1)), (a, b)


@pytest.mark.parametrize("name", list(NETS))
def test_bad_settings_and_inputs_raise(name):
  cls = NETS[name]
  x = jnp.zeros((2, 8, 8, 1))
  rng = jax.random.PRNGKey(0)
  with pytest.raises(ValueError, match=r"kernel_size=4: must be odd .* use 5"):
    cls(out_features=2, kernel_size=4).init(rng, x)
  with pytest.raises(ValueError, match=r"first_kernel_size=1: must be odd and at least 3"):
    cls(out_features=2, first_kernel_size=1).init(rng, x)
  with pytest.raises(ValueError, match=r"class-conditional \(num_classes=3\): pass int labels"):
    cls(out_features=2, num_classes=3).init(rng, x)
  with pytest.raises(ValueError, match=r"class-conditional .* got \(3,\)"):
    cls(out_features=2, num_classes=3).init(rng, x, jnp.zeros(3, jnp.int32))
  with pytest.raises(ValueError, match=r"unconditional .* set num_classes > 0"):
    cls(out_features=2).init(rng, x, jnp.zeros(2, jnp.int32))
  with pytest.raises(ValueError, match=r"x \[batch, h, w, c\], got shape \(2, 8, 8\)"):
    cls(out_features=2).init(rng, x[..., 0])
