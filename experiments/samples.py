"""Samples of several trained chapter 6 runs side by side (Figures 6.4-6.7, 6.10-6.12).

    python -m experiments.samples --workdirs=runs/ebgan64,runs/ebgan64_pt,runs/dcgan64 \\
        --output=results/ebgan64_samples.png

Restores the latest checkpoint of each workdir with the config it was trained with
(`<workdir>/config.json`), draws `--num` samples from each run's evaluation latents, and writes one
PNG with a captioned grid per run (variant, step, the samples' spread and, where known, I').

The spread is the per-value standard deviation across the drawn samples, averaged over values
(in the generator's output range, [-1, 1] for images): near 0 when the generator has collapsed to
one image, whatever that image looks like. Each panel's caption and a printed line give it.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from absl import app
from absl import flags

from experiments import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_list("workdirs", None, "Trained runs of experiments/ebgan.py, in panel order.")
  flags.DEFINE_string("output", None, "The PNG to write.")
  flags.DEFINE_integer("num", 64, "Samples per run, at least 2.")
  flags.mark_flags_as_required(["workdirs", "output"])


def sample_spread(samples: np.ndarray) -> float:
  """Mean over values of the standard deviation across samples `[N, ...]`; 0 for identical ones."""
  samples = np.asarray(samples, np.float64)
  if samples.ndim < 2 or samples.shape[0] < 2:
    raise ValueError(f"samples: shape {samples.shape} is not [N, ...] with N >= 2 (the spread "
                     f"compares samples)")
  return float(samples.std(axis=0).mean())


def panels(workdirs, num: int) -> dict:
  """`{caption: samples [num, H, W, C]}` for each workdir's latest checkpoint."""
  from uncertainty_jax.training import loop  # pylint: disable=g-import-not-at-top
  out = {}
  for workdir in workdirs:
    config = cli.load_run_config(workdir, task="ebgan", chapter="chapter 6", flag="workdirs",
                                  config_file="experiments/ebgan.py:VARIANT")
    task, state, _ = loop.restore(config, workdir)
    step = int(state.step)
    samples = task.samples(state, num)
    caption = f"{config.variant}, step {step}, spread {sample_spread(samples):.2f}"
    eval_path = os.path.join(workdir, "eval.json")
    if os.path.exists(eval_path):
      with open(eval_path) as f:
        score = json.load(f).get("inception_score")
      if isinstance(score, (int, float)):
        caption += f", I'={score:.2f}"
    print(f"{workdir}: {caption}")
    out[caption] = samples
  return out


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  from uncertainty_jax.evaluation import ebgan_figures  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.training.checkpoint import CheckpointError  # pylint: disable=g-import-not-at-top
  if FLAGS.num < 2:
    print(f"error: --num: {FLAGS.num} must be an integer of at least 2 (the spread compares "
          f"samples)", file=sys.stderr)
    return 1
  try:
    drawn = panels([os.path.abspath(w) for w in FLAGS.workdirs], FLAGS.num)
    shapes = {v.shape[1:] for v in drawn.values()}
    if len(shapes) > 1:
      raise ValueError(f"workdirs: the runs generate samples of different shapes {sorted(shapes)}; "
                       f"put runs of one dataset side by side")
    ebgan_figures.sample_panels(drawn, FLAGS.output)
  except (ValueError, CheckpointError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"wrote {FLAGS.output}")
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=cli.parse_flags)
