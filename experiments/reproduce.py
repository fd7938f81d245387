"""Reproduces a results table of the thesis on the embedded data, with one command.

    python -m experiments.reproduce --table=4.4                      # about an hour on 2 CPU cores
    python -m experiments.reproduce --table=4.4 --budget=0.5         # half the training steps
    python -m experiments.reproduce --table=4.4 --budget=tiny --workdir=/tmp/r --results_dir=/tmp/r
    python -m experiments.reproduce --table=3                        # chapter 3, about an hour
    python -m experiments.reproduce --table=5.2                      # chapter 5
    python -m experiments.reproduce --table=6.2                      # chapter 6, semi-supervised

Table 4.4 trains every row of Table 4.3 (single-scale L2, L2, L1, GDL L1, Adv), Model 1 (Adv +
GDL) and Model 2 on `moving_photos`, and L2, Model 1 and Model 2 on `multimodal_photos`, one run
directory per row under `--workdir`. A run whose `eval.json` is at its last step is reused; an
unfinished one resumes from its checkpoint; a directory holding a run of another config is an
error (nothing in it is touched). It then writes `RESULTS_DIR/video_pred.md` (tables laid out like
Table 4.4 a and b, the reference predictors included, and the mode-fidelity table),
`video_pred.json` (every number), and `video_pred.png` / `.gif` (test clips with each model's 1st
and 2nd predicted frames, and the optical-flow reference's), likewise `video_pred_multimodal.*`.

Table 3 (chapter 3, which has no numbered results table: its claims, as one table) trains Shallow 1
and 2 on rigid-transform triplets of the bundled photographs, Deep 1, 2 and 3 on rotation triplets
of the NORB-like toys, and Deep 3 on triplets with skips without and with the latent delta, then
writes `linearize.md`, `linearize.json` and the figures listed in `experiments/linearize_table.py`.

Table 5.2 (chapter 5) trains the disentangling model jointly (Algorithm 5.1) on the procedural
sprites, the two ablations of 5.4.6 (f_s pretrained as a classifier and frozen, with and without
the adversarial term), and the joint model on the NORB-like toys and on digits, then writes
`disentangle.md` (Table 5.2's error rates, the swap errors of the ablation, disentanglement
scores), `disentangle.json` and the figures listed in `experiments/disentangle_table.py`.

Table 6.2 (chapter 6) trains the Ladder Network and EBGAN-LN for 100, 200 and 1000 labels of the
embedded digits, 15 seeds of each setting together under `jax.vmap`, then writes `ladder.md` and
`ladder.json` (`experiments/ladder_table.py`); `--rows` does not apply to it.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import json
import os
import platform
import sys
import time
from typing import Any

from absl import app
from absl import flags
from absl import logging

from uncertainty_jax.training import writers

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags; defined when it runs, so that importing this module defines none."""
  flags.DEFINE_string("table", None, "Which table: 4.4 (chapter 4), 3 (chapter 3), "
                      "5.2 (chapter 5) or 6.2 (chapter 6).")
  flags.DEFINE_string("workdir", "runs/reproduce", "One run directory per row goes here.")
  flags.DEFINE_string("results_dir", "results", "Where the table and figures go.")
  flags.DEFINE_list("rows", None, "Only these rows (run directory names, e.g. l1,model1); "
                    "default: all. The results then hold just these rows.")
  flags.DEFINE_string("budget", "1", "A positive number scaling every row's training steps, or "
                      "'tiny' (each row trains 2 steps of a tiny model).")
  flags.mark_flag_as_required("table")


@dataclasses.dataclass(frozen=True)
class Row:
  """One trained model of a table.

  Attributes:
    name: its run directory under the workdir.
    label: its row label, as in the thesis.
    config_arg: the `experiments/CONFIG_MODULE.py:ARGS` of its config.
    steps: training steps at budget 1.
    overrides: config fields set on top of the table's settings (`SETTINGS`).
    config_module: the chapter's config, a module of `experiments`.
  """
  name: str
  label: str
  config_arg: str
  steps: int
  overrides: tuple[tuple[str, Any], ...] = ()
  config_module: str = "video_pred"


