"""Chapter 3's losses, latent inference and Table 3.1's architectures, against numpy references."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import linearize as linearize_config
from uncertainty_jax.losses import linearize as losses
from uncertainty_jax.models import linearize as models


def _cosine_np(a, b):
  return np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_linearization_loss_matches_numpy():
  rng = np.random.default_rng(0)
  pred, target = rng.normal(size=(2, 4, 6, 8, 3)).astype(np.float32)
  z1, z2, z3 = rng.normal(size=(3, 4, 10)).astype(np.float32)
  loss, terms = losses.linearization_loss(pred, target, z1, z2, z3, 0.7)
  prediction = np.mean(0.5 * np.sum(np.square(pred - target).reshape(4, -1), -1))
  cosine = np.mean(_cosine_np(z2 - z1, z3 - z2))
  np.testing.assert_allclose(terms["prediction"], prediction, rtol=1e-5)
  np.testing.assert_allclose(terms["cosine"], cosine, rtol=1e-5)
  np.testing.assert_allclose(loss, prediction - 0.7 * cosine, rtol=1e-5)


def test_curvature_cosine_is_one_on_a_line_and_minus_one_on_a_reversal():
  z1 = jnp.array([[0.0, 0.0], [0.0, 0.0]])
  z2 = jnp.array([[1.0, 2.0], [1.0, 2.0]])
  z3 = jnp.array([[3.0, 6.0], [0.0, 0.0]])  # straight at another speed; straight back
  np.testing.assert_allclose(losses.curvature_cosine(z1, z2, z3), [1.0, -1.0], atol=1e-6)
  # A zero difference gives a finite value and gradient.
  grad = jax.grad(lambda z: jnp.sum(losses.curvature_cosine(z, z, z3)))(z1)
  assert np.all(np.isfinite(grad))


def test_infer_latent_equals_unrolled_gradient_descent_and_lowers_the_loss():
  rng = np.random.default_rng(1)
  a = jnp.asarray(rng.normal(size=(5, 3, 7)), jnp.float32)
  y = jnp.asarray(rng.normal(size=(5, 7)), jnp.float32)

  def error(delta):  # [B, 3] -> [B]: a per-example least-squares problem
    return 0.5 * jnp.sum(jnp.square(jnp.einsum("bl,blk->bk", delta, a) - y), -1)

  delta = losses.infer_latent(error, jnp.zeros((5, 3)), 4, 0.05)
  ref = np.zeros((5, 3), np.float32)
  a_np, y_np = np.asarray(a), np.asarray(y)
  for _ in range(4):
    residual = np.einsum("bl,blk->bk", ref, a_np) - y_np
    ref = ref - 0.05 * np.einsum("bk,blk->bl", residual, a_np)
  np.testing.assert_allclose(delta, ref, rtol=1e-4, atol=1e-6)
  assert np.all(np.asarray(error(delta)) < np.asarray(error(jnp.zeros((5, 3)))))
  np.testing.assert_array_equal(losses.infer_latent(error, jnp.ones((5, 3)), 0, 0.05),
                                np.ones((5, 3)))


@pytest.mark.parametrize("name", sorted(models.ARCHITECTURES))
def test_architecture_shapes(name):
  arch = models.architecture(name, 1 / 8)
  latent = 0 if name == "deep1" else 3
  model = models.LinearizingAutoencoder(arch, latent_dim=latent)
  x = jnp.zeros((2, 32, 32, arch.channels))
  variables = model.init(jax.random.PRNGKey(0), x, method=model.init_all)
  code = model.apply(variables, x, method=model.encode)
  if arch.pool is None:
    chex.assert_shape(code["z"], (2, arch.code_features))
  else:
    h, w, f = arch.pool.output_shape(*model._pool_input_shape())  # pylint: disable=protected-access
    chex.assert_shape(code["m"], (2, h * w * f))
    chex.assert_shape(code["p"], (2, h * w * f, arch.pool.phase_dims))
  delta = None if latent == 0 else jnp.zeros((2, latent))
  chex.assert_shape(model.apply(variables, x, x, delta), (2, 32, 32, arch.channels))


def test_thesis_sizes_of_table_3_1():
  """The code sizes the text states: Shallow 1 16 x 4 x 8x8; Deep 3 192 = 64 x 3."""
  shallow1 = models.LinearizingAutoencoder(models.architecture("shallow1"))
  h, w, f = shallow1.arch.pool.output_shape(32, 32, 64)
  assert (f, 1 + shallow1.arch.pool.phase_dims, h, w) == (16, 4, 8, 8)
  deep3 = models.architecture("deep3")
  h, w, f = deep3.pool.output_shape(8, 8, 64)
  assert h * w * f * (1 + deep3.pool.phase_dims) == 192
  shallow2 = models.architecture("shallow2")
  assert shallow2.pool.output_shape(32, 32, 64) == (16, 16, 32)


def test_predictor_follows_eq_3_9_3_10_and_3_11():
  arch = models.architecture("deep3", 1 / 8)
  model = models.LinearizingAutoencoder(arch, latent_dim=2)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1)), method=model.init_all)
  rng = np.random.default_rng(2)
  c1 = {"m": jnp.asarray(rng.random((3, 8))), "p": jnp.asarray(rng.uniform(-1, 1, (3, 8, 2)))}
  c2 = {"m": jnp.asarray(rng.random((3, 8))), "p": jnp.asarray(rng.uniform(-1, 1, (3, 8, 2)))}
  out = model.apply(variables, c1, c2, method=model.predict_code)
  np.testing.assert_allclose(out["m"], (c1["m"] + c2["m"]) / 2, rtol=1e-6)
  np.testing.assert_allclose(out["p"], 2 * c2["p"] - c1["p"], rtol=1e-6)
  delta = jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)
  w = np.asarray(variables["params"]["delta_w"])
  scale = (np.asarray(delta) @ w).reshape(3, 8, 2)
  thesis = model.apply(variables, c1, c2, delta, "thesis", method=model.predict_code)
  np.testing.assert_allclose(thesis["p"], c2["p"] + scale * (2 * c2["p"] - c1["p"]), rtol=1e-5)
  np.testing.assert_allclose(thesis["m"], out["m"], rtol=1e-6)  # delta leaves magnitudes alone
  residual = model.apply(variables, c1, c2, delta, "residual", method=model.predict_code)
  np.testing.assert_allclose(residual["p"], 2 * c2["p"] - c1["p"] + scale * (c2["p"] - c1["p"]),
                             rtol=1e-5)


def test_code_at_is_linear_and_hits_the_codes():
  c1 = {"z": jnp.array([[0.0, 1.0]])}
  c2 = {"z": jnp.array([[2.0, 3.0]])}
  for t, expected in ((0.0, [-2.0, -1.0]), (1.0, [0.0, 1.0]), (1.5, [1.0, 2.0]), (3.0, [4.0, 5.0])):
    np.testing.assert_allclose(models.code_at(c1, c2, t)["z"], [expected])
  p1 = {"m": jnp.array([[1.0]]), "p": jnp.array([[[0.0]]])}
  p2 = {"m": jnp.array([[3.0]]), "p": jnp.array([[[0.5]]])}
  np.testing.assert_allclose(models.code_at(p1, p2, 1.5)["m"], [[2.0]])
  np.testing.assert_allclose(models.code_at(p1, p2, 3.0)["m"], [[2.0]])  # eq. 3.9's mean
  np.testing.assert_allclose(models.code_at(p1, p2, 3.0)["p"], [[[1.0]]])


def _tiny_task(args):
  from uncertainty_jax.tasks import linearize as task_lib  # pylint: disable=g-import-not-at-top
  config = linearize_config.get_config(args)
  config.unlock()
  config.width_multiplier = 1 / 16
  return task_lib.LinearizeTask(config)


def test_model_gradient_treats_inferred_delta_as_a_constant():
  """Algorithm 3.1: theta's gradient is that of eq. 3.12 at delta_k, with no path through the
  inner loop."""
  task = _tiny_task("deep3,skip,latent")
  state = task.init_state(jax.random.PRNGKey(0))
  frames = jax.random.uniform(jax.random.PRNGKey(1), (4, 3, 32, 32, 1), minval=-1, maxval=1)
  batch = {"frames": frames, "skip": jnp.zeros((4,), jnp.int32)}
  params = state.generator.params
  grad = jax.grad(lambda p: task.generator_loss(p, state, batch, None)[0])(params)

  codes = task._encode_frames(params, frames)  # pylint: disable=protected-access
  delta_k = task.infer_delta(params, codes[0], codes[1], frames[:, 2])
  assert float(jnp.abs(delta_k).max()) > 0  # the inner loop moved

  def at_fixed_delta(p):
    cs = task._encode_frames(p, frames)  # pylint: disable=protected-access
    pred = task._decode(p, task._predict(p, cs[0], cs[1], delta_k))  # pylint: disable=protected-access
    z = task._curvature_codes(cs)  # pylint: disable=protected-access
    return losses.linearization_loss(pred, frames[:, 2], *z, task.config.lambda_curvature)[0]

  expected = jax.grad(at_fixed_delta)(params)
  chex.assert_trees_all_close(grad, expected, rtol=1e-4, atol=1e-6)


def test_the_three_frames_are_encoded_each_on_its_own():
  task = _tiny_task("shallow1")
  params = task.init_state(jax.random.PRNGKey(0)).generator.params
  frames = jax.random.uniform(jax.random.PRNGKey(1), (3, 3, 32, 32, 3), minval=-1, maxval=1)
  codes = task._encode_frames(params, frames)  # pylint: disable=protected-access
  for t in range(3):
    alone = task.model.apply({"params": params}, frames[:, t], method=task.model.encode)
    chex.assert_trees_all_close(codes[t], alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("correction", ["thesis", "residual"])
def test_task_delta_equals_unrolled_gradient_steps_on_the_model(correction):
  # Algorithm 3.1 on the model itself: k steps of delta <- delta - alpha * dL/ddelta from 0, each
  # example on its own prediction error, written out step by step.
  task = _tiny_task("deep3,skip,latent")
  task.config.latent_correction = correction
  task.config.latent_steps, task.config.latent_learning_rate = 3, 0.05
  params = task.init_state(jax.random.PRNGKey(0)).generator.params
  frames = jax.random.uniform(jax.random.PRNGKey(2), (3, 3, 32, 32, 1), minval=-1, maxval=1)
  code1, code2 = task._encode_frames(params, frames)[:2]  # pylint: disable=protected-access
  delta = task.infer_delta(params, code1, code2, frames[:, 2])

  def error(d, i):
    one = lambda x: jax.tree_util.tree_map(lambda v: v[i:i + 1], x)
    pred = task._decode(params, task._predict(  # pylint: disable=protected-access
        params, one(code1), one(code2), d[None]))
    return 0.5 * jnp.sum(jnp.square(pred - frames[i:i + 1, 2]))

  for i in range(3):
    d = jnp.zeros((task.config.latent_dim,))
    for _ in range(3):
      d = d - 0.05 * jax.grad(error)(d, i)
    np.testing.assert_allclose(np.asarray(delta[i]), np.asarray(d), rtol=1e-4, atol=1e-6)
  assert float(jnp.abs(delta).max()) > 1e-3  # the steps moved delta


@pytest.mark.parametrize("args", ["deep3,skip,latent", "deep3,latent", "deep2,latent"])
def test_inferred_delta_lowers_the_prediction_error(args):
  task = _tiny_task(args)
  task.config.latent_learning_rate = 0.5
  state = task.init_state(jax.random.PRNGKey(0))
  frames = jax.random.uniform(jax.random.PRNGKey(1), (4, 3, 32, 32, 1), minval=-1, maxval=1)
  params = state.generator.params
  pred0, _ = task.predict_triplets(params, frames, False)
  pred_k, _ = task.predict_triplets(params, frames, True)
  err0 = losses.prediction_error(pred0, frames[:, 2])
  err_k = losses.prediction_error(pred_k, frames[:, 2])
  assert np.all(np.asarray(err_k) <= np.asarray(err0))
  assert float(jnp.mean(err_k)) < float(jnp.mean(err0)) - 1e-3


@pytest.mark.parametrize("field, value, message", [
    ("architecture", "deep4", "unknown architecture 'deep4'"),
    ("beta", -1.0, "beta: -1.0 must be >= 0"),
    ("latent_steps", -1, "latent_steps: -1"),
    ("latent_correction", "other", "latent_correction: 'other'"),
    ("dataset", "norb", "unknown dataset 'norb'"),
    ("channels", 3, "channels: 3, but dataset 'rotating_toys' is grayscale"),
])
def test_bad_config_is_a_clear_error(field, value, message):
  from uncertainty_jax.tasks import linearize as task_lib  # pylint: disable=g-import-not-at-top
  config = linearize_config.get_config("deep3")
  config.unlock()
  config.width_multiplier = 0.25
  config[field] = value
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    task_lib.LinearizeTask(config)


def test_skip_on_photos_is_refused():
  from uncertainty_jax.tasks import linearize as task_lib  # pylint: disable=g-import-not-at-top
  config = linearize_config.get_config("shallow1,skip,latent")
  config.unlock()
  config.width_multiplier = 0.25
  with pytest.raises(ValueError, match="skip: .* dataset 'rigid_photos' does not have; use one of "
                                       r"\['rotating_toys', 'smallnorb'\]"):
    task_lib.LinearizeTask(config)


def test_latent_with_deep1_is_refused():
  from uncertainty_jax.tasks import linearize as task_lib  # pylint: disable=g-import-not-at-top
  config = linearize_config.get_config("deep1,latent")
  config.unlock()
  config.width_multiplier = 0.25
  with pytest.raises(ValueError, match="Deep 1 learns its extrapolation"):
    task_lib.LinearizeTask(config)


def test_unknown_variant_lists_the_valid_ones():
  with pytest.raises(ValueError, match="deep3"):
    linearize_config.get_config("deep9")
