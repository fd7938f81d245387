"""The semi-supervised task of thesis 6.3.2 (Ladder Network, EBGAN-LN): losses as the task computes
them, the margin schedule, vmapped seeds against single seeds, the CLI, Table 6.2's command, and
bad input."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments import ebgan as ebgan_config
from experiments import ladder_table
from tests import test_image_datasets
from tests.conftest import run_main
from tests.test_image_datasets import _fake_tfds  # pylint: disable=unused-import
from uncertainty_jax import tasks
from uncertainty_jax.tasks import ladder
from uncertainty_jax.training import steps as steps_lib


def _config(variant, **overrides):
  c = ebgan_config.get_config(f"{variant},tiny")
  c.unlock()
  for k, v in overrides.items():
    c[k] = v
  c.lock()
  return c


def _setup(variant, **overrides):
  """A task, its initial state, a batch and a key for one loss evaluation."""
  task = tasks.get_task(_config(variant, **overrides))
  state = task.init_state(jax.random.PRNGKey(0))
  return task, state, _batch(task), jax.random.PRNGKey(1)


def _batch(task, seed=0, step=0):
  dataset = ladder.LadderDataset(task.config, None, seed=seed)
  return {k: jnp.asarray(v) for k, v in dataset.sampler.batch(step).items()}


@pytest.mark.parametrize("variant", ["ladder", "ebgan_ladder"])
def test_config_builds_the_task(variant):
  task = tasks.get_task(_config(variant))
  assert isinstance(task, ladder.LadderTask)
  assert task.is_ebgan == (variant == "ebgan_ladder")
  # A bottom-layer-cost ladder: only the input layer's denoising cost is weighted.
  weights = task.ladder.cost_weights
  assert weights[0] == task.config.bottom_cost_weight and not any(weights[1:])


def test_ladder_loss_is_cross_entropy_plus_weighted_bottom_cost():
  task, state, batch, rng = _setup("ladder")
  loss, (metrics, _) = task.generator_loss(state.generator.params, state, batch, rng)
  # The same pass by hand: labelled rows then unlabelled ones, one set of batch statistics.
  x = jnp.concatenate([batch["x_labelled"], batch["x_unlabelled"]])
  real_rng = jax.random.split(rng, 3)[0]
  out, _ = task.ladder.apply(state.generator.variables, x, train=True, rngs={"noise": real_rng},
                             mutable=["batch_stats"])
  n = batch["x_labelled"].shape[0]
  logp = jax.nn.log_softmax(np.asarray(out.logits_noisy[:n], np.float64))
  ce = -np.mean(np.asarray(logp)[np.arange(n), np.asarray(batch["y_labelled"])])
  energy = np.mean((np.asarray(x) - np.asarray(out.reconstruction)) ** 2, axis=1)
  np.testing.assert_allclose(loss, ce + task.config.bottom_cost_weight * energy.mean(), rtol=1e-5)
  np.testing.assert_allclose(metrics["ladder/cross_entropy"], ce, rtol=1e-5)


def test_ebgan_ladder_discriminator_adds_the_margin_loss():
  task, state, batch, rng = _setup("ebgan_ladder", margin=5.0)
  loss, (metrics, _) = task.discriminator_loss(state.discriminator.params, state, batch, rng)
  # With the margin far above every energy the hinge is active for every sample, so the loss is
  # CE + w * (E_real + m - E_fake), each term read from the metrics.
  assert float(metrics["d/hinge_active"]) == 1.0
  w = task.config.bottom_cost_weight
  expected = (metrics["ladder/cross_entropy"]
              + w * (metrics["ladder/energy_real"] + 5.0 - metrics["d/energy_fake"]))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  g_loss, (g_metrics, _) = task.generator_loss(state.generator.params, state, batch, rng)
  np.testing.assert_allclose(g_loss, w * g_metrics["g/energy_fake"], rtol=1e-6)


def test_generated_samples_use_their_own_statistics_and_update_none():
  task, state, batch, rng = _setup("ebgan_ladder", margin=5.0)
  _, (metrics, stats) = task.discriminator_loss(state.discriminator.params, state, batch, rng)
  real_rng, fake_rng, z_rng = jax.random.split(rng, 3)
  disc = state.discriminator
  # The running averages returned are those of the pass over the real rows alone.
  x = jnp.concatenate([batch["x_labelled"], batch["x_unlabelled"]])
  _, real_updates = task.ladder.apply(disc.variables, x, train=True, rngs={"noise": real_rng},
                                      mutable=["batch_stats"])
  for a, b in zip(jax.tree_util.tree_leaves(stats),
                  jax.tree_util.tree_leaves(real_updates["batch_stats"])):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  # E(G(z)) by hand: the generator in training mode, then the ladder on the samples alone.
  n = batch["x_unlabelled"].shape[0]
  z = jax.random.uniform(z_rng, (n, task.config.latent_dim), minval=-1.0, maxval=1.0)
  fake, _ = task.generator.apply(state.generator.variables, z, train=True,
                                 mutable=["batch_stats"])
  out, _ = task.ladder.apply({"params": disc.params, "batch_stats": real_updates["batch_stats"]},
                             fake, train=True, rngs={"noise": fake_rng}, mutable=["batch_stats"])
  energy = np.mean((np.asarray(fake) - np.asarray(out.reconstruction)) ** 2, axis=1)
  np.testing.assert_allclose(metrics["d/energy_fake"], energy.mean(), rtol=1e-5)


def test_learning_rate_is_constant_then_decays_linearly():
  schedule = ladder._decayed(2e-3, 300, 1 / 3)  # pylint: disable=protected-access
  got = [float(schedule(jnp.asarray(s))) for s in (0, 199, 200, 250, 299)]
  np.testing.assert_allclose(got, [2e-3, 2e-3, 2e-3, 1e-3, 2e-3 / 100], rtol=1e-6)
  assert ladder._decayed(2e-3, 300, 0.0) == 2e-3  # pylint: disable=protected-access


def test_margin_decays_linearly_to_zero():
  task = tasks.get_task(_config("ebgan_ladder", margin=2.0, margin_decay_fraction=0.5,
                                total_steps=100))
  got = [float(task.margin(jnp.asarray(s))) for s in (0, 25, 50, 80)]
  np.testing.assert_allclose(got, [2.0, 1.0, 0.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("variant", ["ladder", "ebgan_ladder"])
def test_vmapped_seeds_equal_single_seeds(variant):
  task = tasks.get_task(_config(variant))
  seeds, steps = [3, 7], 3
  # In float32 the first steps' gradients of the decoder are rounding noise around an exact zero
  # (the combinator starts with a zero output), which Adam scales up to whole steps, so vmapped
  # and single runs part ways by chance; in float64 that noise is far below Adam's epsilon.
  with jax.enable_x64(True):
    _compare_vmapped_and_single(task, seeds, steps)


def _compare_vmapped_and_single(task, seeds, steps):
  out = ladder.train_seeds(task, seeds, steps)
  step_fn = jax.jit(lambda s, b, k: steps_lib.train_step(task, s, b, k))
  for i, seed in enumerate(seeds):
    init_key, step_key = jax.random.split(jax.random.PRNGKey(seed))
    state = task.init_state(init_key)
    sampler = ladder.LadderDataset(task.config, None, seed=seed).sampler
    for step in range(steps):
      batch = {k: jnp.asarray(v) for k, v in sampler.batch(step).items()}
      state, _ = step_fn(state, batch, step_key)
    member = jax.tree_util.tree_map(lambda x, i=i: x[i], out["state"])
    for a, b in zip(jax.tree_util.tree_leaves(member), jax.tree_util.tree_leaves(state)):
      np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    test = ladder.LadderDataset(task.config, None, seed=seed).test
    assert out["test_error"][i] == pytest.approx(task.test_error(task.ladder_net(state), test))


def test_each_seed_has_its_own_balanced_labelled_subset():
  task = tasks.get_task(_config("ladder", num_labels=50))
  a = ladder.LadderDataset(task.config, None, seed=0)
  b = ladder.LadderDataset(task.config, None, seed=1)
  assert not np.array_equal(a.labelled_indices, b.labelled_indices)
  labels = a._train_labels[a.labelled_indices]  # pylint: disable=protected-access
  np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, 5))
  # Labelled rows come from the training split: none of them is a test image.
  train = a._train  # pylint: disable=protected-access
  train_rows = {r.tobytes() for r in train[a.labelled_indices]}
  assert not train_rows & {r.tobytes() for r in a.test["x"]}


@pytest.mark.parametrize("variant", ["ladder", "ebgan_ladder"])
def test_cli_trains_evaluates_and_checkpoints(tmp_path, variant):
  workdir = tmp_path / variant
  proc = run_main([f"--config=experiments/ebgan.py:{variant},tiny", f"--workdir={workdir}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(workdir / "eval.json") as f:
    record = json.load(f)
  assert record["step"] == 4
  assert 0 <= record["test_error"] <= 100
  assert record["test_accuracy"] == pytest.approx(100 - record["test_error"])
  assert os.path.isdir(workdir / "checkpoints")
  # Only EBGAN-LN has a generator whose samples are drawn.
  assert bool(list((workdir / "samples").glob("*.png"))) == (variant == "ebgan_ladder")


@pytest.mark.parametrize("overrides, match", [
    (dict(num_labels=5000), "num_labels=5000"),
    (dict(num_labels=105), "not divisible by the class count 10"),
    (dict(framework="vae"), "framework: unknown framework 'vae'"),
    (dict(dataset="photo_patches"), "dataset: 'photo_patches' has no labelled split"),
    (dict(layer_sizes=(16, 7)), r"layer_sizes: the last size of \(16, 7\) must be the class"),
    (dict(margin=-1.0), "margin: -1.0 must be >= 0"),
])
def test_bad_settings_are_clear_errors(overrides, match):
  with pytest.raises(ValueError, match=match):
    task = tasks.get_task(_config("ebgan_ladder", **overrides))
    task.init_state(jax.random.PRNGKey(0))


def test_cli_bad_input_is_a_one_line_error_that_writes_nothing(tmp_path):
  proc = run_main(["--config=experiments/ebgan.py:ladderr", f"--workdir={tmp_path / 'x'}"])
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert "ladderr" in last and "ebgan_ladder" in last
  proc = run_main(["--config=experiments/ebgan.py:ladder,tiny", f"--workdir={tmp_path / 'y'}",
                   "--config.num_labels=105"])
  assert proc.returncode != 0
  assert proc.stderr.strip().splitlines()[-1] == (
      "error: num_labels=105: not divisible by the class count 10 of dataset 'digits'; expected "
      "a multiple of it")
  assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_table_writes_results_and_resumes(tmp_path, monkeypatch):
  monkeypatch.setattr(ladder_table, "LABEL_COUNTS", (100,))
  monkeypatch.setattr(ladder_table, "MODELS", (("ladder", "Ladder Network"),))
  work, results = str(tmp_path / "work"), str(tmp_path / "results")
  text = ladder_table.run_table(work, results, "tiny", "cmd", "machine", num_seeds=2,
                                log=lambda _: None)
  with open(os.path.join(results, "ladder.json")) as f:
    payload = json.load(f)
  errors = payload["rows"]["ladder"]["100"]["test_error"]
  assert len(errors) == 2
  row = next(line for line in text.splitlines() if line.startswith("| Ladder Network (ours"))
  assert row.split("|")[2].strip() == f"{np.mean(errors):.2f} ± {np.std(errors):.2f}"
  # A second run reuses the saved setting rather than training again.
  messages = []
  ladder_table.run_table(work, results, "tiny", "cmd", "machine", num_seeds=2,
                         log=messages.append)
  assert any("reusing" in m for m in messages)
  # Another seed count on the same workdir is refused and the saved setting is kept.
  saved = open(os.path.join(work, "ladder_100.json")).read()
  with pytest.raises(ladder_table.TableError, match="another config or seeds"):
    ladder_table.run_table(work, results, "tiny", "cmd", "machine", num_seeds=3,
                           log=lambda _: None)
  assert open(os.path.join(work, "ladder_100.json")).read() == saved
  with pytest.raises(ValueError, match="budget: '-2' is neither a positive number nor 'tiny'"):
    ladder_table.setting_config("ladder", 100, "-2")


@pytest.mark.usefixtures("fake_tfds")
def test_mnist_is_read_flat_from_tfds(monkeypatch):
  # Twenty fake training digits, two of each class, so that ten labels can be balanced.
  fakes = test_image_datasets._NUM_FAKE  # pylint: disable=protected-access
  monkeypatch.setitem(fakes, "train", 20)
  monkeypatch.setattr(test_image_datasets, "_ENCODED", {})
  task = tasks.get_task(_config("ebgan_ladder", dataset="mnist", num_labels=10,
                                labelled_batch_size=2, unlabelled_batch_size=4))
  dataset = ladder.LadderDataset(task.config, None)
  builder = tfds.builder("mnist")
  raw = test_image_datasets._examples(builder, "train")  # pylint: disable=protected-access
  expected = np.stack([ex["image"] for ex in raw]).reshape(len(raw), -1) / 127.5 - 1
  batch = dataset.sampler.batch(0)
  assert batch["x_unlabelled"].shape == (4, 784)
  for row in batch["x_labelled"]:
    assert np.abs(expected - row).max(axis=1).min() < 1e-6
  assert task.input_size == 784
  out = ladder.train_seeds(task, [0], 2)
  assert 0 <= out["test_error"][0] <= 100
