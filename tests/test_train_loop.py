"""End-to-end tests of the loop: every variant trains, checkpoints, restores, resumes exactly."""

import json
import os

import chex
import jax
import numpy as np
import pytest

from experiments import video_pred
from uncertainty_jax.training import loop
from uncertainty_jax.training import writers
from uncertainty_jax.training.checkpoint import PairCheckpointer


def _losses(workdir):
  return {r["step"]: r for r in writers.read_metrics(workdir) if "g/loss" in r}


@pytest.mark.parametrize("variant", sorted(video_pred.VARIANTS))
def test_each_variant_trains_checkpoints_and_restores(variant, tmp_path, tiny_config):
  workdir = str(tmp_path / variant)
  results = loop.train_and_evaluate(tiny_config(variant), workdir)
  assert results["num_clips"] == 8
  assert np.isfinite(results["full/frame1/psnr"]) and np.isfinite(results["moving/frame2/ssim"])
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["1", "2"]
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["variant"] == variant
  records = writers.read_metrics(workdir)
  assert [r["step"] for r in records if "g/loss" in r] == [1, 2]
  assert any("eval/moving/frame1/psnr" in r for r in records)
  train = _losses(workdir)[1]
  assert "g/lp/scale_0" in train
  assert ("d/loss" in train) == (variant in ("model1", "model2", "adv"))
  samples = sorted(os.listdir(os.path.join(workdir, "samples")))
  assert samples == ["predictions_00000002.gif", "predictions_00000002.png"]
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
  # The same command on the same workdir resumes; one more step is trained.
  config = tiny_config(variant)
  config.total_steps = 3
  loop.train_and_evaluate(config, workdir)
  assert sorted(_losses(workdir)) == [1, 2, 3]


class _Interrupt(Exception):
  pass


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, tiny_config, monkeypatch):
  def config():
    c = tiny_config("model1")
    c.total_steps = 6
    c.eval_every = 100
    c.checkpoint_every = 3
    return c

  straight = str(tmp_path / "straight")
  loop.train_and_evaluate(config(), straight)

  from uncertainty_jax.data import moving_photos
  original = moving_photos.MovingPhotos.train_batch

  def interrupted(self, step):
    if step == 5:  # after the checkpoint at step 3, with step 4 already logged
      raise _Interrupt()
    return original(self, step)

  resumed = str(tmp_path / "resumed")
  monkeypatch.setattr(moving_photos.MovingPhotos, "train_batch", interrupted)
  with pytest.raises(_Interrupt):
    loop.train_and_evaluate(config(), resumed)
  assert sorted(_losses(resumed)) == [1, 2, 3, 4]
  monkeypatch.setattr(moving_photos.MovingPhotos, "train_batch", original)
  loop.train_and_evaluate(config(), resumed)

  a, b = _losses(straight), _losses(resumed)
  assert sorted(b) == [1, 2, 3, 4, 5, 6]
  for step in a:
    for key in a[step]:
      np.testing.assert_allclose(b[step][key], a[step][key], rtol=1e-5, atol=1e-6, err_msg=key)
  task_state = {}
  for name, d in (("a", straight), ("b", resumed)):
    from uncertainty_jax import tasks
    task = tasks.get_task(config())
    target = jax.jit(task.init_state)(jax.random.PRNGKey(0))
    task_state[name] = PairCheckpointer(os.path.join(d, "checkpoints"), 3).restore(target)
  assert int(task_state["a"].step) == int(task_state["b"].step) == 6
  chex.assert_trees_all_close(task_state["a"].generator.params, task_state["b"].generator.params,
                              rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(task_state["a"].discriminator.opt_state,
                              task_state["b"].discriminator.opt_state, rtol=1e-5, atol=1e-6)


def test_resume_after_kill_9_matches_uninterrupted_run(tmp_path, tiny_config):
  """SIGKILL mid-run, then the same command: the same metrics as a run never stopped."""
  import signal
  import subprocess
  import sys
  import time

  from tests.conftest import REPO

  total = 40
  args = ["--config=experiments/video_pred.py:l1,tiny", f"--config.total_steps={total}",
          "--config.checkpoint_every=4", "--config.eval_every=1000", "--config.log_every=1"]
  killed = str(tmp_path / "killed")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  proc = subprocess.Popen([sys.executable, "-m", "experiments.main", *args, f"--workdir={killed}"],
                          cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 600
  ckpt_dir = os.path.join(killed, "checkpoints")
  while time.time() < deadline and proc.poll() is None:
    # Kill once a checkpoint is complete (Orbax renames it to its bare step number) and at least
    # one later step has been logged, so the resumed run must drop and replay logged lines.
    done = [int(d) for d in os.listdir(ckpt_dir) if d.isdigit()] if os.path.isdir(ckpt_dir) else []
    steps = [r["step"] for r in writers.read_metrics(killed)] if done else []
    if done and steps and max(steps) > max(done) and max(steps) % 4 != 0:
      break
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
  latest = PairCheckpointer(os.path.join(killed, "checkpoints"), 3).latest_step()
  assert latest is not None and latest < total

  from tests.conftest import run_main
  resumed = run_main([*args, f"--workdir={killed}"])
  assert resumed.returncode == 0, resumed.stderr[-3000:]

  config = tiny_config("l1")
  config.total_steps = total
  config.checkpoint_every = 4
  config.eval_every = 1000
  straight = str(tmp_path / "straight")
  loop.train_and_evaluate(config, straight)
  a, b = _losses(straight), _losses(killed)
  assert sorted(b) == list(range(1, total + 1))
  for step in a:
    for key in a[step]:
      np.testing.assert_allclose(b[step][key], a[step][key], rtol=1e-5, atol=1e-6,
                                 err_msg=f"step {step} {key}")
