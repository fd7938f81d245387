"""The results table printed from a run's metrics."""

import subprocess
import sys

from experiments import report
from tests.conftest import REPO
from uncertainty_jax.training import writers


def _record():
  rec = {"step": 10}
  for prefix, base in (("eval/", 20.0), ("eval/last_input/", 10.0)):
    for region, offset in (("full", 0.0), ("moving", 1.0)):
      for k in (1, 2):
        rec[f"{prefix}{region}/frame{k}/psnr"] = base + offset + k
        rec[f"{prefix}{region}/frame{k}/ssim"] = 0.5
        rec[f"{prefix}{region}/frame{k}/sharpness"] = 15.0
  return rec


def test_table_rows_and_values():
  lines = report.table(_record(), "moving").splitlines()
  assert len(lines) == 4
  assert lines[2].startswith("| model | 22.0 | 0.50 | 15.0 | 23.0 |")
  assert lines[3].startswith("| last input | 12.0 |")


def test_command_prints_latest_evaluation_and_errors_without_one(tmp_path):
  with writers.MetricWriter(str(tmp_path)) as w:
    w.write_scalars(5, {"g/loss": 1.0})
    w.write_scalars(10, {k: v for k, v in _record().items() if k != "step"})
  out = subprocess.run([sys.executable, "-m", "experiments.report", f"--workdir={tmp_path}"],
                       cwd=REPO, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr
  assert "Step 10" in out.stdout and "Moving areas" in out.stdout and "| model | 21.0" in out.stdout
  empty = tmp_path / "empty"
  empty.mkdir()
  out = subprocess.run([sys.executable, "-m", "experiments.report", f"--workdir={empty}"],
                       cwd=REPO, capture_output=True, text=True)
  assert out.returncode == 1 and "no evaluation" in out.stderr
