"""The results table printed from a run's metrics."""

import subprocess
import sys

import pytest

from experiments import report
from tests.conftest import REPO
from uncertainty_jax.evaluation import tables
from uncertainty_jax.training import writers


def _record():
  rec = {"step": 10}
  for prefix, base in (("eval/", 20.0), ("eval/last_input/", 10.0), ("eval/flow/", 30.0)):
    for region, offset in (("full", 0.0), ("moving", 1.0)):
      for k in (1, 2):
        rec[f"{prefix}{region}/frame{k}/psnr"] = base + offset + k
        rec[f"{prefix}{region}/frame{k}/ssim"] = 0.5
        rec[f"{prefix}{region}/frame{k}/sharpness"] = 15.0
  return rec


def test_table_rows_and_values():
  text = report.report(_record())
  moving = text[text.index("Moving areas (optical-flow mask)"):].splitlines()[2:]
  assert moving[2].startswith("| Model | 22.0 | 0.50 | 15.0 | 23.0 |")
  assert moving[3].startswith("| Last input | 12.0 |")
  assert moving[4].startswith("| Optical flow | 32.0 |")
  assert "exact mask" not in text  # no such region in the record


def test_metrics_table_marks_missing_values_and_rejects_unknown_regions():
  lines = tables.metrics_table([("a", {"full/frame1/psnr": 1.234})], "full").splitlines()
  assert lines[0].count("|") == 8 and lines[2] == "| a | 1.2 | – | – | – | – | – |"
  with pytest.raises(ValueError, match="unknown region 'edges'"):
    tables.metrics_table([], "edges")


def test_command_prints_latest_evaluation_and_errors_without_one(tmp_path):
  with writers.MetricWriter(str(tmp_path)) as w:
    w.write_scalars(5, {"g/loss": 1.0})
    w.write_scalars(10, {k: v for k, v in _record().items() if k != "step"})
  out = subprocess.run([sys.executable, "-m", "experiments.report", f"--workdir={tmp_path}"],
                       cwd=REPO, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr
  assert "Step 10" in out.stdout and "Moving areas" in out.stdout and "| Model | 21.0" in out.stdout
  empty = tmp_path / "empty"
  empty.mkdir()
  out = subprocess.run([sys.executable, "-m", "experiments.report", f"--workdir={empty}"],
                       cwd=REPO, capture_output=True, text=True)
  assert out.returncode == 1 and "no evaluation" in out.stderr
