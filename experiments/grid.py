"""The MNIST grid search of thesis 6.3.1 (Table 6.1) and its figures (6.2, 6.3, 6.4).

    python -m experiments.grid --config=experiments/ebgan.py:grid --workdir=runs/grid
    python -m experiments.grid --config=experiments/ebgan.py:grid --workdir=runs/grid --sample=200
    python -m experiments.grid --config=experiments/ebgan.py:grid --workdir=runs/grid \\
        --sample=200 --shard=0 --num_shards=4          # one of four processes or hosts
    python -m experiments.grid --config=experiments/ebgan.py:grid --workdir=runs/grid --train=false

Trains every selected configuration not yet in `<workdir>/results.jsonl` (configurations of one
architecture together, under `jax.vmap`), one JSON line each, then writes the figures from that
file into `<workdir>/figures/`: the I' histograms of Figure 6.2 (a, b, c) and 6.3, a Markdown
summary, and the samples of the best EBGAN, EBGAN-PT and GAN side by side (Figure 6.4; the
EBGAN-PT is the best EBGAN's configuration trained again with lambda_PT = 0.1, as the thesis
does). Rerunning resumes. `--train=false` only draws the figures.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
  config_flags.DEFINE_config_file("config", None, "experiments/ebgan.py:grid", lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory of the search: results.jsonl, samples, figures.")
  flags.DEFINE_integer("sample", None, "Train about this many configurations, drawn evenly over "
                       "the frameworks as whole architectures (default: the whole grid).")
  flags.DEFINE_integer("seed", 0, "Seed of the --sample draw; the same on every shard.")
  flags.DEFINE_integer("shard", 0, "This process' shard, in [0, num_shards).")
  flags.DEFINE_integer("num_shards", 1, "Processes or hosts splitting the selection.")
  flags.DEFINE_bool("train", True, "Train the configurations not yet recorded.")
  flags.DEFINE_bool("figures", True, "Write the figures and the summary from results.jsonl.")
  flags.DEFINE_bool("list", False, "Print how many configurations the selection holds and exit.")
  flags.mark_flags_as_required(["config", "workdir"])


def _resolve_steps(config) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.training import loop  # pylint: disable=g-import-not-at-top
  budget = loop.resolve_budget(config)
  if config.grid.steps is None:
    key = budget if budget in config.grid_budgets else (
        "cpu" if jax.default_backend() == "cpu" else "full")
    config.grid.steps = config.grid_budgets[key].steps
  if config.grid.steps < 1:
    raise ValueError(f"grid.steps: {config.grid.steps} must be a positive integer")


def write_figures(config, workdir: str, *, train_pt: bool = True) -> list[str]:
  """Figures 6.2-6.4 and the summary from `<workdir>/results.jsonl`; returns the paths written."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.evaluation import ebgan_figures  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.training import grid as grid_lib  # pylint: disable=g-import-not-at-top
  records = grid_lib.read_records(workdir)
  if not records:
    raise ValueError(f"grid: no results in {os.path.join(workdir, grid_lib.RESULTS)}; train first")
  out = os.path.join(workdir, "figures")
  os.makedirs(out, exist_ok=True)
  written = []
  frameworks = {r["framework"] for r in records}
  if {"ebgan", "gan"} <= frameworks:
    path = os.path.join(out, "inception_histograms.png")
    ebgan_figures.inception_histograms(records, path)
    written.append(path)
    path = os.path.join(out, "optimizer_histograms.png")
    ebgan_figures.optimizer_histograms(records, path)
    written.append(path)
  best = ebgan_figures.best_records(records)
  if train_pt and "ebgan" in best and "ebgan_pt" not in frameworks:
    # Figure 6.4c: the best EBGAN's configuration with the pulling-away term.
    point = grid_lib.GridPoint(**{f.name: best["ebgan"][f.name]
                                  for f in dataclasses.fields(grid_lib.GridPoint)})
    point = dataclasses.replace(point, framework="ebgan_pt")
    records = grid_lib.run(config, workdir, [point])
    best = ebgan_figures.best_records(records)
  panels = {}
  for framework, title in (("gan", "best GAN"), ("ebgan", "best EBGAN"),
                           ("ebgan_pt", "best EBGAN-PT")):
    if framework not in best:
      continue
    path = os.path.join(workdir, "samples", f"{best[framework]['id']}.npy")
    if os.path.exists(path):
      panels[f"{title}, I'={best[framework]['inception_score']:.2f}"] = np.load(path)
  if panels:
    path = os.path.join(out, "best_samples.png")
    ebgan_figures.sample_panels(panels, path)
    written.append(path)
  path = os.path.join(out, "summary.md")
  with open(path + ".tmp", "w") as f:
    f.write(ebgan_figures.summary_table(records) + "\n")
  os.replace(path + ".tmp", path)
  written.append(path)
  return written


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  from uncertainty_jax.training import grid as grid_lib  # pylint: disable=g-import-not-at-top
  config = FLAGS.config
  workdir = os.path.abspath(FLAGS.workdir)
  try:
    _resolve_steps(config)
    points = grid_lib.select(grid_lib.table_6_1(config.grid), sample=FLAGS.sample,
                             seed=FLAGS.seed, shard=FLAGS.shard, num_shards=FLAGS.num_shards)
    if FLAGS.list:
      groups = grid_lib.group_by_architecture(points)
      print(f"{len(points)} configurations in {len(groups)} architectures, {config.grid.steps} "
            f"steps each")
      return 0
    if FLAGS.train:
      grid_lib.run(config, workdir, points, log=lambda m: print(m, flush=True))
    if FLAGS.figures:
      # One process trains the EBGAN-PT of Figure 6.4c; the others only draw.
      for path in write_figures(config, workdir, train_pt=FLAGS.train and FLAGS.shard == 0):
        print(f"wrote {path}")
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=cli.parse_flags)
