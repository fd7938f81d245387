"""Tests of chapter 5's networks and losses: the s/z encoder, the decoder, the conditional
discriminator, the Gaussian KL, and the sub-pixel transposed convolution the decoder uses."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from uncertainty_jax import layers
from uncertainty_jax import losses
from uncertainty_jax.models import disentangle as models


def test_gaussian_kl_matches_the_closed_form_in_numpy():
  rng = np.random.default_rng(0)
  mu = rng.normal(size=(5, 7)).astype(np.float32)
  logvar = rng.normal(size=(5, 7)).astype(np.float32)
  var = np.exp(logvar)
  # KL(N(mu, var) || N(0, 1)) per coordinate: log(1 / sigma) + (var + mu^2) / 2 - 1 / 2.
  expected = np.sum(-0.5 * logvar + 0.5 * (var + mu ** 2) - 0.5, axis=1)
  np.testing.assert_allclose(losses.gaussian_kl(mu, logvar), expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(losses.gaussian_kl(np.zeros((2, 3)), np.zeros((2, 3))), 0.0,
                             atol=1e-7)


def test_gaussian_kl_agrees_with_a_monte_carlo_estimate():
  rng = np.random.default_rng(1)
  mu, logvar = np.array([[0.7, -1.2]]), np.array([[-0.5, 0.4]])
  sigma = np.exp(0.5 * logvar)
  z = mu + sigma * rng.normal(size=(400_000, 2))
  log_q = np.sum(-0.5 * ((z - mu) / sigma) ** 2 - np.log(sigma), axis=1)
  log_p = np.sum(-0.5 * z ** 2, axis=1)
  np.testing.assert_allclose(losses.gaussian_kl(mu, logvar)[0], np.mean(log_q - log_p),
                             rtol=0.02)


def test_squared_error_sums_per_example():
  rng = np.random.default_rng(2)
  a, b = rng.normal(size=(3, 4, 4, 2)), rng.normal(size=(3, 4, 4, 2))
  np.testing.assert_allclose(losses.squared_error(a, b), ((a - b) ** 2).sum(axis=(1, 2, 3)),
                             rtol=1e-5)
  with pytest.raises(ValueError, match="same shape"):
    losses.squared_error(a, b[:, :3])
  with pytest.raises(ValueError, match="mu and logvar"):
    losses.gaussian_kl(np.zeros((2, 3)), np.zeros((2, 4)))


@pytest.mark.parametrize("kernel,stride", [(2, 2), (3, 1), (3, 2), (4, 2), (5, 2), (5, 3)])
def test_subpixel_conv_transpose_is_flax_conv_transpose(kernel, stride):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 6, 3))
  reference = nn.ConvTranspose(4, (kernel, kernel), strides=(stride, stride), padding="SAME")
  variables = reference.init(jax.random.PRNGKey(1), x)
  fast = layers.SubpixelConvTranspose(4, kernel, stride)
  chex.assert_trees_all_equal_shapes(fast.init(jax.random.PRNGKey(1), x), variables)
  np.testing.assert_allclose(fast.apply(variables, x), reference.apply(variables, x), atol=1e-5)

  def loss(module, v, x):
    return jnp.sum(jnp.sin(module.apply(v, x)))

  grads_fast = jax.grad(lambda v, x: loss(fast, v, x), argnums=(0, 1))(variables, x)
  grads_ref = jax.grad(lambda v, x: loss(reference, v, x), argnums=(0, 1))(variables, x)
  chex.assert_trees_all_close(grads_fast, grads_ref, atol=1e-4)


def _architecture(name):
  """(image shape, trunk, encoder widths, discriminator widths, identity sizes) per variant."""
  return {
      "digits": ((8, 8, 1), "conv3", (16, 32, 64), (16, 32, 64), (10,)),
      "sprites": ((32, 32, 3), "conv3", (32, 64, 128), (14, 28, 56), (3, 2, 4, 4, 3, 3, 5)),
      "toys": ((32, 32, 1), "conv6", (16, 16, 32, 32, 64, 128), (16, 32, 64), (50,)),
  }[name]


@pytest.mark.parametrize("name", ["digits", "sprites", "toys"])
def test_networks_have_the_shapes_of_table_5_1(name):
  shape, trunk, widths, d_widths, sizes = _architecture(name)
  layers_ = models.trunk(trunk, widths)
  x = jnp.zeros((3, *shape))
  encoder = models.Encoder(layers_, 16, 24)
  v = encoder.init(jax.random.PRNGKey(0), x)
  s, mu, logvar = encoder.apply(v, x)
  chex.assert_shape([s, mu, logvar], [(3, 16), (3, 24), (3, 24)])
  decoder = models.Decoder(layers_, shape[0], shape[2])
  v = decoder.init(jax.random.PRNGKey(0), mu, s)
  y = decoder.apply(v, mu, s)
  chex.assert_shape(y, (3, *shape))
  assert np.all(np.abs(y) <= 1)
  # The decoder's projections reach the trunk's top map: 128 x 4 x 4 = 2048 for 32x32 images.
  top = shape[0] // models.downsampling(layers_)
  assert v["params"]["s_fc"]["kernel"].shape == (16, top * top * widths[-1])
  disc = models.ConditionalDiscriminator(models.discriminator_layers(trunk, d_widths), sizes)
  ids = jnp.zeros((3, len(sizes)), jnp.int32)
  v = disc.init(jax.random.PRNGKey(0), x, ids)
  chex.assert_shape(disc.apply(v, x, ids), (3,))
  kernel = 5 if trunk == "conv3" else 3
  assert v["params"]["conv0"]["kernel"].shape == (kernel, kernel, shape[2], d_widths[0])


def test_the_discriminator_output_depends_on_each_identity_attribute():
  sizes = (3, 4)
  disc = models.ConditionalDiscriminator(models.discriminator_layers("conv3", (8, 8, 8)), sizes)
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 16, 16, 3))
  v = disc.init(jax.random.PRNGKey(1), x, jnp.zeros((1, 2), jnp.int32))
  base = disc.apply(v, x, jnp.array([[0, 0]]))
  for changed in ([[1, 0]], [[0, 3]]):
    assert abs(float(disc.apply(v, x, jnp.array(changed))[0] - base[0])) > 1e-6
  # Without the lookups the identity has no way in: zeroing the tables removes the dependence.
  zeroed = jax.tree_util.tree_map_with_path(
      lambda path, a: jnp.zeros_like(a) if "lookup" in jax.tree_util.keystr(path) else a, v)
  np.testing.assert_allclose(disc.apply(zeroed, x, jnp.array([[2, 3]])),
                             disc.apply(zeroed, x, jnp.array([[0, 0]])), atol=1e-7)


def test_separate_encoder_holds_the_classifier_s_branch():
  layers_ = models.trunk("conv3", (4, 8, 8))
  x = jnp.zeros((2, 16, 16, 3))
  encoder = models.Encoder(layers_, 6, 5, separate=True)
  classifier = models.SpecifiedClassifier(layers_, 6, (3, 2))
  enc_v = encoder.init(jax.random.PRNGKey(0), x)
  cls_v = classifier.init(jax.random.PRNGKey(1), x)
  chex.assert_trees_all_equal_shapes(enc_v["params"]["specified"], cls_v["params"]["specified"])
  logits = classifier.apply(cls_v, x)
  chex.assert_shape(logits, [(2, 3), (2, 2)])
  # With the classifier's s branch in place, the encoder's s is the classifier's.
  params = dict(enc_v["params"], specified=cls_v["params"]["specified"])
  stats = dict(enc_v["batch_stats"], specified=cls_v["batch_stats"]["specified"])
  s, _, _ = encoder.apply({"params": params, "batch_stats": stats}, x)
  expected = models.SpecifiedEncoder(layers_, 6).apply(
      {"params": cls_v["params"]["specified"], "batch_stats": cls_v["batch_stats"]["specified"]},
      x)
  np.testing.assert_allclose(s, expected, atol=1e-6)


def test_reparameterize_draws_from_the_posterior():
  mu = jnp.full((20_000, 2), jnp.array([1.0, -2.0]))
  logvar = jnp.full((20_000, 2), jnp.log(jnp.array([0.25, 4.0])))
  z = np.asarray(models.reparameterize(jax.random.PRNGKey(0), mu, logvar))
  np.testing.assert_allclose(z.mean(0), [1.0, -2.0], atol=0.05)
  np.testing.assert_allclose(z.std(0), [0.5, 2.0], rtol=0.03)


def test_bad_architectures_are_refused():
  with pytest.raises(ValueError, match="unknown trunk 'conv9'"):
    models.trunk("conv9", (1, 2, 3))
  with pytest.raises(ValueError, match="3 positive integers"):
    models.trunk("conv3", (8, 16))
  with pytest.raises(ValueError, match="multiple of 8"):
    models.check_image_size(models.trunk("conv3", (4, 4, 4)), 28, "encoder")
  with pytest.raises(ValueError, match="multiples of 7"):
    models.ConditionalDiscriminator(models.discriminator_layers("conv3", (8, 16, 32)), (2,) * 7)
  encoder = models.Encoder(models.trunk("conv3", (4, 4, 4)), 0, 4)
  with pytest.raises(ValueError, match="s_dim"):
    encoder.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 1)))


def test_the_decoder_computes_the_same_function_with_either_transposed_convolution():
  layers_ = models.trunk("conv6", (4, 4, 8, 8, 8, 8))
  z, s = jax.random.normal(jax.random.PRNGKey(0), (2, 5)), jnp.ones((2, 3))
  fast = models.Decoder(layers_, 16, 3)
  v = fast.init(jax.random.PRNGKey(1), z, s)
  flax_version = models.Decoder(layers_, 16, 3, deconv="flax")
  chex.assert_trees_all_equal_shapes(flax_version.init(jax.random.PRNGKey(1), z, s), v)
  np.testing.assert_allclose(fast.apply(v, z, s), flax_version.apply(v, z, s), atol=1e-5)
  with pytest.raises(ValueError, match="deconv"):
    models.Decoder(layers_, 16, 3, deconv="torch").init(jax.random.PRNGKey(1), z, s)
