"""Markdown tables of evaluation results laid out like the thesis' Table 4.4.

A table has one row per predictor and, for each predicted frame, the PSNR, SSIM and sharpness
difference; `records` map `'{region}/frame{k}/{metric}'` to values, as `evaluation.video_pred`
returns them (with any prefix removed).
"""

from __future__ import annotations

from typing import Mapping, Sequence

# (key, column name, decimals)
METRIC_COLUMNS = (("psnr", "PSNR", 1), ("ssim", "SSIM", 2), ("sharpness", "Sharpness", 1))
REGIONS = {"full": "full frame", "moving": "moving areas (optical-flow mask)",
           "moving_exact": "moving areas (exact mask of the renderer)"}
# Prefixes of the reference predictors in an evaluation record, and their row labels.
REFERENCES = (("last_input/", "Last input"), ("flow/", "Optical flow"))


def strip_prefix(record: Mapping[str, float], prefix: str) -> dict[str, float]:
  """The entries of `record` whose key starts with `prefix`, with the prefix removed."""
  return {key[len(prefix):]: value for key, value in record.items() if key.startswith(prefix)}


def reference_rows(record: Mapping[str, float]) -> list[tuple[str, dict[str, float]]]:
  """`(label, record)` rows of the reference predictors scored in an evaluation `record`."""
  return [(label, strip_prefix(record, prefix)) for prefix, label in REFERENCES]


def has_region(records: Sequence[Mapping[str, float]], region: str) -> bool:
  return any(f"{region}/frame1/psnr" in record for record in records)


def metrics_table(rows: Sequence[tuple[str, Mapping[str, float]]], region: str, *,
                  num_frames: int = 2) -> str:
  """A Markdown table: a row per `(label, record)`, columns metric x predicted frame.

  Args:
    rows: `(label, record)` pairs; a missing value prints as a dash.
    region: 'full', 'moving' or 'moving_exact'.
    num_frames: predicted frames to show.

  Returns:
    The table's lines joined by newlines.
  """
  if region not in REGIONS:
    raise ValueError(f"region: unknown region {region!r}; valid: {list(REGIONS)}")
  head = " | ".join(f"{name} ({_ordinal(k)})" for k in range(1, num_frames + 1)
                    for _, name, _ in METRIC_COLUMNS)
  lines = [f"| | {head} |", "|---" * (1 + num_frames * len(METRIC_COLUMNS)) + "|"]
  for label, record in rows:
    cells = []
    for k in range(1, num_frames + 1):
      for key, _, digits in METRIC_COLUMNS:
        value = record.get(f"{region}/frame{k}/{key}")
        cells.append("–" if value is None else f"{value:.{digits}f}")
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _ordinal(k: int) -> str:
  return {1: "1st", 2: "2nd", 3: "3rd"}.get(k, f"{k}th")
