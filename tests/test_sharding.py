"""The result does not depend on the device count, and the step compiles once."""

import jax
import numpy as np

from tests.conftest import run_main
from uncertainty_jax import tasks
from uncertainty_jax.training import loop
from uncertainty_jax.training import sharding
from uncertainty_jax.training import steps
from uncertainty_jax.training import writers


def _train_losses(workdir):
  return {r["step"]: r for r in writers.read_metrics(workdir) if "g/loss" in r}


def test_eight_devices_log_the_same_losses_as_one(tmp_path, tiny_config):
  config = tiny_config("model1")
  config.total_steps = 3
  config.eval_every = 100
  one = str(tmp_path / "one")
  loop.train_and_evaluate(config, one)
  eight = str(tmp_path / "eight")
  proc = run_main(["--config=experiments/video_pred.py:model1,tiny", f"--workdir={eight}",
                   "--config.total_steps=3", "--config.eval_every=100"], devices=8)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "8 devices" in proc.stderr
  a, b = _train_losses(one), _train_losses(eight)
  assert sorted(a) == sorted(b) == [1, 2, 3]
  for step in a:
    assert set(a[step]) == set(b[step])
    for key in a[step]:
      np.testing.assert_allclose(b[step][key], a[step][key], rtol=2e-4, atol=1e-5,
                                 err_msg=f"step {step} {key}")


def test_train_step_compiles_once(tiny_config):
  config = tiny_config("model1")
  loop.resolve_budget(config)
  task = tasks.get_task(config)
  mesh = sharding.make_mesh()
  dataset = task.make_dataset(sharding.batch_sharding(mesh))
  key = jax.random.PRNGKey(0)
  state = jax.jit(task.init_state, out_shardings=sharding.replicated(mesh))(key)
  step_fn = steps.make_train_step(task, mesh)
  for i in range(4):
    state, metrics = step_fn(state, dataset.train_batch(i), key)
  jax.block_until_ready(metrics)
  assert int(state.step) == 4
  assert step_fn._cache_size() == 1  # pylint: disable=protected-access
