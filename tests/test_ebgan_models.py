"""Shape, mode and gradient tests of the chapter-6 generators and auto-encoder discriminators."""

import functools
import itertools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from uncertainty_jax.models import ebgan


def _keys(n=2, seed=0):
  return jax.random.split(jax.random.PRNGKey(seed), n)


def _uniform(shape, seed=0):
  return jnp.asarray(np.random.RandomState(seed).uniform(-1, 1, shape), jnp.float32)


def _num_params(variables):
  return sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(variables["params"]))


def _fc_generator_params(nz, num_layers, hidden, out_size, batch_norm):
  # Hidden Dense layers carry a bias only without batch norm, whose scale and shift replace it.
  per_hidden_extra = 2 * hidden if batch_norm else hidden
  count = nz * hidden + per_hidden_extra
  count += (num_layers - 2) * (hidden * hidden + per_hidden_extra)
  return count + hidden * out_size + out_size


def _fc_autoencoder_params(size, num_layers, hidden, batch_norm):
  # The input layer keeps its bias (no batch norm there); the output layer is plain Dense.
  per_hidden_extra = 2 * hidden if batch_norm else hidden
  count = size * hidden + hidden
  count += (num_layers - 2) * (hidden * hidden + per_hidden_extra)
  return count + hidden * size + size


def _init(model, x, train=False):
  k_params, k_dropout = _keys()
  return jax.jit(model.init, static_argnames="train")(
      {"params": k_params, "dropout": k_dropout}, x, train=train)


