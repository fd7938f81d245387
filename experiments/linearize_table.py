"""The results of chapter 3 (`python -m experiments.reproduce --table=3`): table and figures.

`reproduce.py` trains the rows; this module writes `linearize.md`, `linearize.json` and the figures
from their evaluations and checkpoints:

* `linearize_deep.png`: test trajectories of the toys decoded from interpolated and extrapolated
  codes by Deep 1, 2 and 3 (Figures 3.5 and 3.6);
* `linearize_skip.png`: the same for Deep 3 trained on triplets with skips, without and with the
  latent delta, eq. 3.11 as written and in its residual form (Figure 3.7);
* `linearize_filters_shallow1.png`, `..._shallow2.png`: the shallow decoders' filters by pool
  group (Figure 3.3).
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

import numpy as np

from uncertainty_jax.training import writers

# (eval key, column title, decimals).
COLUMNS = (
    ("test/mse", "test MSE", 4),
    ("test/mse_copy_last", "copy frame 2", 4),
    ("test/mse_zero_delta", "test MSE, delta = 0", 4),
    ("interp/mse", "interp. MSE (t = 0..3)", 4),
    ("interp/mse_t3", "MSE at t = 3", 4),
    ("test/cosine", "cosine of code steps", 3),
    ("interp/sharpness", "interp. sharpness (dB)", 2),
    ("skip/accuracy", "s from delta", 3),
)
FIGURE_TRAJECTORIES = 4
FIGURES = (
    ("linearize_deep", ("deep1", "deep2", "deep3")),
    ("linearize_skip", ("deep3_skip", "deep3_skip_latent", "deep3_skip_latent_residual")),
)


def _cell(record: dict, key: str, decimals: int) -> str:
  value = record.get(key)
  return "–" if value is None else f"{value:.{decimals}f}"


def _config_cell(row: dict) -> str:
  """`linearize.py:ARGS`, then the row's own config overrides as flags."""
  flags = "".join(f" --config.{k}={v}" for k, v in row.get("overrides", {}).items())
  return f"`linearize.py:{row['config_arg']}{flags}`"


def table(rows: list[dict]) -> str:
  """The Markdown table of the rows' final evaluations."""
  lines = ["| row | data | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
           "|---|---" + "|---:" * len(COLUMNS) + "|"]
  for row in rows:
    cells = [_cell(row["eval"], key, d) for key, _, d in COLUMNS]
    lines.append(f"| {row['label']} | {row['dataset']} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def write_results(results_dir: str, *, command: str, machine: str, budget: str,
                  rows: list[dict]) -> str:
  """Writes `linearize.md` and `linearize.json`; returns the Markdown."""
  runs = "| row | config | steps | training time (s) |\n|---|---|---|---|\n" + "\n".join(
      f"| {r['label']} | {_config_cell(r)} | {r['steps']} | {r['seconds']:.0f} |" for r in rows)
  num_test = int(rows[0]["eval"].get("num_test", 0))
  parts = [
      "# Chapter 3 on the embedded data",
      f"Produced by `{command}` on {machine}, "
      f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d} (budget {budget}). "
      f"{num_test} test triplets per dataset; mean squared errors per pixel of images in "
      "[-1, 1]; the interpolation columns decode codes at t = 0, 1/2, ..., 3 from the codes of "
      "frames 1 and 2 and compare with the true renders (t = 3 is the prediction); the cosine "
      "is that of successive code differences along test trajectories (1: straight); "
      "sharpness is eq. 4.8 against the truth (higher: sharper).",
      runs,
      "## Results\n\n" + table(rows),
  ]
  markdown = "\n\n".join(parts) + "\n"
  os.makedirs(results_dir, exist_ok=True)
  with open(os.path.join(results_dir, "linearize.md"), "w") as f:
    f.write(markdown)
  payload = {"table": "3", "command": command, "machine": machine, "budget": budget, "rows": rows}
  with open(os.path.join(results_dir, "linearize.json"), "w") as f:
    json.dump(writers.to_json_safe(payload), f, indent=2, sort_keys=True, allow_nan=False)
    f.write("\n")
  return markdown


def _restore(config, run_dir: str):
  from uncertainty_jax.training import loop  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.training import sharding as sharding_lib  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  task, state, mesh = loop.restore(config, run_dir)
  dataset = task.make_dataset(sharding_lib.batch_sharding(mesh))
  return task, jax.device_get(state.generator.params), dataset


def write_figures(results_dir: str, rows: list[dict], configs: dict[str, Any]) -> list[str]:
  """The figures of the module docstring, for the rows that were trained; returns their paths."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.evaluation import linearize_figures  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.evaluation import visualize  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.tasks import linearize as task_lib  # pylint: disable=g-import-not-at-top
  by_name = {row["name"]: row for row in rows}
  written = []
  for figure, names in FIGURES:
    present = [n for n in names if n in by_name]
    if not present:
      continue
    truth, decoded = None, {}
    for name in present:
      task, params, dataset = _restore(configs[name], by_name[name]["run_dir"])
      traj = np.asarray(dataset.test_trajectories(FIGURE_TRAJECTORIES))
      truth = traj
      decoded[by_name[name]["label"]] = np.asarray(
          task.interpolate(params, jnp.asarray(traj[:, 2::2])))
    path = os.path.join(results_dir, f"{figure}.png")
    visualize.save_png(path, linearize_figures.comparison_grid(truth, decoded,
                                                               task_lib.INTERP_TIMES))
    written.append(path)
  for name in ("shallow1", "shallow2"):
    if name in by_name:
      task, params, _ = _restore(configs[name], by_name[name]["run_dir"])
      path = os.path.join(results_dir, f"linearize_filters_{name}.png")
      visualize.save_png(path, task.decoder_filters(params))
      written.append(path)
  return written