# Training settings of every row at budget 1, sized so that the table trains in about an hour on
# 2 CPU cores: the `cpu` budget's models (a quarter of the thesis' widths) on 32x32 patches (Model
# 2's 64x64 patches and batch of 16 would take eight times as long per step), with the generator's
# learning rate decaying from 0.04 to 0.02 only, as the runs are short. The discriminator's loss is
# summed over the minibatch, as Algorithm 4.1 writes its update: with the mean, SGD at
# rho_D = 0.02 leaves D at chance for thousands of steps.
REPRODUCE = dict(width_multiplier=0.25, image_size=32, batch_size=8, test_frame_size=64,
                 num_test_clips=64, g_final_learning_rate=0.02, d_loss_reduction="sum")
# The multimodal data's objects are sized to the training patch: test at that size too.
_MULTIMODAL = (("test_frame_size", 32),)

TABLE_4_4 = (
    Row("single_scale_l2", "single sc. L2", "single_scale_l2", 800),
    Row("l2", "L2", "l2", 800),
    Row("l1", "L1", "l1", 800),
    Row("gdl_l1", "GDL L1", "gdl_l1", 800),
    Row("adv", "Adv", "adv", 800),
    Row("model1", "Model 1 (Adv+GDL)", "model1", 800),
    Row("model2", "Model 2", "model2", 400),
)
TABLE_4_4_MULTIMODAL = (
    Row("multimodal_l2", "L2", "l2,multimodal", 800, _MULTIMODAL),
    Row("multimodal_model1", "Model 1 (Adv+GDL)", "model1,multimodal", 800, _MULTIMODAL),
    Row("multimodal_model2", "Model 2", "model2,multimodal", 400, _MULTIMODAL),
)
# Chapter 3 at the `cpu` widths (a quarter of Table 3.1's): the eight rows train in 64 minutes on
# 2 CPU cores, the two with delta in half of it (results/linearize.md); the test sets of 256
# triplets and 64 trajectories are those of the configs.
REPRODUCE_LINEARIZE = dict(width_multiplier=0.25)
_LIN = "linearize"
TABLE_3 = (
    Row("shallow1", "Shallow 1", "shallow1", 1500, config_module=_LIN),
    Row("shallow2", "Shallow 2", "shallow2", 1500, config_module=_LIN),
    Row("deep1", "Deep 1", "deep1", 2000, config_module=_LIN),
    Row("deep2", "Deep 2", "deep2", 2000, config_module=_LIN),
    Row("deep3", "Deep 3", "deep3", 2000, config_module=_LIN),
    Row("deep3_skip", "Deep 3, skips, eq. 3.6", "deep3,skip", 2000, config_module=_LIN),
    Row("deep3_skip_latent", "Deep 3, skips, delta (eq. 3.13)", "deep3,skip,latent", 2000,
        config_module=_LIN),
    Row("deep3_skip_latent_residual", "Deep 3, skips, delta, residual correction",
        "deep3,skip,latent", 2000, (("latent_correction", "residual"),), config_module=_LIN),
)
# Chapter 5: the joint model and the two ablations of 5.4.6 on sprites, then the toys and digits,
# at the configs' sizes (the thesis'), sized to train in about an hour on 2 CPU cores.
REPRODUCE_DISENTANGLE: dict[str, Any] = {}
_DIS = "disentangle"
TABLE_5_2 = (
    Row("sprites", "Sprites, joint (Algorithm 5.1)", "sprites", 800, config_module=_DIS),
    Row("sprites_pretrained_s", "Sprites, f_s pretrained and frozen", "pretrained_s", 800,
        config_module=_DIS),
    Row("sprites_pretrained_s_no_adv", "Sprites, f_s pretrained, no adversarial term",
        "pretrained_s_no_adv", 800, config_module=_DIS),
    Row("toys", "NORB-like toys", "toys", 800, config_module=_DIS),
    Row("digits", "Digits", "digits", 1500, config_module=_DIS),
)
TABLES = {"4.4": (TABLE_4_4, TABLE_4_4_MULTIMODAL), "3": (TABLE_3,), "5.2": (TABLE_5_2,)}
# Each chapter's settings at budget 1, under the rows' own overrides.
SETTINGS = {"video_pred": REPRODUCE, "linearize": REPRODUCE_LINEARIZE,
            "disentangle": REPRODUCE_DISENTANGLE}
# The results files' base name per table.
RESULTS_NAMES = {"4.4": "video_pred", "3": "linearize", "5.2": "disentangle", "6.2": "ladder"}
# Wall-clock training seconds of a row, in its run directory.
_SECONDS_FILE = "reproduce_seconds.json"
# Test clips shown in the figures.
NUM_FIGURE_CLIPS = 4


class ReproduceError(ValueError):
  """Bad arguments, or a workdir that holds something else."""


