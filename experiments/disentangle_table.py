"""The results of chapter 5 (`python -m experiments.reproduce --table=5.2`): tables and figures.

`reproduce.py` trains the rows; this module writes `disentangle.md`, `disentangle.json` and the
figures from their evaluations and checkpoints. The Markdown holds:

* Table 5.2 laid out like the thesis: error rates (%) of two-layer classifiers predicting the
  identity from z and from s, on the training and the test split, and of a classifier with no
  input (chance), for sprites (the mean over its seven identity attributes), the NORB-like toys
  (the category) and digits (the class), the thesis' numbers beside ours where it has them;
  then sprites' errors attribute by attribute, and every row's probes with the chance rate of
  both splits;
* the swap error of 5.4.6 (the ablation of the joint training and of the adversarial term),
  against the thesis' 0.014 / 0.024 / 0.030, with the error of copying the image that gave s;
* MIG and DCI of the code `[s, mu]`, and the shares of the identity factors held by s and of the
  pose factors held by z, for the rows whose data knows its pose factors.

Figures, beside the Markdown:

* `disentangle_<row>_swap.png`: each row's swapping grid (Figures 5.2a-5.4a; z from each row's
  left image, s from each column's top image) and, where the data renders its ground truth, the
  true images of the same swaps to its right;
* `disentangle_sprites_figures.png`: the joint sprites model's interpolation, retrieval on s,
  retrieval on z and generation grids (Figure 5.3 b-e), left to right.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

import numpy as np

from uncertainty_jax.training import writers

# Table 5.2's datasets: (row giving the numbers, column title, the thesis' numbers or None).
# The thesis' numbers are percentages: (train, test) for z and s, and the single no-input rate.
THESIS_PROBES = {
    "sprites": {"z": (58.6, 59.8), "s": (5.5, 5.2), "chance": 60.0},
    "norb": {"z": (79.8, 79.9), "s": (2.6, 13.5), "chance": 80.0},
}
TABLE_5_2 = (
    ("sprites", "Sprites", "sprites"),
    ("toys", "NORB-like toys", "norb"),
    ("digits", "Digits", None),
)
# The thesis' swap errors (5.4.6), pixels in [0, 1].
THESIS_SWAP = {"sprites": 0.014, "sprites_pretrained_s": 0.024,
               "sprites_pretrained_s_no_adv": 0.030}
# The order the probed factors are listed in, where known (eval records sort their keys).
PROBE_ORDER = ("body", "gender", "hair", "armour", "arm", "greaves", "weapon", "category",
               "digit")
SCORE_COLUMNS = (
    ("scores/mig", "MIG"),
    ("scores/dci_disentanglement", "DCI disentanglement"),
    ("scores/dci_completeness", "DCI completeness"),
    ("scores/dci_informativeness", "DCI informativeness"),
    ("scores/s_share_identity", "s share of identity factors"),
    ("scores/z_share_pose", "z share of pose factors"),
)
SCORE_DECIMALS = 3
MSE_DECIMALS = 4
PERCENT_DECIMALS = 1
# White pixels between the grids composed into one figure.
FIGURE_GAP = 8
_BACKGROUND = 255
SPRITES_FIGURES = ("interpolation", "retrieval_s", "retrieval_z", "generation")
_DASH = "–"


def probe_names(record: dict) -> list[str]:
  """The factors probed in an evaluation record (`table/{name}/...` keys), in `PROBE_ORDER`."""
  names = {key.split("/")[1] for key in record if key.startswith("table/")}
  known = [n for n in PROBE_ORDER if n in names]
  return known + sorted(names - set(known))


def mean_probe_error(record: dict, code: str, split: str) -> float | None:
  """The mean over the probed factors of `table/{name}/{code}/{split}_error`, or None.

  Args:
    record: a row's evaluation.
    code: 's', 'z' or 'chance'.
    split: 'train' or 'test'.
  """
  names = probe_names(record)
  if not names:
    return None
  return float(np.mean([record[f"table/{n}/{code}/{split}_error"] for n in names]))


def percent(value: float | None) -> str:
  """A rate as a percentage cell, e.g. 0.586 -> '58.6%'; None -> a dash."""
  return _DASH if value is None else f"{100 * value:.{PERCENT_DECIMALS}f}%"


def _number(value: float | None, decimals: int) -> str:
  return _DASH if value is None else f"{value:.{decimals}f}"


def _markdown_table(header: list[str], rows: list[list[str]], text_columns: int = 1) -> str:
  """A Markdown table; the first `text_columns` columns left-aligned, the numbers right-aligned."""
  lines = ["| " + " | ".join(header) + " |",
           "|---" * text_columns + "|---:" * (len(header) - text_columns) + "|"]
  lines += ["| " + " | ".join(cells) + " |" for cells in rows]
  return "\n".join(lines)


def table_5_2(rows: list[dict]) -> str | None:
  """Table 5.2 as in the thesis: rows train / test / chance, a z and an s column per dataset.

  The chance row gives the no-input classifier's test error under both codes (it sees neither);
  the thesis gives one no-input rate per dataset.
  """
  by_name = {r["name"]: r for r in rows}
  header, columns = [""], []
  for name, title, thesis_key in TABLE_5_2:
    record = by_name[name]["eval"] if name in by_name else None
    if record is None or not probe_names(record):
      continue
    for code in ("z", "s"):
      header.append(f"{title} {code}")
      columns.append([percent(mean_probe_error(record, code, "train")),
                      percent(mean_probe_error(record, code, "test")),
                      percent(mean_probe_error(record, "chance", "test"))])
    if thesis_key is not None:
      thesis = THESIS_PROBES[thesis_key]
      for code in ("z", "s"):
        header.append(f"{title} {code}, thesis")
        columns.append([f"{thesis[code][0]:.1f}%", f"{thesis[code][1]:.1f}%",
                        f"{thesis['chance']:.1f}%"])
  if not columns:
    return None
  labels = ["train", "test", "no input (chance)"]
  return _markdown_table(header, [[label] + [c[i] for c in columns]
                                  for i, label in enumerate(labels)])


_PROBE_HEADER = ["z train", "z test", "s train", "s test", "chance train", "chance test"]
_PROBE_KEYS = (("z", "train"), ("z", "test"), ("s", "train"), ("s", "test"),
               ("chance", "train"), ("chance", "test"))


def attribute_table(record: dict) -> str:
  """One row per probed factor, then their mean: error rates of z, s and chance on both splits."""
  rows = [[name] + [percent(record[f"table/{name}/{code}/{split}_error"])
                    for code, split in _PROBE_KEYS] for name in probe_names(record)]
  rows.append(["mean"] + [percent(mean_probe_error(record, code, split))
                          for code, split in _PROBE_KEYS])
  return _markdown_table(["attribute"] + _PROBE_HEADER, rows)


def probes_table(rows: list[dict]) -> str | None:
  """Every row's probes (the mean over its probed factors), with the chance rate of both splits."""
  lines = []
  for row in rows:
    names = probe_names(row["eval"])
    if not names:
      continue
    factors = names[0] if len(names) == 1 else f"mean of {len(names)} attributes"
    lines.append([row["label"], factors] + [percent(mean_probe_error(row["eval"], code, split))
                                            for code, split in _PROBE_KEYS])
  return (_markdown_table(["row", "probed"] + _PROBE_HEADER, lines, text_columns=2) if lines
          else None)


