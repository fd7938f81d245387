"""Runs `colabs/ebgan.ipynb` top to bottom in a Jupyter kernel, with tiny settings.

The notebook calls the library's public functions; executing it here keeps it from rotting when
they change. The parameters cell is followed by an injected cell (as papermill does) that shrinks
the runs and points them at a temporary workdir; the kernel sees two CPU devices, so training goes
through the sharded path that a GPU or TPU runtime takes. The checks compare what the notebook
shows with what its runs wrote: the I' it prints with the run's own `eval.json`, the energies with
`metrics.jsonl`, the images it displays with the PNG files, the grid's records with the library's
selection.
"""

import ast
import base64
import io
import json
import os
import re

import nbformat
import numpy as np
import pytest
from PIL import Image

from tests.conftest import notebook_outputs as _outputs
from tests.conftest import notebook_parameters_index as _parameters_index
from tests.conftest import run_notebook

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "colabs", "ebgan.ipynb")
PARAMETERS = ("STEPS", "CONV_STEPS", "GRID_STEPS", "GRID_SAMPLE", "WORKDIR", "TINY")
# The injected values: two steps per run, the smallest grid sample (one architecture each).
TINY = {"STEPS": 2, "CONV_STEPS": 2, "GRID_STEPS": 2, "GRID_SAMPLE": 2}
NUM_DEVICES = 2
_SAMPLES_LINE = re.compile(r"I′ of (\d+) EBGAN-PT samples: (\S+)")
_DIGITS_LINE = re.compile(r"I′ of the (\d+) test digits: (\S+)")
_ENERGY_LINE = re.compile(r"step (\d+): energy of real patches (\S+), of samples (\S+) \(margin")


def _read():
  return nbformat.read(NOTEBOOK, as_version=4)


def _stdout(nb) -> str:
  return "".join(out.text for out in _outputs(nb)
                 if out.output_type == "stream" and out.name == "stdout")


def _displayed_pngs(nb) -> list[bytes]:
  return [base64.b64decode(out.data["image/png"]) for out in _outputs(nb)
          if "image/png" in out.get("data", {})]


def _read_bytes(path: str) -> bytes:
  with open(path, "rb") as f:
    return f.read()


