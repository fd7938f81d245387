"""Bad input: a one-line error naming the field, a non-zero exit, nothing in the workdir lost."""

import os
import re
import shutil

import pytest

from tests.conftest import run_main
from tests.conftest import tree_snapshot
from uncertainty_jax.training import loop
from uncertainty_jax.training.checkpoint import CheckpointError

CONFIG = "--config=experiments/video_pred.py"


def _assert_one_line_error(proc, *needles):
  assert proc.returncode != 0, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, proc.stderr[-3000:]
  for needle in needles:
    assert needle in errors[0], errors[0]


@pytest.mark.parametrize("args,needles", [
    ([f"{CONFIG}:model3"], ["model3", "model1", "single_scale_l2", "gdl_l1"]),
    ([f"{CONFIG}:tiny", "--config.batchsize=4"], ["batchsize"]),
    ([f"{CONFIG}:tiny", "--config.model=model9"], ["model", "model9", "model1", "model2"]),
    ([f"{CONFIG}:tiny", "--config.dataset=kinetics"], ["dataset", "kinetics", "moving_photos",
                                                       "ucf101"]),
    ([f"{CONFIG}:tiny", "--config.g_optimizer=rmsprop"], ["g_optimizer", "rmsprop", "adam"]),
    ([f"{CONFIG}:tiny", "--config.lambda_lp_schedule=step"], ["lambda_lp_schedule", "linear"]),
    ([f"{CONFIG}:tiny", "--config.image_size=30"], ["image_size", "30", "2^(num_scales-1) = 8"]),
    ([f"{CONFIG}:tiny", "--config.budget=huge"], ["budget", "huge", "auto"]),
])
def test_cli_rejects_bad_config(args, needles, tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "keep.txt").write_text("mine")
  before = tree_snapshot(workdir)
  proc = run_main([*args, f"--workdir={workdir}"])
  _assert_one_line_error(proc, *needles)
  assert tree_snapshot(workdir) == before


def test_cli_rejects_batch_not_divisible_by_devices(tmp_path):
  proc = run_main([f"{CONFIG}:tiny", f"--workdir={tmp_path / 'run'}"], devices=3)
  _assert_one_line_error(proc, "batch_size", "8", "device count 3")


def test_cli_rejects_unwritable_workdir(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  proc = run_main([f"{CONFIG}:tiny", f"--workdir={blocker / 'run'}"])
  _assert_one_line_error(proc, "workdir", "cannot write")
  assert blocker.read_text() == "not a directory"


@pytest.fixture(scope="module")
def trained_l1(tmp_path_factory):
  """A finished tiny `l1` run (2 steps, checkpoints 1 and 2)."""
  from experiments import video_pred
  workdir = str(tmp_path_factory.mktemp("trained") / "l1")
  loop.train_and_evaluate(video_pred.get_config("l1,tiny"), workdir)
  return workdir


def test_checkpoint_from_another_config_is_refused(trained_l1, tmp_path, tiny_config):
  workdir = str(tmp_path / "copy")
  shutil.copytree(trained_l1, workdir)
  before = tree_snapshot(workdir)
  with pytest.raises(CheckpointError, match="different model configuration"):
    loop.train_and_evaluate(tiny_config("model1"), workdir)
  config = tiny_config("l1")
  config.width_multiplier = 1 / 16
  with pytest.raises(CheckpointError, match="different model configuration"):
    loop.train_and_evaluate(config, workdir)
  assert tree_snapshot(workdir) == before


def test_corrupt_checkpoint_is_a_clear_error(trained_l1, tmp_path):
  workdir = str(tmp_path / "copy")
  shutil.copytree(trained_l1, workdir)
  generator_dir = os.path.join(workdir, "checkpoints", "2", "generator")
  for dirpath, _, files in os.walk(generator_dir):
    for f in files:
      with open(os.path.join(dirpath, f), "wb") as fh:
        fh.write(b"\x00garbage")
  before = tree_snapshot(workdir)
  proc = run_main([f"{CONFIG}:l1,tiny", f"--workdir={workdir}"])
  _assert_one_line_error(proc, "checkpoint", "step 2", "cannot be")
  assert tree_snapshot(workdir) == before


def test_eval_mode_without_checkpoint_is_a_clear_error(tmp_path):
  proc = run_main([f"{CONFIG}:tiny", f"--workdir={tmp_path / 'empty'}", "--mode=eval"])
  _assert_one_line_error(proc, "no checkpoint", "train first")


def test_diverging_run_stops_with_the_step_and_keeps_last_good_checkpoint(tmp_path, tiny_config):
  config = tiny_config("l2")
  config.total_steps = 6
  config.checkpoint_every = 1
  config.eval_every = 100
  config.g_learning_rate = 1e30
  config.g_lr_schedule = "constant"
  workdir = str(tmp_path / "nan")
  with pytest.raises(loop.NonFiniteLossError, match=r"diverged at step (\d)") as info:
    loop.train_and_evaluate(config, workdir)
  step = int(re.search(r"diverged at step (\d)", str(info.value)).group(1))
  assert step < 6
  checkpoints = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")))
  assert checkpoints and max(checkpoints) < step
  assert f"last good checkpoint is step {max(checkpoints)}" in str(info.value)
