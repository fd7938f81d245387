"""Shape and gradient tests of the chapter-4 generator, discriminators and task losses."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import video_pred as video_pred_config
from uncertainty_jax import layers
from uncertainty_jax.models import video_pred as models
from uncertainty_jax.tasks.video_pred import VideoPredictionTask
from uncertainty_jax.training import loop


def _inputs(batch=2, size=32, frames=4, seed=0):
  rng = np.random.RandomState(seed)
  return jnp.asarray(rng.uniform(-1, 1, (batch, frames, size, size, 3)), jnp.float32)


def _tiny_task(variant="model1", **overrides):
  config = video_pred_config.get_config(f"{variant},tiny")
  for k, v in overrides.items():
    config[k] = v
  loop.resolve_budget(config)
  return VideoPredictionTask(config)


@pytest.mark.parametrize("name", sorted(models.ARCHITECTURES))
def test_architecture_tables(name):
  gen, disc = models.architecture(name, 4)
  assert [g.features for g in gen] == [(128, 256, 128), (128, 256, 128),
                                       (128, 256, 512, 256, 128), (128, 256, 512, 256, 128)]
  assert [g.kernels for g in gen] == [(3, 3, 3, 3), (5, 3, 3, 5), (5, 3, 3, 3, 5),
                                      (7, 5, 5, 5, 5, 7)]
  assert [d.features for d in disc] == [(64,), (64, 128, 128), (128, 256, 256), (128, 256, 512, 128)]
  assert [d.kernels for d in disc] == [(3,), (3, 3, 3), (5, 5, 5), (7, 7, 5, 5)]
  assert [d.fc for d in disc] == [(512, 256), (1024, 512), (1024, 512), (1024, 512)]


def test_architecture_single_scale_is_finest_network_and_errors():
  gen, disc = models.architecture("model1", 1, 0.5)
  assert gen[0].kernels == (7, 5, 5, 5, 5, 7) and gen[0].features == (64, 128, 256, 128, 64)
  assert disc[0].features == (64, 128, 256, 64)
  with pytest.raises(ValueError, match="unknown architecture 'model3'"):
    models.architecture("model3", 4)
  with pytest.raises(ValueError, match="num_scales: 5 is not in 1..4"):
    models.architecture("model1", 5)


@pytest.mark.parametrize("variant,size", [("model1", 32), ("model2", 64), ("single_scale_l2", 32)])
def test_generator_and_discriminator_shapes_at_all_scales(variant, size):
  config = video_pred_config.get_config(f"{variant},tiny")
  gen_specs, disc_specs = models.architecture(config.model, config.num_scales, 1 / 16)
  n = config.num_scales
  g = models.MultiScaleGenerator(gen_specs, batch_norm=config.batch_norm,
                                 noise_std=config.generator_noise_std)
  x = _inputs(size=size)
  g_vars = jax.jit(g.init)({"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1)}, x)
  preds = jax.jit(g.apply)(g_vars, x)
  chex.assert_shape(preds, [(2, size // 2 ** (n - 1 - k), size // 2 ** (n - 1 - k), 3)
                            for k in range(n)])
  for p in preds:
    assert float(jnp.max(jnp.abs(p))) <= 1.0
  d = models.MultiScaleDiscriminator(disc_specs, batch_norm=config.batch_norm,
                                     per_frame_first_layer=config.per_frame_discriminator)
  d_vars = jax.jit(d.init)(jax.random.PRNGKey(2), x, preds)
  logits = jax.jit(d.apply)(d_vars, x, preds)
  chex.assert_shape(logits, [(2,)] * n)
  chex.assert_tree_all_finite(logits)


def test_generator_is_fully_convolutional_on_larger_frames():
  gen_specs, _ = models.architecture("model1", 4, 1 / 16)
  g = models.MultiScaleGenerator(gen_specs)
  variables = jax.jit(g.init)(jax.random.PRNGKey(0), _inputs(size=32))
  preds = jax.jit(g.apply)(variables, _inputs(batch=1, size=96))
  chex.assert_shape(preds[-1], (1, 96, 96, 3))


def test_generator_scales_are_laplacian_residuals():
  """Scale k's output minus the upsampled scale k-1 output is G_k's Tanh residual."""
  gen_specs, _ = models.architecture("model1", 3, 1 / 16)
  g = models.MultiScaleGenerator(gen_specs)
  x = _inputs(size=16)
  variables = jax.jit(g.init)(jax.random.PRNGKey(0), x)
  preds = jax.jit(g.apply)(variables, x)
  for k in range(1, 3):
    residual = preds[k] - layers.upsample2x(preds[k - 1])
    # Inside the image range the residual is exactly the bounded Tanh output.
    inside = jnp.abs(preds[k]) < 1
    assert float(jnp.max(jnp.abs(jnp.where(inside, residual, 0)))) <= 1.0
    assert float(jnp.mean(jnp.abs(residual))) > 0


def test_adversarial_gradient_reaches_every_coarser_generator():
  """d L_adv(scale k) / d G_k' is nonzero for every k' <= k (thesis 4.2.2, after eq. 4.4)."""
  task = _tiny_task("model1", lambda_lp=0.0, lambda_gdl=0.0, lambda_adv=1.0)
  state = jax.jit(task.init_state)(jax.random.PRNGKey(0))
  batch = {"frames": _inputs(batch=8, frames=5)}

  def adv_at_scale(params, k):
    _, (metrics, _) = task.generator_loss(params, state, batch, jax.random.PRNGKey(1))
    return metrics[f"g/adv/scale_{k}"]

  all_grads = jax.jit(lambda p: [jax.grad(adv_at_scale)(p, k) for k in range(4)])(
      state.generator.params)
  for k, grads in enumerate(all_grads):
    for kp in range(4):
      norm = float(jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree_util.tree_leaves(
          grads[f"G_{kp}"]))))
      if kp <= k:
        assert norm > 0, f"no adversarial gradient from scale {k} into G_{kp}"
      else:
        assert norm == 0, f"scale {k}'s loss should not depend on finer G_{kp}"


@pytest.mark.parametrize("variant", ["model1", "l1", "model2"])
def test_one_train_step_lowers_generator_loss_on_fixed_batch(variant):
  from uncertainty_jax.training import steps
  task = _tiny_task(variant)
  state = jax.jit(task.init_state)(jax.random.PRNGKey(0))
  batch = {"frames": _inputs(batch=8, frames=5, seed=3) * 0.5}
  key = jax.random.PRNGKey(4)

  @jax.jit
  def g_loss(params, st):
    return task.generator_loss(params, st, batch, jax.random.PRNGKey(5))[0]

  new_state, metrics = jax.jit(lambda s, b, k: steps.train_step(task, s, b, k))(state, batch, key)
  chex.assert_tree_all_finite(metrics)
  # Same discriminator (the updated one) on both sides: only the generator step differs.
  before = g_loss(state.generator.params, new_state)
  after = g_loss(new_state.generator.params, new_state)
  assert float(after) < float(before)
  assert int(new_state.step) == 1


def test_discriminator_updates_separate_real_from_predicted_frames():
  """Repeated D updates (G fixed) on one batch drive D(real) up and D(G(x)) down (eq. 4.2)."""
  from uncertainty_jax.training import steps
  task = _tiny_task("model1", d_optimizer="adam", d_learning_rate=1e-3)
  state = jax.jit(task.init_state)(jax.random.PRNGKey(0))
  batch = {"frames": _inputs(batch=8, frames=5, seed=7)}

  @jax.jit
  def d_step(st):
    disc, metrics = steps._update(st.discriminator, task.discriminator_loss, st, batch,  # pylint: disable=protected-access
                                  jax.random.PRNGKey(0), "d")
    return st.replace(discriminator=disc), metrics

  _, first = d_step(state)
  for _ in range(30):
    state, metrics = d_step(state)
  assert float(metrics["d/loss"]) < float(first["d/loss"]) - 0.5
  for k in range(4):
    assert float(metrics[f"d/real_prob/scale_{k}"]) > float(metrics[f"d/fake_prob/scale_{k}"])
