"""Chapter 3's figures: interpolation in code space (Figures 3.5-3.7) and decoder filters (3.3).

Both return uint8 RGB images; `visualize.save_png` writes them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from uncertainty_jax.evaluation import visualize


def interpolation_grid(truth, decoded, times: Sequence[float], *, border: int = 1) -> np.ndarray:
  """Two rows per example: the true renders at `times`, then the frames decoded from codes there.

  True frames are framed in green. Decoded frames between the two input frames (1 <= t <= 2) are
  framed in white, extrapolated ones (t < 1 or t > 2, t = 3 being the prediction) in red.

  Args:
    truth: `[B, T, H, W, C]` in [-1, 1], C in (1, 3).
    decoded: the same shape.
    times: the T times, e.g. (0, 0.5, 1, 1.5, 2, 2.5, 3).
    border: pixels of frame around each cell.

  Returns:
    `[2 B (H + 2 border), T (W + 2 border), 3]` uint8.
  """
  truth = np.asarray(truth)
  decoded = np.asarray(decoded)
  if (truth.ndim != 5 or truth.shape != decoded.shape or truth.shape[1] != len(times)
      or truth.shape[-1] not in (1, 3)):
    raise ValueError(f"truth {truth.shape}, decoded {decoded.shape}: expected equal shapes "
                     f"[B, {len(times)}, H, W, C], one frame per time, C in (1, 3)")
  rows = []
  for b in range(truth.shape[0]):
    true_cells = visualize._framed(visualize._rgb(visualize.to_uint8(truth[b])), border,  # pylint: disable=protected-access
                                   visualize.TARGET_COLOR)
    model = visualize._rgb(visualize.to_uint8(decoded[b]))  # pylint: disable=protected-access
    model_cells = np.stack([
        visualize._framed(frame, border, visualize.INPUT_COLOR if 1.0 <= t <= 2.0  # pylint: disable=protected-access
                          else visualize.PREDICTION_COLOR)
        for frame, t in zip(model, times)])
    rows.extend([true_cells, model_cells])
  return visualize._tile(np.stack(rows))  # pylint: disable=protected-access


def decoder_filters(kernel, group: int, *, scale: int = 3, gap: int = 2) -> np.ndarray:
  """The decoder's filters, one per unpooled map, laid out by pool group (Figure 3.3).

  Args:
    kernel: the decoder convolution's kernel `[k, k, F, C]` (F unpooled maps, C image channels).
    group: maps per pool group along the feature topology; each group's filters sit side by side
      on one line of the figure, up to 8 groups per line.
    scale: pixel repetition of each filter.
    gap: pixels between filters and around the figure (twice that between groups and lines).

  Returns:
    `[lines (k scale + 2 gap), G (group (k scale + gap) + gap), 3]` uint8 on white, G the groups
    per line; each filter is normalised to its own range [0, 255].
  """
  kernel = np.asarray(kernel, np.float32)
  if kernel.ndim != 4 or kernel.shape[-1] not in (1, 3):
    raise ValueError(f"kernel: shape {kernel.shape}; expected [k, k, F, C] with C in (1, 3)")
  k, _, f, _ = kernel.shape
  if group < 1 or f % group:
    raise ValueError(f"group: {group} does not divide the {f} maps")
  filters = np.moveaxis(kernel, 2, 0)  # [F, k, k, C]
  low = filters.min(axis=(1, 2, 3), keepdims=True)
  high = filters.max(axis=(1, 2, 3), keepdims=True)
  filters = (filters - low) / np.maximum(high - low, 1e-12)
  filters = np.repeat(np.repeat(filters, scale, axis=1), scale, axis=2)
  filters = visualize._rgb(np.round(filters * 255).astype(np.uint8))  # pylint: disable=protected-access
  side = k * scale
  groups_per_line = max(1, min(8, f // group))
  num_groups = f // group
  lines = -(-num_groups // groups_per_line)
  cell = side + gap
  group_width = group * cell + gap
  out = np.full((lines * (cell + gap), groups_per_line * group_width, 3), 255, np.uint8)
  for g in range(num_groups):
    line, col = divmod(g, groups_per_line)
    for j in range(group):
      y = gap + line * (cell + gap)
      x = gap + col * group_width + j * cell
      out[y:y + side, x:x + side] = filters[g * group + j]
  return out


def comparison_grid(truth, decoded, times: Sequence[float], *, scale: int = 2,
                    border: int = 1) -> np.ndarray:
  """Several models' interpolations of the same test trajectories, one labelled block each.

  The image starts with a header line giving each column's time; then a block for the truth
  (green frames) and one per model in the mapping's order (white frames between the inputs,
  1 <= t <= 2, red outside), each under a header band with its label and holding one row per
  trajectory. Everything is upscaled `scale` times by pixel repetition.

  Args:
    truth: `[B, T, H, W, C]` in [-1, 1], the true renders at `times`.
    decoded: an ordered mapping `label -> [B, T, H, W, C]`.
    times: the T times.
    scale: integer upscaling, >= 1.
    border: pixels of frame around each cell, before upscaling.

  Returns:
    uint8 RGB `[header + (1 + M) (band + B (H + 2 border) scale), T (W + 2 border) scale, 3]`.
  """
  truth = np.asarray(truth)
  if truth.ndim != 5 or truth.shape[1] != len(times):
    raise ValueError(f"truth: shape {truth.shape}; expected [B, {len(times)}, H, W, C]")
  if not decoded:
    raise ValueError("decoded: expected at least one model")
  blocks = [("truth", visualize._framed(visualize._rgb(visualize.to_uint8(truth)), border,  # pylint: disable=protected-access
                                        visualize.TARGET_COLOR))]
  for label, frames in decoded.items():
    visualize.check_label("decoded: label", label)
    frames = np.asarray(frames)
    if frames.shape != truth.shape:
      raise ValueError(f"decoded[{label!r}]: shape {frames.shape}; expected {truth.shape}")
    cells = visualize._rgb(visualize.to_uint8(frames))  # pylint: disable=protected-access
    blocks.append((label, np.stack([
        np.stack([visualize._framed(cells[b, i], border,  # pylint: disable=protected-access
                                    visualize.INPUT_COLOR if 1.0 <= t <= 2.0
                                    else visualize.PREDICTION_COLOR)
                  for i, t in enumerate(times)]) for b in range(cells.shape[0])])))
  cell_width = blocks[0][1].shape[3] * scale
  width = cell_width * len(times)
  parts = [visualize._header(width, [[(f"t={t:g}", i * cell_width, (i + 1) * cell_width)  # pylint: disable=protected-access
                                       for i, t in enumerate(times)]])]
  for label, cells in blocks:
    parts.append(visualize._header(width, [[(label, 0, width)]]))  # pylint: disable=protected-access
    parts.append(visualize._upscale(visualize._tile(cells), scale))  # pylint: disable=protected-access
  return np.concatenate(parts, axis=0)
