"""Tests of the pyramid ops and the cropped convolution."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from uncertainty_jax import layers




def test_downsample_is_block_mean():
  x = np.random.RandomState(0).randn(2, 8, 12, 3).astype(np.float32)
  expected = x.reshape(2, 4, 2, 6, 2, 3).mean(axis=(2, 4))
  chex.assert_trees_all_close(jax.jit(layers.downsample, static_argnums=1)(x, 2), expected,
                              atol=1e-6)
  chex.assert_trees_all_close(layers.downsample(x, 1), x)


def test_downsample_rejects_indivisible_size():
  with pytest.raises(ValueError, match="not divisible by factor 4"):
    layers.downsample(np.zeros((1, 6, 8, 3)), 4)


@pytest.mark.parametrize("shape", [(1, 4, 4, 3), (2, 3, 5, 8, 1), (7, 6, 2)])
def test_upsample2x_matches_bilinear_resize(shape):
  x = np.random.RandomState(1).randn(*shape).astype(np.float32)
  out_shape = shape[:-3] + (2 * shape[-3], 2 * shape[-2], shape[-1])
  expected = jax.image.resize(x, out_shape, "bilinear")
  got = jax.jit(layers.upsample2x)(x)
  chex.assert_shape(got, out_shape)
  chex.assert_trees_all_close(got, expected, atol=1e-5)


def test_image_pyramid_sizes_and_finest_is_input():
  x = np.random.RandomState(2).randn(2, 32, 32, 3).astype(np.float32)
  pyr = layers.image_pyramid(x, 4)
  assert [p.shape[1] for p in pyr] == [4, 8, 16, 32]
  chex.assert_trees_all_close(pyr[-1], x)
  chex.assert_trees_all_close(pyr[0], x.reshape(2, 4, 8, 4, 8, 3).mean(axis=(2, 4)), atol=1e-6)


@pytest.mark.parametrize("kernel", [1, 3, 5, 7])
def test_valid_conv_equals_unpadded_conv(kernel):
  x = jnp.asarray(np.random.RandomState(3).randn(2, 13, 11, 5), jnp.float32)
  module = layers.ValidConv(6, kernel)
  variables = module.init(jax.random.PRNGKey(0), x)
  got = module.apply(variables, x)
  reference = nn.Conv(6, (kernel, kernel), padding="VALID")
  expected = reference.apply({"params": variables["params"]["conv"]}, x)
  chex.assert_shape(got, (2, 13 - kernel + 1, 11 - kernel + 1, 6))
  chex.assert_trees_all_close(got, expected, atol=1e-5)


def test_valid_conv_gradients_match_unpadded_conv():
  x = jnp.asarray(np.random.RandomState(4).randn(1, 9, 9, 2), jnp.float32)
  module = layers.ValidConv(3, 5)
  params = module.init(jax.random.PRNGKey(1), x)["params"]
  reference = nn.Conv(3, (5, 5), padding="VALID")
  g1 = jax.grad(lambda p: jnp.sum(module.apply({"params": p}, x) ** 2))(params)
  g2 = jax.grad(lambda p: jnp.sum(reference.apply({"params": p}, x) ** 2))(params["conv"])
  chex.assert_trees_all_close(g1["conv"], g2, atol=1e-4)


def test_valid_conv_rejects_even_kernel_and_small_input():
  with pytest.raises(ValueError, match="kernel_size must be odd"):
    layers.ValidConv(2, 4).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))
  with pytest.raises(ValueError, match="smaller than kernel 7"):
    layers.ValidConv(2, 7).init(jax.random.PRNGKey(0), jnp.zeros((1, 5, 8, 1)))
