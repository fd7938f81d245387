"""The chapter 6 task: its losses against numpy, vmapped sweeps against single runs, the variants
through the real command line, and bad input."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import ebgan as ebgan_config
from tests.conftest import run_main
from tests.conftest import tree_snapshot
from uncertainty_jax import data as data_lib
from uncertainty_jax.tasks import ebgan as ebgan_task
from uncertainty_jax.training import sharding as sharding_lib
from uncertainty_jax.training import steps as steps_lib
from uncertainty_jax.training import sweep as sweep_lib

CONFIG = "--config=experiments/ebgan.py"


def _config(arg="ebgan", **overrides):
  c = ebgan_config.get_config(f"{arg},tiny")
  with c.unlocked():
    for k, v in overrides.items():
      c[k] = v
  return c


def _fixed_latents(task, z):
  """Makes the task draw `z` (truncated to the requested count) instead of random latents."""
  task.sample_latent = lambda rng, n: z[:n]


def _np_energy(x, rec):
  return np.sum(np.square(np.asarray(rec, np.float64) - np.asarray(x, np.float64)).reshape(
      len(x), -1), axis=1)


def _np_pt(code):
  s = np.asarray(code, np.float64).reshape(len(code), -1)
  unit = s / np.linalg.norm(s, axis=1, keepdims=True)
  cos = unit @ unit.T
  n = len(s)
  return (np.sum(cos ** 2) - np.trace(cos ** 2)) / (n * (n - 1))


def _setup(config):
  task = ebgan_task.EBGANTask(config)
  state = jax.jit(task.init_state)(jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (config.batch_size, *task.sample_shape)).astype(np.float32)
  z = jnp.asarray(rng.uniform(-1, 1, (config.batch_size, config.latent_dim)), jnp.float32)
  _fixed_latents(task, z)
  fake, _ = task.generator.apply(state.generator.variables, z, train=True,
                                 mutable=["batch_stats"])
  return task, state, {"images": jnp.asarray(images)}, images, np.asarray(fake)


class TestLossesAgainstNumpy:
  """Eq. 6.1, 6.2, 6.60, 6.61 and the GAN's cross-entropy, from the networks' outputs."""

  @pytest.mark.parametrize("lambda_pt", [0.0, 0.1])
  def test_ebgan_losses(self, lambda_pt):
    config = _config(lambda_pt=lambda_pt, margin=3.0)
    task, state, batch, real, fake = _setup(config)
    d = state.discriminator
    (rec_real, _), _ = task.discriminator.apply(d.variables, real, train=True,
                                                mutable=["batch_stats"])
    (rec_fake, code), _ = task.discriminator.apply(d.variables, fake, train=True,
                                                   mutable=["batch_stats"])
    e_real, e_fake = _np_energy(real, rec_real), _np_energy(fake, rec_fake)
    d_loss, (metrics, _) = task.discriminator_loss(d.params, state, batch, jax.random.PRNGKey(1))
    expected = np.mean(e_real) + np.mean(np.maximum(3.0 - e_fake, 0.0))
    np.testing.assert_allclose(float(d_loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["d/energy_fake"]), np.mean(e_fake), rtol=1e-5)
    g_loss, (g_metrics, _) = task.generator_loss(state.generator.params, state, batch,
                                                 jax.random.PRNGKey(2))
    np.testing.assert_allclose(float(g_metrics["g/pt"]), _np_pt(code), rtol=1e-4)
    np.testing.assert_allclose(float(g_loss), np.mean(e_fake) + lambda_pt * _np_pt(code),
                               rtol=1e-5)

  def test_gan_losses(self):
    config = _config("gan")
    task, state, batch, real, fake = _setup(config)
    d = state.discriminator
    logits_real, _ = task.discriminator.apply(d.variables, real, train=True,
                                              mutable=["batch_stats"])
    logits_fake, _ = task.discriminator.apply(d.variables, fake, train=True,
                                              mutable=["batch_stats"])
    softplus = lambda t: np.logaddexp(0.0, np.asarray(t, np.float64))
    d_loss, _ = task.discriminator_loss(d.params, state, batch, jax.random.PRNGKey(1))
    # -log sigmoid(r) - log(1 - sigmoid(f)) = softplus(-r) + softplus(f), averaged.
    expected = np.mean(softplus(-logits_real)) + np.mean(softplus(logits_fake))
    np.testing.assert_allclose(float(d_loss), expected, rtol=1e-5)
    g_loss, _ = task.generator_loss(state.generator.params, state, batch, jax.random.PRNGKey(2))
    np.testing.assert_allclose(float(g_loss), np.mean(softplus(-logits_fake)), rtol=1e-5)

  def test_energy_reduction_mean_divides_by_the_sample_size(self):
    task, state, batch, real, _ = _setup(_config(energy_reduction="mean"))
    _, (metrics, _) = task.discriminator_loss(state.discriminator.params, state, batch,
                                              jax.random.PRNGKey(1))
    (rec, _), _ = task.discriminator.apply(state.discriminator.variables, real, train=True,
                                           mutable=["batch_stats"])
    np.testing.assert_allclose(float(metrics["d/energy_real"]),
                               np.mean(_np_energy(real, rec)) / real[0].size, rtol=1e-5)

  def test_discriminator_update_leaves_the_generator_unchanged(self):
    config = _config()
    task = ebgan_task.EBGANTask(config)
    mesh = sharding_lib.make_mesh(jax.devices()[:1])
    dataset = data_lib.get_image_dataset(config, sharding_lib.batch_sharding(mesh))
    state = jax.jit(task.init_state)(jax.random.PRNGKey(0))
    grads = jax.grad(lambda p: task.discriminator_loss(
        state.discriminator.params, state.replace(generator=state.generator.replace(params=p)),
        dataset.train_batch(0), jax.random.PRNGKey(1))[0])(state.generator.params)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree_util.tree_leaves(grads))


class TestSweep:
  """Members trained together under vmap equal the same configurations trained one by one."""

  def test_vmapped_members_equal_single_runs(self):
    base = _config("ebgan", dropout_d=0.0)
    mesh = sharding_lib.make_mesh(jax.devices()[:1])
    dataset = data_lib.get_image_dataset(base, sharding_lib.batch_sharding(mesh))
    members = [
        sweep_lib.Member(seed=3, optimizers={"g": ("adam", 1e-3), "d": ("adam", 2e-3)},
                         hparams={"dropout_d": 0.5, "lambda_pt": 0.1}),
        sweep_lib.Member(seed=4, optimizers={"g": ("sgd", 0.05), "d": ("sgd", 0.01)},
                         hparams={"dropout_d": 0.0, "lambda_pt": 0.0}),
    ]
    steps = 4
    swept = sweep_lib.train_members(ebgan_task.EBGANTask(base, sweepable=True), dataset, members,
                                    steps)
    assert swept.final["g/loss"].shape == (2,)
    assert not swept.nonfinite.any()
    for i, m in enumerate(members):
      config = _config("ebgan", seed=m.seed, g_optimizer=m.optimizers["g"][0],
                       g_learning_rate=m.optimizers["g"][1], d_optimizer=m.optimizers["d"][0],
                       d_learning_rate=m.optimizers["d"][1], **m.hparams)
      task = ebgan_task.EBGANTask(config)
      init_key, step_key = jax.random.split(jax.random.PRNGKey(m.seed))
      state = jax.jit(task.init_state)(init_key)
      step = jax.jit(lambda s, b, k: steps_lib.train_step(task, s, b, k))
      for s in range(steps):
        state, metrics = step(state, dataset.train_batch(s), step_key)
      member = sweep_lib.unstack(swept.state, i)
      chex.assert_trees_all_close(member.generator.params, state.generator.params, rtol=2e-4,
                                  atol=2e-6)
      chex.assert_trees_all_close(member.discriminator.params, state.discriminator.params,
                                  rtol=2e-4, atol=2e-6)
      np.testing.assert_allclose(swept.final["g/loss"][i], metrics["g/loss"], rtol=2e-4)

  def test_unknown_hyperparameter_is_an_error(self):
    task = ebgan_task.EBGANTask(_config(), sweepable=True)
    with pytest.raises(ValueError, match="margin.*not hyperparameters"):
      sweep_lib.init_members(task, [sweep_lib.Member(0, {"g": ("adam", 1e-3),
                                                        "d": ("adam", 1e-3)}, {"margin": 2.0})])
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
      sweep_lib.init_members(task, [sweep_lib.Member(0, {"g": ("rmsprop", 1e-3),
                                                        "d": ("adam", 1e-3)})])


@pytest.mark.parametrize("variant", ["ebgan", "ebgan_pt", "gan", "conv64", "conv64_pt", "dcgan64",
                                     "toy2d"])
def test_each_variant_trains_evaluates_and_writes_samples(variant, tmp_path):
  workdir = tmp_path / variant
  proc = run_main([f"{CONFIG}:{variant},tiny", f"--workdir={workdir}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(workdir / "eval.json") as f:
    results = json.load(f)
  assert results["step"] == 4
  assert os.path.exists(workdir / "samples" / "samples_00000004.png")
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
  if variant == "toy2d":
    assert 0 <= results["modes_covered"] <= results["num_modes"] == 8
    assert 0 <= results["high_quality_fraction"] <= 1
  elif "64" not in variant:
    # The I' classifier was trained on the digits, saved, and scored the samples.
    assert os.path.exists(workdir / "classifier" / "classifier.json")
    assert results["inception_score"] >= 0
    assert results["inception_score_data"] > results["inception_score"]
  key = "d/real_prob_test" if variant in ("gan", "dcgan64") else "d/energy_test"
  assert np.isfinite(results[key])


def test_resume_reuses_the_saved_classifier(tmp_path):
  workdir = tmp_path / "run"
  assert run_main([f"{CONFIG}:tiny", f"--workdir={workdir}"]).returncode == 0
  saved = tree_snapshot(workdir / "classifier")
  proc = run_main([f"{CONFIG}:tiny", f"--workdir={workdir}", "--config.total_steps=6",
                   "--config.eval_every=6"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert tree_snapshot(workdir / "classifier") == saved
  with open(workdir / "eval.json") as f:
    assert json.load(f)["step"] == 6


@pytest.mark.parametrize("overrides,needles", [
    (dict(margin=-1.0), ["margin", "-1", "positive"]),
    (dict(framework="wgan"), ["framework", "'wgan'", "ebgan"]),
    (dict(dataset="cifar"), ["dataset", "'cifar'", "digits"]),
    (dict(lambda_pt=-0.1), ["lambda_pt", ">= 0"]),
    (dict(dropout_d=1.0), ["dropout_d", "[0, 1)"]),
    (dict(energy_reduction="max"), ["energy_reduction", "'max'"]),
    (dict(model="conv"), ["conv", "(8, 8, 1)"]),
    (dict(g_optimizer="rmsprop"), ["g_optimizer", "'rmsprop'", "adam"]),
])
def test_bad_config_names_the_field(overrides, needles):
  with pytest.raises(ValueError) as error:
    ebgan_task.EBGANTask(_config(**overrides))
  for needle in needles:
    assert needle in str(error.value), str(error.value)


@pytest.mark.parametrize("args,needles", [
    ([f"{CONFIG}:nope"], ["'nope'", "variants", "ebgan_pt"]),
    ([f"{CONFIG}:tiny", "--config.margin=-1"], ["margin", "-1", "positive"]),
])
def test_bad_command_line_is_a_one_line_error_that_writes_nothing(args, needles, tmp_path):
  workdir = tmp_path / "run"
  proc = run_main([*args, f"--workdir={workdir}"])
  assert proc.returncode != 0
  line = proc.stderr.strip().splitlines()[-1]
  assert line.startswith("error:"), proc.stderr[-2000:]
  for needle in needles:
    assert needle in line, line
  assert not os.path.exists(workdir)
