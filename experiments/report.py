"""Prints a run's latest evaluation as a Markdown table laid out like Table 4.4.

    python -m experiments.report --workdir=runs/vp

Rows: the model and the last-input baseline; columns: PSNR, SSIM and sharpness difference of the
1st and 2nd predicted frames; one table for the full frame and one for the moving areas.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags

from uncertainty_jax.training import writers

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's directory.")
_STEP = flags.DEFINE_integer("step", None, "Which evaluation (default: the latest).")
flags.mark_flag_as_required("workdir")

_METRICS = (("psnr", "PSNR", 1), ("ssim", "SSIM", 2), ("sharpness", "Sharpness", 1))


def table(record: dict, region: str) -> str:
  """One Markdown table of `record`'s `eval/...` metrics for `region` ('full' or 'moving')."""
  head = "| | " + " | ".join(f"{name} (frame {k})" for k in (1, 2) for _, name, _ in _METRICS)
  lines = [head + " |", "|---" * (1 + 2 * len(_METRICS)) + "|"]
  for label, prefix in (("model", "eval/"), ("last input", "eval/last_input/")):
    cells = []
    for k in (1, 2):
      for key, _, digits in _METRICS:
        value = record.get(f"{prefix}{region}/frame{k}/{key}")
        cells.append("–" if value is None else f"{value:.{digits}f}")
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv) -> int:
  del argv
  evals = [r for r in writers.read_metrics(_WORKDIR.value) if "eval/full/frame1/psnr" in r]
  if _STEP.value is not None:
    evals = [r for r in evals if r["step"] == _STEP.value]
  if not evals:
    print(f"error: no evaluation{'' if _STEP.value is None else f' at step {_STEP.value}'} in "
          f"{_WORKDIR.value}/metrics.jsonl", file=sys.stderr)
    return 1
  record = evals[-1]
  print(f"Step {record['step']}, {int(record.get('eval/num_clips', 0))} test clips.\n")
  print("Full frame:\n")
  print(table(record, "full"))
  if any(k.startswith("eval/moving/") for k in record):
    print("\nMoving areas:\n")
    print(table(record, "moving"))
  return 0


if __name__ == "__main__":
  app.run(main)
