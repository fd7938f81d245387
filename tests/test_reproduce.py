"""`experiments/reproduce.py`: trains the rows of Table 4.4, reuses finished runs, writes results."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from experiments import reproduce
from tests.conftest import REPO
from tests.conftest import tree_snapshot

_ROWS = "--rows=l1,multimodal_l2"


def _strict_json(text):
  """Parses JSON, refusing the non-standard NaN and Infinity literals."""
  def refuse(name):
    raise ValueError(f"non-standard JSON literal {name}")
  return json.loads(text, parse_constant=refuse)


def _run(*args, timeout=900):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  return subprocess.run([sys.executable, "-m", "experiments.reproduce", *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("reproduce")
  args = ["--table=4.4", "--budget=tiny", _ROWS, f"--workdir={root / 'runs'}",
          f"--results_dir={root / 'results'}"]
  proc = _run(*args)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return root, args, proc


def test_tiny_reproduction_writes_table_json_and_figures(tiny_run):
  root, _, proc = tiny_run
  results = root / "results"
  markdown = (results / "video_pred.md").read_text()
  assert "python -m experiments.reproduce --table=4.4 --budget=tiny" in markdown
  for heading in ("(a) full frame", "(b) moving areas (optical-flow mask)",
                  "(c) moving areas (exact mask", "Several possible futures"):
    assert heading in markdown
  table_b = markdown[markdown.index("(b) moving"):markdown.index("(c) moving")]
  assert [line.split("|")[1].strip() for line in table_b.splitlines() if line.startswith("| ")
          and "PSNR" not in line] == ["L1", "Last input", "Optical flow"]
  payload = _strict_json((results / "video_pred.json").read_text())
  [row] = payload["rows"]
  [mode_row] = payload["multimodal_rows"]
  # Every number in the results is the run's own evaluation.
  with open(os.path.join(row["run_dir"], "eval.json")) as f:
    assert row["eval"] == _strict_json(f.read())
  assert row["steps"] == 2 and row["eval"]["step"] == 2 and row["seconds"] > 0
  psnr = row["eval"]["moving/frame1/psnr"]
  assert f"| L1 | {psnr:.1f} |" in table_b
  assert 0 <= mode_row["eval"]["modes/mode_coverage"] <= 1
  assert "modes/mode_distance" in mode_row["eval"]
  for name in ("video_pred", "video_pred_multimodal"):
    image = np.asarray(Image.open(results / f"{name}.png"))
    assert image.ndim == 3 and image.shape[0] > 64 and image.std() > 0
    with Image.open(results / f"{name}.gif") as gif:
      assert gif.n_frames == 4 + 2  # the inputs, then two predicted frames
  assert proc.stdout.count("[1/2]") == 1 and "[2/2]" in proc.stdout


def test_rerun_reuses_finished_runs(tiny_run):
  root, args, _ = tiny_run
  before = tree_snapshot(root / "runs")
  first = json.loads((root / "results" / "video_pred.json").read_text())
  proc = _run(*args)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.count("finished earlier; reusing its evaluation") == 2
  assert tree_snapshot(root / "runs") == before  # nothing retrained or rewritten
  again = json.loads((root / "results" / "video_pred.json").read_text())
  # The reused rows keep the numbers and the training time of the session that trained them.
  assert again["rows"] == first["rows"] and again["multimodal_rows"] == first["multimodal_rows"]


def test_run_directory_of_another_config_is_an_error_and_is_left_alone(tiny_run, tmp_path):
  root, args, _ = tiny_run
  runs = tmp_path / "runs"
  os.makedirs(runs / "l1")
  config = json.loads((root / "runs" / "l1" / "config.json").read_text())
  config["p"] = 2.0
  (runs / "l1" / "config.json").write_text(json.dumps(config))
  before = tree_snapshot(runs)
  proc = _run("--table=4.4", "--budget=tiny", _ROWS, f"--workdir={runs}",
              f"--results_dir={tmp_path / 'results'}")
  assert proc.returncode == 1
  message = proc.stderr.strip().splitlines()[-1]
  assert message.startswith("error: workdir:") and "another config" in message
  assert "p: 2.0 there, 1.0 here" in message
  assert tree_snapshot(runs) == before and not (tmp_path / "results").exists()


@pytest.mark.parametrize("args, message", [
    (["--table=4.3"], "unknown table '4.3'; valid: ['3', '4.4', '5.2', '6.2']"),
    (["--table=4.4", "--budget=-1"], "budget: '-1' is neither a positive number nor 'tiny'"),
    (["--table=4.4", "--rows=l3"], "rows: unknown rows ['l3']"),
    (["--table=4.4", "--rows=multimodal_l2"], "at least one row of the main table"),
])
def test_bad_arguments_are_one_line_errors(args, message, tmp_path):
  proc = _run(*args, f"--workdir={tmp_path / 'runs'}", f"--results_dir={tmp_path / 'results'}")
  assert proc.returncode == 1, proc.stdout
  assert message in proc.stderr.strip().splitlines()[-1]
  assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_row_configs_scale_steps_and_keep_the_variant():
  scale = reproduce.parse_budget("0.5")
  for group in reproduce.TABLES["4.4"]:
    for row in group:
      config = reproduce.row_config(row, scale)
      assert config.total_steps == round(row.steps * 0.5) == 4 * config.eval_every
      assert config.d_loss_reduction == "sum"
      assert config.dataset == ("multimodal_photos" if "multimodal" in row.config_arg
                                else "moving_photos")


def test_table_3_tiny_writes_its_table_and_figures(tmp_path):
  proc = _run("--table=3", "--budget=tiny", "--rows=shallow1,deep3_skip_latent",
              f"--workdir={tmp_path / 'runs'}", f"--results_dir={tmp_path / 'results'}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = tmp_path / "results"
  markdown = (results / "linearize.md").read_text()
  assert "python -m experiments.reproduce --table=3 --budget=tiny" in markdown
  payload = _strict_json((results / "linearize.json").read_text())
  assert [row["name"] for row in payload["rows"]] == ["shallow1", "deep3_skip_latent"]
  for row in payload["rows"]:
    with open(os.path.join(row["run_dir"], "eval.json")) as f:
      assert row["eval"] == _strict_json(f.read())
    # The table's cells are the run's numbers.
    assert f"{row['eval']['test/mse']:.4f}" in markdown
  latent = payload["rows"][1]["eval"]
  assert f"{latent['skip/accuracy']:.3f}" in markdown
  # Of the figures, only those of trained rows are drawn: the skip comparison and Shallow 1's
  # filters.
  assert sorted(p.name for p in results.glob("*.png")) == ["linearize_filters_shallow1.png",
                                                           "linearize_skip.png"]
  skip = np.asarray(Image.open(results / "linearize_skip.png"))
  assert skip.ndim == 3 and skip.shape[1] == 7 * 34 * 2  # 7 times, 32 px + borders, scale 2


def test_table_3_runs_table_gives_each_row_its_whole_config(tmp_path):
  from experiments import linearize_table  # pylint: disable=g-import-not-at-top
  record = {"test/mse": 0.25, "num_test": 4.0}
  rows = [dict(name=name, label=name, config_arg="deep3,skip,latent", overrides=overrides,
               steps=2, seconds=3.0, dataset="rotating_toys", run_dir="", eval=record)
          for name, overrides in (("thesis", {}), ("residual", {"latent_correction": "residual"}))]
  markdown = linearize_table.write_results(str(tmp_path), command="c", machine="m", budget="1",
                                           rows=rows)
  assert "| thesis | `linearize.py:deep3,skip,latent` | 2 | 3 |" in markdown
  assert ("| residual | `linearize.py:deep3,skip,latent --config.latent_correction=residual` | 2 "
          "| 3 |") in markdown


def test_table_3_rows_scale_their_steps():
  scale = reproduce.parse_budget("0.5")
  for row in reproduce.TABLES["3"][0]:
    config = reproduce.row_config(row, scale)
    assert config.task == "linearize" and config.total_steps == round(row.steps * 0.5)
    assert config.width_multiplier == 0.25


def test_table_3_residual_row_differs_from_the_thesis_row_only_in_the_correction():
  rows = {row.name: reproduce.row_config(row, 1.0) for row in reproduce.TABLES["3"][0]}
  thesis = rows["deep3_skip_latent"].to_dict()
  residual = rows["deep3_skip_latent_residual"].to_dict()
  assert thesis["latent_correction"] == "thesis" and residual["latent_correction"] == "residual"
  assert {k for k in thesis if thesis[k] != residual[k]} == {"latent_correction"}
