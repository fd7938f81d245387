"""The benchmark commands run and report what they promise (on a tiny config; no timing asserted)."""

import subprocess
import sys

import numpy as np

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
  models = [m for m in MODELS if m != "pytorch"]
  out = _run("benchmarks.ebgan_step", "--tiny", "--steps=1",
             "--models=" + ",".join([*models, "pytorch"]))
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
  if "pytorch: not timed in this run (torch is not installed" in out.stdout:
    assert "pytorch reference" in out.stdout and "111-118 images/s" in out.stdout
    assert "ratio pytorch_arch / pytorch reference" in out.stdout
    assert "ratio pytorch_arch:xla / pytorch reference" in out.stdout
  else:  # torch is installed: its iteration is a row of the table, and the ratios are to it
    torch_row = next(line for line in lines if line.startswith("pytorch "))
    assert torch_row.split()[1] == "8" and float(torch_row.split()[3]) > 0
    assert "ratio pytorch_arch / pytorch (images/s, this run)" in out.stdout


def test_ebgan_step_benchmark_bad_and_torch_only_models():
  from benchmarks.ebgan_step import MODELS  # pylint: disable=g-import-not-at-top
  out = _run("benchmarks.ebgan_step", "--tiny", "--steps=1", "--models=ebgan,conv32")
  assert out.returncode != 0
  assert "--models: ['conv32'] are not models" in out.stderr
  assert all(m in out.stderr for m in MODELS) and "Traceback" not in out.stderr
  out = _run("benchmarks.ebgan_step", "--tiny", "--steps=1", "--models=pytorch")
  assert out.returncode == 0, out.stderr[-3000:]
  timed = "pytorch: not timed in this run" not in out.stdout
  # A table is printed only when it has a row.
  assert any(line.startswith("model ") for line in out.stdout.splitlines()) == timed


def test_pytorch_arch_upsampling_forms_are_one_function():
  import jax  # pylint: disable=g-import-not-at-top
  from benchmarks import ebgan_step  # pylint: disable=g-import-not-at-top
  z = jax.random.normal(jax.random.PRNGKey(0), (4, 62))
  fast, plain = ebgan_step.PortGenerator(method="auto"), ebgan_step.PortGenerator(method="xla")
  variables = plain.init(jax.random.PRNGKey(1), z)
  assert (jax.tree_util.tree_structure(variables)
          == jax.tree_util.tree_structure(fast.init(jax.random.PRNGKey(1), z)))
  np.testing.assert_allclose(fast.apply(variables, z), plain.apply(variables, z), atol=1e-5)
  images = plain.apply(variables, z)
  d_fast = ebgan_step.PortAutoEncoder(method="auto")
  d_plain = ebgan_step.PortAutoEncoder(method="xla")
  d_variables = d_plain.init(jax.random.PRNGKey(2), images)
  for a, b in zip(d_fast.apply(d_variables, images), d_plain.apply(d_variables, images)):
    np.testing.assert_allclose(a, b, atol=1e-5)


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


def test_linearize_step_benchmark_reports_every_k():
  from benchmarks.linearize_step import COLUMNS  # pylint: disable=g-import-not-at-top
  out = _run("benchmarks.linearize_step", "--tiny", "--steps=1", "--ks=0,1")
  assert out.returncode == 0, out.stderr[-3000:]
  lines = out.stdout.splitlines()
  assert lines[0].startswith("machine: ") and "backend" in lines[0] and "jax" in lines[0]
  header = next(line for line in lines if line.startswith("row "))
  assert header.split() == list(COLUMNS)
  table = lines[lines.index(header) + 1:]
  rows = {}
  for name, latent_dim, k in (("no delta", 0, "-"), ("k=0", 3, "0"), ("k=1", 3, "1")):
    fields = next(line for line in table if line.startswith(name + " ")).split()
    assert fields[-10:-8] == [str(latent_dim), k], fields
    rows[name] = [float(v) for v in fields[-8:]]
  assert len([line for line in table if line.startswith(("no delta ", "k="))]) == 3
  base_s = rows["no delta"][1]

  def tol(x):  # printed rounding: s/step and GFLOP/step to 4 decimals, ratios to 2
    return 0.006 + 0.02 * abs(x)

  for name, (_, step_s, steps_per_s, images_per_s, gflop, flop_ratio, ratio, ratio_k) in (
      rows.items()):
    k = 0 if name == "no delta" else int(name[2:])
    assert step_s > 0 and steps_per_s > 0 and images_per_s > 0 and gflop > 0, name
    assert abs(steps_per_s - 1 / step_s) <= tol(steps_per_s), name
    assert abs(images_per_s - 3 * 8 * steps_per_s) <= tol(images_per_s), name  # 3 frames, batch 8
    assert abs(ratio - step_s / base_s) <= tol(ratio), name
    assert abs(ratio_k - step_s / ((k + 1) * base_s)) <= tol(ratio_k), name
    assert abs(flop_ratio - gflop / rows["no delta"][4]) <= tol(flop_ratio), name
  assert rows["no delta"][5:] == [1.0, 1.0, 1.0]
  # The delta loop's forward and backward passes add work the cost analysis counts.
  assert rows["k=1"][4] > rows["k=0"][4] and rows["k=1"][5] > 1.0


def test_disentangle_step_benchmark_compares_the_decoders():
  out = _run("benchmarks.disentangle_step", "--tiny", "--steps=1", "--variants=digits,toys")
  assert out.returncode == 0, out.stderr[-3000:]
  lines = out.stdout.splitlines()
  header = next(i for i, line in enumerate(lines) if line.startswith("variant "))
  assert lines[header].split() == ["variant", "decoder", "batch", "compile_s", "s/step",
                                   "images/s", "GFLOP/step", "GFLOP/s", "flax/subpixel"]
  rows = {tuple(line.split()[:2]): line.split()[2:] for line in lines[header + 1:]}
  assert set(rows) == {(v, d) for v in ("digits", "toys") for d in ("subpixel", "flax")}
  for (variant, decoder), fields in rows.items():
    assert int(fields[0]) == 8  # the tiny configs' batch
    step_s, images_s = float(fields[2]), float(fields[3])
    # images/s counts the three images of each triplet.
    np.testing.assert_allclose(images_s, 3 * 8 / step_s, rtol=0.05)  # s/step has 4 decimals
    assert (fields[-1] == "-") == (decoder == "flax")


def test_ladder_seeds_benchmark_compares_vmap_with_one_at_a_time():
  out = _run("benchmarks.ladder_seeds", "--tiny", "--seeds=2", "--steps=3")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "2 seeds x 3 steps" in out.stdout
  rates = {}
  for way in ("vmap", "one at a time"):
    line = next(l for l in out.stdout.splitlines() if l.strip().startswith(way + ":"))
    seconds, rate = line.split(":")[1].split(" s in all, ")
    rates[way] = float(rate.split()[0])
    assert float(seconds) > 0 and rates[way] > 0, line
  ratio = next(l for l in out.stdout.splitlines() if l.startswith("ratio vmap / one at a time"))
  assert f"{rates['vmap'] / rates['one at a time']:.2f}x the step rate" in ratio
