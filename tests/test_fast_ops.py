"""The faster convolution formulations compute XLA's convolutions: same outputs, same gradients."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from uncertainty_jax import layers
from uncertainty_jax.layers import conv as conv_lib
from uncertainty_jax.models import video_pred as models

_DIMS = ("NHWC", "HWIO", "NHWC")


def _lax_conv(x, kernel, padding):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=_DIMS)


def _value_and_grads(fn, x, kernel, cotangent):
  y, vjp = jax.vjp(fn, x, kernel)
  return (y,) + vjp(cotangent)


def _random(shape, seed):
  return jnp.asarray(np.random.RandomState(seed).randn(*shape), jnp.float32)


# (H, W, C, O, k): a rectangular map, an output smaller than the kernel, a 1x1 kernel.
_VALID_SHAPES = [(9, 11, 5, 6, 3), (8, 8, 7, 4, 5), (5, 6, 4, 5, 1)]


@pytest.mark.parametrize("method", conv_lib.METHODS)
@pytest.mark.parametrize("shape", _VALID_SHAPES)
def test_valid_conv2d_matches_lax_valid_conv_and_gradients(method, shape):
  h, w, c, o, k = shape
  x, kernel = _random((2, h, w, c), 0), _random((k, k, c, o), 1) / k
  cotangent = _random((2, h - k + 1, w - k + 1, o), 2)
  got = _value_and_grads(jax.jit(lambda a, b: layers.valid_conv2d(a, b, method)), x, kernel,
                         cotangent)
  expected = _value_and_grads(lambda a, b: _lax_conv(a, b, "VALID"), x, kernel, cotangent)
  chex.assert_shape(got[0], (2, h - k + 1, w - k + 1, o))
  chex.assert_trees_all_close(got, expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("method", conv_lib.SAME_METHODS)
@pytest.mark.parametrize("shape", [(9, 11, 5, 6, 3), (6, 6, 3, 8, 5)])
def test_same_conv2d_matches_lax_same_conv_and_gradients(method, shape):
  h, w, c, o, k = shape
  x, kernel = _random((2, h, w, c), 3), _random((k, k, c, o), 4) / k
  cotangent = _random((2, h, w, o), 5)
  got = _value_and_grads(jax.jit(lambda a, b: layers.same_conv2d(a, b, method)), x, kernel,
                         cotangent)
  expected = _value_and_grads(lambda a, b: _lax_conv(a, b, "SAME"), x, kernel, cotangent)
  chex.assert_trees_all_close(got, expected, atol=1e-4, rtol=1e-5)


def test_auto_same_method_uses_patch_gradient_where_measured_faster():
  assert conv_lib._auto_same_method((8, 32, 32, 256), (5, 5, 256, 512)) == "im2col_grad"
  assert conv_lib._auto_same_method((8, 32, 32, 512), (5, 5, 512, 256)) == "xla"
  assert conv_lib._auto_same_method((8, 16, 16, 256), (3, 3, 256, 512)) == "xla"
  assert conv_lib._auto_same_method((8, 32, 32, 64), (5, 5, 64, 128)) == "xla"


def test_conv_methods_reject_unknown_names_and_even_kernels():
  x = jnp.zeros((1, 6, 6, 2))
  with pytest.raises(ValueError, match="method: unknown method 'fft'"):
    layers.valid_conv2d(x, jnp.zeros((3, 3, 2, 1)), "fft")
  with pytest.raises(ValueError, match="method: unknown method 'fft'"):
    layers.same_conv2d(x, jnp.zeros((3, 3, 2, 1)), "fft")
  with pytest.raises(ValueError, match="odd size"):
    layers.same_conv2d(x, jnp.zeros((4, 4, 2, 1)))
  with pytest.raises(ValueError, match="method: unknown method 'fft'"):
    layers.ValidConv(2, 3, method="fft").init(jax.random.PRNGKey(0), x)


class _WrappedConv(nn.Module):
  """The parameter layout ValidConv has always had: an `nn.Conv` named 'conv'."""

  @nn.compact
  def __call__(self, x):
    return nn.Conv(4, (5, 5), padding="VALID", kernel_init=layers.torch_uniform, name="conv")(x)


def test_valid_conv_parameters_are_those_of_a_wrapped_nn_conv():
  x = _random((2, 10, 10, 3), 6)
  variables = layers.ValidConv(4, 5).init(jax.random.PRNGKey(7), x)
  expected = _WrappedConv().init(jax.random.PRNGKey(7), x)
  chex.assert_trees_all_equal(variables, expected)
  chex.assert_trees_all_close(layers.ValidConv(4, 5).apply(variables, x),
                              _WrappedConv().apply(expected, x), atol=1e-5)


def _model1(num_scales=2, width=1 / 16):
  return models.architecture("model1", num_scales, width)


def test_generator_methods_share_parameters_outputs_and_gradients():
  gen_specs, _ = _model1()
  inputs = _random((2, 4, 32, 32, 3), 8) * 0.5
  plain = models.MultiScaleGenerator(gen_specs, conv_method="xla")
  fast = models.MultiScaleGenerator(gen_specs, conv_method="im2col_grad")
  params = plain.init(jax.random.PRNGKey(0), inputs)
  chex.assert_trees_all_equal(params, fast.init(jax.random.PRNGKey(0), inputs))

  def loss(module, p):
    return sum(jnp.sum(jnp.square(y - 0.1)) for y in module.apply(p, inputs))

  expected = jax.jit(jax.value_and_grad(lambda p: loss(plain, p)))(params)
  got = jax.jit(jax.value_and_grad(lambda p: loss(fast, p)))(params)
  chex.assert_trees_all_close(got, expected, atol=1e-4, rtol=1e-4)


def test_discriminator_methods_share_parameters_outputs_and_gradients():
  _, disc_specs = _model1(num_scales=4)
  inputs = _random((2, 4, 32, 32, 3), 9) * 0.5
  frames = layers.image_pyramid(_random((2, 32, 32, 3), 10) * 0.5, 4)
  plain = models.MultiScaleDiscriminator(disc_specs, conv_method="same_crop")
  fast = models.MultiScaleDiscriminator(disc_specs)
  params = plain.init(jax.random.PRNGKey(1), inputs, frames)
  chex.assert_trees_all_equal(params, fast.init(jax.random.PRNGKey(1), inputs, frames))

  def loss(module, p, f):
    return sum(jnp.sum(jnp.tanh(logit)) for logit in module.apply(p, inputs, f))

  grad = jax.value_and_grad(loss, argnums=(1, 2))
  expected = jax.jit(lambda p, f: grad(plain, p, f))(params, frames)
  got = jax.jit(lambda p, f: grad(fast, p, f))(params, frames)
  chex.assert_trees_all_close(got, expected, atol=1e-4, rtol=1e-4)


def _numpy_upsample_same_conv(x, kernel):
  """Nearest x2 upsampling (np.repeat), zero padding, then the correlation written as loops."""
  up = np.repeat(np.repeat(np.asarray(x, np.float64), 2, axis=1), 2, axis=2)
  k = kernel.shape[0]
  r = (k - 1) // 2
  padded = np.pad(up, [(0, 0), (r, r), (r, r), (0, 0)])
  b, h, w, _ = up.shape
  out = np.zeros((b, h, w, kernel.shape[-1]))
  for i in range(k):
    for j in range(k):
      out += np.einsum("bhwc,co->bhwo", padded[:, i:i + h, j:j + w],
                       np.asarray(kernel, np.float64)[i, j])
  return out


# (H, W, C, O, k): a rectangular map, one pixel, a 5x5 kernel, a 1x1 kernel.
_UPSAMPLE_SHAPES = [(5, 7, 3, 4, 3), (1, 1, 2, 3, 3), (4, 4, 3, 2, 5), (3, 2, 2, 2, 1)]


@pytest.mark.parametrize("method", conv_lib.UPSAMPLE_METHODS)
@pytest.mark.parametrize("shape", _UPSAMPLE_SHAPES)
def test_upsample_conv2d_is_nearest_upsampling_then_same_conv(method, shape):
  h, w, c, o, k = shape
  x, kernel = _random((2, h, w, c), 0), _random((k, k, c, o), 1) / k
  np.testing.assert_allclose(layers.upsample_conv2d(x, kernel, method),
                             _numpy_upsample_same_conv(x, kernel), rtol=1e-5, atol=1e-5)
  # Gradients against differentiating lax's convolution of the upsampled map.
  cotangent = _random((2, 2 * h, 2 * w, o), 2)

  def reference(a, b):
    return _lax_conv(jnp.repeat(jnp.repeat(a, 2, axis=1), 2, axis=2), b, "SAME")

  got = _value_and_grads(jax.jit(lambda a, b: layers.upsample_conv2d(a, b, method)), x, kernel,
                         cotangent)
  want = _value_and_grads(reference, x, kernel, cotangent)
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


def test_upsample_conv_parameters_are_those_of_nn_conv_on_the_upsampled_map():
  x = _random((2, 4, 4, 3), 3)
  module = layers.UpsampleConv(5, method="phases")
  variables = module.init(jax.random.PRNGKey(0), x)
  # The same names and shapes, so a seed draws the same weights.
  chex.assert_trees_all_equal(variables, nn.Conv(5, (3, 3)).init(jax.random.PRNGKey(0), x))
  up = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  np.testing.assert_allclose(module.apply(variables, x),
                             nn.Conv(5, (3, 3), padding="SAME").apply(variables, up),
                             rtol=1e-5, atol=1e-5)


def test_upsample_conv2d_rejects_unknown_methods_and_even_kernels():
  x = _random((1, 4, 4, 2), 0)
  with pytest.raises(ValueError, match=r"unknown method 'fast'; valid: \['auto', 'xla'"):
    layers.upsample_conv2d(x, _random((3, 3, 2, 2), 1), "fast")
  with pytest.raises(ValueError, match="not square with an odd size"):
    layers.upsample_conv2d(x, _random((2, 2, 2, 2), 1))
  with pytest.raises(ValueError, match="kernel_size 4 is not a positive odd integer"):
    layers.UpsampleConv(3, kernel_size=4).init(jax.random.PRNGKey(0), x)