def errors_table(rows: list[dict]) -> str:
  """Reconstruction and swap errors, pixels in [0, 1] (the eval's MSE of [-1, 1] pixels / 4)."""
  lines = []
  for row in rows:
    record = row["eval"]
    def quarter(key):
      return None if record.get(key) is None else record[key] / 4.0
    lines.append([row["label"],
                  _number(quarter("test/reconstruction_mse"), MSE_DECIMALS),
                  _number(record.get("swap/mse_01"), MSE_DECIMALS),
                  _number(THESIS_SWAP.get(row["name"]), 3),
                  _number(quarter("swap/mse_s_image"), MSE_DECIMALS)])
  return _markdown_table(["row", "reconstruction MSE", "swap MSE", "swap MSE, thesis",
                          "copying the image that gave s"], lines)


def scores_table(rows: list[dict]) -> str | None:
  """MIG, DCI and the code shares of the rows that have them."""
  lines = [[row["label"]] + [_number(row["eval"].get(key), SCORE_DECIMALS)
                             for key, _ in SCORE_COLUMNS]
           for row in rows if "scores/mig" in row["eval"]]
  return _markdown_table(["row"] + [title for _, title in SCORE_COLUMNS], lines) if lines else None


def write_results(results_dir: str, *, command: str, machine: str, budget: str,
                  rows: list[dict]) -> str:
  """Writes `disentangle.md` and `disentangle.json`; returns the Markdown.

  Args:
    results_dir: the output directory (created if needed).
    command: the command line that produced the results.
    machine: a description of the machine.
    budget: the budget, as given ('tiny' or a number).
    rows: one dict per trained row: `name`, `label`, `config_arg`, `dataset`, `steps`, `seconds`,
      `run_dir` and `eval` (its final evaluation).
  """
  runs = _markdown_table(
      ["row", "config", "data", "steps", "training time (s)"],
      [[r["label"], f"`disentangle.py:{r['config_arg']}`", r["dataset"], str(r["steps"]),
        f"{r['seconds']:.0f}"] for r in rows], text_columns=3)
  parts = [
      "# Chapter 5 on the embedded data",
      f"Produced by `{command}` on {machine}, "
      f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d} (budget {budget}). Every number "
      "is measured on the fixed evaluation splits of the row's data; the sprites' and the toys' "
      "test identities never appear in training.",
      runs,
  ]
  table = table_5_2(rows)
  if table:
    parts.append(
        "## Table 5.2: error rates of classifiers from z and from s\n\n"
        "Two-layer networks predict the identity from the unspecified code z (the posterior mean) "
        "and from the specified code s: for sprites the mean error over its seven identity "
        "attributes, for the NORB-like toys the category (five, as NORB's), for digits the class. "
        "The chance row is a classifier with no input (the most frequent training class), on the "
        "test split; the thesis gives one such rate per dataset. z should be near chance, s near "
        "zero.\n\n" + table)
  by_name = {r["name"]: r for r in rows}
  if "sprites" in by_name and probe_names(by_name["sprites"]["eval"]):
    parts.append(f"## Sprites by attribute: {by_name['sprites']['label']}\n\n"
                 + attribute_table(by_name["sprites"]["eval"]))
  table = probes_table(rows)
  if table:
    parts.append("## Every row's probes\n\nThe mean error over each row's probed factors, with "
                 "the no-input rate on both splits.\n\n" + table)
  parts.append(
      "## Swap error (5.4.6)\n\n"
      "Mean squared error per pixel, pixels in [0, 1] (the thesis' scale): reconstructions of the "
      "test images from their own codes, and decodings of z of one test image with s of another "
      "against the rendered truth (the identity of the second in the pose of the first), where "
      "the data renders it. The last column is the error of copying the image that gave s: what a "
      "model ignoring z would score.\n\n" + errors_table(rows))
  table = scores_table(rows)
  if table:
    parts.append(
        "## Disentanglement scores\n\n"
        "Of the code `[s, mu]` against the data's known factors: the mutual information gap, DCI "
        "(importances of extremely randomized trees), and the share of the importance of the "
        "identity factors held by s and of the pose factors held by z (1 each when the two codes "
        "split the factors as intended).\n\n" + table)
  figures = ", ".join(f"`disentangle_{r['name']}_swap.png`" for r in rows)
  parts.append(
      f"Figures: {figures} (z from each row's left image, s from each column's top image; where "
      "the data renders its ground truth, the true images of the same swaps on the right)"
      + (", and `disentangle_sprites_figures.png` (interpolation, retrieval on s, retrieval on z, "
         "generation)" if "sprites" in by_name else "") + ".")
  markdown = "\n\n".join(parts) + "\n"
  os.makedirs(results_dir, exist_ok=True)
  with open(os.path.join(results_dir, "disentangle.md"), "w") as f:
    f.write(markdown)
  payload = {"table": "5.2", "command": command, "machine": machine, "budget": budget,
             "rows": rows}
  with open(os.path.join(results_dir, "disentangle.json"), "w") as f:
    json.dump(writers.to_json_safe(payload), f, indent=2, sort_keys=True, allow_nan=False)
    f.write("\n")
  return markdown


