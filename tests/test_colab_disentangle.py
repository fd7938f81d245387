"""Runs `colabs/disentangle.ipynb` top to bottom in a Jupyter kernel, with tiny settings.

The notebook calls the library's public functions; executing it here keeps it from rotting when
they change. `tests.conftest.run_notebook` injects a cell after the parameters cell (as papermill
does) that shrinks the run to two steps of the tiny sprites config and points it at a temporary
workdir; the kernel sees two CPU devices, so training goes through the sharded path that a GPU or
TPU runtime takes. The checks compare what the notebook shows with references: the identity counts
with the sprites module, the triplets it prints with the identities `Sprites.train_rows` gives for
step 0, the evaluation and Table 5.2 it prints with the run's own `eval.json` (and the chance
column with the majority rule in numpy), the figures it displays with the PNG files it wrote and
the grids the run drew of the same checkpoint, and the swap ground truth with the renderer.
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
NOTEBOOK = os.path.join(REPO, "colabs", "disentangle.ipynb")
PARAMETERS = ("STEPS", "WORKDIR", "TINY")
STEPS = 2
NUM_DEVICES = 2
RUN = "sprites"  # the run's directory under the workdir
FIGURES = ("swap", "swap_truth", "interpolation", "retrieval_s", "retrieval_z", "generation")
# The columns of the printed Table 5.2, in order.
TABLE_COLUMNS = tuple((code, split) for code in ("s", "z", "chance") for split in ("train", "test"))
SCORES = ("scores/mig", "scores/dci_disentanglement", "scores/dci_completeness",
          "scores/dci_informativeness", "scores/s_share_identity", "scores/z_share_pose")
_FLOAT = r"(-?[0-9.]+(?:e-?[0-9]+)?)"
_COUNTS = re.compile(r"(\d+) identities \(([0-9 x]+)\): (\d+) for training, (\d+) for testing")
_TRIPLET = re.compile(r"^triplet (\d+): y1, y1' = (.*) \| y2 = (.*)$", re.MULTILINE)
_HEADER = re.compile(r"after (\d+) steps, on (\d+) images of test identities:")
_SWAP = re.compile(rf"swap/mse_01 {_FLOAT} in \[0, 1\] pixel units \(thesis 0\.014\); swap/mse "
                   rf"{_FLOAT} in \[-1, 1\] units")
_COPY = re.compile(rf"copying the s image: swap/mse_s_image {_FLOAT} in \[-1, 1\] units "
                   rf"\({_FLOAT} in \[0, 1\]\)")
_RECONSTRUCTION = re.compile(rf"test/reconstruction_mse {_FLOAT}")
_TABLE_ROW = re.compile(r"^(\w+)" + r"\s+([0-9.]+)" * len(TABLE_COLUMNS) + r"$", re.MULTILINE)
_FIGURE_LINE = re.compile(r"^(\w+): (\d+)x(\d+) pixels, (\S+)$", re.MULTILINE)


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


def _pixels(data: bytes) -> np.ndarray:
  with Image.open(io.BytesIO(data)) as image:
    return np.asarray(image.convert("RGB"))


def _tiny_config():
  from experiments import disentangle
  return disentangle.get_config("sprites,tiny")


def _describe(identity) -> str:
  """An identity in words, as the notebook prints it, from the attribute tables."""
  from uncertainty_jax.data import sprites
  return ", ".join(f"{sprites.IDENTITY_NAMES[a]} {sprites.IDENTITY_VALUES[a][int(v)]}"
                   for a, v in enumerate(identity))


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
    # Saved for the full (not tiny) run, with a step count within the config's CPU budget.
    assert ast.literal_eval(assigned["TINY"]) is False
    from experiments import disentangle
    cpu_steps = disentangle.get_config("sprites").budgets.cpu.total_steps
    steps = ast.literal_eval(assigned["STEPS"])
    assert isinstance(steps, int) and 0 < steps <= cpu_steps, steps

  def test_install_cell_names_the_repository(self):
    nb = _read()
    assert any('REPO_URL = "https://github.com/uncertainty-jax/uncertainty_jax"' in cell.source
               for cell in nb.cells if cell.cell_type == "code")

  def test_closing_cell_gives_command_lines_of_existing_configs(self):
    from experiments import disentangle
    last = _read().cells[-1]
    assert last.cell_type == "markdown"
    text = last.source
    assert "python -m experiments.main --config=experiments/disentangle.py --workdir=" in text
    assert "--mode=eval" in text
    assert "python -m experiments.reproduce --table=5.2" in text
    assert "results/disentangle.md" in text
    variants = re.findall(r"--config=experiments/disentangle\.py:(\w+)", text)
    assert {"digits", "toys", "pretrained_s"} <= set(variants)
    assert set(variants) <= set(disentangle.VARIANTS)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
  """The notebook run with tiny parameters: `(notebook with outputs, workdir)`."""
  workdir = str(tmp_path_factory.mktemp("colab_disentangle") / "run")
  nb = run_notebook(NOTEBOOK, {"TINY": True, "STEPS": STEPS, "WORKDIR": workdir},
                    devices=NUM_DEVICES)
  return nb, workdir


@pytest.fixture(scope="module")
def dataset():
  """The tiny config's sprites, built in this process on one device."""
  import jax
  from uncertainty_jax.data import sprites
  from uncertainty_jax.training import sharding
  return sprites.Sprites.from_config(
      _tiny_config(), sharding.batch_sharding(sharding.make_mesh(jax.devices()[:1])))


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

  def test_run_trained_the_requested_steps_of_the_tiny_config(self, executed):
    _, workdir = executed
    run_dir = os.path.join(workdir, RUN)
    assert _read_json(os.path.join(run_dir, "eval.json"))["step"] == STEPS
    written = _read_json(os.path.join(run_dir, "config.json"))
    expected = _tiny_config()
    assert written["total_steps"] == STEPS
    for field in ("dataset", "trunk", "s_dim", "z_dim", "batch_size", "adversarial_weight",
                  "num_eval_images", "num_figure_images"):
      assert written[field] == expected[field], field
    assert tuple(written["encoder_features"]) == tuple(expected.encoder_features)

  def test_prints_the_identity_counts_of_the_sprites(self, executed):
    nb, _ = executed
    from uncertainty_jax.data import sprites
    (total, sizes, train, test), = _COUNTS.findall(_stdout(nb))
    assert [int(n) for n in sizes.split(" x ")] == list(sprites.IDENTITY_SIZES)
    assert int(total) == int(np.prod(sprites.IDENTITY_SIZES)) == int(train) + int(test)
    assert int(train) == len(sprites.train_identities())
    assert int(test) == len(sprites.test_identities())

  def test_prints_the_identities_of_the_batch_of_step_0(self, executed, dataset):
    nb, _ = executed
    triplets = _TRIPLET.findall(_stdout(nb))
    rows = dataset.train_rows(0)
    assert len(triplets) == min(4, _tiny_config().batch_size)
    for index, first, second in triplets:
      i = int(index)
      assert first == _describe(rows["id1"][i])
      assert second == _describe(rows["id2"][i])
      # y2 has another identity than y1 and y1'.
      assert first != second

  def test_prints_the_evaluation_of_its_run(self, executed):
    nb, workdir = executed
    text = _stdout(nb)
    run = _read_json(os.path.join(workdir, RUN, "eval.json"))
    assert _HEADER.findall(text) == [(str(STEPS), str(_tiny_config().num_eval_images))]
    (mse_01, mse), = _SWAP.findall(text)
    (copy, copy_01), = _COPY.findall(text)
    (reconstruction,) = _RECONSTRUCTION.findall(text)
    # The restored checkpoint, re-evaluated, gives the run's own evaluation (to the printed
    # digits).
    for printed, reference in ((mse_01, run["swap/mse_01"]), (mse, run["swap/mse"]),
                               (copy, run["swap/mse_s_image"]),
                               (copy_01, run["swap/mse_s_image"] / 4),
                               (reconstruction, run["test/reconstruction_mse"])):
      assert float(printed) == pytest.approx(reference, abs=6e-6)
    # [0, 1] pixels are half the [-1, 1] ones: squared errors are a quarter.
    assert run["swap/mse_01"] == pytest.approx(run["swap/mse"] / 4, rel=1e-6)

  def test_prints_table_5_2_with_a_row_per_probed_attribute(self, executed, dataset):
    nb, workdir = executed
    text = _stdout(nb)
    run = _read_json(os.path.join(workdir, RUN, "eval.json"))
    table = text[text.index("Table 5.2"):]
    header = table.splitlines()[1].split()
    assert header == ["attribute"] + [word for code, split in TABLE_COLUMNS
                                      for word in (code, split)]
    rows = _TABLE_ROW.findall(table)
    assert [row[0] for row in rows] == list(dataset.probe_names)
    train, test = dataset.arrays("train"), dataset.arrays("test")
    for name, *values in rows:
      for (code, split), value in zip(TABLE_COLUMNS, values):
        assert float(value) == pytest.approx(100 * run[f"table/{name}/{code}/{split}_error"],
                                             abs=0.006), (name, code, split)
      # Chance: the error of always answering the most frequent training value (the smallest
      # on a tie).
      column = dataset.factor_index(name)
      labels = train["identity"][:, column]
      majority = np.argmax(np.bincount(labels))
      chance = {"train": np.mean(labels != majority),
                "test": np.mean(test["identity"][:, column] != majority)}
      for split, index in (("train", 4), ("test", 5)):
        assert float(values[index]) == pytest.approx(100 * chance[split], abs=0.006), name

  def test_prints_the_disentanglement_scores(self, executed):
    nb, workdir = executed
    text = _stdout(nb)
    run = _read_json(os.path.join(workdir, RUN, "eval.json"))
    for key in SCORES:
      (value,) = re.findall(rf"^{re.escape(key)} {_FLOAT}$", text, re.MULTILINE)
      assert float(value) == pytest.approx(run[key], abs=6e-5), key

  def test_shows_the_figures_the_run_drew_of_its_checkpoint(self, executed):
    nb, workdir = executed
    run_dir = os.path.join(workdir, RUN)
    displayed = _displayed_pngs(nb)
    lines = {name: (int(h), int(w), path) for name, h, w, path in _FIGURE_LINE.findall(_stdout(nb))}
    assert list(lines) == list(FIGURES)
    for name in FIGURES:
      height, width, path = lines[name]
      assert path == os.path.join(run_dir, "figures", f"{name}.png")
      data = _read_bytes(path)
      assert data in displayed, name
      pixels = _pixels(data)
      assert pixels.shape == (height, width, 3)
      # The run drew the same grid of the same checkpoint at its last evaluation.
      drawn = _pixels(_read_bytes(os.path.join(run_dir, "samples", f"{name}_{STEPS:08d}.png")))
      assert pixels.shape == drawn.shape, name
      assert np.max(np.abs(pixels.astype(int) - drawn.astype(int))) <= 1, name

  def test_swap_truth_is_the_renderers_swap_of_the_test_images(self, executed, dataset):
    _, workdir = executed
    from uncertainty_jax.evaluation import disentangle as evaluation
    figures = os.path.join(workdir, RUN, "figures")
    k = _tiny_config().num_figure_images
    test = dataset.arrays("test")
    rows, cols = np.arange(k), np.arange(k, 2 * k)
    # Cell (r, c): the identity of column c's image in the pose of row r's.
    truth = dataset.render(np.tile(test["identity"][cols], (k, 1)),
                           np.repeat(test["pose"][rows], k, axis=0))
    expected = evaluation.swap_grid(test["images"][rows], test["images"][cols],
                                    truth.reshape(k, k, *dataset.sample_shape))
    shown = _pixels(_read_bytes(os.path.join(figures, "swap_truth.png")))
    assert shown.shape == expected.shape
    assert np.max(np.abs(shown.astype(int) - expected.astype(int))) <= 1
    # The model's swap grid frames the same test images: its top row and left column (one cell
    # of S + 2 border pixels, then the gap) are those of the truth.
    swap = _pixels(_read_bytes(os.path.join(figures, "swap.png")))
    cell = dataset.sample_shape[0] + 2
    np.testing.assert_array_equal(swap[:cell], shown[:cell])
    np.testing.assert_array_equal(swap[:, :cell], shown[:, :cell])
    # ...and its generated cells are the model's, not the truth.
    assert np.any(swap[cell:, cell:] != shown[cell:, cell:])

  def test_every_displayed_image_is_a_picture(self, executed):
    nb, _ = executed
    pngs = _displayed_pngs(nb)
    # The identity-by-pose grid, the training triplets, then the six figures.
    assert len(pngs) == 2 + len(FIGURES)
    for data in pngs:
      assert _pixels(data).std() > 0, "a blank image"
