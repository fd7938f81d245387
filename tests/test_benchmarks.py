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



def test_ebgan_step_benchmark_reports_every_model():
  from benchmarks.ebgan_step import MODELS  # pylint: disable=g-import-not-at-top
  models = [*MODELS, "pytorch_arch:im2col_grad"]
  out = _run("benchmarks.ebgan_step", "--tiny", "--steps=1", "--models=" + ",".join(models))
  assert out.returncode == 0, out.stderr[-3000:]
  lines = out.stdout.splitlines()
  header = next(line for line in lines if line.startswith("model "))
  assert header.split() == ["model", "batch", "compile_s", "s/step", "images/s", "GFLOP/step",
                            "GFLOP/s"]
  rows = {}
  for name in models:
    fields = next(line for line in lines[lines.index(header):] if line.startswith(name + " "))
    rows[name] = [float(v) for v in fields.split()[1:]]
    assert rows[name][0] == 8  # the tiny configs' batch
  # XLA's cost analysis counted the convolutional step's FLOPs.
  assert rows["pytorch_arch"][4] > 0
  assert "pytorch reference" in out.stdout and "111-118 images/s" in out.stdout
  assert "ratio pytorch_arch / pytorch reference" in out.stdout
  assert "ratio pytorch_arch:im2col_grad / pytorch reference" in out.stdout


def test_grid_rate_benchmark_reports_every_way():
  out = _run("benchmarks.grid_rate", "--tiny", "--steps=1", "--members=2", "--frameworks=ebgan",
             "--end_to_end")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "group: ebgan g2x16-d2x8, 2 configurations" in out.stdout
  lines = out.stdout.splitlines()
  for way in ("vmap", "one per sweep", "one at a time"):
    row = next(line.split() for line in lines if line.strip().startswith(way + " "))
    rates = [float(v) for v in row[-7:]]
    assert all(r >= 0 for r in rates) and rates[4] > 0 and rates[5] > 0, row
  for needle in ("ratio vmap / one at a time", "ratio vmap / one per sweep",
                 "sweep.train_members end to end"):
    assert needle in out.stdout


def test_video_decode_benchmark_reports_rates():
  out = _run("benchmarks.video_decode", "--width=64", "--height=48", "--frames=12", "--videos=2",
             "--batches=2")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "2 videos of 12 frames, 64x48" in out.stdout
  assert "(2 decoded)" in out.stdout and "(0 decoded)" in out.stdout  # the second pass is cached
  for needle in ("decode (1 thread):", "cached frames:", "training batches:",
                 "training batches, no cache:", "ratio training batches cached / no cache:"):
    assert needle in out.stdout
