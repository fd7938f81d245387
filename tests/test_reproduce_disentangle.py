"""`python -m experiments.reproduce --table=5.2`: chapter 5's tables, JSON and figures."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from experiments import disentangle_table
from experiments import reproduce
from tests.conftest import REPO
from tests.conftest import tree_snapshot
from tests.conftest import xla_cache_env
from tests.test_reproduce import _strict_json
from uncertainty_jax import data as data_lib
from uncertainty_jax.data import sprites
from uncertainty_jax.evaluation import disentangle as evaluation
from uncertainty_jax.training import sharding as sharding_lib

_ROWS = [row.name for row in reproduce.TABLES["5.2"][0]]
_LABELS = {row.name: row.label for row in reproduce.TABLES["5.2"][0]}
# Each dataset's probed factors, as the data modules name them.
_PROBED = {"sprites": list(sprites.IDENTITY_NAMES), "toys": ["category"], "digits": ["digit"]}
_CODES = (("z", "train"), ("z", "test"), ("s", "train"), ("s", "test"), ("chance", "train"),
          ("chance", "test"))


def _run(*args, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS="cpu", **(xla_cache_env() or {}))
  env.pop("XLA_FLAGS", None)
  return subprocess.run([sys.executable, "-m", "experiments.reproduce", *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=timeout)


def _sections(markdown):
  """{heading: text} of the '## ' sections; the text before the first one under ''."""
  out, heading = {"": []}, ""
  for line in markdown.splitlines():
    if line.startswith("## "):
      heading = line[3:]
      out[heading] = []
    else:
      out[heading].append(line)
  return {k: "\n".join(v) for k, v in out.items()}


def _table(text):
  """(header cells, [row cells]) of the one Markdown table in `text`."""
  lines = [line for line in text.splitlines() if line.startswith("|")]
  cells = [[c.strip() for c in line.strip()[1:-1].split("|")] for line in lines]
  assert all(set(c) <= set("-:") for c in cells[1]), cells[1]
  return cells[0], cells[2:]


def _section(markdown, prefix):
  [heading] = [h for h in _sections(markdown) if h.startswith(prefix)]
  return _table(_sections(markdown)[heading])


def _pct(value):
  return f"{100 * value:.1f}%"


def _mean_error(record, dataset, code, split):
  return np.mean([record[f"table/{name}/{code}/{split}_error"] for name in _PROBED[dataset]])


def _png(path):
  return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  root = tmp_path_factory.mktemp("reproduce_disentangle")
  args = ["--table=5.2", "--budget=tiny", f"--workdir={root / 'runs'}"]
  proc = _run(*args, f"--results_dir={root / 'results'}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  payload = _strict_json((root / "results" / "disentangle.json").read_text())
  markdown = (root / "results" / "disentangle.md").read_text()
  return root, args, proc, payload, markdown


def test_every_row_is_trained_and_its_evaluation_kept(tiny):
  _, _, proc, payload, markdown = tiny
  for i in range(1, 6):
    assert f"[{i}/5]" in proc.stdout
  assert payload["table"] == "5.2" and payload["budget"] == "tiny"
  assert [row["name"] for row in payload["rows"]] == _ROWS
  for row in payload["rows"]:
    with open(os.path.join(row["run_dir"], "eval.json")) as f:
      assert row["eval"] == _strict_json(f.read())
    assert row["steps"] == 2 and row["eval"]["step"] == 2 and row["seconds"] > 0
  assert "python -m experiments.reproduce --table=5.2 --budget=tiny" in markdown
  header, rows = _table(_sections(markdown)[""])
  assert header == ["row", "config", "data", "steps", "training time (s)"]
  assert [r[0] for r in rows] == [_LABELS[n] for n in _ROWS]
  assert [r[1] for r in rows] == [f"`disentangle.py:{row.config_arg}`"
                                  for row in reproduce.TABLES["5.2"][0]]
  assert [r[2] for r in rows] == ["sprites"] * 3 + ["toys", "digits"]
  assert [r[3] for r in rows] == ["2"] * 5


def test_table_5_2_holds_the_runs_error_rates_beside_the_thesis(tiny):
  _, _, _, payload, markdown = tiny
  evals = {row["name"]: row["eval"] for row in payload["rows"]}
  header, rows = _section(markdown, "Table 5.2")
  assert header == ["", "Sprites z", "Sprites s", "Sprites z, thesis", "Sprites s, thesis",
                    "NORB-like toys z", "NORB-like toys s", "NORB-like toys z, thesis",
                    "NORB-like toys s, thesis", "Digits z", "Digits s"]
  assert [r[0] for r in rows] == ["train", "test", "no input (chance)"]
  columns = {title: [r[i] for r in rows] for i, title in enumerate(header)}
  for name, title in (("sprites", "Sprites"), ("toys", "NORB-like toys"), ("digits", "Digits")):
    record = evals[name]
    chance = _pct(_mean_error(record, name, "chance", "test"))
    for code in ("z", "s"):
      assert columns[f"{title} {code}"] == [_pct(_mean_error(record, name, code, "train")),
                                           _pct(_mean_error(record, name, code, "test")),
                                           chance]
  # The thesis' Table 5.2 (Sprites and NORB columns).
  assert columns["Sprites z, thesis"] == ["58.6%", "59.8%", "60.0%"]
  assert columns["Sprites s, thesis"] == ["5.5%", "5.2%", "60.0%"]
  assert columns["NORB-like toys z, thesis"] == ["79.8%", "79.9%", "80.0%"]
  assert columns["NORB-like toys s, thesis"] == ["2.6%", "13.5%", "80.0%"]


def test_sprites_attributes_and_every_rows_probes(tiny):
  _, _, _, payload, markdown = tiny
  evals = {row["name"]: row["eval"] for row in payload["rows"]}
  header, rows = _section(markdown, "Sprites by attribute")
  assert header == ["attribute", "z train", "z test", "s train", "s test", "chance train",
                    "chance test"]
  assert [r[0] for r in rows] == list(sprites.IDENTITY_NAMES) + ["mean"]
  record = evals["sprites"]
  for r in rows[:-1]:
    assert r[1:] == [_pct(record[f"table/{r[0]}/{code}/{split}_error"]) for code, split in _CODES]
  assert rows[-1][1:] == [_pct(_mean_error(record, "sprites", c, s)) for c, s in _CODES]

  header, rows = _section(markdown, "Every row's probes")
  assert header == ["row", "probed"] + ["z train", "z test", "s train", "s test", "chance train",
                                        "chance test"]
  assert [r[0] for r in rows] == [_LABELS[n] for n in _ROWS]
  for name, r in zip(_ROWS, rows):
    dataset = payload["rows"][_ROWS.index(name)]["dataset"]
    assert r[1] == ("mean of 7 attributes" if dataset == "sprites" else _PROBED[dataset][0])
    assert r[2:] == [_pct(_mean_error(evals[name], dataset, c, s)) for c, s in _CODES]


def test_swap_errors_and_scores(tiny):
  _, _, _, payload, markdown = tiny
  evals = {row["name"]: row["eval"] for row in payload["rows"]}
  header, rows = _section(markdown, "Swap error")
  assert header == ["row", "reconstruction MSE", "swap MSE", "swap MSE, thesis",
                    "copying the image that gave s"]
  assert [r[0] for r in rows] == [_LABELS[n] for n in _ROWS]
  thesis = {"sprites": "0.014", "sprites_pretrained_s": "0.024",
            "sprites_pretrained_s_no_adv": "0.030"}
  for name, r in zip(_ROWS, rows):
    record = evals[name]
    # Pixels in [0, 1]: the eval's errors of [-1, 1] pixels, divided by 4.
    assert r[1] == f"{record['test/reconstruction_mse'] / 4:.4f}"
    if name == "digits":  # no renderer, no ground truth for swaps
      assert "swap/mse" not in record and r[2:] == ["–", "–", "–"]
      continue
    assert record["swap/mse_01"] == pytest.approx(record["swap/mse"] / 4)
    assert r[2] == f"{record['swap/mse_01']:.4f}"
    assert r[3] == thesis.get(name, "–")
    assert r[4] == f"{record['swap/mse_s_image'] / 4:.4f}"

  header, rows = _section(markdown, "Disentanglement scores")
  keys = ["scores/mig", "scores/dci_disentanglement", "scores/dci_completeness",
          "scores/dci_informativeness", "scores/s_share_identity", "scores/z_share_pose"]
  assert header == ["row", "MIG", "DCI disentanglement", "DCI completeness",
                    "DCI informativeness", "s share of identity factors",
                    "z share of pose factors"]
  # Digits has no pose factors, hence no scores.
  assert [r[0] for r in rows] == [_LABELS[n] for n in _ROWS if n != "digits"]
  for name, r in zip(_ROWS, rows):
    assert r[1:] == [f"{evals[name][k]:.3f}" for k in keys]


def _expected_swap_shape(name):
  """The swap grid's shape for the row's tiny config: num_figure_images + 1 cells each way."""
  config = reproduce.row_config(reproduce.TABLES["5.2"][0][_ROWS.index(name)], None)
  dataset = data_lib.get_identity_dataset(
      config, sharding_lib.batch_sharding(sharding_lib.make_mesh()))
  k = config.num_figure_images
  images = np.zeros((k, *dataset.sample_shape), np.float32)
  grid = evaluation.swap_grid(images, images, np.zeros((k, *images.shape), np.float32))
  return grid.shape, dataset.renders


def test_figures_are_the_runs_grids_side_by_side(tiny):
  root, _, _, payload, _ = tiny
  results = root / "results"
  gap = disentangle_table.FIGURE_GAP
  assert sorted(p.name for p in results.glob("*.png")) == sorted(
      [f"disentangle_{n}_swap.png" for n in _ROWS] + ["disentangle_sprites_figures.png"])
  for row in payload["rows"]:
    figure = _png(results / f"disentangle_{row['name']}_swap.png")
    (h, w, _), renders = _expected_swap_shape(row["name"])
    assert renders == (row["name"] != "digits")
    assert figure.shape == ((h, 2 * w + gap, 3) if renders else (h, w, 3))
    # The grids are those the run drew at its last evaluation, from the same checkpoint.
    samples = os.path.join(row["run_dir"], "samples")
    np.testing.assert_array_equal(figure[:, :w], _png(os.path.join(samples, "swap_00000002.png")))
    if renders:
      assert (figure[:, w:w + gap] == 255).all()
      np.testing.assert_array_equal(figure[:, w + gap:],
                                    _png(os.path.join(samples, "swap_truth_00000002.png")))
  figure = _png(results / "disentangle_sprites_figures.png")
  x = 0
  samples = os.path.join(payload["rows"][0]["run_dir"], "samples")
  for name in ("interpolation", "retrieval_s", "retrieval_z", "generation"):
    grid = _png(os.path.join(samples, f"{name}_00000002.png"))
    np.testing.assert_array_equal(figure[:grid.shape[0], x:x + grid.shape[1]], grid)
    assert (figure[grid.shape[0]:, x:x + grid.shape[1]] == 255).all()
    x += grid.shape[1] + gap
  assert figure.shape[1] == x - gap


def test_rerun_reuses_finished_runs_and_rows_restrict_the_results(tiny, tmp_path):
  root, args, _, payload, _ = tiny
  before = tree_snapshot(root / "runs")
  proc = _run(*args, "--rows=digits", f"--results_dir={tmp_path}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.count("finished earlier; reusing its evaluation") == 1
  assert "[1/1] Digits" in proc.stdout
  assert tree_snapshot(root / "runs") == before  # nothing retrained or rewritten
  again = _strict_json((tmp_path / "disentangle.json").read_text())
  # The reused row keeps the numbers and the training time of the session that trained it.
  assert again["rows"] == [payload["rows"][-1]]
  markdown = (tmp_path / "disentangle.md").read_text()
  header, _ = _section(markdown, "Table 5.2")
  assert header == ["", "Digits z", "Digits s"]
  assert "Sprites by attribute" not in markdown and "Disentanglement scores" not in markdown
  assert sorted(p.name for p in tmp_path.glob("*.png")) == ["disentangle_digits_swap.png"]


@pytest.mark.parametrize("args, message", [
    (["--table=5.3"], "error: table: unknown table '5.3'; valid: ['3', '4.4', '5.2', '6.2']"),
    (["--table=5.2", "--rows=sprite"], "error: rows: unknown rows ['sprite']; valid: "
     "['sprites', 'sprites_pretrained_s', 'sprites_pretrained_s_no_adv', 'toys', 'digits']"),
])
def test_bad_arguments_are_one_line_errors(args, message, tmp_path):
  proc = _run(*args, f"--workdir={tmp_path / 'runs'}", f"--results_dir={tmp_path / 'results'}")
  assert proc.returncode == 1, proc.stdout
  assert proc.stderr.strip().splitlines()[-1] == message and "Traceback" not in proc.stderr
  assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_rows_scale_their_steps_and_keep_their_variant():
  scale = reproduce.parse_budget("0.5")
  assert reproduce.RESULTS_NAMES["5.2"] == "disentangle"
  for row in reproduce.TABLES["5.2"][0]:
    config = reproduce.row_config(row, scale)
    assert config.task == "disentangle" and config.variant == row.config_arg
    assert config.total_steps == round(row.steps * 0.5)
    assert config.eval_every == config.total_steps // 4  # four evaluations per run
    assert config.pretrained_s == row.config_arg.startswith("pretrained_s")
    assert (config.adversarial_weight == 0) == (row.config_arg == "pretrained_s_no_adv")
