"""Shared test helpers: tiny configs, subprocess runs of the command line, notebook runs."""

import os
import subprocess
import sys

import jax
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_configure(config):
  """Compiled programs are cached on disk for the session: the tests build the same steps often."""
  cache = os.path.join(config.rootpath if hasattr(config, "rootpath") else REPO, ".pytest_xla_cache")
  os.environ.setdefault("UNCERTAINTY_JAX_TEST_XLA_CACHE", cache)
  jax.config.update("jax_compilation_cache_dir", os.environ["UNCERTAINTY_JAX_TEST_XLA_CACHE"])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def xla_cache_env():
  """Environment variables that let a subprocess share the tests' XLA cache, or None."""
  cache = os.environ.get("UNCERTAINTY_JAX_TEST_XLA_CACHE")
  if not cache:
    return None
  return dict(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5",
              JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")


def run_main(args, *, devices=None, timeout=600, env_extra=None):
  """Runs `python -m experiments.main ARGS` in a fresh process; returns the CompletedProcess."""
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  if devices:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["JAX_PLATFORMS"] = "cpu"
  env.update(env_extra or {})
  return subprocess.run([sys.executable, "-m", "experiments.main", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)


def tree_snapshot(root):
  """{relative path: (size, mtime_ns)} of every file under root."""
  snap = {}
  for dirpath, _, files in os.walk(root):
    for f in files:
      p = os.path.join(dirpath, f)
      st = os.stat(p)
      snap[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
  return snap


def notebook_parameters_index(nb) -> int:
  """The index of a notebook's one cell tagged 'parameters' (the cell a test overrides)."""
  tagged = [i for i, cell in enumerate(nb.cells)
            if "parameters" in cell.get("metadata", {}).get("tags", [])]
  assert len(tagged) == 1, f"expected one cell tagged 'parameters', found {len(tagged)}"
  return tagged[0]


def notebook_outputs(nb):
  """Every output of a notebook's code cells, in order."""
  return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def run_notebook(path, parameters, *, devices=2, timeout=600):
  """Executes the notebook at `path` top to bottom in a fresh Jupyter kernel; returns it.

  As papermill does, a code cell assigning `parameters` (`NAME = repr(value)` lines, in the
  dict's order) is inserted after the cell tagged 'parameters'. The kernel runs on the CPU with
  `devices` host devices, in the repository root (so `uncertainty_jax` and `experiments` import
  from the checkout), and shares the test session's compilation cache where there is one. A cell
  that raises stops the run with nbclient's `CellExecutionError`.

  Args:
    path: the `.ipynb` file.
    parameters: `{name: value}`, values whose `repr` is Python source (numbers, strings, bools).
    devices: the number of CPU devices the kernel's JAX sees.
    timeout: seconds any one cell may run.

  Returns:
    The executed `nbformat` notebook, injected cell included, with its outputs.
  """
  import nbformat  # pylint: disable=g-import-not-at-top
  from nbclient import NotebookClient  # pylint: disable=g-import-not-at-top
  nb = nbformat.read(path, as_version=4)
  injected = "".join(f"{name} = {value!r}\n" for name, value in parameters.items())
  nb.cells.insert(notebook_parameters_index(nb) + 1, nbformat.v4.new_code_cell(injected))
  env = dict(os.environ)
  env["JAX_PLATFORMS"] = "cpu"
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env.update(xla_cache_env() or {})
  client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                          resources={"metadata": {"path": REPO}})
  client.execute(env=env)
  return nb


@pytest.fixture
def tiny_config():
  from experiments import video_pred
  return lambda arg="model1": video_pred.get_config(f"{arg},tiny")
