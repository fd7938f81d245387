"""Tests of the Table 6.1 grid search (thesis 6.3.1): `training.grid` and `experiments.grid`.

The training tests run the `grid,tiny` config's smallest selection: the EBGAN and GAN groups of
one architecture plus one EBGAN-PT configuration, the groups `experiments.grid --sample=2` trains,
so the command-line tests find their compiled steps (and the I' classifier) already made.
"""

import collections
import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from experiments import ebgan as ebgan_configs
from tests.conftest import REPO, tree_snapshot, xla_cache_env
from uncertainty_jax.models import ebgan as ebgan_models
from uncertainty_jax.training import grid

POINT_FIELDS = tuple(f.name for f in dataclasses.fields(grid.GridPoint))
RECORD_FIELDS = set(POINT_FIELDS) | {"id", "steps", "diverged", "inception_score",
                                     "classes_covered", "final", "seconds", "group_size"}
FIGURES = ("inception_histograms.png", "optimizer_histograms.png", "best_samples.png",
           "summary.md")


def _config(arg="grid"):
  return ebgan_configs.get_config(arg)


def _tiny():
  return ebgan_configs.get_config("grid,tiny")


def _expected_points(g):
  """Table 6.1 spelled out from the config's values: {(framework, ...GridPoint fields): count}."""
  expected = collections.Counter()
  for framework in g.frameworks:
    if framework == "gan":
      optim = list(itertools.product(("adam", "sgd"), ("adam", "sgd"), g.learning_rates))
    else:
      optim = [("adam", "adam", g.ebgan_learning_rate)]
    for lg, sg, ld, sd, drop, (od, og, lr), seed in itertools.product(
        g.num_layers_g, g.size_g, g.num_layers_d, g.size_d, g.dropout_d, optim, g.seeds):
      expected[(framework, lg, sg, ld, sd, drop, od, og, lr, seed)] += 1
  return expected


def _key(p):
  return tuple(getattr(p, f) for f in POINT_FIELDS)


def _architectures(points):
  return {p.architecture for p in points}


def _shapes(points, framework):
  """The (nLayerG, sizeG, nLayerD, sizeD) of `framework`'s points."""
  return {p.architecture[1:] for p in points if p.framework == framework}


def _lines(path):
  """The lines of a JSONL file, each parsed; the file must end with a newline."""
  with open(path, "rb") as f:
    data = f.read()
  assert data.endswith(b"\n")
  return [json.loads(line) for line in data.decode().splitlines()]


# --- Table 6.1 ----------------------------------------------------------------------------------


def test_table_6_1_counts_and_combinations():
  g = _config().grid
  points = grid.table_6_1(g)
  by_framework = collections.Counter(p.framework for p in points)
  # Table 6.1: 4^4 * 2 = 512 per framework; GANs times optimD x optimG x 3 learning rates.
  assert by_framework == {"ebgan": 512, "gan": 512 * 2 * 2 * 3}
  assert collections.Counter(_key(p) for p in points) == _expected_points(g)
  ids = [p.id for p in points]
  assert len(set(ids)) == len(ids)
  again = grid.table_6_1(g)
  assert again == points
  assert [p.id for p in again] == ids


def test_table_6_1_ebgan_optimizers_and_gan_learning_rates():
  points = grid.table_6_1(_config().grid)
  ebgans = [p for p in points if p.framework == "ebgan"]
  assert {(p.optimizer_d, p.optimizer_g, p.learning_rate) for p in ebgans} == {
      ("adam", "adam", 0.001)}
  gans = [p for p in points if p.framework == "gan"]
  assert {p.learning_rate for p in gans} == {0.01, 0.001, 0.0001}
  assert {(p.optimizer_d, p.optimizer_g) for p in gans} == set(
      itertools.product(("adam", "sgd"), repeat=2))
  assert all(p.lambda_pt == 0.0 for p in points)


def test_grid_config_defaults_are_table_6_1():
  g = _config().grid
  for field in dataclasses.fields(ebgan_models.MNIST_GRID):
    assert tuple(g[field.name]) == tuple(getattr(ebgan_models.MNIST_GRID, field.name)), field.name
  assert tuple(g.frameworks) == ("ebgan", "gan")
  assert g.ebgan_learning_rate == 0.001


