"""Runs `colabs/linearize.ipynb` top to bottom in a Jupyter kernel, with tiny settings.

The notebook calls the library's public functions; executing it here keeps it from rotting when
they change. The parameters cell is followed by an injected cell (as papermill does) that shrinks
the runs to two steps of the tiny configs and points them at a temporary workdir; the kernel sees
two CPU devices, so training goes through the sharded path that a GPU or TPU runtime takes. The
checks compare what the notebook shows with references: the phase-pooling numbers it prints with
eq. 3.7-3.8 in numpy and with the library, the evaluations it prints with the runs' own
`eval.json`, the images it displays with the PNG files it wrote, the run's own sample figure and
the shapes the figure functions give.
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
NOTEBOOK = os.path.join(REPO, "colabs", "linearize.ipynb")
PARAMETERS = ("STEPS", "SKIP_STEPS", "WORKDIR", "TINY")
# The injected values: two steps per run.
TINY = {"STEPS": 2, "SKIP_STEPS": 2}
NUM_DEVICES = 2
# The runs of the notebook: config argument -> directory under the workdir.
RUNS = {"deep3": "deep3", "deep3,skip": "deep3_skip", "deep3,skip,latent": "deep3_skip_latent"}
# The phase-pooling cell's setup: a Gaussian bump of width SIGMA over one pool group of GROUP
# pixels, its centre moving from 2 to 5 pixels in eighths of a pixel; the Deep 3 config's beta.
GROUP = 8
SIGMA = 1.5
CENTRES = np.arange(2.0, 5.0 + 1e-9, 0.125)
CONFIG_BETA = 5.0
_FLOAT = r"(-?[0-9.]+)"
_BETA_LINE = re.compile(
    rf"beta={_FLOAT}: p_x slope {_FLOAT} per pixel \(2/7 = {_FLOAT}\), largest deviation from "
    rf"the line {_FLOAT}; m in \[{_FLOAT}, {_FLOAT}\]; unpool\(pool\(x\)\) centred within "
    rf"{_FLOAT} pixels of the bump")
_TRAJECTORY_LINE = re.compile(r"a (\w+), test instance (\d+), light (\d+): (\S+) degrees of "
                              r"azimuth and (\S+) of elevation per step")
_DEEP3_HEADER = re.compile(r"Deep 3 after (\d+) steps, on (\d+) test triplets:")
_DEEP3_MSE = re.compile(rf"test/mse {_FLOAT} per pixel \(copying frame 2: {_FLOAT}\)")
_DEEP3_COSINE = re.compile(rf"test/cosine {_FLOAT}")
_DEEP3_INTERP = re.compile(rf"t=([0-9.]+) {_FLOAT}")
_SKIP_LINE = re.compile(
    rf"^(deep3,skip(?:,latent)?) \(.*\), step (\d+): interp/sharpness {_FLOAT}, interp/mse "
    rf"{_FLOAT}, test/mse {_FLOAT}(?:, skip/accuracy {_FLOAT} \(skip/chance {_FLOAT}\))?$",
    re.MULTILINE)


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


def _tiny_config(arg: str):
  from experiments import linearize
  return linearize.get_config(f"{arg},tiny")


def _phase_pool_reference(beta: float) -> tuple[np.ndarray, np.ndarray]:
  """`(m, p_x)` of the bump at every centre from eq. 3.7 and 3.8, in float64 numpy."""
  pixels = np.arange(GROUP)
  bumps = np.exp(-(pixels - CENTRES[:, None]) ** 2 / (2 * SIGMA ** 2))
  logits = beta * bumps
  weights = np.exp(logits - logits.max(axis=1, keepdims=True))
  weights /= weights.sum(axis=1, keepdims=True)
  coords = np.linspace(-1.0, 1.0, GROUP)  # the group's local coordinates (eq. 3.8)
  return (weights * bumps).sum(axis=1), (weights * coords).sum(axis=1)


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
    # Saved for the full (not tiny) run, with explicit step counts within the CPU budget.
    assert ast.literal_eval(assigned["TINY"]) is False
    from experiments import linearize
    cpu_steps = linearize.get_config("deep3").budgets.cpu.total_steps
    for name in ("STEPS", "SKIP_STEPS"):
      value = ast.literal_eval(assigned[name])
      assert isinstance(value, int) and 0 < value <= cpu_steps, (name, value)

  def test_install_cell_names_the_repository(self):
    nb = _read()
    assert any('REPO_URL = "https://github.com/uncertainty-jax/uncertainty_jax"' in cell.source
               for cell in nb.cells if cell.cell_type == "code")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
  """The notebook run with tiny parameters: `(notebook with outputs, workdir)`."""
  workdir = str(tmp_path_factory.mktemp("colab_linearize") / "run")
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

  def test_runs_trained_the_requested_steps_of_their_configs(self, executed):
    _, workdir = executed
    steps = {"deep3": TINY["STEPS"], "deep3,skip": TINY["SKIP_STEPS"],
             "deep3,skip,latent": TINY["SKIP_STEPS"]}
    for arg, name in RUNS.items():
      run_dir = os.path.join(workdir, name)
      assert _read_json(os.path.join(run_dir, "eval.json"))["step"] == steps[arg]
      written = _read_json(os.path.join(run_dir, "config.json"))
      expected = _tiny_config(arg)
      for field in ("architecture", "skip", "latent_dim", "width_multiplier", "batch_size"):
        assert written[field] == expected[field], (arg, field)

  def test_prints_phase_pooling_of_the_moving_bump_as_eq_3_7_and_3_8(self, executed):
    nb, _ = executed
    import jax.numpy as jnp
    from uncertainty_jax.layers import PoolSpec
    from uncertainty_jax.layers import phase_pool
    lines = _BETA_LINE.findall(_stdout(nb))
    assert len(lines) >= 3, _stdout(nb)
    printed = {}
    spec = PoolSpec(spatial=(1, GROUP))
    bumps = np.exp(-(np.arange(GROUP) - CENTRES[:, None]) ** 2 / (2 * SIGMA ** 2))
    for line in lines:
      beta, slope, ideal, deviation, m_low, m_high, placed = map(float, line)
      m_ref, p_ref = _phase_pool_reference(beta)
      # The library agrees with the formulas...
      m_lib, p_lib = phase_pool(jnp.asarray(bumps[:, None, :, None], jnp.float32), spec, beta)
      np.testing.assert_allclose(np.asarray(m_lib).ravel(), m_ref, atol=1e-5)
      np.testing.assert_allclose(np.asarray(p_lib).ravel(), p_ref, atol=1e-5)
      # ...and the notebook prints them, to its 4 decimals.
      slope_ref, intercept_ref = np.polyfit(CENTRES, p_ref, 1)
      deviation_ref = np.max(np.abs(p_ref - (slope_ref * CENTRES + intercept_ref)))
      # Linear interpolation between two members puts the unpooled mass's centre exactly at
      # the continuous member index of the phase.
      placed_ref = np.max(np.abs((p_ref + 1) / 2 * (GROUP - 1) - CENTRES))
      assert ideal == pytest.approx(2 / (GROUP - 1), abs=6e-5)
      for value, reference in ((slope, slope_ref), (deviation, deviation_ref),
                               (m_low, m_ref.min()), (m_high, m_ref.max()),
                               (placed, placed_ref)):
        assert value == pytest.approx(reference, abs=6e-5), (beta, line)
      printed[beta] = dict(slope=slope, deviation=deviation, m_low=m_low, m_high=m_high,
                           placed=placed)
    # What the notebook's text says of them. Average pooling: no phase, m the mean, everything
    # unpooled at the group's centre.
    assert printed[0.0]["slope"] == 0 and printed[0.0]["deviation"] == 0
    assert printed[0.0]["m_low"] == pytest.approx(bumps.mean(axis=1).min(), abs=6e-5)
    assert printed[0.0]["placed"] == pytest.approx(np.max(np.abs(CENTRES - (GROUP - 1) / 2)),
                                                   abs=6e-5)
    # The config's beta: p_x on a line of slope near 2/7, m nearly constant, the bump unpooled at
    # its place to a fraction of a pixel.
    moderate = printed[CONFIG_BETA]
    largest = printed[max(printed)]
    assert moderate["slope"] == pytest.approx(2 / (GROUP - 1), rel=0.05)
    assert moderate["deviation"] < largest["deviation"] / 10
    assert moderate["m_high"] - moderate["m_low"] < 0.01 * moderate["m_high"]
    assert moderate["placed"] < 0.1
    # A very large beta: hard max and argmax, the bump snapped to its nearest pixel.
    assert max(printed) >= 50
    assert largest["m_high"] == pytest.approx(1.0, abs=1e-3)
    assert moderate["placed"] < largest["placed"] <= 0.5 + 1e-4

  def test_prints_the_first_test_trajectory(self, executed):
    nb, _ = executed
    import jax
    from uncertainty_jax.data import rotations
    from uncertainty_jax.data import toys
    from uncertainty_jax.training import sharding
    lines = _TRAJECTORY_LINE.findall(_stdout(nb))
    assert len(lines) == 1
    category, instance, light, azimuth_velocity, elevation_velocity = lines[0]
    data = rotations.RotationTriplets.from_config(
        _tiny_config("deep3"), sharding.batch_sharding(sharding.make_mesh(jax.devices()[:1])))
    first = {name: value[0] for name, value in data.test_params.items()}
    assert category == toys.CATEGORIES[first["category"]]
    assert int(instance) == first["instance"] and int(instance) in toys.TEST_INSTANCES
    assert int(light) == first["light"]
    assert float(azimuth_velocity) == first["azimuth_velocity"]
    assert float(elevation_velocity) == first["elevation_velocity"]

  def test_prints_the_deep3_evaluation_of_its_run(self, executed):
    nb, workdir = executed
    text = _stdout(nb)
    run = _read_json(os.path.join(workdir, "deep3", "eval.json"))
    header = _DEEP3_HEADER.findall(text)
    assert header == [(str(TINY["STEPS"]), str(int(run["num_test"])))]
    block = text[text.index("Deep 3 after"):]
    (mse, copy_last), = _DEEP3_MSE.findall(block)
    (cosine,) = _DEEP3_COSINE.findall(block)
    # The restored checkpoint, re-evaluated, gives the run's own evaluation (to the printed
    # digits).
    assert float(mse) == pytest.approx(run["test/mse"], abs=6e-6)
    assert float(copy_last) == pytest.approx(run["test/mse_copy_last"], abs=6e-6)
    assert float(cosine) == pytest.approx(run["test/cosine"], abs=6e-5)
    interp_line = next(line for line in block.splitlines() if "interp/mse by t" in line)
    from uncertainty_jax.tasks.linearize import INTERP_TIMES
    interp = _DEEP3_INTERP.findall(interp_line)
    assert [float(t) for t, _ in interp] == list(INTERP_TIMES)
    for t, value in interp:
      assert float(value) == pytest.approx(run[f"interp/mse_t{float(t):g}"], abs=6e-6)

  def test_shows_the_deep3_interpolation_the_run_drew(self, executed):
    nb, workdir = executed
    from uncertainty_jax.evaluation import linearize_figures
    from uncertainty_jax.tasks.linearize import INTERP_TIMES
    config = _tiny_config("deep3")
    data = _read_bytes(os.path.join(workdir, "deep3", "interpolation.png"))
    assert data in _displayed_pngs(nb)
    pixels = _pixels(data)
    shape = (config.num_sample_clips, len(INTERP_TIMES), config.image_size, config.image_size,
             config.channels)
    expected = linearize_figures.interpolation_grid(np.zeros(shape), np.zeros(shape),
                                                    INTERP_TIMES)
    assert pixels.shape == expected.shape
    # The run drew the same figure of the same checkpoint at its last evaluation.
    sample = os.path.join(workdir, "deep3", "samples", f"interpolation_{TINY['STEPS']:08d}.png")
    drawn = _pixels(_read_bytes(sample))
    assert np.max(np.abs(pixels.astype(int) - drawn.astype(int))) <= 1

  def test_prints_the_skip_runs_evaluations(self, executed):
    nb, workdir = executed
    lines = _SKIP_LINE.findall(_stdout(nb))
    assert [line[0] for line in lines] == ["deep3,skip", "deep3,skip,latent"]
    for arg, step, sharpness, interp_mse, test_mse, accuracy, chance in lines:
      run = _read_json(os.path.join(workdir, RUNS[arg], "eval.json"))
      assert int(step) == run["step"] == TINY["SKIP_STEPS"]
      assert float(sharpness) == pytest.approx(run["interp/sharpness"], abs=6e-4)
      assert float(interp_mse) == pytest.approx(run["interp/mse"], abs=6e-6)
      assert float(test_mse) == pytest.approx(run["test/mse"], abs=6e-6)
      # Only the run with delta has a skip probe.
      assert bool(accuracy) == ("skip/accuracy" in run) == arg.endswith("latent")
      if accuracy:
        assert float(accuracy) == pytest.approx(run["skip/accuracy"], abs=6e-4)
        assert float(chance) == pytest.approx(run["skip/chance"], abs=6e-4)

  def test_shows_the_skip_interpolations_side_by_side(self, executed):
    nb, workdir = executed
    from uncertainty_jax.evaluation import linearize_figures
    from uncertainty_jax.tasks.linearize import INTERP_TIMES
    config = _tiny_config("deep3,skip")
    data = _read_bytes(os.path.join(workdir, "skip_interpolations.png"))
    assert data in _displayed_pngs(nb)
    # The first four trajectories of the Deep 3 figure (at most its `num_sample_clips`).
    shape = (min(4, config.num_sample_clips), len(INTERP_TIMES), config.image_size,
             config.image_size, config.channels)
    # The truth and three models: Deep 3 without skips, then the two skip runs.
    models = {name: np.zeros(shape) for name in ("a", "b", "c")}
    expected = linearize_figures.comparison_grid(np.zeros(shape), models, INTERP_TIMES)
    assert _pixels(data).shape == expected.shape

  def test_every_displayed_image_is_a_picture(self, executed):
    nb, _ = executed
    pngs = _displayed_pngs(nb)
    # The bump plots, the toys, the trajectory, the Deep 3 interpolation, the skip comparison.
    assert len(pngs) == 5
    for data in pngs:
      assert _pixels(data).std() > 0, "a blank image"
