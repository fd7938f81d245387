"""Chapter 3 through the command line: every variant trains, resumes, re-evaluates and rejects bad
input with a one-line error."""

import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from experiments import linearize as linearize_config
from tests.conftest import run_main
from tests.conftest import tree_snapshot
from tests.conftest import xla_cache_env
from uncertainty_jax.tasks import linearize as linearize_task

_CONFIG = "experiments/linearize.py"


def _main(args, timeout=300):
  return run_main(args, env_extra=xla_cache_env(), timeout=timeout)


def _read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _expected_eval_keys(latent: bool, skip: bool) -> set[str]:
  """The keys of `eval.json` the task's docstring promises for a variant."""
  keys = {"step", "num_test", "test/prediction", "test/mse", "test/mse_copy_last", "test/cosine",
          "interp/mse", "interp/sharpness"}
  keys |= {f"interp/mse_t{t:g}" for t in linearize_task.INTERP_TIMES}
  if latent:
    keys |= {"test/prediction_zero_delta", "test/mse_zero_delta"}
  if latent and skip:
    keys |= {"skip/accuracy", "skip/chance", "skip/train_accuracy"}
  return keys


def _check_trained_run(workdir, arg: str, steps: int = 2):
  """Checks the files a tiny run of `--config=experiments/linearize.py:ARG` leaves in `workdir`."""
  words = set(arg.split(","))
  latent, skip = "latent" in words, "skip" in words
  config = linearize_config.get_config(f"{arg},tiny")
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["architecture"] == config.architecture

  with open(os.path.join(workdir, "eval.json")) as f:
    results = json.load(f)
  assert set(results) == _expected_eval_keys(latent, skip)
  assert results["step"] == steps
  assert all(math.isfinite(v) for v in results.values()), results
  assert results["num_test"] == config.num_test_clips
  # eq. 3.6's first term is half the summed squared error, test/mse its per-pixel mean.
  pixels = config.image_size ** 2 * config.channels
  for suffix in ("", "_zero_delta") if latent else ("",):
    np.testing.assert_allclose(results[f"test/prediction{suffix}"],
                               0.5 * pixels * results[f"test/mse{suffix}"], rtol=1e-4)
  # Every time is scored on the same trajectories: the overall error is their mean.
  np.testing.assert_allclose(
      results["interp/mse"],
      np.mean([results[f"interp/mse_t{t:g}"] for t in linearize_task.INTERP_TIMES]), rtol=1e-5)
  assert -1 <= results["test/cosine"] <= 1
  assert results["test/mse_copy_last"] > 0
  if latent and skip:
    assert 0.5 <= results["skip/chance"] <= 1
    assert 0 <= results["skip/accuracy"] <= 1 and 0 <= results["skip/train_accuracy"] <= 1

  assert os.path.isdir(os.path.join(workdir, "checkpoints", str(steps)))
  lines = _read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  train = [line for line in lines if "g/loss" in line]
  assert [line["step"] for line in train] == list(range(1, steps + 1))
  for line in train:
    assert {"g/prediction", "g/cosine"} <= set(line)
    assert ("g/delta_norm" in line) == latent
    assert -1 <= line["g/cosine"] <= 1 and line["g/prediction"] > 0

  samples = os.path.join(workdir, "samples")
  grid = np.asarray(Image.open(os.path.join(samples, f"interpolation_{steps:08d}.png")))
  # Two rows per sample clip (truth, decoded), one column per time, 1-pixel frames.
  cell = config.image_size + 2
  assert grid.shape == (2 * config.num_sample_clips * cell, len(linearize_task.INTERP_TIMES) * cell,
                        3)
  filters = os.path.join(samples, f"decoder_filters_{steps:08d}.png")
  assert os.path.exists(filters) == config.architecture.startswith("shallow")
  if os.path.exists(filters):
    assert np.asarray(Image.open(filters)).std() > 0


# deep2 is trained (and checked the same way) by the resume test below.
@pytest.mark.parametrize("arg", ["shallow1", "shallow2", "deep1", "deep3", "deep3,skip",
                                 "deep3,skip,latent", "shallow1,latent"])
def test_each_variant_trains_evaluates_and_writes_its_files(tmp_path, arg):
  proc = _main([f"--config={_CONFIG}:{arg},tiny", f"--workdir={tmp_path}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  _check_trained_run(tmp_path, arg)


def test_rerun_resumes_and_eval_mode_reproduces_the_evaluation(tmp_path):
  args = [f"--config={_CONFIG}:deep2,tiny", f"--workdir={tmp_path}"]
  proc = _main(args)
  assert proc.returncode == 0, proc.stderr[-3000:]
  _check_trained_run(tmp_path, "deep2")

  proc = _main(args + ["--config.total_steps=3"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "resuming at step 2" in proc.stderr
  lines = _read_jsonl(tmp_path / "metrics.jsonl")
  assert lines[-1]["step"] == 3
  # Steps 1 and 2 are not trained again.
  assert [line["step"] for line in lines if "g/loss" in line] == [1, 2, 3]
  assert os.path.isdir(tmp_path / "checkpoints" / "3")
  with open(tmp_path / "eval.json") as f:
    trained = json.load(f)
  assert trained["step"] == 3

  proc = _main(args + ["--config.total_steps=3", "--mode=eval"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / "eval.json") as f:
    evaluated = json.load(f)
  assert evaluated["step"] == 3
  assert set(evaluated) == set(trained)
  np.testing.assert_allclose(evaluated["test/mse"], trained["test/mse"], rtol=1e-5)
  np.testing.assert_allclose(evaluated["interp/mse"], trained["interp/mse"], rtol=1e-5)
  assert not os.path.isdir(tmp_path / "checkpoints" / "4")


@pytest.mark.parametrize("args, field", [
    (["--config=experiments/linearize.py:deep4,tiny"], "config"),
    (["--config=experiments/linearize.py:deep3,tiny", "--config.beta=-1"], "beta"),
    (["--config=experiments/linearize.py:deep3,latent,tiny", "--config.latent_steps=-1"],
     "latent_steps"),
    (["--config=experiments/linearize.py:deep1,latent,tiny"], "latent_dim"),
    (["--config=experiments/linearize.py:deep3,tiny", "--config.dataset=moving_mnist"], "dataset"),
    (["--config=experiments/linearize.py:deep3,tiny", "--config.lambda_curvatur=1"],
     "config override --config.lambda_curvatur"),
])
def test_bad_input_is_a_one_line_error_that_leaves_the_workdir_alone(tmp_path, args, field):
  workdir = tmp_path / "run"
  os.makedirs(workdir / "checkpoints")
  (workdir / "metrics.jsonl").write_text('{"step": 1, "g/loss": 1.0}\n')
  (workdir / "eval.json").write_text('{"step": 1}\n')
  before = tree_snapshot(workdir)
  proc = _main(args + [f"--workdir={workdir}"])
  assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith(f"error: {field}"), lines[0]
  if field == "config":
    assert all(v in lines[0] for v in linearize_config.VARIANTS), lines[0]
  if field.startswith("config override"):
    assert '"lambda_curvature"' in lines[0]  # the suggestion
  assert tree_snapshot(workdir) == before