def test_ebgan_pt_searches_what_ebgan_does():
  g = _tiny().grid
  g.frameworks = ("ebgan", "ebgan_pt")
  points = grid.table_6_1(g)
  ebgan = [dataclasses.replace(p, framework="x") for p in points if p.framework == "ebgan"]
  pt = [dataclasses.replace(p, framework="x") for p in points if p.framework == "ebgan_pt"]
  assert ebgan == pt and ebgan
  assert {p.lambda_pt for p in points if p.framework == "ebgan_pt"} == {0.1}


@pytest.mark.parametrize("field,value", [
    ("frameworks", ("ebgan", "wgan")),
    ("frameworks", ()),
    ("num_layers_g", ()),
    ("size_d", ()),
    ("dropout_d", ()),
    ("seeds", ()),
    ("learning_rates", ()),
    ("num_layers_g", (1, 2)),
    ("num_layers_d", (2, 1)),
    ("size_g", (0,)),
])
def test_table_6_1_bad_grid(field, value):
  g = _tiny().grid
  g[field] = value
  with pytest.raises(ValueError, match=f"grid.{field}"):
    grid.table_6_1(g)


# --- groups and selection -----------------------------------------------------------------------


def test_group_by_architecture():
  points = grid.table_6_1(_config().grid)
  groups = grid.group_by_architecture(points)
  assert sorted(_key(p) for g in groups for p in g) == sorted(_key(p) for p in points)
  assert len({g[0].architecture for g in groups}) == len(groups) == 512
  for g in groups:
    assert len({p.architecture for p in g}) == 1
    if g[0].framework == "ebgan":
      assert len(g) == 2 and {p.dropout_d for p in g} == {True, False}
    else:
      assert len(g) == 2 * 2 * 2 * 3  # dropoutD x optimD x optimG x lr


def test_select_everything():
  points = grid.table_6_1(_config().grid)
  assert grid.select(points) == points
  assert sorted(map(_key, grid.select(points, sample=10**6))) == sorted(map(_key, points))


