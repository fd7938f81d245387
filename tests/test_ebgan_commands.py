"""The chapter 6 commands besides training: toy2d mode coverage and side-by-side samples."""

import json
import os
import re
import subprocess
import sys

import numpy as np
from PIL import Image

from tests.conftest import REPO
from tests.conftest import run_main


def _run(module, *args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)


def test_toy2d_writes_a_table_a_json_and_scatter_plots(tmp_path):
  out = tmp_path / "results"
  proc = _run("experiments.toy2d", f"--workdir={tmp_path / 'work'}", f"--results_dir={out}",
              "--tiny", "--seeds=2", "--mixtures=ring")
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out / "toy2d.json") as f:
    summary = json.load(f)
  ring = summary["ring"]
  assert len(ring["modes"]) == 8
  for name in ("gan", "ebgan", "ebgan_pt"):
    runs = ring["scores"][name]
    assert [r["seed"] for r in runs] == [0, 1]
    for r in runs:
      assert r["diverged"] or 0 <= r["modes_covered"] <= 8
  table = (out / "toy2d.md").read_text()
  rows = [line for line in table.splitlines() if line.startswith("| ")]
  assert [r.split("|")[1].strip() for r in rows[1:]] == ["GAN", "EBGAN", "EBGAN-PT"]
  # Each row's mean is the mean over its seeds of the JSON's numbers.
  gan = [r["modes_covered"] for r in ring["scores"]["gan"] if not r["diverged"]]
  assert rows[1].split("|")[2].strip().startswith(f"{np.mean(gan):.2f} ± {np.std(gan):.2f}")
  image = np.asarray(Image.open(out / "toy2d_ring.png"))
  assert image.ndim == 3 and image.std() > 0


def test_toy2d_bad_mixture_is_a_one_line_error(tmp_path):
  proc = _run("experiments.toy2d", f"--workdir={tmp_path}", "--mixtures=spiral", "--tiny")
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1].startswith("error: --mixtures")


def test_samples_puts_runs_side_by_side(tmp_path):
  runs = []
  for variant in ("conv64", "dcgan64"):
    workdir = tmp_path / variant
    proc = run_main([f"--config=experiments/ebgan.py:{variant},tiny", f"--workdir={workdir}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs.append(str(workdir))
  output = tmp_path / "side_by_side.png"
  proc = _run("experiments.samples", f"--workdirs={','.join(runs)}", f"--output={output}",
              "--num=4")
  assert proc.returncode == 0, proc.stderr[-3000:]
  spreads = [line for line in proc.stdout.splitlines() if ", spread " in line]
  assert [line.split(":")[0] for line in spreads] == runs
  assert all(0 <= float(re.search(r"spread ([0-9.]+)", line).group(1)) < 2 for line in spreads)
  image = np.asarray(Image.open(output))
  # Two panels of 2x2 tiny 32x32 samples, side by side: wider than tall.
  assert image.shape[1] > image.shape[0] > 64

  proc = _run("experiments.samples", f"--workdirs={runs[0]}", f"--output={tmp_path / 'y.png'}",
              "--num=1")
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1].startswith("error: --num: 1 must be")
  proc = _run("experiments.samples", f"--workdirs={tmp_path / 'missing'}",
              f"--output={tmp_path / 'x.png'}")
  assert proc.returncode == 1
  assert "has no config.json" in proc.stderr.strip().splitlines()[-1]
  assert not os.path.exists(tmp_path / "x.png")


def test_sample_spread_is_numpy_std_across_samples():
  from experiments import samples  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  x = rng.normal(size=(5, 3, 4, 2))
  expected = np.mean([[[np.std(x[:, i, j, k]) for k in range(2)] for j in range(4)]
                      for i in range(3)])
  np.testing.assert_allclose(samples.sample_spread(x), expected, rtol=1e-12)
  # A collapsed generator: every sample the same image.
  assert samples.sample_spread(np.repeat(x[:1], 6, axis=0)) < 1e-12
  with np.testing.assert_raises_regex(ValueError, r"samples: shape \(1, 3, 4, 2\) is not"):
    samples.sample_spread(x[:1])
