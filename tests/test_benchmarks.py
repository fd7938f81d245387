"""The benchmark commands run and report what they promise (on a tiny config; no timing asserted)."""

import subprocess
import sys

from tests.conftest import REPO


def _run(module, *args):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=600)


def test_train_step_benchmark_reports_rates():
  out = _run("benchmarks.train_step", "--config=experiments/video_pred.py:tiny", "--steps=2",
             "--data_steps=2")
  assert out.returncode == 0, out.stderr[-3000:]
  for needle in ("compile:", "steps/s", "images/s", "GFLOP/s", "data pipeline:"):
    assert needle in out.stdout


def test_profile_step_compares_methods():
  out = _run("benchmarks.profile_step", "--config=experiments/video_pred.py:tiny",
             "--methods=same_crop:xla,auto:auto", "--rounds=1")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "same_crop:xla" in out.stdout and "ratio" in out.stdout