@pytest.mark.parametrize("sample", [1, 2, 10, 200, 1000])
def test_select_sample_whole_architectures_per_framework(sample):
  points = grid.table_6_1(_config().grid)
  groups = {g[0].architecture: g for g in grid.group_by_architecture(points)}
  chosen = grid.select(points, sample=sample, seed=0)
  assert len({p.id for p in chosen}) == len(chosen)
  # Whole architectures only.
  for arch in _architectures(chosen):
    assert sorted(p.id for p in chosen if p.architecture == arch) == sorted(
        p.id for p in groups[arch])
  share = -(-sample // 2)
  for framework, group_size in (("ebgan", 2), ("gan", 24)):
    n = sum(p.framework == framework for p in chosen)
    total = sum(p.framework == framework for p in points)
    assert min(share, total) <= n <= share + group_size - 1
  # GANs are drawn in the order of the EBGANs' shapes.
  assert _shapes(chosen, "gan") <= _shapes(chosen, "ebgan")


def test_select_seed():
  points = grid.table_6_1(_config().grid)
  a = grid.select(points, sample=200, seed=0)
  assert grid.select(points, sample=200, seed=0) == a
  b = grid.select(points, sample=200, seed=1)
  assert _architectures(a) != _architectures(b)
  assert _shapes(b, "gan") <= _shapes(b, "ebgan")


@pytest.mark.parametrize("num_shards", [1, 2, 3, 5])
@pytest.mark.parametrize("sample", [None, 200])
def test_select_shards_partition_the_selection(num_shards, sample):
  points = grid.table_6_1(_config().grid)
  whole = grid.select(points, sample=sample, seed=4)
  shards = [grid.select(points, sample=sample, seed=4, shard=k, num_shards=num_shards)
            for k in range(num_shards)]
  for i, j in itertools.combinations(range(num_shards), 2):
    assert not {p.id for p in shards[i]} & {p.id for p in shards[j]}
    assert not _architectures(shards[i]) & _architectures(shards[j])
  union = [p for s in shards for p in s]
  assert len(union) == len(whole)
  assert sorted(map(_key, union)) == sorted(map(_key, whole))


@pytest.mark.parametrize("kwargs,name", [
    (dict(sample=0), "sample"),
    (dict(sample=-3), "sample"),
    (dict(sample=2.5), "sample"),
    (dict(sample=True), "sample"),
    (dict(shard=-1), "shard"),
    (dict(shard=2, num_shards=2), "shard"),
    (dict(shard=True, num_shards=2), "shard"),
    (dict(num_shards=0), "num_shards"),
    (dict(num_shards=-1), "num_shards"),
    (dict(num_shards=1.0), "num_shards"),
])
def test_select_bad_arguments(kwargs, name):
  points = grid.table_6_1(_tiny().grid)
  with pytest.raises(ValueError, match=f"^{name}:"):
    grid.select(points, **kwargs)


def test_select_more_shards_than_groups():
  points = grid.table_6_1(_tiny().grid)
  chosen = grid.select(points, sample=2)
  assert len(grid.group_by_architecture(chosen)) == 2
  assert grid.select(points, sample=2, shard=1, num_shards=3)
  with pytest.raises(ValueError, match="no configuration selected"):
    grid.select(points, sample=2, shard=2, num_shards=3)


# --- the workdir's fingerprint ------------------------------------------------------------------


def test_check_workdir_writes_once_and_accepts_same_settings(tmp_path):
  config = _tiny()
  workdir = str(tmp_path / "w")
  grid.check_workdir(config, workdir)
  with open(os.path.join(workdir, grid.FINGERPRINT)) as f:
    written = json.load(f)
  assert written == grid.fingerprint(config)
  assert written["margin"] == config.margin and written["steps"] == config.grid.steps
  before = tree_snapshot(workdir)
  assert list(before) == [grid.FINGERPRINT]
  grid.check_workdir(_tiny(), workdir)
  # What the records do not depend on may differ.
  other = _tiny()
  other.grid.keep_samples = 7
  grid.check_workdir(other, workdir)
  assert tree_snapshot(workdir) == before


@pytest.mark.parametrize("change,name", [
    (lambda c: setattr(c, "margin", 5.0), "margin"),
    (lambda c: setattr(c.grid, "steps", 7), "steps"),
    (lambda c: setattr(c, "batch_size", 16), "batch_size"),
    (lambda c: setattr(c, "energy_reduction", "mean"), "energy_reduction"),
])
def test_check_workdir_refuses_other_settings(tmp_path, change, name):
  workdir = str(tmp_path / "w")
  grid.check_workdir(_tiny(), workdir)
  with open(os.path.join(workdir, "results.jsonl"), "w") as f:
    f.write('{"id": "x", "framework": "ebgan", "inception_score": 1.0}\n')
  before = tree_snapshot(workdir)
  other = _tiny()
  change(other)
  with pytest.raises(ValueError, match=name):
    grid.check_workdir(other, workdir)
  assert tree_snapshot(workdir) == before


# --- training and records -----------------------------------------------------------------------


def _run_points(config):
  """One EBGAN-PT point, then the GAN and EBGAN groups of `--sample=2`'s architecture."""
  chosen = grid.select(grid.table_6_1(config.grid), sample=2, seed=0)
  ebgan = [p for p in chosen if p.framework == "ebgan"]
  gan = [p for p in chosen if p.framework == "gan"]
  assert len(ebgan) == 2 and len(gan) == 16
  # The EBGAN group comes last so that a torn last line leaves one of its members intact.
  return [dataclasses.replace(ebgan[1], framework="ebgan_pt")] + gan + ebgan


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A workdir after one `run` of `_run_points`, with the config and the train_group calls."""
  root = tmp_path_factory.mktemp("grid")
  config = _tiny()
  config.classifier_dir = str(root / "classifier")
  points = _run_points(config)
  workdir = str(root / "run")
  calls = []
  original = grid.train_group

  def counting(config, points, *args, **kwargs):
    calls.append(list(points))
    return original(config, points, *args, **kwargs)

  with pytest.MonkeyPatch.context() as m:
    m.setattr(grid, "train_group", counting)
    records = grid.run(config, workdir, points, log=lambda message: None)
  return dict(config=config, points=points, workdir=workdir, records=records, calls=calls,
              classifier_dir=config.classifier_dir)


def test_run_records(trained):
  config, points, records = trained["config"], trained["points"], trained["records"]
  by_arch = collections.Counter(p.architecture for p in points)
  assert trained["calls"] == grid.group_by_architecture(points)
  assert [r["id"] for r in records] == [p.id for p in points]
  assert _lines(os.path.join(trained["workdir"], grid.RESULTS)) == records
  finite = 0
  for point, r in zip(points, records):
    assert set(r) == RECORD_FIELDS
    assert {f: r[f] for f in POINT_FIELDS} == dataclasses.asdict(point)
    assert grid.GridPoint(**{f: r[f] for f in POINT_FIELDS}).id == r["id"]
    assert r["steps"] == config.grid.steps
    assert r["group_size"] == by_arch[point.architecture]
    assert isinstance(r["diverged"], bool)
    assert isinstance(r["seconds"], float) and r["seconds"] > 0
    assert set(r["final"]) == {"d/loss", "g/loss"}
    assert all(v is None or isinstance(v, float) for v in r["final"].values())
    samples = np.load(os.path.join(trained["workdir"], "samples", f"{r['id']}.npy"))
    assert samples.shape == (config.grid.keep_samples, 8, 8, 1)
    assert samples.dtype == np.float32
    if r["diverged"]:
      assert r["inception_score"] is None
    else:
      finite += 1
      # I' is a mean of KL divergences (eq. 6.62): a non-negative float.
      assert isinstance(r["inception_score"], float) and r["inception_score"] >= -1e-6
      assert None not in r["final"].values()
      assert np.all(np.isfinite(samples)) and np.all(np.abs(samples) <= 1)
  assert finite > 0


def test_run_again_trains_nothing(trained, monkeypatch):
  results = os.path.join(trained["workdir"], grid.RESULTS)
  with open(results, "rb") as f:
    before = f.read()

  def fail(*args, **kwargs):
    raise AssertionError("train_group called for configurations already recorded")

  monkeypatch.setattr(grid, "train_group", fail)
  records = grid.run(trained["config"], trained["workdir"], trained["points"],
                     log=lambda message: None)
  assert records == trained["records"]
  with open(results, "rb") as f:
    assert f.read() == before


def test_run_resumes_after_torn_write(trained, tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  shutil.copytree(trained["workdir"], workdir)
  results = os.path.join(workdir, grid.RESULTS)
  with open(results, "rb") as f:
    data = f.read()
  last = data.rstrip(b"\n").rfind(b"\n") + 1
  torn_id = json.loads(data[last:])["id"]
  with open(results, "wb") as f:
    f.write(data[:last + (len(data) - last) // 2])
  calls = []
  original = grid.train_group

  def counting(config, points, *args, **kwargs):
    calls.append(list(points))
    return original(config, points, *args, **kwargs)

  monkeypatch.setattr(grid, "train_group", counting)
  with pytest.warns(RuntimeWarning, match="incomplete"):
    records = grid.run(trained["config"], workdir, trained["points"], log=lambda message: None)
  # Only the torn configuration is missing: its group's other member is recorded intact.
  torn = [p for p in trained["points"] if p.id == torn_id]
  assert calls == [torn]
  with open(results, "rb") as f:
    repaired = f.read()
  assert repaired.startswith(data[:last])
  lines = _lines(results)
  ids = [r["id"] for r in lines]
  assert len(ids) == len(set(ids)) == len(trained["points"])
  assert set(ids) == {p.id for p in trained["points"]}
  assert lines == records
  new = records[-1]
  assert new["id"] == torn_id and new["group_size"] == 1
  old = trained["records"][-1]
  assert {f: new[f] for f in POINT_FIELDS + ("steps",)} == {
      f: old[f] for f in POINT_FIELDS + ("steps",)}
  # A member of a vmapped group trains as it does alone: same seed, same batches.
  assert new["diverged"] == old["diverged"] is False
  for name in ("d/loss", "g/loss"):
    np.testing.assert_allclose(new["final"][name], old["final"][name], rtol=1e-4)
  np.testing.assert_allclose(new["inception_score"], old["inception_score"], rtol=1e-3)


# --- the command line ---------------------------------------------------------------------------


def _grid_command(args, timeout=300):
  """`python -m experiments.grid ARGS` in a fresh CPU process sharing the tests' XLA cache."""
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  env["JAX_PLATFORMS"] = "cpu"
  env.update(xla_cache_env() or {})
  return subprocess.run([sys.executable, "-m", "experiments.grid", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)


def _error_line(proc):
  assert proc.returncode == 1, proc.stdout + proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
  return lines[0]


def test_cli_list(tmp_path):
  workdir = str(tmp_path / "w")
  points = grid.table_6_1(_config().grid)
  proc = _grid_command(["--config=experiments/ebgan.py:grid", f"--workdir={workdir}", "--list"])
  assert proc.returncode == 0, proc.stderr
  assert f"{len(points)} configurations in 512 architectures" in proc.stdout
  chosen = grid.select(points, sample=100, seed=3)
  proc = _grid_command(["--config=experiments/ebgan.py:grid", f"--workdir={workdir}", "--list",
                        "--sample=100", "--seed=3"])
  groups = len(grid.group_by_architecture(chosen))
  assert f"{len(chosen)} configurations in {groups} architectures" in proc.stdout
  assert not os.path.exists(workdir)


@pytest.fixture(scope="module")
def cli_run(trained, tmp_path_factory):
  """A `--sample=2` search through the command line, with the classifier `trained` made."""
  workdir = str(tmp_path_factory.mktemp("cli") / "w")
  args = ["--config=experiments/ebgan.py:grid,tiny", f"--workdir={workdir}", "--sample=2",
          f"--config.classifier_dir={trained['classifier_dir']}"]
  proc = _grid_command(args)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  return dict(workdir=workdir, args=args, proc=proc)


def test_cli_sample_run_and_figures(cli_run, trained):
  workdir = cli_run["workdir"]
  records = _lines(os.path.join(workdir, grid.RESULTS))
  chosen = grid.select(grid.table_6_1(_tiny().grid), sample=2, seed=0)
  ids = [r["id"] for r in records]
  assert ids[:-1] == [p.id for p in chosen]
  # Figure 6.4c: the best EBGAN's configuration again with lambda_PT.
  ebgans = [r for r in records if r["framework"] == "ebgan" and r["inception_score"] is not None]
  best = max(ebgans, key=lambda r: r["inception_score"])
  pt = grid.GridPoint(**{**{f: best[f] for f in POINT_FIELDS}, "framework": "ebgan_pt"})
  assert ids[-1] == pt.id
  for name in FIGURES:
    path = os.path.join(workdir, "figures", name)
    assert os.path.getsize(path) > 0, name
    assert f"wrote {path}" in cli_run["proc"].stdout
  with open(os.path.join(workdir, "figures", "best_samples.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_cli_rerun_trains_nothing(cli_run):
  results = os.path.join(cli_run["workdir"], grid.RESULTS)
  with open(results, "rb") as f:
    before = f.read()
  proc = _grid_command(cli_run["args"])
  assert proc.returncode == 0, proc.stderr
  assert "0 to train" in proc.stdout
  with open(results, "rb") as f:
    assert f.read() == before


def test_cli_other_margin_leaves_the_workdir_alone(cli_run):
  before = tree_snapshot(cli_run["workdir"])
  line = _error_line(_grid_command(cli_run["args"] + ["--config.margin=5"]))
  assert "margin" in line
  assert tree_snapshot(cli_run["workdir"]) == before


def test_cli_empty_grid(tmp_path):
  workdir = str(tmp_path / "w")
  line = _error_line(_grid_command(["--config=experiments/ebgan.py:grid,tiny",
                                    f"--workdir={workdir}", "--config.grid.seeds=()"]))
  assert "grid.seeds" in line and "empty" in line
  assert not os.path.exists(workdir)


def test_cli_bad_shard(tmp_path):
  workdir = str(tmp_path / "w")
  line = _error_line(_grid_command(["--config=experiments/ebgan.py:grid,tiny",
                                    f"--workdir={workdir}", "--shard=2", "--num_shards=2"]))
  assert line.startswith("error: shard: 2")
  assert not os.path.exists(workdir)


def test_repeated_grid_values_are_an_error():
  g = ebgan_configs.get_config("grid,tiny").grid
  g.learning_rates = (0.01, 0.001, 0.001)  # Table 6.1's lr column as printed
  with pytest.raises(ValueError, match=r"grid\.learning_rates.*repeats"):
    grid.table_6_1(g)