class TestFCGenerator:

  @pytest.mark.parametrize("num_layers,batch_norm", [(2, True), (3, True), (3, False)])
  def test_shape_range_and_params(self, num_layers, batch_norm):
    # Wide weights saturate tanh, so the range check sees outputs near -1 and 1.
    model = ebgan.FCGenerator(num_layers, 16, (6, 5, 1), batch_norm=batch_norm, init_std=2.0)
    z = jnp.asarray(np.random.RandomState(0).normal(size=(3, 7)), jnp.float32)
    variables = _init(model, z)
    out = jax.jit(model.apply)(variables, z)
    chex.assert_shape(out, (3, 6, 5, 1))
    assert float(jnp.max(jnp.abs(out))) <= 1.0
    assert float(jnp.max(out) - jnp.min(out)) > 1.5
    assert _num_params(variables) == _fc_generator_params(7, num_layers, 16, 30, batch_norm)
    assert ("batch_stats" in variables) == batch_norm

  def test_every_table_6_1_point_has_the_formula_parameter_count(self):
    z = jax.ShapeDtypeStruct((2, 100), jnp.float32)
    for num_layers, hidden in itertools.product(ebgan.MNIST_GRID.num_layers_g,
                                                ebgan.MNIST_GRID.size_g):
      shapes = jax.eval_shape(ebgan.FCGenerator(num_layers, hidden, (28, 28, 1)).init,
                              jax.random.PRNGKey(0), z)
      assert _num_params(shapes) == _fc_generator_params(100, num_layers, hidden, 784, True)

  def test_batch_stats_follow_the_first_layer_in_train_mode_only(self):
    model = ebgan.FCGenerator(2, 8, (4,))
    z = _uniform((4, 5))
    variables = _init(model, z)
    _, updated = jax.jit(lambda v, z: model.apply(v, z, train=True, mutable=["batch_stats"]))(
        variables, z)
    pre = np.asarray(z) @ np.asarray(variables["params"]["Dense_0"]["kernel"])
    # Running averages with momentum 0.9 from (0, 1); flax normalises with the biased variance.
    np.testing.assert_allclose(updated["batch_stats"]["BatchNorm_0"]["mean"],
                               0.1 * pre.mean(0), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(updated["batch_stats"]["BatchNorm_0"]["var"],
                               0.9 + 0.1 * pre.var(0), rtol=1e-5)
    _, kept = model.apply(variables, z, train=False, mutable=["batch_stats"])
    chex.assert_trees_all_equal(kept["batch_stats"], variables["batch_stats"])


class TestFCAutoEncoder:

  @pytest.mark.parametrize("num_layers", [2, 3, 4, 5])
  def test_shapes_and_params(self, num_layers):
    model = ebgan.FCAutoEncoder(num_layers, 16)
    x = _uniform((3, 6, 5, 1))
    variables = _init(model, x)
    rec, code = jax.jit(model.apply)(variables, x)
    chex.assert_shape(rec, x.shape)
    chex.assert_shape(code, (3, 16))
    chex.assert_tree_all_finite((rec, code))
    assert _num_params(variables) == _fc_autoencoder_params(30, num_layers, 16, True)

  def test_every_table_6_1_point_has_the_formula_parameter_count(self):
    x = jax.ShapeDtypeStruct((2, 28, 28, 1), jnp.float32)
    for num_layers, hidden, dropout in itertools.product(
        ebgan.MNIST_GRID.num_layers_d, ebgan.MNIST_GRID.size_d, ebgan.MNIST_GRID.dropout_d):
      model = ebgan.FCAutoEncoder(num_layers, hidden, ebgan.GRID_DROPOUT_RATE if dropout else 0.0)
      shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
      assert _num_params(shapes) == _fc_autoencoder_params(784, num_layers, hidden, True)

  @pytest.mark.parametrize("num_layers", [2, 3, 4, 5])
  def test_code_is_the_middle_layer_output(self, num_layers):
    # Without batch norm the forward pass is a plain ReLU MLP, recomputed here in numpy.
    model = ebgan.FCAutoEncoder(num_layers, 8, batch_norm=False, init_std=0.3)
    x = _uniform((4, 3, 2, 1), seed=1)
    variables = _init(model, x)
    rec, code = model.apply(variables, x)
    params = variables["params"]
    h = np.asarray(x).reshape(4, -1)
    activations = []
    for i in range(num_layers):
      layer = params[f"Dense_{i}"]
      h = h @ np.asarray(layer["kernel"]) + np.asarray(layer["bias"])
      if i < num_layers - 1:
        h = np.maximum(h, 0)
        activations.append(h)
    np.testing.assert_allclose(rec, h.reshape(x.shape), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(code, activations[math.ceil(num_layers / 2) - 1], rtol=1e-4,
                               atol=1e-6)

  def test_dropout_acts_in_train_mode_only(self):
    x = _uniform((4, 12))
    with_dropout = ebgan.FCAutoEncoder(3, 32, dropout=0.5)
    without = ebgan.FCAutoEncoder(3, 32)
    variables = _init(with_dropout, x)
    apply_train = jax.jit(lambda v, x, k: with_dropout.apply(
        v, x, train=True, rngs={"dropout": k}, mutable=["batch_stats"])[0])
    k1, k2 = _keys(seed=3)
    rec1, code1 = apply_train(variables, x, k1)
    rec2, _ = apply_train(variables, x, k2)
    ref_rec, ref_code = without.apply(variables, x, train=True, mutable=["batch_stats"])[0]
    assert float(jnp.max(jnp.abs(rec1 - rec2))) > 1e-6
    assert float(jnp.max(jnp.abs(rec1 - ref_rec))) > 1e-6
    # With three layers the code is layer 2's output, which the dropout after layer 1 reaches.
    assert float(jnp.max(jnp.abs(code1 - ref_code))) > 1e-6
    eval_rec, eval_code = with_dropout.apply(variables, x, rngs={"dropout": k1})
    eval_ref_rec, eval_ref_code = without.apply(variables, x)
    np.testing.assert_array_equal(eval_rec, eval_ref_rec)
    np.testing.assert_array_equal(eval_code, eval_ref_code)

  def test_dropout_after_the_code_leaves_it_unchanged(self):
    x = _uniform((4, 12))
    with_dropout = ebgan.FCAutoEncoder(2, 32, dropout=0.5)
    without = ebgan.FCAutoEncoder(2, 32)
    variables = _init(with_dropout, x)
    rec, code = with_dropout.apply(variables, x, train=True, rngs={"dropout": _keys()[0]})
    ref_rec, ref_code = without.apply(variables, x, train=True)
    np.testing.assert_array_equal(code, ref_code)
    assert float(jnp.max(jnp.abs(rec - ref_rec))) > 1e-6

  def test_batch_stats_update_in_train_mode_only(self):
    model = ebgan.FCAutoEncoder(3, 8)
    x = _uniform((4, 10))
    variables = _init(model, x)
    _, updated = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert not np.allclose(updated["batch_stats"]["BatchNorm_0"]["mean"],
                           variables["batch_stats"]["BatchNorm_0"]["mean"])
    _, kept = model.apply(variables, x, train=False, mutable=["batch_stats"])
    chex.assert_trees_all_equal(kept["batch_stats"], variables["batch_stats"])
    assert "batch_stats" not in _init(ebgan.FCAutoEncoder(2, 8), x)


class TestConvolutionalModels:

  @pytest.mark.parametrize("image_size,num_bn", [(32, 3), (64, 4)])
  def test_dcgan_generator_shapes(self, image_size, num_bn):
    model = ebgan.DCGANGenerator(base_features=8, image_size=image_size)
    z = _uniform((2, ebgan.DCGAN_LATENT_DIM))
    variables = _init(model, z)
    out, updated = jax.jit(lambda v, z: model.apply(v, z, train=True, mutable=["batch_stats"]))(
        variables, z)
    chex.assert_shape(out, (2, image_size, image_size, 3))
    assert float(jnp.max(jnp.abs(out))) <= 1.0
    stats = variables["batch_stats"]
    assert len(stats) == num_bn
    # Widths halve from 8 * base (64x64) or 4 * base (32x32) down to base.
    widths = [stats[f"BatchNorm_{i}"]["mean"].shape[0] for i in range(num_bn)]
    assert widths == [8 * 2 ** (num_bn - 1 - i) for i in range(num_bn)]
    assert not np.allclose(updated["batch_stats"]["BatchNorm_1"]["mean"],
                           stats["BatchNorm_1"]["mean"])

  @pytest.mark.parametrize("size", [16, 64])
  def test_conv_autoencoder_reproduces_input_size(self, size):
    model = ebgan.ConvAutoEncoder(features=(8, 16, 32))
    x = _uniform((2, size, size, 3))
    variables = _init(model, x)
    (rec, code), updated = jax.jit(
        lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
    chex.assert_shape(rec, x.shape)
    chex.assert_shape(code, (2, size // 8, size // 8, 32))
    chex.assert_tree_all_finite((rec, code))
    # Batch norm on encoder layers 2-3 and decoder layers 1-2: widths 16, 32, 16, 8.
    stats = variables["batch_stats"]
    assert [stats[f"BatchNorm_{i}"]["mean"].shape[0] for i in range(4)] == [16, 32, 16, 8]
    assert not np.allclose(updated["batch_stats"]["BatchNorm_0"]["mean"],
                           stats["BatchNorm_0"]["mean"])
    _, kept = model.apply(variables, x, train=False, mutable=["batch_stats"])
    chex.assert_trees_all_equal(kept["batch_stats"], stats)

  def test_conv_autoencoder_layers_follow_the_ebgan_appendix(self):
    model = ebgan.ConvAutoEncoder()
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                            jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))["params"]
    encoder = [shapes[f"Conv_{i}"]["kernel"].shape for i in range(3)]
    decoder = [shapes[f"ConvTranspose_{i}"]["kernel"].shape for i in range(3)]
    assert encoder == [(4, 4, 3, 64), (4, 4, 64, 128), (4, 4, 128, 256)]
    assert decoder == [(4, 4, 256, 128), (4, 4, 128, 64), (4, 4, 64, 3)]

  @pytest.mark.parametrize("module", ["generator", "autoencoder"])
  def test_deconv_methods_share_parameters_outputs_and_gradients(self, module):
    if module == "generator":
      make = lambda m: ebgan.DCGANGenerator(base_features=8, image_size=32, deconv=m)
      x = jax.random.normal(jax.random.PRNGKey(0), (3, ebgan.DCGAN_LATENT_DIM))
    else:
      make = lambda m: ebgan.ConvAutoEncoder(features=(8, 16, 32), deconv=m)
      x = _uniform((3, 16, 16, 3))
    flax_model, subpixel_model = make("flax"), make("subpixel")
    variables = _init(flax_model, x)
    # The same names, so a seed draws the same weights under either method.
    chex.assert_trees_all_equal(variables, _init(subpixel_model, x))

    def loss(model, params):
      out = model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])[0]
      out = out[0] if isinstance(out, tuple) else out
      return jnp.sum(jnp.sin(3 * out))

    for a, b in zip(jax.value_and_grad(functools.partial(loss, flax_model))(variables["params"]),
                    jax.value_and_grad(functools.partial(loss, subpixel_model))(
                        variables["params"])):
      chex.assert_trees_all_close(a, b, atol=1e-4, rtol=1e-4)

  def test_unknown_deconv_method_is_refused(self):
    with pytest.raises(ValueError,
                       match=r"deconv: unknown method 'fast'; valid: \['subpixel', 'flax'\]"):
      ebgan.DCGANGenerator(deconv="fast")
    with pytest.raises(ValueError, match=r"deconv: unknown method 'fast'"):
      ebgan.ConvAutoEncoder(deconv="fast")

  def test_conv_autoencoder_without_batch_norm_treats_samples_alone(self):
    model = ebgan.ConvAutoEncoder(features=(8, 16, 32), batch_norm=False)
    x = _uniform((3, 16, 16, 3))
    variables = _init(model, x)
    assert "batch_stats" not in variables
    # Every layer has a bias where batch norm no longer supplies a shift.
    params = variables["params"]
    assert all("bias" in params[name] for name in params)
    rec, _ = model.apply(variables, x, train=True)
    alone, _ = model.apply(variables, x[1:2], train=True)
    np.testing.assert_allclose(alone[0], rec[1], rtol=1e-5, atol=1e-6)
  @pytest.mark.parametrize("size", [32, 64])
  def test_dcgan_discriminator_logits(self, size):
    model = ebgan.DCGANDiscriminator(features=(8, 16, 32, 64))
    x = _uniform((3, size, size, 3))
    variables = _init(model, x)
    logits = jax.jit(model.apply)(variables, x)
    chex.assert_shape(logits, (3,))
    chex.assert_tree_all_finite(logits)
    # The logit reads the flattened (size / 16)^2 x 64 last feature maps.
    assert variables["params"]["Dense_0"]["kernel"].shape == ((size // 16) ** 2 * 64, 1)


_GRAD_CASES = {
    "fc_generator": (lambda: ebgan.FCGenerator(3, 16, (4, 4, 1)), (2, 8)),
    "fc_autoencoder": (lambda: ebgan.FCAutoEncoder(3, 16, dropout=0.5), (2, 4, 4, 1)),
    "dcgan_generator": (lambda: ebgan.DCGANGenerator(8, 32), (2, 16)),
    "conv_autoencoder": (lambda: ebgan.ConvAutoEncoder((8, 16, 32)), (2, 16, 16, 3)),
    "dcgan_discriminator": (lambda: ebgan.DCGANDiscriminator((8, 16, 32, 64)), (2, 32, 32, 3)),
}


@pytest.mark.parametrize("name", sorted(_GRAD_CASES))
def test_gradients_are_finite_and_nonzero(name):
  make, shape = _GRAD_CASES[name]
  model = make()
  x = _uniform(shape)
  variables = _init(model, x)

  def loss(params, x):
    out, _ = model.apply({**variables, "params": params}, x, train=True,
                         rngs={"dropout": _keys()[1]}, mutable=["batch_stats"])
    out = out[0] if isinstance(out, tuple) else out  # The auto-encoders' reconstruction.
    return jnp.mean((out - 0.5) ** 2)

  grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(variables["params"], x)
  chex.assert_tree_all_finite(grads)
  for leaf in jax.tree_util.tree_leaves(grads):
    assert float(jnp.max(jnp.abs(leaf))) > 0


@pytest.mark.parametrize("make,message", [
    (lambda: ebgan.FCGenerator(1, 16, (4,)), "num_layers: 1 is not an integer >= 2"),
    (lambda: ebgan.FCGenerator(2, 0, (4,)), "hidden: 0"),
    (lambda: ebgan.FCGenerator(2, 16, ()), "out_shape: ()"),
    (lambda: ebgan.FCGenerator(2, 16, (4,), init_std=0.0), "init_std: 0.0"),
    (lambda: ebgan.FCAutoEncoder(1, 16), "num_layers: 1"),
    (lambda: ebgan.FCAutoEncoder(2, 16, dropout=1.0), r"dropout: 1.0 is not a rate in \[0, 1\)"),
    (lambda: ebgan.FCAutoEncoder(2, 16, dropout=-0.1), "dropout: -0.1"),
    (lambda: ebgan.FCAutoEncoder(2.5, 16), "num_layers: 2.5"),
    (lambda: ebgan.DCGANGenerator(image_size=48), "image_size: 48 is not 32 or 64"),
    (lambda: ebgan.DCGANGenerator(base_features=0), "base_features: 0"),
    (lambda: ebgan.ConvAutoEncoder(features=()), r"features: \(\)"),
    (lambda: ebgan.ConvAutoEncoder(channels=0), "channels: 0"),
    (lambda: ebgan.DCGANDiscriminator(features=(8, -1)), r"features: \(8, -1\)"),
])
def test_bad_attributes_raise(make, message):
  with pytest.raises(ValueError, match=message):
    make()


@pytest.mark.parametrize("model,shape,message", [
    (ebgan.ConvAutoEncoder((8, 16, 32)), (1, 20, 20, 3),
     r"spatial size \(20, 20\) is not divisible by 8"),
    (ebgan.ConvAutoEncoder((8, 16, 32)), (1, 16, 16, 1),
     "x: 1 channels, the model has channels=3"),
    (ebgan.DCGANDiscriminator((8, 16)), (1, 16, 16),
     r"x: shape \(1, 16, 16\) is not \[B, H, W, C\]"),
    (ebgan.DCGANGenerator(8, 32), (2, 4, 4), r"z: shape \(2, 4, 4\) is not \[B, nz\]"),
    (ebgan.FCGenerator(2, 8, (4,)), (2,), r"z: shape \(2,\) is not \[B, nz\]"),
    (ebgan.FCAutoEncoder(2, 8), (2,), r"x: shape \(2,\) is not \[B, ...\]"),
])
def test_bad_inputs_raise(model, shape, message):
  with pytest.raises(ValueError, match=message):
    jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct(shape, jnp.float32))