def _read_json(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def _png_size(data: bytes) -> tuple[int, int]:
  """`(height, width)` of a PNG."""
  with Image.open(io.BytesIO(data)) as image:
    return image.height, image.width


class TestSavedNotebook:

  def test_is_valid_and_has_no_outputs(self):
    nb = _read()
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code
    for cell in code:
      assert cell.outputs == [], f"saved outputs in cell {cell.source[:60]!r}"
      assert cell.execution_count is None

  def test_parameters_cell_assigns_the_parameters(self):
    nb = _read()
    tree = ast.parse(nb.cells[_parameters_index(nb)].source)
    assigned = {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}
    assert set(assigned) == set(PARAMETERS)
    # Saved for the full (not tiny) run, with explicit small step counts.
    assert ast.literal_eval(assigned["TINY"]) is False
    for name in ("STEPS", "CONV_STEPS", "GRID_STEPS", "GRID_SAMPLE"):
      value = ast.literal_eval(assigned[name])
      assert isinstance(value, int) and 0 < value <= 1000, (name, value)

  def test_install_cell_names_the_repository(self):
    nb = _read()
    assert any('REPO_URL = "https://github.com/uncertainty-jax/uncertainty_jax"' in cell.source
               for cell in nb.cells if cell.cell_type == "code")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
  """The notebook run with tiny parameters: `(notebook with outputs, workdir)`."""
  workdir = str(tmp_path_factory.mktemp("colab_ebgan") / "run")
  nb = run_notebook(NOTEBOOK, {"TINY": True, **TINY, "WORKDIR": workdir}, devices=NUM_DEVICES)
  return nb, workdir


class TestExecutedNotebook:

  def test_no_cell_errored(self, executed):
    nb, _ = executed
    errors = [out for out in _outputs(nb) if out.output_type == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    assert all(cell.execution_count is not None for cell in nb.cells if cell.cell_type == "code")

  def test_runs_on_every_device(self, executed):
    nb, _ = executed
    text = _stdout(nb)
    assert "backend: cpu" in text
    assert f"{NUM_DEVICES} devices:" in text

  def test_runs_trained_the_requested_steps(self, executed):
    _, workdir = executed
    assert _read_json(os.path.join(workdir, "ebgan_pt", "eval.json"))["step"] == TINY["STEPS"]
    assert _read_json(os.path.join(workdir, "conv64_pt", "eval.json"))["step"] == TINY["CONV_STEPS"]

  def test_prints_the_energies_of_the_last_photo_batch(self, executed):
    nb, workdir = executed
    from uncertainty_jax.training import writers
    lines = _ENERGY_LINE.findall(_stdout(nb))
    assert len(lines) == 1
    step, real, fake = int(lines[0][0]), float(lines[0][1]), float(lines[0][2])
    logged = {m["step"]: m for m in writers.read_metrics(os.path.join(workdir, "conv64_pt"))
              if "d/energy_real" in m}
    assert step == TINY["CONV_STEPS"] == max(logged)
    assert real == pytest.approx(logged[step]["d/energy_real"], abs=0.05)
    assert fake == pytest.approx(logged[step]["d/energy_fake"], abs=0.05)

  def test_prints_the_inception_scores_of_the_run(self, executed):
    nb, workdir = executed
    text = _stdout(nb)
    samples_lines = _SAMPLES_LINE.findall(text)
    digits_lines = _DIGITS_LINE.findall(text)
    assert len(samples_lines) == 1 and len(digits_lines) == 1, text
    (num_samples, samples_score), (num_digits, digits_score) = samples_lines[0], digits_lines[0]
    samples_score, digits_score = float(samples_score), float(digits_score)
    # The run's own evaluation scored the same samples (its fixed latents) and the same test
    # digits with the same classifier; the notebook prints 3 decimals.
    run = _read_json(os.path.join(workdir, "ebgan_pt", "eval.json"))
    config = _read_json(os.path.join(workdir, "ebgan_pt", "config.json"))
    assert int(num_samples) == config["num_eval_samples"]
    assert samples_score == pytest.approx(run["inception_score"], abs=1e-3)
    assert digits_score == pytest.approx(run["inception_score_data"], abs=1e-3)
    assert int(num_digits) > 0
    # Real digits, confidently classified into ten classes, score well above 0 (a constant
    # prediction scores exactly 0).
    assert digits_score > 1.0
    # The classifier was shared, not retrained per run: one directory, under the workdir.
    assert os.path.isfile(os.path.join(workdir, "classifier", "classifier.json"))
    assert not os.path.exists(os.path.join(workdir, "ebgan_pt", "classifier"))

  def test_shows_the_digit_samples_beside_real_digits(self, executed):
    nb, workdir = executed
    path = os.path.join(workdir, "ebgan_pt", "samples_vs_digits.png")
    data = _read_bytes(path)
    assert data in _displayed_pngs(nb)
    # Two panels of 64 8x8 digits, upscaled 4x (ebgan_figures.sample_panels), 8 pixels apart.
    _, width = _png_size(data)
    assert width == 2 * 8 * 8 * 4 + 8

  def test_shows_the_photo_samples(self, executed):
    nb, workdir = executed
    config = _read_json(os.path.join(workdir, "conv64_pt", "config.json"))
    data = _read_bytes(os.path.join(workdir, "conv64_pt", "samples_vs_patches.png"))
    assert data in _displayed_pngs(nb)
    # Two 4x4 grids of the run's patches, 8 pixels apart.
    size = config["image_size"]
    height, width = _png_size(data)
    assert width == 2 * 4 * size + 8
    assert height > 4 * size

  def test_trains_the_selected_grid(self, executed):
    _, workdir = executed
    from experiments import ebgan
    from uncertainty_jax.training import grid
    config = ebgan.get_config("grid,tiny")
    expected = grid.select(grid.table_6_1(config.grid), sample=TINY["GRID_SAMPLE"])
    grid_dir = os.path.join(workdir, f"grid_{TINY['GRID_STEPS']}steps")
    records = grid.read_records(grid_dir)
    assert sorted(r["id"] for r in records) == sorted(p.id for p in expected)
    assert {r["framework"] for r in records} == {"ebgan", "gan"}
    assert all(r["steps"] == TINY["GRID_STEPS"] for r in records)

  def test_shows_the_inception_histogram_and_summary(self, executed):
    nb, workdir = executed
    figures = os.path.join(workdir, f"grid_{TINY['GRID_STEPS']}steps", "figures")
    displayed = _displayed_pngs(nb)
    assert _read_bytes(os.path.join(figures, "inception_histograms.png")) in displayed
    assert _read_bytes(os.path.join(figures, "best_samples.png")) in displayed
    tables = [out.data["text/markdown"] for out in _outputs(nb)
              if "text/markdown" in out.get("data", {})]
    assert len(tables) == 1
    with open(os.path.join(figures, "summary.md")) as f:
      assert tables[0] == f.read()
    assert "| EBGAN |" in tables[0] and "| GAN |" in tables[0]

  def test_every_displayed_image_is_a_picture(self, executed):
    nb, _ = executed
    pngs = _displayed_pngs(nb)
    # The digit panels, the photo panels, the histograms and the best samples.
    assert len(pngs) == 4
    for data in pngs:
      with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image.convert("RGB"))
      assert pixels.std() > 0, "a blank image"