def parse_budget(budget: str) -> float | None:
  """'tiny' -> None; a positive number -> itself."""
  if budget == "tiny":
    return None
  try:
    scale = float(budget)
  except ValueError:
    scale = -1.0
  if not scale > 0:
    raise ReproduceError(f"budget: {budget!r} is neither a positive number nor 'tiny'")
  return scale


def row_config(row: Row, scale: float | None):
  """The config of `row` at budget `scale` (None = tiny), with its budget resolved."""
  from uncertainty_jax.training import loop  # pylint: disable=g-import-not-at-top
  module = importlib.import_module(f"experiments.{row.config_module}")
  if scale is None:
    config = module.get_config(row.config_arg + ",tiny")
  else:
    config = module.get_config(row.config_arg)
    settings = dict(SETTINGS[row.config_module], **dict(row.overrides))
    steps = max(1, round(row.steps * scale))
    # Four evaluations per run show how each row got where it ends.
    settings.update(total_steps=steps, eval_every=max(1, steps // 4),
                    checkpoint_every=min(steps, 500))
    for field, value in settings.items():
      config[field] = value
  loop.resolve_budget(config)
  return config


def _differences(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
  out = []
  for key in sorted(set(saved) | set(wanted)):
    a, b = saved.get(key, "<missing>"), wanted.get(key, "<missing>")
    if isinstance(a, dict) and isinstance(b, dict):
      out += _differences(a, b, f"{prefix}{key}.")
    elif a != b:
      out.append(f"{prefix}{key}: {a!r} there, {b!r} here")
  return out


def check_run_dir(run_dir: str, config) -> None:
  """Raises if `run_dir` holds a run of a config other than `config`."""
  path = os.path.join(run_dir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    saved = json.load(f)
  diffs = _differences(saved, json.loads(json.dumps(config.to_dict())))
  if diffs:
    raise ReproduceError(
        f"workdir: {run_dir} holds a run of another config ({'; '.join(diffs[:3])}"
        f"{'; ...' if len(diffs) > 3 else ''}); choose another --workdir or move that run away")


def finished_eval(run_dir: str, total_steps: int) -> dict | None:
  """The run's final evaluation, if it has one."""
  path = os.path.join(run_dir, "eval.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    record = writers.from_json_safe(json.load(f))
  return record if record.get("step") == total_steps else None


def _training_seconds(run_dir: str) -> float:
  path = os.path.join(run_dir, _SECONDS_FILE)
  if not os.path.exists(path):
    return 0.0
  with open(path) as f:
    return float(json.load(f)["seconds"])


def train_row(row: Row, config, run_dir: str) -> tuple[dict, float, bool]:
  """Trains (or reuses) one row.

  Returns:
    Its final evaluation; the wall-clock seconds its training took, summed over the sessions that
    trained it (kept in the run directory); and whether a finished run was reused.
  """
  from uncertainty_jax.training import loop  # pylint: disable=g-import-not-at-top
  record = finished_eval(run_dir, config.total_steps)
  if record is not None:
    return record, _training_seconds(run_dir), True
  start = time.time()
  try:
    loop.train_and_evaluate(config, run_dir)
  finally:
    # An interrupted session's time counts too: the run resumes from its checkpoint.
    if os.path.isdir(run_dir):
      seconds = _training_seconds(run_dir) + time.time() - start
      with open(os.path.join(run_dir, _SECONDS_FILE), "w") as f:
        json.dump({"seconds": seconds}, f)
  record = finished_eval(run_dir, config.total_steps)
  if record is None:
    raise RuntimeError(f"{run_dir}: training finished without a final evaluation")
  return record, _training_seconds(run_dir), False


def predict_figure_clips(config, run_dir: str, num_clips: int):
  """The first test clips of the row's data and its 1st/2nd predictions (Model 2: no noise)."""
  from uncertainty_jax.training import loop  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.training import sharding as sharding_lib  # pylint: disable=g-import-not-at-top
  task, state, mesh = loop.restore(config, run_dir)
  dataset = task.make_dataset(sharding_lib.batch_sharding(mesh))
  return task.predict_test_clips(state, dataset, mesh, num_clips, num_frames=2)


def _machine() -> str:
  import jax  # pylint: disable=g-import-not-at-top
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  return (f"{cpu}, {os.cpu_count()} cores, {jax.default_backend()} backend "
          f"({jax.device_count()} device(s)), jax {jax.__version__}, Python "
          f"{platform.python_version()}")


def _mode_table(rows: list[tuple[str, dict]]) -> str:
  columns = (("modes/mode_distance", "distance to nearest mode", 3),
             ("modes/blur_distance", "distance of the mean prediction", 3),
             ("modes/mode_coverage", "modes covered", 2),
             ("modes/mode_divergence", "JS divergence of mode frequencies", 3))
  lines = ["| | " + " | ".join(name for _, name, _ in columns) + " |",
           "|---" * (1 + len(columns)) + "|"]
  for label, record in rows:
    cells = ["–" if record.get(key) is None else f"{record[key]:.{d}f}" for key, _, d in columns]
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def write_results(results_dir: str, *, command: str, machine: str, scale: float | None,
                  main_rows: list[dict], mode_rows: list[dict]) -> str:
  """Writes `video_pred.md` and `video_pred.json`; returns the Markdown."""
  from uncertainty_jax.evaluation import tables  # pylint: disable=g-import-not-at-top
  refs = main_rows[0]["eval"]
  table_rows = [(r["label"], r["eval"]) for r in main_rows] + tables.reference_rows(refs)
  budget = "tiny" if scale is None else f"{scale:g}"
  clips = int(refs.get("num_clips", 0))
  parts = [
      "# Table 4.4 on the embedded data",
      f"Produced by `{command}` on {machine}, "
      f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d} (budget {budget}). "
      f"{clips} test clips of `moving_photos` at full {main_rows[0]['frame_size']}x"
      f"{main_rows[0]['frame_size']} frames; 4 input frames; the 1st and 2nd predicted frames.",
      "| row | config | steps | training time (s) |\n|---|---|---|---|\n" + "\n".join(
          f"| {r['label']} | `video_pred.py:{r['config_arg']}` | {r['steps']} | "
          f"{r['seconds']:.0f} |" for r in main_rows + mode_rows),
  ]
  for letter, region in (("a", "full"), ("b", "moving"), ("c", "moving_exact")):
    if tables.has_region([refs], region):
      parts.append(f"## ({letter}) {tables.REGIONS[region]}\n\n"
                   + tables.metrics_table(table_rows, region))
  if mode_rows:
    mrefs = mode_rows[0]["eval"]
    rows = [(r["label"], r["eval"]) for r in mode_rows] + tables.reference_rows(mrefs)
    parts.append(
        "## Several possible futures (`multimodal_photos`)\n\n"
        "Each test input has every possible next frame rendered; distances are per-pixel RMSE "
        "(images in [-1, 1]) of each prediction to its nearest possible future, and of the mean "
        "of a model's draws to its nearest future; coverage is the fraction of futures some draw "
        "lands nearest to; the divergence compares how often each future is predicted with its "
        "probability.\n\n" + _mode_table(rows))
  markdown = "\n\n".join(parts) + "\n"
  os.makedirs(results_dir, exist_ok=True)
  with open(os.path.join(results_dir, "video_pred.md"), "w") as f:
    f.write(markdown)
  payload = {"table": "4.4", "command": command, "machine": machine, "budget": budget,
             "rows": main_rows, "multimodal_rows": mode_rows}
  with open(os.path.join(results_dir, "video_pred.json"), "w") as f:
    json.dump(writers.to_json_safe(payload), f, indent=2, sort_keys=True, allow_nan=False)
    f.write("\n")
  return markdown


def write_figures(results_dir: str, name: str, frames, predictions: dict, m: int) -> list[str]:
  """A PNG of last input, truth and each model's predictions, and a GIF of the same."""
  from uncertainty_jax.evaluation import visualize  # pylint: disable=g-import-not-at-top
  targets = frames[:, m:m + 2]
  png = os.path.join(results_dir, f"{name}.png")
  gif = os.path.join(results_dir, f"{name}.gif")
  visualize.save_png(png, visualize.comparison_grid(frames[:, :m], targets, predictions, scale=2))
  visualize.save_gif(gif, visualize.comparison_animation(frames[:, :m], targets, predictions))
  return [png, gif]


def select_rows(table: str, rows: list[str] | None) -> tuple[tuple[Row, ...], ...]:
  """The row groups of `table`, restricted to `rows` if given (groups left empty are dropped)."""
  if table not in TABLES:
    raise ReproduceError(f"table: unknown table {table!r}; valid: {sorted([*TABLES, '6.2'])}")
  groups = TABLES[table]
  if rows is None:
    return groups
  names = [row.name for group in groups for row in group]
  unknown = [r for r in rows if r not in names]
  if unknown or not rows:
    raise ReproduceError(f"rows: unknown rows {unknown}; valid: {names}")
  groups = tuple(tuple(row for row in group if row.name in rows) for group in groups)
  if not groups[0]:
    raise ReproduceError(f"rows: choose at least one row of the main table: "
                         f"{[row.name for row in TABLES[table][0]]}")
  return tuple(group for group in groups if group)


def reproduce(table: str, workdir: str, results_dir: str, budget: str, command: str,
              rows: list[str] | None = None) -> str:
  """Trains (or reuses) every row of `table`, then writes its results; returns the Markdown."""
  if table == "6.2":
    from experiments import ladder_table  # pylint: disable=g-import-not-at-top
    if rows is not None:
      raise ReproduceError("rows: table 6.2 has no rows to pick; it trains every setting")
    try:
      return ladder_table.run_table(workdir, results_dir, budget, command, _machine())
    except (ladder_table.TableError, FloatingPointError) as e:
      raise ReproduceError(str(e)) from e
  from uncertainty_jax.evaluation import video_pred as evaluation  # pylint: disable=g-import-not-at-top
  groups = select_rows(table, rows)
  scale = parse_budget(budget)
  configs = {row.name: row_config(row, scale) for group in groups for row in group}
  # Every row's directory is checked before any training, so a wrong workdir fails at once.
  for group in groups:
    for row in group:
      check_run_dir(os.path.join(workdir, row.name), configs[row.name])
  results = []
  count = sum(len(group) for group in groups)
  done = 0
  for group in groups:
    out = []
    for row in group:
      done += 1
      config = configs[row.name]
      run_dir = os.path.join(workdir, row.name)
      print(f"[{done}/{count}] {row.label} ({row.config_arg}): {config.total_steps} steps in "
            f"{run_dir}", flush=True)
      record, seconds, reused = train_row(row, config, run_dir)
      if reused:
        print("  finished earlier; reusing its evaluation", flush=True)
      out.append(dict(name=row.name, label=row.label, config_arg=row.config_arg,
                      overrides=dict(row.overrides), steps=config.total_steps, seconds=seconds,
                      frame_size=config.get("test_frame_size"), dataset=config.dataset,
                      run_dir=run_dir, eval=record))
    results.append(out)
  if table == "3":
    from experiments import linearize_table  # pylint: disable=g-import-not-at-top
    markdown = linearize_table.write_results(
        results_dir, command=command, machine=_machine(),
        budget="tiny" if scale is None else f"{scale:g}", rows=results[0])
    linearize_table.write_figures(results_dir, results[0], configs)
    return markdown
  if table == "5.2":
    from experiments import disentangle_table  # pylint: disable=g-import-not-at-top
    markdown = disentangle_table.write_results(
        results_dir, command=command, machine=_machine(),
        budget="tiny" if scale is None else f"{scale:g}", rows=results[0])
    disentangle_table.write_figures(results_dir, results[0], configs)
    return markdown
  markdown = write_results(results_dir, command=command, machine=_machine(), scale=scale,
                           main_rows=results[0], mode_rows=results[1] if len(results) > 1 else [])
  for group, name in zip(groups, ("video_pred", "video_pred_multimodal")):
    frames, predictions = None, {}
    for row in group:
      config = configs[row.name]
      frames, preds = predict_figure_clips(config, os.path.join(workdir, row.name),
                                           NUM_FIGURE_CLIPS)
      predictions[row.label] = preds
    m = configs[group[0].name].num_input_frames
    predictions["Optical flow"] = evaluation.reference_predictions(frames[:, :m], 2)["flow"]
    write_figures(results_dir, name, frames, predictions, m)
  return markdown


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  from uncertainty_jax.training.checkpoint import CheckpointError  # pylint: disable=g-import-not-at-top
  command = "python -m experiments.reproduce " + " ".join(
      a for a in sys.argv[1:] if not a.startswith("--workdir") and not a.startswith(
          "--results_dir"))
  try:
    markdown = reproduce(FLAGS.table, FLAGS.workdir, FLAGS.results_dir, FLAGS.budget,
                         command.strip(), FLAGS.rows)
  except (ReproduceError, CheckpointError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(markdown)
  name = RESULTS_NAMES[FLAGS.table]
  figures = "" if FLAGS.table == "6.2" else " and figures"
  print(f"wrote {os.path.join(FLAGS.results_dir, name + '.md')}, {name}.json{figures}")
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main)
