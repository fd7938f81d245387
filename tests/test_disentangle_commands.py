"""Chapter 5 through the command line: every variant trains, resumes, re-evaluates, draws its
figures and rejects bad input with a one-line error."""

import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from experiments import disentangle as disentangle_config
from tests.conftest import run_main
from tests.conftest import tree_snapshot
from tests.conftest import xla_cache_env

_CONFIG = "experiments/disentangle.py"
_FIGURES = ("swap", "interpolation", "retrieval_s", "retrieval_z", "generation")


def _main(args, timeout=600):
  return run_main(args, env_extra=xla_cache_env(), timeout=timeout)


def _check_trained_run(workdir, variant: str, steps: int = 2):
  config = disentangle_config.get_config(f"{variant},tiny")
  with open(os.path.join(workdir, "eval.json")) as f:
    results = json.load(f)
  assert results["step"] == steps
  assert all(math.isfinite(v) for v in results.values()), results
  assert 0 < results["test/reconstruction_mse"] < 4
  probes = {"sprites": "body", "digits": "digit", "toys": "category"}[
      "sprites" if variant.startswith("pretrained") else variant]
  for code in ("s", "z", "chance"):
    for split in ("train", "test"):
      assert 0 <= results[f"table/{probes}/{code}/{split}_error"] <= 1
  renders = variant != "digits"
  assert ("swap/mse" in results) == renders
  if renders:
    np.testing.assert_allclose(results["swap/mse_01"], results["swap/mse"] / 4, rtol=1e-6)
    assert 0 <= results["scores/mig"] <= 1
    for key in ("dci_disentanglement", "dci_completeness", "scores/s_share_identity",
                "scores/z_share_pose"):
      key = key if key.startswith("scores/") else f"scores/{key}"
      assert 0 <= results[key] <= 1 + 1e-6, key

  assert os.path.isdir(os.path.join(workdir, "checkpoints", str(steps)))
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    lines = [json.loads(line) for line in f if line.strip()]
  train = [line for line in lines if "g/loss" in line]
  assert [line["step"] for line in train] == list(range(1, steps + 1))
  adversarial = config.adversarial_weight > 0
  for line in train:
    assert {"g/kl", "g/reconstruction_mse", "g/same_identity_mse"} <= set(line)
    assert ("d/loss" in line) == adversarial and ("g/adversarial" in line) == adversarial
  for name in _FIGURES + (("swap_truth",) if renders else ()):
    grid = np.asarray(Image.open(os.path.join(workdir, "samples", f"{name}_{steps:08d}.png")))
    assert grid.ndim == 3 and grid.shape[2] == 3 and grid.std() > 0, name
  assert os.path.exists(os.path.join(workdir, "specified_classifier", "meta.json")) == (
      config.pretrained_s)


@pytest.mark.parametrize("variant", ["sprites", "toys", "pretrained_s", "pretrained_s_no_adv"])
def test_each_variant_trains_evaluates_and_draws(tmp_path, variant):
  proc = _main([f"--config={_CONFIG}:{variant},tiny", f"--workdir={tmp_path}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  _check_trained_run(tmp_path, variant)


def test_rerun_resumes_and_eval_mode_reproduces_the_evaluation(tmp_path):
  args = [f"--config={_CONFIG}:digits,tiny", f"--workdir={tmp_path}"]
  proc = _main(args)
  assert proc.returncode == 0, proc.stderr[-3000:]
  _check_trained_run(tmp_path, "digits")

  proc = _main(args + ["--config.total_steps=3"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "resuming at step 2" in proc.stderr
  with open(tmp_path / "eval.json") as f:
    trained = json.load(f)
  assert trained["step"] == 3

  proc = _main(args + ["--config.total_steps=3", "--mode=eval"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / "eval.json") as f:
    evaluated = json.load(f)
  assert set(evaluated) == set(trained)
  np.testing.assert_allclose(evaluated["test/reconstruction_mse"],
                             trained["test/reconstruction_mse"], rtol=1e-5)
  assert not os.path.isdir(tmp_path / "checkpoints" / "4")


def test_a_pretrained_specified_encoder_is_reused_and_stays_frozen(tmp_path):
  args = [f"--config={_CONFIG}:pretrained_s,tiny", f"--workdir={tmp_path}"]
  proc = _main(args)
  assert proc.returncode == 0, proc.stderr[-3000:]
  meta = tmp_path / "specified_classifier" / "meta.json"
  stamp = os.stat(meta).st_mtime_ns
  proc = _main(args + ["--config.total_steps=4"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "pretrained f_s loaded" in proc.stderr
  assert os.stat(meta).st_mtime_ns == stamp


@pytest.mark.parametrize("args, field", [
    (["--config=experiments/disentangle.py:sprite,tiny"], "config"),
    (["--config=experiments/disentangle.py:digits,tiny", "--config.dataset=photo_patches"],
     "dataset"),
    (["--config=experiments/disentangle.py:digits,tiny", "--config.dataset=norb"], "dataset"),
    (["--config=experiments/disentangle.py:sprites,tiny", "--config.d_features=(8, 16, 32)"],
     "d_features"),
    (["--config=experiments/disentangle.py:toys,tiny", "--config.image_size=28"], "image_size"),
    (["--config=experiments/disentangle.py:digits,tiny", "--config.z_dim=0"], "z_dim"),
    (["--config=experiments/disentangle.py:digits,tiny", "--config.trunk=conv4"], "trunk"),
])
def test_bad_input_is_a_one_line_error_that_leaves_the_workdir_alone(tmp_path, args, field):
  workdir = tmp_path / "run"
  os.makedirs(workdir / "checkpoints")
  (workdir / "eval.json").write_text('{"step": 1}\n')
  before = tree_snapshot(workdir)
  proc = _main(args + [f"--workdir={workdir}"])
  assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith(f"error: {field}"), lines[0]
  if field == "config":
    assert all(v in lines[0] for v in disentangle_config.VARIANTS), lines[0]
  if "photo_patches" in " ".join(args):
    assert "no identity labels" in lines[0] and "sprites" in lines[0]
  assert tree_snapshot(workdir) == before