def side_by_side(images: list[np.ndarray], gap: int = FIGURE_GAP) -> np.ndarray:
  """uint8 `[H_i, W_i, 3]` images left to right, top-aligned, `gap` white columns between them.

  Returns:
    uint8 `[max H_i, sum W_i + gap (len - 1), 3]`, white where no image is.
  """
  height = max(image.shape[0] for image in images)
  width = sum(image.shape[1] for image in images) + gap * (len(images) - 1)
  out = np.full((height, width, 3), _BACKGROUND, np.uint8)
  x = 0
  for image in images:
    out[:image.shape[0], x:x + image.shape[1]] = image
    x += image.shape[1] + gap
  return out


def row_figures(config, run_dir: str) -> dict[str, np.ndarray]:
  """The row's figure grids (`DisentangleTask.figures`) from its latest checkpoint."""
  from uncertainty_jax.training import loop  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.training import sharding as sharding_lib  # pylint: disable=g-import-not-at-top
  task, state, mesh = loop.restore(config, run_dir)
  dataset = task.make_dataset(sharding_lib.batch_sharding(mesh))
  return task.figures(state, dataset)


def write_figures(results_dir: str, rows: list[dict], configs: dict[str, Any]) -> list[str]:
  """The figures of the module docstring for the rows that were trained; returns their paths."""
  from uncertainty_jax.evaluation import visualize  # pylint: disable=g-import-not-at-top
  written = []
  for row in rows:
    grids = row_figures(configs[row["name"]], row["run_dir"])
    swap = [grids["swap"]] + ([grids["swap_truth"]] if "swap_truth" in grids else [])
    path = os.path.join(results_dir, f"disentangle_{row['name']}_swap.png")
    visualize.save_png(path, side_by_side(swap))
    written.append(path)
    if row["name"] == "sprites":
      path = os.path.join(results_dir, "disentangle_sprites_figures.png")
      visualize.save_png(path, side_by_side([grids[name] for name in SPRITES_FIGURES]))
      written.append(path)
  return written
