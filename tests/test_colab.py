"""Runs `colabs/video_prediction.ipynb` top to bottom in a Jupyter kernel, with tiny settings.

The notebook calls the library's public functions; executing it here keeps it from rotting when
they change. The parameters cell is followed by an injected cell (as papermill does) that shrinks
the run and points it at a temporary workdir; the kernel sees two CPU devices, so the notebook's
training and inference go through the sharded path that a GPU or TPU runtime takes.
"""

import ast
import json
import math
import os

import nbformat
import pytest

from tests.conftest import notebook_outputs as _outputs
from tests.conftest import notebook_parameters_index as _parameters_index
from tests.conftest import run_notebook

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "colabs", "video_prediction.ipynb")
PARAMETERS = ("VARIANT", "STEPS", "WORKDIR", "TINY")
NUM_DEVICES = 2


def _read():
  return nbformat.read(NOTEBOOK, as_version=4)


def _text(out) -> str:
  if out.output_type == "stream":
    return out.text
  return "".join(str(v) for v in out.get("data", {}).values() if isinstance(v, str))


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
    assigned = {target.id for node in tree.body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}
    assert assigned == set(PARAMETERS)

  def test_install_cell_names_the_repository(self):
    nb = _read()
    assert any('REPO_URL = "https://github.com/uncertainty-jax/uncertainty_jax"' in cell.source
               for cell in nb.cells if cell.cell_type == "code")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
  """The notebook run with tiny parameters: `(notebook with outputs, workdir)`."""
  workdir = str(tmp_path_factory.mktemp("colab") / "run")
  nb = run_notebook(NOTEBOOK, {"TINY": True, "STEPS": 2, "WORKDIR": workdir},
                    devices=NUM_DEVICES)
  return nb, workdir


class TestExecutedNotebook:

  def test_no_cell_errored(self, executed):
    nb, _ = executed
    errors = [out for out in _outputs(nb) if out.output_type == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    assert all(cell.execution_count is not None for cell in nb.cells if cell.cell_type == "code")

  def test_runs_on_every_device(self, executed):
    nb, _ = executed
    text = "".join(_text(out) for out in _outputs(nb))
    assert "backend: cpu" in text
    assert f"{NUM_DEVICES} devices:" in text

  def test_shows_images_and_animations(self, executed):
    nb, _ = executed
    mimes = [mime for out in _outputs(nb) for mime in out.get("data", {})]
    # The training samples and the comparison figure, each as a PNG and a GIF.
    assert mimes.count("image/png") >= 2
    assert mimes.count("image/gif") >= 2

  def test_prints_the_table(self, executed):
    nb, _ = executed
    tables = [out.data["text/markdown"] for out in _outputs(nb)
              if "text/markdown" in out.get("data", {})]
    assert len(tables) == 1
    for row in ("| Model |", "| Last input |", "| Optical flow |"):
      assert row in tables[0]
    assert "PSNR (1st)" in tables[0]

  def test_evaluation_is_written(self, executed):
    _, workdir = executed
    with open(os.path.join(workdir, "eval.json")) as f:
      scores = json.load(f)
    assert scores["step"] == 2
    assert math.isfinite(scores["full/frame1/psnr"])
    assert os.path.isfile(os.path.join(workdir, "comparison.png"))
    assert os.path.isfile(os.path.join(workdir, "comparison.gif"))
