"""Table 6.2 (`python -m experiments.reproduce --table=6.2`): Ladder Network against EBGAN-LN.

For each model (`ladder`, `ebgan_ladder` of `experiments/ebgan.py`) and each label count (100,
200, 1000), the 15 seeds train together under `jax.vmap` in one compiled step
(`uncertainty_jax.tasks.ladder.train_seeds`): each seed has its own initialisation, random numbers
and balanced labelled subset. Each setting's test errors are saved as
`<workdir>/<model>_<labels>.json` when it finishes, and a setting already saved with the same
config is reused, so an interrupted table resumes. Writes `<results_dir>/ladder.md` (mean ± std
test error in percent, a row per model and a column per label count, laid out like Table 6.2, the
thesis' numbers beside) and `ladder.json`.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from typing import Any, Callable

import numpy as np

from experiments import ebgan as ebgan_config
from uncertainty_jax.training import writers

MODELS = (("ladder", "Ladder Network"), ("ebgan_ladder", "Ladder Network + EBGAN"))
LABEL_COUNTS = (100, 200, 1000)
NUM_SEEDS = 15
# Table 6.2 (PI-MNIST, percent, mean ± std over 15 seeds; '-' where the thesis gives none).
THESIS = {
    "Ladder Network [Pezeshki et al., 2015]": ((1.69, 0.18), None, (1.05, 0.02)),
    "Ladder Network [Rasmus et al., 2015]": ((1.09, 0.32), None, (0.90, 0.05)),
    "Ladder Network (custom implementation)": ((1.36, 0.21), (1.24, 0.09), (1.04, 0.06)),
    "Ladder Network (custom) + EBGAN": ((1.04, 0.12), (0.99, 0.12), (0.89, 0.04)),
}


class TableError(ValueError):
  """A bad argument of the table (a budget, a seed count, a workdir of other settings)."""


def setting_config(model: str, num_labels: int, budget: str):
  """The config of one setting: `budget` a positive number scaling the steps, or 'tiny'."""
  from experiments import reproduce  # pylint: disable=g-import-not-at-top
  scale = reproduce.parse_budget(budget)
  if scale is None:
    config = ebgan_config.get_config(f"{model},tiny")
  else:
    config = ebgan_config.get_config(model)
    config.unlock()
    config.total_steps = max(1, int(round(config.total_steps * scale)))
  config.unlock()
  config.num_labels = num_labels
  config.lock()
  return config


def _setting_key(config) -> dict:
  return {k: v for k, v in config.to_dict().items()
          if k not in ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints")}


def _print(message: str) -> None:
  print(message, flush=True)


def run_setting(config, seeds: list[int], path: str,
                log: Callable[[str], None] = _print) -> dict[str, Any]:
  """Trains (or reuses, from `path`) the seeds of one setting; returns its record."""
  from uncertainty_jax import tasks  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.tasks import ladder  # pylint: disable=g-import-not-at-top
  key = json.loads(json.dumps(_setting_key(config)))
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    if saved.get("config") == key and saved.get("seeds") == seeds:
      log(f"  finished earlier; reusing {path}")
      return saved
    raise TableError(f"workdir: {path} holds a setting trained with another config or seeds; "
                     f"use another --workdir or remove that file")
  task = tasks.get_task(config)
  last = [time.time()]

  def progress(step: int) -> None:
    if time.time() - last[0] > 30 or step == config.total_steps:
      last[0] = time.time()
      log(f"  step {step}/{config.total_steps}")

  out = ladder.train_seeds(task, seeds, config.total_steps, progress=progress)
  record = {"config": key, "seeds": seeds, "test_error": [float(e) for e in out["test_error"]],
            "seconds": out["seconds"], "steps": config.total_steps}
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  writers.replace_atomically(path, json.dumps(record, indent=2))
  return record


def _cell(values: tuple[float, float] | None) -> str:
  return "-" if values is None else f"{values[0]:.2f} ± {values[1]:.2f}"


def markdown(rows: dict[str, dict[int, dict]], *, command: str, machine: str, budget: str,
             dataset: str) -> str:
  """Table 6.2's layout: a row per model, a column per label count; the thesis' rows below."""
  header = "| Model | " + " | ".join(f"{n} labels" for n in LABEL_COUNTS) + " |"
  lines = [header, "|---|" + "---:|" * len(LABEL_COUNTS)]
  for model, label in MODELS:
    cells = []
    for n in LABEL_COUNTS:
      rec = rows.get(model, {}).get(n)
      cells.append("-" if rec is None else _cell((float(np.mean(rec["test_error"])),
                                                  float(np.std(rec["test_error"])))))
    lines.append(f"| {label} (ours, {dataset}) | " + " | ".join(cells) + " |")
  for label, values in THESIS.items():
    lines.append(f"| {label} (thesis, PI-MNIST) | " + " | ".join(_cell(v) for v in values) + " |")
  seeds = {len(r["seeds"]) for m in rows.values() for r in m.values()}
  steps = {r["steps"] for m in rows.values() for r in m.values()}
  seconds = sum(r["seconds"] for m in rows.values() for r in m.values())
  return "\n".join([
      "# Table 6.2: Ladder Network and its EBGAN extension",
      "",
      f"Test error (%), mean ± standard deviation over {', '.join(map(str, sorted(seeds)))} "
      "seeds, each seed with its own balanced labelled subset; "
      f"{', '.join(map(str, sorted(steps)))} training steps per seed. Our rows are on "
      f"{dataset}; the thesis' on permutation-invariant MNIST (60,000 training images), so "
      "compare the orderings, not the numbers.",
      "",
      *lines,
      "",
      f"Command: `{command}` (budget {budget}); machine: {machine}; "
      f"{seconds / 60:.1f} minutes of training in all; written "
      f"{datetime.date.today().isoformat()}.",
      "",
  ])


def run_table(workdir: str, results_dir: str, budget: str, command: str, machine: str,
              num_seeds: int = NUM_SEEDS, log: Callable[[str], None] = _print) -> str:
  """Trains every setting of Table 6.2 (resuming), writes ladder.md and ladder.json."""
  if not isinstance(num_seeds, int) or num_seeds < 1:
    raise TableError(f"seeds: {num_seeds!r} must be a positive integer")
  configs = {(m, n): setting_config(m, n, budget) for m, _ in MODELS for n in LABEL_COUNTS}
  seeds = list(range(num_seeds))
  rows: dict[str, dict[int, dict]] = {}
  for i, ((model, n), config) in enumerate(configs.items(), 1):
    log(f"[{i}/{len(configs)}] {model}, {n} labels: {len(seeds)} seeds x "
        f"{config.total_steps} steps")
    rows.setdefault(model, {})[n] = run_setting(config, seeds,
                                                os.path.join(workdir, f"{model}_{n}.json"), log)
  dataset = next(iter(configs.values())).dataset
  text = markdown(rows, command=command, machine=machine, budget=budget, dataset=dataset)
  payload = {"table": "6.2", "command": command, "machine": machine, "budget": budget,
             "dataset": dataset, "rows": {
                 model: {str(n): {"test_error": rec["test_error"],
                                  "mean": float(np.mean(rec["test_error"])),
                                  "std": float(np.std(rec["test_error"])),
                                  "seeds": rec["seeds"], "steps": rec["steps"],
                                  "seconds": rec["seconds"]}
                         for n, rec in per.items()}
                 for model, per in rows.items()},
             "thesis": {k: list(v) for k, v in THESIS.items()}}
  os.makedirs(results_dir, exist_ok=True)
  writers.replace_atomically(os.path.join(results_dir, "ladder.md"), text)
  writers.replace_atomically(os.path.join(results_dir, "ladder.json"),
                             json.dumps(writers.to_json_safe(payload), indent=2, sort_keys=True,
                                        allow_nan=False) + "\n")
  return text
