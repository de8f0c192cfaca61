"""The DCGAN players of gen_jax.nn.convnets: shapes, output range, upsampling, conditioning."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.nn import convnets

SHAPES = {(8, 8, 1): (16, 8, 4), (28, 28, 1): (8, 4, 4), (32, 32, 3): (8, 4, 4, 4)}


class Upsample(nn.Module):
  """An upsampling function as a module, to 4 channels."""

  fn: object

  @nn.compact
  def __call__(self, x):
    return self.fn(x, 4)


@pytest.mark.parametrize("image_shape", list(SHAPES), ids=lambda s: "x".join(map(str, s)))
def test_players_shapes_and_range_under_both_upsamplings(image_shape):
  widths = SHAPES[image_shape]
  z = 3.0 * jax.random.normal(jax.random.PRNGKey(0), (5, 6))
  for upsample_fn in (convnets.resize_upsample, convnets.transpose_upsample):
    gen = convnets.DCGANGenerator(image_shape=image_shape, widths=widths,
                                  upsample_fn=upsample_fn)
    images = gen.apply(gen.init(jax.random.PRNGKey(1), z), z)
    assert images.shape == (5, *image_shape)
    # tanh: strictly inside (-1, 1), and the latent matters.
    assert np.all(np.abs(np.asarray(images)) < 1.0)
    assert not np.allclose(images[0], images[1])
  disc = convnets.DCGANDiscriminator(widths=widths[::-1])
  logits = disc.apply(disc.init(jax.random.PRNGKey(2), images), images)
  assert logits.shape == (5,) and np.all(np.isfinite(np.asarray(logits)))


def test_the_two_upsamplings_double_any_resolution():
  x = jnp.ones((2, 7, 5, 3))
  for fn in (convnets.resize_upsample, convnets.transpose_upsample):
    module = Upsample(fn)
    assert module.apply(module.init(jax.random.PRNGKey(0), x), x).shape == (2, 14, 10, 4)


def test_resize_upsample_repeats_each_pixel_before_its_convolution():
  # With a kernel that is 1 at its centre tap and 0 elsewhere, the convolution is the
  # identity on each channel, so the output is each input pixel repeated as a 2x2 block.
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 2, 3, 1))
  module = Upsample(convnets.resize_upsample)
  kernel = jnp.zeros((3, 3, 1, 4)).at[1, 1, 0, :].set(1.0)
  params = {"params": {"Conv_0": {"kernel": kernel, "bias": jnp.zeros(4)}}}
  out = np.asarray(module.apply(params, x))
  expected = np.repeat(np.repeat(np.asarray(x), 2, 1), 2, 2)
  np.testing.assert_array_equal(out, np.repeat(expected, 4, -1))


def test_conditional_players_depend_on_the_label():
  gen = convnets.DCGANGenerator(image_shape=(8, 8, 1), widths=(16, 8, 8), num_classes=10)
  disc = convnets.DCGANDiscriminator(widths=(8, 8, 16), num_classes=10)
  z = jnp.tile(jax.random.normal(jax.random.PRNGKey(0), (1, 6)), (3, 1))
  labels = jnp.array([3, 3, 7])
  gen_params = gen.init(jax.random.PRNGKey(1), z, labels)
  images = np.asarray(gen.apply(gen_params, z, labels))
  np.testing.assert_array_equal(images[0], images[1])  # same latent, same label
  assert not np.allclose(images[0], images[2])  # same latent, another label
  same = jnp.asarray(np.repeat(images[:1], 3, 0))
  disc_params = disc.init(jax.random.PRNGKey(2), same, labels)
  logits = np.asarray(disc.apply(disc_params, same, labels))
  assert logits[0] == logits[1] and logits[0] != logits[2]
  with pytest.raises(ValueError, match="class-conditional"):
    gen.apply(gen_params, z)
  with pytest.raises(ValueError, match="unconditional"):
    convnets.DCGANDiscriminator(widths=(8,)).init(jax.random.PRNGKey(0), same, labels)


def test_generator_refuses_an_image_shape_it_cannot_reach():
  gen = convnets.DCGANGenerator(image_shape=(10, 10, 1), widths=(8, 8, 8))
  with pytest.raises(ValueError, match="not divisible"):
    gen.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))
