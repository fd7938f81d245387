"""Prints a run's latest evaluation as Markdown tables laid out like Table 4.4.

    python -m experiments.report --workdir=runs/vp

Rows: the model and the reference predictors (last input, optical flow); columns: PSNR, SSIM and
sharpness difference of the 1st and 2nd predicted frames; one table for the full frame, one for
the moving areas under the optical-flow mask and, on the embedded data, one under the exact mask.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags

from uncertainty_jax.evaluation import tables
from uncertainty_jax.training import writers

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags; defined when it runs, so that importing this module defines none."""
  flags.DEFINE_string("workdir", None, "A training run's directory.")
  flags.DEFINE_integer("step", None, "Which evaluation (default: the latest).")
  flags.mark_flag_as_required("workdir")


def report(record: dict) -> str:
  """The tables of one `metrics.jsonl` evaluation record (keys `eval/...`)."""
  scores = tables.strip_prefix(record, "eval/")
  rows = [("Model", scores)] + tables.reference_rows(scores)
  rows = [(label, r) for label, r in rows if tables.has_region([r], "full")]
  parts = [f"Step {record['step']}, {int(scores.get('num_clips', 0))} test clips."]
  for region, title in tables.REGIONS.items():
    if tables.has_region([scores], region):
      parts.append(f"{title[0].upper()}{title[1:]}:\n\n{tables.metrics_table(rows, region)}")
  return "\n\n".join(parts)


def main(argv) -> int:
  del argv
  evals = [r for r in writers.read_metrics(FLAGS.workdir) if "eval/full/frame1/psnr" in r]
  if FLAGS.step is not None:
    evals = [r for r in evals if r["step"] == FLAGS.step]
  if not evals:
    print(f"error: no evaluation{'' if FLAGS.step is None else f' at step {FLAGS.step}'} in "
          f"{FLAGS.workdir}/metrics.jsonl", file=sys.stderr)
    return 1
  print(report(evals[-1]))
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main)
